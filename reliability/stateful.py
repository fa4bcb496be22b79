"""Random sequences of API calls against a simple reference model (hypothesis' stateful
testing): create, send, update, delete, get and list, on one store, compared after every
step with what a dictionary of sessions says the answer must be.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from anyio.from_thread import BlockingPortal, start_blocking_portal
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    invariant,
    rule,
    run_state_machine_as_test,
)

from chatruntime import ErrorCode, SessionManager

from ._report import Row
from ._stores import StoreSpec
from ._workload import AGENT_ID, RUN_CONFIG, agent_manager

USERS = [None, "alice", "bob"]
UNKNOWN_ID = "00000000-0000-4000-8000-000000000000"


@dataclass
class Expected:
    """What the reference model knows of one session."""

    name: str
    user_id: str | None
    status: str = "active"
    metadata: dict[str, Any] = field(default_factory=dict)
    messages: int = 0


def machine(
    new_spec: Callable[[], StoreSpec], portal: BlockingPortal, row: Row
) -> type[RuleBasedStateMachine]:
    """A state machine class over a fresh, empty store (``new_spec()``) for each run."""

    class Sessions(RuleBasedStateMachine):
        ids = Bundle("ids")

        def __init__(self) -> None:
            super().__init__()
            store = new_spec().build()
            self.manager = SessionManager(store, agent_manager(store), run_config=RUN_CONFIG)
            portal.call(self.manager.initialize).unwrap()
            self.model: dict[str, Expected] = {}

        def call(self, method: str, /, *args: Any, **kwargs: Any) -> Any:
            row.tried += 1
            return portal.call(lambda: getattr(self.manager, method)(*args, **kwargs))

        def expect(self, what: str, result: Any, code: ErrorCode | None) -> None:
            got = None if result.success else result.error.code
            if got != code:
                row.failed += 1
                detail = "" if result.success else f": {result.error.message[:100]}"
                row.note(f"{what}: expected {code or 'success'}, got {got or 'success'}{detail}")
                raise AssertionError(f"{what}: expected {code}, got {got}")

        @rule(
            target=ids,
            name=st.sampled_from(["A", "B chat", "Ünïcode"]),
            user=st.sampled_from(USERS),
        )
        def create(self, name: str, user: str | None) -> str:
            result = self.call("create_session", AGENT_ID, name, user_id=user)
            self.expect("create_session", result, None)
            self.model[result.data.id] = Expected(name, user)
            return str(result.data.id)

        @rule(session_id=ids, tool=st.booleans())
        def send(self, session_id: str, tool: bool) -> None:
            content = '/tool record {"tag": "t", "note": "n"}' if tool else "Hello there"
            result = self.call("send_message", session_id, content)
            expected = self.model.get(session_id)
            if expected is None:
                self.expect(
                    "send_message to a deleted session", result, ErrorCode.SESSION_NOT_FOUND
                )
            elif expected.status != "active":
                self.expect(
                    "send_message to an inactive session", result, ErrorCode.SESSION_NOT_ACTIVE
                )
            else:
                self.expect("send_message", result, None)
                expected.messages += 2
                row.acknowledged += 1

        @rule(
            session_id=ids,
            name=st.one_of(st.none(), st.sampled_from(["Renamed", "Z"])),
            status=st.one_of(st.none(), st.sampled_from(["active", "paused", "completed"])),
            metadata=st.one_of(st.none(), st.dictionaries(st.sampled_from("abc"), st.integers())),
        )
        def update(
            self, session_id: str, name: str | None, status: str | None, metadata: Any
        ) -> None:
            changes: dict[str, Any] = {}
            if name is not None:
                changes["name"] = name
            if status is not None:
                changes["status"] = status
            if metadata is not None:
                changes["metadata"] = metadata
            result = self.call("update_session", session_id, **changes)
            expected = self.model.get(session_id)
            if expected is None:
                self.expect(
                    "update_session of a deleted session", result, ErrorCode.SESSION_NOT_FOUND
                )
                return
            self.expect("update_session", result, None)
            for key, value in changes.items():
                setattr(expected, key, value)

        @rule(session_id=consumes(ids))
        def delete(self, session_id: str) -> None:
            result = self.call("delete_session", session_id)
            if self.model.pop(session_id, None) is None:
                self.expect("delete_session twice", result, ErrorCode.SESSION_NOT_FOUND)
            else:
                self.expect("delete_session", result, None)

        @rule(session_id=ids, user=st.sampled_from(USERS))
        def get(self, session_id: str, user: str | None) -> None:
            result = self.call("get_session", session_id, user_id=user)
            expected = self.model.get(session_id)
            if expected is None or (user is not None and expected.user_id != user):
                self.expect(
                    "get_session of a deleted or foreign session",
                    result,
                    ErrorCode.SESSION_NOT_FOUND,
                )
                return
            self.expect("get_session", result, None)
            session = result.data
            seen = (
                session.name,
                session.user_id,
                session.status,
                session.metadata,
                len(session.messages()),
            )
            wanted = (
                expected.name,
                expected.user_id,
                expected.status,
                expected.metadata,
                expected.messages,
            )
            if seen != wanted:
                row.failed += 1
                row.note(f"get_session read {seen}, the model says {wanted}")
                raise AssertionError(f"{seen} != {wanted}")

        @rule()
        def get_unknown(self) -> None:
            result = self.call("get_session", UNKNOWN_ID)
            self.expect("get_session of an unknown id", result, ErrorCode.SESSION_NOT_FOUND)

        @invariant()
        def listing_matches(self) -> None:
            for user in USERS:
                result = self.call("list_sessions", user_id=user, limit=1000)
                self.expect("list_sessions", result, None)
                listed = {header.id: header for header in result.data.sessions}
                wanted = {
                    sid
                    for sid, expected in self.model.items()
                    if user is None or expected.user_id == user
                }
                if set(listed) != wanted:
                    row.failed += 1
                    row.note(f"list_sessions(user_id={user!r}) differs from the model")
                    raise AssertionError("listing differs")
                stale = [
                    sid
                    for sid, header in listed.items()
                    if (header.name, header.status)
                    != (self.model[sid].name, self.model[sid].status)
                ]
                if stale:
                    row.failed += 1
                    row.note("list_sessions shows a stale name or status")
                    raise AssertionError("stale listing")

        def teardown(self) -> None:
            portal.call(self.manager.close)

    return Sessions


def run(new_spec: Callable[[], StoreSpec], kind: str, *, runs: int, steps: int) -> Row:
    """``runs`` random sequences of up to ``steps`` calls, each on a fresh store."""
    row = Row("stateful model", kind, unit="calls")
    started = time.perf_counter()
    with start_blocking_portal(backend="asyncio") as portal:
        Sessions = machine(new_spec, portal, row)
        chosen = settings(
            max_examples=runs,
            stateful_step_count=steps,
            database=None,
            deadline=None,
            phases=[Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        try:
            run_state_machine_as_test(Sessions, settings=chosen)
        except AssertionError:
            pass  # counted and described in the row already
        except Exception as error:
            row.failed += 1
            row.note(f"the state machine stopped: {type(error).__name__}: {str(error)[:200]}")
    row.seconds = time.perf_counter() - started
    row.note(f"{runs} random sequences of up to {steps} calls, each on a fresh store")
    return row
