"""Checkpoints, fork and the Agents SDK's own ``Session`` on one chatruntime session.

    python examples/checkpoints_and_sdk_session.py

Keeps its data in ./checkpoints-data (a fresh session each run); with no OPENAI_API_KEY the
offline model answers. It saves a checkpoint, chats on, forks from the checkpoint ("edit an
earlier message and try again"), then lets the SDK's ``Runner.run`` continue the fork through
``manager.sdk_session``, sharing one history with ``send_message``.
"""

import anyio
from agents import RunConfig, Runner

from chatruntime import AgentManager, MessageItem, SessionManager
from chatruntime.stores import FileStore


def texts(history: list[MessageItem]) -> list[str]:
    return [f"{item.role}: {item.text}" for item in history]


async def main() -> None:
    store = FileStore("./checkpoints-data")
    agents = AgentManager(store)
    async with SessionManager(store, agents) as manager:
        agent = (await agents.create_agent("Helper", "Be brief.")).unwrap()
        session = (await manager.create_session(agent.id, "Trip planning")).unwrap()
        (await manager.send_message(session.id, "Plan a trip to Lisbon")).unwrap()
        saved = (await manager.save_checkpoint(session.id, label="after the first answer")).unwrap()
        (await manager.send_message(session.id, "Make it a week in August")).unwrap()

        fork = (await manager.fork_session(session.id, saved.id, name="Porto instead")).unwrap()
        (await manager.send_message(fork.id, "Actually, Porto please")).unwrap()

        # The SDK runs the next turn of the fork itself, on chatruntime's store.
        provider, config = await agents.provider()
        sdk_session = manager.sdk_session(fork.id)
        result = await Runner.run(
            await agents.resolve(agent.id),
            "And the best month?",
            session=sdk_session,
            # Tracing exports to OpenAI: only with a real key (config says whether).
            run_config=RunConfig(model_provider=provider, tracing_disabled=config.tracing_disabled),
        )
        print(f"SDK run answered: {result.final_output}")

        for current in (session, fork):
            stored = (await manager.get_session(current.id)).unwrap()
            messages = [item for item in stored.history if isinstance(item, MessageItem)]
            print(f"{stored.name}: {len(messages)} messages")
            for line in texts(messages):
                print(f"  {line}")
        checkpoints = (await manager.list_checkpoints(session.id)).unwrap()
        print(f"checkpoints of {session.name!r}: {[c.label for c in checkpoints]}")


if __name__ == "__main__":
    anyio.run(main)
