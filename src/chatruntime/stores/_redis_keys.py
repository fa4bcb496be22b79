"""The names of every key ``RedisStore`` reads and writes: its layout, in one place.

Layout version 3. Every key starts with the store's ``key_prefix`` (``{p}`` here). A session
that belongs to a user keeps its own data under that user, in the pattern of agentscope's
``RedisSession`` (``user_id:{user_id}:session:{session_id}:...``); a session without a user
keeps it under its id alone. Indexes over all sessions live under ``chatruntime:``::

    {p}chatruntime:schema                     string  layout version of the data under {p}
    {p}chatruntime:agent:{id}                 string  AgentSpec JSON
    {p}chatruntime:agents                     zset    agent ids scored by created_at

    a session of user {u}:
    {p}user_id:{u}:session:{id}:header        hash    revision, header (JSON), agentId,
                                                      userId, status
    {p}user_id:{u}:session:{id}:history       list    one history item JSON per element
    {p}user_id:{u}:session:{id}:checkpoints   hash    checkpoint id -> Checkpoint JSON
    {p}user_id:{u}:session:{id}:checkpoint_order
                                              zset    checkpoint ids scored by created_at
    {p}chatruntime:owner:{id}                 string  {u}: where the session's data is
    a session without user: the same four, named by its id alone:
    {p}chatruntime:session:{id}               hash    as ...:header above (userId '')
    {p}chatruntime:history:{id}               list
    {p}chatruntime:checkpoints:{id}           hash
    {p}chatruntime:checkpoint_order:{id}      zset

    {p}chatruntime:sessions                   zset    every session id, scored by last activity
    {p}chatruntime:agent_sessions:{agentId}   zset    the agent's session ids, by last activity
    {p}chatruntime:status_sessions:{status}   zset    session ids of that status, by last activity
    {p}user_id:{u}:sessions                   zset    the user's session ids, by last activity
    {p}chatruntime:expiring                   zset    ids of sessions Redis expires itself (their
                                                      keys carry the expiry), scored by expiresAt
    {p}chatruntime:overdue                    zset    ids of sessions written with an expiresAt
                                                      already past by Redis's clock (kept, no key
                                                      expiry, until deleted), scored by it
    {p}user_id:{u}:expiring, {p}user_id:{u}:overdue   the same two for the user's sessions
    {p}chatruntime:expiring_indexes           hash    id -> JSON [agentId, userId, status] of
                                                      every session in expiring or overdue: the
                                                      index entries to remove once it is gone
    {p}chatruntime:lease:{id}                 string  token of the session's lease holder (TTL)

A session id is a UUID (36 characters) and the last part of every per-user key is one of a
fixed set of words, so no user id (whatever colons it holds) makes two keys collide.

Layout 2 kept every session under its id and the user index at
``{p}chatruntime:user_sessions:{u}``; layout 1 had neither the status indexes nor the expiry
tracking. ``RedisStore.initialize`` upgrades such data in place (``_redis_upgrade``).

The Lua scripts (``_redis_scripts``) build the same names from the prefix.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

LAYOUT_VERSION: Final = 3
"""Version of the key layout this chatruntime writes; kept in ``{prefix}chatruntime:schema``."""


@dataclass(frozen=True)
class RedisKeys:
    """Key names under one key prefix.

    The per-session names take the session's ``user_id`` (``None`` for a session without
    user), which the store finds at :meth:`owner`.
    """

    prefix: str

    def _name(self, kind: str, name: str | None = None) -> str:
        base = f"{self.prefix}chatruntime:{kind}"
        return base if name is None else f"{base}:{name}"

    def _user(self, user_id: str, rest: str) -> str:
        return f"{self.prefix}user_id:{user_id}:{rest}"

    def _of_session(self, kind: str, user_kind: str, session_id: str, user_id: str | None) -> str:
        if user_id:
            return self._user(user_id, f"session:{session_id}:{user_kind}")
        return self._name(kind, session_id)

    @property
    def schema(self) -> str:
        return self._name("schema")

    @property
    def agents(self) -> str:
        return self._name("agents")

    @property
    def sessions(self) -> str:
        return self._name("sessions")

    @property
    def expiring(self) -> str:
        return self._name("expiring")

    @property
    def overdue(self) -> str:
        return self._name("overdue")

    @property
    def expiring_indexes(self) -> str:
        return self._name("expiring_indexes")

    def agent(self, agent_id: str) -> str:
        return self._name("agent", agent_id)

    def session(self, session_id: str, user_id: str | None = None) -> str:
        """The session's header hash."""
        return self._of_session("session", "header", session_id, user_id)

    def history(self, session_id: str, user_id: str | None = None) -> str:
        return self._of_session("history", "history", session_id, user_id)

    def checkpoints(self, session_id: str, user_id: str | None = None) -> str:
        return self._of_session("checkpoints", "checkpoints", session_id, user_id)

    def checkpoint_order(self, session_id: str, user_id: str | None = None) -> str:
        return self._of_session("checkpoint_order", "checkpoint_order", session_id, user_id)

    def owner(self, session_id: str) -> str:
        """The pointer from a session id to its user (absent for a session without user)."""
        return self._name("owner", session_id)

    def lease(self, session_id: str) -> str:
        return self._name("lease", session_id)

    def agent_sessions(self, agent_id: str) -> str:
        return self._name("agent_sessions", agent_id)

    def user_sessions(self, user_id: str) -> str:
        return self._user(user_id, "sessions")

    def user_expiring(self, user_id: str) -> str:
        return self._user(user_id, "expiring")

    def user_overdue(self, user_id: str) -> str:
        return self._user(user_id, "overdue")

    def status_sessions(self, status: str) -> str:
        return self._name("status_sessions", status)

    def layout_2_user_sessions(self, user_id: str) -> str:
        """Where layout 2 kept the user's index (read by the upgrade only)."""
        return self._name("user_sessions", user_id)
