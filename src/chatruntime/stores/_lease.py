"""Leases held as a token with an expiry: the algorithm ``RedisStore`` and ``SqlStore`` share.

Such a store keeps a session's lease as a random token that expires unless renewed (a Redis
key, a table row) and supplies three primitives on it: take it unless someone holds it, renew
it, give it back. :class:`TokenLeases` does the rest, including what happens when the server
is away at the moment a lease should be given back: the token is remembered and given back
as soon as the server answers again, so the session is not blocked for the rest of its ttl.

Also here, for every store: :func:`poll`, the backoff loop of whoever waits for a lease, and
:func:`run_to_end`, which keeps a step that must not be cut short (giving a lease back,
committing a write) from being cut short by a raw ``Task.cancel()`` as well.
"""

from __future__ import annotations

import asyncio
import logging
import random
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import partial
from typing import Final, TypeVar

import anyio

from ..models import InvalidInputError
from ._errors import busy
from ._protocol import Lease

__all__ = ["Granted", "TokenLeases", "poll", "run_to_end"]

_POLL_FIRST: Final = 0.01
_POLL_MAX: Final = 0.25
_RETRY_FIRST: Final = 0.05
_RETRY_MOST: Final = 1.0
"""Pauses between attempts to give back a lease the server did not take back: short, since
each attempt while the server is down is a refused connection, and another process may be
waiting for the session."""

T = TypeVar("T")


@dataclass(frozen=True)
class Granted:
    """What an attempt to take a lease found: whether it was granted, and the session's
    revision if the same step read it (``None`` with ``revision_known``: no such session)."""

    granted: bool
    revision_known: bool = False
    revision: int | None = None


class TokenLeases:
    """The session leases of one store that keeps each as a random token with an expiry.

    :meth:`hold` takes a session's lease for a fresh token, renews it every ``ttl / 3``
    seconds while the body runs, and gives it back afterwards unless a write did
    (``Lease.released``).

    When giving back fails (the server is away or too slow), the token is remembered: the
    next lease of that session taken through this object gives it back first, and a
    background task retries with growing pauses until the server answers, the token's ttl
    has passed, or :meth:`close`. So a session waits for its ttl only if this process ends
    while the server is away.

    Args:
        take: ``(session_id, token, ttl_ms)``: give the lease to ``token`` for ``ttl_ms``
            milliseconds unless another token holds it; what it found.
        renew: ``(session_id, token, ttl_ms)``: make the token's lease last ``ttl_ms`` from
            now; ``False`` if the token no longer holds it.
        give_back: ``(session_id, token)``: end the lease if the token still holds it.
        failures: What the primitives raise when the server fails or is away: a renewal
            failing so is logged and retried at the next renewal, a give-back remembered.
        give_back_timeout: Seconds to wait for ``give_back`` before remembering the token.
        logger: Where warnings about leases go.
        name: How log messages name a session's lease, from its id.
    """

    def __init__(
        self,
        *,
        take: Callable[[str, str, int], Awaitable[Granted]],
        renew: Callable[[str, str, int], Awaitable[bool]],
        give_back: Callable[[str, str], Awaitable[None]],
        failures: tuple[type[Exception], ...],
        give_back_timeout: float,
        logger: logging.Logger,
        name: Callable[[str], str] = lambda session_id: f"the lease of session {session_id}",
    ) -> None:
        self._take = take
        self._renew = renew
        self._give_back = give_back
        self._failures = failures
        self._give_back_timeout = give_back_timeout
        self._logger = logger
        self._name = name
        self._unreturned: dict[str, dict[str, float]] = {}
        """Tokens not given back yet, by session, with when each ends by itself (on the
        ``anyio.current_time()`` clock)."""
        self._retrier: asyncio.Task[None] | None = None

    @property
    def unreturned(self) -> dict[str, list[str]]:
        """The tokens not given back yet (the server was away), by session id."""
        return {session_id: list(tokens) for session_id, tokens in self._unreturned.items()}

    @asynccontextmanager
    async def hold(self, session_id: str, *, ttl: float, timeout: float) -> AsyncIterator[Lease]:
        """Hold the session's lease for the body of ``async with``; see ``SessionStore.lease``.

        If the lease is lost anyway (the server restarted without it, the process stalled
        past ``ttl``), a warning is logged and the body goes on: revisions still refuse a
        write built on stale data.

        Raises:
            InvalidInputError: ``ttl`` is not positive or ``timeout`` is negative.
            BusyError: Not granted within ``timeout`` (details: ``session_id``, ``timeout``).
        """
        check_lease_arguments(ttl, timeout)
        ttl_ms = max(1, round(ttl * 1000))
        if session_id in self._unreturned:
            await self._give_back_remembered(session_id)
        token = secrets.token_hex(16)

        async def attempt() -> Granted | None:
            try:
                found = await self._take(session_id, token, ttl_ms)
            except anyio.get_cancelled_exc_class():
                # Cancelled while the attempt was in flight: the lease may be ours without
                # us knowing.
                await self._end(session_id, token, ttl)
                raise
            except self._failures:
                # The reply may have been lost after the server granted it.
                self._remember(session_id, token, ttl)
                raise
            return found if found.granted else None

        deadline = anyio.current_time() + timeout
        granted = await poll(attempt, deadline, first=_POLL_FIRST, most=_POLL_MAX, jitter=True)
        if granted is None:
            raise busy(session_id, timeout)
        lease = Lease(
            session_id,
            token=token,
            revision=granted.revision,
            revision_known=granted.revision_known,
        )
        body_error: Exception | None = None
        try:
            async with anyio.create_task_group() as renewals:
                renewals.start_soon(self._keep, lease, ttl_ms)
                try:
                    yield lease
                except Exception as error:
                    # Re-raised below, outside the task group, so callers get their own
                    # exception rather than an ExceptionGroup wrapping it.
                    body_error = error
                finally:
                    renewals.cancel_scope.cancel()
        finally:
            if not lease.released:
                await self._end(session_id, token, ttl)
        if body_error is not None:
            raise body_error

    async def close(self) -> None:
        """Make a last attempt, bounded by ``give_back_timeout``, to give back the tokens not
        given back yet, and stop the background retries; what is left ends by its ttl."""
        retrier, self._retrier = self._retrier, None
        if retrier is not None:
            retrier.cancel()
            # A task of another event loop (the store was used under an earlier
            # asyncio.run) cannot be awaited here; cancelled, it ends with its loop.
            if retrier.get_loop() is asyncio.get_running_loop():
                with anyio.CancelScope(shield=True):
                    await asyncio.wait({retrier})
        if self._unreturned:
            with anyio.move_on_after(self._give_back_timeout, shield=True):
                await self._give_back_all()
        if self._unreturned:
            self._logger.warning(
                "closing with %d session lease(s) the server did not take back; "
                "they end by their ttl",
                sum(len(tokens) for tokens in self._unreturned.values()),
            )
            self._unreturned.clear()

    # -- internals ------------------------------------------------------------------------

    async def _keep(self, lease: Lease, ttl_ms: int) -> None:
        interval = ttl_ms / 3000
        name = self._name(lease.session_id)
        while True:
            await anyio.sleep(interval)
            if lease.released:
                return
            try:
                renewed = await self._renew(lease.session_id, lease.token, ttl_ms)
            except self._failures as error:
                # Best effort: failing here would tear down the turn the lease protects.
                self._logger.warning("could not renew %s, will retry: %s", name, error)
                continue
            if not renewed and not lease.released:
                self._logger.warning(
                    "%s expired or was taken over while held; its turn may overlap another, "
                    "and a stale write will be refused by revision",
                    name,
                )
                return

    async def _end(self, session_id: str, token: str, ttl: float) -> None:
        """Give the token's lease back now, or remember it to give back later."""
        if not await run_to_end(partial(self._try_give_back, session_id, token, logging.WARNING)):
            self._remember(session_id, token, ttl)

    async def _try_give_back(self, session_id: str, token: str, level: int) -> bool:
        """One attempt, bounded by ``give_back_timeout``; whether the server took the lease
        back. A failure is logged at ``level``."""
        with anyio.move_on_after(self._give_back_timeout):
            try:
                await self._give_back(session_id, token)
            except self._failures as error:
                self._logger.log(
                    level,
                    "could not release %s; will release it when the server answers: %s",
                    self._name(session_id),
                    error,
                )
                return False
            return True
        self._logger.log(
            level,
            "could not release %s within %gs; will release it when the server answers",
            self._name(session_id),
            self._give_back_timeout,
        )
        return False

    def _remember(self, session_id: str, token: str, ttl: float) -> None:
        self._unreturned.setdefault(session_id, {})[token] = anyio.current_time() + ttl
        if self._retrier is None or self._retrier.done():
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:  # pragma: no cover - not on asyncio: the next take retries
                return
            self._retrier = loop.create_task(self._retry())

    def _forget(self, session_id: str, token: str) -> None:
        tokens = self._unreturned.get(session_id)
        if tokens is not None:
            tokens.pop(token, None)
            if not tokens:
                del self._unreturned[session_id]

    async def _give_back_remembered(self, session_id: str) -> None:
        for token, until in list(self._unreturned.get(session_id, {}).items()):
            if until <= anyio.current_time() or await run_to_end(
                partial(self._try_give_back, session_id, token, logging.DEBUG)
            ):
                self._forget(session_id, token)

    async def _give_back_all(self) -> bool:
        """One pass over the remembered tokens, dropping those given back or ended by their
        ttl; ``False`` as soon as the server still does not take one back."""
        for session_id, tokens in list(self._unreturned.items()):
            for token, until in list(tokens.items()):
                if until > anyio.current_time():
                    if not await self._try_give_back(session_id, token, logging.DEBUG):
                        return False
                    self._logger.info(
                        "released %s once the server answered again", self._name(session_id)
                    )
                self._forget(session_id, token)
        return True

    async def _retry(self) -> None:
        delay = _RETRY_FIRST
        while self._unreturned:
            await anyio.sleep(delay * (0.5 + random.random() / 2))
            try:
                done = await self._give_back_all()
            except Exception:
                # Not a failure of the server (the store was closed under it): nothing left
                # to retry against; the leases end by their ttl.
                self._logger.exception("stopped giving back session leases")
                return
            delay = _RETRY_FIRST if done else min(delay * 2, _RETRY_MOST)


def check_lease_arguments(ttl: float, timeout: float) -> None:
    """Raise :class:`InvalidInputError` for a ``ttl`` that is not positive or a negative
    ``timeout``."""
    if not ttl > 0:
        raise InvalidInputError(f"ttl must be positive, got {ttl!r}", field="ttl")
    if not timeout >= 0:
        raise InvalidInputError(f"timeout must not be negative, got {timeout!r}", field="timeout")


async def run_to_end(call: Callable[[], Awaitable[T]]) -> T:
    """Await ``call()`` to its end even if the caller is cancelled meanwhile; the caller's
    cancellation then reaches it at its next checkpoint.

    ``anyio.CancelScope(shield=True)`` holds back only anyio's own cancellation. On asyncio
    a raw ``Task.cancel()`` (``asyncio.wait_for``, ``asyncio.timeout``, a web framework
    dropping a request) still interrupts the awaited call, which may have done its work (a
    lock taken in a worker thread, a row committed) without its caller learning so, or left
    it half done. Here the call runs in a task of its own that no cancellation of the caller
    reaches; the caller waits for it, and is cancelled afterwards, once, as
    ``asyncio.timeout()`` counts on.

    Example:
        >>> await run_to_end(lambda: store_call(...))  # lands whole, or not at all
    """
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:  # pragma: no cover - trio: its cancellation honours anyio's shields
        with anyio.CancelScope(shield=True):
            return await call()
    caller = asyncio.current_task()

    async def run() -> T:
        return await call()

    work = loop.create_task(run())
    interrupted: asyncio.CancelledError | None = None
    with anyio.CancelScope(shield=True):
        while not work.done():
            try:
                await asyncio.wait({work})
            except asyncio.CancelledError as error:
                interrupted = error
                if caller is not None:
                    caller.uncancel()
    if interrupted is not None and caller is not None:
        caller.cancel(interrupted.args[0] if interrupted.args else None)
    return work.result()


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
