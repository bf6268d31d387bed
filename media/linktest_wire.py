"""What the link-test peers say to each other on their two data channels, shared by the server and every client.

Two negotiated data channels per connection (both sides create them with fixed ids, no in-band handshake):

* ``control`` (id 0, reliable, ordered): JSON text. Server → client ``{"type": "send", "kbps": R, "size": S}``
  (send DATA upstream at R kbit/s, of S bytes each if S is given, else ``linktest.data_size(R)``; 0 = stop) and ``{"type": "end"}``; client → server ``{"type": "receipt", "t": T,
  "runs": [[a, b], ...], "x": "<16 hex digits>"}``: which of the server's probes it received since its last
  receipt, written at ``T`` ms of the client's monotonic clock (any origin).
* ``probe`` (id 1, unordered, no retransmission): binary probes, ``kind(1) seq(4) nonce(8) time(8)`` then padding.
  PING (server → client, answered at once by a PONG carrying the same seq, nonce and time), DATA (either way;
  upstream, the client's own seq, and in the nonce field the rate it sends at, ``rate_tag``: the server starts a
  step's window at the first DATA sent at the step's rate, however late the instruction arrived).

The server is the authority on every figure it reports. It sees its own PONGs and the client's DATA arrive. For
what the client received it has only the client's receipts, and those are proofs: each probe the server sends
carries a fresh random 64-bit nonce and a receipt must give the XOR of the nonces of the probes it claims, so
a client can report fewer probes than it received but never more. Receipts travel reliably and in order, so one
lost on the way holds the next ones back until SCTP resends it; their times ``T`` place each at the moment it was
written all the same (the server maps the client's clock onto its own by the promptest receipt, and refuses a
receipt that would prove a probe before the server sent it).
"""

from __future__ import annotations

import json
import math
import secrets
import struct
from dataclasses import dataclass
from typing import Any

PING, PONG, DATA = 1, 2, 3
HEADER = struct.Struct("!BIQd")
CONTROL_ID, PROBE_ID = 0, 1
DATA_SIZE = 1100  # bytes per DATA probe: one SCTP chunk, well inside aiortc's 1200-byte limit
PING_SIZE = HEADER.size
RECEIPT_INTERVAL = 0.2  # seconds between a client's receipts
MAX_RECEIPT_RUNS = 4096


def rate_tag(kbps: float) -> int:
    """The nonce field of upstream DATA: the rate the client sends it at, in whole kbit/s."""
    return int(round(kbps))


def pack(kind: int, seq: int, nonce: int, at: float, size: int = 0) -> bytes:
    head = HEADER.pack(kind, seq, nonce, at)
    return head + bytes(max(size - len(head), 0))


def unpack(data: bytes) -> tuple[int, int, int, float] | None:
    """(kind, seq, nonce, time) of a probe, None if it is not one."""
    if len(data) < HEADER.size:
        return None
    kind, seq, nonce, at = HEADER.unpack_from(data)
    return (kind, seq, nonce, at) if kind in (PING, PONG, DATA) else None


def runs_of(seqs: list[int]) -> list[list[int]]:
    """Sorted sequence numbers as inclusive runs: [1, 2, 3, 7] → [[1, 3], [7, 7]]."""
    runs: list[list[int]] = []
    for seq in sorted(set(seqs)):
        if runs and seq == runs[-1][1] + 1:
            runs[-1][1] = seq
        else:
            runs.append([seq, seq])
    return runs


class ReceiptBook:
    """Client side: the server probes received since the last receipt, and the receipt that proves them."""

    def __init__(self) -> None:
        self._seqs: list[int] = []
        self._x = 0

    def add(self, seq: int, nonce: int) -> None:
        self._seqs.append(seq)
        self._x ^= nonce

    def take(self, at_ms: float) -> str:
        """The JSON receipt for everything since the last one, written at ``at_ms`` of the client's monotonic clock
        (sent even when empty: the server times the flow of probes by the receipts, so they keep a steady beat)."""
        receipt = json.dumps({"type": "receipt", "t": round(at_ms, 1), "runs": runs_of(self._seqs),
                              "x": f"{self._x:016x}"})
        self._seqs, self._x = [], 0
        return receipt


class ForgedReceipt(ValueError):
    """A receipt claims probes the server never sent, claims one twice, or does not prove its claim."""


@dataclass
class SentProbe:
    nonce: int
    size: int
    sent_at: float
    phase: str


class NonceBook:
    """Server side: every probe sent (its nonce, size, time and test phase), and which were proven received."""

    def __init__(self) -> None:
        self.sent: dict[int, SentProbe] = {}
        self.received: set[int] = set()
        self._next = 0

    def issue(self, size: int, at: float, phase: str) -> tuple[int, int]:
        """A fresh (seq, nonce) for a probe about to be sent."""
        seq, nonce = self._next, secrets.randbits(64)
        self._next += 1
        self.sent[seq] = SentProbe(nonce, size, at, phase)
        return seq, nonce

    def verify(self, message: dict[str, Any]) -> list[int]:
        """The sequence numbers a receipt proves; raises ``ForgedReceipt`` (and records nothing) if it proves nothing."""
        runs, x, at = message.get("runs"), message.get("x"), message.get("t")
        if (not isinstance(runs, list) or not isinstance(x, str) or len(runs) > MAX_RECEIPT_RUNS
                or type(at) not in (int, float) or not math.isfinite(at)):
            raise ForgedReceipt("malformed receipt")
        try:
            claimed_x = int(x, 16)
        except ValueError:
            raise ForgedReceipt("malformed receipt") from None
        seqs: list[int] = []
        for run in runs:
            if (not isinstance(run, list) or len(run) != 2 or not all(type(v) is int for v in run)
                    or run[0] > run[1] or run[1] - run[0] > len(self.sent)):
                raise ForgedReceipt("malformed receipt")
            seqs.extend(range(run[0], run[1] + 1))
        proof = 0
        for seq in seqs:
            probe = self.sent.get(seq)
            if probe is None or seq in self.received:
                raise ForgedReceipt(f"probe {seq} was never sent or is claimed twice")
            proof ^= probe.nonce
        if len(set(seqs)) != len(seqs) or proof != claimed_x:
            raise ForgedReceipt("the receipt does not prove the probes it claims")
        self.received.update(seqs)
        return seqs
