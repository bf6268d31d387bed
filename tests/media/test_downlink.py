"""The downlink's allocation and estimate, as pure functions of the figures they are given."""

from __future__ import annotations

import pytest

from media.downlink import (
    CEILING_HOLD,
    HEADROOM,
    PROBE_WAIT,
    TRIAL,
    UP_MARGIN,
    AudioNeed,
    Estimate,
    VideoNeed,
    allocate_audio,
    allocate_video,
)

LAYERS = ((0, 60_000.0), (1, 200_000.0), (2, 600_000.0))


def test_audio_comes_first_and_the_loudest_is_never_left_out() -> None:
    audio = [AudioNeed(40_000, level=60), AudioNeed(40_000, level=20), AudioNeed(40_000, level=90)]
    assert allocate_audio(1_000_000, audio) == ([True, True, True], 120_000)
    assert allocate_audio(64_000, audio) == ([False, True, False], 40_000)  # an audio-only site: the loudest
    assert allocate_audio(10_000, audio) == ([False, True, False], 40_000)  # even when it alone does not fit


def test_videos_get_their_lowest_layer_first_then_step_up_in_turn() -> None:
    videos = [VideoNeed(LAYERS, current=1), VideoNeed(LAYERS, current=1)]
    chosen, spent, step = allocate_video(450_000, videos)
    assert chosen == [1, 1] and spent == 400_000
    assert step == pytest.approx(600_000 * UP_MARGIN - 200_000)
    chosen, _, step = allocate_video(2_000_000, videos)
    assert chosen == [2, 2] and step is None
    # a budget for one low layer only: the first (loudest) keeps video, the second is paused
    chosen, _, step = allocate_video(100_000, videos)
    assert chosen == [0, None] and step == pytest.approx(60_000)  # resuming the second (no margin: below its layer)
    assert allocate_video(0, videos)[0] == [None, None]


def test_a_layer_above_the_current_one_must_fit_with_a_margin() -> None:
    budget = 650_000  # the top layer fits as such, but not with the margin an upgrade needs
    assert allocate_video(budget, [VideoNeed(LAYERS, current=1)])[0] == [1]
    assert allocate_video(budget, [VideoNeed(LAYERS, current=2)])[0] == [2]  # staying costs no margin


def test_a_producer_without_active_layers_gets_nothing() -> None:
    chosen, spent, step = allocate_video(1_000_000, [VideoNeed((), current=0), VideoNeed(((1, 200_000.0),), None)])
    assert chosen == [None, 1] and spent == pytest.approx(200_000 * UP_MARGIN) and step is None


def test_loss_and_queuing_lower_the_estimate_and_delay_probing() -> None:
    estimate = Estimate(600_000)
    estimate.feedback(now=1, sent=500_000, loss=0.2, queuing=False)
    assert estimate.bps == pytest.approx(450_000)  # sent × (1 − loss/2)
    assert not estimate.slow_start and estimate.next_probe == 1 + 2 * PROBE_WAIT
    estimate.feedback(now=2, sent=400_000, loss=None, queuing=True)
    assert estimate.bps == pytest.approx(340_000)  # 85 % of what was sent
    assert estimate.next_probe == 2 + 4 * PROBE_WAIT
    estimate.feedback(now=3, sent=300_000, loss=0.05, queuing=False)  # 2-10 %: hold
    assert estimate.bps == pytest.approx(340_000)


def test_a_clean_link_grows_the_estimate_only_near_what_is_sent() -> None:
    estimate = Estimate(300_000)
    estimate.feedback(now=1, sent=290_000, loss=0.0, queuing=False)
    assert estimate.bps == pytest.approx(315_000)
    estimate.feedback(now=2, sent=50_000, loss=0.0, queuing=False)  # sending little proves little
    assert estimate.bps == pytest.approx(315_000)


def test_a_trial_that_holds_becomes_the_estimate() -> None:
    estimate = Estimate(300_000)
    assert estimate.try_step(now=10, spent=250_000, step=100_000)
    assert estimate.bps == pytest.approx(500_000 * 1.01 / HEADROOM)  # slow start: twice what is spent
    assert not estimate.try_step(now=11, spent=250_000, step=100_000)  # one trial at a time
    estimate.feedback(now=10 + TRIAL, sent=450_000, loss=0.0, queuing=False)
    assert not estimate.probing and estimate.bps >= 500_000 * 1.01 / HEADROOM
    assert estimate.try_step(now=10 + TRIAL, spent=450_000, step=100_000)  # the next one may follow at once


def test_a_failed_trial_falls_back_and_keeps_below_its_ceiling() -> None:
    estimate = Estimate(300_000)
    estimate.slow_start = False
    assert estimate.try_step(now=10, spent=250_000, step=100_000)
    assert estimate.bps == pytest.approx(350_000 * 1.01 / HEADROOM)
    estimate.feedback(now=11, sent=340_000, loss=0.06, queuing=False)  # > 5 % ends a trial
    assert not estimate.probing and estimate.bps == pytest.approx(300_000)
    assert estimate.next_probe == 11 + 2 * PROBE_WAIT
    assert not estimate.try_step(now=20, spent=250_000, step=100_000)  # 353.5 k ≥ the 340 k that congested
    assert estimate.try_step(now=20, spent=250_000, step=50_000)  # below the ceiling: allowed
    estimate.feedback(now=21, sent=290_000, loss=None, queuing=True)
    assert estimate.try_step(now=21 + CEILING_HOLD + 60, spent=250_000, step=100_000)  # the ceiling expires
