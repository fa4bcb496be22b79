"""Results: rows of figures with the issue's targets beside them, as text and as Markdown.

A target is never a reason to fail the run: a missed one is printed ``MISS`` with the figure
it was measured against, so a reader sees by how much.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Literal

TargetKind = Literal["at_most", "at_least", "ratio_at_most", "ratio_at_least"]


@dataclass(frozen=True)
class Target:
    """What a row should show: its own figure (``at_*``) or its ratio ours / SDK (``ratio_*``)
    against ``limit``."""

    kind: TargetKind
    limit: float

    def describe(self, unit: str) -> str:
        sign = "<=" if self.kind.endswith("at_most") else ">="
        if self.kind.startswith("ratio"):
            return f"{sign} {self.limit:g}x SDK"
        return f"{sign} {self.limit:g} {unit}"


@dataclass
class Row:
    """One figure of ours, with the SDK's beside it when there is one to compare with.

    Attributes:
        what: What was measured (store, size, operation).
        ours: Our figure, in ``unit``.
        sdk: The SDK's figure for the same work, in ``unit``.
        unit: ``ms``, ``MB``, ``turns/s``...
        target: The issue's target for this row, if it has one.
        note: Anything a reader needs to read the figure right.
    """

    what: str
    ours: float | None
    sdk: float | None = None
    unit: str = "ms"
    target: Target | None = None
    note: str = ""

    @property
    def ratio(self) -> float | None:
        """ours / SDK."""
        if self.ours is None or self.sdk is None or self.sdk == 0:
            return None
        return self.ours / self.sdk

    @property
    def verdict(self) -> str:
        """``PASS``, ``MISS``, or ``""`` without a target (or without the figures it needs)."""
        if self.target is None:
            return ""
        value = self.ratio if self.target.kind.startswith("ratio") else self.ours
        if value is None or math.isnan(value):
            return ""
        if self.target.kind.endswith("at_most"):
            return "PASS" if value <= self.target.limit else "MISS"
        return "PASS" if value >= self.target.limit else "MISS"


@dataclass
class Section:
    """The rows of one scenario, under a title and a line saying how they were measured."""

    title: str
    how: str
    rows: list[Row] = field(default_factory=list)
    versus: str = "SDK"
    """What the second column holds."""
    errors: list[str] = field(default_factory=list)
    """Measurements that could not be made, and why."""
    seconds: float = 0.0
    """How long the scenario took to run."""

    def add(self, row: Row) -> Row:
        self.rows.append(row)
        return row

    def as_dict(self) -> dict[str, object]:
        return {
            "title": self.title,
            "how": self.how,
            "versus": self.versus,
            "errors": self.errors,
            "seconds": self.seconds,
            "rows": [
                {**asdict(row), "ratio": row.ratio, "verdict": row.verdict} for row in self.rows
            ],
        }


def _headings(versus: str) -> tuple[str, ...]:
    return ("measurement", "ours", versus, f"ours/{versus}", "target", "")


def _number(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if isinstance(value, int) or unit == "turns/s":
        return f"{value:,.0f} {unit}"
    if abs(value) >= 100:
        return f"{value:,.0f} {unit}"
    return f"{value:.2f} {unit}"


def _cells(row: Row) -> tuple[str, ...]:
    ratio = row.ratio
    what = f"{row.what} ({row.note})" if row.note else row.what
    return (
        what,
        _number(row.ours, row.unit),
        _number(row.sdk, row.unit),
        "-" if ratio is None else f"{ratio:.2f}x",
        row.target.describe(row.unit) if row.target else "",
        row.verdict,
    )


def text_table(section: Section) -> str:
    """The section as aligned plain text, for the terminal."""
    headings = _headings(section.versus)
    cells = [headings, *(_cells(row) for row in section.rows)]
    widths = [max(len(line[i]) for line in cells) for i in range(len(headings))]
    out = [f"{section.title}  [{section.seconds:.1f} s]", f"  {section.how}"]
    for index, line in enumerate(cells):
        first = line[0].ljust(widths[0])
        rest = "  ".join(
            cell.rjust(width) for cell, width in zip(line[1:], widths[1:], strict=True)
        )
        out.append(f"  {first}  {rest}".rstrip())
        if index == 0:
            out.append("  " + "  ".join("-" * width for width in widths))
    out.extend(f"  FAILED: {error}" for error in section.errors)
    return "\n".join(out)


def markdown(section: Section) -> str:
    """The section as a Markdown heading, a sentence and a table."""
    headings = _headings(section.versus)
    out = [f"## {section.title}", "", section.how, "", "| " + " | ".join(headings) + " |"]
    out.append("| --- " + "| ---: " * (len(headings) - 2) + "| --- |")
    for row in section.rows:
        out.append("| " + " | ".join(cell.replace("|", "/") for cell in _cells(row)) + " |")
    out.append("")
    out.extend(f"**FAILED**: {error}  " for error in section.errors)
    out.append(f"_{section.seconds:.1f} s_")
    return "\n".join(out)


def misses(sections: list[Section]) -> list[str]:
    """One line per missed target: what, the figure, the target, and by how much."""
    found: list[str] = []
    for section in sections:
        for row in section.rows:
            if row.verdict != "MISS" or row.target is None:
                continue
            is_ratio = row.target.kind.startswith("ratio")
            value = row.ratio if is_ratio else row.ours
            assert value is not None
            shown = f"{value:.2f}x SDK" if is_ratio else _number(value, row.unit)
            if row.target.limit:
                off = f"{value / row.target.limit:.2f}x the limit"
            else:
                off = f"{_number(value, row.unit)} over"
            found.append(
                f"{section.title}: {row.what}: {shown}, target "
                f"{row.target.describe(row.unit)} ({off})"
            )
    return found
