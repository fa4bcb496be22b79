"""The errors every store raises for the same situations, worded once, and the write rules
every store enforces (:func:`check_write`)."""

from __future__ import annotations

from ..models import BusyError, ConflictError, InvalidInputError, SessionHeader


def session_exists(session_id: str) -> ConflictError:
    """A create named a session that is already stored."""
    return ConflictError(f"session {session_id} already exists", session_id=session_id)


def session_missing(session_id: str) -> ConflictError:
    """An update named a session that is not (or no longer) stored."""
    return ConflictError(f"session {session_id} no longer exists", session_id=session_id)


def stale_revision(session_id: str, stored: int, expected: int) -> ConflictError:
    """An update was built on a revision the stored session has moved past."""
    return ConflictError(
        f"session {session_id} is at revision {stored}, not {expected}: reload it and try again",
        session_id=session_id,
        stored_revision=stored,
        expected_revision=expected,
    )


def busy(session_id: str, timeout: float) -> BusyError:
    """A lease was not granted within ``timeout`` seconds."""
    return BusyError(
        f"session {session_id} is busy: another holder kept it for over {timeout:g}s",
        session_id=session_id,
        timeout=timeout,
    )


def check_revision_step(header: SessionHeader, expected_revision: int | None) -> None:
    """A write must move the revision on by exactly one (a create writes revision 0 or more).

    Raises:
        InvalidInputError: ``header.revision`` is not ``expected_revision + 1``.
    """
    if expected_revision is not None and header.revision != expected_revision + 1:
        raise InvalidInputError(
            f"the header's revision must be {expected_revision + 1} "
            f"(expected_revision + 1), got {header.revision}",
            session_id=header.id,
            revision=header.revision,
            expected_revision=expected_revision,
        )


def check_same_agent(header: SessionHeader, stored_agent_id: str) -> None:
    """A session keeps the agent it was created for.

    Raises:
        InvalidInputError: ``header`` names another agent than the stored session.
    """
    if header.agent_id != stored_agent_id:
        raise InvalidInputError(
            f"session {header.id} belongs to agent {stored_agent_id}; "
            f"a write cannot move it to agent {header.agent_id}",
            session_id=header.id,
            agent_id=header.agent_id,
            stored_agent_id=stored_agent_id,
        )
