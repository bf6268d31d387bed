"""Every Redis key cluster mode uses, in one place (the layout is documented in docs/cluster.md)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Keys:
    prefix: str

    @property
    def nodes(self) -> str:
        """Set of media node ids that have reported at least once (dead ones are pruned by placement)."""
        return f"{self.prefix}nodes"

    def node(self, node_id: str) -> str:
        """Hash: a media node's last reported load (rooms, participants, streams, cpu, pid, host, updated_at)."""
        return f"{self.prefix}node:{node_id}"

    def alive(self, node_id: str) -> str:
        """String with a TTL of ``cluster.node_timeout``: the node's current incarnation; gone = node dead."""
        return f"{self.prefix}node:{node_id}:alive"

    def placed(self, node_id: str) -> str:
        """Sorted set: the rooms placed on a node, scored by when last placed or re-asserted (Unix seconds)."""
        return f"{self.prefix}node:{node_id}:rooms"

    def commands(self, node_id: str) -> str:
        """List: requests for a media node (RPUSH by signaling, BLPOP by the node)."""
        return f"{self.prefix}node:{node_id}:commands"

    def room(self, room_id: str) -> str:
        """String: the id of the media node a room lives on."""
        return f"{self.prefix}room:{room_id}"

    def recording(self, room_id: str) -> str:
        """String (JSON ``{"id", "meta"}``): the recording of a room, so the node it moves to carries it on."""
        return f"{self.prefix}room:{room_id}:recording"

    def inbox(self, process_id: str) -> str:
        """List: replies and media notifications for one signaling process."""
        return f"{self.prefix}process:{process_id}:inbox"

    @staticmethod
    def process_alive(inbox: str) -> str:
        """String with a TTL of ``cluster.node_timeout``, beside a signaling process's inbox: gone = process dead."""
        return inbox.removesuffix(":inbox") + ":alive"

    def members(self, room_id: str) -> str:
        """Hash: a room's participants on every signaling process, id -> JSON (public info, identity, process)."""
        return f"{self.prefix}members:{room_id}"

    def leases(self, room_id: str) -> str:
        """Sorted set: a room's participants scored by when their seat lapses unless their process renews it."""
        return f"{self.prefix}members:{room_id}:leases"

    def seat(self, resume_token: str) -> str:
        """String (JSON ``{"room", "id"}``): the seat a resume token takes back, on any signaling process."""
        return f"{self.prefix}seat:{resume_token}"

    def settled(self, consult_id: str) -> str:
        """String (JSON ``{"outcome", "by"}``): how a consult ended, set once (``SET NX``): the first wins."""
        return f"{self.prefix}consult:{consult_id}:settled"

    def consult_owner(self, consult_id: str) -> str:
        """String: the signaling process a consult rings from (its timers and log); the others forward to it."""
        return f"{self.prefix}consult:{consult_id}:owner"

    @property
    def duty(self) -> str:
        """Set: usernames of central doctors on duty (their own choice; kept until they change it)."""
        return f"{self.prefix}presence:duty"

    @property
    def online(self) -> str:
        """Sorted set: ``<username> <process>`` for each account with a lobby page open there, scored by when the
        entry lapses unless that process renews it."""
        return f"{self.prefix}presence:online"

    @property
    def identities(self) -> str:
        """Hash: username -> JSON identity of accounts online (what ringing a doctor needs to know)."""
        return f"{self.prefix}presence:identities"

    @property
    def dispatch_channel(self) -> str:
        """Pub/sub channel: dispatch news for every signaling process (a doctor reachable or off duty, consult
        views for the consult rooms' gates, room events for the consult's owner)."""
        return f"{self.prefix}dispatch"

    # -- durable records (the consult log, link-test history, link-quality samples, the recordings audit log) ------

    def consult(self, consult_id: str) -> str:
        """Hash: one consult's row of the log (the consult log's columns; ``rings`` counts its ring events)."""
        return f"{self.prefix}consult:{consult_id}"

    def consult_events(self, consult_id: str) -> str:
        """List: a consult's events (JSON), in the order they happened."""
        return f"{self.prefix}consult:{consult_id}:events"

    def consult_invited(self, consult_id: str) -> str:
        """Set: usernames invited into a consult (the log's ``party`` filter)."""
        return f"{self.prefix}consult:{consult_id}:invited"

    @property
    def consults(self) -> str:
        """Sorted set: every consult id, scored by when it was requested (Unix ms): range reads by date."""
        return f"{self.prefix}consults"

    @property
    def consults_open(self) -> str:
        """Set: ids of consults still ringing (closed as ``interrupted`` when their owner process is gone)."""
        return f"{self.prefix}consults:open"

    def link_test(self, test_id: str) -> str:
        """String (JSON): one link test's whole result."""
        return f"{self.prefix}linktest:{test_id}"

    def link_tests(self, point_id: str) -> str:
        """Sorted set: a connection point's link-test ids, scored by when each started (Unix s)."""
        return f"{self.prefix}linktests:{point_id}"

    def link_samples(self, room_id: str) -> str:
        """List: a room's link-quality samples (JSON rows), in the order they were written."""
        return f"{self.prefix}linksamples:{room_id}"

    def point_caps(self, point_id: str) -> str:
        """String (JSON): a connection point's caps (``signaling/caps/``), kept until removed."""
        return f"{self.prefix}caps:{point_id}"

    @property
    def caps_channel(self) -> str:
        """Pub/sub channel: the id of a connection point whose caps changed, for every signaling process."""
        return f"{self.prefix}caps"

    @property
    def audit(self) -> str:
        """List: the recordings audit log (JSON entries), oldest first; append-only."""
        return f"{self.prefix}audit"

    def audit_of(self, recording_id: str) -> str:
        """List: the audit entries about one recording, oldest first."""
        return f"{self.prefix}audit:{recording_id}"

    def shared(self, room_id: str) -> str:
        """Hash: a room's shared items (images, vitals, annotations), item id -> JSON."""
        return f"{self.prefix}shared:{room_id}"

    def shared_order(self, room_id: str) -> str:
        """List: a room's shared item ids, in the order they were added."""
        return f"{self.prefix}shared:{room_id}:order"

    def attendance(self, room_id: str) -> str:
        """Hash: accounts that joined a room, username -> when first (Unix s): who may see its record."""
        return f"{self.prefix}attendance:{room_id}"


    def job(self, kind: str, recording_id: str) -> str:
        """String: who holds a once-only recordings job (``delete``, ``combine``): a process id, or ``done``."""
        return f"{self.prefix}job:{kind}:{recording_id}"

    def schedule(self, schedule_id: str) -> str:
        """Hash: a schedule's ``row`` (JSON, the embedded store's columns) and, once deleted, ``deleted_at``."""
        return f"{self.prefix}schedule:{schedule_id}"

    @property
    def schedules(self) -> str:
        """Sorted set: the ids of schedules not deleted, scored by when each was made (Unix s)."""
        return f"{self.prefix}schedules"

    def schedule_opened(self, schedule_id: str) -> str:
        """Hash: a schedule's opened occurrences, start (UTC ISO) -> JSON ``{room, openedAt}``; set once (HSETNX)."""
        return f"{self.prefix}schedule:{schedule_id}:opened"
