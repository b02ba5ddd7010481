"""The emulator's pure part: schedule, source cursor, packets and command replies (no D-Bus)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from sensor.emulate import (DeviceState, HoldmonEmulation, SampleBlock, SourceCursor, StreamSchedule, Streamer,
                            WitmotionEmulation, load_source, make_emulation, resample, supported_rate_hz)
from sensor.errors import ConfigError
from sensor.protocols import holdmon as hm
from sensor.protocols import witmotion as wm
from sensor.types import Samples


def ramp_samples(n: int, rate_hz: float) -> Samples:
    t_s = np.arange(n) / rate_hz
    acc = np.column_stack([np.linspace(-1, 1, n), np.zeros(n), np.full(n, 9.80665)])
    gyr = np.column_stack([np.zeros(n), np.linspace(-0.5, 0.5, n), np.zeros(n)])
    return Samples(t_s, acc, gyr)


def test_schedule_has_no_drift():
    schedule = StreamSchedule(rate_hz=400.0, t0_s=1000.0)
    assert schedule.samples_due(999.0) == 0
    assert schedule.samples_due(1000.0) == 1
    assert schedule.samples_due(1000.0 + 3600.0) == 3600 * 400 + 1
    assert schedule.time_of(3600 * 400) == pytest.approx(1000.0 + 3600.0, abs=1e-9)


def test_cursor_ends_or_loops():
    src = ramp_samples(10, 100.0)
    once = SourceCursor(src, loop=False, start_index=4)
    assert [len(b) for b in iter(lambda: once.take(4), None)] == [4, 2]
    assert once.exhausted
    looping = SourceCursor(src, loop=True, start_index=8)
    block = looping.take(4)
    assert block.first_index == 8
    np.testing.assert_array_equal(block.acc_mps2, src.acc_mps2[[8, 9, 0, 1]])


def test_resample_keeps_a_uniform_signal():
    src = ramp_samples(101, 100.0)
    up = resample(src, 200.0)
    assert len(up) == 201
    np.testing.assert_allclose(up.acc_mps2[::2], src.acc_mps2, atol=1e-12)


def test_source_with_a_gap_is_put_on_a_grid():
    src = ramp_samples(200, 100.0)
    keep = np.r_[0:50, 60:200]
    gappy = Samples(src.t_s[keep], src.acc_mps2[keep], src.gyr_radps[keep])
    grid = load_source(gappy, rate_hz=100.0, seed=0)
    assert len(grid) == 200
    np.testing.assert_allclose(np.diff(grid.t_s), 0.01)


def test_holdmon_packets_decode_to_the_source():
    emu = HoldmonEmulation(200.0)
    src = ramp_samples(8, 200.0)
    block = SampleBlock(65534, src.acc_mps2, src.gyr_radps)
    payload = emu.encode(block, t_first_s=12.5, stream_start=True)
    assert len(payload) == hm.HEADER_SIZE + 8 * hm.SAMPLE_SIZE
    header, _, _ = hm.parse_data_packet(payload)
    assert (header.seq, header.t_first_us, header.stream_start, header.rate_hz) == (65534, 12_500_000, True, 200)
    (packet,) = hm.HoldmonDecoder().decode(payload)
    np.testing.assert_allclose(packet.acc_mps2, src.acc_mps2, atol=hm.acc_scale_mps2(emu.acc_code) / 2)
    np.testing.assert_allclose(packet.gyr_radps, src.gyr_radps, atol=hm.gyro_scale_radps(emu.gyro_code) / 2)


@pytest.mark.parametrize("write, reply", [
    ("0302", "830002"), ("0307", "830301"), ("040202", "84000202"), ("0402", "84020202"),
    ("0505", "8500"), ("7f", "ff01"), ("", "8002"), ("01", "8100"), ("02", "8200"),
])
def test_holdmon_replies_match_the_protocol_examples(write, reply):
    outcome = HoldmonEmulation(100.0).on_write(bytes.fromhex(write), DeviceState(False, 0))
    assert outcome.replies == ((hm.CONTROL_UUID, bytes.fromhex(reply)),)


def test_holdmon_commands_drive_streaming():
    emu = HoldmonEmulation(100.0)
    assert emu.on_write(hm.encode_start(), DeviceState(False, 0)).start
    stop = emu.on_write(hm.encode_stop(), DeviceState(True, 40))
    assert stop.stop and stop.flush
    rate = emu.on_write(hm.encode_set_rate(400), DeviceState(True, 40))
    assert rate.reconfigured and emu.rate_hz == 400 and emu.samples_per_notification() == 16
    status = hm.parse_reply(emu.on_write(hm.encode_read_status(), DeviceState(True, 70000)).replies[0][1])
    assert status.ok and status.fields["next_seq"] == 70000 % 65536 and status.fields["state"] & 1


def test_witmotion_frames_rate_and_register_read():
    emu = WitmotionEmulation(100.0)
    src = ramp_samples(4, 100.0)
    payload = emu.encode(SampleBlock(0, src.acc_mps2, src.gyr_radps), 0.0, False)
    acc, gyr, _ = wm.decode_frames(payload)
    np.testing.assert_allclose(acc, src.acc_mps2, atol=wm.ACC_LSB_MPS2 / 2)
    np.testing.assert_allclose(gyr, src.gyr_radps, atol=wm.GYR_LSB_RADPS / 2)
    assert emu.on_write(wm.rate_command(200.0), DeviceState(True, 0)).reconfigured
    assert emu.rate_hz == 200.0 and emu.samples_per_notification() == 8
    (uuid, reply), = emu.on_write(wm.read_register_command(wm.REG_RATE), DeviceState(True, 0)).replies
    assert uuid == wm.NOTIFY_UUID
    assert wm.decode_register_reply(reply) == (wm.REG_RATE, (wm.RATE_CODES[200.0], 0, 0, 0, 0, 0, 0, 0))
    assert emu.on_write(b"\x00garbage", DeviceState(True, 0)).replies == ()


def test_unsupported_profile_or_rate_is_a_config_error():
    with pytest.raises(ConfigError, match="polar"):
        make_emulation("polar", 100.0)
    with pytest.raises(ConfigError, match="150"):
        make_emulation("holdmon", 150.0)


def test_source_rate_maps_to_the_nearest_profile_rate():
    assert supported_rate_hz("holdmon", 120.0) == 100.0
    assert supported_rate_hz("holdmon", 333.0) == 400.0
    assert supported_rate_hz("witmotion", 104.0) == 100.0


@given(rate_hz=st.sampled_from([50.0, 100.0, 200.0, 400.0]), start_index=st.integers(0, 70000),
       steps_ms=st.lists(st.integers(0, 120), min_size=1, max_size=60), loop=st.booleans())
def test_streamer_sends_every_sample_once_in_order_never_early(rate_hz, start_index, steps_ms, loop):
    n = 300
    source = ramp_samples(n, rate_hz)
    start_index = start_index if loop else start_index % n
    streamer = Streamer(HoldmonEmulation(rate_hz), source, loop=loop, start_index=start_index, clock_origin_s=90.0)
    decoder = hm.HoldmonDecoder()
    now_s = 100.0
    streamer.on_write(hm.encode_start(), now_s)
    sent = []
    for step_ms in steps_ms:
        now_s += step_ms / 1000.0
        for payload, block in streamer.due(now_s):
            (packet,) = decoder.decode(payload)
            last_due_s = 100.0 + (block.first_index + len(block) - 1 - start_index) / rate_hz
            assert last_due_s <= now_s + 1e-9  # never before its last sample is due
            assert packet.sensor_time_s[0] == pytest.approx(100.0 - 90.0 + (block.first_index - start_index) / rate_hz,
                                                            abs=1e-6)
            sent.append(packet)
    flushed, _ = streamer.on_write(hm.encode_stop(), now_s)
    packets = sent + [p for payload, _ in flushed for p in decoder.decode(payload)]
    expected_count = min(int((now_s - 100.0) * rate_hz + 1e-9) + 1, n - start_index if not loop else 10**9)
    seq = np.concatenate([p.sample_seq for p in packets]) if packets else np.zeros(0, dtype=np.int64)
    # The decoder starts from the first packet's 16-bit counter and unwraps from there.
    np.testing.assert_array_equal(seq, start_index % 65536 + np.arange(expected_count))
    if packets:
        acc = np.concatenate([p.acc_mps2 for p in packets])
        rows = (start_index + np.arange(expected_count)) % n
        np.testing.assert_allclose(acc, source.acc_mps2[rows], atol=hm.acc_scale_mps2(hm.DEFAULT_ACC_CODE))
    assert not streamer.streaming and decoder.lost_samples == 0


def test_streamer_rate_change_mid_stream_restarts_with_a_mark():
    source = ramp_samples(2000, 100.0)
    streamer = Streamer(HoldmonEmulation(100.0), source, loop=False, start_index=0, clock_origin_s=0.0)
    streamer.on_write(hm.encode_start(), 10.0)
    first = streamer.due(10.5)
    flushed, outcome = streamer.on_write(hm.encode_set_rate(200.0), 10.5)
    after = streamer.due(11.0)
    headers = [hm.parse_data_packet(p)[0] for p, _ in first + flushed + after]
    assert outcome.replies == ((hm.CONTROL_UUID, bytes.fromhex("830002")),)
    assert [h.stream_start for h in headers].count(True) == 2
    restart = next(i for i, h in enumerate(headers) if i > 0 and h.stream_start)
    assert headers[restart - 1].rate_hz == 100 and headers[restart].rate_hz == 200
    assert headers[restart].seq == 2 * (headers[restart - 1].seq + headers[restart - 1].n)  # same time, twice the rate
