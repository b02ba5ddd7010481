"""`holdmon report` and `holdmon verify` end to end: real CLI, real recordings, a real headless browser."""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from sensor.recording import write_recording
from sensor.simulate import SimConfig, simulate_session
from tests.conftest import REPO_ROOT

ARTIFACTS = REPO_ROOT / "tests" / "artifacts"
HOSTILE_NOTE = '<script>console.error("injected")</script><img src=x onerror="console.error(1)"> & "quotes"'


def holdmon(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sensor", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=300)


def write_session(path: Path, **cfg) -> Path:
    result = simulate_session(SimConfig(**cfg))
    meta = result.meta
    if cfg.get("seed") == 11:
        meta.note = HOSTILE_NOTE
    write_recording(path, meta, result.samples)
    return path


@pytest.fixture(scope="module")
def sessions(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("sessions")
    steady = dict(early_drop_reps=(), balance_loss_reps=(), aborted_reps=())
    return {
        "left": write_session(d / "left.csv", seed=11, reps=3, side="left", **steady),
        "right": write_session(d / "right.csv", seed=12, reps=3, side="right", **steady),
        "weighted": write_session(d / "weighted.csv", seed=13, reps=3, side="left", loaded=True, **steady),
    }


def chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


def render(page: Path, tmp_path: Path, screenshot: Path) -> tuple[str, str]:
    """Load the page in headless Chromium: (the DOM after load, the browser's log)."""
    browser = chromium()
    if browser is None:
        if os.environ.get("HOLDMON_REQUIRE_BROWSER") == "1":
            pytest.fail("chromium is required (HOLDMON_REQUIRE_BROWSER=1) but was not found")
        pytest.skip("no chromium on PATH: the browser test needs Debian's chromium package")
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--no-first-run", "--disable-component-update", "--disable-sync", "--enable-logging=stderr",
             "--v=0", f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=5000"]
    dom = subprocess.run([browser, *flags, "--dump-dom", page.as_uri()], capture_output=True, text=True,
                         timeout=120)
    shot = subprocess.run([browser, *flags, "--window-size=1200,4000", f"--screenshot={screenshot}",
                           page.as_uri()], capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert shot.returncode == 0, shot.stderr[-2000:]
    return dom.stdout, dom.stderr + shot.stderr


def test_report_renders_every_plot_in_a_headless_browser(sessions, tmp_path):
    out = tmp_path / "report.html"
    run = holdmon("report", str(sessions["weighted"]), str(sessions["right"]), "--baseline", str(sessions["left"]), "-o", str(out), "--png", str(tmp_path / "png"), cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    page = out.read_text()
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in [out, *(tmp_path / "png").glob("*.png")])
    assert "http://" not in page and "https://" not in page  # self-contained
    assert HOSTILE_NOTE not in page and "&lt;script&gt;console.error" in page
    for heading in ("Weighted lift verification", "Weighted against baseline", "Left against right"):
        assert heading in page
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    screenshot = ARTIFACTS / "report.png"
    dom, log = render(out, tmp_path, screenshot)
    total = int(re.search(r'data-plots-total="(\d+)"', dom).group(1))
    loaded = int(re.search(r'data-plots-loaded="(\d+)"', dom).group(1))
    assert total == len(list((tmp_path / "png").glob("*.png"))) and total >= 10
    assert loaded == total
    console = [line for line in log.splitlines() if ":CONSOLE" in line]
    assert console == [], console
    assert screenshot.stat().st_size > 10_000


def test_verify_exit_codes_and_json(sessions, tmp_path):
    stable = holdmon("verify", str(sessions["weighted"]), "--baseline", str(sessions["left"]), "--json", cwd=tmp_path)
    doc = json.loads(stable.stdout)
    assert doc["format"] == "holdmon.verify/1"
    assert {"verdict", "reps", "criteria", "baseline"} <= doc.keys()
    assert stable.returncode == (0 if doc["verdict"] == "stable" else 1)
    strict = tmp_path / "strict.toml"
    strict.write_text("[verify]\nmin_hold_s = 60\n")
    failed = holdmon("verify", str(sessions["weighted"]), "--rules", str(strict), "--json", cwd=tmp_path)
    assert failed.returncode == 1
    assert all("< 60 s" in " ".join(r["reasons"]) for r in json.loads(failed.stdout)["reps"])
    bad_rules = tmp_path / "bad.toml"
    bad_rules.write_text("sway_factor = 'a lot'\n")
    bad = holdmon("verify", str(sessions["weighted"]), "--rules", str(bad_rules), cwd=tmp_path)
    assert bad.returncode == 2
    assert bad.stderr.strip().count("\n") == 0 and "sway_factor" in bad.stderr and "Traceback" not in bad.stderr
    missing = holdmon("verify", str(tmp_path / "nope.csv"), cwd=tmp_path)
    assert missing.returncode == 2 and "nope.csv" in missing.stderr and "Traceback" not in missing.stderr
