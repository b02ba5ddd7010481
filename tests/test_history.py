"""SQLite history: add (idempotent), list, show, weekly trend, file mode, and the v1 -> v2 migration."""

from __future__ import annotations

import json
import sqlite3
import stat

import pytest

from sensor.errors import HoldmonError
from sensor.history import (SCHEMA_VERSION, add_session, get_session, iso_week, list_sessions, open_db,
                            weekly_trend)
from sensor.types import RecordingMeta


def replay_doc(path: str, holds: list[float], sway: float = 0.5) -> dict:
    reps = [dict(index=i, hold_duration_s=h, hold_angle_mean_deg=20.0, sway_sd_deg=sway, sag_deg_per_s=-0.1,
                 tremor_rms_dps=1.0 + i, target_met=h >= 10, flags=[] if h >= 10 else ["early_drop"])
            for i, h in enumerate(holds)]
    return {"format": "holdmon.replay/1",
            "recording": {"path": path, "duration_s": 60.0, "placement": "ankle"},
            "reps": reps,
            "summary": {"reps": len(reps), "reps_target_met": sum(h >= 10 for h in holds),
                        "mean_hold_s": sum(holds) / len(holds), "mean_sway_sd_deg": sway}}


def test_add_is_idempotent_and_db_is_private(tmp_path):
    db = tmp_path / "h.sqlite3"
    conn = open_db(db)
    assert stat.S_IMODE(db.stat().st_mode) == 0o600
    meta = RecordingMeta(side="left", stage=3)
    first = add_session(conn, replay_doc("a.csv", [12.0, 8.0]), meta, "abc", "2026-11-02T10:00:00")
    again = add_session(conn, replay_doc("a.csv", [12.0, 8.0]), meta, "abc", "2026-11-02T10:00:00")
    assert first == (first[0], True) and again == (first[0], False)
    sessions = list_sessions(conn)
    assert len(sessions) == 1 and sessions[0]["reps"] == 2 and sessions[0]["mean_tremor_rms_dps"] == 1.5
    shown = get_session(conn, first[0])
    assert [r["flags"] for r in shown["reps"]] == [[], ["early_drop"]]
    with pytest.raises(HoldmonError, match="no session with id 99"):
        get_session(conn, 99)


def test_weekly_trend_filters_by_side_and_stage(tmp_path):
    conn = open_db(tmp_path / "h.sqlite3")
    add_session(conn, replay_doc("a", [10.0, 12.0]), RecordingMeta(side="left", stage=3), "1", "2026-11-02T10:00:00")
    add_session(conn, replay_doc("b", [14.0]), RecordingMeta(side="left", stage=3), "2", "2026-11-10T10:00:00")
    add_session(conn, replay_doc("c", [5.0], sway=2.0), RecordingMeta(side="right", stage=4), "3", "2026-11-10T11:00:00")
    left = weekly_trend(conn, side="left")
    assert [(w.week, w.sessions, w.reps, w.mean_hold_s) for w in left] == [("2026-W45", 1, 2, 11.0), ("2026-W46", 1, 1, 14.0)]
    stage4 = weekly_trend(conn, stage=4)
    assert len(stage4) == 1 and stage4[0].mean_sway_sd_deg == 2.0
    assert iso_week("2026-11-24T10:00:00") == "2026-W48"


def test_v1_database_migrates_to_current(tmp_path):
    db = tmp_path / "old.sqlite3"
    conn = open_db(db, target_version=1)
    conn.execute("INSERT INTO sessions (sha256, path, recorded_at) VALUES ('x', 'old.csv', '2026-01-05T08:00:00')")
    conn.execute("INSERT INTO reps (session_id, idx, tremor_rms_dps, flags) VALUES (1, 0, 3.0, ?)", (json.dumps([]),))
    conn.commit()
    conn.close()
    migrated = open_db(db)
    assert migrated.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    row = get_session(migrated, 1)
    assert row["mean_tremor_rms_dps"] == 3.0 and row["reps"][0]["hip_flexion_deg"] is None


def test_newer_or_corrupt_database_is_a_clear_error(tmp_path):
    newer = tmp_path / "new.sqlite3"
    conn = sqlite3.connect(newer)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(HoldmonError, match="newer than this holdmon"):
        open_db(newer)
    junk = tmp_path / "junk.sqlite3"
    junk.write_bytes(b"this is not a database" * 100)
    with pytest.raises(HoldmonError, match="cannot open history database"):
        open_db(junk)
