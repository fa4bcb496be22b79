"""What the OpenAPI schema says about failures and streamed turns."""

from collections.abc import Callable
from typing import Any

from ..models import ErrorInfo
from ..session import STREAM_EVENT_ADAPTER

ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"description": "No API key, or one the service does not know (empty body)."},
    422: {"model": ErrorInfo, "description": "`VALIDATION_ERROR`: a bad argument."},
    "4XX": {"model": ErrorInfo, "description": "The call failed; `code` says why."},
    "5XX": {"model": ErrorInfo, "description": "The model, the store or the service failed."},
}
"""The failure answers every authenticated route documents."""

ADMIN_ERRORS: dict[int | str, dict[str, Any]] = {
    403: {"description": "The key is not an admin's (empty body)."},
}

STREAM_EVENT_SCHEMA = "StreamEvent"
EVENT_STREAM: dict[int | str, dict[str, Any]] = {
    200: {
        "description": (
            "Server-sent events: `text_delta`, `tool_call`, `tool_result`, `handoff` and "
            "`agent_changed`, then exactly one `done` (the turn is stored) or `error` "
            "(nothing is stored). Each event's `event` is its type and its `data` the event "
            "as JSON. A failure known before the first event is answered as JSON instead, "
            "with the status of its code."
        ),
        "content": {
            "text/event-stream": {"schema": {"$ref": f"#/components/schemas/{STREAM_EVENT_SCHEMA}"}}
        },
    }
}


def with_stream_events(
    build: Callable[[], dict[str, Any]],
) -> Callable[[], dict[str, Any]]:
    """Wrap an app's ``openapi()`` so its components hold the stream event models."""

    def openapi() -> dict[str, Any]:
        schema = build()
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        if STREAM_EVENT_SCHEMA not in components:
            events = STREAM_EVENT_ADAPTER.json_schema(
                by_alias=True, ref_template="#/components/schemas/{model}"
            )
            for name, definition in events.pop("$defs", {}).items():
                components.setdefault(name, definition)
            components[STREAM_EVENT_SCHEMA] = events
        for item in schema.get("paths", {}).values():
            for operation in item.values():
                content = operation.get("responses", {}).get("200", {}).get("content", {})
                if "text/event-stream" in content:
                    # FastAPI describes the body as a string; it is a stream of these events.
                    content["text/event-stream"]["schema"] = {
                        "$ref": f"#/components/schemas/{STREAM_EVENT_SCHEMA}"
                    }
        return schema

    return openapi
