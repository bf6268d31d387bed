"""TrackWriter on its own: frames reach the file in order, a recorded file is never overwritten."""

from __future__ import annotations

import threading
from pathlib import Path

import av

from media.recording.formats import FORMATS
from media.recording.track import TrackWriter


def _write_opus(path: Path, frames: int) -> TrackWriter:
    ended = threading.Event()
    writer = TrackWriter(path, "audio", FORMATS["audio/opus"], lambda _: ended.set())
    silence = b"\xf8\xff\xfe"  # one Opus frame: 20 ms of silence (TOC 0xf8, CELT fullband)
    for i in range(frames):
        writer.write(silence, i * 960, True)
    writer.close()
    assert ended.wait(10), "the writer thread never ended"
    return writer


def test_frames_written_before_close_are_all_in_the_file(tmp_path: Path) -> None:
    path = tmp_path / "a.webm"
    writer = _write_opus(path, 150)
    assert writer.error is None
    assert writer.frames == 150
    with av.open(str(path)) as container:
        packets = [p for p in container.demux(audio=0) if p.size]
    assert len(packets) == 150
    assert [p.pts for p in packets] == sorted(p.pts for p in packets)


def test_an_existing_recording_is_never_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "a.webm"
    path.write_bytes(b"already recorded")
    writer = _write_opus(path, 10)
    assert writer.error is not None and "a.webm" in writer.error
    assert path.read_bytes() == b"already recorded"
