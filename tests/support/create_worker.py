"""One worker process of the creation race: creates sessions under a limit, racing the others.

Run it as a separate OS process (``sys.executable create_worker.py ...``; see
``racing_processes.py``). It opens its own store with ``open_store(--store-url,
**json(--store-options))``, initializes it, then:

- prints ``READY`` and waits for a ``go`` line on stdin, so that the test can release every
  worker at once after their slow imports (stdin closing first: exit ``ORPHANED_EXIT``);
- creates ``--sessions`` sessions concurrently, each with
  ``CreateLimits(now=--now, max_sessions=--max-sessions)``;
- prints one line ``RESULT <json>``: ``{"created": [ids], "refused": n, "errors": [text]}``,
  where ``refused`` counts ``LimitExceededError`` and ``errors`` holds anything else raised;
- closes the store and exits 0.

It imports only chatruntime and anyio, so that it runs without the tests' path.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import anyio
import anyio.to_thread

from chatruntime.models import LimitExceededError, SessionContext, SessionHeader, new_id
from chatruntime.stores import CreateLimits, open_store

READY = "READY"
GO = "go"
RESULT = "RESULT "
ORPHANED_EXIT = 3
"""Exit code of a worker whose stdin closed before ``go``: the test that started it is gone."""


def arguments(
    url: str, options: dict[str, Any], *, sessions: int, max_sessions: int, now: int
) -> list[str]:
    """The command-line arguments that make a worker race on the store ``url`` names."""
    return [
        "--store-url",
        url,
        "--store-options",
        json.dumps(options),
        "--sessions",
        str(sessions),
        "--max-sessions",
        str(max_sessions),
        "--now",
        str(now),
    ]


def _say(line: str) -> None:
    print(line, flush=True)


async def _create_all(args: argparse.Namespace) -> dict[str, Any]:
    store = open_store(args.store_url, **json.loads(args.store_options))
    await store.initialize()
    try:
        _say(READY)
        line = await anyio.to_thread.run_sync(sys.stdin.readline)
        if line.strip() != GO:
            sys.exit(ORPHANED_EXIT)
        limits = CreateLimits(now=args.now, max_sessions=args.max_sessions)
        outcome: dict[str, Any] = {"created": [], "refused": 0, "errors": []}
        # One agent for all: a limit counts sessions whatever their agent.
        agent_id = new_id()

        async def create() -> None:
            header = SessionHeader(
                id=new_id(),
                agent_id=agent_id,
                name="Racing",
                created_at=args.now,
                updated_at=args.now,
                context=SessionContext(last_activity=args.now),
            )
            try:
                await store.write_session(header, [], expected_revision=None, limits=limits)
            except LimitExceededError:
                outcome["refused"] += 1
            except Exception as error:  # reported to the test, which fails on any
                outcome["errors"].append(f"{type(error).__name__}: {error}")
            else:
                outcome["created"].append(header.id)

        async with anyio.create_task_group() as tg:
            for _ in range(args.sessions):
                tg.start_soon(create)
        return outcome
    finally:
        await store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store-url", required=True)
    parser.add_argument("--store-options", default="{}")
    parser.add_argument("--sessions", type=int, required=True)
    parser.add_argument("--max-sessions", type=int, required=True)
    parser.add_argument("--now", type=int, required=True)
    outcome = anyio.run(_create_all, parser.parse_args())
    _say(RESULT + json.dumps(outcome))


if __name__ == "__main__":
    main()
