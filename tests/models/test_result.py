"""``Result`` and the error tree: one code, one exception class, and back."""

from __future__ import annotations

import pytest

import chatruntime
from chatruntime.models import (
    BusyError,
    ChatRuntimeError,
    Err,
    ErrorCode,
    ErrorInfo,
    Ok,
    Result,
    SessionNotFoundError,
    exception_for,
    guard,
)

pytestmark = pytest.mark.anyio


def test_every_error_code_has_exactly_one_exception_class() -> None:
    classes = {code: exception_for(code) for code in ErrorCode}
    assert len(set(classes.values())) == len(ErrorCode)
    assert all(cls.code is code for code, cls in classes.items())
    assert all(issubclass(cls, ChatRuntimeError) for cls in classes.values())


def test_ok_result_unwraps_to_its_data() -> None:
    result: Result[int] = Ok(42)
    assert (result.success, result.data, result.error) == (True, 42, None)
    assert result.unwrap() == 42


def test_failed_result_unwrap_raises_the_matching_exception() -> None:
    result: Result[int] = Err.of(ErrorCode.SESSION_NOT_FOUND, "no session", session_id="x")
    with pytest.raises(SessionNotFoundError) as caught:
        result.unwrap()
    assert (caught.value.message, caught.value.details) == ("no session", {"session_id": "x"})


def test_error_info_round_trips_through_json() -> None:
    info = ErrorInfo(code=ErrorCode.BUSY, message="busy", details={"timeout": 1.5})
    again = ErrorInfo.model_validate_json(info.model_dump_json())
    assert again == info
    assert isinstance(again.to_exception(), BusyError)


async def test_guard_turns_expected_errors_into_results() -> None:
    async def fails() -> int:
        raise BusyError("held elsewhere", session_id="s")

    result = await guard(fails)
    assert result.error == ErrorInfo(
        code=ErrorCode.BUSY, message="held elsewhere", details={"session_id": "s"}
    )


async def test_guard_answers_bugs_with_internal_error(caplog: pytest.LogCaptureFixture) -> None:
    async def bug() -> int:
        raise KeyError("oops")

    result = await guard(bug)
    assert result.error is not None
    assert (result.error.code, result.error.message) == (
        ErrorCode.INTERNAL_ERROR,
        "internal error: KeyError: 'oops'",
    )
    assert "unexpected error in chatruntime" in caplog.text


def test_public_objects_present_themselves_as_chatruntime() -> None:
    assert chatruntime.Ok.__module__ == "chatruntime"
    assert chatruntime.Err.__module__ == "chatruntime"
    assert chatruntime.SessionManager.__module__ == "chatruntime"


def test_a_result_is_ok_or_err_and_checking_success_tells_which() -> None:
    ok: Result[int] = Ok(1)
    err: Result[int] = Err.of(ErrorCode.BUSY, "busy")
    assert (ok.success, ok.data, ok.error) == (True, 1, None)
    assert (err.success, err.data, err.error) == (
        False,
        None,
        ErrorInfo(code=ErrorCode.BUSY, message="busy"),
    )
    assert isinstance(ok, Ok) and isinstance(err, Err)


def test_a_result_type_can_be_parametrised_at_run_time() -> None:
    from pydantic import TypeAdapter

    adapter = TypeAdapter(Result[int])
    assert adapter.validate_python(Ok(3)) == Ok(3)
    assert adapter.dump_python(Err.of(ErrorCode.BUSY, "busy"), mode="json") == {
        "error": {"code": "BUSY", "message": "busy", "details": {}},
        "success": False,
        "data": None,
    }
