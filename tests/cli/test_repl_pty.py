"""The REPL driven as a person drives it: in a pseudo-terminal, typing, Ctrl-C and Ctrl-D.

Each test starts ``python -m chatruntime`` (the interpreter running the tests) on a file store
in a temporary folder, with no API key in its environment, and reads what a person would see.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path

import pexpect
import pytest

from chatruntime.cli._chat import CANCELLED_LINE, DEFAULT_INSTRUCTIONS
from chatruntime.cli._options import package_version
from support.openai_server import OpenAIServer, message, usage

# Importing the Agents SDK takes seconds; generous, since a slow machine is not a failure.
TIMEOUT = 60
# The offline model counts words: the instructions and the message in, its reply out.
HELLO_TOKENS = (
    len(DEFAULT_INSTRUCTIONS.split()) + 2,
    len("[offline] You said: Hello there (turn 1)".split()),
)
BANNER_HINT = "Type a message, or /help for the commands. Ctrl-C cancels a reply, Ctrl-D quits."


class Repl:
    """A running REPL in a pseudo-terminal."""

    def __init__(self, data: Path, *options: str) -> None:
        env = {
            name: value
            for name, value in os.environ.items()
            if not name.startswith(("OPENAI_", "CHATRUNTIME_"))
        }
        # A dumb terminal keeps readline from adding escape sequences to what we read.
        env["TERM"] = "dumb"
        self.child = pexpect.spawn(
            sys.executable,
            ["-m", "chatruntime", "--data", str(data), *options],
            cwd=str(data.parent),
            env=env,
            encoding="utf-8",
            timeout=TIMEOUT,
            dimensions=(40, 250),
        )
        self.prompt = ""

    def banner(self, prompt: str) -> list[str]:
        """Wait for the first prompt; return the lines before it."""
        self.prompt = prompt
        self.child.expect_exact(prompt)
        return _lines(self.child.before)

    def type(self, line: str, *, prompt: str | None = None) -> list[str]:
        """Type a line and Enter; return what was printed before the next prompt."""
        if prompt is not None:
            self.prompt = prompt
        self.child.sendline(line)
        self.child.expect_exact(line + "\r\n")
        self.child.expect_exact(self.prompt)
        return _lines(self.child.before)

    def quit_with_ctrl_d(self) -> int | None:
        """Press Ctrl-D at the prompt; return the exit status."""
        self.child.sendeof()
        self.child.expect(pexpect.EOF)
        self.child.close()
        return self.child.exitstatus

    def stop(self) -> None:
        if self.child.isalive():
            self.child.terminate(force=True)
        self.child.close()


def _lines(text: str | None) -> list[str]:
    return (text or "").replace("\r\n", "\n").splitlines()


@pytest.fixture
def data(tmp_path: Path) -> Path:
    return tmp_path / "chatruntime-data"


@pytest.fixture
def started(data: Path) -> Iterator[list[Repl]]:
    """Every REPL a test starts, stopped at the end whatever happened."""
    repls: list[Repl] = []
    try:
        yield repls
    finally:
        for repl in repls:
            repl.stop()


def start(started: list[Repl], data: Path, *options: str) -> Repl:
    repl = Repl(data, *options)
    started.append(repl)
    return repl


def test_a_conversation_is_kept_across_restarts(data: Path, started: list[Repl]) -> None:
    repl = start(started, data, "--offline")
    assert repl.banner("Chat 1> ") == [
        f"chatruntime {package_version()}",
        "model: offline model (forced by configuration)",
        f"store: files in {data}",
        "session 1: Chat 1 (active, 0 messages)",
        BANNER_HINT,
    ]
    assert repl.type("Hello there") == ["Assistant: [offline] You said: Hello there (turn 1)"]
    first_id = repl.type("/stats")[-1].removeprefix("id: ")

    assert repl.type("/new Trip planning", prompt="Trip planning> ") == [
        "new session 2: Trip planning (active, 0 messages)"
    ]
    second_id = repl.type("/stats")[-1].removeprefix("id: ")
    assert repl.type("/rename Trip to Rome", prompt="Trip to Rome> ") == [
        "renamed session 2: Trip to Rome (active, 0 messages)"
    ]
    assert repl.type("/list") == [
        f"  1. Chat 1  (active, 2 messages)  {first_id[:8]}",
        f"* 2. Trip to Rome  (active, 0 messages)  {second_id[:8]}",
    ]
    assert repl.type("/switch 1", prompt="Chat 1> ") == [
        "switched to session 1: Chat 1 (active, 2 messages)"
    ]
    assert repl.type("/history") == [
        "you: Hello there",
        "Assistant: [offline] You said: Hello there (turn 1)",
    ]
    assert repl.type("/stats") == [
        "session 1: Chat 1 (active)",
        "messages: 2, turns: 1, tool calls: 0, handoffs: 0",
        f"tokens: {HELLO_TOKENS[0] + HELLO_TOKENS[1]} ({HELLO_TOKENS[0]} input, "
        f"{HELLO_TOKENS[1]} output) in 1 request",
        "last agent: Assistant",
        f"id: {first_id}",
    ]
    assert repl.quit_with_ctrl_d() == 0

    again = start(started, data, "--offline")
    # The most recently active session that takes messages: the renamed one was used last.
    # Numbers are handed out afresh in each run, the resumed session first.
    assert again.banner("Trip to Rome> ")[-2:] == [
        "session 1: Trip to Rome (active, 0 messages)",
        BANNER_HINT,
    ]
    assert again.type("/list") == [
        f"* 1. Trip to Rome  (active, 0 messages)  {second_id[:8]}",
        f"  2. Chat 1  (active, 2 messages)  {first_id[:8]}",
    ]
    assert again.type(f"/switch {first_id[:8]}", prompt="Chat 1> ") == [
        "switched to session 2: Chat 1 (active, 2 messages)"
    ]
    assert again.type("/history") == [
        "you: Hello there",
        "Assistant: [offline] You said: Hello there (turn 1)",
    ]
    assert again.type("And again") == ["Assistant: [offline] You said: And again (turn 2)"]
    assert again.quit_with_ctrl_d() == 0


def test_check_shows_its_progress_on_one_line_rewritten_in_place(
    data: Path, started: list[Repl]
) -> None:
    repl = start(started, data, "--offline")
    repl.banner("Chat 1> ")
    repl.type("/new", prompt="Chat 2> ")
    repl.child.sendline("/check")
    repl.child.expect_exact("/check\r\n")
    repl.child.expect_exact(repl.prompt)
    last = "checking sessions: 2 of 2 (100%)"
    assert repl.child.before == (
        "\rchecking sessions: 1 of 2 (50%)"
        f"\r{last}"
        f"\r{' ' * len(last)}\r"
        "checked 2 sessions: all can be read\r\n"
    )
    assert repl.quit_with_ctrl_d() == 0


def test_ctrl_c_during_a_reply_cancels_the_turn_and_keeps_the_history(
    data: Path, started: list[Repl]
) -> None:
    # The offline model waits 0.1 s per word: a long message gives seconds to press Ctrl-C.
    repl = start(started, data, "--offline", "--offline-delay", "0.1")
    repl.banner("Chat 1> ")
    assert repl.type("Hi") == ["Assistant: [offline] You said: Hi (turn 1)"]
    stats_before = repl.type("/stats")

    long_message = " ".join(f"word{n}" for n in range(60))
    repl.child.sendline(long_message)
    repl.child.expect_exact("Assistant: [offline] You")
    repl.child.sendintr()
    repl.child.expect_exact(repl.prompt)
    # Some words of the reply came before the cancel (and the terminal's echo of Ctrl-C);
    # the end of the reply never did.
    rest, cancelled = _lines(repl.child.before)
    assert re.fullmatch(r"[\w: ]*\^C", rest) and "(turn 2)" not in rest
    assert cancelled == CANCELLED_LINE

    assert repl.type("/history") == [
        "you: Hi",
        "Assistant: [offline] You said: Hi (turn 1)",
    ]
    assert repl.type("/stats") == stats_before
    # The session still takes turns, and the cancelled one never counted.
    assert repl.type("Bye") == ["Assistant: [offline] You said: Bye (turn 2)"]
    assert repl.quit_with_ctrl_d() == 0

    again = start(started, data, "--offline")
    again.banner("Chat 1> ")
    assert again.type("/history") == [
        "you: Hi",
        "Assistant: [offline] You said: Hi (turn 1)",
        "you: Bye",
        "Assistant: [offline] You said: Bye (turn 2)",
    ]
    assert again.quit_with_ctrl_d() == 0


def test_ctrl_c_during_a_reply_from_a_server_cancels_the_turn(
    data: Path, started: list[Repl], openai_server: OpenAIServer
) -> None:
    # The SDK's real OpenAI client streams from a loopback server, one event every 0.3 s.
    openai_server.reply(message("Hello from the server"), usage=usage(5, 4))
    words = " ".join(f"w{n}" for n in range(40))
    openai_server.reply(message(words), usage=usage(9, 40), event_delay=0.3)
    openai_server.reply(message("Back again"), usage=usage(13, 2))
    repl = start(started, data, "--base-url", openai_server.base_url, "--model", "test-model")
    assert repl.banner("Chat 1> ")[1] == f"model: test-model via {openai_server.base_url}"
    assert repl.type("Hi") == ["Assistant: Hello from the server"]

    repl.child.sendline("Tell me a long story")
    repl.child.expect_exact("Assistant: w0")
    repl.child.sendintr()
    repl.child.expect_exact(repl.prompt)
    assert _lines(repl.child.before)[-1] == CANCELLED_LINE

    assert repl.type("Again") == ["Assistant: Back again"]
    # The model never saw the cancelled turn again: it was not stored.
    assert [item.get("content") for item in openai_server.requests[2]["input"]] == [
        "Hi",
        [
            {
                "type": "output_text",
                "text": "Hello from the server",
                "annotations": [],
                "logprobs": [],
            }
        ],
        "Again",
    ]
    assert repl.type("/stats")[1:3] == [
        "messages: 4, turns: 2, tool calls: 0, handoffs: 0",
        "tokens: 24 (18 input, 6 output) in 2 requests",
    ]
    assert repl.quit_with_ctrl_d() == 0


def test_ctrl_c_at_the_prompt_clears_the_line_and_quit_folds_the_journal(
    data: Path, started: list[Repl]
) -> None:
    repl = start(started, data, "--offline")
    repl.banner("Chat 1> ")
    repl.child.send("half a thought")
    repl.child.expect_exact("half a thought")
    repl.child.sendintr()
    repl.child.expect_exact(repl.prompt)
    assert repl.type("/history") == ["(no history yet)"]
    assert repl.type("Whole") == ["Assistant: [offline] You said: Whole (turn 1)"]
    repl.child.sendline("/quit")
    repl.child.expect(pexpect.EOF)
    repl.child.close()
    assert repl.child.exitstatus == 0
    # Closing the manager folded the turn into the session file: no journal is left.
    assert [path.suffix for path in (data / "sessions").glob("*/*")] == [".json"]
