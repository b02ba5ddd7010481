"""Simulator physics, determinism, sensor errors and ground truth."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
from scipy.signal import welch

from sensor.errors import ConfigError
from sensor.simulate import (
    GRAVITY_MPS2,
    SimConfig,
    _ankle_position,
    _band_noise,
    _band_shape,
    _hermite,
    _joint_signals,
    _mul,
    _plan,
    _sensor_kinematics,
    simulate_session,
)

IDEAL = dict(sensor_errors=False, stance_sway_sd_deg=0.0)


def _numeric_d2(y: np.ndarray, dt: float) -> np.ndarray:
    return (y[2:] - 2 * y[1:-1] + y[:-2]) / dt**2


def _hold_mask(t_s: np.ndarray, rep: dict, settle_s: float = 1.0) -> np.ndarray:
    return (t_s >= rep["hold_start_s"] + settle_s) & (t_s <= rep["hold_end_s"])


def _first_rest_mask(t_s: np.ndarray, truth: dict) -> np.ndarray:
    return t_s < truth["reps"][0]["lift_start_s"] - 0.2


# --- building blocks ---------------------------------------------------------------------------


def test_hermite_and_noise_derivatives_are_exact():
    rng = np.random.default_rng(0)
    dt = 1e-3
    x = np.arange(0, 6, dt)
    knots = np.array([[0, 0, 0], [1.0, -0.3, 2.0], [0.4, 0.5, 0], [0.4, 0, 0]])
    path = _hermite(np.array([1.0, 2.1, 3.0, 4.5]), knots, x)
    noise = _mul(_band_noise(rng, x.size, dt, _band_shape(9.0, 0.8)), path)
    for sig in (path, noise):
        np.testing.assert_allclose(np.gradient(sig[0], dt)[1:-1], sig[1][1:-1], atol=2e-3 * np.abs(sig[1]).max())
        # the third derivative jumps at knots: allow the stencil error there
        np.testing.assert_allclose(_numeric_d2(sig[0], dt), sig[2][1:-1], atol=2e-2 * np.abs(sig[2]).max())


@pytest.mark.parametrize("kind", ["normal", "balance_loss", "aborted"])
def test_analytic_acceleration_matches_second_derivative_of_position(kind):
    """With the sensor at the ankle bone, its acceleration is the 2nd derivative of the ankle position."""
    cfg = SimConfig(reps=1, seed=4, sensor_above_ankle_m=0.0, sensor_lateral_m=0.0, rate_hz=1000.0,
                    **{f"{kind}_reps": (1,)} if kind != "normal" else {"early_drop_reps": ()})
    rng = np.random.default_rng(1)
    reps, duration, hab = _plan(cfg, rng)
    dt = 1e-3
    tau = np.arange(0, duration, dt)
    sig = _joint_signals(reps, tau, dt, rng, cfg, hab)
    acc, _, _ = _sensor_kinematics(cfg, sig)
    pos = _ankle_position(cfg, sig)
    numeric = _numeric_d2(pos, dt)
    err = np.linalg.norm(numeric - acc[1:-1], axis=1)
    scale = np.abs(acc).max()
    assert scale > 2.0  # the lift really accelerates the ankle
    # the jerk jumps at the knots of the quintic pieces; the stencil error is largest there
    assert np.percentile(err, 99) < 2e-3 * scale and err.max() < 1e-2 * scale


# --- physics of the sensor signals -------------------------------------------------------------


@pytest.mark.parametrize("placement", ["ankle", "thigh"])
def test_rest_reads_gravity_and_no_rotation(placement):
    res = simulate_session(SimConfig(seed=3, placement=placement, sensor_errors=False))
    rest = _first_rest_mask(res.samples.t_s, res.truth)
    norm = np.linalg.norm(res.samples.acc_mps2[rest], axis=1)
    assert np.abs(norm - GRAVITY_MPS2).max() < 0.01
    assert np.abs(res.samples.gyr_radps[rest]).max() < 0.01


def test_rest_with_sensor_errors_is_near_gravity():
    res = simulate_session(SimConfig(seed=3))
    rest = _first_rest_mask(res.samples.t_s, res.truth)
    norm = np.linalg.norm(res.samples.acc_mps2[rest], axis=1)
    assert abs(norm.mean() - GRAVITY_MPS2) < 0.2
    assert 0.01 < norm.std() < 0.05
    assert np.abs(res.samples.gyr_radps[rest].mean(axis=0)).max() < np.radians(0.6)


@pytest.mark.parametrize("placement", ["ankle", "thigh"])
def test_hold_inclination_truth_matches_noise_free_accelerometer(placement):
    res = simulate_session(SimConfig(seed=5, placement=placement, reps=3, early_drop_reps=(), **IDEAL))
    t, acc = res.samples.t_s, res.samples.acc_mps2
    ref = acc[_first_rest_mask(t, res.truth)].mean(axis=0)
    for rep in res.truth["reps"]:
        hold = acc[_hold_mask(t, rep)].mean(axis=0)
        cos = hold @ ref / np.linalg.norm(hold) / np.linalg.norm(ref)
        angle = np.degrees(np.arccos(np.clip(cos, -1, 1)))
        assert angle == pytest.approx(rep["hold_angle_mean_deg"], abs=0.1)
    if placement == "thigh":  # the thigh's inclination is the hip flexion
        for rep in res.truth["reps"]:
            assert rep["hold_angle_mean_deg"] == pytest.approx(rep["hip_flexion_deg"], abs=4.0)


def _integrate_up(gyr: np.ndarray, up0: np.ndarray, dt: float) -> np.ndarray:
    """Propagate a world-fixed vector (seen in the sensor frame) with the gyro: du/dt = -w x u (RK4)."""
    out = np.empty_like(gyr)
    u = up0.copy()
    for k in range(gyr.shape[0]):
        out[k] = u
        if k + 1 == gyr.shape[0]:
            break
        w0, w1 = gyr[k], gyr[k + 1]
        wm = 0.5 * (w0 + w1)
        f = lambda w, v: -np.cross(w, v)
        k1 = f(w0, u)
        k2 = f(wm, u + 0.5 * dt * k1)
        k3 = f(wm, u + 0.5 * dt * k2)
        k4 = f(w1, u + dt * k3)
        u = u + dt / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
        u /= np.linalg.norm(u)
    return out


def test_integrated_gyro_reproduces_true_inclination():
    res = simulate_session(SimConfig(seed=6, reps=1, rate_hz=200.0, **IDEAL))
    acc, gyr = res.samples.acc_mps2, res.samples.gyr_radps
    up0 = acc[0] / np.linalg.norm(acc[0])  # exact: no sway, no noise at t=0
    up = _integrate_up(gyr, up0, 1 / 200.0)
    angle = np.degrees(np.arccos(np.clip(up @ up0, -1, 1)))
    assert res.trace["angle_deg"].max() > 5
    np.testing.assert_allclose(angle, res.trace["angle_deg"], atol=0.02)


def test_ankle_rise_truth_matches_leg_geometry():
    cfg = SimConfig(seed=7, reps=4, **IDEAL)
    res = simulate_session(cfg)
    subj = res.truth["subject"]
    lt, ls = cfg.thigh_length_m, cfg.shank_length_m
    h0, k0 = np.radians(subj["stand_hip_deg"]), np.radians(subj["stand_knee_deg"])
    for rep in res.truth["reps"]:
        if rep["aborted"]:
            continue
        h, k = np.radians(rep["hip_flexion_deg"]), np.radians(rep["knee_flexion_deg"])
        rise = (lt * (np.cos(h0) - np.cos(h)) + ls * (np.cos(h0 - k0) - np.cos(h - k))) * 100
        fwd = (lt * (np.sin(h) - np.sin(h0)) + ls * (np.sin(h - k) - np.sin(h0 - k0))) * 100
        tol = 0.3 if rep["index"] == 1 else 1.0  # later reps start from a slightly different pose
        assert rep["ankle_rise_cm"] == pytest.approx(rise, abs=tol)
        assert rep["ankle_forward_cm"] == pytest.approx(fwd, abs=tol)
        assert 60 <= rep["hip_flexion_deg"] <= 101
        assert abs(rep["hip_flexion_deg"] - rep["knee_flexion_deg"]) <= 31


# --- session structure and truth ---------------------------------------------------------------


def test_truth_is_json_ready_and_complete():
    res = simulate_session(SimConfig(seed=8))
    truth = json.loads(json.dumps(res.truth))
    assert truth["format"] == "holdmon.truth/1" and truth["settle_s"] == 1.0
    keys = {"index", "lift_start_s", "hold_start_s", "hold_end_s", "lower_end_s", "hold_duration_s",
            "hold_angle_mean_deg", "peak_angle_deg", "sway_sd_deg", "sag_deg_per_s", "ankle_rise_cm",
            "ankle_forward_cm", "hip_flexion_deg", "knee_flexion_deg", "early_drop", "balance_loss",
            "aborted", "corrections"}
    assert len(truth["reps"]) == 5
    for i, rep in enumerate(truth["reps"]):
        assert keys <= rep.keys() and rep["index"] == i + 1
        assert rep["lift_start_s"] < rep["hold_start_s"] < rep["hold_end_s"] < rep["lower_end_s"]
    starts = [r["lift_start_s"] for r in truth["reps"]]
    assert starts[0] >= 3.0 and np.all(np.diff(starts) > 0)
    assert res.meta.device == "holdmon-sim" and res.meta.stage == 3 and res.meta.load_kg == 0.0
    assert "seed 8" in res.meta.note


def test_truth_statistics_follow_their_definitions():
    res = simulate_session(SimConfig(seed=9, reps=3))
    t, angle = res.trace["t_s"], res.trace["angle_deg"]
    for rep in res.truth["reps"]:
        a = angle[_hold_mask(t, rep)]
        assert rep["hold_angle_mean_deg"] == pytest.approx(a.mean(), abs=1e-3)
        assert rep["sway_sd_deg"] == pytest.approx(a.std(), abs=1e-3)
        assert rep["peak_angle_deg"] == pytest.approx(a.max(), abs=1e-3)
        slope = np.polyfit(t[_hold_mask(t, rep)], a, 1)[0]
        assert rep["sag_deg_per_s"] == pytest.approx(slope, abs=1e-4)


def test_deterministic_per_seed():
    a, b = simulate_session(SimConfig(seed=11)), simulate_session(SimConfig(seed=11))
    c = simulate_session(SimConfig(seed=12))
    np.testing.assert_array_equal(a.samples.acc_mps2, b.samples.acc_mps2)
    np.testing.assert_array_equal(a.samples.gyr_radps, b.samples.gyr_radps)
    np.testing.assert_array_equal(a.samples.seq, b.samples.seq)
    assert a.truth == b.truth
    assert a.truth["reps"] != c.truth["reps"]


def test_clock_drift_shows_in_truth_times():
    slow = simulate_session(SimConfig(seed=13, clock_drift_ppm=-50.0))
    fast = simulate_session(SimConfig(seed=13, clock_drift_ppm=50.0))
    for a, b in zip(slow.truth["reps"], fast.truth["reps"]):
        assert b["hold_end_s"] / a["hold_end_s"] == pytest.approx((1 + 50e-6) / (1 - 50e-6), rel=1e-6)
    np.testing.assert_allclose(fast.samples.t_s, fast.samples.seq / 100.0)


def test_lost_packets_show_as_seq_gaps():
    res = simulate_session(SimConfig(seed=14, lost_packet_rate=0.02, packet_samples=5))
    seq, t = res.samples.seq, res.samples.t_s
    steps = np.diff(seq)
    gaps = steps[steps > 1] - 1
    assert gaps.size > 5
    assert np.all(gaps % 5 == 0) and np.all(gaps <= 15)
    assert int(gaps.sum()) == res.truth["sensor"]["lost_samples"]
    np.testing.assert_allclose(np.diff(t), steps / 100.0)
    assert seq[0] == 0


def test_quantised_to_int16_steps():
    res = simulate_session(SimConfig(seed=15, reps=1))
    lsb = 8 * GRAVITY_MPS2 / 32768
    counts = res.samples.acc_mps2 / lsb
    np.testing.assert_allclose(counts, np.round(counts), atol=1e-6)


def _tremor_peak_hz(res) -> float:
    """Peak of the summed gyro spectrum over full holds (noise-free), in 3-15 Hz."""
    t, gyr, rate = res.samples.t_s, res.samples.gyr_radps, res.meta.rate_hz
    psd_sum = 0.0
    for rep in res.truth["reps"]:
        if rep["hold_start_s"] is None:
            continue
        g = gyr[_hold_mask(t, rep)]
        f, p = welch(g - g.mean(axis=0), fs=rate, nperseg=256, axis=0)
        psd_sum = psd_sum + p.sum(axis=1)
    band = (f >= 3) & (f <= 15)
    return float(f[band][np.argmax(psd_sum[band])])


def test_loaded_sessions_sway_more_and_tremble_slower():
    sway = {False: [], True: []}
    peaks = {False: [], True: []}
    for seed in (21, 22, 23):
        for loaded in (False, True):
            res = simulate_session(SimConfig(seed=seed, loaded=loaded, early_drop_reps=(), corrections_per_s=0.0,
                                             **IDEAL))
            sway[loaded] += [r["sway_sd_deg"] for r in res.truth["reps"]]
            peaks[loaded].append(_tremor_peak_hz(res))
            if loaded:
                assert res.meta.stage == 4 and res.meta.load_kg == 1.5
    assert np.median(sway[True]) > 1.3 * np.median(sway[False])
    assert max(peaks[True]) <= 7.5 < 8.0 <= min(peaks[False])


def test_special_reps_appear_in_truth():
    cfg = SimConfig(seed=16, reps=5, early_drop_reps=(2,), balance_loss_reps=(3,), aborted_reps=(4,))
    res = simulate_session(cfg)
    reps = res.truth["reps"]
    assert [r["early_drop"] for r in reps] == [False, True, True, False, False]
    assert [r["balance_loss"] for r in reps] == [False, False, True, False, False]
    assert [r["aborted"] for r in reps] == [False, False, False, True, False]
    assert 3.0 <= reps[1]["hold_duration_s"] <= 7.0
    assert reps[3]["hold_start_s"] is None and reps[3]["hold_duration_s"] == 0.0
    assert reps[3]["hold_angle_mean_deg"] is None and reps[3]["lower_end_s"] > reps[3]["lift_start_s"]
    for r in reps:
        if not r["early_drop"] and not r["aborted"]:
            assert 10.0 <= r["hold_duration_s"] <= 15.0


@pytest.mark.parametrize("seed", [30, 31, 32, 33])
def test_aborted_rep_is_never_still(seed):
    """An aborted lift has no stretch of >= 0.4 s with the shank still (gyro < 10 deg/s, |acc| within 0.5 of g).

    The shank may turn slowly while hip and knee move together, so its acceleration counts too.
    """
    res = simulate_session(SimConfig(seed=seed, reps=1, aborted_reps=(1,), **IDEAL))
    rep = res.truth["reps"][0]
    t = res.samples.t_s
    inside = (t > rep["lift_start_s"] + 0.3) & (t < rep["lower_end_s"] - 0.3)
    gyr_dps = np.degrees(np.linalg.norm(res.samples.gyr_radps[inside], axis=1))
    acc_dev = np.abs(np.linalg.norm(res.samples.acc_mps2[inside], axis=1) - GRAVITY_MPS2)
    still = (gyr_dps < 10.0) & (acc_dev < 0.5)
    longest, run = 0, 0
    for s in still:
        run = run + 1 if s else 0
        longest = max(longest, run)
    assert longest / res.meta.rate_hz < 0.4


def test_corrections_are_brief_and_inside_the_hold():
    res = simulate_session(SimConfig(seed=17, reps=6, corrections_per_s=0.2, early_drop_reps=()))
    assert sum(r["corrections"] for r in res.truth["reps"]) >= 6


def test_duration_mode_fills_the_time():
    res = simulate_session(SimConfig(seed=18, duration_s=120.0, rate_hz=50.0))
    assert res.samples.t_s[-1] == pytest.approx(120.0, abs=0.05)
    assert len(res.truth["reps"]) >= 4
    assert res.truth["reps"][-1]["lower_end_s"] < 120.0


@pytest.mark.parametrize(
    "change",
    [dict(placement="wrist"), dict(side="up"), dict(rate_hz=10.0), dict(reps=0), dict(lost_packet_rate=0.7),
     dict(early_drop_reps=(9,)), dict(early_drop_reps=(1,), aborted_reps=(1,)),
     dict(aborted_rate=0.9, early_drop_rate=0.5),
     dict(strap_quat_wxyz=(0.0, 0.0, 0.0, 0.0))],
)
def test_bad_config_raises(change):
    with pytest.raises(ConfigError):
        simulate_session(replace(SimConfig(), **change))


@pytest.mark.parametrize(
    "name, change",
    [("stage3_left", dict(side="left", seed=1)), ("stage3_right", dict(side="right", seed=2)),
     ("stage4_left_weighted", dict(side="left", seed=3, loaded=True))],
)
def test_shipped_recordings_are_what_their_command_makes(name, change):
    """recordings/README.md names the commands; the simulator must still make exactly these sessions."""
    from pathlib import Path

    from sensor.recording import read_recording

    folder = Path(__file__).resolve().parent.parent / "recordings"
    res = simulate_session(SimConfig(reps=5, placement="ankle", rate_hz=100.0, **change))
    shipped = json.loads((folder / f"{name}.truth.json").read_text())
    assert shipped == json.loads(json.dumps(res.truth))
    rec = read_recording(folder / f"{name}.csv")
    np.testing.assert_array_equal(rec.samples.seq, res.samples.seq)
    np.testing.assert_allclose(rec.samples.acc_mps2, res.samples.acc_mps2, atol=1e-5)
    assert rec.meta.note == res.meta.note and rec.meta.stage == res.meta.stage
