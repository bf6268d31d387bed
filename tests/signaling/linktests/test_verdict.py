"""Verdicts on known figures: the tier a link can carry and the advice, in both languages."""

from __future__ import annotations

from typing import Any

import pytest

from signaling.linktests.verdict import VerdictContext, verdict

UDP_OK = [{"path": "udp", "ok": True}]


def figures(down: float | None = 3000, up: float | None = 3000, rtt: float = 20, jitter: float = 2,
            loss: float = 0.0, paths: list[dict[str, Any]] | None = None, **more: Any) -> dict[str, Any]:
    return {"status": "complete", "paths": UDP_OK if paths is None else paths, "measuredOn": "udp", "rttMs": rtt,
            "jitterMs": jitter, "loss": loss, "down": None if down is None else {"kbps": down},
            "up": None if up is None else {"kbps": up}, **more}


def codes(answer: dict[str, Any]) -> list[str]:
    return [r["code"] for r in answer["reasons"]]


@pytest.mark.parametrize(("down", "up", "tier"), [
    (3000, 3000, "720p"), (1250, 5000, "720p"), (3000, 1100, "360p"), (450, 3000, "360p"), (300, 300, "180p"),
    (3000, 120, "audio"), (100, 3000, "audio"), (30, 3000, "none"),
])
def test_the_weaker_direction_sets_the_tier(down: float, up: float, tier: str) -> None:
    answer = verdict(figures(down, up), VerdictContext())
    assert answer["tier"] == tier
    assert answer["carries"]["vi"] and answer["carries"]["en"]


def test_upload_below_150_says_audio_only() -> None:
    answer = verdict(figures(up=120), VerdictContext())
    assert codes(answer) == ["up-low"]
    assert answer["reasons"][0]["en"] == "Upload 120 kbit/s, below 150 kbit/s: audio only."
    assert "dưới 150 kbit/s: chỉ đủ âm thanh" in answer["reasons"][0]["vi"]
    assert verdict(figures(up=20), VerdictContext())["reasons"][0]["severity"] == "error"


def test_loss_jitter_and_delay() -> None:
    assert verdict(figures(loss=0.05), VerdictContext())["tier"] == "360p"  # 3-10 %: one tier down
    lossy = verdict(figures(loss=0.12), VerdictContext())
    assert lossy["tier"] == "audio" and codes(lossy) == ["loss-high"] and lossy["reasons"][0]["severity"] == "error"
    assert verdict(figures(loss=0.02), VerdictContext())["reasons"] == []
    jittery = verdict(figures(jitter=45), VerdictContext())
    assert jittery["tier"] == "360p" and codes(jittery) == ["jitter-high"]
    far = verdict(figures(rtt=320), VerdictContext())
    assert far["tier"] == "720p" and codes(far) == ["rtt-high"] and far["reasons"][0]["severity"] == "warning"
    assert verdict(figures(rtt=450), VerdictContext())["reasons"][0]["severity"] == "error"
    assert verdict(figures(down=300, up=300, loss=0.05, jitter=40), VerdictContext())["tier"] == "audio"


def test_udp_blocked_without_turn_names_the_ports_and_turn_over_tls() -> None:
    paths = [{"path": "udp", "ok": False}]
    answer = verdict(figures(None, None, paths=paths), VerdictContext(udp_ports=(40000, 40100)))
    assert answer["tier"] == "none" and codes(answer) == ["udp-blocked"]
    assert "open UDP ports 40000-40100" in answer["reasons"][0]["en"]
    assert "TURN over TLS on port 443" in answer["reasons"][0]["en"]
    assert "mở cổng UDP 40000-40100" in answer["reasons"][0]["vi"]


def test_udp_blocked_with_turn_working_is_a_warning_and_the_turn_path_is_measured() -> None:
    paths = [{"path": "udp", "ok": False}, {"path": "turn-udp", "ok": False}, {"path": "turn-tls", "ok": True}]
    answer = verdict(figures(paths=paths, measuredOn="turn-tls"), VerdictContext(turn_configured=True))
    assert answer["tier"] == "720p" and codes(answer) == ["udp-blocked"]
    assert answer["reasons"][0]["severity"] == "warning" and "TURN over TLS" in answer["reasons"][0]["en"]


def test_nothing_connects_even_through_turn() -> None:
    paths = [{"path": p, "ok": False} for p in ("udp", "turn-udp", "turn-tcp", "turn-tls")]
    answer = verdict(figures(None, None, paths=paths), VerdictContext(turn_configured=True))
    assert answer["tier"] == "none" and codes(answer) == ["udp-blocked", "turn-failed"]
    assert "TCP port 443" in answer["reasons"][1]["en"]


def test_a_partial_test_says_where_it_stopped_and_claims_no_tier_it_did_not_measure() -> None:
    partial = figures(down=2500, up=None, status="partial", stoppedIn="up", stopReason="client-left")
    answer = verdict(partial, VerdictContext())
    assert answer["tier"] == "unknown" and codes(answer) == ["incomplete"]
    assert "while measuring upload" in answer["reasons"][0]["en"] and "disconnected" in answer["reasons"][0]["en"]
    lost_early = {"status": "partial", "stoppedIn": None, "stopReason": "media-stopped", "paths": []}
    assert verdict(lost_early, VerdictContext())["tier"] == "unknown"


def test_forged_receipts_reject_the_result() -> None:
    answer = verdict(figures(forged="the receipt does not prove the probes it claims"), VerdictContext())
    assert answer["tier"] == "unknown" and codes(answer) == ["receipt-forged"]
