"""The README's usage example runs as written (offline) and prints what a reader expects."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_the_use_it_example_runs_offline(tmp_path: Path) -> None:
    text = README.read_text(encoding="utf-8")
    match = re.search(r"## Use it\n\n```python\n(.*?)```", text, re.DOTALL)
    assert match is not None, "README has no python block under '## Use it'"
    script = tmp_path / "example.py"
    script.write_text(match.group(1), encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "CHATRUNTIME_"))}

    done = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout == (
        "[offline] You said: Hello (turn 1)\n[offline] You said: And now? (turn 2)"
    )
    assert len(list((tmp_path / "data" / "sessions").glob("*/*.json"))) == 1


PRELUDE = """\
from typing import Any

from chatruntime import *  # noqa: F403
from chatruntime.stores import RedisStore, SqlStore

manager: SessionManager
session_id: str
agent_id: str
"""


def readme_python_blocks() -> list[str]:
    text = README.read_text(encoding="utf-8")
    blocks = re.findall(r"^( *)```python\n(.*?)^\1```", text, re.DOTALL | re.MULTILINE)
    return ["\n".join(line[len(indent) :] for line in body.splitlines()) for indent, body in blocks]


def as_module(block: str) -> str:
    """A block as a module mypy can check: snippets with a top-level ``await`` run inside an
    async function, after a prelude that declares the names snippets take as given."""
    if "import anyio" in block:
        return block
    body = "\n".join(f"    {line}" if line else "" for line in block.splitlines())
    return f"{PRELUDE}\n\nasync def snippet() -> None:\n{body}\n"


def test_the_readme_code_blocks_type_check_strictly(tmp_path: Path) -> None:
    blocks = readme_python_blocks()
    assert len(blocks) >= 5
    for number, block in enumerate(blocks):
        (tmp_path / f"block_{number}.py").write_text(as_module(block), encoding="utf-8")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--strict",
            "--cache-dir",
            str(tmp_path / ".mypy_cache"),
            "--disable-error-code",
            "unused-ignore",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
