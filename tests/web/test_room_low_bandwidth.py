"""Simulcast from a real Chromium through the relay, to a Chromium on a weak link and one on a good link.

The weak browser's link is the user-space emulator (``client.link_emulator``) put between it and the server the way
an aiortc test peer does it (DESIGN §6): an init script hands every offer the page applies to the emulator, which
rewrites the server's candidates to its own address, and keeps the page from telling the server its own candidates
(trickled ``icecandidate`` events and any in the answer), so the server only learns the browser's address from
the checks that come through the emulator. The page's own code runs unchanged.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from playwright.async_api import Browser, Page
from support import Server

from client.link_emulator import Impairment, LinkEmulator

pytestmark = pytest.mark.solo

# Applied before the page's scripts: offers go through the emulator's rewriting; no local candidate leaves the page.
THROUGH_EMULATOR = """(() => {
  const proto = RTCPeerConnection.prototype;
  const setRemote = proto.setRemoteDescription;
  proto.setRemoteDescription = async function (description) {
    if (description && description.sdp) {
      description = { type: description.type, sdp: await window.hoichanThroughEmulator(description.sdp) };
    }
    return setRemote.call(this, description);
  };
  const local = Object.getOwnPropertyDescriptor(proto, 'localDescription');
  Object.defineProperty(proto, 'localDescription', { get() {
    const description = local.get.call(this);
    if (!description) return description;
    const sdp = description.sdp.split('\\r\\n').filter((l) => !l.startsWith('a=candidate:')).join('\\r\\n');
    return { type: description.type, sdp, toJSON() { return { type: description.type, sdp }; } };
  } });
  const addListener = proto.addEventListener;
  proto.addEventListener = function (type, listener, options) {
    if (type !== 'icecandidate') return addListener.call(this, type, listener, options);
    // only the end of candidates reaches the page: the server must not try the browser's own addresses
    return addListener.call(this, type, (e) => { if (!e.candidate || !e.candidate.candidate) listener(e); }, options);
  };
})();"""

VIDEO_STATS = """async () => {
  const pc = window.hoichan && window.hoichan.pc;
  if (!pc) return {inbound: [], outbound: []};
  const slots = (window.hoichan.session && window.hoichan.session.peer.tracks) || {};
  const stats = await pc.getStats();
  const inbound = [], outbound = [];
  stats.forEach(s => {
    if (s.kind !== 'video') return;
    if (s.type === 'inbound-rtp') inbound.push({from: (slots[s.mid] || {}).participantId,
      framesDecoded: s.framesDecoded || 0, frameWidth: s.frameWidth || 0, bytesReceived: s.bytesReceived || 0});
    if (s.type === 'outbound-rtp') outbound.push({rid: s.rid, frameWidth: s.frameWidth || 0,
      bytesSent: s.bytesSent || 0});
  });
  return {inbound, outbound};
}"""


async def open_room(browser: Browser, server: Server, room: str, name: str,
                    link: LinkEmulator | None = None) -> Page:
    context = await browser.new_context(locale="vi-VN")
    if link is not None:
        await context.expose_function("hoichanThroughEmulator", link.rewrite_server_sdp)
        await context.add_init_script(THROUGH_EMULATOR)
    page = await context.new_page()
    await page.goto(f"{server.url}/room/{room}?name={name}&facility=BV%20{name}")
    return page


async def received_from(page: Page, participant_id: str) -> dict[str, Any] | None:
    stats = await page.evaluate(VIDEO_STATS)
    return next((s for s in stats["inbound"] if s["from"] == participant_id), None)


@pytest.mark.timeout(180)
async def test_a_browser_on_a_weak_link_gets_a_lower_simulcast_layer(browser: Browser, server: Server) -> None:
    """Three browsers, each publishing its fake camera (Chromium sends it as rid layers q, h and f when the
    server asks). One receives through a 400 kbit/s downlink: it gets the publisher's quarter layer (320×180 of
    the fake camera's 1280×720), while the one on a good link gets a higher layer at a higher bitrate."""
    link = LinkEmulator(down=Impairment(rate_kbps=400), seed=4)
    try:
        publisher = await open_room(browser, server, "simulcast-web", "Phat")
        good = await open_room(browser, server, "simulcast-web", "Tot")
        weak = await open_room(browser, server, "simulcast-web", "Yeu", link)
        for page in (publisher, good, weak):
            await page.wait_for_function("document.body.dataset.state === 'connected'", timeout=30_000)
        source = await publisher.evaluate("window.hoichan.participantId")

        def layers(received: dict[str, Any]) -> bool:  # the good one on h or f, the weak one on q
            good_now, weak_now = received["good"], received["weak"]
            return (good_now is not None and good_now["frameWidth"] >= 640 and weak_now is not None
                    and 0 < weak_now["frameWidth"] <= 320)

        async def sample() -> dict[str, Any]:
            return {name: await received_from(page, source) for name, page in (("good", good), ("weak", weak))}

        # Chromium's own uplink estimate decides when it sends its upper layers, so wait for a 3 s window in which
        # the good receiver is on one of them at both ends while the weak one is on the quarter layer and moving
        # (it shares its 400 kbit/s with the other browser's video and stalls now and then)
        deadline = time.monotonic() + 90  # its estimate kept the half layer off for 45 s in one run of ten
        while True:
            before, started = await sample(), time.monotonic()
            if layers(before):
                await publisher.wait_for_timeout(3000)
                after, seconds = await sample(), time.monotonic() - started
                if layers(after) and after["weak"]["framesDecoded"] > before["weak"]["framesDecoded"] + 10:
                    break
            assert time.monotonic() < deadline, (await good.evaluate(VIDEO_STATS), await weak.evaluate(VIDEO_STATS))
            await publisher.wait_for_timeout(500)
        kbps = {name: (after[name]["bytesReceived"] - before[name]["bytesReceived"]) * 8 / 1000 / seconds
                for name in after}
        sent = (await publisher.evaluate(VIDEO_STATS))["outbound"]
        print(f"received {after}, {kbps} kbit/s; publisher sends {sent}; weak link {link.stats()['down']}")
    finally:
        link.close()
    # the publisher sends simulcast: at least its two lower layers carry video
    assert sum(1 for s in sent if s["bytesSent"] > 0) >= 2, sent
    strong, limited = after["good"], after["weak"]
    assert strong is not None and limited is not None
    assert strong["frameWidth"] >= 640 and 0 < limited["frameWidth"] <= 320, after
    assert limited["framesDecoded"] > before["weak"]["framesDecoded"] + 10, (before, after)  # it moves
    # bytes too: the weak link carries the quarter layer only; the good one more (Chromium sends its half layer at
    # what its own uplink estimate leaves, which a fresh call keeps low for a while)
    assert kbps["weak"] < 400 and kbps["good"] > kbps["weak"], kbps
