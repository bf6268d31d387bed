"""retention: expired recordings go, recent, held, running or combining ones stay; deletions are audited."""

from __future__ import annotations

import datetime
from pathlib import Path

from recordings_support import RecordingMaker

from signaling.recordings.audit import AuditLog
from signaling.recordings.catalogue import Catalogue
from signaling.recordings.files import RecordingFiles
from signaling.recordings.retention import Retention
from signaling.recordings.state import AdminStates, CombineJob

NOW = datetime.datetime.now(datetime.UTC)
DAY = datetime.timedelta(days=1)


def retention(maker: RecordingMaker, tmp_path: Path, days: int) -> Retention:
    files = RecordingFiles(maker.root)
    return Retention(Catalogue(files), AdminStates(files), AuditLog(tmp_path / "audit.log"), days)


async def test_deletes_expired_keeps_the_rest(maker: RecordingMaker, tmp_path: Path) -> None:
    expired = maker.make(started=NOW - 40 * DAY)
    recent = maker.make(started=NOW - 2 * DAY)
    held = maker.make(started=NOW - 40 * DAY)
    running = maker.make(started=NOW - 40 * DAY, state="recording")
    combining = maker.make(started=NOW - 40 * DAY)
    job = retention(maker, tmp_path, days=30)
    await job.states.update(held, lambda s: s.model_copy(update={"hold": True}))
    await job.states.update(combining, lambda s: s.model_copy(update={"combine": CombineJob(state="running")}))

    assert await job.sweep() == [expired]
    assert sorted(job.catalogue.files.ids()) == sorted([recent, held, running, combining])
    entries = job.audit.latest(10)
    assert [(e["action"], e["actor"], e["recording"]) for e in entries] == [("retention-delete", "system", expired)]

    await job.states.update(held, lambda s: s.model_copy(update={"hold": False}))
    assert await job.sweep() == [held]


async def test_zero_days_keeps_everything(maker: RecordingMaker, tmp_path: Path) -> None:
    maker.make(started=NOW - 4000 * DAY)
    job = retention(maker, tmp_path, days=0)
    assert await job.sweep() == [] and len(job.catalogue.files.ids()) == 1


async def test_an_unreadable_admin_file_counts_as_held(maker: RecordingMaker, tmp_path: Path) -> None:
    rid = maker.make(started=NOW - 40 * DAY)
    (maker.root / rid / "admin.json").write_text("{damaged")
    job = retention(maker, tmp_path, days=30)
    assert await job.sweep() == [] and job.catalogue.files.ids() == [rid]
