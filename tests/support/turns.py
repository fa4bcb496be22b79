"""Turn tests' toolkit: a manager over a fresh store, scripted agents, stored-state snapshots."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import pytest
from agents import Agent, RunConfig, Runner, function_tool
from agents.items import TResponseInputItem
from agents.testing import ModelCall, ModelStep, ScriptedModel
from agents.usage import Usage

from chatruntime import AgentManager, ChatSession, OfflineModelProvider, SessionManager
from chatruntime.stores import SessionStore
from support.stores import open_store_for_test, store_params

STORE_KINDS = store_params("memory", "file")
"""The kinds turn tests run on (``pytest.param``s for ``@pytest.fixture(params=...)``)."""


@function_tool
def lookup(n: int) -> str:
    """Look a number up."""
    return f"result {n}"


@function_tool
def crash(n: int) -> str:
    """A tool that always raises (the model is told it failed)."""
    raise ValueError(f"boom {n}")


@function_tool(failure_error_function=None)
def crash_hard(n: int) -> str:
    """A tool that always raises, with no error handler: the run stops."""
    raise ValueError(f"boom {n}")


def usage(input_tokens: int, output_tokens: int, requests: int = 1) -> Usage:
    return Usage(
        requests=requests,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        total_tokens=input_tokens + output_tokens,
    )


def slow_step(seconds: float, *output: Any) -> ModelStep:
    """A model step that answers ``output`` after ``seconds``."""

    async def respond(call: ModelCall) -> Any:
        await anyio.sleep(seconds)
        return list(output)

    return ModelStep.respond(respond)


@dataclass
class TurnHarness:
    kind: str
    root: Path
    store: SessionStore
    agents: AgentManager
    manager: SessionManager
    models: list[ScriptedModel] = field(default_factory=list)

    def agent(self, name: str = "Helper", *steps: Any, **agent_options: Any) -> str:
        """Register an agent answering with a ``ScriptedModel`` of ``steps``; its id."""
        model = ScriptedModel(steps)
        self.models.append(model)
        return self.agents.register(Agent(name=name, model=model, **agent_options))

    async def session(self, agent_id: str, name: str = "Chat") -> str:
        return (await self.manager.create_session(agent_id, name)).unwrap().id

    async def stored(self, session_id: str) -> ChatSession:
        session = await self.store.get_session(session_id)
        assert session is not None
        return session

    async def snapshot(self, session_id: str) -> Any:
        """Everything stored about a session: its files' bytes (file store) or its record."""
        session = await self.store.get_session(session_id)
        cached = (await self.manager.get_session(session_id)).unwrap()
        record = None if session is None else session.model_dump(mode="json")
        files: dict[str, bytes] = {}
        if self.kind == "file":
            sessions = self.root / "store" / "sessions"
            files = {
                str(path.relative_to(sessions)): path.read_bytes()
                for path in sorted(sessions.rglob("*"))
                if path.is_file()
            }
        return record, cached.model_dump(mode="json"), files


@asynccontextmanager
async def open_turn_harness(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest, **manager_options: Any
) -> AsyncIterator[TurnHarness]:
    async with open_store_for_test(kind, tmp_path, request) as store:
        # Scripted agents carry their own models; the provider only guards against the
        # environment pointing the manager at a real API.
        agents = AgentManager(store, model_provider=OfflineModelProvider())
        manager = SessionManager(store, agents, **manager_options)
        (await manager.initialize()).unwrap()
        try:
            yield TurnHarness(kind, tmp_path, store, agents, manager)
        finally:
            await manager.close()


async def sdk_chained_inputs(
    agent: Agent[Any], messages: Sequence[str]
) -> tuple[list[TResponseInputItem], list[list[TResponseInputItem]]]:
    """What the SDK itself sends when each turn continues ``result.to_input_list()``.

    Returns:
        The last ``to_input_list()`` and, per turn, the input it started from.
    """
    history: list[TResponseInputItem] = []
    starts: list[list[TResponseInputItem]] = []
    for text in messages:
        start: list[TResponseInputItem] = [*history, {"content": text, "role": "user"}]
        starts.append(start)
        result = await Runner.run(agent, start, run_config=RunConfig(tracing_disabled=True))
        history = result.to_input_list()
    return history, starts
