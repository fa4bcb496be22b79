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
