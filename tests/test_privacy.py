"""Privacy and safety: files readable by the user only, escaped reports, no network listener, --device.

File modes are checked with umask 0 (the most permissive), in-process and through the CLI. The network
check runs the commands under strace (-f: every thread and child process) and fails on any bind or
listen on an IP socket (AF_UNIX, e.g. D-Bus, is fine) and on any IP socket at all: the tool has no
reason to touch the network. Device selection is tested on the selection logic with a scripted
scanner, and end to end on the private D-Bus + BlueZoo stack (two emulated sensors with one name).
"""

from __future__ import annotations

import asyncio
import html.parser
import json
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

from sensor.errors import DeviceError
from sensor.history import open_db
from sensor.recording import RecordingWriter, read_recording, write_recording
from sensor.simulate import SimConfig, simulate_session
from sensor.types import RecordingMeta, Samples
from tests.conftest import REPO_ROOT

HOLDMON = [sys.executable, "-m", "sensor"]
HOSTILE = '<i id="pwn">x</i><script>alert(1)</script>'
HOSTILE_ESCAPED = "&lt;i id=&quot;pwn&quot;&gt;x&lt;/i&gt;&lt;script&gt;alert(1)&lt;/script&gt;"
FILE_HOSTILE = '<i id="pwnfile">&\'x'  # no '/' in a file name


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@contextmanager
def open_umask():
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


def open_umask_child() -> None:  # preexec_fn for subprocesses
    os.umask(0)


def small_samples(n: int = 200) -> Samples:
    t_s = np.arange(n) / 100.0
    return Samples(t_s, np.tile([0.0, 0.0, 9.81], (n, 1)), np.zeros((n, 3)), np.arange(n), None)


def run_holdmon(*args: str, env: dict | None = None, cwd: Path | None = None, check: bool = True,
                timeout: float = 300) -> subprocess.CompletedProcess:
    proc = subprocess.run([*HOLDMON, *args], cwd=cwd or REPO_ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout, preexec_fn=open_umask_child)
    if check and proc.returncode != 0:
        raise AssertionError(f"holdmon {' '.join(args)} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


@pytest.fixture(scope="module")
def session_file(tmp_path_factory) -> Path:
    """A short simulated session whose file name, device and note are hostile HTML."""
    d = tmp_path_factory.mktemp("privacy")
    result = simulate_session(SimConfig(reps=2, seed=5, early_drop_reps=(), balance_loss_reps=(),
                                        aborted_reps=()))
    meta = result.meta
    meta.device, meta.note, meta.profile = HOSTILE, HOSTILE, HOSTILE
    meta.extra["firmware"] = HOSTILE
    path = d / f"{FILE_HOSTILE}.csv"
    write_recording(path, meta, result.samples)
    return path


# ------------------------------------------------------------------------------------- file modes


def test_recordings_are_created_user_only_with_an_open_umask(tmp_path: Path) -> None:
    existing = tmp_path / "existing.csv"
    existing.write_text("old")
    existing.chmod(0o644)
    with open_umask():
        write_recording(tmp_path / "new.csv", RecordingMeta(rate_hz=100.0), small_samples())
        write_recording(existing, RecordingMeta(rate_hz=100.0), small_samples())
        with RecordingWriter(tmp_path / "live.csv", RecordingMeta(), with_seq=True) as writer:
            writer.append(small_samples())
    for name in ("new.csv", "existing.csv", "live.csv"):
        assert mode(tmp_path / name) == 0o600, name


def test_history_database_and_its_directory_are_user_only(tmp_path: Path) -> None:
    db = tmp_path / "data" / "holdmon" / "history.sqlite3"
    with open_umask():
        conn = open_db(db)
        conn.execute("CREATE TABLE t (x)")
        conn.commit()
        conn.close()
    assert mode(db) == 0o600
    assert mode(db.parent) & 0o077 == 0, oct(mode(db.parent))
    assert not [p for p in db.parent.iterdir() if mode(p) & 0o077]  # no journal left readable by others


def test_cli_simulate_and_history_create_user_only_files(tmp_path: Path) -> None:
    env = {**os.environ, "XDG_DATA_HOME": str(tmp_path / "xdg")}
    env.pop("HOLDMON_DB", None)
    out = tmp_path / "sim.csv"
    run_holdmon("simulate", str(out), "--reps", "2", "--seed", "3", env=env)
    run_holdmon("history", "add", str(out), env=env)
    db = tmp_path / "xdg" / "holdmon" / "history.sqlite3"
    assert mode(out) == 0o600
    assert mode(db) == 0o600
    assert mode(db.parent) & 0o077 == 0


# ------------------------------------------------------------------------------------ HTML report


class _Elements(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.ids: list[str] = []
        self.scripts = 0

    def handle_starttag(self, tag: str, attrs: list) -> None:
        self.ids += [v for k, v in attrs if k == "id" and v]
        self.scripts += tag == "script"


def test_report_escapes_hostile_path_device_and_note(session_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    run_holdmon("report", str(session_file), "-o", str(out))
    page = out.read_text()
    parser = _Elements()
    parser.feed(page)
    assert "pwn" not in parser.ids and "pwnfile" not in parser.ids
    assert parser.scripts == 1  # the page's own script only
    assert HOSTILE not in page and "alert(1)</script>" not in page
    assert page.count(HOSTILE_ESCAPED) >= 2  # device and note
    assert "&lt;i id=&quot;pwnfile&quot;&gt;&amp;&#x27;x" in page  # the file name in the path


# ----------------------------------------------------------------------------- network listeners

_IP_FD = re.compile(r"<(TCP|UDP|TCPv6|UDPv6|RAW|RAWv6)[:>]")
_SOCKET = re.compile(r"^socket\((AF_\w+),.*= (\d+)")
_FD_CALL = re.compile(r"^(bind|listen|connect)\((\d+)")


def ip_socket_calls(log: str) -> list[str]:
    """strace lines (trace=socket,bind,listen,connect) that create or use an IP socket.

    An fd counts as IP when strace's -yy decoration says so, when the address is AF_INET*, or when
    the latest socket() call that returned that fd number made an AF_INET* socket (the decoration
    can be missing when strace cannot look the socket up).
    """
    bad = []
    families: dict[str, str] = {}
    for line in log.splitlines():
        call = line.split(" ", 1)[-1].strip()
        created = _SOCKET.match(call)
        if created:
            families[created.group(2)] = created.group(1)
            if created.group(1) in ("AF_INET", "AF_INET6"):
                bad.append(line)
            continue
        used = _FD_CALL.match(call)
        if used and (_IP_FD.search(call) or "sa_family=AF_INET" in call
                     or families.get(used.group(2)) in ("AF_INET", "AF_INET6")):
            bad.append(line)
    return bad


def strace_prefix(log: Path) -> list[str]:
    exe = shutil.which("strace")
    if exe is None:
        if os.environ.get("HOLDMON_REQUIRE_STRACE") == "1":
            pytest.fail("strace is required (HOLDMON_REQUIRE_STRACE=1) but was not found")
        pytest.skip("strace not installed: the network check traces system calls")
    return [exe, "-f", "-qq", "-yy", "-e", "trace=socket,bind,listen,connect", "-e", "signal=none",
            "-o", str(log)]


def test_strace_check_sees_an_ip_listener(tmp_path: Path) -> None:
    """The check itself: a Python process listening on 127.0.0.1 is caught, an AF_UNIX listener is not."""
    log = tmp_path / "trace.log"
    code = ("import socket; s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen(); "
            "u = socket.socket(socket.AF_UNIX); u.bind('\\0holdmon-test'); u.listen()")
    subprocess.run([*strace_prefix(log), sys.executable, "-c", code], check=True, timeout=60)
    bad = ip_socket_calls(log.read_text())
    assert [call for b in bad for call in ("socket(", "bind(", "listen(") if call in b] == \
        ["socket(", "bind(", "listen("], log.read_text()
    assert not [b for b in bad if "UNIX" in b]


def test_commands_open_no_network_socket(session_file: Path, tmp_path: Path) -> None:
    env = {**os.environ, "HOLDMON_DB": str(tmp_path / "h.sqlite3"), "MPLBACKEND": "Agg"}
    sim = tmp_path / "sim.csv"
    shipped = REPO_ROOT / "recordings" / "stage3_left.csv"
    batch = tmp_path / "batch"
    batch.mkdir()
    shutil.copy(shipped, batch / "a.csv")
    shutil.copy(shipped, batch / "b.csv")
    commands = [
        ["simulate", str(sim), "--reps", "2", "--seed", "4"],
        ["replay", str(sim)],
        ["replay", "--json", "--jobs", "2", str(batch)],  # a directory: worker processes
        ["verify", str(sim)],
        ["history", "add", str(sim), str(session_file)],
        ["history", "list"],
        ["history", "trend"],
        ["history", "export"],
        ["report", str(sim), str(session_file), "-o", str(tmp_path / "r.html"), "--history"],
    ]
    for i, args in enumerate(commands):
        log = tmp_path / f"trace{i}.log"
        proc = subprocess.run([*strace_prefix(log), *HOLDMON, *args], cwd=REPO_ROOT, env=env,
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode in (0, 1), f"{args}: {proc.returncode}\n{proc.stderr[-2000:]}"  # verify: 1
        assert ip_socket_calls(log.read_text()) == [], args


# ------------------------------------------------------------------------- device selection (logic)


class ScriptedScanner:
    """Stands in for bleak's BleakScanner: replays advertisements (device, adv) to the callback."""

    adverts: list = []

    def __init__(self, callback, **_kwargs) -> None:
        self.callback = callback

    async def __aenter__(self) -> "ScriptedScanner":
        for device, adv in self.adverts:
            self.callback(device, adv)
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None


def advert(address: str, name: str):
    from bleak.backends.device import BLEDevice
    from bleak.backends.scanner import AdvertisementData

    from sensor.protocols import holdmon as hm

    adv = AdvertisementData(local_name=name, manufacturer_data={}, service_data={},
                            service_uuids=[hm.SERVICE_UUID], tx_power=None, rssi=-40, platform_data=())
    return BLEDevice(address, name, None), adv


@pytest.fixture
def scripted(monkeypatch):
    pytest.importorskip("bleak")
    import sensor.ble as ble

    monkeypatch.setattr(ble, "BleakScanner", ScriptedScanner)
    monkeypatch.setattr(ble, "NAME_SETTLE_S", 0.0)
    return ble


def test_device_address_selects_only_that_address(scripted) -> None:
    ScriptedScanner.adverts = [advert("AA:AA:AA:AA:AA:01", "holdmon-leg"),  # impostor first, same name
                               advert("AA:AA:AA:AA:AA:02", "holdmon-leg")]
    found = asyncio.run(scripted.find_sensor("aa:aa:aa:aa:aa:02", timeout_s=0.5))
    assert found.address == "AA:AA:AA:AA:AA:02"
    assert found.same_name_elsewhere == ("AA:AA:AA:AA:AA:01",)  # reported, never connected


def test_device_address_not_advertising_is_refused_even_if_its_name_is(scripted) -> None:
    ScriptedScanner.adverts = [advert("AA:AA:AA:AA:AA:01", "holdmon-leg")]
    with pytest.raises(DeviceError, match="AA:AA:AA:AA:AA:02 not found"):
        asyncio.run(scripted.find_sensor("AA:AA:AA:AA:AA:02", timeout_s=0.3))


def test_a_name_two_devices_advertise_is_refused_and_both_are_reported(scripted) -> None:
    ScriptedScanner.adverts = [advert("AA:AA:AA:AA:AA:01", "holdmon-leg"),
                               advert("AA:AA:AA:AA:AA:02", "holdmon-leg")]
    with pytest.raises(DeviceError) as err:
        asyncio.run(scripted.find_sensor("holdmon-leg", timeout_s=0.5))
    assert "AA:AA:AA:AA:AA:01" in str(err.value) and "AA:AA:AA:AA:AA:02" in str(err.value)
    assert "--device ADDRESS" in str(err.value)


# ------------------------------------------------------------------- device selection (end to end)


def _children(pid: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                out.append(int(entry))
    return out


@pytest.mark.ble
def test_end_to_end_device_address_and_same_name_impostor(tmp_path: Path) -> None:
    """Two emulated sensors advertise one name on the BlueZoo stack. By name: refused, both reported.
    By address: only that sensor is subscribed to; the live recording is 0600 under umask 0; and
    neither `holdmon emulate` nor `holdmon live` opens an IP socket."""
    from tests.ble.conftest import (ADAPTER_ADDRESSES, Emulators, require_ble_stack, start_ble_stack,
                                    stop_ble_stack)

    require_ble_stack()
    stack = start_ble_stack()
    emulators = Emulators(stack)
    name = "holdmon-same"
    emulate_log, live_log = tmp_path / "emulate.trace", tmp_path / "live.trace"
    traced = None
    try:
        impostor = emulators.start("hci0", None, profile="holdmon", name=name, cli=True)
        traced = subprocess.Popen([*strace_prefix(emulate_log), *HOLDMON, "emulate", "--adapter", "hci2",
                                   "--name", name, "--simulate"], env=stack.env, cwd=REPO_ROOT,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert traced.stdout.readline().startswith("ready:")
        wanted = ADAPTER_ADDRESSES[2]
        by_name = run_holdmon("live", "--device", name, "--adapter", "hci1", "--duration-s", "1", "--no-ui",
                              "--scan-timeout-s", "6", env=stack.env, check=False)
        assert by_name.returncode == 2, by_name.stderr
        assert ADAPTER_ADDRESSES[0] in by_name.stderr and wanted in by_name.stderr
        record = tmp_path / "live.csv"
        live = subprocess.run([*strace_prefix(live_log), *HOLDMON, "live", "--device", wanted, "--adapter",
                               "hci1", "--duration-s", "2", "--no-ui", "--record", str(record)],
                              env=stack.env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=120,
                              preexec_fn=open_umask_child)
        assert live.returncode == 0, live.stderr
        for pid in _children(traced.pid):
            os.kill(pid, signal.SIGTERM)
        out, _ = traced.communicate(timeout=30)
        report = json.loads(next(ln for ln in out.splitlines() if ln.startswith("done: "))[len("done: "):])
        assert report["subscriptions"] >= 1 and report["samples_sent"] > 0
        assert impostor.stop()["subscriptions"] == 0
        assert mode(record) == 0o600
        assert len(read_recording(record).samples) > 10
        assert ip_socket_calls(emulate_log.read_text()) == []
        assert ip_socket_calls(live_log.read_text()) == []
    finally:
        if traced is not None and traced.poll() is None:
            for pid in _children(traced.pid):
                os.kill(pid, signal.SIGKILL)
            traced.wait(10)
        emulators.stop_all()
        stop_ble_stack(stack)
