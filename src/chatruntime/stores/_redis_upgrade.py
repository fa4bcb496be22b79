"""Upgrading data an earlier chatruntime wrote to the key layout of ``_redis_keys``.

Layout 1 (chatruntime before paged listing) kept no status index and did not track expiring
sessions. The upgrade walks the index of all sessions once, in batches, and adds what layout 2
has: it is the one step whose cost grows with the number of sessions, paid once by the first
process that opens the data, never again at start-up. It is safe to run in several processes at
once and alongside writes of layout 2; processes still running the previous chatruntime keep
working, but should be replaced, as their writes do not maintain the status index.
"""

from __future__ import annotations

import logging
from typing import Final

from redis.asyncio import Redis

from . import _redis_scripts as scripts
from ._redis_codec import text
from ._redis_keys import LAYOUT_VERSION, RedisKeys

_BATCH: Final = 500
"""Sessions upgraded per script call: each call blocks Redis only briefly."""


async def upgrade_layout(
    client: Redis, keys: RedisKeys, found: int, logger: logging.Logger
) -> None:
    """Bring the data under ``keys.prefix`` from layout ``found`` to :data:`LAYOUT_VERSION`."""
    if found >= LAYOUT_VERSION:
        return
    logger.info(
        "upgrading the Redis data under key prefix %r from layout %d to %d",
        keys.prefix,
        found,
        LAYOUT_VERSION,
    )
    upgrade_from_1 = client.register_script(scripts.UPGRADE_FROM_LAYOUT_1)
    finish = client.register_script(scripts.FINISH_UPGRADE)
    seen = dropped = 0
    batch: list[str] = []
    async for member, _score in client.zscan_iter(keys.sessions, count=_BATCH):
        batch.append(text(member) or "")
        if len(batch) == _BATCH:
            dropped += int(await upgrade_from_1(args=[keys.prefix, *batch]))
            seen += len(batch)
            batch = []
    if batch:
        dropped += int(await upgrade_from_1(args=[keys.prefix, *batch]))
        seen += len(batch)
    await finish(keys=[keys.schema], args=[LAYOUT_VERSION])
    logger.info(
        "upgraded %d sessions under key prefix %r to layout %d (%d index entries of "
        "sessions already gone dropped)",
        seen - dropped,
        keys.prefix,
        LAYOUT_VERSION,
        dropped,
    )
