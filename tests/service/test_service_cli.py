"""``chatruntime serve``: the service as an operator starts and stops it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from chatruntime.cli import main
from chatruntime.cli._options import ServeOptions, parse_serve_options
from chatruntime.service import hash_key

SCRIPT = Path(sys.executable).parent / "chatruntime"
START_SECONDS = 30


@dataclass
class Served:
    process: subprocess.Popen[str]
    url: str
    banner: list[str]

    def stop(self) -> tuple[int, str]:
        """SIGTERM, as a service manager stops it; the exit status and stderr."""
        self.process.send_signal(signal.SIGTERM)
        _, err = self.process.communicate(timeout=START_SECONDS)
        return self.process.returncode, err


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "CHATRUNTIME_"))}
    return {**env, **extra}


@contextmanager
def serve(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> Iterator[Served]:
    process = subprocess.Popen(
        [str(SCRIPT), "serve", "--port", "0", *args],
        cwd=tmp_path,
        env=env if env is not None else clean_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        banner: list[str] = []
        deadline = time.monotonic() + START_SECONDS
        while len(banner) < 4 and time.monotonic() < deadline:
            line = process.stdout.readline()
            if not line:
                break
            banner.append(line.rstrip("\n"))
        assert len(banner) == 4, (banner, process.stderr.read() if process.stderr else "")
        url = banner[0].removeprefix("chatruntime service on ").rstrip("/")
        yield Served(process, url, banner)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate(timeout=START_SECONDS)


def write_keys(tmp_path: Path) -> Path:
    path = tmp_path / "keys.txt"
    path.write_text(
        f"alice:{hash_key('alice-key')}\nops:{hash_key('ops-key')}:admin\n", encoding="utf-8"
    )
    return path


def test_serve_answers_over_http_and_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    keys = write_keys(tmp_path)

    with serve(tmp_path, "--keys", str(keys)) as served:
        assert served.banner[1:] == [
            "  store: files in ./chatruntime-data",
            "  model: offline model (no OPENAI_API_KEY set)",
            f"  keys:  2 from {keys}",
        ]
        headers = {"Authorization": "Bearer alice-key"}
        with httpx.Client(base_url=served.url, headers=headers) as alice:
            session = alice.post("/sessions", json={"name": "Chat"}).json()
            reply = alice.post(f"/sessions/{session['id']}/messages", json={"content": "Hello"})
        status, err = served.stop()

    assert reply.json()["content"] == "[offline] You said: Hello (turn 1)"
    assert status == 0
    assert "Traceback" not in err
    assert (tmp_path / "chatruntime-data" / "index.sqlite3").is_file()


def test_serve_without_keys_makes_a_one_time_admin_key(tmp_path: Path) -> None:
    with serve(tmp_path) as served:
        prefix = "  keys:  none configured; the admin key of user 'local' for this run: "
        assert served.banner[3].startswith(prefix)
        key = served.banner[3].removeprefix(prefix)
        me = httpx.get(f"{served.url}/me", headers={"Authorization": f"Bearer {key}"})
        served.stop()

    assert me.json() == {"userId": "local", "admin": True}


def test_serve_takes_keys_from_the_environment_and_logs_json(tmp_path: Path) -> None:
    env = clean_env(CHATRUNTIME_API_KEYS=f"alice:{hash_key('alice-key')}")

    with serve(tmp_path, "--log-format", "json", env=env) as served:
        me = httpx.get(
            f"{served.url}/me",
            headers={"Authorization": "Bearer alice-key", "X-Request-ID": "req-9"},
        )
        _, err = served.stop()

    assert served.banner[3] == "  keys:  1 from $CHATRUNTIME_API_KEYS"
    assert me.json() == {"userId": "alice", "admin": False}
    logged = [json.loads(line) for line in err.splitlines()]
    request = [entry for entry in logged if entry.get("request_id") == "req-9"]
    assert [(e["message"], e["user_id"], e["status"]) for e in request] == [
        ("GET /me 200", "alice", 200)
    ]


def test_serve_on_a_port_in_use_exits_1_naming_it(tmp_path: Path) -> None:
    with serve(tmp_path, "--data", "first") as first:
        port = first.url.rsplit(":", 1)[1]
        done = subprocess.run(
            [str(SCRIPT), "serve", "--data", "second", "--port", port],
            cwd=tmp_path,
            env=clean_env(),
            capture_output=True,
            text=True,
            timeout=START_SECONDS,
            check=False,
        )
        first.stop()

    assert done.returncode == 1
    assert f"chatruntime serve: cannot listen on 127.0.0.1 port {port}:" in done.stderr


def test_serve_with_an_unreadable_key_file_exits_1_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status = main(["serve", "--keys", str(tmp_path / "missing.txt")])

    assert status == 1
    assert capsys.readouterr().err.startswith(
        f"chatruntime serve: cannot read key file {tmp_path / 'missing.txt'}"
    )


def test_new_key_prints_a_key_and_its_key_file_line(capsys: pytest.CaptureFixture[str]) -> None:
    status = main(["serve", "--new-key", "alice"])

    lines = capsys.readouterr().out.splitlines()
    assert status == 0
    key = lines[0].removeprefix("key:  ")
    assert lines[1] == f"line: alice:{hash_key(key)}"


def test_serve_options_default_to_the_file_store_on_loopback() -> None:
    assert parse_serve_options([]) == ServeOptions(
        data="./chatruntime-data", host="127.0.0.1", port=8000, grace=30.0, log_format="text"
    )


def test_serve_options_are_parsed() -> None:
    options = parse_serve_options(
        [
            "--store",
            "memory://",
            "--host",
            "0.0.0.0",
            "--port",
            "9000",
            "--keys",
            "k.txt",
            "--cors-origin",
            "https://a.example",
            "--cors-origin",
            "https://b.example",
            "--turn-timeout",
            "30",
            "--grace",
            "5",
            "--log-format",
            "json",
        ]
    )

    assert (options.store, options.host, options.port, options.keys) == (
        "memory://",
        "0.0.0.0",
        9000,
        "k.txt",
    )
    assert options.cors_origins == ("https://a.example", "https://b.example")
    assert (options.turn_timeout, options.grace, options.log_format) == (30.0, 5.0, "json")


@pytest.mark.parametrize(
    "args", [["--port", "70000"], ["--port", "x"], ["--turn-timeout", "0"], ["--log-format", "xml"]]
)
def test_bad_serve_options_exit_2(args: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", *args]) == 2
    assert capsys.readouterr().err.startswith("usage: chatruntime serve")


def test_serve_help_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--help"]) == 0
    assert "USER_ID:SHA256HEX" in capsys.readouterr().out
