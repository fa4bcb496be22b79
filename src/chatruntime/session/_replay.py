"""History items to SDK input items and back: the two halves of a lossless replay.

:func:`history_to_input` builds the model input of the next turn from a stored history. For
the items a run produced it equals what the SDK itself would send after that run
(``result.to_input_list()`` chained turn by turn), with one difference on purpose: a tool
call without its output, or an output without its call, is never sent (the Responses API
rejects both).

:func:`items_from_run` turns a run's ``new_items`` into history items that rebuild exactly
those input items.

Items written by the TypeScript original (cortex) carry no provider ids and use its own
content shapes; they replay as the plain messages and calls they stand for.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Sequence
from typing import Any, cast

from agents import Agent
from agents.items import (
    HandoffCallItem,
    HandoffOutputItem,
    MessageOutputItem,
    RunItem,
    ToolCallItem,
    ToolCallOutputItem,
    TResponseInputItem,
)
from agents.items import ReasoningItem as SDKReasoningItem
from pydantic import ValidationError

from ..models import (
    ErrorOutput,
    FunctionCallItem,
    FunctionCallResultItem,
    HandoffItem,
    HistoryItem,
    MessageItem,
    ProviderItem,
    ReasoningItem,
    TextOutput,
)

AgentRef = Callable[[Agent[Any]], str]
"""Names an SDK agent in history: its id in the ``AgentManager``, else its name."""

_CALL_STATUSES = frozenset({"in_progress", "completed", "incomplete"})
"""The statuses the Responses API accepts on input items (cortex also wrote ``failed``)."""


# -- history -> model input ---------------------------------------------------------------


def history_to_input(history: Sequence[HistoryItem]) -> list[TResponseInputItem]:
    """The model input that replays ``history``, without orphan calls or outputs.

    Args:
        history: Stored items, oldest first.

    Returns:
        Responses API input items, oldest first.
    """
    sent_calls = _replayable_call_ids(history)
    handoff_outputs_after = _handoff_output_positions(history, sent_calls)
    replayed: list[dict[str, Any]] = []
    for index, item in enumerate(history):
        if isinstance(item, MessageItem | ReasoningItem | ProviderItem):
            replayed.extend(item_inputs(item))
        elif isinstance(item, FunctionCallItem):
            if item.call_id in sent_calls:
                replayed.extend(item_inputs(item))
        elif isinstance(item, FunctionCallResultItem):
            if sent_calls.get(item.call_id) == index:
                replayed.extend(item_inputs(item))
        elif item.call_id is not None and item.call_id in sent_calls:
            # The handoff's call here; its output where the SDK would put it (below).
            replayed.append(item_inputs(item)[0])
        for handoff in handoff_outputs_after.get(index, ()):
            replayed.append(item_inputs(handoff)[1])
    return cast(list[TResponseInputItem], replayed)


def call_ids_of(history: Iterable[HistoryItem]) -> set[str]:
    """Every call id the items of ``history`` carry (calls, outputs and handoffs)."""
    return {
        item.call_id
        for item in history
        if isinstance(item, FunctionCallItem | FunctionCallResultItem | HandoffItem)
        and item.call_id is not None
    }


def item_inputs(item: HistoryItem) -> list[dict[str, Any]]:
    """The input items ``item`` contributes when it is sent, whatever its neighbours.

    A handoff contributes its call and its output; an item that cannot be replayed (a
    handoff without a call id) nothing.
    """
    if isinstance(item, MessageItem):
        # A stored summary is sent only by the Summarize window, in place of what it covers.
        return [] if summary_of(item) is not None else [message_input(item)]
    if isinstance(item, ReasoningItem):
        return [_reasoning_input(item)]
    if isinstance(item, FunctionCallItem):
        return [_call_input(item.name, item.arguments, item.call_id, item)]
    if isinstance(item, FunctionCallResultItem):
        return [_output_input(item.call_id, _output_value(item))]
    if isinstance(item, ProviderItem):
        return [dict(item.item)]
    if item.call_id is None or not item.name:
        return []
    return [
        _call_input(item.name, item.arguments or "{}", item.call_id, item),
        _output_input(item.call_id, item.output or ""),
    ]


SUMMARY_KEY = "chatruntime_summary"
"""The key of ``provider_data`` that marks a message item as a stored summary.

A summary is a ``system`` message item whose ``provider_data[SUMMARY_KEY]`` is
``{"through": <id of the last item it covers>, "items": <how many items it folded>}``. It
covers every item up to ``through``. Only the ``Summarize`` window sends it; any other replay
(no window, ``LastItems``, ``TokenBudget``, the SDK session adapter) sends the items it
covers instead, which the history keeps.
"""


def summary_of(item: HistoryItem) -> dict[str, Any] | None:
    """The summary marker of ``item`` (see :data:`SUMMARY_KEY`), or ``None``."""
    if not isinstance(item, MessageItem) or item.provider_data is None:
        return None
    marker = item.provider_data.get(SUMMARY_KEY)
    return marker if isinstance(marker, dict) else None


def message_input(item: MessageItem) -> dict[str, Any]:
    """The input item of one message.

    A message the model wrote (it has the provider's ``item_id``) is sent back as the output
    message it was; anything else as a plain role/content message, which is also how the SDK
    sends a user's text.
    """
    if item.role == "assistant" and item.item_id is not None:
        replayed: dict[str, Any] = {
            "id": item.item_id,
            "content": _output_parts(item.content),
            "role": "assistant",
            "type": "message",
        }
        if item.status in _CALL_STATUSES:
            replayed["status"] = item.status
        return replayed
    if item.role == "assistant":
        return {"content": item.text, "role": "assistant"}
    content = item.content if isinstance(item.content, str) else _input_parts(item.content)
    return {"content": content, "role": item.role}


def _replayable_call_ids(history: Sequence[HistoryItem]) -> dict[str, int]:
    """Call ids whose call and output are both present, mapped to the output's position.

    A handoff item holds both halves; a function call needs a later result with its id
    (the first one counts).
    """
    calls: set[str] = set()
    paired: dict[str, int] = {}
    for index, item in enumerate(history):
        if isinstance(item, FunctionCallItem):
            calls.add(item.call_id)
        elif isinstance(item, FunctionCallResultItem):
            if item.call_id in calls and item.call_id not in paired:
                paired[item.call_id] = index
        elif isinstance(item, HandoffItem) and item.call_id is not None and item.name:
            paired.setdefault(item.call_id, index)
    return paired


def _handoff_output_positions(
    history: Sequence[HistoryItem], sent_calls: dict[str, int]
) -> dict[int, list[HandoffItem]]:
    """Where each replayed handoff's output goes: after the index it is listed under.

    The SDK writes a model response's calls first, then the outputs of its function tools,
    then the handoff's output. A handoff made alongside other tool calls (same agent, same
    response) therefore has its output after those calls' outputs; alone, right after its
    call.
    """
    positions: dict[int, list[HandoffItem]] = {}
    for index, item in enumerate(history):
        if not isinstance(item, HandoffItem) or item.call_id is None:
            continue
        if item.call_id not in sent_calls:
            continue
        after = index
        for sibling in _sibling_calls(history, index):
            result_index = sent_calls.get(sibling.call_id)
            if result_index is not None:
                after = max(after, result_index)
        positions.setdefault(after, []).append(item)
    return positions


def _sibling_calls(history: Sequence[HistoryItem], index: int) -> Iterable[FunctionCallItem]:
    """The function calls next to the handoff at ``index`` made by the same agent."""
    agent_id = history[index].agent_id
    for step in (-1, 1):
        position = index + step
        while 0 <= position < len(history):
            neighbour = history[position]
            if not isinstance(neighbour, FunctionCallItem) or neighbour.agent_id != agent_id:
                break
            yield neighbour
            position += step


def _call_input(
    name: str,
    arguments: str,
    call_id: str,
    item: FunctionCallItem | HandoffItem,
) -> dict[str, Any]:
    replayed: dict[str, Any] = {
        "arguments": arguments,
        "call_id": call_id,
        "name": name,
        "type": "function_call",
    }
    if item.item_id is not None:
        replayed["id"] = item.item_id
    if item.status in _CALL_STATUSES:
        replayed["status"] = item.status
    return replayed


def _output_input(call_id: str, output: str | list[dict[str, Any]]) -> dict[str, Any]:
    return {"call_id": call_id, "output": output, "type": "function_call_output"}


def _output_value(item: FunctionCallResultItem) -> str | list[dict[str, Any]]:
    if isinstance(item.output, TextOutput | ErrorOutput):
        return item.output_text
    return item.output


def _reasoning_input(item: ReasoningItem) -> dict[str, Any]:
    replayed: dict[str, Any] = {"summary": item.summary, "type": "reasoning"}
    if item.item_id is not None:
        replayed["id"] = item.item_id
    if item.content is not None:
        replayed["content"] = item.content
    if item.encrypted_content is not None:
        replayed["encrypted_content"] = item.encrypted_content
    if item.status is not None:
        replayed["status"] = item.status
    return replayed


def _output_parts(content: str | list[dict[str, Any]]) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"annotations": [], "text": content, "type": "output_text"}]
    parts: list[dict[str, Any]] = []
    for part in content:
        if "providerData" in part or "provider_data" in part:
            # Cortex's shape: annotations live under providerData.
            extra = part.get("providerData") or part.get("provider_data") or {}
            part = {
                "annotations": extra.get("annotations", []),
                "text": part.get("text", ""),
                "type": part.get("type", "output_text"),
            }
        parts.append(part)
    return parts


def _input_parts(content: list[dict[str, Any]]) -> list[dict[str, Any]]:
    parts: list[dict[str, Any]] = []
    for part in content:
        if part.get("type") == "text":
            # Cortex's text part; the Responses API calls it input_text.
            part = {"text": part.get("text", ""), "type": "input_text"}
        parts.append(part)
    return parts


# -- run items -> history -----------------------------------------------------------------


def items_from_run(
    new_items: Sequence[RunItem],
    *,
    agent_ref: AgentRef,
    failed_calls: Collection[str],
    timestamp: int,
) -> list[HistoryItem]:
    """History items for what one run produced.

    Handoffs become one :class:`HandoffItem` (call and output) at the place of the call.
    Items the history has no dedicated type for (hosted tools, MCP listings, calls and
    approvals...) are kept raw as :class:`ProviderItem`. A handoff call without its output
    (only the first handoff of a response is taken) is left out, as the SDK leaves it.

    Args:
        new_items: ``RunResult.new_items``.
        agent_ref: Names the agent of each item.
        failed_calls: Call ids whose tool raised; their results are stored as ``failed``.
        timestamp: The time stamped on every item (epoch milliseconds).

    Returns:
        The items, in run order.
    """
    converted: list[HistoryItem | None] = []
    tool_names: dict[str, str] = {}
    handoff_calls: dict[str, tuple[int, dict[str, Any]]] = {}
    for run_item in new_items:
        agent_id = agent_ref(run_item.agent)
        if isinstance(run_item, MessageOutputItem):
            raw = _as_dict(run_item)
            converted.append(
                MessageItem(
                    role=raw["role"],
                    content=raw["content"],
                    status=raw.get("status"),
                    item_id=raw.get("id"),
                    agent_id=agent_id,
                    timestamp=timestamp,
                )
            )
        elif isinstance(run_item, SDKReasoningItem):
            raw = _as_dict(run_item)
            converted.append(
                ReasoningItem(
                    item_id=raw.get("id"),
                    summary=raw.get("summary", []),
                    content=raw.get("content"),
                    encrypted_content=raw.get("encrypted_content"),
                    status=raw.get("status"),
                    agent_id=agent_id,
                    timestamp=timestamp,
                )
            )
        elif isinstance(run_item, ToolCallItem):
            raw = _as_dict(run_item)
            if raw.get("type") != "function_call":
                converted.append(ProviderItem(item=raw, agent_id=agent_id, timestamp=timestamp))
                continue
            tool_names[raw["call_id"]] = raw["name"]
            converted.append(
                FunctionCallItem(
                    name=raw["name"],
                    arguments=raw.get("arguments", ""),
                    call_id=raw["call_id"],
                    status=raw.get("status"),
                    item_id=raw.get("id"),
                    agent_id=agent_id,
                    timestamp=timestamp,
                )
            )
        elif isinstance(run_item, ToolCallOutputItem):
            raw = _as_dict(run_item)
            if raw.get("type") != "function_call_output":
                converted.append(ProviderItem(item=raw, agent_id=agent_id, timestamp=timestamp))
                continue
            call_id = raw["call_id"]
            converted.append(
                FunctionCallResultItem(
                    name=tool_names.get(call_id),
                    call_id=call_id,
                    status="failed" if call_id in failed_calls else "completed",
                    output=raw["output"],
                    agent_id=agent_id,
                    timestamp=timestamp,
                )
            )
        elif isinstance(run_item, HandoffCallItem):
            raw = _as_dict(run_item)
            handoff_calls[raw["call_id"]] = (len(converted), raw)
            converted.append(None)
        elif isinstance(run_item, HandoffOutputItem):
            raw = _as_dict(run_item)
            found = handoff_calls.pop(raw.get("call_id", ""), None)
            if found is None:
                continue
            position, call = found
            output = raw.get("output")
            converted[position] = HandoffItem(
                from_agent_id=agent_ref(run_item.source_agent),
                to_agent_id=agent_ref(run_item.target_agent),
                call_id=call["call_id"],
                name=call["name"],
                arguments=call.get("arguments", ""),
                output=output if isinstance(output, str) else None,
                item_id=call.get("id"),
                status=call.get("status"),
                agent_id=agent_ref(run_item.source_agent),
                timestamp=timestamp,
            )
        elif not isinstance(run_item, HandoffCallItem | HandoffOutputItem):
            # MCP listings and approvals, and item kinds later SDKs add: kept raw.
            converted.append(
                ProviderItem(item=_as_dict(run_item), agent_id=agent_id, timestamp=timestamp)
            )
    return [item for item in converted if item is not None]


def _as_dict(run_item: RunItem) -> dict[str, Any]:
    """The item as the SDK would send it back, which is what history must rebuild."""
    return dict(cast(dict[str, Any], run_item.to_input_item()))


# -- SDK input items -> history -----------------------------------------------------------


def history_from_input(item: Any, *, timestamp: int) -> HistoryItem:
    """The history item that stores one SDK input item, as the SDK's ``Session`` hands it.

    Messages, function calls and their outputs, and reasoning become their dedicated types
    when those send the item back exactly as given; anything else (hosted tools, MCP, items
    in a shape the dedicated types do not rebuild key for key) is kept raw as a
    :class:`ProviderItem`. Either way ``item_inputs(history_from_input(x)) == [x]``.

    Args:
        item: A Responses API input item (a dict).
        timestamp: The time stamped on the item (epoch milliseconds).

    Raises:
        TypeError: ``item`` is not a dict.
    """
    if not isinstance(item, dict):
        raise TypeError(f"a session item must be a dict, got {type(item).__name__}")
    typed = _typed_item(item, timestamp)
    if typed is not None and item_inputs(typed) == [item]:
        return typed
    return ProviderItem(item=item, timestamp=timestamp)


def _typed_item(item: dict[str, Any], timestamp: int) -> HistoryItem | None:
    """The dedicated history item ``item`` looks like, or ``None`` (also when it does not
    validate as one)."""
    kind = item.get("type")
    try:
        if "role" in item and kind in (None, "message"):
            return MessageItem(
                role=item["role"],
                content=item.get("content", ""),
                status=item.get("status"),
                item_id=item.get("id"),
                timestamp=timestamp,
            )
        if kind == "function_call":
            return FunctionCallItem(
                name=item["name"],
                arguments=item.get("arguments", ""),
                call_id=item["call_id"],
                status=item.get("status"),
                item_id=item.get("id"),
                timestamp=timestamp,
            )
        if kind == "function_call_output":
            return FunctionCallResultItem(
                call_id=item["call_id"], output=item["output"], timestamp=timestamp
            )
        if kind == "reasoning":
            return ReasoningItem(
                item_id=item.get("id"),
                summary=item.get("summary", []),
                content=item.get("content"),
                encrypted_content=item.get("encrypted_content"),
                status=item.get("status"),
                timestamp=timestamp,
            )
    except (KeyError, ValidationError):
        return None
    return None
