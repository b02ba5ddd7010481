"""Polar PMD profile: documented byte sequences, delta frames, ACC/GYRO pairing, bad input, round trips."""

from __future__ import annotations

import math
import struct

import numpy as np
import pytest
from hypothesis import given, strategies as st

from sensor.errors import ConfigError, DataError, DecodeError
from sensor.protocols import polar as pl

G = 9.80665
DEG = math.pi / 180
CP = pl.PMD_CONTROL_UUID

# Reference section 3.4, worked example D (H10, uncompressed ACC, first two samples).
FRAME_D = bytes.fromhex("02 EA 54 A2 42 8B 45 52 08 01 45 FF E4 FF B5 03 45 FF E4 FF B8 03")
# Worked example E (Verity Sense, delta frame) as printed in the reference: cut off inside its first block.
FRAME_E_AS_PRINTED = bytes.fromhex(
    "02 64 6C 76 C4 3C C6 7F 07 80 D0 FF 65 01 E4 0F 08 1D FC 07 FF 0C 13 F2 11 F1 1A F9 EE F8 EF 0C 03 09 F2")
# The same frame with its first block shortened to the two deltas the reference decodes.
FRAME_E_TWO_DELTAS = bytes.fromhex("02 64 6C 76 C4 3C C6 7F 07 80 D0 FF 65 01 E4 0F 08 02 FC 07 FF 0C 13 F2")
START_RESPONSE_VERITY = bytes.fromhex("F0 02 02 00 00 05 01 40 DA 7F 39")


def _header(mtype: int, timestamp_ns: int, frame_type: int) -> bytes:
    return bytes((mtype,)) + timestamp_ns.to_bytes(8, "little") + bytes((frame_type,))


# ---------------------------------------------------------------- commands and responses

@pytest.mark.parametrize(
    ("command", "expected"),
    [
        (pl.settings_request(pl.ACC), "01 02"),
        (pl.settings_request(pl.GYRO), "01 05"),
        (pl.start_acc_command(), "02 02 00 01 34 00 01 01 10 00 02 01 08 00 04 01 03"),
        (pl.start_gyro_command(), "02 05 00 01 34 00 01 01 10 00 02 01 D0 07 04 01 03"),
        (pl.start_command(pl.ACC, {pl.RANGE: 8, pl.SAMPLE_RATE: 200, pl.RESOLUTION: 16}),
         "02 02 02 01 08 00 00 01 C8 00 01 01 10 00"),
        (pl.stop_command(pl.ACC), "03 02"),
        (pl.start_command(pl.SDK_MODE, {}), "02 09"),
        (pl.stop_command(pl.SDK_MODE), "03 09"),
    ],
)
def test_command_bytes(command: bytes, expected: str) -> None:
    assert command == bytes.fromhex(expected)


@pytest.mark.parametrize("rate_hz", [52.0, 50.0, 200.0, 10.0])
def test_start_commands_always_52_hz(rate_hz: float) -> None:
    writes = pl.start_commands(rate_hz)
    assert [(uuid, data.hex(" ")) for uuid, data in writes] == [
        (CP, "02 02 00 01 34 00 01 01 10 00 02 01 08 00 04 01 03"),
        (CP, "02 05 00 01 34 00 01 01 10 00 02 01 d0 07 04 01 03"),
    ]
    assert pl.PROFILE.rates_hz == (52.0,)


def test_stop_commands() -> None:
    assert [(uuid, data.hex(" ")) for uuid, data in pl.stop_commands()] == [(CP, "03 02"), (CP, "03 05")]


def test_sdk_mode_rate_settings() -> None:
    assert pl.start_acc_command(104).hex(" ") == "02 02 00 01 68 00 01 01 10 00 02 01 08 00 04 01 03"


def test_bad_command_arguments() -> None:
    with pytest.raises(ConfigError):
        pl.start_command(pl.ACC, {pl.SAMPLE_RATE: 70000})
    with pytest.raises(ConfigError):
        pl.start_command(pl.ACC, {99: 1})
    with pytest.raises(ConfigError):
        pl.start_command(pl.ACC, {pl.FACTOR: float("nan")})
    with pytest.raises(ConfigError):
        pl.stop_command(256)
    with pytest.raises(ConfigError):
        pl.encode_settings({pl.SAMPLE_RATE: []})


def test_verity_start_response_factor() -> None:
    response = pl.parse_control_response(START_RESPONSE_VERITY)
    assert (response.opcode, response.measurement_type, response.error, response.more) == (2, 2, 0, False)
    (factor,) = response.settings()[pl.FACTOR]
    assert factor == struct.unpack("<f", bytes.fromhex("40DA7F39"))[0] == pl.VERITY_ACC_FACTOR
    assert abs(factor - 0.000244) < 1e-9
    assert pl.encode_control_response(2, 2, settings={pl.FACTOR: factor}) == START_RESPONSE_VERITY


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ("F0 01 02 00 00 00 04 19 00 32 00 64 00 C8 00 01 01 10 00 02 03 02 00 04 00 08 00",
         {0: (25, 50, 100, 200), 1: (16,), 2: (2, 4, 8)}),
        ("F0 01 02 00 00 00 01 34 00 01 01 10 00 02 01 08 00 04 01 03", {0: (52,), 1: (16,), 2: (8,), 4: (3,)}),
        ("F0 01 01 00 00 00 01 82 00 01 01 16 00", {0: (130,), 1: (22,)}),
        ("F0 03 02 00 00", {}),
    ],
)
def test_settings_responses(data: str, expected: dict) -> None:
    assert pl.parse_control_response(bytes.fromhex(data)).settings() == expected


def test_settings_tlv_from_sdk_tests() -> None:
    tlv = bytes.fromhex("00 01 34 00 01 01 10 00 02 04 F5 00 F4 01 E8 03 D0 07 04 01 03")
    assert pl.parse_settings(tlv) == {0: (52,), 1: (16,), 2: (245, 500, 1000, 2000), 4: (3,)}
    assert pl.encode_settings(pl.parse_settings(tlv)) == tlv


def test_h10_start_response_with_odd_parameter_is_accepted() -> None:
    """`F0 02 02 00 00 01`: success; its lone parameter byte is no settings TLV, the default factor stays."""
    response = pl.parse_control_response(bytes.fromhex("F0 02 02 00 00 01"))
    assert response.error == 0 and response.parameters == b"\x01"
    with pytest.raises(DecodeError):
        response.settings()
    decoder = pl.PolarDecoder()
    assert decoder.decode(bytes.fromhex("F0 02 02 00 00 01")) == []
    assert decoder.factors == {}


def test_refused_start_raises_with_the_error_name() -> None:
    decoder = pl.PolarDecoder()
    with pytest.raises(DecodeError) as info:
        decoder.decode(bytes.fromhex("F0 02 05 03 00"))
    assert "GYRO" in str(info.value) and "not supported" in str(info.value)
    assert (info.value.offset, info.value.length) == (3, 5)
    assert decoder.decode(bytes.fromhex("F0 02 02 06 00")) == []  # already in state: fine
    assert decoder.decode(bytes.fromhex("F0 03 09 0C 00")) == []  # stop refused: harmless
    assert decoder.last_response.error_name == "invalid state"


def test_unsolicited_stop_is_reported() -> None:
    with pytest.raises(DecodeError, match="stopped streaming: ACC, GYRO"):
        pl.PolarDecoder().decode(bytes.fromhex("01 02 05"))


# ---------------------------------------------------------------- frames

def test_worked_example_d_uncompressed_acc() -> None:
    frame = pl.decode_frame(FRAME_D)
    assert frame.measurement_type == pl.ACC and frame.timestamp_ns == 599618164814402794
    assert (frame.compressed, frame.frame_type) == (False, 1)
    np.testing.assert_allclose(frame.values_si, np.array([[-187, -28, 949], [-187, -28, 952]]) * G / 1000, rtol=1e-12)


def test_worked_example_e_delta_frame() -> None:
    frame = pl.decode_frame(FRAME_E_TWO_DELTAS)
    assert frame.timestamp_ns == 540368444604181604
    assert (frame.compressed, frame.frame_type) == (True, 0)
    counts = np.array([[-48, 357, 4068], [-52, 364, 4067], [-40, 383, 4053]])
    np.testing.assert_allclose(frame.values_si, counts * pl.VERITY_ACC_FACTOR * G, rtol=1e-12)
    np.testing.assert_allclose(frame.values_si[0] / G, [-0.0117, 0.0871, 0.9926], atol=5e-5)


def test_worked_example_e_as_printed_is_truncated() -> None:
    with pytest.raises(DecodeError) as info:
        pl.decode_frame(FRAME_E_AS_PRINTED)
    assert (info.value.offset, info.value.length) == (16, 35)
    assert "87 bytes" in str(info.value)


def test_gyro_three_bit_deltas() -> None:
    data = _header(pl.GYRO, 2_000_000_000, 0x80) + bytes.fromhex("EA FF 08 00 0D 00 03 01 DF 00")
    frame = pl.decode_frame(data, {pl.GYRO: 1.0})
    np.testing.assert_allclose(frame.values_si, np.array([[-22, 8, 13], [-23, 11, 16]]) * DEG, rtol=1e-12)
    frame = pl.decode_frame(data, {pl.GYRO: 0.5})
    np.testing.assert_allclose(frame.values_si[1], np.array([-23, 11, 16]) * 0.5 * DEG, rtol=1e-12)


def test_acc_ten_bit_deltas() -> None:
    content = bytes.fromhex("71 07 F0 6A 9E 8D 0A 01 BE 5C BE BA")
    values = pl.delta_decode(content, 3, 16)
    np.testing.assert_array_equal(values, [[1905, 27376, -29282], [1905 + 190, 27376 - 105, -29282 - 85]])


def test_gyro_float_delta_frame() -> None:
    content = bytes.fromhex("00 00 80 3F 00 00 20 41 00 00 A0 41 1C 01 00 00 A0 01 00 00 08 CD CC EC 0D")
    frame = pl.decode_frame(_header(pl.GYRO, 2_000_000_000, 0x81) + content)
    expected = np.array([[1.0, 10.0, 20.0], [10.0, 20.0, np.float32(1.1)]], dtype=np.float64)
    np.testing.assert_array_equal(frame.values_si, expected * DEG)


def test_default_factors_and_factor_from_the_start_response() -> None:
    gyr = pl.encode_frame(pl.GYRO, 10**18, [[100, 0, -100]])
    assert pl.decode_frame(gyr).values_si[0, 0] == pytest.approx(100 * 2000 / 32768 * DEG)
    decoder = pl.PolarDecoder()
    decoder.decode(pl.encode_control_response(pl.OP_START, pl.GYRO, settings={pl.FACTOR: 0.07}))
    assert decoder.factors[pl.GYRO] == pytest.approx(0.07)
    decoder.decode(pl.encode_frame(pl.ACC, 10**18, [[1, 2, 3]]))
    (packet,) = decoder.decode(gyr)
    assert packet.gyr_radps[0, 0] == pytest.approx(100 * 0.07 * DEG, rel=1e-6)


@pytest.mark.parametrize(
    ("data", "offset", "fragment"),
    [
        ("02 00 01", 3, "header"),
        ("02" + " 00" * 8 + " 00 01 02 03", 9, "frame type 0"),
        ("02" + " 00" * 8 + " 01 01 00 02 00", 10, "6 bytes each"),
        ("02" + " 00" * 8 + " 80 01 00 02 00 03", 15, "reference sample"),
        ("02" + " 00" * 8 + " 80 01 00 02 00 03 00 08", 16, "header cut off"),
        ("02" + " 00" * 8 + " 80 01 00 02 00 03 00 21 01", 16, "exceeds 32"),
        ("02" + " 00" * 8 + " 80 FF 7F 00 00 00 00 02 01 01", 10, "16-bit range"),
        ("30" + " 00" * 8 + " 80", 0, "frame type"),
        ("F0 02", 2, "cut off"),
    ],
)
def test_bad_frames_name_offset_and_length(data: str, offset: int, fragment: str) -> None:
    payload = bytes.fromhex(data)
    with pytest.raises(DecodeError) as info:
        pl.PolarDecoder().decode(payload)
    assert (info.value.offset, info.value.length) == (offset, len(payload))
    assert fragment in str(info.value)


def test_too_many_samples_in_one_frame() -> None:
    content = bytes(6) + bytes((0, 255)) * 17
    with pytest.raises(DecodeError, match="more than 4096"):
        pl.decode_frame(_header(pl.ACC, 1, 0x80) + content)


def test_other_measurement_frames_are_ignored() -> None:
    decoder = pl.PolarDecoder()
    assert decoder.decode(_header(pl.PPG, 1, 0x00) + bytes(12)) == []
    assert decoder.ignored_frames == 1


def test_encoders_reject_bad_input() -> None:
    with pytest.raises(DataError):
        pl.encode_frame(pl.ACC, 1, [[40000, 0, 0]])
    with pytest.raises(DataError):
        pl.encode_frame(pl.ACC, 1, [[0.5, 0, 0]])
    with pytest.raises(DataError):
        pl.encode_frame(pl.ACC, 1, np.zeros((0, 3)))
    with pytest.raises(DataError):
        pl.encode_frame(pl.ACC, 1, [[0, 0, 0]], frame_type=0, compressed=False)
    with pytest.raises(DataError):
        pl.encode_frame(pl.GYRO, 1, [[float("inf"), 0, 0]], frame_type=1)
    with pytest.raises(DataError):
        pl.encode_frame(pl.ACC, -1, [[0, 0, 0]])


# ---------------------------------------------------------------- pairing and time

def _frames(t_last_ns: int, acc_counts: np.ndarray, gyr_counts: np.ndarray) -> tuple[bytes, bytes]:
    return pl.encode_frame(pl.ACC, t_last_ns, acc_counts), pl.encode_frame(pl.GYRO, t_last_ns, gyr_counts)


def test_pairs_acc_and_gyro_with_sensor_time() -> None:
    decoder = pl.PolarDecoder()
    acc = np.arange(30).reshape(10, 3)
    gyr = -np.arange(30).reshape(10, 3)
    t1 = 700_000_000_000_000_000
    a, g = _frames(t1, acc, gyr)
    assert decoder.decode(a) == []
    (packet,) = decoder.decode(g)
    assert len(packet) == 10 and packet.sample_seq is None
    np.testing.assert_allclose(packet.acc_mps2, acc * pl.VERITY_ACC_FACTOR * G)
    np.testing.assert_allclose(packet.gyr_radps, gyr * pl.ASSUMED_GYRO_FACTOR * DEG)
    np.testing.assert_allclose(packet.sensor_time_s, t1 / 1e9 - np.arange(9, -1, -1) / 52.0, rtol=0, atol=1e-6)
    # The next frames: spacing from the timestamps (here 52.5 Hz), not from the nominal rate.
    t2 = t1 + round(10 / 52.5 * 1e9)
    a, g = _frames(t2, acc, gyr)
    assert decoder.decode(g) == []
    (packet,) = decoder.decode(a)
    np.testing.assert_allclose(np.diff(packet.sensor_time_s), 1 / 52.5, rtol=0, atol=1e-6)
    assert packet.sensor_time_s[-1] == pytest.approx(t2 / 1e9, abs=1e-6)
    assert decoder.unpaired_samples == 0 and decoder.frames == {pl.ACC: 2, pl.GYRO: 2}


def test_gyro_starting_later_drops_early_acc() -> None:
    decoder = pl.PolarDecoder()
    t = 10**18
    period = 1e9 / 52
    decoder.decode(pl.encode_frame(pl.ACC, t, np.ones((20, 3))))
    (packet,) = decoder.decode(pl.encode_frame(pl.GYRO, t + round(3 * period), np.ones((8, 3))))
    assert len(packet) == 5  # gyro samples 0..4 meet acc samples 15..19; gyro 5..7 wait for acc
    assert decoder.unpaired_samples == 15
    (packet,) = decoder.decode(pl.encode_frame(pl.ACC, t + round(3 * period), np.ones((3, 3))))
    assert len(packet) == 3


def test_offset_within_half_a_period_still_pairs() -> None:
    decoder = pl.PolarDecoder()
    t = 10**18
    decoder.decode(pl.encode_frame(pl.ACC, t, np.ones((6, 3))))
    (packet,) = decoder.decode(pl.encode_frame(pl.GYRO, t + 7_000_000, np.ones((6, 3))))
    assert len(packet) == 6 and decoder.unpaired_samples == 0


def test_missing_stream_keeps_a_bounded_buffer() -> None:
    decoder = pl.PolarDecoder()
    t = 10**18
    for k in range(40):
        assert decoder.decode(pl.encode_frame(pl.ACC, t + k * round(10e9 / 52), np.ones((10, 3)))) == []
    assert len(decoder._streams[pl.ACC].t_s) <= 2 * 52 + 1
    assert decoder.unpaired_samples == 400 - len(decoder._streams[pl.ACC].t_s)


def test_lost_frame_uses_the_nominal_rate() -> None:
    decoder = pl.PolarDecoder()
    t = 10**18
    step = round(1e9 / 52)
    for t_last in (t, t + 20 * step):  # the frame ending at t + 10 steps was lost
        decoder.decode(pl.encode_frame(pl.GYRO, t_last, np.ones((10, 3))))
        (packet,) = decoder.decode(pl.encode_frame(pl.ACC, t_last, np.ones((10, 3))))
        np.testing.assert_allclose(np.diff(packet.sensor_time_s), step / 1e9, atol=1e-6)


def test_decoder_rejects_a_bad_rate() -> None:
    with pytest.raises(ConfigError):
        pl.PolarDecoder(rate_hz=0)


# ---------------------------------------------------------------- properties

int16_rows = st.lists(st.tuples(*[st.integers(-32768, 32767)] * 3), min_size=1, max_size=60)


@given(int16_rows, st.integers(1, 255), st.booleans())
def test_delta_round_trip_exact(rows: list, block: int, compressed: bool) -> None:
    counts = np.array(rows, dtype=np.int64)
    frame_type = 0 if compressed else 1
    data = pl.encode_frame(pl.ACC, 123, counts, frame_type=frame_type, compressed=compressed, block_samples=block)
    decoded = pl.decode_frame(data, {pl.ACC: 1.0})
    unit = G if compressed else G / 1000
    np.testing.assert_allclose(decoded.values_si / unit, counts, rtol=0, atol=1e-9)


@given(st.lists(st.tuples(*[st.floats(-4000, 4000, width=32)] * 3), min_size=1, max_size=30), st.integers(1, 255))
def test_float_gyro_round_trip_exact(rows: list, block: int) -> None:
    counts = np.array(rows, dtype=np.float64)
    decoded = pl.decode_frame(pl.encode_frame(pl.GYRO, 5, counts, frame_type=1, block_samples=block))
    np.testing.assert_array_equal(decoded.values_si, counts * DEG)


si_rows = st.lists(st.tuples(*[st.floats(-7.9 * G, 7.9 * G)] * 3, *[st.floats(-34.0, 34.0)] * 3),
                   min_size=1, max_size=40)


@given(si_rows)
def test_si_round_trip_through_the_decoder(rows: list) -> None:
    values = np.array(rows)
    acc_si, gyr_si = values[:, :3], values[:, 3:]
    a, g = _frames(10**18, pl.quantise(pl.ACC, acc_si), pl.quantise(pl.GYRO, gyr_si))
    decoder = pl.PolarDecoder()
    packets = decoder.decode(g) + decoder.decode(a)
    (packet,) = packets
    np.testing.assert_allclose(packet.acc_mps2, acc_si, rtol=0, atol=pl.VERITY_ACC_FACTOR * G / 2 + 1e-9)
    np.testing.assert_allclose(packet.gyr_radps, gyr_si, rtol=0, atol=pl.ASSUMED_GYRO_FACTOR * DEG / 2 + 1e-9)


_prefixes = st.sampled_from([b"", b"\xf0", b"\xf0\x02\x02\x00\x00", b"\x01",
                             _header(pl.ACC, 10**18, 0x80), _header(pl.GYRO, 10**18, 0x80),
                             _header(pl.GYRO, 10**18, 0x81), _header(pl.ACC, 10**18, 0x01),
                             _header(pl.ACC, 10**18, 0x02), _header(pl.GYRO, 10**18, 0x01)])


@given(st.lists(st.tuples(_prefixes, st.binary(max_size=80)), max_size=8))
def test_random_bytes_raise_only_decode_error(payloads: list) -> None:
    decoder = pl.PolarDecoder()
    for prefix, tail in payloads:
        payload = prefix + tail
        try:
            packets = decoder.decode(payload)
        except DecodeError as err:
            assert 0 <= err.offset <= err.length == len(payload)
            continue
        for p in packets:
            assert p.acc_mps2.shape == p.gyr_radps.shape == (len(p), 3)
            assert np.all(np.isfinite(p.acc_mps2)) and np.all(np.isfinite(p.gyr_radps))
    # Whatever came before, well-formed frames from a later time still pair.
    t = 2 * 10**18
    decoder.decode(pl.encode_frame(pl.ACC, t, np.ones((4, 3))))
    packets = decoder.decode(pl.encode_frame(pl.GYRO, t, np.ones((4, 3))))
    assert sum(len(p) for p in packets) >= 4


@given(st.binary(max_size=60))
def test_random_control_responses_and_settings(data: bytes) -> None:
    for parse in (lambda d: pl.parse_control_response(b"\xf0" + d).settings(), pl.parse_settings):
        try:
            parse(data)
        except DecodeError as err:
            assert 0 <= err.offset <= err.length


anything = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(), st.text(max_size=3),
                     st.binary(max_size=20), st.lists(st.integers(-5, 70000), max_size=3))


@given(anything, st.dictionaries(st.integers(-3, 300), anything, max_size=4))
def test_command_encoders_raise_only_config_error(measurement_type: object, settings: dict) -> None:
    for encode in (lambda: pl.start_command(measurement_type, settings), lambda: pl.stop_command(measurement_type),
                   lambda: pl.settings_request(measurement_type), lambda: pl.encode_settings(settings),
                   lambda: pl.encode_control_response(2, measurement_type, 0, settings)):
        try:
            assert isinstance(encode(), bytes)
        except ConfigError:
            pass


@given(anything, anything, anything)
def test_frame_encoders_raise_only_data_error(counts: object, timestamp_ns: object, factor: object) -> None:
    for encode in (lambda: pl.encode_frame(pl.GYRO, timestamp_ns, counts),
                   lambda: pl.encode_frame(pl.GYRO, 1, [[counts, 0, 0]], frame_type=1),
                   lambda: pl.quantise(pl.ACC, [[counts, 0, 0]], factor=factor),
                   lambda: pl.PolarDecoder(rate_hz=factor)):
        try:
            encode()
        except (DataError, ConfigError):
            pass
