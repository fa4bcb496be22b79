"""Agents: stored specs and code-defined agents, tools, and the models they run on."""

from ._manager import AgentManager
from ._offline import (
    OFFLINE_LABEL,
    OFFLINE_MODEL_NAME,
    TOOL_COMMAND,
    OfflineModel,
    OfflineModelProvider,
)
from ._providers import PLACEHOLDER_API_KEY, ModelApi, ModelConfig, build_model_provider
from ._tools import ToolRegistry

__all__ = [
    "OFFLINE_LABEL",
    "OFFLINE_MODEL_NAME",
    "PLACEHOLDER_API_KEY",
    "TOOL_COMMAND",
    "AgentManager",
    "ModelApi",
    "ModelConfig",
    "OfflineModel",
    "OfflineModelProvider",
    "ToolRegistry",
    "build_model_provider",
]
