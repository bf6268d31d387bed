"""Consult statistics: how many, how many answered, how fast, by facility, province, specialty or day.

Definitions (the same in the API, the page and docs/protocol.md):
- ``count``: consults requested in the range; ``open``: still ringing; ``answered``, ``cancelled``;
  ``unanswered``: nobody accepted in time, or a server restart cut the call short (``interrupted``).
- ``answeredShare``: answered / (count − open); null when nothing has closed.
- ``medianAnswerSeconds``, ``p90AnswerSeconds``: over answered consults, time from request to accept (monotonic),
  percentiles by linear interpolation between closest ranks (numpy's default); null with no answered consult.
"""

from __future__ import annotations

import datetime
import math
from collections.abc import Callable, Sequence
from typing import Any, Literal
from zoneinfo import ZoneInfo

from .consult_log import Row
from .directory import Directory

__all__ = ["GROUPS", "Grouping", "day_bounds", "figures", "percentile", "statistics"]

Grouping = Literal["facility", "province", "specialty", "day"]
GROUPS: tuple[str, ...] = ("facility", "province", "specialty", "day")


def percentile(ordered: Sequence[float], q: float) -> float:
    """The ``q``-quantile (0..1) of an ascending, non-empty sequence, interpolating linearly between ranks."""
    position = (len(ordered) - 1) * q
    low, high = math.floor(position), math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def figures(rows: Sequence[Row]) -> dict[str, Any]:
    outcomes = [row["outcome"] for row in rows]
    times = sorted(row["answer_ms"] / 1000 for row in rows if row["outcome"] == "answered")
    closed = len(rows) - outcomes.count("open")
    return {
        "count": len(rows),
        "answered": outcomes.count("answered"),
        "cancelled": outcomes.count("cancelled"),
        "unanswered": outcomes.count("unanswered") + outcomes.count("interrupted"),
        "open": outcomes.count("open"),
        "answeredShare": round(outcomes.count("answered") / closed, 4) if closed else None,
        "medianAnswerSeconds": round(percentile(times, 0.5), 3) if times else None,
        "p90AnswerSeconds": round(percentile(times, 0.9), 3) if times else None,
    }


def day_bounds(
    first: datetime.date, last: datetime.date, zone: ZoneInfo
) -> tuple[datetime.datetime, datetime.datetime]:
    """The instants [first 00:00, day after last 00:00) in ``zone``: a day is the hospital's day, not UTC's."""
    start = datetime.datetime.combine(first, datetime.time(), zone)
    end = datetime.datetime.combine(last + datetime.timedelta(days=1), datetime.time(), zone)
    return start, end


def statistics(
    rows: Sequence[Row], by: Grouping, directory: Directory, zone: ZoneInfo
) -> dict[str, Any]:
    """Figures for all ``rows`` and for each group, groups in key order."""
    key_of: dict[str, Callable[[Row], str]] = {
        "facility": lambda row: row["caller_facility"],
        "province": lambda row: row["caller_province"],
        "specialty": lambda row: row["specialty"],
        "day": lambda row: datetime.datetime.fromisoformat(row["requested_at"]).astimezone(zone).date().isoformat(),
    }
    groups: dict[str, list[Row]] = {}
    for row in rows:
        groups.setdefault(key_of[by](row), []).append(row)
    return {
        "by": by,
        "total": figures(rows),
        "groups": [{"key": key, "name": _name(directory, by, key), **figures(members)}
                   for key, members in sorted(groups.items())],
    }  # fmt: skip


def _name(directory: Directory, by: Grouping, key: str) -> str:
    """A group's display name from the directory in force (the id itself if it has left the directory)."""
    entry: Any = None
    if by == "facility":
        entry = directory.facility(key)
    elif by == "province":
        entry = directory.provinces.get(key)
    elif by == "specialty":
        entry = directory.specialty(key)
    return entry.name if entry is not None else key
