"""The state modules saved with a session, read and replaced as JSON, scoped to the caller.

Over HTTP there are no :class:`~chatruntime.state.StateModule` objects, only what their
``state_dict()`` saved, by module name: the service reads it with
:meth:`SessionManager.get_session_state` (the header only) and writes it with
:meth:`SessionManager.replace_session_state`, so a write is checked, counted as activity and
stored atomically exactly as one made in Python.
"""

from fastapi import APIRouter

from ._deps import Caller, Context
from ._errors import unwrap
from ._logging import note_session
from ._openapi import ERRORS
from ._schemas import SessionState

router = APIRouter(prefix="/sessions/{session_id}", tags=["state"], responses=ERRORS)


@router.get("/state")
async def get_state(session_id: str, context: Context, key: Caller) -> SessionState:
    """The state modules saved with the session, by name (empty when none is saved)."""
    note_session(session_id)
    return SessionState(
        state=unwrap(await context.manager.get_session_state(session_id, key.user_id))
    )


@router.put("/state")
async def put_state(
    session_id: str, body: SessionState, context: Context, key: Caller
) -> SessionState:
    """Replace the state saved with the session: it becomes exactly ``state`` (modules saved
    before and not named now are dropped; ``{}`` clears it), in one write that counts as
    activity."""
    note_session(session_id)
    unwrap(await context.manager.replace_session_state(session_id, body.state, key.user_id))
    return body
