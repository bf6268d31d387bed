"""files: only well-formed names of regular files inside a real recording directory, never anything else."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest
from recordings_support import RecordingMaker

from signaling.recordings.files import ADMIN, COMBINED, MANIFEST, NotFound, RecordingFiles


def read_fd(fd: int) -> bytes:
    with os.fdopen(fd, "rb") as file:
        return file.read()


def test_opens_tracks_and_manifest(maker: RecordingMaker) -> None:
    rid = maker.make()
    files = RecordingFiles(maker.root)
    track = maker.track(rid)
    assert read_fd(files.open(rid, track)) == (maker.root / rid / track).read_bytes()
    assert files.read(rid, MANIFEST) == (maker.root / rid / MANIFEST).read_bytes()
    assert files.ids() == [rid]


@pytest.mark.parametrize(
    "recording_id, name",
    [
        ("..", MANIFEST),
        ("../recordings", MANIFEST),
        ("{rid}/..", MANIFEST),
        ("/etc", "passwd"),
        ("{rid}", "../../secret.txt"),
        ("{rid}", "/etc/passwd"),
        ("{rid}", "manifest.tmp"),
        ("{rid}", "notes.txt"),
        ("{rid}", "{track}/x"),
        ("{rid}", "{track}\n"),
        ("{rid}\n", MANIFEST),
        ("20261123T193000Z-guessed-abcdef", MANIFEST),
    ],
)
def test_refuses_what_is_not_a_recording_file(maker: RecordingMaker, recording_id: str, name: str) -> None:
    rid = maker.make()
    (maker.root.parent / "secret.txt").write_text("secret")
    (maker.root / rid / "notes.txt").write_text("not a track")
    fill = {"rid": rid, "track": maker.track(rid)}
    with pytest.raises(NotFound):
        RecordingFiles(maker.root).open(recording_id.format(**fill), name.format(**fill))


def test_refuses_symlinks_fifos_and_directories(maker: RecordingMaker, tmp_path: Path) -> None:
    rid = maker.make()
    outside = tmp_path / "outside.webm"
    outside.write_bytes(b"outside the recordings directory")
    directory = maker.root / rid
    track = maker.track(rid)
    (directory / track).unlink()
    (directory / track).symlink_to(outside)  # a listed track name that points outside
    os.mkfifo(directory / "0123456789ab-audio-7.webm")  # would block a plain open()
    (directory / "0123456789ab-video-7.webm").mkdir()
    (directory / COMBINED).symlink_to(outside)
    files = RecordingFiles(maker.root)
    for name in (track, "0123456789ab-audio-7.webm", "0123456789ab-video-7.webm", COMBINED):
        with pytest.raises(NotFound):
            files.open(rid, name)


def test_a_symlinked_recording_directory_is_invisible(maker: RecordingMaker, tmp_path: Path) -> None:
    real = maker.make()
    elsewhere = tmp_path / "elsewhere"
    (maker.root / real).rename(elsewhere)
    (maker.root / real).symlink_to(elsewhere, target_is_directory=True)
    files = RecordingFiles(maker.root)
    assert files.ids() == []
    with pytest.raises(NotFound):
        files.open(real, MANIFEST)


def test_create_replaces_a_planted_symlink_without_following_it(maker: RecordingMaker, tmp_path: Path) -> None:
    rid = maker.make()
    victim = tmp_path / "victim.txt"
    victim.write_text("untouched")
    (maker.root / rid / COMBINED).symlink_to(victim)
    files = RecordingFiles(maker.root)
    with files.create(rid, COMBINED) as fd:
        os.write(fd, b"combined")
    assert victim.read_text() == "untouched"
    assert not (maker.root / rid / COMBINED).is_symlink()
    assert files.read(rid, COMBINED) == b"combined"


def test_create_discards_the_temporary_file_on_failure(maker: RecordingMaker) -> None:
    rid = maker.make()
    files = RecordingFiles(maker.root)
    before = sorted(p.name for p in (maker.root / rid).iterdir())
    with pytest.raises(RuntimeError), files.create(rid, COMBINED) as fd:
        os.write(fd, b"half")
        raise RuntimeError("ffmpeg failed")
    assert sorted(p.name for p in (maker.root / rid).iterdir()) == before


def test_only_signaling_files_are_written(maker: RecordingMaker) -> None:
    rid = maker.make()
    files = RecordingFiles(maker.root)
    files.replace(rid, ADMIN, b"{}")
    assert files.read(rid, ADMIN) == b"{}"
    for name in (MANIFEST, maker.track(rid)):
        with pytest.raises(ValueError):
            files.replace(rid, name, b"{}")


def test_remove_deletes_the_recording_but_nothing_a_link_points_to(maker: RecordingMaker, tmp_path: Path) -> None:
    rid, other = maker.make(), maker.make()
    victim = tmp_path / "victim.txt"
    victim.write_text("untouched")
    (maker.root / rid / "link").symlink_to(victim)
    files = RecordingFiles(maker.root)
    files.remove(rid)
    assert files.ids() == [other]
    assert victim.read_text() == "untouched"
    assert sorted(p.name for p in maker.root.iterdir()) == [other]


def test_remove_succeeds_while_another_process_purges_removed_recordings(maker: RecordingMaker) -> None:
    """Every process of a cluster purges leftover deletions when it sweeps, including one another process is still
    removing: that removal must still count as done (it failed, unaudited and unfinished, in a CI run)."""
    files, purger = RecordingFiles(maker.root), RecordingFiles(maker.root)
    failures = []
    for _ in range(5):
        rid = maker.make()
        for i in range(300):
            (maker.root / rid / f"part-{i}.bin").write_bytes(b"x")
        purging = threading.Event()
        stop = threading.Event()

        def purge() -> None:
            purging.set()
            while not stop.is_set():
                purger.purge_removed()

        thread = threading.Thread(target=purge)
        thread.start()
        purging.wait()
        try:
            files.remove(rid)
        except OSError as exc:
            failures.append(repr(exc))
        finally:
            stop.set()
            thread.join()
        assert rid not in files.ids()
    purger.purge_removed()
    assert failures == []
    assert list(maker.root.iterdir()) == []
