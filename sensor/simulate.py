"""Session simulator: a standing knee-lift session seen by one leg-worn IMU, with ground truth.

Pure code (no IO). `simulate_session(SimConfig(...))` returns the samples a sensor would deliver,
the recording metadata and a JSON-ready ground-truth dict.

Body model
----------
Earth frame: x forward (the way the subject faces), y to the subject's left, z up.
The subject stands on the stance leg; its ankle is a fixed pivot. Whole-body sway is an inverted
pendulum about that pivot: two small tilt angles (sagittal `body_ap`, frontal `body_ml`) move the
hip (at `hip_height_m` above the pivot) by millimetres and tilt the working leg with the body.
The working leg is a two-link chain hanging from the hip: thigh (`thigh_length_m`) and shank
(`shank_length_m`, knee to ankle bone). Joint angles: hip flexion `hip`, knee flexion `knee`
(both sagittal, positive = flexion) and a leg roll `roll` about the forward axis through the hip
(frontal-plane sway). Segment orientation is `R = Rx(roll + body_ml) @ Ry(-(angle + body_ap))`
with angle = hip for the thigh and hip - knee for the shank, so a segment's up vector
(distal -> proximal end) is `(-sin a, -sin r cos a, cos r cos a)`.

Each rep (numbers are the ranges the random draws come from):
- standing rest 2-6 s (the first one 3-6 s: the standing reference); the standing pose changes
  by `rest_pose_sd_deg` from rest to rest, since the foot never lands in quite the same place;
- lift 0.8-1.5 s, quintic (minimum-jerk-like) in hip and knee; the knee reaches its angle at 80 %
  of the lift, so the shank first swings back; hip flexion 60-100 deg (a session habit +-3 deg per
  rep), shank angle within +-30 deg of vertical, knee flexion = hip - shank;
- hold 10.5-15 s (early drop 3-7 s, balance loss 4-8 s before the loss). Added to the joints:
  linear sag of the hip (0.03-0.15 deg/s, loaded 0.12-0.35); slow sway, band-limited around
  0.05-1 Hz, SD 0.25-0.6 deg (hip), 0.15-0.4 (knee), 0.15-0.35 (roll), 1.7x loaded; tremor,
  narrow-band noise at 8.5-11.5 Hz with 0.35 deg/s RMS on the hip (knee 0.6x, roll 0.5x)
  unloaded, 4.5-6.5 Hz and 1.2 deg/s loaded, its amplitude growing 1.1-1.5x (loaded 1.5-2.5x)
  over the hold; brief balance corrections at 0.06/s (loaded 0.10/s): 0.25-0.4 s excursions of
  1.5-4 deg (hip) and 0.5-2 deg (roll) that return. Whole-body sway is 0.08 deg SD per axis on
  two legs and 0.2 (loaded 0.3) on one leg;
- lowering 0.8-1.3 s (loaded 1.0-1.5 s, carefully), the hip first, the knee straightening last;
- balance loss: mid-hold a 6-12 deg roll excursion of the leg, a 1-2 deg lurch of the body and a
  0.45-0.7 s drop of the foot to the ground;
- aborted: either the leg goes up to 50-100 % of the planned pose and straight back down, or it
  reaches the pose and keeps moving (8-15 deg swings every 0.6-1.0 s, 3-5 of them) before coming
  down; it is never still.
Loaded (stage 4) also lifts about 7 deg lower.

Sensor model
------------
The sensor sits on the shank (`ankle`: `sensor_above_ankle_m` above the ankle bone) or on the
thigh (`thigh`: `sensor_above_knee_m` above the knee), on the lateral side, with a constant
arbitrary strap rotation (uniformly random unless given). Accelerometer = specific force of the
sensor point (its analytic second derivative minus gravity) in the sensor frame; gyroscope = the
segment's angular velocity in the sensor frame. All joint trajectories are built from quintic
Hermite pieces and band-limited random signals whose derivatives are exact, so the accelerations
are analytic, not finite differences. Then (unless `sensor_errors=False`): per-axis scale error,
constant bias, white noise (given per sample at 100 Hz; scaled with sqrt(rate/100)), clipping and
int16 quantisation at the configured range, a sensor clock running at (1 + drift_ppm 1e-6)
and lost BLE notifications (whole packets of `packet_samples` samples, seen as `seq` gaps).

Time base: `t_s` is the sensor's own clock, `seq / rate_hz` exactly. Because of the clock drift
the true time of sample k is `t_s / (1 + drift_ppm 1e-6)`. Every time in the truth is on the
`t_s` time base.

Ground truth (`SimResult.truth`, format "holdmon.truth/1")
-----------------------------------------------------------
Per rep (`index` counts from 1):
- `lift_start_s`: the joints start to move from the standing pose.
- `hold_start_s`: the lift motion ends (hip and knee reach the hold pose).
- `hold_end_s`: the lowering starts (for balance loss: the excursion starts).
- `lower_end_s`: the foot is back on the ground (the standing pose is reached).
- `hold_duration_s` = hold_end_s - hold_start_s. Aborted reps: hold_start_s, hold_end_s and all hold
  metrics are null, hold_duration_s is 0.
- Inclination: the angle between the sensor segment's up vector in the standing pose of the first
  rest (without sway) and its current up vector, evaluated at every sample instant (including
  samples later lost in transmission). Over the hold window [hold_start_s + settle_s, hold_end_s]:
  `hold_angle_mean_deg` (mean), `peak_angle_deg` (max), `sway_sd_deg` (population SD about the
  mean, not detrended), `sag_deg_per_s` (slope of a least-squares line against t_s).
  Aborted reps: `peak_angle_deg` is the max over [lift_start_s, lower_end_s].
- `ankle_rise_cm` / `ankle_forward_cm`: displacement of the ankle bone (end of the shank), up (z)
  and forward (x), from its position at lift_start_s, averaged over
  [hold_start_s + 1.0, hold_start_s + 1.5]; `hip_flexion_deg` / `knee_flexion_deg`: mean joint
  angles over the same window: joint angles (hip flexion relative to the pelvis, i.e. without
  body sway), not changes from standing; the standing pose has a small hip angle and knee flexion
  of its own (`subject.stand_hip_deg`, N(0, 1) deg, and `subject.stand_knee_deg`, 0-5 deg).
- `early_drop`: the hold ended before `min_hold_s` (10 s), whatever the reason (also for balance
  loss). `balance_loss`, `aborted`: the rep was generated as such. `corrections`: number of brief
  balance corrections inside the hold.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
from scipy.fft import next_fast_len

from sensor.errors import ConfigError
from sensor.types import RecordingMeta, Samples

TRUTH_FORMAT = "holdmon.truth/1"
GRAVITY_MPS2 = 9.80665
SETTLE_S = 1.0
_BLOCK = 65536  # samples per block of the kinematics
ANKLE_WINDOW_S = (1.0, 1.5)


@dataclass
class SimConfig:
    """Everything that shapes a simulated session. Defaults give a realistic stage 3 session.

    Rep selection (`early_drop_reps`, `balance_loss_reps`, `aborted_reps`, `heavy_sag_reps`): 1-based
    rep indices. Heavy sag is never drawn at random. When all four are None each rep's kind is drawn at random with the `*_rate`s; when any is
    given, exactly the listed reps are special (None then counts as none).
    Noise figures are per sample at 100 Hz and scale with sqrt(rate_hz / 100).
    """

    reps: int = 5
    duration_s: float | None = None  # if given: as many reps as fit, `reps` is ignored
    placement: str = "ankle"
    side: str = "left"
    loaded: bool = False
    load_kg: float = 1.5  # used when loaded
    rate_hz: float = 100.0
    seed: int = 0
    # rep kinds
    early_drop_reps: tuple[int, ...] | None = None
    balance_loss_reps: tuple[int, ...] | None = None
    aborted_reps: tuple[int, ...] | None = None
    heavy_sag_reps: tuple[int, ...] | None = None  # only when listed: full hold, hip sags 1-2 deg/s
    early_drop_rate: float = 0.10
    balance_loss_rate: float = 0.05
    aborted_rate: float = 0.05
    min_hold_s: float = 10.0
    # body
    thigh_length_m: float = 0.43
    shank_length_m: float = 0.43
    ankle_height_m: float = 0.08
    sensor_above_ankle_m: float = 0.08
    sensor_above_knee_m: float = 0.07
    sensor_lateral_m: float = 0.045
    rest_pose_sd_deg: float = 0.3  # posture change between rests (hip and knee)
    stance_sway_sd_deg: float = 0.08  # whole-body sway standing on both legs (each axis)
    single_leg_sway_sd_deg: float | None = None  # on one leg; None: 0.2 unloaded, 0.3 loaded
    corrections_per_s: float | None = None  # None: 0.06 unloaded, 0.10 loaded
    # sensor
    strap_quat_wxyz: tuple[float, float, float, float] | None = None  # None: random
    sensor_errors: bool = True
    acc_noise_mps2: float = 0.02
    gyr_noise_radps: float = 0.005
    acc_bias_max_mps2: float = 0.05
    gyr_bias_max_dps: float = 0.5
    scale_error_max: float = 0.01
    acc_range_g: float = 8.0
    gyr_range_dps: float = 2000.0
    clock_drift_ppm: float | None = None  # None: uniform in +-50 ppm
    lost_packet_rate: float = 0.002
    packet_samples: int | None = None  # None: about one packet per 50 ms, 4-10 samples


@dataclass
class SimResult:
    """meta/samples as a recording would hold them; truth as documented above.

    trace: per-sample truth at every generated instant (also those lost in transmission):
    "t_s" (n,), "angle_deg" (n,) true inclination of the sensor segment, "hip_flexion_deg" (n,),
    "knee_flexion_deg" (n,).
    """

    meta: RecordingMeta
    samples: Samples
    truth: dict
    trace: dict = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------
# smooth signals: arrays of shape (3, n) = value, first and second time derivative


def _hermite(t_knots: np.ndarray, knots: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Piecewise quintic Hermite through knots (m, 3) = (value, slope, curvature) at t_knots (m,).

    Returns (3, len(x)); constant (first/last value) outside the knot range.
    """
    x = np.asarray(x, dtype=float)
    out = np.zeros((3, x.size))
    if len(t_knots) == 1:
        out[0] = knots[0, 0]
        return out
    if x.size > _BLOCK:  # bound the temporaries on long sessions
        for a in range(0, x.size, _BLOCK):
            out[:, a:a + _BLOCK] = _hermite(t_knots, knots, x[a:a + _BLOCK])
        return out
    i = np.clip(np.searchsorted(t_knots, x, side="right") - 1, 0, len(t_knots) - 2)
    h = t_knots[i + 1] - t_knots[i]
    u = np.clip((x - t_knots[i]) / h, 0.0, 1.0)
    p0, v0, a0 = knots[i, 0], knots[i, 1] * h, knots[i, 2] * h * h
    p1, v1, a1 = knots[i + 1, 0], knots[i + 1, 1] * h, knots[i + 1, 2] * h * h
    dp = p1 - p0
    c = (
        p0,
        v0,
        0.5 * a0,
        10 * dp - 6 * v0 - 4 * v1 - 1.5 * a0 + 0.5 * a1,
        -15 * dp + 8 * v0 + 7 * v1 + 1.5 * a0 - a1,
        6 * dp - 3 * (v0 + v1) - 0.5 * a0 + 0.5 * a1,
    )
    out[0] = c[0] + u * (c[1] + u * (c[2] + u * (c[3] + u * (c[4] + u * c[5]))))
    out[1] = (c[1] + u * (2 * c[2] + u * (3 * c[3] + u * (4 * c[4] + u * 5 * c[5])))) / h
    out[2] = (2 * c[2] + u * (6 * c[3] + u * (12 * c[4] + u * 20 * c[5]))) / (h * h)
    outside = (x < t_knots[0]) | (x > t_knots[-1])
    out[1:, outside] = 0.0
    return out


def _mul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Product of two (3, n) signals with its derivatives (product rule)."""
    return np.stack([a[0] * b[0], a[1] * b[0] + a[0] * b[1], a[2] * b[0] + 2 * a[1] * b[1] + a[0] * b[2]])


def _step(x: np.ndarray, t0: float, t1: float, v0: float = 0.0, v1: float = 1.0) -> np.ndarray:
    """Smooth (C2) step from v0 before t0 to v1 after t1, (3, n)."""
    return _hermite(np.array([t0, t1]), np.array([[v0, 0, 0], [v1, 0, 0]], float), x)


def _bump(x: np.ndarray, t0: float, dur: float, amp: float) -> np.ndarray:
    """Smooth excursion 0 -> amp -> 0 over [t0, t0 + dur], (3, n)."""
    knots = np.array([[0, 0, 0], [amp, 0, 0], [0, 0, 0]], float)
    return _hermite(np.array([t0, t0 + dur / 2, t0 + dur]), knots, x)


def _band_noise(rng: np.random.Generator, n: int, dt: float, shape, norm: str = "value") -> np.ndarray:
    """Band-limited Gaussian noise (3, n) with exact derivatives, synthesised in the frequency domain.

    shape(f_hz) -> amplitude response; content above 0.45 * rate is removed. norm="value" scales
    to unit SD of the value, norm="rate" to unit RMS of the first derivative.
    """
    m = next_fast_len(max(int(n), 8), real=True)  # synthesise a little longer, keep the first n
    f = np.fft.rfftfreq(m, dt)
    amp = np.asarray(shape(f), float) * (f < 0.45 / dt)
    amp[0] = 0.0
    spec = (rng.standard_normal(f.size) + 1j * rng.standard_normal(f.size)) * amp
    w = 2 * np.pi * f
    sig = np.stack([np.fft.irfft(spec, m), np.fft.irfft(1j * w * spec, m), np.fft.irfft(-w * w * spec, m)])
    sig = sig[:, :n]
    scale = np.std(sig[0]) if norm == "value" else np.sqrt(np.mean(sig[1] ** 2))
    return sig / (scale if scale > 0 else 1.0)


def _lowpass_shape(fc_hz: float, f_hp_hz: float):
    def shape(f):
        hp = (f / f_hp_hz) ** 2 / (1 + (f / f_hp_hz) ** 2)
        return hp * np.exp(-0.5 * (f / fc_hz) ** 2)
    return shape


def _band_shape(f0_hz: float, bw_hz: float):
    return lambda f: np.exp(-0.5 * ((f - f0_hz) / bw_hz) ** 2)


# ---------------------------------------------------------------------------------------------
# rotations R = Rx(phi) @ Ry(-theta), applied without building (n, 3, 3) matrices


class _Link:
    """Orientation, angular velocity and angular acceleration (world frame) of one rigid link."""

    def __init__(self, phi: np.ndarray, theta: np.ndarray) -> None:
        self.cp, self.sp = np.cos(phi[0]), np.sin(phi[0])
        self.ct, self.st = np.cos(theta[0]), np.sin(theta[0])
        pd, pdd, td, tdd = phi[1], phi[2], theta[1], theta[2]
        self.omega = np.stack([pd, -td * self.cp, -td * self.sp], axis=1)
        self.alpha = np.stack(
            [pdd, -tdd * self.cp + td * pd * self.sp, -tdd * self.sp - td * pd * self.cp], axis=1
        )

    def apply(self, v: np.ndarray) -> np.ndarray:
        """R @ v for v (3,) or (n, 3) -> (n, 3)."""
        vx, vy, vz = np.moveaxis(np.broadcast_to(v, (self.cp.size, 3)), 1, 0)
        cp, sp, ct, st = self.cp, self.sp, self.ct, self.st
        return np.stack(
            [ct * vx - st * vz, -sp * st * vx + cp * vy - sp * ct * vz, cp * st * vx + sp * vy + cp * ct * vz],
            axis=1,
        )

    def apply_t(self, w: np.ndarray) -> np.ndarray:
        """R.T @ w for w (n, 3) -> (n, 3)."""
        wx, wy, wz = w[:, 0], w[:, 1], w[:, 2]
        cp, sp, ct, st = self.cp, self.sp, self.ct, self.st
        return np.stack(
            [ct * wx - sp * st * wy + cp * st * wz, cp * wy + sp * wz, -st * wx - sp * ct * wy + cp * ct * wz],
            axis=1,
        )

    def point_acc(self, offset_local: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(acceleration (n,3) of a point fixed in the link relative to its origin, world vector r (n,3))."""
        r = self.apply(offset_local)
        acc = np.cross(self.alpha, r) + np.cross(self.omega, np.cross(self.omega, r))
        return acc, r


def _quat_to_matrix(q: np.ndarray) -> np.ndarray:
    w, x, y, z = q / np.linalg.norm(q)
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
            [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
            [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
        ]
    )


# ---------------------------------------------------------------------------------------------
# session plan


@dataclass
class _Rep:
    """One rep's plan on the true time axis (seconds); angles in degrees."""

    index: int
    kind: str  # normal | early_drop | balance_loss | heavy_sag | aborted_updown | aborted_moving
    lift_start: float
    hold_start: float | None
    hold_end: float | None
    lower_start: float
    lower_end: float
    hip_knots: list = field(default_factory=list)  # (t, deg, deg/s, deg/s^2)
    knee_knots: list = field(default_factory=list)
    sway_sd_deg: tuple[float, float, float] = (0.0, 0.0, 0.0)  # hip, knee, roll
    tremor_hz: float = 10.0
    tremor_rms_dps: float = 0.0
    tremor_growth: float = 1.0
    sag_dps: float = 0.0
    corrections: list = field(default_factory=list)  # (t0, dur, hip_deg, roll_deg)
    roll_bump: tuple[float, float, float] | None = None  # (t0, dur, deg)
    body_bump: tuple[float, float, float] | None = None


def _rep_kinds(cfg: SimConfig, n_reps: int, rng: np.random.Generator) -> list[str]:
    explicit = (cfg.early_drop_reps, cfg.balance_loss_reps, cfg.aborted_reps, cfg.heavy_sag_reps)
    u = rng.random(n_reps)
    kinds = []
    for i in range(n_reps):
        k = "normal"
        if any(e is not None for e in explicit):
            if cfg.early_drop_reps and i + 1 in cfg.early_drop_reps:
                k = "early_drop"
            elif cfg.balance_loss_reps and i + 1 in cfg.balance_loss_reps:
                k = "balance_loss"
            elif cfg.aborted_reps and i + 1 in cfg.aborted_reps:
                k = "aborted"
            elif cfg.heavy_sag_reps and i + 1 in cfg.heavy_sag_reps:
                k = "heavy_sag"
        else:
            edges = np.cumsum([cfg.early_drop_rate, cfg.balance_loss_rate, cfg.aborted_rate])
            k = ["early_drop", "balance_loss", "aborted", "normal"][int(np.searchsorted(edges, u[i], "right"))]
        kinds.append(k)
    return kinds


def _draw_session(cfg: SimConfig, rng: np.random.Generator) -> dict:
    """Per-session habits of the simulated person."""
    load = cfg.loaded
    return {
        "hip_target_deg": rng.uniform(70, 95) - (7.0 if load else 0.0),
        "shank_target_deg": rng.uniform(-20, 15),
        "stand_knee_deg": rng.uniform(0, 5),
        "stand_hip_deg": rng.normal(0, 1.0),
        "tremor_rms_dps": (1.2 if load else 0.35) * rng.uniform(0.7, 1.3),
        "tremor_hz": rng.uniform(4.5, 6.5) if load else rng.uniform(8.5, 11.5),
        "sway_scale": (1.7 if load else 1.0) * rng.uniform(0.8, 1.25),
        "corrections_per_s": (cfg.corrections_per_s if cfg.corrections_per_s is not None
                              else (0.10 if load else 0.06)),
    }


def _plan(cfg: SimConfig, rng: np.random.Generator) -> tuple[list[_Rep], float, dict]:
    """Rep plans, total duration (true seconds) and session habits."""
    hab = _draw_session(cfg, rng)
    n_max = int(cfg.duration_s / 10) + 2 if cfg.duration_s is not None else cfg.reps
    kinds = _rep_kinds(cfg, n_max, rng)
    rest = lambda: (hab["stand_hip_deg"] + rng.normal(0, cfg.rest_pose_sd_deg),
                    hab["stand_knee_deg"] + rng.normal(0, cfg.rest_pose_sd_deg))
    pose = (hab["stand_hip_deg"], hab["stand_knee_deg"])
    t = rng.uniform(3.0, 6.0)
    reps: list[_Rep] = []
    for i in range(n_max):
        next_pose = rest()
        rep = _plan_rep(cfg, hab, rng, i + 1, kinds[i], t, pose, next_pose)
        tail = rng.uniform(2.0, 6.0)
        if cfg.duration_s is not None and rep.lower_end + 2.0 > cfg.duration_s:
            break
        reps.append(rep)
        pose = next_pose
        t = rep.lower_end + tail
    if not reps:
        raise ConfigError(f"duration_s={cfg.duration_s} is too short for one rep (needs about 25 s)")
    end = cfg.duration_s if cfg.duration_s is not None else reps[-1].lower_end + rng.uniform(2.0, 4.0)
    return reps, float(end), hab


def _plan_rep(cfg, hab, rng, index, kind, t0, pose, next_pose) -> _Rep:
    load = cfg.loaded
    hip_t = float(np.clip(hab["hip_target_deg"] + rng.normal(0, 3), 55 if load else 60, 100))
    shank_t = float(np.clip(hab["shank_target_deg"] + rng.normal(0, 3), -30, 30))
    knee_t = hip_t - shank_t
    t_lift = rng.uniform(0.8, 1.5)
    t_low = rng.uniform(1.0, 1.5) if load else rng.uniform(0.8, 1.3)
    sway = tuple(hab["sway_scale"] * rng.uniform(lo, hi) for lo, hi in ((0.25, 0.6), (0.15, 0.4), (0.15, 0.35)))
    sag = rng.uniform(0.12, 0.35) if load else rng.uniform(0.03, 0.15)
    tremor = dict(
        tremor_hz=float(np.clip(hab["tremor_hz"] + rng.normal(0, 0.3), 4.0, 12.0)),
        tremor_rms_dps=hab["tremor_rms_dps"] * rng.uniform(0.85, 1.15),
        tremor_growth=rng.uniform(1.5, 2.5) if load else rng.uniform(1.1, 1.5),
    )
    if kind == "aborted":
        kind = "aborted_updown" if rng.random() < 0.5 else "aborted_moving"
        return _plan_aborted(rng, index, kind, t0, pose, next_pose, hip_t, knee_t, t_lift, t_low, sway, tremor)
    if kind == "heavy_sag":
        sag = rng.uniform(1.0, 2.0)
    hold = {"normal": (10.5, 15.0), "heavy_sag": (10.5, 15.0), "early_drop": (3.0, 7.0),
            "balance_loss": (4.0, 8.0)}[kind]
    hold_s = rng.uniform(*hold)
    hs = t0 + t_lift
    he = hs + hold_s
    if kind == "balance_loss":
        t_low = rng.uniform(0.45, 0.7)
    le = he + t_low
    hip_end = hip_t - sag * hold_s
    rep = _Rep(index, kind, t0, hs, he, he, le, sway_sd_deg=sway, sag_dps=sag, **tremor)
    rep.hip_knots = [(t0, pose[0], 0, 0), (hs, hip_t, -sag, 0), (he, hip_end, -sag, 0), (le, next_pose[0], 0, 0)]
    rep.knee_knots = [(t0, pose[1], 0, 0), (t0 + 0.8 * t_lift, knee_t, 0, 0),
                      (he + 0.25 * t_low, knee_t, 0, 0), (le, next_pose[1], 0, 0)]
    rep.corrections = _plan_corrections(hab["corrections_per_s"], hs, he, rng)
    if kind == "balance_loss":
        rep.roll_bump = (he, t_low, float(rng.choice([-1, 1]) * rng.uniform(6, 12)))
        rep.body_bump = (he, 1.5, float(rng.choice([-1, 1]) * rng.uniform(1.0, 2.0)))
    return rep


def _plan_corrections(rate_per_s: float, hs: float, he: float, rng) -> list:
    """Brief balance corrections inside [hs + 1.5, he - 1.5], at least 1.5 s apart."""
    out: list = []
    t = hs + 1.5 + rng.exponential(1 / rate_per_s) if rate_per_s > 0 else np.inf
    while t + 0.4 < he - 1.5:
        sign = -1.0 if rng.random() < 0.7 else 1.0
        out.append((float(t), rng.uniform(0.25, 0.4), sign * rng.uniform(1.5, 4.0),
                    float(rng.choice([-1, 1])) * rng.uniform(0.5, 2.0)))
        t += 1.5 + rng.exponential(1 / rate_per_s)
    return out


def _plan_aborted(rng, index, kind, t0, pose, next_pose, hip_t, knee_t, t_lift, t_low, sway, tremor) -> _Rep:
    if kind == "aborted_updown":
        peak = t0 + t_lift
        hip_p = hip_t * rng.uniform(0.5, 1.0)
        knee_p = knee_t * rng.uniform(0.5, 1.0)
        le = peak + t_low
        rep = _Rep(index, kind, t0, None, None, peak, le, sway_sd_deg=sway, **tremor)
        curv = -2.0 / (t_lift * t_low)
        rep.hip_knots = [(t0, pose[0], 0, 0), (peak, hip_p, 0, curv * hip_p), (le, next_pose[0], 0, 0)]
        rep.knee_knots = [(t0, pose[1], 0, 0), (peak - 0.1, knee_p, 0, curv * knee_p), (le, next_pose[1], 0, 0)]
        return rep
    # keeps moving: after the lift the leg wanders by 8-15 deg every 0.6-1.0 s, then comes down
    n_w = int(rng.integers(3, 6))
    tk = t0 + t_lift + np.cumsum(rng.uniform(0.6, 1.0, n_w))
    signs = np.where(np.arange(n_w) % 2 == 0, -1.0, 1.0)
    hip_v = hip_t + signs * rng.uniform(8, 15, n_w)
    knee_v = knee_t - signs * rng.uniform(8, 15, n_w)
    ls = float(tk[-1])
    le = ls + t_low
    t_all = np.concatenate([[t0 + t_lift], tk])
    rep = _Rep(index, kind, t0, None, None, ls, le, sway_sd_deg=sway, **tremor)
    hip_all = np.concatenate([[hip_t], hip_v])
    knee_all = np.concatenate([[knee_t], knee_v])
    rep.hip_knots = [(t0, pose[0], 0, 0)] + _catmull(t_all, hip_all) + [(le, next_pose[0], 0, 0)]
    rep.knee_knots = [(t0, pose[1], 0, 0)] + _catmull(t_all, knee_all) + [(le, next_pose[1], 0, 0)]
    return rep


def _catmull(t: np.ndarray, v: np.ndarray) -> list:
    """Knots through (t, v) with finite-difference slopes (never zero at once for hip and knee)."""
    slope = np.gradient(v, t)
    return [(float(a), float(b), float(s), 0.0) for a, b, s in zip(t, v, slope)]


# ---------------------------------------------------------------------------------------------
# motion on the sample grid


def _joint_signals(reps: list[_Rep], tau: np.ndarray, dt: float, rng, cfg: SimConfig, hab: dict) -> dict:
    """Joint and body-sway angles (rad) on the true-time grid tau, each (3, n)."""
    n = tau.size
    deg = np.pi / 180
    hip_knots = [(0.0, hab["stand_hip_deg"], 0, 0)] + [k for r in reps for k in r.hip_knots]
    knee_knots = [(0.0, hab["stand_knee_deg"], 0, 0)] + [k for r in reps for k in r.knee_knots]
    sig = {
        "hip": _hermite(*_knot_arrays(hip_knots), tau) * deg,
        "knee": _hermite(*_knot_arrays(knee_knots), tau) * deg,
        "roll": np.zeros((3, n)),
    }
    on_one_leg = np.zeros((3, n))  # 1 while standing on one leg
    body_extra = {"ap": np.zeros((3, n)), "ml": np.zeros((3, n))}
    for rep in reps:
        sl = _window(tau, rep.lift_start - 1.0, rep.lower_end + 2.0)
        x = tau[sl]
        env = _envelope(rep, x)
        on_one_leg[:, sl] += env
        _add_perturbations(sig, sl, x, env, rep, dt, rng)
        if rep.body_bump is not None:
            body_extra["ml"][:, sl] += _bump(x, *rep.body_bump) * deg
    stance_sd = cfg.stance_sway_sd_deg * deg
    single = cfg.single_leg_sway_sd_deg if cfg.single_leg_sway_sd_deg is not None else (0.3 if cfg.loaded else 0.2)
    single_sd = single * deg
    sd = (single_sd - stance_sd) * on_one_leg
    sd[0] += stance_sd
    for axis in ("ap", "ml"):
        noise = _band_noise(rng, n, dt, _lowpass_shape(0.3, 0.03))
        sig["body_" + axis] = _mul(noise, sd) + body_extra[axis]
    return sig


def _knot_arrays(knots: list) -> tuple[np.ndarray, np.ndarray]:
    arr = np.array(knots, float)
    return arr[:, 0], arr[:, 1:]


def _window(tau: np.ndarray, t0: float, t1: float) -> slice:
    return slice(int(np.searchsorted(tau, t0)), int(np.searchsorted(tau, t1, "right")))


def _envelope(rep: _Rep, x: np.ndarray) -> np.ndarray:
    """1 from the end of the lift to the start of the lowering, smooth ramps, 0 outside the rep."""
    up_end = rep.hold_start if rep.hold_start is not None else rep.hip_knots[1][0]
    return _mul(_step(x, rep.lift_start, up_end), _step(x, rep.lower_start, rep.lower_end, 1.0, 0.0))


def _add_perturbations(sig: dict, sl: slice, x: np.ndarray, env: np.ndarray, rep: _Rep, dt: float, rng) -> None:
    """Sway, tremor, corrections and balance-loss excursion of one rep, added in place (rad)."""
    deg = np.pi / 180
    hs = rep.hold_start if rep.hold_start is not None else rep.lift_start
    he = rep.hold_end if rep.hold_end is not None else rep.lower_start
    growth = _step(x, hs, max(he, hs + 1e-3), 1.0, rep.tremor_growth)
    tremor_weights = {"hip": 1.0, "knee": 0.6, "roll": 0.5}
    for dof, sway_sd in zip(("hip", "knee", "roll"), rep.sway_sd_deg):
        sway = _band_noise(rng, x.size, dt, _lowpass_shape(0.5, 0.05)) * (sway_sd * deg)
        tremor = _band_noise(rng, x.size, dt, _band_shape(rep.tremor_hz, 0.8), norm="rate")
        tremor = _mul(tremor * (rep.tremor_rms_dps * tremor_weights[dof] * deg), growth)
        sig[dof][:, sl] += _mul(sway + tremor, env)
    for t0, dur, hip_deg, roll_deg in rep.corrections:
        sig["hip"][:, sl] += _bump(x, t0, dur, hip_deg * deg)
        sig["roll"][:, sl] += _bump(x, t0, dur, roll_deg * deg)
    if rep.roll_bump is not None:
        t0, dur, amp = rep.roll_bump
        sig["roll"][:, sl] += _bump(x, t0, dur, amp * deg)


def _segments(sig: dict) -> tuple[_Link, _Link, _Link]:
    """Body (pivot -> hip), thigh and shank links from the angle signals (rad)."""
    roll = sig["roll"] + sig["body_ml"]
    body = _Link(sig["body_ml"], sig["body_ap"])
    thigh = _Link(roll, sig["hip"] + sig["body_ap"])
    shank = _Link(roll, sig["hip"] - sig["knee"] + sig["body_ap"])
    return body, thigh, shank


def _sensor_kinematics(cfg: SimConfig, sig: dict) -> tuple[np.ndarray, np.ndarray, _Link]:
    """World-frame acceleration (n,3) and segment-frame angular velocity (n,3) of the sensor."""
    lat = cfg.sensor_lateral_m * (1.0 if cfg.side == "left" else -1.0)
    hip_h = cfg.thigh_length_m + cfg.shank_length_m + cfg.ankle_height_m
    body, thigh, shank = _segments(sig)
    acc = body.point_acc(np.array([0.0, 0.0, hip_h]))[0]
    if cfg.placement == "ankle":
        acc += thigh.point_acc(np.array([0.0, 0.0, -cfg.thigh_length_m]))[0]
        acc += shank.point_acc(np.array([0.0, lat, -(cfg.shank_length_m - cfg.sensor_above_ankle_m)]))[0]
        seg = shank
    else:
        acc += thigh.point_acc(np.array([0.0, lat, -(cfg.thigh_length_m - cfg.sensor_above_knee_m)]))[0]
        seg = thigh
    return acc, seg.apply_t(seg.omega), seg


# ---------------------------------------------------------------------------------------------
# sensor errors


def _packet_samples(cfg: SimConfig) -> int:
    if cfg.packet_samples is not None:
        return int(cfg.packet_samples)
    return int(np.clip(round(cfg.rate_hz / 20), 4, 10))


def _quantise(x: np.ndarray, full_scale: float) -> np.ndarray:
    lsb = full_scale / 32768.0
    return np.clip(np.round(x / lsb), -32768, 32767) * lsb


def _sensor_errors(cfg: SimConfig, acc: np.ndarray, gyr: np.ndarray, rng) -> tuple[np.ndarray, np.ndarray, dict]:
    noise_scale = np.sqrt(cfg.rate_hz / 100.0)
    acc_scale = 1 + rng.uniform(-cfg.scale_error_max, cfg.scale_error_max, 3)
    gyr_scale = 1 + rng.uniform(-cfg.scale_error_max, cfg.scale_error_max, 3)
    acc_bias = rng.uniform(-cfg.acc_bias_max_mps2, cfg.acc_bias_max_mps2, 3)
    gyr_bias = np.deg2rad(rng.uniform(-cfg.gyr_bias_max_dps, cfg.gyr_bias_max_dps, 3))
    acc = acc * acc_scale + acc_bias + rng.standard_normal(acc.shape) * cfg.acc_noise_mps2 * noise_scale
    gyr = gyr * gyr_scale + gyr_bias + rng.standard_normal(gyr.shape) * cfg.gyr_noise_radps * noise_scale
    acc = _quantise(acc, cfg.acc_range_g * GRAVITY_MPS2)
    gyr = _quantise(gyr, np.deg2rad(cfg.gyr_range_dps))
    info = {"acc_scale": acc_scale.tolist(), "gyr_scale": gyr_scale.tolist(),
            "acc_bias_mps2": acc_bias.tolist(), "gyr_bias_radps": gyr_bias.tolist()}
    return acc, gyr, info


def _kept_mask(n: int, packet: int, rate: float, rng) -> np.ndarray:
    """Samples that arrive: whole packets are lost, in runs of 1-3 packets; the first packet arrives."""
    n_packets = -(-n // packet)
    lost = np.zeros(n_packets, bool)
    starts = np.flatnonzero(rng.random(n_packets) < rate)
    runs = rng.choice([1, 2, 3], size=starts.size, p=[0.7, 0.2, 0.1])
    for s, r in zip(starts, runs):
        lost[s:s + r] = True
    lost[0] = False
    return ~np.repeat(lost, packet)[:n]


# ---------------------------------------------------------------------------------------------
# ground truth


def _inclination_deg(up: np.ndarray, ref: np.ndarray) -> np.ndarray:
    cross = np.linalg.norm(np.cross(up, ref), axis=1)
    return np.degrees(np.arctan2(cross, up @ ref))


def _segment_up(link: _Link) -> np.ndarray:
    return np.stack([-link.st, -link.sp * link.ct, link.cp * link.ct], axis=1)


def _rep_truth(rep: _Rep, cfg: SimConfig, sig: dict, t_s: np.ndarray, clock: float, incl: np.ndarray) -> dict:
    """Truth entry of one rep (times on the t_s base)."""
    ts = lambda t: None if t is None else round(t * clock, 6)
    out = {
        "index": rep.index,
        "lift_start_s": ts(rep.lift_start),
        "hold_start_s": ts(rep.hold_start),
        "hold_end_s": ts(rep.hold_end),
        "lower_end_s": ts(rep.lower_end),
        "hold_duration_s": 0.0 if rep.hold_start is None else round((rep.hold_end - rep.hold_start) * clock, 6),
    }
    keys = ("hold_angle_mean_deg", "peak_angle_deg", "sway_sd_deg", "sag_deg_per_s", "ankle_rise_cm",
            "ankle_forward_cm", "hip_flexion_deg", "knee_flexion_deg")
    out.update(dict.fromkeys(keys))
    if rep.hold_start is None:
        m = (t_s >= out["lift_start_s"]) & (t_s <= out["lower_end_s"])
        out["peak_angle_deg"] = round(float(incl[m].max()), 4)
    else:
        m = (t_s >= out["hold_start_s"] + SETTLE_S) & (t_s <= out["hold_end_s"])
        a, t = incl[m], t_s[m]
        out["hold_angle_mean_deg"] = round(float(a.mean()), 4)
        out["peak_angle_deg"] = round(float(a.max()), 4)
        out["sway_sd_deg"] = round(float(a.std()), 4)
        out["sag_deg_per_s"] = round(float(np.polyfit(t - t[0], a, 1)[0]), 5)
        out.update(_ankle_truth(rep, cfg, sig, t_s, clock))
    hold = out["hold_duration_s"]
    out.update({
        "early_drop": rep.hold_start is not None and hold < cfg.min_hold_s,
        "balance_loss": rep.kind == "balance_loss",
        "aborted": rep.kind.startswith("aborted"),
        "corrections": len(rep.corrections),
        "kind": rep.kind,
        "tremor_hz": round(rep.tremor_hz, 3),
        "sag_hip_deg_per_s": round(-rep.sag_dps, 4),
    })
    return out


def _ankle_truth(rep: _Rep, cfg: SimConfig, sig: dict, t_s: np.ndarray, clock: float) -> dict:
    """Ankle-bone displacement and joint angles averaged over the ankle window."""
    hs = rep.hold_start * clock
    m = (t_s >= hs + ANKLE_WINDOW_S[0]) & (t_s <= hs + ANKLE_WINDOW_S[1])
    i0 = int(np.searchsorted(t_s, rep.lift_start * clock))
    idx = np.concatenate([[i0], np.flatnonzero(m)])
    sub = {k: v[:, idx] for k, v in sig.items()}
    pos = _ankle_position(cfg, sub)
    disp = pos[1:].mean(axis=0) - pos[0]
    return {
        "ankle_rise_cm": round(float(disp[2] * 100), 3),
        "ankle_forward_cm": round(float(disp[0] * 100), 3),
        "hip_flexion_deg": round(float(np.degrees(sub["hip"][0, 1:]).mean()), 3),
        "knee_flexion_deg": round(float(np.degrees(sub["knee"][0, 1:]).mean()), 3),
    }


def _ankle_position(cfg: SimConfig, sig: dict) -> np.ndarray:
    """World position (n,3) of the ankle bone relative to the stance-ankle pivot."""
    hip_h = cfg.thigh_length_m + cfg.shank_length_m + cfg.ankle_height_m
    body, thigh, shank = _segments(sig)
    return (body.apply(np.array([0.0, 0.0, hip_h])) + thigh.apply(np.array([0.0, 0.0, -cfg.thigh_length_m]))
            + shank.apply(np.array([0.0, 0.0, -cfg.shank_length_m])))


# ---------------------------------------------------------------------------------------------


def _standing_up(cfg: SimConfig, hab: dict) -> np.ndarray:
    """Up vector (3,) of the sensor segment in the standing pose of the first rest, without sway."""
    ref_sig = {k: np.zeros((3, 1)) for k in ("hip", "knee", "roll", "body_ap", "body_ml")}
    ref_sig["hip"][0, 0] = np.radians(hab["stand_hip_deg"])
    ref_sig["knee"][0, 0] = np.radians(hab["stand_knee_deg"])
    ref_link = _segments(ref_sig)[1 if cfg.placement == "thigh" else 2]
    return _segment_up(ref_link)[0]


def _ideal_sensor(cfg: SimConfig, sig: dict, strap: np.ndarray, ref_up: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Error-free accelerometer (n,3), gyroscope (n,3) in the sensor frame and true inclination (n,).

    Computed in blocks to bound memory on long sessions.
    """
    n = sig["hip"].shape[1]
    acc, gyr, incl = np.empty((n, 3)), np.empty((n, 3)), np.empty(n)
    gravity = np.array([0.0, 0.0, GRAVITY_MPS2])
    for a in range(0, n, _BLOCK):
        b = min(a + _BLOCK, n)
        acc_w, gyr_seg, seg = _sensor_kinematics(cfg, {k: v[:, a:b] for k, v in sig.items()})
        acc[a:b] = seg.apply_t(acc_w + gravity) @ strap
        gyr[a:b] = gyr_seg @ strap
        incl[a:b] = _inclination_deg(_segment_up(seg), ref_up)
    return acc, gyr, incl


def _validate(cfg: SimConfig) -> None:
    if cfg.placement not in ("ankle", "thigh"):
        raise ConfigError(f"placement must be 'ankle' or 'thigh', got {cfg.placement!r}")
    if cfg.side not in ("left", "right"):
        raise ConfigError(f"side must be 'left' or 'right', got {cfg.side!r}")
    if not 25.0 <= cfg.rate_hz <= 1000.0:
        raise ConfigError(f"rate_hz must be within 25..1000, got {cfg.rate_hz}")
    if cfg.duration_s is None and not 1 <= cfg.reps <= 10000:
        raise ConfigError(f"reps must be within 1..10000, got {cfg.reps}")
    if not 0.0 <= cfg.lost_packet_rate < 0.5:
        raise ConfigError(f"lost_packet_rate must be within [0, 0.5), got {cfg.lost_packet_rate}")
    if cfg.load_kg < 0:
        raise ConfigError(f"load_kg must be >= 0, got {cfg.load_kg}")
    if cfg.packet_samples is not None and not 1 <= cfg.packet_samples <= 100:
        raise ConfigError(f"packet_samples must be within 1..100, got {cfg.packet_samples}")
    rates = (cfg.early_drop_rate, cfg.balance_loss_rate, cfg.aborted_rate)
    if min(rates) < 0 or sum(rates) > 1:
        raise ConfigError(f"rep kind rates must be >= 0 and sum to <= 1, got {rates}")
    chosen: list[int] = []
    for name in ("early_drop_reps", "balance_loss_reps", "aborted_reps", "heavy_sag_reps"):
        for i in getattr(cfg, name) or ():
            if cfg.duration_s is None and not 1 <= i <= cfg.reps:
                raise ConfigError(f"{name} holds rep {i}, outside 1..{cfg.reps}")
            if i in chosen:
                raise ConfigError(f"rep {i} is given more than one kind ({name})")
            chosen.append(i)


def _strap_matrix(cfg: SimConfig, rng) -> tuple[np.ndarray, list[float]]:
    q = np.asarray(cfg.strap_quat_wxyz if cfg.strap_quat_wxyz is not None else rng.standard_normal(4), float)
    if not np.isfinite(q).all() or np.linalg.norm(q) < 1e-9:
        raise ConfigError(f"strap_quat_wxyz must be a non-zero quaternion, got {cfg.strap_quat_wxyz}")
    q = q / np.linalg.norm(q)
    return _quat_to_matrix(q), q.tolist()


def simulate_session(cfg: SimConfig) -> SimResult:
    """Simulate one session; deterministic for a given `cfg` (including `cfg.seed`)."""
    _validate(cfg)
    r_plan, r_motion, r_strap, r_sensor, r_loss, r_clock = (
        np.random.default_rng(s) for s in np.random.SeedSequence(cfg.seed).spawn(6))
    reps, duration_true_s, hab = _plan(cfg, r_plan)
    drift_ppm = cfg.clock_drift_ppm if cfg.clock_drift_ppm is not None else r_clock.uniform(-50, 50)
    if not cfg.sensor_errors:
        drift_ppm = 0.0
    clock = 1.0 + drift_ppm * 1e-6
    n = int(np.floor(duration_true_s * clock * cfg.rate_hz)) + 1
    seq = np.arange(n, dtype=np.int64)
    t_s = seq / cfg.rate_hz
    tau = t_s / clock
    sig = _joint_signals(reps, tau, 1.0 / (cfg.rate_hz * clock), r_motion, cfg, hab)

    strap, strap_q = _strap_matrix(cfg, r_strap)
    acc, gyr, incl = _ideal_sensor(cfg, sig, strap, _standing_up(cfg, hab))

    sensor_info: dict = {"errors": cfg.sensor_errors}
    keep = np.ones(n, bool)
    if cfg.sensor_errors:
        acc, gyr, info = _sensor_errors(cfg, acc, gyr, r_sensor)
        sensor_info.update(info)
        keep = _kept_mask(n, _packet_samples(cfg), cfg.lost_packet_rate, r_loss)
    samples = Samples(t_s[keep], acc[keep], gyr[keep], seq[keep])
    sensor_info.update({"strap_quat_wxyz": strap_q, "clock_drift_ppm": float(drift_ppm),
                        "packet_samples": _packet_samples(cfg), "lost_samples": int(n - keep.sum())})

    truth = {
        "format": TRUTH_FORMAT,
        "config": _config_json(cfg),
        "settle_s": SETTLE_S,
        "time_base": "t_s (sensor clock)",
        "reps": [_rep_truth(r, cfg, sig, t_s, clock, incl) for r in reps],
        "sensor": sensor_info,
        "subject": {k: (round(v, 4) if isinstance(v, float) else v) for k, v in hab.items()},
    }
    meta = RecordingMeta(
        device="holdmon-sim", profile="simulated", rate_hz=float(cfg.rate_hz), placement=cfg.placement,
        side=cfg.side, stage=4 if cfg.loaded else 3, load_kg=float(cfg.load_kg) if cfg.loaded else 0.0,
        note=f"synthetic session generated by holdmon simulate, seed {cfg.seed}",
    )
    trace = {"t_s": t_s, "angle_deg": incl, "hip_flexion_deg": np.degrees(sig["hip"][0]),
             "knee_flexion_deg": np.degrees(sig["knee"][0])}
    return SimResult(meta, samples, truth, trace)


def _config_json(cfg: SimConfig) -> dict:
    d = asdict(cfg)
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in d.items()}
