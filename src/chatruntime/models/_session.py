"""Sessions: the header (everything but the history), ``ChatSession`` and its statistics."""

from __future__ import annotations

import uuid
from typing import Any, Final, Literal

from pydantic import Field, model_validator

from ._common import NAME_MAX_LENGTH, Name, Uuid, WireModel, now_ms
from ._history import HistoryItem, MessageItem

SCHEMA_VERSION = 1
"""Version of the session record this chatruntime writes. Cortex's files carry none (0)."""

SessionStatus = Literal["active", "paused", "completed"]
SESSION_STATUSES: tuple[SessionStatus, ...] = ("active", "paused", "completed")


class SessionContext(WireModel):
    """Running statistics of a session.

    The first four fields are cortex's; the rest are ours and default to zero for its files.
    """

    total_tokens: int = Field(default=0, ge=0)
    total_messages: int = Field(default=0, ge=0)
    total_function_calls: int = Field(default=0, ge=0)
    last_activity: int = Field(default_factory=now_ms)
    last_agent_id: str | None = None
    input_tokens: int = Field(default=0, ge=0)
    output_tokens: int = Field(default=0, ge=0)
    requests: int = Field(default=0, ge=0)
    total_turns: int = Field(default=0, ge=0)
    total_handoffs: int = Field(default=0, ge=0)


IDEMPOTENCY_KEY_MAX_LENGTH: Final = 200
"""Longest ``idempotency_key`` a turn accepts."""

IDEMPOTENCY_KEYS_KEPT: Final = 100
"""How many of a session's most recent idempotency keys its header remembers."""


class TurnKey(WireModel):
    """An idempotency key a turn was sent with, and where its items are in the history.

    Attributes:
        key: The caller's ``idempotency_key``.
        item_id: The id of the turn's first item (its user message). An id, not an index:
            a restore or ``pop_item`` that drops the turn leaves a key that finds nothing,
            so a retry runs the turn again, as it should.
        item_count: How many items the turn stored.
        created_at: When the turn was stored (epoch ms).
    """

    key: str = Field(min_length=1, max_length=IDEMPOTENCY_KEY_MAX_LENGTH)
    item_id: str = Field(min_length=1)
    item_count: int = Field(ge=1)
    created_at: int


class SessionHeader(WireModel):
    """Everything a store keeps about a session except its history.

    ``revision`` grows by one on every write; a write names the revision it was built on and
    a store refuses it when the stored revision moved on (see ``SessionStore.write_session``).
    """

    id: Uuid
    agent_id: Uuid
    name: Name = Field(min_length=1, max_length=NAME_MAX_LENGTH)
    created_at: int
    updated_at: int
    context: SessionContext = Field(default_factory=SessionContext)
    status: SessionStatus = "active"
    schema_version: int = Field(default=0, ge=0)
    revision: int = Field(default=0, ge=0)
    user_id: str | None = Field(default=None, min_length=1, max_length=256)
    metadata: dict[str, Any] = Field(default_factory=dict)
    expires_at: int | None = None
    state: dict[str, Any] = Field(default_factory=dict)
    turn_keys: list[TurnKey] = Field(default_factory=list)
    """The last :data:`IDEMPOTENCY_KEYS_KEPT` idempotency keys, oldest first; stored in the
    same write as their turn, so a retry finds the turn if and only if it was stored."""

    def header(self) -> SessionHeader:
        """This record without its history (a copy)."""
        return SessionHeader.model_validate({name: getattr(self, name) for name in HEADER_FIELDS})


class ChatSession(SessionHeader):
    """A conversation between people and an agent: the header plus its full history."""

    history: list[HistoryItem] = Field(default_factory=list)

    @model_validator(mode="before")
    @classmethod
    def _fill_item_ids(cls, data: Any) -> Any:
        # Cortex writes function results (and some messages) without id or timestamp. Fill
        # them deterministically so loading the same file twice gives the same session.
        if not isinstance(data, dict) or not isinstance(data.get("history"), list):
            return data
        session_id = str(data.get("id", ""))
        last_time = data.get("createdAt", data.get("created_at", 0))
        filled: list[Any] = []
        for index, item in enumerate(data["history"]):
            if isinstance(item, dict):
                if "id" not in item:
                    item = {
                        **item,
                        "id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{session_id}#{index}")),
                    }
                if "timestamp" in item:
                    last_time = item["timestamp"]
                else:
                    item = {**item, "timestamp": last_time}
            filled.append(item)
        return {**data, "history": filled}

    def messages(self) -> list[MessageItem]:
        """The message items of the history, in order."""
        return [item for item in self.history if isinstance(item, MessageItem)]

    @classmethod
    def from_parts(cls, header: SessionHeader, history: list[HistoryItem]) -> ChatSession:
        """Join a header and a history into one session (no copies of the items)."""
        # ``history=`` given to model_construct: left out, pydantic would call its default
        # factory on every call, which costs more than the rest of the join.
        return cls.model_construct(
            **{name: getattr(header, name) for name in HEADER_FIELDS}, history=history
        )


HEADER_FIELDS: Final = frozenset(SessionHeader.model_fields)
"""The fields of :class:`SessionHeader`: what a store keeps of a session beside its history."""

CONTEXT_FIELDS: Final = frozenset(SessionContext.model_fields)
"""The fields of :class:`SessionContext` (stores with a column per statistic use them)."""
