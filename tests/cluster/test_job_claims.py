"""Once-only recordings jobs claimed in Redis: of many processes racing for a job exactly one gets it; a finished
deletion is never claimed again; a job whose holder died is taken over, one held by a live process is not. Two
processes' retention sweeps and combine workers over one directory (each its own lock, as separate processes have)
delete a recording once and combine it once."""

from __future__ import annotations

import asyncio
import datetime
import threading
from pathlib import Path

import pytest
from cluster_support import Scratch, needs_redis, scratch  # noqa: F401 - a fixture
from recordings_support import RecordingMaker, make_clips
from support import wait_for

from cluster.audit import RedisAudit
from cluster.job_claims import RedisClaims
from signaling.recordings.audit import AuditLog
from signaling.recordings.catalogue import Catalogue
from signaling.recordings.combine import Combiner, CombineRefused
from signaling.recordings.files import COMBINED, RecordingFiles
from signaling.recordings.jobs import COMBINE, DELETE
from signaling.recordings.retention import Retention
from signaling.recordings.state import AdminStates

pytestmark = needs_redis

DAY = datetime.timedelta(days=1)


def claimant(scratch: Scratch, process_id: str, alive: bool = True) -> RedisClaims:
    """The claims of one signaling process, alive (its liveness key set) or not."""
    if alive:
        scratch.redis.set(scratch.keys.process_alive(scratch.keys.inbox(process_id)), 1, ex=60)
    return RedisClaims(scratch.redis, scratch.keys, process_id)


def test_exactly_one_of_many_racing_wins(scratch: Scratch) -> None:
    processes = [claimant(scratch, f"sig-{n}") for n in range(8)]
    barrier = threading.Barrier(len(processes))
    won: list[int] = []

    def race(n: int) -> None:
        barrier.wait()
        if processes[n].claim(COMBINE, "rec-1"):
            won.append(n)

    threads = [threading.Thread(target=race, args=(n,)) for n in range(len(processes))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(won) == 1
    winner, loser = processes[won[0]], processes[(won[0] + 1) % len(processes)]
    assert not winner.claim(COMBINE, "rec-1") and not loser.claim(COMBINE, "rec-1")  # held, even from itself
    assert loser.claim(DELETE, "rec-1")  # another job, another claim
    loser.release(COMBINE, "rec-1")  # not its claim: nothing happens
    assert not loser.claim(COMBINE, "rec-1")
    winner.release(COMBINE, "rec-1")
    assert loser.claim(COMBINE, "rec-1")  # released: claimed again


def test_a_finished_deletion_is_never_claimed_again(scratch: Scratch) -> None:
    first, second = claimant(scratch, "sig-a"), claimant(scratch, "sig-b")
    assert first.claim(DELETE, "rec-1")
    first.finish(DELETE, "rec-1")
    scratch.redis.delete(scratch.keys.process_alive(scratch.keys.inbox("sig-a")))  # even once its process is gone
    assert not second.claim(DELETE, "rec-1") and not first.claim(DELETE, "rec-1")
    assert 0 < scratch.redis.ttl(scratch.keys.job(DELETE, "rec-1")) <= 24 * 3600


def test_a_dead_holders_job_is_taken_over_a_live_ones_is_not(scratch: Scratch) -> None:
    dead, live, other = claimant(scratch, "sig-dead", alive=False), claimant(scratch, "sig-live"), claimant(
        scratch, "sig-other")
    assert dead.claim(COMBINE, "rec-1") and live.claim(COMBINE, "rec-2")
    assert other.claim(COMBINE, "rec-1")  # sig-dead has no liveness key
    assert not other.claim(COMBINE, "rec-2")
    assert scratch.redis.get(scratch.keys.job(COMBINE, "rec-1")) == "sig-other"


@pytest.fixture
def maker(tmp_path: Path) -> RecordingMaker:
    clips = tmp_path / "clips"
    clips.mkdir()
    return RecordingMaker(tmp_path / "recordings", make_clips(clips))


async def test_two_processes_sweeps_delete_an_expired_recording_once(maker: RecordingMaker, scratch: Scratch) -> None:
    expired = [maker.make(started=datetime.datetime.now(datetime.UTC) - 40 * DAY) for _ in range(4)]
    audit = AuditLog(RedisAudit(scratch.redis, scratch.keys))
    sweeps = []
    for process in ("sig-a", "sig-b"):
        files = RecordingFiles(maker.root)
        sweeps.append(Retention(Catalogue(files), AdminStates(files), audit, 30, claimant(scratch, process)))

    deleted = await asyncio.gather(*(sweep.sweep() for sweep in sweeps))
    assert sorted(deleted[0] + deleted[1]) == sorted(expired)  # each once, by one or the other
    assert RecordingFiles(maker.root).ids() == []
    entries = [(e["action"], e["recording"]) for e in audit.entries()]
    assert sorted(entries) == sorted(("retention-delete", rid) for rid in expired)
    assert all(scratch.redis.get(scratch.keys.job(DELETE, rid)) == "done" for rid in expired)
    assert all(not scratch.redis.exists(scratch.keys.job(COMBINE, rid)) for rid in expired)


async def test_a_recording_combined_by_another_process_is_not_deleted(maker: RecordingMaker, scratch: Scratch) -> None:
    rid = maker.make(started=datetime.datetime.now(datetime.UTC) - 40 * DAY)
    combining = claimant(scratch, "sig-b")
    assert combining.claim(COMBINE, rid)  # its request was accepted; admin.json not written yet
    files = RecordingFiles(maker.root)
    sweep = Retention(Catalogue(files), AdminStates(files), AuditLog(RedisAudit(scratch.redis, scratch.keys)), 30,
                      claimant(scratch, "sig-a"))
    assert await sweep.sweep() == [] and files.ids() == [rid]
    assert not scratch.redis.exists(scratch.keys.job(DELETE, rid))  # released: the next sweep tries again
    combining.release(COMBINE, rid)
    assert await sweep.sweep() == [rid]


async def test_a_combine_requested_through_two_processes_runs_once(maker: RecordingMaker, scratch: Scratch) -> None:
    rid = maker.make()
    combiners = []
    for process in ("sig-a", "sig-b"):
        files = RecordingFiles(maker.root)
        combiners.append(Combiner(Catalogue(files), AdminStates(files), claims=claimant(scratch, process)))
        await combiners[-1].start()
    try:
        outcomes = await asyncio.gather(*(c.submit(rid, "quantri") for c in combiners), return_exceptions=True)
        accepted = [n for n, o in enumerate(outcomes) if not isinstance(o, BaseException)]
        assert len(accepted) == 1, outcomes
        assert isinstance(outcomes[1 - accepted[0]], CombineRefused)
        other = combiners[1 - accepted[0]]
        # a process starting while the job runs leaves it alone: a live process holds it
        late = Combiner(Catalogue(RecordingFiles(maker.root)), AdminStates(RecordingFiles(maker.root)),
                        claims=claimant(scratch, "sig-c"))
        await late.start()
        await late.close()
        await wait_for(lambda: other.states.get(rid).combine.state in ("done", "failed"), timeout=90)
        job = other.states.get(rid).combine
        assert job.state == "done", job.error
        assert other.catalogue.files.stat(rid, COMBINED).st_size > 0
        assert not scratch.redis.exists(scratch.keys.job(COMBINE, rid))  # released: it may be combined again
        await other.submit(rid, "quantri")
        await wait_for(lambda: other.states.get(rid).combine.state in ("done", "failed"), timeout=90)
    finally:
        for combiner in combiners:
            await combiner.close()
