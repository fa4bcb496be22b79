"""The suite's table says what was tried and lost, and never passes a trial that did not run."""

from __future__ import annotations

from reliability._report import Row, markdown_table, text_table


def test_a_row_that_lost_nothing_is_clean() -> None:
    row = Row("SIGKILL", "file", tried=200, unit="kills", acknowledged=5_000)

    assert row.clean
    assert "ok" in text_table([row]).splitlines()[2]


def test_a_lost_turn_makes_the_row_a_defect() -> None:
    row = Row("SIGKILL", "file", tried=200, unit="kills", acknowledged=5_000, lost=1)

    assert not row.clean
    assert text_table([row]).splitlines()[2].endswith("DEFECT")


def test_an_overrun_beyond_a_second_is_a_defect() -> None:
    row = Row("server stall", "redis", tried=5, unit="stalls")
    row.overran(0.4)
    assert row.clean
    row.overran(18.2)

    assert (row.worst_overrun, row.clean) == (18.2, False)


def test_a_trial_that_did_not_run_says_why_and_is_not_clean() -> None:
    row = Row("disk full", "file", not_run="cannot mount a tmpfs (permission denied)")

    line = text_table([row]).splitlines()[2]

    assert not row.clean
    assert "not run: cannot mount a tmpfs (permission denied)" in line
    assert line.endswith("[NOT RUN]")


def test_findings_follow_the_table_in_text_and_markdown() -> None:
    row = Row("hostile input", "postgres", tried=10, unit="cases", failed=1)
    row.note("1× create_session answered STORAGE_ERROR")

    assert text_table([row]).splitlines()[-1] == (
        "- [hostile input / postgres] 1× create_session answered STORAGE_ERROR"
    )
    assert markdown_table([row]).splitlines()[-1] == (
        "- hostile input / postgres: 1× create_session answered STORAGE_ERROR"
    )
