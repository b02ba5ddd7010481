"""Hold metrics on synthetic signals with known answers."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.signal import welch

from sensor.analysis.metrics import band_power_dps2, hold_metrics, rep_flags
from sensor.config import AnalysisParams

RATE_HZ = 100.0


def hold(duration_s: float = 13.0, rate_hz: float = RATE_HZ):
    t = np.arange(0.0, duration_s, 1.0 / rate_hz)
    return t, np.zeros_like(t), np.zeros((t.size, 3))


def test_angle_metrics_over_the_settled_window():
    t, angle, gyr = hold()
    angle += 40.0 + 2.0 * np.sin(2 * np.pi * 0.5 * t)  # sway: SD = 2 / sqrt(2)
    angle[t < 1.0] = 70.0  # overshoot during the settling second is ignored
    m = hold_metrics(t, angle, gyr, 0.0, 13.0, RATE_HZ, AnalysisParams())
    assert m.hold_angle_mean_deg == pytest.approx(40.0, abs=0.02)
    assert m.sway_sd_deg == pytest.approx(2.0 / np.sqrt(2.0), abs=0.01)
    assert m.sway_range_deg == pytest.approx(2 * 2.0 * np.sin(np.pi / 2 * 0.9), abs=0.05)  # P95 - P5
    assert m.peak_angle_deg == pytest.approx(42.0, abs=0.01)
    assert m.window_s == pytest.approx(12.0)


def test_sag_is_the_slope_of_a_linear_fit():
    t, angle, gyr = hold()
    angle += 60.0 - 0.4 * t
    m = hold_metrics(t, angle, gyr, 0.0, 13.0, RATE_HZ, AnalysisParams())
    assert m.sag_deg_per_s == pytest.approx(-0.4, abs=1e-6)
    assert "sagging" in rep_flags(13.0, m, 0, False, False, AnalysisParams(), "thigh")
    assert "sagging" in rep_flags(13.0, m, 0, False, False, AnalysisParams(), "ankle")
    rising = hold_metrics(t, 60.0 + 0.4 * t, gyr, 0.0, 13.0, RATE_HZ, AnalysisParams())
    assert "sagging" not in rep_flags(13.0, rising, 0, False, False, AnalysisParams(), "thigh")
    assert "sagging" in rep_flags(13.0, rising, 0, False, False, AnalysisParams(), "ankle")


def test_tremor_rms_counts_only_the_4_12_hz_band():
    t, angle, gyr = hold()
    gyr[:, 0] = 3.0 * np.sin(2 * np.pi * 8.0 * t)   # tremor: RMS 3 / sqrt(2)
    gyr[:, 1] = 10.0 * np.sin(2 * np.pi * 1.0 * t)  # sway, outside the band
    m = hold_metrics(t, angle, gyr, 0.0, 13.0, RATE_HZ, AnalysisParams())
    assert m.tremor_rms_dps == pytest.approx(3.0 / np.sqrt(2.0), rel=0.03)
    assert m.mean_speed_dps > 5.0


def test_tremor_growth_is_the_power_ratio_of_the_last_to_the_first_third():
    t, angle, gyr = hold(duration_s=16.0)
    amplitude = np.where(t < 6.0, 1.0, np.where(t < 11.0, 1.5, 2.0))
    gyr[:, 2] = amplitude * np.sin(2 * np.pi * 6.0 * t)
    m = hold_metrics(t, angle, gyr, 0.0, 16.0, RATE_HZ, AnalysisParams())
    assert m.tremor_growth == pytest.approx(4.0, rel=0.05)


@pytest.mark.parametrize("n, rate_hz", [(1000, 100.0), (333, 50.0), (2001, 200.0), (40, 100.0)])
def test_band_power_matches_scipy_welch(n, rate_hz):
    rng = np.random.default_rng(1)
    x = rng.normal(0.0, 3.0, (n, 3)) + 2.0
    f, psd = welch(x, fs=rate_hz, nperseg=min(n, int(rate_hz)), detrend="constant", axis=0)
    band = (f >= 4.0) & (f <= 12.0)
    expected = psd[band].sum() * (f[1] - f[0])
    assert band_power_dps2(x, rate_hz, 4.0, 12.0, 1.0) == pytest.approx(expected, rel=1e-9)


def test_short_window_gives_none_not_nan():
    t, angle, gyr = hold(duration_s=1.01)
    m = hold_metrics(t, angle + 5.0, gyr, 0.0, 1.0, RATE_HZ, AnalysisParams())
    assert m.hold_angle_mean_deg is None and m.sway_sd_deg is None and m.tremor_growth is None
    assert m.peak_angle_deg == pytest.approx(5.0)


def test_flags():
    t, angle, gyr = hold()
    angle += 30.0 + 4.0 * np.sin(2 * np.pi * 0.3 * t)
    m = hold_metrics(t, angle, gyr, 0.0, 13.0, RATE_HZ, AnalysisParams())
    p = AnalysisParams()
    assert rep_flags(8.0, m, 0, False, True, p) == ["early_drop", "unsteady", "balance_loss"]
    assert rep_flags(12.0, m, 0, True, False, p) == ["unsteady", "aborted"]
    quiet = hold_metrics(t, np.full_like(t, 30.0), gyr, 0.0, 13.0, RATE_HZ, p)
    assert rep_flags(12.0, quiet, p.unsteady_corrections, False, False, p) == ["unsteady"]
    assert rep_flags(12.0, quiet, 0, False, False, p) == []


def test_corrections_are_left_out_of_the_tremor_band():
    t, angle, gyr = hold()
    gyr[:, 0] = 1.0 * np.sin(2 * np.pi * 8.0 * t)
    bump = (t > 6.0) & (t < 6.3)
    gyr[bump, 1] = 60.0 * np.sin(np.pi * (t[bump] - 6.0) / 0.3 * 2)  # a quick out-and-back correction
    p = AnalysisParams()
    with_bump = hold_metrics(t, angle, gyr, 0.0, 13.0, RATE_HZ, p)
    without = hold_metrics(t, angle, gyr, 0.0, 13.0, RATE_HZ, p, corrections_s=[(6.0, 6.3)])
    assert with_bump.tremor_rms_dps > 2.0
    assert without.tremor_rms_dps == pytest.approx(1.0 / np.sqrt(2.0), rel=0.05)
