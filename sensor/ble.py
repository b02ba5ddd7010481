"""Bluetooth LE transport: scanning, connecting, subscribing, watchdog and reconnect. The only bleak user.

What leaves this module is plain data: `FoundSensor` records from a scan, and items a `SensorLink`
hands to its `emit` callback (see `sensor.live`): `("data", host_time_s, payload)` from the notify
callback, which does nothing else, and `("link", host_time_s, state, note)` when the link changes.

Privacy: a link only ever connects to the address it was created with. A sensor asked for by name is
resolved to one address first, and two devices advertising that name are refused.
"""

from __future__ import annotations

import asyncio
import math
import re
import time
from dataclasses import dataclass, replace
from typing import Callable

from bleak import BleakClient, BleakScanner
from bleak.backends.characteristic import BleakGATTCharacteristic
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData
from bleak.exc import BleakError

from sensor.errors import DeviceError
from sensor.protocols import get_profile, match_profile, same_uuid
from sensor.protocols.base import Profile

ADDRESS_RE = re.compile(r"^[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5}$")
NAME_SETTLE_S = 2.0
BACKOFF_S = (0.25, 0.5, 1.0, 2.0, 3.0)
FIRST_DATA_GRACE_S = 3.0
WATCH_TICK_S = 0.05
DISCONNECT_TIMEOUT_S = 3.0

Emit = Callable[[tuple], None]


@dataclass(frozen=True)
class FoundSensor:
    """A device seen while scanning. profile is None when nothing matched its advertisement."""

    name: str | None
    address: str
    profile: str | None
    rssi: int | None
    device: BLEDevice
    same_name_elsewhere: tuple[str, ...] = ()  # other addresses seen advertising this name

    def to_json(self) -> dict:
        return {"name": self.name, "address": self.address, "profile": self.profile, "rssi": self.rssi}


def is_address(text: str) -> bool:
    """True for a Bluetooth address `AA:BB:CC:DD:EE:FF` (any case)."""
    return bool(ADDRESS_RE.match(text.strip()))


def nearest_rate_hz(profile: Profile, rate_hz: float) -> float:
    """The profile's supported rate closest to rate_hz (log scale)."""
    if not profile.rates_hz:
        return float(rate_hz)
    return float(min(profile.rates_hz, key=lambda r: abs(math.log(r / rate_hz))))


def _bluez(adapter: str | None) -> dict:
    return {"adapter": adapter} if adapter else {}


def _found(device: BLEDevice, adv: AdvertisementData) -> FoundSensor:
    name = adv.local_name or device.name
    profile = match_profile(name, list(adv.service_uuids))
    return FoundSensor(name, device.address, None if profile is None else profile.name, adv.rssi, device)


async def scan(adapter: str | None = None, timeout_s: float = 5.0) -> list[FoundSensor]:
    """Devices seen within timeout_s that match a sensor profile, strongest signal first."""
    try:
        seen = await BleakScanner.discover(timeout=timeout_s, return_adv=True, bluez=_bluez(adapter))
    except (BleakError, OSError) as exc:
        raise DeviceError(f"cannot scan on adapter {adapter or 'default'}: {exc}") from None
    found = [_found(d, a) for d, a in seen.values()]
    return sorted((f for f in found if f.profile), key=lambda f: -(f.rssi if f.rssi is not None else -999))


async def _collect(adapter: str | None, timeout_s: float, wanted: Callable[[FoundSensor], bool],
                   done: Callable[[dict[str, FoundSensor], float], bool]) -> dict[str, FoundSensor]:
    """Scan until `done(matches, seconds since the first match)` or timeout; matches by address."""
    matches: dict[str, FoundSensor] = {}
    first_s: list[float] = []

    def on_adv(device: BLEDevice, adv: AdvertisementData) -> None:
        sensor = _found(device, adv)
        if wanted(sensor):
            matches[sensor.address.upper()] = sensor
            if not first_s:
                first_s.append(time.monotonic())

    start = time.monotonic()
    try:
        async with BleakScanner(on_adv, bluez=_bluez(adapter)):
            while time.monotonic() - start < timeout_s:
                since = time.monotonic() - first_s[0] if first_s else -1.0
                if first_s and done(matches, since):
                    break
                await asyncio.sleep(0.05)
    except (BleakError, OSError) as exc:
        raise DeviceError(f"cannot scan on adapter {adapter or 'default'}: {exc}") from None
    return matches


async def find_sensor(device: str | None, profile_name: str = "auto", adapter: str | None = None,
                      timeout_s: float = 10.0) -> FoundSensor:
    """The one sensor to connect to.

    device: an address (only that address is accepted), an advertised name (refused when two
    devices advertise it), or None (the only sensor around that matches a profile; refused when
    there are several). profile_name: "auto" or a profile that the device must then speak.
    Raises DeviceError naming what was seen.
    """
    forced = None if profile_name == "auto" else get_profile(profile_name)
    if device is not None and is_address(device):
        address = device.strip().upper()
        seen = await _collect(adapter, timeout_s, lambda s: s.address.upper() == address or bool(s.name),
                              lambda m, _since: address in m)
        if address not in seen:
            raise DeviceError(f"device {address} not found within {timeout_s:g} s on {adapter or 'default adapter'}")
        sensor = seen[address]
        others = tuple(a for a, s in seen.items() if a != address and sensor.name and s.name == sensor.name)
        sensor = replace(sensor, same_name_elsewhere=others)
    else:
        if device is not None:
            wanted = lambda s: s.name == device  # noqa: E731
            what = f"named {device!r}"
        else:
            wanted = lambda s: s.profile is not None and (forced is None or s.profile == forced.name)  # noqa: E731
            what = "matching a sensor profile" if forced is None else f"speaking {forced.name}"
        matches = await _collect(adapter, timeout_s, wanted, lambda _m, since: since >= NAME_SETTLE_S)
        if not matches:
            raise DeviceError(f"no device {what} found within {timeout_s:g} s on {adapter or 'default adapter'}")
        if len(matches) > 1:
            listing = ", ".join(f"{s.name} {s.address}" for s in matches.values())
            raise DeviceError(f"{len(matches)} devices {what}: {listing}; choose one with --device ADDRESS")
        sensor = next(iter(matches.values()))
    if forced is not None:
        return FoundSensor(sensor.name, sensor.address, forced.name, sensor.rssi, sensor.device)
    return sensor


def _characteristic(client: BleakClient, profile: Profile, uuid: str) -> BleakGATTCharacteristic:
    """The characteristic `uuid` under the profile's service (16-bit UUIDs match on any base)."""
    fallback = None
    for service in client.services:
        for char in service.characteristics:
            if same_uuid(char.uuid, uuid):
                if same_uuid(service.uuid, profile.service_uuid):
                    return char
                fallback = fallback or char
    if fallback is None:
        raise DeviceError(f"{client.address} has no characteristic {uuid} ({profile.name} profile)")
    return fallback


class SensorLink:
    """One sensor's connection, kept up until `stop` is set: connect, configure, subscribe, watch.

    The link is considered lost when bleak reports a disconnect or when no notification arrived for
    `silence_limit_s()` (the stack does not always report a vanished peripheral). It then reconnects
    to the same address with backoff (`BACKOFF_S`), rescanning for it first. The first connection gives up
    after `first_attempts` failures (DeviceError from `run`); later ones retry until stopped.
    """

    def __init__(self, sensor: FoundSensor, profile: Profile, rate_hz: float, emit: Emit, *,
                 adapter: str | None = None, watchdog_s: float = 1.0, connect_timeout_s: float = 10.0,
                 first_attempts: int = 3, rescan_timeout_s: float = 5.0) -> None:
        self.sensor = sensor
        self.profile = profile
        self.rate_hz = rate_hz
        self.emit = emit
        self.adapter = adapter
        self.watchdog_s = watchdog_s
        self.connect_timeout_s = connect_timeout_s
        self.first_attempts = first_attempts
        self.rescan_timeout_s = rescan_timeout_s
        self.last_rx_s = 0.0
        self.mean_interval_s = 0.0
        self.notifications = 0
        self.connections = 0

    def _link(self, state: str, note: str = "") -> None:
        self.emit(("link", time.monotonic(), state, note))

    def _on_notify(self, _char: BleakGATTCharacteristic, data: bytearray) -> None:
        """The notify callback: stamp and hand over (and keep the mean notification interval)."""
        now = time.monotonic()
        if now > self.last_rx_s:
            self.mean_interval_s += 0.05 * (now - self.last_rx_s - self.mean_interval_s)
        self.last_rx_s = now
        self.notifications += 1
        self.emit(("data", now, bytes(data)))

    def silence_limit_s(self) -> float:
        """No data for this long means the link is gone: watchdog_s, or 3 mean notification intervals
        for sensors that notify rarely (Polar sends a frame about every second)."""
        return max(self.watchdog_s, 3.0 * self.mean_interval_s)

    async def run(self, stop: asyncio.Event) -> None:
        """Keep the link up until stop is set; emits link states and data. Always ends with 'stopped'."""
        failures = 0
        device: BLEDevice | None = self.sensor.device
        self._link("connecting", f"{self.sensor.name or ''} {self.sensor.address}".strip())
        try:
            while not stop.is_set():
                try:
                    await _follow_bluez_restart()
                    if device is None:
                        device = await self._rescan(stop)
                    received = self.notifications
                    reason = await self._connected_session(device, stop)
                    failures = 0 if self.notifications > received else failures + 1
                except Exception as exc:  # noqa: BLE001 - any failure of the stack is a failed attempt
                    failures += 1
                    reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
                if stop.is_set():
                    break
                if self.notifications == 0 and failures >= self.first_attempts:
                    raise DeviceError(f"cannot connect to {self.sensor.address}: {reason}")
                device = None
                delay_s = BACKOFF_S[min(max(failures - 1, 0), len(BACKOFF_S) - 1)]
                self._link("reconnecting", f"{reason}; next attempt in {delay_s:g} s")
                await _sleep_unless(stop, delay_s)
        finally:
            self._link("stopped")

    async def _rescan(self, stop: asyncio.Event) -> BLEDevice:
        """Find the same address again (the device object may be gone after a peripheral restart)."""
        address = self.sensor.address.upper()
        matches = await _collect(self.adapter, self.rescan_timeout_s, lambda s: s.address.upper() == address,
                                 lambda m, _since: bool(m) or stop.is_set())
        if address not in matches:
            raise DeviceError(f"{address} is not advertising")
        return matches[address].device

    async def _connected_session(self, device: BLEDevice, stop: asyncio.Event) -> str:
        """Connect, configure, stream until lost or stopped; returns why it ended."""
        lost = asyncio.Event()
        client = BleakClient(device, disconnected_callback=lambda _c: lost.set(),
                             timeout=self.connect_timeout_s, bluez=_bluez(self.adapter))
        if not await _unless_stopped(client.connect(), stop):
            await self._close(client, send_stop=False)
            return ""
        try:
            profile = self.profile
            # Announced before subscribing: some sensors stream as soon as notifications are on, and
            # the consumer must see the new connection before its first packet.
            self.last_rx_s = time.monotonic() + FIRST_DATA_GRACE_S
            self.connections += 1
            self._link("streaming", "reconnected" if self.connections > 1 else "connected")
            for uuid in (profile.notify_uuid, *profile.extra_notify_uuids):
                await client.start_notify(_characteristic(client, profile, uuid), self._on_notify)
            for uuid, payload in profile.start_commands(self.rate_hz):
                char = _characteristic(client, profile, uuid)
                await client.write_gatt_char(char, payload, response="write" in char.properties)
            reason = await self._watch(stop, lost)
            if reason:
                self._link("stalled" if not lost.is_set() else "disconnected", reason)
            return reason
        finally:
            await self._close(client, stop.is_set() and not lost.is_set())

    async def _watch(self, stop: asyncio.Event, lost: asyncio.Event) -> str:
        """'' when stopped; otherwise why the link is considered gone.

        Silence is judged only on a tick that woke up on time: after the event loop itself was
        held up (a busy process), notifications waiting in the socket get one tick to be read first.
        """
        late_s = 0.0
        while True:
            if stop.is_set():
                return ""
            if lost.is_set():
                return "disconnected by the device or the stack"
            silent_s = time.monotonic() - self.last_rx_s
            if silent_s > self.silence_limit_s() and late_s < 0.5 * self.watchdog_s:
                return f"no data for {silent_s:.1f} s"
            wake_s = time.monotonic() + WATCH_TICK_S
            await _sleep_unless(stop, WATCH_TICK_S)
            late_s = time.monotonic() - wake_s

    async def _close(self, client: BleakClient, send_stop: bool) -> None:
        """Best effort: stop streaming when we end the session, then disconnect."""
        try:
            if send_stop and client.is_connected:
                for uuid, payload in self.profile.stop_commands():
                    char = _characteristic(client, self.profile, uuid)
                    await asyncio.wait_for(client.write_gatt_char(char, payload,
                                                                  response="write" in char.properties),
                                           DISCONNECT_TIMEOUT_S)
        except (BleakError, DeviceError, asyncio.TimeoutError, OSError, EOFError):
            pass
        try:
            await asyncio.wait_for(client.disconnect(), DISCONNECT_TIMEOUT_S)
        except (BleakError, asyncio.TimeoutError, OSError, EOFError):
            pass


async def _unless_stopped(coro, stop: asyncio.Event) -> bool:
    """Run coro unless stop is set first (then cancel it): True if it completed."""
    task = asyncio.ensure_future(coro)
    stopper = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopper.cancel()
    if task.done():
        task.result()
        return True
    task.cancel()
    try:
        await task
    except (asyncio.CancelledError, Exception):  # noqa: BLE001 - abandoned on purpose
        pass
    return False


_bluez_owner: list[str] = []
"""The unique D-Bus name of the BlueZ daemon the process last saw (empty before the first look)."""


async def _follow_bluez_restart() -> None:
    """Before a (re)connect: if bluetoothd was restarted, make bleak reload BlueZ's objects.

    bleak keeps a copy of BlueZ's object tree and does not notice the daemon going away, so after a
    restart it would keep the dead daemon's GATT objects next to the new ones (writes then fail with
    UnknownObject on every attempt). Dropping bleak's bus connection makes its next use reload all
    objects from the new daemon. Which daemon is running is told by the owner of `org.bluez`.
    """
    from dbus_fast import BusType, Message, MessageType
    from dbus_fast.aio import MessageBus
    from bleak.backends.bluezdbus.manager import get_global_bluez_manager

    bus = await MessageBus(bus_type=BusType.SYSTEM).connect()
    try:
        reply = await bus.call(Message(destination="org.freedesktop.DBus", path="/org/freedesktop/DBus",
                                       interface="org.freedesktop.DBus", member="GetNameOwner",
                                       signature="s", body=["org.bluez"]))
    finally:
        bus.disconnect()
    if reply.message_type != MessageType.METHOD_RETURN:
        return  # no BlueZ right now: the attempt fails and is retried
    owner = reply.body[0]
    if _bluez_owner and _bluez_owner[0] != owner:
        manager = await get_global_bluez_manager()
        stale_bus = getattr(manager, "_bus", None)  # bleak 3 keeps its bus here
        if stale_bus is not None:
            stale_bus.disconnect()
    _bluez_owner[:] = [owner]


async def _sleep_unless(stop: asyncio.Event, seconds: float) -> None:
    try:
        await asyncio.wait_for(stop.wait(), seconds)
    except asyncio.TimeoutError:
        pass
