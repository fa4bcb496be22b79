"""Hypothesis strategies for hostile arguments to the public manager API.

Values are type-correct for the parameter they go to (a string where a string is expected):
what is hostile is their content — path tricks, NUL, lone surrogates, sizes, depths, values
JSON cannot hold. Ids may also name one of the sessions the trial made (``RealId``), or a
near miss of one (``RealVariant``), so calls reach the stores and not only the validation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from hypothesis import strategies as st

MEGABYTES_10 = 10 * 1024 * 1024
BIG_TEXT = "x" * MEGABYTES_10
"""Ten megabytes of text (built once: every case that draws it shares it)."""


@dataclass(frozen=True)
class RealId:
    """One of the trial's own sessions (by index, modulo how many there are)."""

    index: int


@dataclass(frozen=True)
class RealVariant:
    """A near miss of one of the trial's sessions: ``how`` changes its id."""

    index: int
    how: str


@dataclass(frozen=True)
class SandboxPath:
    """An absolute path inside the folder that holds the store's root (outside the root)."""

    name: str


@dataclass(frozen=True)
class Deep:
    """Metadata nested ``depth`` levels deep (dicts or lists), built fresh for each call."""

    depth: int
    kind: str = "dict"

    def build(self) -> dict[str, Any]:
        value: Any = "leaf"
        for _ in range(self.depth - 1):
            value = {"k": value} if self.kind == "dict" else [value]
        return {"k": value}


@dataclass(frozen=True)
class SelfReferential:
    """A metadata dict that contains itself."""

    def build(self) -> dict[str, Any]:
        value: dict[str, Any] = {}
        value["self"] = value
        return value


VARIANTS = ("upper", "nul", "dotdot", "slash", "space", "truncated", "doubled", "surrogate")


def variant(session_id: str, how: str) -> str:
    """``session_id`` changed as ``how`` says."""
    return {
        "upper": session_id.upper(),
        "nul": session_id + "\x00",
        "dotdot": "../" + session_id,
        "slash": session_id + "/",
        "space": f" {session_id}",
        "truncated": session_id[:-1],
        "doubled": session_id + session_id,
        "surrogate": session_id[:-1] + "\ud800",
    }[how]


HOSTILE_STRINGS = [
    "",
    " ",
    "\t\n",
    ".",
    "..",
    "../..",
    "../../../escape",
    "..\\..\\escape",
    "/",
    "/etc/passwd",
    "%2e%2e%2f%2e%2e%2fescape",
    "\x00",
    "a\x00b",
    "\ud800",
    "a\udfffb",
    "\u202eevil",
    "x" * 101,
    "x" * 300,
    "y" * 5000,
    "*",
    "sessions",
    "index.sqlite3",
    "CON",
    "~root",
    "😀" * 101,
]


@dataclass(frozen=True)
class Big:
    """Ten megabytes of text — or, in most cases, a few kilobytes: hypothesis draws this
    placeholder often, and the trial lets only a share of the cases (its own seeded choice)
    pay for the real size. ``in_metadata`` wraps it as ``{"big": text}``."""

    in_metadata: bool = False

    def build(self, full: bool) -> Any:
        text = BIG_TEXT if full else MEDIUM_TEXT
        return {"big": text} if self.in_metadata else text


MEDIUM_TEXT = "m" * 5000


def rare(normal: st.SearchStrategy[Any], in_metadata: bool = False) -> st.SearchStrategy[Any]:
    """``normal``, or now and then :class:`Big` text."""
    return st.one_of(normal, st.just(Big(in_metadata)))


def ids() -> st.SearchStrategy[Any]:
    return st.one_of(
        st.builds(RealId, st.integers(0, 10)),
        st.builds(RealVariant, st.integers(0, 10), st.sampled_from(VARIANTS)),
        st.sampled_from(HOSTILE_STRINGS),
        st.builds(SandboxPath, st.sampled_from(["escape", "sessions", "x.json"])),
        st.text(max_size=50),
        st.uuids().map(str),
    )


def names() -> st.SearchStrategy[Any]:
    return rare(
        st.one_of(
            st.text(max_size=110),
            st.sampled_from(HOSTILE_STRINGS),
            st.sampled_from(["Chat", "x" * 100, "😀" * 100, "name\x00", "a\ud800"]),
        ),
    )


def user_ids() -> st.SearchStrategy[str | None]:
    return st.one_of(
        st.none(),
        st.sampled_from(["alice", "bob", "user_123", "ALICE", "alice\x00", "alice\ud800"]),
        st.sampled_from(HOSTILE_STRINGS),
        st.text(max_size=40),
    )


def _json_values() -> st.SearchStrategy[Any]:
    scalars = st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.floats(allow_nan=False, allow_infinity=False),
        st.text(max_size=30),
    )
    return st.recursive(
        scalars,
        lambda inner: st.one_of(
            st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=10), inner, max_size=4)
        ),
        max_leaves=20,
    )


NON_JSON_METADATA: list[dict[str, Any]] = [
    {"set": {1, 2}},
    {"bytes": b"\x00\xff"},
    {"object": object()},
    {"nan": math.nan},
    {"inf": math.inf},
    {"huge int": 10**400},
    {"tuple": (1, 2)},
    {"when": datetime(2020, 1, 1, tzinfo=UTC)},
    {"decimal": Decimal("1.5")},
    {"\ud800": "surrogate key"},
    {"value": "lone \udfff surrogate"},
    {"": "empty key"},
    {"\x00": "\x00"},
    {"k" * 10_000: "long key"},
]


def metadata() -> st.SearchStrategy[Any]:
    depths = [2, 50, 100, 150, 199, 200, 201, 254, 255, 256, 500, 2_000, 20_000]
    return st.one_of(
        st.dictionaries(st.text(max_size=10), _json_values(), max_size=5),
        rare(st.sampled_from(NON_JSON_METADATA), in_metadata=True),
        st.builds(Deep, st.sampled_from(depths), st.sampled_from(["dict", "list"])),
        st.just(SelfReferential()),
    )


def contents() -> st.SearchStrategy[Any]:
    parts: list[Any] = [
        [],
        [{"type": "input_text", "text": "hello"}],
        [{"type": "input_text", "text": "\ud800"}],
        [{"type": "input_text"}],
        [{"type": "input_text", "text": ""}],
        [{"type": "input_image", "image_url": "javascript:alert(1)"}],
        [{"type": "input_image", "image_url": "file:///etc/passwd"}],
        [{"type": "input_file", "file_url": "../../etc/passwd"}],
        [{"type": "bogus"}],
        ["not a part"],
    ]
    commands = [
        "/tool record {}",
        "/tool nosuch {}",
        "/tool record {bad json",
        '/tool record {"tag": "\\ud800", "note": "x"}',
        '/tool record {"tag": "t", "note": "n"}',
    ]
    return rare(
        st.one_of(
            st.text(max_size=200),
            st.sampled_from(["", " ", "\n\t  ", "\x00", "\ud800", "a\ud800b", "\udfff", "ok"]),
            st.sampled_from(commands),
            st.sampled_from(parts),
        ),
    )


def limits() -> st.SearchStrategy[int]:
    return st.one_of(
        st.integers(-3, 1_200), st.sampled_from([0, -1, 10**9, 2**63, 2**200, True, False])
    )


def statuses() -> st.SearchStrategy[str]:
    return st.sampled_from(
        ["active", "paused", "completed", "archived", "", "ACTIVE", "active\x00", "\ud800"]
    )


def timeouts() -> st.SearchStrategy[float | None]:
    return st.sampled_from(
        [None, 0, -1, 1e-9, 0.001, 30, math.nan, math.inf, -math.inf, 1e308, -0.0]
    )


def cursors() -> st.SearchStrategy[str | None]:
    return st.one_of(
        st.none(),
        st.text(max_size=40),
        st.sampled_from(["", "\x00", "\ud800", "..", "not base64!", "eyJ4IjoxfQ==", "x" * 5000]),
    )
