"""An offline model: deterministic answers without a network, for tests, demos and the REPL.

Every reply is labelled ``[offline]`` so nobody mistakes it for a real model. The model

- echoes the last user message and counts the user messages it has seen::

      [offline] You said: Hello (turn 1)

- calls a tool when the last user message is a tool command: ``/tool NAME`` optionally followed
  by a JSON object of arguments, e.g. ``/tool get_weather {"city": "Paris"}``. ``NAME`` may be
  one of the agent's function tools or one of its handoffs (``transfer_to_...``);

- answers the tool's output once the runner sends it back::

      [offline] get_weather returned: Sunny in Paris

Token usage is counted in words (whitespace-separated) so tests can predict it exactly: input
tokens are the words of the instructions and of every input item, output tokens the words of
the reply (for a tool call: the tool name plus the words of its JSON arguments). Every call
counts one request.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

import anyio
from agents.agent_output import AgentOutputSchemaBase
from agents.handoffs import Handoff
from agents.items import (
    ModelResponse,
    TResponseInputItem,
    TResponseOutputItem,
    TResponseStreamEvent,
)
from agents.model_settings import ModelSettings
from agents.models.interface import Model, ModelProvider, ModelTracing
from agents.tool import FunctionTool, Tool
from agents.usage import Usage
from openai.types.responses import (
    Response,
    ResponseCompletedEvent,
    ResponseContentPartAddedEvent,
    ResponseContentPartDoneEvent,
    ResponseCreatedEvent,
    ResponseFunctionCallArgumentsDeltaEvent,
    ResponseFunctionCallArgumentsDoneEvent,
    ResponseFunctionToolCall,
    ResponseInProgressEvent,
    ResponseOutputItemAddedEvent,
    ResponseOutputItemDoneEvent,
    ResponseOutputMessage,
    ResponseOutputText,
    ResponseTextDeltaEvent,
    ResponseTextDoneEvent,
    ResponseUsage,
)
from openai.types.responses.response_prompt_param import ResponsePromptParam

OFFLINE_LABEL = "[offline]"
"""The prefix of every reply the offline model writes."""

OFFLINE_MODEL_NAME = "offline"
"""The model name reported when no name was asked for."""

TOOL_COMMAND = "/tool"
"""A user message starting with this word asks the offline model to call a tool."""

_TOOL_COMMAND = re.compile(r"\A\s*/tool\s+(?P<name>\S+)(?:\s+(?P<arguments>.*))?\Z", re.DOTALL)
_WORD_DELTAS = re.compile(r"\S+\s*|\s+")


@dataclass(frozen=True)
class _Reply:
    """What the model decided to answer: either a text or one tool call."""

    text: str | None = None
    tool_name: str | None = None
    arguments: str = "{}"


class OfflineModel(Model):
    """A deterministic, labelled model that needs no network and no API key.

    It implements the Agents SDK ``Model`` interface, both plain and streamed, so it runs
    anywhere a real model does: ``Agent(model=OfflineModel())``, or through
    :class:`OfflineModelProvider` in a ``RunConfig``.

    Args:
        model_name: The name reported in responses (``"offline"`` by default).
        delay: Seconds to wait before each reply and between streamed text deltas, to imitate
            a real model's latency (no wait by default).

    Example:
        ```python
        agent = Agent(name="Helper", model=OfflineModel(), tools=[get_weather])
        result = await Runner.run(agent, '/tool get_weather {"city": "Paris"}')
        result.final_output  # '[offline] get_weather returned: Sunny in Paris'
        ```
    """

    def __init__(self, model_name: str = OFFLINE_MODEL_NAME, *, delay: float = 0.0) -> None:
        if delay < 0:
            raise ValueError(f"delay must be zero or positive, not {delay!r}")
        self.model_name = model_name
        self.delay = delay

    async def get_response(
        self,
        system_instructions: str | None,
        input: str | list[TResponseInputItem],
        model_settings: ModelSettings,
        tools: list[Tool],
        output_schema: AgentOutputSchemaBase | None,
        handoffs: list[Handoff],
        tracing: ModelTracing,
        *,
        previous_response_id: str | None = None,
        conversation_id: str | None = None,
        prompt: ResponsePromptParam | None = None,
    ) -> ModelResponse:
        """Answer the input in one piece.

        Args:
            system_instructions: The agent's instructions (counted as input tokens).
            input: The conversation so far, as a string or Responses API input items.
            model_settings: Ignored.
            tools: The agent's tools; function tools can be called with ``/tool NAME``.
            output_schema: Ignored: the offline model always answers plain text.
            handoffs: The agent's handoffs; they can be called like tools.
            tracing: Ignored: the offline model records no spans of its own.
            previous_response_id: Ignored.
            conversation_id: Ignored.
            prompt: Ignored.

        Returns:
            The reply as output items, with word-count usage and one request.
        """
        await self._wait()
        response, usage = self._respond(system_instructions, input, tools, handoffs)
        return ModelResponse(output=list(response.output), usage=usage, response_id=response.id)

    async def stream_response(
        self,
        system_instructions: str | None,
        input: str | list[TResponseInputItem],
        model_settings: ModelSettings,
        tools: list[Tool],
        output_schema: AgentOutputSchemaBase | None,
        handoffs: list[Handoff],
        tracing: ModelTracing,
        *,
        previous_response_id: str | None = None,
        conversation_id: str | None = None,
        prompt: ResponsePromptParam | None = None,
    ) -> AsyncIterator[TResponseStreamEvent]:
        """Answer the input as Responses API stream events, one text delta per word.

        The events are those of the Responses API: ``response.created``,
        ``response.in_progress``, then for each output item ``response.output_item.added``, its
        content events (``response.output_text.delta`` per word, or the function call's
        arguments), ``response.output_item.done``, and finally ``response.completed`` carrying
        the whole response and its usage. Arguments are as for :meth:`get_response`.

        Yields:
            The stream events, in order.
        """
        await self._wait()
        response, _ = self._respond(system_instructions, input, tools, handoffs)
        for event in _stream_events(response):
            if isinstance(event, ResponseTextDeltaEvent):
                await self._wait()
            else:
                # Give cancellation a chance between events, as a network stream would.
                await anyio.lowlevel.checkpoint()
            yield event

    async def _wait(self) -> None:
        if self.delay:
            await anyio.sleep(self.delay)

    def _respond(
        self,
        system_instructions: str | None,
        input: str | list[TResponseInputItem],
        tools: Sequence[Tool],
        handoffs: Sequence[Handoff],
    ) -> tuple[Response, Usage]:
        items = _normalise_input(input)
        reply = _decide(items, tools, handoffs)
        digest = _digest(items, reply)
        output: TResponseOutputItem
        if reply.tool_name is not None:
            output = ResponseFunctionToolCall(
                id=f"fc_offline_{digest}",
                call_id=f"call_offline_{digest}",
                type="function_call",
                name=reply.tool_name,
                arguments=reply.arguments,
                status="completed",
            )
            output_words = 1 + _count_words(reply.arguments)
        else:
            text = reply.text or ""
            output = ResponseOutputMessage(
                id=f"msg_offline_{digest}",
                type="message",
                role="assistant",
                status="completed",
                content=[
                    ResponseOutputText(type="output_text", text=text, annotations=[], logprobs=[])
                ],
            )
            output_words = _count_words(text)
        input_words = _count_words(system_instructions or "") + sum(
            _count_words(text) for item in items for text in _item_texts(item)
        )
        usage = Usage(
            requests=1,
            input_tokens=input_words,
            output_tokens=output_words,
            total_tokens=input_words + output_words,
        )
        response = Response(
            id=f"resp_offline_{digest}",
            created_at=0,
            model=self.model_name,
            object="response",
            output=[output],
            tool_choice="auto",
            tools=[],
            parallel_tool_calls=False,
            status="completed",
            usage=_response_usage(usage),
        )
        return response, usage


class OfflineModelProvider(ModelProvider):
    """A model provider that answers every model name with an :class:`OfflineModel`.

    Args:
        delay: Passed to each :class:`OfflineModel` (seconds before replies and between
            streamed deltas).

    Example:
        ```python
        run_config = RunConfig(model_provider=OfflineModelProvider(), tracing_disabled=True)
        result = await Runner.run(agent, "Hello", run_config=run_config)
        result.final_output  # '[offline] You said: Hello (turn 1)'
        ```
    """

    def __init__(self, *, delay: float = 0.0) -> None:
        if delay < 0:
            raise ValueError(f"delay must be zero or positive, not {delay!r}")
        self.delay = delay

    def get_model(self, model_name: str | None) -> Model:
        """Return an offline model reporting ``model_name`` (or ``"offline"``).

        Args:
            model_name: Any name; the offline model behaves the same whatever it is called.

        Returns:
            A new :class:`OfflineModel`.
        """
        return OfflineModel(model_name or OFFLINE_MODEL_NAME, delay=self.delay)


def _normalise_input(input: str | Sequence[Any]) -> list[Mapping[str, Any]]:
    if isinstance(input, str):
        return [{"role": "user", "content": input}]
    items: list[Mapping[str, Any]] = []
    for item in input:
        if isinstance(item, Mapping):
            items.append(item)
        elif callable(dump := getattr(item, "model_dump", None)):
            items.append(cast(Mapping[str, Any], dump(exclude_unset=True)))
    return items


def _is_user_message(item: Mapping[str, Any]) -> bool:
    return item.get("role") == "user" and item.get("type", "message") == "message"


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, Sequence):
        parts: list[str] = []
        for part in content:
            if isinstance(part, Mapping):
                text = part.get("text", part.get("refusal"))
                if isinstance(text, str):
                    parts.append(text)
        return "".join(parts)
    return ""


def _item_texts(item: Mapping[str, Any]) -> Iterator[str]:
    kind = item.get("type", "message")
    if kind == "message":
        yield _content_text(item.get("content"))
    elif kind == "function_call":
        yield str(item.get("name", ""))
        yield str(item.get("arguments", ""))
    elif kind == "function_call_output":
        yield _content_text(item.get("output"))
    elif kind == "reasoning":
        for summary in item.get("summary") or ():
            if isinstance(summary, Mapping):
                yield str(summary.get("text", ""))


def _count_words(text: str) -> int:
    return len(text.split())


def _tool_names(tools: Sequence[Tool], handoffs: Sequence[Handoff]) -> list[str]:
    names = [tool.name for tool in tools if isinstance(tool, FunctionTool)]
    names.extend(handoff.tool_name for handoff in handoffs)
    return names


def _decide(
    items: Sequence[Mapping[str, Any]], tools: Sequence[Tool], handoffs: Sequence[Handoff]
) -> _Reply:
    tool_results = _trailing_tool_results(items)
    if tool_results:
        answers = "; ".join(f"{name} returned: {output}" for name, output in tool_results)
        return _Reply(text=f"{OFFLINE_LABEL} {answers}")

    user_messages = [item for item in items if _is_user_message(item)]
    turn = len(user_messages)
    said = _content_text(user_messages[-1].get("content")) if user_messages else ""
    command = _TOOL_COMMAND.match(said)
    if command is None:
        return _Reply(text=f"{OFFLINE_LABEL} You said: {said} (turn {turn})")

    name = command["name"]
    available = _tool_names(tools, handoffs)
    if name not in available:
        listed = ", ".join(available) if available else "none"
        return _Reply(text=f"{OFFLINE_LABEL} No tool named {name!r}. Available tools: {listed}.")
    raw_arguments = (command["arguments"] or "").strip() or "{}"
    try:
        arguments = json.loads(raw_arguments)
    except json.JSONDecodeError as error:
        return _Reply(text=f"{OFFLINE_LABEL} Tool arguments are not valid JSON: {error.msg}.")
    if not isinstance(arguments, dict):
        return _Reply(text=f"{OFFLINE_LABEL} Tool arguments must be a JSON object.")
    return _Reply(
        tool_name=name,
        arguments=json.dumps(arguments, ensure_ascii=False, separators=(",", ":")),
    )


def _trailing_tool_results(items: Sequence[Mapping[str, Any]]) -> list[tuple[str, str]]:
    """The tool outputs the input ends with, oldest first, each with its tool's name.

    Only a conversation whose last item is a tool output is waiting for the model to use it;
    calls and outputs that precede a later message were answered already.
    """
    names = {
        item.get("call_id"): str(item.get("name", "tool"))
        for item in items
        if item.get("type") == "function_call"
    }
    if not items or items[-1].get("type") != "function_call_output":
        return []
    results: list[tuple[str, str]] = []
    for item in reversed(items):
        kind = item.get("type")
        if kind == "function_call_output":
            name = names.get(item.get("call_id"), "tool")
            results.append((name, _content_text(item.get("output"))))
        elif kind not in ("function_call", "reasoning"):
            break
    results.reverse()
    return results


def _digest(items: Sequence[Mapping[str, Any]], reply: _Reply) -> str:
    """A short id that depends only on the conversation and the reply, never on a clock."""
    hasher = hashlib.sha256()
    hasher.update(str(len(items)).encode())
    for item in items:
        for text in _item_texts(item):
            hasher.update(b"\0" + text.encode())
    hasher.update(f"\0{reply.text}\0{reply.tool_name}\0{reply.arguments}".encode())
    return hasher.hexdigest()[:16]


def _response_usage(usage: Usage) -> ResponseUsage:
    return ResponseUsage.model_validate(
        {
            "input_tokens": usage.input_tokens,
            "output_tokens": usage.output_tokens,
            "total_tokens": usage.total_tokens,
            "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
            "output_tokens_details": {"reasoning_tokens": 0},
        }
    )


def _stream_events(response: Response) -> Iterator[TResponseStreamEvent]:
    sequence = 0

    def number() -> int:
        nonlocal sequence
        sequence += 1
        return sequence - 1

    started = response.model_copy(update={"output": [], "status": "in_progress", "usage": None})
    yield ResponseCreatedEvent(type="response.created", response=started, sequence_number=number())
    yield ResponseInProgressEvent(
        type="response.in_progress", response=started, sequence_number=number()
    )
    for index, item in enumerate(response.output):
        if isinstance(item, ResponseOutputMessage):
            yield ResponseOutputItemAddedEvent(
                type="response.output_item.added",
                item=item.model_copy(update={"content": [], "status": "in_progress"}),
                output_index=index,
                sequence_number=number(),
            )
            for content_index, part in enumerate(item.content):
                if not isinstance(part, ResponseOutputText):
                    continue
                yield ResponseContentPartAddedEvent(
                    type="response.content_part.added",
                    item_id=item.id,
                    output_index=index,
                    content_index=content_index,
                    part=part.model_copy(update={"text": ""}),
                    sequence_number=number(),
                )
                for delta in _WORD_DELTAS.findall(part.text):
                    yield ResponseTextDeltaEvent(
                        type="response.output_text.delta",
                        item_id=item.id,
                        output_index=index,
                        content_index=content_index,
                        delta=delta,
                        logprobs=[],
                        sequence_number=number(),
                    )
                yield ResponseTextDoneEvent(
                    type="response.output_text.done",
                    item_id=item.id,
                    output_index=index,
                    content_index=content_index,
                    text=part.text,
                    logprobs=[],
                    sequence_number=number(),
                )
                yield ResponseContentPartDoneEvent(
                    type="response.content_part.done",
                    item_id=item.id,
                    output_index=index,
                    content_index=content_index,
                    part=part,
                    sequence_number=number(),
                )
        elif isinstance(item, ResponseFunctionToolCall):
            item_id = item.id or item.call_id
            yield ResponseOutputItemAddedEvent(
                type="response.output_item.added",
                item=item.model_copy(update={"arguments": "", "status": "in_progress"}),
                output_index=index,
                sequence_number=number(),
            )
            yield ResponseFunctionCallArgumentsDeltaEvent(
                type="response.function_call_arguments.delta",
                item_id=item_id,
                output_index=index,
                delta=item.arguments,
                sequence_number=number(),
            )
            # ``name`` is required by some openai releases and an extra in others.
            yield ResponseFunctionCallArgumentsDoneEvent.model_validate(
                {
                    "type": "response.function_call_arguments.done",
                    "item_id": item_id,
                    "output_index": index,
                    "name": item.name,
                    "arguments": item.arguments,
                    "sequence_number": number(),
                }
            )
        yield ResponseOutputItemDoneEvent(
            type="response.output_item.done",
            item=item,
            output_index=index,
            sequence_number=number(),
        )
    yield ResponseCompletedEvent(
        type="response.completed", response=response, sequence_number=number()
    )
