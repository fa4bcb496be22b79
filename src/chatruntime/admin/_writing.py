"""Writing one session (and its checkpoints) into a store as an import or a copy does:
created at its own revision, skipped when already there at that revision."""

from __future__ import annotations

import enum
from collections.abc import Sequence

from ..models import AgentSpec, ChatSession, Checkpoint, ConflictError
from ..stores import SessionStore


class Outcome(enum.Enum):
    """What happened to a session written."""

    CREATED = "created"
    UNCHANGED = "unchanged"
    """Already stored at the same revision: left as it is."""
    REPLACED = "replaced"
    CONFLICT = "conflict"
    """Stored at another revision, and not to be replaced."""


class AgentOutcome(enum.Enum):
    """What happened to an agent written."""

    CREATED = "created"
    UNCHANGED = "unchanged"
    REPLACED = "replaced"
    CONFLICT = "conflict"


async def put_agent(target: SessionStore, spec: AgentSpec, *, replace: bool) -> AgentOutcome:
    """Store ``spec`` unless the same spec is there; an agent that differs is replaced only
    with ``replace``."""
    stored = await target.get_agent(spec.id)
    if stored is None:
        await target.save_agent(spec)
        return AgentOutcome.CREATED
    if stored == spec:
        return AgentOutcome.UNCHANGED
    if not replace:
        return AgentOutcome.CONFLICT
    await target.save_agent(spec)
    return AgentOutcome.REPLACED


async def put_session(
    target: SessionStore, session: ChatSession, *, replace: bool
) -> tuple[Outcome, int | None]:
    """Store ``session`` with its history and revision as they are.

    A session already stored at the same revision is left alone: that is what makes an
    import or a copy safe to run again. One at another revision is replaced (deleted, then
    written) with ``replace``, else left and reported as a conflict.

    Returns:
        What happened, and the revision that was stored before (``None``: none was).

    Raises:
        ChatRuntimeError: The store refused or failed the write.
    """
    stored = await target.get_revision(session.id)
    if stored is None:
        try:
            await target.write_session(session.header(), session.history, expected_revision=None)
        except ConflictError:
            # Written meanwhile (the same session twice in a file, or a concurrent run).
            stored = await target.get_revision(session.id)
            if stored == session.revision:
                return Outcome.UNCHANGED, stored
            raise
        return Outcome.CREATED, None
    if stored == session.revision:
        return Outcome.UNCHANGED, stored
    if not replace:
        return Outcome.CONFLICT, stored
    # Not atomic: a crash in between leaves the session missing, and a run again writes it.
    await target.delete_session(session.id)
    await target.write_session(session.header(), session.history, expected_revision=None)
    return Outcome.REPLACED, stored


async def put_checkpoints(target: SessionStore, checkpoints: Sequence[Checkpoint]) -> int:
    """Store the checkpoints the target does not hold as they are; how many were written."""
    if not checkpoints:
        return 0
    stored = await target.list_checkpoints(checkpoints[0].session_id)
    present = {checkpoint.id: checkpoint for checkpoint in stored}
    written = 0
    for checkpoint in checkpoints:
        if present.get(checkpoint.id) != checkpoint:
            await target.save_checkpoint(checkpoint)
            written += 1
    return written
