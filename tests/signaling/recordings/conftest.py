"""Fixtures for the recordings tests: clips made once per run, and a maker of recording directories."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from recordings_support import RecordingMaker, make_clips


@pytest.fixture(scope="session")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg is not installed")
    return make_clips(tmp_path_factory.mktemp("clips"))


@pytest.fixture
def maker(tmp_path: Path, clips: dict[str, Path]) -> RecordingMaker:
    return RecordingMaker(tmp_path / "recordings", clips)
