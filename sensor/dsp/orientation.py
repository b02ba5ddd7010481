"""Orientation with vqf (6D: gyroscope + accelerometer) and the gravity/inclination helpers built on it.

Quaternions are `quat_wxyz`, unit, Hamilton product, sensor frame S -> earth frame E (ENU, z up):
v_E = q (x) v_S (x) q^-1. Without a magnetometer the heading is arbitrary; the inclination is not.
"""

from __future__ import annotations

import numpy as np
from vqf import VQF, offlineVQF

from sensor.dsp import as_array
from sensor.errors import ConfigError, DataError


_FLOAT_PATH_MAX_ROWS = 64
"""up_in_sensor, inclination_deg and to_earth take arrays of at most this many rows (a live notification's
samples) through plain float arithmetic, with the vectorised code's operations in the same order
(identical values): at that size numpy's per-call overhead, not the arithmetic, is the cost."""


def _sample_time_s(rate_hz: float) -> float:
    if not rate_hz > 0:
        raise ConfigError(f"sample rate must be > 0 Hz, got {rate_hz}")
    return 1.0 / rate_hz


def _imu_arrays(gyr_radps: np.ndarray, acc_mps2: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    gyr = as_array("gyr_radps", gyr_radps, (None, 3))
    acc = as_array("acc_mps2", acc_mps2, (None, 3))
    if gyr.shape != acc.shape:
        raise DataError(f"gyr_radps {gyr.shape} and acc_mps2 {acc.shape} must have the same length")
    return gyr, acc


class StreamingOrientation:
    """Causal orientation (vqf.VQF, 6D) fed chunk by chunk; the filter state carries over between chunks,
    so any chunking gives the same quaternions as one call over all samples."""

    def __init__(self, rate_hz: float) -> None:
        self.rate_hz = rate_hz
        self._vqf = VQF(_sample_time_s(rate_hz))

    def update(self, gyr_radps: np.ndarray, acc_mps2: np.ndarray) -> np.ndarray:
        """Next chunk of gyr_radps and acc_mps2, each (n, 3) -> quat_wxyz (n, 4)."""
        gyr, acc = _imu_arrays(gyr_radps, acc_mps2)
        if gyr.shape[0] == 0:
            return np.zeros((0, 4))
        return self._vqf.updateBatch(gyr, acc)["quat6D"]


def offline_orientation(gyr_radps: np.ndarray, acc_mps2: np.ndarray, rate_hz: float) -> np.ndarray:
    """Acausal orientation over a whole recording (vqf.offlineVQF, 6D): (n, 3), (n, 3) -> quat_wxyz (n, 4)."""
    gyr, acc = _imu_arrays(gyr_radps, acc_mps2)
    ts_s = _sample_time_s(rate_hz)
    if gyr.shape[0] == 0:
        return np.zeros((0, 4))
    return offlineVQF(gyr, acc, None, ts_s)["quat6D"]


def _cross(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cross product of (n, 3) arrays (either may be (3,)), the same arithmetic as np.cross
    without its per-call axis handling (which dominates on the few rows of a live chunk)."""
    a0, a1, a2 = a[..., 0], a[..., 1], a[..., 2]
    b0, b1, b2 = b[..., 0], b[..., 1], b[..., 2]
    out = np.empty(np.broadcast_shapes(a.shape, b.shape))
    np.multiply(a1, b2, out=out[..., 0])
    out[..., 0] -= a2 * b1
    np.multiply(a2, b0, out=out[..., 1])
    out[..., 1] -= a0 * b2
    np.multiply(a0, b1, out=out[..., 2])
    out[..., 2] -= a1 * b0
    return out


def up_in_sensor(quat_wxyz: np.ndarray) -> np.ndarray:
    """Earth "up" [0, 0, 1] expressed in sensor coordinates, R(q)^T e_z: (n, 4) -> unit vectors (n, 3)."""
    q = as_array("quat_wxyz", quat_wxyz, (None, 4))
    if q.shape[0] <= _FLOAT_PATH_MAX_ROWS:
        norm2 = np.einsum("ij,ij->i", q, q).tolist()
        return np.array([(2.0 * (x * z - w * y) / n2, 2.0 * (y * z + w * x) / n2,
                          (w * w - x * x - y * y + z * z) / n2)
                         for (w, x, y, z), n2 in zip(q.tolist(), norm2)]).reshape(-1, 3)
    w, x, y, z = q.T
    up = np.empty((q.shape[0], 3))
    up[:, 0] = 2.0 * (x * z - w * y)
    up[:, 1] = 2.0 * (y * z + w * x)
    up[:, 2] = w * w - x * x - y * y + z * z
    up /= np.einsum("ij,ij->i", q, q)[:, None]
    return up


def inclination_deg(up_sensor: np.ndarray, ref_up_sensor: np.ndarray) -> np.ndarray:
    """Angle in degrees between each row of up_sensor (n, 3) and ref_up_sensor (3,); (n,) in [0, 180].

    Both are "up" in the sensor frame, so the angle is the segment's tilt away from the reference pose,
    whatever the sensor's rotation on the limb. Vectors need not be unit length.
    """
    up = as_array("up_sensor", up_sensor, (None, 3))
    ref = as_array("ref_up_sensor", ref_up_sensor, (3,))
    r0, r1, r2 = ref.tolist()
    if not r0 * r0 + r1 * r1 + r2 * r2 > 0:
        raise DataError(f"ref_up_sensor must be a non-zero finite vector, got {ref}")
    if up.shape[0] <= _FLOAT_PATH_MAX_ROWS:
        cross = np.array([(u1 * r2 - u2 * r1, u2 * r0 - u0 * r2, u0 * r1 - u1 * r0)
                          for u0, u1, u2 in up.tolist()]).reshape(-1, 3)
    else:
        cross = _cross(up, ref)
    return np.degrees(np.arctan2(np.sqrt(np.einsum("ij,ij->i", cross, cross)), up @ ref))


def to_earth(quat_wxyz: np.ndarray, vec_sensor: np.ndarray) -> np.ndarray:
    """Rotate sensor-frame vectors into the earth frame, v_E = R(q) v_S: (n, 4), (n, 3) -> (n, 3)."""
    q = as_array("quat_wxyz", quat_wxyz, (None, 4))
    v = as_array("vec_sensor", vec_sensor, (None, 3))
    if q.shape[0] != v.shape[0]:
        raise DataError(f"quat_wxyz has {q.shape[0]} rows but vec_sensor has {v.shape[0]}")
    if q.shape[0] <= _FLOAT_PATH_MAX_ROWS:
        return np.array([_rotated(w, x, y, z, v0, v1, v2)
                         for (w, x, y, z), (v0, v1, v2) in zip(q.tolist(), v.tolist())]).reshape(-1, 3)
    w = q[:, :1]
    u = q[:, 1:]
    t = 2.0 * _cross(u, v)
    return v + w * t + _cross(u, t)


def _rotated(w: float, x: float, y: float, z: float, v0: float, v1: float, v2: float) -> tuple[float, float, float]:
    """One row of to_earth in plain floats: t = 2 (u x v), v + w t + u x t, in numpy's operation order."""
    t0 = 2.0 * (y * v2 - z * v1)
    t1 = 2.0 * (z * v0 - x * v2)
    t2 = 2.0 * (x * v1 - y * v0)
    return v0 + w * t0 + (y * t2 - z * t1), v1 + w * t1 + (z * t0 - x * t2), v2 + w * t2 + (x * t1 - y * t0)
