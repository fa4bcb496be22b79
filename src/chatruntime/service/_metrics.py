"""Prometheus metrics of one service: requests, turns and errors by code, turn latency, tokens,
and the sessions in the manager's cache.

Each app has its own registry, so several apps in one process (tests, embedders) never mix
their counts.
"""

from __future__ import annotations

from typing import Literal

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from ..models import ErrorCode, Message
from ..session import SessionManager

TurnMode = Literal["send", "stream"]
TurnOutcome = Literal["ok", "error", "disconnected"]
"""How a turn ended: stored, failed (with an error code), or abandoned by its client."""

_TURN_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


class ServiceMetrics:
    """The metrics of one app, in their own registry.

    Args:
        manager: Whose cache size the ``chatruntime_cached_sessions`` gauge reads at scrape time.
    """

    content_type = CONTENT_TYPE_LATEST

    def __init__(self, manager: SessionManager) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "chatruntime_http_requests",
            "HTTP requests answered, by method, route template and status.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.turns = Counter(
            "chatruntime_turns",
            "Turns by mode (send, stream) and outcome (ok, error, disconnected).",
            ["mode", "outcome"],
            registry=self.registry,
        )
        self.errors = Counter(
            "chatruntime_errors",
            "Failed calls answered, by error code.",
            ["code"],
            registry=self.registry,
        )
        self.turn_seconds = Histogram(
            "chatruntime_turn_duration_seconds",
            "Time from a turn's request to its end, by mode.",
            ["mode"],
            buckets=_TURN_BUCKETS,
            registry=self.registry,
        )
        self.tokens = Counter(
            "chatruntime_tokens",
            "Model tokens of the replies of stored turns, by kind (input, output).",
            ["kind"],
            registry=self.registry,
        )
        self.turns_in_flight = Gauge(
            "chatruntime_turns_in_flight",
            "Turns running now.",
            registry=self.registry,
        )
        cached = Gauge(
            "chatruntime_cached_sessions",
            "Sessions held in the manager's cache.",
            registry=self.registry,
        )
        cached.set_function(lambda: manager.cached_sessions)
        for code in ErrorCode:
            # Every code is present from the start, so a rate over it is defined at zero.
            self.errors.labels(code=code.value)

    def error(self, code: ErrorCode) -> None:
        """Count a failure answered with ``code``."""
        self.errors.labels(code=code.value).inc()

    def turn(
        self,
        mode: TurnMode,
        outcome: TurnOutcome,
        seconds: float,
        *,
        reply: Message | None = None,
    ) -> None:
        """Count a finished turn, its time, and the tokens of its ``reply`` (its error code,
        if it failed, is counted where the failure is answered: :meth:`error`)."""
        self.turns.labels(mode=mode, outcome=outcome).inc()
        self.turn_seconds.labels(mode=mode).observe(seconds)
        if reply is not None and reply.usage is not None:
            self.tokens.labels(kind="input").inc(reply.usage.input_tokens)
            self.tokens.labels(kind="output").inc(reply.usage.output_tokens)

    def request(self, method: str, route: str, status: int) -> None:
        """Count an answered HTTP request."""
        self.requests.labels(method=method, route=route, status=str(status)).inc()

    def render(self) -> bytes:
        """The metrics in the Prometheus text format."""
        return generate_latest(self.registry)
