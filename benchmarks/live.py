"""Live-path benchmark through the BlueZoo stack: latency, CPU and loss, bare bleak vs holdmon.

For each rate (100, 200, 400 Hz) and sensor count (1, 2), emulated holdmon sensors stream through a
private D-Bus + BlueZoo to a bleak central in this process, twice:

- `bare`: a bare bleak subscriber whose callback only stores (arrival time, bytes);
- `holdmon`: the project's path, as `holdmon live` runs it: `sensor.ble.SensorLink` (connect,
  configure, subscribe, watchdog; its notify callback only enqueues (host time, bytes)) and a
  consumer task that decodes, maps the clock, runs the live pipeline and writes the recording
  (`sensor.live.LiveSession` with a `RecordingWriter`).

Latency of a notification = the moment it is done (bare: arrival; holdmon: the consumer finished it)
minus the moment its last sample was due at the emulator (from the packet's sensor time; the
emulator reports its clock origin on CLOCK_MONOTONIC). Loss = samples the emulators sent minus
samples that arrived. CPU = this process's CPU time per sensor, in % of one core.

Usage: `.venv/bin/python benchmarks/live.py [--seconds 10] [--rates 100,200,400] [--sensors 1,2] [--json]`
(`--json`: the results as one JSON line after the table). Needs dbus-daemon and bluezoo (test extra).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from sensor.config import AnalysisParams  # noqa: E402
from sensor.live import LiveSession  # noqa: E402
from sensor.protocols import holdmon as hm  # noqa: E402
from sensor.recording import RecordingWriter  # noqa: E402
from sensor.types import RecordingMeta  # noqa: E402
from tests.ble.conftest import Emulators, missing_ble_stack, start_ble_stack, stop_ble_stack  # noqa: E402

CENTRAL = "hci0"
PERIPHERAL_ADAPTERS = ("hci1", "hci2", "hci3")
SCAN_TIMEOUT_S = 5.0
DRAIN_S = 0.5
WARMUP_S = 1.0
"""Latency and processing statistics skip each sensor's first second (imports, filter set-up)."""


@dataclass
class Result:
    mode: str
    sensors: int
    rate_hz: float
    seconds: float
    notifications: int
    samples_sent: int
    samples_received: int
    lost: int
    latency_median_ms: float
    latency_p99_ms: float
    processing_median_ms: float
    processing_p99_ms: float
    cpu_pct_per_sensor: float


def sent_time_s(payload: bytes, clock_origin_s: float) -> float:
    """CLOCK_MONOTONIC time at which the packet's last sample was due at the emulator."""
    header, _, _ = hm.parse_data_packet(payload)
    last_us = header.t_first_us + (header.n - 1) * hm.sample_period_us(header.rate_code)
    return clock_origin_s + last_us / 1e6


class BareSink:
    """The bare subscriber: the callback stores (arrival time, bytes); nothing else."""

    def __init__(self, n_sensors: int) -> None:
        self.arrivals: list[list[tuple[float, bytes]]] = [[] for _ in range(n_sensors)]

    def callback(self, index: int):
        store = self.arrivals[index]

        def on_data(_char, data: bytearray) -> None:
            store.append((time.monotonic(), bytes(data)))

        return on_data

    def finish(self) -> list[list[tuple[float, bytes]]]:
        return self.arrivals


class HoldmonSink:
    """The project's path: enqueue in the callback; decode, clock, pipeline, recorder in a consumer."""

    def __init__(self, n_sensors: int, rate_hz: float, out_dir: Path) -> None:
        self.queue: asyncio.Queue = asyncio.Queue()
        self.sessions = []
        self.recorders = []
        for i in range(n_sensors):
            meta = RecordingMeta(device=f"bench-{i}", profile="holdmon", rate_hz=rate_hz,
                                 side="left" if i == 0 else "right")
            recorder = RecordingWriter(out_dir / f"bench-{i}.csv", meta, True, overwrite=True)
            self.recorders.append(recorder)
            self.sessions.append(LiveSession(hm.PROFILE, meta, AnalysisParams(), rate_hz, recorder))
        self.done: list[list[tuple[float, bytes]]] = [[] for _ in range(n_sensors)]
        self.processing_s: list[list[float]] = [[] for _ in range(n_sensors)]
        self.streaming = [False] * n_sensors
        self.all_streaming = asyncio.Event()

    def emit(self, index: int):
        put = self.queue.put_nowait
        return lambda item: put((index, item))

    async def run_consumer(self) -> None:
        while True:
            entry = await self.queue.get()
            if entry is None:
                return
            index, item = entry
            t_start = time.monotonic()
            self.sessions[index].handle(item)
            t_done = time.monotonic()
            if item[0] == "data":
                self.done[index].append((t_done, item[2]))
                self.processing_s[index].append(t_done - t_start)
            elif item[2] == "streaming":
                self.streaming[index] = True
                if all(self.streaming):
                    self.all_streaming.set()

    def finish(self) -> list[list[tuple[float, bytes]]]:
        for session, recorder in zip(self.sessions, self.recorders):
            session.finish()
            recorder.close()
        return self.done


async def stream_bare(emulators: list, sink: BareSink, rate_hz: float, seconds: float) -> float:
    """Bare bleak: connect, subscribe, start, wait, stop; returns this process's CPU seconds."""
    from bleak import BleakClient, BleakScanner

    clients = []
    for emulator in emulators:
        device = await BleakScanner.find_device_by_name(emulator.name, timeout=SCAN_TIMEOUT_S,
                                                        bluez={"adapter": CENTRAL})
        if device is None:
            raise RuntimeError(f"{emulator.name} not found on {CENTRAL}")
        client = BleakClient(device, bluez={"adapter": CENTRAL})
        await client.connect()
        clients.append(client)
    cpu0 = time.process_time()
    for i, client in enumerate(clients):
        await client.start_notify(hm.DATA_UUID, sink.callback(i))
        await client.start_notify(hm.CONTROL_UUID, lambda _c, _d: None)
        for uuid, command in hm.PROFILE.start_commands(rate_hz):
            await client.write_gatt_char(uuid, command, response=True)
    await asyncio.sleep(seconds)
    for client in clients:
        for uuid, command in hm.PROFILE.stop_commands():
            await client.write_gatt_char(uuid, command, response=True)
    await asyncio.sleep(DRAIN_S)
    cpu_s = time.process_time() - cpu0
    for client in clients:
        await client.disconnect()
    return cpu_s


async def stream_holdmon(emulators: list, sink: HoldmonSink, rate_hz: float, seconds: float) -> float:
    """The project's links and consumer; CPU seconds from all-streaming to the end of the drain."""
    from sensor.ble import SensorLink, find_sensor

    stop = asyncio.Event()
    links = []
    for i, emulator in enumerate(emulators):
        found = await find_sensor(emulator.name, "holdmon", CENTRAL, SCAN_TIMEOUT_S)
        links.append(SensorLink(found, hm.PROFILE, rate_hz, sink.emit(i), adapter=CENTRAL))
    consumer = asyncio.create_task(sink.run_consumer())
    tasks = [asyncio.create_task(link.run(stop)) for link in links]
    await asyncio.wait_for(sink.all_streaming.wait(), SCAN_TIMEOUT_S * 2)
    cpu0 = time.process_time()
    await asyncio.sleep(seconds)
    stop.set()
    await asyncio.gather(*tasks)  # each link sends STOP (the sensor flushes) and disconnects
    await asyncio.sleep(DRAIN_S)
    sink.queue.put_nowait(None)
    await consumer
    return time.process_time() - cpu0


def clock_origin(ready_line: str) -> float:
    return float(ready_line.rsplit("clock_origin_s=", 1)[1])


def run_case(stack, mode: str, rate_hz: float, n_sensors: int, seconds: float, out_dir: Path) -> Result:
    emulators = Emulators(stack)
    try:
        started = [emulators.start(adapter, None, profile="holdmon", rate_hz=rate_hz, loop=True)
                   for adapter in PERIPHERAL_ADAPTERS[:n_sensors]]
        if mode == "bare":
            sink = BareSink(n_sensors)
            cpu_s = asyncio.run(stream_bare(started, sink, rate_hz, seconds))
        else:
            sink = HoldmonSink(n_sensors, rate_hz, out_dir)
            cpu_s = asyncio.run(stream_holdmon(started, sink, rate_hz, seconds))
        done = sink.finish()
        reports = [e.stop() for e in started]
    finally:
        emulators.stop_all()
    latencies, processing, received, notifications = [], [], 0, 0
    for i, (emulator, items) in enumerate(zip(started, done)):
        origin = clock_origin(emulator.ready_line)
        t_first = None
        for k, (t_done, payload) in enumerate(items):
            if payload[0] & hm.REPLY_FLAG:
                continue
            received += payload[0] & 0x1F
            notifications += 1
            t_first = t_done if t_first is None else t_first
            if t_done - t_first >= WARMUP_S:
                latencies.append(t_done - sent_time_s(payload, origin))
                if isinstance(sink, HoldmonSink):
                    processing.append(sink.processing_s[i][k])
    sent = sum(r["samples_sent"] for r in reports)
    lat_ms = np.asarray(latencies) * 1e3
    proc_ms = np.asarray(processing or [0.0]) * 1e3
    return Result(mode, n_sensors, rate_hz, seconds, notifications, sent, received, sent - received,
                  float(np.median(lat_ms)), float(np.percentile(lat_ms, 99)),
                  float(np.median(proc_ms)), float(np.percentile(proc_ms, 99)),
                  100.0 * cpu_s / seconds / n_sensors)


def table(results: list[Result]) -> str:
    head = (f"{'mode':8} {'sensors':>7} {'rate Hz':>7} {'notif/s':>8} {'sent':>7} {'lost':>5} "
            f"{'lat med ms':>10} {'lat p99 ms':>10} {'proc med ms':>11} {'proc p99 ms':>11} "
            f"{'CPU %/sensor':>12}")
    lines = [head, "-" * len(head)]
    for r in results:
        lines.append(f"{r.mode:8} {r.sensors:>7} {r.rate_hz:>7g} {r.notifications / r.seconds:>8.1f} "
                     f"{r.samples_sent:>7} {r.lost:>5} {r.latency_median_ms:>10.2f} "
                     f"{r.latency_p99_ms:>10.2f} {r.processing_median_ms:>11.2f} "
                     f"{r.processing_p99_ms:>11.2f} {r.cpu_pct_per_sensor:>12.2f}")
    return "\n".join(lines)


def overheads(results: list[Result]) -> list[dict]:
    """holdmon minus bare, per (sensors, rate): the project's own processing cost."""
    bare = {(r.sensors, r.rate_hz): r for r in results if r.mode == "bare"}
    out = []
    for r in results:
        b = bare.get((r.sensors, r.rate_hz))
        if r.mode == "holdmon" and b is not None:
            out.append({"sensors": r.sensors, "rate_hz": r.rate_hz,
                        "p99_added_ms": r.latency_p99_ms - b.latency_p99_ms,
                        "median_added_ms": r.latency_median_ms - b.latency_median_ms,
                        "cpu_added_pct_per_sensor": r.cpu_pct_per_sensor - b.cpu_pct_per_sensor})
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="streaming time per case")
    parser.add_argument("--rates", default="100,200,400", help="comma-separated rates in Hz")
    parser.add_argument("--sensors", default="1,2", help="comma-separated sensor counts (max 3)")
    parser.add_argument("--json", action="store_true", help="print the results as a JSON last line")
    args = parser.parse_args(argv)
    reason = missing_ble_stack()
    if reason is not None:
        print(f"cannot run: {reason}", file=sys.stderr)
        return 2
    rates = [float(x) for x in args.rates.split(",")]
    counts = [int(x) for x in args.sensors.split(",")]
    stack = start_ble_stack()
    os.environ["DBUS_SYSTEM_BUS_ADDRESS"] = stack.address
    results: list[Result] = []
    failures: list[str] = []
    try:
        with tempfile.TemporaryDirectory(prefix="holdmon-bench-") as out_dir:
            for n_sensors in counts:
                for rate_hz in rates:
                    for mode in ("bare", "holdmon"):
                        try:
                            results.append(run_case(stack, mode, rate_hz, n_sensors, args.seconds,
                                                    Path(out_dir)))
                        except (RuntimeError, OSError, asyncio.TimeoutError) as exc:
                            failures.append(f"{mode}, {n_sensors} sensor(s), {rate_hz:g} Hz: {exc}")
                            print(f"FAILED {failures[-1]}", file=sys.stderr, flush=True)
                            continue
                        print(table(results[-1:]).splitlines()[-1], file=sys.stderr, flush=True)
    finally:
        stop_ble_stack(stack)
    print(table(results))
    for o in overheads(results):
        print(f"holdmon processing, {o['sensors']} sensor(s) at {o['rate_hz']:g} Hz: "
              f"+{o['p99_added_ms']:.2f} ms at p99, +{o['median_added_ms']:.2f} ms median, "
              f"+{o['cpu_added_pct_per_sensor']:.2f} % CPU per sensor")
    for failure in failures:
        print(f"failed: {failure}")
    if args.json:
        print(json.dumps({"results": [asdict(r) for r in results], "overheads": overheads(results),
                          "failures": failures}))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
