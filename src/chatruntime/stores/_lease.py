"""Leases held as a token with an expiry: the algorithm ``RedisStore`` and ``SqlStore`` share.

Such a store keeps a session's lease as a random token that expires unless renewed (a Redis
key, a table row) and supplies three primitives on it: take it unless someone holds it, renew
it, give it back. :class:`TokenLease` does the rest. :func:`poll` is the backoff loop of every
store that waits for a lease, ``FileStore``'s file lock included.
"""

from __future__ import annotations

import logging
import random
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Final, TypeVar

import anyio

from ..models import BusyError, InvalidInputError

_POLL_FIRST: Final = 0.01
_POLL_MAX: Final = 0.25

T = TypeVar("T")


@dataclass(frozen=True, kw_only=True)
class TokenLease:
    """One session's lease in a store that keeps it as a token with an expiry.

    :meth:`hold` takes the lease for a random token, renews it every ``ttl / 3`` seconds
    while the body runs and gives it back afterwards; the store supplies the primitives.
    """

    session_id: str
    name: str
    """How log messages name the lease, e.g. ``"the lease of session <id>"``."""
    take: Callable[[str, int], Awaitable[bool]]
    """Give the lease to a token for a ttl in milliseconds unless it is held; whether it did."""
    renew: Callable[[str, int], Awaitable[bool]]
    """Make the token's lease last a ttl in milliseconds from now; ``False`` if not its own."""
    give_back: Callable[[str], Awaitable[None]]
    """End the lease if the token still holds it."""
    logger: logging.Logger
    renew_errors: tuple[type[Exception], ...]
    """Failures of ``renew`` to log and retry at the next renewal instead of raising."""
    give_back_errors: tuple[type[Exception], ...]
    """Failures of ``give_back`` to log instead of raising: the lease then ends by its ttl."""
    give_back_timeout: float
    """Seconds to wait for ``give_back`` before leaving the lease to end by its ttl."""

    @asynccontextmanager
    async def hold(self, *, ttl: float, timeout: float) -> AsyncIterator[None]:
        """Hold the lease for the body of ``async with``; see ``SessionStore.lease``.

        If the lease is lost anyway (the server restarted, the process stalled past
        ``ttl``), a warning is logged and the body goes on: revisions still refuse a write
        built on stale data.

        Raises:
            InvalidInputError: ``ttl`` is not positive or ``timeout`` is negative.
            BusyError: Not granted within ``timeout`` (details: ``session_id``, ``timeout``).
        """
        if not ttl > 0:
            raise InvalidInputError(f"ttl must be positive, got {ttl!r}", field="ttl")
        if not timeout >= 0:
            raise InvalidInputError(
                f"timeout must not be negative, got {timeout!r}", field="timeout"
            )
        ttl_ms = max(1, round(ttl * 1000))
        token = await self._acquire(ttl_ms, timeout)
        body_error: Exception | None = None
        try:
            async with anyio.create_task_group() as renewals:
                renewals.start_soon(self._keep, token, ttl_ms)
                try:
                    yield
                except Exception as error:
                    # Re-raised below, outside the task group, so callers get their own
                    # exception rather than an ExceptionGroup wrapping it.
                    body_error = error
                finally:
                    renewals.cancel_scope.cancel()
        finally:
            await self._release(token)
        if body_error is not None:
            raise body_error

    async def _acquire(self, ttl_ms: int, timeout: float) -> str:
        token = secrets.token_hex(16)

        async def attempt() -> str | None:
            try:
                granted = await self.take(token, ttl_ms)
            except anyio.get_cancelled_exc_class():
                # Cancelled while the attempt was in flight: the lease may be ours without
                # us knowing.
                await self._release(token)
                raise
            return token if granted else None

        deadline = anyio.current_time() + timeout
        if await poll(attempt, deadline, first=_POLL_FIRST, most=_POLL_MAX, jitter=True) is None:
            raise BusyError(
                f"session {self.session_id} is busy: another turn held it for over {timeout:g}s",
                session_id=self.session_id,
                timeout=timeout,
            )
        return token

    async def _keep(self, token: str, ttl_ms: int) -> None:
        interval = ttl_ms / 3000
        while True:
            await anyio.sleep(interval)
            try:
                renewed = await self.renew(token, ttl_ms)
            except self.renew_errors as error:
                # Best effort: failing here would tear down the turn the lease protects.
                self.logger.warning("could not renew %s, will retry: %s", self.name, error)
                continue
            if not renewed:
                self.logger.warning(
                    "%s expired or was taken over while held; its turn may overlap another, "
                    "and a stale write will be refused by revision",
                    self.name,
                )
                return

    async def _release(self, token: str) -> None:
        # Shielded so a cancelled turn still frees the session at once; bounded so a dead
        # server cannot hold the caller: the lease then ends by its ttl.
        with anyio.move_on_after(self.give_back_timeout, shield=True):
            try:
                await self.give_back(token)
            except self.give_back_errors as error:
                self.logger.warning(
                    "could not release %s; it ends by its ttl: %s", self.name, error
                )


async def poll(
    attempt: Callable[[], Awaitable[T | None]],
    deadline: float,
    *,
    first: float,
    most: float,
    jitter: bool,
) -> T | None:
    """Call ``attempt`` until it returns something other than ``None`` or ``deadline`` passes.

    The pauses between attempts start at ``first`` seconds and double up to ``most``; one
    that would outlast ``deadline`` is cut short, for a last attempt at the deadline.

    Args:
        attempt: Returns what was obtained, or ``None`` to try again.
        deadline: When to stop trying, on the ``anyio.current_time()`` clock.
        first: Seconds of the first pause.
        most: Seconds of the longest pause.
        jitter: Shorten each pause by a random share of up to half.

    Returns:
        What ``attempt`` returned, or ``None`` if it still had nothing at ``deadline``.
    """
    delay = first
    while True:
        got = await attempt()
        if got is not None:
            return got
        remaining = deadline - anyio.current_time()
        if remaining <= 0:
            return None
        # Jitter keeps waiting processes from polling in lockstep.
        pause = delay * (0.5 + random.random() / 2) if jitter else delay
        await anyio.sleep(min(pause, remaining))
        delay = min(delay * 2, most)
