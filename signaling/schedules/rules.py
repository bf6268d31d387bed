"""When a scheduled session happens: a weekly slot (weekday + local time in a time zone) or a one-off instant.

Pure functions on aware datetimes, so the arithmetic is tested to the second with fixed dates. Weekly times are wall
clock times in the schedule's zone (Asia/Ho_Chi_Minh has had no daylight saving since 1975; for zones that have it,
zoneinfo places a time in a skipped hour after the jump). Every result is in UTC.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from zoneinfo import ZoneInfo

__all__ = ["OneOff", "Rule", "Weekly"]

UTC = datetime.UTC
_WEEK = datetime.timedelta(days=7)


@dataclass(frozen=True)
class Weekly:
    weekday: int
    """ISO weekday: 1 = Monday (Thứ Hai) … 7 = Sunday (Chủ nhật)."""
    time: datetime.time
    zone: ZoneInfo

    def _on(self, day: datetime.date) -> datetime.datetime:
        return datetime.datetime.combine(day, self.time, tzinfo=self.zone).astimezone(UTC)

    def next_after(self, instant: datetime.datetime) -> datetime.datetime:
        """The first occurrence strictly after ``instant``."""
        local = instant.astimezone(self.zone)
        day = local.date() + datetime.timedelta(days=(self.weekday - local.isoweekday()) % 7)
        candidate = self._on(day)
        return candidate if candidate > instant else self._on(day + _WEEK)

    def latest_at_or_before(self, instant: datetime.datetime) -> datetime.datetime:
        """The last occurrence at or before ``instant``."""
        local = instant.astimezone(self.zone)
        day = local.date() - datetime.timedelta(days=(local.isoweekday() - self.weekday) % 7)
        candidate = self._on(day)
        return candidate if candidate <= instant else self._on(day - _WEEK)


@dataclass(frozen=True)
class OneOff:
    at: datetime.datetime
    """Aware."""

    def next_after(self, instant: datetime.datetime) -> datetime.datetime | None:
        return self.at.astimezone(UTC) if self.at > instant else None

    def latest_at_or_before(self, instant: datetime.datetime) -> datetime.datetime | None:
        return self.at.astimezone(UTC) if self.at <= instant else None


Rule = Weekly | OneOff
