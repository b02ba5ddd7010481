"""Recording format v1 (CSV): reader and writer. The format is described in recordings/README.md.

A file is `# key: value` metadata lines, one header row naming the columns, then one row per sample.
The reader parses the rows in blocks of a few hundred kilobytes with a vectorised numpy parser (falling
back to a careful line-by-line parser for blocks it does not understand), so a large file is never held
in memory as text and parsing runs at over ten million fields per second. Problems that do not make
the data unusable are reported as `DataIssue`s; fatal ones raise `RecordingError(path, message, line)`.
"""

from __future__ import annotations

import math
import os
import threading
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import BinaryIO, Iterator

import numpy as np

from sensor.dsp.timebase import find_gaps, nominal_rate_hz
from sensor.errors import RecordingError
from sensor.types import FORMAT_VERSION, DataIssue, Gap, RecordingMeta, Samples

FORMAT_NAME = f"holdmon-recording/{FORMAT_VERSION}"
TIME_COLUMN = "t_s"
ACC_COLUMNS = ("ax_mps2", "ay_mps2", "az_mps2")
GYR_COLUMNS = ("gx_radps", "gy_radps", "gz_radps")
SEQ_COLUMN = "seq"
MAG_COLUMNS = ("mx_uT", "my_uT", "mz_uT")
REQUIRED_COLUMNS = (TIME_COLUMN, *ACC_COLUMNS, *GYR_COLUMNS)

PLACEMENTS = ("ankle", "thigh")
SIDES = ("left", "right")
ACC_UNITS = {"mps2": 1.0, "g": 9.80665}
GYR_UNITS = {"radps": 1.0, "dps": math.pi / 180.0}

STANDARD_GRAVITY_MPS2 = 9.80665
BLOCK_BYTES = 1 << 17  # text parsed per block; small enough for the cache, large enough for numpy, and
# small enough that the parse threads' temporaries leave little memory behind (1-hour file: 12 MB less than 512 kB)
MAX_PARSE_THREADS = 4
UNIT_CHECK_ROWS = 50_000  # rows (evenly spaced) used to judge the units


@dataclass
class Recording:
    """A recording read from a file: metadata (file values, then defaults), clean samples, what was found.

    samples hold only the rows kept (see recordings/README.md for what is dropped); gaps are computed on
    them from seq when present, else from time.
    """

    path: str
    meta: RecordingMeta
    samples: Samples
    issues: list[DataIssue] = field(default_factory=list)
    gaps: list[Gap] = field(default_factory=list)

    @classmethod
    def from_samples(cls, path: str, meta: RecordingMeta, samples: Samples) -> "Recording":
        """A recording of samples held in memory (e.g. simulated), with its gaps found as on reading."""
        rate_hz = meta.rate_hz or nominal_rate_hz(samples.t_s)
        return cls(path, meta, samples, [], find_gaps(samples.t_s, samples.seq, rate_hz))


# ----------------------------------------------------------------------------------------- metadata


def escape_meta_value(value: str) -> str:
    """A metadata value as stored on one line: backslash, CR and LF written as \\\\, \\r, \\n."""
    return value.replace("\\", "\\\\").replace("\r", "\\r").replace("\n", "\\n")


def unescape_meta_value(text: str) -> str:
    """Inverse of `escape_meta_value`; an unknown escape keeps its backslash."""
    out: list[str] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text) and text[i + 1] in "\\nr":
            out.append({"\\": "\\", "n": "\n", "r": "\r"}[text[i + 1]])
            i += 2
            continue
        out.append(ch)
        i += 1
    return "".join(out)


def _meta_error(path: str, key: str, value: object, expected: str, line: int | None) -> RecordingError:
    source = "" if line is not None else " (from the command line)"
    return RecordingError(path, f"metadata {key!r}{source}: {value!r} is not {expected}", line)


def _set_meta(meta: RecordingMeta, key: str, value: object, path: str, line: int | None) -> None:
    """Validate one metadata value and store it on meta; unknown keys go to meta.extra."""
    text = str(value).strip()
    if key in ("device", "profile", "note"):
        setattr(meta, key, str(value))  # free text, kept as written (escapes already undone)
    elif key == "format":
        if text not in (FORMAT_NAME, str(FORMAT_VERSION)):
            raise RecordingError(path, f"unsupported format {text!r} (this version reads {FORMAT_NAME})",
                                 line)
        meta.format_version = FORMAT_VERSION
    elif key == "rate_hz":
        rate_hz = _to_float(text)
        if rate_hz is None or not rate_hz > 0 or not math.isfinite(rate_hz):
            raise _meta_error(path, key, value, "a positive number of Hz", line)
        meta.rate_hz = rate_hz
    elif key == "placement":
        if text not in PLACEMENTS:
            raise _meta_error(path, key, value, "one of " + "|".join(PLACEMENTS), line)
        meta.placement = text  # type: ignore[assignment]
    elif key == "side":
        if text not in SIDES:
            raise _meta_error(path, key, value, "one of " + "|".join(SIDES), line)
        meta.side = text  # type: ignore[assignment]
    elif key == "stage":
        if not (text.isascii() and text.isdigit()):
            raise _meta_error(path, key, value, "a whole number >= 0", line)
        meta.stage = int(text)
    elif key == "load_kg":
        load_kg = _to_float(text)
        if load_kg is None or not 0 <= load_kg < 1000:
            raise _meta_error(path, key, value, "a load in kg >= 0", line)
        meta.load_kg = load_kg
    elif key == "acc_unit":
        if text not in ACC_UNITS:
            raise _meta_error(path, key, value, "one of " + "|".join(ACC_UNITS), line)
        meta.extra[key] = text
    elif key == "gyr_unit":
        if text not in GYR_UNITS:
            raise _meta_error(path, key, value, "one of " + "|".join(GYR_UNITS), line)
        meta.extra[key] = text
    else:
        meta.extra[key] = text


def _to_float(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def _parse_meta_line(text: str) -> tuple[str, str] | None:
    """(key, raw value) of a `# key: value` line, None for a plain comment (no colon, or not a key)."""
    body = text[1:].strip()
    key, colon, value = body.partition(":")
    key = key.strip().lower()
    if not colon or not key or not key.replace("_", "").isalnum():
        return None
    return key, unescape_meta_value(value.strip())


def meta_lines(meta: RecordingMeta) -> list[str]:
    """The `# key: value` lines (without newlines) that describe meta in a file."""
    items: list[tuple[str, object]] = [("format", FORMAT_NAME)]
    items += [("device", meta.device), ("profile", meta.profile), ("rate_hz", meta.rate_hz),
              ("placement", meta.placement), ("side", meta.side), ("stage", meta.stage),
              ("load_kg", meta.load_kg), ("note", meta.note)]
    items += [(k, v) for k, v in meta.extra.items() if k not in dict(items)]
    return [f"# {k}: {escape_meta_value(str(v))}" for k, v in items if v is not None and v != ""]


# ----------------------------------------------------------------------------------- block parsing

# Fast parser. Every byte of a field gets one table entry by (q, byte), q = characters from the byte to
# the end of its field (1 for the last character, 0 on separators); the entries of a field add up exactly
# (all below 2**53) to
#     digits as an integer (the dot counted as a 0 digit)   < 10**14 < 2**47
#   + q_dot * 2**47 when the field has a dot                 <= 15 * 2**47
#   + 2**52 when it has a minus
# so one gather and one np.add.reduceat parse every field; bytes that are none of these read NaN.
_MAX_FIELD_CHARS = 14  # digits stay below 10**14 whatever the dot and sign
_DOT_UNIT = 2.0 ** 47
_MINUS_MARK = 2.0 ** 52
_SCALE = np.concatenate(([1.0], 10.0 ** np.arange(_MAX_FIELD_CHARS)))  # by the dot's q: 10**(q - 1)
_TABLE = np.full((_MAX_FIELD_CHARS + 1, 256), np.nan)
_TABLE[0, [ord(","), ord("\n")]] = 0.0
for _q in range(1, _MAX_FIELD_CHARS + 1):
    _TABLE[_q, ord("0"):ord("9") + 1] = np.arange(10) * 10.0 ** (_q - 1)
    _TABLE[_q, ord(".")] = _q * _DOT_UNIT
    _TABLE[_q, ord("-")] = _MINUS_MARK
_TABLE_FLAT = _TABLE.ravel()
_WORKSPACE = threading.local()


def _workspace(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per-thread reusable buffers for a block of n bytes: bool mask x2, float64 terms, arange (int32).

    Reusing them matters: fresh multi-megabyte arrays per block cost more in page faults than the
    arithmetic does.
    """
    ws = getattr(_WORKSPACE, "buffers", None)
    if ws is None or ws[2].size < n:
        size = max(n, BLOCK_BYTES + (BLOCK_BYTES >> 3))
        ws = (np.empty(size, dtype=bool), np.empty(size, dtype=bool), np.empty(size),
              np.arange(size, dtype=np.int32))
        _WORKSPACE.buffers = ws
    return ws[0][:n], ws[1][:n], ws[2][:n], ws[3][:n]


def _parse_block_fast(block: bytes, ncols: int) -> np.ndarray | None:
    """Rows of plain decimal numbers (`-12.345`, `7`, `.5`), all lines `ncols` fields, ending in '\\n'.

    Returns (rows, ncols) float64, equal to float() of each field, or None when the block holds
    anything else (empty fields, nan, exponents, comments, wrong field counts, fields over 14
    characters): the caller then parses it line by line.
    """
    a = np.frombuffer(block, dtype=np.uint8)
    if a.size == 0 or a.size >= 2**31:
        return None
    mask, mask2, terms, arange = _workspace(a.size)
    np.equal(a, 44, out=mask)
    np.equal(a, 10, out=mask2)
    np.logical_or(mask, mask2, out=mask)
    sep = np.flatnonzero(mask).astype(np.int32)
    if sep.size == 0 or sep.size % ncols:
        return None
    kinds = a[sep].reshape(-1, ncols)
    if not ((kinds[:, -1] == 10).all() and (kinds[:, :-1] == 44).all()):
        return None
    lengths = np.diff(sep, prepend=np.int32(-1))  # field length + 1 for its separator
    if lengths.min() < 2 or lengths.max() > _MAX_FIELD_CHARS + 1:
        return None
    index = np.repeat(sep, lengths)
    index -= arange  # q: characters from here to the end of the field
    index *= 256
    index += a
    np.take(_TABLE_FLAT, index, out=terms, mode="clip")
    starts = sep - lengths + 1
    sums = np.add.reduceat(terms, starts)
    values = _decode_sums(sums, a, sep, starts, lengths)
    return None if values is None else values.reshape(-1, ncols)


def _decode_sums(sums: np.ndarray, a: np.ndarray, sep: np.ndarray, starts: np.ndarray,
                 lengths: np.ndarray) -> np.ndarray | None:
    """Numbers from the per-field table sums; None if a field is not a plain decimal number.

    A sum splits exactly into marks (multiples of 2**47: the dot's q, plus 32 for a minus) and the digits.
    Two dots or two minus signs in one field give marks that point at no dot or exceed the range.
    Works in place on few temporaries: this runs once per field.
    """
    if not math.isfinite(float(sums.sum())):  # NaN: a byte that is not a digit, separator, dot or minus
        return None
    marks = np.multiply(sums, 1.0 / _DOT_UNIT)
    np.floor(marks, out=marks)
    full = np.multiply(marks, _DOT_UNIT)
    np.subtract(sums, full, out=full)  # the digits as an integer, the dot counted as a 0 digit
    if marks.max() >= 64:
        return None
    negative = marks >= 32
    np.subtract(marks, 32.0, out=marks, where=negative)  # now the dot's q (0: no dot)
    has_dot = marks > 0
    chars = lengths - 1
    if (marks > chars).any():
        return None
    q = marks.astype(np.int32)
    if not ((a[sep - q] == 46) >= has_dot).all():  # a mark must point at the field's one dot
        return None
    if not ((a[starts] == 45) >= negative).all():  # a minus must be the first character
        return None
    chars -= has_dot
    chars -= negative
    if chars.min() < 1:  # no digit: '-', '.', '-.'
        return None
    scale = _SCALE[q]  # 10**decimals, 1 without a dot
    upper = np.divide(full, scale)
    np.floor(upper, out=upper)  # exact: integers below 2**53
    lower = np.multiply(upper, scale)
    np.subtract(full, lower, out=lower)
    np.divide(upper, 10.0, out=upper, where=has_dot)  # drop the dot's 0 digit
    upper *= scale
    upper += lower  # the mantissa, exact
    upper /= scale  # the one rounding
    np.negative(upper, out=upper, where=negative)
    return upper


@dataclass
class _Layout:
    """Where the needed columns are in a row: column indices in output order, and names."""

    path: str
    ncols: int
    names: list[str]
    take: list[int]  # t, ax, ay, az, gx, gy, gz [, seq] [, mx, my, mz]


@dataclass
class _Block:
    """Parsed rows of one block: values (rows, len(take)); the 0-based line offset of each row in the
    block (None: row i is line i), of rows with NaN/empty fields; newline count; text bytes."""

    values: np.ndarray
    offsets: np.ndarray | None
    nan_offsets: list[int]
    nlines: int
    nbytes: int


class _RowError(Exception):
    """A malformed row at `offset` lines into its block (the reader adds the block's first line)."""

    def __init__(self, offset: int, message: str) -> None:
        super().__init__(message)
        self.offset = offset
        self.message = message


def _parse_block(block: bytes, layout: _Layout) -> _Block:
    """Parse complete lines (block ends in '\n'). Raises _RowError for a malformed row."""
    if b"\r" in block:
        block = block.replace(b"\r", b"")
    rows = _parse_block_fast(block, layout.ncols)
    if rows is not None:
        values = rows if layout.take == list(range(layout.ncols)) else rows[:, layout.take]  # any order
        return _Block(values, None, [], rows.shape[0], len(block))
    return _parse_block_slow(block, layout)


def _parse_block_slow(block: bytes, layout: _Layout) -> _Block:
    """Line-by-line parse: skips blank and '#' lines, keeps NaN/empty fields as NaN, raises on garbage."""
    values: list[list[float]] = []
    offsets: list[int] = []
    nan_offsets: list[int] = []
    raw_lines = block.split(b"\n")[:-1]
    for offset, raw in enumerate(raw_lines):
        row = _parse_line(raw, offset, layout)
        if row is None:
            continue
        if not all(math.isfinite(v) for v in row):
            nan_offsets.append(offset)
        values.append(row)
        offsets.append(offset)
    arr = np.array(values, dtype=np.float64).reshape(-1, len(layout.take))
    return _Block(arr, np.array(offsets, dtype=np.int64), nan_offsets, len(raw_lines), len(block))


def _parse_line(raw: bytes, offset: int, layout: _Layout) -> list[float] | None:
    """Needed fields of one row as floats (NaN for empty/nan); None for a blank or comment line."""
    stripped = raw.strip()
    if not stripped or stripped.startswith(b"#"):
        return None
    fields = raw.split(b",")
    if len(fields) != layout.ncols:
        raise _RowError(offset, f"expected {layout.ncols} fields ({','.join(layout.names)}), "
                        f"found {len(fields)}")
    row: list[float] = []
    for i in layout.take:
        text = fields[i].strip()
        if not text:
            row.append(math.nan)
            continue
        try:
            row.append(float(text))
        except ValueError:
            shown = text.decode("utf-8", "replace")
            raise _RowError(offset, f"column {layout.names[i]!r}: {shown!r} is not a number") from None
    return row


# ------------------------------------------------------------------------------------------ reader


def read_recording(path: str | os.PathLike, *, defaults: dict | None = None) -> Recording:
    """Read a format-v1 recording.

    defaults: metadata used where the file has none (keys as in the file: placement, side, rate_hz,
    stage, load_kg, device, profile, note, acc_unit, gyr_unit); values are validated like file values.
    Rows with NaN/empty fields and rows whose time does not increase are dropped and reported; a cut-off
    last line is dropped and reported; gaps are reported (and listed in `gaps`), never filled here.
    Raises RecordingError for a missing/unreadable file, no header, a missing required column,
    a malformed row before the last line, bad metadata, or no data rows.
    """
    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            meta, layout, header_line, meta_keys = _read_head(f, path)
            sink = _Sink(layout, os.fstat(f.fileno()).st_size - f.tell())
            tail_issue = _read_body(f, layout, header_line + 1, sink)
    except OSError as exc:
        raise RecordingError(path, exc.strerror or str(exc)) from None
    issues: list[DataIssue] = []
    issues += _apply_defaults(meta, meta_keys, defaults or {}, path)
    issues += _layout_issues(layout)
    if tail_issue is not None:
        issues.append(tail_issue)
    nan_lines = sink.nan_lines
    samples, lines = sink.finish()
    if len(samples) == 0:
        raise RecordingError(path, "no data rows after the header", header_line)
    samples, lines, more = _clean_rows(samples, lines, nan_lines)
    issues += more
    if len(samples) < 2:
        raise RecordingError(path, f"only {len(samples)} usable data row(s)", header_line)
    samples, more = _check_seq(samples, lines)
    issues += more
    samples, more = _check_units(samples, meta)
    issues += more
    issues += _judge_time(samples.t_s, meta.rate_hz)
    if meta.rate_hz is None:
        meta.rate_hz = round(nominal_rate_hz(samples.t_s), 3)
        if not 0 < meta.rate_hz < math.inf:
            raise RecordingError(path, f"the timestamps give no usable sample rate ({meta.rate_hz} Hz); "
                                 "declare 'rate_hz: N' in the file", header_line)
    gaps = find_gaps(samples.t_s, samples.seq, meta.rate_hz)
    if gaps:
        missing = sum(g.missing_samples for g in gaps)
        issues.append(DataIssue("gap", f"{len(gaps)} gap(s), {missing} missing sample(s) in total, "
                                f"first at t={gaps[0].start_s:.3f} s", None, len(gaps)))
    return Recording(path, meta, samples, issues, gaps)


def _read_head(f: BinaryIO, path: str) -> tuple[RecordingMeta, _Layout, int, set[str]]:
    """Metadata lines and the header; returns (meta, layout, header line number, keys set by the file)."""
    meta = RecordingMeta()
    keys: set[str] = set()
    line = 0
    for raw in f:
        line += 1
        if line == 1 and raw.startswith(b"\xef\xbb\xbf"):
            raw = raw[3:]
        text = _decode(raw, path, line).strip()
        if not text:
            continue
        if text.startswith("#"):
            kv = _parse_meta_line(text)
            if kv is not None:
                _set_meta(meta, kv[0], kv[1], path, line)
                keys.add(kv[0])
            continue
        return meta, _layout(text, path, line), line, keys
    if line == 0:
        raise RecordingError(path, "empty file")
    raise RecordingError(path, "no header row (expected a line starting with 't_s,')", line)


def _decode(raw: bytes, path: str, line: int) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise RecordingError(path, "not UTF-8 text", line) from None


def _layout(header: str, path: str, line: int) -> _Layout:
    names = [n.strip() for n in header.split(",")]
    if TIME_COLUMN not in names:
        if _to_float(names[0]) is not None:
            raise RecordingError(path, "no header row: the first line is data (expected a line "
                                 f"starting with '{TIME_COLUMN},')", line)
    missing = [c for c in REQUIRED_COLUMNS if c not in names]
    if missing:
        raise RecordingError(path, f"missing required column(s) {', '.join(missing)} "
                             f"(header has {', '.join(names)})", line)
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise RecordingError(path, f"duplicate column(s) {', '.join(dupes)}", line)
    take = [names.index(c) for c in REQUIRED_COLUMNS]
    if SEQ_COLUMN in names:
        take.append(names.index(SEQ_COLUMN))
    if all(c in names for c in MAG_COLUMNS):
        take += [names.index(c) for c in MAG_COLUMNS]
    return _Layout(path, len(names), names, take)


def _layout_issues(layout: _Layout) -> list[DataIssue]:
    known = set(REQUIRED_COLUMNS) | {SEQ_COLUMN} | set(MAG_COLUMNS)
    issues = []
    extra = [n for n in layout.names if n not in known]
    if extra:
        issues.append(DataIssue("extra_columns", f"ignored column(s): {', '.join(extra)}", None,
                                len(extra)))
    mag = [c for c in MAG_COLUMNS if c in layout.names]
    if mag and len(mag) < 3:
        issues.append(DataIssue("incomplete_mag", f"magnetometer ignored: only {', '.join(mag)} present"))
    return issues


def _blocks(f: BinaryIO) -> Iterator[tuple[bytes, bool]]:
    """(block of complete lines, False) in file order, then (unterminated tail, True) if there is one."""
    carry = b""
    while True:
        chunk = f.read(BLOCK_BYTES)
        if not chunk:
            break
        data = carry + chunk if carry else chunk
        cut = data.rfind(b"\n") + 1
        if cut == 0:
            carry = data
            continue
        block, carry = data[:cut], data[cut:]
        yield block, False
    carry = carry.rstrip(b"\x00")  # a crashed writer can leave NUL padding
    if carry.strip():
        yield carry, True


def _read_body(f: BinaryIO, layout: _Layout, first_line: int, sink: "_Sink") -> DataIssue | None:
    """Parse all complete rows into sink (threads, in order, bounded read-ahead); the tail's issue.

    Blocks are parsed without knowing their line numbers; the sink numbers them in order.
    """
    tail = None
    workers = min(MAX_PARSE_THREADS, os.cpu_count() or 1)
    pending: deque[Future] = deque()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for block, is_tail in _blocks(f):
            if is_tail:
                tail = block
                continue
            pending.append(pool.submit(_parse_block, block, layout))
            while len(pending) > 2 * workers:
                _add(sink, pending.popleft(), first_line, layout)
        while pending:
            _add(sink, pending.popleft(), first_line, layout)
    if tail is None:
        return None
    block, issue = _parse_tail(tail, first_line + sink.nlines, layout)
    if block is not None:
        sink.add(block, first_line + sink.nlines)
    return issue


def _add(sink: "_Sink", future: Future, first_line: int, layout: _Layout) -> None:
    """Put a parsed block into the sink, or raise its row error with the file line number."""
    line = first_line + sink.nlines
    try:
        block = future.result()
    except _RowError as exc:
        raise RecordingError(layout.path, exc.message, line + exc.offset) from None
    sink.add(block, line)


def _parse_tail(tail: bytes, line: int, layout: _Layout) -> tuple[_Block | None, DataIssue | None]:
    """The last line when it has no newline: kept if complete, else dropped and reported."""
    try:
        block = _parse_block_slow(tail + b"\n", layout)
    except _RowError:
        block = None
    if block is not None and not block.nan_offsets:
        return block, None
    shown = tail[:60].decode("utf-8", "replace")
    return None, DataIssue("truncated_last_line", f"last line cut off and dropped: {shown!r}", line)


class _Sink:
    """The output columns, filled block by block in file order (no list of blocks, no concatenation).

    Capacity is estimated from the bytes per row of the first block and grows by half when short; the
    arrays handed out are views of the filled part.
    """

    def __init__(self, layout: _Layout, body_bytes: int) -> None:
        self.has_seq = SEQ_COLUMN in layout.names
        self.has_mag = len(layout.take) > 7 + self.has_seq
        self.body_bytes = max(body_bytes, 1)
        self.n = 0
        self.nlines = 0  # lines consumed so far (rows, blank and comment lines)
        self.nan_lines: list[int] = []
        self.columns: dict[str, np.ndarray] = {}

    def _allocate(self, capacity: int) -> None:
        shapes = {"t_s": (capacity,), "acc": (capacity, 3), "gyr": (capacity, 3), "lines": (capacity,)}
        if self.has_seq:
            shapes["seq"] = (capacity,)
        if self.has_mag:
            shapes["mag"] = (capacity, 3)
        old = self.columns
        self.columns = {k: np.empty(shape, dtype=np.int64 if k in ("lines", "seq") else np.float64)
                        for k, shape in shapes.items()}
        for k, arr in old.items():
            self.columns[k][:self.n] = arr[:self.n]

    def add(self, block: _Block, first_line: int) -> None:
        """Append a block whose first line is file line first_line."""
        v = block.values
        rows = v.shape[0]
        if not self.columns:
            per_row = max(block.nbytes / max(rows, 1), 8.0)
            self._allocate(int(self.body_bytes / per_row * 1.02) + rows + 1024)
        capacity = self.columns["t_s"].shape[0]
        if self.n + rows > capacity:
            self._allocate(max(self.n + rows, capacity + capacity // 2))
        c, i, j = self.columns, self.n, self.n + rows
        c["t_s"][i:j], c["acc"][i:j], c["gyr"][i:j] = v[:, 0], v[:, 1:4], v[:, 4:7]
        if block.offsets is None:
            c["lines"][i:j] = np.arange(first_line, first_line + rows)
        else:
            c["lines"][i:j] = block.offsets + first_line
        if self.has_seq:
            c["seq"][i:j] = np.nan_to_num(v[:, 7], nan=-1, posinf=-1, neginf=-1)
        if self.has_mag:
            c["mag"][i:j] = v[:, 7 + self.has_seq:10 + self.has_seq]
        self.nan_lines += [first_line + k for k in block.nan_offsets]
        self.nlines += block.nlines
        self.n = j

    def finish(self) -> tuple[Samples, np.ndarray]:
        """The samples and the file line of each row."""
        if not self.columns:
            self._allocate(0)
        c, n = self.columns, self.n
        return Samples(c["t_s"][:n], c["acc"][:n], c["gyr"][:n], c["seq"][:n] if self.has_seq else None,
                       c["mag"][:n] if self.has_mag else None), c["lines"][:n]


def _lines_text(lines: np.ndarray | list[int], limit: int = 5) -> str:
    shown = ", ".join(str(int(n)) for n in lines[:limit])
    return shown + (", ..." if len(lines) > limit else "")


def _clean_rows(samples: Samples, lines: np.ndarray, nan_lines: list[int]
                ) -> tuple[Samples, np.ndarray, list[DataIssue]]:
    """Drop rows with empty/NaN fields, then rows whose time is not after every earlier row's."""
    issues: list[DataIssue] = []
    if nan_lines:
        keep = np.isin(lines, np.asarray(nan_lines), invert=True)
        issues.append(DataIssue("nan", f"{len(nan_lines)} row(s) with empty or NaN fields dropped "
                                f"(lines {_lines_text(nan_lines)})", nan_lines[0], len(nan_lines)))
        samples, lines = _take(samples, keep), lines[keep]
    t_s = samples.t_s
    prev_max = np.maximum.accumulate(t_s)
    dup = np.flatnonzero(t_s[1:] == prev_max[:-1]) + 1
    back = np.flatnonzero(t_s[1:] < prev_max[:-1]) + 1
    if dup.size:
        issues.append(DataIssue("duplicate_time", f"{dup.size} row(s) repeat an earlier timestamp, dropped "
                                f"(lines {_lines_text(lines[dup])})", int(lines[dup[0]]), int(dup.size)))
    if back.size:
        issues.append(DataIssue("non_monotonic_time", f"{back.size} row(s) go back in time, dropped "
                                f"(lines {_lines_text(lines[back])})", int(lines[back[0]]),
                                int(back.size)))
    if dup.size or back.size:
        keep = np.ones(t_s.size, dtype=bool)
        keep[dup] = False
        keep[back] = False
        samples, lines = _take(samples, keep), lines[keep]
    return samples, lines, issues


def _take(samples: Samples, keep: np.ndarray) -> Samples:
    """The rows of samples where keep (n,) bool is True."""
    return Samples(samples.t_s[keep], samples.acc_mps2[keep], samples.gyr_radps[keep],
                   None if samples.seq is None else samples.seq[keep],
                   None if samples.mag_ut is None else samples.mag_ut[keep])


def _check_seq(samples: Samples, lines: np.ndarray) -> tuple[Samples, list[DataIssue]]:
    """A sample counter that does not increase cannot place gaps: report it and use time instead."""
    if samples.seq is None:
        return samples, []
    bad = np.flatnonzero(np.diff(samples.seq) <= 0) + 1
    if bad.size == 0:
        return samples, []
    issue = DataIssue("seq_not_increasing", f"the seq column does not increase at {bad.size} row(s) "
                      f"(lines {_lines_text(lines[bad])}); gaps are judged from time instead",
                      int(lines[bad[0]]), int(bad.size))
    return Samples(samples.t_s, samples.acc_mps2, samples.gyr_radps, None, samples.mag_ut), [issue]


def _check_units(samples: Samples, meta: RecordingMeta) -> tuple[Samples, list[DataIssue]]:
    """Apply declared units (acc_unit, gyr_unit), or judge the units from the magnitudes at rest."""
    acc_unit = meta.extra.get("acc_unit")
    gyr_unit = meta.extra.get("gyr_unit")
    acc, gyr = samples.acc_mps2, samples.gyr_radps
    if acc_unit is not None and ACC_UNITS[acc_unit] != 1.0:
        acc = acc * ACC_UNITS[acc_unit]
    if gyr_unit is not None and GYR_UNITS[gyr_unit] != 1.0:
        gyr = gyr * GYR_UNITS[gyr_unit]
    issues = []
    step = max(1, len(samples) // UNIT_CHECK_ROWS)
    acc_norm = np.sqrt(np.square(acc[::step]).sum(axis=1))
    acc_rest = float(np.median(acc_norm))
    rest = np.abs(acc_norm - acc_rest) < 0.05 * acc_rest  # little linear acceleration
    gyr_sub = gyr[::step]
    gyr_norm = np.sqrt(np.square(gyr_sub[rest] if rest.any() else gyr_sub).sum(axis=1))
    gyr_rest = float(np.percentile(gyr_norm, 10))  # the stillest tenth: rest even in a busy session
    if acc_unit is None:
        issues += _judge_acc(acc_rest)
    if gyr_unit is None:
        issues += _judge_gyr(gyr_rest, float(np.percentile(np.abs(gyr_sub), 99.9)))
    if acc is samples.acc_mps2 and gyr is samples.gyr_radps:
        return samples, issues
    return Samples(samples.t_s, acc, gyr, samples.seq, samples.mag_ut), issues


def _judge_acc(acc_rest: float) -> list[DataIssue]:
    if 0.7 < acc_rest / STANDARD_GRAVITY_MPS2 < 1.3:
        return []
    if 0.7 < acc_rest < 1.3:
        return [DataIssue("units_acc_g", f"acceleration looks like it is in g, not m/s^2: |acc| at rest "
                          f"is {acc_rest:.3g} (expected about 9.81); declare 'acc_unit: g' in the file or "
                          "pass --acc-unit g")]
    return [DataIssue("units_acc_unknown", f"acceleration at rest is {acc_rest:.3g}, expected about "
                      "9.81 m/s^2: unknown unit or a broken sensor")]


def _judge_gyr(gyr_rest_radps: float, gyr_p999: float) -> list[DataIssue]:
    """Rest noise of a body-worn gyro is ~0.005-0.05 rad/s and lifts stay below ~10 rad/s; deg/s is 57x."""
    if gyr_rest_radps < 0.3 and gyr_p999 < 20.0:
        return []
    return [DataIssue("units_gyr_dps", f"angular rate looks like it is in deg/s, not rad/s: at rest "
                      f"{gyr_rest_radps:.3g}, 99.9th percentile {gyr_p999:.3g} (expected below "
                      "about 0.05 and 10 rad/s); declare 'gyr_unit: dps' in the file or pass "
                      "--gyr-unit dps")]


def _judge_time(t_s: np.ndarray, rate_hz: float | None) -> list[DataIssue]:
    """t_s written in milliseconds: steps ~1000x the declared period, or (no rate) steps of 1-100."""
    step_s = float(np.median(np.diff(t_s[:UNIT_CHECK_ROWS])))
    periods = step_s * rate_hz if rate_hz else None
    if periods is not None and not 300 < periods < 3000:
        return []
    if periods is None and not 1.0 <= step_s <= 100.0:  # 10-1000 Hz if the steps were ms
        return []
    said = f"rate_hz is {rate_hz:g}" if rate_hz else "no rate_hz is declared"
    return [DataIssue("units_time_ms", f"t_s looks like it is in milliseconds, not seconds: the median "
                      f"step is {step_s:g} and {said}; convert the t_s column to seconds")]


def _apply_defaults(meta: RecordingMeta, file_keys: set[str], defaults: dict, path: str
                    ) -> list[DataIssue]:
    """Fill in metadata the file lacks from defaults; a default that differs from the file is reported."""
    issues = []
    for key, value in defaults.items():
        if value is None:
            continue
        if key in file_keys:
            probe = RecordingMeta()
            _set_meta(probe, key, value, path, None)
            if _meta_value(probe, key) != _meta_value(meta, key):
                issues.append(DataIssue("option_ignored", f"{key}={value} ignored: the file says "
                                        f"{_meta_value(meta, key)}"))
            continue
        _set_meta(meta, key, value, path, None)
    return issues


def _meta_value(meta: RecordingMeta, key: str) -> object:
    return getattr(meta, key) if hasattr(meta, key) and key != "extra" else meta.extra.get(key)


# ------------------------------------------------------------------------------------------ writer

_FMT_T = "%.6f"
_FMT_ACC = "%.5f"
_FMT_GYR = "%.6f"
_FMT_MAG = "%.3f"
FSYNC_INTERVAL_S = 1.0


class RecordingWriter:
    """Write a recording as samples arrive (live mode).

    The file is created with mode 0600 (an existing file is refused unless overwrite=True); metadata and
    header are written at once. Every `append` hands its rows to the operating system before returning,
    so a crash of this process loses nothing appended. A background thread fsyncs the file once a second
    while there is something new (and `flush`/`close` fsync at once), bounding what a power loss can take
    to about a second without putting the disk's latency into the caller's (the live consumer's) path.
    """

    def __init__(self, path: str | os.PathLike, meta: RecordingMeta, with_seq: bool, *,
                 with_mag: bool = False, overwrite: bool = False) -> None:
        self.path = os.fspath(path)
        self.with_seq = with_seq
        self.with_mag = with_mag
        self.rows_written = 0
        self._lines_before_error = 0
        flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if overwrite else os.O_EXCL)
        try:
            self._fd: int | None = os.open(self.path, flags, 0o600)
            if hasattr(os, "fchmod"):  # POSIX: also when the file existed with other modes
                os.fchmod(self._fd, 0o600)
        except FileExistsError:
            raise RecordingError(self.path, "file exists (refusing to overwrite a recording)") from None
        except OSError as exc:
            raise RecordingError(self.path, exc.strerror or str(exc)) from None
        self._row_fmt = self._make_row_format()
        self._unsynced = threading.Event()
        self._closing = threading.Event()
        self._sync_error: OSError | None = None
        self._syncer = threading.Thread(target=self._sync_loop, name="recording-fsync", daemon=True)
        self._syncer.start()
        columns = list(REQUIRED_COLUMNS) + ([SEQ_COLUMN] if with_seq else []) + \
            (list(MAG_COLUMNS) if with_mag else [])
        self._write("\n".join(meta_lines(meta) + [",".join(columns)]) + "\n")

    def _make_row_format(self) -> str:
        parts = [_FMT_T] + [_FMT_ACC] * 3 + [_FMT_GYR] * 3
        parts += ["%d"] if self.with_seq else []
        parts += [_FMT_MAG] * 3 if self.with_mag else []
        return ",".join(parts) + "\n"

    def append(self, samples: Samples) -> None:
        """Append rows; seq (and mag if with_mag) must be present when the writer was opened with them."""
        if self._fd is None:
            raise RecordingError(self.path, "append after close")
        n = len(samples)
        if n == 0:
            return
        cols = [samples.t_s.reshape(n, 1), samples.acc_mps2, samples.gyr_radps]
        if self.with_seq:
            if samples.seq is None:
                raise RecordingError(self.path, "writer expects seq but the samples have none")
            cols.append(samples.seq.reshape(n, 1))
        if self.with_mag:
            if samples.mag_ut is None:
                raise RecordingError(self.path, "writer expects mag_ut but the samples have none")
            cols.append(samples.mag_ut)
        table = np.hstack([np.asarray(c, dtype=np.float64) for c in cols])
        step = 20000
        for start in range(0, n, step):
            part = table[start:start + step]
            try:
                self._write((self._row_fmt * part.shape[0]) % tuple(part.ravel().tolist()))
            except RecordingError:  # e.g. disk full part way: count the whole rows that made it
                self.rows_written += start + self._lines_before_error
                raise
        self.rows_written += n
        self._unsynced.set()
        if self._sync_error is not None:
            raise RecordingError(self.path, self._sync_error.strerror or str(self._sync_error))

    def _sync_loop(self) -> None:
        """Background: fsync once per FSYNC_INTERVAL_S while rows were appended since the last one."""
        while not self._closing.wait(FSYNC_INTERVAL_S):
            if self._unsynced.is_set():
                self._unsynced.clear()
                try:
                    os.fsync(self._fd)  # type: ignore[arg-type]
                except OSError as exc:
                    self._sync_error = exc
                    return

    def _write(self, text: str) -> None:
        """Write all of text; on failure `_lines_before_error` is the number of its lines that reached
        the file whole."""
        data = memoryview(text.encode("utf-8"))
        done = 0
        try:
            while done < len(data):
                done += os.write(self._fd, data[done:])  # type: ignore[arg-type]
        except OSError as exc:
            self._lines_before_error = data[:done].tobytes().count(b"\n")
            raise RecordingError(self.path, exc.strerror or str(exc)) from None

    def flush(self) -> None:
        """Push everything appended so far to the disk (fsync)."""
        if self._fd is None:
            return
        try:
            os.fsync(self._fd)
        except OSError as exc:
            raise RecordingError(self.path, exc.strerror or str(exc)) from None

    def close(self) -> None:
        """fsync and close; calling it again does nothing."""
        if self._fd is None:
            return
        self._closing.set()
        self._syncer.join()
        try:
            self.flush()
        finally:
            os.close(self._fd)
            self._fd = None

    @property
    def closed(self) -> bool:
        return self._fd is None

    def __enter__(self) -> "RecordingWriter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def write_recording(path: str | os.PathLike, meta: RecordingMeta, samples: Samples, *,
                    overwrite: bool = True) -> None:
    """Write a whole recording at once (simulator output); seq/mag columns when the samples have them."""
    with RecordingWriter(path, meta, samples.seq is not None, with_mag=samples.mag_ut is not None,
                         overwrite=overwrite) as writer:
        writer.append(samples)


def write_private_file(path: str | os.PathLike, data: bytes) -> None:
    """Write (or replace) a file derived from health data (report, plot, truth sidecar), readable by the
    user only (mode 0600). RecordingError names the file when it cannot be written."""
    path = os.fspath(path)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            if hasattr(os, "fchmod"):  # also when the file existed with other modes
                os.fchmod(fd, 0o600)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
        finally:
            os.close(fd)
    except OSError as exc:
        raise RecordingError(path, exc.strerror or str(exc)) from None
