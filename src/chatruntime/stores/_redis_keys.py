"""The names of every key ``RedisStore`` reads and writes: its layout, in one place.

Layout version 2 (every key starts with the store's ``key_prefix``, written ``{p}`` here)::

    {p}chatruntime:schema                     string  layout version of the data under {p}
    {p}chatruntime:agent:{id}                 string  AgentSpec JSON
    {p}chatruntime:agents                     zset    agent ids scored by created_at
    {p}chatruntime:session:{id}               hash    revision, header (JSON), agentId,
                                                      userId ('' for none), status
    {p}chatruntime:history:{id}               list    one history item JSON per element
    {p}chatruntime:sessions                   zset    every session id, scored by last activity
    {p}chatruntime:agent_sessions:{agentId}   zset    the agent's session ids, by last activity
    {p}chatruntime:user_sessions:{userId}     zset    the user's session ids, by last activity
    {p}chatruntime:status_sessions:{status}   zset    session ids of that status, by last activity
    {p}chatruntime:expiring                   zset    ids of sessions with an expiry, scored by it
    {p}chatruntime:expiring_indexes           hash    id -> JSON [agentId, userId, status]: the
                                                      indexes to clean once Redis expires it
    {p}chatruntime:lease:{id}                 string  token of the session's lease holder (TTL)

Layout 1 had neither the ``status`` field, the status indexes nor the two expiry keys;
``RedisStore.initialize`` upgrades such data in place (``_redis_upgrade``).

The Lua scripts (``_redis_scripts``) build the same names from the prefix.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

LAYOUT_VERSION: Final = 2
"""Version of the key layout this chatruntime writes; kept in ``{prefix}chatruntime:schema``."""


@dataclass(frozen=True)
class RedisKeys:
    """Key names under one key prefix."""

    prefix: str

    def _name(self, kind: str, name: str | None = None) -> str:
        base = f"{self.prefix}chatruntime:{kind}"
        return base if name is None else f"{base}:{name}"

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
    def expiring_indexes(self) -> str:
        return self._name("expiring_indexes")

    def agent(self, agent_id: str) -> str:
        return self._name("agent", agent_id)

    def session(self, session_id: str) -> str:
        return self._name("session", session_id)

    def history(self, session_id: str) -> str:
        return self._name("history", session_id)

    def lease(self, session_id: str) -> str:
        return self._name("lease", session_id)

    def agent_sessions(self, agent_id: str) -> str:
        return self._name("agent_sessions", agent_id)

    def user_sessions(self, user_id: str) -> str:
        return self._name("user_sessions", user_id)

    def status_sessions(self, status: str) -> str:
        return self._name("status_sessions", status)
