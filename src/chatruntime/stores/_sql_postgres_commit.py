"""A PostgreSQL write transaction with a time limit, and what its failure says.

A turn's commit is shielded from its caller's cancellation (a write must land whole or not
at all), so the store itself must bound it: a server that stops answering (stalled, its
host frozen, the network silently dropping packets) would otherwise hold the caller until
it answers again, however long that takes. :func:`bounded_write` gives the transaction, from
its ``BEGIN`` to the end of its ``COMMIT``, at most ``timeout`` seconds.

What the failure means depends on when it happened:

- before ``COMMIT`` was sent, the server rolls the transaction back when it notices the
  connection gone: nothing was written, :class:`~chatruntime.StorageError`;
- after ``COMMIT`` was sent and before its answer came, the server may have committed or
  not: :class:`~chatruntime.OutcomeUnknownError`, so a caller retries only in a way that is
  safe either way (with the same idempotency key);
- the server answered the ``COMMIT`` with an error (a serialization failure, a deferred
  constraint): nothing was written, :class:`~chatruntime.StorageError`.

A connection that timed out or broke is closed at once, without a goodbye to the server (it
might never answer one), and dropped from the pool.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import anyio
from sqlalchemy import exc as sa_errors
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ..models import ChatRuntimeError, OutcomeUnknownError, StorageError
from ._lease import run_to_end
from ._sql_errors import ErrorMapper

__all__ = ["bounded_write"]

logger = logging.getLogger("chatruntime.stores.sql")

T = TypeVar("T")


async def bounded_write(
    engine: AsyncEngine,
    errors: ErrorMapper,
    doing: str,
    timeout: float,
    body: Callable[[AsyncConnection], Awaitable[T]],
) -> T:
    """Run ``body(conn)`` in a transaction and commit it, all within ``timeout`` seconds.

    The connection is checked out of the pool before the clock starts (waiting for a free
    one is bounded by the pool's own ``pool_timeout``).

    Raises:
        ChatRuntimeError: What ``body`` raised to refuse the write (rolled back).
        StorageError: The write failed or ran out of time before ``COMMIT`` was sent, or
            the server refused the ``COMMIT``: nothing is stored.
        OutcomeUnknownError: The server stopped answering, or the connection broke, after
            ``COMMIT`` was sent: the write may or may not be stored.
    """
    with errors.mapped(doing):
        conn = await engine.connect()
    committing = False
    healthy = True
    try:
        try:
            with anyio.move_on_after(timeout):
                await conn.begin()
                result = await body(conn)
                committing = True
                await conn.commit()
                return result
            # Only the deadline gets here (a driver's own timeout raises TimeoutError).
            healthy = False
            raise _stalled(errors, doing, timeout, committing)
        except ChatRuntimeError:
            raise  # the body refused the write, or the deadline passed
        except Exception as error:
            healthy = not _connection_lost(error)
            if committing and not healthy:
                raise _unknown(errors, doing, _lost(errors, error)) from error
            raise errors.error(error, doing) from error
        except BaseException:
            # Cancelled mid-statement (a raw Task.cancel(): the caller's shield holds back
            # anyio's own): the connection is in an unknown state.
            healthy = False
            raise
    finally:
        await run_to_end(lambda: _give_back(conn, errors, healthy=healthy))


def _stalled(errors: ErrorMapper, doing: str, timeout: float, committing: bool) -> StorageError:
    if committing:
        return _unknown(errors, doing, f"no answer to the commit within {timeout:g}s")
    return StorageError(
        f"{errors.where} failed while {doing}: no answer within {timeout:g}s "
        "(commit_timeout); nothing was written",
        where=errors.where,
        timeout=timeout,
    )


def _unknown(errors: ErrorMapper, doing: str, reason: str) -> OutcomeUnknownError:
    return OutcomeUnknownError(
        f"{errors.where} failed while {doing}: {reason}; the write may or may not be "
        "stored: read the session again, or retry with the same idempotency key",
        where=errors.where,
    )


def _lost(errors: ErrorMapper, error: Exception) -> str:
    orig = getattr(error, "orig", None) or error
    detail = errors.scrub(str(orig) or type(orig).__name__)
    return f"the connection broke during the commit ({detail})"


def _connection_lost(error: BaseException) -> bool:
    """Whether ``error`` means the connection broke, rather than the server refusing."""
    if isinstance(error, sa_errors.DBAPIError):
        if error.connection_invalidated:
            return True
        orig: Any = error.orig
        sqlstate = str(getattr(orig, "sqlstate", "") or "")
        if sqlstate:
            # Class 08: connection exception; 57P01-57P03: the server is shutting down.
            return sqlstate.startswith("08") or sqlstate.startswith("57P")
        return isinstance(error, sa_errors.InterfaceError) or isinstance(
            getattr(orig, "__cause__", None), OSError | ConnectionError
        )
    return isinstance(error, OSError | ConnectionError)


async def _give_back(conn: AsyncConnection, errors: ErrorMapper, *, healthy: bool) -> None:
    """Return the connection to the pool (rolled back if still in a transaction), or, if it
    may be stuck, close its socket at once and drop it from the pool."""
    try:
        if not healthy and not conn.invalidated:
            raw = await conn.get_raw_connection()
            driver = raw.driver_connection
            if driver is not None:
                # No goodbye: a stalled server would not answer one.
                driver.terminate()
            await conn.invalidate()
        if conn.in_transaction():
            # Without a round trip once invalidated; else the server answers at once.
            await conn.rollback()
        await conn.close()
    except Exception as error:  # pragma: no cover - closing must not hide the real failure
        logger.warning("%s: could not give back a connection: %s", errors.where, error)
