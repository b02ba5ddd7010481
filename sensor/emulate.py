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
        rate_hz: float | None = None,      # stream rate; default: the source's rate (simulate: 100 Hz)
        loop: bool = False,                # restart the source at its end instead of going quiet
        name: str | None = None,           # advertised name; default "<profile prefix>-emu-<adapter>"
        seed: int = 0,                     # simulator seed when source is None
        start_s: float = 0.0,              # skip this much of the source (sample counter starts there)
        stop: asyncio.Event | None = None, # set it to end the emulator
        handle_signals: bool = True,       # SIGTERM/SIGINT end the emulator cleanly
        status: TextIO | None = sys.stdout,  # where the "ready ..." and "done {json}" lines go
    ) -> EmulatorReport

The status stream gets exactly one `ready: ...` line once the application and the advertisement are
registered, and one `done: {json}` line (`EmulatorReport.to_json()`) on exit.

Sample `i` of the stream (counted from the source's first sample, continuing across loops) carries
sample counter `i` where the profile has one, and is sent no earlier than `t0 + (i - i0) / rate_hz`
on a monotonic clock, so timing errors never accumulate. A notification carries several samples and
is sent once its last sample is due.

The module has a pure part (schedule, source cursor, per-profile packet generation and command
handling: no IO) and a D-Bus part (`Peripheral`, `run_emulator`).
"""

from __future__ import annotations

import asyncio
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

from sensor.errors import ConfigError, DeviceError
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
    """When notifications are due, on a monotonic clock, without drift.

    Notification k (from 0) carries stream samples [k*m, (k+1)*m) counted from the schedule's start
    and is due when its last sample's time has come: t0_s + ((k + 1) * m - 1) / rate_hz.
    """

    rate_hz: float
    samples_per_notification: int
    t0_s: float

    def due_time_s(self, k: int) -> float:
        return self.t0_s + ((k + 1) * self.samples_per_notification - 1) / self.rate_hz

    def due_count(self, now_s: float) -> int:
        """How many notifications are due at `now_s` (all k with due_time_s(k) <= now_s)."""
        samples_due = math.floor((now_s - self.t0_s) * self.rate_hz + 1e-9) + 1
        return max(0, samples_due // self.samples_per_notification)


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

    def take(self, count: int) -> SampleBlock | None:
        """The next `count` samples (fewer at the end of a non-looping source), or None at its end."""
        n = len(self.samples)
        if self.exhausted:
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
    """What a write to the control characteristic asks for.

    replies: payloads to send as notifications on the data characteristic.
    rate_hz: new stream rate, or None to keep it. start/stop: start or stop streaming.
    """

    replies: tuple[bytes, ...] = ()
    rate_hz: float | None = None
    start: bool = False
    stop: bool = False


class Emulation(Protocol):
    """One profile's behaviour as a peripheral (pure: bytes in, bytes out)."""

    profile: Profile
    starts_on_subscribe: bool

    def samples_per_notification(self, rate_hz: float) -> int:
        """How many samples one notification carries at `rate_hz`."""
        ...

    def encode(self, block: SampleBlock, rate_hz: float) -> bytes:
        """One notification payload carrying every sample of `block`."""
        ...

    def on_write(self, data: bytes, rate_hz: float) -> WriteOutcome:
        """React to bytes written to the control characteristic."""
        ...


def batch_size(rate_hz: float, max_per_notification: int) -> int:
    """Samples per notification for about NOTIFICATIONS_PER_S notifications/s, within [1, max]."""
    return int(min(max_per_notification, max(1, round(rate_hz / NOTIFICATIONS_PER_S))))


def make_emulation(profile: str) -> Emulation:
    """The emulation for a profile name; raises ConfigError for a profile that cannot be emulated."""
    factories = {"holdmon": _holdmon_emulation, "witmotion": _witmotion_emulation}
    if profile not in factories:
        raise ConfigError(f"cannot emulate profile {profile!r}; choose one of {sorted(factories)}")
    return factories[profile]()


def _holdmon_emulation() -> Emulation:
    raise ConfigError("holdmon profile: not yet available")


def _witmotion_emulation() -> Emulation:
    return WitmotionEmulation()


G_MPS2 = 9.80665
WIT_ACC_SCALE = 32768.0 / (16.0 * G_MPS2)
WIT_GYR_SCALE = 32768.0 / (2000.0 * math.pi / 180.0)


class WitmotionEmulation:
    """WitMotion BLE 5.0: 20-byte 0x55 0x61 frames, streaming once notifications are enabled."""

    starts_on_subscribe = True
    max_frames = 12  # 240 B: fits the 247-byte MTU these modules negotiate

    def __init__(self) -> None:
        from sensor.protocols import witmotion

        self.profile = witmotion.PROFILE

    def samples_per_notification(self, rate_hz: float) -> int:
        return batch_size(rate_hz, self.max_frames)

    def encode(self, block: SampleBlock, rate_hz: float) -> bytes:
        acc = np.clip(np.round(block.acc_mps2 * WIT_ACC_SCALE), -32768, 32767).astype("<i2")
        gyr = np.clip(np.round(block.gyr_radps * WIT_GYR_SCALE), -32768, 32767).astype("<i2")
        angles = np.zeros_like(acc)
        head = np.tile(np.array([0x55, 0x61], dtype=np.uint8), (len(block), 1))
        body = np.hstack([acc, gyr, angles]).astype("<i2").view(np.uint8).reshape(len(block), 18)
        return np.hstack([head, body]).tobytes()

    def on_write(self, data: bytes, rate_hz: float) -> WriteOutcome:
        return WriteOutcome()


# --------------------------------------------------------------------------------------------
# D-Bus part
# --------------------------------------------------------------------------------------------


BLUEZ = "org.bluez"
APP_PATH = "/org/holdmon/sensor"
ADVERTISEMENT_PATH = f"{APP_PATH}/advertisement0"
ADVERTISEMENT_REFRESH_S = 0.5
"""ServiceData changes a byte this often, so scanners that only report changes see the sensor again."""
ADVERTISEMENT_DATA_UUID = "0000fff0-0000-1000-8000-00805f9b34fb"
"""16-bit key (SIG base) for the changing ServiceData byte: 4 bytes over the air."""
DBUS_CALL_TIMEOUT_S = 5.0


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
    writes: int = 0
    source_exhausted: bool = False
    commands: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        return asdict(self)


class Peripheral:
    """The GATT application, its advertisement and the streaming task on one adapter."""

    def __init__(self, emulation: Emulation, source: Samples, *, adapter: str, rate_hz: float,
                 loop: bool, name: str, start_index: int) -> None:
        self.emulation = emulation
        self.source_at_rate = source
        self.original_source = source
        self.adapter_path = f"/org/bluez/{adapter}"
        self.rate_hz = rate_hz
        self.cursor = SourceCursor(source, loop, start_index)
        self.report = EmulatorReport(emulation.profile.name, name, adapter, rate_hz)
        profile = emulation.profile
        service_path = f"{APP_PATH}/service0"
        self.service = GattService(profile.service_uuid)
        self.data_char = GattCharacteristic(self, profile.notify_uuid, service_path, ["notify"])
        self.control_char = (None if profile.write_uuid is None else GattCharacteristic(
            self, profile.write_uuid, service_path, ["write", "write-without-response"]))
        self.advertisement = Advertisement(name, [profile.service_uuid])
        self.bus: MessageBus | None = None
        self.stream_task: asyncio.Task | None = None
        self.subscribed = False
        self.started = emulation.starts_on_subscribe

    # ---- events from the characteristics -------------------------------------------------
    def on_subscribe(self, char: GattCharacteristic) -> None:
        if char is not self.data_char:
            return
        self.subscribed = True
        self.report.subscriptions += 1
        self.started = self.emulation.starts_on_subscribe or self.started
        self._update_streaming()

    def on_unsubscribe(self, char: GattCharacteristic) -> None:
        if char is not self.data_char:
            return
        self.subscribed = False
        self.started = False
        self._update_streaming()

    def on_write(self, data: bytes) -> None:
        self.report.writes += 1
        self.report.commands.append(data.hex())
        outcome = self.emulation.on_write(data, self.rate_hz)
        if outcome.rate_hz is not None and outcome.rate_hz != self.rate_hz:
            self._set_rate(outcome.rate_hz)
        if outcome.stop:
            self.started = False
        if outcome.start:
            self.started = True
        for reply in outcome.replies:
            self.data_char.notify(reply)
        self._update_streaming(restart=outcome.rate_hz is not None)

    def _set_rate(self, rate_hz: float) -> None:
        resampled = resample(self.original_source, rate_hz)
        self.cursor.rescale(self.rate_hz, rate_hz, resampled)
        self.rate_hz = rate_hz
        self.report.rate_hz = rate_hz

    # ---- streaming --------------------------------------------------------------------------
    def _update_streaming(self, restart: bool = False) -> None:
        want = self.subscribed and self.started
        running = self.stream_task is not None and not self.stream_task.done()
        if running and (not want or restart):
            self.stream_task.cancel()
            running = False
        if want and not running:
            self.stream_task = asyncio.create_task(self._stream())

    async def _stream(self) -> None:
        """Send notifications as they come due (see StreamSchedule) until the source ends."""
        per_notification = self.emulation.samples_per_notification(self.rate_hz)
        schedule = StreamSchedule(self.rate_hz, per_notification, time.monotonic())
        sent = 0
        while True:
            due = schedule.due_count(time.monotonic())
            while sent < due:
                block = self.cursor.take(per_notification)
                if block is None:
                    self.report.source_exhausted = True
                    return
                self.data_char.notify(self.emulation.encode(block, self.rate_hz))
                self._count(block)
                sent += 1
            await asyncio.sleep(max(0.0, schedule.due_time_s(sent) - time.monotonic()))

    def _count(self, block: SampleBlock) -> None:
        report = self.report
        report.samples_sent += len(block)
        report.notifications_sent += 1
        if report.first_index is None:
            report.first_index = block.first_index
        report.last_index = block.first_index + len(block) - 1

    # ---- D-Bus ------------------------------------------------------------------------------
    async def start(self) -> None:
        """Connect to the system bus, export the objects, register application and advertisement."""
        try:
            self.bus = await MessageBus(bus_type=BusType.SYSTEM).connect()
        except (OSError, ValueError) as exc:
            raise DeviceError(f"cannot connect to the system D-Bus: {exc}") from exc
        service_path = f"{APP_PATH}/service0"
        self.bus.export(service_path, self.service)
        self.bus.export(f"{service_path}/char0", self.data_char)
        if self.control_char is not None:
            self.bus.export(f"{service_path}/char1", self.control_char)
        self.bus.export(ADVERTISEMENT_PATH, self.advertisement)
        await self._call("org.bluez.GattManager1", "RegisterApplication", "oa{sv}", [APP_PATH, {}])
        await self._call("org.bluez.LEAdvertisingManager1", "RegisterAdvertisement", "oa{sv}",
                         [ADVERTISEMENT_PATH, {}])

    async def stop(self) -> None:
        """Stop streaming, unregister (best effort) and leave the bus."""
        if self.stream_task is not None:
            self.stream_task.cancel()
        if self.bus is None:
            return
        for interface, member in (("org.bluez.LEAdvertisingManager1", "UnregisterAdvertisement"),
                                  ("org.bluez.GattManager1", "UnregisterApplication")):
            path = ADVERTISEMENT_PATH if "Advertis" in member else APP_PATH
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
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), ADVERTISEMENT_REFRESH_S)
            except asyncio.TimeoutError:
                self.advertisement.bump()


def load_source(source: Samples | str | os.PathLike | None, *, rate_hz: float | None,
                seed: int) -> Samples:
    """The samples to stream: given samples, a recording file, or a simulated session."""
    if isinstance(source, Samples):
        return source
    if source is None:
        from sensor.simulate import SimConfig, simulate_session

        return simulate_session(SimConfig(rate_hz=rate_hz or 100.0, seed=seed)).samples
    from sensor.recording import read_recording

    return read_recording(os.fspath(source)).samples


def default_name(profile: Profile, adapter: str) -> str:
    return f"{profile.name_prefixes[0]}-emu-{adapter}" if profile.name_prefixes else f"emu-{adapter}"


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
) -> EmulatorReport:
    """Run the virtual sensor until `stop` is set (or SIGTERM/SIGINT); see the module docstring."""
    emulation = make_emulation(profile)
    samples = load_source(source, rate_hz=rate_hz, seed=seed)
    source_rate_hz = nominal_rate_hz(samples.t_s)
    stream_rate_hz = rate_hz or source_rate_hz
    if rate_hz is not None and abs(rate_hz - source_rate_hz) > 1e-6 * rate_hz:
        samples = resample(samples, rate_hz)
    if start_s < 0:
        raise ConfigError(f"start_s must be >= 0, got {start_s}")
    name = name or default_name(emulation.profile, adapter)
    peripheral = Peripheral(emulation, samples, adapter=adapter, rate_hz=stream_rate_hz, loop=loop,
                            name=name, start_index=int(round(start_s * stream_rate_hz)))
    stop = stop or asyncio.Event()
    if handle_signals:
        event_loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            event_loop.add_signal_handler(signum, stop.set)
    try:
        await peripheral.start()
        _status(status, f"ready: {name} profile={emulation.profile.name} adapter={adapter} "
                        f"rate_hz={stream_rate_hz:g} samples={len(samples)}")
        await peripheral.refresh_advertisement(stop)
    finally:
        await peripheral.stop()
        if handle_signals:
            for signum in (signal.SIGTERM, signal.SIGINT):
                asyncio.get_running_loop().remove_signal_handler(signum)
    _status(status, "done: " + json.dumps(peripheral.report.to_json()))
    return peripheral.report


def _status(stream: TextIO | None, line: str) -> None:
    if stream is not None:
        print(line, file=stream, flush=True)
