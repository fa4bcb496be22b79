"""One table maps every error code to one HTTP status, and every failure answers its
``ErrorInfo`` with that status."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from chatruntime import ChatSession, ErrorCode, MemoryStore, UsageError
from chatruntime.models import ChatRuntimeError, exception_for
from chatruntime.service import HTTP_STATUS, http_status
from conftest import Service, error_body, running_service

SOME_SESSION = "00000000-0000-4000-8000-000000000000"
EXPECTED_STATUS = {
    ErrorCode.VALIDATION_ERROR: 422,
    ErrorCode.SESSION_NOT_FOUND: 404,
    ErrorCode.AGENT_NOT_FOUND: 404,
    ErrorCode.SESSION_NOT_ACTIVE: 409,
    ErrorCode.CONFLICT: 409,
    ErrorCode.SESSION_EXPIRED: 410,
    ErrorCode.CHECKPOINT_NOT_FOUND: 404,
    ErrorCode.STATE_NOT_FOUND: 404,
    ErrorCode.LIMIT_EXCEEDED: 429,
    ErrorCode.BUSY: 429,
    ErrorCode.MODEL_ERROR: 502,
    ErrorCode.TOOL_ERROR: 502,
    ErrorCode.MAX_TURNS_EXCEEDED: 502,
    ErrorCode.GUARDRAIL_TRIPPED: 422,
    ErrorCode.TIMEOUT: 504,
    ErrorCode.CANCELLED: 503,
    ErrorCode.STORAGE_ERROR: 503,
    ErrorCode.OUTCOME_UNKNOWN: 503,
    ErrorCode.CORRUPT_DATA: 500,
    ErrorCode.UNSUPPORTED_VERSION: 500,
    ErrorCode.INTERNAL_ERROR: 500,
}


class FaultyStore(MemoryStore):
    """A memory store whose reads of chosen session ids raise chosen exceptions."""

    def __init__(self) -> None:
        super().__init__()
        self.faults: dict[str, Exception] = {}

    async def get_session(self, session_id: str, *, last: int | None = None) -> ChatSession | None:
        if (fault := self.faults.get(session_id)) is not None:
            raise fault
        return await super().get_session(session_id, last=last)

    async def count_sessions(
        self, *, user_id: str | None = None, live_at: int | None = None
    ) -> int:
        if (fault := self.faults.get("count")) is not None:
            raise fault
        return await super().count_sessions(user_id=user_id, live_at=live_at)


@pytest.fixture(scope="module")
def faulty(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Service, FaultyStore]]:
    store = FaultyStore()
    with running_service(tmp_path_factory.mktemp("faulty"), store=lambda: store) as service:
        yield service, store


def test_every_error_code_has_exactly_the_expected_status() -> None:
    assert dict(HTTP_STATUS) == EXPECTED_STATUS
    assert set(HTTP_STATUS) == set(ErrorCode)
    assert all(http_status(code) == status for code, status in EXPECTED_STATUS.items())


def test_the_table_cannot_be_changed() -> None:
    with pytest.raises(TypeError):
        HTTP_STATUS[ErrorCode.BUSY] = 200  # type: ignore[index]


@pytest.mark.parametrize("code", list(ErrorCode), ids=lambda code: code.value)
def test_a_failure_with_each_code_answers_its_status_and_error_info(
    faulty: tuple[Service, FaultyStore], code: ErrorCode
) -> None:
    service, store = faulty
    session_id = f"00000000-0000-4000-8000-{list(ErrorCode).index(code):012d}"
    store.faults[session_id] = exception_for(code)(f"injected {code.value}", where="test")

    response = service.client().get(f"/sessions/{session_id}")

    assert response.status_code == EXPECTED_STATUS[code]
    assert response.headers["content-type"] == "application/json"
    assert error_body(response) == {
        "code": code.value,
        "message": f"injected {code.value}",
        "details": {"where": "test"},
    }
    assert service.metric("chatruntime_errors_total", code=code.value) >= 1


def test_an_unexpected_exception_in_the_store_answers_500_internal_error(
    faulty: tuple[Service, FaultyStore],
) -> None:
    service, store = faulty
    session_id = "00000000-0000-4000-8000-999999999999"
    store.faults[session_id] = RuntimeError("disk on fire")

    response = service.client().get(f"/sessions/{session_id}")

    assert response.status_code == 500
    assert error_body(response) == {
        "code": "INTERNAL_ERROR",
        "message": "internal error: RuntimeError: disk on fire",
        "details": {"exception": "RuntimeError"},
    }


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/sessions", None),
        ("POST", "/sessions/00000000-0000-4000-8000-000000000000/messages", {"content": "Hi"}),
        (
            "POST",
            "/sessions/00000000-0000-4000-8000-000000000000/messages:stream",
            {"content": "Hi"},
        ),
    ],
)
def test_an_exception_escaping_the_service_answers_500_with_the_request_id(
    start_service: Callable[..., Service], method: str, path: str, body: object
) -> None:
    service = start_service()
    service.call(service.manager.close)

    response = service.client().request(method, path, json=body, headers={"X-Request-ID": "req-42"})

    assert response.status_code == 500
    assert error_body(response) == {
        "code": "INTERNAL_ERROR",
        "message": "internal error (UsageError); the log has its details",
        "details": {"request_id": "req-42"},
    }
    assert response.headers["x-request-id"] == "req-42"
    assert issubclass(UsageError, RuntimeError)
    assert not issubclass(UsageError, ChatRuntimeError)


def test_readyz_answers_503_storage_error_when_the_store_fails(
    faulty: tuple[Service, FaultyStore],
) -> None:
    service, store = faulty
    store.faults["count"] = exception_for(ErrorCode.STORAGE_ERROR)("connection refused")
    try:
        response = service.client(None).get("/readyz")
    finally:
        del store.faults["count"]

    assert response.status_code == 503
    assert error_body(response) == {
        "code": "STORAGE_ERROR",
        "message": "connection refused",
        "details": {},
    }
    assert service.client(None).get("/readyz").status_code == 200
