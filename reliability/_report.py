"""The suite's table: one row per trial and store, saying what was tried and what was lost.

A row is clean when nothing was lost, nothing loaded corrupt, no history changed, no
property failed and no call overran its timeout by more than :data:`OVERRUN_LIMIT`. A trial
that could not run says so in its row (``not run: reason``); it never counts as clean.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

OVERRUN_LIMIT = 1.0
"""Seconds a call may return after its timeout (the issue's target)."""


@dataclass
class Row:
    """What one trial did on one store.

    Attributes:
        trial: The trial (``SIGKILL``, ``disk full``, ``hostile input``...).
        store: The store kind (``file``, ``sqlite``, ``postgres``, ``redis``, ``all``).
        tried: How many kills, cases, faults or stalls were injected.
        unit: What ``tried`` counts (``kills``, ``cases``, ``faults``, ``stalls``).
        acknowledged: Turns that returned success before or during the trial.
        lost: Acknowledged turns (or sessions) that could not be found afterwards.
        corrupt: Loads that failed or found a partial turn or wrong statistics.
        changed: Histories (or stored bytes) that a failed call changed.
        failed: Other properties broken: a wrong or missing error code, a traceback,
            a file outside the store's folder, a store that did not recover.
        worst_overrun: Seconds the slowest call returned after its timeout (``None``: the
            trial sets no timeout).
        not_run: Why the trial could not run (``None``: it ran).
        notes: Short findings, each one line, printed under the table.
    """

    trial: str
    store: str
    tried: int = 0
    unit: str = ""
    acknowledged: int = 0
    lost: int = 0
    corrupt: int = 0
    changed: int = 0
    failed: int = 0
    worst_overrun: float | None = None
    not_run: str | None = None
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def overran(self, seconds: float) -> None:
        """Record a call that returned ``seconds`` after its timeout (negative: before)."""
        seconds = max(seconds, 0.0)
        self.worst_overrun = max(self.worst_overrun or 0.0, seconds)

    def note(self, text: str) -> None:
        """Keep one finding (the same text once)."""
        if text not in self.notes:
            self.notes.append(text)

    @property
    def clean(self) -> bool:
        """Ran, lost nothing, corrupted nothing, changed nothing, broke nothing, overran
        no timeout by more than :data:`OVERRUN_LIMIT`."""
        return (
            self.not_run is None
            and self.tried > 0
            and self.lost == 0
            and self.corrupt == 0
            and self.changed == 0
            and self.failed == 0
            and (self.worst_overrun is None or self.worst_overrun <= OVERRUN_LIMIT)
        )

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


_COLUMNS = (
    "trial",
    "store",
    "tried",
    "acknowledged turns",
    "lost",
    "corrupt loads",
    "histories changed",
    "failed",
    "worst overrun",
    "verdict",
)


def _cells(row: Row) -> list[str]:
    if row.not_run is not None:
        return [row.trial, row.store, f"not run: {row.not_run}", *[""] * 6, "NOT RUN"]
    overrun = "-" if row.worst_overrun is None else f"{row.worst_overrun:.2f} s"
    return [
        row.trial,
        row.store,
        f"{row.tried:,} {row.unit}".strip(),
        f"{row.acknowledged:,}",
        str(row.lost),
        str(row.corrupt),
        str(row.changed),
        str(row.failed),
        overrun,
        "ok" if row.clean else "DEFECT",
    ]


def text_table(rows: list[Row]) -> str:
    """The rows as an aligned text table, then each row's notes."""
    body = [list(_COLUMNS), *(_cells(row) for row in rows)]
    measured = [line for line in body if not line[2].startswith("not run:")]
    widths = [max(len(line[i]) for line in measured) for i in range(len(_COLUMNS))]
    lines = []
    for index, line in enumerate(body):
        if line[2].startswith("not run:"):
            head = "  ".join(cell.ljust(widths[i]) for i, cell in enumerate(line[:2]))
            lines.append(f"{head}  {line[2]}  [{line[-1]}]")
        else:
            lines.append("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(line)).rstrip())
        if index == 0:
            lines.append("  ".join("-" * width for width in widths))
    notes = [(row, note) for row in rows for note in row.notes]
    if notes:
        lines.append("")
        lines.append("Findings:")
        lines.extend(f"- [{row.trial} / {row.store}] {note}" for row, note in notes)
    return "\n".join(lines)


def markdown_table(rows: list[Row]) -> str:
    """The rows as a Markdown table (for the README), then each row's notes."""
    lines = ["| " + " | ".join(_COLUMNS) + " |", "|" + " --- |" * len(_COLUMNS)]
    for row in rows:
        lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in _cells(row)) + " |")
    notes = [(row, note) for row in rows for note in row.notes]
    if notes:
        lines.append("")
        lines.extend(f"- {row.trial} / {row.store}: {note}" for row, note in notes)
    return "\n".join(lines)
