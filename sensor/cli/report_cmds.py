"""`holdmon verify`, `holdmon report` and `holdmon history ...`: judging, showing and keeping sessions."""

from __future__ import annotations

import csv
import os
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from sensor.cli.main import (PlacementOpt, SideOpt, _dump, _issue_text, analysis_params, print_warning,
                             recording_defaults, stdout, stderr)
from sensor.errors import ConfigError, HoldmonError, RecordingError

JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout.")]
PlacementArg = Annotated[Optional[PlacementOpt], typer.Option(help="Sensor placement, when a file does not say.")]
TargetArg = Annotated[Optional[float], typer.Option(help="Minimum hold time (default 10 s).")]
DbArg = Annotated[Optional[Path], typer.Option(
    "--db", help="History database (default: $HOLDMON_DB, else the user's data directory).")]


def analyse(path: Path, placement: Optional[PlacementOpt], target_hold_s: Optional[float]):
    """Read and analyse one recording -> (Recording, SessionResult); data issues become warnings."""
    from sensor.cli.main import UNIT_ISSUES
    from sensor.pipeline import analyze
    from sensor.recording import read_recording

    recording = read_recording(str(path), defaults=recording_defaults(placement=placement))
    for issue in recording.issues:
        if issue.kind in UNIT_ISSUES:
            raise RecordingError(str(path), issue.message)
    result = analyze(recording, analysis_params(target_hold_s=target_hold_s))
    for issue in result.issues:
        print_warning(f"{path}: {_issue_text(issue)}")
    return recording, result


def load_rules(path: Optional[Path]):
    """VerifyRules from a TOML file (a [verify] table or top-level keys), or the defaults."""
    from sensor.analysis.verify import VerifyRules

    if path is None:
        return VerifyRules()
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read rules: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    return VerifyRules.from_mapping(data.get("verify", data), source=str(path))


def _same_side_baselines(weighted, baselines: list) -> list:
    """The baseline SessionResults of the weighted session's side (all of them when a side is unknown)."""
    side = weighted.meta.side
    kept = []
    for res in baselines:
        if side and res.meta.side and res.meta.side != side:
            print_warning(f"{res.path}: baseline is the {res.meta.side} side, the weighted session the "
                          f"{side} side; not used")
            continue
        kept.append(res)
    return kept


def register(app: typer.Typer) -> None:
    @app.command()
    def verify(
        weighted: Annotated[Path, typer.Argument(help="The weighted (stage 4) recording.")],
        baseline: Annotated[Optional[list[Path]], typer.Option(
            "--baseline", help="Unweighted recording(s) of the same side; repeat for more.")] = None,
        rules: Annotated[Optional[Path], typer.Option(help="TOML file overriding the default criteria.")] = None,
        json_out: JsonOpt = False,
        placement: PlacementArg = None,
        target_hold_s: TargetArg = None,
    ) -> None:
        """Is a weighted lift stable? Exit 0 stable, 1 unstable, 2 bad input."""
        from sensor.analysis.verify import verify as run_verify

        verify_rules = load_rules(rules)
        if target_hold_s is not None and rules is None:
            verify_rules = type(verify_rules)(**{**verify_rules.to_json(), "min_hold_s": target_hold_s})
        _, result = analyse(weighted, placement, target_hold_s)
        bases = _same_side_baselines(result, [analyse(p, placement, target_hold_s)[1] for p in baseline or []])
        outcome = run_verify(result.reps, [r for res in bases for r in res.reps], verify_rules,
                             placement=result.placement)
        if json_out:
            doc = outcome.to_json()
            doc["recording"] = str(weighted)
            doc["baseline_recordings"] = [res.path for res in bases]
            sys.stdout.write(_dump(doc) + "\n")
        else:
            stdout.print(_verdict_table(outcome, str(weighted)))
            for reason in outcome.reasons:
                stdout.print(f"- {reason}")
            stdout.print(f"Verdict: {'stable' if outcome.stable else 'unstable'}")
        raise typer.Exit(0 if outcome.stable else 1)

    @app.command()
    def report(
        files: Annotated[list[Path], typer.Argument(help="Recordings to include.")],
        output: Annotated[Path, typer.Option("-o", "--output", help="The HTML file to write.")],
        baseline: Annotated[Optional[list[Path]], typer.Option(
            "--baseline", help="Unweighted recording(s): adds the comparison and the verdicts.")] = None,
        png: Annotated[Optional[Path], typer.Option(help="Also write every plot as PNG into this directory.")] = None,
        history: Annotated[bool, typer.Option("--history", help="Add the weekly trend from the history.")] = False,
        db: DbArg = None,
        placement: PlacementArg = None,
        target_hold_s: TargetArg = None,
    ) -> None:
        """One self-contained HTML page with the plots of the given sessions."""
        from sensor.analysis.verify import verify as run_verify
        from sensor.report import ReportSession, build_report

        params = analysis_params(target_hold_s=target_hold_s)
        sessions = [ReportSession(res, rec.samples) for rec, res in
                    (analyse(p, placement, target_hold_s) for p in _progress(files, "analysing"))]
        bases = [ReportSession(res, rec.samples, "baseline") for rec, res in
                 (analyse(p, placement, target_hold_s) for p in baseline or [])]
        verifications = []
        if bases:
            weighted = [s for s in sessions if s.result.meta.load_kg > 0] or sessions
            for s in weighted:
                same_side = _same_side_baselines(s.result, [b.result for b in bases])
                verdict = run_verify(s.result.reps, [r for res in same_side for r in res.reps],
                                     placement=s.result.placement)
                verifications.append((s.result.path, verdict))
        trend = _trend(db) if history else None
        page = build_report(sessions + bases, target_hold_s=params.target_hold_s, goal_hold_s=params.goal_hold_s,
                            settle_s=params.settle_s, verifications=verifications, trend=trend)
        _write_bytes(output, page.html.encode("utf-8"))
        if png is not None:
            _mkdir(png)
            for name, data in page.figures.items():
                _write_bytes(png / f"{name}.png", data)
        stderr.print(f"wrote {output} ({len(page.figures)} plots)")

    history_app = typer.Typer(help="Session history (SQLite): add, list, show, trend, export.",
                              no_args_is_help=True)
    app.add_typer(history_app, name="history")

    @history_app.command("add")
    def history_add(
        files: Annotated[list[Path], typer.Argument(help="Recordings to analyse and store.")],
        db: DbArg = None,
        placement: PlacementArg = None,
    ) -> None:
        """Analyse recordings and store them; a recording already stored is kept once."""
        from sensor.history import add_session, file_sha256

        conn = _open(db)
        failed = 0
        for path in _progress(files, "adding"):
            try:
                _, result = analyse(path, placement, None)
                session_id, added = add_session(conn, result.to_json(), result.meta, file_sha256(path),
                                                _recorded_at(path, result.meta))
            except HoldmonError as exc:
                failed += 1
                sys.stderr.write(f"holdmon: error: {exc} (skipped)\n")
                continue
            stderr.print(f"{'added' if added else 'already stored'}: {path} as session {session_id}")
        raise typer.Exit(2 if failed else 0)

    @history_app.command("list")
    def history_list(db: DbArg = None, json_out: JsonOpt = False) -> None:
        """All stored sessions, oldest first."""
        from sensor.history import list_sessions

        rows = list_sessions(_open(db))
        if json_out:
            sys.stdout.write(_dump({"format": "holdmon.history/1", "sessions": rows}) + "\n")
            return
        table = Table(title="Sessions", title_justify="left")
        columns = [("id", "id"), ("recorded", "recorded_at"), ("side", "side"), ("stage", "stage"),
                   ("kg", "load_kg"), ("reps", "reps"), ("met", "reps_target_met"), ("hold s", "mean_hold_s"),
                   ("sway °", "mean_sway_sd_deg"), ("tremor °/s", "mean_tremor_rms_dps"), ("file", "path")]
        for title, _ in columns:
            table.add_column(title, no_wrap=True)
        for row in rows:
            row = {**row, "path": Path(row["path"]).name, "recorded_at": row["recorded_at"][:16].replace("T", " ")}
            table.add_row(*[_cell(row[key]) for _, key in columns])
        stdout.print(table)

    @history_app.command("show")
    def history_show(session_id: Annotated[int, typer.Argument(help="Session id from `history list`.")],
                     db: DbArg = None, json_out: JsonOpt = False) -> None:
        """One session with its reps."""
        from sensor.history import get_session

        row = get_session(_open(db), session_id)
        if json_out:
            sys.stdout.write(_dump(row) + "\n")
            return
        stdout.print({k: v for k, v in row.items() if k != "reps"})
        table = Table(title=f"Reps of session {session_id}", title_justify="left")
        cols = ["idx", "hold_duration_s", "hold_angle_mean_deg", "sway_sd_deg", "sag_deg_per_s",
                "tremor_rms_dps", "hip_flexion_deg", "target_met", "flags"]
        for col in cols:
            table.add_column(col)
        for rep in row["reps"]:
            table.add_row(*[_cell(rep[c]) for c in cols])
        stdout.print(table)

    @history_app.command("trend")
    def history_trend(
        db: DbArg = None,
        side: Annotated[Optional[SideOpt], typer.Option(help="Only this leg.")] = None,
        stage: Annotated[Optional[int], typer.Option(help="Only this stage.")] = None,
        json_out: JsonOpt = False,
    ) -> None:
        """Hold time, sway and tremor per ISO week (plot it with `holdmon report --history`)."""
        from dataclasses import asdict

        weeks = _trend(db, side.value if side else None, stage)
        if json_out:
            sys.stdout.write(_dump({"format": "holdmon.trend/1", "weeks": [asdict(w) for w in weeks]}) + "\n")
            return
        table = Table(title="Weekly trend", title_justify="left")
        for col in ("week", "sessions", "reps", "hold s", "sway SD °", "tremor °/s"):
            table.add_column(col, justify="right")
        for w in weeks:
            table.add_row(w.week, str(w.sessions), str(w.reps), _cell(w.mean_hold_s), _cell(w.mean_sway_sd_deg),
                          _cell(w.mean_tremor_rms_dps))
        stdout.print(table)

    @history_app.command("export")
    def history_export(
        db: DbArg = None,
        csv_out: Annotated[bool, typer.Option("--csv", help="CSV of every stored rep on stdout.")] = True,
    ) -> None:
        """Every stored rep with its session's fields, as CSV on stdout."""
        from sensor.history import export_rows

        rows = export_rows(_open(db))
        writer = csv.writer(sys.stdout, lineterminator="\n")
        if rows:
            writer.writerow(rows[0].keys())
        for row in rows:
            writer.writerow(["" if v is None else v for v in row.values()])


def _verdict_table(outcome, path: str) -> Table:
    table = Table(title=f"Verification of {path}", title_justify="left")
    table.add_column("rep", justify="right")
    table.add_column("verdict")
    table.add_column("reasons")
    for v in outcome.reps:
        colour = "green" if v.stable else "red"
        table.add_row(str(v.index), f"[{colour}]{'stable' if v.stable else 'unstable'}[/]",
                      "; ".join(v.reasons) or "-")
    return table


def _progress(paths: list[Path], what: str):
    """Iterate over paths with a progress bar on a terminal (nothing when stderr is redirected)."""
    from rich.progress import track

    if len(paths) < 2 or not stderr.is_terminal:
        return paths
    return track(paths, description=what, console=stderr, transient=True)


def _open(db: Optional[Path]):
    from sensor.history import default_db_path, open_db

    return open_db(db or default_db_path())


def _trend(db: Optional[Path], side: Optional[str] = None, stage: Optional[int] = None):
    from sensor.history import weekly_trend

    return weekly_trend(_open(db), side, stage)


def _recorded_at(path: Path, meta) -> str:
    """The recording's own `recorded_at` metadata, else the file's modification time (UTC)."""
    stamp = meta.extra.get("recorded_at")
    if stamp:
        try:
            return datetime.fromisoformat(stamp).isoformat(timespec="seconds")
        except ValueError:
            raise RecordingError(str(path), f"recorded_at {stamp!r} is not an ISO 8601 time") from None
    return datetime.fromtimestamp(os.stat(path).st_mtime, timezone.utc).isoformat(timespec="seconds")


def _cell(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.2f}"
    if isinstance(value, list):
        return ", ".join(map(str, value)) or "-"
    return str(value)


def _mkdir(path: Path) -> None:
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot create directory: {exc.strerror or exc}") from None


def _write_bytes(path: Path, data: bytes) -> None:
    from sensor.recording import write_private_file

    write_private_file(path, data)

