"""Per-hold stability metrics (definitions: shared hold-metrics reference, section 3.1).

All metrics except duration and peak angle are computed over the hold window
[hold_start_s + settle_s, hold_end_s]. Inputs are plain arrays; nothing here knows about phases.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.signal import welch

from sensor.config import AnalysisParams


@dataclass(frozen=True)
class HoldMetrics:
    """Stability of one hold. None where the window is too short to measure."""

    peak_angle_deg: float | None
    hold_angle_mean_deg: float | None
    sway_sd_deg: float | None
    sway_range_deg: float | None
    sag_deg_per_s: float | None
    mean_speed_dps: float | None
    tremor_rms_dps: float | None
    tremor_growth: float | None
    window_s: float


def band_power_dps2(gyr_dps: np.ndarray, rate_hz: float, low_hz: float, high_hz: float,
                    segment_s: float) -> float | None:
    """Power of angular velocity in [low_hz, high_hz] (deg/s)^2, summed over axes.

    gyr_dps: (n, 3). Welch PSD per axis (Hann, 50 % overlap, mean removed), integrated over the band.
    Returns None when the signal is shorter than a quarter second or the band is above Nyquist.
    """
    n = gyr_dps.shape[0]
    if n < max(8, int(0.25 * rate_hz)) or low_hz >= rate_hz / 2:
        return None
    nperseg = min(n, max(8, int(round(segment_s * rate_hz))))
    freqs_hz, psd = welch(gyr_dps, fs=rate_hz, nperseg=nperseg, detrend="constant", axis=0)
    in_band = (freqs_hz >= low_hz) & (freqs_hz <= min(high_hz, rate_hz / 2))
    if not in_band.any():
        return None
    df_hz = freqs_hz[1] - freqs_hz[0]
    return float(psd[in_band].sum() * df_hz)


def hold_metrics(t_s: np.ndarray, angle_deg: np.ndarray, gyr_dps: np.ndarray,
                 hold_start_s: float, hold_end_s: float, rate_hz: float,
                 params: AnalysisParams) -> HoldMetrics:
    """Metrics of one hold.

    t_s, angle_deg: (n,) covering at least [hold_start_s, hold_end_s]; gyr_dps: (n, 3) bias-removed.
    All metrics use the window after settling (peak_angle_deg falls back to the whole hold when the
    window is empty).
    tremor_rms_dps: sqrt of the 4-12 Hz band power of angular velocity (Welch).
    tremor_growth: band POWER ratio, last third of the window over the first third.
    """
    win = (t_s >= hold_start_s + params.settle_s) & (t_s <= hold_end_s)
    n = int(win.sum())
    in_hold = win if n else (t_s >= hold_start_s) & (t_s <= hold_end_s)
    peak = float(np.max(angle_deg[in_hold])) if in_hold.any() else None
    window_s = max(0.0, hold_end_s - hold_start_s - params.settle_s)
    if n < 3:
        return HoldMetrics(peak, None, None, None, None, None, None, None, window_s)
    t_w = t_s[win]
    a_w = angle_deg[win]
    g_w = gyr_dps[win]
    sag = float(np.polyfit(t_w - t_w[0], a_w, 1)[0])
    p5, p95 = np.percentile(a_w, [5.0, 95.0])
    band = (params.tremor_band_low_hz, params.tremor_band_high_hz, params.welch_segment_s)
    power = band_power_dps2(g_w, rate_hz, *band)
    return HoldMetrics(
        peak_angle_deg=peak,
        hold_angle_mean_deg=float(np.mean(a_w)),
        sway_sd_deg=float(np.std(a_w)),
        sway_range_deg=float(p95 - p5),
        sag_deg_per_s=sag,
        mean_speed_dps=float(np.mean(np.linalg.norm(g_w, axis=1))),
        tremor_rms_dps=None if power is None else float(np.sqrt(power)),
        tremor_growth=_tremor_growth(g_w, rate_hz, band),
        window_s=window_s,
    )


def _tremor_growth(gyr_dps: np.ndarray, rate_hz: float, band: tuple[float, float, float]) -> float | None:
    """Band power of the last third divided by the first third (None if either is unmeasurable)."""
    third = gyr_dps.shape[0] // 3
    if third < 2:
        return None
    first = band_power_dps2(gyr_dps[:third], rate_hz, *band)
    last = band_power_dps2(gyr_dps[-third:], rate_hz, *band)
    if first is None or last is None or first <= 0:
        return None
    return float(last / first)


def rep_flags(hold_duration_s: float, metrics: HoldMetrics, corrections: int, aborted: bool,
              balance_loss: bool, params: AnalysisParams) -> list[str]:
    """Flags in sensor.types.REP_FLAGS order.

    early_drop: the hold ended before target_hold_s. sagging: the angle fell towards standing faster
    than sag_limit_deg_per_s. unsteady: sway SD above unsteady_sway_sd_deg or at least
    unsteady_corrections corrections. balance_loss and aborted come from the phase tracker.
    """
    flags: list[str] = []
    if not aborted and hold_duration_s < params.target_hold_s:
        flags.append("early_drop")
    if metrics.sag_deg_per_s is not None and metrics.sag_deg_per_s <= -params.sag_limit_deg_per_s:
        flags.append("sagging")
    if (metrics.sway_sd_deg is not None and metrics.sway_sd_deg > params.unsteady_sway_sd_deg) or (
            corrections >= params.unsteady_corrections):
        flags.append("unsteady")
    if balance_loss:
        flags.append("balance_loss")
    if aborted:
        flags.append("aborted")
    return flags
