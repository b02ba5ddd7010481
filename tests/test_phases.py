"""Phase tracker on synthetic per-sample features with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from sensor.analysis.phases import Features, PhaseTracker, hysteresis, vertical_displacement_cm
from sensor.config import AnalysisParams
from sensor.errors import ConfigError

RATE_HZ = 100.0


def quintic(t_s: np.ndarray, t0_s: float, dur_s: float, amp: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Minimum-jerk move of `amp` from t0_s over dur_s: position, velocity, acceleration."""
    s = np.clip((t_s - t0_s) / dur_s, 0.0, 1.0)
    inside = (t_s > t0_s) & (t_s < t0_s + dur_s)
    pos = amp * (10 * s**3 - 15 * s**4 + 6 * s**5)
    vel = np.where(inside, amp * (30 * s**2 - 60 * s**3 + 30 * s**4) / dur_s, 0.0)
    acc = np.where(inside, amp * (60 * s - 180 * s**2 + 120 * s**3) / dur_s**2, 0.0)
    return pos, vel, acc


class Session:
    """Synthetic features: moves of the sensor height (m) and lift angle (deg), plus wiggles."""

    def __init__(self, duration_s: float, seed: int = 0) -> None:
        self.t = np.arange(0.0, duration_s, 1.0 / RATE_HZ)
        n = self.t.size
        rng = np.random.default_rng(seed)
        self.height_acc = rng.normal(0.0, 0.02, n)
        self.angle = np.zeros(n)
        self.rate = np.zeros((n, 3))  # deg/s
        self.rate += rng.normal(0.0, 0.3, (n, 3))

    def move(self, t0_s: float, dur_s: float, rise_m: float, angle_deg: float) -> None:
        _, _, acc = quintic(self.t, t0_s, dur_s, rise_m)
        pos_a, vel_a, _ = quintic(self.t, t0_s, dur_s, angle_deg)
        self.height_acc += acc
        self.angle += pos_a
        self.rate[:, 0] += vel_a

    def wobble(self, t0_s: float, dur_s: float, peak_dps: float, axis: int = 1) -> None:
        """Out-and-back rotation (a balance correction) about `axis`."""
        inside = (self.t >= t0_s) & (self.t <= t0_s + dur_s)
        phase = (self.t[inside] - t0_s) / dur_s
        self.rate[inside, axis] += peak_dps * np.sin(2 * np.pi * phase)

    def features(self) -> Features:
        motion = np.linalg.norm(self.rate, axis=1) + 30.0 * np.abs(self.height_acc)
        smooth = np.convolve(motion, np.ones(9) / 9, mode="same")
        return Features(self.t, smooth, self.height_acc, self.angle, self.rate)


def one_rep_session(rise_m: float = 0.35, angle_deg: float = 15.0, hold_s: float = 12.0) -> Session:
    s = Session(30.0)
    s.move(3.0, 1.0, rise_m, angle_deg)
    s.move(4.0 + hold_s, 1.0, -rise_m, -angle_deg)
    return s


def run(features: Features, chunk: int | None = None, placement: str = "ankle",
        params: AnalysisParams | None = None) -> tuple[PhaseTracker, list]:
    tracker = PhaseTracker(params or AnalysisParams(), placement, RATE_HZ)
    events = []
    n = len(features)
    step = n if chunk is None else chunk
    for i in range(0, n, step):
        events += tracker.feed(features.slice(i, i + step))
    events += tracker.finish()
    return tracker, events


def test_hysteresis_keeps_state_between_thresholds():
    x = np.array([0, 5, 25, 15, 12, 8, 15, 30, 9])
    assert hysteresis(x, 20, 10, False).tolist() == [False, False, True, True, True, False, False, True, False]
    assert hysteresis(np.array([15.0, 15.0]), 20, 10, True).tolist() == [True, True]


def test_vertical_displacement_recovers_a_rise_despite_an_acceleration_bias():
    t = np.arange(0.0, 2.0, 0.01)
    _, _, acc = quintic(t, 0.5, 1.0, 0.30)
    z_cm = vertical_displacement_cm(t, acc + 0.05)  # constant bias removed by the velocity pinning
    assert z_cm[-1] == pytest.approx(30.0, abs=0.5)
    assert vertical_displacement_cm(t, np.zeros_like(t))[-1] == pytest.approx(0.0)


def test_one_rep_timings_and_metrics():
    tracker, events = run(one_rep_session().features())
    (rep,) = tracker.reps
    assert rep.lift_start_s == pytest.approx(3.0, abs=0.1)
    assert rep.hold_start_s == pytest.approx(4.0, abs=0.1)
    assert rep.hold_end_s == pytest.approx(16.0, abs=0.1)
    assert rep.lower_end_s == pytest.approx(17.0, abs=0.1)
    assert rep.hold_angle_mean_deg == pytest.approx(15.0, abs=0.05)
    assert rep.target_met and rep.flags == []
    assert rep.extra["lift_rise_cm"] == pytest.approx(35.0, abs=1.0)
    kinds = [e.kind for e in events]
    assert kinds == ["lift_start", "hold_start", "target_reached", "hold_end", "rep_done"]
    assert events[2].t_s == pytest.approx(rep.hold_start_s + 10.0)


@pytest.mark.parametrize("chunk", [1, 10, 37, 1000])
def test_chunked_feeding_gives_the_same_reps_and_events(chunk):
    s = Session(70.0, seed=3)
    for t0, hold in ((3.0, 12.0), (22.0, 5.0), (35.0, 17.0)):
        s.move(t0, 1.0, 0.35, 12.0)
        s.move(t0 + 1.0 + hold, 1.0, -0.35, -12.0)
    s.wobble(10.0, 0.3, 40.0)
    s.move(60.0, 0.8, 0.30, 5.0)
    s.move(60.8, 0.8, -0.30, -5.0)  # straight back down: aborted
    features = s.features()
    whole, whole_events = run(features)
    part, part_events = run(features, chunk)
    assert [r.to_json() for r in part.reps] == [r.to_json() for r in whole.reps]
    assert part_events == whole_events
    assert len(whole.reps) == 4
    assert [("aborted" in r.flags) for r in whole.reps] == [False, False, False, True]
    assert "early_drop" in whole.reps[1].flags
    assert {"goal_reached", "lower_now"} <= {e.kind for e in whole_events}


def test_brief_correction_does_not_split_the_hold():
    s = one_rep_session()
    s.wobble(9.0, 0.3, 40.0)
    tracker, _ = run(s.features())
    (rep,) = tracker.reps
    assert rep.corrections == 1
    assert rep.hold_end_s == pytest.approx(16.0, abs=0.1)
    assert "balance_loss" not in rep.flags


def test_fidgeting_at_rest_is_not_a_rep():
    s = Session(20.0)
    s.wobble(5.0, 0.5, 60.0, axis=0)
    s.move(10.0, 0.6, 0.03, 1.0)  # a 3 cm shift of weight
    s.move(12.0, 0.6, -0.03, -1.0)
    tracker, events = run(s.features())
    assert tracker.reps == [] and events == []


def test_lift_that_never_settles_is_an_aborted_rep():
    s = Session(20.0)
    s.move(3.0, 1.0, 0.35, 10.0)
    for k in range(4):  # keeps moving: up and down by 10 cm, never still
        s.move(4.0 + 0.7 * k, 0.7, 0.10 * (-1) ** k, 8.0 * (-1) ** k)
    s.move(6.8, 1.0, -0.35, -10.0)
    tracker, events = run(s.features())
    (rep,) = tracker.reps
    assert rep.flags == ["aborted"] and rep.hold_start_s is None
    assert rep.lift_start_s == pytest.approx(3.0, abs=0.15)
    assert [e.kind for e in events] == ["rep_aborted"]


def test_thigh_placement_uses_the_angle():
    s = one_rep_session(rise_m=0.15, angle_deg=80.0)
    tracker, _ = run(s.features(), placement="thigh")
    (rep,) = tracker.reps
    assert rep.hold_angle_mean_deg == pytest.approx(80.0, abs=0.1)
    small = one_rep_session(rise_m=0.15, angle_deg=10.0)  # too small an angle for a thigh lift
    assert run(small.features(), placement="thigh")[0].reps == []


def test_fast_lowering_with_a_sideways_excursion_is_a_balance_loss():
    s = one_rep_session(hold_s=6.0)
    s.wobble(10.0, 0.6, 40.0, axis=2)  # ~7.6 deg out of the lift's plane while coming down
    tracker, _ = run(s.features())
    (rep,) = tracker.reps
    assert {"balance_loss", "early_drop"} <= set(rep.flags)


def test_sagging_hold_is_flagged_and_cued():
    s = one_rep_session(hold_s=12.0)
    sag = np.clip(s.t - 4.0, 0.0, 12.0) * -0.5  # -0.5 deg/s through the hold
    s.angle += np.where(s.t < 16.0, sag, sag[np.searchsorted(s.t, 16.0)])
    tracker, events = run(s.features())
    (rep,) = tracker.reps
    assert rep.sag_deg_per_s == pytest.approx(-0.5, abs=0.02)
    assert "sagging" in rep.flags
    (cue,) = [e for e in events if e.kind == "sagging"]
    assert 4.0 + 1.0 + 3.0 <= cue.t_s <= 10.0


def test_buffer_stays_bounded_over_a_long_rest():
    s = Session(600.0)
    features = s.features()
    tracker = PhaseTracker(AnalysisParams(), "ankle", RATE_HZ)
    for i in range(0, len(features), 10):
        tracker.feed(features.slice(i, i + 10))
    assert len(tracker._buf.data) <= 2 * RATE_HZ


def test_bad_placement_and_rate_raise_config_errors():
    with pytest.raises(ConfigError, match="placement"):
        PhaseTracker(AnalysisParams(), "wrist", RATE_HZ)
    with pytest.raises(ConfigError, match="rate_hz"):
        PhaseTracker(AnalysisParams(), "ankle", 0.0)


def test_hold_longer_than_the_buffer_keeps_its_timings():
    params = AnalysisParams(max_rep_buffer_s=5.0)
    tracker, _ = run(one_rep_session(hold_s=12.0).features(), chunk=10, params=params)
    (rep,) = tracker.reps
    assert rep.hold_start_s == pytest.approx(4.0, abs=0.1)
    assert rep.hold_duration_s == pytest.approx(12.0, abs=0.2)
    assert rep.hold_angle_mean_deg == pytest.approx(15.0, abs=0.05)


def test_coming_down_from_an_unseen_slow_rise_is_an_aborted_rep():
    s = Session(20.0)
    s.move(3.0, 3.0, 0.12, 0.0)  # too slow to count as motion
    s.move(7.0, 0.8, -0.12, 0.0)
    tracker, _ = run(s.features())
    (rep,) = tracker.reps
    assert rep.flags == ["aborted"] and rep.extra["rise_unseen"] is True
    assert rep.lift_start_s == pytest.approx(7.0, abs=0.2)
