"""E-model MOS, grading and smoothing on known inputs (DESIGN.md §5)."""

from __future__ import annotations

import pytest

from media.quality import REPORT_INTERVAL, SAMPLE_INTERVAL, GradeSmoother, History, LinkSample, grade_of, mos, r_factor


def test_r_factor_follows_the_simplified_e_model() -> None:
    assert r_factor(0, 0, 0) == pytest.approx(93.2 - 10 / 40)  # d = 10 ms
    assert r_factor(100, 5, 0) == pytest.approx(93.2 - 70 / 40)  # d = 50 + 10 + 10
    assert r_factor(300, 0, 0) == pytest.approx(93.2 - (160 - 120) / 10)  # d = 160: the second branch
    assert r_factor(0, 0, 0.04) == pytest.approx(93.2 - 0.25 - 10)  # 2.5 per % of loss


def test_mos_on_known_links() -> None:
    r = 92.95
    assert mos(0, 0, 0) == pytest.approx(1 + 0.035 * r + 7e-6 * r * (r - 60) * (100 - r))
    assert mos(0, 0, 0) == pytest.approx(4.40, abs=0.01)
    assert mos(40, 5, 0) > 4.3  # a good fibre link
    assert 3.4 < mos(40, 5, 0.10) < 3.7  # 10 % loss
    assert mos(0, 0, 1.0) == 1.0  # nothing gets through
    assert mos(2000, 500, 0) == 1.0  # clamped


def test_grades() -> None:
    assert grade_of(mos(30, 3, 0)) == "excellent"
    assert grade_of(mos(30, 3, 0.05)) == "good"
    assert grade_of(mos(30, 3, 0.10)) == "poor"
    assert grade_of(mos(600, 40, 0)) == "poor"


PER_2_S = round(REPORT_INTERVAL / SAMPLE_INTERVAL)  # samples in 2 s


def test_ten_percent_loss_turns_poor_within_2_s_and_good_after() -> None:
    smoother = GradeSmoother()
    clean, lossy = mos(40, 5, 0), mos(40, 5, 0.10)
    for _ in range(5 * PER_2_S):
        assert smoother.update(clean)[0] == "excellent"
    grades = [smoother.update(lossy)[0] for _ in range(PER_2_S)]
    assert grades[-1] == "poor" and "poor" not in grades[:-1]
    grades = [smoother.update(clean)[0] for _ in range(5 * PER_2_S)]  # 10 s
    assert "good" in grades[:2 * PER_2_S] and grades[-1] == "excellent"


def test_one_bad_second_does_not_flicker_the_grade() -> None:
    smoother = GradeSmoother()
    for _ in range(5 * PER_2_S):
        smoother.update(mos(40, 5, 0))
    assert smoother.update(mos(40, 5, 0.08))[0] != "poor"
    assert smoother.update(mos(40, 5, 0))[0] in ("good", "excellent")


def test_hysteresis_holds_a_grade_on_its_threshold() -> None:
    smoother = GradeSmoother()
    smoother.update(3.6)
    assert smoother.grade == "poor"
    for score in (3.72, 3.68, 3.75, 3.7):  # hovering around the good threshold (3.7): no flicker up
        assert smoother.update(score)[0] == "poor"
    for _ in range(4):
        smoother.update(4.0)
    assert smoother.grade == "good"


def test_lost_and_back() -> None:
    smoother = GradeSmoother()
    smoother.update(4.4)
    assert smoother.update(None) == ("lost", 1.0)
    assert smoother.update(4.4)[0] == "excellent"  # back at once: no smoothing from the lost state


def test_history_keeps_the_last_five_minutes() -> None:
    history = History(seconds=300, interval=2)
    for i in range(200):
        history.add(LinkSample("p", float(i), "good", 4.0, 10, 1, 0, 0, 100, 100, None, None, None))
    samples = list(history)
    assert len(samples) == 150 and samples[0].at == 50.0 and samples[-1].at == 199.0
