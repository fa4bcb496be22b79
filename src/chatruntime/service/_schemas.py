"""The JSON bodies the service takes, and the small answers it gives besides the library's
models. Bodies use the library's wire spelling (camelCase; snake_case is accepted too) and
refuse unknown fields."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ..models import (
    CHECKPOINT_LABEL_MAX_LENGTH,
    Checkpoint,
    CheckpointKind,
    ModelSettingsSpec,
    SessionHeader,
    SessionStatus,
    WireModel,
)


class AgentCreate(WireModel):
    """A new agent: what :meth:`AgentManager.create_agent` takes."""

    name: str
    instructions: str = ""
    model: str | None = None
    model_settings: ModelSettingsSpec | None = None
    tools: list[str] = Field(default_factory=list)
    handoffs: list[str] = Field(default_factory=list)


class AgentUpdate(WireModel):
    """Changes to an agent; fields left out keep their value (``model: null`` means the
    default model)."""

    name: str | None = None
    instructions: str | None = None
    model: str | None = None
    model_settings: ModelSettingsSpec | None = None
    tools: list[str] | None = None
    handoffs: list[str] | None = None


class SessionCreate(WireModel):
    """A new session of the caller's, with an agent (the service's default agent when left
    out)."""

    name: str
    agent_id: str | None = None
    metadata: dict[str, Any] | None = None


class SessionUpdate(WireModel):
    """Changes to a session; fields left out keep their value."""

    name: str | None = None
    status: SessionStatus | None = None
    metadata: dict[str, Any] | None = None


class MessageSend(WireModel):
    """A user message (text, or a list of Responses API input parts: ``input_text``,
    ``input_image``, ``input_file``), and how many seconds its turn may take (default: the
    service's)."""

    content: str | list[dict[str, Any]]
    timeout: float | None = None


class CheckpointCreate(WireModel):
    """A checkpoint to save: an optional label, and the caller's own JSON data to keep with
    it."""

    label: str | None = Field(default=None, max_length=CHECKPOINT_LABEL_MAX_LENGTH)
    data: dict[str, Any] | None = None


class CheckpointSummary(WireModel):
    """A checkpoint as the service answers it: what it is and the session's header at that
    moment, without its history (``GET .../checkpoints/{id}/history`` reads that)."""

    id: str
    session_id: str
    label: str | None
    created_at: int
    kind: CheckpointKind
    data: dict[str, Any]
    item_count: int
    """How many history items the session had when it was taken."""
    header: SessionHeader

    @classmethod
    def of(cls, checkpoint: Checkpoint) -> CheckpointSummary:
        """The summary of ``checkpoint``."""
        return cls(
            id=checkpoint.id,
            session_id=checkpoint.session_id,
            label=checkpoint.label,
            created_at=checkpoint.created_at,
            kind=checkpoint.kind,
            data=checkpoint.data,
            item_count=checkpoint.item_count,
            header=checkpoint.header,
        )


class ForkCreate(WireModel):
    """A fork: of the session as it is now, or as it was at ``checkpoint_id``; named
    ``name`` (default: the source's name with " (fork)")."""

    checkpoint_id: str | None = None
    name: str | None = None


class SessionState(WireModel):
    """The state modules saved with a session: each module's ``state_dict()`` by the name
    it was saved under."""

    state: dict[str, dict[str, Any]]


class Identity(WireModel):
    """Who the presented key belongs to."""

    user_id: str
    admin: bool


class Health(BaseModel):
    """The answer of ``/healthz`` and ``/readyz``."""

    model_config = ConfigDict(frozen=True)

    status: Literal["ok", "ready"]
