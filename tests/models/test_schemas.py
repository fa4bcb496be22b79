"""``schemas/`` is generated from the models and must not drift from them."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema

from chatruntime.models._schemas import json_schemas, render

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"


def test_schema_files_match_the_models() -> None:
    expected = json_schemas()
    on_disk = {path.name: path.read_text(encoding="utf-8") for path in SCHEMAS.glob("*.json")}
    stale = sorted(name for name in expected if on_disk.get(name) != render(expected[name]))
    extra = sorted(set(on_disk) - set(expected))
    assert (stale, extra) == ([], []), (
        "schemas/ drifted from the models: run "
        "`.venv/bin/python -m chatruntime.models._schemas schemas`"
    )


def test_a_written_session_validates_against_its_schema() -> None:
    from chatruntime.models import ChatSession
    from support.factories import header, turn_items

    session = ChatSession.from_parts(header(user_id="u1"), turn_items(1))
    schema = json.loads((SCHEMAS / "chat-session.schema.json").read_text(encoding="utf-8"))
    jsonschema.validate(session.to_wire(), schema)


def test_the_schema_rejects_what_the_model_rejects() -> None:
    schema = json.loads((SCHEMAS / "chat-session.schema.json").read_text(encoding="utf-8"))
    bad = {
        "id": "5f6a7b8c-9d0e-4f1a-9b2c-4d5e6f7a8b9c",
        "agentId": "9b8a7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d",
        "name": "",
        "createdAt": 1,
        "updatedAt": 1,
        "history": [],
        "status": "archived",
    }
    errors = sorted(e.message for e in jsonschema.Draft202012Validator(schema).iter_errors(bad))
    assert errors == [
        "'' should be non-empty",
        "'archived' is not one of ['active', 'paused', 'completed']",
    ]


def test_a_checkpoint_and_its_header_validate_against_their_schemas() -> None:
    from chatruntime.models import Checkpoint
    from support.factories import T0, header, turn_items

    snapshot = header(user_id="u1", expires_at=T0 + 60_000, state={"agent": {"turns": 2}})
    checkpoint = Checkpoint(
        id="5f6a7b8c-9d0e-4f1a-9b2c-4d5e6f7a8b9c",
        session_id=snapshot.id,
        label="before the quiz",
        created_at=T0,
        kind="restore",
        data={"turn": 1},
        header=snapshot,
        item_count=6,
        shared_count=2,
        items=turn_items(1),
    )
    for name, record in (
        ("checkpoint.schema.json", checkpoint.to_wire()),
        ("session-header.schema.json", snapshot.to_wire()),
    ):
        schema = json.loads((SCHEMAS / name).read_text(encoding="utf-8"))
        jsonschema.validate(record, schema)


def test_the_checkpoint_schema_rejects_an_unknown_kind_and_a_turn_key_without_key() -> None:
    checkpoint = json.loads((SCHEMAS / "checkpoint.schema.json").read_text(encoding="utf-8"))
    kind = checkpoint["properties"]["kind"]
    assert sorted(kind["enum"]) == ["manual", "restore"]
    turn_key = json.loads((SCHEMAS / "turn-key.schema.json").read_text(encoding="utf-8"))
    validator = jsonschema.Draft202012Validator(turn_key)
    assert not validator.is_valid({})
    assert turn_key["properties"]["key"]["minLength"] == 1
