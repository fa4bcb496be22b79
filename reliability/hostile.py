"""Hostile input: property tests (hypothesis) over the public manager API, on every store at
once.

Each generated case (a call and its arguments, see :mod:`._hostile_values`) is made on every
store in turn, and must:

- return a ``Result`` — never raise, never answer ``INTERNAL_ERROR``;
- when it fails, leave every stored byte as it was (files' bytes, table rows, Redis values);
- when it succeeds in writing, be readable back by another store over the same data, equal;
- create no file outside the file store's folder;
- give the same answer (its code, or success) on every store.

A failure is counted and described (with the first arguments that showed it), never raised,
so one run tries every case it was asked for.
"""

from __future__ import annotations

import os
import random
import time
import warnings
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
from anyio.from_thread import BlockingPortal, start_blocking_portal
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import seed as hypothesis_seed
from hypothesis import strategies as st

from chatruntime import Err, ErrorCode, Ok, SessionManager
from chatruntime.stores import SessionStore

from . import _hostile_values as v
from ._report import Row
from ._stores import StoreSpec, StoreWatch
from ._workload import AGENT_ID, RUN_CONFIG, agent_manager

REAL_SESSIONS = 3
"""Sessions each store keeps for cases to aim at (one belongs to ``alice``, one is paused)."""
KEEP_CREATED = 8
"""Sessions made by cases that are kept as targets; older ones are removed."""
KEEP_AGENTS = 3
"""Agents made by cases that are kept; older ones are removed (smaller digests)."""
WRITES = {"create_session", "update_session", "send_message", "delete_session", "create_agent"}


@dataclass(frozen=True)
class AgentRef:
    """The registered agent (``registered``) or the stored one (``stored``) of a store."""

    which: str


@dataclass
class Case:
    op: str
    args: dict[str, Any]
    big: bool = False
    """Its :class:`Big` placeholders are ten megabytes this time (the runner decides)."""

    @property
    def has_big(self) -> bool:
        return any(isinstance(value, v.Big) for value in self.args.values())


def cases() -> st.SearchStrategy[Case]:
    """Every call the trial makes, with hostile arguments."""
    agent = st.one_of(st.builds(AgentRef, st.sampled_from(["registered", "stored"])), v.ids())
    session = v.ids()
    user = v.user_ids()

    Strategies = dict[str, st.SearchStrategy[Any]]

    def call(op: str, required: Strategies, optional: Strategies | None = None) -> Any:
        arguments = st.fixed_dictionaries(required, optional=optional or {})
        return st.builds(Case, st.just(op), arguments)

    return st.one_of(
        call(
            "create_session",
            {"agent_id": agent, "name": v.names(), "user_id": user},
            {"metadata": st.one_of(st.none(), v.metadata())},
        ),
        call("get_session", {"session_id": session, "user_id": user}),
        call(
            "update_session",
            {"session_id": session, "user_id": user},
            {"name": v.names(), "status": v.statuses(), "metadata": v.metadata()},
        ),
        call("delete_session", {"session_id": session, "user_id": user}),
        call("get_recent_messages", {"session_id": session, "limit": v.limits(), "user_id": user}),
        call(
            "send_message",
            {"session_id": session, "content": v.contents(), "user_id": user},
            {"timeout": v.timeouts()},
        ),
        call(
            "list_sessions",
            {},
            {
                "agent_id": agent,
                "user_id": user,
                "status": v.statuses(),
                "limit": v.limits(),
                "cursor": v.cursors(),
            },
        ),
        call("session_exists", {"session_id": session, "user_id": user}),
        call("get_active_session_count", {"user_id": user}),
        call("create_agent", {"name": v.names(), "instructions": v.names()}),
    )


@dataclass
class Harness:
    """One store under test, its manager, and a second store over the same data (what
    another process would read)."""

    spec: StoreSpec
    manager: SessionManager
    reader: SessionStore | None
    sandbox: Path
    row: Row
    every: int = 1
    """This store takes every n-th case only (server stores are slower)."""
    stored_agent: str = ""
    real: list[str] = field(default_factory=list)
    created: list[str] = field(default_factory=list)
    agents: list[str] = field(default_factory=list)
    watch: StoreWatch | None = None
    fingerprint: object = None
    digest: str = ""
    outside: list[str] = field(default_factory=list)
    problems: dict[str, tuple[int, str]] = field(default_factory=dict)
    slowest: tuple[float, str] = (0.0, "")

    @property
    def store(self) -> SessionStore:
        return self.manager.store

    @property
    def targets(self) -> list[str]:
        return self.real + self.created

    def problem(self, what: str, case: Case) -> None:
        self.row.failed += 1
        count, example = self.problems.get(what, (0, ""))
        self.problems[what] = (count + 1, example or short(case))


async def _open(spec: StoreSpec, sandbox: Path, every: int) -> Harness:
    store = spec.build()
    manager = SessionManager(store, agent_manager(store), run_config=RUN_CONFIG)
    (await manager.initialize()).unwrap()
    reader = None
    if spec.kind != "memory":
        reader = spec.build()
        await reader.initialize()
    row = Row("hostile input", spec.kind, unit="cases")
    harness = Harness(spec, manager, reader, sandbox, row, every)
    harness.stored_agent = (await manager.agents.create_agent("Stored", "Be brief.")).unwrap().id
    await _replenish(harness)
    harness.outside = _outside(harness)
    harness.watch = StoreWatch(spec, store)
    await _observe(harness)
    return harness


async def _observe(harness: Harness) -> bool:
    """Look at the store again; whether its data changed since last looked at."""
    assert harness.watch is not None
    fingerprint = await harness.watch.fingerprint()
    if fingerprint == harness.fingerprint:
        return False
    harness.fingerprint = fingerprint
    digest = await harness.watch.digest()
    changed = digest != harness.digest
    harness.digest = digest
    return changed


async def _replenish(harness: Harness) -> None:
    manager = harness.manager
    while len(harness.real) < REAL_SESSIONS:
        user = "alice" if len(harness.real) == 1 else None
        session = (await manager.create_session(AGENT_ID, "Target", user_id=user)).unwrap()
        (await manager.send_message(session.id, "Hello", user_id=user)).unwrap()
        if len(harness.real) == 2:
            (await manager.update_session(session.id, status="paused")).unwrap()
        harness.real.append(session.id)


def _outside(harness: Harness) -> list[str]:
    """Every path under the sandbox but outside the file store's folder."""
    if harness.spec.kind != "file":
        return []
    found: list[str] = []
    root = harness.spec.file_root
    for directory, folders, files in os.walk(harness.sandbox):
        here = Path(directory)
        folders[:] = [name for name in folders if here / name != root]
        found.extend(str(here / name) for name in sorted(folders + files))
    return sorted(found)


def _resolve(value: Any, harness: Harness) -> Any:
    targets = harness.targets
    if isinstance(value, v.RealId):
        return targets[value.index % len(targets)]
    if isinstance(value, v.RealVariant):
        return v.variant(targets[value.index % len(targets)], value.how)
    if isinstance(value, v.SandboxPath):
        return str(harness.sandbox / value.name)
    if isinstance(value, AgentRef):
        return AGENT_ID if value.which == "registered" else harness.stored_agent
    if isinstance(value, v.Deep | v.SelfReferential):
        return value.build()
    return value


def _resolve_case(case: Case, harness: Harness) -> dict[str, Any]:
    return {
        name: value.build(case.big) if isinstance(value, v.Big) else _resolve(value, harness)
        for name, value in case.args.items()
    }


def _call(harness: Harness, case: Case, args: dict[str, Any]) -> Awaitable[Any]:
    manager = harness.manager
    if case.op == "create_agent":
        return manager.agents.create_agent(args["name"], args["instructions"])
    method: Callable[..., Awaitable[Any]] = getattr(manager, case.op)
    if case.op == "get_active_session_count":
        return method(args["user_id"])
    return method(**args)


async def _run_case(
    harnesses: list[Harness], case: Case, number: int, answers: dict[str, str]
) -> None:
    for harness in harnesses:
        if number % harness.every:
            continue
        harness.row.tried += 1
        args = _resolve_case(case, harness)
        started = anyio.current_time()
        try:
            result = await _call(harness, case, args)
        except BaseException as error:
            if isinstance(error, anyio.get_cancelled_exc_class() | KeyboardInterrupt):
                raise
            harness.problem(f"{case.op} raised {type(error).__name__}", case)
            answers[harness.spec.kind] = f"raised {type(error).__name__}"
            await _observe(harness)
            continue
        if not isinstance(result, Ok | Err):
            harness.problem(f"{case.op} returned {type(result).__name__}, not a Result", case)
            continue
        answers[harness.spec.kind] = "OK" if result.success else str(result.error.code)
        took = anyio.current_time() - started
        if took > harness.slowest[0]:
            harness.slowest = (took, f"{short(case)} → {answers[harness.spec.kind]}")
        await _check(harness, case, args, result)


async def _check(harness: Harness, case: Case, args: dict[str, Any], result: Any) -> None:
    if not result.success and result.error.code == ErrorCode.INTERNAL_ERROR:
        harness.problem(f"{case.op} answered INTERNAL_ERROR: {result.error.message[:80]}", case)
    outside = _outside(harness)
    if outside != harness.outside:
        harness.problem(f"{case.op} left a file outside the store's folder", case)
        harness.outside = outside
    if await _observe(harness) and not result.success:
        harness.row.changed += 1
        harness.problem(f"{case.op} failed ({result.error.code}) but changed stored data", case)
    if result.success and case.op in WRITES:
        await _after_write(harness, case, args, result)


async def _after_write(harness: Harness, case: Case, args: dict[str, Any], result: Any) -> None:
    session_id: str | None = None
    if case.op == "create_agent":
        harness.agents.append(result.data.id)
    elif case.op == "create_session":
        session_id = result.data.id
        harness.created.append(session_id)
    elif case.op in ("update_session", "send_message"):
        session_id = args["session_id"]
    elif case.op == "delete_session":
        gone = args["session_id"]
        for pool in (harness.real, harness.created):
            if gone in pool:
                pool.remove(gone)
    if session_id is not None and harness.reader is not None:
        await _read_back(harness, case, session_id, result)
    if case.big and session_id is not None:
        # Ten megabytes in every later digest would cost more than the trial is worth.
        await harness.store.delete_session(session_id)
        for pool in (harness.real, harness.created):
            if session_id in pool:
                pool.remove(session_id)
    while len(harness.created) > KEEP_CREATED:
        await harness.store.delete_session(harness.created.pop(0))
    while len(harness.agents) > KEEP_AGENTS:
        await harness.store.delete_agent(harness.agents.pop(0))
    await _replenish(harness)
    await _observe(harness)


async def _read_back(harness: Harness, case: Case, session_id: str, result: Any) -> None:
    assert harness.reader is not None
    try:
        stored = await harness.reader.get_session(session_id)
    except Exception as error:
        harness.row.corrupt += 1
        harness.problem(
            f"{case.op} succeeded but another store cannot read the session back: "
            f"{type(error).__name__}: {str(error)[:100]}",
            case,
        )
        return
    if stored is None:
        harness.row.lost += 1
        harness.problem(f"{case.op} succeeded but another store does not find the session", case)
        return
    if case.op in ("create_session", "update_session"):
        written = result.data
        if (stored.name, stored.user_id, stored.metadata, stored.status) != (
            written.name,
            written.user_id,
            written.metadata,
            written.status,
        ):
            harness.row.corrupt += 1
            harness.problem(f"{case.op}: what another store reads back differs", case)
    elif case.op == "send_message" and result.data.id not in {i.id for i in stored.history}:
        harness.row.lost += 1
        harness.problem("send_message succeeded but another store lacks the reply", case)


async def _close(harnesses: list[Harness]) -> None:
    for harness in harnesses:
        await harness.manager.close()
        if harness.watch is not None:
            harness.watch.close()
        if harness.reader is not None:
            await harness.reader.close()


def short(case: Case) -> str:
    """The case, each value cut to a readable size."""

    def cut(value: Any) -> str:
        if isinstance(value, v.Big):
            value = value.build(case.big)
        text = repr(value)
        return text if len(text) <= 60 else f"{text[:40]}…({len(text):,} chars)"

    return f"{case.op}(" + ", ".join(f"{k}={cut(x)}" for k, x in case.args.items()) + ")"


BIG_SHARE = 0.03
"""The share of cases drawing a :class:`Big` placeholder that get ten megabytes."""
SLOW_CALL = 0.5
"""Seconds past which the slowest call of a store is reported."""


def run(
    specs: list[StoreSpec],
    sandbox: Path,
    *,
    cases_count: int,
    seed: int,
    server_every: int = 1,
) -> list[Row]:
    """``cases_count`` generated cases, each made on every local store of ``specs`` and
    every ``server_every``-th one on the PostgreSQL and Redis stores too."""
    started = time.perf_counter()
    sizes = random.Random(seed)
    agreement = Row("hostile input: same answer on every store", "all", unit="cases")
    harnesses: list[Harness] = []
    caught: list[warnings.WarningMessage] = []
    portal: BlockingPortal
    with start_blocking_portal(backend="asyncio") as portal:
        try:
            for spec in specs:
                every = server_every if spec.kind in ("postgres", "redis") else 1
                harnesses.append(portal.call(_open, spec, sandbox, every))

            @settings(
                max_examples=cases_count,
                database=None,
                deadline=None,
                phases=[Phase.generate],
                suppress_health_check=list(HealthCheck),
            )
            @hypothesis_seed(seed)
            @given(case=cases())
            def every_case(case: Case) -> None:
                case.big = case.has_big and sizes.random() < BIG_SHARE
                answers: dict[str, str] = {}
                portal.call(_run_case, harnesses, case, agreement.tried, answers)
                agreement.tried += 1
                if _disagree(harnesses, case, answers):
                    agreement.failed += 1
                    what = ", ".join(f"{kind} {code}" for kind, code in answers.items())
                    agreement.note(f"{case.op}: {what} — e.g. {short(case)}")

            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", RuntimeWarning)
                every_case()
        finally:
            portal.call(_close, harnesses)
    leaked = [w for w in caught if "was never awaited" in str(w.message)]
    if leaked:
        agreement.note(
            f"{len(leaked)}× RuntimeWarning {str(leaked[0].message)!r} (turns whose timeout "
            "expired just as the SDK's run started)"
        )
    rows = []
    for harness in harnesses:
        for what, (count, example) in sorted(harness.problems.items()):
            harness.row.note(f"{count}× {what} — e.g. {example}")
        took, call = harness.slowest
        if took > SLOW_CALL:
            harness.row.note(f"slowest call took {took:.2f} s: {call}")
        harness.row.seconds = time.perf_counter() - started
        rows.append(harness.row)
    _trim(agreement)
    agreement.seconds = time.perf_counter() - started
    rows.append(agreement)
    return rows


RACING_TIMEOUT = 0.1
"""A ``timeout`` this short may expire before any store answers: ``TIMEOUT`` is then as
right as the answer it cut short."""


def _disagree(harnesses: list[Harness], case: Case, answers: dict[str, str]) -> bool:
    """Whether stores that made the same calls so far answered this case differently.

    Stores that take every n-th case only have another history than those that take them
    all, so each group is compared within itself.
    """
    timeout = case.args.get("timeout")
    racing = isinstance(timeout, int | float) and 0 < timeout < RACING_TIMEOUT
    groups: dict[int, set[str]] = {}
    for harness in harnesses:
        answer = answers.get(harness.spec.kind)
        if answer is None or (racing and answer == ErrorCode.TIMEOUT):
            continue
        groups.setdefault(harness.every, set()).add(answer)
    return any(len(seen) > 1 for seen in groups.values())


def _trim(row: Row, keep: int = 12) -> None:
    """One note per kind of disagreement (the op and the codes), at most ``keep``."""
    seen: dict[str, str] = {}
    for note in row.notes:
        seen.setdefault(note.split(" — ", 1)[0], note)
    notes = list(seen.values())
    row.notes = notes[:keep] + ([f"… and {len(notes) - keep} more"] if len(notes) > keep else [])
