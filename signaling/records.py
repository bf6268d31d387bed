"""The durable records, and where they are kept: chosen here, once, at start.

Embedded (no ``cluster.redis_url``): the consult log, link-test history, link-quality samples, what was shared in
each room and connection points' caps in the SQLite store under ``store.path``, the recordings audit log in a file
beside it, schedules in SQLite too, recordings jobs claimed in memory. Cluster: all in Redis (``cluster/``:
``consult_log``, ``link_tests``, ``link_samples``, ``shared_record``, ``point_caps``, ``audit``, ``schedules``,
``job_claims``), so every signaling process writes and reads the same records, opens each scheduled session once
and does each recordings job once. Both sides implement the same small protocols; nothing else knows which one it
was given.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from cluster.audit import RedisAudit
from cluster.connect import connect_records
from cluster.consult_log import RedisConsultLog
from cluster.job_claims import RedisClaims
from cluster.link_samples import RedisSamples
from cluster.link_tests import RedisLinkTestHistory
from cluster.point_caps import RedisCaps
from cluster.schedules import RedisSchedules
from cluster.shared_record import RedisSharedRecord

from .caps.store import CapsRecords, CapsStore
from .config import Config
from .consult_log import ConsultLog, ConsultRecords
from .link_history import SampleStore, SqliteSamples
from .linktests.history import LinkTestHistory, LinkTestRecords
from .recordings.audit import AuditStore, FileAudit
from .recordings.jobs import JobClaims, LocalClaims
from .schedules.store import ScheduleRecords, ScheduleStore
from .sharing.record import SharedItems, SharedRecord
from .store import connect

if TYPE_CHECKING:
    from redis import Redis

    from cluster.runtime import ClusterRuntime

__all__ = ["AUDIT_FILE", "Records", "open_records"]

logger = logging.getLogger(__name__)

AUDIT_FILE = "audit.log"


@dataclass
class Records:
    consults: ConsultRecords
    link_tests: LinkTestRecords
    link_samples: SampleStore
    shared: SharedItems
    caps: CapsRecords
    audit: AuditStore
    schedules: ScheduleRecords
    redis: Redis | None = None
    """The client the Redis backends share (cluster mode), closed with them."""
    sweep: Callable[[datetime.datetime], None] | None = None
    """Cluster: closes consults whose signaling process died, run every ``sweep_seconds``."""
    sweep_seconds: float = 0.0
    jobs: JobClaims = field(default_factory=LocalClaims)
    """Who does each once-only recordings job (a retention delete, a combine): this process, or one in Redis."""
    _task: asyncio.Task[None] | None = field(default=None, init=False)

    async def start(self) -> None:
        if self.sweep is None:
            return
        sweep = self.sweep

        async def now_and_then() -> None:
            while True:
                await asyncio.sleep(self.sweep_seconds)
                try:
                    sweep(datetime.datetime.now(datetime.UTC))
                except Exception as exc:  # noqa: BLE001 - Redis away: the next sweep tries again
                    logger.warning("consults of stopped processes not closed this time (%s)", exc)

        self._task = asyncio.create_task(now_and_then())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self.redis is not None:
            self.redis.close()


def open_records(config: Config, cluster: ClusterRuntime | None, now: datetime.datetime) -> Records:
    """The records of this configuration; ``now`` closes consults a previous process left open (``interrupted``)."""
    if cluster is None:
        return Records(
            ConsultLog(connect(config.store.path), now),
            LinkTestHistory(connect(config.store.path)),
            SqliteSamples(connect(config.store.path)),
            SharedRecord(connect(config.store.path)),
            CapsStore(connect(config.store.path)),
            FileAudit(config.store.path / AUDIT_FILE),
            ScheduleStore(connect(config.store.path)),
        )
    assert config.cluster.redis_url is not None
    redis = connect_records(config.cluster.redis_url)
    keys = cluster.keys
    consults = RedisConsultLog(redis, keys, cluster.process_id, now)
    return Records(
        consults,
        RedisLinkTestHistory(redis, keys),
        RedisSamples(redis, keys),
        RedisSharedRecord(redis, keys),
        RedisCaps(redis, keys),
        RedisAudit(redis, keys),
        RedisSchedules(redis, keys),
        redis,
        consults.sweep,
        3 * config.cluster.node_timeout,
        RedisClaims(redis, keys, cluster.process_id),
    )
