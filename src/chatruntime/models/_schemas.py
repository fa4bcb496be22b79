"""JSON Schemas of the persisted records, generated from the models.

``python -m chatruntime.models._schemas DIR`` writes them; a test fails when the files in
``schemas/`` drift from what the models generate.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from ._agent import AgentSpec
from ._checkpoint import Checkpoint
from ._history import HISTORY_ITEM_ADAPTER
from ._session import ChatSession, SessionHeader, TurnKey

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"


def json_schemas() -> dict[str, dict[str, Any]]:
    """File name → JSON Schema (as stored, camelCase) of every persisted record."""
    schemas: dict[str, dict[str, Any]] = {
        "chat-session.schema.json": ChatSession.model_json_schema(by_alias=True),
        "agent-spec.schema.json": AgentSpec.model_json_schema(by_alias=True),
        "history-item.schema.json": HISTORY_ITEM_ADAPTER.json_schema(by_alias=True),
        "session-header.schema.json": SessionHeader.model_json_schema(by_alias=True),
        "turn-key.schema.json": TurnKey.model_json_schema(by_alias=True),
        "checkpoint.schema.json": Checkpoint.model_json_schema(by_alias=True),
    }
    for schema in schemas.values():
        schema["$schema"] = SCHEMA_DIALECT
    return schemas


def render(schema: dict[str, Any]) -> str:
    """The schema as written to disk: sorted keys, two-space indent, final newline."""
    return json.dumps(schema, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def write_schemas(directory: Path) -> list[Path]:
    """Write every schema into ``directory``; returns the paths written."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, schema in json_schemas().items():
        path = directory / name
        path.write_text(render(schema), encoding="utf-8")
        written.append(path)
    return written


if __name__ == "__main__":  # pragma: no cover - a maintainer's command
    for path in write_schemas(Path(sys.argv[1] if len(sys.argv) > 1 else "schemas")):
        print(path)
