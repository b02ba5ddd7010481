"""Sensor clock -> host time mapping: drift, jitter, wraparound, counter resets, gaps, duplicates."""

from __future__ import annotations

import numpy as np
import pytest

from sensor.clock import SensorClock
from sensor.errors import ConfigError

RATE_HZ = 100.0
PER_PACKET = 4
FLOOR_S = 0.004  # smallest notification delay


def stream(duration_s, *, drift=0.0, jitter_s=0.01, seed=0, start_seq=0, t0_s=10.0, rate_hz=RATE_HZ):
    """Packets of a sensor whose crystal runs `drift` fast: (arrival, seq (n,), true host time (n,))."""
    rng = np.random.default_rng(seed)
    n_total = int(duration_s * rate_hz)
    seq = start_seq + np.arange(n_total)
    true_t = t0_s + np.arange(n_total) / (rate_hz * (1.0 + drift))
    packets = []
    for i in range(0, n_total - PER_PACKET + 1, PER_PACKET):
        arrival = true_t[i + PER_PACKET - 1] + FLOOR_S + rng.exponential(jitter_s)
        packets.append((arrival, seq[i:i + PER_PACKET], true_t[i:i + PER_PACKET]))
    # notifications are delivered in order: a late one holds back the next
    for k in range(1, len(packets)):
        if packets[k][0] < packets[k - 1][0]:
            packets[k] = (packets[k - 1][0] + 1e-5, packets[k][1], packets[k][2])
    return packets


def run(clock, packets, modulus=None):
    out_t, out_seq, true = [], [], []
    for arrival, seq, true_t in packets:
        raw = seq % modulus if modulus else seq
        block = clock.map(arrival, len(seq), sample_seq=raw)
        out_t.append(block.t_s)
        out_seq.append(block.seq)
        true.append(true_t[block.keep])
    return np.concatenate(out_t), np.concatenate(out_seq), np.concatenate(true)


def mapping_error_s(t_s, true_t, settle_n):
    """Mapped minus true host time (origin and latency floor removed), after the first settle_n samples."""
    err = t_s - (true_t - true_t[0])
    err = err - np.median(err[settle_n:])
    return np.abs(err[settle_n:])


@pytest.mark.parametrize("drift", [0.0, 300e-6, -1e-3])
def test_drift_is_followed_under_jitter(drift):
    packets = stream(600, drift=drift, jitter_s=0.015)
    clock = SensorClock(RATE_HZ, has_counter=True)
    t_s, seq, true_t = run(clock, packets)
    assert np.all(np.diff(t_s) > 0)
    assert np.array_equal(seq, np.arange(seq.size))
    assert mapping_error_s(t_s, true_t, settle_n=int(30 * RATE_HZ)).max() < 0.003
    assert clock.stats.scale == pytest.approx(1.0 / (1.0 + drift), abs=2e-5)
    assert clock.stats.lost_samples == 0


def test_without_drift_correction_error_would_grow():
    """The test above is meaningful: 300 ppm over 600 s is 180 ms if the clock were not followed."""
    packets = stream(600, drift=300e-6)
    span_true = packets[-1][2][-1] - packets[0][2][0]
    span_sensor = (packets[-1][1][-1] - packets[0][1][0]) / RATE_HZ
    assert abs(span_true - span_sensor) > 0.15


def test_dt_stays_close_to_nominal():
    clock = SensorClock(RATE_HZ, has_counter=True)
    t_s, _, _ = run(clock, stream(60, drift=200e-6, jitter_s=0.03))
    dt = np.diff(t_s)
    assert np.all(dt > 0)
    assert np.median(dt) == pytest.approx(1 / RATE_HZ, rel=1e-3)
    assert dt.max() < 1.5 / RATE_HZ


def test_sequence_gaps_are_counted_and_left_as_gaps():
    packets = stream(20)
    dropped = {50, 51, 52, 200}
    kept = [p for k, p in enumerate(packets) if k not in dropped]
    clock = SensorClock(RATE_HZ, has_counter=True)
    t_s, seq, true_t = run(clock, kept)
    assert clock.stats.lost_samples == len(dropped) * PER_PACKET
    assert clock.stats.gaps == 2
    assert seq.size == (len(packets) - len(dropped)) * PER_PACKET
    i = int(np.argmax(np.diff(seq)))
    assert seq[i + 1] - seq[i] == 3 * PER_PACKET + 1
    assert t_s[i + 1] - t_s[i] == pytest.approx((3 * PER_PACKET + 1) / RATE_HZ, abs=0.003)


def test_gap_bounds_bracket_the_missing_samples():
    packets = stream(10)
    clock = SensorClock(RATE_HZ, has_counter=True)
    blocks = [clock.map(a, len(s), sample_seq=s) for k, (a, s, _) in enumerate(packets) if k != 100]
    gap_blocks = [b for b in blocks if b.lost_samples]
    assert len(gap_blocks) == 1
    b = gap_blocks[0]
    assert b.gap_end_s == b.t_s[0]
    assert b.gap_end_s - b.gap_start_s == pytest.approx((PER_PACKET + 1) / RATE_HZ, abs=0.003)


def test_16_bit_counter_wraps_without_loss():
    packets = stream(60, start_seq=65536 - 1000, drift=100e-6)
    clock = SensorClock(RATE_HZ, has_counter=True, counter_modulus=65536)
    t_s, seq, true_t = run(clock, packets, modulus=65536)
    assert np.array_equal(seq, np.arange(seq.size) + 65536 - 1000)
    assert clock.stats.lost_samples == 0
    assert clock.stats.counter_resets == 0
    assert np.all(np.diff(t_s) > 0)


def test_8_bit_counter_wraps_many_times_with_a_gap():
    packets = stream(30)
    kept = packets[:300] + packets[310:]
    clock = SensorClock(RATE_HZ, has_counter=True, counter_modulus=256)
    _, seq, _ = run(clock, kept, modulus=256)
    assert clock.stats.lost_samples == 10 * PER_PACKET
    assert seq[-1] == packets[-1][1][-1]


def test_counter_continues_across_a_reconnect():
    """The sensor counts on while the link is down: the jump is a gap, not a reset."""
    packets = stream(30)
    clock = SensorClock(RATE_HZ, has_counter=True, counter_modulus=65536)
    _, seq1, _ = run(clock, packets[:200], modulus=65536)
    clock.reconnected()
    _, seq2, _ = run(clock, packets[450:], modulus=65536)
    assert clock.stats.counter_resets == 0
    assert seq2[0] == packets[450][1][0]
    assert clock.stats.lost_samples == 250 * PER_PACKET


def test_counter_reset_after_sensor_reboot_keeps_seq_increasing():
    """After a reboot the counter restarts at 0; seq continues, the gap spans the lost time."""
    before = stream(20, start_seq=5000)
    pause_s = 3.0
    after = stream(20, start_seq=0, t0_s=before[-1][2][-1] + pause_s, seed=1)
    clock = SensorClock(RATE_HZ, has_counter=True, counter_modulus=65536)
    t1, seq1, _ = run(clock, before, modulus=65536)
    clock.reconnected()
    t2, seq2, _ = run(clock, after, modulus=65536)
    assert clock.stats.counter_resets == 1
    assert seq2[0] > seq1[-1]
    assert np.all(np.diff(seq2) == 1)
    assert t2[0] - t1[-1] == pytest.approx(pause_s, abs=0.05)
    assert (seq2[0] - seq1[-1]) / RATE_HZ == pytest.approx(pause_s, abs=0.1)
    assert np.all(np.diff(np.concatenate([t1, t2])) > 0)


def test_reboot_near_the_wrap_is_a_reset_not_a_jump():
    before = stream(10, start_seq=65536 - 2000)
    after = stream(10, start_seq=0, t0_s=before[-1][2][-1] + 2.0, seed=2)
    clock = SensorClock(RATE_HZ, has_counter=True, counter_modulus=65536)
    run(clock, before, modulus=65536)
    clock.reconnected()
    run(clock, after, modulus=65536)
    assert clock.stats.counter_resets == 1
    assert clock.stats.lost_samples == pytest.approx(2.0 * RATE_HZ, abs=10)


def test_reset_without_reconnect_after_a_quick_reboot():
    """A reboot faster than the watchdog: the counter jumps far back inside one connection."""
    before = stream(10, start_seq=90000)
    after = stream(10, start_seq=0, t0_s=before[-1][2][-1] + 0.5, seed=3)
    clock = SensorClock(RATE_HZ, has_counter=True)
    run(clock, before)
    _, seq2, _ = run(clock, after)
    assert clock.stats.counter_resets == 1
    assert seq2[0] > 90000


def test_duplicates_and_stale_packets_are_dropped():
    packets = stream(5)
    noisy = packets[:20] + [packets[18], packets[19]] + packets[20:]
    clock = SensorClock(RATE_HZ, has_counter=True)
    t_s, seq, _ = run(clock, noisy)
    assert np.array_equal(seq, np.arange(len(packets) * PER_PACKET))
    assert clock.stats.duplicate_samples == 2 * PER_PACKET
    assert clock.stats.counter_resets == 0
    assert np.all(np.diff(t_s) > 0)


def test_sensor_clock_without_counter_and_its_gaps():
    """A profile with a sensor timestamp (Polar style): time jumps are gaps, going back is a reset."""
    packets = stream(30, drift=-200e-6)
    clock = SensorClock(RATE_HZ, has_counter=False)
    out, true = [], []
    for k, (arrival, seq, true_t) in enumerate(packets):
        if 300 <= k < 305:
            continue
        b = clock.map(arrival, len(seq), sensor_time_s=1e9 + seq / RATE_HZ)
        assert b.seq is None
        out.append(b.t_s)
        true.append(true_t)
    t_s = np.concatenate(out)
    assert clock.stats.lost_samples == 5 * PER_PACKET
    assert mapping_error_s(t_s, np.concatenate(true), settle_n=2000).max() < 0.003


def test_no_counter_no_clock_counts_samples_and_detects_long_pauses():
    packets = stream(30, jitter_s=0.01)
    kept = packets[:400] + packets[450:]
    clock = SensorClock(RATE_HZ)
    out = [clock.map(a, len(s)).t_s for a, s, _ in kept]
    t_s = np.concatenate(out)
    assert np.all(np.diff(t_s) > 0)
    assert clock.stats.lost_samples == pytest.approx(50 * PER_PACKET, abs=3)
    i = int(np.argmax(np.diff(t_s)))
    assert t_s[i + 1] - t_s[i] == pytest.approx(50 * PER_PACKET / RATE_HZ, abs=0.03)


def test_first_sample_is_time_zero_and_empty_blocks_are_harmless():
    clock = SensorClock(RATE_HZ, has_counter=True)
    empty = clock.map(1.0, 0, sample_seq=np.zeros(0, dtype=np.int64))
    assert empty.t_s.size == 0
    b = clock.map(1.0, 4, sample_seq=np.arange(4))
    assert b.t_s[0] == 0.0
    assert b.t_s[-1] == pytest.approx(3 / RATE_HZ)


def test_bad_rate_is_a_config_error():
    with pytest.raises(ConfigError, match="-5"):
        SensorClock(-5.0)


def test_counter_jumping_ahead_after_a_reconnect_is_kept():
    """A sensor that skipped samples itself (or a stream restarted further on): trust its counter."""
    packets = stream(40)
    clock = SensorClock(RATE_HZ, has_counter=True, counter_modulus=65536)
    run(clock, packets[:200], modulus=65536)
    clock.reconnected()
    late = [(a - 5.0, s, t) for a, s, t in packets[800:]]  # counter 4 s further on than time allows
    t2, seq2, _ = run(clock, late, modulus=65536)
    assert clock.stats.counter_resets == 0
    assert seq2[0] == packets[800][1][0]
    assert np.all(np.abs(np.diff(t2) - 1 / RATE_HZ) < 0.5 / RATE_HZ)
    assert t2[0] == pytest.approx(late[0][0] - packets[0][0], abs=0.06)


def test_counter_paused_while_stopped_continues_without_a_jump():
    """holdmon firmware: the counter pauses while the stream is stopped (STREAM_START after START)."""
    packets = stream(20)
    clock = SensorClock(RATE_HZ, has_counter=True, counter_modulus=65536)
    run(clock, packets[:200], modulus=65536)
    clock.reconnected()
    resumed = [(a + 5.0, s, t) for a, s, t in packets[200:]]
    t2, seq2, true2 = run(clock, resumed, modulus=65536)
    assert clock.stats.counter_resets == 0 and clock.stats.lost_samples == 0
    assert seq2[0] == 200 * PER_PACKET
    # the pause shows in time (5 s), not in the counter, and time runs at the normal pace after it
    dt = np.diff(t2)
    assert np.all(np.abs(dt - 1 / RATE_HZ) < 0.5 / RATE_HZ)
    assert t2[0] == pytest.approx(5.0 + (true2[0] - packets[0][2][0]), abs=0.06)
