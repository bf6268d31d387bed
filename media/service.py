"""The boundary between signaling and media: a small typed interface, in-process here.

Signaling decides who may join which room; media only carries out joins, negotiation and leaves. The same
interface can sit behind a Redis or HTTP hop when media runs on other nodes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

from aiortc import RTCBundlePolicy, RTCConfiguration, RTCIceServer

from . import hooks
from .errors import MediaError
from .limits import Limits
from .linktest import LinkTestPeer, LinkTestPlan
from .router import Notify, Router
from .settings import MediaSettings


class MediaService(Protocol):
    async def prepare(self, room_id: str) -> None:
        """Raise ``MediaError`` if media cannot take ``room_id`` now (cluster: Redis unreachable, no live node)."""

    async def join(self, room_id: str, participant_id: str, info: dict[str, Any] | None = None) -> None: ...
    async def adopt(self, room_id: str, participant_id: str, info: dict[str, Any] | None = None) -> None:
        """Cluster only: speak for a participant whose signaling process died (``cluster/service.py``)."""
    async def start_recording(self, room_id: str, meta: dict[str, Any]) -> str: ...
    async def stop_recording(self, room_id: str) -> None: ...
    async def leave(self, participant_id: str) -> None: ...
    async def restart(self, participant_id: str) -> None: ...
    async def limit(self, participant_id: str, limits: dict[str, Any]) -> None:
        """Put a participant's site limits (``limits.py``, wire form) in force mid-call. At join they ride in
        ``info["limits"]``, so a participant placed again (new worker, new node) keeps them."""
    async def answer(self, participant_id: str, sdp: str) -> None: ...
    async def offer(self, participant_id: str, sdp: str) -> str: ...
    async def candidate(
        self, participant_id: str, candidate: str, sdp_mid: str | None, sdp_mline_index: int | None
    ) -> None: ...
    async def link_test_start(self, test_id: str, plan: dict[str, Any]) -> list[dict[str, str]]: ...
    async def link_test_answer(self, test_id: str, path: str, sdp: str) -> None: ...
    async def link_test_stop(self, test_id: str, reason: str) -> None: ...
    def stats(self) -> dict[str, Any]: ...
    async def close(self) -> None: ...


class LocalMediaService:
    """Routers for every room, in this process."""

    router_class: type[Router] = Router  # swappable, see Router.producer_class

    def __init__(
        self,
        ice_servers: list[RTCIceServer],
        notify: Notify,
        host_addresses: list[str],
        udp_ports: tuple[int, int] | None = None,
        recordings: Path | None = None,
        settings: MediaSettings = MediaSettings(),
    ) -> None:
        hooks.check_versions()
        hooks.negotiate_opus_fec_dtx()
        hooks.negotiate_opus_nack()
        hooks.negotiate_simulcast_extensions()
        hooks.patient_consent()
        hooks.restrict_host_addresses(host_addresses)
        if udp_ports is not None:
            hooks.restrict_udp_ports(*udp_ports)
        # max-bundle: one transport from the start. aiortc's default (balanced) leaves transceivers added
        # before the first negotiation on a transport that bundling then discards.
        self._configuration = RTCConfiguration(iceServers=ice_servers, bundlePolicy=RTCBundlePolicy.MAX_BUNDLE)
        self._notify = notify
        self._recordings = recordings
        self._settings = settings
        self.routers: dict[str, Router] = {}
        self._room_of: dict[str, str] = {}
        self.link_tests: dict[str, LinkTestPeer] = {}

    def _router(self, participant_id: str) -> Router:
        room_id = self._room_of.get(participant_id)
        if room_id is None:
            raise MediaError("not-joined", "join a room first")
        return self.routers[room_id]

    async def prepare(self, room_id: str) -> None:
        """Media in this process is always there."""

    async def join(self, room_id: str, participant_id: str, info: dict[str, Any] | None = None) -> None:
        router = self.routers.get(room_id)
        if router is None:
            router = self.routers[room_id] = self.router_class(room_id, self._configuration, self._notify,
                                                               self._settings)
        self._room_of[participant_id] = room_id
        await router.join(participant_id, info)

    async def start_recording(self, room_id: str, meta: dict[str, Any]) -> str:
        router = self.routers.get(room_id)
        if router is None:
            raise MediaError("not-joined", f"room {room_id} has no media session")
        if self._recordings is None:
            raise MediaError("internal", "no recording directory is configured")
        return await router.start_recording(self._recordings, meta)

    async def stop_recording(self, room_id: str) -> None:
        router = self.routers.get(room_id)
        if router is not None:
            await router.stop_recording()

    async def leave(self, participant_id: str) -> None:
        room_id = self._room_of.pop(participant_id, None)
        if room_id is None:
            return
        router = self.routers[room_id]
        await router.leave(participant_id)
        if not router.members and self.routers.get(room_id) is router:
            del self.routers[room_id]
            await router.stop_recording()  # the room ended: a clean end of its recording

    async def restart(self, participant_id: str) -> None:
        await self._router(participant_id).restart(participant_id)

    async def limit(self, participant_id: str, limits: dict[str, Any]) -> None:
        await self._router(participant_id).limit(participant_id, Limits.from_dict(limits))

    async def answer(self, participant_id: str, sdp: str) -> None:
        await self._router(participant_id).member(participant_id).transport.accept_answer(sdp)

    async def offer(self, participant_id: str, sdp: str) -> str:
        return await self._router(participant_id).member(participant_id).transport.accept_offer(sdp)

    async def candidate(
        self, participant_id: str, candidate: str, sdp_mid: str | None, sdp_mline_index: int | None
    ) -> None:
        transport = self._router(participant_id).member(participant_id).transport
        await transport.add_candidate(candidate, sdp_mid, sdp_mline_index)

    async def link_test_start(self, test_id: str, plan: dict[str, Any]) -> list[dict[str, str]]:
        """A link test's server peer (``linktest.py``): one offer per path. It reports through ``notify`` with
        ``test_id`` in place of a participant id: ``linktest-progress``, then once ``linktest-measured``."""
        if test_id in self.link_tests:
            raise MediaError("invalid-payload", f"link test {test_id} is already running")
        peer = LinkTestPeer(test_id, self._configuration, LinkTestPlan.from_dict(plan), self._link_test_notify)
        self.link_tests[test_id] = peer
        try:
            return await peer.offers()
        except Exception:
            self.link_tests.pop(test_id, None)
            await peer.close()
            raise

    async def _link_test_notify(self, test_id: str, event: str, payload: dict[str, Any]) -> None:
        if event == "linktest-measured":
            self.link_tests.pop(test_id, None)
        await self._notify(test_id, event, payload)

    def _link_test(self, test_id: str) -> LinkTestPeer:
        peer = self.link_tests.get(test_id)
        if peer is None:
            raise MediaError("not-found", f"no link test {test_id} is running")
        return peer

    async def link_test_answer(self, test_id: str, path: str, sdp: str) -> None:
        await self._link_test(test_id).answer(path, sdp)

    async def link_test_stop(self, test_id: str, reason: str) -> None:
        peer = self.link_tests.get(test_id)
        if peer is not None:
            peer.stop(reason)

    def stats(self) -> dict[str, Any]:
        streams = sum(len(m.transport.consumers) for r in self.routers.values() for m in r.members.values())
        members = sum(len(r.members) for r in self.routers.values())
        return {"rooms": len(self.routers), "participants": members, "forwarded_streams": streams,
                "link_tests": len(self.link_tests)}

    async def close(self) -> None:
        for peer in list(self.link_tests.values()):
            await peer.close()
        for router in list(self.routers.values()):
            await router.close()
        self.routers.clear()
        self._room_of.clear()
