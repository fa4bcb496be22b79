"""Input windows: how much of a long history the model is sent.

A window trims the oldest items of the model input; the stored history stays complete. It
never splits a model step: the kept part starts at a message or a reasoning item that opens
a step, never at a tool output, never between a tool call and its output, and never between
a reasoning item and the calls or message that followed it (reasoning models reject those).
The new user message is always sent, even when it alone is over the budget.
"""

from __future__ import annotations

import abc
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass

from agents import RunConfig

from ..models import (
    FunctionCallItem,
    FunctionCallResultItem,
    HandoffItem,
    HistoryItem,
    MessageItem,
    ProviderItem,
    ReasoningItem,
)
from ._replay import item_inputs


class WindowPolicy(abc.ABC):
    """Chooses which stored items the next model call sees.

    Subclass it and implement :meth:`cut` for a policy of your own; :meth:`apply` moves the
    cut forward to the next place that splits nothing.
    """

    @abc.abstractmethod
    def cut(self, history: Sequence[HistoryItem], new_message: str) -> int:
        """The index of the oldest item to keep, before it is moved to a safe place.

        Args:
            history: The stored history, oldest first.
            new_message: The text of the message this turn sends.

        Returns:
            An index from 0 (keep all) to ``len(history)`` (keep none).
        """

    def first_read(self) -> int | None:
        """How many of the last stored items to read first for a turn (``None``: all).

        A policy that needs only the tail of a long history says how much, so a session
        not in the manager's cache is read no further; :meth:`tail_suffices` tells whether
        more is needed. The default reads the whole history.
        """
        return None

    def tail_suffices(self, tail: Sequence[HistoryItem], new_message: str) -> bool:
        """Whether :meth:`apply` on ``tail`` (the last items of a longer history) keeps the
        same items as on the whole history; when not, the manager reads twice as many."""
        return True

    async def before_turn(
        self, history: Sequence[HistoryItem], new_message: str, *, run_config: RunConfig
    ) -> list[HistoryItem]:
        """Items to store before a turn's own, made with a model call if need be (a
        :class:`~chatruntime.session.Summarize` window's summary). The default makes none.

        The manager calls it under the session's lock, before the turn's input is built; the
        items it returns are stored in the turn's write, before the user's message, and
        :meth:`apply` sees them at the end of ``history``.

        Args:
            history: The stored history, or as much of its end as :meth:`tail_suffices`
                asked for.
            new_message: The text of the message this turn sends.
            run_config: The turn's run configuration (its model provider included).
        """
        return []

    def apply(self, history: Sequence[HistoryItem], new_message: str) -> list[HistoryItem]:
        """The items to send: a suffix of ``history`` that splits no call or step."""
        start = max(0, min(self.cut(history, new_message), len(history)))
        while start < len(history) and not opens_step(history, start):
            start += 1
        return list(history[start:])


@dataclass(frozen=True)
class LastItems(WindowPolicy):
    """Send at most the last ``n`` stored items (fewer when the boundary would split a step).

    Example:
        >>> manager = SessionManager(store, agents, window=LastItems(40))
    """

    n: int

    def __post_init__(self) -> None:
        if isinstance(self.n, bool) or not isinstance(self.n, int) or self.n < 0:
            raise ValueError(f"n must be an integer of at least 0, got {self.n!r}")

    def cut(self, history: Sequence[HistoryItem], new_message: str) -> int:
        return len(history) - self.n

    def first_read(self) -> int | None:
        # One item before the window, which decides whether its first item opens a step.
        return self.n + 1

    def tail_suffices(self, tail: Sequence[HistoryItem], new_message: str) -> bool:
        return len(tail) > self.n


@dataclass(frozen=True)
class TokenBudget(WindowPolicy):
    """Send the most recent items that fit in about ``max_tokens`` tokens.

    Tokens are estimated from the length of each item as sent (its JSON), divided by
    ``chars_per_token``: rough, cheap and model-independent. The new message counts
    against the budget first.

    Example:
        >>> manager.set_window(agent_id, TokenBudget(8_000))
    """

    max_tokens: int
    chars_per_token: float = 4.0

    def __post_init__(self) -> None:
        if isinstance(self.max_tokens, bool) or not isinstance(self.max_tokens, int):
            raise ValueError(f"max_tokens must be an integer, got {self.max_tokens!r}")
        if self.max_tokens < 1:
            raise ValueError(f"max_tokens must be at least 1, got {self.max_tokens!r}")
        if not self.chars_per_token > 0:
            raise ValueError(f"chars_per_token must be positive, got {self.chars_per_token!r}")

    def estimate(self, text: str) -> int:
        """The estimated token count of ``text``."""
        return math.ceil(len(text) / self.chars_per_token)

    def cut(self, history: Sequence[HistoryItem], new_message: str) -> int:
        remaining = self.max_tokens - self.estimate(new_message)
        start = len(history)
        while start > 0:
            cost = self.estimate(_sent_text(history[start - 1]))
            if cost > remaining:
                break
            remaining -= cost
            start -= 1
        return start

    def first_read(self) -> int | None:
        return _TOKEN_BUDGET_FIRST_READ

    def tail_suffices(self, tail: Sequence[HistoryItem], new_message: str) -> bool:
        # The budget ran out inside the tail, with an item before the cut to tell whether
        # the cut opens a step.
        return self.cut(tail, new_message) > 0


_TOKEN_BUDGET_FIRST_READ = 64


def _sent_text(item: HistoryItem) -> str:
    return "".join(
        json.dumps(sent, ensure_ascii=False, separators=(",", ":")) for sent in item_inputs(item)
    )


def opens_step(history: Sequence[HistoryItem], index: int) -> bool:
    """Whether the kept input may start at ``index`` without splitting anything."""
    item = history[index]
    if isinstance(item, FunctionCallResultItem):
        return False
    if index == 0:
        return True
    previous = history[index - 1]
    if isinstance(item, MessageItem) and item.role != "assistant":
        return True
    # A call or message right after a reasoning item or another call belongs to the same
    # model response as they do.
    return not isinstance(previous, ReasoningItem | FunctionCallItem | HandoffItem | ProviderItem)
