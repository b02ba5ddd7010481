"""Recording format v1: reader, writer, and every kind of bad input."""

from __future__ import annotations

import math
import os
import stat
import threading
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import sensor.recording as rec
from sensor.errors import RecordingError
from sensor.recording import RecordingWriter, read_recording, write_recording
from sensor.types import RecordingMeta, Samples

RATE_HZ = 100.0
HEADER = "t_s,ax_mps2,ay_mps2,az_mps2,gx_radps,gy_radps,gz_radps"


def standing_samples(n: int = 1000, *, seq: bool = True, mag: bool = False, seed: int = 0) -> Samples:
    """n samples of a sensor at rest (gravity on +z, small noise) with a lift-like rotation burst."""
    rng = np.random.default_rng(seed)
    t_s = 12.5 + np.arange(n) / RATE_HZ
    acc = np.array([0.0, 0.3, 9.79]) + rng.normal(0, 0.02, (n, 3))
    gyr = rng.normal(0, 0.01, (n, 3))
    gyr[n // 3: n // 3 + 50, 0] += 1.5
    return Samples(t_s, acc, gyr, np.arange(n, dtype=np.int64) + 7 if seq else None,
                   rng.normal(20, 1, (n, 3)) if mag else None)


def write_text(path: Path, meta_lines: list[str], header: str, rows: list[str], end: str = "\n") -> Path:
    path.write_text("\n".join(meta_lines + [header] + rows) + end)
    return path


def rows_of(samples: Samples) -> list[str]:
    out = []
    for i in range(len(samples)):
        vals = [samples.t_s[i], *samples.acc_mps2[i], *samples.gyr_radps[i]]
        out.append(",".join(f"{v:.6f}" for v in vals))
    return out


@pytest.fixture
def clean_file(tmp_path: Path) -> Path:
    return write_text(tmp_path / "clean.csv", ["# format: holdmon-recording/1", "# rate_hz: 100"],
                      HEADER, rows_of(standing_samples(600, seq=False)))


def kinds(recording) -> dict[str, object]:
    return {i.kind: i for i in recording.issues}


# ------------------------------------------------------------------------------------ round trip


def test_round_trip_keeps_samples_and_metadata(tmp_path: Path) -> None:
    samples = standing_samples(2500, mag=True)
    note = 'first, "stage 3" session\nback: 2/10 \\ tired # ok: yes\n'
    meta = RecordingMeta(device="HM-01", profile="holdmon", rate_hz=RATE_HZ, placement="thigh",
                         side="left", stage=3, load_kg=1.5, note=note, extra={"operator": "physio A"})
    path = tmp_path / "rt.csv"
    write_recording(path, meta, samples)
    got = read_recording(path)
    assert got.meta == RecordingMeta(device="HM-01", profile="holdmon", rate_hz=100.0, placement="thigh",
                                     side="left", stage=3, load_kg=1.5, note=note,
                                     extra={"operator": "physio A"})
    assert len(got.samples) == len(samples)
    np.testing.assert_allclose(got.samples.t_s, samples.t_s, atol=1e-6)
    np.testing.assert_allclose(got.samples.acc_mps2, samples.acc_mps2, atol=1e-5)
    np.testing.assert_allclose(got.samples.gyr_radps, samples.gyr_radps, atol=1e-6)
    np.testing.assert_allclose(got.samples.mag_ut, samples.mag_ut, atol=1e-3)
    np.testing.assert_array_equal(got.samples.seq, samples.seq)
    assert got.issues == [] and got.gaps == []


def test_writer_file_mode_is_0600_even_with_open_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        with RecordingWriter(tmp_path / "live.csv", RecordingMeta(), with_seq=True):
            pass
        existing = tmp_path / "old.csv"
        existing.write_text("x")
        existing.chmod(0o666)
        write_recording(existing, RecordingMeta(), standing_samples(10))
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "live.csv").stat().st_mode) == 0o600
    assert stat.S_IMODE(existing.stat().st_mode) == 0o600


def test_writer_refuses_to_overwrite_a_recording(tmp_path: Path) -> None:
    path = tmp_path / "live.csv"
    path.write_text("precious")
    with pytest.raises(RecordingError, match="file exists"):
        RecordingWriter(path, RecordingMeta(), with_seq=False)
    assert path.read_text() == "precious"


def test_appended_rows_are_in_the_file_before_close(tmp_path: Path) -> None:
    path = tmp_path / "live.csv"
    samples = standing_samples(300)
    writer = RecordingWriter(path, RecordingMeta(rate_hz=RATE_HZ), with_seq=True)
    for start in range(0, 300, 7):  # notification-sized pieces
        writer.append(samples.slice(start, start + 7))
    seen_open = read_recording(path)  # another reader while the writer is still open
    writer.flush()
    writer.close()
    writer.close()  # idempotent
    assert len(seen_open.samples) == 300 and writer.rows_written == 300
    np.testing.assert_array_equal(read_recording(path).samples.seq, samples.seq)
    with pytest.raises(RecordingError, match="after close"):
        writer.append(samples)


def test_writer_syncs_in_the_background_while_rows_arrive(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(rec, "FSYNC_INTERVAL_S", 0.02)
    synced = threading.Event()
    threads: list[str] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        threads.append(threading.current_thread().name)
        real_fsync(fd)
        synced.set()

    monkeypatch.setattr(rec.os, "fsync", fsync)
    samples = standing_samples(20)
    with RecordingWriter(tmp_path / "live.csv", RecordingMeta(), with_seq=True) as writer:
        writer.append(samples.slice(0, 5))
        assert synced.wait(10.0)  # the background thread synced the new rows ...
        assert threads == ["recording-fsync"]  # ... not the caller
        synced.clear()
        writer.append(samples.slice(5, 10))
        assert synced.wait(10.0)
    assert threads[-1] == threading.current_thread().name  # close syncs at once, in the caller


def test_writer_needs_seq_when_opened_with_seq(tmp_path: Path) -> None:
    with RecordingWriter(tmp_path / "a.csv", RecordingMeta(), with_seq=True) as writer:
        with pytest.raises(RecordingError, match="seq"):
            writer.append(standing_samples(5, seq=False))


# -------------------------------------------------------------------------------- layout variants


def test_columns_in_any_order_extra_columns_reported(tmp_path: Path) -> None:
    samples = standing_samples(200, seq=False)
    names = ["temp_C", "gz_radps", "t_s", "ax_mps2", "gy_radps", "az_mps2", "gx_radps", "ay_mps2"]
    rows = []
    for i in range(200):
        v = {"temp_C": 31.5, "t_s": samples.t_s[i]}
        v.update(zip(["ax_mps2", "ay_mps2", "az_mps2"], samples.acc_mps2[i]))
        v.update(zip(["gx_radps", "gy_radps", "gz_radps"], samples.gyr_radps[i]))
        rows.append(",".join(f"{v[n]:.6f}" for n in names))
    got = read_recording(write_text(tmp_path / "o.csv", [], ",".join(names), rows))
    np.testing.assert_allclose(got.samples.acc_mps2, samples.acc_mps2, atol=1e-6)
    np.testing.assert_allclose(got.samples.gyr_radps, samples.gyr_radps, atol=1e-6)
    assert "temp_C" in kinds(got)["extra_columns"].message
    assert got.samples.seq is None and got.samples.mag_ut is None


def test_crlf_blank_comment_lines_and_exponents(tmp_path: Path) -> None:
    rows = rows_of(standing_samples(100, seq=False))
    rows[10] = rows[10].replace("0.0", "0.0e0", 1)
    rows.insert(50, "# marker: button pressed")
    rows.insert(60, "")
    path = tmp_path / "crlf.csv"
    path.write_bytes(("\r\n".join(["# rate_hz: 100", HEADER] + rows) + "\r\n").encode())
    got = read_recording(path)
    assert len(got.samples) == 100 and got.issues == []


def test_large_file_parsed_across_many_blocks(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(rec, "BLOCK_BYTES", 4096)
    samples = standing_samples(5000)
    path = tmp_path / "big.csv"
    write_recording(path, RecordingMeta(rate_hz=RATE_HZ), samples)
    got = read_recording(path)
    np.testing.assert_array_equal(got.samples.seq, samples.seq)
    np.testing.assert_allclose(got.samples.t_s, samples.t_s, atol=1e-6)


def test_line_numbers_stay_right_across_blocks(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(rec, "BLOCK_BYTES", 4096)
    path = tmp_path / "big.csv"
    write_recording(path, RecordingMeta(rate_hz=RATE_HZ), standing_samples(3000))
    lines = path.read_text().splitlines()
    header_line = next(i for i, s in enumerate(lines, 1) if s.startswith("t_s,"))
    bad_line = header_line + 2345
    lines[bad_line - 1] = lines[bad_line - 1].replace(",", ",x", 1)
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(RecordingError) as err:
        read_recording(path)
    assert err.value.line == bad_line
    assert "is not a number" in err.value.message and "ax_mps2" in err.value.message


# ------------------------------------------------------------------------------ recoverable issues


def test_cut_off_last_line_recovers_every_complete_row(tmp_path: Path) -> None:
    path = tmp_path / "crash.csv"
    write_recording(path, RecordingMeta(rate_hz=RATE_HZ), standing_samples(400))
    data = path.read_bytes()
    path.write_bytes(data[: data.rstrip(b"\n").rfind(b"\n") + 12])  # last row cut 11 chars in
    got = read_recording(path)
    assert len(got.samples) == 399
    issue = kinds(got)["truncated_last_line"]
    assert issue.line == len(data.splitlines())


def test_complete_last_line_without_newline_is_kept(tmp_path: Path, clean_file: Path) -> None:
    clean_file.write_bytes(clean_file.read_bytes().rstrip(b"\n"))
    got = read_recording(clean_file)
    assert len(got.samples) == 600 and got.issues == []


def test_non_monotonic_and_duplicate_times_dropped_and_reported(tmp_path: Path) -> None:
    rows = rows_of(standing_samples(300, seq=False))
    rows[100] = rows[99]  # duplicate timestamp (file line 103)
    rows[200] = rows[150]  # jumps back (file line 203)
    got = read_recording(write_text(tmp_path / "t.csv", ["# rate_hz: 100"], HEADER, rows))
    found = kinds(got)
    assert found["duplicate_time"].line == 103 and found["duplicate_time"].count == 1
    assert found["non_monotonic_time"].line == 203
    assert len(got.samples) == 298
    assert np.all(np.diff(got.samples.t_s) > 0)


def test_gaps_from_seq(tmp_path: Path) -> None:
    samples = standing_samples(500)
    keep = np.ones(500, dtype=bool)
    keep[100:104] = False  # 4 lost
    keep[300] = False  # 1 lost
    kept = Samples(samples.t_s[keep], samples.acc_mps2[keep], samples.gyr_radps[keep], samples.seq[keep])
    path = tmp_path / "g.csv"
    write_recording(path, RecordingMeta(rate_hz=RATE_HZ), kept)
    got = read_recording(path)
    assert [g.missing_samples for g in got.gaps] == [4, 1]
    assert got.gaps[0].start_s == pytest.approx(samples.t_s[99])
    assert kinds(got)["gap"].count == 2


def test_gaps_from_time_without_seq(tmp_path: Path) -> None:
    rows = rows_of(standing_samples(500, seq=False))
    del rows[200:210]
    got = read_recording(write_text(tmp_path / "g.csv", [], HEADER, rows))
    assert got.meta.rate_hz == pytest.approx(100.0, rel=1e-3)  # estimated from time
    assert [g.missing_samples for g in got.gaps] == [10]


def test_nan_and_empty_fields_drop_the_row(tmp_path: Path, clean_file: Path) -> None:
    lines = clean_file.read_text().splitlines()
    lines[10] = lines[10].rsplit(",", 1)[0] + ","  # empty last field, file line 11
    fields = lines[20].split(",")
    fields[1] = "nan"
    lines[20] = ",".join(fields)
    fields = lines[30].split(",")
    fields[4] = "NaN"
    lines[30] = ",".join(fields)
    clean_file.write_text("\n".join(lines) + "\n")
    got = read_recording(clean_file)
    issue = kinds(got)["nan"]
    assert issue.line == 11 and issue.count == 3
    assert np.isfinite(got.samples.acc_mps2).all() and np.isfinite(got.samples.gyr_radps).all()
    assert len(got.samples) == 600 - issue.count


def test_acc_in_g_is_noticed_and_converted_on_request(tmp_path: Path) -> None:
    s = standing_samples(800)
    in_g = Samples(s.t_s, s.acc_mps2 / 9.80665, s.gyr_radps, s.seq)
    path = tmp_path / "g.csv"
    write_recording(path, RecordingMeta(rate_hz=RATE_HZ), in_g)
    issue = kinds(read_recording(path))["units_acc_g"]
    assert "in g" in issue.message and "--acc-unit g" in issue.message
    fixed = read_recording(path, defaults={"acc_unit": "g"})
    assert "units_acc_g" not in kinds(fixed)
    np.testing.assert_allclose(fixed.samples.acc_mps2, s.acc_mps2, atol=1e-4)


def test_gyro_in_deg_per_s_is_noticed_and_converted_on_request(tmp_path: Path) -> None:
    s = standing_samples(800)
    in_dps = Samples(s.t_s, s.acc_mps2, np.degrees(s.gyr_radps), s.seq)
    path = tmp_path / "d.csv"
    write_recording(path, RecordingMeta(rate_hz=RATE_HZ, extra={}), in_dps)
    issue = kinds(read_recording(path))["units_gyr_dps"]
    assert "deg/s" in issue.message
    fixed = read_recording(path, defaults={"gyr_unit": "dps"})
    assert "units_gyr_dps" not in kinds(fixed)
    np.testing.assert_allclose(fixed.samples.gyr_radps, s.gyr_radps, atol=1e-5)


@pytest.mark.parametrize("meta_lines", [["# rate_hz: 100"], []])
def test_time_in_milliseconds_is_noticed(tmp_path: Path, meta_lines: list[str]) -> None:
    s = standing_samples(300, seq=False)
    in_ms = Samples(s.t_s * 1000.0, s.acc_mps2, s.gyr_radps)
    got = read_recording(write_text(tmp_path / "ms.csv", meta_lines, HEADER, rows_of(in_ms)))
    assert "milliseconds" in kinds(got)["units_time_ms"].message


def test_declared_units_in_the_file_are_applied(tmp_path: Path) -> None:
    s = standing_samples(300)
    path = tmp_path / "declared.csv"
    write_recording(path, RecordingMeta(rate_hz=RATE_HZ, extra={"acc_unit": "g", "gyr_unit": "dps"}),
                    Samples(s.t_s, s.acc_mps2 / 9.80665, np.degrees(s.gyr_radps), s.seq))
    got = read_recording(path)
    assert got.issues == []
    np.testing.assert_allclose(got.samples.acc_mps2, s.acc_mps2, atol=1e-4)


def test_metadata_less_file_takes_defaults(tmp_path: Path) -> None:
    path = write_text(tmp_path / "bare.csv", [], HEADER, rows_of(standing_samples(300, seq=False)))
    got = read_recording(path, defaults={"placement": "thigh", "side": "right", "rate_hz": 100,
                                         "stage": 4, "load_kg": "2"})
    assert (got.meta.placement, got.meta.side, got.meta.rate_hz, got.meta.stage, got.meta.load_kg) == \
        ("thigh", "right", 100.0, 4, 2.0)


def test_file_metadata_wins_over_defaults_and_says_so(tmp_path: Path, clean_file: Path) -> None:
    got = read_recording(clean_file, defaults={"rate_hz": 50.0, "side": "left"})
    assert got.meta.rate_hz == 100.0 and got.meta.side == "left"
    assert "rate_hz=50.0 ignored" in kinds(got)["option_ignored"].message


# ---------------------------------------------------------------------------------------- fatal


def error_of(path: Path, **kw) -> RecordingError:
    with pytest.raises(RecordingError) as err:
        read_recording(path, **kw)
    assert err.value.path == str(path)
    return err.value


def test_missing_file(tmp_path: Path) -> None:
    err = error_of(tmp_path / "nope.csv")
    assert "No such file" in err.message and err.line is None


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.csv"
    path.write_bytes(b"")
    assert error_of(path).message == "empty file"


def test_only_metadata_no_header(tmp_path: Path) -> None:
    path = tmp_path / "m.csv"
    path.write_text("# format: holdmon-recording/1\n# rate_hz: 100\n")
    err = error_of(path)
    assert "no header" in err.message and err.line == 2


def test_data_without_header(tmp_path: Path) -> None:
    path = tmp_path / "noheader.csv"
    path.write_text("\n".join(rows_of(standing_samples(20, seq=False))) + "\n")
    err = error_of(path)
    assert "no header" in err.message and err.line == 1


def test_missing_required_column(tmp_path: Path) -> None:
    header = HEADER.replace(",gy_radps", "")
    rows = [r.rsplit(",", 2)[0] + "," + r.rsplit(",", 1)[1] for r in rows_of(standing_samples(20, seq=False))]
    err = error_of(write_text(tmp_path / "c.csv", ["# rate_hz: 100"], header, rows))
    assert "gy_radps" in err.message and err.line == 2


@pytest.mark.parametrize("end", ["\n", ""])
def test_header_only_has_no_data(tmp_path: Path, end: str) -> None:
    err = error_of(write_text(tmp_path / "h.csv", ["# rate_hz: 100"], HEADER, [], end=end))
    assert "no data rows" in err.message and err.line == 2


def test_garbage_line_in_the_middle(tmp_path: Path, clean_file: Path) -> None:
    lines = clean_file.read_text().splitlines()
    lines[200] = "-- sensor reconnected --"
    clean_file.write_text("\n".join(lines) + "\n")
    err = error_of(clean_file)
    assert err.line == 201 and "expected 7 fields" in err.message
    assert str(err).startswith(f"{clean_file}:201: ")


def test_non_numeric_field_in_the_middle(tmp_path: Path, clean_file: Path) -> None:
    lines = clean_file.read_text().splitlines()
    fields = lines[300].split(",")
    fields[5] = "0.0x1"
    lines[300] = ",".join(fields)
    clean_file.write_text("\n".join(lines) + "\n")
    err = error_of(clean_file)
    assert err.line == 301 and "'gy_radps': '0.0x1' is not a number" in err.message


@pytest.mark.parametrize("line, needle", [
    ("# placement: knee", "'placement'"),
    ("# rate_hz: fast", "'rate_hz'"),
    ("# side: both", "'side'"),
    ("# stage: three", "'stage'"),
    ("# stage: ³", "'stage'"),
    ("# load_kg: -2", "'load_kg'"),
    ("# format: holdmon-recording/7", "unsupported format"),
])
def test_bad_metadata_value(tmp_path: Path, line: str, needle: str) -> None:
    path = write_text(tmp_path / "b.csv", ["# format: holdmon-recording/1", line], HEADER,
                      rows_of(standing_samples(20, seq=False)))
    err = error_of(path)
    assert needle in err.message and err.line == 2


def test_bad_default_value_names_the_option(tmp_path: Path) -> None:
    path = write_text(tmp_path / "bare.csv", [], HEADER, rows_of(standing_samples(20, seq=False)))
    err = error_of(path, defaults={"placement": "wrist"})
    assert "from the command line" in err.message and err.line is None


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "bin.csv"
    path.write_bytes(b"\xff\xfe\x00garbage\n")
    assert "UTF-8" in error_of(path).message


def test_escaping_round_trip() -> None:
    for text in ["plain", "a,b \"q\" 'x'", "line1\nline2\r\n", "back\\slash\\n literal", "ünïcode ✓"]:
        escaped = rec.escape_meta_value(text)
        assert "\n" not in escaped and "\r" not in escaped
        assert rec.unescape_meta_value(escaped) == text


def test_fast_parser_matches_float_exactly() -> None:
    rng = np.random.default_rng(3)
    vals = rng.normal(0, 300, (3000, 4))
    for decimals in (0, 3, 6, 8):
        text = "".join(",".join(f"{v:.{decimals}f}" for v in row) + "\n" for row in vals).encode()
        parsed = rec._parse_block_fast(text, 4)
        expected = [[float(x) for x in line.split(",")] for line in text.decode().splitlines()]
        assert parsed is not None
        np.testing.assert_array_equal(parsed, np.array(expected))


@pytest.mark.parametrize("block", [b"1.2.3,1\n", b"-,1\n", b".,1\n", b"1-2,1\n", b"1,,\n", b"nan,1\n",
                                   b"1e3,1\n", b"1,2,3\n", b"-.,1\n", b"--1,1\n", b"1.0-,1\n",
                                   b"123456789012345,1\n", b"1,2\n3\n"])
def test_fast_parser_declines_what_it_does_not_understand(block: bytes) -> None:
    assert rec._parse_block_fast(block, 2) is None


def test_long_fields_are_read_exactly(tmp_path: Path) -> None:
    rows = [f"{1.0e6 + i / 7:.9f},0.1,0.2,9.8,-0.{i:015d},0,0" for i in range(50)]
    got = read_recording(write_text(tmp_path / "long.csv", [], HEADER, rows))
    np.testing.assert_array_equal(got.samples.t_s, [float(r.split(",")[0]) for r in rows])
    np.testing.assert_array_equal(got.samples.gyr_radps[:, 0], [float(r.split(",")[4]) for r in rows])


def test_seq_that_goes_backwards_is_not_trusted_for_gaps(tmp_path: Path) -> None:
    s = standing_samples(300)
    seq = s.seq.copy()
    seq[150:] -= 1000  # a counter reset
    path = tmp_path / "s.csv"
    write_recording(path, RecordingMeta(rate_hz=RATE_HZ), Samples(s.t_s, s.acc_mps2, s.gyr_radps, seq))
    got = read_recording(path)
    assert kinds(got)["seq_not_increasing"].line is not None
    assert got.samples.seq is None and got.gaps == []
    assert not math.isnan(got.samples.t_s[0])


@given(st.lists(st.text(alphabet="0123456789.-", min_size=1, max_size=9), min_size=1, max_size=12))
def test_fast_parser_equals_float_or_declines(fields: list[str]) -> None:
    block = ("\n".join(f"{f},7" for f in fields) + "\n").encode()
    parsed = rec._parse_block_fast(block, 2)
    try:
        expected = [float(f) for f in fields]
    except ValueError:
        assert parsed is None
        return
    assert parsed is not None
    np.testing.assert_array_equal(parsed[:, 0], expected)


@given(st.lists(st.floats(-99999, 99999), min_size=1, max_size=50), st.integers(0, 7))  # <= 14 chars
def test_fast_parser_reads_every_plain_decimal(values: list[float], decimals: int) -> None:
    texts = [f"{v:.{decimals}f}" for v in values]
    parsed = rec._parse_block_fast(("\n".join(texts) + "\n").encode(), 1)
    assert parsed is not None
    np.testing.assert_array_equal(parsed[:, 0], [float(t) for t in texts])


def test_output_grows_when_later_rows_are_shorter(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(rec, "BLOCK_BYTES", 2048)
    rows = [f"{i / 100:.6f},0.100000000,0.200000000,9.800000000,0.0100000,0.0,0.0" for i in range(100)]
    rows += [f"{i / 100:.2f},0.1,0.2,9.8,0.01,0,0" for i in range(100, 3000)]
    got = read_recording(write_text(tmp_path / "mixed.csv", ["# rate_hz: 100"], HEADER, rows))
    assert len(got.samples) == 3000
    np.testing.assert_allclose(got.samples.t_s, np.arange(3000) / 100)
    assert (got.samples.acc_mps2 == [0.1, 0.2, 9.8]).all()


def test_required_columns_permuted_without_extras(tmp_path: Path) -> None:
    samples = standing_samples(100, seq=False)
    names = ["gz_radps", "gy_radps", "gx_radps", "az_mps2", "ay_mps2", "ax_mps2", "t_s"]
    table = np.column_stack([samples.t_s, samples.acc_mps2, samples.gyr_radps])[:, ::-1]
    rows = [",".join(f"{v:.6f}" for v in row) for row in table]
    got = read_recording(write_text(tmp_path / "rev.csv", [], ",".join(names), rows))
    np.testing.assert_allclose(got.samples.t_s, samples.t_s, atol=1e-6)
    np.testing.assert_allclose(got.samples.gyr_radps, samples.gyr_radps, atol=1e-6)
