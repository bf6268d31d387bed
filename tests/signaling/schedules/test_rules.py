"""Occurrences of weekly and one-off sessions, exact to the second, on fixed dates in Asia/Ho_Chi_Minh (UTC+7, no
daylight saving)."""

from __future__ import annotations

import datetime
from zoneinfo import ZoneInfo

import pytest

from signaling.schedules.rules import OneOff, Weekly

HCM = datetime.timezone(datetime.timedelta(hours=7))
UTC = datetime.UTC
TUESDAY_8 = Weekly(2, datetime.time(8, 0), ZoneInfo("Asia/Ho_Chi_Minh"))


def hcm(*args: int) -> datetime.datetime:
    return datetime.datetime(*args, tzinfo=HCM)  # type: ignore[misc]


@pytest.mark.parametrize(
    ("after", "expected"),
    [
        (hcm(2026, 11, 23, 10, 0), hcm(2026, 11, 24, 8, 0)),  # Monday → the next day
        (hcm(2026, 11, 24, 7, 59, 59), hcm(2026, 11, 24, 8, 0)),  # Tuesday, one second before
        (hcm(2026, 11, 24, 8, 0), hcm(2026, 12, 1, 8, 0)),  # at the occurrence: strictly after → next week
        (hcm(2026, 11, 24, 8, 0, 1), hcm(2026, 12, 1, 8, 0)),
        (hcm(2026, 11, 29, 23, 59), hcm(2026, 12, 1, 8, 0)),  # Sunday night
        (hcm(2026, 12, 29, 9, 0), hcm(2027, 1, 5, 8, 0)),  # across the new year
        (hcm(2028, 2, 28, 12, 0), hcm(2028, 2, 29, 8, 0)),  # a leap day that is a Tuesday
        # 00:30 UTC on Tuesday is already 07:30 Tuesday in Hà Nội: the zone decides the day, not UTC
        (datetime.datetime(2026, 11, 24, 0, 30, tzinfo=UTC), hcm(2026, 11, 24, 8, 0)),
        # 23:30 UTC on Monday is 06:30 Tuesday local
        (datetime.datetime(2026, 11, 23, 23, 30, tzinfo=UTC), hcm(2026, 11, 24, 8, 0)),
    ],
)
def test_next_weekly_occurrence(after: datetime.datetime, expected: datetime.datetime) -> None:
    got = TUESDAY_8.next_after(after)
    assert got == expected and got.tzinfo is UTC
    assert got.astimezone(HCM).isoweekday() == 2 and got.astimezone(HCM).time() == datetime.time(8, 0)


@pytest.mark.parametrize(
    ("at", "expected"),
    [
        (hcm(2026, 11, 24, 8, 0), hcm(2026, 11, 24, 8, 0)),  # at the occurrence: it is the latest
        (hcm(2026, 11, 24, 7, 59, 59), hcm(2026, 11, 17, 8, 0)),
        (hcm(2026, 11, 24, 9, 30), hcm(2026, 11, 24, 8, 0)),
        (hcm(2027, 1, 1, 0, 0), hcm(2026, 12, 29, 8, 0)),
    ],
)
def test_latest_weekly_occurrence(at: datetime.datetime, expected: datetime.datetime) -> None:
    assert TUESDAY_8.latest_at_or_before(at) == expected


def test_every_weekday_and_a_late_evening_slot() -> None:
    zone = TUESDAY_8.zone
    monday = hcm(2026, 11, 23, 0, 0)
    for weekday in range(1, 8):
        got = Weekly(weekday, datetime.time(22, 45), zone).next_after(monday)
        assert got == hcm(2026, 11, 22 + weekday, 22, 45)
    # consecutive occurrences are exactly one week apart, a year long
    t = hcm(2026, 1, 1)
    for _ in range(53):
        nxt = TUESDAY_8.next_after(t)
        if t != hcm(2026, 1, 1):
            assert nxt - t == datetime.timedelta(days=7)
        t = nxt


def test_one_off() -> None:
    rule = OneOff(hcm(2026, 12, 1, 14, 0))
    assert rule.next_after(hcm(2026, 12, 1, 13, 59)) == hcm(2026, 12, 1, 14, 0)
    assert rule.next_after(hcm(2026, 12, 1, 14, 0)) is None
    assert rule.latest_at_or_before(hcm(2026, 12, 1, 13, 59)) is None
    assert rule.latest_at_or_before(hcm(2026, 12, 1, 14, 0)) == hcm(2026, 12, 1, 14, 0)
