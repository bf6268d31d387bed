"""A link test's verdict in words: what the link can carry and what to fix, in Vietnamese and English.

Thresholds (DESIGN.md §5, from public pre-call tests): RTT ≥ 200 ms is worth a warning (people talk over each
other); jitter ≥ 30 ms breaks speech up; loss ≥ 3 % shows in video, ≥ 10 % leaves audio only; below 40 kbit/s not
even audio is reliable. What a tier needs, both ways, at the UDP payload rate the test measures: 720p about
1200 kbit/s (VP8 at 30 fps), 360p 400, 180p 150 (so "upload below 150 kbit/s: audio only"), audio 40 (Opus
plus packet headers).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

__all__ = ["NEEDS_KBPS", "TIERS", "Tier", "VerdictContext", "verdict"]

Tier = Literal["720p", "360p", "180p", "audio", "none", "unknown"]
TIERS: tuple[Tier, ...] = ("720p", "360p", "180p", "audio", "none")
"""Best first; ``unknown``: the test stopped before it could tell."""
NEEDS_KBPS: dict[Tier, float] = {"720p": 1200, "360p": 400, "180p": 150, "audio": 40}

RTT_WARN_MS = 200
RTT_BAD_MS = 400
JITTER_BAD_MS = 30
LOSS_WARN = 0.03
LOSS_BAD = 0.10

CARRIES: dict[Tier, tuple[str, str]] = {
    "720p": ("Video HD 720p và âm thanh", "HD video (720p) and audio"),
    "360p": ("Video SD 360p và âm thanh", "SD video (360p) and audio"),
    "180p": ("Video chất lượng thấp (180p) và âm thanh", "low-resolution video (180p) and audio"),
    "audio": ("Chỉ âm thanh: không đủ cho video", "audio only: not enough for video"),
    "none": ("Không kết nối được tới máy chủ media", "cannot connect to the media server"),
    "unknown": ("Chưa xác định: bài kiểm tra không chạy hết", "unknown: the test did not finish"),
}

PATH_NAMES: dict[str, tuple[str, str]] = {
    "udp": ("UDP trực tiếp", "direct UDP"),
    "tcp": ("TCP trực tiếp", "direct TCP"),
    "turn-udp": ("TURN qua UDP", "TURN over UDP"),
    "turn-tcp": ("TURN qua TCP", "TURN over TCP"),
    "turn-tls": ("TURN qua TLS", "TURN over TLS"),
}

STOPPED: dict[str, tuple[str, str]] = {
    "connection-lost": ("kết nối tới máy chủ bị mất", "the connection to the server was lost"),
    "client-left": ("máy kiểm tra đã ngắt kết nối", "the testing computer disconnected"),
    "cancelled": ("người dùng đã hủy", "it was cancelled"),
    "media-stopped": ("máy chủ media đã khởi động lại", "the media server restarted"),
    "timeout": ("quá thời gian", "it took too long"),
    "forged-receipt": ("máy kiểm tra gửi xác nhận sai", "the testing computer sent false receipts"),
    "closed": ("máy chủ đang dừng", "the server was shutting down"),
    "internal": ("lỗi máy chủ", "a server error"),
}

PHASES: dict[str, tuple[str, str]] = {
    "connect": ("kết nối", "connecting"),
    "ping": ("đo độ trễ", "measuring delay"),
    "down": ("đo tốc độ tải xuống", "measuring download"),
    "up": ("đo tốc độ tải lên", "measuring upload"),
    "loss": ("đo tỉ lệ mất gói", "measuring packet loss"),
}


@dataclass(frozen=True)
class VerdictContext:
    """What the advice may name: the server's UDP port range, and whether TURN is set up at all."""

    udp_ports: tuple[int, int] | None = None
    turn_configured: bool = False


def _reason(code: str, severity: str, vi: str, en: str) -> dict[str, str]:
    return {"code": code, "severity": severity, "vi": vi, "en": en}


def _lower(tier: Tier, steps: int = 1, floor: Tier = "audio") -> Tier:
    """``tier`` moved down ``steps`` places, never below ``floor``."""
    index = min(TIERS.index(tier) + steps, TIERS.index(floor))
    return TIERS[max(index, TIERS.index(tier))]


def _tier_of(kbps: float) -> Tier:
    for tier in ("720p", "360p", "180p", "audio"):
        if kbps >= NEEDS_KBPS[tier]:
            return tier  # type: ignore[return-value]
    return "none"


def _udp_advice(context: VerdictContext) -> tuple[str, str]:
    if context.udp_ports is not None:
        low, high = context.udp_ports
        return (f"mở cổng UDP {low}-{high} tới máy chủ", f"open UDP ports {low}-{high} to the server")
    return ("mở UDP đi ra tới máy chủ", "allow outgoing UDP to the server")


def verdict(measured: dict[str, Any], context: VerdictContext) -> dict[str, Any]:
    """``{"tier", "carries": {"vi", "en"}, "reasons": [{code, severity, vi, en}]}`` for a link test's figures."""
    reasons: list[dict[str, str]] = []
    status = measured.get("status")
    if measured.get("forged"):
        reasons.append(_reason(
            "receipt-forged", "error",
            "Kết quả bị từ chối: máy kiểm tra báo đã nhận những gói máy chủ không hề gửi tới.",
            "Result rejected: the testing computer claimed probes the server never delivered to it.",
        ))
        return _answer("unknown", reasons)

    paths = {p["path"]: p for p in measured.get("paths", [])}
    connected = [name for name, p in paths.items() if p.get("ok")]
    udp_ok = paths.get("udp", {}).get("ok")
    ports_vi, ports_en = _udp_advice(context)
    if not connected:
        if status == "partial" and not any(p.get("ok") is False for p in paths.values()):  # stopped before
            reasons.append(_stopped(measured))
            return _answer("unknown", reasons)
        if context.turn_configured:
            tried = ", ".join(PATH_NAMES[n][1] for n in paths if n.startswith("turn-"))
            reasons.append(_reason(
                "udp-blocked", "error",
                f"UDP bị chặn: {ports_vi}.", f"UDP is blocked: {ports_en}.",
            ))
            reasons.append(_reason(
                "turn-failed", "error",
                "TURN (UDP/TCP/TLS) cũng không kết nối được: cho phép TCP đi ra cổng 443 tới máy chủ TURN, "
                "hoặc hỏi quản trị mạng của bệnh viện.",
                f"TURN ({tried}) failed too: allow outgoing TCP port 443 to the TURN server, or ask the "
                "hospital's network administrator.",
            ))
        else:
            reasons.append(_reason(
                "udp-blocked", "error",
                f"UDP bị chặn: {ports_vi}, hoặc dùng TURN qua TLS cổng 443 (quản trị máy chủ cần cài TURN).",
                f"UDP is blocked: {ports_en}, or use TURN over TLS on port 443 (the server's administrator must "
                "set up TURN).",
            ))
        if status == "partial":
            reasons.append(_stopped(measured))
        return _answer("none", reasons)

    if not udp_ok:
        via = measured.get("measuredOn", connected[0])
        reasons.append(_reason(
            "udp-blocked", "warning",
            f"UDP bị chặn: cuộc gọi phải đi qua {PATH_NAMES[via][0]}, trễ hơn và tốn tài nguyên máy chủ. "
            f"Để kết nối trực tiếp: {ports_vi}.",
            f"UDP is blocked: calls must go through {PATH_NAMES[via][1]}, with more delay and load on the server. "
            f"To connect directly: {ports_en}.",
        ))

    down = (measured.get("down") or {}).get("kbps")
    up = (measured.get("up") or {}).get("kbps")
    if down is None or up is None:
        tier: Tier = "unknown"
    else:
        tier = max(_tier_of(down), _tier_of(up), key=TIERS.index)
        for name, kbps, vi_dir, en_dir in (("up", up, "tải lên", "upload"), ("down", down, "tải xuống", "download")):
            if kbps < NEEDS_KBPS["180p"]:
                severity = "error" if kbps < NEEDS_KBPS["audio"] else "warning"
                what_vi = "không đủ cả cho âm thanh" if kbps < NEEDS_KBPS["audio"] else "chỉ đủ âm thanh"
                what_en = "not enough even for audio" if kbps < NEEDS_KBPS["audio"] else "audio only"
                reasons.append(_reason(
                    f"{name}-low", severity,
                    f"Tốc độ {vi_dir} {kbps:.0f} kbit/s, dưới 150 kbit/s: {what_vi}.",
                    f"{en_dir.capitalize()} {kbps:.0f} kbit/s, below 150 kbit/s: {what_en}.",
                ))

    loss = measured.get("loss")
    if loss is not None and loss >= LOSS_WARN:
        bad = loss >= LOSS_BAD
        reasons.append(_reason(
            "loss-high", "error" if bad else "warning",
            f"Mất {loss * 100:.1f}% gói tin: " + ("hình ảnh sẽ đứng, chỉ nên dùng âm thanh. " if bad
                                                  else "hình ảnh sẽ bị vỡ. ")
            + "Kiểm tra dây mạng, sóng Wi-Fi/4G, hoặc thiết bị khác đang dùng chung đường truyền.",
            f"{loss * 100:.1f}% of packets lost: " + ("video will freeze; use audio only. " if bad
                                                      else "video will break up. ")
            + "Check the cable, the Wi-Fi/4G signal, or other devices sharing the line.",
        ))
        if tier not in ("unknown", "none"):
            tier = "audio" if bad else _lower(tier)

    jitter = measured.get("jitterMs")
    if jitter is not None and jitter >= JITTER_BAD_MS:
        reasons.append(_reason(
            "jitter-high", "warning",
            f"Độ trễ dao động {jitter:.0f} ms: tiếng nói sẽ bị ngắt quãng. Tránh tải file hoặc xem video trên "
            "cùng đường truyền khi hội chẩn.",
            f"Jitter {jitter:.0f} ms: speech will break up. Avoid downloads or streaming on the same line during a "
            "consultation.",
        ))
        if tier not in ("unknown", "none"):
            tier = _lower(tier)

    rtt = measured.get("rttMs")
    if rtt is not None and rtt >= RTT_WARN_MS:
        reasons.append(_reason(
            "rtt-high", "error" if rtt >= RTT_BAD_MS else "warning",
            f"Độ trễ khứ hồi {rtt:.0f} ms: hai bên dễ nói chen nhau; nói xong hãy chờ một nhịp.",
            f"Round-trip time {rtt:.0f} ms: people will talk over each other; pause after speaking.",
        ))

    if status == "partial":
        reasons.append(_stopped(measured))
    return _answer(tier, reasons)


def _stopped(measured: dict[str, Any]) -> dict[str, str]:
    phase_vi, phase_en = PHASES.get(measured.get("stoppedIn") or "", ("", ""))
    why_vi, why_en = STOPPED.get(measured.get("stopReason") or "", ("không rõ lý do", "for an unknown reason"))
    where_vi = f" khi đang {phase_vi}" if phase_vi else ""
    where_en = f" while {phase_en}" if phase_en else ""
    return _reason(
        "incomplete", "error",
        f"Bài kiểm tra dừng giữa chừng{where_vi}: {why_vi}. Kết luận chỉ dựa trên phần đã đo được; hãy chạy lại.",
        f"The test stopped{where_en}: {why_en}. The verdict covers only what was measured; run it again.",
    )


def _answer(tier: Tier, reasons: list[dict[str, str]]) -> dict[str, Any]:
    vi, en = CARRIES[tier]
    return {"tier": tier, "carries": {"vi": vi, "en": en}, "reasons": reasons}
