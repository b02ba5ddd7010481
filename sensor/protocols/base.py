"""What every sensor profile provides: a decoded-packet type, a decoder interface and a profile record."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Protocol

import math

import numpy as np


def finite_float(value: object) -> float | None:
    """`value` as a finite float, or None if it is no finite real number (bools are not numbers here)."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


@dataclass(frozen=True)
class DecodedPacket:
    """The samples carried by one notification, in SI units.

    acc_mps2, gyr_radps: (n, 3) float64.
    sample_seq: (n,) int64 unwrapped sensor sample counter, or None if the profile has none.
    sensor_time_s: (n,) float64 unwrapped sensor clock per sample, or None if the profile has none.
    packet_seq: the packet's own sequence counter as sent (wrapping), or None.
    """

    acc_mps2: np.ndarray
    gyr_radps: np.ndarray
    sample_seq: np.ndarray | None = None
    sensor_time_s: np.ndarray | None = None
    packet_seq: int | None = None

    def __len__(self) -> int:
        return int(self.acc_mps2.shape[0])


class Decoder(Protocol):
    """Stateful per connection (unwraps counters, pairs streams). Raises DecodeError on bad bytes."""

    def decode(self, payload: bytes) -> list[DecodedPacket]:
        """Decode one notification; may return [] (e.g. a reply or a half-paired stream)."""
        ...


@dataclass(frozen=True)
class Profile:
    """A supported sensor: how to find it, which characteristics to use, and how to talk to it.

    UUIDs are lower-case 128-bit strings. `start_commands(rate_hz)` returns the writes
    (characteristic uuid, bytes) that configure and start streaming at the nearest supported rate.
    """

    name: str
    service_uuid: str
    notify_uuid: str
    write_uuid: str | None
    name_prefixes: tuple[str, ...]
    rates_hz: tuple[float, ...]
    make_decoder: Callable[[], Decoder]
    start_commands: Callable[[float], list[tuple[str, bytes]]]
    stop_commands: Callable[[], list[tuple[str, bytes]]] = field(default=lambda: [])
    has_sample_counter: bool = False
    extra_notify_uuids: tuple[str, ...] = ()
