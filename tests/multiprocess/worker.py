"""One worker process of the multi-process tests: a whole chatruntime stack sending messages.

Run it as a separate OS process (``sys.executable worker.py ...``). It opens its own store
with ``open_store(--store-url, **--store-option)``, registers the offline model under
``--agent-id`` as a code-defined agent, starts a ``SessionManager`` and sends ``--messages``
messages, ``w{worker}-m{i:02d}``, one at a time to the sessions of ``--sessions``: each
session gets the same number of them (give or take one), in an order shuffled with
``--worker`` as the seed so that workers collide on sessions the way independent clients
would.

Protocol with the test, on stdout (one line each, flushed):

- ``READY`` once the manager is initialized. With ``--wait-for-go`` the worker then waits
  for a ``go`` line on stdin before it sends anything, so that the test can release all
  workers together once their slow imports are done.
- ``SENDING <content>`` just before each send.
- ``HOLDING`` (only with ``--announce-holding``) each time the model is called, that is
  mid-turn, while the worker holds the session's lock and lease.

At the end the worker writes ``--result`` (JSON, replaced atomically) with one entry per send:
the session, the content, whether it succeeded, the reply or the error code and message, and
``time.monotonic()`` before and after the call (one clock for all processes of the machine).
It exits 0 whenever it got that far, whatever the sends answered; the test judges them.
When its stdin closes (the test process died) it exits at once with ``ORPHANED_EXIT``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import threading
import time
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
from agents import Agent, set_tracing_disabled

from chatruntime import AgentManager, OfflineModel, SessionManager
from chatruntime.stores import open_store

READY = "READY"
HOLDING = "HOLDING"
SENDING = "SENDING"
GO = "go"
ORPHANED_EXIT = 3
"""Exit code of a worker whose stdin closed: the test that started it is gone."""


class AnnouncingModel(OfflineModel):
    """The offline model, printing ``HOLDING`` as each model call starts (before its delay)."""

    async def get_response(self, *args: Any, **kwargs: Any) -> Any:
        announce(HOLDING)
        return await super().get_response(*args, **kwargs)


def announce(line: str) -> None:
    print(line, flush=True)


def watch_stdin(go: threading.Event) -> None:
    """Set ``go`` on a ``go`` line; exit at once when stdin closes.

    The test keeps the other end of stdin open until this process has exited, so end of file
    means the test process died: no worker outlives it, not even one stuck mid-turn.
    """
    for line in sys.stdin:
        if line.strip() == GO:
            go.set()
    print("stdin closed: the test process is gone", file=sys.stderr, flush=True)
    os._exit(ORPHANED_EXIT)


def schedule(sessions: list[str], messages: int, worker: int) -> list[tuple[str, str]]:
    """The (session, content) pairs this worker sends, in order."""
    targets = [sessions[i % len(sessions)] for i in range(messages)]
    random.Random(worker).shuffle(targets)
    return [(session, f"w{worker}-m{i:02d}") for i, session in enumerate(targets)]


async def run(options: argparse.Namespace) -> None:
    set_tracing_disabled(True)
    model_type = AnnouncingModel if options.announce_holding else OfflineModel
    store = open_store(options.store_url, **dict(options.store_option))
    agents = AgentManager(store)
    agents.register(
        Agent(name="Echo", model=model_type(delay=options.delay)), agent_id=options.agent_id
    )
    go = threading.Event()
    threading.Thread(target=watch_stdin, args=(go,), name="stdin-watch", daemon=True).start()
    sends: list[dict[str, Any]] = []
    async with SessionManager(
        store, agents, lease_ttl=options.lease_ttl, lease_timeout=options.lease_timeout
    ) as manager:
        announce(READY)
        if options.wait_for_go:
            await anyio.to_thread.run_sync(go.wait)
        for session_id, content in schedule(
            options.sessions.split(","), options.messages, options.worker
        ):
            started = time.monotonic()
            announce(f"{SENDING} {content}")
            result = await manager.send_message(session_id, content)
            finished = time.monotonic()
            entry: dict[str, Any] = {
                "session": session_id,
                "content": content,
                "ok": result.success,
                "started": started,
                "finished": finished,
            }
            if result.success:
                assert result.data is not None
                entry["reply"] = result.data.content
            else:
                assert result.error is not None
                entry["error"] = result.error.code
                entry["message"] = result.error.message
            sends.append(entry)
    report = {"worker": options.worker, "pid": os.getpid(), "sends": sends}
    target = Path(options.result)
    partial = target.with_name(target.name + ".partial")
    partial.write_text(json.dumps(report, indent=1), encoding="utf-8")
    partial.replace(target)


def store_option(text: str) -> tuple[str, str]:
    name, equals, value = text.partition("=")
    if not equals or not name:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    return name, value


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store-url", required=True)
    parser.add_argument(
        "--store-option",
        type=store_option,
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a keyword argument of open_store, such as key_prefix=tenant-a:",
    )
    parser.add_argument("--agent-id", required=True)
    parser.add_argument("--sessions", required=True, help="comma-separated session ids")
    parser.add_argument("--messages", type=int, required=True)
    parser.add_argument("--worker", type=int, required=True)
    parser.add_argument("--result", required=True, help="where to write the JSON report")
    parser.add_argument("--lease-ttl", type=float, default=60.0)
    parser.add_argument("--lease-timeout", type=float, default=60.0)
    parser.add_argument("--delay", type=float, default=0.0, help="seconds per model call")
    parser.add_argument("--announce-holding", action="store_true")
    parser.add_argument("--wait-for-go", action="store_true")
    return parser.parse_args(argv)


if __name__ == "__main__":
    anyio.run(run, parse(sys.argv[1:]))
