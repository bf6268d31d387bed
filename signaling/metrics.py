"""``GET /metrics`` in the Prometheus text format, on every process (signaling, media node, or both).

Two kinds of metrics end up on the page:

* Process-wide ones, declared once at import on prometheus_client's default registry, as any module may::

      from prometheus_client import Histogram
      DISPATCH = Histogram("hoichan_dispatch_seconds", "Time from a consult's call to its first answer")
      DISPATCH.observe(12.5)

  (prometheus_client also puts ``process_cpu_seconds_total``, memory and file descriptors there.)
* Per-application gauges read at scrape time from live state (rooms, participants, streams...), registered with
  ``AppMetrics.gauge``: an application's own registry, so that tests may build several applications in one process.

Access: signed-in admins, or a scraper with ``Authorization: Bearer <metrics.token>``. No room, participant or
person appears in a label: only counts.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import prometheus_client
from aiohttp import web
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector, CollectorRegistry

from .auth import require
from .config import Config

Reading = float | dict[tuple[str, ...], float]
GRADES = ("excellent", "good", "poor", "lost")
LINK_SAMPLE_FRESH = 10.0  # seconds a participant's last link-quality sample counts (samples come every 2 s)


class AppMetrics(Collector):
    """Gauges of one application, each read through a function when scraped."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self._gauges: list[tuple[str, str, tuple[str, ...], Callable[[], Reading]]] = []
        self.registry.register(self)

    def gauge(self, name: str, documentation: str, read: Callable[[], Reading], labels: tuple[str, ...] = ()) -> None:
        """``read`` returns a number, or with ``labels`` a mapping from label values to numbers."""
        self._gauges.append((name, documentation, labels, read))

    def collect(self) -> Iterator[GaugeMetricFamily]:
        for name, documentation, labels, read in self._gauges:
            family = GaugeMetricFamily(name, documentation, labels=list(labels) if labels else None)
            value = read()
            if isinstance(value, dict):
                for label_values, number in value.items():
                    family.add_metric(list(label_values), number)
            else:
                family.add_metric([], value)
            yield family

    def render(self) -> bytes:
        return prometheus_client.generate_latest(prometheus_client.REGISTRY) + prometheus_client.generate_latest(
            self.registry
        )


class LinkStats:
    """The last ``link-quality`` sample of each participant whose media runs here: grades and bitrates."""

    def __init__(self) -> None:
        self._last: dict[str, tuple[float, dict[str, Any]]] = {}

    async def observe(self, participant_id: str, event: str, payload: dict[str, Any]) -> None:
        if event == "link-quality":
            self._last[participant_id] = (time.monotonic(), payload)

    def _fresh(self) -> list[dict[str, Any]]:
        cutoff = time.monotonic() - LINK_SAMPLE_FRESH
        for participant_id in [p for p, (at, _) in self._last.items() if at < cutoff]:
            del self._last[participant_id]  # left, or its media moved to another node
        return [payload for _, payload in self._last.values()]

    def grades(self) -> dict[tuple[str, ...], float]:
        samples = self._fresh()
        return {(grade,): float(sum(1 for s in samples if s.get("grade") == grade)) for grade in GRADES}

    def bitrate(self) -> dict[tuple[str, ...], float]:
        samples = self._fresh()
        return {("up",): float(sum(s.get("sendKbps") or 0 for s in samples)),
                ("down",): float(sum(s.get("recvKbps") or 0 for s in samples))}


def add_media_gauges(metrics: AppMetrics, stats: Callable[[], dict[str, Any]], links: LinkStats,
                     cpu: Callable[[], float]) -> None:
    """What a process that runs media reports: rooms, participants, streams, bitrate, CPU, link grades."""
    metrics.gauge("hoichan_media_rooms", "Rooms whose media runs in this process (or its workers)",
                  lambda: float(stats()["rooms"]))
    metrics.gauge("hoichan_media_participants", "Participants with a media session here",
                  lambda: float(stats()["participants"]))
    metrics.gauge("hoichan_media_forwarded_streams", "Consumers: one participant's track forwarded to another",
                  lambda: float(stats()["forwarded_streams"]))
    metrics.gauge("hoichan_media_bitrate_kbps", "Participants' media bitrate as measured by the relay, kbit/s; "
                  "up = participants to server", links.bitrate, labels=("direction",))
    metrics.gauge("hoichan_media_link_grade_participants", "Participants by their current link-quality grade",
                  links.grades, labels=("grade",))
    metrics.gauge("hoichan_media_cpu_percent", "CPU of this process and its media workers, % of one core", cpu)


def add_route(app: web.Application, config: Config, metrics: AppMetrics) -> None:
    scrape_token = config.metrics.token

    @require("admin", token=lambda request: scrape_token)
    async def serve_metrics(request: web.Request) -> web.Response:
        return web.Response(body=metrics.render(), headers={"Content-Type": prometheus_client.CONTENT_TYPE_LATEST})

    app.router.add_get("/metrics", serve_metrics)
