"""Asking browsers for simulcast while the server stays the offerer (RFC 8853, JSEP's "simulcast in the answer").

The server's offer puts ``a=rid:<rid> recv`` lines and ``a=simulcast:recv q;h;f`` on the m-line a participant
publishes its camera on. Chromium, answering, gives that transceiver one send encoding per rid and answers
``a=simulcast:send q;h;f``; the page then sets each encoding's resolution and bitrate (``web/js/peer.js``). Each
encoding arrives on its own SSRC with the rid in the rtp-stream-id header extension. aiortc's SDP has no notion of
rids, hence these lines are added to the offer's text; the relay learns the layers from the packets.
"""

from __future__ import annotations

RIDS = ("q", "h", "f")  # quarter, half and full resolution: the relay's layers 0, 1, 2


def offer_simulcast(sdp: str, mid: str) -> str:
    """``sdp`` with rid and simulcast receive lines added to the m-section whose mid is ``mid``."""
    head, *media = sdp.split("\r\nm=")
    extra = [f"a=rid:{rid} recv" for rid in RIDS] + [f"a=simulcast:recv {';'.join(RIDS)}"]
    for i, section in enumerate(media):
        lines = section.split("\r\n")
        if f"a=mid:{mid}" in lines:
            end = len(lines) - 1 if lines[-1] == "" else len(lines)  # the SDP's final CRLF stays last
            media[i] = "\r\n".join(lines[:end] + extra + lines[end:])
    return "\r\nm=".join([head, *media])
