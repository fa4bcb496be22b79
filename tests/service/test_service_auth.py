"""API keys: who may call, as whom, and what a refused caller learns (nothing)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import httpx
import pytest

from chatruntime.service import ApiKey, KeyFileError, KeyRing, hash_key, new_key
from conftest import ADMIN_KEY, ALICE_KEY, BOB_KEY, Service

ALICE_DIGEST = hash_key("alice-key")
BOB_DIGEST = hash_key("bob-key")
OPS_DIGEST = hash_key("ops-key")


# -- the key ring ---------------------------------------------------------------------------


def test_a_key_is_kept_as_its_sha256_digest_only() -> None:
    ring = KeyRing.from_keys({"alice-key": "alice"})

    assert hash_key("alice-key") == hashlib.sha256(b"alice-key").hexdigest()
    assert ring.authenticate("alice-key") == ApiKey("alice", ALICE_DIGEST, admin=False)
    assert "alice-key" not in repr(vars(ring))


def test_an_unknown_key_authenticates_as_nobody() -> None:
    ring = KeyRing.from_keys({"alice-key": "alice"})

    assert ring.authenticate("alice-key ") is None
    assert ring.authenticate("") is None


def test_a_key_file_of_lines_maps_keys_to_users_and_marks_admins(tmp_path: Path) -> None:
    path = tmp_path / "keys.txt"
    path.write_text(
        f"# people\nalice:{ALICE_DIGEST}\n\n  bob:{BOB_DIGEST}  \nops:{OPS_DIGEST}:admin\n",
        encoding="utf-8",
    )

    ring = KeyRing.from_file(path)

    assert len(ring) == 3
    assert ring.authenticate("alice-key") == ApiKey("alice", ALICE_DIGEST)
    assert ring.authenticate("bob-key") == ApiKey("bob", BOB_DIGEST)
    assert ring.authenticate("ops-key") == ApiKey("ops", OPS_DIGEST, admin=True)


def test_a_user_id_may_hold_colons_in_a_line() -> None:
    ring = KeyRing.parse(f"tenant:7:alice:{ALICE_DIGEST}")

    assert ring.authenticate("alice-key") == ApiKey("tenant:7:alice", ALICE_DIGEST)


def test_a_key_file_may_be_a_json_list(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    entries = [
        {"user_id": "alice", "sha256": ALICE_DIGEST},
        {"user_id": "ops", "sha256": OPS_DIGEST, "admin": True},
    ]
    path.write_text(json.dumps(entries), encoding="utf-8")

    ring = KeyRing.from_file(path)

    assert ring.authenticate("alice-key") == ApiKey("alice", ALICE_DIGEST)
    assert ring.authenticate("ops-key") == ApiKey("ops", OPS_DIGEST, admin=True)


def test_the_environment_holds_lines_separated_by_commas(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHATRUNTIME_API_KEYS", f"alice:{ALICE_DIGEST}, ops:{OPS_DIGEST}:admin")

    ring = KeyRing.from_env()

    assert ring is not None
    assert ring.authenticate("alice-key") == ApiKey("alice", ALICE_DIGEST)
    assert ring.authenticate("ops-key") == ApiKey("ops", OPS_DIGEST, admin=True)


def test_an_unset_environment_variable_gives_no_key_ring(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CHATRUNTIME_API_KEYS", raising=False)

    assert KeyRing.from_env() is None


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("alice", "keys, line 1: expected USER_ID:SHA256HEX[:admin]"),
        ("alice:abc", "keys, line 1: the digest must be 64 lowercase hex digits (SHA-256)"),
        (f"alice:{ALICE_DIGEST.upper()}", "keys, line 1: the digest must be 64 lowercase"),
        (f":{ALICE_DIGEST}", "keys, line 1: user_id must be a non-empty string"),
        (f"alice:{ALICE_DIGEST}\nbob:{ALICE_DIGEST}", "two keys of the key ring have the digest"),
        ('[{"user_id": "alice"}]', "keys, entry 0: the digest must be 64 lowercase hex digits"),
        ('[{"user": "alice"}]', "keys, entry 0: expected {'user_id', 'sha256', 'admin'}"),
        ("[1, 2", "keys: not valid JSON"),
    ],
)
def test_a_bad_key_file_is_refused_naming_where(text: str, reason: str) -> None:
    with pytest.raises(KeyFileError) as refused:
        KeyRing.parse(text)

    assert str(refused.value).startswith(reason)


def test_a_missing_key_file_is_refused_naming_it(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError, match=r"cannot read key file .*missing\.txt"):
        KeyRing.from_file(tmp_path / "missing.txt")


def test_new_keys_are_random_and_long() -> None:
    keys = {new_key() for _ in range(100)}

    assert len(keys) == 100
    assert all(key.startswith("cr_") and len(key) >= 40 for key in keys)


# -- over HTTP ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong-key"},
        {"Authorization": f"Basic {ALICE_KEY}"},
        {"Authorization": "Bearer"},
        {"Authorization": f"Bearer {ALICE_KEY}x"},
    ],
    ids=["no key", "wrong key", "not bearer", "empty bearer", "key with a suffix"],
)
@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/sessions"),
        ("POST", "/sessions"),
        ("GET", "/sessions/00000000-0000-4000-8000-000000000000"),
        ("POST", "/sessions/00000000-0000-4000-8000-000000000000/messages:stream"),
        ("GET", "/agents"),
        ("GET", "/me"),
    ],
)
def test_a_request_without_a_known_key_answers_401_and_nothing_else(
    shared_service: Service, headers: dict[str, str], method: str, path: str
) -> None:
    url = shared_service.url + path

    response = httpx.request(method, url, headers=headers, json={"name": "x"})

    assert response.status_code == 401
    assert response.content == b""
    assert response.headers["www-authenticate"] == "Bearer"


def test_me_names_the_user_of_the_key(shared_service: Service) -> None:
    me = {
        key: shared_service.client(key).get("/me").json() for key in (ALICE_KEY, BOB_KEY, ADMIN_KEY)
    }

    assert me == {
        ALICE_KEY: {"userId": "alice", "admin": False},
        BOB_KEY: {"userId": "bob", "admin": False},
        ADMIN_KEY: {"userId": "ops", "admin": True},
    }


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/agents"),
        ("GET", "/agents"),
        ("GET", "/agents/00000000-0000-4000-8000-000000000000"),
        ("PATCH", "/agents/00000000-0000-4000-8000-000000000000"),
        ("DELETE", "/agents/00000000-0000-4000-8000-000000000000"),
    ],
)
def test_a_user_key_on_an_agent_route_answers_403_and_nothing_else(
    shared_service: Service, method: str, path: str
) -> None:
    body = {"name": "Sneaky"} if method in {"POST", "PATCH"} else None

    response = shared_service.client(ALICE_KEY).request(method, path, json=body)

    assert response.status_code == 403
    assert response.content == b""
    agents = shared_service.call(shared_service.agents.list_agents).unwrap()
    assert [agent.name for agent in agents] == ["Assistant"]
