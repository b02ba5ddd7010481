"""Fault matrix on the BlueZoo stack: `holdmon live --no-ui --record` against an emulated sensor while
one fault is injected. For each fault the test checks what the client printed, what the recording
holds (every sample the emulator logged as sent, except those in flight while the link was down, by
exact accounting against its emit log: see benchmarks/soak.py), that the summary's counters match the
file, and what `holdmon replay` finds.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from benchmarks.soak import Fault, SideAccount, account, parse_summaries
from sensor.recording import Recording, read_recording

from .conftest import HOLDMON_CLI, REPO_ROOT, drop_link, restart_bluezoo
from .faults import LiveProcess, drain, last_sent_index

pytestmark = pytest.mark.ble

RATE_HZ = 100.0
SIDE = "left"
DOWN_S = 1.5
STREAMING_TIMEOUT_S = 60.0
RECOVERY_TIMEOUT_S = 30.0
AFTER_FAULT_S = 2.0
"""How long the session goes on after the client has recovered."""


@dataclass
class Outcome:
    exit_code: int
    stdout: str
    stderr: str
    events: list[tuple[float, str | None, str, str]]
    account: SideAccount
    summary: dict
    recording: Recording
    replay: dict


class FaultSession:
    """One emulated sensor (hci1, emit log on) and one `holdmon live` recording it, plus fault marks."""

    def __init__(self, stack, emulators, source, out_dir: Path, *, glitches: tuple[str, ...] = (),
                 record: Path | None = None) -> None:
        self.stack = stack
        self.emulators = emulators
        self.source = source
        self.out_dir = out_dir
        self.glitches = list(glitches)
        self.emit_log = out_dir / "emit.log"
        self.record = record or out_dir / "live.csv"
        self.faults: list[Fault] = []
        self.emulator = None
        self.live: LiveProcess | None = None

    def start_sensor(self, start_index: int = 0) -> None:
        self.emulator = self.emulators.start(
            "hci1", self.source.path, profile="holdmon", rate_hz=RATE_HZ, loop=True, name="holdmon-fault",
            start_s=start_index / RATE_HZ, emit_log=str(self.emit_log), glitches=self.glitches)
        drain(self.emulator.proc.stderr, self.out_dir / "emulator.err")

    def start_live(self) -> None:
        self.live = LiveProcess(self.stack, [
            "live", "--device", self.emulator.address, "--adapter", "hci0", "--side", SIDE,
            "--rate-hz", f"{RATE_HZ:g}", "--record", str(self.record), "--no-ui"], self.out_dir)
        self.live.wait_event("streaming", STREAMING_TIMEOUT_S)

    def mark(self, kind: str) -> None:
        self.faults.append(Fault(kind, SIDE, time.monotonic()))

    def kill_and_restart(self, reset_counter: bool) -> None:
        """SIGKILL the sensor, keep it away DOWN_S, start it again (counter on, or reset to 0)."""
        self.mark("reset" if reset_counter else "kill")
        self.emulator.kill()
        killed_at = time.monotonic()
        time.sleep(DOWN_S)
        next_index = last_sent_index(self.emit_log) + 1 + round((time.monotonic() - killed_at) * RATE_HZ)
        self.start_sensor(0 if reset_counter else next_index)

    def wait_recovered(self) -> None:
        """Until the client streams again after the last fault, then AFTER_FAULT_S more."""
        self.live.wait_event("streaming", RECOVERY_TIMEOUT_S, count=2)
        time.sleep(AFTER_FAULT_S)

    def finish(self) -> Outcome:
        exit_code = self.live.stop()
        self.emulator.stop()
        acc = account(SIDE, self.emit_log, self.record, self.source.samples, self.faults)
        stdout = self.live.stdout()
        summary = parse_summaries(stdout).get(SIDE, {})
        replay = subprocess.run([*HOLDMON_CLI, "replay", str(self.record), "--json"], env=self.stack.env,
                                cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
        assert replay.returncode == 0, replay.stderr
        return Outcome(exit_code, stdout, self.live.stderr(), self.live.events(), acc, summary,
                       read_recording(self.record), json.loads(replay.stdout))


def assert_consistent(o: Outcome) -> None:
    """Nothing received is lost, the summary's counters are the file's, replay sees the same data."""
    acc = o.account
    assert acc.unexplained == 0, acc
    assert acc.value_mismatches == 0 and acc.not_emitted == 0, acc
    assert acc.recorded == acc.emitted - acc.missing
    rec = o.recording
    seq = rec.samples.seq
    assert np.all(np.diff(seq) > 0)
    assert o.summary["samples"] == len(rec.samples)
    assert o.summary["gaps"] == len(rec.gaps)
    assert o.summary["lost"] == int(np.maximum(np.diff(seq) - 1, 0).sum())  # counter jumps
    assert o.replay["recording"]["samples"] == len(rec.samples)
    assert len(o.replay["recording"]["gaps"]) == len(rec.gaps)


def kinds(o: Outcome) -> list[str]:
    return [k for _, _, k, _ in o.events]


def link_events(o: Outcome) -> list[tuple[str, str]]:
    link = ("connecting", "streaming", "stalled", "disconnected", "reconnecting", "stopped")
    return [(k, rest.strip()) for _, _, k, rest in o.events if k in link]


def assert_lost_and_recovered(o: Outcome) -> None:
    """The client said the link was lost, reconnected, and ended cleanly."""
    link = link_events(o)
    assert [k for k, _ in link][:2] == ["connecting", "streaming"], link
    after = [k for k, _ in link[2:]]
    assert after[0] in ("stalled", "disconnected"), link
    assert "reconnecting" in after and after.index("streaming") > after.index("reconnecting"), link
    assert after[-1] == "stopped", link
    assert o.exit_code == 0, o.stderr
    assert o.summary["reconnects"] == 1


@pytest.mark.parametrize("reset_counter", [False, True], ids=["counter-on", "counter-reset"])
def test_peripheral_killed_mid_hold(ble_stack, emulators, make_source, tmp_path, reset_counter):
    source = make_source(RATE_HZ, session_s=30.0, seed=3)
    session = FaultSession(ble_stack, emulators, source, tmp_path)
    session.start_sensor()
    session.start_live()
    session.live.wait_event("hold_start", STREAMING_TIMEOUT_S)
    time.sleep(0.5)
    session.kill_and_restart(reset_counter)
    session.wait_recovered()
    o = session.finish()

    assert_consistent(o)
    assert_lost_and_recovered(o)
    assert len(o.recording.gaps) == 1
    gap = o.recording.gaps[0]
    assert gap.missing_samples >= DOWN_S * RATE_HZ  # the time the sensor was away is a gap
    assert o.summary["resets"] == (1 if reset_counter else 0)


def test_link_dropped_by_the_stack(ble_stack, emulators, make_source, tmp_path):
    source = make_source(RATE_HZ, session_s=30.0, seed=3)
    session = FaultSession(ble_stack, emulators, source, tmp_path)
    session.start_sensor()
    session.start_live()
    time.sleep(1.0)
    session.mark("disconnect")
    drop_link(ble_stack, "hci0", session.emulator.address)
    session.wait_recovered()
    o = session.finish()

    assert_consistent(o)
    assert_lost_and_recovered(o)
    assert ("disconnected", "disconnected by the device or the stack") in link_events(o)


def test_garbage_duplicated_and_out_of_order_notifications(ble_stack, emulators, make_source, tmp_path):
    source = make_source(RATE_HZ, session_s=30.0, seed=3)
    session = FaultSession(ble_stack, emulators, source, tmp_path, glitches=("garbage", "duplicate", "reorder"))
    session.start_sensor()
    session.start_live()
    for _ in range(2):
        time.sleep(1.0)
        session.mark("glitch")
        os.kill(session.emulator.pid, signal.SIGUSR1)
    time.sleep(AFTER_FAULT_S)
    o = session.finish()

    assert_consistent(o)
    assert o.exit_code == 0, o.stderr
    assert o.account.garbage_injected == 2 and o.account.duplicates_injected == 2
    assert o.account.missing == 0  # every sample sent was recorded, once, in counter order
    assert o.recording.gaps == []
    assert o.summary["bad"] == 2 and o.summary["lost"] == 0
    assert [k for k, _ in link_events(o)] == ["connecting", "streaming", "stopped"]


def test_bluez_killed_and_restarted(ble_stack, emulators, make_source, tmp_path):
    source = make_source(RATE_HZ, session_s=30.0, seed=3)
    session = FaultSession(ble_stack, emulators, source, tmp_path)
    session.start_sensor()
    session.start_live()
    time.sleep(1.0)
    session.mark("stack-restart")
    restart_bluezoo(ble_stack, kill=True)
    session.wait_recovered()
    o = session.finish()

    assert_consistent(o)
    assert_lost_and_recovered(o)


def test_consumer_stalled_for_2_s(ble_stack, emulators, make_source, tmp_path):
    """The client gets no CPU for 2 s (SIGSTOP/SIGCONT): notifications wait in the bus, none is lost."""
    source = make_source(RATE_HZ, session_s=30.0, seed=3)
    session = FaultSession(ble_stack, emulators, source, tmp_path)
    session.start_sensor()
    session.start_live()
    time.sleep(1.0)
    session.mark("stall")
    os.kill(session.live.pid, signal.SIGSTOP)
    time.sleep(2.0)
    os.kill(session.live.pid, signal.SIGCONT)
    time.sleep(AFTER_FAULT_S)
    o = session.finish()

    assert_consistent(o)
    assert o.exit_code == 0, o.stderr
    assert o.account.missing == 0
    assert o.recording.gaps == []
    assert [k for k, _ in link_events(o)] == ["connecting", "streaming", "stopped"]
    assert "rate_mismatch" not in kinds(o)  # the burst after the stall is no wrong sensor rate


@pytest.fixture
def tiny_disk(tmp_path):
    """A 64 KiB tmpfs (needs the right to mount: root); skipped where it cannot be mounted."""
    mount_point = tmp_path / "tiny"
    mount_point.mkdir()
    if shutil.which("mount") is None or subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount_point)],
            capture_output=True).returncode != 0:
        pytest.skip("cannot mount a small tmpfs here (needs root) to fill a disk")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def test_recording_disk_full(ble_stack, emulators, make_source, tmp_path, tiny_disk):
    """The recording stops with the reason when the disk is full; the live session goes on."""
    source = make_source(RATE_HZ, session_s=30.0, seed=3)
    session = FaultSession(ble_stack, emulators, source, tmp_path, record=tiny_disk / "live.csv")
    session.start_sensor()
    session.start_live()
    session.live.wait_event("recording_failed", RECOVERY_TIMEOUT_S)
    time.sleep(AFTER_FAULT_S)
    exit_code = session.live.stop()
    session.emulator.stop()
    stdout, stderr = session.live.stdout(), session.live.stderr()

    failed = [rest for _, _, k, rest in session.live.events() if k == "recording_failed"]
    assert "No space left on device" in failed[0]
    assert exit_code != 0 and "recording failed" in stderr and "No space left on device" in stderr
    summary = parse_summaries(stdout)[SIDE]
    line = next(ln for ln in stdout.splitlines() if "FAILED after" in ln)
    rows_written = int(line.split("FAILED after ")[1].split()[0])
    recording = read_recording(session.record)
    assert len(recording.samples) == rows_written  # every row the summary counts is in the file
    assert summary["samples"] > rows_written  # the session went on receiving after the disk filled
    np.testing.assert_array_equal(recording.samples.seq, np.arange(rows_written))
    replay = subprocess.run([*HOLDMON_CLI, "replay", str(session.record), "--json"], env=ble_stack.env,
                            cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert replay.returncode == 0, replay.stderr
    assert json.loads(replay.stdout)["recording"]["samples"] == rows_written
