"""The holdmon command line: replay, simulate, batch replay, errors and exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sensor.cli.main import app, truth_path

runner = CliRunner()

REPLAY_KEYS = {"format", "recording", "reps", "summary"}
RECORDING_KEYS = {"path", "samples", "duration_s", "rate_hz", "placement", "side", "gaps"}
REP_KEYS = {"index", "lift_start_s", "hold_start_s", "hold_end_s", "lower_end_s", "hold_duration_s",
            "peak_angle_deg", "hold_angle_mean_deg", "sway_sd_deg", "sway_range_deg", "sag_deg_per_s",
            "mean_speed_dps", "tremor_rms_dps", "tremor_growth", "corrections", "target_met", "flags"}
SUMMARY_KEYS = {"reps", "reps_target_met", "mean_hold_s", "mean_sway_sd_deg"}


def run(*args: str):
    return runner.invoke(app, [str(a) for a in args])


def assert_one_line_error(result, *needles: str) -> None:
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("holdmon: error: "), result.stderr
    assert "Traceback" not in result.output
    for needle in needles:
        assert needle in lines[0]


def assert_replay_doc(doc: dict) -> None:
    assert REPLAY_KEYS <= set(doc) and doc["format"] == "holdmon.replay/1"
    assert RECORDING_KEYS <= set(doc["recording"])
    assert SUMMARY_KEYS <= set(doc["summary"])
    assert doc["reps"], "the simulated session has reps"
    for rep in doc["reps"]:
        assert REP_KEYS <= set(rep)
    for gap in doc["recording"]["gaps"]:
        assert set(gap) >= {"start_s", "end_s", "missing_samples"}


@pytest.fixture(scope="module")
def session(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("sim") / "session.csv"
    result = run("simulate", out, "--reps", "2", "--seed", "3", "--side", "right")
    assert result.exit_code == 0, result.output
    return out


def without_metadata(src: Path, dst: Path) -> Path:
    dst.write_text("".join(line for line in src.read_text().splitlines(keepends=True)
                           if not line.startswith("#")))
    return dst


# ----------------------------------------------------------------------------------- simulate


def test_simulate_writes_recording_and_truth_sidecar(session: Path) -> None:
    truth = json.loads(truth_path(session).read_text())
    assert truth_path(session).name == "session.truth.json"
    assert truth["format"] == "holdmon.truth/1" and len(truth["reps"]) == 2
    head = session.read_text().splitlines()[:12]
    assert "# format: holdmon-recording/1" in head and "# side: right" in head


def test_simulate_bad_option_value_exits_2(tmp_path: Path) -> None:
    result = run("simulate", tmp_path / "x.csv", "--placement", "knee")
    assert result.exit_code == 2
    assert not (tmp_path / "x.csv").exists()


def test_simulate_bad_config_is_one_line(tmp_path: Path) -> None:
    result = run("simulate", tmp_path / "x.csv", "--rate-hz", "5")
    assert_one_line_error(result, "rate_hz")


# ------------------------------------------------------------------------------------- replay


def test_replay_json_is_one_document(session: Path) -> None:
    result = run("replay", session, "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)  # the whole of stdout is one JSON document
    assert_replay_doc(doc)
    assert doc["recording"]["side"] == "right" and doc["recording"]["placement"] == "ankle"
    assert len(doc["reps"]) == 2


def test_replay_table(session: Path) -> None:
    result = run("replay", session)
    assert result.exit_code == 0, result.output
    assert "Reps in" in result.stdout and "sway SD" in result.stdout
    assert "rep(s)" in result.stdout and "met the target" in result.stdout


def test_replay_target_option_changes_target_met(session: Path) -> None:
    doc = json.loads(run("replay", session, "--json", "--target-hold-s", "60").stdout)
    assert not any(rep["target_met"] for rep in doc["reps"])
    assert all("early_drop" in rep["flags"] for rep in doc["reps"] if "aborted" not in rep["flags"])


def test_metadata_less_file_takes_options(session: Path, tmp_path: Path) -> None:
    bare = without_metadata(session, tmp_path / "bare.csv")
    result = run("replay", bare, "--json", "--placement", "ankle", "--side", "left", "--rate-hz", "100")
    assert result.exit_code == 0, result.output
    rec = json.loads(result.stdout)["recording"]
    assert (rec["side"], rec["placement"], rec["rate_hz"]) == ("left", "ankle", 100.0)


def test_option_that_contradicts_the_file_is_a_warning(session: Path) -> None:
    result = run("replay", session, "--json", "--side", "left")
    assert result.exit_code == 0
    assert json.loads(result.stdout)["recording"]["side"] == "right"
    assert "holdmon: warning: side=left ignored" in result.stderr


def test_data_issues_are_warnings_on_stderr(session: Path, tmp_path: Path) -> None:
    cut = tmp_path / "cut.csv"
    data = session.read_bytes()
    cut.write_bytes(data[:-7])
    result = run("replay", cut, "--json")
    assert result.exit_code == 0, result.output
    assert "last line cut off" in result.stderr
    doc = json.loads(result.stdout)
    assert any(i["kind"] == "truncated_last_line" for i in doc["issues"])


def test_missing_file(tmp_path: Path) -> None:
    assert_one_line_error(run("replay", tmp_path / "nope.csv", "--json"), "nope.csv", "No such file")


def test_garbage_line_names_file_and_line(session: Path, tmp_path: Path) -> None:
    lines = session.read_text().splitlines()
    lines[40] = "oops"
    bad = tmp_path / "bad.csv"
    bad.write_text("\n".join(lines) + "\n")
    result = run("replay", bad, "--json")
    assert_one_line_error(result, f"{bad}:41:")
    assert result.stdout == ""


def test_empty_file(tmp_path: Path) -> None:
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    assert_one_line_error(run("replay", empty), "empty file")


def test_acc_in_g_is_refused_until_the_unit_is_given(session: Path, tmp_path: Path) -> None:
    lines = session.read_text().splitlines()
    out = []
    for line in lines:
        if line[:1].isdigit():
            f = line.split(",")
            f[1:4] = [f"{float(v) / 9.80665:.6f}" for v in f[1:4]]
            line = ",".join(f)
        out.append(line)
    in_g = tmp_path / "in_g.csv"
    in_g.write_text("\n".join(out) + "\n")
    assert_one_line_error(run("replay", in_g, "--json"), "in g", "--acc-unit g")
    fixed = run("replay", in_g, "--json", "--acc-unit", "g")
    assert fixed.exit_code == 0, fixed.output
    assert len(json.loads(fixed.stdout)["reps"]) == 2


def test_bad_calibration_window(session: Path) -> None:
    assert_one_line_error(run("replay", session, "--calibration", "abc"), "START:END")


def test_help_and_version() -> None:
    for args in (["--help"], ["replay", "--help"], ["simulate", "--help"]):
        result = run(*args)
        assert result.exit_code == 0 and "Usage" in result.stdout
    result = run("--version")
    assert result.exit_code == 0 and result.stdout.startswith("holdmon ")


def test_unknown_option_exits_2(session: Path) -> None:
    assert run("replay", session, "--frobnicate").exit_code == 2


# --------------------------------------------------------------------------------------- batch


def test_batch_replay_skips_a_bad_file(session: Path, tmp_path: Path) -> None:
    folder = tmp_path / "batch"
    folder.mkdir()
    (folder / "a.csv").write_bytes(session.read_bytes())
    without_metadata(session, folder / "b.csv")
    (folder / "c.csv").write_text("t_s,ax_mps2\n1,2\n")
    (folder / "notes.txt").write_text("not a recording")
    result = run("replay", folder, "--json", "--jobs", "2", "--placement", "thigh")
    assert result.exit_code == 0, result.output
    batch = json.loads(result.stdout)
    assert batch["format"] == "holdmon.batch/1"
    assert batch["summary"] == {"files": 3, "analysed": 2, "failed": 1}
    assert [Path(d["recording"]["path"]).name for d in batch["recordings"]] == ["a.csv", "b.csv"]
    assert [d["recording"]["placement"] for d in batch["recordings"]] == ["ankle", "thigh"]
    assert Path(batch["errors"][0]["path"]).name == "c.csv"
    assert "missing required column" in batch["errors"][0]["error"]
    assert "skipped" in result.stderr
    for doc in batch["recordings"]:
        assert_replay_doc(doc)


def test_batch_of_only_bad_files_exits_2(tmp_path: Path) -> None:
    (tmp_path / "x.csv").write_text("")
    result = run("replay", tmp_path, "--json", "--jobs", "1")
    assert result.exit_code == 2
    assert json.loads(result.stdout)["summary"]["failed"] == 1


def test_empty_directory(tmp_path: Path) -> None:
    assert_one_line_error(run("replay", tmp_path), "no *.csv")


# ---------------------------------------------------------------------------- installed script


def holdmon_command() -> list[str]:
    script = Path(sys.executable).parent / "holdmon"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "from sensor.cli.main import app; app()"]


def test_installed_script_replay_json(session: Path) -> None:
    proc = subprocess.run(holdmon_command() + ["replay", str(session), "--json"], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert_replay_doc(json.loads(proc.stdout))


def test_installed_script_error_is_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "noheader.csv"
    bad.write_text("0.0,0,0,9.8,0,0,0\n0.01,0,0,9.8,0,0,0\n")
    proc = subprocess.run(holdmon_command() + ["replay", str(bad)], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr.splitlines() == [f"holdmon: error: {bad}:1: no header row: the first line is data "
                                        "(expected a line starting with 't_s,')"]
