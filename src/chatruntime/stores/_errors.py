"""The errors every store raises for the same situations, worded once, and the write rules
every store enforces (:func:`check_write`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..models import (
    BusyError,
    ConflictError,
    InvalidInputError,
    LimitExceededError,
    SessionHeader,
)

if TYPE_CHECKING:
    from ._protocol import CreateLimits


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


def check_write_options(
    header: SessionHeader,
    expected_revision: int | None,
    keep: int | None,
    limits: CreateLimits | None,
) -> None:
    """``keep`` goes with updates, ``limits`` with creations (see ``write_session``).

    Raises:
        InvalidInputError: Either is given to the other kind of write, or ``keep`` < 0.
    """
    if keep is not None and (expected_revision is None or keep < 0):
        raise InvalidInputError(
            f"keep={keep} needs an update (an expected_revision) and a count of 0 or more",
            session_id=header.id,
            keep=keep,
        )
    if limits is not None and expected_revision is not None:
        raise InvalidInputError(
            "limits apply to creating a session, not to an update", session_id=header.id
        )


def check_keep(session_id: str, keep: int | None, stored_count: int) -> None:
    """A write cannot keep more items than are stored.

    Raises:
        InvalidInputError: ``keep`` is more than ``stored_count``.
    """
    if keep is not None and keep > stored_count:
        raise InvalidInputError(
            f"cannot keep {keep} items of session {session_id}: it has {stored_count}",
            session_id=session_id,
            keep=keep,
            stored_count=stored_count,
        )


def limit_exceeded(limits: CreateLimits, header: SessionHeader, total: int, of_user: int) -> None:
    """Raise when creating ``header`` passes a cap, given the live sessions counted.

    Args:
        limits: The caps.
        header: The session to create.
        total: Live sessions in the store now.
        of_user: Live sessions of ``header.user_id`` now (ignored without a user).

    Raises:
        LimitExceededError: A cap is reached already.
    """
    if limits.max_sessions is not None and total >= limits.max_sessions:
        raise LimitExceededError(
            f"cannot create another session: the store holds its limit of "
            f"{limits.max_sessions} (delete or let some expire first)",
            limit="max_sessions",
            max_sessions=limits.max_sessions,
        )
    if (
        limits.max_sessions_per_user is not None
        and header.user_id is not None
        and of_user >= limits.max_sessions_per_user
    ):
        raise LimitExceededError(
            f"cannot create another session for this user: they have their limit of "
            f"{limits.max_sessions_per_user} (delete or let some expire first)",
            limit="max_sessions_per_user",
            max_sessions_per_user=limits.max_sessions_per_user,
        )


def is_live(header: SessionHeader, now: int) -> bool:
    """Whether ``header`` is not expired at ``now`` (epoch ms)."""
    return header.expires_at is None or header.expires_at > now
