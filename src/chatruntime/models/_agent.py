"""Agent specifications as stored: what ``AgentManager`` turns into SDK ``Agent`` objects."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from ._common import NAME_MAX_LENGTH, Name, Uuid, WireModel, now_ms


class ModelSettingsSpec(WireModel):
    """Sampling settings, with the ranges the TypeScript original enforces."""

    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, ge=0, le=1)
    max_tokens: int | None = Field(default=None, ge=1)
    tool_choice: Literal["auto", "required", "none"] | str | None = None


class AgentSpec(WireModel):
    """A stored agent: name, instructions, model, settings, tools and handoff targets."""

    id: Uuid
    name: Name = Field(min_length=1, max_length=NAME_MAX_LENGTH)
    instructions: str = ""
    model: str | None = None
    """Model name; ``None`` uses the manager's default model."""
    model_settings: ModelSettingsSpec = Field(default_factory=ModelSettingsSpec)
    tools: list[str] = Field(default_factory=list)
    """Names of tools in the ``AgentManager``'s tool registry."""
    handoffs: list[Uuid] = Field(default_factory=list)
    """Ids of agents this one may hand the conversation to."""
    created_at: int = Field(default_factory=now_ms)
    updated_at: int = Field(default_factory=now_ms)
    schema_version: int = 1
