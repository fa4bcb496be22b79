"""What a person may send in a turn: text, or a list of input parts (text, images, files).

Parts follow the Responses API's input content: ``{"type": "input_text", "text": ...}``,
``{"type": "input_image", "image_url": ... | "file_id": ..., "detail": ...}`` and
``{"type": "input_file", "file_data": ..., "filename": ... | "file_id": ... | "file_url": ...}``.
They are checked here, stored as given and replayed as given.
"""

from __future__ import annotations

import json
from typing import Any, Final

from ..models import InvalidInputError, check_text
from ..models._common import unicode_problem

UserContent = str | list[dict[str, Any]]
"""A turn's input: plain text, or a list of input parts."""

CONTENT_MAX_BYTES: Final = 20 * 1024 * 1024
"""The largest input of one turn, as JSON (images and files as base64 included)."""

_PART_KEYS: Final[dict[str, frozenset[str]]] = {
    "input_text": frozenset({"type", "text"}),
    "input_image": frozenset({"type", "image_url", "file_id", "detail"}),
    "input_file": frozenset({"type", "file_data", "file_id", "file_url", "filename"}),
}
_IMAGE_DETAILS: Final = frozenset({"low", "high", "auto"})


def check_content(content: object) -> str:
    """Validate a turn's content; return its text (the text parts joined), which windows
    measure.

    Raises:
        InvalidInputError: The content is not text or a list of valid parts (the message
            names the part and what is wrong with it).
    """
    if isinstance(content, str):
        if not content.strip():
            raise _bad("content must not be empty or only whitespace")
        check_text(content, "content")
        return content
    if not isinstance(content, list):
        raise _bad(
            f"content must be a string or a list of input parts, got {type(content).__name__}"
        )
    if not content:
        raise _bad("content must not be an empty list")
    texts: list[str] = []
    for index, part in enumerate(content):
        texts.append(_check_part(index, part))
    try:
        size = len(json.dumps(content, ensure_ascii=False).encode("utf-8"))
    except (TypeError, ValueError) as error:
        raise _bad(f"content must be JSON data: {error}") from None
    if size > CONTENT_MAX_BYTES:
        raise _bad(
            f"content is {size:,} bytes as JSON; the limit is {CONTENT_MAX_BYTES:,}",
            size=size,
            limit=CONTENT_MAX_BYTES,
        )
    text = "".join(texts)
    if not text.strip() and all(part["type"] == "input_text" for part in content):
        raise _bad("content must not be empty or only whitespace")
    return text


def _check_part(index: int, part: object) -> str:
    where = f"content[{index}]"
    if not isinstance(part, dict):
        raise _bad(f"{where} must be a dict with a 'type', got {type(part).__name__}")
    kind = part.get("type")
    allowed = _PART_KEYS.get(kind) if isinstance(kind, str) else None
    if allowed is None:
        raise _bad(f"{where} has type {kind!r}; parts are input_text, input_image or input_file")
    extra = sorted(set(part) - allowed)
    if extra:
        raise _bad(f"{where} ({kind}) has unknown keys: {', '.join(extra)}")
    for key, value in part.items():
        if not isinstance(value, str):
            raise _bad(f"{where}.{key} must be a string, got {type(value).__name__}")
        if (problem := unicode_problem(value)) is not None:
            raise _bad(f"{where}.{key} {problem}")
    if kind == "input_text":
        if "text" not in part:
            raise _bad(f"{where} (input_text) needs 'text'")
        return str(part["text"])
    if kind == "input_image":
        sources = [key for key in ("image_url", "file_id") if key in part]
        if len(sources) != 1:
            raise _bad(f"{where} (input_image) needs exactly one of image_url or file_id")
        url = part.get("image_url")
        if url is not None and not url.startswith(("https://", "http://", "data:image/")):
            raise _bad(f"{where}.image_url must be an http(s) URL or a data:image/...;base64 URL")
        if "detail" in part and part["detail"] not in _IMAGE_DETAILS:
            raise _bad(f"{where}.detail must be low, high or auto")
        return ""
    sources = [key for key in ("file_data", "file_id", "file_url") if key in part]
    if len(sources) != 1:
        raise _bad(f"{where} (input_file) needs exactly one of file_data, file_id or file_url")
    if "file_data" in part and "filename" not in part:
        raise _bad(f"{where} (input_file) with file_data needs a filename")
    return ""


def _bad(message: str, **details: Any) -> InvalidInputError:
    return InvalidInputError(message, field="content", **details)
