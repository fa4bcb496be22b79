"""Random call sequences agree with the reference model, at tiny size."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from reliability import stateful
from reliability._stores import StoreSpec

pytestmark = pytest.mark.allow_blocking


@pytest.mark.parametrize("kind", ["file", "sqlite"])
def test_random_sequences_match_the_reference_model(kind: str, tmp_path: Path) -> None:
    row = stateful.run(
        lambda: StoreSpec.fresh(kind, tmp_path / uuid.uuid4().hex, {}), kind, runs=3, steps=12
    )

    assert (row.failed, row.clean) == (0, True), row.notes
    assert row.tried > 3 * 3  # at least the listing invariant, three users, per run
