"""Checkpoints: a session as it was at one moment, to restore or fork from later."""

from __future__ import annotations

from typing import Any, Final, Literal

from pydantic import Field, model_validator

from ._common import Uuid, WireModel
from ._history import HistoryItem
from ._session import SessionHeader

CHECKPOINT_LABEL_MAX_LENGTH: Final = 200
"""Longest label a checkpoint accepts."""

CheckpointKind = Literal["manual", "restore"]
"""``manual``: saved by a caller. ``restore``: the session as it was just before a restore,
saved by the restore itself so that it can be undone."""


class Checkpoint(WireModel):
    """A snapshot of a session: its header (statistics, status, metadata, state modules) and
    its history at that moment, plus the caller's own ``data``.

    The history is not copied where it can be shared: the first ``shared_count`` items are
    the session's own stored items (a session's history only ever grows, except by a restore
    or an SDK ``pop_item``, which first move the items they drop into the checkpoints that
    still need them); ``items`` holds the rest. Ten checkpoints of a long session therefore
    cost ten headers, not ten histories.

    Attributes:
        id: The checkpoint's id (a UUID).
        session_id: The session it belongs to.
        label: The caller's name for it, if any.
        created_at: When it was taken (epoch ms).
        kind: ``manual`` or ``restore`` (see :data:`CheckpointKind`).
        data: The caller's own JSON data, stored with it.
        header: The session's header at that moment.
        item_count: How many history items the session had then.
        shared_count: How many of those are read from the session's stored history.
        items: The history items from ``shared_count`` to ``item_count``, kept here.
    """

    id: Uuid
    session_id: Uuid
    label: str | None = Field(default=None, min_length=1, max_length=CHECKPOINT_LABEL_MAX_LENGTH)
    created_at: int
    kind: CheckpointKind = "manual"
    data: dict[str, Any] = Field(default_factory=dict)
    header: SessionHeader
    item_count: int = Field(ge=0)
    shared_count: int = Field(ge=0)
    items: list[HistoryItem] = Field(default_factory=list)

    @model_validator(mode="after")
    def _check_counts(self) -> Checkpoint:
        if self.shared_count + len(self.items) != self.item_count:
            raise ValueError(
                f"shared_count ({self.shared_count}) plus {len(self.items)} own items is not "
                f"item_count ({self.item_count})"
            )
        return self
