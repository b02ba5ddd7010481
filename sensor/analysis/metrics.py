"""Per-hold stability metrics (definitions: shared hold-metrics reference, section 3.1).

All metrics except duration and peak angle are computed over the hold window
[hold_start_s + settle_s, hold_end_s]. Inputs are plain arrays; nothing here knows about phases.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

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


def segment_band_power_dps2(gyr_dps: np.ndarray, rate_hz: float, low_hz: float, high_hz: float,
                            segment_s: float) -> tuple[np.ndarray, np.ndarray] | None:
    """Welch segments of angular velocity and the band power of each, (deg/s)^2 summed over axes.

    gyr_dps: (n, 3). Hann-windowed segments of `segment_s` (at most n samples), 50 % overlap, mean
    removed per segment; one-sided PSD integrated over [low_hz, high_hz]. Averaging the powers of
    all segments gives the same estimate as scipy.signal.welch integrated over the band.
    Returns (segment start indices (k,), powers (k,)), or None when the signal is shorter than a
    quarter second or the band lies above Nyquist.
    """
    n = gyr_dps.shape[0]
    if n < max(8, int(0.25 * rate_hz)) or low_hz >= rate_hz / 2:
        return None
    nperseg = min(n, max(8, int(round(segment_s * rate_hz))))
    design = _welch_design(nperseg, rate_hz, low_hz, high_hz)
    if design is None:
        return None
    basis, one_sided, denominator, bin_hz = design
    starts = np.arange(0, n - nperseg + 1, nperseg - nperseg // 2)
    segments = np.lib.stride_tricks.sliding_window_view(gyr_dps, nperseg, axis=0)[starts]  # (k, 3, m)
    parts = segments @ basis  # (k, 3, 2 * bins): real parts, then imaginary parts, of the band's bins
    bins = one_sided.size
    density = (parts[..., :bins] ** 2 + parts[..., bins:] ** 2) * one_sided / denominator
    return starts, density.sum(axis=(1, 2)) * bin_hz


@lru_cache(maxsize=32)
def _welch_design(nperseg: int, rate_hz: float, low_hz: float, high_hz: float
                  ) -> tuple[np.ndarray, np.ndarray, float, float] | None:
    """The band's part of the Welch transform of one segment, as a matrix (nperseg, 2 * bins): a
    segment (nperseg,) times it gives the real parts, then the imaginary parts, of the rfft bins in
    the band of the segment with its mean removed and a periodic Hann window applied (mean removal
    folded in: the transform is linear). Also the bins' one-sided factors, the density denominator
    rate * sum(window^2) and the bin width in Hz; None when no bin lies in the band.
    Cached: the same for every hold. Only the band's few bins are computed, not the whole rfft.
    """
    freqs_hz = np.fft.rfftfreq(nperseg, 1.0 / rate_hz)
    in_band = (freqs_hz >= low_hz) & (freqs_hz <= min(high_hz, rate_hz / 2))
    if not in_band.any():
        return None
    window = np.hanning(nperseg + 1)[:-1]  # periodic Hann, as scipy.signal.get_window
    bins = np.flatnonzero(in_band)
    unpaired = (bins == 0) | ((bins == nperseg // 2) & (nperseg % 2 == 0))  # DC and even-n Nyquist
    one_sided = np.where(unpaired, 1.0, 2.0)
    phase = 2.0 * np.pi * np.outer(np.arange(nperseg), bins) / nperseg
    windowed = window[:, None] * np.concatenate([np.cos(phase), -np.sin(phase)], axis=1)  # (m, 2 * bins)
    basis = windowed - windowed.sum(axis=0) / nperseg  # x @ basis == transform of (x - mean(x))
    for a in (basis, one_sided):
        a.flags.writeable = False
    return basis, one_sided, rate_hz * np.sum(window ** 2), freqs_hz[1] - freqs_hz[0]


def band_power_dps2(gyr_dps: np.ndarray, rate_hz: float, low_hz: float, high_hz: float,
                    segment_s: float) -> float | None:
    """Welch band power of angular velocity (deg/s)^2 summed over axes; see segment_band_power_dps2."""
    seg = segment_band_power_dps2(gyr_dps, rate_hz, low_hz, high_hz, segment_s)
    return None if seg is None else float(seg[1].mean())


def hold_metrics(t_s: np.ndarray, angle_deg: np.ndarray, gyr_dps: np.ndarray,
                 hold_start_s: float, hold_end_s: float, rate_hz: float,
                 params: AnalysisParams, corrections_s: list[tuple[float, float]] | None = None) -> HoldMetrics:
    """Metrics of one hold.

    t_s, angle_deg: (n,) covering at least [hold_start_s, hold_end_s]; gyr_dps: (n, 3) bias-removed.
    All metrics use the window after settling (peak_angle_deg falls back to the whole hold when the
    window is empty).
    tremor_rms_dps: sqrt of the 4-12 Hz band power of angular velocity (Welch), leaving out the
    Welch segments that overlap a balance correction (corrections_s: (start_s, end_s) spans), whose
    quick out-and-back movement has power in the band but is not tremor.
    tremor_growth: band POWER ratio, last third of the window over the first third (Welch segments
    lying inside each third, corrections left out likewise).
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
    tc = t_w - t_w.mean()
    sag = float(np.dot(tc, a_w - a_w.mean()) / np.dot(tc, tc)) if np.dot(tc, tc) > 0 else 0.0
    p5, p95 = np.percentile(a_w, [5.0, 95.0])
    band = (params.tremor_band_low_hz, params.tremor_band_high_hz, params.welch_segment_s)
    power, growth = _tremor(t_w, g_w, rate_hz, band, corrections_s or [])
    return HoldMetrics(
        peak_angle_deg=peak,
        hold_angle_mean_deg=float(np.mean(a_w)),
        sway_sd_deg=float(np.std(a_w)),
        sway_range_deg=float(p95 - p5),
        sag_deg_per_s=sag,
        mean_speed_dps=float(np.mean(np.linalg.norm(g_w, axis=1))),
        tremor_rms_dps=None if power is None else float(np.sqrt(power)),
        tremor_growth=growth,
        window_s=window_s,
    )


def _tremor(t_s: np.ndarray, gyr_dps: np.ndarray, rate_hz: float, band: tuple[float, float, float],
            corrections_s: list[tuple[float, float]]) -> tuple[float | None, float | None]:
    """Band power over the window, and its growth: mean power of the segments inside the last third
    of the window over those inside the first third (None if either third holds no whole segment).
    Segments overlapping a correction are left out, unless that would leave none."""
    seg = segment_band_power_dps2(gyr_dps, rate_hz, *band)
    if seg is None:
        return None, None
    starts, powers = seg
    n = gyr_dps.shape[0]
    nperseg = min(n, max(8, int(round(band[2] * rate_hz))))
    clean = np.ones(starts.size, dtype=bool)
    for c0, c1 in corrections_s:
        clean &= (t_s[starts + nperseg - 1] < c0) | (t_s[starts] > c1)
    if clean.any():
        starts, powers = starts[clean], powers[clean]
    first = powers[starts + nperseg <= n // 3]
    last = powers[starts >= n - n // 3]
    if first.size == 0 or last.size == 0 or not first.mean() > 0:
        return float(powers.mean()), None
    return float(powers.mean()), float(last.mean() / first.mean())


def is_sagging(sag_deg_per_s: float, placement: str, params: AnalysisParams) -> bool:
    """Thigh: the angle falls towards standing at >= sag_limit_deg_per_s. Ankle: the shank's tilt
    drifts either way at that rate (its tilt is unsigned and the shank may hang either side of
    vertical, so the direction of a hip sag cannot be told from it)."""
    if placement == "thigh":
        return sag_deg_per_s <= -params.sag_limit_deg_per_s
    return abs(sag_deg_per_s) >= params.sag_limit_deg_per_s


def rep_flags(hold_duration_s: float, metrics: HoldMetrics, corrections: int, aborted: bool,
              balance_loss: bool, params: AnalysisParams, placement: str = "thigh") -> list[str]:
    """Flags in sensor.types.REP_FLAGS order.

    early_drop: the hold ended before target_hold_s. sagging: see `is_sagging`. unsteady: sway SD
    above unsteady_sway_sd_deg or at least unsteady_corrections corrections. balance_loss and
    aborted come from the phase tracker.
    """
    flags: list[str] = []
    if not aborted and hold_duration_s < params.target_hold_s:
        flags.append("early_drop")
    if metrics.sag_deg_per_s is not None and is_sagging(metrics.sag_deg_per_s, placement, params):
        flags.append("sagging")
    if (metrics.sway_sd_deg is not None and metrics.sway_sd_deg > params.unsteady_sway_sd_deg) or (
            corrections >= params.unsteady_corrections):
        flags.append("unsteady")
    if balance_loss:
        flags.append("balance_loss")
    if aborted:
        flags.append("aborted")
    return flags
