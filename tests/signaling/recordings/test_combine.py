"""combine: one grid video + mixed audio, aligned by the manifest's offsets, progress to 100, one job at a time."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from recordings_support import CLIP_SECONDS, RecordingMaker
from support import wait_for

from signaling.recordings import combine
from signaling.recordings.catalogue import Catalogue
from signaling.recordings.combine import Combiner, CombineRefused, Layout
from signaling.recordings.files import RecordingFiles
from signaling.recordings.state import AdminStates, CombineJob


def probe(path: Path) -> dict[str, object]:
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries", "format=duration:stream=codec_type,codec_name,width,height",
         "-of", "json", str(path)],
        check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    return json.loads(out)


@pytest.fixture
async def combiner(maker: RecordingMaker) -> AsyncIterator[Combiner]:
    maker.root.mkdir(parents=True, exist_ok=True)
    files = RecordingFiles(maker.root)
    catalogue = Catalogue(files)
    job = Combiner(catalogue, AdminStates(files))
    await job.start()
    yield job
    await job.close()


def test_layout() -> None:
    assert Layout.for_tiles(1) == Layout(1, 1, 640, 480)
    assert Layout.for_tiles(2) == Layout(2, 1, 320, 240)
    assert Layout.for_tiles(4) == Layout(2, 2, 320, 240)
    five = Layout.for_tiles(5)
    assert (five.columns, five.rows, five.tile_width % 2, five.tile_height % 2) == (3, 2, 0, 0)
    assert five.position(4) == (five.tile_width, five.tile_height)


async def test_combined_file_spans_the_recording(maker: RecordingMaker, combiner: Combiner) -> None:
    rid = maker.make()  # the second person starts 1.5 s in; the first one's video changes resolution midway
    started = time.monotonic()
    state = await combiner.submit(rid, "quantri")
    assert state.combine.state == "queued" and state.combine.requested_by == "quantri"
    await wait_for(lambda: combiner.states.get(rid).combine.state in ("done", "failed"), timeout=60)
    elapsed = time.monotonic() - started
    job = combiner.states.get(rid).combine
    assert job.state == "done", job.error
    assert job.progress == 100 and job.started_at and job.finished_at
    info = probe(maker.root / rid / "combined.webm")
    kinds = {s["codec_type"]: s for s in info["streams"]}  # type: ignore[index, union-attr]
    assert kinds["video"]["codec_name"] == "vp8" and kinds["video"]["width"] == 640
    assert kinds["audio"]["codec_name"] == "opus"
    assert float(info["format"]["duration"]) == pytest.approx(1.5 + CLIP_SECONDS, abs=0.25)  # type: ignore[index]
    print(f"combined {1.5 + CLIP_SECONDS:.1f} s of recording in {elapsed:.2f} s")
    assert sorted(p.name for p in (maker.root / rid).iterdir() if p.name.startswith(".")) == []


async def test_refused_while_recording_or_busy(maker: RecordingMaker, combiner: Combiner) -> None:
    running = maker.make(state="recording")
    with pytest.raises(CombineRefused):
        await combiner.submit(running, "quantri")
    done = maker.make()
    await combiner.states.update(done, lambda s: s.model_copy(update={"combine": CombineJob(state="running")}))
    with pytest.raises(CombineRefused):
        await combiner.submit(done, "quantri")


async def test_jobs_run_one_at_a_time_in_order(maker: RecordingMaker, combiner: Combiner) -> None:
    first, second = maker.make(), maker.make()
    await combiner.submit(first, "quantri")
    await combiner.submit(second, "quantri")
    states: list[tuple[str, str]] = []

    def both_done() -> bool:
        pair = (combiner.states.get(first).combine.state, combiner.states.get(second).combine.state)
        states.append(pair)
        return pair == ("done", "done")

    await wait_for(both_done, timeout=90, interval=0.02)
    assert all(b == "queued" for a, b in states if a in ("queued", "running"))  # the second waits its turn


async def test_a_broken_track_fails_the_job_cleanly(maker: RecordingMaker, combiner: Combiner) -> None:
    rid = maker.make()
    for track in maker.manifest(rid)["tracks"]:
        (maker.root / rid / track["file"]).write_bytes(b"not a webm file")
    await combiner.submit(rid, "quantri")
    await wait_for(lambda: combiner.states.get(rid).combine.state == "failed", timeout=30)
    assert "ffmpeg exited" in (combiner.states.get(rid).combine.error or "")
    assert not (maker.root / rid / "combined.webm").exists()
    assert [p.name for p in (maker.root / rid).iterdir() if p.name.startswith(".")] == []


async def test_a_stuck_job_is_stopped(
    maker: RecordingMaker, combiner: Combiner, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(combine, "TIME_LIMIT_BASE", 0.05)
    monkeypatch.setattr(combine, "TIME_LIMIT_FACTOR", 0.0)
    rid = maker.make()
    await combiner.submit(rid, "quantri")
    await wait_for(lambda: combiner.states.get(rid).combine.state == "failed", timeout=30)
    assert "did not finish in time" in (combiner.states.get(rid).combine.error or "")
    assert sorted(p.name for p in (maker.root / rid).iterdir() if p.name.startswith(".") or "combined" in p.name) == []


async def test_jobs_left_by_a_stopped_server_are_marked_failed(maker: RecordingMaker) -> None:
    rid = maker.make()
    files = RecordingFiles(maker.root)
    states = AdminStates(files)
    await states.update(rid, lambda s: s.model_copy(update={"combine": CombineJob(state="running", progress=40)}))
    job = Combiner(Catalogue(files), states)
    await job.start()
    try:
        combine = states.get(rid).combine
        assert combine.state == "failed" and "interrupted" in (combine.error or "")
        await job.submit(rid, "quantri")  # and can be started again
        await asyncio.sleep(0)
    finally:
        await job.close()
