"""For operators and clients: liveness, readiness, metrics, and who a key belongs to."""

import anyio
from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse

from ..models import Err, ErrorCode, ErrorInfo, Result, guard
from ._deps import Caller, Context
from ._errors import error_response
from ._openapi import ERRORS
from ._schemas import Health, Identity

router = APIRouter(tags=["operations"])

READY_TIMEOUT = 5.0
"""Seconds ``/readyz`` waits for the store before answering 503."""


@router.get("/healthz")
async def healthz() -> Health:
    """The process is up and answering (it says nothing of the store)."""
    return Health(status="ok")


@router.get(
    "/readyz",
    responses={503: {"description": "The store cannot be reached (an `ErrorInfo`)."}},
)
async def readyz(context: Context) -> Response:
    """The store answers: ready for traffic."""
    result: Result[int]
    try:
        with anyio.fail_after(READY_TIMEOUT):
            result = await guard(context.manager.store.count_sessions)
    except TimeoutError:
        result = Err.of(
            ErrorCode.STORAGE_ERROR, f"the store did not answer within {READY_TIMEOUT:g}s"
        )
    if result.success:
        return JSONResponse(Health(status="ready").model_dump())
    error = result.error
    if error.code is not ErrorCode.STORAGE_ERROR:
        error = ErrorInfo(
            code=ErrorCode.STORAGE_ERROR,
            message=f"the store is not ready: {error.message}",
            details={"cause": error.code.value},
        )
    context.metrics.error(error.code)
    return error_response(error)


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text format."}},
)
async def metrics(context: Context) -> Response:
    """Prometheus metrics of this process."""
    return Response(context.metrics.render(), media_type=context.metrics.content_type)


@router.get("/me", responses=ERRORS)
async def me(key: Caller) -> Identity:
    """The user (and whether an admin) the presented key belongs to."""
    return Identity(user_id=key.user_id, admin=key.admin)
