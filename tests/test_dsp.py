"""sensor.dsp: time base and gaps, SOS filters, orientation and inclination."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy import signal
from scipy.spatial.transform import Rotation

from sensor.dsp import filters, orientation, timebase
from sensor.errors import ConfigError, DataError
from sensor.types import Gap, Samples

GRAVITY_MPS2 = 9.81


def chunks(n: int, rng: np.random.Generator) -> list[slice]:
    """Random chunk boundaries over n samples, including empty and one-sample chunks."""
    cuts = np.sort(rng.integers(0, n + 1, size=max(n // 7, 2)))
    bounds = np.concatenate([[0], cuts, [n]])
    return [slice(a, b) for a, b in zip(bounds[:-1], bounds[1:])]


def quat_wxyz(rot: Rotation) -> np.ndarray:
    return rot.as_quat(scalar_first=True)


def synthetic_imu(
    rate_hz: float = 100.0, duration_s: float = 60.0
) -> tuple[Rotation, np.ndarray, np.ndarray]:
    """Noise-free IMU data of a sensor tilting and turning smoothly: (true S->E rotations, gyr, acc)."""
    t_s = np.arange(int(duration_s * rate_hz)) / rate_hz
    ramp = np.clip(t_s / 5.0 - 1.0, 0.0, 1.0)  # still for 5 s, then moving
    angles_deg = np.column_stack([
        90.0 * ramp * np.sin(0.3 * t_s),
        40.0 * ramp * np.sin(0.7 * t_s + 1.0),
        35.0 * ramp * np.sin(0.5 * t_s + 2.0),
    ])
    rot = Rotation.from_euler("ZXY", angles_deg, degrees=True)
    step = rot[:-1].inv() * rot[1:]
    gyr = np.vstack([np.zeros((1, 3)), step.as_rotvec() * rate_hz])
    acc = rot.inv().apply([0.0, 0.0, GRAVITY_MPS2])
    return rot, gyr, acc


# --- filters ---------------------------------------------------------------------------------------

def test_streaming_sos_chunked_equals_one_call() -> None:
    rng = np.random.default_rng(0)
    sos = filters.lowpass_sos(5.0, 100.0)
    x = rng.normal(size=(1000, 3)) + [1.0, -9.81, 3.0]
    whole = filters.StreamingSOS(sos, 3).process(x)
    streaming = filters.StreamingSOS(sos, 3)
    chunked = np.concatenate([streaming.process(x[s]) for s in chunks(len(x), rng)])
    np.testing.assert_array_equal(chunked, whole)
    expected, _ = signal.sosfilt(sos, x, axis=0, zi=signal.sosfilt_zi(sos)[:, :, None] * x[0])
    np.testing.assert_array_equal(whole, expected)


def test_streaming_sos_has_no_start_transient() -> None:
    sos = filters.bandpass_sos(4.0, 12.0, 200.0)
    lowpass = filters.StreamingSOS(filters.lowpass_sos(2.0, 200.0), 1)
    np.testing.assert_allclose(lowpass.process(np.full(300, 9.81)), 9.81, rtol=1e-12)
    np.testing.assert_allclose(filters.StreamingSOS(sos, 2).process(np.full((300, 2), 5.0)), 0.0, atol=1e-9)


def test_filtfilt_is_zero_phase_and_handles_short_input() -> None:
    rate_hz = 100.0
    t_s = np.arange(1000) / rate_hz
    slow = np.sin(2 * np.pi * 0.5 * t_s)
    noisy = slow + 0.3 * np.sin(2 * np.pi * 30.0 * t_s)
    sos = filters.lowpass_sos(3.0, rate_hz)
    smoothed = filters.filtfilt(sos, np.column_stack([noisy, 2 * noisy]))
    np.testing.assert_allclose(smoothed[100:-100, 0], slow[100:-100], atol=1e-2)
    np.testing.assert_allclose(smoothed[:, 1], 2 * smoothed[:, 0], rtol=1e-12, atol=1e-12)
    assert filters.filtfilt(sos, np.ones(5)).shape == (5,)
    assert filters.filtfilt(sos, np.zeros((0, 3))).shape == (0, 3)


@pytest.mark.parametrize("cutoff_hz", [0.0, -1.0, 50.0, 80.0])
def test_lowpass_rejects_cutoff_outside_band(cutoff_hz: float) -> None:
    with pytest.raises(ConfigError, match="Nyquist"):
        filters.lowpass_sos(cutoff_hz, 100.0)


def test_filter_shape_errors() -> None:
    with pytest.raises(ConfigError, match="below high edge"):
        filters.bandpass_sos(12.0, 4.0, 100.0)
    with pytest.raises(DataError, match=r"\(n, 3\)"):
        filters.StreamingSOS(filters.lowpass_sos(5.0, 100.0), 3).process(np.zeros((10, 2)))
    with pytest.raises(DataError, match=r"\(n,\) or \(n, c\)"):
        filters.filtfilt(filters.lowpass_sos(5.0, 100.0), np.zeros((10, 2, 2)))


# --- orientation -----------------------------------------------------------------------------------

def test_streaming_orientation_chunked_equals_one_call() -> None:
    rng = np.random.default_rng(1)
    _, gyr, acc = synthetic_imu(duration_s=20.0)
    whole = orientation.StreamingOrientation(100.0).update(gyr, acc)
    streaming = orientation.StreamingOrientation(100.0)
    chunked = np.concatenate([streaming.update(gyr[s], acc[s]) for s in chunks(len(gyr), rng)])
    np.testing.assert_array_equal(chunked, whole)


@pytest.mark.parametrize("estimator", ["streaming", "offline"])
def test_orientation_tracks_true_inclination(estimator: str) -> None:
    rot, gyr, acc = synthetic_imu()
    if estimator == "streaming":
        quat = orientation.StreamingOrientation(100.0).update(gyr, acc)
    else:
        quat = orientation.offline_orientation(gyr, acc, 100.0)
    true_up = rot.inv().apply([0.0, 0.0, 1.0])
    est_up = orientation.up_in_sensor(quat)
    error_deg = np.degrees(np.arccos(np.clip(np.einsum("ij,ij->i", true_up, est_up), -1, 1)))
    assert np.sqrt(np.mean(error_deg**2)) < 0.5
    np.testing.assert_allclose(orientation.to_earth(quat, acc)[:, 2], GRAVITY_MPS2, atol=0.15)


def test_inclination_of_known_tilt() -> None:
    quat = quat_wxyz(Rotation.from_euler("x", [[0.0], [30.0], [-30.0], [90.0], [180.0]], degrees=True))
    up = orientation.up_in_sensor(quat)
    np.testing.assert_allclose(up[1], [0.0, np.sin(np.radians(30)), np.cos(np.radians(30))], atol=1e-12)
    incl = orientation.inclination_deg(up, np.array([0.0, 0.0, 1.0]))
    np.testing.assert_allclose(incl, [0.0, 30.0, 30.0, 90.0, 180.0], atol=1e-9)


def test_inclination_of_tiny_angles_is_accurate() -> None:
    angles_deg = np.array([1e-6, 1e-4, 0.01])
    quat = quat_wxyz(Rotation.from_euler("y", angles_deg[:, None], degrees=True))
    incl = orientation.inclination_deg(orientation.up_in_sensor(quat), np.array([0.0, 0.0, 2.0]))
    np.testing.assert_allclose(incl, angles_deg, rtol=1e-6)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_inclination_does_not_depend_on_strap_rotation_or_heading(seed: int) -> None:
    rng = np.random.default_rng(seed)
    segment = Rotation.random(200, random_state=rng)  # segment frame -> earth
    reference = Rotation.random(random_state=rng)
    strap = Rotation.random(random_state=rng)  # sensor frame -> segment frame, constant
    heading = Rotation.from_euler("z", rng.uniform(-180, 180), degrees=True)

    def incl(sensor_to_earth: Rotation, ref_sensor_to_earth: Rotation) -> np.ndarray:
        ref_up = orientation.up_in_sensor(quat_wxyz(ref_sensor_to_earth)[None])[0]
        return orientation.inclination_deg(orientation.up_in_sensor(quat_wxyz(sensor_to_earth)), ref_up)

    base = incl(segment, reference)
    np.testing.assert_allclose(incl(segment * strap, reference * strap), base, atol=1e-9)
    np.testing.assert_allclose(incl(heading * segment, reference), base, atol=1e-9)
    true_deg = np.degrees(np.arccos(np.clip(
        np.einsum("ij,j->i", segment.inv().apply([0, 0, 1]), reference.inv().apply([0, 0, 1])), -1, 1)))
    np.testing.assert_allclose(base, true_deg, atol=1e-6)


def test_to_earth_matches_rotation_and_inverts_up() -> None:
    rng = np.random.default_rng(3)
    rot = Rotation.random(100, random_state=rng)
    vec = rng.normal(size=(100, 3))
    quat = quat_wxyz(rot)
    quat[::2] *= -1  # q and -q are the same rotation
    np.testing.assert_allclose(orientation.to_earth(quat, vec), rot.apply(vec), atol=1e-12)
    np.testing.assert_allclose(orientation.to_earth(quat, orientation.up_in_sensor(quat)),
                               np.tile([0.0, 0.0, 1.0], (100, 1)), atol=1e-12)


def test_orientation_input_errors() -> None:
    with pytest.raises(DataError, match=r"gyr_radps must have shape \(n, 3\), got \(10, 4\)"):
        orientation.offline_orientation(np.zeros((10, 4)), np.zeros((10, 3)), 100.0)
    with pytest.raises(DataError, match="same length"):
        orientation.StreamingOrientation(100.0).update(np.zeros((10, 3)), np.zeros((9, 3)))
    with pytest.raises(ConfigError, match="rate"):
        orientation.StreamingOrientation(0.0)
    with pytest.raises(DataError, match="non-zero"):
        orientation.inclination_deg(np.ones((2, 3)), np.zeros(3))
    with pytest.raises(DataError, match="4 rows but vec_sensor has 3"):
        orientation.to_earth(np.ones((4, 4)), np.ones((3, 3)))
    assert orientation.StreamingOrientation(100.0).update(np.zeros((0, 3)), np.zeros((0, 3))).shape == (0, 4)


# --- time base -------------------------------------------------------------------------------------

def lossy_stream(
    rate_hz: float, n: int, lost: list[int], jitter_periods: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """n samples of a drifting clock with uniform jitter, minus the lost ones: (indices kept, t_s)."""
    rng = np.random.default_rng(seed)
    t_s = np.arange(n) / rate_hz * 1.0003 + rng.uniform(-jitter_periods, jitter_periods, n) / rate_hz
    return np.delete(np.arange(n), lost), np.delete(t_s, lost)


def test_nominal_rate_with_jitter_gaps_and_drift() -> None:
    rng = np.random.default_rng(4)
    lost = np.flatnonzero(rng.random(50_000) < 0.05).tolist()
    _, t_s = lossy_stream(200.0, 50_000, lost, 0.25, seed=5)
    assert timebase.nominal_rate_hz(t_s) == pytest.approx(200.0 / 1.0003, rel=1e-5)
    assert timebase.nominal_rate_hz(np.round(np.arange(1000) / 200.0, 3)) == pytest.approx(200.0)


def test_find_gaps_from_seq() -> None:
    seq = np.array([10, 11, 12, 15, 16, 16, 17, 30])
    t_s = np.arange(seq.size) * 0.01
    assert timebase.find_gaps(t_s, seq, 100.0) == [Gap(0.02, 0.03, 2), Gap(0.06, 0.07, 12)]


@pytest.mark.parametrize("seed", [0, 1])
def test_find_gaps_from_jittered_time(seed: int) -> None:
    rng = np.random.default_rng(seed)
    lost = np.sort(rng.choice(np.arange(1, 20_000), size=400, replace=False))
    kept, t_s = lossy_stream(100.0, 20_000, lost.tolist(), 0.25, seed)
    gaps = timebase.find_gaps(t_s, None, timebase.nominal_rate_hz(t_s))
    true_missing = np.diff(kept) - 1
    assert [g.missing_samples for g in gaps] == true_missing[true_missing > 0].tolist()
    assert [g.start_s for g in gaps] == t_s[:-1][true_missing > 0].tolist()
    _, clean = lossy_stream(100.0, 20_000, [], 0.25, seed)
    assert timebase.find_gaps(clean, None, 100.0) == []


def test_fill_short_gaps_interpolates_and_leaves_long_gaps() -> None:
    kept = np.delete(np.arange(30), [5, 6, 12, 13, 14, 15])
    t_s = kept / 100.0
    acc = np.column_stack([kept, 2.0 * kept, np.full(kept.size, 9.81)])
    gyr = np.column_stack([-kept, np.zeros(kept.size), np.ones(kept.size)]).astype(float)
    for seq in (kept.astype(np.int64), None):
        filled = timebase.fill_short_gaps(Samples(t_s, acc, gyr, seq, mag_ut=acc * 3), 100.0, max_missing=3)
        full = np.concatenate([np.arange(12), np.arange(16, 30)])
        np.testing.assert_allclose(filled.t_s, full / 100.0, atol=1e-15)
        np.testing.assert_allclose(filled.acc_mps2[:, 1], 2.0 * full)
        np.testing.assert_allclose(filled.gyr_radps[:, 0], -full)
        np.testing.assert_allclose(filled.mag_ut, filled.acc_mps2 * 3)
        if seq is not None:
            np.testing.assert_array_equal(filled.seq, full)
            assert filled.seq.dtype == np.int64
        assert timebase.find_gaps(filled.t_s, filled.seq, 100.0) == [Gap(0.11, 0.16, 4)]
    clean = Samples(t_s[:5], acc[:5], gyr[:5])
    assert timebase.fill_short_gaps(clean, 100.0) is clean


@given(st.lists(st.integers(min_value=1, max_value=7), min_size=2, max_size=60),
       st.integers(min_value=0, max_value=5))
def test_fill_short_gaps_closes_exactly_the_short_gaps(steps: list[int], max_missing: int) -> None:
    seq = np.cumsum(steps).astype(np.int64)
    t_s = seq / 50.0
    acc = np.column_stack([seq, -seq, seq**2]).astype(float)
    samples = Samples(t_s, acc, acc * 0.5, seq)
    filled = timebase.fill_short_gaps(samples, 50.0, max_missing)
    long_steps = [s for s in steps[1:] if s - 1 > max_missing]
    assert [g.missing_samples for g in timebase.find_gaps(filled.t_s, filled.seq, 50.0)] == [
        s - 1 for s in long_steps]
    assert len(filled) == seq[-1] - seq[0] + 1 - sum(s - 1 for s in long_steps)
    kept = np.isin(filled.seq, seq)
    np.testing.assert_array_equal(filled.acc_mps2[kept], acc)  # received samples untouched
    np.testing.assert_allclose(filled.t_s, filled.seq / 50.0, rtol=1e-12)
    np.testing.assert_allclose(filled.acc_mps2[:, :2], np.column_stack([filled.seq, -filled.seq]), rtol=1e-12)


def test_timebase_input_errors() -> None:
    with pytest.raises(DataError, match="no increasing timestamps among 1 samples"):
        timebase.nominal_rate_hz(np.array([1.0]))
    with pytest.raises(DataError, match=r"t_s must have shape \(n\)"):
        timebase.find_gaps(np.zeros((3, 2)), None, 100.0)
    with pytest.raises(DataError, match="seq has shape"):
        timebase.find_gaps(np.arange(4.0), np.arange(3), 100.0)
    with pytest.raises(ConfigError, match="rate"):
        timebase.find_gaps(np.arange(4.0), None, 0.0)


def test_a_pause_with_a_continuous_counter_is_a_gap():
    """A sensor that stopped streaming while its link was down: the counter goes on, the time jumps."""
    rate_hz = 100.0
    t_s = np.concatenate([np.arange(100) / rate_hz, 3.0 + np.arange(100) / rate_hz])
    seq = np.arange(200)
    gaps = timebase.find_gaps(t_s, seq, rate_hz)
    assert len(gaps) == 1
    assert gaps[0].start_s == pytest.approx(0.99) and gaps[0].end_s == pytest.approx(3.0)
    assert gaps[0].missing_samples == 200
    jittered = np.arange(200) / rate_hz + 0.003 * np.sin(np.arange(200))
    assert timebase.find_gaps(jittered, seq, rate_hz) == []


@given(steps=st.lists(st.integers(-1, 3), min_size=1, max_size=12),
       dt_periods=st.lists(st.floats(0.0, 7.0), min_size=12, max_size=12), with_seq=st.booleans())
def test_continues_without_gap_only_when_find_gaps_and_fill_find_nothing(steps, dt_periods, with_seq):
    rate_hz = 200.0
    seq = np.cumsum([10] + steps)
    t_s = np.cumsum([1.0] + [d / rate_hz for d in dt_periods[:len(steps)]])
    joined = Samples(t_s, np.zeros((len(t_s), 3)), np.zeros((len(t_s), 3)), seq if with_seq else None)
    clear = timebase.continues_without_gap(float(t_s[0]), int(seq[0]) if with_seq else None, t_s[1:],
                                           seq[1:] if with_seq else None, rate_hz)
    if clear:
        assert timebase.find_gaps(joined.t_s, joined.seq, rate_hz) == []
        assert timebase.fill_short_gaps(joined, rate_hz, 100) is joined
    if with_seq and all(s == 1 for s in steps) and all(d <= 4.99 for d in dt_periods[:len(steps)]):
        assert clear
    if not with_seq and all(d <= 1.49 for d in dt_periods[:len(steps)]):
        assert clear
