"""Virtual sensor: a BLE GATT peripheral on the BlueZ D-Bus API that streams IMU samples.

It streams a recording or a simulated session in a sensor profile's own packet format and answers
the profile's commands, so the live client can be run and tested without hardware. It talks to
`org.bluez` over the system bus with dbus-fast: it exports an ObjectManager application with
`GattService1`/`GattCharacteristic1` objects, registers it with `GattManager1.RegisterApplication`
and advertises with `LEAdvertisingManager1.RegisterAdvertisement`. On a Linux machine with a real
adapter and bluetoothd it advertises over the air; in tests it runs against a mock `org.bluez`.

Entry point (used by the `holdmon emulate` command)::

    async def run_emulator(
        source: Samples | str | os.PathLike | None = None,  # samples, a recording path, or None: simulate
        *, profile: str = "holdmon",       # "holdmon" | "witmotion"
        adapter: str = "hci0",             # BlueZ adapter name
        rate_hz: float | None = None,      # stream rate; default: the profile's rate nearest the source's
        loop: bool = False,                # restart the source at its end instead of going quiet
        name: str | None = None,           # advertised name; default "<name prefix>-emu-<adapter>"
        seed: int = 0,                     # simulator seed when source is None
        start_s: float = 0.0,              # skip this much of the source (sample counter starts there)
        stop: asyncio.Event | None = None, # set it to end the emulator
        handle_signals: bool = True,       # SIGTERM/SIGINT end the emulator cleanly
        status: TextIO | None = sys.stdout,  # where the "ready ..." and "done {json}" lines go
        emit_log: str | os.PathLike | None = None,  # append one line per notification sent (see below)
        glitches: tuple[str, ...] = (),    # what SIGUSR1 injects: "garbage", "duplicate", "reorder"
    ) -> EmulatorReport

The status stream gets exactly one `ready: ...` line once the application and the advertisement are
registered, and one `done: {json}` line (`EmulatorReport.to_json()`) on exit. The ready line ends
with `clock_origin_s=<s>`: the emulated sensor clock (holdmon `t_first_us`) reads
CLOCK_MONOTONIC minus that value, so a client on the same host can measure latency.

Sample `i` of the stream (counted from the source's first sample, continuing across loops) carries
sample counter `i` where the profile has one, and is sent no earlier than `t0 + (i - i0) / rate_hz`
on a monotonic clock, so timing errors never accumulate. A notification carries several samples and
is sent once its last sample is due.

Fault injection (tests and benchmarks). With `emit_log`, every notification is logged just before it
is handed to D-Bus, one line each, written straight to the file (so a SIGKILLed emulator leaves an exact
log): `<monotonic s> start <pid> <first index>` once, `<s> data <first index> <n>` per data
notification, `<s> dup <first index> <n>` for a duplicated one, `<s> garbage <bytes>` for an injected
undecodable one, `<s> stop` when a central's STOP command arrives (before the samples it flushes). With `glitches`, SIGUSR1 queues those faults for the next data notifications:
`garbage` sends an undecodable notification before it, `duplicate` sends it twice, `reorder` holds it
back and sends it after the following one (out of order). A restarted emulator given `start_s=0`
is a sensor that rebooted with its sample counter reset.

If org.bluez goes away (bluetoothd restarted), streaming stops; when it comes back the emulator
registers its application and advertisement again.

The module has a pure part (schedule, source cursor, per-profile packet generation and command
handling: no IO) and a D-Bus part (`Peripheral`, `run_emulator`).
"""

from __future__ import annotations

import asyncio
import copy
import json
import math
import os
import signal
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Protocol, TextIO

import numpy as np
from dbus_fast import BusType, Message, MessageType, Variant
from dbus_fast.aio import MessageBus
from dbus_fast.service import PropertyAccess, ServiceInterface, dbus_property, method

from sensor.errors import ConfigError, DecodeError, DeviceError
from sensor.protocols import holdmon as hm
from sensor.protocols import witmotion as wm
from sensor.protocols.base import Profile
from sensor.types import Samples

# --------------------------------------------------------------------------------------------
# Pure part: no IO below this line until the D-Bus section.
# --------------------------------------------------------------------------------------------

NOTIFICATIONS_PER_S = 25.0
"""Target notification rate: a real link at a 30-50 ms connection interval carries one or two
notifications per interval, so samples are batched to about this many notifications per second."""


def nominal_rate_hz(t_s: np.ndarray) -> float:
    """Sample rate from the median time step of `t_s` (n,) seconds."""
    if t_s.shape[0] < 2:
        raise ConfigError(f"source has {t_s.shape[0]} samples; need at least 2 to know its rate")
    dt_s = float(np.median(np.diff(t_s)))
    if not dt_s > 0:
        raise ConfigError(f"source time steps are not increasing (median step {dt_s} s)")
    return round(1.0 / dt_s, 6)


def resample(samples: Samples, rate_hz: float) -> Samples:
    """Linear interpolation of `samples` onto a uniform grid at `rate_hz`, starting at t_s[0].

    Drops seq and mag (the emulator numbers its own samples). Returns (m,) and (m, 3) arrays.
    """
    if not rate_hz > 0:
        raise ConfigError(f"rate_hz must be positive, got {rate_hz}")
    t_s = samples.t_s
    n_out = int(math.floor((t_s[-1] - t_s[0]) * rate_hz + 1e-9)) + 1
    t_out = t_s[0] + np.arange(n_out) / rate_hz

    def interp(x: np.ndarray) -> np.ndarray:
        return np.column_stack([np.interp(t_out, t_s, x[:, j]) for j in range(x.shape[1])])

    return Samples(t_out, interp(samples.acc_mps2), interp(samples.gyr_radps))


@dataclass
class StreamSchedule:
    """When samples are due, on a monotonic clock, without drift.

    Sample k (from 0, counted from the schedule's start) is due at t0_s + k / rate_hz.
    """

    rate_hz: float
    t0_s: float

    def time_of(self, k: int) -> float:
        return self.t0_s + k / self.rate_hz

    def samples_due(self, now_s: float) -> int:
        """How many samples are due at `now_s` (all k with time_of(k) <= now_s)."""
        return max(0, math.floor((now_s - self.t0_s) * self.rate_hz + 1e-9) + 1)


@dataclass
class SampleBlock:
    """Consecutive stream samples: first_index is the stream index (sample counter) of row 0."""

    first_index: int
    acc_mps2: np.ndarray
    gyr_radps: np.ndarray

    def __len__(self) -> int:
        return int(self.acc_mps2.shape[0])


class SourceCursor:
    """Walks a uniformly sampled source in blocks; stream index i maps to source row i % n.

    Without `loop`, the stream ends after the source's last row.
    """

    def __init__(self, samples: Samples, loop: bool, start_index: int = 0) -> None:
        if len(samples) == 0:
            raise ConfigError("the emulator's source has no samples")
        self.samples = samples
        self.loop = loop
        self.next_index = start_index

    @property
    def exhausted(self) -> bool:
        return not self.loop and self.next_index >= len(self.samples)

    @property
    def remaining(self) -> float:
        """Samples left before the end (inf when looping)."""
        return math.inf if self.loop else max(0, len(self.samples) - self.next_index)

    def take(self, count: int) -> SampleBlock | None:
        """The next `count` samples (fewer at the end of a non-looping source), or None at its end."""
        n = len(self.samples)
        if self.exhausted or count <= 0:
            return None
        stop = self.next_index + count if self.loop else min(self.next_index + count, n)
        rows = np.arange(self.next_index, stop) % n
        block = SampleBlock(self.next_index, self.samples.acc_mps2[rows], self.samples.gyr_radps[rows])
        self.next_index = stop
        return block

    def rescale(self, old_rate_hz: float, new_rate_hz: float, samples: Samples) -> None:
        """Switch to `samples` at a new rate, keeping the position in time."""
        self.next_index = int(round(self.next_index * new_rate_hz / old_rate_hz))
        self.samples = samples


@dataclass(frozen=True)
class WriteOutcome:
    """What a write to the control characteristic asks the peripheral to do, in this order.

    flush: send the samples already due before anything else (a final, shorter packet).
    start/stop: start or stop streaming. reconfigured: the rate or ranges changed, so a running
    stream restarts (its next packet marks the restart). replies: notifications to send, each
    (characteristic uuid, payload), after the flush.
    """

    replies: tuple[tuple[str, bytes], ...] = ()
    flush: bool = False
    start: bool = False
    stop: bool = False
    reconfigured: bool = False


@dataclass(frozen=True)
class DeviceState:
    """What a command handler may need to know about the running peripheral."""

    streaming: bool
    next_index: int
    dropped_samples: int = 0


class Emulation(Protocol):
    """One profile's behaviour as a peripheral (pure: bytes in, bytes out; keeps its settings)."""

    profile: Profile
    starts_on_subscribe: bool
    rate_hz: float

    def samples_per_notification(self) -> int:
        """How many samples one full notification carries at the current rate."""
        ...

    def encode(self, block: SampleBlock, t_first_s: float, stream_start: bool) -> bytes:
        """One notification carrying every sample of `block`; t_first_s: sensor clock of row 0."""
        ...

    def on_write(self, data: bytes, state: DeviceState) -> WriteOutcome:
        """React to bytes written to the control characteristic (never raises on bad bytes)."""
        ...


ATT_MTU = 247
"""The MTU the emulated sensors assume (what the real ones negotiate with BlueZ)."""


class HoldmonEmulation:
    """The holdmon firmware (firmware_notes/PROTOCOL.md): streams after START, replies on Control."""

    starts_on_subscribe = False

    def __init__(self, rate_hz: float) -> None:
        self.profile = hm.PROFILE
        self.rate_code = hm.rate_code_for(rate_hz)
        if hm.RATE_HZ_BY_CODE[self.rate_code] != rate_hz:
            raise ConfigError(f"holdmon streams at {hm.RATE_HZ_BY_CODE} Hz, not {rate_hz} Hz")
        self.acc_code = hm.DEFAULT_ACC_CODE
        self.gyro_code = hm.DEFAULT_GYRO_CODE

    @property
    def rate_hz(self) -> float:
        return float(hm.RATE_HZ_BY_CODE[self.rate_code])

    def samples_per_notification(self) -> int:
        return hm.samples_per_packet(self.rate_hz, ATT_MTU)

    def encode(self, block: SampleBlock, t_first_s: float, stream_start: bool) -> bytes:
        header = hm.DataHeader(
            seq=block.first_index % hm.SEQ_MODULUS, t_first_us=int(round(t_first_s * 1e6)) % hm.TIME_MODULUS,
            n=len(block), rate_code=self.rate_code, acc_code=self.acc_code, gyro_code=self.gyro_code,
            stream_start=stream_start)
        return hm.encode_data_packet_si(header, block.acc_mps2, block.gyr_radps)

    def on_write(self, data: bytes, state: DeviceState) -> WriteOutcome:
        command = hm.parse_command(data)
        opcode, ok = command.opcode, command.status == hm.STATUS_OK
        control = hm.CONTROL_UUID

        def reply(**fields: int) -> tuple[tuple[str, bytes], ...]:
            return ((control, hm.encode_reply(opcode, command.status, **fields)),)

        if opcode not in hm.REPLY_FIELDS:
            return WriteOutcome(replies=reply())
        if opcode == hm.OP_START:
            return WriteOutcome(replies=reply(), start=ok)
        if opcode == hm.OP_STOP:
            return WriteOutcome(replies=reply(), flush=ok and state.streaming, stop=ok)
        if opcode == hm.OP_SET_RATE:
            changed = ok and command.params["rate_code"] != self.rate_code
            if changed:
                self.rate_code = command.params["rate_code"]
            return WriteOutcome(replies=reply(rate_code=self.rate_code), flush=changed,
                                reconfigured=changed)
        if opcode == hm.OP_SET_RANGES:
            new = (command.params.get("acc_code"), command.params.get("gyro_code"))
            changed = ok and new != (self.acc_code, self.gyro_code)
            if changed:
                self.acc_code, self.gyro_code = new
            return WriteOutcome(replies=reply(acc_code=self.acc_code, gyro_code=self.gyro_code),
                                flush=changed, reconfigured=changed)
        if opcode == hm.OP_READ_STATUS:
            return WriteOutcome(replies=reply(**self._status_fields(state)))
        return WriteOutcome(replies=reply())  # IDENTIFY: no LED to blink

    def _status_fields(self, state: DeviceState) -> dict[str, int]:
        bits = hm.STATE_BITS
        return {
            "protocol_version": hm.PROTOCOL_VERSION, "board_id": 0,
            "state": (int(state.streaming) << bits["streaming"]) | (1 << bits["imu_ok"]),
            "config": self.rate_code | (self.acc_code << 2) | (self.gyro_code << 4),
            "battery_pct": hm.BATTERY_UNKNOWN, "samples_per_packet": self.samples_per_notification(),
            "att_mtu": ATT_MTU, "conn_interval_1250us": 0, "next_seq": state.next_index % hm.SEQ_MODULUS,
            "dropped_samples": state.dropped_samples,
        }


class WitmotionEmulation:
    """WitMotion BLE 5.0: 20-byte 0x55 0x61 frames, several per notification, from subscription on."""

    starts_on_subscribe = True
    max_frames = (ATT_MTU - 3) // wm.FRAME_LEN

    def __init__(self, rate_hz: float) -> None:
        self.profile = wm.PROFILE
        if rate_hz not in wm.RATE_CODES:
            raise ConfigError(f"witmotion streams at {sorted(wm.RATE_CODES)} Hz, not {rate_hz} Hz")
        self.rate_hz = float(rate_hz)

    def samples_per_notification(self) -> int:
        return int(min(self.max_frames, max(1, round(self.rate_hz / NOTIFICATIONS_PER_S))))

    def encode(self, block: SampleBlock, t_first_s: float, stream_start: bool) -> bytes:
        return wm.encode_frames(block.acc_mps2, block.gyr_radps, tilt_angles_deg(block.acc_mps2))

    def on_write(self, data: bytes, state: DeviceState) -> WriteOutcome:
        try:
            register, value = wm.parse_command(data)
        except DecodeError:
            return WriteOutcome()  # the module ignores malformed writes
        if register == wm.REG_RATE:
            try:
                new_rate_hz = wm.rate_hz_for_code(value)
            except ConfigError:
                return WriteOutcome()
            changed = new_rate_hz != self.rate_hz
            self.rate_hz = new_rate_hz
            return WriteOutcome(flush=changed, reconfigured=changed)
        if register == wm.REG_READADDR:
            registers = [wm.RATE_CODES[self.rate_hz] if value + i == wm.REG_RATE else 0 for i in range(8)]
            return WriteOutcome(replies=((wm.NOTIFY_UUID, wm.encode_register_reply(value, registers)),))
        return WriteOutcome()  # unlock, save, calibration: accepted, nothing to emulate


class Streamer:
    """Which samples go out when, and as which bytes: the emulator's behaviour without any IO.

    The caller passes the (monotonic) time. Holds the emulation (profile settings), the source
    cursor and, while streaming, the schedule; the sensor clock is `now_s - clock_origin_s`.
    """

    def __init__(self, emulation: Emulation, source: Samples, *, loop: bool, start_index: int,
                 clock_origin_s: float) -> None:
        self.emulation = emulation
        self.source = source
        self.source_rate_hz = nominal_rate_hz(source.t_s)
        self.cursor = SourceCursor(self._at_rate(emulation.rate_hz), loop, start_index)
        self.clock_origin_s = clock_origin_s
        self.schedule: StreamSchedule | None = None
        self.schedule_first_index = 0

    def _at_rate(self, rate_hz: float) -> Samples:
        if abs(rate_hz - self.source_rate_hz) <= 1e-6 * rate_hz:
            return self.source
        return resample(self.source, rate_hz)

    @property
    def streaming(self) -> bool:
        return self.schedule is not None

    def start(self, now_s: float) -> None:
        """A new schedule from the cursor's position; its first packet marks the (re)start."""
        self.schedule = StreamSchedule(self.emulation.rate_hz, now_s)
        self.schedule_first_index = self.cursor.next_index

    def stop(self) -> None:
        self.schedule = None

    def due(self, now_s: float, final: bool = False,
            emulation: Emulation | None = None) -> list[tuple[bytes, SampleBlock]]:
        """The notifications due at `now_s`: full ones (and, if `final`, the shorter rest), encoded
        with `emulation`'s settings (default: the current ones)."""
        emulation = emulation or self.emulation
        out: list[tuple[bytes, SampleBlock]] = []
        if self.schedule is None:
            return out
        per_notification = emulation.samples_per_notification()
        due = self.schedule.samples_due(now_s)
        while True:
            pending = due - (self.cursor.next_index - self.schedule_first_index)
            short = pending < per_notification and pending < self.cursor.remaining
            if pending <= 0 or (short and not final):
                return out
            block = self.cursor.take(min(pending, per_notification))
            if block is None:
                return out
            k = block.first_index - self.schedule_first_index
            t_first_s = self.schedule.time_of(k) - self.clock_origin_s
            out.append((emulation.encode(block, t_first_s, stream_start=k == 0), block))

    def next_due_s(self) -> float | None:
        """When the next full notification is due; None when stopped or the source has ended."""
        if self.schedule is None or self.cursor.exhausted:
            return None
        count = min(self.emulation.samples_per_notification(), self.cursor.remaining)
        return self.schedule.time_of(self.cursor.next_index - self.schedule_first_index + count - 1)

    def on_write(self, data: bytes, now_s: float) -> tuple[list[tuple[bytes, SampleBlock]], WriteOutcome]:
        """Apply a control write: (notifications flushed before the replies, what the write asked)."""
        before = copy.copy(self.emulation)  # the settings the buffered samples were taken with
        old_rate_hz = before.rate_hz
        outcome = self.emulation.on_write(data, DeviceState(self.streaming, self.cursor.next_index))
        flushed = self.due(now_s, final=True, emulation=before) if outcome.flush else []
        if outcome.stop:
            self.stop()
        if outcome.reconfigured:
            new_rate_hz = self.emulation.rate_hz
            if new_rate_hz != old_rate_hz:
                self.cursor.rescale(old_rate_hz, new_rate_hz, self._at_rate(new_rate_hz))
            if self.streaming:
                self.start(now_s)
        if outcome.start and not self.streaming:
            self.start(now_s)
        return flushed, outcome


def tilt_angles_deg(acc_mps2: np.ndarray) -> np.ndarray:
    """(n, 3) roll, pitch, yaw in degrees from gravity alone (yaw 0), as a resting WitMotion reports."""
    roll = np.degrees(np.arctan2(acc_mps2[:, 1], acc_mps2[:, 2]))
    pitch = np.degrees(np.arctan2(-acc_mps2[:, 0], np.hypot(acc_mps2[:, 1], acc_mps2[:, 2])))
    return np.column_stack([roll, pitch, np.zeros_like(roll)])


def supported_rate_hz(profile: str, rate_hz: float) -> float:
    """The profile's stream rate closest to `rate_hz` (log scale), e.g. holdmon 120 -> 100."""
    rates = {"holdmon": hm.PROFILE.rates_hz, "witmotion": wm.PROFILE.rates_hz}.get(profile)
    if rates is None:
        raise ConfigError(f"cannot emulate profile {profile!r}; choose holdmon or witmotion")
    return float(min(rates, key=lambda r: abs(math.log(r / rate_hz))))


def make_emulation(profile: str, rate_hz: float) -> Emulation:
    """The emulation for a profile name at `rate_hz`; raises ConfigError if it cannot be emulated."""
    if profile == "holdmon":
        return HoldmonEmulation(rate_hz)
    if profile == "witmotion":
        return WitmotionEmulation(rate_hz)
    raise ConfigError(f"cannot emulate profile {profile!r}; choose holdmon or witmotion")


# --------------------------------------------------------------------------------------------
# D-Bus part
# --------------------------------------------------------------------------------------------


BLUEZ = "org.bluez"
APP_PATH = "/org/holdmon/sensor"
ADVERTISEMENT_PATH = f"{APP_PATH}/advertisement0"
SENSOR_CLOCK_AT_START_S = 1.0
"""The emulated sensor clock reads this when the emulator starts (as if powered on a second ago)."""
DEFAULT_RATE_HZ = 100.0
ADVERTISEMENT_REFRESH_S = 0.5
"""ServiceData changes a byte this often, so scanners that only report changes see the sensor again."""
ADVERTISEMENT_DATA_UUID = "0000fff0-0000-1000-8000-00805f9b34fb"
"""16-bit key (SIG base) for the changing ServiceData byte: 4 bytes over the air."""
DBUS_CALL_TIMEOUT_S = 5.0
BLUEZ_OWNER_MATCH = ("type='signal',sender='org.freedesktop.DBus',interface='org.freedesktop.DBus',"
                     "member='NameOwnerChanged',arg0='org.bluez'")
REREGISTER_RETRY_S = 0.2
REREGISTER_TIMEOUT_S = 30.0
"""After a bluetoothd restart, registering is retried this long (its adapters appear after its name)."""
GLITCH_KINDS = ("garbage", "duplicate", "reorder")
GARBAGE_PAYLOAD = bytes([0x13, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0xAA, 0xBB])
"""A data header announcing 19 samples followed by 2 bytes: no decoder can take it."""


class GattService(ServiceInterface):
    """org.bluez.GattService1 of the application."""

    def __init__(self, uuid: str) -> None:
        super().__init__("org.bluez.GattService1")
        self._uuid = uuid

    @dbus_property(access=PropertyAccess.READ)
    def UUID(self) -> "s":  # noqa: N802, F821
        return self._uuid

    @dbus_property(access=PropertyAccess.READ)
    def Primary(self) -> "b":  # noqa: N802, F821
        return True


class GattCharacteristic(ServiceInterface):
    """org.bluez.GattCharacteristic1: forwards writes and (un)subscriptions to the peripheral."""

    def __init__(self, peripheral: "Peripheral", uuid: str, service_path: str, flags: list[str]) -> None:
        super().__init__("org.bluez.GattCharacteristic1")
        self._peripheral = peripheral
        self._uuid = uuid
        self._service_path = service_path
        self._flags = flags
        self._value = b""
        self.notifying = False

    def notify(self, payload: bytes) -> None:
        """Send `payload` to the subscribed central (a Value change signal)."""
        self._value = payload
        self.emit_properties_changed({"Value": payload})

    @dbus_property(access=PropertyAccess.READ)
    def UUID(self) -> "s":  # noqa: N802, F821
        return self._uuid

    @dbus_property(access=PropertyAccess.READ)
    def Service(self) -> "o":  # noqa: N802, F821
        return self._service_path

    @dbus_property(access=PropertyAccess.READ)
    def Flags(self) -> "as":  # noqa: N802, F821, F722
        return self._flags

    @dbus_property(access=PropertyAccess.READ)
    def Value(self) -> "ay":  # noqa: N802, F821
        return self._value

    @dbus_property(access=PropertyAccess.READ)
    def Notifying(self) -> "b":  # noqa: N802, F821
        return self.notifying

    @method()
    def ReadValue(self, options: "a{sv}") -> "ay":  # noqa: N802, F821, F722
        return self._value

    @method()
    def WriteValue(self, value: "ay", options: "a{sv}"):  # noqa: N802, F821, F722
        self._peripheral.on_write(bytes(value))

    @method()
    def StartNotify(self):  # noqa: N802
        if not self.notifying:
            self.notifying = True
            self.emit_properties_changed({"Notifying": True})
            self._peripheral.on_subscribe(self)

    @method()
    def StopNotify(self):  # noqa: N802
        if self.notifying:
            self.notifying = False
            self.emit_properties_changed({"Notifying": False})
            self._peripheral.on_unsubscribe(self)

    @method()
    def Confirm(self):  # noqa: N802
        """Indication confirmations (BlueZoo calls it after every notification): nothing to do."""


class Advertisement(ServiceInterface):
    """org.bluez.LEAdvertisement1: connectable, discoverable, with a changing ServiceData byte."""

    def __init__(self, name: str, service_uuids: list[str]) -> None:
        super().__init__("org.bluez.LEAdvertisement1")
        self._name = name
        self._service_uuids = service_uuids
        self._counter = 0

    def _service_data(self) -> dict[str, Variant]:
        return {ADVERTISEMENT_DATA_UUID: Variant("ay", bytes([self._counter]))}

    def bump(self) -> None:
        """Change the ServiceData byte (see ADVERTISEMENT_REFRESH_S)."""
        self._counter = (self._counter + 1) % 256
        self.emit_properties_changed({"ServiceData": self._service_data()})

    @dbus_property(access=PropertyAccess.READ)
    def Type(self) -> "s":  # noqa: N802, F821
        return "peripheral"

    @dbus_property(access=PropertyAccess.READ)
    def ServiceUUIDs(self) -> "as":  # noqa: N802, F821, F722
        return self._service_uuids

    @dbus_property(access=PropertyAccess.READ)
    def LocalName(self) -> "s":  # noqa: N802, F821
        return self._name

    @dbus_property(access=PropertyAccess.READ)
    def Discoverable(self) -> "b":  # noqa: N802, F821
        return True

    @dbus_property(access=PropertyAccess.READ)
    def ServiceData(self) -> "a{sv}":  # noqa: N802, F821, F722
        return self._service_data()

    @method()
    def Release(self):  # noqa: N802
        """BlueZ dropped the advertisement; nothing to free."""


@dataclass
class EmulatorReport:
    """What the emulator did. Sample indices are stream indices (= sample counters)."""

    profile: str
    name: str
    adapter: str
    rate_hz: float
    samples_sent: int = 0
    notifications_sent: int = 0
    first_index: int | None = None
    last_index: int | None = None
    subscriptions: int = 0
    registrations: int = 0
    writes: int = 0
    source_exhausted: bool = False
    commands: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        return asdict(self)


class Peripheral:
    """The GATT application, its advertisement and the streaming task on one adapter."""

    def __init__(self, emulation: Emulation, source: Samples, *, adapter: str, loop: bool, name: str,
                 start_index: int) -> None:
        self.emulation = emulation
        self.adapter_path = f"/org/bluez/{adapter}"
        self.boot_s = time.monotonic() - SENSOR_CLOCK_AT_START_S
        self.streamer = Streamer(emulation, source, loop=loop, start_index=start_index,
                                 clock_origin_s=self.boot_s)
        self.report = EmulatorReport(emulation.profile.name, name, adapter, emulation.rate_hz)
        profile = emulation.profile
        service_path = f"{APP_PATH}/service0"
        self.service = GattService(profile.service_uuid)
        self.chars = {profile.notify_uuid: GattCharacteristic(self, profile.notify_uuid, service_path, ["notify"])}
        if profile.write_uuid is not None:
            flags = ["write", "write-without-response"]
            if profile.write_uuid in profile.extra_notify_uuids:
                flags.append("notify")
            self.chars[profile.write_uuid] = GattCharacteristic(self, profile.write_uuid, service_path, flags)
        self.data_char = self.chars[profile.notify_uuid]
        self.advertisement = Advertisement(name, [profile.service_uuid])
        self.bus: MessageBus | None = None
        self.stream_task: asyncio.Task | None = None
        self.register_task: asyncio.Task | None = None
        self.emit_log_fd: int | None = None
        self.pending_glitches: list[str] = []
        self.held: tuple[bytes, SampleBlock] | None = None

    # ---- events from the characteristics -------------------------------------------------
    def on_subscribe(self, char: GattCharacteristic) -> None:
        if char is self.data_char:
            self.report.subscriptions += 1
            if self.emulation.starts_on_subscribe:
                self._start()

    def on_unsubscribe(self, char: GattCharacteristic) -> None:
        if char is self.data_char:
            self._stop()

    def on_write(self, data: bytes) -> None:
        self.report.writes += 1
        self.report.commands.append(data.hex())
        schedule = self.streamer.schedule
        flushed, outcome = self.streamer.on_write(data, time.monotonic())
        if outcome.stop:
            self._log("stop")  # the central asked to stop: what follows (the flush) ends its session
        for payload, block in flushed:
            self._send(payload, block)
        if self.streamer.schedule is not schedule:
            self._restart_task()
        self.report.rate_hz = self.emulation.rate_hz
        for uuid, payload in outcome.replies:
            self.chars[uuid].notify(payload)

    # ---- streaming --------------------------------------------------------------------------
    def _start(self) -> None:
        self.streamer.start(time.monotonic())
        self._restart_task()

    def _stop(self) -> None:
        if self.held is not None:  # a notification held back for reordering goes out now
            held, self.held = self.held, None
            self._notify_data(*held)
        self.streamer.stop()
        self._restart_task()

    def _restart_task(self) -> None:
        """One streaming task per schedule (a new schedule may be due sooner than the old one)."""
        if self.stream_task is not None:
            self.stream_task.cancel()
            self.stream_task = None
        if self.streamer.streaming:
            self.stream_task = asyncio.create_task(self._stream())

    async def _stream(self) -> None:
        """Send each notification once its last sample is due, until stopped or the source ends."""
        while True:
            for payload, block in self.streamer.due(time.monotonic()):
                self._send(payload, block)
            wake_s = self.streamer.next_due_s()
            if wake_s is None:
                break
            await asyncio.sleep(max(0.0, wake_s - time.monotonic()))
        self.report.source_exhausted = self.streamer.cursor.exhausted

    def _send(self, payload: bytes, block: SampleBlock) -> None:
        glitch = self.pending_glitches.pop(0) if self.pending_glitches else None
        if glitch == "garbage":
            self.data_char.notify(GARBAGE_PAYLOAD)
            self._log(f"garbage {len(GARBAGE_PAYLOAD)}")
        if glitch == "reorder" and self.held is None:
            self.held = (payload, block)
            return
        self._notify_data(payload, block)
        if glitch == "duplicate":
            self.data_char.notify(payload)
            self._log(f"dup {block.first_index} {len(block)}")
        if self.held is not None:
            held, self.held = self.held, None
            self._notify_data(*held)

    def _notify_data(self, payload: bytes, block: SampleBlock) -> None:
        self._log(f"data {block.first_index} {len(block)}")  # first: a SIGKILL between the two lines
        self.data_char.notify(payload)  # then leaves a logged packet unsent, never one sent unlogged
        report = self.report
        report.samples_sent += len(block)
        report.notifications_sent += 1
        if report.first_index is None:
            report.first_index = block.first_index
        last_index = block.first_index + len(block) - 1
        report.last_index = last_index if report.last_index is None else max(report.last_index, last_index)

    # ---- fault injection -----------------------------------------------------------------
    def open_emit_log(self, path: str | os.PathLike) -> None:
        self.emit_log_fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self._log(f"start {os.getpid()} {self.streamer.cursor.next_index}")

    def _log(self, text: str) -> None:
        """One emit-log line, written at once (an unbuffered write survives SIGKILL)."""
        if self.emit_log_fd is not None:
            os.write(self.emit_log_fd, f"{time.monotonic():.6f} {text}\n".encode())

    def inject(self, kinds: tuple[str, ...]) -> None:
        """Queue glitches for the next data notifications (one notification each)."""
        self.pending_glitches.extend(kinds)

    # ---- D-Bus ------------------------------------------------------------------------------
    async def start(self) -> None:
        """Connect to the system bus, export the objects, register application and advertisement."""
        try:
            self.bus = await MessageBus(bus_type=BusType.SYSTEM).connect()
        except (OSError, ValueError) as exc:
            raise DeviceError(f"cannot connect to the system D-Bus: {exc}") from exc
        service_path = f"{APP_PATH}/service0"
        self.bus.export(service_path, self.service)
        for i, char in enumerate(self.chars.values()):
            self.bus.export(f"{service_path}/char{i}", char)
        self.bus.export(ADVERTISEMENT_PATH, self.advertisement)
        self.bus.add_message_handler(self._on_bus_message)
        await self._call_bus("AddMatch", BLUEZ_OWNER_MATCH)
        await self._register()

    async def _register(self) -> None:
        await self._call("org.bluez.GattManager1", "RegisterApplication", "oa{sv}", [APP_PATH, {}])
        await self._call("org.bluez.LEAdvertisingManager1", "RegisterAdvertisement", "oa{sv}",
                         [ADVERTISEMENT_PATH, {}])
        self.report.registrations += 1

    def _on_bus_message(self, msg: Message) -> None:
        """org.bluez went away (bluetoothd restarted): every link is gone; when it is back, register
        again, retrying until its adapters exist."""
        if (msg.message_type != MessageType.SIGNAL or msg.member != "NameOwnerChanged"
                or not msg.body or msg.body[0] != BLUEZ):
            return
        _, old_owner, new_owner = msg.body
        if old_owner:
            self._stop()
            for char in self.chars.values():
                char.notifying = False
        if new_owner:
            self.register_task = asyncio.create_task(self._register_again())

    async def _register_again(self) -> None:
        deadline_s = time.monotonic() + REREGISTER_TIMEOUT_S
        while True:
            try:
                await self._register()
                return
            except (DeviceError, asyncio.TimeoutError) as exc:
                if time.monotonic() > deadline_s:
                    print(f"emulate: cannot register again with {BLUEZ}: {exc}", file=sys.stderr, flush=True)
                    return
                await asyncio.sleep(REREGISTER_RETRY_S)

    async def _call_bus(self, member: str, rule: str) -> None:
        reply = await self.bus.call(Message(
            destination="org.freedesktop.DBus", path="/org/freedesktop/DBus",
            interface="org.freedesktop.DBus", member=member, signature="s", body=[rule]))
        if reply.message_type == MessageType.ERROR:
            raise DeviceError(f"D-Bus {member} failed: {reply.error_name} {reply.body}")

    async def stop(self) -> None:
        """Stop streaming, unregister (best effort) and leave the bus."""
        self._stop()
        if self.emit_log_fd is not None:
            os.close(self.emit_log_fd)
            self.emit_log_fd = None
        if self.bus is None or not self.bus.connected:
            return
        for interface, member, path in (
                ("org.bluez.LEAdvertisingManager1", "UnregisterAdvertisement", ADVERTISEMENT_PATH),
                ("org.bluez.GattManager1", "UnregisterApplication", APP_PATH)):
            try:
                await self._call(interface, member, "o", [path])
            except (DeviceError, asyncio.TimeoutError):
                pass  # bluetoothd gone or already dropped it: nothing left to undo
        self.bus.disconnect()

    async def _call(self, interface: str, member: str, signature: str, body: list) -> None:
        if self.bus is None:
            raise DeviceError(f"{interface}.{member}: not connected to D-Bus")
        reply = await asyncio.wait_for(self.bus.call(Message(
            destination=BLUEZ, path=self.adapter_path, interface=interface, member=member,
            signature=signature, body=body)), DBUS_CALL_TIMEOUT_S)
        if reply.message_type == MessageType.ERROR:
            detail = reply.body[0] if reply.body else ""
            raise DeviceError(f"{interface}.{member} on {self.adapter_path} failed: "
                              f"{reply.error_name} {detail}")

    async def refresh_advertisement(self, stop: asyncio.Event) -> None:
        """Bump the advertisement until `stop` is set; raises DeviceError if the bus goes away."""
        while not stop.is_set():
            if self.bus is None or not self.bus.connected:
                raise DeviceError("lost the connection to the system D-Bus")
            try:
                await asyncio.wait_for(stop.wait(), ADVERTISEMENT_REFRESH_S)
            except asyncio.TimeoutError:
                self.advertisement.bump()


def load_source(source: Samples | str | os.PathLike | None, *, rate_hz: float, seed: int) -> Samples:
    """The samples to stream: given samples, a recording file, or a simulated session at rate_hz.

    A source with gaps or uneven steps is put on a uniform grid first (linear interpolation).
    """
    if isinstance(source, Samples):
        samples = source
    elif source is None:
        from sensor.simulate import SimConfig, simulate_session

        samples = simulate_session(SimConfig(rate_hz=rate_hz, seed=seed, lost_packet_rate=0.0)).samples
    else:
        from sensor.recording import read_recording

        samples = read_recording(os.fspath(source)).samples
    rate = nominal_rate_hz(samples.t_s)
    steps = np.diff(samples.t_s) * rate
    if steps.size and (steps.min() < 0.5 or steps.max() > 1.5):
        samples = resample(samples, rate)
    return samples


def default_name(profile: Profile, adapter: str) -> str:
    """E.g. `holdmon-emu-hci1`, `WT-emu-hci1`: the profile's name prefix, so clients recognise it."""
    prefix = profile.name_prefixes[0].rstrip("-") if profile.name_prefixes else profile.name
    return f"{prefix}-emu-{adapter}"


async def run_emulator(
    source: Samples | str | os.PathLike | None = None,
    *,
    profile: str = "holdmon",
    adapter: str = "hci0",
    rate_hz: float | None = None,
    loop: bool = False,
    name: str | None = None,
    seed: int = 0,
    start_s: float = 0.0,
    stop: asyncio.Event | None = None,
    handle_signals: bool = True,
    status: TextIO | None = sys.stdout,
    emit_log: str | os.PathLike | None = None,
    glitches: tuple[str, ...] = (),
) -> EmulatorReport:
    """Run the virtual sensor until `stop` is set (or SIGTERM/SIGINT); see the module docstring."""
    if start_s < 0:
        raise ConfigError(f"start_s must be >= 0, got {start_s}")
    unknown = sorted(set(glitches) - set(GLITCH_KINDS))
    if unknown:
        raise ConfigError(f"unknown glitch {', '.join(unknown)}; choose from {', '.join(GLITCH_KINDS)}")
    samples = load_source(source, rate_hz=rate_hz or DEFAULT_RATE_HZ, seed=seed)
    stream_rate_hz = rate_hz or supported_rate_hz(profile, nominal_rate_hz(samples.t_s))
    emulation = make_emulation(profile, stream_rate_hz)
    name = name or default_name(emulation.profile, adapter)
    peripheral = Peripheral(emulation, samples, adapter=adapter, loop=loop, name=name,
                            start_index=int(round(start_s * emulation.rate_hz)))
    stop = stop or asyncio.Event()
    event_loop = asyncio.get_running_loop()
    if handle_signals:
        for signum in (signal.SIGTERM, signal.SIGINT):
            event_loop.add_signal_handler(signum, stop.set)
    if emit_log is not None:
        peripheral.open_emit_log(emit_log)
    if glitches:
        event_loop.add_signal_handler(signal.SIGUSR1, peripheral.inject, tuple(glitches))
    try:
        await peripheral.start()
        _status(status, f"ready: {name} profile={emulation.profile.name} adapter={adapter} "
                        f"rate_hz={emulation.rate_hz:g} samples={len(samples)} "
                        f"clock_origin_s={peripheral.boot_s:.6f}")
        await peripheral.refresh_advertisement(stop)
    finally:
        await peripheral.stop()
        if handle_signals:
            for signum in (signal.SIGTERM, signal.SIGINT):
                event_loop.remove_signal_handler(signum)
        if glitches:
            event_loop.remove_signal_handler(signal.SIGUSR1)
    _status(status, "done: " + json.dumps(peripheral.report.to_json()))
    return peripheral.report


def _status(stream: TextIO | None, line: str) -> None:
    if stream is not None:
        print(line, file=stream, flush=True)
