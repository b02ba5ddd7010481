"""One self-contained HTML report (inline PNG plots by matplotlib, inline CSS, no network) for sessions.

`build_report(sessions, ...)` returns the page and the figures (name -> PNG bytes); the CLI writes
them. Every string that comes from a recording (paths, device names, notes) is HTML-escaped.
"""

from __future__ import annotations

import base64
import html
import io
from dataclasses import dataclass, field
from datetime import datetime, timezone

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from scipy import signal  # noqa: E402

from sensor import __version__  # noqa: E402
from sensor.analysis.phases import PHASE_CODES  # noqa: E402
from sensor.analysis.verify import Verification  # noqa: E402
from sensor.history import WeekTrend  # noqa: E402
from sensor.pipeline import SessionResult  # noqa: E402
from sensor.types import Rep, Samples  # noqa: E402

PHASE_COLOURS = {"lift": "#f5c26b", "hold": "#8fd19e", "lower": "#9ec5fe"}
BAND_TOLERANCE_DEG = 3.0


@dataclass(frozen=True)
class ReportSession:
    """An analysed recording and its samples (for the tremor spectra). `role`: 'session' or 'baseline'."""

    result: SessionResult
    samples: Samples
    role: str = "session"


@dataclass
class Report:
    html: str
    figures: dict[str, bytes] = field(default_factory=dict)


def _png(fig: plt.Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=96, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def _label(s: ReportSession) -> str:
    meta = s.result.meta
    load = f", {meta.load_kg:g} kg" if meta.load_kg else ""
    stage = f"stage {meta.stage}" if meta.stage else "stage ?"
    return f"{s.result.path.rsplit('/', 1)[-1]} ({meta.side or 'side ?'}, {stage}{load})"


def _holds(reps: list[Rep]) -> list[Rep]:
    return [r for r in reps if r.hold_start_s is not None and r.hold_end_s is not None]


def angle_trace_figure(result: SessionResult, target_hold_s: float) -> bytes:
    """Angle over time with rest/lift/hold/lower shaded and the hold band (median hold angle +- 3 deg)."""
    trace = result.trace
    fig, ax = plt.subplots(figsize=(11, 3.4))
    ax.plot(trace.t_s, trace.angle_deg, lw=0.8, color="#1f3b73", label="lift angle")
    for name, colour in PHASE_COLOURS.items():
        mask = trace.phase == PHASE_CODES[name]
        ax.fill_between(trace.t_s, 0, 1, where=mask, transform=ax.get_xaxis_transform(),
                        color=colour, alpha=0.45, lw=0, label=name)
    holds = [r.hold_angle_mean_deg for r in _holds(result.reps) if r.hold_angle_mean_deg is not None]
    if holds:
        centre = float(np.median(holds))
        ax.axhspan(centre - BAND_TOLERANCE_DEG, centre + BAND_TOLERANCE_DEG, color="#6c757d", alpha=0.15,
                   label=f"hold band {centre:.0f}±{BAND_TOLERANCE_DEG:g}°")
    for rep in _holds(result.reps):
        ax.axvline(rep.hold_start_s + target_hold_s, color="#2b8a3e", lw=0.8, ls=":")
    ax.set_xlabel("time (s)")
    ax.set_ylabel(f"{result.placement} segment tilt (°)")
    ax.set_title("Lift angle; dotted lines: the hold target after each hold start")
    ax.legend(loc="upper right", fontsize=8, ncol=5)
    return _png(fig)


def rep_bars_figure(result: SessionResult, target_hold_s: float, goal_hold_s: float) -> bytes:
    """Per-rep hold duration against the target and goal, and sway SD."""
    reps = result.reps
    idx = [r.index for r in reps]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 3.2))
    colours = ["#2b8a3e" if r.target_met else "#c92a2a" for r in reps]
    ax1.bar(idx, [r.hold_duration_s for r in reps], color=colours)
    ax1.axhline(target_hold_s, color="#495057", ls="--", lw=1, label=f"target {target_hold_s:g} s")
    ax1.axhline(goal_hold_s, color="#495057", ls=":", lw=1, label=f"goal {goal_hold_s:g} s")
    ax1.set(xlabel="rep", ylabel="hold (s)", title="Hold duration (red: target missed)")
    ax1.legend(fontsize=8)
    ax2.bar(idx, [r.sway_sd_deg or 0.0 for r in reps], color="#1f3b73")
    ax2.set(xlabel="rep", ylabel="sway SD (°)", title="Sway during the hold")
    for ax in (ax1, ax2):
        ax.set_xticks(idx)
    return _png(fig)


def tremor_spectra_figure(session: ReportSession, settle_s: float) -> bytes | None:
    """Welch spectrum of angular speed |gyro| over each hold, with the 4-12 Hz band shaded."""
    result, samples = session.result, session.samples
    fig, ax = plt.subplots(figsize=(11, 3.2))
    drawn = 0
    for rep in _holds(result.reps):
        lo, hi = np.searchsorted(samples.t_s, [rep.hold_start_s + settle_s, rep.hold_end_s])
        if hi - lo < int(2 * result.rate_hz):
            continue
        speed_dps = np.degrees(np.linalg.norm(samples.gyr_radps[lo:hi], axis=1))
        freqs_hz, psd = signal.welch(speed_dps - speed_dps.mean(), fs=result.rate_hz,
                                     nperseg=min(hi - lo, int(2 * result.rate_hz)))
        ax.semilogy(freqs_hz[1:], psd[1:], lw=1, label=f"rep {rep.index}")
        drawn += 1
    if not drawn:
        plt.close(fig)
        return None
    ax.axvspan(4, 12, color="#f08c00", alpha=0.12, label="tremor band 4-12 Hz")
    ax.set(xlabel="frequency (Hz)", ylabel="PSD ((°/s)²/Hz)", title="Tremor spectrum of each hold",
           xlim=(0, min(25.0, result.rate_hz / 2)))
    ax.legend(fontsize=8, ncol=4)
    return _png(fig)


def hip_flexion_figure(result: SessionResult) -> bytes | None:
    """Estimated hip flexion per rep with its uncertainty (ankle placement), when measured."""
    reps = [r for r in result.reps if r.extra.get("hip_flexion_deg") is not None]
    if not reps:
        return None
    fig, ax = plt.subplots(figsize=(11, 3.0))
    ax.errorbar([r.index for r in reps], [r.extra["hip_flexion_deg"] for r in reps],
                yerr=[r.extra.get("hip_flexion_uncertainty_deg") or 0.0 for r in reps],
                fmt="o", color="#5f3dc4", capsize=4)
    ax.set(xlabel="rep", ylabel="hip flexion (°)", title="Estimated hip flexion at the start of each hold")
    ax.set_xticks([r.index for r in reps])
    return _png(fig)


def comparison_figure(sessions: list[ReportSession], title: str) -> bytes:
    """Mean hold time, sway SD and tremor RMS of each session, side by side."""
    labels = [_label(s) for s in sessions]
    metrics = [("hold (s)", "hold_duration_s"), ("sway SD (°)", "sway_sd_deg"), ("tremor RMS (°/s)", "tremor_rms_dps")]
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.4))
    for ax, (name, key) in zip(axes, metrics):
        means = []
        for s in sessions:
            values = [getattr(r, key) for r in _holds(s.result.reps) if getattr(r, key) is not None]
            means.append(float(np.mean(values)) if values else 0.0)
        colours = ["#c92a2a" if s.result.meta.load_kg else "#1f3b73" for s in sessions]
        ax.bar(range(len(sessions)), means, color=colours)
        ax.set_xticks(range(len(sessions)), [str(i + 1) for i in range(len(sessions))])
        ax.set_title(name)
    fig.suptitle(title + "  (" + "; ".join(f"{i + 1}: {lab}" for i, lab in enumerate(labels)) + ")", fontsize=8)
    return _png(fig)


def trend_figure(weeks: list[WeekTrend]) -> bytes:
    """Weekly mean hold time, sway SD and tremor from the history."""
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.2))
    x = range(len(weeks))
    for ax, (name, key) in zip(axes, [("hold (s)", "mean_hold_s"), ("sway SD (°)", "mean_sway_sd_deg"),
                                      ("tremor RMS (°/s)", "mean_tremor_rms_dps")]):
        ax.plot(list(x), [getattr(w, key) if getattr(w, key) is not None else np.nan for w in weeks], "o-")
        ax.set_xticks(list(x), [w.week for w in weeks], rotation=45, fontsize=7)
        ax.set_title(name)
    fig.suptitle("Weekly trend from the session history")
    return _png(fig)


STYLE = """
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#212529}
h1{font-size:1.6em}h2{border-bottom:1px solid #dee2e6;padding-bottom:.2em;margin-top:1.6em}
table{border-collapse:collapse;font-size:.85em;margin:.6em 0}th,td{border:1px solid #dee2e6;padding:.25em .5em;
text-align:right}th{background:#f1f3f5}td.l{text-align:left}img{max-width:100%}.bad{color:#c92a2a}.ok{color:#2b8a3e}
.note{color:#495057;font-size:.9em}
"""

# Counts the plots that decoded, so a reader (or a test) can see the page is complete.
SCRIPT = """
window.addEventListener('load', function () {
  var imgs = document.querySelectorAll('img.plot');
  var ok = 0;
  imgs.forEach(function (img) { if (img.complete && img.naturalWidth > 0) { ok += 1; } });
  document.body.setAttribute('data-plots-total', imgs.length);
  document.body.setAttribute('data-plots-loaded', ok);
});
"""


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _img(name: str, png: bytes, alt: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return f'<img class="plot" id="{_e(name)}" alt="{_e(alt)}" src="data:image/png;base64,{data}">'


def _fmt(value: object, digits: int = 1) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return _e(value)


def rep_table_html(reps: list[Rep]) -> str:
    cols = [("#", "index", 0), ("hold s", "hold_duration_s", 1), ("mean °", "hold_angle_mean_deg", 1),
            ("sway SD °", "sway_sd_deg", 2), ("sag °/s", "sag_deg_per_s", 2), ("tremor °/s", "tremor_rms_dps", 2),
            ("corrections", "corrections", 0)]
    head = "".join(f"<th>{_e(c)}</th>" for c, _, _ in cols) + "<th>hip flexion °</th><th>flags</th>"
    rows = []
    for r in reps:
        cells = "".join(f"<td>{_fmt(getattr(r, key), d)}</td>" for _, key, d in cols)
        cells += f"<td>{_fmt(r.extra.get('hip_flexion_deg'))}</td>"
        cells += f'<td class="l">{_e(", ".join(r.flags) or "-")}</td>'
        rows.append(f"<tr>{cells}</tr>")
    return f"<table><tr>{head}</tr>{''.join(rows)}</table>"


def verdict_html(verification: Verification) -> str:
    verdict = "stable" if verification.stable else "unstable"
    css = "ok" if verification.stable else "bad"
    rows = "".join(
        f'<tr><td>{v.index}</td><td class="{"ok" if v.stable else "bad"}">{"stable" if v.stable else "unstable"}'
        f'</td><td class="l">{_e("; ".join(v.reasons) or "-")}</td></tr>' for v in verification.reps)
    reasons = "".join(f"<li>{_e(r)}</li>" for r in verification.reasons)
    return (f'<p>Session verdict: <b class="{css}">{verdict}</b></p><ul>{reasons}</ul>'
            f"<table><tr><th>rep</th><th>verdict</th><th>reasons</th></tr>{rows}</table>")


def _session_section(s: ReportSession, figures: dict[str, bytes], n: int, target_hold_s: float,
                     goal_hold_s: float, settle_s: float) -> str:
    meta, res = s.result.meta, s.result
    summary = res.summary()
    parts = [f"<h2>{_e(_label(s))}</h2>",
             f'<p class="note">{_e(res.path)} · device {_e(meta.device or "?")} · {res.samples} samples, '
             f"{res.duration_s:.0f} s at {res.rate_hz:.0f} Hz · {len(res.gaps)} gap(s) · note: {_e(meta.note or '-')}</p>",
             f"<p>{summary['reps']} reps, {summary['reps_target_met']} reached {target_hold_s:g} s.</p>"]
    plots = [("angle", angle_trace_figure(res, target_hold_s), "lift angle trace"),
             ("reps", rep_bars_figure(res, target_hold_s, goal_hold_s), "hold duration and sway per rep"),
             ("tremor", tremor_spectra_figure(s, settle_s), "tremor spectra"),
             ("hip", hip_flexion_figure(res), "hip flexion per rep")]
    for kind, png, alt in plots:
        if png is not None:
            name = f"s{n}_{kind}"
            figures[name] = png
            parts.append(_img(name, png, f"{alt}: {_label(s)}"))
    parts.append(rep_table_html(res.reps))
    return "\n".join(parts)


def build_report(sessions: list[ReportSession], *, target_hold_s: float = 10.0, goal_hold_s: float = 15.0,
                 settle_s: float = 1.0, verifications: list[tuple[str, Verification]] | None = None,
                 trend: list[WeekTrend] | None = None) -> Report:
    """The whole page. Sessions with role 'baseline' are drawn too and compared with the weighted ones;
    `verifications` are (recording label, verdict) pairs."""
    figures: dict[str, bytes] = {}
    body = [f"<h1>holdmon report</h1><p class=\"note\">{len(sessions)} recording(s); made by holdmon "
            f"{__version__} on {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC.</p>"]
    for label, verification in verifications or []:
        body.append(f"<h2>Weighted lift verification: {_e(label)}</h2>" + verdict_html(verification))
    loads = {s.result.meta.load_kg > 0 for s in sessions}
    if len(loads) == 2:
        figures["weighted_vs_baseline"] = comparison_figure(sessions, "Weighted (red) against unweighted (blue)")
        body.append("<h2>Weighted against baseline</h2>" + _img("weighted_vs_baseline",
                    figures["weighted_vs_baseline"], "weighted against baseline"))
    sides = {s.result.meta.side for s in sessions}
    if {"left", "right"} <= sides:
        ordered = sorted(sessions, key=lambda s: str(s.result.meta.side))
        figures["left_vs_right"] = comparison_figure(ordered, "Left against right")
        body.append("<h2>Left against right</h2>" + _img("left_vs_right", figures["left_vs_right"],
                                                        "left against right"))
    if trend:
        figures["trend"] = trend_figure(trend)
        body.append("<h2>Trend</h2>" + _img("trend", figures["trend"], "weekly trend"))
    for n, s in enumerate(sessions, start=1):
        body.append(_session_section(s, figures, n, target_hold_s, goal_hold_s, settle_s))
    page = (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>holdmon report</title>'
            f"<style>{STYLE}</style><script>{SCRIPT}</script></head><body>{''.join(body)}</body></html>")
    return Report(page, figures)
