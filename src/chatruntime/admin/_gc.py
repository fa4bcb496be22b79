"""``gc``: remove expired sessions, and what a store can tidy on request."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..models import ChatRuntimeError, now_ms
from ..stores import SessionStore
from ._common import Problem, ProgressCallback, no_progress

BATCH = 500
"""Expired sessions asked for at a time."""


@dataclass
class GcReport:
    """What a garbage collection removed.

    Attributes:
        expired_deleted: Expired sessions deleted (with their history and checkpoints).
        journals_folded: Journals folded into their session's snapshot; ``None`` when the
            store offers no way to fold on request (or it failed: see ``problems``).
        leases_dropped: Stale lease records removed; ``None`` when the store has none to drop
            (its leases end by themselves) or offers no way to (or it failed: see
            ``problems``).
        notes: What was not done and why.
        problems: Sessions that could not be deleted; folding or dropping that failed.
    """

    expired_deleted: int = 0
    journals_folded: int | None = None
    leases_dropped: int | None = None
    notes: list[str] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Everything due was removed."""
        return not self.problems


async def collect_garbage(
    store: SessionStore,
    *,
    now: int | None = None,
    progress: ProgressCallback = no_progress,
) -> GcReport:
    """Delete the sessions expired at ``now``, then fold journals and drop stale leases where
    the store offers that.

    Each expired session is deleted under its lease, after reading its expiry again: one
    whose expiry was moved meanwhile is left alone. The expired ones are found from the
    store's expiry index, a batch at a time.

    Args:
        store: An initialized store.
        now: The time (epoch ms) expiry is judged at (default: now).
        progress: Called with the sessions deleted so far (the total is not known).
    """
    report = GcReport()
    moment = now_ms() if now is None else now
    if not callable(getattr(store, "expired_sessions", None)):
        report.notes.append("expired sessions: this store cannot list them")
    else:
        await _delete_expired(store, moment, report, progress)
    report.journals_folded = await _optional(
        store, "fold_journals", report, "journals", "{store} keeps none"
    )
    report.leases_dropped = await _optional(
        store,
        "drop_stale_leases",
        report,
        "stale leases",
        "{store} drops none on request (a lease not renewed ends by itself)",
        moment,
    )
    return report


async def _delete_expired(
    store: SessionStore, moment: int, report: GcReport, progress: ProgressCallback
) -> None:
    passed_over: set[str] = set()
    done = 0
    while True:
        found = await store.expired_sessions(moment, limit=BATCH + len(passed_over))
        due = [session_id for session_id in found if session_id not in passed_over]
        if not due:
            return
        for session_id in due:
            try:
                if await _delete_if_expired(store, session_id, moment):
                    report.expired_deleted += 1
                else:
                    passed_over.add(session_id)
            except ChatRuntimeError as error:
                passed_over.add(session_id)
                report.problems.append(Problem(f"session {session_id}", f"not deleted: {error}"))
            done += 1
            progress(done, 0)


async def _delete_if_expired(store: SessionStore, session_id: str, moment: int) -> bool:
    async with store.lease(session_id):
        current = await store.get_session(session_id, last=0)
        if current is None or current.expires_at is None or current.expires_at > moment:
            return False
        return await store.delete_session(session_id)


async def _optional(
    store: SessionStore, name: str, report: GcReport, what: str, note: str, *args: Any
) -> int | None:
    """Call the store's ``name(*args)`` if it has one (not part of the protocol); else add
    ``what: note`` to the report's notes. A failure is one of the report's problems, so the
    rest of the report still reaches the operator."""
    action = getattr(store, name, None)
    if not callable(action):
        report.notes.append(f"{what}: {note.format(store=type(store).__name__)}")
        return None
    try:
        return int(await action(*args))
    except ChatRuntimeError as error:
        report.problems.append(Problem(what, f"not done: {error}"))
        return None
