"""`holdmon verify` on simulated stage 4 sessions against a stage 3 baseline of the same simulated person.

Steady weighted sessions should be judged stable; sessions with an early drop, heavy sag or a loss of
balance unstable, for that reason. The simulator draws each person's habits from the seed, so the
baseline and the weighted session share a seed.
"""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from sensor.cli.main import app
from sensor.recording import write_recording
from sensor.simulate import SimConfig, simulate_session

SEEDS = (301, 302, 303)
STEADY = dict(early_drop_reps=(), balance_loss_reps=(), aborted_reps=(), heavy_sag_reps=())


def session_file(tmp_path, seed: int, placement: str, loaded: bool, **kinds) -> str:
    cfg = SimConfig(seed=seed, placement=placement, loaded=loaded, reps=5, **{**STEADY, **kinds})
    name = f"{placement}_{seed}_{'w' if loaded else 'b'}_{'_'.join(kinds) or 'steady'}.csv"
    result = simulate_session(cfg)
    write_recording(tmp_path / name, result.meta, result.samples)
    return str(tmp_path / name)


def run_verify(weighted: str, baseline: str) -> tuple[int, dict]:
    out = CliRunner().invoke(app, ["verify", weighted, "--baseline", baseline, "--json"])
    return out.exit_code, json.loads(out.stdout)


@pytest.mark.parametrize("placement", ["ankle", "thigh"])
def test_steady_weighted_sessions_are_stable(tmp_path, placement):
    verdicts = []
    for seed in SEEDS:
        code, doc = run_verify(session_file(tmp_path, seed, placement, True),
                               session_file(tmp_path, seed, placement, False))
        assert code == (0 if doc["verdict"] == "stable" else 1)
        verdicts.append(doc["verdict"])
    # the default criteria allow for the weight; an occasional unsteady rep may tip one session
    assert verdicts.count("stable") >= len(SEEDS) - 1, verdicts


@pytest.mark.parametrize("placement", ["ankle", "thigh"])
@pytest.mark.parametrize("kind, reason", [
    ({"early_drop_reps": (2,)}, "< 10 s"),
    ({"heavy_sag_reps": (3,)}, "sag"),
    ({"balance_loss_reps": (4,)}, "balance lost"),
])
def test_faulty_weighted_sessions_are_unstable_for_the_right_reason(tmp_path, placement, kind, reason):
    rep_number = next(iter(kind.values()))[0]
    for seed in SEEDS[:2]:
        code, doc = run_verify(session_file(tmp_path, seed, placement, True, **kind),
                               session_file(tmp_path, seed, placement, False))
        assert code == 1 and doc["verdict"] == "unstable"
        faulty = [r for r in doc["reps"] if r["index"] == rep_number]
        assert faulty and faulty[0]["verdict"] == "unstable"
        assert any(reason in text for text in faulty[0]["reasons"]), faulty
        assert any(f"rep {rep_number}:" in text and reason in text for text in doc["reasons"]), doc["reasons"]
