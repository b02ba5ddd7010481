"""Butterworth filters as second-order sections: design, streaming with carried state, zero-phase batch."""

from __future__ import annotations

import numpy as np
from scipy import signal

from sensor.dsp import as_array
from sensor.errors import ConfigError, DataError


def _check_band(name: str, freq_hz: float, rate_hz: float) -> None:
    if not rate_hz > 0:
        raise ConfigError(f"sample rate must be > 0 Hz, got {rate_hz}")
    if not 0 < freq_hz < rate_hz / 2:
        raise ConfigError(
            f"{name} must lie between 0 and the Nyquist frequency {rate_hz / 2:g} Hz, got {freq_hz} Hz")


def lowpass_sos(cutoff_hz: float, rate_hz: float, order: int = 4) -> np.ndarray:
    """Butterworth low-pass as SOS, shape (n_sections, 6)."""
    _check_band("low-pass cutoff", cutoff_hz, rate_hz)
    return signal.butter(order, cutoff_hz, btype="lowpass", fs=rate_hz, output="sos")


def bandpass_sos(low_hz: float, high_hz: float, rate_hz: float, order: int = 4) -> np.ndarray:
    """Butterworth band-pass [low_hz, high_hz] as SOS, shape (n_sections, 6)."""
    _check_band("band-pass low edge", low_hz, rate_hz)
    _check_band("band-pass high edge", high_hz, rate_hz)
    if not low_hz < high_hz:
        raise ConfigError(f"band-pass low edge {low_hz} Hz must be below high edge {high_hz} Hz")
    return signal.butter(order, [low_hz, high_hz], btype="bandpass", fs=rate_hz, output="sos")


class StreamingSOS:
    """Causal SOS filter fed chunk by chunk; the output equals one `sosfilt` call over all chunks.

    The filter state starts as the steady state for the first sample (as with `sosfilt_zi`), so a
    signal that starts at a constant offset has no start transient. Input must be finite: a NaN
    would stay in the state for good.
    """

    def __init__(self, sos: np.ndarray, n_channels: int) -> None:
        self.sos = as_array("sos", sos, (None, 6))
        self.n_channels = n_channels
        self._zi: np.ndarray | None = None

    def process(self, x: np.ndarray) -> np.ndarray:
        """Filter the next chunk, shape (n, n_channels) (or (n,) for one channel); same shape out."""
        one_d = np.ndim(x) == 1 and self.n_channels == 1
        x2 = as_array("filter input", np.reshape(x, (-1, 1)) if one_d else x, (None, self.n_channels))
        if x2.shape[0] == 0:
            return x2.reshape(np.shape(x))
        if self._zi is None:
            self._zi = signal.sosfilt_zi(self.sos)[:, :, None] * x2[0]
        y, self._zi = signal.sosfilt(self.sos, x2, axis=0, zi=self._zi)
        return y[:, 0] if one_d else y


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
    return signal.sosfiltfilt(sos, x, axis=0, padlen=min(3 * n_taps, n - 1))
