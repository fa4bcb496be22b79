"""Checkpoints of a session, restoring one, and forking a session, scoped to the caller's user.

As with the session routes, the caller's user id goes to the manager with every call, so a
request naming another user's session answers ``SESSION_NOT_FOUND`` exactly as an unknown id
does, and one naming a checkpoint the session does not have answers ``CHECKPOINT_NOT_FOUND``.
"""

from fastapi import APIRouter, Response

from ..models import ChatSession, HistoryItem, SessionHeader
from ._deps import Caller, Context
from ._errors import unwrap
from ._logging import note_session
from ._openapi import ERRORS
from ._schemas import CheckpointCreate, CheckpointSummary, ForkCreate

router = APIRouter(prefix="/sessions/{session_id}", tags=["checkpoints"], responses=ERRORS)


@router.post("/checkpoints", status_code=201)
async def save_checkpoint(
    session_id: str, body: CheckpointCreate, context: Context, key: Caller
) -> CheckpointSummary:
    """Remember the session as it is now (history, statistics, status, metadata and saved
    state), with an optional label and the caller's own data. The history is shared with
    the session, not copied."""
    note_session(session_id)
    checkpoint = unwrap(
        await context.manager.save_checkpoint(
            session_id, body.label, body.data, user_id=key.user_id
        )
    )
    return CheckpointSummary.of(checkpoint)


@router.get("/checkpoints")
async def list_checkpoints(
    session_id: str, context: Context, key: Caller
) -> list[CheckpointSummary]:
    """Every checkpoint of the session, newest first (the undo point of a restore included,
    as kind ``restore``)."""
    note_session(session_id)
    found = unwrap(await context.manager.list_checkpoints(session_id, user_id=key.user_id))
    return [CheckpointSummary.of(checkpoint) for checkpoint in found]


@router.get("/checkpoints/{checkpoint_id}")
async def get_checkpoint(
    session_id: str, checkpoint_id: str, context: Context, key: Caller
) -> CheckpointSummary:
    """One checkpoint of the session."""
    note_session(session_id)
    checkpoint = unwrap(
        await context.manager.get_checkpoint(session_id, checkpoint_id, user_id=key.user_id)
    )
    return CheckpointSummary.of(checkpoint)


@router.get("/checkpoints/{checkpoint_id}/history")
async def checkpoint_history(
    session_id: str, checkpoint_id: str, context: Context, key: Caller
) -> list[HistoryItem]:
    """The whole history as it was at the checkpoint, oldest first."""
    note_session(session_id)
    return unwrap(
        await context.manager.get_checkpoint_history(session_id, checkpoint_id, user_id=key.user_id)
    )


@router.delete("/checkpoints/{checkpoint_id}", status_code=204)
async def delete_checkpoint(
    session_id: str, checkpoint_id: str, context: Context, key: Caller
) -> Response:
    """Delete one checkpoint; the session is unchanged."""
    note_session(session_id)
    unwrap(await context.manager.delete_checkpoint(session_id, checkpoint_id, user_id=key.user_id))
    return Response(status_code=204)


@router.post("/checkpoints/{checkpoint_id}/restore")
async def restore_checkpoint(
    session_id: str, checkpoint_id: str, context: Context, key: Caller
) -> SessionHeader:
    """Rewind the session to the checkpoint, and answer its header afterwards.

    The session as it was just before is saved first as the newest checkpoint (kind
    ``restore``): restoring that one undoes the restore.
    """
    note_session(session_id)
    restored = unwrap(
        await context.manager.restore_checkpoint(session_id, checkpoint_id, user_id=key.user_id)
    )
    return restored.header()


@router.post("/fork", status_code=201)
async def fork_session(
    session_id: str, body: ForkCreate, context: Context, key: Caller
) -> ChatSession:
    """Start a new session of the caller's from this one as it is now, or as it was at
    ``checkpointId``: the same agent, a copy of the history, statistics, metadata and saved
    state. The two are independent afterwards."""
    note_session(session_id)
    return unwrap(
        await context.manager.fork_session(
            session_id, body.checkpoint_id, body.name, user_id=key.user_id
        )
    )
