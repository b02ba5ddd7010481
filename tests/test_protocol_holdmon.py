"""holdmon protocol v1: worked examples of firmware_notes/PROTOCOL.md byte for byte, round trips, bad input."""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from sensor.errors import ConfigError, DataError, DecodeError
from sensor.protocols import holdmon as hm

PROTOCOL_MD = Path(__file__).resolve().parents[1] / "firmware_notes" / "PROTOCOL.md"

# The worked examples of PROTOCOL.md section 8 (also used by tests/test_firmware_c.py).
PACKET_A = "21 69 00 00 40 42 0f 00 d7 ff 78 00 fd 0f 21 00 f9 ff 00 00"
PACKET_B = (
    "22 3c 34 12 15 cd 5b 07 00 08 ff ff 00 00 9c ff c8 00 10 00 00 80 ff 7f 00 04 00 00 00 80 ff 7f"
)
PACKET_C = (
    "24 15 fe ff 80 e3 ff ff 00 00 00 00 00 20 8f 02 00 00 71 fd 0a 00 f6 ff fe 1f 94 02 01 00 76 fd "
    "14 00 ec ff fc 1f 99 02 02 00 7b fd 1e 00 e2 ff fa 1f 9e 02 03 00 80 fd"
)
PACKET_D = (
    "24 15 06 00 00 1c 01 00 28 00 d8 ff f8 1f ff ff 00 00 01 00 32 00 ce ff f6 1f fe ff 00 00 02 00 "
    "3c 00 c4 ff f4 1f fd ff 00 00 03 00 46 00 ba ff f2 1f fc ff 00 00 04 00"
)
PACKET_E = (
    "22 95 0e 00 80 54 02 00 50 00 b0 ff f0 1f fb ff 00 00 05 00 5a 00 a6 ff ee 1f fa ff 00 00 06 00"
)

# (header, acc counts, gyro counts) of each example, as PROTOCOL.md decodes them.
EXAMPLES = {
    "A": (
        PACKET_A,
        hm.DataHeader(seq=0, t_first_us=1_000_000, n=1, rate_code=1, acc_code=2, gyro_code=2,
                      stream_start=True),
        [[-41, 120, 4093]],
        [[33, -7, 0]],
    ),
    "B": (
        PACKET_B,
        hm.DataHeader(seq=4660, t_first_us=123456789, n=2, rate_code=0, acc_code=3, gyro_code=3),
        [[2048, -1, 0], [-32768, 32767, 1024]],
        [[-100, 200, 16], [0, -32768, 32767]],
    ),
    "C": (
        PACKET_C,
        hm.DataHeader(seq=65534, t_first_us=4294960000, n=4, rate_code=1, acc_code=1, gyro_code=1),
        [[0, 0, 8192], [10, -10, 8190], [20, -20, 8188], [30, -30, 8186]],
        [[655, 0, -655], [660, 1, -650], [665, 2, -645], [670, 3, -640]],
    ),
    "D": (
        PACKET_D,
        hm.DataHeader(seq=6, t_first_us=72704, n=4, rate_code=1, acc_code=1, gyro_code=1),
        [[40, -40, 8184], [50, -50, 8182], [60, -60, 8180], [70, -70, 8178]],
        [[-1, 0, 1], [-2, 0, 2], [-3, 0, 3], [-4, 0, 4]],
    ),
    "E": (
        PACKET_E,
        hm.DataHeader(seq=14, t_first_us=152704, n=2, rate_code=1, acc_code=1, gyro_code=1,
                      device_drop=True),
        [[80, -80, 8176], [90, -90, 8174]],
        [[-5, 0, 5], [-6, 0, 6]],
    ),
}

COMMAND_EXAMPLES = [
    (hm.encode_start(), "01"),
    (hm.encode_stop(), "02"),
    (hm.encode_set_rate(50), "03 00"),
    (hm.encode_set_rate(100), "03 01"),
    (hm.encode_set_rate(200), "03 02"),
    (hm.encode_set_rate(400), "03 03"),
    (hm.encode_set_ranges(2, 250), "04 00 00"),
    (hm.encode_set_ranges(8, 1000), "04 02 02"),
    (hm.encode_set_ranges(16, 2000), "04 03 03"),
    (hm.encode_identify(5), "05 05"),
    (hm.encode_identify(0), "05 00"),
    (hm.encode_read_status(), "06"),
]

STATUS_FIELDS = dict(
    protocol_version=1, board_id=1, state=0b011, config=0x29, battery_pct=87, samples_per_packet=4,
    att_mtu=247, conn_interval_1250us=12, next_seq=4660, dropped_samples=3,
)
# (write, reply hex, (opcode, status, fields)) of PROTOCOL.md section 8.3
REPLY_EXAMPLES = [
    ("01", "81 00", (hm.OP_START, hm.STATUS_OK, {})),
    ("02", "82 00", (hm.OP_STOP, hm.STATUS_OK, {})),
    ("03 02", "83 00 02", (hm.OP_SET_RATE, hm.STATUS_OK, {"rate_code": 2})),
    ("03 07", "83 03 01", (hm.OP_SET_RATE, hm.STATUS_BAD_VALUE, {"rate_code": 1})),
    ("04 02 02", "84 00 02 02", (hm.OP_SET_RANGES, hm.STATUS_OK, {"acc_code": 2, "gyro_code": 2})),
    ("04 02", "84 02 02 02", (hm.OP_SET_RANGES, hm.STATUS_BAD_LENGTH, {"acc_code": 2, "gyro_code": 2})),
    ("05 05", "85 00", (hm.OP_IDENTIFY, hm.STATUS_OK, {})),
    ("7f", "ff 01", (0x7F, hm.STATUS_UNKNOWN_OPCODE, {})),
    ("", "80 02", (0x00, hm.STATUS_BAD_LENGTH, {})),
    ("01", "81 04", (hm.OP_START, hm.STATUS_IMU_ERROR, {})),
    ("06", "86 00 01 01 03 29 57 04 f7 00 0c 00 34 12 03 00 00 00",
     (hm.OP_READ_STATUS, hm.STATUS_OK, STATUS_FIELDS)),
]


def _b(hex_text: str) -> bytes:
    return bytes.fromhex(hex_text)


def _protocol_text() -> str:
    """PROTOCOL.md with whitespace collapsed, so wrapped hex lines match one-line literals."""
    return re.sub(r"\s+", " ", PROTOCOL_MD.read_text(encoding="utf-8"))


# ----------------------------------------------------------------------------- profile


def test_profile_fields() -> None:
    p = hm.PROFILE
    assert p.name == "holdmon"
    assert p.service_uuid == "ff190001-dfb9-4379-ac00-2d08c754cb7c"
    assert p.notify_uuid == "ff190002-dfb9-4379-ac00-2d08c754cb7c"
    assert p.write_uuid == "ff190003-dfb9-4379-ac00-2d08c754cb7c"
    assert p.extra_notify_uuids == ("ff190003-dfb9-4379-ac00-2d08c754cb7c",)
    assert p.name_prefixes == ("holdmon-",)
    assert p.rates_hz == (50.0, 100.0, 200.0, 400.0)
    assert p.has_sample_counter
    assert isinstance(p.make_decoder(), hm.HoldmonDecoder)


def test_uuids_are_in_protocol_md() -> None:
    text = _protocol_text()
    for uuid in (hm.SERVICE_UUID, hm.DATA_UUID, hm.CONTROL_UUID):
        assert uuid in text


@pytest.mark.parametrize(
    ("rate_hz", "expected"),
    [(50, b"\x03\x00"), (100, b"\x03\x01"), (120, b"\x03\x01"), (190, b"\x03\x02"), (1000, b"\x03\x03"),
     (10, b"\x03\x00")],
)
def test_start_commands_pick_nearest_rate(rate_hz: float, expected: bytes) -> None:
    assert hm.PROFILE.start_commands(rate_hz) == [(hm.CONTROL_UUID, expected), (hm.CONTROL_UUID, b"\x01")]
    assert hm.PROFILE.stop_commands() == [(hm.CONTROL_UUID, b"\x02")]


@pytest.mark.parametrize("bad", [0.0, -5.0, float("nan"), float("inf")])
def test_rate_code_rejects_nonsense(bad: float) -> None:
    with pytest.raises(ConfigError):
        hm.rate_code_for(bad)


def test_samples_per_packet_table() -> None:
    """PROTOCOL.md section 4: MTU 23 -> 1 sample; MTU 247 -> 2/4/8/16; MTU 185 at 400 Hz -> 14."""
    assert [hm.samples_per_packet(r, 23) for r in (50, 100, 200, 400)] == [1, 1, 1, 1]
    assert [hm.samples_per_packet(r, 247) for r in (50, 100, 200, 400)] == [2, 4, 8, 16]
    assert hm.samples_per_packet(400, 185) == 14
    assert hm.samples_per_packet(400, 517) == 16
    with pytest.raises(ConfigError):
        hm.samples_per_packet(100, 22)


def test_scale_factors() -> None:
    assert hm.acc_scale_mps2(3) == 16 * 9.80665 / 32768
    assert hm.gyro_scale_radps(0) == math.radians(250) / 32768
    assert [hm.sample_period_us(c) for c in range(4)] == [20000, 10000, 5000, 2500]


# ----------------------------------------------------------------------------- worked examples


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_worked_example_encodes_byte_exact(name: str) -> None:
    hex_text, header, acc, gyr = EXAMPLES[name]
    assert hex_text in _protocol_text()
    assert hm.encode_data_packet(header, np.array(acc), np.array(gyr)) == _b(hex_text)


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_worked_example_parses(name: str) -> None:
    hex_text, header, acc, gyr = EXAMPLES[name]
    got_header, got_acc, got_gyr = hm.parse_data_packet(_b(hex_text))
    assert got_header == header
    assert got_acc.tolist() == acc
    assert got_gyr.tolist() == gyr


def test_example_a_decodes_to_si() -> None:
    [p] = hm.HoldmonDecoder().decode(_b(PACKET_A))
    acc_lsb = 8 * 9.80665 / 32768
    gyr_lsb = math.radians(1000) / 32768
    np.testing.assert_allclose(p.acc_mps2, [[-41 * acc_lsb, 120 * acc_lsb, 4093 * acc_lsb]], rtol=1e-15)
    np.testing.assert_allclose(p.gyr_radps, [[33 * gyr_lsb, -7 * gyr_lsb, 0.0]], rtol=1e-15)
    np.testing.assert_allclose(p.acc_mps2, [[-0.0982, 0.2873, 9.7995]], atol=5e-5)
    np.testing.assert_allclose(np.degrees(p.gyr_radps), [[1.0071, -0.2136, 0.0]], atol=5e-5)
    assert p.sample_seq.tolist() == [0]
    assert p.sensor_time_s.tolist() == [1.0]
    assert p.packet_seq == 0


def test_example_b_extremes() -> None:
    [p] = hm.HoldmonDecoder().decode(_b(PACKET_B))
    np.testing.assert_allclose(p.acc_mps2[1], [-156.9064, 156.9016, 4.9033], atol=5e-5)
    np.testing.assert_allclose(np.degrees(p.gyr_radps[1]), [0.0, -2000.0, 1999.9390], atol=5e-5)
    np.testing.assert_allclose(p.sensor_time_s, [123.456789, 123.476789], rtol=0, atol=1e-9)
    assert p.sample_seq.tolist() == [4660, 4661]


def test_examples_c_d_e_wrap_and_count_loss_exactly() -> None:
    dec = hm.HoldmonDecoder()
    [c] = dec.decode(_b(PACKET_C))
    assert c.sample_seq.tolist() == [65534, 65535, 65536, 65537]
    np.testing.assert_allclose(c.sensor_time_s, [4294.96, 4294.97, 4294.98, 4294.99], atol=1e-9)
    assert dec.lost_samples == 0
    [d] = dec.decode(_b(PACKET_D))
    assert d.packet_seq == 6
    assert d.sample_seq.tolist() == [65542, 65543, 65544, 65545]
    np.testing.assert_allclose(d.sensor_time_s, [4295.04, 4295.05, 4295.06, 4295.07], atol=1e-9)
    assert dec.lost_samples == 4
    [e] = dec.decode(_b(PACKET_E))
    assert e.sample_seq.tolist() == [65550, 65551]
    np.testing.assert_allclose(e.sensor_time_s, [4295.12, 4295.13], atol=1e-9)
    assert dec.lost_samples == 8
    np.testing.assert_allclose(np.degrees(e.gyr_radps[1]), [-0.0916, 0.0, 0.0916], atol=5e-5)


@pytest.mark.parametrize(("encoded", "hex_text"), COMMAND_EXAMPLES)
def test_command_bytes(encoded: bytes, hex_text: str) -> None:
    assert encoded == _b(hex_text)
    assert f"`{hex_text}`" in _protocol_text()
    assert hm.parse_command(encoded).status == hm.STATUS_OK


@pytest.mark.parametrize(("write", "reply_hex", "decoded"), REPLY_EXAMPLES)
def test_reply_examples(write: str, reply_hex: str, decoded: tuple[int, int, dict]) -> None:
    opcode, status, fields = decoded
    assert hm.encode_reply(opcode, status, **fields) == _b(reply_hex)
    reply = hm.parse_reply(_b(reply_hex))
    assert (reply.opcode, reply.status, reply.fields) == (opcode, status, fields)
    assert f"`{reply_hex}`" in _protocol_text()
    if status in (hm.STATUS_OK, hm.STATUS_BAD_VALUE, hm.STATUS_BAD_LENGTH, hm.STATUS_UNKNOWN_OPCODE):
        cmd = hm.parse_command(_b(write))
        assert (cmd.opcode, cmd.status) == (opcode, status)


def test_unknown_opcode_with_bit7_is_a_two_byte_reply() -> None:
    """PROTOCOL.md 8.3: a write `84 02 02` (not an opcode) is answered `84 01`, not a SET_RANGES reply."""
    assert "`84 01`" in _protocol_text()
    cmd = hm.parse_command(_b("84 02 02"))
    assert (cmd.opcode, cmd.status) == (0x84, hm.STATUS_UNKNOWN_OPCODE)
    assert hm.encode_reply(cmd.opcode, cmd.status) == _b("84 01")
    reply = hm.parse_reply(_b("84 01"))
    assert (reply.opcode, reply.status, reply.fields) == (hm.OP_SET_RANGES, hm.STATUS_UNKNOWN_OPCODE, {})
    with pytest.raises(DecodeError):
        hm.parse_reply(_b("84 01 02 02"))


def test_decoder_routes_replies_aside() -> None:
    dec = hm.HoldmonDecoder()
    assert dec.decode(_b("83 00 02")) == []
    [p] = dec.decode(_b(PACKET_A))
    assert len(p) == 1
    assert [(r.opcode, r.status_name, r.fields) for r in dec.replies] == [(3, "ok", {"rate_code": 2})]


@pytest.mark.parametrize(
    ("payload", "status", "params"),
    [
        (b"\x03\x04", hm.STATUS_BAD_VALUE, {"rate_code": 4}),
        (b"\x04\x04\x00", hm.STATUS_BAD_VALUE, {"acc_code": 4, "gyro_code": 0}),
        (b"\x04\x00\x09", hm.STATUS_BAD_VALUE, {"acc_code": 0, "gyro_code": 9}),
        (b"\x01\x00", hm.STATUS_BAD_LENGTH, {}),
        (b"\x05", hm.STATUS_BAD_LENGTH, {}),
        (b"\x00", hm.STATUS_UNKNOWN_OPCODE, {}),
        (b"\x86\x00", hm.STATUS_UNKNOWN_OPCODE, {}),
        (b"\xff\xff\xff\xff", hm.STATUS_UNKNOWN_OPCODE, {}),
    ],
)
def test_parse_command_rejects_bad_writes(payload: bytes, status: int, params: dict) -> None:
    cmd = hm.parse_command(payload)
    assert cmd.status == status
    assert cmd.params == params


def test_command_encoders_reject_bad_values() -> None:
    with pytest.raises(ConfigError):
        hm.encode_set_ranges(3, 1000)
    with pytest.raises(ConfigError):
        hm.encode_set_ranges(8, 125)
    with pytest.raises(ConfigError):
        hm.encode_identify(256)
    with pytest.raises(ConfigError):
        hm.encode_command(0x42)


# ----------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("cut", range(0, 56))
def test_truncated_packet_names_offset_and_length(cut: int) -> None:
    payload = _b(PACKET_C)[:cut]
    with pytest.raises(DecodeError) as info:
        hm.HoldmonDecoder().decode(payload)
    err = info.value
    assert err.profile == "holdmon"
    assert err.length == cut
    assert err.offset == cut
    assert f"of {cut})" in str(err)


def test_too_long_packet() -> None:
    with pytest.raises(DecodeError) as info:
        hm.parse_data_packet(_b(PACKET_A) + b"\x00")
    assert (info.value.offset, info.value.length) == (20, 21)


@pytest.mark.parametrize(
    ("first_byte", "why"),
    [(0x01, "version"), (0x41, "version"), (0x61, "version"), (0x20, "count"), (0x34, "count"),
     (0x3F, "count")],
)
def test_garbled_head_byte(first_byte: int, why: str) -> None:
    payload = bytearray(_b(PACKET_A))
    payload[0] = first_byte
    with pytest.raises(DecodeError, match=why) as info:
        hm.parse_data_packet(bytes(payload))
    assert (info.value.offset, info.value.length) == (0, 20)


def test_decode_error_leaves_decoder_state_alone() -> None:
    dec = hm.HoldmonDecoder()
    dec.decode(_b(PACKET_C))
    with pytest.raises(DecodeError):
        dec.decode(_b(PACKET_D)[:30])
    [d] = dec.decode(_b(PACKET_D))
    assert d.sample_seq[0] == 65542
    assert dec.lost_samples == 4


@pytest.mark.parametrize(
    ("reply_hex", "offset"),
    [("86", 1), ("83 00", 2), ("83 00 01 00", 3), ("83 09 01", 1), ("ff 01 00", 2),
     ("86 00 01 01 03 29 57 04 f7 00 0c 00 34 12 03 00 00", 17)],
)
def test_bad_replies(reply_hex: str, offset: int) -> None:
    payload = _b(reply_hex)
    with pytest.raises(DecodeError) as info:
        hm.HoldmonDecoder().decode(payload)
    assert (info.value.offset, info.value.length) == (offset, len(payload))


@given(st.binary(max_size=240))
def test_random_bytes_raise_only_decode_error(payload: bytes) -> None:
    dec = hm.HoldmonDecoder()
    try:
        dec.decode(payload)
    except DecodeError as err:
        assert 0 <= err.offset <= len(payload) == err.length


@given(st.binary(max_size=8))
def test_parse_command_never_raises(payload: bytes) -> None:
    cmd = hm.parse_command(payload)
    assert cmd.status in hm.STATUS_NAMES


# ----------------------------------------------------------------------------- round trips

_int16 = st.integers(-32768, 32767)


@st.composite
def _packets(draw: st.DrawFn) -> tuple[hm.DataHeader, np.ndarray, np.ndarray]:
    n = draw(st.integers(1, hm.MAX_SAMPLES))
    header = hm.DataHeader(
        seq=draw(st.integers(0, 65535)), t_first_us=draw(st.integers(0, 2**32 - 1)), n=n,
        rate_code=draw(st.integers(0, 3)), acc_code=draw(st.integers(0, 3)),
        gyro_code=draw(st.integers(0, 3)), stream_start=draw(st.booleans()),
        device_drop=draw(st.booleans()),
    )
    counts = draw(st.lists(st.lists(_int16, min_size=6, max_size=6), min_size=n, max_size=n))
    arr = np.array(counts, dtype=np.int64)
    return header, arr[:, :3], arr[:, 3:]


@given(_packets())
def test_round_trip_counts(packet: tuple[hm.DataHeader, np.ndarray, np.ndarray]) -> None:
    header, acc, gyr = packet
    payload = hm.encode_data_packet(header, acc, gyr)
    assert len(payload) == hm.HEADER_SIZE + hm.SAMPLE_SIZE * header.n
    got_header, got_acc, got_gyr = hm.parse_data_packet(payload)
    assert got_header == header
    assert np.array_equal(got_acc, acc)
    assert np.array_equal(got_gyr, gyr)
    [p] = hm.HoldmonDecoder().decode(payload)
    np.testing.assert_allclose(p.acc_mps2, acc * hm.acc_scale_mps2(header.acc_code), rtol=1e-15)
    np.testing.assert_allclose(p.gyr_radps, gyr * hm.gyro_scale_radps(header.gyro_code), rtol=1e-15)


@given(
    st.integers(0, 3), st.integers(0, 3), st.integers(1, 19),
    st.lists(st.floats(-1.0, 1.0), min_size=6, max_size=6),
)
def test_round_trip_si_within_half_count(acc_code: int, gyro_code: int, n: int, frac: list[float]) -> None:
    acc_full = hm.ACC_RANGE_G_BY_CODE[acc_code] * hm.STANDARD_GRAVITY_MPS2
    gyr_full = math.radians(hm.GYRO_RANGE_DPS_BY_CODE[gyro_code])
    acc = np.tile(np.array(frac[:3]) * acc_full * 0.999, (n, 1))
    gyr = np.tile(np.array(frac[3:]) * gyr_full * 0.999, (n, 1))
    header = hm.DataHeader(seq=1, t_first_us=2, n=n, acc_code=acc_code, gyro_code=gyro_code)
    [p] = hm.HoldmonDecoder().decode(hm.encode_data_packet_si(header, acc, gyr))
    assert np.all(np.abs(p.acc_mps2 - acc) <= hm.acc_scale_mps2(acc_code) / 2 + 1e-12)
    assert np.all(np.abs(p.gyr_radps - gyr) <= hm.gyro_scale_radps(gyro_code) / 2 + 1e-12)


def test_si_encoder_saturates() -> None:
    header = hm.DataHeader(seq=0, t_first_us=0, n=1, acc_code=0, gyro_code=0)
    payload = hm.encode_data_packet_si(header, np.array([[100.0, -100.0, 0.0]]), np.array([[50.0, -50.0, 0.0]]))
    _, acc, gyr = hm.parse_data_packet(payload)
    assert acc.tolist() == [[32767, -32768, 0]]
    assert gyr.tolist() == [[32767, -32768, 0]]


def test_si_encoder_rejects_nan() -> None:
    header = hm.DataHeader(seq=0, t_first_us=0, n=1)
    with pytest.raises(DataError):
        hm.encode_data_packet_si(header, np.array([[np.nan, 0.0, 0.0]]), np.zeros((1, 3)))
    with pytest.raises(DataError):
        hm.encode_data_packet_si(header, np.zeros((1, 3)), np.array([[0.0, np.inf, 0.0]]))


def test_encoder_rejects_bad_shapes_and_values() -> None:
    header = hm.DataHeader(seq=0, t_first_us=0, n=2)
    with pytest.raises(ConfigError):
        hm.encode_data_packet(header, np.zeros((1, 3)), np.zeros((1, 3)))
    with pytest.raises(ConfigError):
        hm.encode_data_packet(header, np.full((2, 3), 40000), np.zeros((2, 3)))
    with pytest.raises(ConfigError):
        hm.encode_data_packet(hm.DataHeader(seq=0, t_first_us=0, n=20), np.zeros((20, 3)), np.zeros((20, 3)))
    with pytest.raises(ConfigError):
        hm.encode_data_packet(hm.DataHeader(seq=0, t_first_us=0, n=1, rate_code=4), np.zeros((1, 3)),
                              np.zeros((1, 3)))


def _stream(rate_code: int, sizes: list[int], gaps: list[int], seq0: int, t0_us: int) -> list[bytes]:
    """Packets of a stream: packet k has sizes[k] samples and is preceded by gaps[k] missing samples."""
    period = hm.sample_period_us(rate_code)
    out: list[bytes] = []
    index = seq0
    for n, gap in zip(sizes, gaps):
        index += gap
        header = hm.DataHeader(seq=index, t_first_us=t0_us + index * period, n=n, rate_code=rate_code)
        out.append(hm.encode_data_packet(header, np.full((n, 3), index % 1000), np.zeros((n, 3))))
        index += n
    return out


@given(
    st.integers(0, 3), st.integers(0, 65535), st.integers(0, 2**32 - 1),
    st.lists(st.tuples(st.integers(1, 19), st.integers(0, 200_000)), min_size=1, max_size=30),
)
def test_loss_counted_exactly_across_wraps(
    rate_code: int, seq0: int, t0_us: int, packets: list[tuple[int, int]]
) -> None:
    """Gaps (missing samples) up to 200000, i.e. several turns of the 16-bit index, are counted exactly."""
    sizes = [n for n, _ in packets]
    gaps = [0] + [g for _, g in packets[1:]]
    period = hm.sample_period_us(rate_code)
    if (sum(sizes) + sum(gaps)) * period >= 2**32:
        return  # beyond one turn of the clock: outside the protocol's promise
    dec = hm.HoldmonDecoder()
    seqs: list[int] = []
    times: list[float] = []
    for payload in _stream(rate_code, sizes, gaps, seq0, t0_us):
        [p] = dec.decode(payload)
        seqs.extend(p.sample_seq.tolist())
        times.extend(p.sensor_time_s.tolist())
    assert dec.lost_samples == sum(gaps)
    expected = []
    index = seq0
    for n, gap in zip(sizes, gaps):
        index += gap
        expected.extend(range(index, index + n))
        index += n
    assert seqs == expected
    np.testing.assert_allclose(np.diff(times), np.diff(expected) * period / 1e6, atol=1e-6)


def test_stream_start_after_pause_is_not_loss() -> None:
    """After STOP/START the clock jumps but the index continues: no loss, even for a long pause."""
    dec = hm.HoldmonDecoder()
    first = hm.DataHeader(seq=100, t_first_us=0, n=4, rate_code=3)
    dec.decode(hm.encode_data_packet(first, np.zeros((4, 3)), np.zeros((4, 3))))
    later = hm.DataHeader(seq=104, t_first_us=600_000_000, n=4, rate_code=3, stream_start=True)
    [p] = dec.decode(hm.encode_data_packet(later, np.zeros((4, 3)), np.zeros((4, 3))))
    assert p.sample_seq.tolist() == [104, 105, 106, 107]
    assert dec.lost_samples == 0
    assert p.sensor_time_s[0] == 600.0
