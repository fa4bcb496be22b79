"""One turn: build the model input from history, run the Agents SDK, convert what it made.

Nothing here touches a store or the cache: a turn works on a copy and returns a
:class:`TurnOutcome` (the new history items and statistics) that the manager persists in one
write. SDK failures leave as the :class:`~chatruntime.TurnError` that names them.
"""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import anyio
import openai
from agents import Agent, RunConfig, RunHooks, Runner, ToolErrorFormatterArgs
from agents.exceptions import (
    AgentsException,
    InputGuardrailTripwireTriggered,
    MaxTurnsExceeded,
    OutputGuardrailTripwireTriggered,
    ToolInputGuardrailTripwireTriggered,
    ToolOutputGuardrailTripwireTriggered,
    ToolTimeoutError,
    UserError,
)
from agents.items import HandoffOutputItem, ToolCallItem, ToolCallOutputItem, TResponseInputItem
from agents.result import RunResultBase, RunResultStreaming
from agents.stream_events import (
    AgentUpdatedStreamEvent,
    RawResponsesStreamEvent,
    RunItemStreamEvent,
)
from agents.stream_events import StreamEvent as SDKStreamEvent
from pydantic import TypeAdapter

from ..models import (
    ChatRuntimeError,
    FunctionCallItem,
    GuardrailTrippedError,
    HandoffItem,
    HistoryItem,
    ItemUsage,
    MaxTurnsExceededError,
    Message,
    MessageItem,
    ModelError,
    ProviderItem,
    SessionContext,
    ToolError,
    TurnCancelledError,
    new_id,
    now_ms,
)
from ._events import AgentChanged, Handoff, StreamEvent, TextDelta, ToolCall, ToolResult
from ._input import UserContent
from ._replay import AgentRef, history_to_input, items_from_run, message_input
from ._window import WindowPolicy

_FAILURE_KINDS = frozenset({"tool_exception", "tool_not_found"})


@dataclass(frozen=True)
class TurnRequest:
    """Everything one turn needs, taken from the session under its lock.

    Attributes:
        agent: The SDK agent that answers first.
        history: The stored history (not changed by the turn).
        context: The session's statistics before the turn.
        content: The user's message: text, or a list of input parts.
        text: The message's text (its text parts joined), which windows measure.
        agent_ref: Names SDK agents in history and statistics.
        run_config: The run configuration, model provider included.
        max_turns: The most model calls the SDK may make in this turn.
        window: Trims the model input; ``None`` sends the whole history.
        replayed: The model input of the whole ``history``, when the caller keeps it
            (used when there is no window, instead of converting the history again).
        run_context: The caller's context object, handed to ``Runner.run`` as ``context``
            (tools see it as ``RunContextWrapper.context``).
        hooks: The caller's ``RunHooks``.
    """

    agent: Agent[Any]
    history: Sequence[HistoryItem]
    context: SessionContext
    content: UserContent
    agent_ref: AgentRef
    run_config: RunConfig
    max_turns: int
    window: WindowPolicy | None = None
    replayed: Sequence[TResponseInputItem] | None = None
    text: str = ""
    run_context: Any = None
    hooks: RunHooks[Any] | None = None


@dataclass(frozen=True)
class TurnOutcome:
    """What a finished turn adds to its session.

    Attributes:
        items: The new history items: the user's message, then what the run produced.
        context: The session's statistics after the turn.
        reply: The final assistant message, as the caller sees it.
    """

    items: list[HistoryItem]
    context: SessionContext
    reply: Message


@dataclass
class _Prepared:
    user: MessageItem
    input: list[TResponseInputItem]
    run_config: RunConfig
    failed_calls: set[str]


async def run_turn(request: TurnRequest) -> TurnOutcome:
    """Run one turn with ``Runner.run``.

    Raises:
        TurnError: The run failed (its subclass names how); nothing was produced.
    """
    prepared = _prepare(request)
    try:
        result = await Runner.run(
            request.agent,
            prepared.input,
            context=request.run_context,
            hooks=request.hooks,
            run_config=prepared.run_config,
            max_turns=request.max_turns,
        )
    except anyio.get_cancelled_exc_class():
        _raise_unless_caller_cancelled()
        raise
    except Exception as error:
        raise turn_error(error) from error
    return _outcome(request, prepared, result)


class _StreamedTurn:
    """One turn run with ``Runner.run_streamed``: its events while it runs, then its outcome.

    The SDK starts the run as soon as this object is made. Iterate :meth:`events` to the end,
    then read :meth:`outcome`; call :meth:`aclose` in any case, which cancels a run that has
    not finished.
    """

    def __init__(self, request: TurnRequest) -> None:
        self._request = request
        self._prepared = _prepare(request)
        try:
            self._result: RunResultStreaming = Runner.run_streamed(
                request.agent,
                self._prepared.input,
                context=request.run_context,
                hooks=request.hooks,
                run_config=self._prepared.run_config,
                max_turns=request.max_turns,
            )
        except Exception as error:
            raise turn_error(error) from error
        self._finished = False
        self._sdk_events: AsyncIterator[SDKStreamEvent] | None = None

    async def events(self) -> AsyncIterator[StreamEvent]:
        """The run's events as chatruntime events.

        Raises:
            TurnError: The run failed.
        """
        current_agent = self._request.agent
        self._sdk_events = self._result.stream_events()
        try:
            async for sdk_event in self._sdk_events:
                if isinstance(sdk_event, AgentUpdatedStreamEvent):
                    if sdk_event.new_agent is current_agent:
                        continue
                    current_agent = sdk_event.new_agent
                    yield AgentChanged(
                        agent_id=self._request.agent_ref(current_agent), name=current_agent.name
                    )
                    continue
                event = self._convert(sdk_event)
                if event is not None:
                    yield event
        except anyio.get_cancelled_exc_class():
            _raise_unless_caller_cancelled()
            raise
        except Exception as error:
            raise turn_error(error) from error
        self._finished = True

    def outcome(self) -> TurnOutcome:
        """The turn's outcome, once :meth:`events` ran to its end."""
        if not self._finished:
            raise RuntimeError("the streamed turn has not finished")
        return _outcome(self._request, self._prepared, self._result)

    async def aclose(self) -> None:
        """Stop the run if it is still going and wait until the SDK has let go of it."""
        if not self._finished:
            self._result.cancel()
        closer = getattr(self._sdk_events, "aclose", None)
        if closer is not None:
            try:
                await closer()
            except Exception:
                # The run is being abandoned; its failure has no one left to report to.
                pass
        task = self._result.run_loop_task
        if task is not None and not task.done():
            await asyncio.wait([task])

    def _convert(self, sdk_event: SDKStreamEvent) -> StreamEvent | None:
        if isinstance(sdk_event, RawResponsesStreamEvent):
            if sdk_event.data.type == "response.output_text.delta":
                return TextDelta(text=sdk_event.data.delta)
            return None
        if not isinstance(sdk_event, RunItemStreamEvent):
            return None
        item = sdk_event.item
        if isinstance(item, ToolCallItem):
            raw = _raw_dict(item.to_input_item())
            if raw.get("type") != "function_call":
                return None
            return ToolCall(name=raw["name"], arguments=raw["arguments"], call_id=raw["call_id"])
        if isinstance(item, ToolCallOutputItem):
            raw = _raw_dict(item.to_input_item())
            if raw.get("type") != "function_call_output":
                return None
            call_id = str(raw["call_id"])
            return ToolResult(
                call_id=call_id,
                output=_output_text(raw["output"]),
                failed=call_id in self._prepared.failed_calls,
            )
        if isinstance(item, HandoffOutputItem):
            return Handoff(
                from_agent_id=self._request.agent_ref(item.source_agent),
                to_agent_id=self._request.agent_ref(item.target_agent),
            )
        return None


async def stream_turn(
    request: TurnRequest, emit: Callable[[StreamEvent], Awaitable[None]]
) -> TurnOutcome:
    """Run one turn with ``Runner.run_streamed``, handing each event to ``emit`` as it comes.

    When ``emit`` or the caller is cancelled, or the run fails, the run is stopped before
    this returns or raises.

    Raises:
        TurnError: The run failed (its subclass names how); nothing was produced.
    """
    turn = _StreamedTurn(request)
    try:
        async for event in turn.events():
            await emit(event)
        return turn.outcome()
    finally:
        with anyio.CancelScope(shield=True):
            await turn.aclose()


def turn_error(error: Exception) -> ChatRuntimeError:
    """The chatruntime error that stands for an exception raised by a run.

    Args:
        error: What ``Runner.run`` (or a streamed run) raised.

    Returns:
        A ``ToolError``, ``MaxTurnsExceededError``, ``GuardrailTrippedError`` or
        ``ModelError``; a plain ``ChatRuntimeError`` (``INTERNAL_ERROR``) for a mistake in
        how the agent was set up, which the SDK reports as ``UserError``.
    """
    kind = type(error).__name__
    if isinstance(error, MaxTurnsExceeded):
        return MaxTurnsExceededError(
            f"the agent did not finish within its allowed model calls: {error}", exception=kind
        )
    if isinstance(error, InputGuardrailTripwireTriggered | OutputGuardrailTripwireTriggered):
        guardrail = error.guardrail_result.guardrail.get_name()
        return GuardrailTrippedError(
            f"guardrail {guardrail!r} stopped the turn", guardrail=guardrail, exception=kind
        )
    if isinstance(
        error, ToolInputGuardrailTripwireTriggered | ToolOutputGuardrailTripwireTriggered
    ):
        guardrail = error.guardrail.get_name()
        return GuardrailTrippedError(
            f"tool guardrail {guardrail!r} stopped the turn", guardrail=guardrail, exception=kind
        )
    if isinstance(error, ToolTimeoutError):
        return ToolError(str(error), tool=error.tool_name, exception=kind)
    if isinstance(error, UserError):
        cause = error.__cause__
        if isinstance(cause, Exception) and not isinstance(cause, AgentsException):
            # The SDK wraps what a tool without an error handler raised in a UserError.
            return ToolError(str(error), exception=type(cause).__name__)
        return ChatRuntimeError(f"the agent is not set up correctly: {error}", exception=kind)
    if isinstance(error, openai.APIStatusError):
        endpoint = _endpoint(error)
        return ModelError(
            f"the model at {endpoint} answered HTTP {error.status_code}: {error.message}",
            status_code=error.status_code,
            endpoint=endpoint,
            exception=kind,
        )
    if isinstance(error, openai.APIError):
        endpoint = _endpoint(error)
        return ModelError(
            f"the model at {endpoint} could not be reached: {error.message}",
            endpoint=endpoint,
            exception=kind,
        )
    return ModelError(f"the model failed: {kind}: {error}", exception=kind)


def _raise_unless_caller_cancelled() -> None:
    """Tell a cancelled caller (let the cancellation go on) from a run that cancelled itself.

    A cancellation the caller asked for shows on the task (asyncio counts pending cancel
    requests, which anyio's cancel scopes also use); one that started inside the SDK or a
    tool does not, and ends the turn as ``CANCELLED``.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        return
    raise TurnCancelledError("the run was cancelled before it finished") from None


def _prepare(request: TurnRequest) -> _Prepared:
    user = MessageItem(role="user", content=request.content, timestamp=now_ms())
    kept = request.window.apply(request.history, request.text) if request.window else None
    # Input items share lists (content parts, summaries) with the cached history; that is
    # safe because the runner copies its input before it uses it.
    if kept is None and request.replayed is not None:
        replayed = list(request.replayed)
    else:
        replayed = history_to_input(request.history if kept is None else kept)
    if request.run_config.reasoning_item_id_policy == "omit":
        replayed = [_without_reasoning_id(item) for item in replayed]
    failed: set[str] = set()
    return _Prepared(
        user=user,
        input=[*replayed, message_input(user)],  # type: ignore[list-item]
        run_config=_tracking_failures(request.run_config, failed),
        failed_calls=failed,
    )


def _tracking_failures(run_config: RunConfig, failed: set[str]) -> RunConfig:
    """A copy of ``run_config`` that records the call ids of tools that raised.

    The SDK tells the model a tool failed with an ordinary output; the formatter hook is the
    one place that learns which call it was. The caller's own formatter still decides the
    message.
    """
    own_formatter = run_config.tool_error_formatter

    async def record(args: ToolErrorFormatterArgs[Any]) -> str | None:
        if args.kind in _FAILURE_KINDS:
            failed.add(args.call_id)
        if own_formatter is None:
            return None
        message = own_formatter(args)
        if inspect.isawaitable(message):
            message = await message
        return message

    return dataclasses.replace(run_config, tool_error_formatter=record)


def _outcome(request: TurnRequest, prepared: _Prepared, result: RunResultBase) -> TurnOutcome:
    finished = max(now_ms(), prepared.user.timestamp)
    produced = items_from_run(
        result.new_items,
        agent_ref=request.agent_ref,
        failed_calls=prepared.failed_calls,
        timestamp=finished,
    )
    usage = result.context_wrapper.usage
    item_usage = ItemUsage(
        requests=usage.requests,
        input_tokens=usage.input_tokens,
        output_tokens=usage.output_tokens,
        total_tokens=usage.total_tokens,
    )
    last_agent_id = request.agent_ref(result.last_agent)
    final = next(
        (
            item
            for item in reversed(produced)
            if isinstance(item, MessageItem) and item.role == "assistant"
        ),
        None,
    )
    structured = _structured_output(result)
    if final is not None:
        final.usage = item_usage
        if structured is not _NOT_STRUCTURED:
            final.output = _json_ready(structured)
        reply = Message.from_item(final)
        if structured is not _NOT_STRUCTURED:
            reply.output = structured
    else:
        # The run ended on something other than a message (a tool set to stop the run):
        # the caller still gets its final output, which history holds as that tool's result.
        reply = Message(
            id=new_id(),
            role="assistant",
            content=_output_text(result.final_output),
            timestamp=finished,
            agent_id=last_agent_id,
            usage=item_usage,
        )
    items: list[HistoryItem] = [prepared.user, *produced]
    return TurnOutcome(
        items=items,
        context=next_context(
            request.context, items, item_usage, last_agent_id=last_agent_id, at=finished
        ),
        reply=reply,
    )


def next_context(
    context: SessionContext,
    items: Sequence[HistoryItem],
    usage: ItemUsage,
    *,
    last_agent_id: str,
    at: int,
) -> SessionContext:
    """The statistics after one turn that added ``items`` and used ``usage``."""
    return SessionContext(
        total_tokens=context.total_tokens + usage.total_tokens,
        total_messages=context.total_messages
        + sum(
            1
            for item in items
            if isinstance(item, MessageItem) and item.role in ("user", "assistant")
        ),
        total_function_calls=context.total_function_calls
        + sum(
            1
            for item in items
            if isinstance(item, FunctionCallItem)
            or (isinstance(item, ProviderItem) and item.is_call)
        ),
        last_activity=max(at, context.last_activity),
        last_agent_id=last_agent_id,
        input_tokens=context.input_tokens + usage.input_tokens,
        output_tokens=context.output_tokens + usage.output_tokens,
        requests=context.requests + usage.requests,
        total_turns=context.total_turns + 1,
        total_handoffs=context.total_handoffs
        + sum(1 for item in items if isinstance(item, HandoffItem)),
    )


def _without_reasoning_id(item: TResponseInputItem) -> TResponseInputItem:
    if item.get("type") != "reasoning":
        return item
    return {key: value for key, value in item.items() if key != "id"}  # type: ignore[return-value]


def _raw_dict(item: TResponseInputItem) -> dict[str, Any]:
    return dict(item)


def _output_text(output: object) -> str:
    if output is None:
        return ""
    if isinstance(output, str):
        return output
    try:
        return json.dumps(output, ensure_ascii=False)
    except (TypeError, ValueError):
        return str(output)


_NOT_STRUCTURED: Any = object()


def _structured_output(result: RunResultBase) -> Any:
    """The typed final output of a run whose last agent has an ``output_type`` other than
    plain text, else ``_NOT_STRUCTURED``."""
    output_type = getattr(result.last_agent, "output_type", None)
    if output_type is None or output_type is str:
        return _NOT_STRUCTURED
    return result.final_output


def _json_ready(value: Any) -> Any:
    """``value`` as JSON data, for storing (pydantic models, dataclasses, TypedDicts...)."""
    return TypeAdapter(type(value)).dump_python(value, mode="json")


def _endpoint(error: openai.APIError) -> str:
    """Where the failed request went (scheme, host, port and path; never a query)."""
    request = getattr(error, "request", None)
    url = getattr(request, "url", None)
    if url is None:
        return "an unknown endpoint"
    return str(url.copy_with(query=None, fragment=None))
