"""A turn run under its window's :meth:`~WindowPolicy.before_turn`: the one place a window
may call a model (a :class:`Summarize` window's summarizer) and store items of its own."""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable, Sequence

from ..models import HistoryItem, MessageItem, SessionContext
from ._turn import TurnOutcome, TurnRequest


async def run_windowed(
    request: TurnRequest, run: Callable[[TurnRequest], Awaitable[TurnOutcome]]
) -> TurnOutcome:
    """Run ``request`` with ``run`` after its window's ``before_turn``.

    The items ``before_turn`` returns join the history the turn's input is built from, and
    lead the outcome's items, so the turn's one write stores them before the user's message
    (and a failed turn stores neither). Tokens the window's model calls spent count in the
    session's statistics.

    Args:
        request: The turn, taken under the session's lock.
        run: Runs a turn (``run_turn``, or a streamed turn).

    Returns:
        The outcome, its items led by what the window added.
    """
    window = request.window
    if window is None:
        return await run(request)
    added = await window.before_turn(request.history, request.text, run_config=request.run_config)
    if not added:
        return await run(request)
    outcome = await run(dataclasses.replace(request, history=[*request.history, *added]))
    return dataclasses.replace(
        outcome, items=[*added, *outcome.items], context=_with_usage_of(outcome.context, added)
    )


def _with_usage_of(context: SessionContext, added: Sequence[HistoryItem]) -> SessionContext:
    """The statistics with the tokens and requests spent making ``added`` (a summary)."""
    spent = [item.usage for item in added if isinstance(item, MessageItem) and item.usage]
    if not spent:
        return context
    return context.model_copy(
        update={
            "requests": context.requests + sum(usage.requests for usage in spent),
            "input_tokens": context.input_tokens + sum(usage.input_tokens for usage in spent),
            "output_tokens": context.output_tokens + sum(usage.output_tokens for usage in spent),
            "total_tokens": context.total_tokens + sum(usage.total_tokens for usage in spent),
        }
    )
