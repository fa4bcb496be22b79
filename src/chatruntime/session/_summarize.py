"""The ``Summarize`` window: past a token budget, older turns are folded into one summary.

Before a turn whose input would pass the budget, a summarizer agent writes a summary of
the previous summary (if any) and the oldest turns not yet covered; the summary is stored
once, as a ``system`` message item marked in its ``provider_data`` (see
:data:`~chatruntime.session._replay.SUMMARY_KEY`), in the turn's own write, before the
user's message. From then on the model is sent the latest summary in place of everything it
covers, then the items after it. The stored history keeps every item: a summary only
changes what the model sees.

Folds happen at the start of a person's message, so a tool call is never separated from its
output, nor a reasoning item from what followed it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

import anyio
from agents import Agent, RunConfig, Runner

from ..models import (
    FunctionCallItem,
    FunctionCallResultItem,
    HandoffItem,
    HistoryItem,
    ItemUsage,
    MessageItem,
    ProviderItem,
    ReasoningItem,
    now_ms,
)
from ._replay import SUMMARY_KEY, item_inputs, summary_of
from ._turn import turn_error
from ._window import WindowPolicy, opens_step

SUMMARY_PREFIX: Final = "Summary of the earlier conversation:\n"
"""What the stored summary's text starts with, so the model reads it as what it is."""

SUMMARIZER_INSTRUCTIONS: Final = (
    "You keep the memory of a long conversation between a user and an assistant. Write a "
    "summary that lets the assistant go on as if it had read everything: facts, names, "
    "numbers, decisions, preferences the user stated, tool results that matter, and open "
    "questions. Write plain prose, no preamble, at most {words} words."
)
"""The default summarizer's instructions; ``{words}`` is the summary's word budget."""

_FIRST_READ: Final = 64
_TRANSCRIPT_VALUE_MAX: Final = 2_000


@dataclass(frozen=True)
class Summarize(WindowPolicy):
    """Keep the model input within ``budget_tokens`` by folding older turns into a summary.

    Tokens are estimated as :class:`TokenBudget` does (the JSON of each item as sent,
    divided by ``chars_per_token``). When the latest summary, the items after it and the new
    message would pass the budget, the oldest of those turns are folded into a new summary,
    keeping the last ``keep_last`` turns as they are (fewer when they alone would not fit).
    A summary longer than ``summary_tokens`` is cut there. If the input still does not fit
    (one huge turn), its oldest items are left out as :class:`TokenBudget` would.

    The summarizer runs on the turn's model provider, inside the turn's time limit; if it
    fails, the turn fails with the model's error and nothing is stored.

    Example:
        >>> manager = SessionManager(store, agents, window=Summarize(8_000, keep_last=4))
        >>> manager.set_window(agent_id, Summarize(8_000, model="gpt-4.1-mini"))

    Args:
        budget_tokens: The most tokens of history and new message sent to the model.
        summarizer: The agent that writes summaries (its instructions and model); by default
            one with :data:`SUMMARIZER_INSTRUCTIONS` on ``model``.
        model: The default summarizer's model (a name for the turn's provider); ``None``
            uses the provider's default model. Ignored when ``summarizer`` is given.
        keep_last: Turns (a person's message and what answered it) kept verbatim after a
            fold.
        summary_tokens: The longest summary kept (default: a quarter of the budget).
        chars_per_token: Characters per estimated token.
    """

    budget_tokens: int
    summarizer: Agent[Any] | None = None
    model: str | None = None
    keep_last: int = 2
    summary_tokens: int | None = None
    chars_per_token: float = 4.0

    def __post_init__(self) -> None:
        if not _is_count(self.budget_tokens, 1):
            raise ValueError(
                f"budget_tokens must be an integer of at least 1, got {self.budget_tokens!r}"
            )
        if not _is_count(self.keep_last, 0):
            raise ValueError(f"keep_last must be an integer of at least 0, got {self.keep_last!r}")
        if self.summary_tokens is not None and not _is_count(self.summary_tokens, 1):
            raise ValueError(
                f"summary_tokens must be an integer of at least 1, got {self.summary_tokens!r}"
            )
        if not self.chars_per_token > 0:
            raise ValueError(f"chars_per_token must be positive, got {self.chars_per_token!r}")
        if self.summarizer is not None and not isinstance(self.summarizer, Agent):
            raise ValueError(
                f"summarizer must be an agents.Agent, got {type(self.summarizer).__name__}"
            )

    # -- measuring ------------------------------------------------------------------------

    @property
    def summary_budget(self) -> int:
        """The most tokens a stored summary may take."""
        if self.summary_tokens is not None:
            return self.summary_tokens
        return max(1, self.budget_tokens // 4)

    def estimate(self, text: str) -> int:
        """The estimated token count of ``text``."""
        return math.ceil(len(text) / self.chars_per_token)

    def _cost(self, item: HistoryItem) -> int:
        return sum(
            self.estimate(json.dumps(sent, ensure_ascii=False, separators=(",", ":")))
            for sent in item_inputs(item)
        )

    def _message_cost(self, new_message: str) -> int:
        sent = {"content": new_message, "role": "user"}
        return self.estimate(json.dumps(sent, ensure_ascii=False, separators=(",", ":")))

    # -- the window -----------------------------------------------------------------------

    def cut(self, history: Sequence[HistoryItem], new_message: str) -> int:
        # apply() is overridden: the kept items are not a suffix of the history.
        return _covered(history)[1]

    def first_read(self) -> int | None:
        return _FIRST_READ

    def tail_suffices(self, tail: Sequence[HistoryItem], new_message: str) -> bool:
        # Everything after the latest summary's last covered item must be in the tail: the
        # summary and the item it names are.
        position, _ = _covered(tail)
        if position is None:
            return False
        through = summary_of(tail[position]) or {}
        return any(item.id == through.get("through") for item in tail[:position])

    def apply(self, history: Sequence[HistoryItem], new_message: str) -> list[HistoryItem]:
        """The latest summary (sent as a system message), then the items it does not cover;
        the oldest of those left out if they still pass the budget."""
        summary, uncovered = self._split(history)
        head: list[HistoryItem] = []
        remaining = self.budget_tokens - self._message_cost(new_message)
        if summary is not None:
            head = [summary.model_copy(update={"provider_data": None})]
            remaining -= self._cost(head[0])
        start = len(uncovered)
        while start > 0:
            cost = self._cost(uncovered[start - 1])
            if cost > remaining:
                break
            remaining -= cost
            start -= 1
        while start < len(uncovered) and not opens_step(uncovered, start):
            start += 1
        return [*head, *uncovered[start:]]

    async def before_turn(
        self, history: Sequence[HistoryItem], new_message: str, *, run_config: RunConfig
    ) -> list[HistoryItem]:
        """A new summary when the next input would pass the budget (else nothing)."""
        summary, uncovered = self._split(history)
        fixed = self._message_cost(new_message)
        current = (self._cost(_unmarked(summary)) if summary is not None else 0) + sum(
            self._cost(item) for item in uncovered
        )
        if fixed + current <= self.budget_tokens:
            return []
        fold = self._fold_point(uncovered, fixed + self.summary_budget)
        if fold == 0:
            return []
        folded = uncovered[:fold]
        text, usage = await self._summarize(summary, folded, run_config)
        return [
            MessageItem(
                role="system",
                content=SUMMARY_PREFIX + text,
                usage=usage,
                provider_data={SUMMARY_KEY: {"through": folded[-1].id, "items": len(folded)}},
                timestamp=now_ms(),
            )
        ]

    # -- folding ---------------------------------------------------------------------------

    def _split(
        self, history: Sequence[HistoryItem]
    ) -> tuple[MessageItem | None, list[HistoryItem]]:
        """The latest summary and the items it does not cover (summaries left out)."""
        position, start = _covered(history)
        summary = history[position] if position is not None else None
        uncovered = [item for item in history[start:] if summary_of(item) is None]
        assert summary is None or isinstance(summary, MessageItem)
        return summary, uncovered

    def _fold_point(self, uncovered: Sequence[HistoryItem], fixed: int) -> int:
        """How many of the oldest uncovered items to fold: up to the start of the last
        ``keep_last`` turns, or of fewer turns when those would not fit with ``fixed``."""
        starts = [index for index in range(len(uncovered)) if _opens_turn(uncovered, index)]
        if not starts:
            return 0
        suffix_costs: list[int] = [0] * (len(uncovered) + 1)
        for index in range(len(uncovered) - 1, -1, -1):
            suffix_costs[index] = suffix_costs[index + 1] + self._cost(uncovered[index])
        kept_turns = min(self.keep_last, len(starts))
        candidates = [starts[len(starts) - n] for n in range(kept_turns, 0, -1)]
        for point in candidates:
            if point > 0 and fixed + suffix_costs[point] <= self.budget_tokens:
                return point
        # Not even the last turn fits beside the summary: fold every complete turn.
        return starts[-1] if starts[-1] > 0 and self.keep_last else len(uncovered)

    async def _summarize(
        self,
        previous: MessageItem | None,
        folded: Sequence[HistoryItem],
        run_config: RunConfig,
    ) -> tuple[str, ItemUsage]:
        words = max(10, int(self.summary_budget * self.chars_per_token / 6))
        agent = self.summarizer or Agent(
            name="Summarizer",
            instructions=SUMMARIZER_INSTRUCTIONS.format(words=words),
            model=self.model,
        )
        parts = []
        if previous is not None:
            parts.append("The summary so far:\n" + _summary_text(previous))
        parts.append("The conversation to fold into the summary:\n" + transcript(folded))
        config = RunConfig(
            model_provider=run_config.model_provider,
            tracing_disabled=run_config.tracing_disabled,
            trace_include_sensitive_data=run_config.trace_include_sensitive_data,
            workflow_name="chatruntime summary",
            group_id=run_config.group_id,
        )
        try:
            result = await Runner.run(agent, "\n\n".join(parts), run_config=config, max_turns=1)
        except anyio.get_cancelled_exc_class():
            raise
        except Exception as error:
            raise turn_error(error) from error
        text = self._fit(str(result.final_output or "").strip())
        usage = result.context_wrapper.usage
        return text, ItemUsage(
            requests=usage.requests,
            input_tokens=usage.input_tokens,
            output_tokens=usage.output_tokens,
            total_tokens=usage.total_tokens,
        )

    def _fit(self, text: str) -> str:
        """``text`` cut so that the summary message it makes costs at most
        :attr:`summary_budget` tokens as sent."""
        while text:
            sent = {"content": SUMMARY_PREFIX + text, "role": "system"}
            over = (
                self.estimate(json.dumps(sent, ensure_ascii=False, separators=(",", ":")))
                - self.summary_budget
            )
            if over <= 0:
                return text
            text = text[: max(0, len(text) - math.ceil(over * self.chars_per_token) - 1)]
            text = text[:-1] + "…" if text else ""
        return text


def transcript(items: Sequence[HistoryItem]) -> str:
    """``items`` as plain text for the summarizer: one line per message, call or result."""
    lines: list[str] = []
    for item in items:
        if isinstance(item, MessageItem):
            lines.append(f"{item.role}: {_message_text(item)}")
        elif isinstance(item, FunctionCallItem):
            lines.append(f"tool call {item.name}({_short(item.arguments)})")
        elif isinstance(item, FunctionCallResultItem):
            lines.append(f"tool result {item.name or item.call_id}: {_short(item.output_text)}")
        elif isinstance(item, HandoffItem):
            lines.append(f"handoff from {item.from_agent_id} to {item.to_agent_id}")
        elif isinstance(item, ProviderItem):
            raw = json.dumps(item.item, ensure_ascii=False, separators=(",", ":"))
            lines.append(f"{item.kind}: {_short(raw)}")
        elif isinstance(item, ReasoningItem):
            continue
    return "\n".join(lines)


def _message_text(item: MessageItem) -> str:
    if isinstance(item.content, str):
        return _short(item.content)
    pieces: list[str] = []
    for part in item.content:
        kind = part.get("type")
        if kind == "input_image":
            pieces.append("[image]")
        elif kind == "input_file":
            pieces.append(f"[file {part.get('filename') or part.get('file_id') or ''}]".strip())
        else:
            pieces.append(str(part.get("text") or part.get("refusal") or ""))
    return _short(" ".join(piece for piece in pieces if piece))


def _short(text: str) -> str:
    if len(text) <= _TRANSCRIPT_VALUE_MAX:
        return text
    return text[: _TRANSCRIPT_VALUE_MAX - 1] + "…"


def _summary_text(item: MessageItem) -> str:
    text = item.text
    return text[len(SUMMARY_PREFIX) :] if text.startswith(SUMMARY_PREFIX) else text


def _unmarked(summary: MessageItem) -> MessageItem:
    return summary.model_copy(update={"provider_data": None})


def _covered(history: Sequence[HistoryItem]) -> tuple[int | None, int]:
    """The position of the latest summary (``None``: none) and the index of the first item
    it does not cover (0 without a summary, or when its last item is not in ``history``)."""
    for position in range(len(history) - 1, -1, -1):
        marker = summary_of(history[position])
        if marker is None:
            continue
        through = marker.get("through")
        for index in range(position - 1, -1, -1):
            if history[index].id == through:
                return position, index + 1
        return position, 0
    return None, 0


def _opens_turn(items: Sequence[HistoryItem], index: int) -> bool:
    """Whether a person's message starts at ``index`` (a safe place to fold up to)."""
    item = items[index]
    return isinstance(item, MessageItem) and item.role == "user" and opens_step(items, index)


def _is_count(value: object, least: int) -> bool:
    return not isinstance(value, bool) and isinstance(value, int) and value >= least
