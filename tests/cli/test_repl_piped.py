"""The REPL with piped input (no terminal), its options, and how it starts and fails to."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from chatruntime.cli import Options, main
from chatruntime.cli._options import package_version, parse_options
from chatruntime.cli._repl import run
from chatruntime.cli._startup import _safe_url, model_config

TIMEOUT = 120


def banner(store: str, session: str = "session 1: Chat 1 (active, 0 messages)") -> list[str]:
    return [
        f"chatruntime {package_version()}",
        "model: offline model (forced by configuration)",
        f"store: {store}",
        session,
        "Type a message, or /help for the commands.",
    ]


def test_make_run_command_works_in_a_fresh_folder_without_a_key(tmp_path: Path) -> None:
    # What `make run` runs, with the console script installed next to this interpreter.
    script = Path(sys.executable).parent / "chatruntime"
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("OPENAI_", "CHATRUNTIME_"))
    }
    done = subprocess.run(
        [str(script), "--data", "./chatruntime-data"],
        cwd=tmp_path,
        env=env,
        input="Hello\n/list\n",
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert (done.returncode, done.stderr) == (0, "")
    lines = done.stdout.splitlines()
    assert lines[:6] == [
        f"chatruntime {package_version()}",
        "model: offline model (no OPENAI_API_KEY set)",
        "store: files in ./chatruntime-data",
        "session 1: Chat 1 (active, 0 messages)",
        "Type a message, or /help for the commands.",
        "Assistant: [offline] You said: Hello (turn 1)",
    ]
    assert lines[6].startswith("* 1. Chat 1  (active, 2 messages)  ")
    assert len(lines) == 7
    assert len(list((tmp_path / "chatruntime-data" / "sessions").glob("*/*.json"))) == 1


def test_piped_lines_run_in_order_and_the_end_of_input_leaves(tmp_path: Path) -> None:
    data = tmp_path / "data"
    out = io.StringIO()
    lines = "Hello\n\n/new Second\nSecond hello\n/switch 1\n/history\n"
    assert run(Options(data=str(data), offline=True), stdin=io.StringIO(lines), stdout=out) == 0
    assert out.getvalue().splitlines() == [
        *banner(f"files in {data}"),
        "Assistant: [offline] You said: Hello (turn 1)",
        "new session 2: Second (active, 0 messages)",
        "Assistant: [offline] You said: Second hello (turn 1)",
        "switched to session 1: Chat 1 (active, 2 messages)",
        "you: Hello",
        "Assistant: [offline] You said: Hello (turn 1)",
    ]

    # The next start resumes the session with the latest message, not the last one switched
    # to; numbers are handed out afresh in each run, the resumed session first.
    again = io.StringIO()
    assert run(Options(data=str(data), offline=True), stdin=io.StringIO(), stdout=again) == 0
    assert again.getvalue().splitlines()[3] == "session 1: Second (active, 2 messages)"


def test_a_damaged_session_is_passed_over_at_start_and_found_by_check(tmp_path: Path) -> None:
    data = tmp_path / "data"
    lines = "Hello\n/new Second\nHi\n"
    run(Options(data=str(data), offline=True), stdin=io.StringIO(lines), stdout=io.StringIO())
    [damaged] = [
        path
        for path in (data / "sessions").glob("*/*.json")
        if json.loads(path.read_text(encoding="utf-8"))["name"] == "Second"
    ]
    damaged.write_text("{ not json", encoding="utf-8")

    out = io.StringIO()
    options = Options(data=str(data), offline=True)
    assert run(options, stdin=io.StringIO("/check\n"), stdout=out) == 0
    shown = out.getvalue().splitlines()
    warning = f"warning: cannot read {damaged}: "
    assert shown[3].startswith(warning)
    assert shown[4:7] == [
        "(/check lists every session that cannot be read)",
        "session 1: Chat 1 (active, 2 messages)",
        "Type a message, or /help for the commands.",
    ]
    assert shown[7] == "checked 2 sessions: 1 cannot be read"
    assert shown[8] == shown[3]
    assert shown[9:] == [
        "They are left as they are (using one answers CORRUPT_DATA): repair or remove them by hand."
    ]
    assert damaged.read_text(encoding="utf-8") == "{ not json"


def test_quit_stops_reading(tmp_path: Path) -> None:
    out = io.StringIO()
    stdin = io.StringIO("/quit\nHello\n")
    assert run(Options(data=str(tmp_path / "d"), offline=True), stdin=stdin, stdout=out) == 0
    assert out.getvalue().splitlines() == banner(f"files in {tmp_path / 'd'}")
    assert stdin.read() == "Hello\n"


def test_a_user_gets_their_own_sessions(tmp_path: Path) -> None:
    data = str(tmp_path / "d")
    run(
        Options(data=data, offline=True, user="alice"),
        stdin=io.StringIO("Hi\n"),
        stdout=io.StringIO(),
    )
    out = io.StringIO()
    run(Options(data=data, offline=True, user="bob"), stdin=io.StringIO(""), stdout=out)
    assert out.getvalue().splitlines()[3] == "session 1: Chat 1 (active, 0 messages)"


def test_a_store_that_cannot_be_opened_exits_1_with_the_reason(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the store's folder should be", encoding="utf-8")
    out = io.StringIO()
    assert run(Options(data=str(blocker), offline=True), stdin=io.StringIO(), stdout=out) == 1
    [line] = out.getvalue().splitlines()
    assert line.startswith(f"chatruntime: cannot open files in {blocker}: error: STORAGE_ERROR: ")


def test_a_store_url_picks_the_store(tmp_path: Path) -> None:
    out = io.StringIO()
    options = Options(store="memory://", offline=True)
    assert run(options, stdin=io.StringIO("Hello\n"), stdout=out) == 0
    assert out.getvalue().splitlines() == [
        *banner("memory://"),
        "Assistant: [offline] You said: Hello (turn 1)",
    ]


def test_a_store_url_of_an_unknown_kind_exits_1_with_the_reason() -> None:
    out = io.StringIO()
    options = Options(store="mongodb://db/chat", offline=True)
    assert run(options, stdin=io.StringIO(), stdout=out) == 1
    [line] = out.getvalue().splitlines()
    assert line.startswith(
        "chatruntime: cannot open store mongodb://db/chat: unsupported store URL scheme mongodb://"
    )


@pytest.mark.parametrize(
    "url",
    [
        "redis://:hunter2secret@localhost:99999/0",
        "redis://:hunter2secret@localhost:notaport/0",
        "redis://:hunter2secret@[::1/0",
        "postgresql+asyncpg://app:hunter2secret@db:99999/chat",
    ],
)
def test_a_store_url_with_a_bad_port_or_host_exits_1_without_its_password(url: str) -> None:
    out = io.StringIO()
    assert run(Options(store=url, offline=True), stdin=io.StringIO(), stdout=out) == 1
    [line] = out.getvalue().splitlines()
    shown = url.replace(":hunter2secret@", ":***@")
    assert line.startswith(
        (f"chatruntime: cannot open store {shown}: ", f"chatruntime: cannot open {shown}")
    )
    assert "hunter2secret" not in line


# -- options -------------------------------------------------------------------------------


def test_defaults() -> None:
    assert parse_options([]) == Options(data="./chatruntime-data")


def test_every_option() -> None:
    argv = [
        "--data", "d", "--store", "redis://h:6379/0", "--model", "llama3.2",
        "--base-url", "http://127.0.0.1:11434/v1", "--offline", "--offline-delay", "0.5",
        "--user", "alice",
    ]  # fmt: skip
    assert parse_options(argv) == Options(
        data="d",
        store="redis://h:6379/0",
        model="llama3.2",
        base_url="http://127.0.0.1:11434/v1",
        offline=True,
        offline_delay=0.5,
        user="alice",
    )


def test_help_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    shown = capsys.readouterr().out
    for option in ("--data DIR", "--store URL", "--model NAME", "--base-url URL", "--offline"):
        assert option in shown


@pytest.mark.parametrize("argv", [["--offline-delay", "-1"], ["--user", " "], ["--colour"]])
def test_bad_options_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    assert capsys.readouterr().err.startswith("usage: chatruntime")


def test_options_override_the_environment_and_keep_the_rest(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:8000/v1")
    monkeypatch.setenv("CHATRUNTIME_MODEL", "from-env")
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("CHATRUNTIME_OFFLINE", raising=False)
    assert model_config(Options()).describe() == "from-env via http://127.0.0.1:8000/v1"
    assert model_config(Options(model="llama3.2")).describe() == (
        "llama3.2 via http://127.0.0.1:8000/v1"
    )
    assert model_config(Options(base_url="http://10.0.0.2:11434/v1")).describe() == (
        "from-env via http://10.0.0.2:11434/v1"
    )
    assert model_config(Options(offline=True)).describe() == (
        "offline model (forced by configuration)"
    )


def test_store_urls_are_shown_without_their_password() -> None:
    assert _safe_url("redis://:s3cret@cache:6379/0") == "redis://:***@cache:6379/0"
    assert (
        _safe_url("postgresql+asyncpg://app:pw@db/chat") == "postgresql+asyncpg://app:***@db/chat"
    )
    assert _safe_url("sqlite+aiosqlite:///chat.db") == "sqlite+aiosqlite:///chat.db"
    assert _safe_url("redis://:pw@cache:99999/0") == "redis://:***@cache:99999/0"
    assert _safe_url("redis://u@x:pw@[::1]:6379/0") == "redis://u@x:***@[::1]:6379/0"
    assert _safe_url("redis://user@cache/0") == "redis://user@cache/0"
