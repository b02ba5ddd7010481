"""The project's own sensor protocol, `holdmon` GATT protocol v1 (spec: firmware_notes/PROTOCOL.md).

Pure and table-driven: the layouts below are the single source for decoding and encoding.
A data notification is an 8-byte header followed by n samples of six int16 (ax, ay, az, gx, gy, gz),
all little-endian. The header's 16-bit `seq` is the index of the first sample in the packet
(a per-sample counter), so the decoder counts lost samples exactly.
Replies to commands arrive on the control characteristic; their first byte has bit 7 set,
which a data packet never has, so one decoder can take both streams.
"""

from __future__ import annotations

import math
import operator
import struct
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from sensor.errors import ConfigError, DataError, DecodeError
from sensor.protocols.base import DecodedPacket, Profile

PROFILE_NAME = "holdmon"
PROTOCOL_VERSION = 1

_UUID_TEMPLATE = "ff19{:04x}-dfb9-4379-ac00-2d08c754cb7c"
SERVICE_UUID = _UUID_TEMPLATE.format(0x0001)
DATA_UUID = _UUID_TEMPLATE.format(0x0002)
CONTROL_UUID = _UUID_TEMPLATE.format(0x0003)
NAME_PREFIX = "holdmon-"

STANDARD_GRAVITY_MPS2 = 9.80665

# Code tables (index = code).
RATE_HZ_BY_CODE: tuple[int, ...] = (50, 100, 200, 400)
ACC_RANGE_G_BY_CODE: tuple[int, ...] = (2, 4, 8, 16)
GYRO_RANGE_DPS_BY_CODE: tuple[int, ...] = (250, 500, 1000, 2000)
DEFAULT_RATE_CODE = 1  # 100 Hz
DEFAULT_ACC_CODE = 2  # +-8 g
DEFAULT_GYRO_CODE = 2  # +-1000 dps

HEADER_SIZE = 8
SAMPLE_SIZE = 12
MAX_SAMPLES = 19
TARGET_PACKET_RATE_HZ = 25
ATT_HEADER_SIZE = 3
SEQ_MODULUS = 1 << 16
TIME_MODULUS = 1 << 32

# Data header: (field, byte offset, struct format).
HEADER_FIELDS: tuple[tuple[str, int, str], ...] = (
    ("head", 0, "B"),
    ("config", 1, "B"),
    ("seq", 2, "H"),
    ("t_first_us", 4, "I"),
)
# Bit fields inside header bytes: name -> (byte field, shift, width).
HEADER_BITS: dict[str, tuple[str, int, int]] = {
    "n": ("head", 0, 5),
    "version": ("head", 5, 2),
    "reply": ("head", 7, 1),
    "rate_code": ("config", 0, 2),
    "acc_code": ("config", 2, 2),
    "gyro_code": ("config", 4, 2),
    "stream_start": ("config", 6, 1),
    "device_drop": ("config", 7, 1),
}
SAMPLE_FIELDS: tuple[str, ...] = ("ax", "ay", "az", "gx", "gy", "gz")

# Commands (write to CONTROL_UUID): opcode -> (name, parameter fields (name, struct format)).
OP_START = 0x01
OP_STOP = 0x02
OP_SET_RATE = 0x03
OP_SET_RANGES = 0x04
OP_IDENTIFY = 0x05
OP_READ_STATUS = 0x06
COMMANDS: dict[int, tuple[str, tuple[tuple[str, str], ...]]] = {
    OP_START: ("start", ()),
    OP_STOP: ("stop", ()),
    OP_SET_RATE: ("set_rate", (("rate_code", "B"),)),
    OP_SET_RANGES: ("set_ranges", (("acc_code", "B"), ("gyro_code", "B"))),
    OP_IDENTIFY: ("identify", (("duration_s", "B"),)),
    OP_READ_STATUS: ("read_status", ()),
}
# Upper bound (exclusive) of every command parameter; larger values get STATUS_BAD_VALUE.
PARAM_LIMITS: dict[str, int] = {
    "rate_code": len(RATE_HZ_BY_CODE),
    "acc_code": len(ACC_RANGE_G_BY_CODE),
    "gyro_code": len(GYRO_RANGE_DPS_BY_CODE),
    "duration_s": 256,
}

REPLY_FLAG = 0x80
STATUS_OK = 0x00
STATUS_UNKNOWN_OPCODE = 0x01
STATUS_BAD_LENGTH = 0x02
STATUS_BAD_VALUE = 0x03
STATUS_IMU_ERROR = 0x04
STATUS_NAMES: dict[int, str] = {
    STATUS_OK: "ok",
    STATUS_UNKNOWN_OPCODE: "unknown_opcode",
    STATUS_BAD_LENGTH: "bad_length",
    STATUS_BAD_VALUE: "bad_value",
    STATUS_IMU_ERROR: "imu_error",
}

# Reply payload after (opcode | 0x80, status): opcode -> fields (name, byte offset, struct format).
# Replies to an unknown opcode (status UNKNOWN_OPCODE, whatever byte 0 says: a write of 0x84 is
# answered 84 01) or to an empty write are the 2-byte (opcode | 0x80, status) only.
REPLY_FIELDS: dict[int, tuple[tuple[str, int, str], ...]] = {
    OP_START: (),
    OP_STOP: (),
    OP_SET_RATE: (("rate_code", 2, "B"),),
    OP_SET_RANGES: (("acc_code", 2, "B"), ("gyro_code", 3, "B")),
    OP_IDENTIFY: (),
    OP_READ_STATUS: (
        ("protocol_version", 2, "B"),
        ("board_id", 3, "B"),
        ("state", 4, "B"),
        ("config", 5, "B"),
        ("battery_pct", 6, "B"),
        ("samples_per_packet", 7, "B"),
        ("att_mtu", 8, "H"),
        ("conn_interval_1250us", 10, "H"),
        ("next_seq", 12, "H"),
        ("dropped_samples", 14, "I"),
    ),
}
STATE_BITS: dict[str, int] = {"streaming": 0, "imu_ok": 1, "identifying": 2}
BOARD_NAMES: dict[int, str] = {
    0: "unspecified",
    1: "Seeed XIAO nRF52840 Sense (LSM6DS3TR-C)",
    2: "Arduino Nano 33 BLE Sense Rev2 (BMI270)",
}
BATTERY_UNKNOWN = 0xFF


def _fail(message: str, offset: int, length: int) -> DecodeError:
    return DecodeError(PROFILE_NAME, message, offset, length)


def _whole(value: object, what: str) -> int:
    """value as an int (anything with __index__ but bool); ConfigError naming `what` otherwise."""
    if isinstance(value, bool):
        raise ConfigError(f"holdmon: {what} must be a whole number, got {value!r}")
    try:
        return operator.index(value)  # type: ignore[arg-type]
    except TypeError:
        raise ConfigError(f"holdmon: {what} must be a whole number, got {value!r}") from None


def _reply_length(opcode: int) -> int:
    fields = REPLY_FIELDS[opcode]
    return 2 + sum(struct.calcsize("<" + fmt) for _, _, fmt in fields)


# ----------------------------------------------------------------------------- codes and scales


def rate_code_for(rate_hz: float) -> int:
    """Code of the supported rate nearest to rate_hz (ties go to the higher rate)."""
    if isinstance(rate_hz, bool) or not isinstance(rate_hz, (int, float)) or not 0 < rate_hz < math.inf:
        raise ConfigError(f"holdmon: sample rate must be a positive number, got {rate_hz!r}")
    log_rate = math.log(rate_hz)  # a difference of logs: r / rate_hz overflows for subnormal rates
    errors = [abs(math.log(r) - log_rate) for r in RATE_HZ_BY_CODE]
    best = min(errors)
    return max(i for i, e in enumerate(errors) if e - best < 1e-12)


def _exact_code(value: float, table: tuple[int, ...], what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value not in table:
        raise ConfigError(f"holdmon: {what} must be one of {table}, got {value!r}")
    return table.index(int(value))


def acc_scale_mps2(acc_code: int) -> float:
    """m/s^2 per count: full scale (g) * 9.80665 / 32768."""
    return ACC_RANGE_G_BY_CODE[acc_code] * STANDARD_GRAVITY_MPS2 / 32768.0


def gyro_scale_radps(gyro_code: int) -> float:
    """rad/s per count: full scale (deg/s) * pi / 180 / 32768."""
    return math.radians(GYRO_RANGE_DPS_BY_CODE[gyro_code]) / 32768.0


def sample_period_us(rate_code: int) -> int:
    """Exact sample period in microseconds (20000, 10000, 5000, 2500)."""
    return 1_000_000 // RATE_HZ_BY_CODE[rate_code]


def samples_per_packet(rate_hz: float, att_mtu: int = 23) -> int:
    """Samples the firmware puts in one notification: min(rate/25, what fits in ATT_MTU - 3 bytes)."""
    if _whole(att_mtu, "ATT MTU") < 23:
        raise ConfigError(f"holdmon: ATT MTU is at least 23, got {att_mtu}")
    rate = RATE_HZ_BY_CODE[rate_code_for(rate_hz)]
    fits = (att_mtu - ATT_HEADER_SIZE - HEADER_SIZE) // SAMPLE_SIZE
    return max(1, min(rate // TARGET_PACKET_RATE_HZ, fits, MAX_SAMPLES))


def counts_from_si(
    acc_mps2: np.ndarray, gyr_radps: np.ndarray, acc_code: int, gyro_code: int
) -> tuple[np.ndarray, np.ndarray]:
    """SI (n, 3) arrays -> int16 counts (n, 3), rounded to nearest and saturated at -32768..32767.

    Raises DataError for NaN or infinite values (a packet has no way to carry them).
    """
    try:
        with np.errstate(over="ignore"):  # overflow gives inf, refused below
            acc = np.rint(np.asarray(acc_mps2, dtype=np.float64) / acc_scale_mps2(acc_code))
            gyr = np.rint(np.asarray(gyr_radps, dtype=np.float64) / gyro_scale_radps(gyro_code))
    except (TypeError, ValueError) as exc:
        raise DataError(f"holdmon: acc/gyr values are not numbers: {exc}") from None
    if not (np.isfinite(acc).all() and np.isfinite(gyr).all()):
        raise DataError("holdmon: cannot encode NaN or infinite acc/gyr values into a data packet")
    return (
        np.clip(acc, -32768, 32767).astype(np.int16),
        np.clip(gyr, -32768, 32767).astype(np.int16),
    )


# ----------------------------------------------------------------------------- data packets


@dataclass(frozen=True)
class DataHeader:
    """The 8-byte data header, decoded. Codes index the *_BY_CODE tables."""

    seq: int
    t_first_us: int
    n: int
    rate_code: int = DEFAULT_RATE_CODE
    acc_code: int = DEFAULT_ACC_CODE
    gyro_code: int = DEFAULT_GYRO_CODE
    stream_start: bool = False
    device_drop: bool = False
    version: int = PROTOCOL_VERSION

    @property
    def rate_hz(self) -> int:
        return RATE_HZ_BY_CODE[self.rate_code]


def _pack_bits(values: dict[str, int]) -> dict[str, int]:
    """Bit-field values -> header byte values, per HEADER_BITS (reply bit is 0 in data)."""
    out = {"head": 0, "config": 0}
    for name, (byte_field, shift, width) in HEADER_BITS.items():
        value = int(values.get(name, 0))
        if not 0 <= value < (1 << width):
            raise ConfigError(f"holdmon: header field {name}={value} does not fit {width} bits")
        out[byte_field] |= value << shift
    return out


def encode_data_packet(header: DataHeader, acc_counts: np.ndarray, gyr_counts: np.ndarray) -> bytes:
    """Header + int16 counts (n, 3) each -> notification bytes. header.n must equal n."""
    acc = np.asarray(acc_counts)
    gyr = np.asarray(gyr_counts)
    n = header.n
    if acc.shape != (n, 3) or gyr.shape != (n, 3):
        raise ConfigError(f"holdmon: need ({n}, 3) counts, got acc {acc.shape} gyr {gyr.shape}")
    if not 1 <= n <= MAX_SAMPLES:
        raise ConfigError(f"holdmon: 1..{MAX_SAMPLES} samples per packet, got {n}")
    for name, arr in (("acc", acc), ("gyr", gyr)):
        if arr.size and (arr.min() < -32768 or arr.max() > 32767):
            raise ConfigError(f"holdmon: {name} counts outside int16: {arr.min()}..{arr.max()}")
    values = {
        "n": n, "version": header.version, "rate_code": header.rate_code, "acc_code": header.acc_code,
        "gyro_code": header.gyro_code, "stream_start": int(header.stream_start),
        "device_drop": int(header.device_drop),
    }
    fields = _pack_bits(values)
    fields["seq"] = header.seq % SEQ_MODULUS
    fields["t_first_us"] = header.t_first_us % TIME_MODULUS
    out = bytearray(HEADER_SIZE + SAMPLE_SIZE * n)
    for name, offset, fmt in HEADER_FIELDS:
        struct.pack_into("<" + fmt, out, offset, fields[name])
    body = np.concatenate([acc, gyr], axis=1).astype("<i2")
    out[HEADER_SIZE:] = body.tobytes()
    return bytes(out)


def encode_data_packet_si(
    header: DataHeader, acc_mps2: np.ndarray, gyr_radps: np.ndarray
) -> bytes:
    """Like encode_data_packet, from SI (n, 3) arrays scaled by the header's range codes."""
    acc, gyr = counts_from_si(acc_mps2, gyr_radps, header.acc_code, header.gyro_code)
    return encode_data_packet(header, acc, gyr)


def parse_data_packet(payload: bytes) -> tuple[DataHeader, np.ndarray, np.ndarray]:
    """Stateless parse: bytes -> (header, acc counts (n, 3) int16, gyr counts (n, 3) int16).

    Raises DecodeError (offset, length) for a short, long or malformed packet.
    """
    length = len(payload)
    if length < HEADER_SIZE:
        raise _fail(f"data header needs {HEADER_SIZE} bytes", length, length)
    raw = {name: struct.unpack_from("<" + fmt, payload, off)[0] for name, off, fmt in HEADER_FIELDS}
    bits = {
        name: (raw[byte_field] >> shift) & ((1 << width) - 1)
        for name, (byte_field, shift, width) in HEADER_BITS.items()
    }
    if bits["reply"]:
        raise _fail("byte 0 has the reply bit set; not a data packet", 0, length)
    if bits["version"] != PROTOCOL_VERSION:
        raise _fail(f"protocol version {bits['version']}, expected {PROTOCOL_VERSION}", 0, length)
    n = bits["n"]
    if not 1 <= n <= MAX_SAMPLES:
        raise _fail(f"sample count {n} outside 1..{MAX_SAMPLES}", 0, length)
    expected = HEADER_SIZE + SAMPLE_SIZE * n
    if length != expected:
        raise _fail(f"{n} samples need {expected} bytes", min(length, expected), length)
    header = DataHeader(
        seq=raw["seq"], t_first_us=raw["t_first_us"], n=n, rate_code=bits["rate_code"],
        acc_code=bits["acc_code"], gyro_code=bits["gyro_code"],
        stream_start=bool(bits["stream_start"]), device_drop=bool(bits["device_drop"]),
        version=bits["version"],
    )
    body = np.frombuffer(payload, dtype="<i2", offset=HEADER_SIZE).reshape(n, 6).astype(np.int16)
    return header, body[:, 0:3].copy(), body[:, 3:6].copy()


# ----------------------------------------------------------------------------- commands and replies


def encode_command(opcode: int, **params: int) -> bytes:
    """Command bytes: opcode then its parameters in COMMANDS order (values checked)."""
    if isinstance(opcode, bool) or not isinstance(opcode, int) or opcode not in COMMANDS:
        raise ConfigError(f"holdmon: unknown opcode {opcode!r}")
    name, fields = COMMANDS[opcode]
    if set(params) != {f for f, _ in fields}:
        raise ConfigError(f"holdmon: {name} takes {[f for f, _ in fields]}, got {sorted(params)}")
    out = bytearray([opcode])
    for pname, fmt in fields:
        value = _whole(params[pname], pname)
        if not 0 <= value < PARAM_LIMITS[pname]:
            raise ConfigError(f"holdmon: {pname}={value} outside 0..{PARAM_LIMITS[pname] - 1}")
        out += struct.pack("<" + fmt, value)
    return bytes(out)


def encode_start() -> bytes:
    return encode_command(OP_START)


def encode_stop() -> bytes:
    return encode_command(OP_STOP)


def encode_set_rate(rate_hz: float) -> bytes:
    """SET_RATE for the supported rate nearest to rate_hz."""
    return encode_command(OP_SET_RATE, rate_code=rate_code_for(rate_hz))


def encode_set_ranges(acc_range_g: int, gyro_range_dps: int) -> bytes:
    """SET_RANGES; ranges must be exactly one of the table values."""
    return encode_command(
        OP_SET_RANGES,
        acc_code=_exact_code(acc_range_g, ACC_RANGE_G_BY_CODE, "acc range (g)"),
        gyro_code=_exact_code(gyro_range_dps, GYRO_RANGE_DPS_BY_CODE, "gyro range (dps)"),
    )


def encode_identify(duration_s: int = 5) -> bytes:
    """IDENTIFY: blink the LED for duration_s seconds (0 stops blinking)."""
    return encode_command(OP_IDENTIFY, duration_s=duration_s)


def encode_read_status() -> bytes:
    return encode_command(OP_READ_STATUS)


@dataclass(frozen=True)
class Command:
    """A command as the device sees it: status is what the device will reply with."""

    opcode: int
    status: int
    params: dict[str, int] = field(default_factory=dict)


def parse_command(payload: bytes) -> Command:
    """Device side: never raises; a bad write yields a Command whose status is not STATUS_OK.

    Empty write -> opcode 0, STATUS_BAD_LENGTH. Checks run in this order: opcode, length, values.
    """
    if not payload:
        return Command(0, STATUS_BAD_LENGTH)
    opcode = payload[0]
    if opcode not in COMMANDS:
        return Command(opcode, STATUS_UNKNOWN_OPCODE)
    _, fields = COMMANDS[opcode]
    if len(payload) != 1 + sum(struct.calcsize("<" + fmt) for _, fmt in fields):
        return Command(opcode, STATUS_BAD_LENGTH)
    params: dict[str, int] = {}
    offset = 1
    for pname, fmt in fields:
        params[pname] = struct.unpack_from("<" + fmt, payload, offset)[0]
        offset += struct.calcsize("<" + fmt)
    if any(value >= PARAM_LIMITS[p] for p, value in params.items()):
        return Command(opcode, STATUS_BAD_VALUE, params)
    return Command(opcode, STATUS_OK, params)


@dataclass(frozen=True)
class Reply:
    """A decoded reply: opcode of the command it answers, status and the reply fields."""

    opcode: int
    status: int
    fields: dict[str, int]

    @property
    def ok(self) -> bool:
        return self.status == STATUS_OK

    @property
    def status_name(self) -> str:
        return STATUS_NAMES[self.status]


def encode_reply(opcode: int, status: int, **fields: int) -> bytes:
    """Device side reply bytes. Known opcodes carry all their REPLY_FIELDS; others are 2 bytes."""
    if _whole(status, "status") not in STATUS_NAMES:
        raise ConfigError(f"holdmon: unknown status {status}")
    if not 0 <= _whole(opcode, "opcode") <= 0xFF:
        raise ConfigError(f"holdmon: opcode {opcode} outside 0..255")
    head = bytes([(opcode | REPLY_FLAG) & 0xFF, status])
    if opcode not in REPLY_FIELDS:
        if fields:
            raise ConfigError(f"holdmon: reply to unknown opcode 0x{opcode:02x} has no fields")
        return head
    layout = REPLY_FIELDS[opcode]
    if set(fields) != {name for name, _, _ in layout}:
        raise ConfigError(f"holdmon: reply 0x{opcode:02x} needs {[f for f, _, _ in layout]}")
    out = bytearray(_reply_length(opcode))
    out[0:2] = head
    for name, offset, fmt in layout:
        value = _whole(fields[name], name)
        if not 0 <= value < 1 << (8 * struct.calcsize("<" + fmt)):
            raise ConfigError(f"holdmon: reply field {name}={value} does not fit {fmt!r}")
        struct.pack_into("<" + fmt, out, offset, value)
    return bytes(out)


def parse_reply(payload: bytes) -> Reply:
    """Client side: reply bytes -> Reply. Raises DecodeError for a malformed reply."""
    length = len(payload)
    if length < 2:
        raise _fail("reply needs at least 2 bytes", length, length)
    if not payload[0] & REPLY_FLAG:
        raise _fail("byte 0 lacks the reply bit", 0, length)
    opcode = payload[0] & ~REPLY_FLAG & 0xFF
    status = payload[1]
    if status not in STATUS_NAMES:
        raise _fail(f"unknown status 0x{status:02x}", 1, length)
    if opcode not in REPLY_FIELDS or status == STATUS_UNKNOWN_OPCODE:
        if length != 2:
            raise _fail("reply to an unknown opcode is 2 bytes", 2, length)
        return Reply(opcode, status, {})
    expected = _reply_length(opcode)
    if length != expected:
        raise _fail(f"reply 0x{payload[0]:02x} is {expected} bytes", min(length, expected), length)
    values = {
        name: struct.unpack_from("<" + fmt, payload, offset)[0]
        for name, offset, fmt in REPLY_FIELDS[opcode]
    }
    return Reply(opcode, status, values)


# ----------------------------------------------------------------------------- stateful decoder


class HoldmonDecoder:
    """Per-connection decoder: unwraps the 16-bit sample index and the 32-bit microsecond clock.

    `lost_samples` counts samples missing between consecutive packets (exact, from `seq`);
    `replies` keeps the last REPLY_HISTORY control replies (data and replies may share this decoder).
    """

    REPLY_HISTORY = 64

    def __init__(self) -> None:
        self.lost_samples = 0
        self.replies: deque[Reply] = deque(maxlen=self.REPLY_HISTORY)
        self._end_seq: int | None = None  # unwrapped index of the sample after the last packet
        self._end_t_us = 0  # unwrapped time of that sample (nominal)
        self._last_t_raw = 0
        self._last_t_us = 0

    def decode(self, payload: bytes) -> list[DecodedPacket]:
        """One notification -> [DecodedPacket] for data, [] for a reply (kept in `replies`)."""
        if payload and payload[0] & REPLY_FLAG:
            self.replies.append(parse_reply(payload))
            return []
        header, acc, gyr = parse_data_packet(payload)
        first_seq, t_us = self._unwrap(header)
        n = header.n
        period_us = sample_period_us(header.rate_code)
        idx = np.arange(n, dtype=np.int64)
        packet = DecodedPacket(
            acc_mps2=acc.astype(np.float64) * acc_scale_mps2(header.acc_code),
            gyr_radps=gyr.astype(np.float64) * gyro_scale_radps(header.gyro_code),
            sample_seq=first_seq + idx,
            sensor_time_s=(t_us + idx * period_us) / 1e6,
            packet_seq=header.seq,
        )
        if self._end_seq is not None:
            self.lost_samples += first_seq - self._end_seq
        self._end_seq = first_seq + n
        self._end_t_us = t_us + n * period_us
        self._last_t_raw = header.t_first_us
        self._last_t_us = t_us
        return [packet]

    def _unwrap(self, header: DataHeader) -> tuple[int, int]:
        """(unwrapped first-sample index, unwrapped first-sample time in us) for this packet.

        The index advances by the forward difference mod 2^16; when the clock says more than
        2^16 samples passed (and the stream did not restart), whole turns are added.
        """
        if self._end_seq is None:
            return header.seq, header.t_first_us
        t_us = self._last_t_us + (header.t_first_us - self._last_t_raw) % TIME_MODULUS
        skipped = (header.seq - self._end_seq) % SEQ_MODULUS
        if not header.stream_start:
            by_clock = (t_us - self._end_t_us) / sample_period_us(header.rate_code)
            skipped += SEQ_MODULUS * max(0, round((by_clock - skipped) / SEQ_MODULUS))
        return self._end_seq + skipped, t_us


def start_commands(rate_hz: float) -> list[tuple[str, bytes]]:
    """SET_RATE (nearest supported rate) then START, both to the control characteristic."""
    return [(CONTROL_UUID, encode_set_rate(rate_hz)), (CONTROL_UUID, encode_start())]


def stop_commands() -> list[tuple[str, bytes]]:
    return [(CONTROL_UUID, encode_stop())]


PROFILE = Profile(
    name=PROFILE_NAME,
    service_uuid=SERVICE_UUID,
    notify_uuid=DATA_UUID,
    write_uuid=CONTROL_UUID,
    name_prefixes=(NAME_PREFIX,),
    rates_hz=tuple(float(r) for r in RATE_HZ_BY_CODE),
    make_decoder=HoldmonDecoder,
    start_commands=start_commands,
    stop_commands=stop_commands,
    has_sample_counter=True,
    extra_notify_uuids=(CONTROL_UUID,),
)
