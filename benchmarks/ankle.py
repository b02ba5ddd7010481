"""Ankle rise and hip flexion from one ankle sensor against simulator ground truth, over many seeds.

    python benchmarks/ankle.py [--seeds N] [--reps R] [--rates 50,100,200] [--no-detected] [--seed0 S]
                               [--set JSON] [--json]

For every seed and rate a session is simulated with sensor errors (noise, bias, scale error, strap
rotation, clock drift, lost packets), a random subject (height 155-195 cm, shank and thigh lengths
from Winter's ratios with a 3 % individual deviation each, sensor 6-10 cm above the ankle bone;
the estimator is told only the height and assumes 8 cm) and every other seed loaded (stage 4).

Two sets of windows:
- truth: the simulator's true standing phase (from the previous rep's end) and hold times, so the
  figures do not depend on the rep detector;
- detected: the reps found by `sensor.pipeline.analyze` (matched to the true holds by overlap), the
  standing phase from the previous detected rep's end to the detected lift start.
Two methods on the same windows: "naive" (offlineVQF orientation, linear velocity de-drift) and
"eskf" (error-state Kalman filter with zero-velocity updates and an RTS smoother).

Prints a table (median and 90th percentile of the absolute errors, refusals, per-rep time of the
estimator); with --json the last line of stdout is one JSON object with the same figures.
Aborted reps (no hold) are not scored; a refused rep counts as refused, not as an error.
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

from sensor.analysis.ankle import AnkleParams, AnkleRefusal, estimate_ankle_motions  # noqa: E402
from sensor.dsp.orientation import offline_orientation  # noqa: E402
from sensor.dsp.timebase import fill_short_gaps  # noqa: E402
from sensor.recording import Recording  # noqa: E402
from sensor.simulate import SimConfig, simulate_session  # noqa: E402

METHODS = ("naive", "eskf")
TARGETS = {"rise_median_cm": 1.5, "rise_p90_cm": 3.0, "hip_median_deg": 4.0, "hip_p90_deg": 8.0}
BRIDGE_MAX_SAMPLES_AT_100HZ = 30


@dataclass
class Errors:
    """Signed errors (estimate - truth) of one method on one set of windows."""

    rise_cm: list[float] = field(default_factory=list)
    forward_cm: list[float] = field(default_factory=list)
    hip_deg: list[float] = field(default_factory=list)
    hip_sd_deg: list[float] = field(default_factory=list)
    rise_sd_cm: list[float] = field(default_factory=list)
    refused: int = 0
    seconds: float = 0.0
    calls: int = 0

    def summary(self) -> dict:
        rise, hip, fwd = (np.abs(np.asarray(x, float)) for x in (self.rise_cm, self.hip_deg, self.forward_cm))
        sd = np.asarray(self.hip_sd_deg, float)

        def stat(x: np.ndarray, q: float) -> float | None:
            return round(float(np.percentile(x, q)), 3) if x.size else None

        rise_sd = np.asarray(self.rise_sd_cm, float)
        covered = rise_covered = None
        if sd.size and np.isfinite(sd).all():
            covered = round(float(np.mean(hip <= 2.0 * sd)), 3)
            rise_covered = round(float(np.mean(rise <= 2.0 * rise_sd)), 3)
        return {
            "reps": int(rise.size), "refused": self.refused,
            "rise_median_cm": stat(rise, 50), "rise_p90_cm": stat(rise, 90),
            "hip_median_deg": stat(hip, 50), "hip_p90_deg": stat(hip, 90),
            "forward_median_cm": stat(fwd, 50), "forward_p90_cm": stat(fwd, 90),
            "rise_bias_cm": round(float(np.median(self.rise_cm)), 3) if rise.size else None,
            "hip_bias_deg": round(float(np.median(self.hip_deg)), 3) if hip.size else None,
            "hip_sd_median_deg": round(float(np.median(sd)), 3) if sd.size and np.isfinite(sd).all() else None,
            "hip_within_2sd": covered,
            "rise_sd_median_cm": round(float(np.median(rise_sd)), 3) if rise_covered is not None else None,
            "rise_within_2sd": rise_covered,
            "ms_per_rep": round(1000.0 * self.seconds / max(self.calls, 1), 3),
        }


def _subject(seed: int) -> tuple[dict, float]:
    """Body dimensions for the simulator and the height the user would type in (cm)."""
    rng = np.random.default_rng([seed, 7])
    height_cm = float(rng.uniform(155.0, 195.0))
    shank_m = 0.246 * height_cm / 100.0 * (1.0 + 0.03 * rng.standard_normal())
    thigh_m = 0.245 * height_cm / 100.0 * (1.0 + 0.03 * rng.standard_normal())
    body = {"shank_length_m": shank_m, "thigh_length_m": thigh_m,
            "sensor_above_ankle_m": float(rng.uniform(0.06, 0.10))}
    return body, height_cm


def _score(errors: Errors, est, truth_rep: dict, seconds: float) -> None:
    errors.seconds += seconds
    errors.calls += 1
    if isinstance(est, AnkleRefusal):
        errors.refused += 1
        return
    errors.rise_cm.append(est.ankle_rise_cm - truth_rep["ankle_rise_cm"])
    errors.forward_cm.append(est.ankle_forward_cm - truth_rep["ankle_forward_cm"])
    errors.hip_deg.append(est.hip_flexion_deg - truth_rep["hip_flexion_deg"])
    sd = est.hip_flexion_uncertainty_deg
    errors.hip_sd_deg.append(np.nan if sd is None else sd)
    sd = est.ankle_rise_uncertainty_cm
    errors.rise_sd_cm.append(np.nan if sd is None else sd)


def _estimate_all(samples, quat, windows, truth_reps, params: dict[str, AnkleParams],
                  results: dict[str, Errors]) -> None:
    """All reps of one session at once (as the replay pipeline does); time shared out per rep."""
    for method in METHODS:
        t0 = time.process_time()
        ests = estimate_ankle_motions(samples.t_s, samples.acc_mps2, samples.gyr_radps, quat, windows,
                                      params[method])
        per_rep_s = (time.process_time() - t0) / max(len(windows), 1)
        for est, truth_rep in zip(ests, truth_reps):
            _score(results[method], est, truth_rep, per_rep_s)


def _truth_windows(truth_reps: list[dict]) -> tuple[list, list]:
    windows, scored = [], []
    prev_end = 0.0
    for rep in truth_reps:
        if rep["hold_start_s"] is not None:
            windows.append(((prev_end, rep["lift_start_s"]), (rep["hold_start_s"], rep["hold_end_s"])))
            scored.append(rep)
        prev_end = rep["lower_end_s"]
    return windows, scored


def _detected_windows(sim, truth_reps: list[dict]) -> tuple[list, list, int]:
    """Windows of the detected holds matched to true holds (by overlap), and the number unmatched."""
    from sensor.config import AnalysisParams
    from sensor.pipeline import analyze

    result = analyze(Recording.from_samples("sim.csv", sim.meta, sim.samples), AnalysisParams())
    windows, scored = [], []
    prev_end = float(sim.samples.t_s[0])
    used: set[int] = set()
    for rep in result.reps:
        if rep.hold_start_s is not None and rep.hold_end_s is not None:
            best, overlap = None, 0.0
            for i, tr in enumerate(truth_reps):
                if tr["hold_start_s"] is None or i in used:
                    continue
                ov = min(rep.hold_end_s, tr["hold_end_s"]) - max(rep.hold_start_s, tr["hold_start_s"])
                if ov > overlap:
                    best, overlap = i, ov
            if best is not None:
                used.add(best)
                windows.append(((prev_end, rep.lift_start_s), (rep.hold_start_s, rep.hold_end_s)))
                scored.append(truth_reps[best])
        if rep.lower_end_s is not None:
            prev_end = rep.lower_end_s
    n_true = sum(1 for tr in truth_reps if tr["hold_start_s"] is not None)
    return windows, scored, n_true - len(scored)


def run(seeds: int, reps: int, rates: list[float], detected: bool, seed0: int = 0,
        overrides: dict | None = None) -> dict:
    groups = {"truth": {m: Errors() for m in METHODS}}
    if detected:
        groups["detected"] = {m: Errors() for m in METHODS}
    per_rate = {f"{r:g}": {m: Errors() for m in METHODS} for r in rates}
    unmatched = 0
    for seed in range(seed0, seed0 + seeds):
        body, height_cm = _subject(seed)
        params = {m: AnkleParams(method=m, height_cm=height_cm, **(overrides or {})) for m in METHODS}
        for rate in rates:
            cfg = SimConfig(reps=reps, seed=seed, rate_hz=rate, loaded=bool(seed % 2), **body)
            sim = simulate_session(cfg)
            bridge = max(1, int(round(BRIDGE_MAX_SAMPLES_AT_100HZ * rate / 100.0)))
            samples = fill_short_gaps(sim.samples, rate, bridge)
            quat = offline_orientation(samples.gyr_radps, samples.acc_mps2, rate)
            windows, scored = _truth_windows(sim.truth["reps"])
            _estimate_all(samples, quat, windows, scored, params, groups["truth"])
            _estimate_all(samples, quat, windows, scored, params, per_rate[f"{rate:g}"])
            if detected:
                windows, scored, missed = _detected_windows(sim, sim.truth["reps"])
                unmatched += missed
                _estimate_all(samples, quat, windows, scored, params, groups["detected"])
    out = {
        "seeds": seeds, "reps_per_session": reps, "rates_hz": rates, "targets": TARGETS,
        "windows": {g: {m: e.summary() for m, e in by.items()} for g, by in groups.items()},
        "by_rate_truth_windows": {r: {m: e.summary() for m, e in by.items()} for r, by in per_rate.items()},
    }
    if detected:
        out["detected_holds_unmatched"] = unmatched
    return out


def _table(res: dict) -> str:
    head = (f"{'windows':10s} {'method':6s} {'reps':>5s} {'refused':>7s} {'rise med':>8s} {'rise p90':>8s} "
            f"{'hip med':>8s} {'hip p90':>8s} {'fwd med':>8s} {'fwd p90':>8s} {'hip 1sd':>7s} "
            f"{'<=2sd':>6s} {'rise 1sd':>8s} {'<=2sd':>6s} {'ms/rep':>7s}")
    lines = [head, "-" * len(head)]

    def row(label: str, method: str, s: dict) -> str:
        f = lambda v, w=8: f"{'-':>{w}s}" if v is None else f"{v:{w}.2f}"
        return (f"{label:10s} {method:6s} {s['reps']:5d} {s['refused']:7d} {f(s['rise_median_cm'])} "
                f"{f(s['rise_p90_cm'])} {f(s['hip_median_deg'])} {f(s['hip_p90_deg'])} "
                f"{f(s['forward_median_cm'])} {f(s['forward_p90_cm'])} {f(s['hip_sd_median_deg'], 7)} "
                f"{f(s['hip_within_2sd'], 6)} {f(s['rise_sd_median_cm'])} {f(s['rise_within_2sd'], 6)} "
                f"{f(s['ms_per_rep'], 7)}")

    for group, by in res["windows"].items():
        for method, s in by.items():
            lines.append(row(group, method, s))
    for rate, by in res["by_rate_truth_windows"].items():
        for method, s in by.items():
            lines.append(row(f"truth@{rate}Hz", method, s))
    lines.append("errors are absolute: rise and forward in cm, hip flexion in deg; 1sd = median reported "
                 "uncertainty; <=2sd = share of reps with |error| <= 2 x reported uncertainty; ms/rep = CPU time")
    t = res["targets"]
    lines.append(f"targets: rise median <= {t['rise_median_cm']} cm, p90 <= {t['rise_p90_cm']} cm; "
                 f"hip median <= {t['hip_median_deg']} deg, p90 <= {t['hip_p90_deg']} deg")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=20)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--rates", default="50,100,200")
    ap.add_argument("--no-detected", action="store_true", help="only the true windows (no rep detector)")
    ap.add_argument("--seed0", type=int, default=0, help="first seed (use another range to tune parameters)")
    ap.add_argument("--set", default="{}", help="AnkleParams overrides as JSON, e.g. '{\"kf_rate_hz\": 10}'")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    rates = [float(r) for r in args.rates.split(",")]
    res = run(args.seeds, args.reps, rates, detected=not args.no_detected, seed0=args.seed0,
              overrides=json.loads(args.set))
    print(_table(res))
    if args.json:
        print(json.dumps(res))


if __name__ == "__main__":
    main()
