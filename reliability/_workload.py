"""The turns the trials write, and the checks a stored history must pass.

Turns run on the library's offline model (no network, deterministic), through an agent with
one function tool, so a turn stores a user message, and either a reply or a tool call, its
result and a reply. :func:`history_problems` checks what every stored history must be
whatever happened to the process that wrote it: whole turns only, statistics that match.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from agents import Agent, RunConfig, function_tool

from chatruntime import AgentManager, ChatSession, OfflineModel, OfflineModelProvider
from chatruntime.models import FunctionCallItem, FunctionCallResultItem, MessageItem

AGENT_ID = "7e1ab1e0-0000-4000-8000-000000000001"
"""The registered agent's id: the same in every process, so sessions outlive their writer."""

RUN_CONFIG = RunConfig(tracing_disabled=True)


@function_tool
def record(tag: str, note: str) -> str:
    """Record a note under a tag."""
    return f"recorded {tag} ({len(note)} characters)"


def register_agent(agents: AgentManager, *, delay: float = 0.0) -> str:
    """Register the trials' agent (offline model, the ``record`` tool) under :data:`AGENT_ID`."""
    agent = Agent(
        name="Recorder",
        instructions="Answer briefly; record notes when asked.",
        model=OfflineModel(delay=delay),
        tools=[record],
    )
    return agents.register(agent, agent_id=AGENT_ID)


def agent_manager(store: Any, *, delay: float = 0.0) -> AgentManager:
    """An ``AgentManager`` over ``store`` whose only model is the offline one."""
    agents = AgentManager(store, model_provider=OfflineModelProvider(delay=delay))
    register_agent(agents, delay=delay)
    return agents


def turn_content(tag: str, number: int, padding: int) -> str:
    """The user message of turn ``number``: every third one asks for a tool call.

    ``tag`` makes the message unique across writers, so a stored turn is found by its text.
    """
    note = ("lorem ipsum dolor sit amet " * (padding // 27 + 1))[:padding]
    if number % 3 == 2:
        arguments = json.dumps({"tag": tag, "note": note}, separators=(",", ":"))
        return f"/tool record {arguments}"
    return f"{tag} {note}"


@dataclass(frozen=True)
class Acknowledged:
    """A turn whose ``send_message`` returned success: what a reader must find."""

    session_id: str
    content: str
    reply_id: str

    def line(self) -> str:
        return json.dumps(
            {"session": self.session_id, "content": self.content, "reply": self.reply_id}
        )

    @classmethod
    def parse(cls, line: str) -> Acknowledged:
        data = json.loads(line)
        return cls(data["session"], data["content"], data["reply"])


def history_problems(session: ChatSession) -> list[str]:
    """What is wrong with a stored history: a partial turn or statistics that disagree.

    A turn starts at a user message; it is whole when it ends with an assistant message and
    every function call in it has its result (and every result its call).
    """
    problems: list[str] = []
    turns: list[list[Any]] = []
    for item in session.history:
        if isinstance(item, MessageItem) and item.role == "user":
            turns.append([item])
        elif not turns:
            problems.append(f"item {item.id} ({item.type}) comes before any user message")
        else:
            turns[-1].append(item)
    for turn in turns:
        user = turn[0]
        last = turn[-1]
        if not (isinstance(last, MessageItem) and last.role == "assistant"):
            problems.append(f"the turn of user message {user.id} has no reply (partial turn)")
        calls = {item.call_id for item in turn if isinstance(item, FunctionCallItem)}
        results = {item.call_id for item in turn if isinstance(item, FunctionCallResultItem)}
        if calls != results:
            problems.append(
                f"the turn of user message {user.id}: calls without result "
                f"{sorted(calls - results)}, results without call {sorted(results - calls)}"
            )
    context = session.context
    messages = sum(
        1
        for item in session.history
        if isinstance(item, MessageItem) and item.role in ("user", "assistant")
    )
    function_calls = sum(1 for item in session.history if isinstance(item, FunctionCallItem))
    expected = {
        "total_messages": messages,
        "total_function_calls": function_calls,
        "total_turns": len(turns),
    }
    for name, count in expected.items():
        if getattr(context, name) != count:
            problems.append(f"stats {name}={getattr(context, name)} but the history holds {count}")
    return problems


def missing_turns(session: ChatSession, acknowledged: list[Acknowledged]) -> list[Acknowledged]:
    """The acknowledged turns of ``session`` that its history does not hold whole (the user
    message with that text, and the reply with that id after it)."""
    positions: dict[str, int] = {}
    for index, item in enumerate(session.history):
        if isinstance(item, MessageItem) and item.role == "user" and isinstance(item.content, str):
            positions.setdefault(item.content, index)
    reply_positions = {item.id: index for index, item in enumerate(session.history)}
    missing = []
    for turn in acknowledged:
        start = positions.get(turn.content)
        reply = reply_positions.get(turn.reply_id)
        if start is None or reply is None or reply <= start:
            missing.append(turn)
    return missing
