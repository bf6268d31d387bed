"""GET /metrics on an embedded server (media in worker processes): access, Prometheus format, the counts, and what
other modules register; JSON logs with room ids."""

from __future__ import annotations

import asyncio
import json

import prometheus_client
from prometheus_client.parser import text_string_to_metric_families
from support import PatternVideoTrack, Server, ToneAudioTrack, server_fixture, wait_for

from client.participant import Participant
from signaling.metrics import AppMetrics

TOKEN = "embedded-scrape-token-0123456789"
embedded = server_fixture("metrics", {"HOICHAN_METRICS__TOKEN": TOKEN, "HOICHAN_LOGGING__FORMAT": "json",
                                      "HOICHAN_MEDIA__WORKERS": "1"})


async def scrape(server: Server) -> dict[str, float]:
    status, text = await server.request("GET", "/metrics", token=TOKEN)
    assert status == 200, text
    return {s.name + "".join(f"[{v}]" for _, v in sorted(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


async def test_metrics_count_rooms_participants_streams_and_link_grades(embedded: Server) -> None:
    a, b = (Participant(embedded.url, "metrics-room", n, tracks=[PatternVideoTrack(), ToneAudioTrack()])
            for n in "AB")
    try:
        await a.join()
        await b.join()
        await wait_for(lambda: all((v := x.video_from(y.id or "")) is not None and v.frames > 10
                                   for x, y in ((a, b), (b, a))), 15)
        seen = await scrape(embedded)
        assert seen["hoichan_signaling_rooms"] == 1 and seen["hoichan_signaling_participants"] == 2
        assert seen["hoichan_media_rooms"] == 1 and seen["hoichan_media_participants"] == 2
        assert seen["hoichan_media_forwarded_streams"] == 4
        assert seen["hoichan_media_cpu_percent"] >= 0 and "process_cpu_seconds_total" in seen
        # link-quality samples (every 2 s per participant) give the grades and bitrates
        for _ in range(50):
            seen = await scrape(embedded)
            if sum(seen[f"hoichan_media_link_grade_participants[{g}]"] for g in ("excellent", "good", "poor",
                                                                                   "lost")) == 2:
                break
            await asyncio.sleep(0.2)
        grades = {g: seen[f"hoichan_media_link_grade_participants[{g}]"] for g in ("excellent", "good", "poor", "lost")}
        assert sum(grades.values()) == 2, grades
        assert seen["hoichan_media_bitrate_kbps[up]"] > 100 and seen["hoichan_media_bitrate_kbps[down]"] > 100
    finally:
        await asyncio.gather(a.leave(), b.leave())
    seen = await scrape(embedded)
    assert seen["hoichan_media_rooms"] == 0 and seen["hoichan_signaling_participants"] == 0


async def test_metrics_access(embedded: Server) -> None:
    assert (await embedded.request("GET", "/metrics"))[0] == 401
    assert (await embedded.request("GET", "/metrics", token=TOKEN[:-1] + "x"))[0] == 401
    assert (await embedded.get("/metrics", user="technician"))[0] == 403
    status, text = await embedded.get("/metrics", user="admin")
    assert status == 200 and "hoichan_media_rooms" in text


async def test_json_logs_parse_and_carry_room_ids(embedded: Server) -> None:
    lines = [line for line in embedded.log.read_text().splitlines() if line.strip()]
    entries = [json.loads(line) for line in lines if not line.startswith("Hoichan")]  # the banner is for people
    joined = [e for e in entries if e.get("room_id") == "metrics-room" and "participant_id" in e]
    assert len(joined) >= 2 and all(e["level"] == "INFO" and e["logger"] == "signaling.events" for e in joined)


def test_other_modules_register_their_own_metrics() -> None:
    """A module declares a metric on prometheus_client's registry once; every process's page then shows it."""
    histogram = prometheus_client.Histogram("hoichan_test_dispatch_seconds", "Time to answer a consult (test)")
    try:
        histogram.observe(12.5)
        metrics = AppMetrics()
        metrics.gauge("hoichan_test_rooms", "Rooms (test)", lambda: 3.0)
        metrics.gauge("hoichan_test_grades", "By grade (test)", lambda: {("good",): 2.0}, labels=("grade",))
        families = {f.name: f for f in text_string_to_metric_families(metrics.render().decode())}
        assert families["hoichan_test_dispatch_seconds"].samples[-1].value == 12.5  # _sum
        assert families["hoichan_test_rooms"].samples[0].value == 3
        assert families["hoichan_test_grades"].samples[0].labels == {"grade": "good"}
    finally:
        prometheus_client.REGISTRY.unregister(histogram)
