"""Session history in SQLite: one row per recording (by content hash), one per rep; weekly trends.

The store is a plain stdlib `sqlite3` file, created readable by the user only. Its location is
`--db`, else `$HOLDMON_DB`, else `$XDG_DATA_HOME/holdmon/history.sqlite3` (`~/.local/share/...`).
Schema changes are numbered migrations applied in order; `PRAGMA user_version` holds the version.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Callable

from sensor.errors import HoldmonError
from sensor.types import RecordingMeta

SCHEMA_VERSION = 2


def default_db_path() -> Path:
    """$HOLDMON_DB, else the user's data directory."""
    if os.environ.get("HOLDMON_DB"):
        return Path(os.environ["HOLDMON_DB"])
    data_home = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(data_home) / "holdmon" / "history.sqlite3"


def _migrate_to_1(conn: sqlite3.Connection) -> None:
    conn.executescript(
        """
        CREATE TABLE sessions (
            id INTEGER PRIMARY KEY,
            sha256 TEXT NOT NULL UNIQUE,
            path TEXT NOT NULL,
            recorded_at TEXT NOT NULL,
            added_at TEXT NOT NULL DEFAULT (datetime('now')),
            side TEXT, stage INTEGER, load_kg REAL, placement TEXT,
            duration_s REAL, reps INTEGER, reps_target_met INTEGER,
            mean_hold_s REAL, mean_sway_sd_deg REAL
        );
        CREATE TABLE reps (
            session_id INTEGER NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
            idx INTEGER NOT NULL,
            hold_duration_s REAL, hold_angle_mean_deg REAL, sway_sd_deg REAL,
            sag_deg_per_s REAL, tremor_rms_dps REAL, target_met INTEGER, flags TEXT,
            PRIMARY KEY (session_id, idx)
        );
        """
    )


def _migrate_to_2(conn: sqlite3.Connection) -> None:
    """v2: hip flexion per rep and mean tremor per session."""
    conn.executescript(
        """
        ALTER TABLE reps ADD COLUMN hip_flexion_deg REAL;
        ALTER TABLE sessions ADD COLUMN mean_tremor_rms_dps REAL;
        UPDATE sessions SET mean_tremor_rms_dps =
            (SELECT avg(tremor_rms_dps) FROM reps WHERE reps.session_id = sessions.id);
        """
    )


MIGRATIONS: dict[int, Callable[[sqlite3.Connection], None]] = {1: _migrate_to_1, 2: _migrate_to_2}


def open_db(path: Path, target_version: int = SCHEMA_VERSION) -> sqlite3.Connection:
    """Open (creating with mode 0600 if new) and migrate the database to `target_version`."""
    path = Path(path)
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)  # a new data directory: user only
        if not path.exists():
            os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
        conn = sqlite3.connect(path)
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA foreign_keys = ON")
        version = conn.execute("PRAGMA user_version").fetchone()[0]
    except (OSError, sqlite3.DatabaseError) as exc:
        raise HoldmonError(f"{path}: cannot open history database: {exc}") from None
    if version > SCHEMA_VERSION:
        raise HoldmonError(f"{path}: history schema v{version} is newer than this holdmon (v{SCHEMA_VERSION})")
    for step in range(version + 1, target_version + 1):
        with conn:
            MIGRATIONS[step](conn)
            conn.execute(f"PRAGMA user_version = {step}")
    return conn


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def add_session(conn: sqlite3.Connection, replay_doc: dict, meta: RecordingMeta, sha256: str,
                recorded_at: str) -> tuple[int, bool]:
    """Store one analysed recording (a `holdmon.replay/1` document). Returns (session id, added).

    A recording already stored (same content hash) is kept as it is and `added` is False.
    """
    row = conn.execute("SELECT id FROM sessions WHERE sha256 = ?", (sha256,)).fetchone()
    if row is not None:
        return int(row["id"]), False
    rec, summary, reps = replay_doc["recording"], replay_doc["summary"], replay_doc["reps"]
    tremors = [r["tremor_rms_dps"] for r in reps if r.get("tremor_rms_dps") is not None]
    with conn:
        cur = conn.execute(
            "INSERT INTO sessions (sha256, path, recorded_at, side, stage, load_kg, placement, duration_s,"
            " reps, reps_target_met, mean_hold_s, mean_sway_sd_deg, mean_tremor_rms_dps)"
            " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (sha256, rec["path"], recorded_at, meta.side, meta.stage, meta.load_kg, rec["placement"],
             rec["duration_s"], summary["reps"], summary["reps_target_met"], summary["mean_hold_s"],
             summary["mean_sway_sd_deg"], sum(tremors) / len(tremors) if tremors else None),
        )
        session_id = int(cur.lastrowid)
        conn.executemany(
            "INSERT INTO reps (session_id, idx, hold_duration_s, hold_angle_mean_deg, sway_sd_deg,"
            " sag_deg_per_s, tremor_rms_dps, target_met, flags, hip_flexion_deg) VALUES (?,?,?,?,?,?,?,?,?,?)",
            [(session_id, r["index"], r["hold_duration_s"], r["hold_angle_mean_deg"], r["sway_sd_deg"],
              r["sag_deg_per_s"], r["tremor_rms_dps"], int(bool(r["target_met"])), json.dumps(r["flags"]),
              r.get("hip_flexion_deg")) for r in reps],
        )
    return session_id, True


SESSION_COLUMNS = ("id", "recorded_at", "side", "stage", "load_kg", "placement", "reps", "reps_target_met",
                   "mean_hold_s", "mean_sway_sd_deg", "mean_tremor_rms_dps", "path")


def list_sessions(conn: sqlite3.Connection) -> list[dict]:
    rows = conn.execute(f"SELECT {', '.join(SESSION_COLUMNS)} FROM sessions ORDER BY recorded_at, id")
    return [dict(r) for r in rows]


def get_session(conn: sqlite3.Connection, session_id: int) -> dict:
    """One session with its reps; HoldmonError if there is no such id."""
    row = conn.execute("SELECT * FROM sessions WHERE id = ?", (session_id,)).fetchone()
    if row is None:
        raise HoldmonError(f"no session with id {session_id} in the history")
    reps = conn.execute("SELECT * FROM reps WHERE session_id = ? ORDER BY idx", (session_id,)).fetchall()
    out = dict(row)
    out["reps"] = [{**dict(r), "flags": json.loads(r["flags"])} for r in reps]
    return out


def export_rows(conn: sqlite3.Connection) -> list[dict]:
    """Every stored rep joined with its session's fields, oldest session first."""
    rows = conn.execute(
        "SELECT s.id AS session_id, s.recorded_at, s.side, s.stage, s.load_kg, s.placement, s.path,"
        " r.idx AS rep, r.hold_duration_s, r.hold_angle_mean_deg, r.sway_sd_deg, r.sag_deg_per_s,"
        " r.tremor_rms_dps, r.hip_flexion_deg, r.target_met, r.flags"
        " FROM sessions s JOIN reps r ON r.session_id = s.id ORDER BY s.recorded_at, s.id, r.idx")
    return [dict(r) for r in rows]


@dataclass(frozen=True)
class WeekTrend:
    week: str
    sessions: int
    reps: int
    mean_hold_s: float | None
    mean_sway_sd_deg: float | None
    mean_tremor_rms_dps: float | None


def weekly_trend(conn: sqlite3.Connection, side: str | None = None, stage: int | None = None) -> list[WeekTrend]:
    """Per ISO week (YYYY-Www): mean hold time, sway SD and tremor over all reps, optionally filtered."""
    where, args = [], []
    if side is not None:
        where.append("s.side = ?")
        args.append(side)
    if stage is not None:
        where.append("s.stage = ?")
        args.append(stage)
    clause = f"WHERE {' AND '.join(where)}" if where else ""
    rows = conn.execute(
        "SELECT s.recorded_at AS recorded_at, s.id AS sid, r.hold_duration_s AS hold, r.sway_sd_deg AS sway,"
        f" r.tremor_rms_dps AS tremor FROM sessions s JOIN reps r ON r.session_id = s.id {clause}", args,
    ).fetchall()
    weeks: dict[str, list[sqlite3.Row]] = {}
    for row in rows:
        weeks.setdefault(iso_week(row["recorded_at"]), []).append(row)
    return [_week_trend(week, weeks[week]) for week in sorted(weeks)]


def _mean(values: list) -> float | None:
    present = [v for v in values if v is not None]
    return sum(present) / len(present) if present else None


def _week_trend(week: str, rows: list[sqlite3.Row]) -> WeekTrend:
    return WeekTrend(week, len({r["sid"] for r in rows}), len(rows), _mean([r["hold"] for r in rows]),
                     _mean([r["sway"] for r in rows]), _mean([r["tremor"] for r in rows]))


def iso_week(timestamp: str) -> str:
    """'2026-11-24T10:00:00' -> '2026-W48'."""
    year, week, _ = datetime.fromisoformat(timestamp[:19]).isocalendar()
    return f"{year}-W{week:02d}"
