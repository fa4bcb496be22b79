"""``AgentManager``: stored agent specs and code-defined agents, resolved to SDK ``Agent``s."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import anyio
import anyio.to_thread
from agents import Agent, ModelSettings
from agents.models.interface import ModelProvider
from pydantic import ValidationError

from ..models import (
    AgentNotFoundError,
    AgentSpec,
    InvalidInputError,
    ModelSettingsSpec,
    Result,
    check_name,
    check_text,
    describe_validation_error,
    guard,
    new_id,
    now_ms,
    require_uuid,
)
from ..models._common import UNSET, Unset
from ..stores import SessionStore
from ._providers import ModelConfig, build_model_provider
from ._tools import ToolRegistry

_UNSET = UNSET


class AgentManager:
    """Creates, stores and resolves agents.

    Two kinds of agent live here: specs stored in the ``SessionStore`` (name, instructions,
    model, settings, tool names, handoff ids), built into SDK ``Agent`` objects on demand, and
    code-defined SDK agents added with :meth:`register` (any model object, e.g. a test model).

    Args:
        store: Where specs persist.
        tools: The registry that tool names in specs refer to.
        model_provider: Supplies models for specs that name a model (or none). ``None``: the
            provider a turn's run configuration names, or else the one
            :meth:`ModelConfig.from_env` describes, built on first use and owned (closed by
            :meth:`aclose`). This is the one place a model provider comes from.
        default_model: Model name for specs without one.
    """

    def __init__(
        self,
        store: SessionStore,
        *,
        tools: ToolRegistry | None = None,
        model_provider: ModelProvider | None = None,
        default_model: str | None = None,
    ) -> None:
        self.store = store
        self.tools = tools if tools is not None else ToolRegistry()
        self.model_provider = model_provider
        self.default_model = default_model
        self._model_config: ModelConfig | None = None
        self._own_provider: ModelProvider | None = None
        self._provider_lock = anyio.Lock()
        self._registered: dict[str, Agent[Any]] = {}
        self._built: dict[str, Agent[Any]] = {}
        self._ids_by_agent: dict[int, str] = {}
        # Counts the times `_built` was cleared, so a build that saw a clear does not cache.
        self._generation = 0

    # -- the model provider ---------------------------------------------------------------

    async def provider(self) -> tuple[ModelProvider, ModelConfig]:
        """The model provider turns use, and the environment's model settings.

        ``model_provider`` when one was given; otherwise the provider that
        :meth:`ModelConfig.from_env` describes (OpenAI, an OpenAI-compatible server, or the
        offline model), built once, off the event loop, and kept until :meth:`aclose`.

        Raises:
            InvalidInputError: The model settings in the environment are invalid.
        """
        async with self._provider_lock:
            if self._model_config is None:
                try:
                    self._model_config = ModelConfig.from_env()
                except ValueError as error:
                    raise InvalidInputError(
                        f"the model settings in the environment are invalid: {error}",
                        field="environment",
                    ) from None
            if self.model_provider is not None:
                return self.model_provider, self._model_config
            if self._own_provider is None:
                # An HTTP client's TLS setup reads certificate files: not on the event loop.
                self._own_provider = await anyio.to_thread.run_sync(
                    build_model_provider, self._model_config
                )
            return self._own_provider, self._model_config

    async def aclose(self) -> None:
        """Close the provider this manager built from the environment, if it built one (a
        later turn builds it again). A ``model_provider`` given to it is the giver's."""
        provider, self._own_provider = self._own_provider, None
        if provider is not None:
            await provider.aclose()

    # -- code-defined agents --------------------------------------------------------------

    def register(self, agent: Agent[Any], agent_id: str | None = None) -> str:
        """Add a code-defined SDK agent and return its id (a new UUID unless given).

        Registered agents live in this process only; register them again after a restart
        with the same ``agent_id`` to keep their sessions working.
        """
        agent_id = require_uuid(agent_id, "agent_id") if agent_id is not None else new_id()
        self._registered[agent_id] = agent
        self._remember(agent_id, agent)
        return agent_id

    def agent_id_of(self, agent: Agent[Any]) -> str | None:
        """The id of an agent object this manager resolved or registered, if any."""
        return self._ids_by_agent.get(id(agent))

    # -- stored specs ---------------------------------------------------------------------

    async def create_agent(
        self,
        name: str,
        instructions: str = "",
        *,
        model: str | None = None,
        model_settings: ModelSettingsSpec | dict[str, Any] | None = None,
        tools: Sequence[str] = (),
        handoffs: Sequence[str] = (),
        agent_id: str | None = None,
    ) -> Result[AgentSpec]:
        """Store a new agent spec.

        Fails with ``VALIDATION_ERROR`` for a bad name, settings out of range (temperature
        0–2, top_p 0–1, max_tokens ≥ 1), unknown tool names, or ``agent_id`` that is taken;
        with ``AGENT_NOT_FOUND`` for an unknown handoff target.
        """

        async def create() -> AgentSpec:
            new_agent_id = require_uuid(agent_id, "agent_id") if agent_id else new_id()
            if new_agent_id in self._registered or await self.store.get_agent(new_agent_id):
                raise InvalidInputError(f"agent id {new_agent_id} is already in use")
            now = now_ms()
            spec = self._validated_spec(
                {
                    "id": new_agent_id,
                    "name": name,
                    "instructions": instructions,
                    "model": model,
                    "model_settings": model_settings or {},
                    "tools": list(tools),
                    "handoffs": list(handoffs),
                    "created_at": now,
                    "updated_at": now,
                }
            )
            await self._check_references(spec)
            await self.store.save_agent(spec)
            return spec

        return await guard(create)

    async def update_agent(
        self,
        agent_id: str,
        *,
        name: str | Unset = _UNSET,
        instructions: str | Unset = _UNSET,
        model: str | Unset | None = _UNSET,
        model_settings: ModelSettingsSpec | dict[str, Any] | Unset = _UNSET,
        tools: Sequence[str] | Unset = _UNSET,
        handoffs: Sequence[str] | Unset = _UNSET,
    ) -> Result[AgentSpec]:
        """Change a stored spec; fields left out keep their value. The next turn uses it."""

        async def update() -> AgentSpec:
            current = await self._stored(agent_id)
            changes: dict[str, Any] = {
                key: value
                for key, value in {
                    "name": name,
                    "instructions": instructions,
                    "model": model,
                    "model_settings": model_settings,
                    "tools": _UNSET if isinstance(tools, Unset) else list(tools),
                    "handoffs": _UNSET if isinstance(handoffs, Unset) else list(handoffs),
                }.items()
                if value is not _UNSET
            }
            values = current.model_dump()
            values.update(changes)
            values["updated_at"] = max(now_ms(), current.updated_at + 1)
            spec = self._validated_spec(values)
            await self._check_references(spec)
            await self.store.save_agent(spec)
            self._forget_built()
            return spec

        return await guard(update)

    async def delete_agent(self, agent_id: str) -> Result[None]:
        """Remove a stored spec (or a registered agent). Its sessions stay, but refuse turns."""

        async def delete() -> None:
            require_uuid(agent_id, "agent_id")
            registered_agent = self._registered.pop(agent_id, None)
            registered = registered_agent is not None
            if registered_agent is not None:
                self._ids_by_agent.pop(id(registered_agent), None)
            stored = await self.store.delete_agent(agent_id)
            if not (registered or stored):
                raise AgentNotFoundError(f"no agent has id {agent_id}", agent_id=agent_id)
            self._forget_built()

        return await guard(delete)

    async def get_agent(self, agent_id: str) -> Result[AgentSpec]:
        """The stored spec of an agent."""
        return await guard(lambda: self._stored(agent_id))

    async def list_agents(self) -> Result[list[AgentSpec]]:
        """Every stored spec, oldest first (registered agents are not listed)."""
        return await guard(self.store.list_agents)

    async def exists(self, agent_id: str) -> bool:
        """True when ``agent_id`` is a registered agent or a stored spec."""
        return agent_id in self._registered or await self.store.get_agent(agent_id) is not None

    async def resolve(self, agent_id: str) -> Agent[Any]:
        """The SDK ``Agent`` for an id: registered, or built from its spec (cached).

        Raises:
            AgentNotFoundError: No agent has this id.
            InvalidInputError: The spec names a tool that is not registered.
        """
        require_uuid(agent_id, "agent_id")
        if agent_id in self._registered:
            return self._registered[agent_id]
        if agent_id in self._built:
            return self._built[agent_id]
        return await self._build_graph(agent_id)

    # -- internals ------------------------------------------------------------------------

    async def _stored(self, agent_id: str) -> AgentSpec:
        require_uuid(agent_id, "agent_id")
        spec = await self.store.get_agent(agent_id)
        if spec is None:
            raise AgentNotFoundError(f"no agent has id {agent_id}", agent_id=agent_id)
        return spec

    def _validated_spec(self, values: dict[str, Any]) -> AgentSpec:
        check_name(values.get("name"))
        for text_field in ("instructions", "model"):
            if isinstance(values.get(text_field), str):
                check_text(values[text_field], text_field)
        try:
            return AgentSpec.model_validate(values)
        except ValidationError as error:
            raise InvalidInputError(f"invalid agent: {describe_validation_error(error)}") from None

    async def _check_references(self, spec: AgentSpec) -> None:
        for tool_name in spec.tools:
            self.tools.get(tool_name)
        for target in spec.handoffs:
            if target != spec.id and not await self.exists(target):
                raise AgentNotFoundError(
                    f"handoff target {target} is not an agent", agent_id=target
                )

    async def _build_graph(self, root_id: str) -> Agent[Any]:
        """Build the root's agent and every stored agent reachable from it; return the root.

        The store is awaited meanwhile, and an update or delete may clear ``_built`` then: so
        the agents are built into a local dict, and agents built before are held by
        reference from the moment they are found. The result is cached only if nothing was
        changed during the build, as otherwise it may come from specs that are now outdated.
        """
        generation = self._generation
        # Agents may hand off to each other in cycles: build every agent reachable from the
        # root first, then wire the handoffs between the built objects.
        specs: dict[str, AgentSpec] = {}
        known: dict[str, Agent[Any]] = {}  # registered or built before, as found
        pending = [root_id]
        while pending:
            current = pending.pop()
            if current in specs or current in known:
                continue
            existing = self._registered.get(current) or self._built.get(current)
            if existing is not None and current != root_id:
                known[current] = existing
                continue
            specs[current] = await self._stored(current)
            pending.extend(specs[current].handoffs)
        built: dict[str, Agent[Any]] = {}
        for spec in specs.values():
            built[spec.id] = Agent(
                name=spec.name,
                instructions=spec.instructions or None,
                model=spec.model or self.default_model,
                model_settings=_model_settings(spec.model_settings),
                tools=[self.tools.get(name) for name in spec.tools],
            )
        for spec in specs.values():
            built[spec.id].handoffs = [
                built.get(target) or known[target] for target in spec.handoffs
            ]
        if generation == self._generation:
            for agent_id, agent in built.items():
                self._built[agent_id] = agent
                self._remember(agent_id, agent)
        return built[root_id]

    def _remember(self, agent_id: str, agent: Agent[Any]) -> None:
        self._ids_by_agent[id(agent)] = agent_id

    def _forget_built(self) -> None:
        self._generation += 1
        for agent in self._built.values():
            self._ids_by_agent.pop(id(agent), None)
        self._built.clear()


def _model_settings(spec: ModelSettingsSpec) -> ModelSettings:
    return ModelSettings(
        temperature=spec.temperature,
        top_p=spec.top_p,
        max_tokens=spec.max_tokens,
        tool_choice=spec.tool_choice,
    )
