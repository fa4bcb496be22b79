"""Agents: stored specs and code-defined agents, tools, and the models they run on."""

from ._manager import AgentManager
from ._tools import ToolRegistry

__all__ = ["AgentManager", "ToolRegistry"]
