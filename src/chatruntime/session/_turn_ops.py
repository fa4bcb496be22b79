"""The manager's turn calls: ``send_message``, ``stream_message``, the SDK ``Session`` view
of a session, and the per-agent input windows.

A turn validates its input, takes the session (the per-session lock and the store lease),
runs the agent on it, and commits everything it produced in one write. It runs in a task of
its own so that its caller's timeout holds even when the store stalls during that write
(:data:`COMMIT_GRACE`), and it may carry an idempotency key that makes a retry return the
stored reply instead of running again (see ``_idempotency``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from contextlib import suppress
from typing import Any

import anyio
from agents import Agent, RunConfig, RunHooks
from agents.items import TResponseInputItem
from agents.lifecycle import RunHooksBase
from agents.memory import SessionSettings
from anyio.abc import ObjectSendStream

from ..agent import AgentManager
from ..models import (
    AgentNotFoundError,
    ChatSession,
    HistoryItem,
    InvalidInputError,
    Message,
    OutcomeUnknownError,
    Result,
    SessionNotActiveError,
    SessionNotFoundError,
    TurnTimeoutError,
    check_user_id,
    guard,
    is_uuid,
    now_ms,
    require_uuid,
)
from ..stores import Lease
from ._cache import Entry, Replay
from ._core import SessionCore, check_owner
from ._events import Done, Error, StreamEvent
from ._idempotency import check_key, find_key, remember_key, stored_reply, turn_items
from ._input import UserContent, check_content
from ._sdk_session import ChatruntimeSession
from ._turn import TurnOutcome, TurnRequest, run_turn, stream_turn
from ._window import WindowPolicy
from ._window_turn import run_windowed


class TurnOps(SessionCore):
    """Turns and windows (part of ``SessionManager``, which sets the attributes below)."""

    agents: AgentManager
    default_timeout: float | None
    max_turns: int
    window: WindowPolicy | None
    run_config: RunConfig | None
    _windows: dict[str, WindowPolicy]

    # -- turns ----------------------------------------------------------------------------

    async def send_message(
        self,
        session_id: str,
        content: UserContent,
        *,
        timeout: float | None = None,
        user_id: str | None = None,
        context: Any = None,
        hooks: RunHooks[Any] | None = None,
        run_config: RunConfig | None = None,
        max_turns: int | None = None,
        idempotency_key: str | None = None,
    ) -> Result[Message]:
        """Send a user message and run the session's agent until it answers.

        The whole turn (the user's message, tool calls and results, handoffs, reasoning and
        replies) is stored in one write, with the statistics, or nothing is. Turns of one
        session run one at a time, in call order.

        Fails with ``VALIDATION_ERROR`` (empty content), ``SESSION_NOT_FOUND``,
        ``CORRUPT_DATA``, ``SESSION_NOT_ACTIVE`` (paused or completed), ``AGENT_NOT_FOUND``,
        ``MODEL_ERROR``, ``TOOL_ERROR`` (a tool raised and has no error handler),
        ``MAX_TURNS_EXCEEDED``, ``GUARDRAIL_TRIPPED``, ``TIMEOUT``, ``CANCELLED`` (the run
        cancelled itself), ``BUSY``, ``SESSION_EXPIRED``, ``STORAGE_ERROR`` or
        ``OUTCOME_UNKNOWN``. When the caller is cancelled the cancellation goes on and
        nothing is stored, unless the finished turn was already being written: that write is
        shielded, so the turn is then stored whole.

        The timeout holds even when the store stalls while the turn is being written: the
        call returns at most :data:`COMMIT_GRACE` seconds after it with ``OUTCOME_UNKNOWN``
        (the write goes on in the background and may land; :meth:`close` waits for it).
        Send it again with the same ``idempotency_key`` to learn which.

        Args:
            session_id: The session.
            content: The user's message.
            timeout: Seconds the turn may take, waiting for earlier turns included
                (default: the manager's ``default_timeout``).
            user_id: The caller's user: another user's session answers
                ``SESSION_NOT_FOUND``, worded as for an unknown id.
            context: Handed to ``Runner.run`` as its ``context``: tools taking a
                ``RunContextWrapper`` read it as ``wrapper.context`` (who the user is, a
                database handle, the request).
            hooks: The SDK's ``RunHooks`` for this turn.
            run_config: This turn's run configuration instead of the manager's (its model
                provider still comes from the ``AgentManager`` when that has one). Its
                ``group_id`` defaults to the session id, so tracing groups a session's turns.
            max_turns: This turn's limit of model calls instead of the manager's.
            idempotency_key: Makes retries safe: stored with the turn, in the same write; a
                call with a key the session already stored a turn for returns that turn's
                reply without running the model again (after a restart and from another
                process too). 1–200 printable characters; the session remembers its last
                100 keys.

        Returns:
            The agent's final reply.

        Example:
            >>> reply = await manager.send_message(session.id, "Hello", timeout=30)
            >>> print(reply.data.content if reply.success else reply.error.code)
        """

        options = _CallOptions(context, hooks, run_config, max_turns, idempotency_key)
        return await guard(
            lambda: self._turn(session_id, content, timeout, run_turn, user_id, options)
        )

    async def stream_message(
        self,
        session_id: str,
        content: UserContent,
        *,
        timeout: float | None = None,
        user_id: str | None = None,
        context: Any = None,
        hooks: RunHooks[Any] | None = None,
        run_config: RunConfig | None = None,
        max_turns: int | None = None,
        idempotency_key: str | None = None,
    ) -> AsyncGenerator[StreamEvent, None]:
        """Send a user message and stream the agent's answer as it is made.

        Yields :class:`TextDelta`, :class:`ToolCall`, :class:`ToolResult`, :class:`Handoff` and
        :class:`AgentChanged` events, then exactly one :class:`Done` (the turn is stored;
        it carries the final reply) or :class:`Error` (nothing is stored; the codes are
        those of :meth:`send_message`). Leaving the loop early, closing the iterator or
        cancelling the consuming task cancels the run and stores nothing (a turn already
        being written is stored whole, never half).

        Args:
            session_id: The session.
            content: The user's message.
            timeout: Seconds the turn may take, including the time the consumer spends on
                each event (default: the manager's ``default_timeout``).

        The other arguments are those of :meth:`send_message`. A repeat of a stored
        ``idempotency_key`` yields only the :class:`Done` of the stored reply.

        Example:
            >>> async for event in manager.stream_message(session.id, "Hello"):
            ...     if isinstance(event, TextDelta):
            ...         print(event.text, end="")
        """
        self._require_open()
        sender, receiver = anyio.create_memory_object_stream[StreamEvent]()
        # The turn holds the session's lock and lease, which belong to one task; it runs in
        # its own task so that a consumer that walks away (even without closing this
        # iterator) can end it from wherever the iterator is finalised.
        # It is cancelled through an anyio scope, never Task.cancel(): a raw asyncio cancel
        # would pierce the shields that keep a store write from being cut in half.
        scope = anyio.CancelScope()

        async def work() -> None:
            with scope:
                await self._stream_turn(
                    session_id,
                    content,
                    timeout,
                    sender,
                    user_id,
                    _CallOptions(context, hooks, run_config, max_turns, idempotency_key),
                )

        worker = asyncio.get_running_loop().create_task(work())
        try:
            async with receiver:
                async for event in receiver:
                    yield event
        finally:
            scope.cancel()
            with anyio.CancelScope(shield=True):
                await asyncio.wait([worker])
            # Only a caller's misuse (UsageError) escapes the worker; it is the caller's.
            if not worker.cancelled() and (misuse := worker.exception()) is not None:
                raise misuse

    def sdk_session(
        self,
        session_id: str,
        user_id: str | None = None,
        *,
        settings: SessionSettings | None = None,
    ) -> ChatruntimeSession:
        """The session as the Agents SDK's ``Session``, so ``Runner.run(agent, input,
        session=manager.sdk_session(session_id))`` and :meth:`send_message` share one history.

        Its calls hold the session like a turn does (never interleaving with one), store
        every item losslessly, and raise chatruntime's errors (``SessionNotFoundError``...),
        as SDK sessions raise rather than return results.

        Args:
            session_id: An existing session.
            user_id: The caller's user: another user's session is not found.
            settings: The SDK's ``SessionSettings`` (``limit``: how many of the latest items
                ``get_items()`` returns by default).

        Raises:
            InvalidInputError: A malformed session id or user id.
        """
        self._require_open()
        require_uuid(session_id, "session_id")
        check_user_id(user_id)
        return ChatruntimeSession(self, session_id, user_id=user_id, settings=settings)

    def set_window(self, agent_id: str, window: WindowPolicy | None) -> None:
        """Use ``window`` for the sessions of one agent (``None``: the manager's default)."""
        require_uuid(agent_id, "agent_id")
        if window is None:
            self._windows.pop(agent_id, None)
        else:
            self._windows[agent_id] = window

    def window_for(self, agent_id: str) -> WindowPolicy | None:
        """The window the sessions of ``agent_id`` use."""
        return self._windows.get(agent_id, self.window)

    async def _stream_turn(
        self,
        session_id: str,
        content: UserContent,
        timeout: float | None,
        sender: ObjectSendStream[StreamEvent],
        user_id: str | None,
        options: _CallOptions,
    ) -> None:
        async def run(request: TurnRequest) -> TurnOutcome:
            return await stream_turn(request, sender.send)

        async with sender:
            result = await guard(
                lambda: self._turn(session_id, content, timeout, run, user_id, options)
            )
            last: StreamEvent
            if result.success:
                assert result.data is not None
                last = Done(message=result.data)
            else:
                assert result.error is not None
                last = Error(error=result.error)
            with suppress(anyio.BrokenResourceError):
                await sender.send(last)

    async def _turn(
        self,
        session_id: str,
        content: UserContent,
        timeout: float | None,
        run: Callable[[TurnRequest], Awaitable[TurnOutcome]],
        user_id: str | None,
        options: _CallOptions,
    ) -> Message:
        """Validate, take the session, ``run`` the turn on it, and commit the outcome, within
        ``timeout`` (plus :data:`COMMIT_GRACE` for a write under way)."""
        limit = self._check_turn(session_id, timeout)
        text = check_content(content)
        check_user_id(user_id)
        options.check()
        progress = _TurnProgress()
        if limit is None:
            await self._turn_body(session_id, content, text, run, user_id, options, progress)
            assert progress.reply is not None
            return progress.reply
        scope = anyio.CancelScope()

        async def body() -> None:
            with scope, anyio.move_on_after(limit):
                await self._turn_body(session_id, content, text, run, user_id, options, progress)

        # The turn runs in its own task so that the caller can stop waiting for a write the
        # store does not confirm: that write is shielded (it must not be cut in half) and
        # keeps the session's lock and lease until the store answers.
        worker = asyncio.get_running_loop().create_task(body())
        try:
            done, _ = await asyncio.wait({worker}, timeout=limit + COMMIT_GRACE)
        except BaseException:
            scope.cancel()
            with anyio.CancelScope(shield=True):
                await asyncio.wait({worker})
            raise
        if not done:
            worker.add_done_callback(_log_late_outcome)
            if progress.reply is not None:
                return progress.reply  # stored; only giving the lease back is slow
            if progress.committing:
                raise _outcome_unknown(session_id, limit)
            raise _timed_out(session_id, limit)
        worker.result()  # the turn's own error, if any
        # The reply is checked rather than the scope: a timeout that fires after the commit
        # must not report a stored turn as lost.
        if progress.reply is None:
            raise _timed_out(session_id, limit)
        return progress.reply

    async def _turn_body(
        self,
        session_id: str,
        content: UserContent,
        text: str,
        run: Callable[[TurnRequest], Awaitable[TurnOutcome]],
        user_id: str | None,
        options: _CallOptions,
        progress: _TurnProgress,
    ) -> None:
        entry = await self._lookup_for_turn(session_id)
        check_owner(entry.session, user_id)
        window = self.window_for(entry.session.agent_id)
        async with self._exclusive(session_id, window=window, content=text) as (entry, lease):
            # Checked on the stored revision, before the model is asked anything.
            self._usable(entry.session, user_id)
            key = options.idempotency_key
            if key is not None and (stored := await self._stored_turn(entry, key)) is not None:
                progress.reply = stored_reply(stored)
                return
            request = await self._turn_request(entry, content, text, window, options)
            outcome = await run_windowed(request, run)
            progress.committing = True
            progress.reply = await self._commit_turn(entry, outcome, lease, key)

    async def _stored_turn(self, entry: Entry, key: str) -> list[HistoryItem] | None:
        """The items of the turn stored under ``key``, if the session still holds it."""
        found = find_key(entry.session.turn_keys, key)
        if found is None:
            return None
        items = turn_items(entry.session.history, found)
        if items is None and not entry.complete:
            # Retries are rare: reading the whole history for one costs less than keeping
            # every turn's position in the header.
            whole = await self._read(entry.session.id)
            items = turn_items(whole.history, found) if whole is not None else None
        return items

    def _check_turn(self, session_id: str, timeout: float | None) -> float | None:
        """Validate a turn's session id and timeout; return its time limit (``None``: none)."""
        self._require_open()
        require_uuid(session_id, "session_id")
        if timeout is None:
            return self.default_timeout
        if not is_timeout(timeout):
            raise InvalidInputError(
                f"timeout must be a positive number of seconds, got {timeout!r}", field="timeout"
            )
        return timeout

    async def _answering_agent(self, current: ChatSession) -> Agent[Any]:
        """The agent that answered last, so a handoff hands over the conversation, not one
        reply; the session's own agent when that one is unknown here or was deleted."""
        last = current.context.last_agent_id
        if last and last != current.agent_id and is_uuid(last):
            # resolve() answers from its cache; asking exists() first would read the store
            # on every turn after a handoff.
            with suppress(AgentNotFoundError):
                return await self.agents.resolve(last)
        return await self.agents.resolve(current.agent_id)

    async def _lookup_for_turn(self, session_id: str) -> Entry:
        """The session's cached entry, or its header read from the store: enough to check it
        exists and to learn its agent (and so its window) before the turn takes it."""
        entry = self._cache.get(session_id)
        if entry is not None:
            return entry
        session = await self._read(session_id, last=0)
        if session is None:
            raise SessionNotFoundError(f"no session has id {session_id}", session_id=session_id)
        return Entry(session, complete=False)

    async def _turn_request(
        self,
        entry: Entry,
        content: UserContent,
        text: str,
        window: WindowPolicy | None,
        options: _CallOptions,
    ) -> TurnRequest:
        current = entry.session
        if current.status != "active":
            raise SessionNotActiveError(
                f"session {current.id} is {current.status}; set it active to send messages",
                session_id=current.id,
                status=current.status,
            )
        agent = await self._answering_agent(current)
        return TurnRequest(
            agent=agent,
            history=current.history,
            context=current.context,
            content=content,
            text=text,
            agent_ref=self._agent_ref,
            run_config=await self._turn_run_config(options.run_config, current.id),
            max_turns=options.max_turns or self.max_turns,
            window=window,
            replayed=None if window is not None else self._replay_of(entry),
            run_context=options.context,
            hooks=options.hooks,
        )

    @staticmethod
    def _replay_of(entry: Entry) -> Sequence[TResponseInputItem]:
        """The model input of the entry's whole history, converted once and then extended
        turn by turn."""
        if entry.replay is None:
            entry.replay = Replay.of(entry.session.history)
        return entry.replay.inputs

    async def _commit_turn(
        self, entry: Entry, outcome: TurnOutcome, lease: Lease, key: str | None
    ) -> Message:
        changes: dict[str, Any] = {"context": outcome.context}
        if key is not None:
            changes["turn_keys"] = remember_key(
                entry.session.turn_keys, key, outcome.items, at=now_ms()
            )
        header = self._next_header(entry.session, **changes)
        await self._commit(entry, header, outcome.items, lease)
        return outcome.reply

    def _agent_ref(self, agent: Agent[Any]) -> str:
        # An agent the AgentManager never saw (a handoff target that was not registered)
        # is recorded by its name rather than not at all.
        return self.agents.agent_id_of(agent) or agent.name

    async def _turn_run_config(self, given: RunConfig | None, session_id: str) -> RunConfig:
        """The run configuration of a turn: the call's, else the manager's, else one built
        on the agent layer's provider; tracing groups the session's turns by its id."""
        base = given if given is not None else self.run_config
        if base is None:
            provider, config = await self.agents.provider()
            base = RunConfig(model_provider=provider, tracing_disabled=config.tracing_disabled)
        elif self.agents.model_provider is not None:
            base = dataclasses.replace(base, model_provider=self.agents.model_provider)
        if base.group_id is None:
            base = dataclasses.replace(base, group_id=session_id)
        return base


_log = logging.getLogger("chatruntime.session")

COMMIT_GRACE = 0.5
"""Seconds past its timeout a turn's caller waits for a write the store has not confirmed,
before it answers ``OUTCOME_UNKNOWN``."""


@dataclasses.dataclass
class _TurnProgress:
    """How far a turn got: whether its write began, and its reply once stored."""

    committing: bool = False
    reply: Message | None = None


def _outcome_unknown(session_id: str, limit: float) -> OutcomeUnknownError:
    return OutcomeUnknownError(
        f"session {session_id}: the store did not confirm the turn within the timeout "
        f"({limit:g}s); it may still be stored: send it again with the same idempotency_key",
        session_id=session_id,
        timeout=limit,
    )


def _log_late_outcome(worker: asyncio.Task[None]) -> None:
    """Log how a turn whose caller stopped waiting ended (its error is nobody else's)."""
    if worker.cancelled():
        return
    if (error := worker.exception()) is not None:
        _log.warning("a turn whose caller had stopped waiting failed: %s", error)


def _timed_out(session_id: str, limit: float | None) -> TurnTimeoutError:
    return TurnTimeoutError(
        f"the turn took longer than {limit:g}s; nothing was stored",
        session_id=session_id,
        timeout=limit,
    )


def is_timeout(timeout: object) -> bool:
    return not isinstance(timeout, bool) and isinstance(timeout, int | float) and timeout > 0


@dataclasses.dataclass(frozen=True)
class _CallOptions:
    """What one ``send_message``/``stream_message`` call adds to the manager's settings."""

    context: Any = None
    hooks: RunHooks[Any] | None = None
    run_config: RunConfig | None = None
    max_turns: int | None = None
    idempotency_key: str | None = None

    def check(self) -> None:
        check_key(self.idempotency_key)
        if self.max_turns is not None and (
            isinstance(self.max_turns, bool)
            or not isinstance(self.max_turns, int)
            or self.max_turns < 1
        ):
            raise InvalidInputError(
                f"max_turns must be an integer of at least 1, got {self.max_turns!r}",
                field="max_turns",
            )
        if self.run_config is not None and not isinstance(self.run_config, RunConfig):
            raise InvalidInputError(
                f"run_config must be an agents.RunConfig, got {type(self.run_config).__name__}",
                field="run_config",
            )
        if self.hooks is not None and not isinstance(self.hooks, RunHooksBase):
            raise InvalidInputError(
                f"hooks must be an agents.RunHooks, got {type(self.hooks).__name__}",
                field="hooks",
            )
