"""The live view: a pure function from what is known right now to a rich renderable.

Nothing here reads the clock, a sensor or the terminal; `render_live(view)` is all there is, so the
view is tested by rendering into a captured console. `live_cmds` builds a `sensor.live.LiveView` from the
running sessions (`LiveSession.view()`) a few times a second and hands it to `rich.live.Live`.
"""

from __future__ import annotations

from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from sensor.live import LiveView, SensorView
from sensor.types import Rep

GAUGE_WIDTH = 40
TIMER_WIDTH = 30
CONNECTION_STYLES = {
    "scanning": "yellow",
    "connecting": "yellow",
    "streaming": "green",
    "stalled": "red",
    "disconnected": "red",
    "reconnecting": "yellow",
    "stopped": "dim",
}
CUE_STYLES = {
    "rest": "dim",
    "lift": "cyan",
    "hold": "bold green",
    "leg sagging": "bold yellow",
    "lower now": "bold magenta",
    "lower": "cyan",
}


def render_live(view: LiveView) -> RenderableType:
    """The whole screen: a panel per sensor, then the session line and recent messages."""
    parts: list[RenderableType] = [_sensor_panel(s, view) for s in view.sensors]
    parts.append(_footer(view))
    return Group(*parts)


def _sensor_panel(s: SensorView, view: LiveView) -> Panel:
    grid = Table.grid(padding=(0, 1))
    grid.add_column(style="bold", width=9)
    grid.add_column()
    grid.add_row("cue", _cue_text(s))
    grid.add_row("angle", angle_gauge(s.angle_deg, s.target_band_deg, view.gauge_max_deg))
    grid.add_row("hold", hold_timer(s.hold_elapsed_s if s.phase == "hold" else 0.0,
                                    view.target_hold_s, view.goal_hold_s))
    grid.add_row("reps", Text(f"{s.reps_done}" + (f" ({s.side})" if s.side else "")))
    grid.add_row("last rep", last_rep_text(s.last_rep, view.target_hold_s))
    grid.add_row("link", _link_text(s))
    if s.recording_error:
        grid.add_row("recording", Text(f"FAILED after {s.rows_written} rows: {s.recording_error}", style="bold red"))
    elif s.recording_path:
        grid.add_row("recording", Text(f"{s.recording_path} ({s.rows_written} rows)"))
    title = f"{s.side + ' · ' if s.side else ''}{s.device} ({s.profile})"
    return Panel(grid, title=title, title_align="left", border_style=CONNECTION_STYLES.get(s.connection, "white"))


def _cue_text(s: SensorView) -> Text:
    if s.connection != "streaming":
        note = f" – {s.connection_note}" if s.connection_note else ""
        return Text(f"{s.connection.upper()}{note}", style=CONNECTION_STYLES.get(s.connection, "white"))
    if not s.calibrated:
        return Text("STAND STILL (calibrating)", style="bold cyan")
    style = CUE_STYLES.get(s.cue, "bold green" if s.cue.endswith("reached") else "white")
    return Text(s.cue.upper(), style=style)


def angle_gauge(angle_deg: float | None, band_deg: tuple[float, float | None] | None,
                max_deg: float, width: int = GAUGE_WIDTH) -> Text:
    """`[----====|====---]  42.3°  target 35-45°`: the band as '=', the angle as '|' (or '>' if off scale)."""
    top = max(max_deg, (angle_deg or 0.0) + 5.0, (band_deg[1] or 0.0) if band_deg else 0.0)
    cells = ["-"] * width
    styles = ["dim"] * width
    if band_deg is not None:
        low = _cell(band_deg[0], top, width)
        high = width - 1 if band_deg[1] is None else _cell(band_deg[1], top, width)
        for i in range(low, high + 1):
            cells[i], styles[i] = "=", "green"
    if angle_deg is not None:
        i = _cell(angle_deg, top, width)
        in_band = band_deg is not None and angle_deg >= band_deg[0] and (
            band_deg[1] is None or angle_deg <= band_deg[1])
        cells[i], styles[i] = "|", "bold green" if in_band else "bold yellow"
    text = Text("[")
    for ch, st in zip(cells, styles):
        text.append(ch, style=st)
    text.append("]  ")
    text.append("--.-°" if angle_deg is None else f"{angle_deg:5.1f}°", style="bold")
    if band_deg is not None:
        band = f"≥ {band_deg[0]:.0f}°" if band_deg[1] is None else f"{band_deg[0]:.0f}–{band_deg[1]:.0f}°"
        text.append(f"  target {band}", style="dim")
    return text


def _cell(value_deg: float, top_deg: float, width: int) -> int:
    return int(min(width - 1, max(0, round(value_deg / top_deg * (width - 1)))))


def hold_timer(elapsed_s: float, target_s: float, goal_s: float, width: int = TIMER_WIDTH) -> Text:
    """`[#######.....:....]  7.4 s / 10 s (goal 15 s)`: ':' marks the target, the bar ends at the goal."""
    full = _cell(min(elapsed_s, goal_s), goal_s, width) + 1 if elapsed_s > 0 else 0
    mark = _cell(target_s, goal_s, width)
    text = Text("[")
    for i in range(width):
        if i < full:
            text.append("#", style="bold green" if elapsed_s >= target_s else "green")
        else:
            text.append(":" if i == mark else ".", style="dim")
    text.append("]  ")
    text.append(f"{elapsed_s:4.1f} s", style="bold")
    text.append(f" / {target_s:g} s (goal {goal_s:g} s)", style="dim")
    return text


def last_rep_text(rep: Rep | None, target_s: float) -> Text:
    """`#3  hold 11.2 s ✓  knee up 41 cm  hip 86±5°  sway SD 1.3°  tremor 4.1 °/s  flags: sagging` (or `—`).

    Knee height (the ankle's rise) and hip flexion appear where the sensor could measure them.
    """
    if rep is None:
        return Text("—", style="dim")
    text = Text(f"#{rep.index}  hold {rep.hold_duration_s:.1f} s ")
    text.append("✓" if rep.target_met else f"(< {target_s:g} s)",
                style="green" if rep.target_met else "yellow")
    rise_cm, hip_deg = rep.extra.get("ankle_rise_cm"), rep.extra.get("hip_flexion_deg")
    if rise_cm is not None:
        text.append(f"  knee up {rise_cm:.0f} cm")
    if hip_deg is not None:
        hip_sd_deg = rep.extra.get("hip_flexion_uncertainty_deg")
        text.append(f"  hip {hip_deg:.0f}" + (f"±{hip_sd_deg:.0f}°" if hip_sd_deg is not None else "°"))
    if rep.sway_sd_deg is not None:
        text.append(f"  sway SD {rep.sway_sd_deg:.1f}°")
    if rep.tremor_rms_dps is not None:
        text.append(f"  tremor {rep.tremor_rms_dps:.1f} °/s")
    if rep.flags:
        text.append(f"  flags: {', '.join(rep.flags)}", style="yellow")
    return text


def _link_text(s: SensorView) -> Text:
    text = Text(s.connection, style=CONNECTION_STYLES.get(s.connection, "white"))
    if s.connection_note:
        text.append(f" ({s.connection_note})")
    if s.rate_hz:
        text.append(f"  {s.rate_hz:g} Hz")
    text.append(f"  packets {s.packets}  bad {s.bad_packets}  lost {s.lost_samples} samples",
                style="red" if s.bad_packets or s.lost_samples else "")
    if s.reconnects:
        text.append(f"  reconnects {s.reconnects}")
    return text


def _footer(view: LiveView) -> Text:
    text = Text(f"session {view.elapsed_s:6.1f} s", style="dim")
    if view.duration_s is not None:
        text.append(f" / {view.duration_s:g} s", style="dim")
    text.append("   Ctrl-C ends the session", style="dim")
    for message in view.messages:
        text.append("\n" + message)
    return text
