"""WitMotion BLE 5.0 profile: documented byte sequences, reassembly, bad input, round trips."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, strategies as st

from sensor.errors import ConfigError, DataError, DecodeError
from sensor.protocols import witmotion as wm

G = 9.80665
DEG = math.pi / 180

# Real captures (reference section 1.2, worked example A).
FRAME_A1 = bytes.fromhex("55 61 fc ff ef ff 11 08 00 00 00 00 00 00 98 ff 0d 00 f8 31")
FRAME_A2 = bytes.fromhex("55 61 f3 ff f3 ff 0f 08 00 00 00 00 00 00 98 ff 0d 00 f8 31")
# Register replies (reference section 1.3, worked example B and the UART capture).
REPLY_MAG = bytes.fromhex("55 71 3A 00 68 01 69 00 7A 00 00 00 00 00 00 00 00 00 00 00")
REPLY_TEMP = bytes.fromhex("55 71 3a 00 00 00 00 00 00 00 00 00 00 00 00 00 63 0d 01 00")


def _decode_all(decoder: wm.WitmotionDecoder, payloads: list[bytes]) -> tuple[np.ndarray, int]:
    """Feed every payload; returns all acc rows (n, 3) and the number of DecodeErrors."""
    rows, errors = [], 0
    for payload in payloads:
        try:
            packets = decoder.decode(payload)
        except DecodeError:
            errors += 1
            packets = decoder.take_pending()
        rows += [p.acc_mps2 for p in packets]
    return (np.concatenate(rows) if rows else np.zeros((0, 3))), errors


# ---------------------------------------------------------------- documented bytes

def test_worked_example_a_first_frame() -> None:
    acc, gyr, ang = wm.decode_frames(FRAME_A1)
    np.testing.assert_allclose(acc[0] / G, [-4 / 2048, -17 / 2048, 2065 / 2048], rtol=0, atol=1e-12)
    np.testing.assert_allclose(acc[0] / G, [-0.00195, -0.00830, 1.00830], atol=5e-6)
    np.testing.assert_array_equal(gyr[0], [0.0, 0.0, 0.0])
    np.testing.assert_allclose(ang[0], [-0.5713, 0.0714, 70.2686], atol=5e-5)
    np.testing.assert_allclose(ang[0], [-104 * 180 / 32768, 13 * 180 / 32768, 12792 * 180 / 32768], atol=1e-12)


def test_worked_example_a_two_frames_in_one_notification() -> None:
    decoder = wm.WitmotionDecoder()
    (packet,) = decoder.decode(FRAME_A2 + FRAME_A1)
    assert len(packet) == 2
    np.testing.assert_allclose(packet.acc_mps2[0] / G, [-0.00635, -0.00635, 1.00732], atol=5e-6)
    np.testing.assert_allclose(packet.acc_mps2[1] / G, [-0.00195, -0.00830, 1.00830], atol=5e-6)
    np.testing.assert_array_equal(packet.gyr_radps, np.zeros((2, 3)))
    assert packet.sample_seq is None and packet.sensor_time_s is None and packet.packet_seq is None
    assert decoder.frames == 2 and decoder.bad_bytes == 0


def test_four_frames_in_one_notification() -> None:
    (packet,) = wm.WitmotionDecoder().decode(FRAME_A1 * 4)
    assert packet.acc_mps2.shape == (4, 3) and packet.gyr_radps.shape == (4, 3)


def test_gyro_scale() -> None:
    frame = bytes.fromhex("55 61 00 00 00 00 00 00 00 40 00 c0 ff 7f 00 00 00 00 00 00")
    _, gyr, _ = wm.decode_frames(frame)
    np.testing.assert_allclose(gyr[0], [1000 * DEG, -1000 * DEG, 32767 / 32768 * 2000 * DEG], rtol=1e-12)


def test_register_reply_is_not_data() -> None:
    decoder = wm.WitmotionDecoder()
    assert decoder.decode(REPLY_MAG) == []
    assert decoder.registers[0x3A] == 360 and decoder.registers[0x3B] == 105 and decoder.registers[0x3C] == 122
    assert wm.decode_register_reply(REPLY_MAG) == (0x3A, (360, 105, 122, 0, 0, 0, 0, 0))
    (packet,) = decoder.decode(REPLY_TEMP + FRAME_A1)
    assert len(packet) == 1
    assert decoder.registers[0x40] == 0x0D63 and decoder.registers[0x41] == 1
    assert decoder.replies == 2 and decoder.frames == 1


def test_register_reply_round_trip() -> None:
    values = (360, 105, 122, -1, 0, 0, 3427, 1)
    frame = wm.encode_register_reply(0x3A, values)
    assert frame[:10] == REPLY_MAG[:10]
    assert wm.decode_register_reply(frame) == (0x3A, values)


# ---------------------------------------------------------------- commands

@pytest.mark.parametrize(
    ("command", "expected"),
    [
        (wm.unlock_command(), "FF AA 69 88 B5"),
        (wm.save_command(), "FF AA 00 00 00"),
        (wm.calibrate_acc_command(), "FF AA 01 01 00"),
        (wm.end_calibration_command(), "FF AA 01 00 00"),
        (wm.rate_command(10), "FF AA 03 06 00"),
        (wm.rate_command(50), "FF AA 03 08 00"),
        (wm.rate_command(100), "FF AA 03 09 00"),
        (wm.rate_command(200), "FF AA 03 0B 00"),
        (wm.read_register_command(0x3A), "FF AA 27 3A 00"),
        (wm.read_register_command(0x51), "FF AA 27 51 00"),
        (wm.read_register_command(0x03), "FF AA 27 03 00"),
    ],
)
def test_command_bytes(command: bytes, expected: str) -> None:
    assert command == bytes.fromhex(expected)


def test_start_commands_unlock_rate_save() -> None:
    writes = wm.start_commands(60.0)
    assert [uuid for uuid, _ in writes] == [wm.WRITE_UUID] * 3
    assert [data.hex(" ") for _, data in writes] == ["ff aa 69 88 b5", "ff aa 03 08 00", "ff aa 00 00 00"]
    assert wm.start_commands(150.0)[1][1] == bytes.fromhex("FF AA 03 0B 00")
    assert wm.PROFILE.rates_hz == (0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0)


def test_rate_code_round_trip_and_parse_command() -> None:
    for rate_hz, code in wm.RATE_CODES.items():
        assert wm.rate_hz_for_code(code) == rate_hz
        assert wm.parse_command(wm.rate_command(rate_hz)) == (wm.REG_RATE, code)
    assert wm.parse_command(wm.unlock_command()) == (0x69, 0xB588)


@pytest.mark.parametrize("bad", [0, -5, 30.0, float("nan"), "fast"])
def test_unsupported_rate_is_config_error(bad: object) -> None:
    with pytest.raises(ConfigError):
        wm.rate_command(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", [0, -1.0, float("inf"), float("nan")])
def test_nearest_rate_rejects_nonsense(bad: float) -> None:
    with pytest.raises(ConfigError):
        wm.nearest_rate_hz(bad)


def test_nearest_rate() -> None:
    assert wm.nearest_rate_hz(60) == 50.0
    assert wm.nearest_rate_hz(1000) == 200.0
    assert wm.nearest_rate_hz(0.01) == 0.2


def test_write_register_out_of_range() -> None:
    with pytest.raises(ConfigError):
        wm.write_register_command(0x100, 0)
    with pytest.raises(ConfigError):
        wm.read_register_command(-1)


def test_parse_command_bad_bytes() -> None:
    with pytest.raises(DecodeError) as info:
        wm.parse_command(b"\xff\xaa\x03")
    assert (info.value.offset, info.value.length) == (3, 3)
    with pytest.raises(DecodeError) as info:
        wm.parse_command(b"\x00\xaa\x03\x08\x00")
    assert (info.value.offset, info.value.length) == (0, 5)


# ---------------------------------------------------------------- reassembly

@pytest.mark.parametrize("cut", range(1, 40))
def test_split_across_two_notifications(cut: int) -> None:
    stream = FRAME_A2 + FRAME_A1
    acc, errors = _decode_all(wm.WitmotionDecoder(), [stream[:cut], stream[cut:]])
    assert errors == 0
    np.testing.assert_array_equal(acc, wm.decode_frames(stream)[0])


def test_split_byte_by_byte() -> None:
    stream = (FRAME_A1 + REPLY_MAG + FRAME_A2) * 3
    decoder = wm.WitmotionDecoder()
    acc, errors = _decode_all(decoder, [stream[i:i + 1] for i in range(len(stream))])
    assert errors == 0 and decoder.bad_bytes == 0
    assert acc.shape == (6, 3) and decoder.replies == 3


# ---------------------------------------------------------------- bad input

def test_leading_garbage_is_skipped_and_reported() -> None:
    decoder = wm.WitmotionDecoder()
    with pytest.raises(DecodeError) as info:
        decoder.decode(b"\x00\x13\x55\x00" + FRAME_A1)
    assert (info.value.offset, info.value.length) == (0, 24)
    assert info.value.profile == "witmotion"
    assert "4 bytes" in str(info.value) and "at byte 0 of 24" in str(info.value)
    assert decoder.bad_bytes == 4
    (packet,) = decoder.take_pending()
    np.testing.assert_array_equal(packet.acc_mps2, wm.decode_frames(FRAME_A1)[0])
    assert decoder.take_pending() == []


def test_garbage_in_the_middle_names_its_offset() -> None:
    decoder = wm.WitmotionDecoder()
    with pytest.raises(DecodeError) as info:
        decoder.decode(FRAME_A1 + b"\xde\xad\xbe" + FRAME_A2)
    assert (info.value.offset, info.value.length) == (20, 43)
    assert decoder.bad_bytes == 3


def test_samples_of_a_bad_notification_come_with_the_next_one() -> None:
    decoder = wm.WitmotionDecoder()
    with pytest.raises(DecodeError):
        decoder.decode(b"\x01" + FRAME_A1)
    packets = decoder.decode(FRAME_A2)
    assert [len(p) for p in packets] == [1, 1]
    np.testing.assert_array_equal(packets[1].acc_mps2, wm.decode_frames(FRAME_A2)[0])


def test_truncated_frame_then_fresh_frame() -> None:
    decoder = wm.WitmotionDecoder()
    assert decoder.decode(FRAME_A1[:13]) == []
    with pytest.raises(DecodeError) as info:
        decoder.decode(FRAME_A2)
    assert (info.value.offset, info.value.length) == (0, 20)
    assert "truncated" in str(info.value) and "13 of 20" in str(info.value)
    assert decoder.bad_bytes == 13
    (packet,) = decoder.take_pending()
    np.testing.assert_array_equal(packet.acc_mps2, wm.decode_frames(FRAME_A2)[0])
    (packet,) = decoder.decode(FRAME_A1)
    np.testing.assert_array_equal(packet.acc_mps2, wm.decode_frames(FRAME_A1)[0])


def test_vibration_sensor_frame_is_reported_not_misread_forever() -> None:
    """A WTVB01 28-byte `55 61` frame: the 8 trailing bytes are flagged, the next frame decodes."""
    vib = bytes.fromhex("55 61 11 00 16 00 02 00 02 00 00 00 01 00 E6 0A 43 00 47 00 0A 00 25 00 25 00 25 00")
    decoder = wm.WitmotionDecoder()
    with pytest.raises(DecodeError) as info:
        decoder.decode(vib)
    assert (info.value.offset, info.value.length) == (20, 28)
    assert [len(p) for p in decoder.decode(FRAME_A1)] == [1, 1]  # the misread one, then the good one


def test_decode_frames_rejects_bad_lengths_and_headers() -> None:
    with pytest.raises(DecodeError) as info:
        wm.decode_frames(FRAME_A1 + FRAME_A2[:5])
    assert (info.value.offset, info.value.length) == (20, 25)
    with pytest.raises(DecodeError) as info:
        wm.decode_frames(FRAME_A1 + REPLY_MAG)
    assert (info.value.offset, info.value.length) == (20, 40)
    with pytest.raises(DecodeError):
        wm.decode_register_reply(FRAME_A1)
    with pytest.raises(DecodeError):
        wm.decode_register_reply(REPLY_MAG[:19])


def test_encoders_reject_bad_arrays() -> None:
    with pytest.raises(DataError):
        wm.encode_frame([0, 0, float("nan")], [0, 0, 0], [0, 0, 0])
    with pytest.raises(DataError):
        wm.encode_frames(np.zeros((2, 3)), np.zeros((3, 3)), np.zeros((2, 3)))
    with pytest.raises(DataError):
        wm.encode_frame(np.zeros((2, 3)), np.zeros((2, 3)), np.zeros((2, 3)))
    with pytest.raises(DataError):
        wm.encode_register_reply(0x3A, [1, 2, 3])


def test_encoder_saturates_at_full_scale() -> None:
    frame = wm.encode_frame([20 * G, -20 * G, 0], [0, 0, 40.0], [0, 0, 0])
    acc, gyr, _ = wm.decode_frames(frame)
    np.testing.assert_allclose(acc[0, :2] / G, [32767 / 2048, -16.0])
    np.testing.assert_allclose(gyr[0, 2], 32767 / 32768 * 2000 * DEG)


# ---------------------------------------------------------------- properties

ACC_LIM = 15.9 * G
GYR_LIM = 1990 * DEG
_vec = lambda lim: st.lists(st.floats(-lim, lim), min_size=3, max_size=3)  # noqa: E731
samples = st.lists(st.tuples(_vec(ACC_LIM), _vec(GYR_LIM), _vec(179.9)), min_size=1, max_size=12)


@given(samples)
def test_round_trip_within_quantisation(rows: list) -> None:
    acc = np.array([r[0] for r in rows])
    gyr = np.array([r[1] for r in rows])
    ang = np.array([r[2] for r in rows])
    (packet,) = wm.WitmotionDecoder().decode(wm.encode_frames(acc, gyr, ang))
    np.testing.assert_allclose(packet.acc_mps2, acc, rtol=0, atol=wm.ACC_LSB_MPS2 / 2 + 1e-12)
    np.testing.assert_allclose(packet.gyr_radps, gyr, rtol=0, atol=wm.GYR_LSB_RADPS / 2 + 1e-12)
    _, _, ang_back = wm.decode_frames(wm.encode_frames(acc, gyr, ang))
    np.testing.assert_allclose(ang_back, ang, rtol=0, atol=wm.ANGLE_LSB_DEG / 2 + 1e-12)


@given(samples, st.lists(st.integers(1, 60), max_size=20))
def test_any_split_reassembles_exactly(rows: list, cuts: list[int]) -> None:
    stream = b"".join(wm.encode_frame(*r) + wm.encode_register_reply(3, [8] * 8) for r in rows)
    payloads, pos = [], 0
    for size in cuts:
        payloads.append(stream[pos:pos + size])
        pos += size
    payloads.append(stream[pos:])
    decoder = wm.WitmotionDecoder()
    acc, errors = _decode_all(decoder, [p for p in payloads if p])
    assert errors == 0 and decoder.bad_bytes == 0
    np.testing.assert_array_equal(acc, wm.decode_frames(b"".join(wm.encode_frame(*r) for r in rows))[0])
    assert decoder.registers[3] == 8


@given(st.lists(st.binary(max_size=90), max_size=8))
def test_random_bytes_raise_only_decode_error(payloads: list[bytes]) -> None:
    decoder = wm.WitmotionDecoder()
    for payload in payloads:
        try:
            packets = decoder.decode(payload)
        except DecodeError as err:
            assert 0 <= err.offset <= err.length == len(payload)
            packets = decoder.take_pending()
        for p in packets:
            assert p.acc_mps2.shape == p.gyr_radps.shape == (len(p), 3)
            assert np.all(np.isfinite(p.acc_mps2)) and np.all(np.isfinite(p.gyr_radps))
        assert len(decoder._partial) < wm.FRAME_LEN


@given(st.binary(max_size=60), samples)
def test_recovers_after_garbage(garbage: bytes, rows: list) -> None:
    """After any garbage, frames sent one per notification decode exactly from the second one on."""
    decoder = wm.WitmotionDecoder()
    _decode_all(decoder, [garbage])
    decoder.take_pending()
    frames = [wm.encode_frame(*r) for r in rows]
    acc, _ = _decode_all(decoder, frames)
    expected = wm.decode_frames(b"".join(frames))[0]
    assert len(acc) in (len(expected), len(expected) - 1)
    np.testing.assert_array_equal(acc[len(acc) - len(expected) + 1:], expected[1:])


anything = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(), st.text(max_size=3),
                     st.binary(max_size=6))


@given(anything, anything)
def test_command_encoders_raise_only_config_error(a: object, b: object) -> None:
    for encode in (lambda: wm.write_register_command(a, b), lambda: wm.read_register_command(a),
                   lambda: wm.rate_command(a), lambda: wm.start_commands(a), lambda: wm.rate_hz_for_code(a)):
        try:
            encode()
        except ConfigError:
            pass


@given(anything, anything)
def test_frame_encoders_raise_only_data_error(a: object, b: object) -> None:
    for encode in (lambda: wm.encode_frame([a, 0, 0], [0, 0, 0], [0, 0, 0]), lambda: wm.encode_frames(a, a, a),
                   lambda: wm.encode_register_reply(a, [b] * 8)):
        try:
            encode()
        except (DataError, ConfigError):
            pass


@given(st.binary(max_size=8))
def test_parse_command_random_bytes(data: bytes) -> None:
    try:
        reg, value = wm.parse_command(data)
    except DecodeError as err:
        assert 0 <= err.offset <= err.length == len(data)
    else:
        assert wm.write_register_command(reg, value) == data
