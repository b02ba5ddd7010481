"""Ankle rise / hip flexion estimator: integration on analytic motion, refusals, geometry, simulator."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from sensor.analysis.ankle import (AnkleEstimate, AnkleParams, AnkleRefusal, ankle_displacement_from_angles,
                                   empty_extra, estimate_ankle_motion, estimate_ankle_motions, hip_geometry,
                                   thigh_hip_flexion)
from sensor.dsp.orientation import offline_orientation
from sensor.dsp.timebase import fill_short_gaps
from sensor.errors import ConfigError, DataError
from sensor.simulate import SimConfig, simulate_session

GRAVITY = 9.80665
REST_S, LIFT_S, HOLD_S = 2.0, 1.0, 3.0


def _quintic(tau: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Smooth step 0 -> 1 on tau in [0, 1] and its first two derivatives (d/dtau)."""
    tau = np.clip(tau, 0.0, 1.0)
    return (10 * tau**3 - 15 * tau**4 + 6 * tau**5, 30 * tau**2 - 60 * tau**3 + 30 * tau**4,
            60 * tau - 180 * tau**2 + 120 * tau**3)


def _rot_z(angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def _strap(seed: int) -> np.ndarray:
    q = np.random.default_rng(seed).standard_normal(4)
    w, x, y, z = q / np.linalg.norm(q)
    return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
                     [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
                     [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)]])


def leg_lift(hip_deg: float, knee_deg: float, *, shank_m: float = 0.43, thigh_m: float = 0.43,
             sensor_above_ankle_m: float = 0.08, rate_hz: float = 100.0, heading_deg: float = 30.0,
             strap_seed: int = 1, gyr_bias_radps=(0.0, 0.0, 0.0), acc_noise_mps2: float = 0.0,
             gyr_noise_radps: float = 0.0, seed: int = 0, stand_knee_deg: float = 0.0) -> dict:
    """A two-link leg lifted from standing to (hip, knee) flexion with a quintic profile (analytic).

    The leg stands still for REST_S, lifts during LIFT_S, holds still for HOLD_S; the sagittal plane
    faces `heading_deg` in the earth frame. The sensor (rotated by a random strap rotation) sits on the
    shank `sensor_above_ankle_m` above the ankle bone. Returns samples, windows and the true answer.
    """
    t = np.arange(0.0, REST_S + LIFT_S + HOLD_S, 1.0 / rate_hz)
    s, ds, dds = _quintic((t - REST_S) / LIFT_S)
    d1, d2 = ds / LIFT_S, dds / LIFT_S**2
    hip0, knee0 = 0.0, math.radians(stand_knee_deg)
    hip_a = hip0 + (math.radians(hip_deg) - hip0) * s
    knee_a = knee0 + (math.radians(knee_deg) - knee0) * s
    hip_v, hip_acc = (math.radians(hip_deg) - hip0) * d1, (math.radians(hip_deg) - hip0) * d2
    knee_v, knee_acc = (math.radians(knee_deg) - knee0) * d1, (math.radians(knee_deg) - knee0) * d2
    shank_a, shank_v, shank_acc = hip_a - knee_a, hip_v - knee_v, hip_acc - knee_acc
    below = shank_m - sensor_above_ankle_m

    def point(angle, vel, acc, length):
        """Position, acceleration of length * (sin a, 0, -cos a) in the sagittal (x, z) plane."""
        pos = length * np.stack([np.sin(angle), np.zeros_like(angle), -np.cos(angle)], axis=1)
        ax = length * (np.cos(angle) * acc - np.sin(angle) * vel**2)
        az = length * (np.sin(angle) * acc + np.cos(angle) * vel**2)
        return pos, np.stack([ax, np.zeros_like(ax), az], axis=1)

    knee_p, knee_acc_v = point(hip_a, hip_v, hip_acc, thigh_m)
    sens_p, sens_acc_v = point(shank_a, shank_v, shank_acc, below)
    heading = _rot_z(math.radians(heading_deg))
    acc_e = (knee_acc_v + sens_acc_v) @ heading.T
    # segment orientation: rotation by -shank angle about the sagittal plane's lateral (y) axis
    c, sn = np.cos(shank_a), np.sin(shank_a)
    seg = np.zeros((t.size, 3, 3))
    seg[:, 0, 0], seg[:, 0, 2], seg[:, 1, 1], seg[:, 2, 0], seg[:, 2, 2] = c, -sn, 1.0, sn, c
    seg = heading @ seg
    rot = seg @ _strap(strap_seed)                     # sensor -> earth
    omega_e = np.stack([np.zeros_like(shank_v), -shank_v, np.zeros_like(shank_v)], axis=1) @ heading.T
    gyr = np.einsum("nji,nj->ni", rot, omega_e)
    acc = np.einsum("nji,nj->ni", rot, acc_e + [0.0, 0.0, GRAVITY])
    rng = np.random.default_rng(seed)
    gyr = gyr + np.asarray(gyr_bias_radps) + gyr_noise_radps * rng.standard_normal(gyr.shape)
    acc = acc + acc_noise_mps2 * rng.standard_normal(acc.shape)
    ankle_disp, _ = ankle_displacement_from_angles(hip_deg, knee_deg, shank_m, thigh_m)
    ankle0 = point(np.array([hip0 - knee0]), np.zeros(1), np.zeros(1), shank_m)[0][0] + \
        point(np.array([hip0]), np.zeros(1), np.zeros(1), thigh_m)[0][0]
    ankle1 = point(np.array([hip_a[-1]]), np.zeros(1), np.zeros(1), thigh_m)[0][0] + \
        point(np.array([shank_a[-1]]), np.zeros(1), np.zeros(1), shank_m)[0][0]
    return {
        "t_s": t, "acc_mps2": acc, "gyr_radps": gyr,
        "rest": (0.0, REST_S), "hold": (REST_S + LIFT_S, t[-1]),
        "sensor_disp_m": (sens_p[-1] + knee_p[-1]) - (sens_p[0] + knee_p[0]),
        "ankle_rise_cm": 100.0 * (ankle1 - ankle0)[2], "ankle_forward_cm": 100.0 * (ankle1 - ankle0)[0],
        "model_ankle_disp_m": ankle_disp,
    }


def _estimate(m: dict, **kw) -> AnkleEstimate | AnkleRefusal:
    params = AnkleParams(**{"shank_length_cm": 43.0, "thigh_length_cm": 43.0, **kw})
    return estimate_ankle_motion(m["t_s"], m["acc_mps2"], m["gyr_radps"], None, m["rest"], m["hold"], params)


# ----- integration on analytic motion --------------------------------------------------------------
@pytest.mark.parametrize("hip_deg, knee_deg", [(80.0, 85.0), (95.0, 70.0), (60.0, 90.0)])
def test_exact_motion_gives_the_true_rise_and_hip_flexion(hip_deg: float, knee_deg: float) -> None:
    m = leg_lift(hip_deg, knee_deg)
    est = _estimate(m)
    assert isinstance(est, AnkleEstimate), est
    assert est.ankle_rise_cm == pytest.approx(m["ankle_rise_cm"], abs=0.15)
    assert est.ankle_forward_cm == pytest.approx(m["ankle_forward_cm"], abs=0.15)
    assert abs(est.ankle_lateral_cm) < 0.15
    assert est.hip_flexion_deg == pytest.approx(hip_deg, abs=0.2)
    assert est.knee_flexion_deg == pytest.approx(knee_deg, abs=0.3)
    assert est.shank_tilt_deg == pytest.approx(hip_deg - knee_deg, abs=0.2)


@pytest.mark.parametrize("strap_seed", [2, 3, 4])
@pytest.mark.parametrize("rate_hz", [50.0, 200.0])
def test_strap_rotation_heading_and_gyro_bias_do_not_change_the_answer(strap_seed: int, rate_hz: float) -> None:
    bias = np.radians([0.5, -0.4, 0.3])
    m = leg_lift(85.0, 90.0, rate_hz=rate_hz, strap_seed=strap_seed, heading_deg=37.0 * strap_seed,
                 gyr_bias_radps=bias, acc_noise_mps2=0.02, gyr_noise_radps=0.005, seed=strap_seed)
    est = _estimate(m)
    assert isinstance(est, AnkleEstimate), est
    assert est.ankle_rise_cm == pytest.approx(m["ankle_rise_cm"], abs=0.6)
    assert est.hip_flexion_deg == pytest.approx(85.0, abs=1.0)


def test_sensor_offset_above_the_ankle_is_corrected_with_the_shank_tilt() -> None:
    m = leg_lift(90.0, 60.0, sensor_above_ankle_m=0.15)  # shank tilted 30 deg forward
    moved = _estimate(m, sensor_above_ankle_cm=15.0)
    wrong = _estimate(m, sensor_above_ankle_cm=0.0)
    assert isinstance(moved, AnkleEstimate) and isinstance(wrong, AnkleEstimate)
    assert moved.ankle_rise_cm == pytest.approx(m["ankle_rise_cm"], abs=0.3)
    # without the correction the result is the sensor's displacement, not the ankle bone's
    assert wrong.ankle_rise_cm == pytest.approx(100.0 * m["sensor_disp_m"][2], abs=0.3)
    assert abs(wrong.ankle_rise_cm - moved.ankle_rise_cm) > 1.5


def test_naive_method_runs_on_the_same_windows() -> None:
    m = leg_lift(80.0, 85.0)
    quat = offline_orientation(m["gyr_radps"], m["acc_mps2"], 100.0)
    params = AnkleParams(method="naive", shank_length_cm=43.0, thigh_length_cm=43.0)
    est = estimate_ankle_motion(m["t_s"], m["acc_mps2"], m["gyr_radps"], quat, m["rest"], m["hold"], params)
    assert isinstance(est, AnkleEstimate)
    assert est.hip_flexion_uncertainty_deg is None
    assert est.ankle_rise_cm == pytest.approx(m["ankle_rise_cm"], abs=2.0)
    with pytest.raises(DataError):
        estimate_ankle_motion(m["t_s"], m["acc_mps2"], m["gyr_radps"], None, m["rest"], m["hold"], params)


# ----- refusals --------------------------------------------------------------------------------------
def test_refuses_without_a_still_phase_before_the_lift() -> None:
    m = leg_lift(80.0, 85.0)
    est = estimate_ankle_motion(m["t_s"], m["acc_mps2"], m["gyr_radps"], None, None, m["hold"])
    assert isinstance(est, AnkleRefusal) and "still phase" in est.reason
    short = _estimate({**m, "rest": (REST_S - 0.1, REST_S)})
    assert isinstance(short, AnkleRefusal) and "still phase" in short.reason


def test_refuses_when_the_standing_phase_is_not_still() -> None:
    m = leg_lift(80.0, 85.0)
    est = _estimate({**m, "rest": (0.0, REST_S + 0.5)})  # the "rest" runs into the lift
    assert isinstance(est, AnkleRefusal) and "not still" in est.reason


def test_refuses_a_hold_too_short_to_pin_the_velocity() -> None:
    m = leg_lift(80.0, 85.0)
    hold_start = REST_S + LIFT_S
    est = _estimate({**m, "hold": (hold_start, hold_start + 1.2)})
    assert isinstance(est, AnkleRefusal) and "hold too short" in est.reason
    assert isinstance(_estimate({**m, "hold": None}), AnkleRefusal)


def test_refuses_when_the_knee_cannot_reach() -> None:
    m = leg_lift(90.0, 90.0)  # ankle rises by 43 cm
    est = _estimate(m, shank_length_cm=20.0, thigh_length_cm=20.0)
    assert isinstance(est, AnkleRefusal) and "no geometric solution" in est.reason


def test_refuses_a_gap_inside_the_rep() -> None:
    m = leg_lift(80.0, 85.0)
    keep = np.ones(m["t_s"].size, bool)
    keep[230:260] = False  # 0.3 s missing during the lift
    cut = {**m, "t_s": m["t_s"][keep], "acc_mps2": m["acc_mps2"][keep], "gyr_radps": m["gyr_radps"][keep]}
    est = _estimate(cut)
    assert isinstance(est, AnkleRefusal) and "gap" in est.reason


def test_refuses_when_the_data_ends_before_the_hold_window() -> None:
    m = leg_lift(80.0, 85.0)
    n = int((REST_S + LIFT_S + 1.2) * 100)
    cut = {**m, "t_s": m["t_s"][:n], "acc_mps2": m["acc_mps2"][:n], "gyr_radps": m["gyr_radps"][:n]}
    assert isinstance(_estimate(cut), AnkleRefusal)


def test_bad_input_raises_project_errors() -> None:
    m = leg_lift(80.0, 85.0)
    with pytest.raises(DataError):
        estimate_ankle_motion(m["t_s"], m["acc_mps2"][:, :2], m["gyr_radps"], None, m["rest"], m["hold"])
    with pytest.raises(ConfigError):
        AnkleParams(method="magic")
    with pytest.raises(ConfigError):
        AnkleParams(height_cm=-170.0)


# ----- geometry ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("hip_deg", [20.0, 45.0, 60.0, 80.0, 95.0, 110.0])
@pytest.mark.parametrize("shank_deg", [-30.0, -10.0, 0.0, 15.0, 30.0])
def test_geometry_round_trip(hip_deg: float, shank_deg: float) -> None:
    knee_deg = hip_deg - shank_deg
    disp, shank_up = ankle_displacement_from_angles(hip_deg, knee_deg, 0.42, 0.44)
    geo = hip_geometry(disp[None], shank_up[None], np.array([0.42]), np.array([0.44]))
    assert geo["hip_flexion_deg"][0] == pytest.approx(hip_deg, abs=1e-9)
    assert geo["thigh_fit_m"][0] == pytest.approx(0.44, abs=1e-12)
    assert geo["lateral_cm"][0] == pytest.approx(0.0, abs=1e-9)
    assert geo["forward_cm"][0] == pytest.approx(100.0 * disp[0], abs=1e-9)


def test_geometry_is_independent_of_heading() -> None:
    disp, shank_up = ankle_displacement_from_angles(75.0, 80.0, 0.43, 0.43)
    turn = _rot_z(1.1)
    geo = hip_geometry((turn @ disp)[None], (turn @ shank_up)[None], np.array([0.43]), np.array([0.43]))
    assert geo["hip_flexion_deg"][0] == pytest.approx(75.0, abs=1e-9)
    assert geo["forward_cm"][0] == pytest.approx(100.0 * disp[0], abs=1e-9)


def test_lengths_from_height_follow_winters_ratios() -> None:
    assert AnkleParams(height_cm=180.0).lengths_m() == pytest.approx((0.4428, 0.441))
    shank, thigh = AnkleParams(shank_length_cm=40.0).lengths_m()
    assert shank == pytest.approx(0.40) and thigh == pytest.approx(0.40 * 0.245 / 0.246)
    assert AnkleParams(shank_length_cm=40.0, height_cm=170.0).lengths_m() == pytest.approx((0.40, 0.4165))
    assert AnkleParams().lengths_m() == pytest.approx((0.4305, 0.42875))


def test_uncertainty_grows_with_the_length_uncertainty() -> None:
    m = leg_lift(80.0, 85.0, acc_noise_mps2=0.02, gyr_noise_radps=0.005)
    small = _estimate(m, length_sd_cm=0.5)
    large = _estimate(m, length_sd_cm=4.0)
    assert isinstance(small, AnkleEstimate) and isinstance(large, AnkleEstimate)
    assert 0.0 < small.hip_flexion_uncertainty_deg < large.hip_flexion_uncertainty_deg
    assert small.ankle_rise_uncertainty_cm > 0.0


def test_to_extra_and_empty_extra_have_the_replay_keys() -> None:
    keys = {"ankle_rise_cm", "ankle_forward_cm", "hip_flexion_deg", "hip_flexion_uncertainty_deg"}
    est = _estimate(leg_lift(80.0, 85.0))
    assert isinstance(est, AnkleEstimate)
    assert set(est.to_extra()) == keys
    assert all(isinstance(v, float) for v in est.to_extra().values())
    empty = empty_extra("no still phase before the lift")
    assert {k: empty[k] for k in keys} == dict.fromkeys(keys)
    assert empty["ankle_note"] == "no still phase before the lift"


def test_thigh_placement_hip_flexion_is_the_lift_angle() -> None:
    t = np.arange(0.0, 6.0, 0.01)
    angle = np.where(t < 2.0, 0.0, 80.0)
    est = thigh_hip_flexion(t, angle, (2.0, 6.0))
    assert isinstance(est, AnkleEstimate)
    assert est.hip_flexion_deg == pytest.approx(80.0)
    assert est.to_extra()["ankle_rise_cm"] is None
    assert isinstance(thigh_hip_flexion(t, angle, (2.0, 3.0)), AnkleRefusal)


# ----- simulator ground truth -------------------------------------------------------------------------
@pytest.mark.parametrize("seed, loaded, rate_hz", [(11, False, 100.0), (12, True, 50.0)])
def test_simulated_session_meets_the_accuracy_targets(seed: int, loaded: bool, rate_hz: float) -> None:
    cfg = SimConfig(reps=4, seed=seed, loaded=loaded, rate_hz=rate_hz, aborted_rate=0.0)
    sim = simulate_session(cfg)
    samples = fill_short_gaps(sim.samples, rate_hz, int(rate_hz * 0.3))
    params = AnkleParams(shank_length_cm=100 * cfg.shank_length_m, thigh_length_cm=100 * cfg.thigh_length_m)
    rise_err, hip_err = [], []
    prev_end = 0.0
    for rep in sim.truth["reps"]:
        est = estimate_ankle_motion(samples.t_s, samples.acc_mps2, samples.gyr_radps, None,
                                    (prev_end, rep["lift_start_s"]), (rep["hold_start_s"], rep["hold_end_s"]),
                                    params)
        prev_end = rep["lower_end_s"]
        assert isinstance(est, AnkleEstimate), est
        rise_err.append(abs(est.ankle_rise_cm - rep["ankle_rise_cm"]))
        hip_err.append(abs(est.hip_flexion_deg - rep["hip_flexion_deg"]))
    assert np.median(rise_err) <= 1.5 and max(rise_err) <= 3.0
    assert np.median(hip_err) <= 4.0 and max(hip_err) <= 8.0


def test_many_reps_at_once_give_the_same_answers_as_one_by_one() -> None:
    cfg = SimConfig(reps=5, seed=21, rate_hz=100.0, aborted_reps=(3,))
    sim = simulate_session(cfg)
    samples = fill_short_gaps(sim.samples, 100.0, 30)
    windows, prev_end = [], 0.0
    for rep in sim.truth["reps"]:
        hold = None if rep["hold_start_s"] is None else (rep["hold_start_s"], rep["hold_end_s"])
        windows.append(((prev_end, rep["lift_start_s"]), hold))
        prev_end = rep["lower_end_s"]
    windows.append((None, windows[0][1]))
    args = (samples.t_s, samples.acc_mps2, samples.gyr_radps, None)
    together = estimate_ankle_motions(*args, windows)
    alone = [estimate_ankle_motion(*args, rest, hold) for rest, hold in windows]
    assert [type(e) for e in together] == [type(e) for e in alone]
    assert isinstance(together[2], AnkleRefusal) and isinstance(together[-1], AnkleRefusal)
    for a, b in zip(together, alone):
        if isinstance(a, AnkleEstimate):
            assert a.ankle_rise_cm == pytest.approx(b.ankle_rise_cm, abs=1e-6)
            assert a.hip_flexion_deg == pytest.approx(b.hip_flexion_deg, abs=1e-6)
            assert a.hip_flexion_uncertainty_deg == pytest.approx(b.hip_flexion_uncertainty_deg, abs=1e-6)


# ----- end to end: replay CLI ----------------------------------------------------------------------
def test_replay_json_has_the_ankle_keys_for_every_completed_hold(tmp_path) -> None:
    from typer.testing import CliRunner

    from sensor.cli.main import app

    runner = CliRunner()
    out = tmp_path / "session.csv"
    made = runner.invoke(app, ["simulate", str(out), "--reps", "3", "--seed", "4"])
    assert made.exit_code == 0, made.output
    truth = json.loads(next(tmp_path.glob("*.json")).read_text())
    result = runner.invoke(app, ["replay", str(out), "--json", "--shank-length-cm", "43"])
    assert result.exit_code == 0, result.output
    reps = json.loads(result.stdout)["reps"]
    holds = [r for r in reps if r["hold_start_s"] is not None]
    assert len(holds) == sum(1 for r in truth["reps"] if r["hold_start_s"] is not None)
    for rep in reps:
        keys = ("ankle_rise_cm", "hip_flexion_deg", "hip_flexion_uncertainty_deg")
        if rep["hold_start_s"] is None:
            assert all(rep[k] is None for k in keys)
        else:
            assert all(isinstance(rep[k], float) for k in keys), rep
            true_rep = min(truth["reps"], key=lambda r: abs((r["hold_start_s"] or -99) - rep["hold_start_s"]))
            assert abs(rep["ankle_rise_cm"] - true_rep["ankle_rise_cm"]) < 3.0
            assert abs(rep["hip_flexion_deg"] - true_rep["hip_flexion_deg"]) < 8.0
    bad = runner.invoke(app, ["replay", str(out), "--json", "--height-cm", "-170"])
    assert bad.exit_code == 2
