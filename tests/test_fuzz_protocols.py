"""Property tests that complete the protocol suites: only the project's errors escape from any input.

tests/test_protocol_*.py already fuzz: holdmon single packets and parse_command; witmotion notification
streams, command and frame encoders, parse_command; polar notification streams (data frames),
control responses, settings, command and frame encoders. Added here: holdmon notification streams,
parse_reply, command/reply encoders and the SI packet encoder; witmotion's stateless frame and
register-reply decoders and nearest_rate_hz; polar start responses (settings TLV) in a stream, the
stream start encoders and decode_frame with any factors; advertisement matching (names and service
UUIDs from any device in range); plus regressions for what fuzzing found.
"""

from __future__ import annotations

import numpy as np
from hypothesis import given, strategies as st

from sensor.errors import ConfigError, DataError, DecodeError
from sensor.protocols import PROFILES, holdmon as hm, match_profile, polar as pl, witmotion as wm

anything = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(), st.text(max_size=3),
                     st.binary(max_size=6), st.lists(st.integers(-5, 300), max_size=3))
small_ints = st.integers(-2, 2**33)


def _check(packets: list) -> None:
    for p in packets:
        assert p.acc_mps2.shape == p.gyr_radps.shape == (len(p), 3)
        assert np.isfinite(p.acc_mps2).all() and np.isfinite(p.gyr_radps).all()


def _valid_holdmon_packet(seq: int, n: int) -> bytes:
    header = hm.DataHeader(seq=seq, t_first_us=seq * 10_000, n=n)
    return hm.encode_data_packet(header, np.ones((n, 3), np.int16), np.ones((n, 3), np.int16))


# ----------------------------------------------------------------------------------------- holdmon

holdmon_notifications = st.one_of(
    st.binary(max_size=240),
    st.builds(_valid_holdmon_packet, st.integers(0, 65535), st.integers(1, hm.MAX_SAMPLES)),
    st.builds(lambda b: bytes([b[0] | 0x80]) + b[1:], st.binary(min_size=1, max_size=20)),
)


@given(st.lists(holdmon_notifications, max_size=12))
def test_holdmon_stream_raises_only_decode_error(payloads: list[bytes]) -> None:
    decoder = hm.HoldmonDecoder()
    for payload in payloads:
        try:
            _check(decoder.decode(payload))
        except DecodeError as err:
            assert 0 <= err.offset <= err.length == len(payload)
    assert decoder.lost_samples >= 0
    assert len(decoder.replies) <= hm.HoldmonDecoder.REPLY_HISTORY


@given(st.binary(max_size=24))
def test_holdmon_parse_reply_raises_only_decode_error(payload: bytes) -> None:
    try:
        reply = hm.parse_reply(payload)
    except DecodeError as err:
        assert 0 <= err.offset <= err.length == len(payload)
    else:
        assert hm.encode_reply(reply.opcode | (payload[0] & hm.REPLY_FLAG), reply.status, **reply.fields) \
            == payload


@given(anything, anything, anything)
def test_holdmon_command_encoders_raise_only_config_error(a: object, b: object, c: object) -> None:
    for encode in (lambda: hm.encode_command(a), lambda: hm.encode_command(hm.OP_SET_RATE, rate_code=a),
                   lambda: hm.encode_command(hm.OP_SET_RANGES, acc_code=a, gyro_code=b),
                   lambda: hm.encode_set_rate(a), lambda: hm.encode_set_ranges(a, b),
                   lambda: hm.encode_identify(a), lambda: hm.start_commands(a), lambda: hm.rate_code_for(a),
                   lambda: hm.samples_per_packet(a, b), lambda: hm.encode_reply(a, b),
                   lambda: hm.encode_reply(hm.OP_SET_RATE, 0, rate_code=c),
                   lambda: hm.encode_reply(a, b, rate_code=c)):
        try:
            encode()
        except ConfigError:
            pass


@given(st.floats(min_value=0.0, exclude_min=True, allow_infinity=False))
def test_holdmon_any_positive_rate_has_a_code(rate_hz: float) -> None:
    """Found by fuzzing: a subnormal rate overflowed r / rate_hz and left no candidate."""
    assert hm.rate_code_for(rate_hz) in range(len(hm.RATE_HZ_BY_CODE))


@given(anything, st.integers(1, 3))
def test_holdmon_si_packet_encoder_raises_only_project_errors(value: object, n: int) -> None:
    header = hm.DataHeader(seq=0, t_first_us=0, n=n)
    for acc in ([[value, 0, 0]] * n, value):
        try:
            hm.encode_data_packet_si(header, acc, np.zeros((n, 3)))
        except (ConfigError, DataError):
            pass


# --------------------------------------------------------------------------------------- witmotion


@given(st.binary(max_size=100))
def test_witmotion_stateless_decoders_raise_only_decode_error(data: bytes) -> None:
    for decode in (wm.decode_frames, wm.decode_register_reply):
        try:
            decode(data)
        except DecodeError as err:
            assert 0 <= err.offset <= err.length == len(data)


@given(anything)
def test_witmotion_nearest_rate_raises_only_config_error(rate: object) -> None:
    try:
        assert wm.nearest_rate_hz(rate) in wm.RATE_CODES
    except ConfigError:
        pass


# ------------------------------------------------------------------------------------------- polar

tlv = st.lists(st.tuples(st.sampled_from(sorted(pl.SETTING_SIZES)), st.integers(0, 3), st.binary(max_size=20)),
               max_size=4).map(lambda items: b"".join(bytes([k, n]) + v for k, n, v in items))


@given(st.lists(st.tuples(st.integers(0, 255), st.integers(0, 255), st.integers(0, 8), tlv), max_size=6))
def test_polar_control_responses_in_a_stream(responses: list) -> None:
    decoder = pl.PolarDecoder()
    for opcode, mtype, error, settings in responses:
        payload = bytes([pl.RESPONSE_CODE, opcode, mtype, error, 0]) + settings
        try:
            assert decoder.decode(payload) == []
        except DecodeError as err:
            assert 0 <= err.offset <= err.length == len(payload)
    assert all(np.isfinite(f) and f > 0 for f in decoder.factors.values())


def test_polar_start_response_with_an_empty_factor_keeps_the_default() -> None:
    """Found by fuzzing: a FACTOR entry with count 0 raised IndexError."""
    decoder = pl.PolarDecoder()
    assert decoder.decode(bytes.fromhex("f0 02 02 00 00 05 00")) == []
    assert pl.ACC not in decoder.factors


@given(anything, anything, anything, anything)
def test_polar_stream_start_encoders_raise_only_config_error(a: object, b: object, c: object, d: object) -> None:
    for encode in (lambda: pl.start_acc_command(a, b, c, d), lambda: pl.start_gyro_command(a, b, c, d),
                   lambda: pl.start_commands(a)):
        try:
            encode()
        except ConfigError:
            pass


@given(st.sampled_from([pl.ACC, pl.GYRO, 0x42]), st.sampled_from([0, 1, 2, 0x80, 0x81, 0x82]),
       st.binary(max_size=120), st.dictionaries(st.integers(0, 20), st.floats(), max_size=3))
def test_polar_decode_frame_with_any_factors(mtype: int, frame_type: int, content: bytes, factors: dict) -> None:
    data = bytes([mtype]) + (10**18).to_bytes(8, "little") + bytes([frame_type]) + content
    try:
        frame = pl.decode_frame(data, factors)
    except DecodeError as err:
        assert 0 <= err.offset <= err.length == len(data)
    else:
        assert frame.values_si.ndim == 2 and frame.values_si.shape[1] == 3


# ------------------------------------------------------------------------------ advertisements

uuid_text = st.one_of(st.text(max_size=40), st.uuids().map(str), st.sampled_from(
    [pl.PMD_SERVICE_UUID.upper(), wm.SERVICE_UUID, "ffe5", "0xFFE5", hm.SERVICE_UUID]))


@given(st.one_of(st.none(), st.text(max_size=30)), st.lists(uuid_text, max_size=5))
def test_any_advertisement_matches_a_profile_or_none(name: str | None, uuids: list[str]) -> None:
    """Names and service UUIDs come from any device in radio range: matching never raises."""
    profile = match_profile(name, uuids)
    assert profile is None or profile.name in PROFILES
