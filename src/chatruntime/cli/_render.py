"""How the REPL shows things: sessions, history, statistics, agents, and a reply as it streams.

Everything here turns data into text and nothing else, so the formats can be tested exactly.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TextIO

from ..models import (
    AgentSpec,
    ChatSession,
    Checkpoint,
    ErrorInfo,
    ErrorOutput,
    FunctionCallItem,
    FunctionCallResultItem,
    HandoffItem,
    HistoryItem,
    MessageItem,
    ReasoningItem,
    SessionHeader,
)
from ..stores import CorruptRecord

SNIPPET_LENGTH = 200
"""Tool arguments and outputs longer than this are cut, so a big result does not flood the
screen; ``/history`` shows the same cut text."""

ID_PREFIX_LENGTH = 8


def plural(count: int, word: str) -> str:
    """``"1 message"``, ``"2 messages"``."""
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


def snippet(text: str, limit: int = SNIPPET_LENGTH) -> str:
    """``text`` on one line, cut to ``limit`` characters with ``...`` when longer."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def session_summary(number: int, session: SessionHeader) -> str:
    """``session 2: Planning (active, 4 messages)``."""
    messages = plural(session.context.total_messages, "message")
    return f"session {number}: {session.name} ({session.status}, {messages})"


def session_row(number: int, session: SessionHeader, *, current: bool) -> str:
    """One line of ``/list``: ``* 2. Planning  (active, 4 messages)  3f2a9c1e``."""
    marker = "*" if current else " "
    messages = plural(session.context.total_messages, "message")
    short_id = session.id[:ID_PREFIX_LENGTH]
    return f"{marker} {number}. {session.name}  ({session.status}, {messages})  {short_id}"


def checkpoint_summary(number: int, checkpoint: Checkpoint) -> str:
    """``checkpoint 2: before the quiz (4 messages)``; a restore's undo point says so."""
    label = checkpoint.label or "(no label)"
    details = [plural(checkpoint.header.context.total_messages, "message")]
    if checkpoint.kind == "restore":
        details.append("saved by a restore, to undo it")
    return f"checkpoint {number}: {label} ({', '.join(details)})"


def checkpoint_row(number: int, checkpoint: Checkpoint) -> str:
    """One line of ``/checkpoints``: ``  2. before the quiz  (4 messages)  3f2a9c1e``."""
    label = checkpoint.label or "(no label)"
    details = [plural(checkpoint.header.context.total_messages, "message")]
    if checkpoint.kind == "restore":
        details.append("saved by a restore, to undo it")
    short_id = checkpoint.id[:ID_PREFIX_LENGTH]
    return f"  {number}. {label}  ({', '.join(details)})  {short_id}"


def corrupt_line(record: CorruptRecord) -> str:
    """``warning: cannot read sessions/3f2a.../9c1e....json: not valid JSON``."""
    return f"warning: cannot read {record.location}: {record.reason}"


def error_line(error: ErrorInfo | None) -> str:
    """``error: SESSION_NOT_ACTIVE: session ... is paused``."""
    if error is None:
        return "error: INTERNAL_ERROR: the call failed without saying why"
    return f"error: {error.code}: {error.message}"


def history_lines(items: list[HistoryItem], agent_names: Mapping[str, str]) -> list[str]:
    """The lines ``/history`` prints for ``items``, oldest first.

    Args:
        items: History items of one session.
        agent_names: Agent id to name, for naming who answered.
    """
    lines: list[str] = []
    for item in items:
        if isinstance(item, MessageItem):
            lines.append(f"{_speaker(item, agent_names)}: {item.text}")
        elif isinstance(item, FunctionCallItem):
            lines.append(tool_call_line(item.name, item.arguments))
        elif isinstance(item, FunctionCallResultItem):
            failed = isinstance(item.output, ErrorOutput) or item.status == "failed"
            lines.append(tool_result_line(item.output_text, failed=failed))
        elif isinstance(item, HandoffItem):
            lines.append(
                handoff_line(
                    _agent_name(item.from_agent_id, agent_names),
                    _agent_name(item.to_agent_id, agent_names),
                )
            )
        elif isinstance(item, ReasoningItem):
            lines.append(reasoning_line(item))
    return lines


def tool_call_line(name: str, arguments: str) -> str:
    """``  [tool call] calculate {"expression":"6*7"}``."""
    shown = snippet(arguments)
    return f"  [tool call] {name} {shown}" if shown else f"  [tool call] {name}"


def tool_result_line(output: str, *, failed: bool) -> str:
    """``  [tool result] 42``, or ``  [tool error] ...`` when the tool failed."""
    label = "tool error" if failed else "tool result"
    return f"  [{label}] {snippet(output)}"


def handoff_line(from_name: str, to_name: str) -> str:
    """``  [handoff] Triage -> Weather``."""
    return f"  [handoff] {from_name} -> {to_name}"


def reasoning_line(item: ReasoningItem) -> str:
    """``  [reasoning] <summary>``, or a note that the reasoning is not readable."""
    summary = " ".join(str(part.get("text", "")) for part in item.summary).strip()
    return f"  [reasoning] {snippet(summary)}" if summary else "  [reasoning] (not shown)"


def stats_lines(number: int, session: ChatSession, agent_names: Mapping[str, str]) -> list[str]:
    """The lines ``/stats`` prints."""
    context = session.context
    last_agent = (
        _agent_name(context.last_agent_id, agent_names) if context.last_agent_id else "none"
    )
    return [
        f"session {number}: {session.name} ({session.status})",
        f"messages: {context.total_messages}, turns: {context.total_turns}, "
        f"tool calls: {context.total_function_calls}, handoffs: {context.total_handoffs}",
        f"tokens: {context.total_tokens} ({context.input_tokens} input, "
        f"{context.output_tokens} output) in {plural(context.requests, 'request')}",
        f"last agent: {last_agent}",
        f"id: {session.id}",
    ]


def agent_row(spec: AgentSpec, *, current: bool) -> str:
    """One line of ``/agents``: ``* Assistant  (default model; tools: calculate)  3f2a9c1e``."""
    marker = "*" if current else " "
    model = spec.model or "default model"
    tools = ", ".join(spec.tools) or "none"
    return f"{marker} {spec.name}  ({model}; tools: {tools})  {spec.id[:ID_PREFIX_LENGTH]}"


def _agent_name(agent_id: str, agent_names: Mapping[str, str]) -> str:
    return agent_names.get(agent_id, f"agent {agent_id[:ID_PREFIX_LENGTH]}")


def _speaker(item: MessageItem, agent_names: Mapping[str, str]) -> str:
    if item.role == "user":
        return "you"
    if item.role != "assistant":
        return item.role
    return _agent_name(item.agent_id, agent_names) if item.agent_id else "assistant"


class ReplyPrinter:
    """Writes one reply as it streams: text as it comes, tool calls and handoffs on their own
    lines, each run of text opened with the name of the agent speaking.

    Args:
        out: Where to write; flushed after every piece so text shows as it arrives.
        speaker: The name of the agent expected to answer.
    """

    def __init__(self, out: TextIO, speaker: str) -> None:
        self._out = out
        self.speaker = speaker
        self._mid_line = False
        self.wrote_text = False

    def text(self, delta: str) -> None:
        """A piece of the answer."""
        if not delta:
            return
        if not self._mid_line:
            self._write(f"{self.speaker}: ")
            self._mid_line = True
        self._write(delta)
        self.wrote_text = True

    def line(self, text: str) -> None:
        """A line of its own (a tool call, a handoff, an error), after any text in progress."""
        self.end_line()
        self._write(text + "\n")

    def end_line(self) -> None:
        """Finish the text in progress, if any."""
        if self._mid_line:
            self._write("\n")
            self._mid_line = False

    def _write(self, text: str) -> None:
        self._out.write(text)
        self._out.flush()
