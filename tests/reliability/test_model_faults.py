"""Model and network faults at tiny size: each its code, nothing stored, service goes on."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from reliability import model_faults
from reliability._stores import StoreSpec

pytestmark = pytest.mark.allow_blocking


@pytest.mark.parametrize("kind", ["file", "sqlite"])
def test_every_fault_answers_its_code_and_changes_nothing(kind: str, tmp_path: Path) -> None:
    spec = StoreSpec.fresh(kind, tmp_path, {})

    [row] = anyio.run(model_faults.run, [spec], 1)

    # Five faults, sent and streamed, plus one 429 the client retries after retry-after.
    assert (row.tried, row.changed, row.failed) == (11, 0, 0), row.notes
    assert row.worst_overrun is not None and row.worst_overrun <= 1.0
    assert row.acknowledged == 2 + 10 + 1
