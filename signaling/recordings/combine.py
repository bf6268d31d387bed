"""The combined file: every participant's video in one grid with the mixed audio, for watching in one go.

A convenience copy (``combined.webm``); the per-track originals stay the record. One ffmpeg at a time at the
lowest CPU priority (``nice -n 19``) so a long recording never starves the live relay. Each track is placed at its
manifest ``start_offset``; a participant's segments (one per upstream connection) share one tile. Progress comes
from ffmpeg's ``-progress`` output measured against the manifest's duration, and is kept in ``admin.json``.

ffmpeg reads and writes descriptors opened by ``files`` (``/dev/fd/N``), never paths: it cannot be led outside
the recording by a symlink either.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass

from .catalogue import Catalogue, Manifest, Track
from .files import COMBINED, NotFound
from .jobs import COMBINE, JobClaims, LocalClaims
from .state import AdminState, AdminStates, CombineJob

__all__ = ["CombineRefused", "Combiner", "Layout", "ffmpeg_arguments"]

logger = logging.getLogger(__name__)

GRID_WIDTH = 640
FRAME_RATE = 15
VIDEO_BITRATE = "600k"
AUDIO_BITRATE = "48k"
_PROGRESS_EVERY = 1.0  # seconds between admin.json progress writes
# A job still running after this long is stuck (ffmpeg normally runs several times faster than real time, even
# niced on a busy server): killed, so that it cannot hold up the queue forever.
TIME_LIMIT_BASE = 120.0
TIME_LIMIT_FACTOR = 10.0


class CombineRefused(Exception):
    """The job cannot start (recording still running, a job already queued, nothing to combine)."""


@dataclass(frozen=True)
class Layout:
    columns: int
    rows: int
    tile_width: int
    tile_height: int

    @classmethod
    def for_tiles(cls, count: int) -> Layout:
        """A near-square grid ``GRID_WIDTH`` wide of 4:3 tiles (even sizes, as VP8's 4:2:0 needs)."""
        columns = max(1, math.ceil(math.sqrt(count)))
        rows = max(1, math.ceil(count / columns))
        width = GRID_WIDTH // columns // 2 * 2
        return cls(columns, rows, width, width * 3 // 4 // 2 * 2)

    def position(self, tile: int) -> tuple[int, int]:
        return tile % self.columns * self.tile_width, tile // self.columns * self.tile_height


def ffmpeg_arguments(tracks: Sequence[tuple[Track, str]], duration: float, output: str) -> list[str]:
    """The ffmpeg command line (after ``ffmpeg``) for ``(track, input path)`` pairs, as a filter graph.

    Video: a black canvas as long as the recording; each video segment scaled into its participant's tile and
    overlaid from its offset until it ends. Audio: each segment shifted to its offset, gaps (silence the sender did
    not transmit) filled by ``aresample=async``, all mixed without level normalisation (speakers keep their level).
    """
    video = [(t, p) for t, p in tracks if t.kind == "video"]
    audio = [(t, p) for t, p in tracks if t.kind == "audio"]
    tiles = list(dict.fromkeys(t.participant_id for t, _ in video))
    layout = Layout.for_tiles(len(tiles))
    w, h = layout.tile_width, layout.tile_height
    args = ["-hide_banner", "-nostdin", "-nostats", "-loglevel", "error", "-y"]
    graph = [f"color=c=black:s={w * layout.columns}x{h * layout.rows}:r={FRAME_RATE}:d={duration:.3f}[canvas0]"]
    for n, (track, path) in enumerate(video):
        # WebRTC senders change resolution with bandwidth: keep one filter graph and let scale follow.
        args += ["-reinit_filter", "0", "-i", path]
        x, y = layout.position(tiles.index(track.participant_id))
        graph.append(
            f"[{n}:v]scale={w}:{h}:force_original_aspect_ratio=decrease,pad={w}:{h}:(ow-iw)/2:(oh-ih)/2,setsar=1,"
            f"setpts=PTS-STARTPTS+{track.start_offset:.3f}/TB[v{n}];"
            f"[canvas{n}][v{n}]overlay=x={x}:y={y}:eof_action=pass[canvas{n + 1}]"
        )
    graph.append(f"[canvas{len(video)}]format=yuv420p[video]")
    for n, (track, path) in enumerate(audio, start=len(video)):
        args += ["-i", path]
        graph.append(
            f"[{n}:a]asetpts=PTS-STARTPTS+{track.start_offset:.3f}/TB,aresample=48000:async=1:first_pts=0[a{n}]"
        )
    if audio:
        labels = "".join(f"[a{n}]" for n in range(len(video), len(video) + len(audio)))
        graph.append(f"{labels}amix=inputs={len(audio)}:duration=longest:normalize=0[audio]")
    else:
        graph.append("anullsrc=r=48000:cl=mono[audio]")
    return [
        *args,
        "-filter_complex", ";".join(graph),
        "-map", "[video]", "-map", "[audio]", "-t", f"{duration:.3f}",
        "-c:v", "libvpx", "-deadline", "realtime", "-cpu-used", "8", "-b:v", VIDEO_BITRATE,
        "-c:a", "libopus", "-b:a", AUDIO_BITRATE,
        "-progress", "pipe:1", "-f", "webm", output,
    ]  # fmt: skip


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


class Combiner:
    """A queue of combine jobs and the one worker that runs them, in submission order."""

    def __init__(
        self, catalogue: Catalogue, states: AdminStates, ffmpeg: str = "ffmpeg", claims: JobClaims | None = None
    ) -> None:
        self.catalogue = catalogue
        self.states = states
        self.claims = claims or LocalClaims()
        self.ffmpeg = ffmpeg
        self._queue: asyncio.Queue[str] = asyncio.Queue()
        self._worker: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Jobs a stopped process left queued or running are marked failed (the admin can start them again); in a
        cluster, not those that a live process holds."""
        try:
            for recording_id in self.catalogue.files.ids():
                if self.states.get(recording_id).combine.busy and self.claims.claim(COMBINE, recording_id):
                    try:
                        await self._finish(recording_id, "failed", error="interrupted: the server stopped")
                    finally:
                        self.claims.release(COMBINE, recording_id)
        except Exception as exc:  # noqa: BLE001 - Redis away at start: the jobs stay as they are, the server starts
            logger.warning("combine jobs left by stopped processes not cleared (%s)", exc)
        self._worker = asyncio.create_task(self._work(), name="recording-combiner")

    async def close(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker

    async def submit(self, recording_id: str, actor: str | None) -> AdminState:
        manifest = self.catalogue.get(recording_id)
        if manifest.state == "recording":
            raise CombineRefused("the recording is still running")
        if manifest.duration is None or not manifest.tracks:
            raise CombineRefused("the recording has no tracks to combine")

        if not self.claims.claim(COMBINE, recording_id):
            raise CombineRefused("a combined file is already being made, or the recording is being deleted")

        def queue(state: AdminState) -> AdminState:
            if state.combine.busy:  # left so by a stopped process: cleared at the next start
                raise CombineRefused("a combined file is already being made")
            return state.model_copy(update={"combine": CombineJob(state="queued", requested_by=actor)})

        try:
            state = await self.states.update(recording_id, queue)
        except BaseException:
            self.claims.release(COMBINE, recording_id)
            raise
        self._queue.put_nowait(recording_id)
        return state

    async def _work(self) -> None:
        while True:
            recording_id = await self._queue.get()
            try:
                await self._combine(recording_id)
            except asyncio.CancelledError:
                with contextlib.suppress(NotFound):
                    await self._finish(recording_id, "failed", error="interrupted: the server stopped")
                raise
            except Exception as exc:  # one bad recording must not stop the queue
                logger.exception("combining recording %s failed", recording_id)
                with contextlib.suppress(NotFound):
                    await self._finish(recording_id, "failed", error=str(exc) or type(exc).__name__)
            finally:
                self._release(recording_id)

    def _release(self, recording_id: str) -> None:
        try:
            self.claims.release(COMBINE, recording_id)
        except Exception as exc:  # noqa: BLE001 - Redis away: the claim lapses when this process is gone
            logger.warning("combine job of recording %s not released (%s)", recording_id, exc)

    async def _combine(self, recording_id: str) -> None:
        manifest = self.catalogue.get(recording_id)
        started = time.monotonic()
        await self.states.update(recording_id, lambda s: _job(s, state="running", started_at=_now(), progress=0.0))
        fds: list[int] = []
        try:
            tracks = []
            for track in manifest.tracks:
                try:
                    fds.append(self.catalogue.files.open(recording_id, track.file))
                except NotFound:
                    logger.warning("recording %s: track %s is missing, left out", recording_id, track.file)
                    continue
                tracks.append((track, f"/dev/fd/{fds[-1]}"))
            if not tracks:
                raise CombineRefused("no track file could be read")
            await self._run_ffmpeg(recording_id, manifest, tracks, fds)
        finally:
            for fd in fds:
                os.close(fd)
        await self._finish(recording_id, "done")
        logger.info("recording %s combined in %.1f s", recording_id, time.monotonic() - started)

    async def _run_ffmpeg(
        self, recording_id: str, manifest: Manifest, tracks: list[tuple[Track, str]], fds: list[int]
    ) -> None:
        """Run ffmpeg into a temporary file that becomes ``combined.webm`` only if ffmpeg succeeds."""
        duration = manifest.duration or 0.0
        with self.catalogue.files.create(recording_id, COMBINED) as output:
            args = ffmpeg_arguments(tracks, duration, f"/dev/fd/{output}")
            process = await asyncio.create_subprocess_exec(
                "nice", "-n", "19", self.ffmpeg, *args,
                stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
                pass_fds=[*fds, output],
            )  # fmt: skip
            assert process.stdout is not None and process.stderr is not None
            stderr = asyncio.create_task(process.stderr.read())
            try:
                async with asyncio.timeout(TIME_LIMIT_BASE + TIME_LIMIT_FACTOR * duration):
                    await self._follow_progress(recording_id, process.stdout, duration)
                    code = await process.wait()
            except BaseException as exc:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await process.wait()
                if isinstance(exc, TimeoutError):
                    raise RuntimeError("ffmpeg did not finish in time and was stopped") from None
                raise
            message = (await stderr).decode(errors="replace").strip()
            if code != 0:  # raising inside the block discards the temporary file
                raise RuntimeError(f"ffmpeg exited with {code}: {message.splitlines()[-1] if message else ''}")

    async def _follow_progress(self, recording_id: str, stdout: asyncio.StreamReader, duration: float) -> None:
        last_write = 0.0
        async for raw in stdout:
            key, _, value = raw.decode(errors="replace").strip().partition("=")
            if key != "out_time_us" or not value.lstrip("-").isdigit() or duration <= 0:
                continue
            if time.monotonic() - last_write >= _PROGRESS_EVERY:
                last_write = time.monotonic()
                percent = round(min(99.0, max(0.0, int(value) / 1e6 / duration * 100)), 1)
                await self.states.update(recording_id, lambda s, p=percent: _job(s, progress=p))

    async def _finish(self, recording_id: str, outcome: str, error: str | None = None) -> None:
        progress = {"progress": 100.0} if outcome == "done" else {}
        await self.states.update(
            recording_id, lambda s: _job(s, state=outcome, finished_at=_now(), error=error, **progress)
        )


def _job(admin: AdminState, **changes: object) -> AdminState:
    return admin.model_copy(update={"combine": admin.combine.model_copy(update=changes)})
