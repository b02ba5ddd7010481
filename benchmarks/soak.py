"""Soak: two emulated sensors at 200 Hz recorded by one `holdmon live` for M minutes, with faults.

    .venv/bin/python benchmarks/soak.py --minutes 120 [--fault-every-s 180] [--json] [--keep DIR]

Runs on the BlueZoo test stack (private dbus-daemon + patched BlueZoo, as in tests/ble). Two
`holdmon` profile emulators (hci1 left, hci2 right) loop simulated sessions at 200 Hz and log every
notification they hand to D-Bus (`emit_log`); one `holdmon live --no-ui` on hci0 records both. Every
`--fault-every-s` seconds one fault is injected, rotating over the kinds and alternating sensors:

- `kill`: the peripheral is SIGKILLed and restarted 2 s later, its counter where it would be by then;
- `disconnect`: the stack drops the link (`org.bluez.Device1.Disconnect` on the central's device);
- `glitch`: a garbage notification, then a duplicated one (the emulator's SIGUSR1 hook);
- `reset`: the peripheral is SIGKILLed and restarted 2 s later with its sample counter reset to 0.

The client's resident memory and CPU time are sampled every `--sample-every-s` seconds.

Accounting, per sensor, exact: every data sample the emulator logged as emitted is looked up in the
recording (recorded `seq` minus the counter offset of the emulator run it came from; every recorded
row's values are also checked against the source sample with that index). A missing sample is
*explained* when it was emitted inside a fault window (from 0.5 s before a kill/reset/disconnect to
the first notification sent after the stream resumed): those were in flight when the link went.
Samples the emulator sent after the client's STOP command at the end (its last, flushed packet, which
BlueZoo may relay after the write's reply, when the client has gone) are counted apart. Any other
missing sample is *unexplained loss*, which must be 0. Glitches open no window: all their samples
must arrive. The client's end-of-session summary must match each file (samples, gaps, samples lost by
the counter), and both recordings must replay (`holdmon replay --json` exit 0).

A run of 40 minutes or more must also keep the client's resident memory growth (a linear fit after
the warm-up) under 10 MB per hour.

Output: a table on stdout; with --json the last line is one JSON document.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sensor.protocols import holdmon as hm  # noqa: E402
from sensor.recording import read_recording, write_recording  # noqa: E402
from sensor.simulate import SimConfig, simulate_session  # noqa: E402
from tests.ble.conftest import (  # noqa: E402
    ADAPTER_ADDRESSES, ADAPTERS, HOLDMON_CLI, REPO_ROOT, BleStack, EmulatorProcess, Emulators,
    drop_link, missing_ble_stack, start_ble_stack, stop_ble_stack)
from tests.ble.faults import (  # noqa: E402
    EmulatorRun, LiveProcess, drain, last_sent_index, parse_emit_log, proc_stats)

RATE_HZ = 200.0
FAULT_KINDS = ("kill", "disconnect", "glitch", "reset")
SIDES = (("left", "hci1", 1), ("right", "hci2", 2))
DOWN_S = 2.0
WINDOW_LEAD_S = 0.5
RESUME_PAUSE_S = 0.2
"""A pause in a sensor's notifications longer than this after a fault marks the stream's interruption."""
WINDOWLESS_FAULTS = ("glitch", "stall")
"""Faults that break no link: every sample sent around them must be recorded."""
STREAMING_OUTAGES = ("stack-restart",)
"""Link faults during which the sensor keeps sending (into the void) instead of pausing."""
ACC_TOL_MPS2 = hm.acc_scale_mps2(hm.DEFAULT_ACC_CODE) / 2 + 1e-5
GYR_TOL_RADPS = hm.gyro_scale_radps(hm.DEFAULT_GYRO_CODE) / 2 + 1e-5
STREAM_TIMEOUT_S = 60.0
RSS_GROWTH_LIMIT_MB_PER_H = 10.0
GROWTH_CHECK_MIN_S = 2400.0
"""Runs this long or longer must keep the client's memory growth under the limit (shorter ones are
mostly warm-up: their fitted slope is reported, not judged)."""
WARMUP_MAX_S = 600.0
"""Memory growth is fitted after this warm-up (or a quarter of a shorter run): the live analysis fills
its bounded per-rep buffers (`max_rep_buffer_s`, 300 s by default) first."""
STOP_TIMEOUT_S = 60.0
SUMMARY_RE = re.compile(
    r"^(?P<side>left|right) · .*?: [\d.]+ s, (?P<samples>\d+) samples in (?P<packets>\d+) packets, "
    r"(?P<bad>\d+) bad packets, (?P<lost>\d+) samples lost in (?P<gaps>\d+) gaps, (?P<reconnects>\d+) reconnects"
    r"(?:, (?P<resets>\d+) counter resets)?")


# ------------------------------------------------------------------------------------ accounting


@dataclass
class Fault:
    kind: str
    side: str
    t_s: float  # monotonic, when injected
    window: tuple[float, float] | None = None  # monotonic; samples emitted inside may be lost


@dataclass
class SideAccount:
    side: str
    emitted: int = 0
    recorded: int = 0
    missing: int = 0
    explained: int = 0
    after_stop: int = 0  # sent after the client's STOP command (its session had ended), not recorded
    unexplained: int = 0
    not_emitted: int = 0  # recorded rows whose index the emulator never sent (must be 0)
    value_mismatches: int = 0  # recorded rows whose values differ from the source (must be 0)
    emulator_runs: int = 0
    duplicates_injected: int = 0
    garbage_injected: int = 0
    gaps_in_file: int = 0
    counter_jumps_in_file: int = 0  # samples missing by the recorded counter (what the summary calls lost)
    summary: dict = field(default_factory=dict)
    summary_matches_file: bool = False
    replay_exit: int | None = None
    replay_reps: int | None = None
    replay_error: str = ""


def fault_windows(faults: list[Fault], runs: list[EmulatorRun], side: str,
                  received_sends: list[float]) -> list[tuple[float, float]]:
    """Set the window of each fault of `side` that breaks the link, and return them.

    A window opens WINDOW_LEAD_S before the fault. It closes where the stream resumed: for a fault
    after which the sensor pauses (kill, reset, dropped link), the first notification sent after that
    pause; for a fault during which the sensor streams on into the void (STREAMING_OUTAGES), the first
    notification the recording holds a sample of. `received_sends`: send times of the notifications
    with at least one recorded sample, sorted.
    """
    times = np.array([s[0] for run in runs for s in run.sends])
    received = np.asarray(received_sends)
    windows = []
    for fault in faults:
        if fault.side != side or fault.kind in WINDOWLESS_FAULTS:
            continue
        if fault.kind in STREAMING_OUTAGES:
            later = received[received >= fault.t_s]
            end = float(later[0]) if later.size else float("inf")
        else:
            after = times[times >= fault.t_s]
            pauses = np.flatnonzero(np.diff(np.concatenate([[fault.t_s], after])) > RESUME_PAUSE_S)
            end = float(after[pauses[0]]) if pauses.size else float("inf")
        fault.window = (fault.t_s - WINDOW_LEAD_S, end)
        windows.append(fault.window)
    return windows


def stream_indices(seq: np.ndarray, runs: list[EmulatorRun]) -> tuple[np.ndarray, np.ndarray]:
    """(stream index, emulator run) of every recorded row, walking the runs in order.

    Within a run, recorded seq = index + offset. A run that continued the counter keeps the offset;
    after a counter reset (a run starting at or below the previous run's last index) the offset is
    taken from that run's first recorded row (and checked by `value_mismatches`). Rows that fit no
    run get index -1.
    """
    index = np.full(seq.shape, -1, dtype=np.int64)
    run_of = np.full(seq.shape, -1, dtype=np.int64)
    row, offset, previous_last = 0, 0, -1
    for r, run in enumerate(runs):
        if not run.sends or row >= seq.size:
            continue
        first = run.sends[0][1]
        last = run.sends[-1][1] + run.sends[-1][2] - 1
        if first <= previous_last:
            offset = int(seq[row]) - first
        inside = np.flatnonzero(seq[row:] - offset <= last)
        count = int(inside[-1]) + 1 if inside.size else 0
        index[row:row + count] = seq[row:row + count] - offset
        run_of[row:row + count] = r
        row += count
        previous_last = last
    return index, run_of


def value_mismatches(recording, index: np.ndarray, source) -> int:
    """Recorded rows whose values are not the source's sample at their stream index (or fit no run)."""
    ok = index >= 0
    rows = index[ok] % len(source)
    acc_bad = np.abs(recording.samples.acc_mps2[ok] - source.acc_mps2[rows]) > ACC_TOL_MPS2
    gyr_bad = np.abs(recording.samples.gyr_radps[ok] - source.gyr_radps[rows]) > GYR_TOL_RADPS
    return int((acc_bad.any(axis=1) | gyr_bad.any(axis=1)).sum()) + int((~ok).sum())


def account(side: str, emit_log: Path, record: Path, source, faults: list[Fault]) -> SideAccount:
    """Emitted vs recorded for one sensor (see the module docstring)."""
    runs = parse_emit_log(emit_log)
    acc = SideAccount(side, emulator_runs=len(runs), duplicates_injected=sum(r.duplicates for r in runs),
                      garbage_injected=sum(r.garbage for r in runs))
    recording = read_recording(record)
    acc.recorded = len(recording.samples)
    acc.gaps_in_file = len(recording.gaps)
    acc.counter_jumps_in_file = int(np.maximum(np.diff(recording.samples.seq) - 1, 0).sum())
    index, run_of = stream_indices(recording.samples.seq, runs)
    acc.value_mismatches = value_mismatches(recording, index, source)
    recorded_per_run = [set(index[run_of == r].tolist()) for r in range(len(runs))]
    received_sends = sorted(t_s for run, recorded in zip(runs, recorded_per_run)
                            for t_s, first, n in run.sends if not recorded.isdisjoint(range(first, first + n)))
    windows = fault_windows(faults, runs, side, received_sends)
    for run, recorded in zip(runs, recorded_per_run):
        emitted = set()
        for t_s, first, n in run.sends:
            acc.emitted += n
            in_window = any(a <= t_s < b for a, b in windows)
            after_stop = run.stop_s is not None and t_s >= run.stop_s
            for i in range(first, first + n):
                emitted.add(i)
                if i not in recorded:
                    acc.missing += 1
                    acc.explained += in_window and not after_stop
                    acc.after_stop += after_stop
        acc.not_emitted += len(recorded - emitted)
    acc.unexplained = acc.missing - acc.explained - acc.after_stop
    return acc


# ------------------------------------------------------------------------------------ processes


class Sensor:
    """One emulated sensor of the soak: its process, emit log and restarts."""

    def __init__(self, emulators: Emulators, side: str, adapter: str, source_path: Path, out_dir: Path) -> None:
        self.emulators = emulators
        self.side = side
        self.adapter = adapter
        self.source_path = source_path
        self.emit_log = out_dir / f"emit-{side}.log"
        self.err_log = out_dir / f"emulator-{side}.err"
        self.name = f"holdmon-soak-{side}"
        self.proc: EmulatorProcess | None = None

    def start(self, start_index: int = 0) -> None:
        self.proc = self.emulators.start(
            self.adapter, self.source_path, profile="holdmon", rate_hz=RATE_HZ, loop=True, name=self.name,
            start_s=start_index / RATE_HZ, emit_log=str(self.emit_log), glitches=["garbage", "duplicate"])
        drain(self.proc.proc.stderr, self.err_log)

    @property
    def address(self) -> str:
        return ADAPTER_ADDRESSES[ADAPTERS.index(self.adapter)]

    def restart_after_kill(self, reset_counter: bool) -> None:
        """SIGKILL, stay down DOWN_S, come back (counter continuing as if it had run, or reset to 0)."""
        self.proc.kill()
        killed_at = time.monotonic()
        time.sleep(DOWN_S)
        next_index = last_sent_index(self.emit_log) + 1 + round((time.monotonic() - killed_at) * RATE_HZ)
        self.start(0 if reset_counter else next_index)


# ------------------------------------------------------------------------------------ the run


@dataclass
class SoakResult:
    minutes: float
    fault_every_s: float
    faults: list[dict]
    rss_samples: list[tuple[float, float]]  # (s since streaming, MB)
    cpu_percent: float
    rss_start_mb: float
    rss_end_mb: float
    rss_max_mb: float
    rss_growth_mb_per_h: float
    warmup_s: float
    sides: list[dict]
    client_exit: int
    unexplained_loss: int
    ok: bool


def make_source(side_seed: int, out_dir: Path, side: str):
    sim = simulate_session(SimConfig(rate_hz=RATE_HZ, seed=side_seed, lost_packet_rate=0.0, reps=3))
    path = out_dir / f"source-{side}.csv"
    write_recording(path, sim.meta, sim.samples)
    return path, sim.samples


def rss_growth_mb_per_h(samples: list[tuple[float, float]], warmup_s: float) -> float:
    pts = np.array([p for p in samples if p[0] >= warmup_s])
    if len(pts) < 3:
        return float("nan")
    slope_mb_per_s = np.polyfit(pts[:, 0], pts[:, 1], 1)[0]
    return float(slope_mb_per_s * 3600.0)


def parse_summaries(stdout: str) -> dict[str, dict]:
    out = {}
    for line in stdout.splitlines():
        m = SUMMARY_RE.match(line)
        if m:
            out[m["side"]] = {k: int(v or 0) for k, v in m.groupdict().items() if k != "side"}
    return out


def replay(stack: BleStack, path: Path) -> tuple[int, int | None, str]:
    proc = subprocess.run([*HOLDMON_CLI, "replay", str(path), "--json"], env=stack.env, cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        return proc.returncode, None, proc.stderr.strip()[-500:]
    return 0, len(json.loads(proc.stdout)["reps"]), ""


def run_soak(stack: BleStack, out_dir: Path, minutes: float, fault_every_s: float,
             sample_every_s: float = 10.0, log=print) -> SoakResult:
    """The whole soak on a running stack; files go to out_dir. See the module docstring."""
    duration_s = minutes * 60.0
    emulators = Emulators(stack)
    sensors = []
    sources = {}
    client = None
    try:
        for side, adapter, seed in SIDES:
            path, samples = make_source(seed, out_dir, side)
            sources[side] = samples
            sensor = Sensor(emulators, side, adapter, path, out_dir)
            sensor.start()
            sensors.append(sensor)
        records = {s.side: out_dir / f"live-{s.side}.csv" for s in sensors}
        argv = ["live", "--adapter", "hci0", "--rate-hz", f"{RATE_HZ:g}", "--no-ui"]
        for s in sensors:
            argv += ["--device", s.address, "--side", s.side, "--record", str(records[s.side])]
        client = LiveProcess(stack, argv, out_dir)
        for side, _, _ in SIDES:
            client.wait_event("streaming", STREAM_TIMEOUT_S, side=side)
        t0 = time.monotonic()
        cpu0 = proc_stats(client.pid)[1]
        log(f"streaming; soak for {minutes:g} min, a fault every {fault_every_s:g} s (client pid {client.pid})")
        faults: list[Fault] = []
        rss: list[tuple[float, float]] = []
        next_sample = t0
        next_fault = t0 + fault_every_s
        while True:
            now = time.monotonic()
            if client.proc.poll() is not None:
                raise RuntimeError(f"holdmon live exited {client.proc.returncode} during the soak: "
                                   f"{client.stderr()[-2000:]}")
            if now >= next_sample:
                rss.append((now - t0, proc_stats(client.pid)[0]))
                next_sample += sample_every_s
            if now - t0 >= duration_s:
                break
            if now >= next_fault and now - t0 < duration_s - min(20.0, fault_every_s):
                kind = FAULT_KINDS[len(faults) % len(FAULT_KINDS)]
                sensor = sensors[len(faults) % len(sensors)]
                faults.append(inject(kind, sensor, stack))
                log(f"{time.monotonic() - t0:8.1f} s  fault {kind} on {sensor.side}  "
                    f"rss {rss[-1][1]:.1f} MB")
                next_fault += fault_every_s
            time.sleep(max(0.0, min(next_sample, next_fault) - time.monotonic(), 0.05))
        wall_s = time.monotonic() - t0
        cpu_s = proc_stats(client.pid)[1] - cpu0
        client.stop(STOP_TIMEOUT_S)
    finally:
        if client is not None:
            client.kill()
        emulators.stop_all()
    summaries = parse_summaries(client.stdout())
    sides = []
    for sensor in sensors:
        acc = account(sensor.side, sensor.emit_log, records[sensor.side], sources[sensor.side], faults)
        acc.summary = summaries.get(sensor.side, {})
        acc.summary_matches_file = (acc.summary.get("samples"), acc.summary.get("gaps"), acc.summary.get("lost")) \
            == (acc.recorded, acc.gaps_in_file, acc.counter_jumps_in_file)
        acc.replay_exit, acc.replay_reps, acc.replay_error = replay(stack, records[sensor.side])
        sides.append(acc)
    warmup_s = min(WARMUP_MAX_S, 0.25 * duration_s)
    unexplained = sum(a.unexplained for a in sides)
    growth_mb_per_h = rss_growth_mb_per_h(rss, warmup_s)
    growth_ok = duration_s < GROWTH_CHECK_MIN_S or growth_mb_per_h < RSS_GROWTH_LIMIT_MB_PER_H
    ok = (growth_ok and client.proc.returncode == 0 and unexplained == 0 and all(
        a.value_mismatches == 0 and a.not_emitted == 0 and a.replay_exit == 0 and a.summary_matches_file
        for a in sides))
    return SoakResult(
        minutes=minutes, fault_every_s=fault_every_s,
        faults=[{"kind": f.kind, "side": f.side, "t_s": round(f.t_s - t0, 2),
                 "window_s": None if f.window is None else round(f.window[1] - f.window[0], 3)} for f in faults],
        rss_samples=[(round(t, 1), round(m, 2)) for t, m in rss], cpu_percent=100.0 * cpu_s / wall_s,
        rss_start_mb=rss[0][1], rss_end_mb=rss[-1][1], rss_max_mb=max(m for _, m in rss),
        rss_growth_mb_per_h=growth_mb_per_h, warmup_s=warmup_s,
        sides=[asdict(a) for a in sides], client_exit=client.proc.returncode, unexplained_loss=unexplained, ok=ok)


def inject(kind: str, sensor: Sensor, stack: BleStack) -> Fault:
    fault = Fault(kind, sensor.side, time.monotonic())
    if kind == "kill":
        sensor.restart_after_kill(reset_counter=False)
    elif kind == "reset":
        sensor.restart_after_kill(reset_counter=True)
    elif kind == "disconnect":
        drop_link(stack, "hci0", sensor.address)
    elif kind == "glitch":
        os.kill(sensor.proc.pid, signal.SIGUSR1)
    return fault


# ------------------------------------------------------------------------------------ report


def table(result: SoakResult) -> str:
    kinds = {k: sum(f["kind"] == k for f in result.faults) for k in FAULT_KINDS}
    lines = [
        f"soak: {result.minutes:g} min, 2 sensors x {RATE_HZ:g} Hz, faults every {result.fault_every_s:g} s: "
        + ", ".join(f"{k} {n}" for k, n in kinds.items()),
        f"client RSS: start {result.rss_start_mb:.1f} MB, end {result.rss_end_mb:.1f} MB, max "
        f"{result.rss_max_mb:.1f} MB, growth {result.rss_growth_mb_per_h:+.2f} MB/h (fit after "
        f"{result.warmup_s:g} s warm-up, {len(result.rss_samples)} samples)",
        f"client CPU: {result.cpu_percent:.1f} % of one core",
        "",
        f"{'side':<6} {'emitted':>9} {'recorded':>9} {'missing':>8} {'in fault':>9} {'at end':>6} {'unexpl.':>8} "
        f"{'values':>7} {'gaps':>5} {'bad pk':>7} {'dups':>5} {'resets':>6} {'reconn':>6} {'summary=file':>12} "
        f"{'replay':>8}",
    ]
    for s in result.sides:
        summ = s["summary"]
        replay_txt = f"ok {s['replay_reps']} reps" if s["replay_exit"] == 0 else f"exit {s['replay_exit']}"
        lines.append(
            f"{s['side']:<6} {s['emitted']:>9} {s['recorded']:>9} {s['missing']:>8} {s['explained']:>9} "
            f"{s['after_stop']:>6} {s['unexplained']:>8} {s['value_mismatches']:>7} {s['gaps_in_file']:>5} "
            f"{summ.get('bad', '-'):>7} {s['duplicates_injected']:>5} "
            f"{summ.get('resets', '-'):>6} {summ.get('reconnects', '-'):>6} "
            f"{'yes' if s['summary_matches_file'] else 'NO':>12} {replay_txt:>8}")
    lines.append(f"unexplained loss: {result.unexplained_loss}  ->  {'PASS' if result.ok else 'FAIL'}")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=2.0)
    parser.add_argument("--fault-every-s", type=float, default=None,
                        help="default: 180 s, or a sixth of the run when shorter (at least 20 s)")
    parser.add_argument("--sample-every-s", type=float, default=10.0)
    parser.add_argument("--keep", type=Path, default=None, help="keep recordings and logs in this directory")
    parser.add_argument("--json", action="store_true", help="last line: the result as JSON")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # clean up the stack on `kill PID` too
    reason = missing_ble_stack()
    if reason is not None:
        print(f"soak needs the BLE test stack: {reason}", file=sys.stderr)
        return 2
    fault_every_s = args.fault_every_s or max(20.0, min(180.0, args.minutes * 60.0 / 6.0))
    out_dir = args.keep or Path(tempfile.mkdtemp(prefix="holdmon-soak-"))
    out_dir.mkdir(parents=True, exist_ok=True)
    stack = start_ble_stack()
    try:
        result = run_soak(stack, out_dir, args.minutes, fault_every_s, args.sample_every_s,
                          log=lambda m: print(m, file=sys.stderr, flush=True))
    finally:
        stop_ble_stack(stack)
        if args.keep is None:
            shutil.rmtree(out_dir, ignore_errors=True)
    print(table(result))
    if args.json:
        print(json.dumps(asdict(result)))
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
