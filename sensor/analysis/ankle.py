"""Ankle rise, forward displacement and hip flexion of one rep from a single shank (ankle) sensor.

Pure code, no IO. `estimate_ankle_motion(...)` works on one rep: the standing still phase before the
lift, the lift (about a second) and the start of the hold. It returns an `AnkleEstimate`, or an
`AnkleRefusal` with the reason when the rep cannot be measured. `estimate_ankle_motions(...)` does the
same for all reps of a recording in one go (the filter steps through every rep at once; same results).
`add_rep_extras` (replay) and `LiveRepExtras` (live) put the results into each rep's JSON keys.

Displacement (method "eskf", the default)
-----------------------------------------
Strap-down integration in an earth frame (z up, heading fixed by the first standing sample) of the
accelerometer with gravity removed and the gyroscope (bias taken from the standing phase), then an
error-state Kalman filter over the short window, followed by a Rauch-Tung-Striebel backward smoother.
Error states (15): position, velocity, attitude error (tilt and heading, earth frame), gyro bias and
accelerometer bias. Measurements: zero velocity, zero angular rate and the gravity direction while
standing; zero velocity with a noise that reflects the leg's sway during the hold. The filter runs on
the error states only (open loop around the strap-down trajectory, which stays within the small-angle
range over a few seconds), at `kf_rate_hz`: the transition of the error states over each block of
samples is integrated from the strap-down signals with cumulative sums, so the rate of the Kalman loop
does not limit the strap-down accuracy. Data faster than `imu_rate_max_hz` is block-averaged first.
Window: up to `rest_use_s` of standing before the lift, the lift, and the hold up to the end of the
averaging window; the hold's zero-velocity updates start `hold_zupt_delay_s` after its start.

Method "naive" (kept for comparison): the given orientation (offlineVQF), earth-frame acceleration
minus its standing mean, velocity pinned to zero at the end of the standing phase and a linear
velocity de-drift so that it is zero again when the hold starts.

Geometry and assumptions
------------------------
- Standing, the shank and the thigh are vertical, the ankle bone straight below the knee and the hip.
- The hip stays where it was (hip height constant; the stance leg does not bend); the lift is a
  rotation in a sagittal plane.
- The sensor sits `sensor_above_ankle_cm` above the ankle bone on the shank's long axis; its
  sideways offset from that axis is ignored (sagittal rotations do not move it).
- Sagittal ("forward") direction: the horizontal direction of the knee's displacement relative to the
  hip, i.e. of the thigh at the hold (it is never near zero in a knee lift, unlike the shank's tilt).
- Shank direction at the hold: the standing shank axis (vertical) carried along by the sensor's
  measured rotation from standing to the hold.
- Knee = ankle bone + shank length along that direction; thigh = knee - hip; hip flexion = the angle
  between the thigh and straight down (the least-squares angle when |thigh| differs from its length).
  A knee farther from the hip than the thigh length plus `max_thigh_excess_cm` has no solution.
- Lengths: `shank_length_cm` / `thigh_length_cm`, else from the height with Winter's ratios (shank,
  knee to ankle, 0.246 x height; thigh, hip to knee, 0.245 x height), else from `default_height_cm`.

Uncertainty: the smoother's joint covariance of position and attitude at the end of the standing phase
and in the hold, the lengths (`length_sd_cm` each) and the standing-pose assumption
(`standing_pose_sd_deg` for the shank and the thigh) propagated through the geometry by finite
differences (first order).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, replace

import numpy as np

from sensor.dsp import as_array
from sensor.errors import ConfigError, DataError

SHANK_HEIGHT_RATIO = 0.246
THIGH_HEIGHT_RATIO = 0.245
_N_STATES = 15
_P, _V, _A, _BG, _BA = (slice(0, 3), slice(3, 6), slice(6, 9), slice(9, 12), slice(12, 15))
_EYE3 = np.eye(3)


@dataclass(frozen=True)
class AnkleParams:
    """Parameters of the ankle estimator (lengths in cm, times in s, noise as 1-sigma)."""

    method: str = "eskf"                  # "eskf" | "naive"
    sensor_above_ankle_cm: float = 8.0
    shank_length_cm: float | None = None
    thigh_length_cm: float | None = None
    height_cm: float | None = None
    default_height_cm: float = 175.0
    length_sd_cm: float = 2.0
    standing_pose_sd_deg: float = 2.0
    max_thigh_excess_cm: float = 8.0
    # windows
    settle_s: float = 1.0
    average_s: float = 0.5
    min_rest_s: float = 0.3
    rest_use_s: float = 1.5               # standing samples used before the lift (at most)
    max_lift_s: float = 4.0
    hold_zupt_delay_s: float = 0.2        # the hold's zero-velocity updates start this late
    hold_use_s: float | None = None       # hold samples used; None: settle_s + average_s
    max_gap_s: float = 0.15
    rest_max_gyr_dps: float = 6.0         # standing phase: every |gyro - mean| below this
    # filter
    kf_rate_hz: float = 5.0
    imu_rate_max_hz: float = 50.0         # faster data is block-averaged down to this for the filter
    acc_noise_mps2_per_rthz: float = 0.01
    acc_scale_sd: float = 0.01
    gyr_noise_radps_per_rthz: float = 0.002
    gyr_scale_sd: float = 0.01
    init_tilt_sd_deg: float = 0.5
    init_gyr_bias_sd_dps: float = 0.2
    init_acc_bias_sd_mps2: float = 0.2    # consumer MEMS zero-g offsets reach tens of mg
    rest_zupt_sd_mps: float = 0.005
    rest_zaru_sd_dps: float = 0.3
    rest_gravity_sd_mps2: float = 0.05
    hold_zupt_sd_mps: float = 0.05

    def __post_init__(self) -> None:
        if self.method not in ("eskf", "naive"):
            raise ConfigError(f"ankle method must be 'eskf' or 'naive', got {self.method!r}")
        for name in ("shank_length_cm", "thigh_length_cm", "height_cm"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ConfigError(f"{name} must be > 0, got {value!r}")
        for name in ("settle_s", "average_s", "min_rest_s", "rest_use_s", "max_lift_s", "kf_rate_hz",
                     "default_height_cm", "max_gap_s"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"{name} must be > 0, got {getattr(self, name)!r}")
        if self.sensor_above_ankle_cm < 0:
            raise ConfigError(f"sensor_above_ankle_cm must be >= 0, got {self.sensor_above_ankle_cm}")

    def lengths_m(self) -> tuple[float, float]:
        """(shank, thigh) in metres from the given lengths, the height or the default height."""
        height_cm = self.height_cm if self.height_cm is not None else self.default_height_cm
        shank_cm = self.shank_length_cm
        thigh_cm = self.thigh_length_cm
        if shank_cm is None:
            shank_cm = SHANK_HEIGHT_RATIO * height_cm if thigh_cm is None or self.height_cm is not None \
                else thigh_cm * SHANK_HEIGHT_RATIO / THIGH_HEIGHT_RATIO
        if thigh_cm is None:
            thigh_cm = THIGH_HEIGHT_RATIO * height_cm if self.shank_length_cm is None or self.height_cm is not None \
                else shank_cm * THIGH_HEIGHT_RATIO / SHANK_HEIGHT_RATIO
        return shank_cm / 100.0, thigh_cm / 100.0

    def with_overrides(self, **overrides: object) -> "AnkleParams":
        """A copy with the given fields replaced (None values are ignored)."""
        return replace(self, **{k: v for k, v in overrides.items() if v is not None})


@dataclass(frozen=True)
class AnkleEstimate:
    """One rep's estimate, averaged over [hold_start + settle_s, + average_s].

    ankle_rise_cm: vertical displacement of the ankle bone from standing. ankle_forward_cm: its
    horizontal displacement along the sagittal (forward) direction. ankle_lateral_cm: the horizontal
    rest (left of forward positive). shank_tilt_deg: angle of the shank from vertical; positive when
    the ankle is in front of the knee. hip_flexion_deg: angle of the thigh from straight down.
    knee_flexion_deg = hip flexion - shank tilt. thigh_length_fit_cm: |knee - hip| found (a check on
    the geometry; the model has the thigh length). Uncertainties are 1-sigma.
    """

    ankle_rise_cm: float
    ankle_forward_cm: float
    ankle_lateral_cm: float
    shank_tilt_deg: float
    hip_flexion_deg: float
    knee_flexion_deg: float
    hip_flexion_uncertainty_deg: float | None
    ankle_rise_uncertainty_cm: float | None
    thigh_length_fit_cm: float
    method: str
    window_s: tuple[float, float]

    def to_extra(self) -> dict[str, object]:
        """The per-rep keys for the replay JSON."""
        return {
            "ankle_rise_cm": _round_or_none(self.ankle_rise_cm, 2),
            "ankle_forward_cm": _round_or_none(self.ankle_forward_cm, 2),
            "hip_flexion_deg": _round_or_none(self.hip_flexion_deg, 2),
            "hip_flexion_uncertainty_deg": _round_or_none(self.hip_flexion_uncertainty_deg, 2),
        }


@dataclass(frozen=True)
class AnkleRefusal:
    """The rep cannot be measured; `reason` says why (one line for users)."""

    reason: str


def _round_or_none(x: float | None, digits: int) -> float | None:
    return None if x is None or not math.isfinite(x) else round(float(x), digits)


def empty_extra(reason: str | None = None) -> dict[str, object]:
    """The per-rep JSON keys when nothing could be measured."""
    extra: dict[str, object] = dict.fromkeys(
        ("ankle_rise_cm", "ankle_forward_cm", "hip_flexion_deg", "hip_flexion_uncertainty_deg"))
    if reason:
        extra["ankle_note"] = reason
    return extra


# ----- small rotation helpers -------------------------------------------------------------------
def _skew(v: np.ndarray) -> np.ndarray:
    """Cross-product matrices (..., 3, 3) of vectors (..., 3)."""
    out = np.zeros(v.shape[:-1] + (3, 3))
    out[..., 0, 1], out[..., 0, 2] = -v[..., 2], v[..., 1]
    out[..., 1, 0], out[..., 1, 2] = v[..., 2], -v[..., 0]
    out[..., 2, 0], out[..., 2, 1] = -v[..., 1], v[..., 0]
    return out


def _rotvec_matrix(rv: np.ndarray) -> np.ndarray:
    """Rotation matrices (..., 3, 3) of rotation vectors (..., 3) (Rodrigues)."""
    angle = np.linalg.norm(rv, axis=-1)[..., None, None]
    k = _skew(rv)
    small = angle < 1e-12
    safe = np.where(small, 1.0, angle)
    a = np.where(small, 1.0, np.sin(safe) / safe)
    b = np.where(small, 0.5, (1.0 - np.cos(safe)) / (safe * safe))
    return _EYE3 + a * k + b * (k @ k)


def _quat_mul(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Hamilton products of (..., 4) wxyz quaternions."""
    pw, px, py, pz = p[..., 0], p[..., 1], p[..., 2], p[..., 3]
    qw, qx, qy, qz = q[..., 0], q[..., 1], q[..., 2], q[..., 3]
    out = np.empty(np.broadcast_shapes(p.shape, q.shape))
    out[..., 0] = pw * qw - px * qx - py * qy - pz * qz
    out[..., 1] = pw * qx + px * qw + py * qz - pz * qy
    out[..., 2] = pw * qy - px * qz + py * qw + pz * qx
    out[..., 3] = pw * qz + px * qy - py * qx + pz * qw
    return out


def _quat_matrix(q: np.ndarray) -> np.ndarray:
    """Rotation matrices (..., 3, 3) of unit quaternions (..., 4) wxyz."""
    w, x, y, z = q[..., 0], q[..., 1], q[..., 2], q[..., 3]
    return np.stack([
        np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)], -1),
        np.stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)], -1),
        np.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], -1),
    ], axis=-2)


def _prefix_products(dq: np.ndarray) -> np.ndarray:
    """Running products dq[..., 0, :] * ... * dq[..., k, :] along the sample axis (-2) of wxyz
    quaternions (..., n, 4), in log2(n) vectorised passes."""
    out = dq.copy()
    shift = 1
    while shift < out.shape[-2]:
        out[..., shift:, :] = _quat_mul(out[..., :-shift, :], out[..., shift:, :])
        shift *= 2
    return out / np.linalg.norm(out, axis=-1, keepdims=True)


def _cumint(x: np.ndarray, dt: np.ndarray) -> np.ndarray:
    """Left-rectangle running integrals along axis 1 with a leading zero: x (B, n, ...), dt (B, n)
    -> (B, n+1, ...), out[:, k] = sum_{j<k} x[:, j] dt[:, j]."""
    w = x * dt.reshape(dt.shape + (1,) * (x.ndim - 2))
    return np.concatenate([np.zeros((x.shape[0], 1) + x.shape[2:]), np.cumsum(w, axis=1)], axis=1)


def _cumtrapz(x: np.ndarray, dt: np.ndarray) -> np.ndarray:
    """Trapezoidal running integrals along axis 1: x (B, n, 3), dt (B, n-1) -> (B, n, 3)."""
    inc = 0.5 * (x[:, 1:] + x[:, :-1]) * dt[..., None]
    return np.concatenate([np.zeros((x.shape[0], 1) + x.shape[2:]), np.cumsum(inc, axis=1)], axis=1)


# ----- windows ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Window:
    """Sample indices of one rep inside the arrays: standing [rest0, rest1), the hold's zero-velocity
    updates from zupt0, averaging [avg0, avg1), used up to end (exclusive)."""

    rest0: int
    rest1: int
    zupt0: int
    avg0: int
    avg1: int
    end: int


def _find_window(t_s: np.ndarray, gyr_radps: np.ndarray, rest_window_s, hold_window_s,
                 p: AnkleParams) -> _Window | str:
    """Sample windows of the rep, or the reason it cannot be measured."""
    if rest_window_s is None:
        return "no still phase before the lift"
    if hold_window_s is None:
        return "the rep has no hold"
    rest_start_s, rest_end_s = float(rest_window_s[0]), float(rest_window_s[1])
    hold_start_s, hold_end_s = float(hold_window_s[0]), float(hold_window_s[1])
    need_s = p.settle_s + p.average_s
    if hold_end_s - hold_start_s < need_s:
        return (f"hold too short to pin the velocity ({hold_end_s - hold_start_s:.2f} s, "
                f"needs {need_s:.2f} s)")
    rest_start_s = max(rest_start_s, rest_end_s - p.rest_use_s)
    if rest_end_s - rest_start_s < p.min_rest_s:
        return (f"no still phase before the lift (standing {max(rest_end_s - rest_start_s, 0):.2f} s, "
                f"needs {p.min_rest_s:.2f} s)")
    if hold_start_s - rest_end_s > p.max_lift_s:
        return f"lift too long to integrate ({hold_start_s - rest_end_s:.2f} s > {p.max_lift_s:.2f} s)"
    if hold_start_s < rest_end_s:
        return "hold starts before the standing phase ends"
    use_s = p.hold_use_s if p.hold_use_s is not None else need_s
    use_s = min(max(use_s, need_s), hold_end_s - hold_start_s)
    idx = np.searchsorted(t_s, [rest_start_s, rest_end_s, hold_start_s + p.hold_zupt_delay_s,
                                hold_start_s + p.settle_s, hold_start_s + need_s,
                                hold_start_s + use_s + 1e-9])
    win = _Window(*(int(i) for i in idx))
    if win.rest0 < 0 or win.end > t_s.shape[0] or t_s[-1] < hold_start_s + need_s - 1e-6:
        return "the data ends before the averaging window of the hold"
    if t_s[0] > rest_start_s + 1e-6:
        return "the data starts after the standing phase"
    if win.rest1 - win.rest0 < 3 or win.avg1 <= win.avg0:
        return "too few samples in the standing phase or the hold window"
    seg = t_s[win.rest0:win.end]
    if np.max(np.diff(seg)) > p.max_gap_s:
        return f"a gap of {np.max(np.diff(seg)):.2f} s in the data during the rep"
    rest_gyr = np.degrees(gyr_radps[win.rest0:win.rest1])
    wobble = np.max(np.abs(rest_gyr - rest_gyr.mean(axis=0)))
    if wobble > p.rest_max_gyr_dps:
        return f"the phase before the lift is not still (gyro up to {wobble:.1f} deg/s off its mean)"
    return win


# ----- strap-down (a batch of reps, padded to one length) -----------------------------------------
@dataclass(frozen=True)
class _Batch:
    """B reps' samples on a common padded length N (padding repeats the last sample with dt = 0, so
    it adds nothing to any integral). Index arrays (B,) are relative to each rep's first sample."""

    t: np.ndarray            # (B, N)
    acc: np.ndarray          # (B, N, 3)
    gyr: np.ndarray          # (B, N, 3)
    n: np.ndarray            # valid samples
    rest1: np.ndarray        # standing phase is [0, rest1)
    zupt0: np.ndarray        # the hold's zero-velocity updates start here
    avg0: np.ndarray         # averaging window [avg0, avg1)
    avg1: np.ndarray
    step: int                # samples between filter boundaries


def _decimated(x: np.ndarray, factor: int) -> np.ndarray:
    n = (len(x) // factor) * factor
    return x[:n].reshape((n // factor, factor) + x.shape[1:]).mean(axis=1)


def _make_batch(t: np.ndarray, acc: np.ndarray, gyr: np.ndarray, wins: list[_Window], p: AnkleParams) -> _Batch:
    """Cut, block-average (down to `imu_rate_max_hz`) and pad the reps' windows."""
    rates = [(w.end - w.rest0 - 1) / (t[w.end - 1] - t[w.rest0]) for w in wins]
    factor = max(1, int(float(np.median(rates)) / p.imu_rate_max_hz + 0.5))
    pieces, marks = [], []
    for w in wins:
        sl = slice(w.rest0, w.end)
        loc = np.array([w.rest1, w.zupt0, w.avg0, w.avg1]) - w.rest0
        if factor > 1:
            pieces.append((_decimated(t[sl], factor), _decimated(acc[sl], factor), _decimated(gyr[sl], factor)))
            loc = np.rint(loc / factor).astype(int)
        else:
            pieces.append((t[sl], acc[sl], gyr[sl]))
        n = len(pieces[-1][0])
        loc = np.minimum(loc, n)
        loc[2] = min(loc[2], n - 1)
        loc[3] = max(loc[3], loc[2] + 1)
        marks.append((n, *loc))
    # filter boundaries every `step` samples; pad so that the last one is the last sample, which makes
    # each rep's boundaries the same whatever the other reps in the batch
    step = max(1, int(round(float(np.median(rates)) / factor / p.kf_rate_hz)))
    size = -(-(max(m[0] for m in marks) - 1) // step) * step + 1
    pad = lambda x: np.concatenate([x, np.repeat(x[-1:], size - len(x), axis=0)])
    cols = np.array(marks).T
    return _Batch(np.stack([pad(a) for a, _, _ in pieces]), np.stack([pad(b) for _, b, _ in pieces]),
                  np.stack([pad(c) for _, _, c in pieces]), *cols, step=step)


@dataclass(frozen=True)
class _Nominal:
    """Strap-down trajectories (B reps, N samples): rotation sensor->earth, earth-frame specific force,
    acceleration (gravity removed), velocity, position, gyro minus the bias estimate."""

    dt: np.ndarray           # (B, N-1)
    rot: np.ndarray          # (B, N, 3, 3)
    force_e: np.ndarray      # (B, N, 3)
    acc_e: np.ndarray        # (B, N, 3)
    vel: np.ndarray          # (B, N, 3)
    pos: np.ndarray          # (B, N, 3)
    gyr_corr: np.ndarray     # (B, N, 3)


def _align_to_up(f: np.ndarray) -> np.ndarray:
    """Rotations (B, 3, 3) with the smallest angle that take directions f (B, 3) to earth up."""
    u = f / np.linalg.norm(f, axis=-1, keepdims=True)
    axis = np.cross(u, [0.0, 0.0, 1.0])
    s = np.linalg.norm(axis, axis=-1, keepdims=True)
    angle = np.arctan2(s, u[:, 2:3])
    rv = np.where(s > 1e-12, axis / np.maximum(s, 1e-300) * angle, np.where(u[:, 2:3] > 0, 0.0, [[math.pi, 0, 0]]))
    return _rotvec_matrix(rv)


def _strapdown(b: _Batch) -> _Nominal:
    """Integrate each rep from its first sample; gyro bias and initial tilt from its standing phase."""
    dt = np.diff(b.t, axis=1)
    rest = (np.arange(b.t.shape[1]) < b.rest1[:, None])[..., None]
    count = b.rest1[:, None].astype(float)
    gyr_c = b.gyr - ((b.gyr * rest).sum(axis=1) / count)[:, None]
    f_rest = (b.acc * rest).sum(axis=1) / count
    gravity = np.linalg.norm(f_rest, axis=1)
    half = 0.25 * (gyr_c[:, 1:] + gyr_c[:, :-1]) * dt[..., None]
    ang = np.linalg.norm(half, axis=-1, keepdims=True)
    dq = np.concatenate([np.cos(ang), np.sinc(ang / np.pi) * half], axis=-1)
    q = np.concatenate([np.tile([1.0, 0.0, 0.0, 0.0], (len(dt), 1, 1)), _prefix_products(dq)], axis=1)
    rot = _align_to_up(f_rest)[:, None] @ _quat_matrix(q)
    force_e = np.einsum("bnij,bnj->bni", rot, b.acc)
    acc_e = force_e.copy()
    acc_e[..., 2] -= gravity[:, None]
    vel = _cumtrapz(acc_e, dt)
    return _Nominal(dt, rot, force_e, acc_e, vel, _cumtrapz(vel, dt), gyr_c)


# ----- error-state filter and smoother ------------------------------------------------------------
def _transitions(nom: _Nominal, t: np.ndarray, bounds: np.ndarray, p: AnkleParams) -> tuple[np.ndarray, np.ndarray]:
    """Error-state transition F and process noise Q (B, M-1, 15, 15) between the M boundaries.

    Error model (true minus nominal): d(phi)/dt = -R dbg, d(dv)/dt = -[f_e]x phi - R dba, d(dp)/dt = dv,
    biases constant; integrated over each block with running sums of the full-rate signals.
    """
    dt = nom.dt
    rot = nom.rot[:, :-1]
    c_r = _cumint(rot, dt)                                   # int R
    c_f = _cumint(nom.force_e[:, :-1], dt)                   # int f (a vector; [.]x is linear)
    c_fr = _cumint(_skew(nom.force_e[:, :-1]) @ c_r[:, :-1], dt)  # int [f]x (int R)
    cc_r = _cumint(c_r[:, :-1], dt)
    cc_f = _cumint(c_f[:, :-1], dt)
    cc_fr = _cumint(c_fr[:, :-1], dt)
    i, j = bounds[:-1], bounds[1:]
    span = t[:, j] - t[:, i]                                 # (B, M-1)
    s3 = span[..., None, None]
    d_r = c_r[:, j] - c_r[:, i]
    d_f = _skew(c_f[:, j] - c_f[:, i])
    d_fr = (c_fr[:, j] - c_fr[:, i]) - d_f @ c_r[:, i]
    dd_r = (cc_r[:, j] - cc_r[:, i]) - s3 * c_r[:, i]
    dd_f = _skew((cc_f[:, j] - cc_f[:, i]) - span[..., None] * c_f[:, i])
    dd_fr = (cc_fr[:, j] - cc_fr[:, i]) - s3 * c_fr[:, i] - dd_f @ c_r[:, i]
    big_f = np.broadcast_to(np.eye(_N_STATES), span.shape + (_N_STATES, _N_STATES)).copy()
    big_f[..., _P, _V] = s3 * _EYE3
    big_f[..., _P, _A] = -dd_f
    big_f[..., _P, _BG] = dd_fr
    big_f[..., _P, _BA] = -dd_r
    big_f[..., _V, _A] = -d_f
    big_f[..., _V, _BG] = d_fr
    big_f[..., _V, _BA] = -d_r
    big_f[..., _A, _BG] = -d_r
    # process noise: white sensor noise plus scale errors driven by the motion of each block
    turn = _cumint(np.linalg.norm(nom.gyr_corr[:, :-1], axis=-1), dt)
    push = _cumint(np.linalg.norm(nom.acc_e[:, :-1], axis=-1), dt)
    q_att = p.gyr_noise_radps_per_rthz ** 2 * span + (p.gyr_scale_sd * (turn[:, j] - turn[:, i])) ** 2
    q_vel = p.acc_noise_mps2_per_rthz ** 2 * span + (p.acc_scale_sd * (push[:, j] - push[:, i])) ** 2
    big_q = np.zeros_like(big_f)
    for axis in range(3):
        big_q[..., axis, axis] = q_vel * span * span / 3.0
        big_q[..., axis, 3 + axis] = big_q[..., 3 + axis, axis] = q_vel * span / 2.0
        big_q[..., 3 + axis, 3 + axis] = q_vel
        big_q[..., 6 + axis, 6 + axis] = q_att
        big_q[..., 9 + axis, 9 + axis] = 1e-12 * span
        big_q[..., 12 + axis, 12 + axis] = 1e-10 * span
    return big_f, big_q


def _measurements(nom: _Nominal, b: _Batch, bounds: np.ndarray,
                  p: AnkleParams) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pseudo-measurements z (B, M, 9), H (B, M, 9, 15), noise variances (B, M, 9) at the boundaries.

    Standing (boundary < rest1): zero velocity, zero angular rate and gravity (block means since the
    previous boundary). Hold (zupt0 <= boundary < n): zero velocity in rows 0-2. Unused rows have
    H = 0, z = 0 and unit variance, so they change nothing.
    """
    deg = math.pi / 180.0
    starts = np.concatenate([[0], bounds[:-1]])
    ends = np.maximum(bounds, starts + 1)
    cuts = np.stack([starts, ends], axis=1).ravel()
    size = (ends - starts).astype(float)

    def block(x: np.ndarray) -> np.ndarray:
        return np.add.reduceat(x, cuts, axis=1)[:, ::2] / size.reshape((1, -1) + (1,) * (x.ndim - 2))

    rest = bounds[None, :] < b.rest1[:, None]                                  # (B, M)
    hold = (bounds[None, :] >= b.zupt0[:, None]) & (bounds[None, :] < b.n[:, None])
    shape = rest.shape
    h = np.zeros(shape + (9, _N_STATES))
    h[..., 0:3, _V] = _EYE3
    h[..., 3:6, _BG] = _EYE3
    h[..., 6:9, _A] = -_skew(block(nom.force_e))
    h[..., 6:9, _BA] = -block(nom.rot)
    z = np.concatenate([-nom.vel[:, bounds], block(nom.gyr_corr), -block(nom.acc_e)], axis=-1)
    r = np.ones(shape + (9,))
    r[rest] = np.concatenate([np.full(3, p.rest_zupt_sd_mps ** 2), np.full(3, (p.rest_zaru_sd_dps * deg) ** 2),
                              np.full(3, p.rest_gravity_sd_mps2 ** 2)])
    r[hold, 0:3] = p.hold_zupt_sd_mps ** 2
    h[hold, 3:] = 0.0
    z[hold, 3:] = 0.0
    unused = ~(rest | hold)
    h[unused] = 0.0
    z[unused] = 0.0
    return z, h, r


def _initial_covariance(p: AnkleParams) -> np.ndarray:
    deg = math.pi / 180.0
    sd = np.concatenate([np.full(3, 1e-4), np.full(3, 0.01),
                         [p.init_tilt_sd_deg * deg, p.init_tilt_sd_deg * deg, 1e-3],
                         np.full(3, p.init_gyr_bias_sd_dps * deg), np.full(3, p.init_acc_bias_sd_mps2)])
    return np.diag(sd ** 2)


@dataclass(frozen=True)
class _Smoothed:
    x: np.ndarray       # (B, M, 15) smoothed error states at the boundaries
    cov: np.ndarray     # (B, M, 15, 15)
    gain: np.ndarray    # (B, M-1, 15, 15) smoother gains (for cross-covariances)


def _filter_smooth(big_f: np.ndarray, big_q: np.ndarray, z: np.ndarray, h: np.ndarray, r: np.ndarray,
                   p0: np.ndarray) -> _Smoothed:
    """Kalman filter forward over the boundaries, then the Rauch-Tung-Striebel smoother backward;
    every step handles all reps at once."""
    n_b, m = z.shape[:2]
    x_f = np.zeros((n_b, m, _N_STATES))
    p_f = np.zeros((n_b, m, _N_STATES, _N_STATES))
    x_p = np.zeros_like(x_f)
    p_p = np.zeros_like(p_f)
    x = np.zeros((n_b, _N_STATES))
    cov = np.broadcast_to(p0, (n_b, _N_STATES, _N_STATES)).copy()
    eye_r = np.eye(z.shape[2])
    for k in range(m):
        x_p[:, k], p_p[:, k] = x, cov
        hk = h[:, k]
        ph = cov @ np.swapaxes(hk, 1, 2)
        s = hk @ ph + eye_r * r[:, k, None, :]
        gain = np.swapaxes(np.linalg.solve(s, np.swapaxes(ph, 1, 2)), 1, 2)
        x = x + (gain @ (z[:, k] - (hk @ x[..., None])[..., 0])[..., None])[..., 0]
        cov = cov - gain @ np.swapaxes(ph, 1, 2)
        cov = 0.5 * (cov + np.swapaxes(cov, 1, 2))
        x_f[:, k], p_f[:, k] = x, cov
        if k + 1 < m:
            x = (big_f[:, k] @ x[..., None])[..., 0]
            cov = big_f[:, k] @ cov @ np.swapaxes(big_f[:, k], 1, 2) + big_q[:, k]
    # smoother gains G_k = P_f[k] F_k^T P_p[k+1]^-1, all at once
    gains = np.swapaxes(np.linalg.solve(p_p[:, 1:], big_f @ p_f[:, :-1]), -1, -2)
    x_s = x_f.copy()
    p_s = p_f.copy()
    for k in range(m - 2, -1, -1):
        g = gains[:, k]
        x_s[:, k] = x_f[:, k] + (g @ (x_s[:, k + 1] - x_p[:, k + 1])[..., None])[..., 0]
        p_s[:, k] = p_f[:, k] + g @ (p_s[:, k + 1] - p_p[:, k + 1]) @ np.swapaxes(g, 1, 2)
    return _Smoothed(x_s, p_s, gains)


# ----- geometry -----------------------------------------------------------------------------------
def hip_geometry(ankle_disp_m: np.ndarray, shank_up: np.ndarray, shank_m: np.ndarray, thigh_m: np.ndarray,
                 hip_offset_m: np.ndarray | float = 0.0) -> dict[str, np.ndarray]:
    """Hip flexion from the ankle bone's displacement and the shank direction at the hold.

    ankle_disp_m (m, 3): ankle bone displacement from standing, earth frame (z up).
    shank_up (m, 3): unit vector from the ankle bone to the knee at the hold.
    shank_m, thigh_m (m,): segment lengths. hip_offset_m (m, 3) or scalar: the hip's offset from
    straight above the standing ankle (0 under the standing-pose assumption).
    Returns arrays (m,): hip_flexion_deg, forward_cm (ankle, along the thigh's horizontal direction),
    lateral_cm, thigh_fit_m (|knee - hip|), and forward (m, 3) unit vectors.
    """
    d = np.atleast_2d(ankle_disp_m)
    hip = np.zeros_like(d) + hip_offset_m
    hip[:, 2] += shank_m + thigh_m
    thigh = d + shank_up * shank_m[:, None] - hip
    horiz = np.hypot(thigh[:, 0], thigh[:, 1])
    fwd = np.zeros_like(d)
    ok = horiz > 1e-9
    fwd[ok, 0] = thigh[ok, 0] / horiz[ok]
    fwd[ok, 1] = thigh[ok, 1] / horiz[ok]
    fwd[~ok, 0] = 1.0
    left = np.stack([-fwd[:, 1], fwd[:, 0], np.zeros(len(d))], axis=1)
    return {
        "hip_flexion_deg": np.degrees(np.arctan2(horiz, -thigh[:, 2])),
        "forward_cm": 100.0 * np.einsum("ij,ij->i", d, fwd),
        "lateral_cm": 100.0 * np.einsum("ij,ij->i", d, left),
        "thigh_fit_m": np.linalg.norm(thigh, axis=1),
        "forward": fwd,
    }


def ankle_displacement_from_angles(hip_flexion_deg: float, knee_flexion_deg: float, shank_m: float,
                                   thigh_m: float) -> tuple[np.ndarray, np.ndarray]:
    """Forward model of the same geometry (sagittal plane x forward, z up, standing leg vertical):
    (ankle bone displacement (3,) m, shank up unit vector (3,)) for the given joint angles."""
    hip = math.radians(hip_flexion_deg)
    shank_angle = hip - math.radians(knee_flexion_deg)
    knee = np.array([thigh_m * math.sin(hip), 0.0, -thigh_m * math.cos(hip)])
    shank_up = np.array([-math.sin(shank_angle), 0.0, math.cos(shank_angle)])
    ankle = knee - shank_m * shank_up
    standing = np.array([0.0, 0.0, -(thigh_m + shank_m)])
    return ankle - standing, shank_up


# ----- the estimator ------------------------------------------------------------------------------
_CHUNK_REPS = 64


@dataclass(frozen=True)
class _Kinematics:
    """Per rep (B): sensor displacement (mean over the averaging window - standing), the earth-frame
    rotation from standing to the hold, and the joint covariance (B, 12, 12) of
    [dp_rest, phi_rest, dp_hold, phi_hold] (None for the naive method)."""

    disp_m: np.ndarray
    rot_rel: np.ndarray
    cov: np.ndarray | None


def estimate_ankle_motion(t_s: np.ndarray, acc_mps2: np.ndarray, gyr_radps: np.ndarray,
                          quat_wxyz: np.ndarray | None, rest_window_s: tuple[float, float] | None,
                          hold_window_s: tuple[float, float] | None,
                          params: AnkleParams | None = None) -> AnkleEstimate | AnkleRefusal:
    """Estimate one rep's ankle rise, forward displacement and hip flexion.

    t_s (n,), acc_mps2 (n, 3) specific force, gyr_radps (n, 3): raw sensor samples covering the rep
    (at least the standing phase and the hold's averaging window). quat_wxyz (n, 4): orientation of the
    same samples (offlineVQF); needed only by the "naive" method. rest_window_s: (start, end) of the
    still standing phase before the lift (its end = the lift's start), None if there is none.
    hold_window_s: (start, end) of the hold. Returns AnkleEstimate, or AnkleRefusal(reason).
    """
    return estimate_ankle_motions(t_s, acc_mps2, gyr_radps, quat_wxyz, [(rest_window_s, hold_window_s)],
                                  params)[0]


def estimate_ankle_motions(t_s: np.ndarray, acc_mps2: np.ndarray, gyr_radps: np.ndarray,
                           quat_wxyz: np.ndarray | None, windows: list[tuple[object, object]],
                           params: AnkleParams | None = None) -> list[AnkleEstimate | AnkleRefusal]:
    """`estimate_ankle_motion` for many reps of one recording at once: windows is a list of
    (rest_window_s, hold_window_s). The filter runs on all reps together (same results, much faster)."""
    p = params if params is not None else AnkleParams()
    t = as_array("t_s", t_s, (None,))
    acc = as_array("acc_mps2", acc_mps2, (t.shape[0], 3))
    gyr = as_array("gyr_radps", gyr_radps, (t.shape[0], 3))
    quat = None
    if p.method == "naive":
        if quat_wxyz is None:
            raise DataError("the naive ankle method needs quat_wxyz")
        quat = as_array("quat_wxyz", quat_wxyz, (t.shape[0], 4))
    out: list[AnkleEstimate | AnkleRefusal] = []
    found: list[tuple[int, _Window]] = []
    for rest, hold in windows:
        win = _find_window(t, gyr, rest, hold, p) if t.shape[0] >= 3 else f"too few samples ({t.shape[0]})"
        if isinstance(win, str):
            out.append(AnkleRefusal(win))
        else:
            found.append((len(out), win))
            out.append(AnkleRefusal(""))
    for start in range(0, len(found), _CHUNK_REPS):
        chunk = found[start:start + _CHUNK_REPS]
        wins = [w for _, w in chunk]
        kin = _naive_kinematics(t, acc, quat, wins) if quat is not None else _eskf_kinematics(t, acc, gyr, wins, p)
        for (i, _), est in zip(chunk, _geometry(kin, wins, t, p)):
            out[i] = est
    return out


def _eskf_kinematics(t: np.ndarray, acc: np.ndarray, gyr: np.ndarray, wins: list[_Window],
                     p: AnkleParams) -> _Kinematics:
    b = _make_batch(t, acc, gyr, wins, p)
    nom = _strapdown(b)
    n_b, size = b.t.shape
    ar = np.arange(n_b)
    bounds = np.arange(0, size, b.step)
    big_f, big_q = _transitions(nom, b.t, bounds, p)
    sm = _filter_smooth(big_f, big_q, *_measurements(nom, b, bounds, p), _initial_covariance(p))
    # error states interpolated to the samples of the averaging window
    idx = np.arange(size)
    k = np.clip(np.searchsorted(bounds, idx, side="right") - 1, 0, len(bounds) - 2)
    w = ((idx - bounds[k]) / (bounds[k + 1] - bounds[k]))[None, :, None]
    err = (1.0 - w) * sm.x[:, k, :9] + w * sm.x[:, k + 1, :9]
    avg = ((idx >= b.avg0[:, None]) & (idx < b.avg1[:, None]))[..., None]
    count = avg.sum(axis=1)
    pos_hold = ((nom.pos + err[..., _P]) * avg).sum(axis=1) / count
    phi_hold = (err[..., _A] * avg).sum(axis=1) / count
    rot_mean = (nom.rot * avg[..., None]).sum(axis=1) / count[..., None]
    rot_hold = _nearest_rotation(_rotvec_matrix(phi_hold) @ rot_mean)
    k_rest = np.searchsorted(bounds, b.rest1 - 1, side="right") - 1
    pos_rest = nom.pos[ar, bounds[k_rest]] + sm.x[ar, k_rest, _P]
    rot_rest = _rotvec_matrix(sm.x[ar, k_rest, _A]) @ nom.rot[ar, bounds[k_rest]]
    rot_rel = rot_hold @ np.swapaxes(rot_rest, 1, 2)
    k_hold = np.minimum(np.searchsorted(bounds, (b.avg0 + b.avg1) // 2), len(bounds) - 1)
    cross = sm.cov[ar, k_hold]
    for kk in range(int(k_hold.max()) - 1, int(k_rest.min()) - 1, -1):
        use = ((kk >= k_rest) & (kk < k_hold))[:, None, None]
        cross = np.where(use, sm.gain[:, kk] @ cross, cross)
    sel = np.r_[0:3, 6:9]
    cov = np.zeros((n_b, 12, 12))
    cov[:, :6, :6] = sm.cov[ar, k_rest][:, sel][:, :, sel]
    cov[:, 6:, 6:] = sm.cov[ar, k_hold][:, sel][:, :, sel]
    cov[:, :6, 6:] = cross[:, sel][:, :, sel]
    cov[:, 6:, :6] = np.swapaxes(cov[:, :6, 6:], 1, 2)
    return _Kinematics(pos_hold - pos_rest, rot_rel, cov)


def _nearest_rotation(m: np.ndarray) -> np.ndarray:
    """The rotation matrices (..., 3, 3) nearest to m (..., 3, 3)."""
    u, _, vt = np.linalg.svd(m)
    flip = np.linalg.det(u @ vt) < 0
    u[flip, :, -1] *= -1
    return u @ vt


def _naive_kinematics(t: np.ndarray, acc: np.ndarray, quat: np.ndarray, wins: list[_Window]) -> _Kinematics:
    """Given orientation, gravity from the standing mean, linear velocity de-drift between the end of
    the standing phase and the start of the hold's zero-velocity phase (one rep at a time)."""
    disp, rel = [], []
    for w in wins:
        q = quat[w.rest0:w.end]
        rot = _quat_matrix(q / np.linalg.norm(q, axis=1, keepdims=True))
        acc_e = np.einsum("nij,nj->ni", rot, acc[w.rest0:w.end])
        r1, z0, a0, a1 = (x - w.rest0 for x in (w.rest1, w.zupt0, w.avg0, w.avg1))
        acc_e -= acc_e[:r1].mean(axis=0)
        tt = t[w.rest0 + r1:w.end]
        dt = np.diff(tt)[None]
        vel = _cumtrapz(acc_e[None, r1:], dt)[0]
        rel_t = tt - tt[0]
        vel -= vel[z0 - r1] * (rel_t / rel_t[z0 - r1])[:, None]
        pos = _cumtrapz(vel[None], dt)[0]
        disp.append(pos[a0 - r1:a1 - r1].mean(axis=0))
        rot_hold = _nearest_rotation(rot[a0:a1].mean(axis=0))
        rot_rest = _nearest_rotation(rot[:r1].mean(axis=0))
        rel.append(rot_hold @ rot_rest.T)
    return _Kinematics(np.array(disp), np.array(rel), None)


# perturbation vector: [dp_rest(3), phi_rest(3), dp_hold(3), phi_hold(3), shank_m, thigh_m,
#                       standing shank tilt (rad), standing thigh tilt (rad)]
_N_PERTURB = 16
_STEP = 1e-3


def _geometry(kin: _Kinematics, wins: list[_Window], t: np.ndarray,
              p: AnkleParams) -> list[AnkleEstimate | AnkleRefusal]:
    shank_m, thigh_m = p.lengths_m()
    d_s = p.sensor_above_ankle_cm / 100.0
    n_b = len(wins)
    # the unperturbed geometry does not depend on the forward direction passed in
    nominal = _evaluate(kin, np.zeros((1, _N_PERTURB)), shank_m, thigh_m, d_s, np.tile([1.0, 0.0, 0.0], (n_b, 1)))
    fwd = nominal["forward"][:, 0]
    shank_up = kin.rot_rel[:, :, 2]
    tilt_deg = np.degrees(np.arctan2(-np.einsum("bi,bi->b", shank_up, fwd), shank_up[:, 2]))
    hip_sd, rise_sd = _uncertainty(kin, shank_m, thigh_m, d_s, fwd, p)
    out: list[AnkleEstimate | AnkleRefusal] = []
    for i, win in enumerate(wins):
        excess_m = float(nominal["thigh_fit_m"][i, 0]) - thigh_m
        if excess_m * 100.0 > p.max_thigh_excess_cm:
            out.append(AnkleRefusal(
                f"no geometric solution: the knee would be {excess_m * 100:.1f} cm farther from the hip "
                f"than the thigh length ({thigh_m * 100:.1f} cm)"))
            continue
        hip_deg = float(nominal["hip_flexion_deg"][i, 0])
        out.append(AnkleEstimate(
            ankle_rise_cm=float(nominal["rise_cm"][i, 0]),
            ankle_forward_cm=float(nominal["forward_cm"][i, 0]),
            ankle_lateral_cm=float(nominal["lateral_cm"][i, 0]),
            shank_tilt_deg=float(tilt_deg[i]),
            hip_flexion_deg=hip_deg,
            knee_flexion_deg=hip_deg - float(tilt_deg[i]),
            hip_flexion_uncertainty_deg=None if hip_sd is None else float(hip_sd[i]),
            ankle_rise_uncertainty_cm=None if rise_sd is None else float(rise_sd[i]),
            thigh_length_fit_cm=float(nominal["thigh_fit_m"][i, 0]) * 100.0,
            method=p.method,
            window_s=(float(t[win.avg0]), float(t[win.avg1 - 1])),
        ))
    return out


def _evaluate(kin: _Kinematics, e: np.ndarray, shank_m: float, thigh_m: float, d_s: float,
              forward: np.ndarray) -> dict[str, np.ndarray]:
    """Geometry of B reps for E perturbations e (E, 16) around the estimate (first-order error model);
    forward (B, 3) sets the sagittal plane of the standing-pose perturbations. Arrays (B, E)."""
    n_b, n_e = kin.disp_m.shape[0], e.shape[0]
    up = np.array([0.0, 0.0, 1.0])
    lateral = np.stack([-forward[:, 1], forward[:, 0], np.zeros(n_b)], axis=1)[:, None]
    disp = kin.disp_m[:, None] + (e[:, 6:9] - e[:, 0:3])[None]
    rot_rel = _rotvec_matrix(e[:, 9:12])[None] @ kin.rot_rel[:, None] @ _rotvec_matrix(-e[:, 3:6])[None]
    # standing shank and thigh axes: vertical, tilted in the sagittal plane by the perturbations
    stand_up = _rotvec_matrix(-e[None, :, 14:15] * lateral)[..., 2]
    thigh_up = _rotvec_matrix(-e[None, :, 15:16] * lateral)[..., 2]
    shank_up = np.einsum("beij,bej->bei", rot_rel, stand_up)
    ankle = disp - d_s * (shank_up - stand_up)
    shank = np.broadcast_to(shank_m + e[:, 12], (n_b, n_e))
    thigh = np.broadcast_to(thigh_m + e[:, 13], (n_b, n_e))
    hip_offset = shank[..., None] * (stand_up - up) + thigh[..., None] * (thigh_up - up)
    geo = hip_geometry(ankle.reshape(-1, 3), shank_up.reshape(-1, 3), shank.ravel(), thigh.ravel(),
                       hip_offset.reshape(-1, 3))
    out = {k: v.reshape((n_b, n_e) + v.shape[1:]) for k, v in geo.items()}
    out["rise_cm"] = 100.0 * ankle[..., 2]
    return out


def _uncertainty(kin: _Kinematics, shank_m: float, thigh_m: float, d_s: float, forward: np.ndarray,
                 p: AnkleParams) -> tuple[np.ndarray | None, np.ndarray | None]:
    """1-sigma (B,) of hip flexion (deg) and ankle rise (cm), first order, by central differences."""
    if kin.cov is None:
        return None, None
    n = _N_PERTURB
    e = np.vstack([np.eye(n), -np.eye(n)]) * _STEP
    geo = _evaluate(kin, e, shank_m, thigh_m, d_s, forward)
    cov = np.zeros((len(kin.cov), n, n))
    cov[:, :12, :12] = kin.cov
    cov[:, 12, 12] = cov[:, 13, 13] = (p.length_sd_cm / 100.0) ** 2
    cov[:, 14, 14] = cov[:, 15, 15] = math.radians(p.standing_pose_sd_deg) ** 2
    out = []
    for key in ("hip_flexion_deg", "rise_cm"):
        jac = (geo[key][:, :n] - geo[key][:, n:]) / (2.0 * _STEP)
        out.append(np.sqrt(np.maximum(np.einsum("bi,bij,bj->b", jac, cov, jac), 0.0)))
    return out[0], out[1]


def thigh_hip_flexion(t_s: np.ndarray, angle_deg: np.ndarray, hold_window_s: tuple[float, float] | None,
                      params: AnkleParams | None = None) -> AnkleEstimate | AnkleRefusal:
    """Thigh placement: hip flexion = the thigh's lift angle averaged over the same window as the ankle
    estimate; uncertainty from the standing-pose assumption and the angle's spread in that window."""
    p = params if params is not None else AnkleParams()
    if hold_window_s is None:
        return AnkleRefusal("the rep has no hold")
    start_s, end_s = hold_window_s
    if end_s - start_s < p.settle_s + p.average_s:
        return AnkleRefusal(f"hold too short ({end_s - start_s:.2f} s, needs {p.settle_s + p.average_s:.2f} s)")
    t = as_array("t_s", t_s, (None,))
    a = as_array("angle_deg", angle_deg, (t.shape[0],))
    m = (t >= start_s + p.settle_s) & (t <= start_s + p.settle_s + p.average_s)
    if not m.any():
        return AnkleRefusal("no samples in the hold window")
    hip = float(a[m].mean())
    sd = math.hypot(p.standing_pose_sd_deg, float(a[m].std()))
    return AnkleEstimate(math.nan, math.nan, math.nan, math.nan, hip, math.nan, sd, None, math.nan,
                         "thigh", (float(t[m][0]), float(t[m][-1])))


def ankle_params_from(analysis_params: object) -> AnkleParams:
    """AnkleParams from the analysis parameters' `shank_length_cm`, `thigh_length_cm`, `height_cm`,
    `sensor_above_ankle_cm` and `settle_s` (those it has; None keeps the default)."""
    names = ("shank_length_cm", "thigh_length_cm", "height_cm", "sensor_above_ankle_cm", "settle_s")
    return AnkleParams().with_overrides(**{n: getattr(analysis_params, n, None) for n in names})


def add_rep_extras(reps: list, placement: str, t_s: np.ndarray, acc_mps2: np.ndarray, gyr_radps: np.ndarray,
                   angle_t_s: np.ndarray, angle_deg: np.ndarray, params: AnkleParams) -> None:
    """Put ankle_rise_cm, ankle_forward_cm, hip_flexion_deg and hip_flexion_uncertainty_deg (None where
    not measurable, plus `ankle_note` with the reason) into each rep's `extra`, in place.

    reps: sensor.types.Rep in time order. Ankle placement: the standing phase of a rep runs from the
    previous rep's end (or the first sample) to its lift start. Thigh placement: `angle_deg` (n,) at
    `angle_t_s` is the lift angle.
    """
    prev_end_s = float(t_s[0]) if len(t_s) else 0.0
    windows: list[tuple[object, object]] = []
    for rep in reps:
        hold = None if rep.hold_start_s is None or rep.hold_end_s is None else (rep.hold_start_s, rep.hold_end_s)
        windows.append(((prev_end_s, rep.lift_start_s), hold))
        ends = [x for x in (rep.lower_end_s, rep.hold_end_s) if x is not None]
        prev_end_s = ends[0] if ends else prev_end_s
    if placement == "thigh":
        results = [thigh_hip_flexion(angle_t_s, angle_deg, hold, params) for _, hold in windows]
    else:
        results = estimate_ankle_motions(t_s, acc_mps2, gyr_radps, None, windows, params)
    for rep, (_, hold), est in zip(reps, windows, results):
        if hold is None:
            est = AnkleRefusal("the rep has no hold")
        rep.extra.update(est.to_extra() if isinstance(est, AnkleEstimate) else empty_extra(est.reason))


class LiveRepExtras:
    """For a live stream: keeps the last `keep_s` seconds of samples (and of the lift angle) and fills
    the same per-rep keys as `add_rep_extras` into each rep once the tracker has completed it."""

    def __init__(self, placement: str, params: AnkleParams, keep_s: float) -> None:
        self.placement = placement
        self.params = params
        self.keep_s = float(keep_s)
        self._samples: deque[tuple[np.ndarray, np.ndarray, np.ndarray]] = deque()
        self._angles: deque[tuple[np.ndarray, np.ndarray]] = deque()
        self._done = 0
        self._prev_end_s: float | None = None

    def append_samples(self, t_s: np.ndarray, acc_mps2: np.ndarray, gyr_radps: np.ndarray) -> None:
        """Received samples (n,), (n, 3), (n, 3) in time order."""
        if len(t_s):
            self._samples.append((np.array(t_s, float), np.array(acc_mps2, float), np.array(gyr_radps, float)))
            self._trim(self._samples)

    def append_angle(self, t_s: np.ndarray, angle_deg: np.ndarray) -> None:
        if len(t_s):
            self._angles.append((np.array(t_s, float), np.array(angle_deg, float)))
            self._trim(self._angles)

    def _trim(self, blocks: deque) -> None:
        """Drop the oldest blocks that end more than keep_s before the newest (blocks in time order;
        O(1) per call on average, whatever keep_s)."""
        oldest_kept_s = blocks[-1][0][-1] - self.keep_s
        while blocks[0][0][-1] < oldest_kept_s:
            blocks.popleft()

    def update(self, reps: list) -> None:
        """Fill the extras of the reps completed since the last call (reps: the tracker's list)."""
        new = reps[self._done:]
        if not new:
            return
        if self._prev_end_s is None:
            self._prev_end_s = float(self._samples[0][0][0]) if self._samples else new[0].lift_start_s
        t, acc, gyr = (np.concatenate([b[k] for b in self._samples]) if self._samples else np.zeros((0, 3))
                       for k in range(3))
        t = t.reshape(-1)
        angle_t, angle = (np.concatenate([b[k] for b in self._angles]) if self._angles else np.zeros(0)
                          for k in range(2))
        for rep in new:
            rest_start_s = max(self._prev_end_s, float(t[0]) if len(t) else self._prev_end_s)
            hold = None if rep.hold_start_s is None or rep.hold_end_s is None else (rep.hold_start_s, rep.hold_end_s)
            if hold is None:
                est: AnkleEstimate | AnkleRefusal = AnkleRefusal("the rep has no hold")
            elif self.placement == "thigh":
                est = thigh_hip_flexion(angle_t, angle, hold, self.params)
            elif len(t) < 3:
                est = AnkleRefusal("no samples kept for this rep")
            else:
                est = estimate_ankle_motion(t, acc, gyr, None, (rest_start_s, rep.lift_start_s), hold, self.params)
            rep.extra.update(est.to_extra() if isinstance(est, AnkleEstimate) else empty_extra(est.reason))
            ends = [x for x in (rep.lower_end_s, rep.hold_end_s) if x is not None]
            self._prev_end_s = ends[0] if ends else self._prev_end_s
        self._done = len(reps)
