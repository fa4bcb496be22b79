"""``SqlStore`` rows to models and back, and what a damaged row is reported as.

Both dialects read rows as mappings of column name to value. JSON columns arrive decoded
(or as :class:`UndecodableJson`), except history items, which both read as their JSON text so
that pydantic parses and validates each in one step.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Final

from pydantic import ValidationError

from ..models import (
    HISTORY_ADAPTER,
    AgentSpec,
    ChatSession,
    Checkpoint,
    CorruptDataError,
    HistoryItem,
    SessionHeader,
)
from ..models._history import HISTORY_ITEM_ADAPTER
from ..models._session import CONTEXT_FIELDS, HEADER_FIELDS
from ._protocol import CorruptRecord
from ._records import describe_invalid, parse_agent
from ._sql_schema import SqlTables, UndecodableJson, load_json

HEADER_COLUMNS: Final = tuple(
    sorted((HEADER_FIELDS - {"context"}) | CONTEXT_FIELDS, key=lambda name: (name != "id", name))
)
"""The ``sessions`` columns a header is read from (``id`` first)."""

JSON_HEADER_COLUMNS: Final = ("metadata", "state", "turn_keys")
"""The ``sessions`` columns that hold JSON documents."""


def header_values(header: SessionHeader) -> dict[str, Any]:
    """The ``sessions`` columns of ``header`` (JSON columns as Python values)."""
    values = header.model_dump(mode="json", include=set(HEADER_FIELDS))
    values.update(values.pop("context"))
    # In their wire form, as history items and checkpoints are stored.
    values["turn_keys"] = [key.to_wire() for key in header.turn_keys]
    return values


def checkpoint_values(checkpoint: Checkpoint) -> dict[str, Any]:
    """The ``checkpoints`` columns of ``checkpoint`` (``body`` as a Python value)."""
    return {
        "session_id": checkpoint.session_id,
        "id": checkpoint.id,
        "created_at": checkpoint.created_at,
        "body": checkpoint.to_wire(),
    }


def item_text(item: HistoryItem) -> str:
    """The JSON text an item row stores (its wire form)."""
    return item.model_dump_json(by_alias=True, exclude_none=True)


class RowReader:
    """Reads the rows of one store's tables, naming a damaged row by table and key."""

    def __init__(self, tables: SqlTables) -> None:
        self._sessions = tables.sessions.name
        self._items = tables.history_items.name
        self._agents = tables.agents.name
        self._checkpoints = tables.checkpoints.name

    def header(self, row: Mapping[str, Any]) -> SessionHeader | CorruptRecord:
        """The header stored in a ``sessions`` row, or why it cannot be read."""
        session_id = str(row["id"])
        location = f"{self._sessions} id={session_id}"
        undecodable = [
            f"{column} is not valid JSON: {row[column].error}"
            for column in JSON_HEADER_COLUMNS
            if isinstance(row[column], UndecodableJson)
        ]
        if undecodable:
            return CorruptRecord(session_id, location, "; ".join(undecodable))
        fields = {name: row[name] for name in HEADER_FIELDS - {"context"}}
        fields["context"] = {name: row[name] for name in CONTEXT_FIELDS}
        try:
            return SessionHeader.model_validate(fields)
        except ValidationError as error:
            return CorruptRecord(
                session_id, location, f"invalid session: {describe_invalid(error)}"
            )

    def session(
        self, row: Mapping[str, Any], items: Iterable[tuple[int, str]]
    ) -> ChatSession | CorruptRecord:
        """The session of a ``sessions`` row and its item rows ``(seq, JSON text)`` in order,
        or the first reason it cannot be read."""
        header = self.header(row)
        if isinstance(header, CorruptRecord):
            return header
        rows = items if isinstance(items, list) else list(items)
        # All of them in one parse, as one JSON array: a quarter cheaper than one parse an
        # item. (The validators themselves: the adapters' wrappers cost a tenth more.)
        try:
            history: list[HistoryItem] = HISTORY_ADAPTER.validator.validate_json(
                "[" + ",".join(text for _, text in rows) + "]"
            )
        except ValidationError:
            history = []
        if len(history) == len(rows):
            return ChatSession.from_parts(header, history)
        # Some row is not one valid item: find the first, to name it.
        validate = HISTORY_ITEM_ADAPTER.validator.validate_json
        history = []
        for seq, text in rows:
            try:
                history.append(validate(text))
            except ValidationError:
                return self._corrupt_item(header.id, seq, text)
        return ChatSession.from_parts(header, history)

    def agent(self, agent_id: str, raw: Any) -> AgentSpec:
        """The agent spec stored in an ``agents`` row.

        Raises:
            CorruptDataError: The row is not a valid spec of this agent.
        """
        location = f"{self._agents} id={agent_id}"
        if isinstance(raw, str):
            raw = load_json(raw)
        if isinstance(raw, UndecodableJson):
            reason = f"spec is not valid JSON: {raw.error}"
            raise CorruptDataError(
                f"agent {agent_id} cannot be read: {reason}",
                agent_id=agent_id,
                location=location,
                reason=reason,
            )
        return parse_agent(agent_id, raw, location)

    def checkpoint(self, session_id: str, checkpoint_id: str, raw: Any) -> Checkpoint:
        """The checkpoint stored in a ``checkpoints`` row (``body`` as JSON text or value).

        Raises:
            CorruptDataError: The body is not a valid checkpoint of this session and id.
        """
        location = f"{self._checkpoints} session_id={session_id} id={checkpoint_id}"
        if isinstance(raw, str):
            raw = load_json(raw)
        if isinstance(raw, UndecodableJson):
            reason = f"body is not valid JSON: {raw.error}"
        else:
            try:
                found = Checkpoint.model_validate(raw)
            except ValidationError as error:
                reason = f"invalid checkpoint: {describe_invalid(error)}"
            else:
                if (found.session_id, found.id) == (session_id, checkpoint_id):
                    return found
                reason = f"the record is checkpoint {found.id} of session {found.session_id}"
        raise CorruptDataError(
            f"checkpoint {checkpoint_id} of session {session_id} cannot be read: {reason}",
            session_id=session_id,
            checkpoint_id=checkpoint_id,
            location=location,
            reason=reason,
        )

    def _corrupt_item(self, session_id: str, seq: int, text: str) -> CorruptRecord:
        # Worded as before this store parsed JSON text itself: the JSON error, or the fields.
        location = f"{self._items} session_id={session_id} seq={seq}"
        value = load_json(text)
        if isinstance(value, UndecodableJson):
            return CorruptRecord(session_id, location, f"item is not valid JSON: {value.error}")
        try:
            HISTORY_ITEM_ADAPTER.validate_python(value)
        except ValidationError as error:
            reason = f"invalid history item: {describe_invalid(error)}"
        else:  # pragma: no cover - valid as a value, yet refused as text
            reason = "invalid history item"
        return CorruptRecord(session_id, location, reason)
