"""``ToolRegistry``: the function tools that stored agent specs may name."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from agents import FunctionTool, function_tool

from ..models import InvalidInputError


class ToolRegistry:
    """Maps tool names (as written in ``AgentSpec.tools``) to SDK function tools.

    Example:
        >>> tools = ToolRegistry()
        >>> @tools.tool
        ... def get_weather(city: str) -> str:
        ...     '''Current weather in a city.'''
        ...     return f"Sunny in {city}"
    """

    def __init__(self, tools: Iterable[FunctionTool | Callable[..., Any]] = ()) -> None:
        self._tools: dict[str, FunctionTool] = {}
        for tool in tools:
            self.add(tool)

    def add(
        self, tool: FunctionTool | Callable[..., Any], *, name: str | None = None
    ) -> FunctionTool:
        """Register a ``FunctionTool`` or a plain function (wrapped with ``function_tool``)."""
        if not isinstance(tool, FunctionTool):
            tool = function_tool(tool, name_override=name) if name else function_tool(tool)
        elif name is not None and name != tool.name:
            raise InvalidInputError(
                f"tool is named {tool.name!r}; rename it with function_tool(name_override=...)"
            )
        self._tools[tool.name] = tool
        return tool

    def tool(self, func: Callable[..., Any]) -> Callable[..., Any]:
        """Decorator form of :meth:`add`; returns the function unchanged."""
        self.add(func)
        return func

    def get(self, name: str) -> FunctionTool:
        """The tool registered under ``name``.

        Raises:
            InvalidInputError: No tool has that name.
        """
        try:
            return self._tools[name]
        except KeyError:
            known = ", ".join(sorted(self._tools)) or "none registered"
            raise InvalidInputError(
                f"unknown tool {name!r} (known tools: {known})", tool=name
            ) from None

    def names(self) -> list[str]:
        """Registered tool names, sorted."""
        return sorted(self._tools)

    def __contains__(self, name: object) -> bool:
        return name in self._tools

    def __len__(self) -> int:
        return len(self._tools)
