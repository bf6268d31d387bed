"""The only place where a recording id or a file name becomes a file: nothing outside the directory, ever.

Why file descriptors rather than paths: a path checked and then opened can be swapped for a symlink in between.
Every open here goes root → recording directory → file with ``dir_fd`` and ``O_NOFOLLOW`` at each step, ids and
names must match docs/recordings.md's patterns (no ``/``, no ``..``), and only regular files are handed out.
Whatever is wrong (malformed, missing, a symlink, a directory, a FIFO) is the same ``NotFound``, so a caller
answers 404 and a prober learns nothing. The root itself comes from the configuration and is trusted.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import stat
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

__all__ = ["ADMIN", "COMBINED", "MANIFEST", "RECORDING_ID", "TRACK_NAME", "NotFound", "RecordingFiles"]

RECORDING_ID = re.compile(r"[0-9]{8}T[0-9]{6}Z-[A-Za-z0-9_-]{1,64}-[a-z0-9]{6}")
TRACK_NAME = re.compile(r"[0-9a-f]{12}-(audio|video)-[0-9]+\.(webm|mkv)")
MANIFEST = "manifest.json"
ADMIN = "admin.json"
COMBINED = "combined.webm"
_DELETED_PREFIX = ".deleted-"
_READ = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC  # O_NONBLOCK: a planted FIFO must not hang us
_DIRECTORY = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class NotFound(Exception):
    """No such recording or file, or one that must not be served; always answered as 404."""


def _readable(name: str) -> bool:
    return name in (MANIFEST, ADMIN, COMBINED) or TRACK_NAME.fullmatch(name) is not None


class RecordingFiles:
    def __init__(self, root: Path) -> None:
        self.root = root

    def ids(self) -> list[str]:
        """Ids of the recording directories present (real directories with a well-formed name), sorted."""
        try:
            entries = list(os.scandir(self.root))
        except FileNotFoundError:
            return []
        return sorted(
            e.name for e in entries if RECORDING_ID.fullmatch(e.name) and e.is_dir(follow_symlinks=False)
        )

    @contextmanager
    def _directory(self, recording_id: str) -> Iterator[int]:
        if not RECORDING_ID.fullmatch(recording_id):
            raise NotFound(recording_id)
        try:
            root = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except FileNotFoundError:
            raise NotFound(recording_id) from None
        try:
            directory = os.open(recording_id, _DIRECTORY, dir_fd=root)
        except OSError:  # ENOENT, ELOOP (a symlink), ENOTDIR
            raise NotFound(recording_id) from None
        finally:
            os.close(root)
        try:
            yield directory
        finally:
            os.close(directory)

    def open(self, recording_id: str, name: str) -> int:
        """A read-only descriptor of a regular file in the recording; the caller closes it."""
        if not _readable(name):
            raise NotFound(name)
        with self._directory(recording_id) as directory:
            try:
                fd = os.open(name, _READ, dir_fd=directory)
            except OSError:
                raise NotFound(name) from None
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise NotFound(name)
        return fd

    def stat(self, recording_id: str, name: str) -> os.stat_result:
        fd = self.open(recording_id, name)
        try:
            return os.fstat(fd)
        finally:
            os.close(fd)

    def read(self, recording_id: str, name: str) -> bytes:
        with os.fdopen(self.open(recording_id, name), "rb") as file:
            return file.read()

    def replace(self, recording_id: str, name: str, data: bytes) -> None:
        """Write ``admin.json`` whole and durably: a crash leaves the old or the new content, never half."""
        if name != ADMIN:
            raise ValueError(f"signaling does not write {name}")
        with self.create(recording_id, name) as fd:
            os.write(fd, data)

    @contextmanager
    def create(self, recording_id: str, name: str) -> Iterator[int]:
        """A descriptor of a new temporary file that replaces ``name`` if the block ends normally, else vanishes.

        Only the files signaling owns (``admin.json``, ``combined.webm``) can be made; a symlink planted under
        the final name is replaced, never followed.
        """
        if name not in (ADMIN, COMBINED):
            raise ValueError(f"signaling does not write {name}")
        with self._directory(recording_id) as directory:
            temp = f".{name}.{secrets.token_hex(4)}.tmp"
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o640,
                         dir_fd=directory)
            try:
                yield fd
                os.fsync(fd)
                os.replace(temp, name, src_dir_fd=directory, dst_dir_fd=directory)
                os.fsync(directory)
            except BaseException:
                with suppress(OSError):
                    os.unlink(temp, dir_fd=directory)
                raise
            finally:
                os.close(fd)

    def remove(self, recording_id: str) -> None:
        """Delete a recording: first renamed out of sight (one atomic step: the recording is gone from then on), then
        its files removed, a share of which another process's ``purge_removed`` may remove meanwhile."""
        with self._directory(recording_id):
            pass  # exists and is a real directory
        doomed = f"{_DELETED_PREFIX}{recording_id}-{secrets.token_hex(4)}"
        os.rename(self.root / recording_id, self.root / doomed)
        # fd-based on Linux: never follows a symlink out of the tree; what is left goes at the next purge
        shutil.rmtree(self.root / doomed, ignore_errors=True)

    def purge_removed(self) -> None:
        """Finish deletions that a crash interrupted between the rename and the last file."""
        with suppress(FileNotFoundError):
            for entry in os.scandir(self.root):
                if entry.name.startswith(_DELETED_PREFIX) and entry.is_dir(follow_symlinks=False):
                    shutil.rmtree(entry.path, ignore_errors=True)
