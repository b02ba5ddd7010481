"""Rep detection and hold metrics against simulator ground truth, aggregated over seeds.

Covers both placements, unloaded and loaded, 50 and 200 Hz, with sensor errors and lost packets
(the simulator's defaults, with a higher loss rate here). Targets from the replay issue.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

from sensor.config import AnalysisParams
from sensor.pipeline import analyze
from sensor.recording import Recording
from sensor.simulate import SimConfig, simulate_session

_spec = importlib.util.spec_from_file_location(
    "groundtruth_bench", Path(__file__).resolve().parents[1] / "benchmarks" / "groundtruth.py")
groundtruth = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = groundtruth  # dataclasses look their module up there
_spec.loader.exec_module(groundtruth)

SEEDS = range(100, 108)


@pytest.fixture(scope="module")
def score():
    total = groundtruth.Score()
    for seed in SEEDS:
        for placement in ("ankle", "thigh"):
            for loaded in (False, True):
                rate_hz = 50.0 if (seed + loaded) % 2 else 200.0
                cfg = SimConfig(reps=6, placement=placement, loaded=loaded, rate_hz=rate_hz, seed=seed,
                                lost_packet_rate=0.01, early_drop_rate=0.2, balance_loss_rate=0.15,
                                aborted_rate=0.15)
                sim = simulate_session(cfg)
                rec = Recording.from_samples(f"sim-{seed}", sim.meta, sim.samples)
                result = analyze(rec, AnalysisParams())
                total.add(groundtruth.score_session(sim.truth["reps"], result.reps, f"seed {seed}"))
    return total


def test_hold_detection_recall_and_precision(score):
    s = score.summary()
    assert s["true_holds"] >= 120
    assert s["recall"] >= 0.98, score.misses
    assert s["precision"] >= 0.98, score.misses


def test_hold_start_and_end_median_error(score):
    assert np.median(np.abs(score.start_err_s)) <= 0.15
    assert np.median(np.abs(score.end_err_s)) <= 0.15


def test_hold_angle_and_sway_median_error(score):
    assert np.median(np.abs(score.angle_err_deg)) <= 0.5
    assert np.median(np.abs(score.sway_err_deg)) <= 0.1


def test_special_reps_are_flagged(score):
    flags = score.summary()["flags"]
    for name in ("aborted", "early_drop", "balance_loss"):
        assert flags[name]["true"] > 0, name
        assert flags[name]["found"] >= 0.95 * flags[name]["true"], (name, score.misses)
        assert flags[name]["false"] <= 0.05 * score.true_holds, (name, score.misses)
