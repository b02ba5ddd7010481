"""End-to-end BLE fixtures: a private D-Bus, the BlueZoo mock of org.bluez, and emulated sensors.

`ble_stack` (session): a dbus-daemon with a session-type config in a temp dir and the patched BlueZoo
(`bluezoo_patched.py`) with adapters hci0..hci3, powered. `DBUS_SYSTEM_BUS_ADDRESS` points at that bus
for this process (bleak) and for every subprocess started through the stack's `env`.

`emulators` (function): starts `holdmon emulate`-equivalent processes on an adapter and stops them
by PID (SIGTERM, then the `done: {json}` report is parsed).

Without dbus-daemon or bluezoo the tests skip with the reason, unless HOLDMON_REQUIRE_BLE=1 (CI),
where they fail instead.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
ADAPTERS = ("hci0", "hci1", "hci2", "hci3")
ADAPTER_ADDRESSES = tuple(f"00:00:00:00:00:0{i + 1}" for i in range(len(ADAPTERS)))
READY_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 5.0

BUS_CONFIG = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-BUS Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:path={socket}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_destination="*" eavesdrop="true"/>
    <allow receive_sender="*"/>
    <allow eavesdrop="true"/>
  </policy>
</busconfig>
"""


def missing_ble_stack() -> str | None:
    """Why the stack cannot run here, or None when dbus-daemon and bluezoo are both available."""
    if shutil.which("dbus-daemon") is None:
        return "dbus-daemon not found (Debian package dbus-daemon)"
    if importlib.util.find_spec("bluezoo") is None:
        return "bluezoo not installed (pip install '.[test]')"
    if importlib.util.find_spec("bleak") is None:
        return "bleak not installed"
    return None


def require_ble_stack() -> None:
    """Skip (or, with HOLDMON_REQUIRE_BLE=1, fail) when the stack is missing."""
    reason = missing_ble_stack()
    if reason is None:
        return
    if os.environ.get("HOLDMON_REQUIRE_BLE") == "1":
        pytest.fail(f"BLE stack required (HOLDMON_REQUIRE_BLE=1) but {reason}")
    pytest.skip(f"BLE end-to-end stack unavailable: {reason}")


@dataclass
class BleStack:
    """A running private bus + BlueZoo. `env` is os.environ with DBUS_SYSTEM_BUS_ADDRESS set."""

    address: str
    tmp_dir: Path
    env: dict[str, str]
    processes: list[subprocess.Popen] = field(default_factory=list)


async def _adapters_powered(address: str) -> bool:
    from dbus_fast import BusType, Message, MessageType
    from dbus_fast.aio import MessageBus

    bus = await MessageBus(bus_address=address, bus_type=BusType.SYSTEM).connect()
    try:
        reply = await bus.call(Message(destination="org.bluez", path="/",
                                       interface="org.freedesktop.DBus.ObjectManager",
                                       member="GetManagedObjects"))
        if reply.message_type != MessageType.METHOD_RETURN:
            return False
        objects = reply.body[0]
        for name in ADAPTERS:
            props = objects.get(f"/org/bluez/{name}", {}).get("org.bluez.Adapter1")
            if props is None or not props["Powered"].value:
                return False
        return True
    finally:
        bus.disconnect()


def _wait_adapters_powered(address: str, bluezoo: subprocess.Popen, log_path: Path) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if bluezoo.poll() is not None:
            raise RuntimeError(f"bluezoo exited with {bluezoo.returncode}: {log_path.read_text()}")
        if asyncio.run(_adapters_powered(address)):
            return
        time.sleep(0.05)
    raise RuntimeError(f"BlueZoo adapters {ADAPTERS} not powered within {READY_TIMEOUT_S} s")


async def drop_link_async(bus_address: str, central: str, peripheral_address: str) -> None:
    """Drop a connection from the stack's side: `org.bluez.Device1.Disconnect` on the central's device
    object, as when the radio link is lost (the central gets a disconnect; the peripheral lives on)."""
    from dbus_fast import BusType, Message, MessageType
    from dbus_fast.aio import MessageBus

    path = f"/org/bluez/{central}/dev_{peripheral_address.upper().replace(':', '_')}"
    bus = await MessageBus(bus_address=bus_address, bus_type=BusType.SYSTEM).connect()
    try:
        reply = await bus.call(Message(destination="org.bluez", path=path, interface="org.bluez.Device1",
                                       member="Disconnect"))
        if reply.message_type == MessageType.ERROR:
            raise RuntimeError(f"Disconnect {path}: {reply.error_name} {reply.body}")
    finally:
        bus.disconnect()


def drop_link(stack: "BleStack", central: str, peripheral_address: str) -> None:
    """Synchronous drop_link_async, for tests that run the client in a subprocess."""
    asyncio.run(drop_link_async(stack.address, central, peripheral_address))


def _terminate(proc: subprocess.Popen) -> None:
    """SIGTERM by PID, then SIGKILL if it does not end."""
    if proc.poll() is not None:
        return
    os.kill(proc.pid, signal.SIGTERM)
    try:
        proc.wait(STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(STOP_TIMEOUT_S)


def _start_bluezoo(stack: BleStack) -> None:
    """Start the patched BlueZoo on the stack's bus (log: bluezoo.log in the temp dir) and wait until
    its adapters are powered. It becomes stack.processes[1]."""
    argv = [sys.executable, str(Path(__file__).with_name("bluezoo_patched.py")),
            "--auto-enable", "--scan-interval", "1"]
    for address in ADAPTER_ADDRESSES:
        argv += ["-a", address]
    log_path = stack.tmp_dir / "bluezoo.log"
    with open(log_path, "a") as log:
        bluezoo = subprocess.Popen(argv, env=stack.env, stdout=subprocess.DEVNULL, stderr=log)
    stack.processes[1:2] = [bluezoo]
    _wait_adapters_powered(stack.address, bluezoo, log_path)


def restart_bluezoo(stack: BleStack, *, kill: bool = False) -> None:
    """End BlueZoo by PID (SIGTERM, or SIGKILL with kill=True) and start a fresh one on the same bus.

    Every adapter, device, connection and registration is gone afterwards, as after a bluetoothd
    restart: peripherals must register again, centrals must reconnect.
    """
    bluezoo = stack.processes[1]
    if kill:
        os.kill(bluezoo.pid, signal.SIGKILL)
        bluezoo.wait(STOP_TIMEOUT_S)
    else:
        _terminate(bluezoo)
    _start_bluezoo(stack)


def start_ble_stack() -> BleStack:
    """Start dbus-daemon and the patched BlueZoo; the caller must call stop_ble_stack()."""
    tmp_dir = Path(tempfile.mkdtemp(prefix="holdmon-ble-"))
    config = tmp_dir / "bus.conf"
    config.write_text(BUS_CONFIG.format(socket=tmp_dir / "bus.sock"))
    daemon = subprocess.Popen(
        ["dbus-daemon", f"--config-file={config}", "--nofork", "--nopidfile", "--print-address=1"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    stack = BleStack("", tmp_dir, {}, [daemon])
    try:
        stack.address = daemon.stdout.readline().strip()
        if not stack.address:
            raise RuntimeError(f"dbus-daemon printed no address: {daemon.stderr.read()}")
        stack.env = {**os.environ, "DBUS_SYSTEM_BUS_ADDRESS": stack.address}
        _start_bluezoo(stack)
    except BaseException:
        stop_ble_stack(stack)
        raise
    return stack


def stop_ble_stack(stack: BleStack) -> None:
    """SIGTERM BlueZoo, then dbus-daemon (by PID), then remove the temp dir."""
    for proc in reversed(stack.processes):
        _terminate(proc)
    shutil.rmtree(stack.tmp_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def ble_stack():
    require_ble_stack()
    stack = start_ble_stack()
    previous = os.environ.get("DBUS_SYSTEM_BUS_ADDRESS")
    os.environ["DBUS_SYSTEM_BUS_ADDRESS"] = stack.address
    try:
        yield stack
    finally:
        if previous is None:
            os.environ.pop("DBUS_SYSTEM_BUS_ADDRESS", None)
        else:
            os.environ["DBUS_SYSTEM_BUS_ADDRESS"] = previous
        stop_ble_stack(stack)


class EmulatorProcess:
    """One virtual sensor subprocess. Status lines: `ready: ...` then `done: {json}`."""

    def __init__(self, proc: subprocess.Popen, adapter: str, name: str) -> None:
        self.proc = proc
        self.adapter = adapter
        self.name = name
        self.address = ADAPTER_ADDRESSES[ADAPTERS.index(adapter)]
        self.report: dict | None = None
        self.ready_line = ""

    @property
    def pid(self) -> int:
        return self.proc.pid

    def wait_ready(self) -> str:
        line = self.proc.stdout.readline()
        if not line.startswith("ready:"):
            self.proc.wait(STOP_TIMEOUT_S)
            raise RuntimeError(f"emulator on {self.adapter} did not start: {line!r} "
                               f"{self.proc.stderr.read()}")
        self.ready_line = line.strip()
        return self.ready_line

    def stop(self) -> dict:
        """SIGTERM by PID; returns the emulator's report (the `done:` line)."""
        _terminate(self.proc)
        for line in self.proc.stdout.read().splitlines():
            if line.startswith("done: "):
                self.report = json.loads(line[len("done: "):])
        if self.report is None:
            raise RuntimeError(f"emulator on {self.adapter} left no report; stderr: "
                               f"{self.proc.stderr.read()}")
        return self.report

    def kill(self) -> None:
        """SIGKILL by PID: the sensor vanishes without unregistering anything."""
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(STOP_TIMEOUT_S)


HOLDMON_CLI = [sys.executable, "-c", "import sys; from sensor.cli.main import app; sys.argv[0] = 'holdmon'; app()"]
"""The `holdmon` command, run with this interpreter."""

EMULATOR_SCRIPT = """
import asyncio, json, sys
from sensor.emulate import run_emulator
kwargs = json.loads(sys.argv[1])
source = kwargs.pop("source")
asyncio.run(run_emulator(source, **kwargs))
"""


class Emulators:
    """Factory for emulator subprocesses; everything started is stopped at teardown."""

    def __init__(self, stack: BleStack) -> None:
        self.stack = stack
        self.started: list[EmulatorProcess] = []

    def start(self, adapter: str, source: str | os.PathLike | None, *, profile: str = "holdmon",
              rate_hz: float | None = None, loop: bool = False, name: str | None = None,
              start_s: float = 0.0, seed: int = 0, cli: bool = False, **options) -> EmulatorProcess:
        """Start an emulator and wait until it advertises.

        cli=True runs the `holdmon emulate` command (which has no start_s); otherwise
        `sensor.emulate.run_emulator` is called directly, with any further `options` (JSON-ready
        keyword arguments, e.g. emit_log, glitches).
        """
        name = name or f"{'holdmon' if profile == 'holdmon' else 'WT'}-emu-{adapter}"
        if cli:
            if start_s:
                raise ValueError("holdmon emulate has no start_s option")
            argv = [*HOLDMON_CLI, "emulate", "--profile", profile, "--adapter", adapter, "--name", name,
                    "--seed", str(seed)]
            argv += ["--simulate"] if source is None else ["--from", os.fspath(source)]
            argv += [] if rate_hz is None else ["--rate-hz", str(rate_hz)]
            argv += ["--loop"] if loop else []
        else:
            kwargs = {"source": None if source is None else os.fspath(source), "profile": profile,
                      "adapter": adapter, "rate_hz": rate_hz, "loop": loop, "name": name,
                      "start_s": start_s, "seed": seed, **options}
            argv = [sys.executable, "-c", EMULATOR_SCRIPT, json.dumps(kwargs)]
        proc = subprocess.Popen(argv, env=self.stack.env, cwd=REPO_ROOT, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        emulator = EmulatorProcess(proc, adapter, name)
        self.started.append(emulator)
        emulator.wait_ready()
        return emulator

    def stop_all(self) -> None:
        for emulator in self.started:
            if emulator.proc.poll() is None:
                _terminate(emulator.proc)


@pytest.fixture
def emulators(ble_stack):
    factory = Emulators(ble_stack)
    try:
        yield factory
    finally:
        factory.stop_all()


@dataclass
class Source:
    """A simulated session written as a recording: what an emulator streams in a test."""

    path: Path
    samples: object  # sensor.types.Samples
    truth: dict
    rate_hz: float


@pytest.fixture(scope="session")
def make_source(tmp_path_factory):
    """make_source(rate_hz, *, reps=2, seconds=None, seed=1, session_s=None) -> Source (cached).

    `session_s` simulates a session of that length (as many reps as fit) instead of `reps` reps;
    `seconds` keeps only the first seconds of it (for sample-accounting tests).
    """
    from sensor.recording import write_recording
    from sensor.simulate import SimConfig, simulate_session

    cache: dict[tuple, Source] = {}
    out_dir = tmp_path_factory.mktemp("sources")

    def make(rate_hz: float, *, reps: int = 2, seconds: float | None = None, seed: int = 1,
             session_s: float | None = None) -> Source:
        key = (rate_hz, reps, seconds, seed, session_s)
        if key not in cache:
            sim = simulate_session(SimConfig(reps=reps, rate_hz=rate_hz, seed=seed, lost_packet_rate=0.0,
                                             duration_s=session_s))
            samples = sim.samples
            if seconds is not None:
                samples = samples.slice(0, int(round(seconds * rate_hz)))
            path = out_dir / f"source-{rate_hz:g}hz-{reps}reps-{session_s}-{seconds}s-seed{seed}.csv"
            write_recording(path, sim.meta, samples)
            cache[key] = Source(path, samples, sim.truth, rate_hz)
        return cache[key]

    return make
