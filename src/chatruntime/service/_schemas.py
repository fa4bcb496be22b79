"""The JSON bodies the service takes, and the small answers it gives besides the library's
models. Bodies use the library's wire spelling (camelCase; snake_case is accepted too) and
refuse unknown fields."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ..models import ModelSettingsSpec, SessionStatus, WireModel


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


class Identity(WireModel):
    """Who the presented key belongs to."""

    user_id: str
    admin: bool


class Health(BaseModel):
    """The answer of ``/healthz`` and ``/readyz``."""

    model_config = ConfigDict(frozen=True)

    status: Literal["ok", "ready"]
