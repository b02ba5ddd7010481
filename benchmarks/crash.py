"""Crash safety: SIGKILL `holdmon live --record` at random moments, then check what each file kept.

    .venv/bin/python benchmarks/crash.py [--runs 50] [--seed 1] [--json] [--keep DIR]

Runs on the BlueZoo test stack (as in tests/ble). Each run starts a fresh `holdmon` profile emulator
on hci1 (200 Hz, looping simulated session, logging every notification it sends) and `holdmon live
--record FILE --no-ui` on hci0, and SIGKILLs the client at a random moment 0.3-6 s after its
`streaming` event (4 runs in 5) or after its start (the rest: these die while it starts, scans,
connects or opens the file). Then, per run:

- the file (if it exists) is replayed with `holdmon replay --json`: it must exit 0, or, for a file
  holding no sample yet, fail with a one-line error (no traceback);
- the recording must hold exactly the first k samples the emulator sent (seq 0..k-1, values equal to
  the source), and every sample sent more than `--max-loss-s` (1 s) before the kill must be among them.
  Reported: the samples sent before the kill but missing, and how long before the kill the first of
  them was sent ("lost window").

Output: a table on stdout; with --json the last line is one JSON document.
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sensor.errors import HoldmonError  # noqa: E402
from sensor.protocols import holdmon as hm  # noqa: E402
from sensor.recording import read_recording, write_recording  # noqa: E402
from sensor.simulate import SimConfig, simulate_session  # noqa: E402
from tests.ble.conftest import (  # noqa: E402
    HOLDMON_CLI, REPO_ROOT, BleStack, Emulators, drop_link, missing_ble_stack, start_ble_stack,
    stop_ble_stack)
from tests.ble.faults import LiveProcess, drain, parse_emit_log  # noqa: E402

RATE_HZ = 200.0
KILL_AFTER_S = (0.3, 6.0)
STREAMING_SHARE = 0.8
"""Share of the kills timed from the client's `streaming` event; the rest count from its start, so
that some land while it scans, connects or opens the file."""
MAX_LOSS_S = 1.0
STREAMING_TIMEOUT_S = 60.0
ACC_TOL_MPS2 = hm.acc_scale_mps2(hm.DEFAULT_ACC_CODE) / 2 + 1e-5
GYR_TOL_RADPS = hm.gyro_scale_radps(hm.DEFAULT_GYRO_CODE) / 2 + 1e-5


@dataclass
class CrashRun:
    """One kill and what the file kept."""

    run: int
    kill_after_s: float
    after_streaming: bool
    file_exists: bool = False
    file_bytes: int = 0
    replay_exit: int | None = None
    replay_error: str = ""
    replay_ok: bool = False  # exit 0, or a clear one-line error for a file without samples
    sent_before_kill: int = 0
    recorded: int = 0
    prefix_ok: bool = False  # recorded rows = the first `recorded` samples sent, values equal
    lost: int = 0  # sent before the kill, not in the file
    lost_window_s: float = 0.0  # kill time minus send time of the first lost sample
    ok: bool = False


def make_source(out_dir: Path):
    sim = simulate_session(SimConfig(rate_hz=RATE_HZ, seed=7, lost_packet_rate=0.0, reps=2))
    path = out_dir / "source.csv"
    write_recording(path, sim.meta, sim.samples)
    return path, sim.samples


def replay_check(stack: BleStack, path: Path) -> tuple[int, str]:
    proc = subprocess.run([*HOLDMON_CLI, "replay", str(path), "--json"], env=stack.env, cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=300)
    return proc.returncode, proc.stderr.strip()


def check_run(stack: BleStack, run: CrashRun, record: Path, emit_log: Path, kill_s: float, source,
              max_loss_s: float) -> CrashRun:
    """Fill in what the killed run's file holds against what the emulator sent before the kill."""
    sends = [s for r in parse_emit_log(emit_log) for s in r.sends if s[0] < kill_s]
    run.sent_before_kill = sum(n for _, _, n in sends)
    run.file_exists = record.exists()
    if not run.file_exists:
        run.replay_ok = run.prefix_ok = True  # killed before the recording was opened
        run.lost = run.sent_before_kill
    else:
        run.file_bytes = record.stat().st_size
        run.replay_exit, run.replay_error = replay_check(stack, record)
        samples = None
        try:
            samples = read_recording(record).samples
        except HoldmonError:
            pass
        run.recorded = 0 if samples is None else len(samples)
        clear_error = run.replay_exit != 0 and "Traceback" not in run.replay_error \
            and len(run.replay_error.splitlines()) == 1
        run.replay_ok = run.replay_exit == 0 or (run.recorded == 0 and clear_error)
        run.prefix_ok = run.recorded == 0 or _is_sent_prefix(samples, source)
        run.lost = run.sent_before_kill - run.recorded
    if run.lost > 0:
        first_lost = [t for t, first, n in sends for i in range(first, first + n) if i >= run.recorded]
        run.lost_window_s = kill_s - min(first_lost)
    run.ok = run.replay_ok and run.prefix_ok and run.lost >= 0 and run.lost_window_s <= max_loss_s
    return run


def release_link(stack: BleStack, address: str) -> None:
    """Drop the dead client's link, as the stack does when a central is gone. (BlueZoo keeps it, and
    the peripheral's later clean exit unregisters first, so nothing would ever drop it; the next
    client would find that stale connection.)"""
    try:
        drop_link(stack, "hci0", address)
    except RuntimeError:
        pass  # not connected (killed before connecting): nothing to release


def _is_sent_prefix(samples, source) -> bool:
    n = len(samples)
    if samples.seq is None or not np.array_equal(samples.seq, np.arange(n)):
        return False
    rows = np.arange(n) % len(source)
    return bool(np.all(np.abs(samples.acc_mps2 - source.acc_mps2[rows]) <= ACC_TOL_MPS2)
                and np.all(np.abs(samples.gyr_radps - source.gyr_radps[rows]) <= GYR_TOL_RADPS))


def run_crashes(stack: BleStack, out_dir: Path, runs: int, seed: int, max_loss_s: float = MAX_LOSS_S,
                kill_after_s: tuple[float, float] = KILL_AFTER_S,
                streaming_share: float = STREAMING_SHARE, log=print) -> list[CrashRun]:
    """`runs` kills, each at a uniformly random moment in `kill_after_s`: for a `streaming_share` of
    the runs (drawn at random) counted from the client's `streaming` event, else from its start."""
    rng = np.random.default_rng(seed)
    source_path, source = make_source(out_dir)
    emulators = Emulators(stack)
    results = []
    for k in range(runs):
        emit_log, record = out_dir / f"emit-{k:03d}.log", out_dir / f"run-{k:03d}.csv"
        emulator = emulators.start("hci1", source_path, profile="holdmon", rate_hz=RATE_HZ, loop=True,
                                   name="holdmon-crash", emit_log=str(emit_log))
        drain(emulator.proc.stderr, out_dir / f"emulator-{k:03d}.err")
        after_streaming = bool(rng.random() < streaming_share)
        delay_s = float(rng.uniform(*kill_after_s))
        client = LiveProcess(stack, ["live", "--device", emulator.address, "--adapter", "hci0",
                                     "--rate-hz", f"{RATE_HZ:g}", "--record", str(record), "--no-ui"],
                             out_dir, name=f"live-{k:03d}")
        try:
            since_s = client.started_s
            if after_streaming:
                client.wait_event("streaming", STREAMING_TIMEOUT_S)
                since_s = time.monotonic()
            time.sleep(max(0.0, since_s + delay_s - time.monotonic()))
            kill_s = time.monotonic()
            client.kill()
        finally:
            client.kill()
            release_link(stack, emulator.address)
            emulator.stop()
        result = check_run(stack, CrashRun(k, delay_s, after_streaming), record, emit_log, kill_s, source, max_loss_s)
        results.append(result)
        since = "streaming" if after_streaming else "start"
        log(f"run {k:3d}: kill {delay_s:4.1f} s after {since:9s}, sent {result.sent_before_kill:5d}, recorded "
            f"{result.recorded:5d}, lost {result.lost:3d} ({result.lost_window_s * 1000:.0f} ms), "
            f"replay exit {result.replay_exit}{'' if result.ok else '  FAIL'}")
    return results


def summarize(results: list[CrashRun], max_loss_s: float) -> dict:
    streaming = [r for r in results if r.sent_before_kill > 0]
    windows = [r.lost_window_s for r in streaming]
    return {
        "runs": len(results), "killed_while_streaming": len(streaming),
        "killed_before_file": sum(not r.file_exists for r in results),
        "files_without_samples": sum(r.file_exists and r.recorded == 0 for r in results),
        "replay_exit_0": sum(r.replay_exit == 0 for r in results),
        "replay_ok": sum(r.replay_ok for r in results),
        "prefix_ok": sum(r.prefix_ok for r in results),
        "lost_samples_max": max((r.lost for r in results), default=0),
        "lost_window_max_s": max(windows, default=0.0),
        "lost_window_median_s": float(np.median(windows)) if windows else 0.0,
        "max_loss_s": max_loss_s, "failed": [r.run for r in results if not r.ok],
        "ok": all(r.ok for r in results),
    }


def table(summary: dict) -> str:
    s = summary
    return "\n".join([
        f"crash: {s['runs']} SIGKILLs of holdmon live --record at {RATE_HZ:g} Hz "
        f"({s['killed_while_streaming']} while streaming, {s['killed_before_file']} before the file "
        f"existed, {s['files_without_samples']} with the file still empty of samples)",
        f"files replaying (exit 0): {s['replay_exit_0']}; acceptable (exit 0, or a one-line error for a "
        f"file with no sample): {s['replay_ok']}/{s['runs']}",
        f"files holding exactly the first samples sent: {s['prefix_ok']}/{s['runs']}",
        f"lost at the kill: at most {s['lost_samples_max']} samples; lost window median "
        f"{s['lost_window_median_s'] * 1000:.0f} ms, max {s['lost_window_max_s'] * 1000:.0f} ms "
        f"(limit {s['max_loss_s'] * 1000:.0f} ms)",
        f"{'PASS' if s['ok'] else 'FAIL: runs ' + ', '.join(map(str, s['failed']))}",
    ])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--max-loss-s", type=float, default=MAX_LOSS_S)
    parser.add_argument("--keep", type=Path, default=None, help="keep recordings and logs in this directory")
    parser.add_argument("--json", action="store_true", help="last line: the result as JSON")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # clean up the stack on `kill PID` too
    reason = missing_ble_stack()
    if reason is not None:
        print(f"crash benchmark needs the BLE test stack: {reason}", file=sys.stderr)
        return 2
    out_dir = args.keep or Path(tempfile.mkdtemp(prefix="holdmon-crash-"))
    out_dir.mkdir(parents=True, exist_ok=True)
    stack = start_ble_stack()
    try:
        results = run_crashes(stack, out_dir, args.runs, args.seed, args.max_loss_s,
                              log=lambda m: print(m, file=sys.stderr, flush=True))
    finally:
        stop_ble_stack(stack)
        if args.keep is None:
            shutil.rmtree(out_dir, ignore_errors=True)
    summary = summarize(results, args.max_loss_s)
    print(table(summary))
    if args.json:
        print(json.dumps({**summary, "per_run": [asdict(r) for r in results]}))
    return 0 if summary["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
