"""Recordings jobs across real signaling processes on one Redis and one recordings directory: started together,
both sweep retention at start, yet each expired recording is deleted once and audited once; a manual delete is
refused while another process holds the recording's combine job; a combine requested through both at once is accepted
by one, refused by the other, and run once. With Redis unreachable, combine and delete requests answer
service-degraded and nothing changes."""

from __future__ import annotations

import asyncio
import datetime
from pathlib import Path

from cluster_support import Cluster, PrivateRedis, needs_redis, needs_redis_server
from recordings_support import RecordingMaker, make_clips
from support import Server, wait_for

pytestmark = needs_redis

OLD = datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=40)


async def start_together(cluster: Cluster, count: int) -> list[Server]:
    """Signaling processes started at the same moment (their start-up sweeps overlap)."""
    servers = []
    for n in range(count):
        directory = cluster.tmp / f"signaling-{n}"
        directory.mkdir()
        servers.append(Server(directory, env={**cluster.env, "HOICHAN_CLUSTER__ROLE": "signaling"}))
    cluster.signaling.extend(servers)
    await asyncio.gather(*(asyncio.to_thread(server.start) for server in servers))
    return servers


async def test_retention_deletes_once_and_a_combine_runs_once(tmp_path: Path) -> None:
    clips = tmp_path / "clips"
    clips.mkdir()
    maker = RecordingMaker(tmp_path / "recordings", make_clips(clips))
    expired = sorted(maker.make(started=OLD) for _ in range(6))
    kept = maker.make()
    cluster = Cluster(tmp_path, "redis://127.0.0.1:6379/0", extra={"HOICHAN_RECORDING__RETENTION_DAYS": "30"})
    try:
        sig_a, sig_b = await start_together(cluster, 2)
        await wait_for(lambda: sorted(p.name for p in maker.root.iterdir()) == [kept], timeout=20)
        client = cluster.redis()
        try:  # both have swept: each has stamped its claims, or found them done
            await wait_for(lambda: all(client.get(f"{cluster.prefix}job:delete:{rid}") == b"done"
                                       for rid in expired), timeout=10)
        finally:
            client.close()
        await asyncio.sleep(1.0)  # a second sweep deleting again would have audited by now
        for server in (sig_a, sig_b):
            status, audit = await server.get("/api/audit?limit=1000", user="admin")
            assert status == 200, audit
            deletes = sorted(e["recording"] for e in audit["entries"] if e["action"] == "retention-delete")
            assert deletes == expired, audit

        token_a, token_b = await sig_a.login("admin"), await sig_b.login("admin")
        # a combine of it held by a (third, live) process: a manual delete through A is refused, nothing deleted
        client = cluster.redis()
        try:
            client.set(f"{cluster.prefix}process:sig-c:alive", 1, ex=60)
            client.set(f"{cluster.prefix}job:combine:{kept}", "sig-c", ex=60)
            status, body = await sig_a.request("DELETE", f"/api/recordings/{kept}", token_a, json={"confirm": kept})
            assert (status, body["error"]["code"]) == (409, "kept") and "combined" in body["error"]["message"], body
            assert (maker.root / kept).is_dir() and not client.exists(f"{cluster.prefix}job:delete:{kept}")
            client.delete(f"{cluster.prefix}job:combine:{kept}")
        finally:
            client.close()
        path = f"/api/recordings/{kept}/combine"
        answers = await asyncio.gather(sig_a.request("POST", path, token_a), sig_b.request("POST", path, token_b))
        assert sorted(status for status, _ in answers) == [202, 409], answers
        refused = next(body for status, body in answers if status == 409)
        assert refused["error"]["code"] == "combine-refused", refused

        async def combine_state() -> str:
            _, body = await sig_b.get(f"/api/recordings/{kept}", user="admin")
            return str(body["admin"]["combine"]["state"])

        deadline = asyncio.get_running_loop().time() + 120
        while (state := await combine_state()) in ("queued", "running"):
            assert asyncio.get_running_loop().time() < deadline, "combine did not finish"
            await asyncio.sleep(0.5)
        assert state == "done"
        assert [p.name for p in (maker.root / kept).iterdir() if p.name.startswith("combined")] == ["combined.webm"]
        _, audit = await sig_a.get(f"/api/audit?recording={kept}", user="admin")
        assert sorted(e["status"] for e in audit["entries"] if e["action"] == "combine") == [202, 409], audit
    finally:
        cluster.stop()


@needs_redis_server
async def test_with_redis_gone_combine_and_delete_are_refused_as_degraded(tmp_path: Path) -> None:
    clips = tmp_path / "clips"
    clips.mkdir()
    maker = RecordingMaker(tmp_path / "recordings", make_clips(clips))
    rid = maker.make()
    (tmp_path / "redis").mkdir()
    private = PrivateRedis(tmp_path / "redis")
    private.start()
    cluster = Cluster(tmp_path, private.url)
    try:
        sig = cluster.add_signaling()
        token = await sig.login("admin")
        private.stop()
        for method, path, body in (("POST", f"/api/recordings/{rid}/combine", None),
                                   ("DELETE", f"/api/recordings/{rid}", {"confirm": rid})):
            status, answer = await sig.request(method, path, token, json=body)
            assert (status, answer["error"]["code"]) == (503, "service-degraded"), (method, answer)
        assert (maker.root / rid).is_dir() and not (maker.root / rid / "admin.json").exists()
    finally:
        cluster.stop()
        private.stop()
