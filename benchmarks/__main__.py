"""Run the benchmarks: ``python -m benchmarks [scenario ...] [options]`` (``make bench``).

With no scenario named, all run, in one process, and the results go to the terminal and to
``benchmarks/results/latest.md``. ``--quick`` runs every code path on tiny sizes (the smoke
test's mode; its figures mean nothing and it writes no results file unless ``--out`` says).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType, ModuleType

import anyio
from agents import set_tracing_disabled

from ._bench import FULL, QUICK, STORE_KINDS, Bench, StoreKind
from ._report import Section, markdown, misses, text_table
from ._services import REPO, running_servers

SCENARIOS = (
    "per_turn",
    "concurrent_turns",
    "many_sessions",
    "overhead",
    "service",
    "file_store_turns",
)
"""Every scenario module, in the order a full run takes them."""
USES_STORE_KINDS = {"per_turn", "concurrent_turns", "many_sessions"}
"""Scenarios run on each chosen store kind (the others use one store of their own)."""
DEFAULT_OUT = REPO / "benchmarks" / "results" / "latest.md"


def _arguments(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Measure chatruntime's stores and manager against the Agents SDK's own.",
    )
    parser.add_argument(
        "scenarios",
        nargs="*",
        metavar="scenario",
        help=f"scenarios to run (default: all): {', '.join(SCENARIOS)}",
    )
    parser.add_argument(
        "--quick", action="store_true", help="tiny sizes: checks every code path in seconds"
    )
    parser.add_argument(
        "--stores",
        default=",".join(STORE_KINDS),
        help=f"store kinds, comma-separated (default: {','.join(STORE_KINDS)})",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="write the Markdown results here (default: benchmarks/results/latest.md for a "
        "full run of every scenario, nowhere otherwise)",
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the rows as JSON")
    parser.add_argument(
        "--scratch",
        type=Path,
        default=None,
        help="folder for the stores' data (default: the system temp folder); put it on the "
        "disk you want measured",
    )
    args = parser.parse_args(argv)
    unknown = sorted(set(args.scenarios) - set(SCENARIOS))
    if unknown:
        parser.error(
            f"unknown scenario(s): {', '.join(unknown)}; available: {', '.join(SCENARIOS)}"
        )
    kinds = [kind.strip() for kind in args.stores.split(",") if kind.strip()]
    bad = sorted(set(kinds) - set(STORE_KINDS))
    if bad or not kinds:
        parser.error(f"--stores takes some of {','.join(STORE_KINDS)}; got {args.stores!r}")
    args.kinds = tuple(kind for kind in STORE_KINDS if kind in kinds)
    args.scenarios = [name for name in SCENARIOS if name in (args.scenarios or SCENARIOS)]
    if args.out is None and not args.quick and len(args.scenarios) == len(SCENARIOS):
        args.out = DEFAULT_OUT
    return args


def _stop_on_sigterm() -> None:
    # A SIGTERM would end the process without running `finally` blocks, leaving the
    # servers this run started; turned into SystemExit, the blocks run and stop them.
    def stop(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, stop)


async def _run_all(bench: Bench, modules: list[ModuleType]) -> list[Section]:
    sections: list[Section] = []
    for module in modules:
        started = time.perf_counter()
        print(f"== benchmarks.{module.__name__.rsplit('.', 1)[-1]}", flush=True)
        try:
            found: list[Section] = await module.run(bench)
        except Exception as error:
            # One scenario's failure must not cost the others' figures.
            failed = Section(module.__name__, "did not complete")
            failed.errors.append(f"{type(error).__name__}: {error}")
            found = [failed]
        elapsed = time.perf_counter() - started
        for section in found:
            section.seconds = elapsed / len(found)
            print(text_table(section), flush=True)
            print(flush=True)
        sections.extend(found)
    return sections


def _command(args: argparse.Namespace) -> str:
    """The command that repeats this run (without output paths: no machine paths here)."""
    words = ["python -m benchmarks"]
    if len(args.scenarios) != len(SCENARIOS):
        words += args.scenarios
    if args.kinds != STORE_KINDS:
        words.append(f"--stores {','.join(args.kinds)}")
    if args.quick:
        words.append("--quick")
    return " ".join(words)


def _describe_run(args: argparse.Namespace, seconds: float) -> list[str]:
    from importlib.metadata import version

    try:
        commit = subprocess.run(
            ["git", "describe", "--always", "--dirty"],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
    except OSError:
        commit = ""
    return [
        f"- when: {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}; took {seconds:.0f} s",
        f"- command: `{_command(args)}`",
        f"- code: chatruntime {commit or 'unknown'}, openai-agents {version('openai-agents')}, "
        f"Python {platform.python_version()}, {os.cpu_count()} CPUs, {platform.system()}",
        "- durability: fsync on every commit (files, SQLite in WAL mode with synchronous=FULL "
        "on both sides, Redis appendfsync always), except PostgreSQL (fsync off, for ours "
        "and the SDK's alike)",
        f"- stores: {', '.join(args.kinds)}",
    ]


def _write_results(
    args: argparse.Namespace,
    sections: list[Section],
    seconds: float,
    missed: list[str],
    servers: dict[str, int],
) -> None:
    if args.out is not None:
        lines = ["# Benchmark results", "", *_describe_run(args, seconds), ""]
        for section in sections:
            lines += [markdown(section), ""]
        lines += ["## Targets missed", ""]
        lines += [f"- {line}" for line in missed] or ["- none"]
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text("\n".join(lines) + "\n", encoding="utf-8")
        print(f"results written to {os.path.relpath(args.out, Path.cwd())}")
    if args.json is not None:
        document = {
            "quick": args.quick,
            "scenarios": args.scenarios,
            "stores": list(args.kinds),
            "seconds": seconds,
            "sections": [section.as_dict() for section in sections],
            "missed": missed,
            "server_pids": servers,
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")


def main(argv: list[str]) -> int:
    args = _arguments(argv)
    set_tracing_disabled(True)
    _stop_on_sigterm()
    modules = [importlib.import_module(f"benchmarks.{name}") for name in args.scenarios]
    on_servers = bool(USES_STORE_KINDS & set(args.scenarios))
    kinds: tuple[StoreKind, ...] = args.kinds
    started = time.perf_counter()
    with (
        tempfile.TemporaryDirectory(prefix="chatruntime-bench-", dir=args.scratch) as scratch,
        running_servers(
            redis=on_servers and "redis" in kinds, postgres=on_servers and "postgres" in kinds
        ) as servers,
    ):
        for name, problem in servers.problems.items():
            print(f"cannot measure {name}: {problem}", file=sys.stderr)
        bench = Bench(
            sizes=QUICK if args.quick else FULL,
            kinds=tuple(kind for kind in kinds if kind not in servers.problems),
            scratch=Path(scratch),
            servers=servers,
        )
        sections = anyio.run(_run_all, bench, modules)
        pids = dict(servers.pids)
    seconds = time.perf_counter() - started
    missed = misses(sections)
    failed = [f"{s.title}: {error}" for s in sections for error in s.errors]
    failed += [f"{name} not measured: {problem}" for name, problem in servers.problems.items()]
    print(f"Targets missed: {len(missed)}")
    for line in missed:
        print(f"  MISS {line}")
    for line in failed:
        print(f"  FAILED {line}")
    print(f"benchmarks took {seconds:.0f} s")
    _write_results(args, sections, seconds, missed, pids)
    # A missed target is a finding, not a failure; a measurement that could not be made is.
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
