"""WitMotion BLE 5.0 IMUs (WT9011DCL-BT5.0, BWT901BLECL5.0, WT901BLECL v20+).

GATT: service ffe5, notify ffe4, write ffe9 on the non-standard base `-0000-1000-8000-00805f9a34fb`
(note `9a`, not the Bluetooth SIG `9b`; match characteristics on the 16-bit part).

Data: 20-byte frames without checksum, `55 61` + 9 x int16 LE (acc x,y,z; gyro x,y,z; roll, pitch, yaw),
several per notification; a frame may be split across notifications. Register-read replies are
`55 71 regL regH` + 8 x int16 LE. Scales: acc raw/32768*16 g, gyro raw/32768*2000 deg/s,
angle raw/32768*180 deg.

Commands are 5 bytes `FF AA reg valL valH` written to ffe9. Settings need `unlock` first (valid about
10 s) and `save` afterwards to persist. Output rate: register 0x03, codes in `RATE_CODES`.
The BLE 5.0 models accept 0.2-200 Hz. 50 Hz is the highest rate confirmed by public captures
(two frames per notification); 100 and 200 Hz exist (codes 0x09, 0x0B) but whether the link delivers them
depends on the host's connection interval (a Linux host defaults to 30-50 ms). Code 0x0A is disputed
(200 Hz in some tables, perhaps 125 Hz) and is not used.

The frames carry no sample counter and no sensor time: decoded packets have `sample_seq` and
`sensor_time_s` set to None, and time comes from the host.
"""

from __future__ import annotations

import math

import numpy as np

from sensor.errors import ConfigError, DataError, DecodeError
from sensor.protocols.base import DecodedPacket, Profile, finite_float

PROFILE_NAME = "witmotion"

_BASE = "-0000-1000-8000-00805f9a34fb"
SERVICE_UUID = "0000ffe5" + _BASE
NOTIFY_UUID = "0000ffe4" + _BASE
WRITE_UUID = "0000ffe9" + _BASE

G0_MPS2 = 9.80665
ACC_LSB_MPS2 = 16.0 / 32768.0 * G0_MPS2
GYR_LSB_RADPS = 2000.0 / 32768.0 * math.pi / 180.0
ANGLE_LSB_DEG = 180.0 / 32768.0

FRAME_LEN = 20
HEADER = 0x55
FLAG_DATA = 0x61
FLAG_REPLY = 0x71
_FLAGS = (FLAG_DATA, FLAG_REPLY)

REG_SAVE = 0x00
REG_CALSW = 0x01
REG_RATE = 0x03
REG_READADDR = 0x27
REG_UNLOCK = 0x69
UNLOCK_VALUE = 0xB588

RATE_CODES: dict[float, int] = {
    0.2: 0x01, 0.5: 0x02, 1.0: 0x03, 2.0: 0x04, 5.0: 0x05, 10.0: 0x06,
    20.0: 0x07, 50.0: 0x08, 100.0: 0x09, 200.0: 0x0B,
}
DEFAULT_RATE_HZ = 10.0  # factory setting (code 0x06)
CONFIRMED_MAX_RATE_HZ = 50.0  # highest rate seen streaming in public captures; above it, check for loss


# ---------------------------------------------------------------- commands

def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def write_register_command(reg: int, value: int) -> bytes:
    """`FF AA reg valL valH`: write the 16-bit `value` (0..65535) into register `reg` (0..255)."""
    if not (_is_int(reg) and _is_int(value) and 0 <= reg <= 0xFF and 0 <= value <= 0xFFFF):
        raise ConfigError(f"witmotion register write out of range: reg={reg!r} value={value!r}")
    return bytes((0xFF, 0xAA, reg, value & 0xFF, value >> 8))


def unlock_command() -> bytes:
    """Unlock the configuration registers for about 10 s: `FF AA 69 88 B5`."""
    return write_register_command(REG_UNLOCK, UNLOCK_VALUE)


def save_command() -> bytes:
    """Persist the current settings: `FF AA 00 00 00`."""
    return write_register_command(REG_SAVE, 0)


def calibrate_acc_command() -> bytes:
    """Accelerometer calibration, device still and level: `FF AA 01 01 00`."""
    return write_register_command(REG_CALSW, 1)


def end_calibration_command() -> bytes:
    """Back to normal mode after a calibration: `FF AA 01 00 00`."""
    return write_register_command(REG_CALSW, 0)


def read_register_command(reg: int) -> bytes:
    """Ask for 8 registers from `reg` on: `FF AA 27 reg 00`; the answer is a `55 71` frame."""
    return write_register_command(REG_READADDR, reg)


def nearest_rate_hz(rate_hz: float) -> float:
    """The supported output rate closest to `rate_hz` (in log scale), e.g. 60 -> 50, 150 -> 200."""
    rate = finite_float(rate_hz)
    if rate is None or rate <= 0:
        raise ConfigError(f"witmotion rate must be a positive number of Hz, got {rate_hz!r}")
    return min(RATE_CODES, key=lambda r: abs(math.log(r / rate)))


def rate_command(rate_hz: float) -> bytes:
    """Set the output rate: `FF AA 03 code 00`; `rate_hz` must be one of `RATE_CODES`."""
    rate = finite_float(rate_hz)
    code = RATE_CODES.get(rate) if rate is not None else None
    if code is None:
        raise ConfigError(f"witmotion has no rate {rate_hz!r} Hz; supported: {sorted(RATE_CODES)}")
    return write_register_command(REG_RATE, code)


def rate_hz_for_code(code: int) -> float:
    """Inverse of `RATE_CODES` (for the emulator answering a rate command)."""
    for rate_hz, c in RATE_CODES.items():
        if c == code:
            return rate_hz
    raise ConfigError(f"witmotion rate code {code!r} is not supported")


def parse_command(data: bytes) -> tuple[int, int]:
    """(register, 16-bit value) of a 5-byte `FF AA reg valL valH` command (for the emulator)."""
    data = bytes(data)
    if len(data) != 5:
        raise DecodeError(PROFILE_NAME, "a command is 5 bytes", min(len(data), 5), len(data))
    if data[0] != 0xFF or data[1] != 0xAA:
        raise DecodeError(PROFILE_NAME, f"command must start with FF AA, got {data[:2].hex(' ')}", 0, 5)
    return data[2], data[3] | (data[4] << 8)


def start_commands(rate_hz: float) -> list[tuple[str, bytes]]:
    """unlock, set the nearest supported rate, save (the vendor's sequence; sensors stream by themselves)."""
    return [
        (WRITE_UUID, unlock_command()),
        (WRITE_UUID, rate_command(nearest_rate_hz(rate_hz))),
        (WRITE_UUID, save_command()),
    ]


# ---------------------------------------------------------------- frames

def _finite_rows(name: str, values: object) -> np.ndarray:
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError, OverflowError):
        raise DataError(f"{name} must be numbers, got {values!r}") from None
    if arr.ndim == 1:
        arr = arr.reshape(1, -1)
    if arr.ndim != 2 or arr.shape[1] != 3:
        raise DataError(f"{name} must have shape (n, 3) or (3,), got {np.shape(values)}")
    if not np.all(np.isfinite(arr)):
        raise DataError(f"{name} must be finite to be encoded")
    return arr


def _quantise(values: np.ndarray, lsb: float) -> np.ndarray:
    """Round to counts, saturating at the int16 limits like the sensor does."""
    with np.errstate(over="ignore"):  # huge values saturate like any out-of-range value
        counts = np.rint(values / lsb)
    return np.clip(counts, -32768, 32767).astype("<i2")


def encode_frames(acc_mps2: object, gyr_radps: object, angle_deg: object) -> bytes:
    """Concatenated `55 61` frames for (n, 3) arrays (or single (3,) rows); values saturate at full scale."""
    acc = _finite_rows("acc_mps2", acc_mps2)
    gyr = _finite_rows("gyr_radps", gyr_radps)
    ang = _finite_rows("angle_deg", angle_deg)
    if not (acc.shape == gyr.shape == ang.shape):
        raise DataError(f"row counts differ: acc {acc.shape}, gyr {gyr.shape}, angle {ang.shape}")
    n = acc.shape[0]
    words = np.empty((n, FRAME_LEN // 2), dtype="<i2")
    words[:, 0] = np.frombuffer(bytes((HEADER, FLAG_DATA)), dtype="<i2")[0]
    words[:, 1:4] = _quantise(acc, ACC_LSB_MPS2)
    words[:, 4:7] = _quantise(gyr, GYR_LSB_RADPS)
    words[:, 7:10] = _quantise(ang, ANGLE_LSB_DEG)
    return words.tobytes()


def encode_frame(acc_mps2: object, gyr_radps: object, angle_deg: object) -> bytes:
    """One 20-byte `55 61` frame from three (3,) vectors in m/s^2, rad/s and degrees."""
    frame = encode_frames(acc_mps2, gyr_radps, angle_deg)
    if len(frame) != FRAME_LEN:
        raise DataError(f"encode_frame takes one sample, got {len(frame) // FRAME_LEN}")
    return frame


def decode_frames(frames: bytes) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(acc_mps2, gyr_radps, angle_deg), each (n, 3), from whole `55 61` frames laid end to end."""
    frames = bytes(frames)
    if len(frames) % FRAME_LEN:
        raise DecodeError(PROFILE_NAME, "not a whole number of 20-byte frames",
                          len(frames) - len(frames) % FRAME_LEN, len(frames))
    raw = np.frombuffer(frames, dtype="<i2").reshape(-1, FRAME_LEN // 2)
    heads = raw[:, 0].view("<u2")
    bad = np.flatnonzero(heads != (HEADER | (FLAG_DATA << 8)))
    if bad.size:
        raise DecodeError(PROFILE_NAME, "frame does not start with 55 61", int(bad[0]) * FRAME_LEN, len(frames))
    raw = raw.astype(np.float64)
    return raw[:, 1:4] * ACC_LSB_MPS2, raw[:, 4:7] * GYR_LSB_RADPS, raw[:, 7:10] * ANGLE_LSB_DEG


def encode_register_reply(start_reg: int, values: object) -> bytes:
    """A `55 71 regL regH` frame carrying 8 int16 register values (for the emulator)."""
    vals = np.asarray(values, dtype=object)
    if vals.shape != (8,) or not all(_is_int(v) and -32768 <= v <= 65535 for v in vals):
        raise DataError(f"a register reply carries 8 integers in -32768..65535, got {values!r}")
    if not (_is_int(start_reg) and 0 <= start_reg <= 0xFFFF):
        raise ConfigError(f"register {start_reg!r} out of range")
    words = (vals.astype(np.int64) & 0xFFFF).astype("<u2")
    return bytes((HEADER, FLAG_REPLY, start_reg & 0xFF, start_reg >> 8)) + words.tobytes()


def decode_register_reply(frame: bytes) -> tuple[int, tuple[int, ...]]:
    """(first register, 8 signed 16-bit values) of a 20-byte `55 71` reply."""
    frame = bytes(frame)
    if len(frame) != FRAME_LEN:
        raise DecodeError(PROFILE_NAME, "a register reply is 20 bytes", min(len(frame), FRAME_LEN), len(frame))
    if frame[0] != HEADER or frame[1] != FLAG_REPLY:
        raise DecodeError(PROFILE_NAME, "register reply must start with 55 71", 0, len(frame))
    values = np.frombuffer(frame, dtype="<i2", offset=4)
    return frame[2] | (frame[3] << 8), tuple(int(v) for v in values)


# ---------------------------------------------------------------- decoder

def _header_at(buf: bytes, i: int) -> bool:
    """A frame may start at `i` (`55 61`, `55 71`, or a `55` that is the last byte so far)."""
    return buf[i] == HEADER and (i + 1 == len(buf) or buf[i + 1] in _FLAGS)


def _next_header(buf: bytes, start: int) -> int:
    """Index of the next possible frame start at or after `start`, or len(buf)."""
    i = buf.find(HEADER, start)
    while i != -1 and not _header_at(buf, i):
        i = buf.find(HEADER, i + 1)
    return len(buf) if i == -1 else i


def _continues(partial: bytes, payload: bytes) -> bool:
    """Whether `payload` reads as the rest of `partial` rather than as a fresh start.

    A payload that does not itself start with a header can only be a continuation. One that does is
    taken as a continuation only if every frame boundary the continuation implies holds a header and
    at least one of them is a complete two-byte header.
    """
    if not payload or not _header_at(payload, 0):
        return True
    bounds = range(FRAME_LEN - len(partial), len(payload), FRAME_LEN)
    return (all(_header_at(payload, i) for i in bounds)
            and any(i + 1 < len(payload) for i in bounds))


class WitmotionDecoder:
    """Reassembles and decodes `55 61` frames; remembers the latest `55 71` register replies.

    State is kept consistent across bad input: bytes that cannot start a frame are skipped up to the next
    `55 61`/`55 71` and counted in `bad_bytes`; a partial frame followed by a notification that clearly
    starts afresh is discarded (counted too). Such a notification raises DecodeError after it has been
    fully consumed; the good frames it held are not lost: `take_pending()` returns them at once, and
    otherwise the next `decode()` returns them first.

    Counters: `frames` (data frames decoded), `replies` (register replies seen), `bad_bytes`.
    `registers` maps a register number to its latest value from any reply.
    """

    def __init__(self) -> None:
        self._partial = b""
        self._pending: list[DecodedPacket] = []
        self.frames = 0
        self.replies = 0
        self.bad_bytes = 0
        self.registers: dict[int, int] = {}

    def take_pending(self) -> list[DecodedPacket]:
        """Packets decoded from notifications that also raised DecodeError, not yet returned."""
        pending, self._pending = self._pending, []
        return pending

    def decode(self, payload: bytes) -> list[DecodedPacket]:
        """Decode one notification; returns [] or packets with (n, 3) acc_mps2 and gyr_radps."""
        payload = bytes(payload)
        problems: list[tuple[int, str]] = []
        partial = self._partial
        if partial and not _continues(partial, payload):
            problems.append((0, f"truncated frame ({len(partial)} of {FRAME_LEN} bytes) before this notification"))
            self.bad_bytes += len(partial)
            partial = b""
        buf = partial + payload
        data_frames = bytearray()
        pos = 0
        while pos < len(buf):
            if not _header_at(buf, pos):
                nxt = _next_header(buf, pos + 1)
                problems.append((max(pos - len(partial), 0), f"{nxt - pos} bytes without a 55 61/55 71 header"))
                self.bad_bytes += nxt - pos
                pos = nxt
            elif len(buf) - pos < FRAME_LEN:
                break
            else:
                self._take_frame(buf[pos:pos + FRAME_LEN], data_frames)
                pos += FRAME_LEN
        self._partial = buf[pos:]
        if data_frames:
            acc, gyr, _ = decode_frames(bytes(data_frames))
            self._pending.append(DecodedPacket(acc, gyr))
        if problems:
            offset, message = problems[0]
            more = f" (+{len(problems) - 1} more problems)" if len(problems) > 1 else ""
            raise DecodeError(PROFILE_NAME, message + more, offset, len(payload))
        return self.take_pending()

    def _take_frame(self, frame: bytes, data_frames: bytearray) -> None:
        if frame[1] == FLAG_DATA:
            data_frames += frame
            self.frames += 1
            return
        start, values = decode_register_reply(frame)
        self.replies += 1
        for i, value in enumerate(values):
            self.registers[start + i] = value


PROFILE = Profile(
    name=PROFILE_NAME,
    service_uuid=SERVICE_UUID,
    notify_uuid=NOTIFY_UUID,
    write_uuid=WRITE_UUID,
    name_prefixes=("WT",),
    rates_hz=tuple(sorted(RATE_CODES)),
    make_decoder=WitmotionDecoder,
    start_commands=start_commands,
    has_sample_counter=False,
)
