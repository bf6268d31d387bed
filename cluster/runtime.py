"""One process's part in a cluster, by role: a media node (``media``), a signaling media service (``signaling``),
or both (``all`` with a Redis URL). Built from the configuration, started and closed with the web application."""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from pathlib import Path

from media.recording.manifest import recover_unfinished
from media.router import Notify
from media.service import MediaService
from signaling.config import Config

from .connect import connect
from .keys import Keys
from .node import MediaNode
from .placement import Placement, default_node_id
from .service import ClusterMediaService

logger = logging.getLogger(__name__)


class ClusterRuntime:
    def __init__(self, config: Config, notify: Notify | None, media: Callable[[Notify], MediaService] | None,
                 observe: Notify | None = None) -> None:
        """``notify`` (signaling roles) receives media's notifications; ``media`` (media roles) builds the local
        media service the node serves; ``observe`` sees the node's notifications on their way (metrics)."""
        cluster = config.cluster
        assert cluster.redis_url is not None
        self.config = config
        self.keys = Keys(cluster.key_prefix)
        self.redis, self.blocking = connect(cluster.redis_url)
        self.node: MediaNode | None = None
        self.service: ClusterMediaService | None = None
        self.process_id = f"{default_node_id()}-{secrets.token_hex(4)}"
        """This signaling process, in Redis (its inbox, its liveness, the seats it speaks for)."""
        if media is not None:
            self.node = MediaNode(self.redis, self.blocking, cluster.redis_url, self.keys,
                                  cluster.node_id or default_node_id(),
                                  cluster.heartbeat_interval, cluster.node_timeout, media, observe)
        if notify is not None:
            self.service = ClusterMediaService(
                self.redis, self.blocking, self.keys, self.process_id, notify,
                node_timeout=cluster.node_timeout, request_timeout=cluster.request_timeout,
                check_interval=cluster.heartbeat_interval / 2,
            )

    async def start(self) -> None:
        if self.node is not None:
            await self.node.start()
            await self._recover(self.config.recording.directory)
        if self.service is not None:
            await self.service.start()

    async def _recover(self, root: Path) -> None:
        """Close recordings left open by a node that died: this node's earlier run, or any node not alive now.
        Best effort: without Redis at start, recordings of other nodes are left for a later start to judge."""
        assert self.node is not None
        try:
            live = set(await Placement(self.redis, self.keys, self.config.cluster.node_timeout).live_nodes())
        except Exception as exc:  # noqa: BLE001 - Redis down: recover only what is surely ours
            logger.warning("cannot tell which media nodes are alive (%s): only this node's recordings are closed", exc)
            live = None
        me = self.node.node_id

        def abandoned(manifest: dict[str, object]) -> bool:
            owner = manifest.get("node_id")
            return owner == me or owner is None or (live is not None and owner not in live)

        root.mkdir(parents=True, exist_ok=True)
        for recording_id in recover_unfinished(root, abandoned):
            logger.warning("recording %s was interrupted (its media node stopped unexpectedly); closed as unclean",
                           recording_id, extra={"node_id": me})

    async def close(self) -> None:
        if self.service is not None:
            await self.service.close()
        if self.node is not None:
            await self.node.close()
        await self.redis.aclose()
        await self.blocking.aclose()
