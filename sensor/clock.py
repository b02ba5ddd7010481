"""Sensor clock -> host time: drift-corrected timestamps, sample-counter gaps and counter resets.

Pure: no IO, no Bluetooth. `SensorClock.map()` takes one decoded notification (its host arrival
time and whatever counter or clock the sensor sends) and returns host-based timestamps for its
samples plus a continuous sample counter.

How time is mapped. Every sample gets a *sensor tick time* `x_s` on one continuous axis:
- from the sample counter (`seq / rate_hz`) when the profile has one (the counter is the sensor's
  own clock: it advances once per sample at the sensor crystal's rate);
- else from the sensor's timestamp (`sensor_time_s`);
- else from the count of received samples (`n / rate_hz`), advanced over long arrival pauses.
Host time is a line `t = a + scale * x`. A notification arrives after its last sample was taken,
plus a latency that jitters upwards from a floor, so the packets with the *smallest* arrival delay
lie on the true line shifted by that floor. Once per `refit_interval_s` the clock keeps the packet
with the lowest `arrival - x`, fits a line through the last `fit_window` such minima (least
squares), and slews its mapping towards that line over `converge_s` seconds. The mapping stays
continuous and strictly increasing; drift between the two crystals is followed by `scale`.

Counters. `seq` in the output is the sensor counter, unwrapped (with `counter_modulus`), made
continuous across reconnects (a counter that went on, paused, or jumped ahead is kept as the sensor
sent it), and shifted after a sensor reboot (the counter going back, or restarting at 0 near the wrap)
so that it keeps increasing; the shift is estimated from host time so the reboot shows up as a gap of
the right length. Missing counter values are reported as lost samples; nothing is invented for them.
Duplicated or stale samples (counter not increasing, small jump back) are dropped and counted.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np

from sensor.errors import ConfigError


@dataclass(frozen=True)
class MappedBlock:
    """Timestamps for the samples of one notification that were kept.

    keep: (n_in,) bool, which of the input samples were kept (False = duplicate / stale).
    t_s: (k,) float64 host time of each kept sample, seconds since the clock's first sample.
    seq: (k,) int64 continuous sample counter, or None when the profile has no counter.
    lost_samples: samples missing just before or inside this block (0 when none).
    gap_start_s / gap_end_s: the kept samples bracketing the largest gap in or before this block,
        or None when there is no gap.
    counter_reset: True when this block starts after a counter reset (sensor reboot).
    """

    keep: np.ndarray
    t_s: np.ndarray
    seq: np.ndarray | None
    lost_samples: int = 0
    gap_start_s: float | None = None
    gap_end_s: float | None = None
    counter_reset: bool = False


@dataclass
class ClockStats:
    """Running totals since the clock was created."""

    samples: int = 0
    lost_samples: int = 0
    duplicate_samples: int = 0
    counter_resets: int = 0
    gaps: int = 0
    scale: float = 1.0


@dataclass
class _Line:
    """Host time as a line of sensor tick time: t = t0 + scale * (x - x0)."""

    x0: float
    t0: float
    scale: float

    def at(self, x: np.ndarray | float) -> np.ndarray | float:
        if type(x) is float:  # the same arithmetic without numpy's scalar overhead
            return self.t0 + self.scale * (x - self.x0)
        return self.t0 + self.scale * (np.asarray(x, dtype=np.float64) - self.x0)


@dataclass
class _Window:
    """The lowest-delay packet seen in the current refit window."""

    start_host_s: float
    x_s: float = 0.0
    host_s: float = 0.0
    delay_s: float = float("inf")


@dataclass
class SensorClock:
    """Maps sensor counters/clocks of one sensor to host time (see module docstring).

    rate_hz: nominal sample rate the sensor was configured for.
    has_counter: the profile sends a per-sample counter (`sample_seq`).
    counter_modulus: the raw counter wraps at this value (e.g. 65536); None if the decoder
        already delivers an unbounded counter.
    refit_interval_s: how often the line is refitted (one minimum-delay point per interval).
    fit_window: how many minimum-delay points the fit uses.
    converge_s: how long a correction of the mapping is spread over.
    max_drift: largest accepted |scale - 1| (0.05 = 5 %); fits beyond it are clamped.
    pause_gap_s: (no counter, no sensor clock) an arrival later than expected by more than this
        is taken as lost samples.
    """

    rate_hz: float
    has_counter: bool = False
    counter_modulus: int | None = None
    refit_interval_s: float = 1.0
    fit_window: int = 120
    converge_s: float = 5.0
    max_drift: float = 0.05
    pause_gap_s: float = 0.25
    stats: ClockStats = field(default_factory=ClockStats)

    def __post_init__(self) -> None:
        if not self.rate_hz > 0:
            raise ConfigError(f"sample rate must be > 0 Hz, got {self.rate_hz}")
        if self.counter_modulus is not None and self.counter_modulus < 4:
            raise ConfigError(f"counter modulus must be >= 4, got {self.counter_modulus}")
        self._line: _Line | None = None
        self._origin_s: float | None = None
        self._points: deque[tuple[float, float]] = deque(maxlen=self.fit_window)
        self._window: _Window | None = None
        self._last_x_s = 0.0
        self._last_t_s = -np.inf
        self._last_host_s = 0.0
        self._last_seq: int | None = None
        self._seq_offset = 0
        self._time_offset_s = 0.0
        self._x_offset_s = 0.0
        self._last_sensor_time_s: float | None = None
        self._count = 0
        self._reconnected = False

    # ---------------------------------------------------------------- public API

    @property
    def origin_host_s(self) -> float | None:
        """Host time of the first sample (t_s = 0), or None before any sample."""
        return self._origin_s

    def reconnected(self) -> None:
        """The link was re-established: the next block may come from a rebooted sensor."""
        self._reconnected = True

    def map(
        self,
        host_time_s: float,
        n_samples: int,
        sample_seq: np.ndarray | None = None,
        sensor_time_s: np.ndarray | None = None,
    ) -> MappedBlock:
        """Timestamps for one notification of `n_samples` samples that arrived at `host_time_s`.

        host_time_s: host monotonic clock, seconds. sample_seq: (n,) counter values as decoded
        (unwrapped or raw). sensor_time_s: (n,) sensor clock, seconds. Either may be None.
        """
        keep = np.ones(n_samples, dtype=bool)
        if n_samples == 0:
            return MappedBlock(keep, np.zeros(0), self._empty_seq())
        reanchor = self._reconnected and self._line is not None and (
            sensor_time_s is not None or (self.has_counter and sample_seq is not None))
        if self.has_counter and sample_seq is not None:
            seq, keep, lost, reset = self._continuous_seq(host_time_s, np.asarray(sample_seq, np.int64))
            x_s = seq / self.rate_hz
        elif sensor_time_s is not None:
            seq = None
            x_s, keep, lost, reset = self._continuous_time(host_time_s, np.asarray(sensor_time_s, np.float64))
        else:
            seq = None
            x_s, lost = self._counted_time(host_time_s, n_samples)
            reset = False
        self._reconnected = False
        kept = int(np.count_nonzero(keep))
        self.stats.duplicate_samples += n_samples - kept
        if not kept:
            return MappedBlock(keep, np.zeros(0), self._empty_seq())
        if reset:
            self.stats.counter_resets += 1
            self._restart_line()
        if reanchor:
            self._reanchor(host_time_s, float(x_s[-1]))
        t_host = self._host_times(host_time_s, x_s + self._x_offset_s)
        t_s = t_host - self._origin_s
        gap = self._gap_bounds(t_s, x_s, lost)
        self._last_t_s = float(t_s[-1])
        self._last_x_s = float(x_s[-1])
        self._last_host_s = host_time_s
        self.stats.samples += kept
        self.stats.lost_samples += lost
        self.stats.gaps += int(lost > 0)
        self.stats.scale = self._line.scale
        return MappedBlock(keep, t_s, seq, lost, gap[0], gap[1], reset)

    # ---------------------------------------------------------------- counters

    def _empty_seq(self) -> np.ndarray | None:
        return np.zeros(0, dtype=np.int64) if self.has_counter else None

    def _expected_next(self, host_time_s: float) -> float:
        """Counter value expected for the next sample if the sensor kept counting while we waited."""
        paused_s = max(0.0, host_time_s - self._last_host_s)
        return self._last_seq + max(1.0, paused_s * self.rate_hz)

    def _tolerance(self, expected: float) -> float:
        """How far a continuing counter may run ahead of the host-time estimate (drift, latency)."""
        return 0.5 * self.rate_hz + 0.05 * (expected - self._last_seq)

    def _unwrap_first(self, raw: int, host_time_s: float) -> tuple[int, bool]:
        """(unwrapped raw counter of a block's first sample, counter reset?) for a wrapping counter.

        Within a connection the nearest value after the last one is taken. After a reconnect the
        sensor may have counted on while we were away (or paused, or dropped samples itself): the
        latest value not beyond the host-time estimate is taken. A value only beyond it is a forward
        jump of the sensor's counter, kept as it is, unless the raw value is small enough to be a
        counter restarted at 0 during the pause (a reboot).
        """
        m = self.counter_modulus
        last_raw = self._last_seq - self._seq_offset
        r = raw % m
        if not self._reconnected:
            k = (last_raw + 1 - r + m // 2) // m
            return r + k * m, False
        expected = self._expected_next(host_time_s)
        tolerance = self._tolerance(expected)
        first_after = r + (-(-(last_raw + 1 - r) // m)) * m
        latest = r + int((expected + tolerance - self._seq_offset - r) // m) * m
        if latest >= first_after:
            return latest, False
        restarted_at_most = (expected - self._last_seq) + tolerance
        if r <= restarted_at_most:
            return r, True
        return first_after, False

    def _unwrapped(self, raw: np.ndarray, host_time_s: float) -> tuple[np.ndarray, bool | None]:
        """(counter in the continuous domain before reset handling, reset decided by unwrapping?)."""
        if self.counter_modulus is None or self._last_seq is None:
            return raw + self._seq_offset, None
        m, half = self.counter_modulus, self.counter_modulus // 2
        values = raw.tolist()
        first, reset = self._unwrap_first(values[0], host_time_s)
        seq = [first + self._seq_offset]
        for before, after in zip(values, values[1:]):  # a notification's few counters: plain ints
            seq.append(seq[-1] + (after % m - before % m + half) % m - half)
        return np.array(seq, dtype=np.int64), reset

    def _continuous_seq(
        self, host_time_s: float, raw: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, int, bool]:
        """(continuous seq of kept samples, keep mask, lost count, counter reset?)."""
        seq, reset = self._unwrapped(raw, host_time_s)
        if self._last_seq is None:
            self._last_seq = int(seq[0]) - 1
            self._last_host_s = host_time_s
        if reset is None:
            reset = self._is_reset(int(seq[0]), host_time_s)
        if reset:
            shift = round(self._expected_next(host_time_s)) - int(seq[0])
            self._seq_offset += shift
            seq = seq + shift
        flags = []
        last = self._last_seq
        lost = 0
        for s in seq.tolist():
            flags.append(s > last)
            if s > last:
                lost += s - last - 1
                last = s
        self._last_seq = last
        keep = np.array(flags, dtype=bool)
        return (seq if all(flags) else seq[keep]), keep, lost, reset

    def _is_reset(self, first_seq: int, host_time_s: float) -> bool:
        """Counter jumping back: a reset after a reconnect, a long pause or a big jump; else stale."""
        back = self._last_seq - first_seq
        if back < 0:
            return False
        paused_s = host_time_s - self._last_host_s
        return self._reconnected or paused_s > 1.0 or back > max(64, 2 * self.rate_hz)

    def _continuous_time(
        self, host_time_s: float, sensor_time_s: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, int, bool]:
        """(continuous tick time of kept samples, keep mask, lost count, clock reset?)."""
        x = sensor_time_s + self._time_offset_s
        dt_s = 1.0 / self.rate_hz
        reset = False
        if self._last_sensor_time_s is None:
            self._last_host_s = host_time_s
            self._last_x_s = float(x[0]) - dt_s
        elif x[0] <= self._last_x_s and (self._reconnected or host_time_s - self._last_host_s > 1.0
                                          or self._last_x_s - x[0] > 2.0):
            reset = True
            paused_s = max(dt_s, host_time_s - self._last_host_s - (x[-1] - x[0]))
            shift = self._last_x_s + paused_s - float(x[0])
            self._time_offset_s += shift
            x = x + shift
        keep = np.empty(x.shape[0], dtype=bool)
        last = self._last_x_s
        lost = 0
        for i, xi in enumerate(x.tolist()):
            keep[i] = xi > last + 0.25 * dt_s
            if keep[i]:
                lost += max(0, round((xi - last) / dt_s) - 1)
                last = xi
        self._last_sensor_time_s = float(sensor_time_s[-1])
        return x[keep], keep, lost, reset

    def _counted_time(self, host_time_s: float, n: int) -> tuple[np.ndarray, int]:
        """Tick time from the count of samples; a late arrival beyond `pause_gap_s` means loss."""
        lost = 0
        if self._line is not None:
            expected_host_s = float(self._line.at((self._count + n - 1) / self.rate_hz))
            late_s = host_time_s - expected_host_s - self._floor_delay_s()
            if late_s > self.pause_gap_s:
                lost = int(round(late_s * self.rate_hz / self._line.scale))
                self._count += lost
        x = (self._count + np.arange(n)) / self.rate_hz
        self._count += n
        return x, lost

    def _floor_delay_s(self) -> float:
        """Typical arrival delay of recent packets above the mapping line (0 when unknown)."""
        if not self._points:
            return 0.0
        return float(np.median([t - float(self._line.at(x)) for x, t in self._points]))

    # ---------------------------------------------------------------- mapping

    def _restart_line(self) -> None:
        """After a reset the old minima belong to another tick axis: start collecting again."""
        self._points.clear()
        self._window = None

    def _reanchor(self, host_time_s: float, x_last_s: float) -> None:
        """After a reconnect: if the sensor's ticks paused or ran ahead of host time (stream stopped
        while away, samples skipped), move the tick axis so this packet arrives with the usual delay."""
        delay_s = host_time_s - float(self._line.at(x_last_s + self._x_offset_s)) - self._floor_delay_s()
        if abs(delay_s) > self.pause_gap_s:
            self._x_offset_s += delay_s / self._line.scale
            self._restart_line()

    def _host_times(self, host_time_s: float, x_s: np.ndarray) -> np.ndarray:
        """Update the line with this packet (arrival after its last sample) and map its samples."""
        if self._line is None:
            self._line = _Line(float(x_s[-1]), host_time_s, 1.0)
            self._origin_s = float(self._line.at(x_s[0]))
        self._observe(float(x_s[-1]), host_time_s)
        t = np.asarray(self._line.at(x_s), dtype=np.float64)
        return self._monotonic(t)

    def _monotonic(self, t_host: np.ndarray) -> np.ndarray:
        """Never go back in time: at most a slewing step could, so nudge by a fraction of dt."""
        floor = self._last_t_s + self._origin_s + 0.1 / self.rate_hz
        if t_host[0] < floor:
            t_host = t_host + (floor - t_host[0])
        return t_host

    def _observe(self, x_s: float, host_s: float) -> None:
        """Track the lowest-delay packet per refit interval; refit when the interval is over."""
        delay = host_s - float(self._line.at(x_s))
        if self._window is None:
            self._window = _Window(host_s)
        w = self._window
        if delay < w.delay_s:
            w.x_s, w.host_s, w.delay_s = x_s, host_s, delay
        if host_s - w.start_host_s >= self.refit_interval_s:
            self._points.append((w.x_s, w.host_s))
            self._window = _Window(host_s)
            self._refit(x_s)

    def _fitted(self) -> _Line:
        """Least-squares line through the minimum-delay points (offset only while too few)."""
        xs = np.array([p[0] for p in self._points])
        ts = np.array([p[1] for p in self._points])
        scale = self._line.scale
        if xs.size >= 3 and xs[-1] - xs[0] >= 2.0:
            xc = xs - xs.mean()
            scale = float(np.dot(xc, ts - ts.mean()) / np.dot(xc, xc))
            scale = min(1.0 + self.max_drift, max(1.0 - self.max_drift, scale))
        x0 = float(xs.mean())
        return _Line(x0, float(np.mean(ts - scale * (xs - x0))), scale)

    def _refit(self, x_now: float) -> None:
        """Slew the mapping from its value at `x_now` onto the fitted line within `converge_s`."""
        target = self._fitted()
        t_now = float(self._line.at(x_now))
        x_end = x_now + self.converge_s
        slope = (float(target.at(x_end)) - t_now) / self.converge_s
        lo, hi = target.scale * (1.0 - self.max_drift), target.scale * (1.0 + self.max_drift)
        self._line = _Line(x_now, t_now, min(hi, max(lo, slope)))

    # ---------------------------------------------------------------- gaps

    def _gap_bounds(self, t_s: np.ndarray, x_s: np.ndarray, lost: int) -> tuple[float | None, float | None]:
        """Kept samples on either side of the largest tick jump in or just before this block."""
        if lost <= 0:
            return None, None
        xs = np.concatenate([[self._last_x_s], x_s]) if np.isfinite(self._last_t_s) else x_s
        ts = np.concatenate([[self._last_t_s], t_s]) if np.isfinite(self._last_t_s) else t_s
        if xs.size < 2:
            return None, float(t_s[0])
        i = int(np.argmax(np.diff(xs)))
        return float(ts[i]), float(ts[i + 1])
