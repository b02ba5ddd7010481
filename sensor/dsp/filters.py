"""Butterworth filters as second-order sections: design, streaming with carried state, zero-phase batch."""

from __future__ import annotations

import numpy as np

from sensor.dsp import as_array
from sensor.errors import ConfigError, DataError


def _signal():
    """scipy.signal, imported on first use: importing it costs about 70 MB of memory, and a replay can then
    run its memory peak (the offline orientation pass) without it."""
    from scipy import signal

    return signal


def _check_band(name: str, freq_hz: float, rate_hz: float) -> None:
    if not rate_hz > 0:
        raise ConfigError(f"sample rate must be > 0 Hz, got {rate_hz}")
    if not 0 < freq_hz < rate_hz / 2:
        raise ConfigError(
            f"{name} must lie between 0 and the Nyquist frequency {rate_hz / 2:g} Hz, got {freq_hz} Hz")


def lowpass_sos(cutoff_hz: float, rate_hz: float, order: int = 4) -> np.ndarray:
    """Butterworth low-pass as SOS, shape (n_sections, 6)."""
    _check_band("low-pass cutoff", cutoff_hz, rate_hz)
    return _signal().butter(order, cutoff_hz, btype="lowpass", fs=rate_hz, output="sos")


def bandpass_sos(low_hz: float, high_hz: float, rate_hz: float, order: int = 4) -> np.ndarray:
    """Butterworth band-pass [low_hz, high_hz] as SOS, shape (n_sections, 6)."""
    _check_band("band-pass low edge", low_hz, rate_hz)
    _check_band("band-pass high edge", high_hz, rate_hz)
    if not low_hz < high_hz:
        raise ConfigError(f"band-pass low edge {low_hz} Hz must be below high edge {high_hz} Hz")
    return _signal().butter(order, [low_hz, high_hz], btype="bandpass", fs=rate_hz, output="sos")


_FLOAT_PATH_MAX_VALUES = 256
"""StreamingSOS filters chunks of at most this many values (samples x channels) in plain float
arithmetic: the operations of scipy's sosfilt in the same order, so the output is identical, without
its per-call overhead (some 30 us, several times what a live notification's few samples take)."""


class StreamingSOS:
    """Causal SOS filter fed chunk by chunk; the output equals one `sosfilt` call over all chunks.

    The filter state starts as the steady state for the first sample (as with `sosfilt_zi`), so a
    signal that starts at a constant offset has no start transient. Input must be finite: a NaN
    would stay in the state for good.
    """

    def __init__(self, sos: np.ndarray, n_channels: int) -> None:
        self.sos = as_array("sos", sos, (None, 6))
        self.n_channels = n_channels
        normalised = bool(np.all(self.sos[:, 3] == 1.0))  # else sosfilt refuses it
        self._coefs = [tuple(row) for row in self.sos[:, [0, 1, 2, 4, 5]].tolist()] if normalised else None
        self._zi: list[list[float]] | None = None  # per channel: (z0, z1) of each section in turn

    def process(self, x: np.ndarray) -> np.ndarray:
        """Filter the next chunk, shape (n, n_channels) (or (n,) for one channel); same shape out."""
        one_d = np.ndim(x) == 1 and self.n_channels == 1
        x2 = as_array("filter input", np.reshape(x, (-1, 1)) if one_d else x, (None, self.n_channels))
        if x2.shape[0] == 0:
            return x2.reshape(np.shape(x))
        if self._zi is None:
            zi = _signal().sosfilt_zi(self.sos)[:, :, None] * x2[0]
            self._zi = zi.transpose(2, 0, 1).reshape(self.n_channels, -1).tolist()
        if self._coefs is not None and x2.size <= _FLOAT_PATH_MAX_VALUES:
            y = self._filter_floats(x2)
        else:
            zi = np.array(self._zi).reshape(self.n_channels, -1, 2).transpose(1, 2, 0)
            y, zi = _signal().sosfilt(self.sos, x2, axis=0, zi=zi)
            self._zi = zi.transpose(2, 0, 1).reshape(self.n_channels, -1).tolist()
        return y[:, 0] if one_d else y

    def _filter_floats(self, x2: np.ndarray) -> np.ndarray:
        """sosfilt's direct form II transposed, one channel and one section at a time: (n, c) -> (n, c)."""
        columns = x2.T.tolist()
        for column, z in zip(columns, self._zi):
            for k, (b0, b1, b2, a1, a2) in enumerate(self._coefs):
                z0, z1 = z[2 * k], z[2 * k + 1]
                for i, xc in enumerate(column):
                    xn = b0 * xc + z0
                    z0 = b1 * xc - a1 * xn + z1
                    z1 = b2 * xc - a2 * xn
                    column[i] = xn
                z[2 * k], z[2 * k + 1] = z0, z1
        return np.array(columns).T


def filtfilt(sos: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Zero-phase (forward-backward) filtering along axis 0 of x, shape (n,) or (n, c).

    Signals shorter than scipy's default padding are padded by as much as they allow.
    """
    sos = as_array("sos", sos, (None, 6))
    x = np.asarray(x, dtype=np.float64)
    if x.ndim not in (1, 2):
        raise DataError(f"filter input must have shape (n,) or (n, c), got {x.shape}")
    n = x.shape[0]
    if n == 0:
        return x.copy()
    n_taps = 2 * sos.shape[0] + 1 - min(int((sos[:, 2] == 0).sum()), int((sos[:, 5] == 0).sum()))
    return _signal().sosfiltfilt(sos, x, axis=0, padlen=min(3 * n_taps, n - 1))
