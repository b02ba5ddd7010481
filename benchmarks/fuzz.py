"""Coverage-guided fuzzing (atheris / libFuzzer) of everything that reads outside input.

    python benchmarks/fuzz.py --seconds 120 [--target NAME ...] [--rss-limit-mb 1024] [--json]

Targets:
    holdmon_stream    HoldmonDecoder fed a stream of notifications (data packets and replies)
    witmotion_stream  WitmotionDecoder fed a stream of notifications (frames split anywhere)
    polar_stream      PolarDecoder fed a stream of notifications (data frames and control responses)
    commands          holdmon parse_command / parse_reply, witmotion parse_command,
                      polar parse_control_response + its settings
    recording         sensor.recording.read_recording on the bytes as a file

A stream input is a sequence of notifications, each one length byte and then that many bytes.
Each target runs in its own Python process under libFuzzer for --seconds, with -rss_limit_mb (memory
bound), -timeout (a single input taking longer is a hang) and -max_len. The invariant is the
project's: only sensor.errors.HoldmonError subclasses escape, and what is returned is sane (finite
samples of the right shape; strictly increasing recording time; the recording target also reads every
input a second time line by line in tiny blocks, and both reads must agree exactly).
Anything else is a crash:
libFuzzer stops that target and writes the input to the reproducer directory (a fresh temporary
directory, printed), from which `python benchmarks/fuzz.py --reproduce NAME FILE` replays it.

Each target starts from a small seed corpus of valid inputs made with the project's own encoders and
writer. The table gives executions, coverage (libFuzzer `cov:` edges and `ft:` features of the
instrumented sensor modules), corpus size and crashes; with --json the last line of stdout is one
JSON object with the same figures.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
TARGETS = ("holdmon_stream", "witmotion_stream", "polar_stream", "commands", "recording")
MAX_LEN = {"recording": 4096}
DEFAULT_MAX_LEN = 1024
TIMEOUT_S = 10


# --------------------------------------------------------------------------------- input framing


def split_notifications(data: bytes) -> list[bytes]:
    """Length-prefixed notifications: [n][n bytes][n][n bytes]...; a short last one is kept as is."""
    out = []
    i = 0
    while i < len(data):
        n = data[i]
        out.append(data[i + 1:i + 1 + n])
        i += 1 + n
    return out


def join_notifications(payloads: list[bytes]) -> bytes:
    return b"".join(bytes([len(p)]) + p for p in payloads)


# ------------------------------------------------------------------------------------- targets


def _check_packets(packets: list) -> None:
    import numpy as np

    for p in packets:
        n = len(p)
        if p.acc_mps2.shape != (n, 3) or p.gyr_radps.shape != (n, 3):
            raise AssertionError(f"packet shapes {p.acc_mps2.shape} {p.gyr_radps.shape} for {n} samples")
        if not (np.isfinite(p.acc_mps2).all() and np.isfinite(p.gyr_radps).all()):
            raise AssertionError("non-finite sample in a decoded packet")


def _run_stream(make_decoder, data: bytes) -> None:
    from sensor.errors import HoldmonError

    decoder = make_decoder()
    for payload in split_notifications(data):
        try:
            _check_packets(decoder.decode(payload))
        except HoldmonError:
            pass
        take = getattr(decoder, "take_pending", None)
        if take is not None:
            _check_packets(take())


def target_holdmon_stream(data: bytes) -> None:
    from sensor.protocols import holdmon

    _run_stream(holdmon.HoldmonDecoder, data)


def target_witmotion_stream(data: bytes) -> None:
    from sensor.protocols import witmotion

    _run_stream(witmotion.WitmotionDecoder, data)


def target_polar_stream(data: bytes) -> None:
    from sensor.protocols import polar

    _run_stream(polar.PolarDecoder, data)


def target_commands(data: bytes) -> None:
    from sensor.errors import HoldmonError
    from sensor.protocols import holdmon, polar, witmotion

    if holdmon.parse_command(data).status not in holdmon.STATUS_NAMES:
        raise AssertionError("holdmon parse_command gave an unknown status")
    try:
        holdmon.parse_reply(data)
    except HoldmonError:
        pass
    try:
        reg, value = witmotion.parse_command(data)
        if witmotion.write_register_command(reg, value) != data:
            raise AssertionError("witmotion parse_command does not round-trip")
    except HoldmonError:
        pass
    try:
        polar.parse_control_response(data).settings()
    except HoldmonError:
        pass
    try:
        polar.parse_settings(data)
    except HoldmonError:
        pass


_SCRATCH: dict[str, str] = {}


def _read_both_ways(path: str, small_block_bytes: int):
    """read_recording as shipped, and again line by line in tiny blocks (the vectorised block parser
    switched off, BLOCK_BYTES = small_block_bytes, so lines straddle block boundaries).

    Each result is the Recording or the str() of the HoldmonError raised; the two must agree, so the
    fast parser and the block splitting are checked against the simplest reading on every input.
    """
    from sensor import recording
    from sensor.errors import HoldmonError

    results = []
    fast, block_bytes = recording._parse_block_fast, recording.BLOCK_BYTES
    for parser, size in ((fast, block_bytes), (lambda block, ncols: None, small_block_bytes)):
        recording._parse_block_fast, recording.BLOCK_BYTES = parser, size
        try:
            results.append(recording.read_recording(path))
        except HoldmonError as err:
            results.append(str(err))
        finally:
            recording._parse_block_fast, recording.BLOCK_BYTES = fast, block_bytes
    return results


def target_recording(data: bytes) -> None:
    import numpy as np

    path = _SCRATCH.setdefault("path", os.path.join(tempfile.mkdtemp(prefix="holdmon-fuzz-"), "r.csv"))
    with open(path, "wb") as f:
        f.write(data)
    rec, slow = _read_both_ways(path, 16 + len(data) % 113)  # same input, same block size
    if isinstance(rec, str) or isinstance(slow, str):
        if rec != slow:
            raise AssertionError(f"fast and line-by-line parsers disagree: {rec!r} vs {slow!r}")
        return
    s = rec.samples
    if len(s) < 2 or not np.all(np.diff(s.t_s) > 0):
        raise AssertionError("recording time is not strictly increasing")
    if not (np.isfinite(s.acc_mps2).all() and np.isfinite(s.gyr_radps).all()):
        raise AssertionError("non-finite sample in a recording")
    for name in ("t_s", "acc_mps2", "gyr_radps", "seq", "mag_ut"):
        a, b = getattr(s, name), getattr(slow.samples, name)
        if (a is None) != (b is None) or (a is not None and not np.array_equal(a, b)):
            raise AssertionError(f"fast and line-by-line parsers disagree on {name}")


TARGET_FUNCS = {name: globals()[f"target_{name}"] for name in TARGETS}


# ----------------------------------------------------------------------------------- seed corpus


def seeds(name: str) -> list[bytes]:
    """A few valid inputs per target, made with the project's encoders and writer."""
    import numpy as np

    rng = np.random.default_rng(0)
    acc = rng.normal(0, 3, (8, 3)) + [0, 0, 9.81]
    gyr = rng.normal(0, 0.5, (8, 3))
    if name == "holdmon_stream":
        from sensor.protocols import holdmon as hm

        pk = [hm.encode_data_packet_si(hm.DataHeader(seq=s, t_first_us=s * 10_000, n=2, stream_start=s == 0),
                                       acc[s:s + 2], gyr[s:s + 2]) for s in (0, 2, 6)]
        wrap = hm.encode_data_packet_si(hm.DataHeader(seq=65535, t_first_us=2**32 - 5000, n=1), acc[:1], gyr[:1])
        replies = [hm.encode_reply(hm.OP_SET_RATE, 0, rate_code=1), hm.encode_reply(0x44, 1)]
        return [join_notifications(pk), join_notifications([wrap, pk[1]] + replies)]
    if name == "witmotion_stream":
        from sensor.protocols import witmotion as wm

        frames = wm.encode_frames(acc[:4], gyr[:4], rng.normal(0, 30, (4, 3)))
        reply = wm.encode_register_reply(0x03, [8, 0, 0, 0, 0, 0, 0, 0])
        return [join_notifications([frames[:30], frames[30:]]), join_notifications([b"\x55" + frames, reply])]
    if name == "polar_stream":
        from sensor.protocols import polar as pl

        t = 10**18
        start = pl.encode_control_response(pl.OP_START, pl.ACC, 0, {pl.FACTOR: 0.000244})
        a = pl.encode_frame(pl.ACC, t, rng.integers(-2000, 2000, (4, 3)))
        g = pl.encode_frame(pl.GYRO, t, rng.integers(-2000, 2000, (4, 3)))
        u = pl.encode_frame(pl.ACC, t + 80_000_000, rng.integers(-2000, 2000, (4, 3)), compressed=False, frame_type=1)
        return [join_notifications([start, a, g]), join_notifications([u, g, b"\x01\x02"])]
    if name == "commands":
        from sensor.protocols import holdmon as hm, polar as pl, witmotion as wm

        return [hm.encode_set_ranges(8, 1000), hm.encode_reply(hm.OP_READ_STATUS, 0, **{
            f: 1 for f, _, _ in hm.REPLY_FIELDS[hm.OP_READ_STATUS]}), wm.rate_command(50.0),
            pl.encode_control_response(pl.OP_START, pl.ACC, 0, {pl.SAMPLE_RATE: 52, pl.RESOLUTION: 16})]
    if name == "recording":
        from sensor.recording import write_recording
        from sensor.types import RecordingMeta, Samples

        t = np.arange(8) / 100.0
        out = []
        with tempfile.TemporaryDirectory() as tmp:
            for i, seq in enumerate((None, np.arange(8))):
                path = os.path.join(tmp, f"{i}.csv")
                meta = RecordingMeta(device="AA:BB", profile="holdmon", rate_hz=100.0, placement="ankle")
                write_recording(path, meta, Samples(t, acc, gyr, seq, None))
                out.append(Path(path).read_bytes())
        lines = out[1].decode().split("\n")
        head = lines.index("t_s,ax_mps2,ay_mps2,az_mps2,gx_radps,gy_radps,gz_radps,seq")
        order = [7, 0, 4, 5, 6, 1, 2, 3]  # seq first, gyro before acc
        for i in range(head, len(lines) - 1):
            fields = lines[i].split(",")
            lines[i] = ",".join(fields[k] for k in order)
        out.append("\n".join(lines).encode())
        return out
    raise ValueError(name)


# ------------------------------------------------------------------------------ child: the fuzzer


def run_child(name: str, libfuzzer_args: list[str]) -> None:
    """Run one target under atheris with the sensor package instrumented (this process only)."""
    import atheris

    sys.path.insert(0, str(REPO_ROOT))
    with atheris.instrument_imports(include=["sensor"]):
        import sensor.protocols.holdmon  # noqa: F401
        import sensor.protocols.polar  # noqa: F401
        import sensor.protocols.witmotion  # noqa: F401
        import sensor.recording  # noqa: F401
    func = TARGET_FUNCS[name]
    atheris.Setup([sys.argv[0], *libfuzzer_args], func)
    atheris.Fuzz()


def reproduce(name: str, path: str) -> None:
    """Replay one input through a target without atheris; the exception (if any) propagates."""
    sys.path.insert(0, str(REPO_ROOT))
    TARGET_FUNCS[name](Path(path).read_bytes())
    print(f"{name}: {path} ran without an escaping exception")


# ------------------------------------------------------------------------------ parent: the runner

_STAT = re.compile(r"^stat::(\w+):\s+(\d+)", re.M)
_PROGRESS = re.compile(r"#(\d+)\s+\w+\s+cov: (\d+) ft: (\d+) corp: (\d+)")


def run_target(name: str, seconds: int, rss_limit_mb: int, work_dir: Path) -> dict:
    """Fuzz one target in a subprocess; parse libFuzzer's output into figures."""
    corpus = work_dir / name / "corpus"
    artifacts = work_dir / name / "crashes"
    corpus.mkdir(parents=True, exist_ok=True)
    artifacts.mkdir(parents=True, exist_ok=True)
    for i, seed in enumerate(seeds(name)):
        (corpus / f"seed-{i}").write_bytes(seed)
    args = [f"-max_total_time={seconds}", f"-rss_limit_mb={rss_limit_mb}", f"-timeout={TIMEOUT_S}",
            f"-max_len={MAX_LEN.get(name, DEFAULT_MAX_LEN)}", f"-artifact_prefix={artifacts}/",
            "-print_final_stats=1", str(corpus)]
    cmd = [sys.executable, __file__, "--child", name, "--", *args]
    start = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True, errors="replace",
                          timeout=seconds * 2 + 300, cwd=work_dir)
    wall_s = time.monotonic() - start
    log = proc.stdout + proc.stderr
    (work_dir / name / "fuzz.log").write_text(log)
    stats = {k: int(v) for k, v in _STAT.findall(log)}
    progress = _PROGRESS.findall(log)
    last = progress[-1] if progress else ("0", "0", "0", "0")
    crashes = sorted(str(p) for p in artifacts.iterdir())
    executions = stats.get("number_of_executed_units", int(last[0]))
    return {
        "target": name,
        "seconds": seconds,
        "wall_s": round(wall_s, 1),
        "executions": executions,
        "exec_per_s": stats.get("average_exec_per_sec", round(executions / max(wall_s, 1e-9))),
        "cov": int(last[1]),
        "ft": int(last[2]),
        "corpus": int(last[3]),
        "peak_rss_mb": stats.get("peak_rss_mb", 0),
        "exit_code": proc.returncode,
        "crashes": crashes,
        "error": _first_error(log) if proc.returncode else "",
        "log": str(work_dir / name / "fuzz.log"),
    }


def _first_error(log: str) -> str:
    for marker in ("Uncaught Python exception", "ERROR: libFuzzer", "==ERROR"):
        i = log.find(marker)
        if i >= 0:
            return log[i:i + 1500]
    return log[-1500:]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=int, default=60, help="fuzzing time per target")
    ap.add_argument("--target", action="append", choices=TARGETS, help="run only this target (repeatable)")
    ap.add_argument("--rss-limit-mb", type=int, default=1024)
    ap.add_argument("--work-dir", help="corpus, logs and reproducers (default: a new temporary directory)")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--child", choices=TARGETS, help=argparse.SUPPRESS)
    ap.add_argument("--reproduce", nargs=2, metavar=("TARGET", "FILE"))
    ap.add_argument("libfuzzer_args", nargs="*", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        run_child(args.child, args.libfuzzer_args)
        return
    if args.reproduce:
        reproduce(*args.reproduce)
        return
    work_dir = Path(args.work_dir or tempfile.mkdtemp(prefix="holdmon-fuzz-"))
    print(f"corpus, logs and reproducers under {work_dir}", flush=True)
    results = []
    for name in args.target or TARGETS:
        res = run_target(name, args.seconds, args.rss_limit_mb, work_dir)
        results.append(res)
        print(f"{name:18} {res['executions']:>10} execs {res['exec_per_s']:>6}/s  cov {res['cov']:>5}  "
              f"ft {res['ft']:>6}  corpus {res['corpus']:>5}  rss {res['peak_rss_mb']:>5} MB  "
              f"crashes {len(res['crashes'])}", flush=True)
        for crash in res["crashes"]:
            print(f"    reproducer: {crash}\n    {res['error'][:600]}", flush=True)
    total = sum(len(r["crashes"]) for r in results)
    print(f"{sum(r['executions'] for r in results)} executions, {total} crash(es)")
    if args.json:
        print(json.dumps({"seconds_per_target": args.seconds, "work_dir": str(work_dir), "crashes": total,
                          "targets": results}))
    sys.exit(1 if total else 0)


if __name__ == "__main__":
    main()
