"""The ``hoichan serve`` command line: ``--role`` and what it needs."""

from __future__ import annotations

import subprocess
import sys

from support import ROOT


def test_a_media_or_signaling_role_without_redis_is_refused_at_start() -> None:
    for role in ("media", "signaling"):
        done = subprocess.run([sys.executable, "-m", "signaling.cli", "serve", "--role", role], cwd=ROOT,
                              capture_output=True, text=True, timeout=60,
                              env={"PATH": "/usr/bin:/bin", "HOME": str(ROOT)})
        assert done.returncode == 2
        assert done.stderr.strip() == (f"config error: cluster.redis_url: required when role is {role} "
                                       "(signaling and media nodes meet in Redis)")


def test_an_unknown_role_is_refused() -> None:
    done = subprocess.run([sys.executable, "-m", "signaling.cli", "serve", "--role", "edge"], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "invalid choice: 'edge'" in done.stderr
