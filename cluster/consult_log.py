"""The consult log in Redis (cluster mode): one log for every signaling process, behind ``ConsultRecords``.

Why Redis and not each process's SQLite: a consult is logged by the process it rings from, and an admin's page may
be served by any other; with one log, every process lists, exports and counts every consult. The rows are the
embedded log's rows (``signaling.consult_log.COLUMNS``), so statistics are computed by the same code from the same
values whichever backend holds them. Each step is one MULTI/EXEC (a ``batch`` joins several), so a reader never
sees a consult half written; with AOF (docs/cluster.md) a written step survives a Redis restart.
"""

from __future__ import annotations

import datetime
import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Literal

from redis import Redis, RedisError
from redis.client import Pipeline

from signaling.consult_log import COLUMNS, LogFilter, Party, Row, public_event, public_row, stamp

from .keys import Keys

__all__ = ["RedisConsultLog"]

logger = logging.getLogger(__name__)

_ROLES = {"requested": "caller", "accepted": "answerer", "invited": "invited"}

# Close one open consult as interrupted, once: of two processes starting together, only the one whose SREM
# removed it writes the event.
_INTERRUPT = """
if redis.call('SREM', KEYS[1], ARGV[1]) == 1 then
  redis.call('HSET', KEYS[2], 'outcome', 'interrupted', 'closed_at', ARGV[2])
  redis.call('RPUSH', KEYS[3], ARGV[3])
  return 1
end
return 0
"""
# Set a column of an existing consult once (SQLite: UPDATE ... WHERE id = ? AND column IS NULL).
_MARK = """
if redis.call('EXISTS', KEYS[1]) == 1 then return redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2]) end
return 0
"""

# Many consults' rows in one reply, each one JSON string (field, value, field, value...): redis-py parses one string
# per consult instead of a reply of two dozen, 6x faster for a statistics page over many consults.
_ROWS = """
local out = {}
for i, key in ipairs(KEYS) do out[i] = cjson.encode(redis.call('HGETALL', key)) end
return out
"""
_ROWS_PER_CALL = 500


def _ms(text: str) -> int:
    return round(datetime.datetime.fromisoformat(text).timestamp() * 1000)


class RedisConsultLog:
    def __init__(self, redis: Redis, keys: Keys, process_id: str, now: datetime.datetime) -> None:
        """Close, as ``interrupted``, consults left open by processes that are gone (not those of live ones)."""
        self._redis = redis
        self._keys = keys
        self._process = process_id
        self._pipe: Pipeline | None = None
        self._interrupt = redis.register_script(_INTERRUPT)
        self._mark = redis.register_script(_MARK)
        self._rows = redis.register_script(_ROWS)
        self._suspects: set[str] = set()
        try:
            self._close(self._orphans(), now)
        except RedisError as exc:  # Redis down at start: a later sweep closes them
            logger.warning("cannot close consults left open by stopped processes now (%s)", exc)

    def _orphans(self) -> set[str]:
        """Open consults whose owner process has no liveness key now."""
        keys = self._keys
        orphans = set()
        for consult_id in self._redis.smembers(keys.consults_open):
            owner = self._redis.hget(keys.consult(consult_id), "process")
            if not (owner and self._redis.exists(Keys.process_alive(keys.inbox(owner)))):
                orphans.add(consult_id)
        return orphans

    def _close(self, consult_ids: set[str], now: datetime.datetime) -> None:
        keys = self._keys
        for consult_id in consult_ids:
            event = self._event_json(consult_id, now, None, "interrupted")
            if self._interrupt(keys=[keys.consults_open, keys.consult(consult_id), keys.consult_events(consult_id)],
                               args=[consult_id, stamp(now), event]):
                logger.warning("consult %s interrupted: its signaling process is gone", consult_id,
                               extra={"consult_id": consult_id})

    def sweep(self, now: datetime.datetime) -> None:
        """Close the consults of signaling processes that died while they rang (their owner cannot). A consult
        counts as orphaned when its owner's liveness key is missing at two sweeps in a row: a key lapsed while
        Redis itself was away is renewed within a heartbeat of its return."""
        orphans = self._orphans()
        self._close(orphans & self._suspects, now)
        self._suspects = orphans - self._suspects

    # -- writing ------------------------------------------------------------------------------------------

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Writes inside are one MULTI/EXEC; nested batches join the outer one."""
        if self._pipe is not None:
            yield
            return
        self._pipe = self._redis.pipeline(transaction=True)
        try:
            yield
            self._pipe.execute()
        finally:
            self._pipe.reset()
            self._pipe = None

    @contextmanager
    def _writing(self) -> Iterator[Pipeline]:
        with self.batch():
            assert self._pipe is not None
            yield self._pipe

    def requested(self, consult_id: str, at: datetime.datetime, caller: Party, province: str, point: str | None,
                  specialty: str, urgency: str, summary: str, target: str | None) -> None:
        row = {"id": consult_id, "caller": caller.username, "caller_name": caller.name,
               "caller_facility": caller.facility, "caller_province": province, "point": point,
               "specialty": specialty, "urgency": urgency, "summary": summary, "target": target,
               "requested_at": stamp(at), "outcome": "open", "process": self._process}  # fmt: skip
        with self._writing() as pipe:
            pipe.hset(self._keys.consult(consult_id), mapping={k: v for k, v in row.items() if v is not None})
            pipe.zadd(self._keys.consults, {consult_id: _ms(stamp(at))})
            pipe.sadd(self._keys.consults_open, consult_id)
            self._event(pipe, consult_id, at, 0.0, "requested", caller.username, caller.facility)

    def event(self, consult_id: str, at: datetime.datetime, elapsed_ms: float | None, kind: str,
              party: Party | None = None, detail: str | None = None) -> None:
        with self._writing() as pipe:
            self._event(pipe, consult_id, at, elapsed_ms, kind, party and party.username,
                        party and party.facility, detail)

    def answered(self, consult_id: str, at: datetime.datetime, answer_ms: float, by: Party, room: str) -> None:
        with self._writing() as pipe:
            pipe.hset(self._keys.consult(consult_id), mapping={
                "outcome": "answered", "answered_by": by.username, "answerer_name": by.name,
                "answerer_facility": by.facility, "answered_at": stamp(at), "answer_ms": answer_ms,
                "closed_at": stamp(at), "room": room,
            })  # fmt: skip
            pipe.srem(self._keys.consults_open, consult_id)
            self._event(pipe, consult_id, at, answer_ms, "accepted", by.username, by.facility)

    def closed(self, consult_id: str, at: datetime.datetime, elapsed_ms: float,
               outcome: Literal["cancelled", "unanswered"]) -> None:
        with self._writing() as pipe:
            pipe.hset(self._keys.consult(consult_id), mapping={"outcome": outcome, "closed_at": stamp(at)})
            pipe.srem(self._keys.consults_open, consult_id)
            self._event(pipe, consult_id, at, elapsed_ms, outcome)

    def mark(self, consult_id: str, column: Literal["joined_at", "ended_at"], at: datetime.datetime) -> bool:
        """Set ``joined_at`` or ``ended_at`` once; True if it was unset (atomic: one process wins)."""
        return self._mark(keys=[self._keys.consult(consult_id)], args=[column, stamp(at)]) == 1

    def _event(self, pipe: Pipeline, consult_id: str, at: datetime.datetime, elapsed_ms: float | None, kind: str,
               username: str | None = None, facility: str | None = None, detail: str | None = None) -> None:
        pipe.rpush(self._keys.consult_events(consult_id),
                   self._event_json(consult_id, at, elapsed_ms, kind, username, facility, detail))
        if kind == "ring":
            pipe.hincrby(self._keys.consult(consult_id), "rings", 1)
        elif kind == "invited" and username:
            pipe.sadd(self._keys.consult_invited(consult_id), username)

    def _event_json(self, consult_id: str, at: datetime.datetime, elapsed_ms: float | None, kind: str,
                    username: str | None = None, facility: str | None = None, detail: str | None = None) -> str:
        if elapsed_ms is None:  # no monotonic reading (a restart came between): from the wall clocks
            requested = self._redis.hget(self._keys.consult(consult_id), "requested_at")
            elapsed_ms = ((at - datetime.datetime.fromisoformat(requested)).total_seconds() * 1000
                          if requested else 0.0)
        return json.dumps({"at": stamp(at), "elapsed_ms": elapsed_ms, "kind": kind, "username": username,
                           "facility": facility, "detail": detail}, ensure_ascii=False)

    # -- reading ------------------------------------------------------------------------------------------

    def _events(self, consult_id: str) -> list[dict[str, Any]]:
        return [json.loads(item) for item in self._redis.lrange(self._keys.consult_events(consult_id), 0, -1)]

    def parties(self, consult_id: str) -> dict[str, str] | None:
        """Who may be in the consult's room: username → ``caller``, ``answerer`` or ``invited``; None if unknown."""
        if not self._redis.exists(self._keys.consult(consult_id)):
            return None
        out: dict[str, str] = {}
        for event in self._events(consult_id):
            if event["kind"] in _ROLES:
                out.setdefault(event["username"], _ROLES[event["kind"]])
        return out

    def get(self, consult_id: str) -> dict[str, Any] | None:
        stored = self._redis.hgetall(self._keys.consult(consult_id))
        if not stored:
            return None
        out = public_row(_row(stored))
        out["events"] = [public_event(event) for event in self._events(consult_id)]
        return out

    def rows(self, where: LogFilter) -> list[Row]:
        """Consults matching ``where``, newest first (the same rows, in the same order, as the embedded log)."""
        low = "-inf" if where.start is None else _ms(stamp(where.start))
        high = "+inf" if where.end is None else f"({_ms(stamp(where.end))}"
        ids = self._redis.zrangebyscore(self._keys.consults, low, high)
        rows = [row for row in self._fetch(ids) if _matches(row, where)]
        if where.party is not None:
            rows = self._with_party(rows, where.party)
        rows.sort(key=lambda row: row["id"])
        rows.sort(key=lambda row: row["requested_at"], reverse=True)
        return rows if where.limit is None else rows[: max(int(where.limit), 0)]

    def _fetch(self, ids: list[str]) -> list[dict[str, Any]]:
        rows = []
        for first in range(0, len(ids), _ROWS_PER_CALL):
            chunk = [self._keys.consult(consult_id) for consult_id in ids[first : first + _ROWS_PER_CALL]]
            for text in self._rows(keys=chunk):
                flat = json.loads(text)
                if flat:  # an empty hash comes back as {}: a consult deleted meanwhile
                    rows.append(_row(dict(zip(flat[::2], flat[1::2], strict=True))))
        return rows

    def _with_party(self, rows: list[Row], username: str) -> list[Row]:
        """Rows where ``username`` called, answered or was invited."""
        pipe = self._redis.pipeline(transaction=False)
        for row in rows:
            pipe.sismember(self._keys.consult_invited(row["id"]), username)
        invited = pipe.execute()
        return [row for row, was_invited in zip(rows, invited, strict=True)
                if username in (row["caller"], row["answered_by"]) or was_invited]

    def ring_counts(self, consult_ids: list[str]) -> dict[str, int]:
        if not consult_ids:
            return {}
        pipe = self._redis.pipeline(transaction=False)
        for consult_id in consult_ids:
            pipe.hget(self._keys.consult(consult_id), "rings")
        return {consult_id: int(count) for consult_id, count in zip(consult_ids, pipe.execute(), strict=True)
                if count is not None}


def _row(stored: dict[str, str]) -> dict[str, Any]:
    row: dict[str, Any] = {column: stored.get(column) for column in COLUMNS}
    if row["answer_ms"] is not None:
        row["answer_ms"] = float(row["answer_ms"])
    return row


def _matches(row: Row, where: LogFilter) -> bool:
    """The embedded log's WHERE clauses, but ``party`` (``_with_party``)."""
    if where.start is not None and row["requested_at"] < stamp(where.start):
        return False
    if where.end is not None and row["requested_at"] >= stamp(where.end):
        return False
    for column, value in (("caller_facility", where.facility), ("caller_province", where.province),
                          ("specialty", where.specialty), ("outcome", where.outcome)):
        if value is not None and row[column] != value:
            return False
    involving = where.involving_facility
    return involving is None or involving in (row["caller_facility"], row["answerer_facility"])
