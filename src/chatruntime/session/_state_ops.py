"""The manager's state-module calls: ``save_session_state`` and ``load_session_state``.

The state lives in the session's header (``header.state``, one entry per module name), so it
is written in the same atomic step as any other change to the session, copied into every
checkpoint, brought back by a restore, and deleted with the session, on every store.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from ..models import InvalidInputError, Result, StateNotFoundError, check_user_id, guard
from ..state import StateModule
from ..state._module import json_problem
from ._core import SessionCore


class StateOps(SessionCore):
    """Saving and loading :class:`~chatruntime.state.StateModule` objects with a session
    (part of ``SessionManager``)."""

    async def save_session_state(
        self, session_id: str, user_id: str | None = None, **modules: StateModule
    ) -> Result[None]:
        """Save the state of ``modules`` with the session, by the names given: the saved
        state becomes exactly ``{name: module.state_dict()}`` (modules saved before and not
        named now are dropped), in one write that also counts as activity for expiry.

        Fails with ``VALIDATION_ERROR`` (no modules, a value that is not a ``StateModule``,
        or a state that is not JSON data: nothing is written), ``SESSION_NOT_FOUND`` or
        ``SESSION_EXPIRED``.

        Example:
            >>> await manager.save_session_state(session.id, assistant=assistant)
        """

        async def save() -> None:
            check_user_id(user_id)
            state = _state_of(modules)
            async with self._exclusive(session_id) as (entry, lease):
                self._usable(entry.session, user_id)
                header = self._next_header(entry.session, state=state)
                await self._commit(entry, header, [], lease)

        return await guard(save)

    async def get_session_state(
        self, session_id: str, user_id: str | None = None
    ) -> Result[dict[str, Any]]:
        """The state saved with the session, as JSON data by module name (``{}`` when none
        is saved): what a service hands to a client that has no ``StateModule`` objects.
        Reads the header only, never the history.

        Fails with ``SESSION_NOT_FOUND`` or ``SESSION_EXPIRED``.
        """

        async def read() -> dict[str, Any]:
            check_user_id(user_id)
            return (await self._current_header(session_id, user_id)).state

        return await guard(read)

    async def replace_session_state(
        self, session_id: str, state: Mapping[str, Any], user_id: str | None = None
    ) -> Result[None]:
        """Replace the state saved with the session by ``state`` (JSON data by module name,
        as :meth:`get_session_state` returns it; ``{}`` clears it), in one write that counts
        as activity. For callers that hold saved state rather than modules (a service).

        Fails with ``VALIDATION_ERROR`` (not a mapping of names to JSON objects, or data no
        store keeps exactly: nothing is written), ``SESSION_NOT_FOUND`` or
        ``SESSION_EXPIRED``.
        """

        async def replace() -> None:
            check_user_id(user_id)
            checked = _checked_state(state)
            async with self._exclusive(session_id) as (entry, lease):
                self._usable(entry.session, user_id)
                header = self._next_header(entry.session, state=checked)
                await self._commit(entry, header, [], lease)

        return await guard(replace)

    async def load_session_state(
        self,
        session_id: str,
        user_id: str | None = None,
        allow_not_exist: bool = True,
        **modules: StateModule,
    ) -> Result[list[str]]:
        """Load the state saved with the session into ``modules``, by name (strictly: every
        registered attribute and nested module must be in the saved state).

        Every module is checked before any is changed: a failed load changes none.

        Args:
            session_id: The session.
            user_id: The caller's user (another user's session answers
                ``SESSION_NOT_FOUND``).
            allow_not_exist: Whether a module without saved state is left as it is. When
                ``False``, a session without saved state for every module named answers
                ``STATE_NOT_FOUND`` naming them.
            **modules: The modules to load, by the names they were saved under.

        Returns:
            The names of the modules loaded (those with saved state).

        Fails with ``VALIDATION_ERROR`` (a value that is not a ``StateModule``, or a saved
        state missing keys a module registers: the message names them), ``STATE_NOT_FOUND``,
        ``SESSION_NOT_FOUND`` or ``SESSION_EXPIRED``.
        """

        async def load() -> list[str]:
            check_user_id(user_id)
            _check_modules(modules)
            header = await self._current_header(session_id, user_id)
            saved = header.state
            absent = [name for name in modules if name not in saved]
            if absent and not allow_not_exist:
                raise StateNotFoundError(
                    f"session {session_id} has no saved state for {', '.join(absent)}; save "
                    "it with save_session_state first",
                    session_id=session_id,
                    modules=absent,
                )
            found = {name: module for name, module in modules.items() if name in saved}
            missing = [
                f"{name}.{key}"
                for name, module in found.items()
                for key in module.missing_keys(saved[name])
            ]
            if missing:
                raise InvalidInputError(
                    f"the state saved with session {session_id} lacks {', '.join(missing)}; "
                    "nothing was loaded",
                    field="state",
                    missing=missing,
                )
            for name, module in found.items():
                module.load_state_dict(saved[name])
            return list(found)

        return await guard(load)


def _check_modules(modules: Mapping[str, object]) -> None:
    for name, module in modules.items():
        if not isinstance(module, StateModule):
            raise InvalidInputError(
                f"{name} must be a StateModule, got {type(module).__name__}", field=name
            )


def _checked_state(state: object) -> dict[str, Any]:
    """A copy of ``state``, checked to be ``{name: JSON object}`` that every store keeps."""
    if not isinstance(state, Mapping) or not all(
        isinstance(name, str) and name and isinstance(value, dict) for name, value in state.items()
    ):
        raise InvalidInputError(
            "state must map module names to JSON objects, e.g. {'memory': {'notes': []}}",
            field="state",
        )
    copied = copy.deepcopy(dict(state))
    problem = json_problem(copied)
    if problem is not None:
        raise InvalidInputError(f"the state cannot be stored: {problem}", field="state")
    return copied


def _state_of(modules: dict[str, StateModule]) -> dict[str, Any]:
    """``{name: module.state_dict()}``, checked to be JSON data every store keeps."""
    if not modules:
        raise InvalidInputError(
            "name at least one module to save, e.g. save_session_state(id, agent=agent)",
            field="modules",
        )
    _check_modules(modules)
    state = {name: module.state_dict() for name, module in modules.items()}
    problem = json_problem(state)
    if problem is not None:
        raise InvalidInputError(f"the state cannot be stored: {problem}", field="state")
    return state
