"""Run the reliability suite: ``python -m reliability [--quick]`` (``make reliability``).

Prints one table of what each trial tried and what it lost, then its findings. Exits 0 when
every row is clean, 1 when any trial lost, corrupted or changed something, broke a property,
overran a timeout by more than a second, or could not run.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

import anyio
from agents import set_tracing_disabled

from . import disks, hostile, kills, model_faults, outages, stateful
from ._report import Row, markdown_table, text_table
from ._servers import Restartable, start_postgres, start_redis
from ._stores import STORE_KINDS, StoreSpec

TRIALS = ("kills", "disks", "hostile", "stateful", "faults", "outages")
"""Every trial, in the order a run takes them (kills first: it forks, so no thread may run
yet; outages last: they kill and restart the servers)."""


@dataclass(frozen=True)
class Sizes:
    kills: dict[str, int]
    server_kill_every: int
    hostile_cases: int
    hostile_server_every: int
    stateful_runs: int
    stateful_steps: int
    fault_reps: int
    outages: int
    free_bytes: tuple[int, ...]


FULL = Sizes(
    kills={"file": 200, "sqlite": 200, "postgres": 50, "redis": 50},
    server_kill_every=10,
    hostile_cases=10_000,
    hostile_server_every=4,
    stateful_runs=100,
    stateful_steps=30,
    fault_reps=3,
    outages=5,
    free_bytes=(0, 4096, 8192, 16384, 65536),
)
QUICK = Sizes(
    kills={"file": 5, "sqlite": 5, "postgres": 3, "redis": 3},
    server_kill_every=2,
    hostile_cases=200,
    hostile_server_every=4,
    stateful_runs=5,
    stateful_steps=15,
    fault_reps=1,
    outages=1,
    free_bytes=(0, 8192),
)


def _arguments(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m reliability",
        description="Kill, starve, fuzz and cut off chatruntime's stores; print what was lost.",
    )
    parser.add_argument(
        "--quick", action="store_true", help="tiny sizes: every trial in a minute or two"
    )
    parser.add_argument(
        "--only",
        default=",".join(TRIALS),
        help=f"trials, comma-separated (default: {','.join(TRIALS)})",
    )
    parser.add_argument(
        "--stores",
        default=",".join(STORE_KINDS),
        help=f"store kinds (default: {','.join(STORE_KINDS)})",
    )
    parser.add_argument("--seed", type=int, default=None, help="seed of every random choice")
    parser.add_argument(
        "--markdown", type=Path, default=None, help="also write the table as Markdown here"
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the rows as JSON here")
    parser.add_argument(
        "--scratch",
        type=Path,
        default=None,
        help="folder for the stores' data (default: the system temp folder)",
    )
    args = parser.parse_args(argv)
    args.trials = [name.strip() for name in args.only.split(",") if name.strip()]
    args.kinds = [name.strip() for name in args.stores.split(",") if name.strip()]
    if bad := sorted(set(args.trials) - set(TRIALS)):
        parser.error(f"unknown trial(s) {', '.join(bad)}; available: {', '.join(TRIALS)}")
    if bad := sorted(set(args.kinds) - set(STORE_KINDS)):
        parser.error(f"unknown store kind(s) {', '.join(bad)}; available: {', '.join(STORE_KINDS)}")
    if args.seed is None:
        args.seed = random.randrange(1 << 31)
    return args


def _stop_on_sigterm() -> None:
    # Turned into SystemExit, a SIGTERM runs the `finally` blocks that stop our servers.
    def stop(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, stop)


def _fast_scratch(scratch: Path) -> Path:
    """A memory-backed folder for the trials that do not test durability (fsync costs
    nothing there), or ``scratch`` when the machine has none."""
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK):
        return Path(tempfile.mkdtemp(prefix="reliability-", dir=shm))
    return scratch


class Suite:
    def __init__(self, args: argparse.Namespace, sizes: Sizes, scratch: Path, fast: Path) -> None:
        self.args = args
        self.sizes = sizes
        self.scratch = scratch
        self.fast = fast
        self.servers: dict[str, Restartable] = {}
        self.problems: dict[str, str] = {}
        self.rows: list[Row] = []

    @property
    def urls(self) -> dict[str, str]:
        return {name: server.url for name, server in self.servers.items()}

    def kinds(self, *only: str) -> list[str]:
        """The chosen store kinds (among ``only``) whose server, if any, is running."""
        return [
            kind
            for kind in self.args.kinds
            if (not only or kind in only) and (kind in ("file", "sqlite") or kind in self.servers)
        ]

    def spec(self, kind: str, base: Path, **options: object) -> StoreSpec:
        return StoreSpec.fresh(kind, base / f"{kind}-{uuid.uuid4().hex[:8]}", self.urls, **options)

    def missing(self, trial: str, only: tuple[str, ...] = STORE_KINDS) -> None:
        for kind in self.args.kinds:
            if kind in self.problems and kind in only:
                self.add(Row(trial, kind, not_run=f"no {kind} server: {self.problems[kind]}"))

    def add(self, *rows: Row) -> None:
        for row in rows:
            self.rows.append(row)
            print(
                f"   {row.trial} / {row.store}: {'not run' if row.not_run else 'done'} "
                f"in {row.seconds:.0f} s",
                flush=True,
            )

    def run(self, name: str, trial: Callable[[], None]) -> None:
        print(f"== {name}", flush=True)
        try:
            trial()
        except Exception as error:
            self.add(Row(name, "-", not_run=f"the trial crashed: {type(error).__name__}: {error}"))

    # -- the trials ---------------------------------------------------------------------------

    def kills(self) -> None:
        self.missing("SIGKILL")
        for kind in self.kinds():
            sizes = kills.KillSizes(
                kills=self.sizes.kills[kind], server_kill_every=self.sizes.server_kill_every
            )
            spec = self.spec(kind, self.scratch, **kills.store_options(kind))
            self.add(kills.run(spec, sizes, seed=self.args.seed, server=self.servers.get(kind)))

    def disks(self) -> None:
        sizes = disks.DiskSizes(free_bytes=self.sizes.free_bytes)
        self.add(*anyio.run(disks.run, self.scratch, sizes))

    def hostile(self) -> None:
        self.missing("hostile input")
        sandbox = Path(tempfile.mkdtemp(prefix="hostile-", dir=self.fast))
        specs = [StoreSpec.fresh("memory", sandbox / "memory", {})]
        for kind in self.kinds():
            base = sandbox / "a" / "b" / "c" if kind == "file" else self.fast / "hostile-data"
            specs.append(self.spec(kind, base))
        self.add(
            *hostile.run(
                specs,
                sandbox,
                cases_count=self.sizes.hostile_cases,
                seed=self.args.seed,
                server_every=self.sizes.hostile_server_every,
            )
        )

    def stateful(self) -> None:
        base = self.fast / "stateful"
        for kind in self.kinds("file", "sqlite"):
            self.add(
                stateful.run(
                    lambda kind=kind: self.spec(kind, base),  # type: ignore[misc]
                    kind,
                    runs=self.sizes.stateful_runs,
                    steps=self.sizes.stateful_steps,
                )
            )

    def faults(self) -> None:
        self.missing("model faults")
        specs = [self.spec(kind, self.scratch) for kind in self.kinds()]
        self.add(*anyio.run(model_faults.run, specs, self.sizes.fault_reps))

    def outages(self) -> None:
        self.missing("server stall", ("postgres", "redis"))
        for kind in self.kinds("postgres", "redis"):
            spec = self.spec(kind, self.scratch)
            self.add(
                *anyio.run(
                    outages.run_server, self.servers[kind], spec, self.sizes.outages, self.args.seed
                )
            )


def main(argv: list[str]) -> int:
    args = _arguments(argv)
    set_tracing_disabled(True)
    _stop_on_sigterm()
    sizes = QUICK if args.quick else FULL
    started = time.perf_counter()
    print(f"reliability suite ({'quick' if args.quick else 'full'}), seed {args.seed}", flush=True)
    with ExitStack() as stack:
        scratch = Path(
            stack.enter_context(
                tempfile.TemporaryDirectory(prefix="reliability-", dir=args.scratch)
            )
        )
        fast = _fast_scratch(scratch)
        if fast != scratch:
            stack.callback(lambda: __import__("shutil").rmtree(fast, ignore_errors=True))
        suite = Suite(args, sizes, scratch, fast)
        for name, start in (("redis", start_redis), ("postgres", start_postgres)):
            if name not in args.kinds:
                continue
            try:
                server = start()
            except Exception as error:
                suite.problems[name] = f"{type(error).__name__}: {error}".splitlines()[0]
                continue
            stack.callback(server.close)
            suite.servers[name] = server
        for trial in args.trials:
            suite.run(trial, getattr(suite, trial))
        rows = suite.rows
    seconds = time.perf_counter() - started
    print()
    print(text_table(rows))
    print()
    defects = [row for row in rows if not row.clean]
    print(f"{len(rows)} rows, {len(defects)} not clean; took {seconds:.0f} s (seed {args.seed})")
    if args.markdown is not None:
        args.markdown.write_text(markdown_table(rows) + "\n", encoding="utf-8")
    if args.json is not None:
        document = {
            "quick": args.quick,
            "seed": args.seed,
            "seconds": seconds,
            "rows": [row.as_dict() for row in rows],
        }
        args.json.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    return 1 if defects else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
