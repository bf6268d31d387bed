"""Connection points' caps in Redis read as the embedded store reads them: put, replace, get, delete."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cluster_support import Scratch, needs_redis, scratch  # noqa: F401 - a fixture

from cluster.point_caps import RedisCaps
from signaling.caps.store import CapsRecords, CapsStore
from signaling.store import connect

pytestmark = needs_redis


def steps(caps: CapsRecords) -> list[Any]:
    """Each step's answer, without ``setAt`` (the clock differs between the two runs)."""
    def plain(found: dict[str, Any] | None) -> dict[str, Any] | None:
        return None if found is None else {k: v for k, v in found.items() if k != "setAt"}

    out: list[Any] = [plain(caps.get("ttyt-muong-te-hc1"))]
    out.append(plain(caps.put("ttyt-muong-te-hc1", 300, None, False, "ktv.lan")))
    out.append(plain(caps.put("ttyt-muong-te-hc1", None, 800, True, "quantri")))  # replaces all of it
    out.append(plain(caps.put("bv-bach-mai-hc1", 2000, 3000, False, "quantri")))
    out.append(plain(caps.get("ttyt-muong-te-hc1")))
    out.append(caps.delete("bv-bach-mai-hc1"))
    out.append(caps.delete("bv-bach-mai-hc1"))
    out.append(plain(caps.get("bv-bach-mai-hc1")))
    return out


def test_caps_read_the_same_through_both_backends(tmp_path: Path, scratch: Scratch) -> None:
    clustered = steps(RedisCaps(scratch.redis, scratch.keys))
    assert clustered == steps(CapsStore(connect(tmp_path)))
    assert clustered[4] == {"uplinkKbps": None, "downlinkKbps": 800, "audioOnly": True, "setBy": "quantri"}
    assert clustered[5:] == [True, False, None]
    stored = RedisCaps(scratch.redis, scratch.keys).get("ttyt-muong-te-hc1")
    assert stored is not None and isinstance(stored["setAt"], float)
