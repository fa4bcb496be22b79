"""The conversation every benchmark stores: the same turns in our item shape and the SDK's.

A turn is four history items (a user message, a tool call, its result, an assistant reply),
shaped like a real tool-using turn, plus the updated header, as the manager stores it. The
SDK side stores the same four items as Responses API input items, which is what the SDK's
own session stores keep.
"""

from __future__ import annotations

import uuid
from typing import Any

from agents.items import TResponseInputItem

from chatruntime.models import (
    FunctionCallItem,
    FunctionCallResultItem,
    HistoryItem,
    MessageItem,
    SessionContext,
    SessionHeader,
)

T0 = 1_753_776_000_000
"""The first turn's time (milliseconds); turn ``n`` happens ``n`` seconds later."""

AGENT_ID = "5d2a4c3e-8f1b-4e6a-9c7d-0b1e2f3a4b5c"
"""The agent every benchmark session belongs to (code-defined, see ``_model.bench_agent``)."""

ITEMS_PER_TURN = 4


def session_id(group: str, n: int) -> str:
    """A deterministic session id, so a child process can name a session the parent made."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"chatruntime-bench/{group}/{n}"))


def turn_items(n: int) -> list[HistoryItem]:
    """The four items of turn ``n`` in our history shape."""
    call_id = f"call_{n}"
    t = T0 + n * 1000
    return [
        MessageItem(
            role="user", content=f"question {n}: what is the weather in Paris?", timestamp=t
        ),
        FunctionCallItem(
            name="get_weather",
            arguments=f'{{"city": "Paris", "n": {n}}}',
            call_id=call_id,
            timestamp=t,
        ),
        FunctionCallResultItem(
            name="get_weather", call_id=call_id, output=f"18°C, cloudy ({n})", timestamp=t
        ),
        MessageItem(
            role="assistant",
            content=[
                {
                    "type": "output_text",
                    "text": f"It is 18°C and cloudy in Paris ({n}).",
                    "annotations": [],
                }
            ],
            item_id=f"msg_{n}",
            status="completed",
            timestamp=t,
        ),
    ]


def sdk_turn_items(n: int) -> list[TResponseInputItem]:
    """The same four items of turn ``n`` as the SDK's sessions store them."""
    call_id = f"call_{n}"
    items: list[dict[str, Any]] = [
        {"role": "user", "content": f"question {n}: what is the weather in Paris?"},
        {
            "type": "function_call",
            "name": "get_weather",
            "arguments": f'{{"city": "Paris", "n": {n}}}',
            "call_id": call_id,
            "id": f"fc_{n}",
            "status": "completed",
        },
        {"type": "function_call_output", "call_id": call_id, "output": f"18°C, cloudy ({n})"},
        {
            "type": "message",
            "role": "assistant",
            "id": f"msg_{n}",
            "status": "completed",
            "content": [
                {
                    "type": "output_text",
                    "text": f"It is 18°C and cloudy in Paris ({n}).",
                    "annotations": [],
                }
            ],
        },
    ]
    return items  # type: ignore[return-value]


def chat_items(n: int) -> list[HistoryItem]:
    """A two-item turn (question and answer), to pad a history to an exact length."""
    t = T0 + n * 1000
    return [
        MessageItem(role="user", content=f"and tomorrow ({n})?", timestamp=t),
        MessageItem(
            role="assistant",
            content=[{"type": "output_text", "text": f"Sunny ({n}).", "annotations": []}],
            item_id=f"msg_chat_{n}",
            status="completed",
            timestamp=t,
        ),
    ]


def sdk_chat_items(n: int) -> list[TResponseInputItem]:
    """:func:`chat_items` as SDK input items."""
    items: list[dict[str, Any]] = [
        {"role": "user", "content": f"and tomorrow ({n})?"},
        {
            "type": "message",
            "role": "assistant",
            "id": f"msg_chat_{n}",
            "status": "completed",
            "content": [{"type": "output_text", "text": f"Sunny ({n}).", "annotations": []}],
        },
    ]
    return items  # type: ignore[return-value]


def history_of(length: int) -> tuple[list[HistoryItem], list[TResponseInputItem]]:
    """A history of exactly ``length`` items (an even number), in both shapes.

    Whole four-item turns, then one two-item turn when ``length`` is not a multiple of four,
    so every tool call has its result (a cut call would not replay).
    """
    if length % 2:
        raise ValueError(f"a history length must be even, got {length}")
    ours: list[HistoryItem] = []
    theirs: list[TResponseInputItem] = []
    turns, rest = divmod(length, ITEMS_PER_TURN)
    for n in range(1, turns + 1):
        ours.extend(turn_items(n))
        theirs.extend(sdk_turn_items(n))
    if rest:
        ours.extend(chat_items(turns + 1))
        theirs.extend(sdk_chat_items(turns + 1))
    return ours, theirs


def first_header(session: str, name: str = "Benchmark") -> SessionHeader:
    """The header of a new session (revision 0), as ``create_session`` writes it."""
    return SessionHeader(
        id=session,
        agent_id=AGENT_ID,
        name=name,
        created_at=T0,
        updated_at=T0,
        context=SessionContext(last_activity=T0),
        status="active",
        schema_version=1,
        revision=0,
    )


def header_after(first: SessionHeader, n: int, *, at: int | None = None) -> SessionHeader:
    """The header after turn ``n``: revision, times and counters moved on as the manager does.

    Args:
        first: The session's first header.
        n: Turns done.
        at: The time of the turn (default: ``n`` seconds after ``T0``); sessions filled in
            bulk give each its own time so listings have an order to keep.
    """
    t = at if at is not None else T0 + n * 1000
    return first.model_copy(
        update={
            "revision": n,
            "updated_at": t,
            "context": SessionContext(
                total_messages=2 * n,
                total_function_calls=n,
                total_turns=n,
                requests=2 * n,
                input_tokens=150 * n,
                output_tokens=40 * n,
                total_tokens=190 * n,
                last_activity=t,
            ),
        }
    )
