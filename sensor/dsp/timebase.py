"""Time base of a sample stream: nominal rate, gaps (from the sample counter or from time), short-gap fill.

Timestamps of BLE sensors jitter: a sample that arrives late makes one interval long and the next one
short by the same amount. Gap detection without a counter therefore offsets a long interval against
short neighbouring intervals before counting missing samples, so jitter alone is not a gap. Counting
from time is reliable for jitter up to about a quarter of a sample period per sample; beyond that the
sample counter (seq) is needed.
"""

from __future__ import annotations

import numpy as np

from sensor.dsp import as_array
from sensor.errors import ConfigError, DataError
from sensor.types import Gap, Samples

MAX_MISSING = 2**62  # cap for absurd rates or time spans (an inf or a huge float must not wrap int64)


def nominal_rate_hz(t_s: np.ndarray) -> float:
    """Sample rate of timestamps t_s (n,), n >= 2, robust to jitter and gaps.

    A first estimate from the median time step (of the steps that are not gaps) finds the gaps; the
    rate is then the number of sample periods (received plus missing) over the whole time span. Falls
    back to the median estimate when time does not increase throughout.
    """
    t_s = as_array("t_s", t_s, (None,))
    dt_s = np.diff(t_s)
    ok = np.isfinite(dt_s) & (dt_s > 0)
    if not ok.any():
        raise DataError(f"cannot tell the sample rate: no increasing timestamps among {t_s.size} samples")
    step_s = np.median(dt_s[ok])
    median_rate_hz = float(1.0 / np.median(dt_s[ok & (dt_s < 1.5 * step_s)]))  # without gap intervals
    if not ok.all():
        return median_rate_hz
    periods = dt_s.size + int(_missing_per_interval(t_s, None, median_rate_hz).sum())
    return float(periods / (t_s[-1] - t_s[0]))


def _missing_per_interval(t_s: np.ndarray, seq: np.ndarray | None, rate_hz: float) -> np.ndarray:
    """Number of missing samples in each interval between consecutive samples, (n - 1,) int64."""
    if seq is not None:
        seq = np.asarray(seq)
        if seq.shape != t_s.shape:
            raise DataError(f"seq has shape {seq.shape} but t_s has shape {t_s.shape}")
        return np.maximum(np.diff(seq.astype(np.int64)) - 1, 0)
    if not rate_hz > 0:
        raise ConfigError(f"sample rate must be > 0 Hz, got {rate_hz}")
    with np.errstate(over="ignore"):  # overflow gives inf, capped below
        excess = np.diff(t_s) * rate_hz - 1.0  # periods more than one per interval
    missing = np.zeros(excess.shape, dtype=np.int64)
    long_ = np.flatnonzero(excess > 0.5)
    if long_.size == 0:
        return missing
    shortfall = np.clip(np.concatenate([[0.0], excess, [0.0]]), -1.0, 0.0)  # padded: interval i at i + 1
    offset = excess[long_] + shortfall[long_] + shortfall[long_ + 2]
    missing[long_] = np.clip(np.rint(offset), 0, MAX_MISSING).astype(np.int64)
    return missing


PAUSE_MIN_PERIODS = 5.0
_SLICE_COPY_MAX_GAPS = 2000  # fill_short_gaps copies the runs between fills one by one up to this many


def find_gaps(t_s: np.ndarray, seq: np.ndarray | None, rate_hz: float) -> list[Gap]:
    """Gaps in a stream with timestamps t_s (n,) and, if the source has one, sample counter seq (n,).

    With seq a gap is a counter jump > 1 (jumps <= 0 are not gaps), or a pause: the counter goes on by
    one but the time jumps by more than PAUSE_MIN_PERIODS periods (a sensor that stopped streaming while
    its link was down); a pause counts the samples its time span would have held as missing. Without
    seq a gap is an interval longer than 1.5 nominal periods (1 / rate_hz) that neighbouring short
    intervals do not explain. Each Gap is bracketed by the times of the samples either side of it.
    """
    t_s = as_array("t_s", t_s, (None,))
    missing = _missing_per_interval(t_s, seq, rate_hz)
    if seq is not None and t_s.size > 1:
        pauses = (missing == 0) & (np.diff(t_s) * rate_hz > PAUSE_MIN_PERIODS)
        missing[pauses] = _missing_per_interval(t_s, None, rate_hz)[pauses]
    idx = np.flatnonzero(missing)
    return [Gap(float(t_s[i]), float(t_s[i + 1]), int(missing[i])) for i in idx]


def fill_short_gaps(samples: Samples, rate_hz: float, max_missing: int = 3) -> Samples:
    """Insert linearly interpolated samples into every gap of 1..max_missing missing samples.

    Gaps are found as in `find_gaps`; t_s, acc, gyr, mag are interpolated between the two samples
    bracketing a gap and seq continues the count. Longer gaps are left as they are. Returns `samples`
    itself when nothing is filled.
    """
    t_s = as_array("t_s", samples.t_s, (None,))
    missing = _missing_per_interval(t_s, samples.seq, rate_hz)
    missing[missing > max_missing] = 0
    if not missing.any():
        return samples
    gap_idx = np.repeat(np.arange(missing.size), missing)  # interval of each inserted sample
    first = np.cumsum(missing) - missing  # inserted samples before each interval's own ones
    k = np.arange(gap_idx.size) - first[gap_idx] + 1  # 1..m within its gap
    frac = k / (missing[gap_idx] + 1.0)
    orig_pos = np.arange(t_s.size) + np.concatenate([[0], np.cumsum(missing)])
    new_pos = orig_pos[gap_idx] + k

    gaps = np.flatnonzero(missing)
    runs = np.concatenate(([0], gaps + 1, [t_s.size]))  # original samples between fills: runs[i]:runs[i+1]

    def spread(x: np.ndarray, inserted: np.ndarray) -> np.ndarray:
        out = np.empty((orig_pos[-1] + 1,) + x.shape[1:], dtype=x.dtype)
        if gaps.size <= _SLICE_COPY_MAX_GAPS:  # block copies: far faster than fancy indexing of rows
            for lo, hi in zip(runs[:-1].tolist(), runs[1:].tolist()):
                out[orig_pos[lo]:orig_pos[lo] + hi - lo] = x[lo:hi]
        else:
            out[orig_pos] = x
        out[new_pos] = inserted
        return out

    def interpolate(x: np.ndarray | None) -> np.ndarray | None:
        if x is None:
            return None
        f = frac.reshape((-1,) + (1,) * (x.ndim - 1))
        return spread(x, x[gap_idx] + f * (x[gap_idx + 1] - x[gap_idx]))

    seq = None if samples.seq is None else spread(samples.seq, samples.seq[gap_idx] + k)
    return Samples(interpolate(samples.t_s), interpolate(samples.acc_mps2), interpolate(samples.gyr_radps),
                   seq, interpolate(samples.mag_ut))


def continues_without_gap(t_prev_s: float, seq_prev: int | None, t_s: np.ndarray, seq: np.ndarray | None,
                          rate_hz: float) -> bool:
    """True when a block t_s (n,) (and its counter seq (n,)) follows the sample (t_prev_s, seq_prev)
    with nothing that `find_gaps` would report or `fill_short_gaps` fill in the two joined: with both
    counters every counter step is at most 1 and no pause; without them no interval longer than 1.5
    periods. False means "maybe": ask find_gaps. Plain floats, for a live block's few samples, where
    numpy's per-call overhead would cost more than these comparisons.
    """
    if seq_prev is not None and seq is not None:
        for s, t in zip(seq.tolist(), t_s.tolist()):
            if s - seq_prev > 1 or (t - t_prev_s) * rate_hz > PAUSE_MIN_PERIODS:
                return False
            seq_prev, t_prev_s = s, t
        return True
    for t in t_s.tolist():
        if (t - t_prev_s) * rate_hz - 1.0 > 0.5:
            return False
        t_prev_s = t
    return True
