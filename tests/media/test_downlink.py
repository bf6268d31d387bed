"""The downlink's allocation and estimate, as pure functions of the figures they are given."""

from __future__ import annotations

import pytest

from media.downlink import (
    CEILING_HOLD,
    DECREASE,
    DECREASE_HOLD,
    HEADROOM,
    PROBE_WAIT,
    PROBE_WAIT_MAX,
    TRIAL,
    UP_MARGIN,
    QUEUE_REPORTS,
    RETURN_GRACE,
    SILENCE,
    AudioNeed,
    Downlink,
    Estimate,
    Reports,
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
    estimate.feedback(now=11, sent=340_000, loss=0.03, queuing=False)  # > 2 % ends a trial
    assert not estimate.probing and estimate.bps == pytest.approx(300_000)
    assert estimate.next_probe == 11 + 2 * PROBE_WAIT
    assert not estimate.try_step(now=20, spent=250_000, step=100_000)  # 353.5 k ≥ the 340 k that congested
    assert estimate.try_step(now=20, spent=250_000, step=50_000)  # below the ceiling: allowed
    estimate.feedback(now=21, sent=290_000, loss=None, queuing=True)
    assert estimate.try_step(now=21 + CEILING_HOLD + 60, spent=250_000, step=100_000)  # the ceiling expires


def test_one_high_round_trip_ends_a_trial_where_a_steady_link_needs_several() -> None:
    """A trial overfills the bottleneck's queue, which drops audio too: its first sign ends it."""
    downlink = Downlink(lambda: [], 600)
    assert not downlink._queuing(0, 0.05, QUEUE_REPORTS)  # the lowest round trip seen
    high = [downlink._queuing(t, 0.3, QUEUE_REPORTS) for t in range(1, QUEUE_REPORTS + 1)]
    assert high == [False] * (QUEUE_REPORTS - 1) + [True]
    assert downlink._queuing(10, 0.3, 1)
    assert not downlink._queuing(11, 0.1, 1)  # within 25 % + 100 ms of the lowest


def test_the_report_after_an_outage_is_not_congestion() -> None:
    reports = Reports()
    assert reports.ends_silence(100.0)  # the very first
    assert not reports.returning(100.0)  # (it ends no outage)
    assert not reports.ends_silence(101.0)
    assert not reports.ends_silence(101.0 + SILENCE)  # every second or so: the link is up
    assert reports.ends_silence(108.0)  # five seconds without one: it covers a cut link
    assert not reports.ends_silence(109.0)
    # the reports that follow it within the grace may still count the cut's loss; later ones are the link's own
    assert reports.returning(108.0) and reports.returning(108.0 + RETURN_GRACE - 0.1)
    assert not reports.returning(108.0 + RETURN_GRACE)


def test_one_congested_moment_lowers_the_estimate_once() -> None:
    estimate = Estimate(600_000)
    estimate.feedback(now=10, sent=500_000, loss=0.2, queuing=False, rtt=0.8)
    assert estimate.bps == pytest.approx(450_000) and estimate.next_probe == 10 + 2 * PROBE_WAIT
    # the next reports of a long link still describe the same moment: no second halving, no longer probe wait
    estimate.feedback(now=10.5, sent=300_000, loss=0.3, queuing=True, rtt=0.8)
    estimate.feedback(now=11.0, sent=200_000, loss=0.3, queuing=False, rtt=0.8)
    assert estimate.bps == pytest.approx(450_000) and estimate.next_probe == 10 + 2 * PROBE_WAIT
    estimate.feedback(now=10 + DECREASE_HOLD + 0.8, sent=200_000, loss=0.3, queuing=False, rtt=0.8)  # a new one
    assert estimate.bps == pytest.approx(225_000) and estimate.next_probe == 11.3 + 4 * PROBE_WAIT


def test_a_queue_while_little_is_sent_lowers_the_estimate_not_the_audio_rate() -> None:
    """Video paused, 40 kbit/s of audio, a long link's delay varies: 85 % of the audio would pause video for good."""
    estimate = Estimate(300_000)
    estimate.feedback(now=1, sent=40_000, loss=None, queuing=True)
    assert estimate.bps == pytest.approx(255_000)
    estimate.feedback(now=5, sent=250_000, loss=None, queuing=True)  # near the estimate: what was sent
    assert estimate.bps == pytest.approx(212_500)


def test_failed_trials_wait_at_most_the_cap_and_a_returning_link_probes_soon() -> None:
    estimate = Estimate(300_000)
    for i in range(10):
        estimate.feedback(now=10.0 * i, sent=290_000, loss=None, queuing=True)
    assert estimate.probe_wait == PROBE_WAIT_MAX and estimate.next_probe == 90 + PROBE_WAIT_MAX
    estimate.link_returned(100)
    assert estimate.probe_wait == PROBE_WAIT and estimate.next_probe == 100 + PROBE_WAIT


def test_the_links_own_random_loss_is_not_congestion() -> None:
    """10 % random loss (no queue): its noise neither ends trials nor lowers the estimate; loss beyond it does."""
    downlink = Downlink(lambda: [], 600)
    assert downlink._congestion_loss(0, 12, 100) == pytest.approx(0.12)  # nothing known yet: all of it counts
    for t in range(1, 9):
        downlink._congestion_loss(t, 10, 100)  # round trips near the lowest: the link's own loss
    assert downlink._congestion_loss(10, 15, 100) == 0.0  # within two standard deviations of 10 %
    assert downlink._congestion_loss(11, 40, 100) == pytest.approx(0.40 - 0.1 - 2 * (0.1 * 0.9 / 100) ** 0.5, abs=0.01)
    assert downlink._congestion_loss(11 + 40, 12, 100) == pytest.approx(0.12)  # forgotten after the window


def test_loss_while_a_queue_is_full_is_not_taken_for_the_links_own() -> None:
    downlink = Downlink(lambda: [], 600)
    downlink._queuing(0, 0.8, QUEUE_REPORTS)
    downlink._queuing(1, 1.2, QUEUE_REPORTS)  # 300 ms of queue: drop-tail losses are congestion
    for t in range(2, 10):
        downlink._congestion_loss(t, 40, 100)
    assert downlink._congestion_loss(10, 40, 100) == pytest.approx(0.40)


def test_one_round_trip_far_below_the_others_does_not_become_the_lowest() -> None:
    """A lossy link's reports now and then give a round trip far too low: one of them must not make the rest look
    like a queue."""
    downlink = Downlink(lambda: [], 600)
    for t in range(5):
        assert not downlink._queuing(t, 1.0, QUEUE_REPORTS)
    assert not downlink._queuing(5, 0.15, QUEUE_REPORTS)
    assert not any(downlink._queuing(t, 1.05, QUEUE_REPORTS) for t in range(6, 12))
    assert [downlink._queuing(t, 1.5, QUEUE_REPORTS) for t in range(12, 15)] == [False, False, True]


def test_after_congestion_no_trial_asks_for_much_more_than_the_estimate() -> None:
    """On a 250 kbit/s link: congestion at the start rate leaves a ceiling at what arrived, and a full layer's
    step on top of two half layers (more than twice what is sent) is not tried until the estimate nears it."""
    estimate = Estimate(600_000)
    estimate.feedback(now=3, sent=500_000, loss=0.5, queuing=False)  # half of it lost: about 250 k arrived
    assert estimate.ceiling == pytest.approx(250_000) and not estimate.slow_start
    estimate.bps = 360_000
    assert not estimate.try_step(now=10, spent=230_000, step=60_000)  # 293 k: above what arrived
    estimate.ceiling_until = 0.0
    assert not estimate.try_step(now=40, spent=300_000, step=400_000)  # 707 k > 1.5 × 360 k
    assert estimate.try_step(now=40, spent=300_000, step=200_000)  # 505 k ≤ 540 k


def test_the_estimate_does_not_grow_past_its_ceiling_while_it_holds() -> None:
    estimate = Estimate(600_000)
    estimate.feedback(now=3, sent=500_000, loss=0.5, queuing=False)  # congested: about 250 k arrived
    estimate.bps = 240_000
    for tick in range(20):  # clean reports: 5 % a report, up to the ceiling only
        estimate.feedback(now=4 + tick / 2, sent=230_000, loss=0.0, queuing=False)
    assert estimate.bps == pytest.approx(250_000)
    estimate.feedback(now=4 + CEILING_HOLD, sent=230_000, loss=0.0, queuing=False)
    assert estimate.bps > 250_000  # once it expires, growth goes on


def test_a_queue_alone_bounds_trials_but_not_the_estimates_growth() -> None:
    """A growing round trip can be a busy receiver's doing: after one, the estimate climbs back as before."""
    estimate = Estimate(500_000)
    estimate.feedback(now=3, sent=450_000, loss=0.0, queuing=True)
    assert estimate.ceiling == pytest.approx(450_000) and estimate.bps == pytest.approx(450_000 * DECREASE)
    for tick in range(10):
        estimate.feedback(now=4 + tick / 2, sent=420_000, loss=0.0, queuing=False)
    assert estimate.bps > 450_000


def test_a_link_cut_for_a_moment_leaves_no_ceiling() -> None:
    """Nearly everything lost says the link was cut, not how much it carries: growth is not held at ~0 after it."""
    estimate = Estimate(600_000)
    estimate.feedback(now=3, sent=550_000, loss=1.0, queuing=False)
    assert estimate.bps == pytest.approx(300_000)
    for tick in range(10):
        estimate.feedback(now=4 + tick / 2, sent=280_000, loss=0.0, queuing=False)
    assert estimate.bps > 400_000
