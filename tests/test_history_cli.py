"""`holdmon history` on the shipped recordings, through the installed command line."""

from __future__ import annotations

import csv
import io
import json
import stat
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO_ROOT

RECORDINGS = sorted((REPO_ROOT / "recordings").glob("*.csv"))


def holdmon(*args: str, db: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sensor", "history", *args, "--db", str(db)],
                          capture_output=True, text=True, timeout=300)


def test_history_round_trip_with_a_bad_file(tmp_path):
    db = tmp_path / "h.sqlite3"
    bad = tmp_path / "bad.csv"
    bad.write_text("t_s,ax_mps2\n0,1\n")
    assert len(RECORDINGS) >= 3
    added = holdmon("add", *map(str, RECORDINGS), str(bad), db=db)
    assert added.returncode == 2  # one file failed ...
    errors = [line for line in added.stderr.splitlines() if line.startswith("holdmon: error:")]
    assert len(errors) == 1 and "bad.csv" in errors[0] and "Traceback" not in added.stderr
    assert stat.S_IMODE(db.stat().st_mode) == 0o600
    again = holdmon("add", str(RECORDINGS[0]), db=db)  # ... the others were stored, once
    assert again.returncode == 0 and "already stored" in again.stderr

    sessions = json.loads(holdmon("list", "--json", db=db).stdout)["sessions"]
    assert len(sessions) == len(RECORDINGS)
    assert {s["side"] for s in sessions} == {"left", "right"}
    assert all(s["reps"] > 0 for s in sessions)

    shown = json.loads(holdmon("show", str(sessions[0]["id"]), "--json", db=db).stdout)
    assert len(shown["reps"]) == sessions[0]["reps"]
    missing = holdmon("show", "999", db=db)
    assert missing.returncode == 2 and "no session with id 999" in missing.stderr

    weeks = json.loads(holdmon("trend", "--side", "left", "--json", db=db).stdout)["weeks"]
    assert weeks and sum(w["sessions"] for w in weeks) == sum(s["side"] == "left" for s in sessions)
    assert all(w["mean_hold_s"] > 0 for w in weeks)

    exported = list(csv.DictReader(io.StringIO(holdmon("export", "--csv", db=db).stdout)))
    assert len(exported) == sum(s["reps"] for s in sessions)
    assert {"session_id", "hold_duration_s", "sway_sd_deg", "tremor_rms_dps"} <= exported[0].keys()


def test_history_text_output(tmp_path):
    db = tmp_path / "h.sqlite3"
    holdmon("add", str(RECORDINGS[0]), db=db)
    listing = holdmon("list", db=db)
    assert listing.returncode == 0 and RECORDINGS[0].name in listing.stdout
    trend = holdmon("trend", db=db)
    assert trend.returncode == 0 and "-W" in trend.stdout
