"""Every example runs offline, as ``python examples/X.py`` in a fresh folder, and exits 0."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
TIMEOUT = 120


def run_example(name: str, cwd: Path, stdin: str = "") -> list[str]:
    """Run an example; return its output lines after checking it exited 0 quietly."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("OPENAI_", "CHATRUNTIME_"))
    }
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / name)],
        cwd=cwd,
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert (done.returncode, done.stderr) == (0, "")
    return done.stdout.splitlines()


def test_repl_minimal_chats_and_finds_its_session_again(tmp_path: Path) -> None:
    assert run_example("repl_minimal.py", tmp_path, "Hello\nAgain\n") == [
        "model: offline model (no OPENAI_API_KEY set)",
        "session 'Chat' with 0 messages",
        "[offline] You said: Hello (turn 1)",
        "[offline] You said: Again (turn 2)",
    ]
    assert run_example("repl_minimal.py", tmp_path, "Third\n") == [
        "model: offline model (no OPENAI_API_KEY set)",
        "session 'Chat' with 4 messages",
        "[offline] You said: Third (turn 3)",
    ]
    assert (tmp_path / "repl-minimal-data" / "sessions").is_dir()


def test_chatbot_keeps_one_session_per_user(tmp_path: Path) -> None:
    assert run_example("chatbot.py", tmp_path) == [
        "alice: Hi, I am Alice",
        "bot: [offline] You said: Hi, I am Alice (turn 1)",
        "alice: What did I just say?",
        "bot: [offline] You said: What did I just say? (turn 2)",
        "bob: Hello from Bob",
        "bot: [offline] You said: Hello from Bob (turn 1)",
        "carol: (nothing but spaces)",
        "bot: Did you mean to send something? I got an empty message.",
        "",
        "alice: 'Chat with alice', messages: 4, tokens: 49, requests: 2",
        "bob: 'Chat with bob', messages: 2, tokens: 15, requests: 1",
        "carol: 'Chat with carol', messages: 0, tokens: 0, requests: 0",
    ]


def test_tools_and_handoff_shows_tool_calls_a_handoff_and_typed_history(tmp_path: Path) -> None:
    lines = run_example("tools_and_handoff.py", tmp_path)
    assert lines[:14] == [
        'you: /tool find_flight {"city": "Paris"}',
        '  tool call: find_flight({"city":"Paris"})',
        "  tool result: Flight TR-101 to Paris leaves at 09:40 from gate 12",
        "Travel desk: [offline] find_flight returned: "
        "Flight TR-101 to Paris leaves at 09:40 from gate 12",
        "",
        "you: /tool transfer_to_weather_desk",
        "  handoff: Travel desk -> Weather desk",
        "  now answering: Weather desk",
        'Weather desk: [offline] transfer_to_weather_desk returned: {"assistant": "Weather desk"}',
        "",
        'you: /tool get_weather {"city": "Paris"}',
        '  tool call: get_weather({"city":"Paris"})',
        "  tool result: Sunny in Paris, 24 degrees",
        "Weather desk: [offline] get_weather returned: Sunny in Paris, 24 degrees",
    ]
    history = lines[15:-1]
    assert [line.split()[0] for line in history] == [
        "history",
        "message",
        "tool",
        "result",
        "message",
        "message",
        "handoff",
        "message",
    ]
    assert history[6] == "  handoff    Travel desk -> Weather desk"
    assert lines[-1] == (
        "stats: 2 turns, 4 messages, 1 tool calls, 1 handoffs, 145 tokens, last agent: Weather desk"
    )


def test_checkpoints_and_sdk_session_forks_and_lets_the_sdk_continue_the_fork(
    tmp_path: Path,
) -> None:
    assert run_example("checkpoints_and_sdk_session.py", tmp_path) == [
        "SDK run answered: [offline] You said: And the best month? (turn 3)",
        "Trip planning: 4 messages",
        "  user: Plan a trip to Lisbon",
        "  assistant: [offline] You said: Plan a trip to Lisbon (turn 1)",
        "  user: Make it a week in August",
        "  assistant: [offline] You said: Make it a week in August (turn 2)",
        "Porto instead: 6 messages",
        "  user: Plan a trip to Lisbon",
        "  assistant: [offline] You said: Plan a trip to Lisbon (turn 1)",
        "  user: Actually, Porto please",
        "  assistant: [offline] You said: Actually, Porto please (turn 2)",
        "  user: And the best month?",
        "  assistant: [offline] You said: And the best month? (turn 3)",
        "checkpoints of 'Trip planning': ['after the first answer']",
    ]
