"""Sending a write script with a bounded wait for its answer, knowing whether it may have run.

redis-py's own call path waits ``socket_timeout`` for an answer and then repeats the command
(the pool's retries), so a server that stops answering (stalled, ``SIGSTOP``, a frozen VM)
held a write for three times the socket timeout, and the caller was told it failed although
the script, buffered in the socket, ran once the server came back. Here the write is sent on a
connection taken from the pool, and its answer is awaited for ``answer_timeout`` seconds at
most. What the caller learns is exact:

- an answer: the script ran, and this is what it said;
- a redis-py error raised before anything was sent (no free connection, cannot connect):
  nothing was written;
- :class:`WriteUnanswered`: the script was sent but no answer came in time. It may have run,
  or may run when the server resumes.

A connection that drops after sending is replaced and the script sent again while time is
left: the write scripts recognise their own earlier success, so this never writes twice.
Nothing here cancels redis-py mid-call; a connection whose answer is abandoned is closed, so
no later command reads it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

import anyio
from redis import exceptions as redis_errors
from redis.asyncio import Redis
from redis.commands.core import AsyncScript

__all__ = ["WriteUnanswered", "send_write"]

_ATTEMPTS: Final = 3
"""Connections a write is sent on at most (the first, and two after dropped ones)."""

_DROPPED: Final = (redis_errors.ConnectionError, redis_errors.TimeoutError, OSError)


class WriteUnanswered(Exception):
    """A write script was sent, but no answer came within the time allowed: it may have run.

    Attributes:
        waited: Seconds waited for the answer.
        cause: The error of the last attempt, if one ended by an error rather than the wait.
    """

    def __init__(self, waited: float, cause: BaseException | None = None) -> None:
        super().__init__(f"no answer within {waited:g}s")
        self.waited = waited
        self.cause = cause


async def send_write(
    client: Redis,
    script: AsyncScript,
    keys: Sequence[str],
    args: Sequence[str | int],
    *,
    answer_timeout: float,
) -> Any:
    """Run ``script`` once, waiting at most ``answer_timeout`` seconds for its answer.

    Taking a connection is bounded by the pool's own settings (``pool_timeout`` for a free
    one, ``connect_timeout`` and ``socket_timeout`` to open one); the wait starts when the
    script is sent, and covers every attempt after it.

    Raises:
        WriteUnanswered: The script was sent and no answer came in time.
        redis.exceptions.RedisError: Nothing was sent (no connection), or Redis answered with
            an error.
    """
    pool = client.connection_pool
    command = ("EVALSHA", script.sha, len(keys), *keys, *args)
    deadline: float | None = None
    last_error: BaseException | None = None
    for _attempt in range(_ATTEMPTS):
        try:
            connection = await pool.get_connection()  # type: ignore[no-untyped-call]
        except _DROPPED as error:
            if deadline is None:
                raise  # nothing was sent
            last_error = error
            break
        try:
            if deadline is None:
                deadline = anyio.current_time() + answer_timeout
            elif anyio.current_time() >= deadline:
                break
            try:
                return await _run_on(connection, script, command, deadline)
            except _Late:
                raise WriteUnanswered(answer_timeout) from None
            except _DROPPED as error:
                # The connection dropped (a restarted server, a stale socket): send it again.
                last_error = error
                await connection.disconnect(nowait=True)
        finally:
            await pool.release(connection)
    raise WriteUnanswered(answer_timeout, last_error)


async def _run_on(
    connection: Any, script: AsyncScript, command: tuple[Any, ...], deadline: float
) -> Any:
    """Send ``command`` on ``connection`` and read its answer before ``deadline``."""
    await connection.send_command(*command)
    try:
        return await _answer(connection, deadline)
    except redis_errors.NoScriptError:
        # Not run: this server does not know the script yet (restarted, flushed).
        await connection.send_command("SCRIPT", "LOAD", script.script)
        await _answer(connection, deadline)
        await connection.send_command(*command)
        return await _answer(connection, deadline)


async def _answer(connection: Any, deadline: float) -> Any:
    remaining = max(deadline - anyio.current_time(), 0.001)
    reply = await connection.read_response(timeout=remaining)
    if reply is None:
        # redis-py answers None for a read that timed out (the scripts never return nil); its
        # answer may still come, so this connection must not serve another command.
        await connection.disconnect(nowait=True)
        raise _Late
    return reply


class _Late(Exception):
    """No answer came before the deadline (the connection is closed)."""
