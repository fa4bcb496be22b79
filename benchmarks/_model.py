"""A zero-latency model, so that turns measure the runtime and the store, not a model.

``chatruntime``'s ``OfflineModel`` counts the words of its whole input on every call (its
cost grows with the history); this one answers the same constant reply whatever it is sent,
in constant time, so both sides of a comparison pay exactly the same for the model.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from typing import Any

from agents import Agent, RunConfig
from agents.items import ModelResponse, TResponseStreamEvent
from agents.models.interface import Model
from agents.usage import Usage
from openai.types.responses import ResponseOutputMessage, ResponseOutputText

REPLY = "OK."


class ConstantModel(Model):
    """Answers every request at once with :data:`REPLY` and a fixed usage."""

    def __init__(self) -> None:
        self._ids = itertools.count(1)
        self.last_input_items = 0
        """How many input items the last request carried (to check both sides sent the same)."""

    async def get_response(self, *args: Any, **kwargs: Any) -> ModelResponse:
        given = kwargs.get("input", args[1] if len(args) > 1 else "")
        self.last_input_items = 1 if isinstance(given, str) else len(given)
        n = next(self._ids)
        message = ResponseOutputMessage(
            id=f"msg_bench_{n}",
            type="message",
            role="assistant",
            status="completed",
            content=[ResponseOutputText(type="output_text", text=REPLY, annotations=[])],
        )
        usage = Usage(requests=1, input_tokens=10, output_tokens=2, total_tokens=12)
        return ModelResponse(output=[message], usage=usage, response_id=None)

    def stream_response(self, *args: Any, **kwargs: Any) -> AsyncIterator[TResponseStreamEvent]:
        raise NotImplementedError("the benchmarks run turns without streaming")


def bench_agent(model: ConstantModel | None = None) -> Agent[Any]:
    """The agent both sides run: no tools, short instructions, the constant model."""
    return Agent(name="Bench", instructions="Answer briefly.", model=model or ConstantModel())


RUN_CONFIG = RunConfig(tracing_disabled=True)
"""Every run, ours and the SDK's: no traces (nothing leaves the machine)."""
