"""A minimal terminal chat on chatruntime's public API.

    python examples/repl_minimal.py

Sessions are kept in ./repl-minimal-data; with no OPENAI_API_KEY the offline model answers.
Type a message and Enter; an empty line or Ctrl-D quits. The full REPL is `chatruntime`.
"""

import sys

import anyio

from chatruntime import AgentManager, Error, ModelConfig, SessionManager, TextDelta
from chatruntime.stores import FileStore


async def main() -> None:
    store = FileStore("./repl-minimal-data")
    agents = AgentManager(store)  # models come from the environment (ModelConfig.from_env)
    async with SessionManager(store, agents) as manager:
        specs = (await agents.list_agents()).unwrap()
        agent = specs[0] if specs else (await agents.create_agent("Helper", "Be brief.")).unwrap()
        # The most recently active session of the agent: one header (no history) is enough.
        page = (await manager.list_sessions(agent_id=agent.id, limit=1)).unwrap()
        session = (
            page.sessions[0]
            if page.sessions
            else (await manager.create_session(agent.id, "Chat")).unwrap()
        )
        print(f"model: {ModelConfig.from_env().describe()}")
        print(f"session {session.name!r} with {session.context.total_messages} messages")
        while True:
            # Reading stdin blocks, so it happens in a worker thread, not on the event loop.
            line = (await anyio.to_thread.run_sync(sys.stdin.readline)).strip()
            if not line:
                break
            async for event in manager.stream_message(session.id, line):
                if isinstance(event, TextDelta):
                    print(event.text, end="", flush=True)
                elif isinstance(event, Error):
                    print(f"error: {event.error.code}: {event.error.message}", end="")
            print()


if __name__ == "__main__":
    anyio.run(main)
