"""The live view is a pure function of the state: render it into a captured console and read it back."""

from __future__ import annotations

import pytest
from rich.console import Console

from sensor.cli.live_view import angle_gauge, hold_timer, render_live
from sensor.live import LiveView, SensorView
from sensor.types import Rep


def text_of(renderable, width=110) -> str:
    console = Console(record=True, width=width, color_system=None, force_terminal=False)
    console.print(renderable)
    return console.export_text()


def sensor(**kw) -> SensorView:
    base = dict(device="holdmon-1A2B", profile="holdmon", side="left", connection="streaming",
                rate_hz=100.0, calibrated=True, angle_deg=3.0, target_band_deg=(20.0, None))
    base.update(kw)
    return SensorView(**base)


def rep(**kw) -> Rep:
    base = dict(index=2, lift_start_s=10.0, hold_start_s=11.0, hold_end_s=23.5, lower_end_s=24.5,
                hold_duration_s=12.5, peak_angle_deg=48.0, hold_angle_mean_deg=45.0, sway_sd_deg=1.3,
                sway_range_deg=4.0, sag_deg_per_s=-0.1, mean_speed_dps=30.0, tremor_rms_dps=4.1,
                tremor_growth=1.2, corrections=1, target_met=True, flags=[])
    base.update(kw)
    return Rep(**base)


@pytest.mark.parametrize("phase, cue, elapsed_s, shown", [
    ("rest", "rest", 0.0, "REST"),
    ("lift", "lift", 0.0, "LIFT"),
    ("hold", "hold", 4.2, "HOLD"),
    ("hold", "10 s reached", 10.6, "10 S REACHED"),
    ("hold", "leg sagging", 8.0, "LEG SAGGING"),
    ("hold", "lower now", 15.2, "LOWER NOW"),
    ("lower", "lower", 0.0, "LOWER"),
])
def test_each_phase_and_cue_is_shown(phase, cue, elapsed_s, shown):
    view = LiveView((sensor(phase=phase, cue=cue, hold_elapsed_s=elapsed_s, angle_deg=40.0),))
    out = text_of(render_live(view))
    assert f"cue       {shown}" in out
    if phase == "hold":
        assert f"{elapsed_s:4.1f} s / 10 s (goal 15 s)" in out
    else:
        assert " 0.0 s / 10 s" in out


def test_calibrating_before_the_standing_reference():
    out = text_of(render_live(LiveView((sensor(calibrated=False, angle_deg=None),))))
    assert "STAND STILL (calibrating)" in out
    assert "--.-°" in out


@pytest.mark.parametrize("state, note", [
    ("connecting", ""), ("stalled", "no data for 1.0 s"), ("reconnecting", "attempt 2, next in 1.0 s"),
    ("disconnected", "link lost"),
])
def test_connection_state_replaces_the_cue(state, note):
    out = text_of(render_live(LiveView((sensor(connection=state, connection_note=note, reconnects=1),))))
    assert state.upper() in out
    assert note in out
    assert f"link      {state}" in out
    assert "reconnects 1" in out


def test_counters_recording_and_last_rep():
    s = sensor(packets=1234, bad_packets=3, lost_samples=12, recording_path="out.csv", rows_written=5000,
               reps_done=2, last_rep=rep(flags=["sagging", "unsteady"]))
    out = text_of(render_live(LiveView((s,), elapsed_s=42.0, duration_s=60.0)))
    assert "packets 1234  bad 3  lost 12 samples" in out
    assert "out.csv (5000 rows)" in out
    assert "reps      2 (left)" in out
    assert "#2  hold 12.5 s ✓  sway SD 1.3°  tremor 4.1 °/s  flags: sagging, unsteady" in out
    assert "42.0 s / 60 s" in out
    assert "100 Hz" in out


def test_short_hold_is_marked_and_missing_metrics_are_left_out():
    r = rep(hold_duration_s=6.0, target_met=False, sway_sd_deg=None, tremor_rms_dps=None, flags=["early_drop"])
    out = text_of(render_live(LiveView((sensor(last_rep=r),))))
    assert "#2  hold 6.0 s (< 10 s)  flags: early_drop" in out
    assert "sway" not in out


def test_two_sensors_are_two_panels():
    view = LiveView((sensor(side="left", reps_done=3), sensor(side="right", device="holdmon-9F00", reps_done=1)))
    out = text_of(render_live(view))
    assert "left · holdmon-1A2B (holdmon)" in out and "right · holdmon-9F00 (holdmon)" in out
    assert "reps      3 (left)" in out and "reps      1 (right)" in out


def test_angle_gauge_band_and_marker():
    g = angle_gauge(45.0, (40.0, 50.0), 90.0, width=19).plain
    assert g.startswith("[--------=|=--------]")  # 40-50 of 90 on 19 cells: cells 8-10, 45 at 9
    assert "45.0°" in g and "target 40–50°" in g
    assert "target ≥ 20°" in angle_gauge(None, (20.0, None), 90.0).plain


def test_angle_beyond_the_scale_stretches_the_gauge():
    g = angle_gauge(120.0, None, 90.0, width=20).plain
    assert g[1:21].index("|") < 19
    assert "120.0°" in g


def test_hold_timer_marks_the_target_and_stops_at_the_goal():
    t = hold_timer(0.0, 10.0, 15.0, width=16).plain
    assert t.startswith("[") and t[1:17].count(":") == 1 and "#" not in t
    full = hold_timer(20.0, 10.0, 15.0, width=16).plain
    assert full[1:17] == "#" * 16
    assert "20.0 s / 10 s (goal 15 s)" in full
    half = hold_timer(7.5, 10.0, 15.0, width=16).plain
    assert half[1:17].count("#") == 9


def test_a_failed_recording_is_shown():
    s = sensor(recording_path="out.csv", rows_written=440, recording_error="out.csv: File too large")
    out = text_of(render_live(LiveView((s,))))
    assert "recording FAILED after 440 rows: out.csv: File too large" in out


def test_cue_tones_are_valid_wav():
    import io
    import wave

    from sensor.cli.live_cmds import TONES_HZ_S, tone_wav

    for parts in TONES_HZ_S.values():
        with wave.open(io.BytesIO(tone_wav(parts, rate_hz=8000))) as w:
            assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (1, 2, 8000)
            assert w.getnframes() == sum(int(d * 8000) for _, d in parts)


def test_event_lines_for_scripts():
    from sensor.live import format_event
    from sensor.pipeline import Event

    assert format_event(Event("hold_start", 6.5), "left") == "    6.50 s  left  hold_start"
    line = format_event(Event("rep_done", 19.94, rep=rep(index=1, flags=["sagging"])))
    assert line == "   19.94 s  rep_done  #1  hold 12.5 s  angle 45.0°  sway SD 1.30°  flags: sagging"
    assert format_event(Event("stalled", 3.0, message="no data for 1.0 s")).endswith("stalled  no data for 1.0 s")


def test_messages_are_listed_under_the_panels():
    out = text_of(render_live(LiveView((sensor(),), messages=("holdmon-1A2B: last bad packet: holdmon packet: x",))))
    assert out.rstrip().endswith("holdmon-1A2B: last bad packet: holdmon packet: x")


def test_knee_height_and_hip_flexion_where_measured():
    measured = rep(extra={"ankle_rise_cm": 41.4, "hip_flexion_deg": 86.2, "hip_flexion_uncertainty_deg": 4.6})
    out = text_of(render_live(LiveView((sensor(last_rep=measured),))))
    assert "#2  hold 12.5 s ✓  knee up 41 cm  hip 86±5°  sway SD 1.3°" in out
    refused = rep(extra={"ankle_rise_cm": None, "hip_flexion_deg": None})
    assert "knee up" not in text_of(render_live(LiveView((sensor(last_rep=refused),))))
