"""SIGKILL torture: a writer process runs turns until it is killed at a random moment; a fresh
process then checks that every acknowledged turn is stored whole; writing resumes.

The writer logs each turn ``send_message`` acknowledged (appended and fsynced to a log of its
own) before it starts the next one, so the log holds every acknowledged turn, and perhaps
not the last one (killed between the reply and the log). The checker, a new process each
time, opens the store and asserts for every session:

- it loads (not ``CORRUPT_DATA``, not missing) and the listing shows it;
- every acknowledged turn is there: its user message and, after it, its reply;
- no turn is partial: each user message has its reply, each function call its result;
- the statistics (messages, function calls, turns) match the history.

Turns mix plain replies and tool calls, and the file store folds its journal every 16 KiB
(``fold_min_bytes``), so kills land in appends, folds and index updates alike. On Redis and
PostgreSQL every ``server_kill_every``-th kill also SIGKILLs the server, which is started
again on its data before the check (Redis fsyncs every write: ``appendfsync always``).
"""

from __future__ import annotations

import json
import os
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio

from chatruntime import SessionManager

from . import _fork
from ._report import Row
from ._servers import Restartable
from ._stores import StoreSpec
from ._workload import (
    AGENT_ID,
    RUN_CONFIG,
    Acknowledged,
    agent_manager,
    history_problems,
    missing_turns,
    turn_content,
)

FOLD_MIN_BYTES = 16 * 1024
"""The file store folds its journal this early, so kills often land in a fold."""

CHECK_TIMEOUT = 120.0
"""Seconds a checker may take before it counts as hung."""


@dataclass(frozen=True)
class KillSizes:
    """How hard to torture one store.

    Attributes:
        kills: How many times the writer is killed.
        sessions: Sessions the writer spreads its turns over.
        padding: Characters of filler in each user message (histories grow faster).
        min_delay: Shortest time from the writer's start to its kill (seconds).
        max_delay: Longest.
        server_kill_every: Every n-th kill also kills the server (Redis, PostgreSQL);
            0 never.
    """

    kills: int
    sessions: int = 4
    padding: int = 300
    min_delay: float = 0.02
    max_delay: float = 0.9
    server_kill_every: int = 10


def store_options(kind: str) -> dict[str, Any]:
    """Constructor options of the tortured store."""
    if kind == "file":
        return {"fold_min_bytes": FOLD_MIN_BYTES}
    return {}


def _manager(spec: StoreSpec) -> SessionManager:
    store = spec.build()
    # A killed writer's lease on a server store lives until its ttl: keep it short, so the
    # next writer waits for it instead of answering BUSY.
    return SessionManager(
        store, agent_manager(store), run_config=RUN_CONFIG, lease_ttl=2.0, lease_timeout=20.0
    )


async def _create_sessions(spec: StoreSpec, count: int, out: Path) -> None:
    manager = _manager(spec)
    (await manager.initialize()).unwrap()
    try:
        ids = [
            (await manager.create_session(AGENT_ID, f"Torture {n}")).unwrap().id
            for n in range(count)
        ]
    finally:
        await manager.close()
    out.write_text(json.dumps(ids), encoding="utf-8")


async def _write_forever(
    spec: StoreSpec, session_ids: list[str], ack_log: Path, errors: Path, seed: int, padding: int
) -> None:
    rng = random.Random(seed)
    manager = _manager(spec)
    opened = await manager.initialize()
    if not opened.success:
        with open(errors, "a", encoding="utf-8") as log:
            log.write(f"initialize {opened.error.code}: {opened.error.message}\n")
        return
    # Durable before the next turn starts: a line in this log is a promise to the checker.
    descriptor = os.open(ack_log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    number = 0
    while True:
        number += 1
        session_id = rng.choice(session_ids)
        content = turn_content(f"w{seed}-{number}", number, padding)
        result = await manager.send_message(session_id, content)
        if result.success:
            line = Acknowledged(session_id, content, result.data.id).line() + "\n"
            os.write(descriptor, line.encode())
            os.fsync(descriptor)
        else:
            with open(errors, "a", encoding="utf-8") as log:
                log.write(f"send_message {result.error.code}: {result.error.message[:300]}\n")


async def _check(spec: StoreSpec, session_ids: list[str], ack_log: Path, out: Path) -> None:
    acknowledged: dict[str, list[Acknowledged]] = {sid: [] for sid in session_ids}
    if ack_log.exists():
        for line in ack_log.read_text(encoding="utf-8").splitlines():
            turn = Acknowledged.parse(line)
            acknowledged[turn.session_id].append(turn)
    verdict: dict[str, Any] = {
        "acknowledged": sum(len(turns) for turns in acknowledged.values()),
        "lost": 0,
        "corrupt": 0,
        "problems": [],
        "snapshots": {},
        "litter": [],
    }
    manager = _manager(spec)
    opened = await manager.initialize()
    if not opened.success:
        verdict["corrupt"] += 1
        verdict["problems"].append(f"initialize: {opened.error.code}: {opened.error.message}")
        out.write_text(json.dumps(verdict), encoding="utf-8")
        return
    try:
        for session_id in session_ids:
            found = await manager.get_session(session_id)
            if not found.success:
                verdict["corrupt"] += 1
                verdict["lost"] += len(acknowledged[session_id])
                verdict["problems"].append(
                    f"session {session_id}: {found.error.code}: {found.error.message[:300]}"
                )
                continue
            session = found.data
            problems = history_problems(session)
            if problems:
                verdict["corrupt"] += 1
                verdict["problems"].extend(f"session {session_id}: {p}" for p in problems[:5])
            missing = missing_turns(session, acknowledged[session_id])
            if missing:
                verdict["lost"] += len(missing)
                verdict["problems"].append(
                    f"session {session_id}: {len(missing)} acknowledged turn(s) missing, "
                    f"first {missing[0].content[:40]!r} reply {missing[0].reply_id}"
                )
        listed = await manager.list_sessions(limit=100)
        if not listed.success:
            verdict["problems"].append(f"list_sessions: {listed.error.code}")
            verdict["corrupt"] += 1
        elif {header.id for header in listed.data.sessions} != set(session_ids):
            verdict["problems"].append("list_sessions does not show exactly the sessions")
            verdict["corrupt"] += 1
    finally:
        await manager.close()
    if spec.kind == "file":
        for path in sorted((spec.file_root / "sessions").rglob("*")):
            if path.is_file() and path.suffix not in (".json", ".journal"):
                verdict["litter"].append([path.name, path.stat().st_size])
            elif path.suffix == ".json":
                verdict["snapshots"][path.stem] = path.stat().st_ino
    out.write_text(json.dumps(verdict), encoding="utf-8")


def _in_child(function: Any, *args: Any) -> Any:
    def run() -> int:
        anyio.run(function, *args)
        return 0

    return run


def run(
    spec: StoreSpec,
    sizes: KillSizes,
    *,
    seed: int,
    server: Restartable | None = None,
) -> Row:
    """Torture one store: ``sizes.kills`` SIGKILLs of its writer, each followed by a check
    in a fresh process."""
    row = Row("SIGKILL", spec.kind, unit="kills")
    started = time.perf_counter()
    rng = random.Random(seed)
    work = spec.root / "kills"
    work.mkdir(parents=True, exist_ok=True)
    ids_path, ack_log, errors = work / "sessions.json", work / "acks.log", work / "errors.log"
    log = work / "children.log"
    code = _fork.wait(
        _fork.fork(_in_child(_create_sessions, spec, sizes.sessions, ids_path), log=log), 120
    )
    if code != 0:
        row.not_run = f"could not create the sessions (exit {code}; see its log)"
        row.note(_tail(log))
        return row
    session_ids: list[str] = json.loads(ids_path.read_text(encoding="utf-8"))
    snapshots: dict[str, set[int]] = {}
    first_seen: dict[str, int] = {}
    """Each problem a check found, and the kill after which it was first seen."""
    litter_seen = 0
    litter_bytes = 0
    writer_exits: dict[str, int] = {}
    for cycle in range(1, sizes.kills + 1):
        writer_seed = rng.randrange(1 << 30)
        pid = _fork.fork(
            _in_child(
                _write_forever, spec, session_ids, ack_log, errors, writer_seed, sizes.padding
            ),
            log=log,
        )
        time.sleep(rng.uniform(sizes.min_delay, sizes.max_delay))
        kill_server = (
            server is not None
            and sizes.server_kill_every > 0
            and cycle % sizes.server_kill_every == 0
        )
        if kill_server:
            assert server is not None
            server.kill()
        status = _fork.kill(pid)
        if status != -9:
            writer_exits[str(status)] = writer_exits.get(str(status), 0) + 1
        if kill_server:
            assert server is not None
            server.restart()
        row.tried += 1
        verdict_path = work / f"check-{cycle}.json"
        check_code = _fork.wait(
            _fork.fork(_in_child(_check, spec, session_ids, ack_log, verdict_path), log=log),
            CHECK_TIMEOUT,
        )
        if check_code is None or not verdict_path.exists():
            row.failed += 1
            row.note(
                f"the checker after kill {cycle} "
                + ("hung (killed after 120 s)" if check_code is None else f"exited {check_code}")
            )
            continue
        verdict = json.loads(verdict_path.read_text(encoding="utf-8"))
        verdict_path.unlink()
        row.acknowledged = verdict["acknowledged"]
        row.lost = max(row.lost, verdict["lost"])
        if verdict["corrupt"]:
            row.corrupt += 1
        for problem in verdict["problems"]:
            first_seen.setdefault(problem, cycle)
        for session_id, inode in verdict["snapshots"].items():
            snapshots.setdefault(session_id, set()).add(inode)
        if verdict["litter"]:
            litter_seen = len(verdict["litter"])
            litter_bytes = sum(size for _, size in verdict["litter"])
    row.seconds = time.perf_counter() - started
    for problem, cycle in list(first_seen.items())[:10]:
        row.note(f"from the check after kill {cycle} on: {problem}")
    if spec.kind == "file":
        folds = sum(len(inodes) - 1 for inodes in snapshots.values())
        row.note(f"{folds} journal folds seen between checks (fold_min_bytes={FOLD_MIN_BYTES})")
        if litter_seen:
            row.failed += 1
            row.note(
                f"{litter_seen} leftover temporary file(s), {litter_bytes:,} bytes, in sessions/ "
                "after the last kill (never removed)"
            )
    if server is not None and server.restarts:
        row.note(f"the {server.name} server was SIGKILLed and restarted {server.restarts} times")
    if writer_exits:
        row.note(f"writers that ended before their kill, by exit code: {writer_exits}")
    codes = _error_codes(errors)
    if codes:
        row.note(f"failed turns while writing (not acknowledged, not required): {codes}")
    return row


def _error_codes(errors: Path) -> dict[str, int]:
    counts: dict[str, int] = {}
    if errors.exists():
        for line in errors.read_text(encoding="utf-8").splitlines():
            key = line.split(":", 1)[0]
            counts[key] = counts.get(key, 0) + 1
    return counts


def _tail(path: Path, lines: int = 15) -> str:
    if not path.exists():
        return "(no log)"
    return " | ".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
