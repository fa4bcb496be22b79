"""The state modules saved with a session, read and replaced as JSON, scoped to the caller.

Over HTTP there are no :class:`~chatruntime.state.StateModule` objects, only what their
``state_dict()`` saved, by module name: the service reads it from the session's header and
writes it through :meth:`SessionManager.save_session_state`, so a write is checked, counted as
activity and stored atomically exactly as one made in Python.
"""

import copy
from typing import Any

from fastapi import APIRouter

from ..models import InvalidInputError
from ..state import StateModule
from ._deps import Caller, Context
from ._errors import ApiError, unwrap
from ._logging import note_session
from ._openapi import ERRORS
from ._schemas import SessionState

router = APIRouter(prefix="/sessions/{session_id}", tags=["state"], responses=ERRORS)


class _SavedState(StateModule):
    """A module whose state is given JSON data: saves it as it is."""

    def __init__(self, state: dict[str, Any]) -> None:
        super().__init__()
        object.__setattr__(self, "_saved", state)

    def state_dict(self) -> dict[str, Any]:
        saved: dict[str, Any] = self.__dict__["_saved"]
        return copy.deepcopy(saved)


@router.get("/state")
async def get_state(session_id: str, context: Context, key: Caller) -> SessionState:
    """The state modules saved with the session, by name (empty when none is saved)."""
    note_session(session_id)
    session = unwrap(await context.manager.get_session(session_id, user_id=key.user_id))
    return SessionState(state=session.state)


@router.put("/state")
async def put_state(
    session_id: str, body: SessionState, context: Context, key: Caller
) -> SessionState:
    """Replace the state saved with the session: it becomes exactly ``state`` (modules saved
    before and not named now are dropped), in one write that counts as activity."""
    note_session(session_id)
    if not body.state:
        raise ApiError.of(
            InvalidInputError(
                'state must hold at least one module by name, e.g. {"state": {"memory": {}}}',
                field="state",
            )
        )
    modules = {name: _SavedState(state) for name, state in body.state.items()}
    unwrap(await context.manager.save_session_state(session_id, key.user_id, **modules))
    return body
