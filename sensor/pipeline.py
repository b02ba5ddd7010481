"""The one analysis pipeline, for recordings (`analyze`) and for live streams (`LivePipeline`).

samples -> short-gap fill -> orientation (offlineVQF in replay, VQF live) -> "up" in the sensor frame
and earth-frame linear acceleration -> motion score (gyro and linear acceleration, low-passed:
zero-phase in replay, causal live) -> standing reference (mean "up" over the first still second, or a
calibration window) -> lift angle -> phase tracker (rest/lift/hold/lower, per-hold metrics).

Pure code: no files, no terminals, no Bluetooth.
"""

from __future__ import annotations

import math
from array import array
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from sensor.analysis.ankle import LiveRepExtras, add_rep_extras, ankle_params_from
from sensor.analysis.phases import PHASE_CODES, Event, Features, PhaseTracker
from sensor.config import STANDARD_GRAVITY_MPS2, AnalysisParams
from sensor.dsp.filters import StreamingSOS, filtfilt, lowpass_sos
from sensor.dsp.orientation import (StreamingOrientation, inclination_deg, offline_orientation, to_earth,
                                    up_in_sensor)
from sensor.dsp.timebase import continues_without_gap, fill_short_gaps, find_gaps, nominal_rate_hz
from sensor.errors import DataError
from sensor.types import DataIssue, Gap, Placement, RecordingMeta, Rep, Samples

__all__ = ["Event", "LivePipeline", "LiveState", "SessionResult", "Trace", "analyze"]

REPLAY_FORMAT = "holdmon.replay/1"
_MOTION_FILTER_ORDER = 2
_LIVE_REFERENCE_MAX_WAIT_S = 30.0
_BLOCK = 65536
_FLOAT_PATH_MAX_SAMPLES = 64
"""A live block of at most this many samples (a notification's few) is checked for gaps in plain floats;
larger ones, and blocks after a gap, take the vectorised path (find_gaps, _bridged)."""


class RecordingLike(Protocol):
    """What `analyze` needs from a recording (sensor.recording.Recording has it)."""

    path: str
    meta: RecordingMeta
    samples: Samples
    issues: list[DataIssue]
    gaps: list[Gap]


@dataclass(frozen=True)
class Trace:
    """Per-sample (replay) or decimated (live) angle trace for plots; phase codes from PHASE_CODES."""

    t_s: np.ndarray
    angle_deg: np.ndarray
    phase: np.ndarray


@dataclass
class SessionResult:
    """Everything a session produced; `to_json()` is the "holdmon.replay/1" document."""

    path: str
    meta: RecordingMeta
    placement: Placement
    rate_hz: float
    samples: int
    duration_s: float
    gaps: list[Gap]
    reps: list[Rep]
    trace: Trace
    issues: list[DataIssue] = field(default_factory=list)
    reference: dict[str, object] = field(default_factory=dict)

    def summary(self) -> dict:
        holds = [r for r in self.reps if "aborted" not in r.flags]
        sways = [r.sway_sd_deg for r in holds if r.sway_sd_deg is not None]
        return {
            "reps": len(self.reps),
            "reps_target_met": sum(1 for r in self.reps if r.target_met),
            "mean_hold_s": _mean([r.hold_duration_s for r in holds]),
            "mean_sway_sd_deg": _mean(sways),
            "holds": len(holds),
            "aborted": len(self.reps) - len(holds),
        }

    def to_json(self) -> dict:
        meta = self.meta
        doc = {
            "format": REPLAY_FORMAT,
            "recording": {
                "path": self.path,
                "samples": self.samples,
                "duration_s": _num(self.duration_s),
                "rate_hz": _num(self.rate_hz),
                "placement": self.placement,
                "side": meta.side,
                "gaps": [g.to_json() for g in self.gaps],
                "device": meta.device,
                "profile": meta.profile,
                "stage": meta.stage,
                "load_kg": meta.load_kg,
            },
            "reps": [_clean(r.to_json()) for r in self.reps],
            "summary": _clean(self.summary()),
            "issues": [{"kind": i.kind, "message": i.message, "line": i.line, "count": i.count}
                       for i in self.issues],
            "reference": _clean(self.reference),
        }
        return doc


def _mean(values: list[float]) -> float | None:
    return float(np.mean(values)) if values else None


def _num(x: float | None) -> float | None:
    """JSON number: None for missing/NaN/inf, else rounded to 6 decimals (no float noise)."""
    return None if x is None or not math.isfinite(x) else round(float(x), 6)


def _clean(d: dict) -> dict:
    """NaN/inf -> None, numpy scalars -> Python, so json.dumps gives strict JSON."""
    out = {}
    for k, v in d.items():
        if isinstance(v, (float, np.floating)):
            out[k] = _num(float(v))
        elif isinstance(v, np.integer):
            out[k] = int(v)
        elif isinstance(v, np.bool_):
            out[k] = bool(v)
        elif isinstance(v, dict):
            out[k] = _clean(v)
        else:
            out[k] = v
    return out


# ----- shared stages ---------------------------------------------------------------------------
@dataclass(frozen=True)
class _Raw:
    """Per-sample signals before the standing reference is known."""

    t_s: np.ndarray            # (n,)
    up: np.ndarray             # (n, 3) earth up in sensor frame
    acc_up_mps2: np.ndarray    # (n,) earth-frame vertical specific force minus standard gravity
    gyr_lp_dps: np.ndarray     # (n, 3) low-passed gyro
    lin_lp_mps2: np.ndarray    # (n, 3) low-passed earth-frame linear acceleration
    gyr_dps: np.ndarray        # (n, 3)

    FIELDS = ("t_s", "up", "acc_up_mps2", "gyr_lp_dps", "lin_lp_mps2", "gyr_dps")

    def __len__(self) -> int:
        return int(self.t_s.shape[0])

    @staticmethod
    def concat(blocks: list["_Raw"]) -> "_Raw":
        return _Raw(*(np.concatenate([getattr(b, k) for b in blocks]) for k in _Raw.FIELDS))

    def select(self, keep: np.ndarray) -> "_Raw":
        return _Raw(*(getattr(self, k)[keep] for k in _Raw.FIELDS))


def _earth_signals(quat_wxyz: np.ndarray, samples: Samples) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """up (n,3), linear acceleration in the earth frame (n,3) m/s^2, gyro (n,3) deg/s."""
    up = up_in_sensor(quat_wxyz)
    lin = to_earth(quat_wxyz, samples.acc_mps2)
    lin[:, 2] -= STANDARD_GRAVITY_MPS2
    return up, lin, np.degrees(samples.gyr_radps)


def _bridged(samples: Samples, rate_hz: float, params: AnalysisParams) -> tuple[Samples, np.ndarray]:
    """Samples with gaps up to orientation_bridge_max_s interpolated, and a mask (n_bridged,) of the
    samples the analysis keeps (received ones plus fills of gaps up to gap_fill_max_samples)."""
    bridge_n = max(params.gap_fill_max_samples, int(round(params.orientation_bridge_max_s * rate_hz)))
    bridged = fill_short_gaps(samples, rate_hz, bridge_n)
    keep = np.ones(len(bridged), dtype=bool)
    if len(bridged) == len(samples):
        return bridged, keep
    gaps = find_gaps(samples.t_s, samples.seq, rate_hz)
    interval = np.searchsorted(samples.t_s, [g.start_s for g in gaps], side="right") - 1  # sample before
    missing = np.array([g.missing_samples for g in gaps], dtype=np.int64)
    filled = np.where(missing <= bridge_n, missing, 0)
    position = interval + np.concatenate(([0], np.cumsum(filled)[:-1]))  # bridged index of gap start
    for pos, m in zip(position[filled > params.gap_fill_max_samples],
                      filled[filled > params.gap_fill_max_samples]):
        keep[pos + 1:pos + 1 + m] = False
    return bridged, keep


def _motion_filters(params: AnalysisParams, rate_hz: float) -> tuple[np.ndarray, np.ndarray]:
    """Low-pass SOS for the gyro and for the linear acceleration of the motion score."""
    return (lowpass_sos(params.motion_gyro_lowpass_hz, rate_hz, order=_MOTION_FILTER_ORDER),
            lowpass_sos(params.motion_acc_lowpass_hz, rate_hz, order=_MOTION_FILTER_ORDER))


def _gyro_speed_dps(gyr_lp_dps: np.ndarray, gyr_bias_dps: np.ndarray) -> np.ndarray:
    """|low-passed gyro - bias| (n,) deg/s."""
    gyr = gyr_lp_dps - gyr_bias_dps
    return np.sqrt(np.einsum("ij,ij->i", gyr, gyr))


def _motion_dps(raw: "_Raw", gyr_bias_dps: np.ndarray, params: AnalysisParams,
                speed_dps: np.ndarray | None = None) -> np.ndarray:
    """Motion score (n,): |low-passed gyro - bias| + weight * |low-passed linear acceleration|."""
    lin = raw.lin_lp_mps2
    if speed_dps is None:
        speed_dps = _gyro_speed_dps(raw.gyr_lp_dps, gyr_bias_dps)
    return speed_dps + params.motion_acc_weight_dps_per_mps2 * np.sqrt(np.einsum("ij,ij->i", lin, lin))


def find_reference(raw: _Raw, rate_hz: float, params: AnalysisParams,
                   complete: bool) -> tuple[int, int] | None:
    """Sample range [i0, i1) of the standing reference.

    With a calibration window: the samples inside it (None until data passes its end unless complete).
    Otherwise the first `reference_still_s` of the first still run that long. When `complete` (all data
    seen) and there is no such run, the quietest window of that length (all of it when shorter).
    """
    n = len(raw)
    if params.calibration_window_s is not None:
        start_s, end_s = params.calibration_window_s
        if not complete and (n == 0 or raw.t_s[-1] < end_s):
            return None
        inside = np.flatnonzero((raw.t_s >= start_s) & (raw.t_s <= end_s))
        if inside.size == 0:
            raise DataError(f"calibration window {start_s}-{end_s} s holds no samples "
                            f"(data covers {raw.t_s[0]:.2f}-{raw.t_s[-1]:.2f} s)")
        return int(inside[0]), int(inside[-1]) + 1
    need = max(2, int(round(params.reference_still_s * rate_hz)))
    if n < need:  # all the data there will ever be is shorter than one window: use it all
        return (0, n) if complete and n > 0 else None
    prefix = max(_BLOCK, 2 * need)
    if prefix < n:  # the still run usually comes early: look there first (see _first_still_run)
        i0 = _first_still_run(_motion_dps(raw.select(slice(0, prefix)), np.zeros(3), params), need, params)
        if i0 is not None:
            return i0, i0 + need
    motion = _motion_dps(raw, np.zeros(3), params)
    i0 = _first_still_run(motion, need, params)
    if i0 is not None:
        return i0, i0 + need
    if not complete:
        return None
    window = np.convolve(motion, np.ones(need) / need, mode="valid")
    i0 = int(np.argmin(window))
    return i0, i0 + need


def _first_still_run(motion: np.ndarray, need: int, params: AnalysisParams) -> int | None:
    """Start of the first run of at least `need` samples with motion (n,) below the still threshold.

    On a prefix of the data it finds the same run as on all of it, or none: a run cut off by the
    prefix's end is its last one, and still counts when the part inside is long enough.
    """
    still = np.concatenate(([False], motion < params.still_threshold_dps, [False])).astype(np.int8)
    edges = np.diff(still)
    starts = np.flatnonzero(edges == 1)
    stops = np.flatnonzero(edges == -1)
    long_runs = np.flatnonzero(stops - starts >= need)
    return int(starts[long_runs[0]]) if long_runs.size else None


@dataclass(frozen=True)
class _Reference:
    up: np.ndarray
    gyr_bias_dps: np.ndarray
    acc_up_offset_mps2: float
    start_s: float
    end_s: float
    still: bool

    def to_json(self) -> dict:
        return {"start_s": self.start_s, "end_s": self.end_s, "up_sensor": [float(x) for x in self.up],
                "gyr_bias_dps": [float(x) for x in self.gyr_bias_dps], "from_still_period": self.still}


def _make_reference(raw: _Raw, span: tuple[int, int], params: AnalysisParams) -> _Reference:
    i0, i1 = span
    up = raw.up[i0:i1].mean(axis=0)
    motion = _motion_dps(raw.select(slice(i0, i1)), np.zeros(3), params)  # the reference's rows only
    return _Reference(
        up=up / np.linalg.norm(up),
        gyr_bias_dps=raw.gyr_dps[i0:i1].mean(axis=0),
        acc_up_offset_mps2=float(raw.acc_up_mps2[i0:i1].mean()),
        start_s=float(raw.t_s[i0]), end_s=float(raw.t_s[i1 - 1]),
        still=bool(np.all(motion < params.still_threshold_dps)),
    )


def _features(raw: _Raw, ref: _Reference, params: AnalysisParams) -> Features:
    speed_dps = _gyro_speed_dps(raw.gyr_lp_dps, ref.gyr_bias_dps)
    return Features(
        t_s=raw.t_s,
        motion_dps=_motion_dps(raw, ref.gyr_bias_dps, params, speed_dps),
        acc_up_mps2=raw.acc_up_mps2 - ref.acc_up_offset_mps2,
        angle_deg=_blockwise(inclination_deg, (raw.up,), ref.up),
        gyr_dps=raw.gyr_dps - ref.gyr_bias_dps,
        edge_dps=speed_dps,
    )


def _blockwise(fn, arrays: tuple[np.ndarray, ...], *args: object) -> np.ndarray:
    """fn(*(a[lo:hi] for a in arrays), *args) over blocks of _BLOCK rows, stacked: the same result as
    one call, with the helpers' temporaries kept small on long recordings."""
    n = arrays[0].shape[0]
    parts = [fn(*(a[lo:lo + _BLOCK] for a in arrays), *args) for lo in range(0, n, _BLOCK)]
    return np.concatenate(parts) if len(parts) != 1 else parts[0]


def _filtfilt_columns(sos: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Zero-phase filter each column of x (n, c) on its own (smaller temporaries than all at once)."""
    out = np.empty_like(x)
    for c in range(x.shape[1]):
        out[:, c] = filtfilt(sos, np.ascontiguousarray(x[:, c]))
    return out


def _replay_signals(samples: Samples, rate_hz: float, params: AnalysisParams) -> _Raw:
    """Orientation (offlineVQF over bridged gaps) and zero-phase motion signals of a whole recording.

    Memory matters for hour-long files: vector helpers run in blocks, filters per column, and each
    full-length intermediate is released as soon as it has been used.
    """
    bridged, keep = _bridged(samples, rate_hz, params)
    bridged = Samples(bridged.t_s, bridged.acc_mps2, bridged.gyr_radps)  # seq, mag not needed: freed
    kept = (lambda x: x) if keep.all() else (lambda x: np.compress(keep, x, axis=0))  # rows; faster than x[keep]
    quat = offline_orientation(bridged.gyr_radps, bridged.acc_mps2, rate_hz)
    up = kept(_blockwise(up_in_sensor, (quat,)))
    lin = _blockwise(to_earth, (quat, bridged.acc_mps2))
    del quat
    lin[:, 2] -= STANDARD_GRAVITY_MPS2
    gyr_sos, acc_sos = _motion_filters(params, rate_hz)
    acc_up = kept(lin[:, 2]).copy()
    lin_lp = kept(_filtfilt_columns(acc_sos, lin))  # filters run on the evenly sampled (bridged) series
    del lin
    t_s, gyr_dps = kept(bridged.t_s), np.degrees(bridged.gyr_radps)
    del bridged
    gyr_lp = kept(_filtfilt_columns(gyr_sos, gyr_dps))
    return _Raw(t_s, up, acc_up, gyr_lp, lin_lp, kept(gyr_dps))


def phase_codes(t_s: np.ndarray, reps: list[Rep]) -> np.ndarray:
    """Phase code (n,) int8 for each time from the reps' boundaries (rest elsewhere)."""
    codes = np.full(t_s.shape[0], PHASE_CODES["rest"], dtype=np.int8)
    for rep in reps:
        marks = [rep.lift_start_s, rep.hold_start_s, rep.hold_end_s, rep.lower_end_s]
        if rep.hold_start_s is None:  # aborted: lift until it came down
            spans = [(rep.lift_start_s, rep.lower_end_s, "lift")]
        else:
            spans = [(marks[0], marks[1], "lift"), (marks[1], marks[2], "hold"), (marks[2], marks[3], "lower")]
        for start_s, end_s, name in spans:
            if start_s is None or end_s is None:
                continue
            lo, hi = np.searchsorted(t_s, [start_s, end_s], side="left")
            codes[lo:hi] = PHASE_CODES[name]
    return codes


def _placement(meta: RecordingMeta, params: AnalysisParams) -> Placement:
    return params.placement or meta.placement or "ankle"


# ----- replay -----------------------------------------------------------------------------------
def analyze(recording: RecordingLike, params: AnalysisParams) -> SessionResult:
    """Analyse a whole recording (acausal orientation and zero-phase filters)."""
    samples = recording.samples
    meta = recording.meta
    if len(samples) < 2:
        raise DataError(f"{recording.path}: {len(samples)} samples is too few to analyse")
    rate_hz = float(meta.rate_hz) if meta.rate_hz else nominal_rate_hz(samples.t_s)
    gaps = list(recording.gaps) if recording.gaps is not None else find_gaps(samples.t_s, samples.seq, rate_hz)
    raw = _replay_signals(samples, rate_hz, params)
    span = find_reference(raw, rate_hz, params, complete=True)
    ref = _make_reference(raw, span, params)
    features = _features(raw, ref, params)
    del raw
    if params.angle_lowpass_hz:
        angle_sos = lowpass_sos(params.angle_lowpass_hz, rate_hz)
        features = Features(features.t_s, features.motion_dps, features.acc_up_mps2,
                            filtfilt(angle_sos, features.angle_deg), features.gyr_dps, features.edge_dps)
    placement = _placement(meta, params)
    tracker = PhaseTracker(params, placement, rate_hz)
    tracker.feed(features)
    tracker.finish()
    reps = tracker.reps
    t_s, angle_deg = features.t_s, features.angle_deg
    del tracker, features  # the other full-length features (the tracker's buffer holds views of them)
    received = fill_short_gaps(samples, rate_hz, params.gap_fill_max_samples)
    add_rep_extras(reps, placement, received.t_s, received.acc_mps2, received.gyr_radps,
                   t_s, angle_deg, ankle_params_from(params))
    del received
    issues = list(recording.issues or [])
    if not ref.still:
        issues.append(DataIssue("no_still_reference",
                                f"no still period of {params.reference_still_s:g} s; standing reference "
                                f"taken from the quietest window {ref.start_s:.2f}-{ref.end_s:.2f} s"))
    trace = Trace(t_s, angle_deg, phase_codes(t_s, reps))
    return SessionResult(
        path=str(recording.path), meta=meta, placement=placement, rate_hz=rate_hz, samples=len(samples),
        duration_s=float(samples.t_s[-1] - samples.t_s[0]), gaps=gaps, reps=reps, trace=trace,
        issues=issues, reference=ref.to_json(),
    )


# ----- live -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LiveState:
    """What a live view shows. cue: 'rest', 'lift', 'hold', '10 s reached', 'leg sagging', 'lower now'."""

    t_s: float | None
    angle_deg: float | None
    phase: str
    hold_elapsed_s: float
    reps_done: int
    last_rep: Rep | None
    cue: str
    calibrated: bool
    samples: int
    gaps: int


def _group_delay_samples(sos: np.ndarray) -> int:
    """Low-frequency group delay of a causal SOS filter, in whole samples."""
    from scipy import signal  # imported on first use, see sensor.dsp.filters

    b, a = signal.sos2tf(sos)
    _, delay = signal.group_delay((b, a), w=[1e-3])
    return int(round(float(delay[0])))


class LivePipeline:
    """Streaming analysis: causal orientation and filters, the same phase tracker as replay.

    Memory stays bounded: the tracker keeps only what the current rep needs, and the trace is
    decimated to `live_trace_rate_hz`.
    """

    def __init__(self, meta: RecordingMeta, params: AnalysisParams, rate_hz: float) -> None:
        self.meta = meta
        self.params = params
        self.rate_hz = float(rate_hz)
        self.placement = _placement(meta, params)
        gyr_sos, acc_sos = _motion_filters(params, rate_hz)
        self._orientation = StreamingOrientation(rate_hz)
        self._gyr_lowpass = StreamingSOS(gyr_sos, 3)
        self._acc_lowpass = StreamingSOS(acc_sos, 3)
        # motion boundaries are placed on the low-passed gyro: move them back by its delay
        self._tracker = PhaseTracker(params, self.placement, rate_hz,
                                     index_delay=_group_delay_samples(gyr_sos))
        self._pending: list[_Raw] = []
        self._reference: _Reference | None = None
        self._last: Samples | None = None
        self._first_t_s: float | None = None
        self._samples = 0
        self._gaps: list[Gap] = []
        self._long_gaps = 0
        self._trace_every = max(1, int(round(rate_hz / params.live_trace_rate_hz)))
        self._trace_phase = 0
        self._trace_t_s = array("d")  # compact, and appending a sample or two per block stays cheap
        self._trace_angle_deg = array("d")
        self._angle_deg: float | None = None
        self._t_s: float | None = None
        self._issues: list[DataIssue] = []
        self._ankle = LiveRepExtras(self.placement, ankle_params_from(params), params.max_rep_buffer_s)

    def feed(self, samples: Samples) -> list[Event]:
        """Process the next block of samples (SI units); returns the events it completed."""
        if len(samples) == 0:
            return []
        if self._first_t_s is None:
            self._first_t_s = float(samples.t_s[0])
        self._samples += len(samples)
        events, filled, keep = self._fill_gaps(samples)
        if keep is None:
            self._ankle.append_samples(filled.t_s, filled.acc_mps2, filled.gyr_radps)
        else:
            self._ankle.append_samples(filled.t_s[keep], filled.acc_mps2[keep], filled.gyr_radps[keep])
        quat = self._orientation.update(filled.gyr_radps, filled.acc_mps2)
        up, lin, gyr_dps = _earth_signals(quat, filled)
        raw = _Raw(filled.t_s, up, lin[:, 2], self._gyr_lowpass.process(gyr_dps),
                   self._acc_lowpass.process(lin), gyr_dps)
        if keep is not None and not keep.all():
            raw = raw.select(keep)
        if self._reference is None:
            self._pending.append(raw)
            events += self._try_reference()
        else:
            events += self._track(_features(raw, self._reference, self.params))
        self._t_s = float(filled.t_s[-1])
        self._ankle.update(self._tracker.reps)
        return events

    def _fill_gaps(self, samples: Samples) -> tuple[list[Event], Samples, np.ndarray | None]:
        """Gaps (also across blocks) bridged as in replay, with the mask of samples kept (None: all, the
        block continues the last one without a gap); long gaps recorded and reported as events."""
        last, self._last = self._last, samples
        if last is None:
            return ([], *_bridged(samples, self.rate_hz, self.params))
        with_seq = last.seq is not None and samples.seq is not None
        if len(samples) <= _FLOAT_PATH_MAX_SAMPLES and continues_without_gap(
                float(last.t_s[-1]), int(last.seq[-1]) if with_seq else None, samples.t_s,
                samples.seq if with_seq else None, self.rate_hz):
            return [], samples, None
        last = last.slice(len(last) - 1, len(last))
        if (last.seq is None) != (samples.seq is None):
            last = Samples(last.t_s, last.acc_mps2, last.gyr_radps)
            samples = Samples(samples.t_s, samples.acc_mps2, samples.gyr_radps)
        joined = Samples.concat([last, samples])
        gaps = find_gaps(joined.t_s, joined.seq, self.rate_hz)
        self._gaps.extend(gaps)
        events = [Event("gap", g.start_s, message=f"{g.missing_samples} samples missing")
                  for g in gaps if g.missing_samples > self.params.gap_fill_max_samples]
        self._long_gaps += len(events)
        bridged, keep = _bridged(joined, self.rate_hz, self.params)
        return events, bridged.slice(1, len(bridged)), keep[1:]

    def _try_reference(self) -> list[Event]:
        raw = _Raw.concat(self._pending) if len(self._pending) > 1 else self._pending[0]
        self._pending = [raw]
        waited_s = float(raw.t_s[-1] - raw.t_s[0])
        span = find_reference(raw, self.rate_hz, self.params,
                              complete=waited_s >= _LIVE_REFERENCE_MAX_WAIT_S)
        if span is None:
            return []
        self._reference = _make_reference(raw, span, self.params)
        if not self._reference.still:
            self._issues.append(DataIssue("no_still_reference",
                                          f"no still period within {_LIVE_REFERENCE_MAX_WAIT_S:g} s; "
                                          "standing reference taken from the quietest window"))
        self._pending = []
        return self._track(_features(raw, self._reference, self.params))

    def _track(self, features: Features) -> list[Event]:
        self._ankle.append_angle(features.t_s, features.angle_deg)
        events = self._tracker.feed(features)
        self._angle_deg = float(features.angle_deg[-1])
        first = (-self._trace_phase) % self._trace_every
        self._trace_phase = (self._trace_phase + len(features)) % self._trace_every
        if first < len(features):
            idx = slice(first, None, self._trace_every)
            self._trace_t_s.extend(features.t_s[idx].tolist())
            self._trace_angle_deg.extend(features.angle_deg[idx].tolist())
        return events

    @property
    def state(self) -> LiveState:
        tracker = self._tracker
        phase = tracker.phase
        elapsed_s = tracker.hold_elapsed_s() if phase == "hold" else 0.0
        p = self.params
        if phase != "hold":
            cue = phase
        elif elapsed_s >= p.goal_hold_s:
            cue = "lower now"
        elif tracker.hold_sagging():
            cue = "leg sagging"
        elif elapsed_s >= p.target_hold_s:
            cue = f"{p.target_hold_s:g} s reached"
        else:
            cue = "hold"
        return LiveState(
            t_s=self._t_s, angle_deg=self._angle_deg, phase=phase, hold_elapsed_s=elapsed_s,
            reps_done=len(tracker.reps), last_rep=tracker.reps[-1] if tracker.reps else None, cue=cue,
            calibrated=self._reference is not None, samples=self._samples,
            gaps=self._long_gaps,
        )

    def finish(self, path: str = "") -> SessionResult:
        """End of stream: close the open rep and return the session's result (decimated trace)."""
        if self._reference is None and self._pending:
            raw = _Raw.concat(self._pending)
            span = find_reference(raw, self.rate_hz, self.params, complete=True)
            if span is not None:
                self._reference = _make_reference(raw, span, self.params)
                self._pending = []
                self._track(_features(raw, self._reference, self.params))
        self._tracker.finish()
        self._ankle.update(self._tracker.reps)
        reps = self._tracker.reps
        t = np.array(self._trace_t_s, dtype=np.float64)
        angle = np.array(self._trace_angle_deg, dtype=np.float64)
        duration_s = 0.0 if self._first_t_s is None else float(self._t_s - self._first_t_s)
        return SessionResult(
            path=path, meta=self.meta, placement=self.placement, rate_hz=self.rate_hz,
            samples=self._samples, duration_s=duration_s, gaps=list(self._gaps), reps=list(reps),
            trace=Trace(t, angle, phase_codes(t, reps)), issues=list(self._issues),
            reference={} if self._reference is None else self._reference.to_json(),
        )
