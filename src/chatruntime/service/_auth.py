"""API keys: bearer tokens mapped to user ids, kept only as SHA-256 digests.

A key file holds one key per line, ``USER_ID:SHA256HEX`` (``USER_ID:SHA256HEX:admin`` for an
admin key), with blank lines and ``#`` comments ignored; or a JSON list of objects
``{"user_id": ..., "sha256": ..., "admin": false}``. The environment variable
``CHATRUNTIME_API_KEYS`` takes the line form, with lines separated by newlines or commas.
The keys themselves are never stored: a presented key is hashed and compared, in constant
time, with every digest.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..models import InvalidInputError, check_user_id

KEYS_ENV = "CHATRUNTIME_API_KEYS"
"""The environment variable :meth:`KeyRing.from_env` reads."""

_HEX_DIGEST = re.compile(r"\A[0-9a-f]{64}\Z")
_ADMIN_FLAG = "admin"


class KeyFileError(ValueError):
    """A key file (or the environment variable) cannot be read as keys; says where."""


def hash_key(key: str) -> str:
    """The SHA-256 hex digest of ``key``: what a key file holds instead of the key."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def new_key() -> str:
    """A fresh random API key (256 bits, URL-safe)."""
    return "cr_" + secrets.token_urlsafe(32)


@dataclass(frozen=True)
class ApiKey:
    """One key as the service knows it: whose it is, its digest, and whether it is an admin's.

    Attributes:
        user_id: The user every request made with this key acts as.
        sha256: The key's SHA-256 hex digest.
        admin: Whether the key may manage agents.
    """

    user_id: str
    sha256: str
    admin: bool = False


class KeyRing:
    """The API keys a service accepts.

    Example:
        >>> keys = KeyRing.from_keys({"secret-of-alice": "alice"}, admins={"ops-key": "ops"})
        >>> keys.authenticate("secret-of-alice").user_id
        'alice'

    Raises:
        KeyFileError: Two entries share a digest, a digest is not 64 lowercase hex digits,
            or a user id is invalid.
    """

    def __init__(self, keys: Iterable[ApiKey] = ()) -> None:
        self._keys: list[tuple[bytes, ApiKey]] = []
        seen: set[str] = set()
        for key in keys:
            _check_entry(key.user_id, key.sha256, "key")
            if key.sha256 in seen:
                raise KeyFileError(f"two keys of the key ring have the digest {key.sha256}")
            seen.add(key.sha256)
            self._keys.append((bytes.fromhex(key.sha256), key))

    @classmethod
    def from_keys(
        cls, users: Mapping[str, str], *, admins: Mapping[str, str] | None = None
    ) -> KeyRing:
        """A key ring from plain keys: ``{key: user_id}`` for users and for admins. Only
        their digests are kept."""
        entries = [ApiKey(user, hash_key(key)) for key, user in users.items()]
        entries += [ApiKey(user, hash_key(key), admin=True) for key, user in (admins or {}).items()]
        return cls(entries)

    @classmethod
    def parse(cls, text: str, *, source: str = "keys") -> KeyRing:
        """A key ring from the text of a key file (lines or JSON; see the module)."""
        if text.lstrip().startswith("["):
            return cls(_parse_json(text, source))
        return cls(_parse_lines(text.splitlines(), source))

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> KeyRing:
        """Read a key file. Blocking: call it before the event loop runs.

        Raises:
            KeyFileError: The file cannot be read or holds something that is not a key.
        """
        try:
            text = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            raise KeyFileError(f"cannot read key file {os.fspath(path)}: {error}") from None
        return cls.parse(text, source=os.fspath(path))

    @classmethod
    def from_env(cls, name: str = KEYS_ENV) -> KeyRing | None:
        """The keys in the environment variable ``name`` (``None`` when it is unset or blank)."""
        value = os.environ.get(name, "")
        if not value.strip():
            return None
        return cls(_parse_lines(re.split(r"[\n,]", value), f"${name}"))

    def __len__(self) -> int:
        return len(self._keys)

    def authenticate(self, key: str) -> ApiKey | None:
        """The entry of ``key``, or ``None`` when it is not one of the ring's keys.

        Every digest is compared, each in constant time, so the time taken says nothing of
        which key (if any) matched.
        """
        digest = hashlib.sha256(key.encode("utf-8", "surrogatepass")).digest()
        found: ApiKey | None = None
        for stored, entry in self._keys:
            if hmac.compare_digest(stored, digest):
                found = entry
        return found


def _check_entry(user_id: object, digest: object, where: str) -> None:
    if not isinstance(digest, str) or not _HEX_DIGEST.match(digest):
        raise KeyFileError(f"{where}: the digest must be 64 lowercase hex digits (SHA-256)")
    if not isinstance(user_id, str):
        raise KeyFileError(f"{where}: the user id must be a string")
    try:
        check_user_id(user_id)
    except InvalidInputError as error:
        raise KeyFileError(f"{where}: {error.message}") from None


def _parse_lines(lines: Iterable[str], source: str) -> list[ApiKey]:
    entries: list[ApiKey] = []
    for number, raw in enumerate(lines, start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        where = f"{source}, line {number}"
        rest, admin = line, False
        if rest.endswith(":" + _ADMIN_FLAG):
            rest, admin = rest.removesuffix(":" + _ADMIN_FLAG), True
        user_id, colon, digest = rest.rpartition(":")
        if not colon:
            raise KeyFileError(f"{where}: expected USER_ID:SHA256HEX[:admin]")
        _check_entry(user_id, digest, where)
        entries.append(ApiKey(user_id, digest, admin))
    return entries


def _parse_json(text: str, source: str) -> list[ApiKey]:
    try:
        document: Any = json.loads(text)
    except ValueError as error:
        raise KeyFileError(f"{source}: not valid JSON: {error}") from None
    if not isinstance(document, list):
        raise KeyFileError(f"{source}: expected a JSON list of keys")
    entries: list[ApiKey] = []
    for index, entry in enumerate(document):
        where = f"{source}, entry {index}"
        if not isinstance(entry, dict) or set(entry) - {"user_id", "sha256", "admin"}:
            raise KeyFileError(f"{where}: expected {{'user_id', 'sha256', 'admin'}}")
        admin = entry.get("admin", False)
        if not isinstance(admin, bool):
            raise KeyFileError(f"{where}: admin must be true or false")
        _check_entry(entry.get("user_id"), entry.get("sha256"), where)
        entries.append(ApiKey(entry["user_id"], entry["sha256"], admin))
    return entries
