"""Fault-injection helpers for the BLE end-to-end tests and the soak/crash benchmarks (test-only).

- `parse_emit_log`: what an emulator started with `emit_log=` really sent (see sensor.emulate).
- `proc_stats`: resident memory and CPU time of a process, from /proc.
- `drain`: copy a subprocess pipe to a file in the background, so a chatty child never blocks.
- `LiveProcess`: a `holdmon live` subprocess whose `--no-ui` event lines can be waited for.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from .conftest import HOLDMON_CLI, REPO_ROOT, BleStack

EVENT_RE = re.compile(r"^\s*(?P<t>-?\d+\.\d+) s\s+(?:(?P<side>left|right)\s+)?(?P<kind>\w+)(?P<rest>.*)$")


@dataclass
class EmulatorRun:
    """One emulator process's life: what it sent, as (monotonic s, first stream index, n samples)."""

    pid: int
    start_index: int
    sends: list[tuple[float, int, int]] = field(default_factory=list)
    duplicates: int = 0
    garbage: int = 0
    stop_s: float | None = None  # when the first STOP command arrived (the central ended its session)

    @property
    def samples(self) -> int:
        return sum(n for _, _, n in self.sends)

    def indices(self, before_s: float = float("inf")) -> list[int]:
        """Stream indices sent before monotonic time `before_s`, in sending order."""
        return [i for t_s, first, n in self.sends if t_s < before_s for i in range(first, first + n)]


def parse_emit_log(path: str | os.PathLike) -> list[EmulatorRun]:
    """The emulator runs logged in an emit log (one `start` line each), in order."""
    runs: list[EmulatorRun] = []
    for line in Path(path).read_text().splitlines():
        parts = line.split()
        t_s, kind = float(parts[0]), parts[1]
        if kind == "start":
            runs.append(EmulatorRun(int(parts[2]), int(parts[3])))
        elif kind == "data":
            runs[-1].sends.append((t_s, int(parts[2]), int(parts[3])))
        elif kind == "dup":
            runs[-1].duplicates += 1
        elif kind == "garbage":
            runs[-1].garbage += 1
        elif kind == "stop" and runs[-1].stop_s is None:
            runs[-1].stop_s = t_s
    return runs


def last_sent_index(path: str | os.PathLike) -> int:
    """The highest stream index the emit log shows as sent by its last run (-1 if none)."""
    runs = parse_emit_log(path)
    sends = runs[-1].sends if runs else []
    return max((first + n - 1 for _, first, n in sends), default=-1)


def proc_stats(pid: int) -> tuple[float, float]:
    """(resident MB, user + system CPU seconds) of a process, from /proc."""
    with open(f"/proc/{pid}/status") as f:
        rss_kb = next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return rss_kb / 1024.0, (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def drain(stream, path: str | os.PathLike) -> threading.Thread:
    """Copy a subprocess pipe to a file in a daemon thread."""
    def copy() -> None:
        with open(path, "a") as out:
            shutil.copyfileobj(stream, out)

    thread = threading.Thread(target=copy, daemon=True)
    thread.start()
    return thread


class LiveProcess:
    """`holdmon live ... --no-ui` in the background, stdout/stderr to files in `out_dir`."""

    def __init__(self, stack: BleStack, args: list[str], out_dir: Path, name: str = "live") -> None:
        self.stdout_path = out_dir / f"{name}.out"
        self.stderr_path = out_dir / f"{name}.err"
        with open(self.stdout_path, "w") as out, open(self.stderr_path, "w") as err:
            self.proc = subprocess.Popen([*HOLDMON_CLI, *args], env={**stack.env, "PYTHONUNBUFFERED": "1"},
                                         cwd=REPO_ROOT, stdout=out, stderr=err)
        self.started_s = time.monotonic()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stdout(self) -> str:
        return self.stdout_path.read_text()

    def stderr(self) -> str:
        return self.stderr_path.read_text()

    def events(self) -> list[tuple[float, str | None, str, str]]:
        """(t_s, side, kind, rest of line) of every event line printed so far."""
        out = []
        for line in self.stdout().splitlines():
            m = EVENT_RE.match(line)
            if m:
                out.append((float(m["t"]), m["side"], m["kind"], m["rest"]))
        return out

    def wait_event(self, kind: str, timeout_s: float, *, count: int = 1, side: str | None = None,
                   after: int = 0) -> int:
        """Wait until `count` events of `kind` (for `side`) were printed, counting from event number
        `after`; returns the number of events printed by then."""
        deadline = time.monotonic() + timeout_s
        while True:
            evs = self.events()
            hits = [e for e in evs[after:] if e[2] == kind and (side is None or e[1] == side)]
            if len(hits) >= count:
                return len(evs)
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"no {kind} event (want {count}) within {timeout_s} s; exit "
                                     f"{self.proc.poll()}\nstdout:\n{self.stdout()}\nstderr:\n{self.stderr()}")
            time.sleep(0.05)

    def stop(self, timeout_s: float = 60.0) -> int:
        """SIGTERM (a clean end, like Ctrl-C) and wait; returns the exit code."""
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            return self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"holdmon live did not end within {timeout_s} s after SIGTERM")

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
