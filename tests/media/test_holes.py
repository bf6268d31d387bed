"""The sequence numbers a consumer's stream skipped, and how many of them a receiver report's range holds."""

from __future__ import annotations

from media.holes import FILLS_KEPT, RANGES_KEPT, Holes


def test_numbers_skipped_are_holes_until_their_packet_comes() -> None:
    holes = Holes()
    for seq in (10, 11, 14, 15, 13, 20):  # 12 lost upstream, 13 late (a repair), 16..19 lost
        holes.sent(seq, 1.0)
    assert holes.between(9, 20, 1.0) == 5
    assert holes.between(11, 12, 1.0) == 1 and holes.between(12, 15, 1.0) == 0 and holes.between(15, 17, 1.0) == 2
    holes.sent(17, 2.0)  # a repair in the middle of a range splits it
    holes.sent(17, 2.5)  # and again: a resend changes nothing
    assert holes.between(9, 20, 2.0) == 4 and holes.between(16, 18, 2.0) == 1


def test_a_hole_filled_after_a_report_was_written_was_a_hole_for_it() -> None:
    holes = Holes()
    for seq in (1, 2, 4, 5, 7):
        holes.sent(seq, 1.0)
    holes.sent(3, 2.0)  # the repair of 3 went out at 2.0, that of 6 at 3.0
    holes.sent(6, 3.0)
    assert holes.between(0, 7, 1.5) == 2  # a report written at 1.5 had neither
    assert holes.between(0, 7, 2.5) == 1 and holes.between(0, 7, 3.0) == 0
    assert holes.filled(7, 1.5, 2.5) == 1 and holes.filled(5, 1.5, 3.0) == 1 and holes.filled(7, 1.5, 3.0) == 2
    holes.sent(8, 3.0 + FILLS_KEPT + 1)
    holes.sent(10, 3.0 + FILLS_KEPT + 1)
    holes.sent(9, 3.0 + FILLS_KEPT + 1)  # fills long past are forgotten
    assert holes.filled(10, 0.0, 3.0) == 0


def test_numbering_goes_on_across_the_wrap() -> None:
    holes = Holes()
    for seq in (65533, 65534, 1, 2):  # 65535 and 0 skipped
        holes.sent(seq, 1.0)
    assert holes.extend(2) == 65538 and holes.extend(65534) == 65534
    assert holes.between(65534, 65538, 1.0) == 2
    holes.sent(0, 1.0)
    assert holes.between(65530, holes.extend(2), 1.0) == 1


def test_old_holes_are_forgotten() -> None:
    holes = Holes()
    for seq in range(0, 4 * (RANGES_KEPT + 10), 4):  # three of every four skipped
        holes.sent(seq, 1.0)
    newest = 4 * (RANGES_KEPT + 9)
    assert holes.between(newest - 4 * RANGES_KEPT, newest, 1.0) == 3 * RANGES_KEPT
    assert holes.between(-1, newest, 1.0) == 3 * RANGES_KEPT
