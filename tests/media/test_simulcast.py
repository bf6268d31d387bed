"""The server's offer asks for simulcast on the publishing video m-line only."""

from __future__ import annotations

from media.simulcast import RIDS, offer_simulcast

SDP = ("v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n"
       "m=audio 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:0\r\na=recvonly\r\n"
       "m=video 9 UDP/TLS/RTP/SAVPF 97\r\na=mid:1\r\na=recvonly\r\n"
       "m=video 9 UDP/TLS/RTP/SAVPF 97\r\na=mid:2\r\na=sendonly\r\n")


def sections(sdp: str) -> list[list[str]]:
    return [block.split("\r\n") for block in sdp.split("\r\nm=")[1:]]


def test_rid_and_simulcast_lines_go_to_the_named_section() -> None:
    out = offer_simulcast(SDP, "1")
    audio, video, other = sections(out)
    assert [line for line in video if line.startswith("a=rid:")] == [f"a=rid:{rid} recv" for rid in RIDS]
    assert "a=simulcast:recv q;h;f" in video
    assert not any("rid" in line or "simulcast" in line for line in audio + other)
    assert out.endswith("a=sendonly\r\n")


def test_last_section_keeps_the_final_line_break() -> None:
    out = offer_simulcast(SDP, "2")
    assert out.endswith("a=simulcast:recv q;h;f\r\n")
    assert out.count("a=simulcast") == 1
    assert offer_simulcast(SDP, "9") == SDP  # unknown mid: unchanged
