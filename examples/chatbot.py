"""A chatbot that embeds chatruntime: one session per user, answers through `send_message`.

    python examples/chatbot.py

`Chatbot` is what a messaging integration (Slack, Telegram, a web chat) would hold: it maps
each user id to that user's session, sends the text, and turns every failure into a polite
answer using the Result's error code, never an exception. The demo runs offline (the offline
model, an in-memory store) and talks to three users at once.
"""

import anyio

from chatruntime import AgentManager, ErrorCode, MemoryStore, OfflineModelProvider, SessionManager


class Chatbot:
    """Answers messages from many users, each in their own session with one agent.

    Args:
        manager: An initialized session manager.
        agent_id: The agent that answers everybody.
        timeout: Seconds one answer may take.
    """

    def __init__(self, manager: SessionManager, agent_id: str, *, timeout: float = 30) -> None:
        self.manager = manager
        self.agent_id = agent_id
        self.timeout = timeout
        self._sessions: dict[str, str] = {}
        # Two first messages of one user arriving together must not open two sessions.
        self._opening = anyio.Lock()

    async def answer(self, user_id: str, text: str) -> str:
        """The reply to ``text`` from ``user_id``, or an apology saying what went wrong."""
        session_id = await self._session_of(user_id)
        if session_id is None:
            return "Sorry, I cannot open a conversation right now."
        reply = await self.manager.send_message(session_id, text, timeout=self.timeout)
        if reply.success and reply.data is not None:
            return reply.data.content
        assert reply.error is not None
        if reply.error.code == ErrorCode.VALIDATION_ERROR:
            return "Did you mean to send something? I got an empty message."
        if reply.error.code == ErrorCode.TIMEOUT:
            return "Sorry, that took too long. Please try again."
        return f"Sorry, something went wrong ({reply.error.code})."

    async def _session_of(self, user_id: str) -> str | None:
        async with self._opening:
            if user_id not in self._sessions:
                # A session from an earlier run (with a persistent store) is picked up again:
                # the user's most recently active one, a page of one header.
                page = await self.manager.list_sessions(self.agent_id, user_id, limit=1)
                if page.data is not None and page.data.sessions:
                    self._sessions[user_id] = page.data.sessions[0].id
                else:
                    created = await self.manager.create_session(
                        self.agent_id, f"Chat with {user_id}", user_id=user_id
                    )
                    if created.data is None:
                        return None
                    self._sessions[user_id] = created.data.id
            return self._sessions[user_id]


async def main() -> None:
    store = MemoryStore()
    agents = AgentManager(store, model_provider=OfflineModelProvider())
    async with SessionManager(store, agents) as manager:
        agent = (await agents.create_agent("Concierge", "Be friendly and brief.")).unwrap()
        bot = Chatbot(manager, agent.id)
        conversations = {
            "alice": ["Hi, I am Alice", "What did I just say?"],
            "bob": ["Hello from Bob"],
            "carol": ["   "],
        }
        transcripts: dict[str, list[str]] = {user: [] for user in conversations}

        async def talk(user: str) -> None:
            for text in conversations[user]:
                said = text if text.strip() else "(nothing but spaces)"
                transcripts[user] += [f"{user}: {said}", f"bot: {await bot.answer(user, text)}"]

        # Users talk at the same time; each user's messages stay in order in their session.
        async with anyio.create_task_group() as group:
            for user in conversations:
                group.start_soon(talk, user)

        for lines in transcripts.values():
            print("\n".join(lines))
        print()
        # A page of headers (no history), most recent activity first; a store with more
        # sessions than fit in one page would go on with `cursor=page.next_cursor`.
        page = (await manager.list_sessions()).unwrap()
        for session in sorted(page.sessions, key=lambda session: session.user_id or ""):
            context = session.context
            print(
                f"{session.user_id}: {session.name!r}, messages: {context.total_messages},"
                f" tokens: {context.total_tokens}, requests: {context.requests}"
            )


if __name__ == "__main__":
    anyio.run(main)
