"""Inclination accuracy of the orientation estimators on BROAD (real IMU data, optical ground truth).

For every trial in the dataset directory this runs, side by side on the same data:
  streaming       holdmon's StreamingOrientation fed in small chunks, as BLE packets arrive
  replay          holdmon's offline_orientation
  vqf.VQF         vqf.VQF.updateBatch over the whole trial
  vqf.offlineVQF  vqf.offlineVQF over the whole trial
and prints the inclination RMSE over movement samples per trial and the mean over trials (the dataset
README's metric: q_err = q_est (x) q_ref^-1, error = 2 arccos(sqrt(w_err^2 + z_err^2)), NaN ignored).

Usage: python benchmarks/broad.py [--data DIR] [--chunk-samples 10] [--json]
With --json the last line of stdout is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import vqf
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from sensor.dsp.orientation import StreamingOrientation, offline_orientation

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "datasets" / "broad"
TARGETS_DEG = {"streaming": 0.75, "replay": 0.55}

Estimator = Callable[[np.ndarray, np.ndarray, float], np.ndarray]


def streaming(chunk_samples: int) -> Estimator:
    def run(gyr_radps: np.ndarray, acc_mps2: np.ndarray, rate_hz: float) -> np.ndarray:
        estimator = StreamingOrientation(rate_hz)
        return np.concatenate([
            estimator.update(gyr_radps[i:i + chunk_samples], acc_mps2[i:i + chunk_samples])
            for i in range(0, len(gyr_radps), chunk_samples)
        ])
    return run


def vqf_online(gyr_radps: np.ndarray, acc_mps2: np.ndarray, rate_hz: float) -> np.ndarray:
    return vqf.VQF(1.0 / rate_hz).updateBatch(gyr_radps, acc_mps2)["quat6D"]


def vqf_offline(gyr_radps: np.ndarray, acc_mps2: np.ndarray, rate_hz: float) -> np.ndarray:
    return vqf.offlineVQF(gyr_radps, acc_mps2, None, 1.0 / rate_hz)["quat6D"]


def inclination_rmse_deg(quat_est_wxyz: np.ndarray, quat_ref_wxyz: np.ndarray, mask: np.ndarray) -> float:
    """RMSE of the inclination error over mask, ignoring samples without reference (NaN)."""
    ref = quat_ref_wxyz / np.linalg.norm(quat_ref_wxyz, axis=1, keepdims=True)
    aw, ax, ay, az = quat_est_wxyz.T
    bw, bx, by, bz = ref.T  # q_err = q_est (x) conj(q_ref): only w and z are needed
    w_err = aw * bw + ax * bx + ay * by + az * bz
    z_err = -aw * bz - ax * by + ay * bx + az * bw
    error_rad = 2.0 * np.arccos(np.clip(np.sqrt(w_err**2 + z_err**2), 0.0, 1.0))
    return float(np.degrees(np.sqrt(np.nanmean(error_rad[mask] ** 2))))


def run_trial(path: Path, estimators: dict[str, Estimator], seconds: dict[str, float]) -> dict[str, float]:
    with np.load(path) as trial:
        rate_hz = float(trial["sampling_rate"])
        gyr = np.ascontiguousarray(trial["imu_gyr"], dtype=np.float64)
        acc = np.ascontiguousarray(trial["imu_acc"], dtype=np.float64)
        quat_ref = trial["opt_quat"].astype(np.float64)
        movement = trial["movement"].astype(bool)
    rmse = {}
    for name, estimate in estimators.items():
        start = time.perf_counter()
        quat = estimate(gyr, acc, rate_hz)
        seconds[name] += time.perf_counter() - start
        rmse[name] = inclination_rmse_deg(quat, quat_ref, movement)
    return rmse


def render_table(per_trial: dict[str, dict[str, float]], mean: dict[str, float], chunk_samples: int) -> Table:
    names = list(mean)
    table = Table(title=f"BROAD inclination RMSE over movement samples, deg "
                        f"({len(per_trial)} trials, streaming in {chunk_samples}-sample chunks)")
    table.add_column("trial")
    for name in names:
        table.add_column(name, justify="right")
    for trial, rmse in per_trial.items():
        table.add_row(trial, *(f"{rmse[n]:.3f}" for n in names))
    table.add_section()
    table.add_row("mean", *(f"{mean[n]:.3f}" for n in names), style="bold")
    table.add_row("target", *(f"<= {TARGETS_DEG[n]:.2f}" if n in TARGETS_DEG else "" for n in names))
    return table


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA,
                        help="directory with the BROAD *.npz files")
    parser.add_argument("--chunk-samples", type=int, default=10, help="samples per streaming update")
    parser.add_argument("--json", action="store_true", help="end stdout with one JSON object")
    args = parser.parse_args()
    paths = sorted(args.data.glob("*.npz"))
    if not paths:
        print(f"broad: no *.npz trials in {args.data}", file=sys.stderr)
        return 2
    if args.chunk_samples < 1:
        print(f"broad: --chunk-samples must be >= 1, got {args.chunk_samples}", file=sys.stderr)
        return 2

    estimators = {"streaming": streaming(args.chunk_samples), "replay": offline_orientation,
                  "vqf.VQF": vqf_online, "vqf.offlineVQF": vqf_offline}
    seconds = dict.fromkeys(estimators, 0.0)
    per_trial = {}
    with Progress(console=Console(stderr=True), transient=True) as progress:
        task = progress.add_task("BROAD trials", total=len(paths))
        for path in paths:
            progress.update(task, description=path.stem)
            per_trial[path.stem] = run_trial(path, estimators, seconds)
            progress.advance(task)
    mean = {name: float(np.mean([rmse[name] for rmse in per_trial.values()])) for name in estimators}

    console = Console(width=None if sys.stdout.isatty() else 110)  # full trial names when piped
    console.print(render_table(per_trial, mean, args.chunk_samples))
    if args.json:
        print(json.dumps({
            "trials": len(per_trial),
            "rmse_deg": {name: round(value, 4) for name, value in mean.items()},
            "targets_deg": TARGETS_DEG,
            "targets_met": all(mean[name] <= limit for name, limit in TARGETS_DEG.items()),
            "chunk_samples": args.chunk_samples,
            "estimator_s": {name: round(value, 2) for name, value in seconds.items()},
            "per_trial_rmse_deg": {trial: {n: round(v, 4) for n, v in rmse.items()}
                                   for trial, rmse in per_trial.items()},
        }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
