"""Signal processing: time base and gaps, Butterworth filters, orientation and inclination.

Pure numpy/scipy/vqf code, no IO. Every function takes and returns arrays in SI units with the
shapes given in its docstring and raises `sensor.errors.DataError` or `ConfigError` on bad input.
"""

from __future__ import annotations

import numpy as np

from sensor.errors import DataError


def as_array(name: str, x: object, shape: tuple[int | None, ...]) -> np.ndarray:
    """`x` as a C-contiguous float64 array of `shape` (None = any length); DataError otherwise."""
    arr = np.ascontiguousarray(x, dtype=np.float64)
    if arr.ndim != len(shape) or any(s is not None and s != a for s, a in zip(shape, arr.shape)):
        want = "(" + ", ".join("n" if s is None else str(s) for s in shape) + ")"
        raise DataError(f"{name} must have shape {want}, got {arr.shape}")
    return arr
