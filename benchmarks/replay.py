"""End-to-end replay benchmark: a simulated 1-hour 200 Hz recording, CSV -> JSON.

    python benchmarks/replay.py [--json] [--runs 3] [--cache-dir DIR]

The recording (about 720,000 samples, 50 MB) is generated once with the simulator and cached (default:
`holdmon-bench` in the system temp directory). Each run is a fresh Python process that reads the file
with `sensor.recording.read_recording`, runs `sensor.pipeline.analyze` and serialises the
holdmon.replay/1 document; it reports its own wall times and peak resident memory (ru_maxrss).
`seconds` covers CSV -> JSON inside that process (interpreter start and imports excluded, reported
separately as `startup_s`; scipy.signal is imported on first use, after the orientation pass, and that
import's time is moved from the stage it falls in to `startup_s` and shown as `deferred_import_s`); the fastest of `--runs` runs is reported, since other load on the machine
only ever adds time. stage_s splits it: parse (reading the CSV), orientation (the offlineVQF call inside
analyze, timed by wrapping it), analysis (the rest of analyze plus the JSON).

parse_floor_s is the time to only parse the same CSV into one float array with the fastest plain
library call available: pandas.read_csv (C engine) when pandas is installed, else numpy.loadtxt (whose
C parser is faster than numpy.genfromtxt and numpy.fromstring here).

With --json the last line of stdout is one JSON object: samples, seconds, samples_per_s, parse_floor_s,
peak_rss_mb, stage_s, plus runs, startup_s, cpu_s, samples_per_cpu_s and stage_cpu_s (process CPU time, less
sensitive to other load than wall time), load_avg_1min, cli_s (one timed run of the installed
`holdmon replay FILE --json`, start-up included) and the targets.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGET_SAMPLES_PER_S = 500_000
TARGET_PEAK_RSS_MB = 300.0
DURATION_S = 3600.0
RATE_HZ = 200.0
SEED = 0


def cached_recording(cache_dir: Path) -> Path:
    """The 1-hour 200 Hz simulated recording, generated on first use."""
    from sensor.recording import write_recording
    from sensor.simulate import SimConfig, simulate_session

    path = cache_dir / f"replay_{int(DURATION_S)}s_{int(RATE_HZ)}hz_seed{SEED}.csv"
    if path.exists():
        return path
    cache_dir.mkdir(parents=True, exist_ok=True)
    print(f"generating {path} (once) ...", file=sys.stderr)
    result = simulate_session(SimConfig(duration_s=DURATION_S, rate_hz=RATE_HZ, seed=SEED))
    tmp = path.with_suffix(".part")
    write_recording(tmp, result.meta, result.samples, overwrite=True)
    tmp.replace(path)
    return path


def child_run(path: str) -> dict:
    """One measured replay, in this (fresh) process. Returns timings and the peak RSS."""
    t_start = time.perf_counter()
    import sensor.pipeline as pipeline
    from sensor.config import AnalysisParams
    from sensor.recording import read_recording

    orientation_s = [0.0, 0.0]  # wall, CPU
    offline_orientation = pipeline.offline_orientation

    def timed_orientation(*args, **kwargs):
        t0, c0 = time.perf_counter(), time.process_time()
        try:
            return offline_orientation(*args, **kwargs)
        finally:
            orientation_s[0] += time.perf_counter() - t0
            orientation_s[1] += time.process_time() - c0

    pipeline.offline_orientation = timed_orientation
    import sensor.dsp.filters as filters

    import_s = [0.0, 0.0]  # wall, CPU of scipy.signal's deferred import (imports are not counted)
    load_signal = filters._signal

    def timed_signal():
        if "scipy.signal" in sys.modules:
            return load_signal()
        t0, c0 = time.perf_counter(), time.process_time()
        try:
            return load_signal()
        finally:
            import_s[0] += time.perf_counter() - t0
            import_s[1] += time.process_time() - c0

    filters._signal = timed_signal
    c0, t0 = time.process_time(), time.perf_counter()
    recording = read_recording(path)
    c1, t1 = time.process_time(), time.perf_counter()
    result = pipeline.analyze(recording, AnalysisParams())
    text = json.dumps(result.to_json(), allow_nan=False)
    c2, t2 = time.process_time(), time.perf_counter()
    return {
        "samples": len(recording.samples), "reps": len(result.reps), "json_bytes": len(text),
        "seconds": t2 - t0 - import_s[0], "startup_s": t0 - t_start + import_s[0],
        "cpu_s": c2 - c0 - import_s[1], "deferred_import_s": import_s[0], "deferred_import_cpu_s": import_s[1],
        "stage_s": {"parse": t1 - t0, "orientation": orientation_s[0],
                    "analysis": t2 - t1 - orientation_s[0] - import_s[0]},
        "stage_cpu_s": {"parse": c1 - c0, "orientation": orientation_s[1],
                        "analysis": c2 - c1 - orientation_s[1] - import_s[1]},
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
    }


def run_child(path: Path) -> dict:
    proc = subprocess.run([sys.executable, __file__, "--child", str(path)], capture_output=True, text=True,
                          check=False)
    if proc.returncode != 0:
        raise SystemExit(f"replay run failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def cli_wall_s(path: Path) -> float | None:
    """Wall time of the installed `holdmon replay FILE --json` (start-up included), None without it."""
    script = Path(sys.executable).parent / "holdmon"
    if not script.exists():
        return None
    t0 = time.perf_counter()
    proc = subprocess.run([str(script), "replay", str(path), "--json"], stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL, check=False)
    seconds = time.perf_counter() - t0
    return seconds if proc.returncode == 0 else None


def parse_floor_s(path: Path) -> tuple[float, str]:
    """Seconds to parse the CSV's rows into one float array with the fastest plain library call."""
    header_line = 0
    with open(path, "rb") as f:
        for header_line, line in enumerate(f):
            if not line.startswith(b"#"):
                break
    try:
        import pandas as pd
    except ImportError:
        pd = None
    import numpy as np

    t0 = time.perf_counter()
    if pd is not None:
        rows = pd.read_csv(path, skiprows=header_line, engine="c").to_numpy(dtype=np.float64)
        how = "pandas.read_csv"
    else:
        rows = np.loadtxt(path, delimiter=",", skiprows=header_line + 1, dtype=np.float64)
        how = "numpy.loadtxt"
    seconds = time.perf_counter() - t0
    del rows
    return seconds, how


def measure(cache_dir: Path, runs: int) -> dict:
    path = cached_recording(cache_dir)
    results = [run_child(path) for _ in range(runs)]
    best = min(results, key=lambda r: r["seconds"])
    floor_s, floor_how = min(parse_floor_s(path) for _ in range(min(runs, 2)))
    cli_s = cli_wall_s(path)
    return {
        "samples": best["samples"],
        "seconds": round(best["seconds"], 3),
        "samples_per_s": round(best["samples"] / best["seconds"]),
        "parse_floor_s": round(floor_s, 3),
        "peak_rss_mb": round(max(r["peak_rss_mb"] for r in results), 1),
        "stage_s": {k: round(v, 3) for k, v in best["stage_s"].items()},
        "parse_floor_with": floor_how,
        "runs": runs,
        "seconds_all_runs": [round(r["seconds"], 3) for r in results],
        "startup_s": round(best["startup_s"], 3),
        "deferred_import_s": round(best["deferred_import_s"], 3),
        "deferred_import_cpu_s": round(best["deferred_import_cpu_s"], 3),
        "cli_s": None if cli_s is None else round(cli_s, 3),
        "cpu_s": round(best["cpu_s"], 3),
        "samples_per_cpu_s": round(best["samples"] / best["cpu_s"]),
        "stage_cpu_s": {k: round(v, 3) for k, v in best["stage_cpu_s"].items()},
        "load_avg_1min": round(os.getloadavg()[0], 2),
        "reps": best["reps"],
        "file_mb": round(path.stat().st_size / 1e6, 1),
        "cpu_count": os.cpu_count(),
        "targets": {"samples_per_s": TARGET_SAMPLES_PER_S, "peak_rss_mb": TARGET_PEAK_RSS_MB},
    }


def print_table(m: dict) -> None:
    ok = lambda good: "ok" if good else "MISSED"  # noqa: E731
    rows = [
        ("recording", f"{m['samples']} samples ({DURATION_S / 3600:g} h at {RATE_HZ:g} Hz, "
                      f"{m['file_mb']} MB), {m['reps']} reps"),
        ("CSV -> JSON", f"{m['seconds']:.3f} s (best of {m['runs']}: {m['seconds_all_runs']})"),
        ("samples/s", f"{m['samples_per_s']:,}  target >= {TARGET_SAMPLES_PER_S:,}  "
                      f"{ok(m['samples_per_s'] >= TARGET_SAMPLES_PER_S)}"),
        ("  parse", f"{m['stage_s']['parse']:.3f} s (CPU {m['stage_cpu_s']['parse']:.3f} s)"),
        ("  orientation", f"{m['stage_s']['orientation']:.3f} s (CPU {m['stage_cpu_s']['orientation']:.3f} s)"),
        ("  analysis", f"{m['stage_s']['analysis']:.3f} s (CPU {m['stage_cpu_s']['analysis']:.3f} s; "
                       "after orientation, incl. JSON)"),
        ("parse floor", f"{m['parse_floor_s']:.3f} s ({m['parse_floor_with']}); stages after orientation "
                        f"within it: {ok(m['stage_s']['analysis'] <= m['parse_floor_s'])}"),
        ("peak RSS", f"{m['peak_rss_mb']:.1f} MB  target < {TARGET_PEAK_RSS_MB:g}  "
                     f"{ok(m['peak_rss_mb'] < TARGET_PEAK_RSS_MB)}"),
        ("startup", f"{m['startup_s']:.3f} s (interpreter + imports, not counted; of it "
                    f"{m['deferred_import_s']:.3f} s, CPU {m['deferred_import_cpu_s']:.3f} s, "
                    "scipy.signal imported on first use inside the run)"),
        ("CPU time", f"{m['cpu_s']:.3f} s (all threads; load average {m['load_avg_1min']} on "
                     f"{m['cpu_count']} CPUs) = {m['samples_per_cpu_s']:,} samples per CPU second"),
        ("holdmon CLI", "-" if m["cli_s"] is None else
         f"{m['cli_s']:.3f} s for `holdmon replay FILE --json` (one run, start-up included)"),
    ]
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print the JSON object as the last line")
    parser.add_argument("--runs", type=int, default=3, help="replay runs; the fastest is reported")
    parser.add_argument("--cache-dir", type=Path, default=Path(tempfile.gettempdir()) / "holdmon-bench")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child_run(args.child)))
        return
    m = measure(args.cache_dir, max(1, args.runs))
    print_table(m)
    if args.json:
        print(json.dumps(m))


if __name__ == "__main__":
    main()
