"""`holdmon live` end to end against emulated sensors on the BlueZoo stack (real bleak BlueZ backend).

Every emitted sample recorded, replay of the live recording equal to replay of the source, a
peripheral killed mid-hold and brought back, two sensors at once.
"""

from __future__ import annotations

import json
import re
import subprocess
import time

import numpy as np
import pytest

from sensor.protocols import holdmon as hm
from sensor.protocols import witmotion as wm
from sensor.recording import read_recording
from sensor.types import Samples

from .conftest import HOLDMON_CLI, REPO_ROOT

pytestmark = pytest.mark.ble

LIVE_TIMEOUT_S = 90.0
ACC_LSB_MPS2 = {"holdmon": hm.acc_scale_mps2(hm.DEFAULT_ACC_CODE), "witmotion": wm.ACC_LSB_MPS2}
GYR_LSB_RADPS = {"holdmon": hm.gyro_scale_radps(hm.DEFAULT_GYRO_CODE), "witmotion": wm.GYR_LSB_RADPS}


def holdmon(stack, *args: str, timeout_s: float = LIVE_TIMEOUT_S) -> subprocess.CompletedProcess:
    """Run the holdmon CLI on the test bus; fail with its output if it exits non-zero."""
    proc = subprocess.run([*HOLDMON_CLI, *args], env=stack.env, cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=timeout_s)
    if proc.returncode != 0:
        raise AssertionError(f"holdmon {' '.join(args)} exited {proc.returncode}\n"
                             f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}")
    return proc


def live_args(device: str, record, rate_hz: float, duration_s: float, *extra: str) -> list[str]:
    return ["live", "--device", device, "--adapter", "hci0", "--record", str(record),
            "--rate-hz", f"{rate_hz:g}", "--duration-s", f"{duration_s:g}", "--no-ui", *extra]


def assert_same_samples(recorded, source, profile: str) -> None:
    np.testing.assert_allclose(recorded.acc_mps2, source.acc_mps2, atol=ACC_LSB_MPS2[profile] / 2 + 1e-5)
    np.testing.assert_allclose(recorded.gyr_radps, source.gyr_radps, atol=GYR_LSB_RADPS[profile] / 2 + 1e-5)


def test_scan_lists_the_emulated_sensors(ble_stack, emulators, make_source):
    source = make_source(100.0, seconds=3.0)
    held = emulators.start("hci1", source.path, profile="holdmon")
    wit = emulators.start("hci2", source.path, profile="witmotion")
    found = json.loads(holdmon(ble_stack, "scan", "--adapter", "hci0", "--timeout-s", "2.5", "--json").stdout)
    by_address = {s["address"].upper(): s for s in found["sensors"]}
    assert by_address[held.address]["profile"] == "holdmon"
    assert by_address[held.address]["name"] == held.name
    assert by_address[wit.address]["profile"] == "witmotion"


@pytest.mark.parametrize("profile, rate_hz", [
    ("holdmon", 100.0), ("holdmon", 200.0), ("witmotion", 100.0), ("witmotion", 200.0)])
def test_live_records_every_emitted_sample(ble_stack, emulators, make_source, tmp_path, profile, rate_hz):
    source = make_source(rate_hz, seconds=3.0)
    n = len(source.samples)
    emulator = emulators.start("hci1", source.path, profile=profile, rate_hz=rate_hz)
    out = tmp_path / "live.csv"
    holdmon(ble_stack, *live_args(emulator.address, out, rate_hz, 3.5, "--profile", profile))
    report = emulator.stop()

    recording = read_recording(out)
    assert report["samples_sent"] == n
    assert len(recording.samples) == n
    assert recording.gaps == []
    if profile == "holdmon":
        np.testing.assert_array_equal(recording.samples.seq, np.arange(n))
    assert_same_samples(recording.samples, source.samples, profile)
    steps_s = np.diff(recording.samples.t_s)
    assert np.all(steps_s > 0)
    assert np.median(steps_s) == pytest.approx(1.0 / rate_hz, rel=0.02)


def reps_of(stack, path) -> list[dict]:
    return json.loads(holdmon(stack, "replay", str(path), "--json").stdout)["reps"]


def assert_same_reps(live_reps: list[dict], source_reps: list[dict]) -> None:
    assert len(live_reps) == len(source_reps) >= 1
    for live, src in zip(live_reps, source_reps):
        assert live["flags"] == src["flags"]
        assert live["target_met"] == src["target_met"]
        for key in ("lift_start_s", "hold_start_s", "hold_end_s", "lower_end_s", "hold_duration_s"):
            assert live[key] == pytest.approx(src[key], abs=0.05), key
        for key in ("hold_angle_mean_deg", "peak_angle_deg", "sway_sd_deg"):
            assert live[key] == pytest.approx(src[key], abs=0.1), key


def test_live_30s_recording_replays_to_the_source_reps(ble_stack, emulators, make_source, tmp_path):
    """The issue's acceptance run: `holdmon live --adapter hci0 --record out.csv --duration-s 30 --no-ui`."""
    source = make_source(100.0, session_s=26.0, seed=3)
    emulator = emulators.start("hci1", source.path, profile="holdmon", cli=True)
    out = tmp_path / "out.csv"
    holdmon(ble_stack, "live", "--adapter", "hci0", "--record", str(out), "--duration-s", "30", "--no-ui")
    report = emulator.stop()

    recording = read_recording(out)
    assert report["samples_sent"] == len(source.samples) == len(recording.samples)
    np.testing.assert_array_equal(recording.samples.seq, np.arange(len(source.samples)))
    assert_same_reps(reps_of(ble_stack, out), reps_of(ble_stack, source.path))


EVENT_LINE = re.compile(r"^\s*(?P<t>-?\d+\.\d+) s\s+(?:(?:left|right)\s+)?(?P<kind>\w+)")


def events(stdout: str) -> list[tuple[float, str, str]]:
    out = []
    for line in stdout.splitlines():
        m = EVENT_LINE.match(line)
        if m:
            out.append((float(m["t"]), m["kind"], line))
    return out


def wait_for_event(proc: subprocess.Popen, kind: str, timeout_s: float) -> list[str]:
    """Read the live process's stdout until an event of `kind` is printed; returns the lines read."""
    lines = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        if any(k == kind for _, k, _ in events(line)):
            return lines
    raise AssertionError(f"no {kind} event within {timeout_s} s; output so far:\n{''.join(lines)}")


def test_peripheral_killed_mid_hold_reconnects_and_marks_the_gap(ble_stack, emulators, make_source, tmp_path):
    source = make_source(100.0, session_s=26.0, seed=3)  # one rep, holding from about 4.8 s to 16.7 s
    first = emulators.start("hci1", source.path, profile="holdmon")
    out = tmp_path / "live.csv"
    env = {**ble_stack.env, "PYTHONUNBUFFERED": "1"}
    live = subprocess.Popen([*HOLDMON_CLI, *live_args(first.address, out, 100.0, 10.0)], env=env, cwd=REPO_ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        lines = wait_for_event(live, "streaming", timeout_s=30.0)
        streaming_at = time.monotonic()
        lines += wait_for_event(live, "hold_start", timeout_s=15.0)
        time.sleep(1.0)
        first.kill()
        time.sleep(1.2)
        # The sensor comes back where its session would be by now; its counter continues.
        resume_s = time.monotonic() - streaming_at
        second = emulators.start("hci1", source.path, profile="holdmon", name=first.name, start_s=resume_s)
        stdout, stderr = live.communicate(timeout=LIVE_TIMEOUT_S)
    finally:
        if live.poll() is None:
            live.kill()
    stdout = "".join(lines) + stdout
    assert live.returncode == 0, f"stdout:\n{stdout}\nstderr:\n{stderr}"
    second_report = second.stop()

    recording = read_recording(out)
    seq = recording.samples.seq
    assert np.all(np.diff(seq) >= 1)
    assert len(recording.gaps) == 1
    gap = recording.gaps[0]
    assert gap.missing_samples >= 100  # at least 1 s of samples were never sent
    jump = int(np.flatnonzero(np.diff(seq) > 1)[0])
    # Samples on both sides of the gap are the source's samples with those counters.
    src = source.samples
    assert_same_samples(recording.samples, Samples(src.t_s[seq], src.acc_mps2[seq], src.gyr_radps[seq]), "holdmon")
    assert seq[jump + 1] == second_report["first_index"]

    kinds = events(stdout)
    lost = [t for t, k, _ in kinds if k in ("disconnected", "stalled")]
    assert lost, stdout
    last_before_gap_s = recording.samples.t_s[jump]
    assert lost[0] - last_before_gap_s < 1.0  # noticed within a second of the last data
    assert any(k == "streaming" and "reconnect" in line for _, k, line in kinds), stdout
    assert "1 gaps" in stdout and "1 reconnects" in stdout


def test_two_sensors_left_and_right_record_two_files(ble_stack, emulators, make_source, tmp_path):
    left_src = make_source(100.0, seconds=3.0, seed=1)
    right_src = make_source(100.0, seconds=3.0, seed=2)
    left = emulators.start("hci1", left_src.path, profile="holdmon", name="holdmon-emu-left")
    right = emulators.start("hci2", right_src.path, profile="holdmon", name="holdmon-emu-right")
    left_out, right_out = tmp_path / "left.csv", tmp_path / "right.csv"
    holdmon(ble_stack, "live", "--device", left.name, "--device", right.name, "--side", "left",
            "--side", "right", "--record", str(left_out), "--record", str(right_out), "--adapter", "hci0",
            "--duration-s", "5", "--no-ui")
    for emulator, out, src, side in ((left, left_out, left_src, "left"), (right, right_out, right_src, "right")):
        report = emulator.stop()
        recording = read_recording(out)
        assert recording.meta.side == side
        assert report["samples_sent"] == len(src.samples) == len(recording.samples)
        np.testing.assert_array_equal(recording.samples.seq, np.arange(len(src.samples)))
        assert_same_samples(recording.samples, src.samples, "holdmon")
