"""analyze() and LivePipeline end to end on simulated sessions."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np
import pytest

from sensor.analysis.phases import PHASE_CODES, PhaseTracker
from sensor.config import AnalysisParams
from sensor.errors import ConfigError, DataError
from sensor.pipeline import (LivePipeline, _features, _make_reference, _replay_signals, analyze,
                             find_reference)
from sensor.simulate import SimConfig, simulate_session
from sensor.types import RecordingMeta, Samples

REP_KEYS = {"index", "lift_start_s", "hold_start_s", "hold_end_s", "lower_end_s", "hold_duration_s",
            "peak_angle_deg", "hold_angle_mean_deg", "sway_sd_deg", "sway_range_deg", "sag_deg_per_s",
            "mean_speed_dps", "tremor_rms_dps", "tremor_growth", "corrections", "target_met", "flags"}


@dataclass
class Rec:
    path: str
    meta: RecordingMeta
    samples: Samples
    issues: list = field(default_factory=list)
    gaps: list | None = None


@pytest.fixture(scope="module")
def sim():
    return simulate_session(SimConfig(reps=4, seed=5, rate_hz=100.0, early_drop_reps=(2,), aborted_reps=(3,)))


@pytest.fixture(scope="module")
def replay(sim):
    return analyze(Rec("sim.csv", sim.meta, sim.samples), AnalysisParams())


def feed_live(sim, chunk: int, params: AnalysisParams | None = None):
    live = LivePipeline(sim.meta, params or AnalysisParams(), sim.meta.rate_hz)
    events, cues = [], []
    samples = sim.samples
    for i in range(0, len(samples), chunk):
        events += live.feed(samples.slice(i, i + chunk))
        cues.append(live.state.cue)
    return live, events, cues, live.finish("live.csv")


def test_replay_document_has_the_fixed_shape(replay, sim):
    doc = replay.to_json()
    text = json.dumps(doc, allow_nan=False)
    assert json.loads(text)["format"] == "holdmon.replay/1"
    assert set(doc) >= {"format", "recording", "reps", "summary"}
    assert set(doc["recording"]) >= {"path", "samples", "duration_s", "rate_hz", "placement", "side", "gaps"}
    assert doc["recording"]["samples"] == len(sim.samples)
    assert doc["recording"]["gaps"] and set(doc["recording"]["gaps"][0]) == {"start_s", "end_s", "missing_samples"}
    assert all(REP_KEYS <= set(r) for r in doc["reps"])
    assert set(doc["summary"]) >= {"reps", "reps_target_met", "mean_hold_s", "mean_sway_sd_deg"}
    assert doc["summary"]["reps"] == 4 and doc["summary"]["aborted"] == 1


def test_replay_finds_the_simulated_reps(replay, sim):
    truth = sim.truth["reps"]
    assert len(replay.reps) == len(truth)
    for rep, true in zip(replay.reps, truth):
        assert ("aborted" in rep.flags) == true["aborted"]
        if true["hold_start_s"] is not None:
            assert rep.hold_start_s == pytest.approx(true["hold_start_s"], abs=0.15)
            assert rep.hold_end_s == pytest.approx(true["hold_end_s"], abs=0.15)
            assert rep.hold_angle_mean_deg == pytest.approx(true["hold_angle_mean_deg"], abs=1.0)
            assert ("early_drop" in rep.flags) == true["early_drop"]


def test_trace_phases_follow_the_reps(replay):
    trace = replay.trace
    assert trace.t_s.shape == trace.angle_deg.shape == trace.phase.shape
    rep = replay.reps[0]
    mid = np.searchsorted(trace.t_s, (rep.hold_start_s + rep.hold_end_s) / 2)
    assert trace.phase[mid] == PHASE_CODES["hold"]
    assert trace.phase[0] == PHASE_CODES["rest"]
    assert trace.angle_deg[mid] == pytest.approx(rep.hold_angle_mean_deg, abs=5.0)


def test_live_finds_the_same_reps_as_replay(sim, replay):
    live, events, cues, result = feed_live(sim, 10)
    assert len(result.reps) == len(replay.reps)
    for a, b in zip(result.reps, replay.reps):
        assert a.flags == b.flags
        for key in ("lift_start_s", "hold_start_s", "hold_end_s", "lower_end_s"):
            va, vb = getattr(a, key), getattr(b, key)
            assert (va is None) == (vb is None)
            if va is not None:
                assert va == pytest.approx(vb, abs=0.2), key
    kinds = [e.kind for e in events]
    assert kinds.count("rep_done") == 3 and kinds.count("rep_aborted") == 1
    assert "gap" in kinds  # the simulated link loses packets
    assert {"rest", "lift", "hold", "10 s reached"} <= set(cues)
    assert result.to_json()["summary"]["reps"] == 4


def test_live_is_independent_of_chunk_size(sim):
    *_, a = feed_live(sim, 7)
    *_, b = feed_live(sim, 64)
    assert [r.to_json() for r in a.reps] == [r.to_json() for r in b.reps]


def test_live_memory_stays_bounded():
    sim = simulate_session(SimConfig(duration_s=300.0, seed=2, rate_hz=100.0))
    live, _, _, result = feed_live(sim, 20)
    assert len(live._tracker._buf.data) < 30 * 100  # at most about one rep's worth of samples
    assert len(result.trace.t_s) <= 300 * AnalysisParams().live_trace_rate_hz + 10
    assert len(result.reps) >= 8


def test_calibration_window_sets_the_reference(sim):
    params = AnalysisParams(calibration_window_s=(0.5, 1.5))
    result = analyze(Rec("sim.csv", sim.meta, sim.samples), params)
    assert result.reference["start_s"] == pytest.approx(0.5, abs=0.02)
    with pytest.raises(DataError, match="calibration window"):
        analyze(Rec("sim.csv", sim.meta, sim.samples), AnalysisParams(calibration_window_s=(900.0, 901.0)))


def test_recording_without_a_still_period_is_reported():
    t = np.arange(0.0, 20.0, 0.01)
    rng = np.random.default_rng(0)
    gyr = np.stack([np.sin(2 * np.pi * 0.7 * t), np.cos(2 * np.pi * 0.9 * t), 0.0 * t], axis=1) * 2.0
    acc = np.tile([0.0, 0.0, 9.81], (t.size, 1)) + rng.normal(0, 0.02, (t.size, 3))
    result = analyze(Rec("moving.csv", RecordingMeta(rate_hz=100.0), Samples(t, acc, gyr)), AnalysisParams())
    assert [i.kind for i in result.issues] == ["no_still_reference"]
    assert result.reps == []


def test_placement_override_and_parameter_validation(sim):
    result = analyze(Rec("sim.csv", sim.meta, sim.samples), AnalysisParams(placement="thigh"))
    assert result.to_json()["recording"]["placement"] == "thigh"
    with pytest.raises(ConfigError, match="placement"):
        AnalysisParams(placement="wrist")
    with pytest.raises(ConfigError, match="still_threshold_dps"):
        AnalysisParams(still_threshold_dps=30.0, moving_threshold_dps=20.0)
    with pytest.raises(ConfigError, match="unknown"):
        AnalysisParams().with_overrides(target_s=3)
    assert AnalysisParams().with_overrides(target_hold_s=12.0, goal_hold_s=None).target_hold_s == 12.0


def test_too_few_samples_is_a_data_error():
    one = Samples(np.zeros(1), np.zeros((1, 3)), np.zeros((1, 3)))
    with pytest.raises(DataError, match="too few"):
        analyze(Rec("one.csv", RecordingMeta(rate_hz=100.0), one), AnalysisParams())


def test_replay_features_fed_in_chunks_give_the_same_reps(sim):
    rate_hz = sim.meta.rate_hz
    params = AnalysisParams()
    raw = _replay_signals(sim.samples, rate_hz, params)
    features = _features(raw, _make_reference(raw, find_reference(raw, rate_hz, params, True), params), params)
    whole = PhaseTracker(params, "ankle", rate_hz)
    whole_events = whole.feed(features) + whole.finish()
    chunked = PhaseTracker(params, "ankle", rate_hz)
    chunked_events = []
    for i in range(0, len(features), 13):
        chunked_events += chunked.feed(features.slice(i, i + 13))
    chunked_events += chunked.finish()
    assert [r.to_json() for r in chunked.reps] == [r.to_json() for r in whole.reps]
    assert chunked_events == whole_events


def test_recording_cut_during_a_hold_closes_the_rep(sim):
    rep = sim.truth["reps"][0]
    cut = int(np.searchsorted(sim.samples.t_s, rep["hold_start_s"] + 6.0))
    result = analyze(Rec("cut.csv", sim.meta, sim.samples.slice(0, cut)), AnalysisParams())
    (last,) = result.reps
    assert last.lower_end_s is None and last.extra["hold_end_reason"] == "recording_end"
    assert last.hold_duration_s == pytest.approx(6.0, abs=0.2)
    assert "early_drop" in last.flags


def test_live_waits_for_a_calibration_window(sim):
    params = AnalysisParams(calibration_window_s=(0.5, 2.0))
    live, _, _, result = feed_live(sim, 10, params)
    assert result.reference["start_s"] == pytest.approx(0.5, abs=0.02)
    assert len(result.reps) == 4


@pytest.mark.parametrize("placement, loaded, rate_hz", [("ankle", True, 50.0), ("thigh", False, 200.0)])
def test_live_matches_replay_across_placements(placement, loaded, rate_hz):
    sim = simulate_session(SimConfig(reps=5, seed=11, placement=placement, loaded=loaded, rate_hz=rate_hz,
                                     early_drop_reps=(2,), balance_loss_reps=(3,), aborted_reps=(4,)))
    replay = analyze(Rec("sim.csv", sim.meta, sim.samples), AnalysisParams())
    *_, live = feed_live(sim, 10)
    assert len(live.reps) == len(replay.reps) == 5
    for a, b in zip(live.reps, replay.reps):
        core = ("early_drop", "balance_loss", "aborted")
        assert [f for f in a.flags if f in core] == [f for f in b.flags if f in core]
        for key in ("lift_start_s", "hold_start_s", "hold_end_s", "lower_end_s"):
            if getattr(b, key) is not None:
                assert getattr(a, key) == pytest.approx(getattr(b, key), abs=0.2), key


@pytest.mark.parametrize("packet_samples", [2, 5])
def test_orientation_bridge_is_dropped_again_for_the_analysis(packet_samples):
    from sensor.dsp.timebase import fill_short_gaps
    from sensor.pipeline import _bridged

    sim = simulate_session(SimConfig(reps=2, seed=1, rate_hz=100.0, lost_packet_rate=0.05,
                                     packet_samples=packet_samples))
    bridged, keep = _bridged(sim.samples, 100.0, AnalysisParams())
    assert len(bridged) > len(sim.samples)  # every gap up to 0.5 s interpolated for the orientation
    short = fill_short_gaps(sim.samples, 100.0, AnalysisParams().gap_fill_max_samples)
    np.testing.assert_array_equal(bridged.t_s[keep], short.t_s)
    np.testing.assert_array_equal(bridged.acc_mps2[keep], short.acc_mps2)


def test_recording_shorter_than_the_reference_window_is_analysed(sim):
    result = analyze(Rec("short.csv", sim.meta, sim.samples.slice(0, 40)), AnalysisParams())
    assert result.reps == [] and result.to_json()["summary"]["reps"] == 0
    live = LivePipeline(sim.meta, AnalysisParams(), sim.meta.rate_hz)
    live.feed(sim.samples.slice(0, 40))
    assert live.finish().reps == []


@pytest.mark.parametrize("still_from", [10, 65_000, 65_500, 70_000])
def test_find_reference_first_still_run_on_long_data(still_from: int) -> None:
    """The still run is found wherever it lies relative to the first block that is searched first,
    also when it straddles that block's end or comes only after it."""
    from sensor.pipeline import _BLOCK, _Raw

    n, rate_hz, params = 80_000, 200.0, AnalysisParams()
    need = int(round(params.reference_still_s * rate_hz))
    gyr_lp = np.zeros((n, 3))
    gyr_lp[:, 0] = 50.0  # moving everywhere ...
    gyr_lp[still_from:still_from + need + 5, 0] = 1.0  # ... but one still run
    gyr_lp[still_from - 3:still_from - 1, 0] = 1.0  # and a shorter one just before it
    up = np.tile([0.0, 0.0, 1.0], (n, 1))
    raw = _Raw(np.arange(n) / rate_hz, up, np.zeros(n), gyr_lp, np.zeros((n, 3)), gyr_lp.copy())
    assert n > _BLOCK
    assert find_reference(raw, rate_hz, params, complete=True) == (still_from, still_from + need)
