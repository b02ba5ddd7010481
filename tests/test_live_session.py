"""The live session glue (decoder -> clock -> pipeline -> recorder) fed with encoded packets, no BLE."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from sensor.config import AnalysisParams
from sensor.live import LiveSession, consume, format_event
from sensor.pipeline import analyze
from sensor.protocols import holdmon, witmotion
from sensor.recording import RecordingWriter, read_recording, write_recording
from sensor.simulate import SimConfig, simulate_session
from sensor.types import RecordingMeta

RATE_HZ = 100.0
PER_PACKET = 4
LATENCY_S = 0.006


@pytest.fixture(scope="module")
def sim():
    return simulate_session(SimConfig(reps=2, seed=3, lost_packet_rate=0.0, early_drop_rate=0.0,
                                      balance_loss_rate=0.0, aborted_rate=0.0))


def holdmon_packets(samples, start=0, seq0=0, host0_s=100.0, seed=0):
    """(host arrival s, payload) per notification of PER_PACKET samples, sample counter from seq0."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(start, len(samples) - PER_PACKET + 1, PER_PACKET):
        sl = slice(i, i + PER_PACKET)
        header = holdmon.DataHeader(seq=seq0 + i - start, t_first_us=int(samples.t_s[i] * 1e6), n=PER_PACKET,
                                    rate_code=holdmon.rate_code_for(RATE_HZ))
        payload = holdmon.encode_data_packet_si(header, samples.acc_mps2[sl], samples.gyr_radps[sl])
        arrival = host0_s + samples.t_s[i + PER_PACKET - 1] + LATENCY_S + rng.exponential(0.01)
        out.append((arrival, payload))
    for k in range(1, len(out)):  # delivered in order
        if out[k][0] <= out[k - 1][0]:
            out[k] = (out[k - 1][0] + 1e-5, out[k][1])
    return out


def make_session(tmp_path, profile=holdmon.PROFILE, name="live.csv"):
    meta = RecordingMeta(device="holdmon-test", profile=profile.name, rate_hz=RATE_HZ, side="left", stage=3)
    writer = RecordingWriter(tmp_path / name, meta, with_seq=profile.has_sample_counter)
    return LiveSession(profile, meta, AnalysisParams(), RATE_HZ, recorder=writer), writer


def feed(session, packets):
    events = session.on_link(packets[0][0] - 0.5, "streaming", "connected")
    for host_s, payload in packets:
        events += session.on_notification(host_s, payload)
    return events


def rep_spans(result):
    return [(r.hold_start_s, r.hold_end_s) for r in result.reps]


def test_every_sample_is_recorded_and_replay_finds_the_source_reps(sim, tmp_path):
    packets = holdmon_packets(sim.samples)
    session, writer = make_session(tmp_path)
    events = feed(session, packets)
    result = session.finish()
    writer.close()
    n = len(packets) * PER_PACKET

    rec = read_recording(tmp_path / "live.csv")
    assert len(rec.samples) == n
    assert np.array_equal(rec.samples.seq, np.arange(n))
    assert rec.gaps == []
    assert session.clock.stats.lost_samples == 0
    # time base: host time, same spacing as the sensor's
    assert np.allclose(np.diff(rec.samples.t_s), np.diff(sim.samples.t_s[:n]), atol=0.002)

    src = tmp_path / "source.csv"
    write_recording(src, sim.meta, sim.samples.slice(0, n))
    replay_live = analyze(rec, AnalysisParams())
    replay_src = analyze(read_recording(src), AnalysisParams())
    assert len(replay_live.reps) == len(replay_src.reps) == len(sim.truth["reps"])
    for (a0, a1), (b0, b1) in zip(rep_spans(replay_live), rep_spans(replay_src)):
        assert a0 - b0 == pytest.approx(0.0, abs=0.05)
        assert a1 - b1 == pytest.approx(0.0, abs=0.05)

    kinds = [e.kind for e in events]
    assert kinds[0] == "streaming"
    assert kinds.count("rep_done") == len(result.reps) == len(sim.truth["reps"])
    assert "hold_start" in kinds and "target_reached" in kinds


def test_garbage_packets_are_counted_never_fatal(sim, tmp_path):
    rng = np.random.default_rng(5)
    packets = holdmon_packets(sim.samples.slice(0, 3000))
    noisy = []
    garbage = 0
    for k, (host_s, payload) in enumerate(packets):
        noisy.append((host_s, payload))
        if k % 37 == 5:
            junk = bytes(rng.integers(0, 256, size=int(rng.integers(0, 40)), dtype=np.uint8))
            junk = bytes([junk[0] & 0x1F | 0x40]) + junk[1:] if junk else junk  # never a reply/v1 header
            noisy.append((host_s + 1e-6, junk))
            garbage += 1
        if k % 53 == 7:
            noisy.append((host_s + 2e-6, payload[: len(payload) // 2]))  # truncated
            garbage += 1
    session, writer = make_session(tmp_path)
    feed(session, noisy)
    writer.close()
    assert session.counters.bad_packets == garbage
    assert "holdmon packet" in session.counters.last_decode_error
    assert session.counters.packets == len(noisy)
    rec = read_recording(tmp_path / "live.csv")
    assert len(rec.samples) == len(packets) * PER_PACKET
    assert session.view().bad_packets == garbage


def test_lost_notifications_are_gaps_in_the_recording(sim, tmp_path):
    packets = holdmon_packets(sim.samples.slice(0, 3000))
    dropped = {100, 101, 102, 400}
    session, writer = make_session(tmp_path)
    feed(session, [p for k, p in enumerate(packets) if k not in dropped])
    writer.close()
    assert session.clock.stats.lost_samples == len(dropped) * PER_PACKET
    rec = read_recording(tmp_path / "live.csv")
    assert [g.missing_samples for g in rec.gaps] == [3 * PER_PACKET, PER_PACKET]
    assert len(rec.samples) == (len(packets) - len(dropped)) * PER_PACKET
    assert session.summary()["lost_samples"] == sum(g.missing_samples for g in rec.gaps)


def test_reconnect_after_sensor_reboot_continues_the_same_file(sim, tmp_path):
    """The link drops, the sensor reboots (counter back to 0), the recording goes on with a marked gap."""
    s = sim.samples
    first = holdmon_packets(s.slice(0, 1500))
    pause_s = 2.0
    second = holdmon_packets(s.slice(1500, 3000), host0_s=first[-1][0] + pause_s - s.t_s[1500], seed=1)
    session, writer = make_session(tmp_path)
    events = feed(session, first)
    t_drop = first[-1][0] + 1.0
    events += session.on_link(t_drop, "stalled", "no data for 1.0 s")
    events += session.on_link(t_drop + 0.1, "reconnecting", "attempt 1")
    events += session.on_link(second[0][0] - 0.05, "streaming", "reconnected")
    for host_s, payload in second:
        events += session.on_notification(host_s, payload)
    writer.close()
    kinds = [e.kind for e in events]
    assert kinds.count("streaming") == 2 and "stalled" in kinds and "reconnecting" in kinds
    assert session.counters.reconnects == 1 and session.counters.disconnects == 1
    assert session.clock.stats.counter_resets == 1
    rec = read_recording(tmp_path / "live.csv")
    assert len(rec.samples) == 3000
    assert np.all(np.diff(rec.samples.seq) >= 1) and np.all(np.diff(rec.samples.t_s) > 0)
    assert len(rec.gaps) == 1
    gap = rec.gaps[0]
    assert gap.end_s - gap.start_s == pytest.approx(pause_s, abs=0.1)
    assert not [i for i in rec.issues if i.kind in ("non_monotonic_time", "duplicate_time")]


def test_reconnect_without_reboot_keeps_the_sensor_counter(sim, tmp_path):
    s = sim.samples
    packets = holdmon_packets(s.slice(0, 3000))
    session, writer = make_session(tmp_path)
    feed(session, packets[:300])
    session.on_link(packets[300][0], "disconnected", "link lost")
    session.on_link(packets[450][0] - 0.01, "streaming", "reconnected")
    for host_s, payload in packets[450:]:
        session.on_notification(host_s, payload)
    writer.close()
    rec = read_recording(tmp_path / "live.csv")
    assert session.clock.stats.counter_resets == 0
    assert rec.samples.seq[-1] == len(packets) * PER_PACKET - 1
    assert [g.missing_samples for g in rec.gaps] == [150 * PER_PACKET]


def test_witmotion_stream_has_no_seq_column(sim, tmp_path):
    s = sim.samples.slice(0, 1200)
    session, writer = make_session(tmp_path, profile=witmotion.PROFILE)
    packets = []
    for i in range(0, len(s) - 2 + 1, 2):
        sl = slice(i, i + 2)
        payload = witmotion.encode_frames(s.acc_mps2[sl], s.gyr_radps[sl], np.zeros((2, 3)))
        packets.append((50.0 + s.t_s[i + 1] + LATENCY_S, payload))
    feed(session, packets)
    writer.close()
    rec = read_recording(tmp_path / "live.csv")
    assert rec.samples.seq is None
    assert len(rec.samples) == len(packets) * 2
    assert session.counters.bad_packets == 0
    assert np.median(np.diff(rec.samples.t_s)) == pytest.approx(1 / RATE_HZ, rel=0.01)


def test_consume_drains_the_queue_and_reports_events(sim, tmp_path):
    packets = holdmon_packets(sim.samples.slice(0, 800))
    session, writer = make_session(tmp_path)
    seen = []

    async def main():
        queue: asyncio.Queue = asyncio.Queue()
        queue.put_nowait((0, ("link", packets[0][0] - 0.1, "streaming", "connected")))
        for host_s, payload in packets:
            queue.put_nowait((0, ("data", host_s, payload)))
        queue.put_nowait(None)
        await consume(queue, [session], lambda i, evs: seen.extend(evs))

    asyncio.run(main())
    writer.close()
    assert seen[0].kind == "streaming"
    assert writer.rows_written == len(packets) * PER_PACKET
    line = format_event(seen[0], "left")
    assert "left" in line and "streaming" in line and "connected" in line


def test_view_reflects_the_session(sim, tmp_path):
    session, writer = make_session(tmp_path)
    assert session.view().connection == "connecting"
    feed(session, holdmon_packets(sim.samples.slice(0, 600)))
    view = session.view()
    writer.close()
    assert view.connection == "streaming"
    assert view.calibrated
    assert view.angle_deg is not None
    assert view.rows_written == 600
    assert view.target_band_deg == (AnalysisParams().lift_angle_min_deg, None)


def test_a_full_disk_stops_the_recording_not_the_session(sim, tmp_path):
    """Writes beyond a file-size limit fail like a full disk: the live session goes on, the error is kept."""
    import resource
    import signal

    packets = holdmon_packets(sim.samples.slice(0, 2000))
    session, writer = make_session(tmp_path)
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (30_000, hard))
    try:
        events = feed(session, packets)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous)
    failed = [e for e in events if e.kind == "recording_failed"]
    assert len(failed) == 1 and "recording stopped" in failed[0].message
    assert session.recording_error is not None
    assert session.pipeline.state.samples == 2000  # analysis saw everything
    assert session.view().recording_error == session.recording_error
    rows = writer.rows_written
    writer.close()
    rec = read_recording(tmp_path / "live.csv")
    assert rows <= len(rec.samples) < 2000  # what reached the disk replays (a cut last line is dropped)
    assert session.summary()["recording_error"]


@pytest.mark.parametrize("args, message", [
    (["live", "--stage", "5"], "--stage must be 3 or 4"),
    (["live", "--duration-s", "0"], "--duration-s must be > 0"),
    (["live", "--load-kg", "-1"], "--load-kg must be >= 0"),
    (["live", "--record", "a.csv", "--record", "b.csv"], "at most one of each per --device"),
    (["live", "--device", "AA:BB:CC:DD:EE:01", "--device", "AA:BB:CC:DD:EE:02", "--record", "a.csv"],
     "one --record per --device"),
    (["live", "--record", "EXISTING"], "refusing to overwrite"),
    (["emulate", "--from", "x.csv", "--simulate"], "either --from FILE or --simulate"),
])
def test_bad_options_exit_2_with_one_line(args, message, tmp_path):
    from typer.testing import CliRunner

    from sensor.cli.main import app

    existing = tmp_path / "existing.csv"
    existing.write_text("")
    args = [str(existing) if a == "EXISTING" else a for a in args]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("holdmon: error:") and message in lines[0]


@pytest.mark.parametrize("seq0", [0, 65536 - 1000])
def test_out_of_order_and_duplicated_notifications_lose_nothing(sim, tmp_path, seq0):
    """Every received sample is recorded once, in counter order: swapped pairs are put back,
    duplicates dropped (and counted), a real loss is still a gap (also across the 16-bit wrap)."""
    packets = holdmon_packets(sim.samples.slice(0, 2400), seq0=seq0)
    shuffled = list(packets)
    for k in (40, 200, 350):  # packet k+1 overtakes packet k
        shuffled[k], shuffled[k + 1] = shuffled[k + 1], shuffled[k]
    shuffled.insert(500, packets[499])  # a duplicate
    del shuffled[560]  # a real loss (packet 559)
    session, writer = make_session(tmp_path)
    feed(session, shuffled)
    session.finish()
    writer.close()
    rec = read_recording(tmp_path / "live.csv")
    expected = np.concatenate([np.arange(559 * PER_PACKET), np.arange(560 * PER_PACKET, 600 * PER_PACKET)])
    np.testing.assert_array_equal(rec.samples.seq, seq0 + expected)
    assert np.all(np.diff(rec.samples.t_s) > 0)
    assert [g.missing_samples for g in rec.gaps] == [PER_PACKET]
    assert session.clock.stats.duplicate_samples == PER_PACKET
    assert session.clock.stats.lost_samples == PER_PACKET


def test_held_packets_are_released_at_a_link_change(sim, tmp_path):
    packets = holdmon_packets(sim.samples.slice(0, 400))
    session, writer = make_session(tmp_path)
    feed(session, packets[:50] + packets[51:53])  # 50 missing: 51 and 52 wait for it
    assert writer.rows_written == 50 * PER_PACKET
    session.on_link(packets[53][0], "disconnected", "link lost")
    writer.close()
    assert writer.rows_written == 52 * PER_PACKET


def test_polar_frames_are_timed_by_the_sensor_clock(tmp_path):
    """Polar PMD: no sample counter; the sensor's nanosecond timestamps place samples and gaps."""
    from sensor.protocols import polar

    rate_hz = polar.NORMAL_RATE_HZ
    s = simulate_session(SimConfig(reps=1, seed=4, rate_hz=rate_hz, lost_packet_rate=0.0)).samples
    per_frame = 8
    t0_ns = 800_000_000 * 10**9
    frames = []
    for i in range(0, 1200 - per_frame + 1, per_frame):
        sl = slice(i, i + per_frame)
        stamp_ns = t0_ns + round(s.t_s[i + per_frame - 1] * 1e9)
        arrival = 20.0 + s.t_s[i + per_frame - 1] + LATENCY_S
        acc = polar.encode_frame(polar.ACC, stamp_ns, polar.quantise(polar.ACC, s.acc_mps2[sl]))
        gyr = polar.encode_frame(polar.GYRO, stamp_ns, polar.quantise(polar.GYRO, s.gyr_radps[sl]))
        frames.append((arrival, [acc, gyr]))
    kept = frames[:100] + frames[103:]  # three frame pairs lost
    meta = RecordingMeta(device="Polar Sense 1", profile="polar", rate_hz=rate_hz)
    writer = RecordingWriter(tmp_path / "polar.csv", meta, with_seq=False)
    session = LiveSession(polar.PROFILE, meta, AnalysisParams(), rate_hz, recorder=writer)
    session.on_link(19.0, "streaming", "connected")
    for arrival, payloads in kept:
        for k, payload in enumerate(payloads):
            session.on_notification(arrival + k * 1e-4, payload)
    writer.close()
    rec = read_recording(tmp_path / "polar.csv")
    assert session.counters.bad_packets == 0
    assert rec.samples.seq is None
    assert len(rec.samples) == len(kept) * per_frame
    assert session.clock.stats.lost_samples == 3 * per_frame
    assert [g.missing_samples for g in rec.gaps] == [3 * per_frame]
    assert np.median(np.diff(rec.samples.t_s)) == pytest.approx(1 / rate_hz, rel=1e-3)
    np.testing.assert_allclose(rec.samples.acc_mps2[:800], s.acc_mps2[:800], atol=0.01)


def test_link_drop_with_the_counter_paused_is_a_time_jump(sim, tmp_path):
    """holdmon firmware: a disconnect stops the stream and pauses the counter; after the reconnect the
    counter goes on without a jump. The recording shows the pause as a jump in time, seq unbroken."""
    s = sim.samples
    first = holdmon_packets(s.slice(0, 1000))
    pause_s = 3.0
    # the sensor resumes with sample 1000 (counter paused), but 3 s later in host time
    second = holdmon_packets(s.slice(1000, 2000), seq0=1000, host0_s=first[-1][0] + pause_s - s.t_s[1000], seed=2)
    session, writer = make_session(tmp_path)
    feed(session, first)
    session.on_link(first[-1][0] + 1.0, "disconnected", "link lost")
    session.on_link(second[0][0] - 0.05, "streaming", "reconnected")
    for host_s, payload in second:
        session.on_notification(host_s, payload)
    writer.close()
    rec = read_recording(tmp_path / "live.csv")
    np.testing.assert_array_equal(rec.samples.seq, np.arange(2000))
    dt = np.diff(rec.samples.t_s)
    jump = int(np.argmax(dt))
    assert jump == 999
    assert dt[jump] == pytest.approx(pause_s, abs=0.1)  # re-anchored on the first packet: its jitter
    assert np.all(np.abs(np.delete(dt, jump) - 1 / RATE_HZ) < 0.5 / RATE_HZ)
    assert session.clock.stats.lost_samples == 0 and session.clock.stats.counter_resets == 0


def test_a_sensor_ignoring_the_rate_command_is_reported(sim, tmp_path):
    """WitMotion-style stream (no counter) at 50 Hz while 100 Hz was configured."""
    s = sim.samples.slice(0, 600)
    session, writer = make_session(tmp_path, profile=witmotion.PROFILE)
    packets = [(50.0 + 2 * s.t_s[i + 1] + LATENCY_S,
                witmotion.encode_frames(s.acc_mps2[i:i + 2], s.gyr_radps[i:i + 2], np.zeros((2, 3))))
               for i in range(0, len(s) - 1, 2)]
    events = feed(session, packets)
    writer.close()
    warned = [e for e in events if e.kind == "rate_mismatch"]
    assert len(warned) == 1
    assert "about 50 Hz, not the configured 100 Hz" in warned[0].message
    assert session.summary()["rate_warning"] == warned[0].message


def test_matching_rate_gives_no_warning(sim, tmp_path):
    session, writer = make_session(tmp_path)
    events = feed(session, holdmon_packets(sim.samples.slice(0, 800)))
    writer.close()
    assert not [e for e in events if e.kind == "rate_mismatch"]
    assert session.summary()["rate_warning"] is None
