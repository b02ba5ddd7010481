"""`holdmon` commands: replay (one recording or a directory of them) and simulate.

Every `HoldmonError` becomes one line on stderr (`holdmon: error: ...`) and exit code 2; bad options
exit 2 as well (typer's usage errors). Exit codes: 0 ok, 1 a negative verdict (reserved for commands
that judge a session), 2 bad input. Other modules add commands with `register_module` (see
`sensor/cli/__init__.py`).
"""

from __future__ import annotations

import importlib
import json
import math
import os
import sys
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from enum import Enum
from multiprocessing import get_context
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from typer.core import TyperGroup

from sensor import __version__
from sensor.errors import ConfigError, HoldmonError, RecordingError
from sensor.types import DataIssue

stdout = Console(highlight=False)
if not stdout.is_terminal:
    stdout = Console(highlight=False, width=max(stdout.width, 120))
stderr = Console(stderr=True, highlight=False)

BATCH_FORMAT = "holdmon.batch/1"
UNIT_ISSUES = ("units_acc_g", "units_gyr_dps", "units_acc_unknown", "units_time_ms")


def print_error(message: str) -> None:
    """The one line a user error is reported with."""
    line = " ".join(str(message).split())
    sys.stderr.write(f"holdmon: error: {line}\n")
    sys.stderr.flush()


def print_warning(message: str) -> None:
    line = " ".join(str(message).split())
    sys.stderr.write(f"holdmon: warning: {line}\n")


class _HoldmonGroup(TyperGroup):
    """Runs a command; a HoldmonError becomes one stderr line and exit code 2, no traceback."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except HoldmonError as exc:
            print_error(str(exc))
            raise typer.Exit(2) from None


app = typer.Typer(
    cls=_HoldmonGroup,
    name="holdmon",
    help="Analyse ankle- or thigh-worn IMU recordings of standing knee-lift holds.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)


def register_module(module_name: str) -> None:
    """Import a command module and call its `register(app)`."""
    module = importlib.import_module(module_name)
    module.register(app)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"holdmon {__version__}")
        raise typer.Exit(0)


@app.callback()
def _main(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
) -> None:
    """Analyse ankle- or thigh-worn IMU recordings of standing knee-lift holds."""


# --------------------------------------------------------------------------------------- options


class PlacementOpt(str, Enum):
    ankle = "ankle"
    thigh = "thigh"


class SideOpt(str, Enum):
    left = "left"
    right = "right"


class AccUnit(str, Enum):
    mps2 = "mps2"
    g = "g"


class GyrUnit(str, Enum):
    radps = "radps"
    dps = "dps"


def _value(x: Any) -> Any:
    return x.value if isinstance(x, Enum) else x


def recording_defaults(placement=None, side=None, rate_hz=None, stage=None, load_kg=None,
                       acc_unit=None, gyr_unit=None) -> dict:
    """Metadata options as `read_recording(defaults=...)` takes them (None = not given)."""
    given = {"placement": placement, "side": side, "rate_hz": rate_hz, "stage": stage,
             "load_kg": load_kg, "acc_unit": acc_unit, "gyr_unit": gyr_unit}
    return {k: _value(v) for k, v in given.items() if v is not None}


def analysis_params(target_hold_s=None, goal_hold_s=None, calibration=None, shank_length_cm=None,
                    height_cm=None, sensor_above_ankle_cm=None) -> "Any":
    """AnalysisParams with the options that were given."""
    from sensor.config import AnalysisParams

    overrides: dict[str, Any] = {"target_hold_s": target_hold_s, "goal_hold_s": goal_hold_s,
                                 "shank_length_cm": shank_length_cm, "height_cm": height_cm,
                                 "sensor_above_ankle_cm": sensor_above_ankle_cm}
    if calibration is not None:
        overrides["calibration_window_s"] = _parse_window(calibration)
    params = AnalysisParams()
    if goal_hold_s is None and target_hold_s is not None and target_hold_s > params.goal_hold_s:
        overrides["goal_hold_s"] = target_hold_s
    return params.with_overrides(**overrides)


def _parse_window(text: str) -> tuple[float, float]:
    start, _, end = text.partition(":")
    try:
        return float(start), float(end)
    except ValueError:
        raise ConfigError(f"--calibration wants START:END in seconds, got {text!r}") from None


# ---------------------------------------------------------------------------------------- replay


def replay_document(path: str, defaults: dict, params: Any) -> tuple[dict, list[DataIssue]]:
    """Read and analyse one recording: (the holdmon.replay/1 document, the data issues).

    A suspected unit mistake is fatal here: analysing such data would give wrong numbers.
    """
    from sensor.pipeline import analyze
    from sensor.recording import read_recording

    recording = read_recording(path, defaults=defaults)
    for issue in recording.issues:
        if issue.kind in UNIT_ISSUES:
            raise RecordingError(path, issue.message)
    result = analyze(recording, params)
    return result.to_json(), result.issues


def _issue_text(issue: DataIssue) -> str:
    where = f" (line {issue.line})" if issue.line is not None else ""
    return f"{issue.message}{where}"


def _fmt(x: Any, digits: int = 1) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "-"
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, float):
        return f"{x:.{digits}f}"
    return str(x)


def rep_table(doc: dict) -> Table:
    """One row per rep of a holdmon.replay/1 document."""
    table = Table(title=f"Reps in {doc['recording']['path']}", title_justify="left")
    cols = [("#", "index", 0), ("lift s", "lift_start_s", 1), ("hold s", "hold_duration_s", 1),
            ("mean °", "hold_angle_mean_deg", 1), ("sway SD °", "sway_sd_deg", 2),
            ("sag °/s", "sag_deg_per_s", 2), ("tremor °/s", "tremor_rms_dps", 2),
            ("corr.", "corrections", 0), ("rise cm", "ankle_rise_cm", 1), ("hip °", "hip_flexion_deg", 0),
            ("target met", "target_met", 0)]
    for title, _, _ in cols:
        table.add_column(title, justify="right")
    table.add_column("flags")
    for rep in doc["reps"]:
        cells = [_fmt(rep.get(key), digits) for _, key, digits in cols]
        table.add_row(*cells, ", ".join(rep.get("flags", [])) or "-")
    return table


def summary_text(doc: dict) -> str:
    rec, s = doc["recording"], doc["summary"]
    side = rec.get("side") or "side unknown"
    parts = [f"{rec['samples']} samples, {_fmt(rec['duration_s'])} s at {_fmt(rec['rate_hz'])} Hz, "
             f"{rec['placement']}, {side}, {len(rec['gaps'])} gap(s)",
             f"{s['reps']} rep(s), {s['reps_target_met']} met the target, mean hold "
             f"{_fmt(s['mean_hold_s'])} s, mean sway SD {_fmt(s['mean_sway_sd_deg'], 2)} °"]
    return "\n".join(parts)


def _dump(doc: Any) -> str:
    return json.dumps(doc, allow_nan=False, default=_json_default)


def _json_default(x: Any) -> Any:
    import numpy as np

    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, np.ndarray):
        return x.tolist()
    raise TypeError(f"not JSON serialisable: {type(x).__name__}")


@app.command()
def replay(
    path: Annotated[Path, typer.Argument(help="A recording (.csv), or a directory: every *.csv in it.")],
    json_out: Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout.")] = False,
    placement: Annotated[Optional[PlacementOpt], typer.Option(
        help="Sensor placement, when the file does not say.")] = None,
    side: Annotated[Optional[SideOpt], typer.Option(help="Leg, when the file does not say.")] = None,
    rate_hz: Annotated[Optional[float], typer.Option(
        help="Sample rate, when the file does not say (else estimated from time).")] = None,
    stage: Annotated[Optional[int], typer.Option(help="Exercise stage, when the file does not say.")] = None,
    load_kg: Annotated[Optional[float], typer.Option(help="Ankle weight, when the file does not say.")] = None,
    acc_unit: Annotated[Optional[AccUnit], typer.Option(
        help="Unit of the acceleration columns, when the file does not say.")] = None,
    gyr_unit: Annotated[Optional[GyrUnit], typer.Option(
        help="Unit of the angular-rate columns, when the file does not say.")] = None,
    target_hold_s: Annotated[Optional[float], typer.Option(help="Minimum hold time (default 10 s).")] = None,
    goal_hold_s: Annotated[Optional[float], typer.Option(help="Hold goal (default 15 s).")] = None,
    calibration: Annotated[Optional[str], typer.Option(
        help="Standing reference window START:END in s (default: the first still second).")] = None,
    jobs: Annotated[Optional[int], typer.Option(
        help="Processes for a directory (default: all CPU cores).", min=1)] = None,
    shank_length_cm: Annotated[Optional[float], typer.Option(
        help="Knee to ankle bone, for hip flexion from an ankle sensor (default: 0.246 x height).",
        min=10.0, max=80.0)] = None,
    height_cm: Annotated[Optional[float], typer.Option(
        help="The user's height, for the leg lengths (default 175 cm).", min=80.0, max=250.0)] = None,
    sensor_above_ankle_cm: Annotated[Optional[float], typer.Option(
        help="Sensor centre above the ankle bone (default 8 cm).", min=0.0, max=40.0)] = None,
) -> None:
    """Analyse a recording: a table per rep and a session summary (or --json)."""
    defaults = recording_defaults(placement, side, rate_hz, stage, load_kg, acc_unit, gyr_unit)
    params = analysis_params(target_hold_s, goal_hold_s, calibration, shank_length_cm, height_cm,
                             sensor_above_ankle_cm)
    if path.is_dir():
        code = _replay_dir(path, defaults, params, json_out, jobs)
        raise typer.Exit(code)
    doc, issues = replay_document(str(path), defaults, params)
    for issue in issues:
        print_warning(_issue_text(issue))
    if json_out:
        sys.stdout.write(_dump(doc) + "\n")
        return
    stdout.print(rep_table(doc))
    stdout.print(summary_text(doc))


def _analyse_file(path: str, defaults: dict, params: Any) -> tuple[str, dict | None, str | None, list[str]]:
    """Batch worker: (path, document or None, error or None, warnings)."""
    try:
        doc, issues = replay_document(path, defaults, params)
    except HoldmonError as exc:
        return path, None, str(exc), []
    except Exception as exc:  # a bug shown by one file must not end the batch  # noqa: BLE001
        return path, None, f"{path}: internal error: {type(exc).__name__}: {exc}", []
    return path, doc, None, [_issue_text(i) for i in issues]


def _replay_dir(directory: Path, defaults: dict, params: Any, json_out: bool, jobs: int | None) -> int:
    """Analyse every *.csv in directory in parallel; bad files are reported and skipped.

    Exit code 0 when at least one recording was analysed, 2 when none was (or none found).
    """
    paths = sorted(str(p) for p in directory.glob("*.csv") if p.is_file())
    if not paths:
        raise RecordingError(str(directory), "no *.csv recordings in this directory")
    workers = min(jobs or os.cpu_count() or 1, len(paths))
    results: dict[str, tuple[dict | None, str | None]] = {}
    progress = Progress(TextColumn("[bold]replay"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                        TextColumn("{task.description}"), console=stderr, transient=True,
                        disable=not stderr.is_terminal)
    with progress, ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
        task = progress.add_task("", total=len(paths))
        futures = {pool.submit(_analyse_file, p, defaults, params): p for p in paths}
        for fut in as_completed(futures):
            try:
                path, doc, error, warnings = fut.result()
            except BrokenProcessPool as exc:  # a worker died (killed, out of memory)
                path, doc, error, warnings = futures[fut], None, f"{futures[fut]}: worker died: {exc}", []
            results[path] = (doc, error)
            for w in warnings:
                print_warning(f"{path}: {w}")
            if error is not None:
                print_warning(f"skipped: {error}")
            progress.update(task, advance=1, description=Path(path).name)
    docs = [results[p][0] for p in paths if results[p][0] is not None]
    errors = [{"path": p, "error": results[p][1]} for p in paths if results[p][1] is not None]
    if json_out:
        batch = {"format": BATCH_FORMAT, "recordings": docs, "errors": errors,
                 "summary": {"files": len(paths), "analysed": len(docs), "failed": len(errors)}}
        sys.stdout.write(_dump(batch) + "\n")
    else:
        _print_batch(docs, errors)
    return 0 if docs else 2


def _print_batch(docs: list[dict], errors: list[dict]) -> None:
    table = Table(title="Recordings", title_justify="left")
    for title in ("file", "placement", "side", "reps", "target met", "mean hold s", "mean sway SD °"):
        table.add_column(title, justify="left" if title == "file" else "right")
    for doc in docs:
        rec, s = doc["recording"], doc["summary"]
        table.add_row(Path(rec["path"]).name, rec["placement"], rec.get("side") or "-", str(s["reps"]),
                      str(s["reps_target_met"]), _fmt(s["mean_hold_s"]), _fmt(s["mean_sway_sd_deg"], 2))
    for err in errors:
        table.add_row(Path(err["path"]).name, "[red]failed[/red]", "", "", "", "", "")
    stdout.print(table)


# -------------------------------------------------------------------------------------- simulate


def _rep_list(text: str | None, option: str) -> tuple[int, ...]:
    """'2,4' -> (2, 4); None -> (); anything else is a ConfigError naming the option."""
    if not text:
        return ()
    try:
        return tuple(int(part) for part in text.split(","))
    except ValueError:
        raise ConfigError(f"{option} wants rep numbers separated by commas, got {text!r}") from None


def truth_path(csv_path: Path) -> Path:
    """OUT.csv -> OUT.truth.json (next to it)."""
    stem = csv_path.name[:-4] if csv_path.name.lower().endswith(".csv") else csv_path.name
    return csv_path.with_name(stem + ".truth.json")


@app.command()
def simulate(
    out: Annotated[Path, typer.Argument(help="Recording to write (.csv); truth goes to OUT.truth.json.")],
    reps: Annotated[int, typer.Option(help="Number of reps.", min=1)] = 5,
    placement: Annotated[PlacementOpt, typer.Option(help="Sensor placement.")] = PlacementOpt.ankle,
    side: Annotated[SideOpt, typer.Option(help="Leg.")] = SideOpt.left,
    loaded: Annotated[bool, typer.Option("--loaded", help="Stage 4: with an ankle weight.")] = False,
    load_kg: Annotated[float, typer.Option(help="Ankle weight with --loaded.", min=0)] = 1.5,
    rate_hz: Annotated[float, typer.Option(help="Sample rate.")] = 100.0,
    seed: Annotated[int, typer.Option(help="Random seed (same seed, same session).")] = 0,
    duration_s: Annotated[Optional[float], typer.Option(
        help="Session length; as many reps as fit (overrides --reps).")] = None,
    lost_packet_rate: Annotated[float, typer.Option(help="Share of BLE packets lost.")] = 0.002,
    steady: Annotated[bool, typer.Option("--steady", help="No special reps unless listed below.")] = False,
    early_drop: Annotated[Optional[str], typer.Option(help="Reps (1-based, e.g. 2,4) that drop early.")] = None,
    balance_loss: Annotated[Optional[str], typer.Option(help="Reps that end in a loss of balance.")] = None,
    aborted: Annotated[Optional[str], typer.Option(help="Reps that never settle into a hold.")] = None,
    heavy_sag: Annotated[Optional[str], typer.Option(help="Reps whose hold sags 1-2 deg/s.")] = None,
) -> None:
    """Write a simulated session with a ground-truth JSON sidecar.

    Without --steady or a rep list, each rep may at random drop early, lose balance or abort.
    """
    from sensor.recording import write_private_file, write_recording
    from sensor.simulate import SimConfig, simulate_session

    listed = {"early_drop_reps": early_drop, "balance_loss_reps": balance_loss, "aborted_reps": aborted,
              "heavy_sag_reps": heavy_sag}
    kinds = {k: _rep_list(v, "--" + k[:-5].replace("_", "-")) for k, v in listed.items()
             if v is not None or steady}
    cfg = SimConfig(reps=reps, placement=placement.value, side=side.value, loaded=loaded, load_kg=load_kg,
                    rate_hz=rate_hz, seed=seed, duration_s=duration_s, lost_packet_rate=lost_packet_rate,
                    **kinds)
    result = simulate_session(cfg)
    write_recording(out, result.meta, result.samples)
    truth_file = truth_path(out)
    write_private_file(truth_file, (_dump(result.truth) + "\n").encode("utf-8"))
    n = len(result.samples)
    stderr.print(f"wrote {out} ({n} samples, {result.samples.t_s[-1] - result.samples.t_s[0]:.1f} s, "
                 f"{len(result.truth['reps'])} reps) and {truth_file}")


# ------------------------------------------------------------------ commands from other modules
# One line per module: register_module("sensor.cli.<module>")
register_module("sensor.cli.live_cmds")
register_module("sensor.cli.report_cmds")
