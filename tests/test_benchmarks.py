"""``make bench`` keeps working: one ``--quick`` run walks every scenario on tiny sizes.

The figures of a quick run mean nothing; what is checked is that every scenario measured
every store it names, both sides of each comparison, judged the targets, wrote its results
and stopped the servers it started.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
RUN_TIMEOUT = 600

OURS = {
    "file": "FileStore",
    "sqlite": "SqlStore(SQLite)",
    "redis": "RedisStore",
    "postgres": "SqlStore(PostgreSQL)",
}
SDK = {
    "file": "SQLiteSession",
    "sqlite": "SQLiteSession",
    "redis": "RedisSession",
    "postgres": "SQLAlchemySession(PostgreSQL)",
}

pytestmark = pytest.mark.services


@dataclass
class QuickRun:
    returncode: int
    output: str
    results: dict[str, Any]
    markdown: str
    scratch: Path

    def rows(self, title_start: str) -> dict[str, dict[str, Any]]:
        """The rows of the section whose title starts with ``title_start``, by name."""
        [section] = [s for s in self.results["sections"] if s["title"].startswith(title_start)]
        return {row["what"]: row for row in section["rows"]}


def _bench(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "benchmarks", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        check=False,
    )


@pytest.fixture(scope="module")
def quick(tmp_path_factory: pytest.TempPathFactory) -> QuickRun:
    results = tmp_path_factory.mktemp("results")
    scratch = tmp_path_factory.mktemp("scratch")
    done = _bench(
        "--quick",
        "--json",
        str(results / "results.json"),
        "--out",
        str(results / "latest.md"),
        "--scratch",
        str(scratch),
    )
    output = done.stdout + done.stderr
    assert (results / "results.json").exists(), output
    return QuickRun(
        returncode=done.returncode,
        output=output,
        results=json.loads((results / "results.json").read_text(encoding="utf-8")),
        markdown=(results / "latest.md").read_text(encoding="utf-8"),
        scratch=scratch,
    )


def test_a_quick_run_measures_everything_without_a_failure(quick: QuickRun) -> None:
    failures = [error for s in quick.results["sections"] for error in s["errors"]]
    assert failures == []
    assert quick.returncode == 0, quick.output


def test_a_run_names_every_scenario_in_order(quick: QuickRun) -> None:
    assert [s["title"] for s in quick.results["sections"]] == [
        "1. Per-turn store cost",
        "2. Last-50 read of a 32-turn session",
        "3. 4 sessions x 3 turns at once",
        "4. A fresh process on 60 sessions of 20 items",
        "5. send_message overhead over a bare Runner.run",
        "6. HTTP service: 4 streaming clients x 2 turns",
        "FileStore against rewriting the whole file (the TypeScript original)",
    ]


def test_per_turn_cost_is_measured_on_both_sides_at_both_points(quick: QuickRun) -> None:
    rows = quick.rows("1.")
    assert list(rows) == [
        f"{OURS[kind]} vs {SDK[kind]}, turn {point}" for kind in OURS for point in (3, 30)
    ]
    for row in rows.values():
        assert row["ours"] > 0
        assert row["sdk"] > 0
        assert row["ratio"] == pytest.approx(row["ours"] / row["sdk"])
    postgres = [row for what, row in rows.items() if what.startswith(OURS["postgres"])]
    assert {row["verdict"] for row in postgres} == {""}  # no target rests on PostgreSQL
    others = [row for what, row in rows.items() if not what.startswith(OURS["postgres"])]
    assert {row["verdict"] for row in others} <= {"PASS", "MISS"}
    assert all(row["target"] == {"kind": "ratio_at_most", "limit": 1.2} for row in others)


def test_last_items_are_read_from_the_store_and_the_manager(quick: QuickRun) -> None:
    rows = quick.rows("2.")
    assert list(rows) == [
        name
        for kind in OURS
        for name in (
            f"{OURS[kind]}.get_session(last=N)",
            f"get_recent_messages on {OURS[kind]}",
            f"get_recent_messages on {OURS[kind]}, first call",
        )
    ]
    assert all(row["ours"] > 0 and row["sdk"] > 0 for row in rows.values())


def test_concurrent_turns_all_succeed_on_both_sides(quick: QuickRun) -> None:
    rows = quick.rows("3.")
    for kind in OURS:
        name = f"{OURS[kind]} vs {SDK[kind]}"
        assert rows[f"{name}: turns/s"]["ours"] > 0
        assert rows[f"{name}: turns/s"]["sdk"] > 0
        assert rows[f"{name}: p99 turn"]["ours"] > 0
        assert 0 < rows[f"{name}: p99 store time of a turn"]["ours"]
        assert 0 < rows[f"{name}: p99 store time of a turn"]["sdk"]
        assert (rows[f"{name}: failed turns"]["ours"], rows[f"{name}: failed turns"]["sdk"]) == (
            0,
            0,
        )
    assert len(rows) == 4 * len(OURS)


def test_a_fresh_process_starts_on_every_store_and_lists_a_page(quick: QuickRun) -> None:
    rows = quick.rows("4.")
    assert rows["SQLiteSession: open + get_items() of one session"]["sdk"] > 0
    for kind, name in OURS.items():
        start = rows[f"{name}: start + open one session + one turn"]
        assert start["ours"] > 0
        # The SDK's start-up figures are SQLite's: beside our file and SQLite stores only.
        assert (start["sdk"] is not None) is (kind in ("file", "sqlite"))
        assert rows[f"{name}: RSS growth"]["unit"] == "MB"
        assert rows[f"{name}: list_sessions first page"]["ours"] > 0
        assert rows[f"{name}: list_sessions next page"]["ours"] > 0
        assert rows[f"{name}: filling the store"]["ours"] > 0


def test_overhead_is_measured_at_every_history_length(quick: QuickRun) -> None:
    rows = quick.rows("5.")
    assert list(rows) == [
        "turn at 10 items",
        "overhead at 10 items",
        "turn at 100 items",
        "overhead at 100 items",
        "turn at 200 items",
        "overhead at 200 items",
        "overhead growth, 10 -> 200 items",
    ]
    assert all(rows[f"turn at {n} items"]["sdk"] > 0 for n in (10, 100, 200))
    assert rows["overhead growth, 10 -> 200 items"]["target"] == {"kind": "at_most", "limit": 1.0}


def test_the_service_is_measured_against_direct_send_message(quick: QuickRun) -> None:
    [section] = [s for s in quick.results["sections"] if s["title"].startswith("6.")]
    assert section["versus"] == "direct"
    rows = quick.rows("6.")
    assert list(rows) == ["throughput", "p99 turn", "median turn", "failed turns"]
    for name in ("throughput", "p99 turn", "median turn"):
        assert rows[name]["ours"] > 0
        assert rows[name]["sdk"] > 0
        assert rows[name]["ratio"] == pytest.approx(rows[name]["ours"] / rows[name]["sdk"])
    assert rows["throughput"]["unit"] == "turns/s"
    assert (rows["failed turns"]["ours"], rows["failed turns"]["sdk"]) == (0, 0)
    assert rows["failed turns"]["verdict"] == "PASS"


def test_the_file_store_is_still_compared_with_rewriting_the_whole_file(quick: QuickRun) -> None:
    rows = quick.rows("FileStore against")
    assert rows["FileStore vs rewrite whole file, turn 3"]["sdk"] > 0
    assert rows["FileStore vs rewrite whole file, turn 30"]["sdk"] > 0
    assert rows["session files after turn 32"]["ours"] > 0


def test_the_results_file_holds_every_section_and_the_misses(quick: QuickRun) -> None:
    headings = [line for line in quick.markdown.splitlines() if line.startswith("#")]
    titles = [s["title"] for s in quick.results["sections"]]
    assert headings == [
        "# Benchmark results",
        *(f"## {title}" for title in titles),
        "## Targets missed",
    ]
    for line in quick.results["missed"]:
        assert f"- {line}" in quick.markdown


def test_the_servers_started_for_the_run_are_stopped(quick: QuickRun) -> None:
    assert sorted(quick.results["server_pids"]) == ["postgres", "redis"]
    for pid in quick.results["server_pids"].values():
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    assert list(quick.scratch.iterdir()) == []


def test_an_unknown_scenario_is_refused_with_the_list_of_known_ones() -> None:
    done = _bench("no_such_scenario")
    assert done.returncode == 2
    assert "unknown scenario(s): no_such_scenario; available: per_turn, " in done.stderr
