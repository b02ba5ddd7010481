"""Rep detection and hold metrics against simulator ground truth, over many seeds.

    python benchmarks/groundtruth.py [--seeds N] [--first-seed S] [--reps R] [--lost-packet-rate P] [--json]

For every seed, both placements (ankle, thigh), unloaded and loaded, and rates 50/100/200 Hz, a session
is simulated (with sensor errors and lost packets), analysed by `sensor.pipeline.analyze` and matched
rep by rep with the truth. Prints a table per configuration group and the totals; with --json the last
line of stdout is one JSON object with the totals and the groups.

Matching: a detected hold matches the truth hold it overlaps most (one to one), if the overlap covers
at least half of the longer of the two (so merged or split holds do not count). Recall = matched true
holds / true holds, precision = matched detected holds / detected holds (aborted reps are scored
separately: a true aborted rep is found if an `aborted` rep overlaps its lift).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sensor.config import AnalysisParams  # noqa: E402
from sensor.pipeline import analyze  # noqa: E402
from sensor.recording import Recording  # noqa: E402
from sensor.simulate import SimConfig, simulate_session  # noqa: E402
from sensor.types import Rep  # noqa: E402

FLAG_NAMES = ("early_drop", "balance_loss", "aborted")


@dataclass
class Score:
    """Accumulated comparison of detections with truth."""

    true_holds: int = 0
    detected_holds: int = 0
    matched: int = 0
    start_err_s: list[float] = field(default_factory=list)
    end_err_s: list[float] = field(default_factory=list)
    angle_err_deg: list[float] = field(default_factory=list)
    sway_err_deg: list[float] = field(default_factory=list)
    flag_true: dict[str, int] = field(default_factory=lambda: dict.fromkeys(FLAG_NAMES, 0))
    flag_found: dict[str, int] = field(default_factory=lambda: dict.fromkeys(FLAG_NAMES, 0))
    flag_false: dict[str, int] = field(default_factory=lambda: dict.fromkeys(FLAG_NAMES, 0))
    misses: list[str] = field(default_factory=list)

    def add(self, other: "Score") -> None:
        self.true_holds += other.true_holds
        self.detected_holds += other.detected_holds
        self.matched += other.matched
        for name in ("start_err_s", "end_err_s", "angle_err_deg", "sway_err_deg", "misses"):
            getattr(self, name).extend(getattr(other, name))
        for name in ("flag_true", "flag_found", "flag_false"):
            for k, v in getattr(other, name).items():
                getattr(self, name)[k] += v

    def summary(self) -> dict:
        def stats(x: list[float]) -> dict:
            a = np.abs(np.asarray(x))
            if a.size == 0:
                return {"median": None, "p90": None}
            return {"median": round(float(np.median(a)), 4), "p90": round(float(np.percentile(a, 90)), 4)}

        return {
            "true_holds": self.true_holds,
            "detected_holds": self.detected_holds,
            "recall": round(self.matched / self.true_holds, 4) if self.true_holds else None,
            "precision": round(self.matched / self.detected_holds, 4) if self.detected_holds else None,
            "hold_start_err_s": stats(self.start_err_s),
            "hold_end_err_s": stats(self.end_err_s),
            "hold_angle_mean_err_deg": stats(self.angle_err_deg),
            "sway_sd_err_deg": stats(self.sway_err_deg),
            "flags": {k: {"true": self.flag_true[k], "found": self.flag_found[k], "false": self.flag_false[k]}
                      for k in FLAG_NAMES},
        }


def _overlap(a0: float, a1: float, b0: float, b1: float) -> float:
    return min(a1, b1) - max(a0, b0)


def score_session(truth_reps: list[dict], reps: list[Rep], label: str = "") -> Score:
    """Compare one session's detected reps with its truth reps."""
    score = Score()
    true_holds = [t for t in truth_reps if t["hold_start_s"] is not None]
    det_holds = [r for r in reps if r.hold_start_s is not None]
    score.true_holds = len(true_holds)
    score.detected_holds = len(det_holds)
    used: set[int] = set()
    for t in true_holds:
        best, best_ov = None, 0.0
        true_s = t["hold_end_s"] - t["hold_start_s"]
        for j, r in enumerate(det_holds):
            ov = _overlap(t["hold_start_s"], t["hold_end_s"], r.hold_start_s, r.hold_end_s)
            if j not in used and ov > best_ov and ov >= 0.5 * max(true_s, r.hold_end_s - r.hold_start_s):
                best, best_ov = j, ov
        if best is None:
            score.misses.append(f"{label} missed rep {t['index']} ({t['kind']}) at {t['hold_start_s']:.2f} s")
            continue
        used.add(best)
        r = det_holds[best]
        score.matched += 1
        score.start_err_s.append(r.hold_start_s - t["hold_start_s"])
        score.end_err_s.append(r.hold_end_s - t["hold_end_s"])
        if r.hold_angle_mean_deg is not None:
            score.angle_err_deg.append(r.hold_angle_mean_deg - t["hold_angle_mean_deg"])
        if r.sway_sd_deg is not None:
            score.sway_err_deg.append(r.sway_sd_deg - t["sway_sd_deg"])
        for flag in ("early_drop", "balance_loss"):
            if t[flag]:
                score.flag_true[flag] += 1
                score.flag_found[flag] += flag in r.flags
            elif flag in r.flags:
                score.flag_false[flag] += 1
                score.misses.append(f"{label} rep {t['index']} ({t['kind']}) wrongly flagged {flag}")
    for j, r in enumerate(det_holds):
        if j not in used:
            score.misses.append(f"{label} extra hold {r.hold_start_s:.2f}-{r.hold_end_s:.2f} s")
    aborted = [r for r in reps if "aborted" in r.flags]
    for t in truth_reps:
        if t["aborted"]:
            score.flag_true["aborted"] += 1
            hit = any(_overlap(t["lift_start_s"], t["lower_end_s"], r.lift_start_s,
                               r.lower_end_s if r.lower_end_s is not None else r.lift_start_s) > 0
                      for r in aborted)
            score.flag_found["aborted"] += hit
            if not hit:
                score.misses.append(f"{label} aborted rep {t['index']} ({t['kind']}) not flagged")
    for r in aborted:
        if not any(t["aborted"] and _overlap(t["lift_start_s"], t["lower_end_s"], r.lift_start_s,
                                             r.lower_end_s or r.lift_start_s) > 0 for t in truth_reps):
            score.flag_false["aborted"] += 1
            score.misses.append(f"{label} extra aborted rep at {r.lift_start_s:.2f} s")
    return score


def run_one(seed: int, placement: str, loaded: bool, rate_hz: float, reps: int,
            params: AnalysisParams, lost_packet_rate: float = 0.002) -> Score:
    cfg = SimConfig(reps=reps, placement=placement, loaded=loaded, rate_hz=rate_hz, seed=seed,
                    early_drop_rate=0.15, balance_loss_rate=0.1, aborted_rate=0.1,
                    lost_packet_rate=lost_packet_rate)
    sim = simulate_session(cfg)
    result = analyze(Recording.from_samples(f"sim-{seed}", sim.meta, sim.samples), params)
    label = f"seed={seed} {placement} {'loaded' if loaded else 'unloaded'} {rate_hz:g}Hz:"
    return score_session(sim.truth["reps"], result.reps, label)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=10, help="seeds per configuration (default 10)")
    ap.add_argument("--first-seed", type=int, default=0, help="first simulator seed (default 0)")
    ap.add_argument("--reps", type=int, default=8, help="reps per simulated session (default 8)")
    ap.add_argument("--lost-packet-rate", type=float, default=0.002,
                    help="share of BLE packets lost, in runs of 1-3 (simulator default 0.002)")
    ap.add_argument("--json", action="store_true", help="last line: one JSON object")
    ap.add_argument("--verbose", action="store_true", help="list every miss and false flag")
    args = ap.parse_args(argv)
    params = AnalysisParams()
    total = Score()
    groups: dict[str, dict] = {}
    started = time.perf_counter()
    header = (f"{'group':<22}{'holds':>6}{'recall':>8}{'prec':>7}{'start med/p90 s':>17}"
              f"{'end med/p90 s':>16}{'angle med/p90':>15}{'sway med/p90':>14}")
    print(header)
    for placement in ("ankle", "thigh"):
        for loaded in (False, True):
            for rate_hz in (50.0, 100.0, 200.0):
                group = Score()
                for seed in range(args.first_seed, args.first_seed + args.seeds):
                    group.add(run_one(seed, placement, loaded, rate_hz, args.reps, params,
                                      args.lost_packet_rate))
                name = f"{placement}/{'loaded' if loaded else 'unloaded'}/{rate_hz:g}Hz"
                groups[name] = group.summary()
                print(_row(name, groups[name]))
                total.add(group)
    summary = total.summary()
    print(_row("ALL", summary))
    for flag, c in summary["flags"].items():
        print(f"flag {flag:<13} true {c['true']:>4}  found {c['found']:>4}  false {c['false']:>4}")
    print(f"wall time {time.perf_counter() - started:.1f} s")
    if args.verbose:
        print("\n".join(total.misses))
    if args.json:
        print(json.dumps({"seeds": args.seeds, "first_seed": args.first_seed, "reps_per_session": args.reps,
                          "lost_packet_rate": args.lost_packet_rate, "total": summary,
                          "groups": groups}))
    return 0


def _row(name: str, s: dict) -> str:
    def pair(d: dict, digits: int) -> str:
        return "-" if d["median"] is None else f"{d['median']:.{digits}f}/{d['p90']:.{digits}f}"

    return (f"{name:<22}{s['true_holds']:>6}{s['recall'] or 0:>8.3f}{s['precision'] or 0:>7.3f}"
            f"{pair(s['hold_start_err_s'], 3):>17}{pair(s['hold_end_err_s'], 3):>16}"
            f"{pair(s['hold_angle_mean_err_deg'], 2):>15}{pair(s['sway_sd_err_deg'], 3):>14}")


if __name__ == "__main__":
    raise SystemExit(main())
