"""Property tests for the CSV reader on hostile input.

Invariants: only HoldmonError subclasses escape read_recording; a returned recording is sane (at least
two rows, strictly increasing time, finite values of the right shapes); nothing hangs (a generous
alarm turns a hang into a failure); the rows kept are exactly the complete rows with finite fields
whose time is after every earlier one; a file cut off anywhere after its header keeps every complete
row. Each property runs with the normal block size and with a tiny one, so that the multi-block path
(and the fast and slow line parsers) get their share.
"""

from __future__ import annotations

import atexit
import math
import shutil
import signal
import tempfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from hypothesis import assume, example, given, strategies as st

import sensor.recording as rec
from sensor.errors import HoldmonError, RecordingError
from sensor.recording import escape_meta_value, read_recording
from sensor.types import RecordingMeta, Samples

HANG_LIMIT_S = 30
BLOCK_SIZES = st.sampled_from([rec.BLOCK_BYTES, 40, 97])
REQUIRED = list(rec.REQUIRED_COLUMNS)
META_KEYS = ["format", "device", "profile", "rate_hz", "placement", "side", "stage", "load_kg", "note",
             "acc_unit", "gyr_unit", "firmware"]
_DIR = Path(tempfile.mkdtemp(prefix="holdmon-fuzz-recording-"))
atexit.register(shutil.rmtree, _DIR, True)


@contextmanager
def _bounded_read(data: bytes, block_bytes: int):
    """Write data to a scratch file; read it with BLOCK_BYTES = block_bytes under a hang alarm."""
    path = _DIR / "r.csv"
    path.write_bytes(data)
    saved = rec.BLOCK_BYTES

    def hang(signum, frame):  # pragma: no cover - only when the reader hangs
        raise AssertionError(f"read_recording still running after {HANG_LIMIT_S} s")

    old = signal.signal(signal.SIGALRM, hang)
    signal.alarm(HANG_LIMIT_S)
    rec.BLOCK_BYTES = block_bytes
    try:
        yield path
    finally:
        rec.BLOCK_BYTES = saved
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def _read_or_project_error(data: bytes, block_bytes: int):
    """The Recording, or the HoldmonError raised; any other exception fails the test."""
    with _bounded_read(data, block_bytes) as path:
        try:
            recording = read_recording(path)
        except HoldmonError as err:
            return err
    _check_sane(recording)
    return recording


def _check_sane(recording) -> None:
    s = recording.samples
    n = len(s)
    assert n >= 2
    assert s.t_s.shape == (n,) and s.acc_mps2.shape == (n, 3) and s.gyr_radps.shape == (n, 3)
    assert np.all(np.diff(s.t_s) > 0)
    assert np.isfinite(s.t_s).all() and np.isfinite(s.acc_mps2).all() and np.isfinite(s.gyr_radps).all()
    if s.seq is not None:
        assert np.all(np.diff(s.seq) > 0)
    assert recording.meta.rate_hz is not None and recording.meta.rate_hz > 0
    for gap in recording.gaps:
        assert gap.missing_samples >= 1 and gap.end_s > gap.start_s


# ---------------------------------------------------------------------------------- random bytes

csv_bytes = st.lists(st.sampled_from([b"0", b"1", b"9", b".", b"-", b",", b"\n", b"\r", b"#", b" ", b"e",
                                      b"nan", b"inf", b"t_s", b"ax_mps2", b"seq", b": ", b"\x00", b"\xff",
                                      b"\xef\xbb\xbf", b"rate_hz"]), max_size=200).map(b"".join)
header_line = ",".join(REQUIRED) + "\n"


@given(st.one_of(st.binary(max_size=300), csv_bytes, csv_bytes.map(lambda b: header_line.encode() + b)),
       BLOCK_SIZES)
def test_random_bytes_raise_only_project_errors(data: bytes, block_bytes: int) -> None:
    _read_or_project_error(data, block_bytes)


@given(st.text(max_size=300), BLOCK_SIZES)
def test_random_text_after_a_header_raises_only_project_errors(text: str, block_bytes: int) -> None:
    _read_or_project_error((header_line + text).encode("utf-8", "surrogatepass"), block_bytes)


def _good_file(n: int, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    lines = ["# format: holdmon-recording/1", "# rate_hz: 100", ",".join(REQUIRED + ["seq"])]
    for i in range(n):
        vals = [i / 100.0, *rng.normal(0, 1, 3) + [0, 0, 9.81], *rng.normal(0, 0.1, 3)]
        lines.append(",".join(f"{v:.6f}" for v in vals) + f",{i}")
    return ("\n".join(lines) + "\n").encode()


@given(st.integers(2, 30), st.integers(0, 3),
       st.lists(st.tuples(st.integers(0, 10**6), st.sampled_from(["flip", "insert", "delete"]), st.binary(
           min_size=1, max_size=4)), min_size=1, max_size=6), BLOCK_SIZES)
def test_garbled_good_file_raises_only_project_errors(n: int, seed: int, edits: list, block_bytes: int) -> None:
    data = bytearray(_good_file(n, seed))
    for pos, kind, blob in edits:
        pos %= len(data) + 1
        if kind == "flip":
            data[pos:pos + len(blob)] = blob
        elif kind == "insert":
            data[pos:pos] = blob
        else:
            del data[pos:pos + len(blob)]
    _read_or_project_error(bytes(data), block_bytes)


# ------------------------------------------------------------------------------ random metadata


@given(st.lists(st.tuples(st.one_of(st.sampled_from(META_KEYS), st.text(max_size=8)), st.text(max_size=20)),
                max_size=6), BLOCK_SIZES)
def test_random_metadata_is_validated_or_refused_with_its_line(items: list, block_bytes: int) -> None:
    lines = [f"# {key}: {escape_meta_value(value)}" for key, value in items]
    body = "\n".join(lines + [",".join(REQUIRED), "0,0,0,9.8,0,0,0", "0.01,0,0,9.8,0,0,0"]) + "\n"
    data = body.encode()
    if b"\n" in b"".join(k.encode() for k, _ in items) or any("\r" in k or "\n" in k for k, _ in items):
        result = _read_or_project_error(data, block_bytes)  # a key that breaks the line: no model
        return
    result = _read_or_project_error(data, block_bytes)
    if isinstance(result, HoldmonError):
        assert isinstance(result, RecordingError)
        assert result.line is not None and 1 <= result.line <= len(lines)
        assert lines[result.line - 1].startswith("#")
        return
    meta = result.meta
    assert meta.placement in rec.PLACEMENTS and meta.side in (None, *rec.SIDES)
    assert meta.stage is None or meta.stage >= 0
    assert 0 <= meta.load_kg < 1000 and math.isfinite(meta.rate_hz) and meta.rate_hz > 0


@given(st.text(max_size=40), st.text(max_size=40))
def test_free_text_metadata_round_trips(note: str, device: str) -> None:
    assume(note == note.strip() and device == device.strip())
    lines = [f"# note: {escape_meta_value(note)}", f"# device: {escape_meta_value(device)}"]
    body = "\n".join(lines + [",".join(REQUIRED), "0,0,0,9.8,0,0,0", "0.01,0,0,9.8,0,0,0"]) + "\n"
    result = _read_or_project_error(body.encode(), rec.BLOCK_BYTES)
    assert not isinstance(result, HoldmonError), result
    assert (result.meta.note, result.meta.device) == (note, device)


# ----------------------------------------------------------------------- random numeric tables

finite = st.floats(-1e6, 1e6, allow_nan=False).map(lambda v: round(v, 4))
BAD_FIELDS = ["", "nan", "NaN", "inf", "-inf", " "]


@st.composite
def tables(draw):
    """(columns, rows as lists of field strings, expected kept row indices, garbage (row, col) or None)."""
    with_seq = draw(st.booleans())
    with_mag = draw(st.sampled_from([0, 2, 3]))  # 2: an incomplete magnetometer is ignored
    extra = draw(st.booleans())
    columns = REQUIRED + (["seq"] if with_seq else []) + list(rec.MAG_COLUMNS[:with_mag]) + \
        (["temp_C"] if extra else [])
    columns = draw(st.permutations(columns))
    n = draw(st.integers(0, 40))
    times = draw(st.lists(st.integers(0, 60).map(lambda k: k / 8.0), min_size=n, max_size=n))
    rows, needed_finite = [], []
    for i in range(n):
        row = {c: repr(draw(finite)) if draw(st.booleans()) else f"{draw(finite):.3f}" for c in columns}
        row["t_s"] = repr(times[i]) if draw(st.booleans()) else f"{times[i]:.6f}"
        if with_seq:
            row["seq"] = str(i)
        ok = True
        if draw(st.integers(0, 5)) == 0:  # inject a NaN/empty field
            col = draw(st.sampled_from(columns))
            row[col] = draw(st.sampled_from(BAD_FIELDS))
            used = col in REQUIRED or col == "seq" or (col in rec.MAG_COLUMNS and with_mag == 3)
            ok = not used
        rows.append([row[c] for c in columns])
        needed_finite.append(ok)
    garbage = None
    if n and draw(st.integers(0, 4)) == 0:
        garbage = (draw(st.integers(0, n - 1)), draw(st.sampled_from(REQUIRED)))
        rows[garbage[0]][columns.index(garbage[1])] = draw(st.sampled_from(["abc", "1.2.3", "--1", "0x10", "1,"]))
    kept, latest = [], -math.inf
    for i in range(n):
        if needed_finite[i]:
            if times[i] > latest:
                kept.append(i)
            latest = max(latest, times[i])
    return columns, rows, [times[i] for i in kept], garbage


@given(tables(), st.booleans(), BLOCK_SIZES)
def test_numeric_tables_keep_exactly_the_good_rows(table, crlf: bool, block_bytes: int) -> None:
    columns, rows, expected_t, garbage = table
    newline = "\r\n" if crlf else "\n"
    lines = ["# rate_hz: 8", ",".join(columns)] + [",".join(r) for r in rows]
    text = newline.join(lines) + newline
    result = _read_or_project_error(text.encode(), block_bytes)
    if garbage is not None and not (garbage[1] == "seq" and "seq" not in columns):
        if "1," in rows[garbage[0]][columns.index(garbage[1])] or isinstance(result, RecordingError):
            assert isinstance(result, RecordingError), result
            assert result.line == 3 + garbage[0]
            return
    if len(expected_t) < 2:
        assert isinstance(result, RecordingError), text
        return
    assert not isinstance(result, HoldmonError), (result, text)
    np.testing.assert_array_equal(result.samples.t_s, expected_t)
    has_mag = all(c in columns for c in rec.MAG_COLUMNS)
    assert (result.samples.mag_ut is not None) == has_mag


# ------------------------------------------------------------------------------ random cut points


def _writer_file(n: int, with_seq: bool, with_mag: bool) -> tuple[bytes, Samples]:
    rng = np.random.default_rng(n)
    t_s = 3.0 + np.arange(n) / 50.0
    samples = Samples(t_s, rng.normal(0, 1, (n, 3)) + [0, 0, 9.81], rng.normal(0, 0.1, (n, 3)),
                      np.arange(n, dtype=np.int64) if with_seq else None,
                      rng.normal(30, 5, (n, 3)) if with_mag else None)
    path = _DIR / "w.csv"
    rec.write_recording(path, RecordingMeta(device="AA:BB:CC:DD:EE:FF", rate_hz=50.0, note="cut"), samples)
    return path.read_bytes(), samples


@given(st.integers(2, 60), st.booleans(), st.booleans(), st.floats(0, 1), st.booleans(), BLOCK_SIZES)
@example(16, True, False, 0.7482894015821119, False, rec.BLOCK_BYTES)  # cut inside the last seq field
def test_cut_off_file_keeps_every_complete_row(n: int, with_seq: bool, with_mag: bool, where: float,
                                               nul_padding: bool, block_bytes: int) -> None:
    data, samples = _writer_file(n, with_seq, with_mag)
    header_end = data.index(b"\nt_s,") + 1
    header_end = data.index(b"\n", header_end) + 1
    cut = header_end + int(where * (len(data) - header_end))
    cut_data = data[:cut] + (b"\x00" * 512 if nul_padding else b"")
    complete = data[header_end:cut].count(b"\n")
    result = _read_or_project_error(cut_data, block_bytes)
    if complete < 2:
        if isinstance(result, HoldmonError):
            assert isinstance(result, RecordingError)
            return
    assert not isinstance(result, HoldmonError), result
    got = result.samples
    assert len(got) in (complete, complete + 1)  # a cut inside the last field can still read as a row
    np.testing.assert_array_equal(got.t_s[:complete], np.round(samples.t_s[:complete], 6))
    np.testing.assert_array_equal(got.acc_mps2[:complete], np.round(samples.acc_mps2[:complete], 5))
    if with_seq and got.seq is None:
        # A cut inside the seq field of the last row ("11" -> "1") reads as a row whose counter goes
        # back; the reader then judges gaps from time for the whole file and says so.
        assert len(got) == complete + 1
        assert "seq_not_increasing" in {i.kind for i in result.issues}
    elif with_seq:
        np.testing.assert_array_equal(got.seq[:complete], samples.seq[:complete])
    partial = cut_data[header_end:].rstrip(b"\x00")
    if not partial.endswith(b"\n") and len(got) == complete:
        assert "truncated_last_line" in {i.kind for i in result.issues}


@given(st.integers(0, 400), BLOCK_SIZES)
def test_cut_inside_the_head_is_refused(cut: int, block_bytes: int) -> None:
    data, _ = _writer_file(5, True, False)
    header_end = data.index(b"\n", data.index(b"\nt_s,") + 1) + 1
    cut %= header_end
    result = _read_or_project_error(data[:cut], block_bytes)
    assert isinstance(result, RecordingError)


@pytest.mark.parametrize("block_bytes", [rec.BLOCK_BYTES, 64])
def test_long_garbage_line_without_newline_does_not_hang(block_bytes: int) -> None:
    data = (header_line + "0,0,0,9.8,0,0,0\n0.1,0,0,9.8,0,0,0\n").encode() + b"7" * 3_000_000
    result = _read_or_project_error(data, block_bytes)
    assert not isinstance(result, HoldmonError)
    assert {i.kind for i in result.issues} >= {"truncated_last_line"} or len(result.samples) == 3
