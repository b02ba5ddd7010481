"""Phase segmentation rest -> lift -> hold -> lower -> rest, fed chunk by chunk.

The tracker sees per-sample features (time, motion score, vertical linear acceleration in the earth
frame, lift angle, angular velocity). Each sample is classified moving/still with hysteresis on the
smoothed motion score (vectorised per chunk); Python only walks the run boundaries.

A motion *episode* starts at a moving sample and ends where a still run lasting `still_min_s` begins.
When that still run is confirmed the episode is classified:

- at rest: a lift if the ankle (sensor) ended raised by >= `lift_rise_min_cm` (vertical displacement
  from integrating earth-frame acceleration with the velocity pinned to zero in the still phases on both
  sides and a linear velocity de-drift), near the highest point it reached, or for the thigh placement
  if the angle ended >= `lift_angle_min_deg` above standing and the displacement agrees; an episode that
  went up by as much but came back down without settling is an aborted rep; anything else is fidgeting.
- in a hold: a lowering if it brought the sensor down by `lower_fraction` of the rep's rise (thigh: the
  angle fell by that fraction; across a data gap the lowest point counts); otherwise a balance
  correction (the hold goes on). A lowering or correction that turns the leg out of the lift's plane
  (the hinge axis found from the lift's gyro) by >= `balance_loss_off_plane_deg` is a balance loss.

Hold start and end are placed on a sharper signal (`Features.edge_dps`, the low-passed gyro speed):
where it falls below `edge_threshold_dps` after the lift's main movement, and where it last was below
it before the lowering's.

Decisions depend only on sample values, never on where chunks start or end, so feeding a recording
whole or in 10-sample chunks gives the same reps and events.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from sensor.analysis.metrics import hold_metrics, is_sagging, rep_flags
from sensor.config import AnalysisParams
from sensor.errors import ConfigError
from sensor.types import Placement, Rep

PHASES = ("rest", "lift", "hold", "lower")
PHASE_CODES = {name: code for code, name in enumerate(PHASES)}

EVENT_KINDS = ("lift_start", "hold_start", "target_reached", "goal_reached", "sagging", "lower_now",
               "hold_end", "rep_done", "rep_aborted", "gap")

_LOOKBACK_S = 1.0
_FLOAT_PATH_MAX_SAMPLES = 64
"""Blocks of at most this many samples (a live notification's) find their moving/still changes in plain
floats; numpy's per-call overhead would cost more than the few comparisons."""
_SAG_TICK_S = 0.5
_SAG_MIN_WINDOW_S = 3.0


@dataclass(frozen=True)
class Event:
    """Something the user should hear about, at time t_s of the recording's time base."""

    kind: str
    t_s: float
    rep: Rep | None = None
    message: str = ""


@dataclass(frozen=True)
class Features:
    """Per-sample inputs of the phase tracker (all arrays share n).

    t_s: (n,) s. motion_dps: (n,) smoothed motion score (decides moving/still). acc_up_mps2: (n,)
    earth-frame vertical linear acceleration (gravity removed). angle_deg: (n,) lift angle.
    gyr_dps: (n, 3) angular velocity with the gyro bias removed. edge_dps: (n,) a sharper motion
    signal used to place the start and end of each motion (None: motion_dps).
    """

    t_s: np.ndarray
    motion_dps: np.ndarray
    acc_up_mps2: np.ndarray
    angle_deg: np.ndarray
    gyr_dps: np.ndarray
    edge_dps: np.ndarray | None = None

    _FIELDS = ("t_s", "motion_dps", "acc_up_mps2", "angle_deg", "gyr_dps")

    def __len__(self) -> int:
        return int(self.t_s.shape[0])

    @property
    def edges(self) -> np.ndarray:
        return self.motion_dps if self.edge_dps is None else self.edge_dps

    def slice(self, start: int, stop: int) -> "Features":
        return Features(*(getattr(self, name)[start:stop] for name in self._FIELDS),
                        None if self.edge_dps is None else self.edge_dps[start:stop])

    @staticmethod
    def concat(blocks: list["Features"]) -> "Features":
        arrays = [np.concatenate([getattr(b, name) for b in blocks]) for name in Features._FIELDS]
        with_edges = all(b.edge_dps is not None for b in blocks)
        return Features(*arrays, np.concatenate([b.edge_dps for b in blocks]) if with_edges else None)


def hysteresis(x: np.ndarray, high: float, low: float, initial: bool) -> np.ndarray:
    """Boolean (n,) state: True after x exceeds `high`, False after it falls below `low`.

    Samples in between (and NaN) keep the previous state; `initial` is the state before x[0].
    """
    n = x.shape[0]
    decided = np.zeros(n, dtype=np.int8)
    decided[x > high] = 1
    decided[x < low] = -1
    last = np.maximum.accumulate(np.where(decided != 0, np.arange(n), -1))
    return np.where(last >= 0, decided[np.maximum(last, 0)] == 1, initial)


def vertical_displacement_cm(t_s: np.ndarray, acc_up_mps2: np.ndarray) -> np.ndarray:
    """Displacement (n,) in cm from t_s[0], with the velocity pinned to zero at both ends.

    Trapezoidal double integration; the velocity's end value is removed linearly over time
    (equivalent to removing a constant acceleration bias over the window).
    """
    n = t_s.shape[0]
    if n < 3 or t_s[-1] <= t_s[0]:
        return np.zeros(n)
    dt_s = np.diff(t_s)
    vel = np.concatenate(([0.0], np.cumsum(0.5 * (acc_up_mps2[1:] + acc_up_mps2[:-1]) * dt_s)))
    vel -= vel[-1] * (t_s - t_s[0]) / (t_s[-1] - t_s[0])
    pos = np.concatenate(([0.0], np.cumsum(0.5 * (vel[1:] + vel[:-1]) * dt_s)))
    return 100.0 * pos


class _Buffer:
    """Features kept from global sample index `base` onwards.

    The rows live in arrays with room to spare: appending a block copies only the block and trimming
    only moves the start, so a chunk costs the same however long the current rep is. The arrays are
    reallocated (the kept rows copied) when full or mostly unused; rows handed out in views are never
    written again.
    """

    MIN_ROWS = 1024

    def __init__(self) -> None:
        self.base = 0
        self._columns: list[np.ndarray] | None = None  # t_s, motion, acc_up, angle, gyr (n, 3), edges
        self._with_edges = True  # False after a block without edge_dps (edges are the motion score then)
        self._start = 0  # row of sample `base`
        self._stop = 0  # row after the last kept sample

    @property
    def started(self) -> bool:
        return self._columns is not None

    @property
    def data(self) -> Features | None:
        """The kept features (views), None before the first block."""
        return None if self._columns is None else self._rows(self._start, self._stop)

    @property
    def end(self) -> int:
        return self.base + self._stop - self._start

    def _rows(self, lo: int, hi: int) -> Features:
        t_s, motion, acc_up, angle, gyr, edges = (column[lo:hi] for column in self._columns)
        return Features(t_s, motion, acc_up, angle, gyr, edges if self._with_edges else None)

    def append(self, block: Features) -> None:
        n = len(block)
        columns = [block.t_s, block.motion_dps, block.acc_up_mps2, block.angle_deg, block.gyr_dps,
                   block.motion_dps if block.edge_dps is None else block.edge_dps]
        kept = self._stop - self._start
        if kept == 0:  # the block itself is the buffer until the next one comes
            self._columns, self._start, self._stop = columns, 0, n
            self._with_edges = block.edge_dps is not None
            return
        self._with_edges = self._with_edges and block.edge_dps is not None
        need = kept + n
        rows = self._columns[0].shape[0]
        if (self._stop + n > rows or (rows > 4 * need and rows > self.MIN_ROWS)
                or any(old.dtype != new.dtype for old, new in zip(self._columns, columns))):
            grown = [np.empty((max(2 * need, self.MIN_ROWS),) + old.shape[1:], dtype=np.result_type(old, new))
                     for old, new in zip(self._columns, columns)]
            for dst, src in zip(grown, self._columns):
                dst[:kept] = src[self._start:self._stop]
            self._columns, self._start, self._stop = grown, 0, kept
        stop = self._stop + n
        for dst, src in zip(self._columns, columns):
            dst[self._stop:stop] = src
        self._stop = stop

    def trim(self, keep_from: int) -> None:
        cut = keep_from - self.base
        if self._columns is not None and cut > 0:
            self._start = min(self._start + cut, self._stop)
            self.base += cut

    def view(self, start: int, stop: int) -> Features:
        kept = self._stop - self._start
        lo = min(max(start, self.base) - self.base, kept)
        hi = min(max(min(stop, self.end), self.base) - self.base, kept)
        return self._rows(self._start + lo, self._start + max(lo, hi))

    def t(self, index: int) -> float:
        i = min(max(index, self.base), self.end - 1) - self.base
        if i < 0:
            raise IndexError(f"no features kept for sample {index}")
        return float(self._columns[0][self._start + i])


@dataclass
class _RepState:
    index: int
    lift_start_i: int
    hold_start_i: int
    lift_start_s: float
    hold_start_s: float
    rise_cm: float
    hold_angle_deg: float
    corrections: int = 0
    long_corrections: int = 0
    balance_loss: bool = False
    target_emitted: bool = False
    goal_emitted: bool = False
    sag_emitted: bool = False
    first_sag_tick_s: float = math.inf
    sag_ticks_done: int = 0
    extra: dict[str, object] = field(default_factory=dict)
    hinge_axis: np.ndarray | None = None
    corrections_s: list[tuple[float, float]] = field(default_factory=list)


def _principal_axis(gyr_dps: np.ndarray) -> np.ndarray | None:
    """Unit axis (3,) of the dominant rotation in gyr_dps (n, 3): the lift's hinge axis."""
    if gyr_dps.shape[0] < 3:
        return None
    _, vecs = np.linalg.eigh(gyr_dps.T @ gyr_dps)
    return vecs[:, -1]


def _off_plane_excursion_deg(span: Features, axis: np.ndarray | None) -> float:
    """Largest angle (deg) rotated about axes perpendicular to `axis` within the span."""
    if axis is None or len(span) < 3:
        return math.nan
    off = span.gyr_dps - np.outer(span.gyr_dps @ axis, axis)
    dt_s = np.diff(span.t_s)[:, None]
    angle = np.cumsum(0.5 * (off[1:] + off[:-1]) * dt_s, axis=0)
    return float(np.sqrt(np.einsum("ij,ij->i", angle, angle)).max())


class PhaseTracker:
    """Chunk-fed rep segmentation (see module doc). `feed()` returns the events of that chunk.

    index_delay: samples by which the motion score lags the other features (causal smoothing in live
    mode); reported boundaries are moved back by it.
    """

    def __init__(self, params: AnalysisParams, placement: Placement, rate_hz: float,
                 index_delay: int = 0) -> None:
        if placement not in ("ankle", "thigh"):
            raise ConfigError(f"placement must be 'ankle' or 'thigh', got {placement!r}")
        if not rate_hz > 0:
            raise ConfigError(f"rate_hz must be > 0, got {rate_hz!r}")
        self.params = params
        self.placement = placement
        self.rate_hz = float(rate_hz)
        self.index_delay = int(index_delay)
        self.reps: list[Rep] = []
        self._still_min_n = max(1, int(math.ceil(params.still_min_s * rate_hz)))
        self._pad_n = min(int(round(params.integration_pad_s * rate_hz)), self._still_min_n)
        self._lookback_n = int(round(_LOOKBACK_S * rate_hz))
        self._max_buffer_n = int(round(params.max_rep_buffer_s * rate_hz))
        self._buf = _Buffer()
        self._n = 0
        self._moving = False
        self._run_start = 0
        self._run_moving = False
        self._run_confirmed = False
        self._episode_start: int | None = None
        self._rep: _RepState | None = None
        self._events: list[Event] = []
        self._finished = False

    # ----- public state -------------------------------------------------------------------
    @property
    def phase(self) -> str:
        """'rest', 'lift' (moving from rest), 'hold' (incl. corrections not yet classified)."""
        if self._rep is None:
            return "lift" if self._episode_start is not None else "rest"
        return "hold"

    @property
    def samples_seen(self) -> int:
        return self._n

    def hold_elapsed_s(self) -> float:
        if self._rep is None or not self._buf.started:
            return 0.0
        return max(0.0, self._buf.t(self._n - 1) - self._rep.hold_start_s)

    def hold_sagging(self) -> bool:
        return self._rep is not None and self._rep.sag_emitted

    # ----- feeding ------------------------------------------------------------------------
    def feed(self, block: Features) -> list[Event]:
        """Process the next block of features; returns the events it completed."""
        n = len(block)
        if n == 0:
            return []
        self._buf.append(block)
        n0 = self._n
        self._n += n
        for i, moving in self._run_changes(block.motion_dps):
            self._advance(n0 + i)
            self._begin_run(n0 + i, moving)
        self._advance(n0 + n)
        self._trim()
        events, self._events = self._events, []
        return events

    def _run_changes(self, motion_dps: np.ndarray) -> list[tuple[int, bool]]:
        """(block index, moving) where the moving/still state (hysteresis) changes within a block;
        a live block's few samples in plain floats, larger blocks vectorised."""
        p = self.params
        high, low = p.moving_threshold_dps, p.still_threshold_dps
        if motion_dps.shape[0] > _FLOAT_PATH_MAX_SAMPLES:
            moving = hysteresis(motion_dps, high, low, self._moving)
            self._moving = bool(moving[-1])
            previous = np.empty(moving.shape[0], dtype=bool)
            previous[0] = self._run_moving
            previous[1:] = moving[:-1]
            return [(int(i), bool(moving[i])) for i in np.flatnonzero(moving != previous)]
        state, previous, changes = self._moving, self._run_moving, []
        for i, x in enumerate(motion_dps.tolist()):
            if x < low:
                state = False
            elif x > high:
                state = True
            if state != previous:
                changes.append((i, state))
                previous = state
        self._moving = state
        return changes

    def finish(self) -> list[Event]:
        """End of data: close an open episode or hold. Returns the final events."""
        if self._finished or self._n == 0:
            self._finished = True
            return []
        self._finished = True
        if self._episode_start is not None:
            start, self._episode_start = self._episode_start, None
            self._classify(start, self._n, settled=False)
        if self._rep is not None:
            self._end_hold(self._n - 1, None, balance_loss=False, reason="recording_end")
        events, self._events = self._events, []
        return events

    # ----- run walking --------------------------------------------------------------------
    def _begin_run(self, index: int, moving: bool) -> None:
        self._run_start = index
        self._run_moving = moving
        self._run_confirmed = False
        if moving and self._episode_start is None:
            self._episode_start = index

    def _advance(self, until: int) -> None:
        """The current run extends at least to sample `until` (exclusive)."""
        if (not self._run_moving and not self._run_confirmed
                and until - self._run_start >= self._still_min_n):
            confirm = self._run_start + self._still_min_n
            self._hold_ticks(confirm)
            self._run_confirmed = True
            if self._episode_start is not None:
                start, self._episode_start = self._episode_start, None
                self._classify(start, self._run_start, settled=True)
        self._hold_ticks(until)

    def _trim(self) -> None:
        if self._rep is not None:
            keep = self._rep.lift_start_i - self._lookback_n
        elif self._episode_start is not None:
            keep = self._episode_start - self._lookback_n
        else:
            keep = self._n - self._lookback_n
        self._buf.trim(max(keep, self._n - self._max_buffer_n))

    def _t(self, index: int) -> float:
        return self._buf.t(index)

    # ----- episode classification ---------------------------------------------------------
    def _classify(self, start: int, end: int, settled: bool) -> None:
        """Classify the motion episode [start, end); `end` begins a confirmed still run if settled."""
        pre = max(start - self._pad_n, self._buf.base)
        post = min(end + self._pad_n, self._n)
        span = self._buf.view(pre, post)
        z_cm = vertical_displacement_cm(span.t_s, span.acc_up_mps2) if settled else None
        episode = self._buf.view(start, end)
        before = self._buf.view(pre, start).angle_deg
        after = self._buf.view(end, end + self._still_min_n).angle_deg
        angle_before = float(before.mean()) if before.size else float(episode.angle_deg[0])
        angle_after = float(after.mean()) if (settled and after.size) else math.nan
        info = {
            "net_cm": float(z_cm[-1]) if z_cm is not None else math.nan,
            "max_cm": float(z_cm.max()) if z_cm is not None else math.nan,
            "min_cm": float(z_cm.min()) if z_cm is not None else math.nan,
            "angle_before": angle_before,
            "angle_after": angle_after,
            "angle_max": float(episode.angle_deg.max()),
            "peak_motion_dps": float(episode.motion_dps.max()),
            "duration_s": self._t(end) - self._t(start),
            "gap": bool(len(span) > 1 and np.diff(span.t_s).max() * self.rate_hz
                        > self.params.gap_fill_max_samples + 1.5),
        }
        if self._rep is None:
            self._classify_at_rest(start, end, settled, info)
        else:
            self._classify_in_hold(start, end, settled, info)

    def _classify_at_rest(self, start: int, end: int, settled: bool, info: dict) -> None:
        p = self.params
        if settled and self._is_lift(info):
            lift_start = self._refine_start(start, end)
            hold_start = self._refine_end(start, end)
            self._rep = _RepState(
                index=len(self.reps) + 1, lift_start_i=lift_start, hold_start_i=hold_start,
                lift_start_s=self._t(lift_start), hold_start_s=self._t(hold_start),
                rise_cm=info["net_cm"], hold_angle_deg=info["angle_after"],
                first_sag_tick_s=self._t(hold_start) + p.settle_s + _SAG_MIN_WINDOW_S,
            )
            self._rep.extra["lift_rise_cm"] = round(info["net_cm"], 2)
            self._rep.extra["lift_peak_motion_dps"] = round(info["peak_motion_dps"], 1)
            self._rep.hinge_axis = _principal_axis(self._buf.view(start, end).gyr_dps)
            self._emit("lift_start", lift_start)
            self._emit("hold_start", hold_start)
            return
        if self._went_up_and_back(info, settled) and info["duration_s"] >= p.aborted_min_s:
            self._aborted_rep(self._refine_start(start, end), self._refine_end(start, end) if settled else end - 1)
        elif settled and self.placement == "ankle" and info["net_cm"] <= -p.lift_rise_min_cm:
            # came down from a height it rose to too slowly to be seen as motion: a lift that was
            # not held (its start is unknown; the rep starts where the descent does)
            self._aborted_rep(self._refine_start(start, end), self._refine_end(start, end),
                              {"rise_unseen": True})

    def _went_up_and_back(self, info: dict, settled: bool) -> bool:
        """The episode rose like a lift (height; for the thigh also the angle) and ended at most
        half as high."""
        p = self.params
        rise_deg = info["angle_max"] - info["angle_before"]
        by_angle = self.placement == "thigh" and rise_deg >= p.lift_angle_min_deg and (
            not settled or info["angle_after"] - info["angle_before"] < 0.5 * rise_deg)
        by_height = settled and info["max_cm"] >= p.lift_rise_min_cm and info["net_cm"] < 0.5 * info["max_cm"]
        return by_angle or by_height

    def _is_lift(self, info: dict) -> bool:
        """Settled higher, near the highest point of the motion (thigh: at a lift angle, and higher).
        A long motion that went much higher than where it settled is an aborted rep: its small net
        rise is within the integration drift."""
        p = self.params
        near_top = info["net_cm"] >= 0.5 * info["max_cm"]
        if self.placement == "thigh":
            return (info["angle_after"] >= p.lift_angle_min_deg
                    and info["net_cm"] >= 0.5 * p.lift_rise_min_cm and near_top)
        return info["net_cm"] >= p.lift_rise_min_cm and near_top

    def _classify_in_hold(self, start: int, end: int, settled: bool, info: dict) -> None:
        p = self.params
        rep = self._rep
        if not settled:
            self._end_hold(self._refine_start(start, end), None, balance_loss=False, reason="recording_end")
            return
        off_plane_deg = _off_plane_excursion_deg(self._buf.view(start, end), rep.hinge_axis)
        big_excursion = off_plane_deg >= p.balance_loss_off_plane_deg
        if self._is_lowering(info):
            rep.extra["lowering_drop_cm"] = round(-info["net_cm"], 2)
            rep.extra["lowering_off_plane_deg"] = round(off_plane_deg, 2)
            self._end_hold(self._refine_start(start, end), self._refine_end(start, end), big_excursion, "lowered")
            return
        rep.corrections += 1
        rep.corrections_s.append((self._t(self._refine_start(start, end)), self._t(self._refine_end(start, end))))
        if info["duration_s"] > p.correction_max_s:
            rep.long_corrections += 1
        rep.balance_loss |= big_excursion

    def _is_lowering(self, info: dict) -> bool:
        p = self.params
        rep = self._rep
        # across a data gap the end displacement is unreliable: the lowest point counts as well
        drop_cm = -min(info["net_cm"], info["min_cm"]) if info["gap"] else -info["net_cm"]
        dropped_cm = drop_cm >= p.lower_fraction * max(rep.rise_cm, p.lift_rise_min_cm)
        if self.placement == "thigh":
            fell_deg = rep.hold_angle_deg - info["angle_after"]
            return fell_deg >= p.lower_fraction * max(rep.hold_angle_deg, p.lift_angle_min_deg)
        return dropped_cm

    # ----- boundary refinement ------------------------------------------------------------
    def _refine_start(self, start: int, end: int) -> int:
        """Where the motion of episode [start, end) began: the last sample at or below
        edge_threshold_dps before the edge signal first exceeds moving_threshold_dps (the main
        movement), looking back up to a second. Without such a peak: the first sample above the
        edge threshold."""
        p = self.params
        lo = max(start - self._lookback_n, self._buf.base)
        edges = self._buf.view(lo, end).edges
        offset = start - lo
        big = np.flatnonzero(edges[offset:] > p.moving_threshold_dps)
        if big.size:
            quiet = np.flatnonzero(edges[:offset + big[0]] <= p.edge_threshold_dps)
            first_moving = lo + int(quiet[-1]) + 1 if quiet.size else lo
        else:
            above = np.flatnonzero(edges[offset:] > p.edge_threshold_dps)
            first_moving = start + int(above[0]) if above.size else start
        return max(first_moving - self.index_delay, self._buf.base)

    def _refine_end(self, start: int, end: int) -> int:
        """Where the motion of episode [start, end) ended: the first sample at or below
        edge_threshold_dps after the edge signal last exceeded moving_threshold_dps (later small
        wiggles are sway), looking up to still_min_s past `end`. Without such a peak: after the
        last sample above the edge threshold."""
        p = self.params
        edges = self._buf.view(start, end + self._still_min_n).edges
        inside = edges[:end - start]
        big = np.flatnonzero(inside > p.moving_threshold_dps)
        if big.size:
            quiet = np.flatnonzero(edges[big[-1]:] <= p.edge_threshold_dps)
            settled = start + int(big[-1]) + int(quiet[0]) if quiet.size else end
        else:
            above = np.flatnonzero(inside > p.edge_threshold_dps)
            settled = start + int(above[-1]) + 1 if above.size else end
        return max(settled - self.index_delay, self._buf.base)

    # ----- reps ---------------------------------------------------------------------------
    def _hold_ticks(self, until: int) -> None:
        """Timed hold events (target, goal, sagging) whose time is covered by samples < until.

        While a motion episode is open (a correction or the lowering, not yet told apart) only time
        up to its start counts, so a hold that is ending gets no cues.
        """
        rep = self._rep
        if self._episode_start is not None:
            until = min(until, self._episode_start + 1)
        if rep is None or until <= rep.hold_start_i or not self._buf.started:
            return
        p = self.params
        t_last = self._t(until - 1)
        hold_start_s = rep.hold_start_s
        already = len(self._events)
        if not rep.target_emitted and t_last >= hold_start_s + p.target_hold_s:
            rep.target_emitted = True
            self._events.append(Event("target_reached", hold_start_s + p.target_hold_s,
                                      message=f"{p.target_hold_s:g} s reached"))
        if not rep.goal_emitted and t_last >= hold_start_s + p.goal_hold_s:
            rep.goal_emitted = True
            self._events.append(Event("goal_reached", hold_start_s + p.goal_hold_s,
                                      message=f"{p.goal_hold_s:g} s goal reached"))
            self._events.append(Event("lower_now", hold_start_s + p.goal_hold_s, message="lower now"))
        if not rep.sag_emitted and t_last >= rep.first_sag_tick_s + rep.sag_ticks_done * _SAG_TICK_S:
            self._sag_ticks(rep, until, t_last, hold_start_s + p.settle_s)
        self._events[already:] = sorted(self._events[already:], key=lambda e: e.t_s)  # time order

    def _sag_ticks(self, rep: "_RepState", until: int, t_last: float, window_start_s: float) -> None:
        """Every _SAG_TICK_S, the slope of the angle since the settled hold began; 'sagging' once
        it sags (metrics.is_sagging). Vectorised over all ticks up to t_last."""
        first = rep.sag_ticks_done
        last = int(math.floor((t_last - rep.first_sag_tick_s) / _SAG_TICK_S))
        ticks_s = rep.first_sag_tick_s + _SAG_TICK_S * np.arange(first, last + 1)
        ticks_s = ticks_s[ticks_s <= t_last]
        if ticks_s.size == 0:
            return
        rep.sag_ticks_done = first + ticks_s.size
        window = self._buf.view(rep.hold_start_i, until)
        settled = window.t_s >= window_start_s
        t = window.t_s[settled]
        if t.size < 3:
            return
        tc = t - t[0]
        x = window.angle_deg[settled]
        count = np.searchsorted(t, ticks_s, side="right")
        k = np.maximum(count, 1) - 1
        s_t, s_tt = np.cumsum(tc)[k], np.cumsum(tc * tc)[k]
        s_x, s_tx = np.cumsum(x)[k], np.cumsum(tc * x)[k]
        den = count * s_tt - s_t ** 2
        with np.errstate(divide="ignore", invalid="ignore"):
            slope = np.where((count >= 3) & (den > 0), (count * s_tx - s_t * s_x) / den, 0.0)
        sagging = np.flatnonzero([is_sagging(x, self.placement, self.params) for x in slope])
        if sagging.size:
            rep.sag_emitted = True
            self._events.append(Event("sagging", float(ticks_s[sagging[0]]), message="leg sagging"))

    def _end_hold(self, hold_end_i: int, lower_end_i: int | None, balance_loss: bool, reason: str) -> None:
        rep = self._rep
        self._rep = None
        hold_end_i = max(hold_end_i, rep.hold_start_i)
        rep.extra["hold_end_reason"] = reason
        rep.extra["long_corrections"] = rep.long_corrections
        result = self._make_rep(rep, hold_end_i, lower_end_i, balance_loss or rep.balance_loss)
        self.reps.append(result)
        self._emit("hold_end", hold_end_i)
        self._events.append(Event("rep_done", result.lower_end_s if result.lower_end_s is not None
                                  else result.hold_end_s, rep=result))

    def _make_rep(self, rep: _RepState, hold_end_i: int, lower_end_i: int | None,
                  balance_loss: bool) -> Rep:
        p = self.params
        span = self._buf.view(rep.lift_start_i, hold_end_i + 1)
        hold_start_s = rep.hold_start_s
        hold_end_s = self._t(hold_end_i)
        duration_s = hold_end_s - hold_start_s
        metrics = hold_metrics(span.t_s, span.angle_deg, span.gyr_dps, hold_start_s, hold_end_s,
                               self.rate_hz, p, rep.corrections_s)
        flags = rep_flags(duration_s, metrics, rep.corrections, False, balance_loss, p, self.placement)
        return Rep(
            index=rep.index,
            lift_start_s=rep.lift_start_s,
            hold_start_s=hold_start_s,
            hold_end_s=hold_end_s,
            lower_end_s=None if lower_end_i is None else self._t(lower_end_i),
            hold_duration_s=duration_s,
            peak_angle_deg=metrics.peak_angle_deg,
            hold_angle_mean_deg=metrics.hold_angle_mean_deg,
            sway_sd_deg=metrics.sway_sd_deg,
            sway_range_deg=metrics.sway_range_deg,
            sag_deg_per_s=metrics.sag_deg_per_s,
            mean_speed_dps=metrics.mean_speed_dps,
            tremor_rms_dps=metrics.tremor_rms_dps,
            tremor_growth=metrics.tremor_growth,
            corrections=rep.corrections,
            target_met=duration_s >= p.target_hold_s,
            flags=flags,
            extra=dict(rep.extra),
        )

    def _aborted_rep(self, start: int, end: int, extra: dict[str, object] | None = None) -> None:
        span = self._buf.view(start, end + 1)
        rep = Rep(
            index=len(self.reps) + 1, lift_start_s=self._t(start), hold_start_s=None, hold_end_s=None,
            lower_end_s=self._t(end), hold_duration_s=0.0,
            peak_angle_deg=float(span.angle_deg.max()) if len(span) else None,
            hold_angle_mean_deg=None, sway_sd_deg=None, sway_range_deg=None, sag_deg_per_s=None,
            mean_speed_dps=None, tremor_rms_dps=None, tremor_growth=None, corrections=0,
            target_met=False, flags=["aborted"], extra=dict(extra or {}),
        )
        self.reps.append(rep)
        self._events.append(Event("rep_aborted", rep.lift_start_s, rep=rep, message="lift not held"))

    def _emit(self, kind: str, index: int) -> None:
        self._events.append(Event(kind, self._t(index)))
