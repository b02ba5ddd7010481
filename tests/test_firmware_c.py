"""The firmware's portable C (firmware_notes/portable) against the Python protocol, byte for byte.

The C code and the driver tests/c/hm_driver.c are compiled with the host compiler
(`$CC` or `cc`, C99, -Wall -Wextra -Werror -pedantic); the tests skip when there is none,
or fail when HOLDMON_REQUIRE_CC=1 (as in CI).
"""

from __future__ import annotations

import os
import random
import re
import shutil
import struct
import subprocess
from pathlib import Path
from uuid import UUID

import numpy as np
import pytest

from sensor.protocols import holdmon as hm

ROOT = Path(__file__).resolve().parents[1]
PORTABLE = ROOT / "firmware_notes" / "portable"
DRIVER = ROOT / "tests" / "c" / "hm_driver.c"
CFLAGS = ["-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic", "-O2"]
SANITIZE = ["-fsanitize=address,undefined", "-fno-sanitize-recover=undefined"]

# Worked examples of PROTOCOL.md section 8.1: hex -> (seq, t_first_us, rate, acc, gyro, flags, counts).
EXAMPLES = {
    "A": ("21 69 00 00 40 42 0f 00 d7 ff 78 00 fd 0f 21 00 f9 ff 00 00",
          (0, 1000000, 1, 2, 2, 0x40, [[-41, 120, 4093, 33, -7, 0]])),
    "B": ("22 3c 34 12 15 cd 5b 07 00 08 ff ff 00 00 9c ff c8 00 10 00 00 80 ff 7f 00 04 00 00 00 80 ff 7f",
          (4660, 123456789, 0, 3, 3, 0,
           [[2048, -1, 0, -100, 200, 16], [-32768, 32767, 1024, 0, -32768, 32767]])),
    "C": ("24 15 fe ff 80 e3 ff ff 00 00 00 00 00 20 8f 02 00 00 71 fd 0a 00 f6 ff fe 1f 94 02 01 00 76 fd "
          "14 00 ec ff fc 1f 99 02 02 00 7b fd 1e 00 e2 ff fa 1f 9e 02 03 00 80 fd",
          (65534, 4294960000, 1, 1, 1, 0,
           [[0, 0, 8192, 655, 0, -655], [10, -10, 8190, 660, 1, -650],
            [20, -20, 8188, 665, 2, -645], [30, -30, 8186, 670, 3, -640]])),
    "D": ("24 15 06 00 00 1c 01 00 28 00 d8 ff f8 1f ff ff 00 00 01 00 32 00 ce ff f6 1f fe ff 00 00 02 00 "
          "3c 00 c4 ff f4 1f fd ff 00 00 03 00 46 00 ba ff f2 1f fc ff 00 00 04 00",
          (6, 72704, 1, 1, 1, 0,
           [[40, -40, 8184, -1, 0, 1], [50, -50, 8182, -2, 0, 2],
            [60, -60, 8180, -3, 0, 3], [70, -70, 8178, -4, 0, 4]])),
    "E": ("22 95 0e 00 80 54 02 00 50 00 b0 ff f0 1f fb ff 00 00 05 00 5a 00 a6 ff ee 1f fa ff 00 00 06 00",
          (14, 152704, 1, 1, 1, 0x80, [[80, -80, 8176, -5, 0, 5], [90, -90, 8174, -6, 0, 6]])),
}

# Writes and the replies a fresh device (stopped, defaults, IMU present) gives, PROTOCOL.md 8.2/8.3.
COMMAND_HEX = ["01", "02", "03 00", "03 01", "03 02", "03 03", "04 00 00", "04 02 02", "04 03 03",
               "05 05", "05 00", "06"]


def _compiler() -> str | None:
    return os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")


def _compile(cc: str, out: Path, extra: list[str]) -> subprocess.CompletedProcess:
    cmd = [cc, *CFLAGS, *extra, "-I", str(PORTABLE), str(PORTABLE / "holdmon_packet.c"), str(DRIVER),
           "-o", str(out)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def driver(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The compiled driver (with address/UB sanitizers where the toolchain has them)."""
    cc = _compiler()
    if cc is None:
        reason = "no C compiler: set $CC or install cc/gcc/clang to test firmware_notes/portable"
        if os.environ.get("HOLDMON_REQUIRE_CC") == "1":
            pytest.fail(f"C compiler required (HOLDMON_REQUIRE_CC=1) but {reason}")
        pytest.skip(reason)
    out = tmp_path_factory.mktemp("hm_c") / "hm_driver"
    result = _compile(cc, out, SANITIZE)
    if result.returncode != 0:
        result = _compile(cc, out, [])
    assert result.returncode == 0, f"C build failed:\n{result.stdout}\n{result.stderr}"
    return out


def _run(driver: Path, requests: list[str]) -> list[list[str]]:
    """One driver process for all requests; returns the answer lines of each request."""
    proc = subprocess.run([str(driver)], input="\n".join(requests) + "\n", capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    blocks: list[list[str]] = [[]]
    for line in proc.stdout.splitlines():
        if line == ".":
            blocks.append([])
        else:
            blocks[-1].append(line)
    assert blocks[-1] == []
    assert len(blocks) - 1 == len(requests)
    return blocks[:-1]


def _data_request(seq: int, t_us: int, rate: int, acc: int, gyro: int, flags: int, rows: list[list[int]]) -> str:
    values = " ".join(str(v) for row in rows for v in row)
    return f"D {seq} {t_us} {len(rows)} {rate} {acc} {gyro} {flags} {values}"


def _packet(line: str) -> bytes:
    tag, hex_text = line.split()
    assert tag == "P"
    return bytes.fromhex(hex_text)


def test_c_sources_compile_without_warnings(driver: Path) -> None:
    assert driver.exists()


def test_c_encoder_matches_worked_examples(driver: Path) -> None:
    protocol = " ".join(Path(ROOT / "firmware_notes" / "PROTOCOL.md").read_text().split())
    names = sorted(EXAMPLES)
    answers = _run(driver, [_data_request(*EXAMPLES[name][1]) for name in names])
    for name, answer in zip(names, answers):
        hex_text = EXAMPLES[name][0]
        assert hex_text in protocol
        assert answer == ["P " + hex_text.replace(" ", "")], name


def test_python_decodes_c_packets_for_random_inputs(driver: Path) -> None:
    rng = random.Random(20261124)
    cases = []
    for _ in range(400):
        n = rng.randint(1, hm.MAX_SAMPLES)
        rows = [[rng.randint(-32768, 32767) for _ in range(6)] for _ in range(n)]
        flags = rng.choice([0, 0x40, 0x80, 0xC0])
        cases.append((rng.randint(0, 65535), rng.randint(0, 2**32 - 1), rng.randint(0, 3), rng.randint(0, 3),
                      rng.randint(0, 3), flags, rows))
    answers = _run(driver, [_data_request(*case) for case in cases])
    for (seq, t_us, rate, acc, gyro, flags, rows), answer in zip(cases, answers):
        header, acc_counts, gyr_counts = hm.parse_data_packet(_packet(answer[0]))
        assert header == hm.DataHeader(seq=seq, t_first_us=t_us, n=len(rows), rate_code=rate, acc_code=acc,
                                       gyro_code=gyro, stream_start=bool(flags & 0x40),
                                       device_drop=bool(flags & 0x80))
        both = np.concatenate([acc_counts, gyr_counts], axis=1)
        assert both.tolist() == rows
        python_bytes = hm.encode_data_packet(header, np.array(rows)[:, :3], np.array(rows)[:, 3:])
        assert _packet(answer[0]) == python_bytes


def test_c_encoder_rejects_invalid_headers(driver: Path) -> None:
    requests = [
        "D 0 0 0 1 2 2 0",  # n = 0
        "D 0 0 20 1 2 2 0 " + " ".join(["0"] * 120),  # n = 20
        "D 0 0 1 4 2 2 0 1 2 3 4 5 6",  # rate code 4
        "D 0 0 1 1 2 2 1 1 2 3 4 5 6",  # reserved flag bit
    ]
    assert _run(driver, requests) == [["ERR"]] * 4


def test_c_parser_accepts_python_commands(driver: Path) -> None:
    answers = _run(driver, ["C " + h.replace(" ", "") for h in COMMAND_HEX])
    for hex_text, answer in zip(COMMAND_HEX, answers):
        cmd = hm.parse_command(bytes.fromhex(hex_text))
        assert cmd.status == hm.STATUS_OK
        params = list(cmd.params.values())
        assert answer == [f"C {cmd.opcode} 0 {len(params)} {' '.join(str(p) for p in (params + [0, 0])[:2])}"]


def test_c_parser_agrees_with_python_on_garbage(driver: Path) -> None:
    rng = random.Random(7)
    writes = [b""] + [bytes(rng.randint(0, 255) for _ in range(rng.randint(1, 5))) for _ in range(300)]
    writes += [bytes([op]) + bytes(rng.randint(0, 8) for _ in range(k)) for op in range(0, 8) for k in range(4)]
    answers = _run(driver, ["C " + (w.hex() or "-") for w in writes])
    for write, answer in zip(writes, answers):
        cmd = hm.parse_command(write)
        params = list(cmd.params.values()) if cmd.status in (hm.STATUS_OK, hm.STATUS_BAD_VALUE) else []
        expected = f"C {cmd.opcode} {cmd.status} {len(params)} {' '.join(str(p) for p in (params + [0, 0])[:2])}"
        assert answer == [expected], write.hex()


def test_c_device_replies_equal_python_replies(driver: Path) -> None:
    """A device session: each reply is byte-equal to hm.encode_reply with the expected state."""
    session = [
        ("B 1 1", None),
        ("M 247", None),
        ("W 0307", hm.encode_reply(hm.OP_SET_RATE, hm.STATUS_BAD_VALUE, rate_code=1)),
        ("W 0302", hm.encode_reply(hm.OP_SET_RATE, hm.STATUS_OK, rate_code=2)),
        ("W 0402", hm.encode_reply(hm.OP_SET_RANGES, hm.STATUS_BAD_LENGTH, acc_code=2, gyro_code=2)),
        ("W 040303", hm.encode_reply(hm.OP_SET_RANGES, hm.STATUS_OK, acc_code=3, gyro_code=3)),
        ("W 0505", hm.encode_reply(hm.OP_IDENTIFY, hm.STATUS_OK)),
        ("W 7f", hm.encode_reply(0x7F, hm.STATUS_UNKNOWN_OPCODE)),
        ("W -", hm.encode_reply(0x00, hm.STATUS_BAD_LENGTH)),
        ("W 01", hm.encode_reply(hm.OP_START, hm.STATUS_OK)),
        ("W 01", hm.encode_reply(hm.OP_START, hm.STATUS_OK)),
        ("W 06", hm.encode_reply(
            hm.OP_READ_STATUS, hm.STATUS_OK, protocol_version=1, board_id=1, state=0b111, config=0x3E,
            battery_pct=87, samples_per_packet=8, att_mtu=247, conn_interval_1250us=12, next_seq=0,
            dropped_samples=0)),
        ("W 02", hm.encode_reply(hm.OP_STOP, hm.STATUS_OK)),
        ("B 0 1", None),
        ("W 01", hm.encode_reply(hm.OP_START, hm.STATUS_IMU_ERROR)),
        ("W 0500", hm.encode_reply(hm.OP_IDENTIFY, hm.STATUS_OK)),
        ("W 06", hm.encode_reply(
            hm.OP_READ_STATUS, hm.STATUS_OK, protocol_version=1, board_id=1, state=0, config=0x3E,
            battery_pct=87, samples_per_packet=8, att_mtu=247, conn_interval_1250us=12, next_seq=0,
            dropped_samples=0)),
    ]
    answers = _run(driver, [request for request, _ in session])
    for (request, reply), answer in zip(session, answers):
        assert answer == ([] if reply is None else ["R " + reply.hex()]), request
    status = hm.parse_reply(bytes.fromhex(answers[11][0][2:]))
    assert status.fields["config"] == 0x3E  # 200 Hz, +-16 g, +-2000 deg/s


def _imu_times(rng: random.Random, start_us: int, end_us: int, odr_hz: float) -> list[int]:
    """IMU sample times at odr_hz with +-50 us jitter."""
    times, t = [], float(start_us)
    while t < end_us:
        times.append(int(t) + rng.randint(-50, 50))
        t += 1e6 / odr_hz
    return sorted(times)


def _model_grid(times: list[int], period_us: int) -> list[tuple[int, int]]:
    """What the firmware's grid sampler must do: (slot index, IMU sample index) for each kept slot."""
    kept, due, slot = [], times[0], 0
    for i, t in enumerate(times):
        if t < due:
            continue
        missed = (t - due) // period_us
        slot += missed
        due += missed * period_us
        kept.append((slot, i))
        slot += 1
        due += period_us
    return kept


@pytest.mark.parametrize(("rate_code", "odr_hz", "mtu"), [(1, 208.0, 247), (3, 833.0, 247), (0, 104.0, 23),
                                                         (2, 416.0, 185)])
def test_c_stream_on_exact_grid_with_exact_loss(driver: Path, rate_code: int, odr_hz: float, mtu: int) -> None:
    """IMU samples at the IMU's own rate with jitter, a 60 ms IMU stall and refused notifications:
    the Python decoder sees an exact time grid, and its loss count equals the device's drop count."""
    rng = random.Random(rate_code)
    period = hm.sample_period_us(rate_code)
    t0 = 2**32 - 700_000  # the clock wraps during the run
    times = _imu_times(rng, t0, t0 + 1_000_000, odr_hz)
    times = [t for t in times if not t0 + 400_000 <= t < t0 + 460_000]  # IMU stall
    requests = [f"M {mtu}", f"W 03{rate_code:02x}", "W 01"]
    refuse_from, refuse_to = len(times) * 2 // 3, len(times) * 2 // 3 + 20
    for i, t in enumerate(times):
        if i == refuse_from:
            requests.append("B 1 0")
        if i == refuse_to:
            requests.append("B 1 1")
        requests.append(f"X {t % 2**32} {i % 32768} {-i % 32768} 1 2 3 {i // 32768}")
    requests += ["W 02", "W 06"]
    answers = _run(driver, requests)
    sent = [bytes.fromhex(line[2:]) for block in answers for line in block if line.startswith("P ")]
    refused = [bytes.fromhex(line[2:]) for block in answers for line in block if line.startswith("Q ")]
    assert refused, "the refused window produced no packet"
    status = hm.parse_reply(bytes.fromhex(answers[-1][0][2:]))

    dec = hm.HoldmonDecoder()
    packets = [p for payload in sent for p in dec.decode(payload)]
    seq = np.concatenate([p.sample_seq for p in packets])
    t_s = np.concatenate([p.sensor_time_s for p in packets])
    imu_index = np.concatenate([p.acc_mps2[:, 0] / hm.acc_scale_mps2(2) for p in packets]).round().astype(int)

    model = _model_grid(times, period)
    kept = {slot: i for slot, i in model}
    delivered = seq - seq[0]
    assert [kept[s] % 32768 for s in delivered] == imu_index.tolist()
    np.testing.assert_allclose(t_s - t_s[0], delivered * period / 1e6, atol=1e-9)
    assert dec.lost_samples == status.fields["dropped_samples"] > 0
    assert dec.lost_samples == model[-1][0] + 1 - len(seq)
    assert hm.parse_data_packet(sent[0])[0].stream_start
    n_expected = hm.samples_per_packet(hm.RATE_HZ_BY_CODE[rate_code], mtu)
    assert max(hm.parse_data_packet(s)[0].n for s in sent) == n_expected
    assert status.fields["next_seq"] == (model[-1][0] + 1) % 65536
    assert status.fields["state"] & 1 == 0


def test_stop_flushes_partial_packet_before_reply(driver: Path) -> None:
    answers = _run(driver, ["M 247", "W 01", "X 1000 1 2 3 4 5 6", "X 11000 1 2 3 4 5 6", "W 02"])
    assert answers[2] == [] and answers[3] == []
    stop = answers[4]
    assert len(stop) == 2 and stop[0].startswith("P ") and stop[1] == "R 8200"
    header, acc, _ = hm.parse_data_packet(bytes.fromhex(stop[0][2:]))
    assert (header.n, header.seq, header.t_first_us, header.stream_start) == (2, 0, 1000, True)


def test_rate_change_while_streaming_marks_stream_start(driver: Path) -> None:
    requests = ["M 23", "W 01", "X 0 0 0 0 0 0 0", "X 10000 0 0 0 0 0 0", "W 0303",
                "X 500000 0 0 0 0 0 0", "X 502500 0 0 0 0 0 0"]
    answers = _run(driver, requests)
    first = hm.parse_data_packet(_packet(answers[2][0]))[0]
    second = hm.parse_data_packet(_packet(answers[3][0]))[0]
    after = hm.parse_data_packet(_packet(answers[5][0]))[0]
    last = hm.parse_data_packet(_packet(answers[6][0]))[0]
    assert answers[4] == ["R 830003"]
    assert (first.stream_start, second.stream_start, after.stream_start, last.stream_start) == (
        True, False, True, False)
    assert (after.seq, after.rate_code, last.t_first_us - after.t_first_us) == (2, 3, 2500)
    dec = hm.HoldmonDecoder()
    for payload in (answers[2][0], answers[3][0], answers[5][0], answers[6][0]):
        dec.decode(_packet(payload))
    assert dec.lost_samples == 0


def test_c_samples_per_packet_equals_python(driver: Path) -> None:
    cases = [(code, mtu) for code in range(4) for mtu in (23, 24, 34, 35, 47, 65, 104, 185, 247, 251, 512)]
    answers = _run(driver, [f"N {code} {mtu}" for code, mtu in cases])
    for (code, mtu), answer in zip(cases, answers):
        assert answer == [f"N {hm.samples_per_packet(hm.RATE_HZ_BY_CODE[code], mtu)}"]


def _rescale(raw: int, num: int, den: int) -> int:
    """round(raw * num / den), halves away from zero, saturated to int16 (exact integer arithmetic)."""
    q = (abs(raw * num) * 2 + den) // (2 * den)
    return max(-32768, min(32767, q if raw * num >= 0 else -q))


def test_c_rescale_rounds_and_saturates(driver: Path) -> None:
    # LSM6DS3TR-C gyro: 70 mdps/LSB at +-2000 dps -> 3584/3125 protocol counts per raw count.
    rng = random.Random(3)
    cases = [(1000, 3584, 3125), (28571, 3584, 3125), (-28572, 3584, 3125), (-28570, 3584, 3125),
             (3, 1, 2), (-3, 1, 2), (0, 5, 7), (32767, 1, 1), (-32768, 1, 1)]
    cases += [(rng.randint(-32768, 32767), rng.randint(1, 5000), rng.randint(1, 5000)) for _ in range(200)]
    answers = _run(driver, [f"K {raw} {num} {den}" for raw, num, den in cases])
    assert answers == [[f"K {_rescale(*case)}"] for case in cases]
    assert [a[0] for a in answers[:4]] == ["K 1147", "K 32767", "K -32768", "K -32766"]


def _c_defines() -> dict[str, int]:
    """Integer #defines and enum constants of holdmon_packet.h."""
    text = (PORTABLE / "holdmon_packet.h").read_text()
    values = {name: int(value, 0) for name, value in re.findall(r"#define (HM_\w+) (0x[0-9A-Fa-f]+|\d+)u?\b", text)}
    values.update({name: int(value, 0) for name, value in re.findall(r"\b(HM_\w+) = (0x[0-9A-Fa-f]+|\d+)", text)})
    return values


def test_c_constants_match_python() -> None:
    c = _c_defines()
    assert c["HM_PROTOCOL_VERSION"] == hm.PROTOCOL_VERSION
    assert (c["HM_HEADER_SIZE"], c["HM_SAMPLE_SIZE"], c["HM_MAX_SAMPLES"]) == (
        hm.HEADER_SIZE, hm.SAMPLE_SIZE, hm.MAX_SAMPLES)
    assert c["HM_MAX_REPLY"] == max(2 + sum(struct.calcsize("<" + f) for _, _, f in fields)
                                    for fields in hm.REPLY_FIELDS.values())
    assert c["HM_REPLY_FLAG"] == hm.REPLY_FLAG
    assert c["HM_TARGET_PACKET_RATE_HZ"] == hm.TARGET_PACKET_RATE_HZ
    for op in ("START", "STOP", "SET_RATE", "SET_RANGES", "IDENTIFY", "READ_STATUS"):
        assert c[f"HM_OP_{op}"] == getattr(hm, f"OP_{op}")
    for code, name in hm.STATUS_NAMES.items():
        assert c[f"HM_STATUS_{name.upper()}"] == code
    assert c["HM_FLAG_STREAM_START"] == 1 << hm.HEADER_BITS["stream_start"][1]
    assert c["HM_FLAG_DEVICE_DROP"] == 1 << hm.HEADER_BITS["device_drop"][1]
    for name, bit in hm.STATE_BITS.items():
        assert c[f"HM_STATE_{name.upper()}"] == 1 << bit
    assert (c["HM_DEFAULT_RATE_CODE"], c["HM_DEFAULT_ACC_CODE"], c["HM_DEFAULT_GYRO_CODE"]) == (
        hm.DEFAULT_RATE_CODE, hm.DEFAULT_ACC_CODE, hm.DEFAULT_GYRO_CODE)
    assert {c["HM_BOARD_UNSPECIFIED"], c["HM_BOARD_XIAO_SENSE"], c["HM_BOARD_NANO33_SENSE_REV2"]} == set(
        hm.BOARD_NAMES)
    assert c["HM_BATTERY_UNKNOWN"] == hm.BATTERY_UNKNOWN


def test_sketch_uuids_match_protocol() -> None:
    """The XIAO sketch lists UUID bytes least significant first; the Nano sketch uses the strings."""
    xiao = (ROOT / "firmware_notes" / "holdmon_xiao" / "holdmon_xiao.ino").read_text()
    for name, uuid in (("SERVICE", hm.SERVICE_UUID), ("DATA", hm.DATA_UUID), ("CONTROL", hm.CONTROL_UUID)):
        match = re.search(rf"UUID_{name}\[16\] = \{{([^}}]*)\}}", xiao)
        assert match, name
        listed = bytes(int(b, 16) for b in re.findall(r"0x([0-9a-fA-F]{2})", match.group(1)))
        assert listed == UUID(uuid).bytes[::-1], name
    nano = (ROOT / "firmware_notes" / "holdmon_nano33" / "holdmon_nano33.ino").read_text()
    for uuid in (hm.SERVICE_UUID, hm.DATA_UUID, hm.CONTROL_UUID):
        assert f'"{uuid}"' in nano


def test_c_device_answers_every_write(driver: Path) -> None:
    """Random writes while streaming: one reply each, parseable, with the status the parser predicts."""
    rng = random.Random(11)
    writes = [bytes(rng.randint(0, 255) for _ in range(rng.randint(0, 6))) for _ in range(300)]
    writes += [bytes([rng.randint(1, 6)]) + bytes(rng.randint(0, 4) for _ in range(rng.randint(0, 2)))
               for _ in range(300)]
    requests = ["M 247", "W 01"]
    for k, write in enumerate(writes):
        requests.append(f"X {k * 2400} 1 2 3 4 5 6")
        requests.append("W " + (write.hex() or "-"))
    answers = _run(driver, requests)
    for write, answer in zip(writes, answers[3::2]):
        replies = [line for line in answer if line.startswith("R ")]
        assert len(replies) == 1 and answer[-1] == replies[0], write.hex()
        reply = hm.parse_reply(bytes.fromhex(replies[0][2:]))
        expected = hm.parse_command(write)
        assert (reply.opcode, reply.status) == ((expected.opcode | 0x80) & 0x7F, expected.status), write.hex()


def test_cxx_sketch_links_against_c_code(tmp_path: Path) -> None:
    """The sketches are C++: the header's extern "C" must let them link against the C object."""
    cc, cxx = _compiler(), os.environ.get("CXX") or shutil.which("c++") or shutil.which("g++")
    if cc is None or cxx is None:
        reason = "no C and C++ compiler pair (cc and c++) to link the C code into a C++ program"
        if os.environ.get("HOLDMON_REQUIRE_CC") == "1" and cc is None:
            pytest.fail(f"C compiler required (HOLDMON_REQUIRE_CC=1) but {reason}")
        pytest.skip(reason)
    obj, exe = tmp_path / "holdmon_packet.o", tmp_path / "hm_cxx"
    steps = [
        [cc, *CFLAGS, "-c", str(PORTABLE / "holdmon_packet.c"), "-o", str(obj)],
        [cxx, "-std=c++11", "-Wall", "-Wextra", "-Werror", "-pedantic", "-I", str(PORTABLE),
         str(ROOT / "tests" / "c" / "hm_cxx_link.cpp"), str(obj), "-o", str(exe)],
    ]
    for cmd in steps:
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, f"{' '.join(cmd)}\n{result.stderr}"
    run = subprocess.run([str(exe)], capture_output=True, text=True, timeout=30)
    assert run.returncode == 0
    assert run.stdout.strip() == EXAMPLES["A"][0].replace(" ", "")
