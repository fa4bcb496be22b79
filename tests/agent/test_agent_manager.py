"""``AgentManager``: stored specs with the original's rules, registered agents, resolving."""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from agents import Agent
from agents.testing import ScriptedModel

from chatruntime import AgentManager, ErrorCode, MemoryStore, ToolRegistry
from chatruntime.models import AgentSpec, new_id

pytestmark = pytest.mark.anyio


def lookup(city: str) -> str:
    """Look a city up."""
    return city


@pytest.fixture
def agents() -> AgentManager:
    return AgentManager(MemoryStore(), tools=ToolRegistry([lookup]))


async def test_created_agent_is_stored_with_its_settings(agents: AgentManager) -> None:
    spec = (
        await agents.create_agent(
            "Helper",
            "Be brief.",
            model="gpt-4.1-mini",
            model_settings={"temperature": 0.5, "top_p": 1, "max_tokens": 200},
            tools=["lookup"],
        )
    ).unwrap()
    assert (await agents.get_agent(spec.id)).unwrap() == spec
    assert (spec.name, spec.instructions, spec.model, spec.tools) == (
        "Helper",
        "Be brief.",
        "gpt-4.1-mini",
        ["lookup"],
    )
    assert spec.model_settings.temperature == 0.5
    assert spec.to_wire()["modelSettings"] == {"temperature": 0.5, "topP": 1.0, "maxTokens": 200}


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"name": ""}, "name must not be empty"),
        ({"name": "   "}, "name must not be empty"),
        ({"name": "x" * 101}, "the limit is 100"),
        (
            {"model_settings": {"temperature": 2.5}},
            "model_settings.temperature: Input should be less than or equal to 2",
        ),
        (
            {"model_settings": {"temperature": -0.1}},
            "model_settings.temperature: Input should be greater than or equal to 0",
        ),
        (
            {"model_settings": {"top_p": 1.5}},
            "model_settings.top_p: Input should be less than or equal to 1",
        ),
        (
            {"model_settings": {"max_tokens": 0}},
            "model_settings.max_tokens: Input should be greater than or equal to 1",
        ),
        ({"tools": ["nope"]}, "unknown tool 'nope' (known tools: lookup)"),
        ({"agent_id": "../etc"}, "agent_id must be a lowercase UUID"),
    ],
)
async def test_bad_agent_input_is_refused_and_nothing_is_stored(
    agents: AgentManager, kwargs: dict[str, Any], fragment: str
) -> None:
    values: dict[str, Any] = {"name": "Helper", **kwargs}
    result = await agents.create_agent(**values)
    assert result.error is not None
    assert result.error.code is ErrorCode.VALIDATION_ERROR
    assert fragment in result.error.message
    assert (await agents.list_agents()).unwrap() == []


async def test_unknown_handoff_target_is_agent_not_found(agents: AgentManager) -> None:
    missing = new_id()
    result = await agents.create_agent("Triage", handoffs=[missing])
    assert result.error is not None
    assert (result.error.code, result.error.details) == (
        ErrorCode.AGENT_NOT_FOUND,
        {"agent_id": missing},
    )


async def test_update_changes_only_given_fields(agents: AgentManager) -> None:
    spec = (await agents.create_agent("Helper", "Be brief.", model="m1")).unwrap()
    updated = (await agents.update_agent(spec.id, instructions="Be long.")).unwrap()
    assert (updated.name, updated.instructions, updated.model) == ("Helper", "Be long.", "m1")
    assert updated.updated_at > spec.updated_at
    assert (await agents.get_agent(spec.id)).unwrap() == updated


async def test_bad_update_changes_nothing(agents: AgentManager) -> None:
    spec = (await agents.create_agent("Helper")).unwrap()
    result = await agents.update_agent(spec.id, model_settings={"temperature": 9})
    assert result.error is not None
    assert result.error.code is ErrorCode.VALIDATION_ERROR
    assert (await agents.get_agent(spec.id)).unwrap() == spec


async def test_unknown_and_malformed_agent_ids(agents: AgentManager) -> None:
    unknown = await agents.get_agent(new_id())
    malformed = await agents.get_agent("not-a-uuid")
    assert unknown.error is not None and malformed.error is not None
    assert unknown.error.code is ErrorCode.AGENT_NOT_FOUND
    assert malformed.error.code is ErrorCode.VALIDATION_ERROR


async def test_deleted_agent_is_gone(agents: AgentManager) -> None:
    spec = (await agents.create_agent("Helper")).unwrap()
    assert (await agents.delete_agent(spec.id)).success
    again = await agents.delete_agent(spec.id)
    assert again.error is not None and again.error.code is ErrorCode.AGENT_NOT_FOUND
    assert not await agents.exists(spec.id)


async def test_resolve_builds_the_sdk_agent_and_caches_it(agents: AgentManager) -> None:
    spec = (
        await agents.create_agent(
            "Helper", "Be brief.", model="m1", model_settings={"temperature": 0.3}, tools=["lookup"]
        )
    ).unwrap()
    agent = await agents.resolve(spec.id)
    assert (agent.name, agent.instructions, agent.model) == ("Helper", "Be brief.", "m1")
    assert agent.model_settings.temperature == 0.3
    assert [tool.name for tool in agent.tools] == ["lookup"]
    assert await agents.resolve(spec.id) is agent
    assert agents.agent_id_of(agent) == spec.id


async def test_resolve_rebuilds_after_an_update(agents: AgentManager) -> None:
    spec = (await agents.create_agent("Helper", "Be brief.")).unwrap()
    before = await agents.resolve(spec.id)
    await agents.update_agent(spec.id, instructions="Be thorough.")
    after = await agents.resolve(spec.id)
    assert after is not before
    assert after.instructions == "Be thorough."


async def test_handoff_cycles_resolve_to_linked_agents(agents: AgentManager) -> None:
    a = (await agents.create_agent("A")).unwrap()
    b = (await agents.create_agent("B", handoffs=[a.id])).unwrap()
    await agents.update_agent(a.id, handoffs=[b.id])
    agent_a = await agents.resolve(a.id)
    agent_b = await agents.resolve(b.id)
    assert agent_a.handoffs == [agent_b]
    assert agent_b.handoffs == [agent_a]


class GatedStore(MemoryStore):
    """Holds ``get_agent`` of one id until ``release`` is set, saying when it got there."""

    def __init__(self) -> None:
        super().__init__()
        self.gated: str | None = None
        self.reached = anyio.Event()
        self.release = anyio.Event()

    async def get_agent(self, agent_id: str) -> AgentSpec | None:
        if agent_id == self.gated:
            self.reached.set()
            await self.release.wait()
        return await super().get_agent(agent_id)


async def test_resolve_survives_an_update_while_it_reads_the_store() -> None:
    store = GatedStore()
    agents = AgentManager(store)
    b = (await agents.create_agent("B")).unwrap()
    c = (await agents.create_agent("C")).unwrap()
    a = (await agents.create_agent("A", handoffs=[c.id, b.id])).unwrap()
    cached_b = await agents.resolve(b.id)  # found cached while A's graph is built
    store.gated = c.id
    resolved: list[Agent[Any]] = []

    async def resolve_a() -> None:
        resolved.append(await agents.resolve(a.id))

    async with anyio.create_task_group() as group:
        group.start_soon(resolve_a)
        with anyio.fail_after(5):
            await store.reached.wait()
        # Clears the cached agents while the build of A waits for C's spec.
        (await agents.update_agent(b.id, name="B2")).unwrap()
        store.release.set()

    [agent_a] = resolved
    assert agent_a.name == "A"
    assert [target.name for target in agent_a.handoffs] == ["C", "B"]
    assert agent_a.handoffs[1] is cached_b
    # What was built from specs read before the update is not cached.
    store.gated = None
    fresh = await agents.resolve(a.id)
    assert fresh is not agent_a
    assert [target.name for target in fresh.handoffs] == ["C", "B2"]
    assert agents.agent_id_of(fresh.handoffs[1]) == b.id


async def test_registered_agent_resolves_to_itself(agents: AgentManager) -> None:
    agent = Agent(name="Scripted", model=ScriptedModel([]))
    agent_id = agents.register(agent)
    assert await agents.resolve(agent_id) is agent
    assert await agents.exists(agent_id)
    assert agents.agent_id_of(agent) == agent_id
    fixed = new_id()
    assert agents.register(Agent(name="Fixed"), agent_id=fixed) == fixed


def test_registering_with_a_malformed_id_raises() -> None:
    from chatruntime import InvalidInputError

    with pytest.raises(InvalidInputError):
        AgentManager(MemoryStore()).register(Agent(name="X"), agent_id="x/../y")
