"""Polar Verity Sense over the Polar Measurement Data (PMD) service: ACC + GYRO.

GATT: PMD service fb005c80-..., control point fb005c81-... (write + indicate), data fb005c82-... (notify).
Before starting: ATT MTU >= 232 (`MIN_ATT_MTU`; smaller gives error 10), indications on the control
point, notifications on the data characteristic. The control point's indications go to the same
decoder as the data (`extra_notify_uuids`): its responses start with F0, which no data frame does.

Control point writes: `01 <type>` read settings, `02 <type> <settings TLV>` start, `03 <type>` stop.
Settings TLV: repeated `<setting type> <count> <count values>`; value sizes in `SETTING_SIZES`.
Responses: `F0 <opcode> <type> <error> <more> <settings TLV>`; a start response carries FACTOR (float32),
the scale of the raw samples. Unsolicited `01 <types...>`: the sensor stopped those streams.

Data frame: `<type> <timestamp u64 LE, ns since 2000-01-01, of the LAST sample> <frame type>` + content;
frame-type bit 7 = delta-compressed: a reference sample, then blocks `<bit width> <count> <packed deltas>`,
deltas signed, LSB-first, channel-interleaved, each sample = previous + delta. Units per frame kind are in
`FORMATS`: compressed type-0 ACC is g x factor (Verity Sense: factor 0.000244), uncompressed ACC is mG,
GYRO is deg/s x factor.

ACC and GYRO arrive as separate frames with their own timestamps. `PolarDecoder` gives every sample a
sensor time (from the frame timestamps; from the nominal rate for a stream's first frame or after a jump),
buffers both streams and emits only pairs whose times agree within half a sample period.

Rate: 52 Hz, the Verity Sense's normal-mode rate for ACC and GYRO. Its SDK mode (26-416 Hz, firmware
>= 1.1.5) turns the sensor's own functions off and is not used by `start_commands`; the generic encoders
and `PolarDecoder(rate_hz)` cover it for a caller that enables it (`start_command(SDK_MODE, {})`).
Polar OH1 and H10 are not listed: they have no gyroscope, and this profile needs both streams.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np

from sensor.errors import ConfigError, DataError, DecodeError
from sensor.protocols.base import DecodedPacket, Profile, finite_float

PROFILE_NAME = "polar"

PMD_SERVICE_UUID = "fb005c80-02e7-f387-1cad-8acd2d8df0c8"
PMD_CONTROL_UUID = "fb005c81-02e7-f387-1cad-8acd2d8df0c8"
PMD_DATA_UUID = "fb005c82-02e7-f387-1cad-8acd2d8df0c8"
MIN_ATT_MTU = 232

# Measurement types.
ECG, PPG, ACC, PPI, GYRO, MAG, SDK_MODE = 0, 1, 2, 3, 5, 6, 9
MEASUREMENT_NAMES = {
    0: "ECG", 1: "PPG", 2: "ACC", 3: "PPI", 5: "GYRO", 6: "MAG", 9: "SDK_MODE",
    10: "LOCATION", 11: "PRESSURE", 12: "TEMPERATURE",
}
TYPE_MASK = 0x3F

# Control point.
OP_GET_SETTINGS, OP_START, OP_STOP = 1, 2, 3
RESPONSE_CODE = 0xF0
STOPPED_CODE = 0x01
ERROR_NAMES = {
    0: "success", 1: "invalid opcode", 2: "invalid measurement type", 3: "not supported",
    4: "invalid length", 5: "invalid parameter", 6: "already in state", 7: "invalid resolution",
    8: "invalid sample rate", 9: "invalid range", 10: "invalid MTU", 11: "invalid number of channels",
    12: "invalid state", 13: "device in charger",
}
ERROR_ALREADY_IN_STATE = 6

# Settings.
SAMPLE_RATE, RESOLUTION, RANGE, RANGE_MILLIUNIT, CHANNELS, FACTOR, SECURITY = 0, 1, 2, 3, 4, 5, 6
SETTING_SIZES = {SAMPLE_RATE: 2, RESOLUTION: 2, RANGE: 2, RANGE_MILLIUNIT: 4, CHANNELS: 1, FACTOR: 4, SECURITY: 16}

NORMAL_RATE_HZ = 52.0
RATES_HZ = (NORMAL_RATE_HZ,)
ACC_RANGE_G = 8
GYRO_RANGE_DPS = 2000
RESOLUTION_BITS = 16
N_CHANNELS = 3

G0_MPS2 = 9.80665
DEG = math.pi / 180.0
FRAME_HEADER_LEN = 10
FLOAT32_MAX = float(np.finfo(np.float32).max)
MAX_SAMPLES_PER_FRAME = 4096
MAX_BUFFERED_S = 2.0
_RATE_TOLERANCE = 0.25


@dataclass(frozen=True)
class FrameFormat:
    """How one kind of data frame stores its samples.

    resolution_bits: bits per value (stored in whole bytes); is_float: values are float32 bit patterns;
    si_per_unit: SI value of one unit after the factor; uses_factor: multiply by the FACTOR setting;
    default_factor: the factor to assume until the start response tells the real one.
    """

    resolution_bits: int
    is_float: bool
    si_per_unit: float
    uses_factor: bool
    default_factor: float = 1.0


# Verity Sense's ACC factor as it reports it (float32 bytes 40 DA 7F 39).
VERITY_ACC_FACTOR = struct.unpack("<f", bytes.fromhex("40DA7F39"))[0]
# Assumed until the GYRO start response arrives: +-2000 deg/s over a signed 16-bit range.
ASSUMED_GYRO_FACTOR = GYRO_RANGE_DPS / 32768.0

# (measurement type, compressed, frame type) -> format.
FORMATS: dict[tuple[int, bool, int], FrameFormat] = {
    (ACC, True, 0): FrameFormat(16, False, G0_MPS2, True, VERITY_ACC_FACTOR),
    (ACC, True, 1): FrameFormat(16, False, G0_MPS2 / 1000.0, True),
    (ACC, False, 1): FrameFormat(16, False, G0_MPS2 / 1000.0, False),
    (ACC, False, 2): FrameFormat(24, False, G0_MPS2 / 1000.0, False),
    (GYRO, True, 0): FrameFormat(16, False, DEG, True, ASSUMED_GYRO_FACTOR),
    (GYRO, True, 1): FrameFormat(32, True, DEG, True),
    (GYRO, False, 0): FrameFormat(16, False, DEG, True, ASSUMED_GYRO_FACTOR),
    (GYRO, False, 1): FrameFormat(32, True, DEG, True),
}


def _fail(message: str, offset: int, length: int) -> DecodeError:
    return DecodeError(PROFILE_NAME, message, offset, length)


# ---------------------------------------------------------------- settings and commands

SettingValue = int | float | bytes


def encode_settings(settings: Mapping[int, SettingValue | Sequence[SettingValue]]) -> bytes:
    """The settings TLV, in the order given; a sequence value sends several values of one setting."""
    out = bytearray()
    for kind, value in settings.items():
        size = SETTING_SIZES.get(kind)
        if size is None:
            raise ConfigError(f"unknown PMD setting type {kind!r}")
        values = list(value) if isinstance(value, (list, tuple)) else [value]
        if not 1 <= len(values) <= 255:
            raise ConfigError(f"PMD setting {kind} needs 1..255 values, got {len(values)}")
        out += bytes((kind, len(values)))
        for v in values:
            out += _encode_setting_value(kind, size, v)
    return bytes(out)


def _encode_setting_value(kind: int, size: int, value: SettingValue) -> bytes:
    if kind == FACTOR:
        factor = finite_float(value)
        if factor is None or abs(factor) > FLOAT32_MAX:
            raise ConfigError(f"PMD factor must be a finite float32, got {value!r}")
        return struct.pack("<f", factor)
    if kind == SECURITY:
        if not isinstance(value, bytes) or len(value) != size:
            raise ConfigError(f"PMD security setting is {size} bytes, got {value!r}")
        return value
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 1 << (8 * size):
        raise ConfigError(f"PMD setting {kind} value {value!r} does not fit {size} unsigned bytes")
    return value.to_bytes(size, "little")


def parse_settings(data: bytes, offset: int = 0) -> dict[int, tuple[SettingValue, ...]]:
    """Parse a settings TLV from `data[offset:]`; DecodeError names the offset in `data`."""
    settings: dict[int, tuple[SettingValue, ...]] = {}
    pos = offset
    while pos < len(data):
        kind = data[pos]
        size = SETTING_SIZES.get(kind)
        if size is None:
            raise _fail(f"unknown setting type {kind}", pos, len(data))
        if pos + 2 > len(data):
            raise _fail("setting count cut off", len(data), len(data))
        count = data[pos + 1]
        end = pos + 2 + count * size
        if end > len(data):
            raise _fail(f"setting {kind} needs {count * size} value bytes, {len(data) - pos - 2} left", pos, len(data))
        chunks = [data[i:i + size] for i in range(pos + 2, end, size)]
        settings[kind] = tuple(_setting_value(kind, c) for c in chunks)
        pos = end
    return settings


def _setting_value(kind: int, chunk: bytes) -> SettingValue:
    if kind == FACTOR:
        return struct.unpack("<f", chunk)[0]
    if kind == SECURITY:
        return bytes(chunk)
    return int.from_bytes(chunk, "little")


def _is_byte(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 0xFF


def _check_type(measurement_type: int) -> None:
    if not _is_byte(measurement_type):
        raise ConfigError(f"PMD measurement type must be 0..255, got {measurement_type!r}")


def settings_request(measurement_type: int) -> bytes:
    """`01 <type>`: ask which settings the sensor allows for a stream."""
    _check_type(measurement_type)
    return bytes((OP_GET_SETTINGS, measurement_type))


def start_command(measurement_type: int, settings: Mapping[int, SettingValue | Sequence[SettingValue]]) -> bytes:
    """`02 <type> <settings>`: start an online stream with one value per setting."""
    _check_type(measurement_type)
    return bytes((OP_START, measurement_type)) + encode_settings(settings)


def stop_command(measurement_type: int) -> bytes:
    """`03 <type>`: stop a stream."""
    _check_type(measurement_type)
    return bytes((OP_STOP, measurement_type))


def start_acc_command(rate_hz: int = 52, range_g: int = ACC_RANGE_G, resolution_bits: int = RESOLUTION_BITS,
                      channels: int | None = N_CHANNELS) -> bytes:
    """Start ACC, e.g. Verity Sense default `02 02 00 01 34 00 01 01 10 00 02 01 08 00 04 01 03`."""
    return start_command(ACC, _stream_settings(rate_hz, resolution_bits, range_g, channels))


def start_gyro_command(rate_hz: int = 52, range_dps: int = GYRO_RANGE_DPS, resolution_bits: int = RESOLUTION_BITS,
                       channels: int | None = N_CHANNELS) -> bytes:
    """Start GYRO, e.g. `02 05 00 01 34 00 01 01 10 00 02 01 D0 07 04 01 03` (52 Hz, 16 bit, 2000 deg/s)."""
    return start_command(GYRO, _stream_settings(rate_hz, resolution_bits, range_dps, channels))


def _stream_settings(rate_hz: int, resolution_bits: int, range_: int, channels: int | None) -> dict[int, int]:
    settings = {SAMPLE_RATE: rate_hz, RESOLUTION: resolution_bits, RANGE: range_}
    if channels is not None:
        settings[CHANNELS] = channels
    return settings


def start_commands(rate_hz: float) -> list[tuple[str, bytes]]:
    """Start ACC and GYRO at 52 Hz, the only rate of the normal mode, whatever `rate_hz` asks for."""
    rate = int(NORMAL_RATE_HZ)
    return [(PMD_CONTROL_UUID, start_acc_command(rate)), (PMD_CONTROL_UUID, start_gyro_command(rate))]


def stop_commands() -> list[tuple[str, bytes]]:
    """Stop ACC and GYRO."""
    return [(PMD_CONTROL_UUID, stop_command(ACC)), (PMD_CONTROL_UUID, stop_command(GYRO))]


# ---------------------------------------------------------------- control point responses

@dataclass(frozen=True)
class ControlResponse:
    """A parsed `F0 ...` control point response; `parameters` are the bytes after the header."""

    opcode: int
    measurement_type: int
    error: int
    more: bool
    parameters: bytes = b""

    @property
    def error_name(self) -> str:
        return ERROR_NAMES.get(self.error, f"unknown error {self.error}")

    def settings(self) -> dict[int, tuple[SettingValue, ...]]:
        """The parameters read as a settings TLV (DecodeError if they are not one; offsets from byte 5)."""
        return parse_settings(bytes(5) + self.parameters, 5)


def encode_control_response(opcode: int, measurement_type: int, error: int = 0,
                            settings: Mapping[int, SettingValue | Sequence[SettingValue]] | None = None,
                            more: bool = False) -> bytes:
    """The sensor's answer to a control point write (for tests and an emulated sensor)."""
    for name, v in (("opcode", opcode), ("measurement type", measurement_type), ("error", error)):
        if not _is_byte(v):
            raise ConfigError(f"PMD response {name} must be 0..255, got {v!r}")
    head = bytes((RESPONSE_CODE, opcode, measurement_type, error, int(bool(more))))
    return head + encode_settings(settings or {})


def parse_control_response(data: bytes) -> ControlResponse:
    """Parse `F0 <opcode> <type> <error> [<more> <parameters>]`; DecodeError if it is cut short."""
    data = bytes(data)
    if not data or data[0] != RESPONSE_CODE:
        raise _fail("control point response must start with F0", 0, len(data))
    if len(data) < 4:
        raise _fail("control point response cut off", len(data), len(data))
    more = data[3] == 0 and len(data) > 4 and data[4] != 0
    return ControlResponse(data[1], data[2], data[3], more, data[5:])


# ---------------------------------------------------------------- data frames

def _signed(values: np.ndarray, bits: int) -> np.ndarray:
    """Sign-extend unsigned `bits`-wide integers (int64 array)."""
    if bits == 0:
        return values
    return values - ((values >> (bits - 1)) & 1) * (1 << bits)


def _little_ints(data: bytes, size: int) -> np.ndarray:
    """Unsigned little-endian integers of `size` bytes each (int64)."""
    b = np.frombuffer(data, dtype=np.uint8).reshape(-1, size).astype(np.int64)
    return (b << (8 * np.arange(size))).sum(axis=1)


def _unpack_deltas(data: bytes, width: int, n_values: int) -> np.ndarray:
    """`n_values` signed integers of `width` bits packed LSB-first (int64)."""
    if width == 0:
        return np.zeros(n_values, dtype=np.int64)
    bits = np.unpackbits(np.frombuffer(data, dtype=np.uint8), bitorder="little")[: n_values * width]
    raw = (bits.reshape(n_values, width).astype(np.int64) << np.arange(width)).sum(axis=1)
    return _signed(raw, width)


def delta_decode(content: bytes, channels: int, resolution_bits: int, *, wrap32: bool = False,
                 base_offset: int = 0, packet_length: int | None = None) -> np.ndarray:
    """Samples (n, channels) int64 of a delta-compressed frame content.

    wrap32: values are 32-bit patterns (float32 frames): arithmetic modulo 2**32, result unsigned.
    Otherwise every sample must fit a signed `resolution_bits` integer. Errors name the byte offset
    `base_offset + position` in a packet of `packet_length` bytes.
    """
    length = len(content) if packet_length is None else packet_length
    value_size = -(-resolution_bits // 8)
    ref_size = channels * value_size
    if len(content) < ref_size:
        raise _fail(f"reference sample needs {ref_size} bytes, {len(content)} left", base_offset + len(content), length)
    blocks = [_signed(_little_ints(content[:ref_size], value_size), 8 * value_size).reshape(1, channels)]
    total, pos = 1, ref_size
    while pos < len(content):
        if pos + 2 > len(content):
            raise _fail("delta block header cut off", base_offset + pos, length)
        width, count = content[pos], content[pos + 1]
        if width > 32:
            raise _fail(f"delta width {width} bits exceeds 32", base_offset + pos, length)
        total += count
        if total > MAX_SAMPLES_PER_FRAME:
            raise _fail(f"more than {MAX_SAMPLES_PER_FRAME} samples in one frame", base_offset + pos, length)
        n_bytes = -(-width * channels * count // 8)
        if pos + 2 + n_bytes > len(content):
            raise _fail(f"delta block needs {n_bytes} bytes, {len(content) - pos - 2} left", base_offset + pos, length)
        deltas = _unpack_deltas(content[pos + 2:pos + 2 + n_bytes], width, count * channels)
        blocks.append(deltas.reshape(count, channels))
        pos += 2 + n_bytes
    values = np.cumsum(np.concatenate(blocks), axis=0)
    if wrap32:
        return values & 0xFFFFFFFF
    limit = 1 << (resolution_bits - 1)
    bad = np.flatnonzero((values < -limit).any(axis=1) | (values >= limit).any(axis=1))
    if bad.size:
        raise _fail(f"sample {int(bad[0])} leaves the {resolution_bits}-bit range", base_offset, length)
    return values


def _min_width(values: np.ndarray) -> int:
    """Bits needed to store every value as a signed integer (at least 1)."""
    if values.size == 0:
        return 1
    hi = int(max(values.max(), -values.min() - 1))
    return max(1, hi.bit_length() + 1)


def delta_encode(values: np.ndarray, resolution_bits: int, *, wrap32: bool = False, block_samples: int = 255) -> bytes:
    """Delta-compressed content for integer samples (n >= 1, channels): the inverse of `delta_decode`.

    Each block of up to `block_samples` deltas gets the smallest bit width that holds them.
    """
    values = np.asarray(values, dtype=np.int64)
    if values.ndim != 2 or values.shape[0] < 1:
        raise DataError(f"delta_encode needs samples of shape (n>=1, channels), got {values.shape}")
    if not 1 <= block_samples <= 255:
        raise DataError(f"block_samples must be 1..255, got {block_samples}")
    value_size = -(-resolution_bits // 8)
    ref = values[0] & ((1 << (8 * value_size)) - 1)
    out = bytearray(b"".join(int(v).to_bytes(value_size, "little") for v in ref))
    deltas = np.diff(values, axis=0)
    if wrap32:
        deltas = _signed(deltas & 0xFFFFFFFF, 32)
    for start in range(0, len(deltas), block_samples):
        block = deltas[start:start + block_samples]
        width = _min_width(block)
        bits = ((block.reshape(-1, 1) >> np.arange(width)) & 1).astype(np.uint8).ravel()
        out += bytes((width, len(block))) + np.packbits(bits, bitorder="little").tobytes()
    return bytes(out)


def _format_for(measurement_type: int, compressed: bool, frame_type: int, offset: int, length: int) -> FrameFormat:
    fmt = FORMATS.get((measurement_type, compressed, frame_type))
    if fmt is None:
        kind = "compressed" if compressed else "raw"
        name = MEASUREMENT_NAMES.get(measurement_type, str(measurement_type))
        raise _fail(f"unsupported {kind} {name} frame type {frame_type}", offset, length)
    return fmt


def _encodable_format(measurement_type: int, compressed: bool, frame_type: int) -> FrameFormat:
    fmt = FORMATS.get((measurement_type, compressed, frame_type))
    if fmt is None:
        raise DataError(f"no frame format for measurement type {measurement_type}, "
                        f"compressed={compressed}, frame type {frame_type}")
    return fmt


def encode_frame(measurement_type: int, timestamp_ns: int, counts: object, *, frame_type: int = 0,
                 compressed: bool = True, block_samples: int = 255) -> bytes:
    """A PMD data frame carrying `counts` (n, 3) in the frame's own units (before the factor).

    Integer formats take integers in the signed resolution range, float formats any finite float32.
    """
    fmt = _encodable_format(measurement_type, compressed, frame_type)
    if not (isinstance(timestamp_ns, int) and 0 <= timestamp_ns < 1 << 64):
        raise DataError(f"timestamp_ns {timestamp_ns!r} does not fit 64 bits")
    ints = _counts_to_ints(_as_float_array(counts), fmt)
    header = bytes((measurement_type,)) + int(timestamp_ns).to_bytes(8, "little")
    header += bytes(((0x80 if compressed else 0) | frame_type,))
    if compressed:
        return header + delta_encode(ints, fmt.resolution_bits, wrap32=fmt.is_float, block_samples=block_samples)
    size = fmt.resolution_bits // 8
    mask = (1 << (8 * size)) - 1
    return header + b"".join(int(v & mask).to_bytes(size, "little") for v in ints.ravel())


def _as_float_array(values: object) -> np.ndarray:
    try:
        return np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError, OverflowError):
        raise DataError(f"samples must be numbers, got {values!r}") from None


def _counts_to_ints(counts: np.ndarray, fmt: FrameFormat) -> np.ndarray:
    if counts.ndim != 2 or counts.shape[1] != N_CHANNELS or counts.shape[0] < 1:
        raise DataError(f"frame samples must have shape (n>=1, 3), got {counts.shape}")
    if fmt.is_float:
        with np.errstate(over="ignore", invalid="ignore"):
            as_f32 = counts.astype(np.float32)
        if not np.all(np.isfinite(as_f32)):
            raise DataError("float frame samples must be finite float32 values")
        return as_f32.view(np.uint32).astype(np.int64)
    limit = 1 << (fmt.resolution_bits - 1)
    whole = np.all(np.isfinite(counts)) and np.all(counts == np.rint(counts))
    if not whole or np.any((counts < -limit) | (counts >= limit)):
        raise DataError(f"integer frame samples must be whole numbers in the signed "
                        f"{fmt.resolution_bits}-bit range")
    return counts.astype(np.int64)


def quantise(measurement_type: int, si_values: object, *, frame_type: int = 0, compressed: bool = True,
             factor: float | None = None) -> np.ndarray:
    """The counts a sensor would send for SI values (m/s^2 or rad/s), saturating at the format's range."""
    fmt = _encodable_format(measurement_type, compressed, frame_type)
    if factor is not None and not (finite_float(factor) or 0) > 0:
        raise DataError(f"factor must be a positive number, got {factor!r}")
    scale = fmt.si_per_unit * ((fmt.default_factor if factor is None else factor) if fmt.uses_factor else 1.0)
    with np.errstate(over="ignore", invalid="ignore"):  # huge values saturate like any out-of-range value
        values = _as_float_array(si_values) / scale
        if fmt.is_float:
            return values.astype(np.float32).astype(np.float64)
    limit = 1 << (fmt.resolution_bits - 1)
    return np.clip(np.rint(values), -limit, limit - 1)


@dataclass(frozen=True)
class DataFrame:
    """A decoded data frame: values (n, 3) in SI units, timestamp of the last sample."""

    measurement_type: int
    timestamp_ns: int
    compressed: bool
    frame_type: int
    values_si: np.ndarray


def decode_frame(data: bytes, factors: Mapping[int, float] | None = None) -> DataFrame:
    """Decode one ACC or GYRO data frame into SI units (m/s^2, rad/s).

    factors: measurement type -> FACTOR from the start response; formats' defaults otherwise.
    """
    data = bytes(data)
    n = len(data)
    if n < FRAME_HEADER_LEN:
        raise _fail(f"frame header is {FRAME_HEADER_LEN} bytes", n, n)
    mtype = data[0] & TYPE_MASK
    timestamp_ns = int.from_bytes(data[1:9], "little")
    compressed, frame_type = bool(data[9] & 0x80), data[9] & 0x7F
    fmt = _format_for(mtype, compressed, frame_type, 9 if mtype in (ACC, GYRO) else 0, n)
    content = data[FRAME_HEADER_LEN:]
    if compressed:
        ints = delta_decode(content, N_CHANNELS, fmt.resolution_bits, wrap32=fmt.is_float,
                            base_offset=FRAME_HEADER_LEN, packet_length=n)
    else:
        ints = _raw_values(content, fmt, n)
    if fmt.is_float:
        values = ints.astype(np.uint32).view(np.float32).astype(np.float64)
        bad = np.flatnonzero(~np.isfinite(values).all(axis=1))
        if bad.size:
            raise _fail(f"sample {int(bad[0])} is not a finite float", FRAME_HEADER_LEN, n)
    else:
        values = ints.astype(np.float64)
    factor = (factors or {}).get(mtype, fmt.default_factor) if fmt.uses_factor else 1.0
    return DataFrame(mtype, timestamp_ns, compressed, frame_type, values * (factor * fmt.si_per_unit))


def _raw_values(content: bytes, fmt: FrameFormat, length: int) -> np.ndarray:
    size = fmt.resolution_bits // 8
    sample_size = size * N_CHANNELS
    if not content or len(content) % sample_size:
        cut = len(content) - len(content) % sample_size
        raise _fail(f"raw samples are {sample_size} bytes each, content is {len(content)}",
                    FRAME_HEADER_LEN + cut, length)
    if len(content) // sample_size > MAX_SAMPLES_PER_FRAME:
        raise _fail(f"more than {MAX_SAMPLES_PER_FRAME} samples in one frame", FRAME_HEADER_LEN, length)
    ints = _little_ints(content, size)
    if not fmt.is_float:
        ints = _signed(ints, 8 * size)
    return ints.reshape(-1, N_CHANNELS)


# ---------------------------------------------------------------- decoder

@dataclass
class _Stream:
    """One measurement stream's unpaired samples and last frame timestamp."""

    last_timestamp_ns: int | None = None
    t_s: np.ndarray = field(default_factory=lambda: np.zeros(0))
    values: np.ndarray = field(default_factory=lambda: np.zeros((0, 3)))


class PolarDecoder:
    """Decodes PMD data frames and control point indications; pairs ACC with GYRO samples by time.

    rate_hz: the nominal rate both streams were started with (times a stream's first frame and checks
    the spacing derived from consecutive timestamps, which must lie within 25 % of it).

    Counters: `frames` per measurement type, `unpaired_samples` (dropped because the other stream had no
    sample within half a period, or buffered for longer than MAX_BUFFERED_S), `ignored_frames` (other
    measurement types). `factors` holds the factors from start responses; `last_response` the latest one.
    A refused start or stop by the sensor raises DecodeError naming the error, as does an unsolicited
    stop; the decoder's state stays valid.
    """

    def __init__(self, rate_hz: float = NORMAL_RATE_HZ) -> None:
        rate = finite_float(rate_hz)
        if rate is None or rate <= 0:
            raise ConfigError(f"polar decoder rate must be a positive number of Hz, got {rate_hz!r}")
        self.rate_hz = rate
        self.factors: dict[int, float] = {}
        self.frames: dict[int, int] = {ACC: 0, GYRO: 0}
        self.unpaired_samples = 0
        self.ignored_frames = 0
        self.last_response: ControlResponse | None = None
        self._streams = {ACC: _Stream(), GYRO: _Stream()}

    def decode(self, payload: bytes) -> list[DecodedPacket]:
        """Decode one notification (data frame or control point indication); [] until pairs are complete."""
        payload = bytes(payload)
        if not payload:
            raise _fail("empty notification", 0, 0)
        if payload[0] == RESPONSE_CODE:
            self._on_response(parse_control_response(payload), len(payload))
            return []
        if payload[0] == STOPPED_CODE and len(payload) < FRAME_HEADER_LEN:
            names = ", ".join(MEASUREMENT_NAMES.get(t, str(t)) for t in payload[1:]) or "all"
            raise _fail(f"sensor stopped streaming: {names}", 0, len(payload))
        mtype = payload[0] & TYPE_MASK
        if mtype not in (ACC, GYRO) and mtype in MEASUREMENT_NAMES:
            self.ignored_frames += 1
            return []
        frame = decode_frame(payload, self.factors)
        self.frames[mtype] += 1
        self._append(frame)
        return self._pair()

    def _on_response(self, response: ControlResponse, length: int) -> None:
        self.last_response = response
        if response.error not in (0, ERROR_ALREADY_IN_STATE) and response.opcode != OP_STOP:
            name = MEASUREMENT_NAMES.get(response.measurement_type, str(response.measurement_type))
            raise _fail(f"sensor refused opcode {response.opcode} for {name}: {response.error_name} "
                        f"(error {response.error})", 3, length)
        if response.opcode == OP_START and response.error == 0:
            self._take_factor(response)

    def _take_factor(self, response: ControlResponse) -> None:
        """Use the FACTOR of a start response; parameters that are no settings TLV leave the default."""
        try:
            settings = response.settings()
        except DecodeError:
            return
        factor = float((settings.get(FACTOR) or (math.nan,))[0])  # a FACTOR entry may hold 0 values
        if math.isfinite(factor) and factor > 0:
            self.factors[response.measurement_type] = factor

    def _append(self, frame: DataFrame) -> None:
        stream = self._streams[frame.measurement_type]
        n = len(frame.values_si)
        period_ns = 1e9 / self.rate_hz
        step_ns = period_ns
        prev = stream.last_timestamp_ns
        if prev is not None and frame.timestamp_ns > prev:
            measured = (frame.timestamp_ns - prev) / n
            if abs(measured / period_ns - 1.0) <= _RATE_TOLERANCE:
                step_ns = measured
        stream.last_timestamp_ns = frame.timestamp_ns
        back_ns = step_ns * np.arange(n - 1, -1, -1, dtype=np.float64)
        t_s = frame.timestamp_ns / 1e9 - back_ns / 1e9
        if len(stream.t_s) and t_s[0] <= stream.t_s[-1]:  # the sensor clock went back: start afresh
            self._keep_from(stream, len(stream.t_s), count=True)
        stream.t_s = np.concatenate([stream.t_s, t_s])
        stream.values = np.concatenate([stream.values, frame.values_si])

    def _pair(self) -> list[DecodedPacket]:
        acc, gyr = self._streams[ACC], self._streams[GYRO]
        tol_s = 0.5 / self.rate_hz
        i = j = 0
        pairs_i: list[int] = []
        pairs_j: list[int] = []
        while i < len(acc.t_s) and j < len(gyr.t_s):
            dt = acc.t_s[i] - gyr.t_s[j]
            if abs(dt) <= tol_s:
                pairs_i.append(i)
                pairs_j.append(j)
                i, j = i + 1, j + 1
            elif dt < 0:
                i += 1
                self.unpaired_samples += 1
            else:
                j += 1
                self.unpaired_samples += 1
        packet = None
        if pairs_i:
            packet = DecodedPacket(acc.values[pairs_i], gyr.values[pairs_j], sensor_time_s=acc.t_s[pairs_i])
        self._keep_from(acc, i)
        self._keep_from(gyr, j)
        return [packet] if packet is not None else []

    def _keep_from(self, stream: _Stream, start: int, count: bool = False) -> None:
        """Drop samples before `start` (counted as unpaired if `count`), and the oldest beyond
        MAX_BUFFERED_S worth (always counted)."""
        if count:
            self.unpaired_samples += start
        overflow = len(stream.t_s) - start - (int(MAX_BUFFERED_S * self.rate_hz) + 1)
        if overflow > 0:
            self.unpaired_samples += overflow
            start += overflow
        stream.t_s = stream.t_s[start:]
        stream.values = stream.values[start:]


PROFILE = Profile(
    name=PROFILE_NAME,
    service_uuid=PMD_SERVICE_UUID,
    notify_uuid=PMD_DATA_UUID,
    write_uuid=PMD_CONTROL_UUID,
    name_prefixes=("Polar Sense",),
    rates_hz=RATES_HZ,
    make_decoder=PolarDecoder,
    start_commands=start_commands,
    stop_commands=stop_commands,
    has_sample_counter=False,
    extra_notify_uuids=(PMD_CONTROL_UUID,),
)
