"""Ankle rise, forward displacement and hip flexion of one rep from a single shank (ankle) sensor.

Pure code, no IO. `estimate_ankle_motion(...)` works on one rep: the standing still phase before the
lift, the lift (about a second) and the start of the hold. It returns an `AnkleEstimate`, or an
`AnkleRefusal` with the reason when the rep cannot be measured.

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
samples is integrated exactly from the full-rate signals with cumulative sums, so the rate of the
Kalman loop does not limit the strap-down accuracy.

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
    init_acc_bias_sd_mps2: float = 0.08
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
    """Rotation matrices (n, 3, 3) of unit quaternions (n, 4) wxyz."""
    w, x, y, z = q.T
    return np.stack([
        np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)], -1),
        np.stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)], -1),
        np.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], -1),
    ], axis=-2)


def _prefix_products(dq: np.ndarray) -> np.ndarray:
    """Running products dq[0] * dq[1] * ... * dq[k] for every k, (n, 4), in log2(n) vectorised passes."""
    out = dq.copy()
    shift = 1
    while shift < out.shape[0]:
        out[shift:] = _quat_mul(out[:-shift], out[shift:])
        shift *= 2
    return out / np.linalg.norm(out, axis=1, keepdims=True)


def _align_to_up(f: np.ndarray) -> np.ndarray:
    """The rotation matrix with the smallest angle that takes direction f (3,) to earth up [0, 0, 1]."""
    u = f / np.linalg.norm(f)
    axis = np.cross(u, [0.0, 0.0, 1.0])
    s = np.linalg.norm(axis)
    angle = math.atan2(s, u[2])
    if s < 1e-12:
        return _EYE3.copy() if u[2] > 0 else np.diag([1.0, -1.0, -1.0])
    return _rotvec_matrix(axis / s * angle)


def _cumint(x: np.ndarray, dt: np.ndarray) -> np.ndarray:
    """Left-rectangle running integral with a leading zero: out[k] = sum_{j<k} x[j] dt[j]; (n+1, ...)."""
    w = x * dt.reshape((-1,) + (1,) * (x.ndim - 1))
    return np.concatenate([np.zeros((1,) + x.shape[1:]), np.cumsum(w, axis=0)])


def _cumtrapz(x: np.ndarray, dt: np.ndarray) -> np.ndarray:
    """Trapezoidal running integral (n, ...) of samples x (n, ...) with steps dt (n-1,)."""
    inc = 0.5 * (x[1:] + x[:-1]) * dt[:, None]
    return np.concatenate([np.zeros((1,) + x.shape[1:]), np.cumsum(inc, axis=0)])


# ----- windows ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Window:
    """Sample indices of one rep inside the arrays: standing [rest0, rest1), hold from hold0,
    averaging [avg0, avg1), used up to end (exclusive)."""

    rest0: int
    rest1: int
    hold0: int
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
    idx = np.searchsorted(t_s, [rest_start_s, rest_end_s, hold_start_s, hold_start_s + p.hold_zupt_delay_s,
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


# ----- strap-down ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Nominal:
    """Strap-down trajectory over the window (n samples): rotation sensor->earth, earth-frame specific
    force, velocity and position; plus what it was started with."""

    t_s: np.ndarray
    dt_s: np.ndarray
    rot: np.ndarray          # (n, 3, 3)
    force_e: np.ndarray      # (n, 3) specific force in the earth frame
    acc_e: np.ndarray        # (n, 3) force_e - gravity
    vel: np.ndarray          # (n, 3)
    pos: np.ndarray          # (n, 3)
    gyr_corr: np.ndarray     # (n, 3) gyro minus the bias estimate
    up_sensor: np.ndarray    # (3,) earth up in the sensor frame when standing


def _strapdown(t_s: np.ndarray, acc: np.ndarray, gyr: np.ndarray, rest: slice,
               gyr_bias: np.ndarray, acc_bias: np.ndarray, rot0: np.ndarray | None) -> _Nominal:
    """Integrate from the first sample; initial tilt from the mean standing acceleration."""
    dt = np.diff(t_s)
    acc_c = acc - acc_bias
    gyr_c = gyr - gyr_bias
    f_rest = acc_c[rest].mean(axis=0)
    gravity = float(np.linalg.norm(f_rest))
    r0 = _align_to_up(f_rest) if rot0 is None else rot0
    half = 0.25 * (gyr_c[1:] + gyr_c[:-1]) * dt[:, None]
    ang = np.linalg.norm(half, axis=1, keepdims=True)
    dq = np.hstack([np.cos(ang), np.sinc(ang / np.pi) * half])
    q = np.vstack([[1.0, 0.0, 0.0, 0.0], _prefix_products(dq)])
    rot = r0 @ _quat_matrix(q)
    force_e = np.einsum("nij,nj->ni", rot, acc_c)
    acc_e = force_e - [0.0, 0.0, gravity]
    vel = _cumtrapz(acc_e, dt)
    pos = _cumtrapz(vel, dt)
    up_sensor = r0.T @ [0.0, 0.0, 1.0]
    return _Nominal(t_s, dt, rot, force_e, acc_e, vel, pos, gyr_c, up_sensor)


# ----- error-state filter and smoother ------------------------------------------------------------
def _transitions(nom: _Nominal, bounds: np.ndarray, p: AnkleParams) -> tuple[np.ndarray, np.ndarray]:
    """Error-state transition F (m-1, 15, 15) and process noise Q (m-1, 15, 15) between boundaries.

    Error model (true minus nominal): d(phi)/dt = -R dbg, d(dv)/dt = -[f_e]x phi - R dba, d(dp)/dt = dv,
    biases constant; integrated over each block with running sums of the full-rate signals.
    """
    dt = nom.dt_s
    rot = nom.rot[:-1]
    f = nom.force_e[:-1]
    c_r = _cumint(rot, dt)                                   # int R
    c_f = _cumint(f, dt)                                     # int f (vector; [.]x is linear)
    c_fr = _cumint(_skew(f) @ c_r[:-1], dt)                   # int [f]x (int R)
    cc_r = _cumint(c_r[:-1], dt)
    cc_f = _cumint(c_f[:-1], dt)
    cc_fr = _cumint(c_fr[:-1], dt)
    i, j = bounds[:-1], bounds[1:]
    span = (nom.t_s[j] - nom.t_s[i])[:, None, None]
    d_r = c_r[j] - c_r[i]
    d_f = _skew(c_f[j] - c_f[i])
    d_fr = (c_fr[j] - c_fr[i]) - d_f @ c_r[i]
    dd_r = (cc_r[j] - cc_r[i]) - span * c_r[i]
    dd_f = _skew((cc_f[j] - cc_f[i]) - span[:, :, 0] * c_f[i])
    dd_fr = (cc_fr[j] - cc_fr[i]) - span * c_fr[i] - dd_f @ c_r[i]
    m = len(i)
    big_f = np.tile(np.eye(_N_STATES), (m, 1, 1))
    big_f[:, _P, _V] = span * _EYE3
    big_f[:, _P, _A] = -dd_f
    big_f[:, _P, _BG] = dd_fr
    big_f[:, _P, _BA] = -dd_r
    big_f[:, _V, _A] = -d_f
    big_f[:, _V, _BG] = d_fr
    big_f[:, _V, _BA] = -d_r
    big_f[:, _A, _BG] = -d_r
    # process noise: white sensor noise plus scale errors driven by the motion of each block
    turn = _cumint(np.linalg.norm(nom.gyr_corr[:-1], axis=1), dt)
    push = _cumint(np.linalg.norm(nom.acc_e[:-1], axis=1), dt)
    s = span[:, 0, 0]
    q_att = p.gyr_noise_radps_per_rthz ** 2 * s + (p.gyr_scale_sd * (turn[j] - turn[i])) ** 2
    q_vel = p.acc_noise_mps2_per_rthz ** 2 * s + (p.acc_scale_sd * (push[j] - push[i])) ** 2
    big_q = np.zeros((m, _N_STATES, _N_STATES))
    for axis in range(3):
        big_q[:, axis, axis] = q_vel * s * s / 3.0
        big_q[:, axis, 3 + axis] = big_q[:, 3 + axis, axis] = q_vel * s / 2.0
        big_q[:, 3 + axis, 3 + axis] = q_vel
        big_q[:, 6 + axis, 6 + axis] = q_att
        big_q[:, 9 + axis, 9 + axis] = 1e-12 * s
        big_q[:, 12 + axis, 12 + axis] = 1e-10 * s
    return big_f, big_q


@dataclass(frozen=True)
class _Measurement:
    """z (k,), H (k, 15), R diag (k,) at one boundary."""

    z: np.ndarray
    h: np.ndarray
    r: np.ndarray


def _measurements(nom: _Nominal, bounds: np.ndarray, win: _Window, p: AnkleParams) -> list[_Measurement | None]:
    """Zero-velocity (+ zero-rate and gravity while standing) pseudo-measurements at each boundary.

    Standing: the block means since the previous boundary give the zero-rate and gravity terms.
    """
    deg = math.pi / 180.0
    rest = np.flatnonzero(bounds < win.rest1)
    hold = np.flatnonzero(bounds >= win.zupt0)
    out: list[_Measurement | None] = [None] * len(bounds)
    if rest.size:
        starts = np.concatenate([[0], bounds[rest[1:] - 1]])
        ends = np.maximum(bounds[rest], starts + 1)
        cuts = np.stack([starts, ends], axis=1).ravel()
        sizes = (ends - starts)[:, None]
        block = lambda x: np.add.reduceat(x, cuts, axis=0)[::2] / sizes.reshape((-1,) + (1,) * (x.ndim - 1))
        f_mean = block(nom.force_e)
        rot_mean = block(nom.rot)
        h = np.zeros((rest.size, 9, _N_STATES))
        h[:, 0:3, _V] = _EYE3
        h[:, 3:6, _BG] = _EYE3
        h[:, 6:9, _A] = -_skew(f_mean)
        h[:, 6:9, _BA] = -rot_mean
        z = np.hstack([-nom.vel[bounds[rest]], block(nom.gyr_corr), -block(nom.acc_e)])
        r = np.concatenate([np.full(3, p.rest_zupt_sd_mps ** 2), np.full(3, (p.rest_zaru_sd_dps * deg) ** 2),
                            np.full(3, p.rest_gravity_sd_mps2 ** 2)])
        for i, k in enumerate(rest):
            out[k] = _Measurement(z[i], h[i], r)
    h_hold = np.zeros((3, _N_STATES))
    h_hold[:, _V] = _EYE3
    r_hold = np.full(3, p.hold_zupt_sd_mps ** 2)
    for k in hold:
        out[k] = _Measurement(-nom.vel[bounds[k]], h_hold, r_hold)
    return out


def _initial_covariance(p: AnkleParams) -> np.ndarray:
    deg = math.pi / 180.0
    sd = np.concatenate([np.full(3, 1e-4), np.full(3, 0.01),
                         [p.init_tilt_sd_deg * deg, p.init_tilt_sd_deg * deg, 1e-3],
                         np.full(3, p.init_gyr_bias_sd_dps * deg), np.full(3, p.init_acc_bias_sd_mps2)])
    return np.diag(sd ** 2)


@dataclass(frozen=True)
class _Smoothed:
    x: np.ndarray       # (m, 15) smoothed error states at the boundaries
    cov: np.ndarray     # (m, 15, 15)
    gain: np.ndarray    # (m-1, 15, 15) smoother gains (for cross-covariances)


def _filter_smooth(big_f: np.ndarray, big_q: np.ndarray, meas: list[_Measurement | None],
                   p0: np.ndarray) -> _Smoothed:
    """Kalman filter forward over the boundaries, then the Rauch-Tung-Striebel smoother backward."""
    m = len(meas)
    x_f = np.zeros((m, _N_STATES))
    p_f = np.zeros((m, _N_STATES, _N_STATES))
    x_p = np.zeros((m, _N_STATES))
    p_p = np.zeros((m, _N_STATES, _N_STATES))
    x, cov = np.zeros(_N_STATES), p0
    for k in range(m):
        x_p[k], p_p[k] = x, cov
        mk = meas[k]
        if mk is not None:
            ph = cov @ mk.h.T
            s = mk.h @ ph + np.diag(mk.r)
            gain = np.linalg.solve(s, ph.T).T
            x = x + gain @ (mk.z - mk.h @ x)
            cov = cov - gain @ ph.T
            cov = 0.5 * (cov + cov.T)
        x_f[k], p_f[k] = x, cov
        if k + 1 < m:
            x = big_f[k] @ x
            cov = big_f[k] @ cov @ big_f[k].T + big_q[k]
    # smoother gains G_k = P_f[k] F_k^T P_p[k+1]^-1, all at once
    gains = np.swapaxes(np.linalg.solve(p_p[1:], big_f[:m - 1] @ p_f[:-1]), 1, 2)
    x_s = x_f.copy()
    p_s = p_f.copy()
    for k in range(m - 2, -1, -1):
        g = gains[k]
        x_s[k] = x_f[k] + g @ (x_s[k + 1] - x_p[k + 1])
        p_s[k] = p_f[k] + g @ (p_s[k + 1] - p_p[k + 1]) @ g.T
    return _Smoothed(x_s, p_s, gains)


def _boundaries(n: int, rest1: int, zupt0: int, avg0: int, avg1: int, step: int) -> np.ndarray:
    """Boundary sample indices (relative to the window): every `step` samples plus the phase edges."""
    marks = np.concatenate([np.arange(0, n, step), [rest1, zupt0, avg0, avg1 - 1, n - 1]])
    return np.unique(np.clip(marks, 0, n - 1))


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


def _lateral_axis(forward: np.ndarray) -> np.ndarray:
    return np.array([-forward[1], forward[0], 0.0])


# ----- the estimator ------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Kinematics:
    """Sensor displacement and the relative rotation standing -> hold, with their error model."""

    disp_m: np.ndarray              # (3,) sensor displacement (mean over the averaging window - standing)
    rot_rel: np.ndarray             # (3, 3) earth-frame rotation from standing to the hold
    cov: np.ndarray | None          # (12, 12) joint covariance of [dp_rest, phi_rest, dp_hold, phi_hold]


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
    p = params if params is not None else AnkleParams()
    t = as_array("t_s", t_s, (None,))
    acc = as_array("acc_mps2", acc_mps2, (t.shape[0], 3))
    gyr = as_array("gyr_radps", gyr_radps, (t.shape[0], 3))
    if t.shape[0] < 3:
        return AnkleRefusal(f"too few samples ({t.shape[0]})")
    win = _find_window(t, gyr, rest_window_s, hold_window_s, p)
    if isinstance(win, str):
        return AnkleRefusal(win)
    sl = slice(win.rest0, win.end)
    if p.method == "naive":
        if quat_wxyz is None:
            raise DataError("the naive ankle method needs quat_wxyz")
        quat = as_array("quat_wxyz", quat_wxyz, (t.shape[0], 4))
        kin = _naive_kinematics(t[sl], acc[sl], quat[sl], win)
    else:
        kin = _eskf_kinematics(t[sl], acc[sl], gyr[sl], win, p)
    return _geometry(kin, win, t, p)


def _local(win: _Window) -> _Window:
    o = win.rest0
    return _Window(0, win.rest1 - o, win.hold0 - o, win.zupt0 - o, win.avg0 - o, win.avg1 - o, win.end - o)


def _decimate(t: np.ndarray, acc: np.ndarray, gyr: np.ndarray, lw: _Window,
              factor: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, _Window]:
    """Block means of `factor` samples and the window's indices on the new grid."""
    n = (len(t) // factor) * factor
    mean = lambda x: x[:n].reshape((n // factor, factor) + x.shape[1:]).mean(axis=1)
    m = n // factor
    idx = lambda i: min(int(round(i / factor)), m)
    avg0 = min(idx(lw.avg0), m - 1)
    w = _Window(0, idx(lw.rest1), idx(lw.hold0), idx(lw.zupt0), avg0, max(idx(lw.avg1), avg0 + 1), m)
    return mean(t), mean(acc), mean(gyr), w


def _eskf_kinematics(t: np.ndarray, acc: np.ndarray, gyr: np.ndarray, win: _Window,
                     p: AnkleParams) -> _Kinematics:
    lw = _local(win)
    factor = int((len(t) - 1) / (t[-1] - t[0]) / p.imu_rate_max_hz + 0.5)
    if factor > 1:
        t, acc, gyr, lw = _decimate(t, acc, gyr, lw, factor)
    rest = slice(0, lw.rest1)
    nom = _strapdown(t, acc, gyr, rest, gyr[rest].mean(axis=0), np.zeros(3), None)
    rate_hz = (len(t) - 1) / (t[-1] - t[0])
    step = max(1, int(round(rate_hz / p.kf_rate_hz)))
    bounds = _boundaries(len(t), lw.rest1, lw.zupt0, lw.avg0, lw.avg1, step)
    big_f, big_q = _transitions(nom, bounds, p)
    sm = _filter_smooth(big_f, big_q, _measurements(nom, bounds, lw, p), _initial_covariance(p))
    # corrected positions over the averaging window (error states interpolated between boundaries)
    avg = np.arange(lw.avg0, lw.avg1)
    dp_avg = np.stack([np.interp(avg, bounds, sm.x[:, a]) for a in range(3)], axis=1)
    pos_hold = (nom.pos[avg] + dp_avg).mean(axis=0)
    k_rest = int(np.searchsorted(bounds, lw.rest1))
    pos_rest = nom.pos[bounds[k_rest]] + sm.x[k_rest, _P]
    in_avg = np.flatnonzero((bounds >= lw.avg0) & (bounds < lw.avg1))
    rot_hold = (_rotvec_matrix(sm.x[in_avg, _A]) @ nom.rot[bounds[in_avg]]).mean(axis=0)
    rot_rest = _rotvec_matrix(sm.x[k_rest, _A]) @ nom.rot[bounds[k_rest]]
    rot_rel = _nearest_rotation(rot_hold) @ rot_rest.T
    k_hold = int(in_avg[len(in_avg) // 2])
    cross = sm.cov[k_hold]
    for k in range(k_hold - 1, k_rest - 1, -1):
        cross = sm.gain[k] @ cross
    sel = np.r_[0:3, 6:9]
    cov = np.zeros((12, 12))
    cov[:6, :6] = sm.cov[k_rest][np.ix_(sel, sel)]
    cov[6:, 6:] = sm.cov[k_hold][np.ix_(sel, sel)]
    cov[:6, 6:] = cross[np.ix_(sel, sel)]
    cov[6:, :6] = cov[:6, 6:].T
    return _Kinematics(pos_hold - pos_rest, rot_rel, cov)


def _nearest_rotation(m: np.ndarray) -> np.ndarray:
    u, _, vt = np.linalg.svd(m)
    r = u @ vt
    if np.linalg.det(r) < 0:
        u[:, -1] *= -1
        r = u @ vt
    return r


def _naive_kinematics(t: np.ndarray, acc: np.ndarray, quat: np.ndarray, win: _Window) -> _Kinematics:
    """Given orientation, gravity from the standing mean, linear velocity de-drift between the end of
    the standing phase and the start of the hold's zero-velocity phase."""
    lw = _local(win)
    rot = _quat_matrix(quat / np.linalg.norm(quat, axis=1, keepdims=True))
    acc_e = np.einsum("nij,nj->ni", rot, acc)
    acc_e -= acc_e[:lw.rest1].mean(axis=0)
    dt = np.diff(t)
    vel = _cumtrapz(acc_e[lw.rest1:], dt[lw.rest1:])
    tt = t[lw.rest1:] - t[lw.rest1]
    k_end = lw.zupt0 - lw.rest1
    vel -= vel[k_end] * (tt / tt[k_end])[:, None]
    pos = _cumtrapz(vel, dt[lw.rest1:])
    pos_hold = pos[lw.avg0 - lw.rest1:lw.avg1 - lw.rest1].mean(axis=0)
    rot_hold = _nearest_rotation(rot[lw.avg0:lw.avg1].mean(axis=0))
    rot_rest = _nearest_rotation(rot[:lw.rest1].mean(axis=0))
    return _Kinematics(pos_hold, rot_hold @ rot_rest.T, None)


def _geometry(kin: _Kinematics, win: _Window, t: np.ndarray, p: AnkleParams) -> AnkleEstimate | AnkleRefusal:
    shank_m, thigh_m = p.lengths_m()
    d_s = p.sensor_above_ankle_cm / 100.0
    # the unperturbed geometry does not depend on the forward direction passed in
    nominal = _evaluate(kin, np.zeros((1, _N_PERTURB)), shank_m, thigh_m, d_s, np.array([1.0, 0.0, 0.0]))
    fwd = nominal["forward"][0]
    nominal["shank_tilt_deg"] = _shank_tilt_deg(kin, fwd)
    excess_m = float(nominal["thigh_fit_m"][0]) - thigh_m
    if excess_m * 100.0 > p.max_thigh_excess_cm:
        return AnkleRefusal(f"no geometric solution: the knee would be {excess_m * 100:.1f} cm farther from "
                            f"the hip than the thigh length ({thigh_m * 100:.1f} cm)")
    hip_sd, rise_sd = _uncertainty(kin, shank_m, thigh_m, d_s, fwd, p)
    hip_deg = float(nominal["hip_flexion_deg"][0])
    tilt_deg = float(nominal["shank_tilt_deg"][0])
    return AnkleEstimate(
        ankle_rise_cm=float(nominal["rise_cm"][0]),
        ankle_forward_cm=float(nominal["forward_cm"][0]),
        ankle_lateral_cm=float(nominal["lateral_cm"][0]),
        shank_tilt_deg=tilt_deg,
        hip_flexion_deg=hip_deg,
        knee_flexion_deg=hip_deg - tilt_deg,
        hip_flexion_uncertainty_deg=hip_sd,
        ankle_rise_uncertainty_cm=rise_sd,
        thigh_length_fit_cm=float(nominal["thigh_fit_m"][0]) * 100.0,
        method=p.method,
        window_s=(float(t[win.avg0]), float(t[win.avg1 - 1])),
    )


# perturbation vector: [dp_rest(3), phi_rest(3), dp_hold(3), phi_hold(3), shank_m, thigh_m,
#                       standing shank tilt (rad), standing thigh tilt (rad)]
_N_PERTURB = 16


def _evaluate(kin: _Kinematics, e: np.ndarray, shank_m: float, thigh_m: float, d_s: float,
              forward: np.ndarray) -> dict[str, np.ndarray]:
    """Geometry for a batch of perturbations e (m, 16) around the estimate (first-order error model)."""
    lateral = _lateral_axis(forward)
    disp = kin.disp_m + (e[:, 6:9] - e[:, 0:3])
    rot_rel = _rotvec_matrix(e[:, 9:12]) @ kin.rot_rel @ _rotvec_matrix(-e[:, 3:6])
    # standing shank axis: vertical, tilted forward (ankle ahead of the knee) by the perturbation
    stand_up = _rotvec_matrix(-e[:, 14:15] * lateral) @ np.array([0.0, 0.0, 1.0])
    shank_up = np.einsum("mij,mj->mi", rot_rel, stand_up)
    ankle = disp - d_s * (shank_up - stand_up)
    shank = shank_m + e[:, 12]
    thigh = thigh_m + e[:, 13]
    # hip relative to the standing ankle: knee along the standing shank, hip along the standing thigh
    thigh_up = _rotvec_matrix(-e[:, 15:16] * lateral) @ np.array([0.0, 0.0, 1.0])
    hip_offset = (shank[:, None] * (stand_up - [0.0, 0.0, 1.0])
                  + thigh[:, None] * (thigh_up - [0.0, 0.0, 1.0]))
    geo = hip_geometry(ankle, shank_up, shank, thigh, hip_offset)
    geo["rise_cm"] = 100.0 * ankle[:, 2]
    return geo


def _shank_tilt_deg(kin: _Kinematics, forward: np.ndarray) -> np.ndarray:
    """Sagittal shank angle from vertical at the hold (positive: ankle in front of the knee), (1,)."""
    shank_up = kin.rot_rel[:, 2]
    return np.array([math.degrees(math.atan2(-float(shank_up @ forward), float(shank_up[2])))])


def _uncertainty(kin: _Kinematics, shank_m: float, thigh_m: float, d_s: float, forward: np.ndarray,
                 p: AnkleParams) -> tuple[float | None, float | None]:
    """1-sigma of hip flexion (deg) and ankle rise (cm), first order, by central differences."""
    if kin.cov is None:
        return None, None
    steps = np.concatenate([np.full(3, 1e-3), np.full(3, 1e-3), np.full(3, 1e-3), np.full(3, 1e-3),
                            [1e-3, 1e-3, 1e-3, 1e-3]])
    e = np.vstack([np.diag(steps), -np.diag(steps)])
    geo = _evaluate(kin, e, shank_m, thigh_m, d_s, forward)
    n = _N_PERTURB
    cov = np.zeros((n, n))
    cov[:12, :12] = kin.cov
    cov[12, 12] = cov[13, 13] = (p.length_sd_cm / 100.0) ** 2
    cov[14, 14] = cov[15, 15] = math.radians(p.standing_pose_sd_deg) ** 2
    out = []
    for key in ("hip_flexion_deg", "rise_cm"):
        jac = (geo[key][:n] - geo[key][n:]) / (2.0 * steps)
        out.append(float(math.sqrt(max(jac @ cov @ jac, 0.0))))
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
    for rep in reps:
        hold = None if rep.hold_start_s is None or rep.hold_end_s is None else (rep.hold_start_s, rep.hold_end_s)
        if hold is None:
            est: AnkleEstimate | AnkleRefusal = AnkleRefusal("the rep has no hold")
        elif placement == "thigh":
            est = thigh_hip_flexion(angle_t_s, angle_deg, hold, params)
        else:
            est = estimate_ankle_motion(t_s, acc_mps2, gyr_radps, None, (prev_end_s, rep.lift_start_s), hold, params)
        rep.extra.update(est.to_extra() if isinstance(est, AnkleEstimate) else empty_extra(est.reason))
        ends = [x for x in (rep.lower_end_s, rep.hold_end_s) if x is not None]
        prev_end_s = ends[0] if ends else prev_end_s
