"""Dashboard benchmark: how long ``GET /api/points`` spends reading link-test history for a whole network.

Usage: ``.venv/bin/python bench/points_dashboard.py [--points 1500] [--tests 30]``. Prints a Markdown table.

An admin's dashboard reads the last 10 results of every connection point. A stored result carries its ping series
and ramp steps (about 3 KB of JSON); the dashboard needs a tenth of it. This fills a fresh store with ``--tests``
results for each of ``--points`` points and times, over every point, the brief read the dashboard uses
(``LinkTestHistory.recent``: SQLite picks the fields) against parsing the full results (``of_point``).
Target: the whole network's dashboard within 1 s on a loaded two-core machine.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the package, not bench/signaling.py beside this script

from signaling.linktests.history import LinkTestHistory  # noqa: E402
from signaling.points_api import TREND_LENGTH  # noqa: E402
from signaling.store import connect  # noqa: E402


def stored(point: str, at: float) -> dict[str, Any]:
    """A result of the size the service stores: 200 pings and six ramp steps each way."""
    steps = [{"offered_kbps": 100.0 * 2**i, "received_kbps": 98.0 * 2**i, "sustained_kbps": None, "rtt_ms": 41.0}
             for i in range(6)]
    return {
        "id": uuid.uuid4().hex, "pointId": point, "pointLabel": "Phòng hội chẩn", "facilityId": "f", "startedBy": "ktv",
        "startedAt": at, "finishedAt": at + 15, "status": "complete", "stoppedIn": None, "stopReason": None,
        "paths": [{"path": "udp", "ok": True, "status": "ok", "connectMs": 48.0}], "measuredOn": "udp",
        "rttMs": 41.2, "jitterMs": 1.3, "loss": 0.0, "lossDown": 0.0, "lossUp": 0.0, "downKbps": 2900.0,
        "upKbps": 1400.0, "downAtLeast": False, "upAtLeast": False,
        "details": {"pings": [[n, 41.0 + n % 7 * 0.3] for n in range(200)], "downSteps": steps, "upSteps": steps},
        "verdict": {"tier": "720p", "carries": {"vi": "Video HD 720p và âm thanh", "en": "HD video (720p) and audio"},
                    "reasons": []},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=1500)
    parser.add_argument("--tests", type=int, default=30)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        history = LinkTestHistory(connect(Path(tmp)))
        points = [f"point-{n}" for n in range(args.points)]
        for point in points:
            for k in range(args.tests):
                history.add(stored(point, 1.7e9 + 86400 * k))
        print(f"| read, {args.points} points × last {TREND_LENGTH} of {args.tests} | ms total | ms per point |")
        print("|---|---|---|")
        for name, read in (("brief (`recent`, the dashboard)", history.recent),
                           ("full results (`of_point`)", history.of_point)):
            start = time.perf_counter()
            for point in points:
                read(point, TREND_LENGTH)
            took = time.perf_counter() - start
            print(f"| {name} | {took * 1000:.0f} | {took * 1000 / args.points:.2f} |")


if __name__ == "__main__":
    main()
