"""State modules (after agentscope): registered attributes and nested modules saved as JSON
with a session, loaded back exactly, strictly or not, across restarts (on every store)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from chatruntime import ErrorCode, InvalidInputError, Result, StateModule
from support.lifetime import Lab, open_lab
from support.stores import store_params

pytestmark = pytest.mark.anyio


class Memory(StateModule):
    def __init__(self) -> None:
        super().__init__()
        self.notes: list[str] = []
        self.seen: set[str] = set()
        self.register_state("notes")
        self.register_state("seen", to_json=sorted, from_json=set)


class Profile(StateModule):
    def __init__(self) -> None:
        super().__init__()
        self.name = "anonymous"
        self.since = datetime(2025, 1, 17, 10, 0, tzinfo=UTC)
        self.register_state("name")
        self.register_state("since", to_json=datetime.isoformat, from_json=datetime.fromisoformat)


class Assistant(StateModule):
    def __init__(self) -> None:
        super().__init__()
        self.memory = Memory()  # registered because it is a StateModule
        self.profile = Profile()
        self.turns = 0
        self.scratch = "not saved"  # never registered
        self.register_state("turns")


def filled() -> Assistant:
    assistant = Assistant()
    assistant.memory.notes = ["likes tea"]
    assistant.memory.seen = {"b", "a"}
    assistant.profile.name = "Ada"
    assistant.profile.since = datetime(2024, 5, 1, 8, 30, tzinfo=UTC)
    assistant.turns = 3
    assistant.scratch = "changed"
    return assistant


FILLED_STATE = {
    "memory": {"notes": ["likes tea"], "seen": ["a", "b"]},
    "profile": {"name": "Ada", "since": "2024-05-01T08:30:00+00:00"},
    "turns": 3,
}


def same(a: Assistant, b: Assistant) -> bool:
    return (
        a.memory.notes == b.memory.notes
        and a.memory.seen == b.memory.seen
        and (a.profile.name, a.profile.since, a.turns) == (b.profile.name, b.profile.since, b.turns)
    )


# -- the StateModule class ----------------------------------------------------------------------


def test_state_dict_holds_registered_attributes_and_nested_modules_converted() -> None:
    assert filled().state_dict() == FILLED_STATE


def test_load_state_dict_restores_nested_modules_through_the_converters() -> None:
    loaded = Assistant()
    loaded.load_state_dict(FILLED_STATE)
    assert same(loaded, filled())
    assert loaded.memory.seen == {"a", "b"} and isinstance(loaded.memory.seen, set)
    assert loaded.scratch == "not saved"


def test_state_dict_is_a_copy_and_loading_does_not_share_the_callers_lists() -> None:
    assistant = filled()
    state = assistant.state_dict()
    state["memory"]["notes"].append("mutated")
    assert assistant.memory.notes == ["likes tea"]
    loaded = Assistant()
    loaded.load_state_dict(state)
    state["memory"]["notes"].clear()
    assert loaded.memory.notes == ["likes tea", "mutated"]


def test_a_strict_load_names_every_missing_key_and_changes_nothing() -> None:
    assistant = filled()
    partial = {"memory": {"notes": ["other"]}, "turns": 9}
    with pytest.raises(InvalidInputError) as raised:
        assistant.load_state_dict(partial)
    assert raised.value.message == (
        "the state of Assistant lacks memory.seen, profile: load it with strict=False to keep "
        "their current values"
    )
    assert raised.value.details["missing"] == ["memory.seen", "profile"]
    assert same(assistant, filled())


def test_a_non_strict_load_sets_what_is_there_and_keeps_the_rest() -> None:
    assistant = filled()
    assistant.load_state_dict({"memory": {"notes": ["other"]}, "turns": 9}, strict=False)
    assert (assistant.memory.notes, assistant.memory.seen, assistant.turns) == (
        ["other"],
        {"a", "b"},
        9,
    )
    assert assistant.profile.name == "Ada"


def test_keys_the_module_does_not_register_are_ignored() -> None:
    assistant = Assistant()
    assistant.load_state_dict({**FILLED_STATE, "retired": {"x": 1}})
    assert same(assistant, filled())


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ({"a", "b"}, "a set is not JSON data"),
        ((1, 2), "a tuple is not JSON data"),
        ({1: "x"}, "the key 1 is not a string"),
        (float("inf"), "inf is not a finite number"),
        ([object()], "a object is not JSON data"),
    ],
)
def test_a_value_that_is_not_json_fails_at_register_state(value: Any, problem: str) -> None:
    module = StateModule()
    module.value = value
    with pytest.raises(InvalidInputError) as raised:
        module.register_state("value")
    assert raised.value.message == (
        f"state StateModule.value cannot be stored as JSON: {problem}; register it with "
        "to_json= and from_json="
    )
    assert raised.value.details == {"field": "value"}
    assert module.state_dict() == {}


def test_a_converter_that_does_not_give_json_fails_at_register_state() -> None:
    module = StateModule()
    module.when = datetime(2025, 1, 1, tzinfo=UTC)
    with pytest.raises(InvalidInputError, match="cannot be stored as JSON: a datetime is not"):
        module.register_state("when", to_json=lambda value: value)


def test_register_state_needs_an_existing_plain_attribute() -> None:
    assistant = Assistant()
    with pytest.raises(InvalidInputError, match="Assistant has no attribute 'missing'"):
        assistant.register_state("missing")
    with pytest.raises(InvalidInputError, match=r"Assistant\.memory is a StateModule"):
        assistant.register_state("memory")


def test_a_value_that_became_unstorable_fails_when_the_state_is_taken() -> None:
    assistant = Assistant()
    assistant.turns = {"not", "json"}  # type: ignore[assignment]
    with pytest.raises(InvalidInputError, match=r"state Assistant\.turns cannot be stored"):
        assistant.state_dict()


def test_replacing_a_nested_module_by_a_plain_value_takes_it_out_of_the_state() -> None:
    assistant = Assistant()
    assistant.profile = None  # type: ignore[assignment]
    assert set(assistant.state_dict()) == {"memory", "turns"}
    del assistant.memory
    assert set(assistant.state_dict()) == {"turns"}


def test_a_subclass_that_skips_super_init_is_told_so() -> None:
    class Broken(StateModule):
        def __init__(self) -> None:
            self.inner = Memory()

    with pytest.raises(TypeError, match=r"Broken.__init__ must call super\(\).__init__\(\)"):
        Broken()


# -- with a session, on every store -------------------------------------------------------------


@pytest.fixture(params=store_params())
async def lab(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Lab]:
    async with open_lab(request.param, tmp_path, request) as opened:
        yield opened


def code_of(result: Result[Any]) -> ErrorCode:
    assert result.error is not None, result
    return result.error.code


async def test_saved_state_round_trips_through_the_store(lab: Lab) -> None:
    m = lab.manager
    session = (await m.create_session(lab.agent.id, "Chat")).unwrap()
    before = (await m.get_session(session.id)).unwrap()
    (await m.save_session_state(session.id, assistant=filled(), memory=filled().memory)).unwrap()
    stored = await lab.store.get_session(session.id, last=0)
    assert stored is not None
    assert stored.state == {"assistant": FILLED_STATE, "memory": FILLED_STATE["memory"]}
    assert stored.revision == before.revision + 1

    assistant, memory = Assistant(), Memory()
    loaded = await m.load_session_state(session.id, assistant=assistant, memory=memory)
    assert loaded.unwrap() == ["assistant", "memory"]
    assert same(assistant, filled())
    assert memory.seen == {"a", "b"}


async def test_saving_replaces_the_saved_modules(lab: Lab) -> None:
    m = lab.manager
    session = (await m.create_session(lab.agent.id, "Chat")).unwrap()
    (await m.save_session_state(session.id, assistant=filled(), memory=Memory())).unwrap()
    (await m.save_session_state(session.id, memory=filled().memory)).unwrap()
    assert (await m.get_session(session.id)).unwrap().state == {"memory": FILLED_STATE["memory"]}


async def test_state_survives_a_restart(lab: Lab) -> None:
    session = (await lab.manager.create_session(lab.agent.id, "Chat")).unwrap()
    (await lab.manager.save_session_state(session.id, assistant=filled())).unwrap()
    await lab.manager.close()  # closes the store too; a new manager opens it again

    restarted = lab.open_manager()
    (await restarted.initialize()).unwrap()
    try:
        assistant = Assistant()
        loaded = await restarted.load_session_state(
            session.id, allow_not_exist=False, assistant=assistant
        )
        assert loaded.unwrap() == ["assistant"]
        assert same(assistant, filled())
    finally:
        await restarted.close()


async def test_loading_without_saved_state(lab: Lab) -> None:
    m = lab.manager
    session = (await m.create_session(lab.agent.id, "Chat")).unwrap()
    assistant = filled()
    assert (await m.load_session_state(session.id, assistant=assistant)).unwrap() == []
    assert same(assistant, filled())  # left as it was
    refused = await m.load_session_state(session.id, allow_not_exist=False, assistant=assistant)
    assert refused.error is not None
    assert (refused.error.code, refused.error.message) == (
        ErrorCode.STATE_NOT_FOUND,
        f"session {session.id} has no saved state for assistant; save it with "
        "save_session_state first",
    )
    (await m.save_session_state(session.id, memory=Memory())).unwrap()
    partly = await m.load_session_state(
        session.id, allow_not_exist=False, memory=Memory(), assistant=Assistant()
    )
    assert code_of(partly) is ErrorCode.STATE_NOT_FOUND


async def test_a_load_missing_keys_names_them_and_loads_no_module(lab: Lab) -> None:
    m = lab.manager
    session = (await m.create_session(lab.agent.id, "Chat")).unwrap()
    (await m.save_session_state(session.id, memory=filled().memory, assistant=Memory())).unwrap()
    memory, assistant = Memory(), Assistant()
    result = await m.load_session_state(session.id, memory=memory, assistant=assistant)
    assert result.error is not None
    assert result.error.code is ErrorCode.VALIDATION_ERROR
    assert result.error.message == (
        f"the state saved with session {session.id} lacks assistant.memory, "
        "assistant.profile, assistant.turns; nothing was loaded"
    )
    assert result.error.details["missing"] == [
        "assistant.memory",
        "assistant.profile",
        "assistant.turns",
    ]
    assert memory.notes == []  # the good one was not loaded either


async def test_saving_bad_modules_is_a_validation_error_and_writes_nothing(lab: Lab) -> None:
    m = lab.manager
    session = (await m.create_session(lab.agent.id, "Chat")).unwrap()
    broken = Assistant()
    broken.turns = float("nan")  # type: ignore[assignment]
    for result in (
        await m.save_session_state(session.id, assistant=broken),
        await m.save_session_state(session.id, assistant="not a module"),  # type: ignore[arg-type]
        await m.save_session_state(session.id),
    ):
        assert code_of(result) is ErrorCode.VALIDATION_ERROR
    stored = await lab.store.get_session(session.id, last=0)
    assert stored is not None and (stored.revision, stored.state) == (session.revision, {})


async def test_another_users_state_is_out_of_reach(lab: Lab) -> None:
    session = (await lab.manager.create_session(lab.agent.id, "Chat", user_id="alice")).unwrap()
    (await lab.manager.save_session_state(session.id, "alice", memory=filled().memory)).unwrap()
    bob = lab.manager.for_user("bob")
    memory = Memory()
    for result in (
        await bob.load_session_state(session.id, memory=memory),
        await bob.save_session_state(session.id, memory=Memory()),
    ):
        assert result.error is not None
        assert (result.error.code, result.error.message) == (
            ErrorCode.SESSION_NOT_FOUND,
            f"no session has id {session.id}",
        )
    assert memory.notes == []
    alice = lab.manager.for_user("alice")
    assert (await alice.load_session_state(session.id, memory=memory)).unwrap() == ["memory"]
    assert memory.notes == ["likes tea"]


async def test_saved_state_is_read_and_replaced_as_json_data(lab: Lab) -> None:
    m = lab.manager
    session = (await m.create_session(lab.agent.id, "Chat")).unwrap()
    assert (await m.get_session_state(session.id)).unwrap() == {}
    state: dict[str, Any] = {"memory": {"notes": ["likes tea"], "seen": ["a"]}}
    (await m.replace_session_state(session.id, state)).unwrap()
    state["memory"]["notes"].append("changed after saving")
    assert (await m.get_session_state(session.id)).unwrap() == {
        "memory": {"notes": ["likes tea"], "seen": ["a"]}
    }
    memory = Memory()
    assert (await m.load_session_state(session.id, memory=memory)).unwrap() == ["memory"]
    assert (memory.notes, memory.seen) == (["likes tea"], {"a"})
    (await m.replace_session_state(session.id, {})).unwrap()
    assert (await m.get_session_state(session.id)).unwrap() == {}
    stored = await lab.store.get_session(session.id, last=0)
    assert stored is not None and stored.state == {} and stored.revision == 2


@pytest.mark.parametrize(
    ("state", "message"),
    [
        (["memory"], "state must map module names to JSON objects, e.g. {'memory': {'notes': []}}"),
        (
            {"memory": 3},
            "state must map module names to JSON objects, e.g. {'memory': {'notes': []}}",
        ),
        ({"": {}}, "state must map module names to JSON objects, e.g. {'memory': {'notes': []}}"),
    ],
)
async def test_replacing_with_what_is_not_state_is_refused_and_nothing_changes(
    lab: Lab, state: Any, message: str
) -> None:
    m = lab.manager
    session = (await m.create_session(lab.agent.id, "Chat")).unwrap()
    (await m.replace_session_state(session.id, {"kept": {"a": 1}})).unwrap()
    result = await m.replace_session_state(session.id, state)
    assert result.error is not None
    assert (result.error.code, result.error.message) == (ErrorCode.VALIDATION_ERROR, message)
    assert (await m.get_session_state(session.id)).unwrap() == {"kept": {"a": 1}}
