"""`holdmon scan`, `holdmon live` and `holdmon emulate`: thin commands over sensor.ble, sensor.live and
sensor.emulate. The live view itself is `sensor.cli.live_view.render_live` (pure).
"""

from __future__ import annotations

import asyncio
import io
import json
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import wave
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import numpy as np
import typer
from rich.console import Console
from rich.live import Live

from sensor.errors import ConfigError, DeviceError, HoldmonError, RecordingError
from sensor.cli.main import PlacementOpt, SideOpt

if TYPE_CHECKING:
    from sensor.live import LiveSession

CUE_EVENTS = {"hold_start": "hold", "target_reached": "target", "sagging": "sagging", "lower_now": "lower"}
UI_REFRESH_S = 0.125
FLUSH_EVERY_S = 1.0


class ProfileOpt(str, Enum):
    auto = "auto"
    holdmon = "holdmon"
    witmotion = "witmotion"
    polar = "polar"


class EmuProfileOpt(str, Enum):
    holdmon = "holdmon"
    witmotion = "witmotion"


# ------------------------------------------------------------------------------------------ sound


TONES_HZ_S = {  # cue -> list of (frequency Hz, duration s); 0 Hz is a pause
    "hold": [(880.0, 0.12)],
    "target": [(1320.0, 0.1), (0.0, 0.06), (1320.0, 0.1)],
    "sagging": [(440.0, 0.3)],
    "lower": [(660.0, 0.15), (440.0, 0.25)],
}
PLAYERS = (("paplay", ()), ("pw-play", ()), ("aplay", ("-q",)))


def tone_wav(parts: list[tuple[float, float]], rate_hz: int = 22050) -> bytes:
    """16-bit mono WAV bytes of the given tones, with 5 ms fades against clicks."""
    chunks = [np.zeros(0)]
    for freq_hz, dur_s in parts:
        t = np.arange(max(1, int(dur_s * rate_hz))) / rate_hz
        fade = np.minimum(1.0, np.minimum(t, t[-1] - t) / 0.005)
        chunks.append(0.4 * np.sin(2 * np.pi * freq_hz * t) * fade)
    pcm = (np.concatenate(chunks) * 32767).astype("<i2").tobytes()
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate_hz)
        w.writeframes(pcm)
    return buf.getvalue()


class TonePlayer:
    """Short tones through the first audio player on PATH that can actually play (probed once)."""

    def __init__(self) -> None:
        self._dir = Path(tempfile.mkdtemp(prefix="holdmon-tones-"))
        self._files = {cue: self._dir / f"{cue}.wav" for cue in TONES_HZ_S}
        for cue, path in self._files.items():
            path.write_bytes(tone_wav(TONES_HZ_S[cue]))
        silence = self._dir / "probe.wav"
        silence.write_bytes(tone_wav([(0.0, 0.01)]))
        self.argv: list[str] | None = None
        self.reason = "no audio player (paplay, pw-play or aplay) on PATH"
        for name, args in PLAYERS:
            exe = shutil.which(name)
            if exe is None:
                continue
            try:
                probe = subprocess.run([exe, *args, str(silence)], capture_output=True, timeout=3)
            except (OSError, subprocess.TimeoutExpired) as exc:
                self.reason = f"{name}: {exc}"
                continue
            if probe.returncode == 0:
                self.argv = [exe, *args]
                break
            self.reason = f"{name}: {probe.stderr.decode(errors='replace').strip() or 'no audio device'}"
        self._playing: list[subprocess.Popen] = []

    @property
    def available(self) -> bool:
        return self.argv is not None

    def play(self, cue: str) -> None:
        self._playing = [p for p in self._playing if p.poll() is None]
        if self.argv is None or cue not in self._files or len(self._playing) > 2:
            return
        try:
            self._playing.append(subprocess.Popen([*self.argv, str(self._files[cue])],
                                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        except OSError:
            self.argv = None

    def close(self) -> None:
        for p in self._playing:
            try:
                p.wait(1.0)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(self._dir, ignore_errors=True)


# ------------------------------------------------------------------------------------------- live


@dataclass
class LiveOptions:
    devices: list[str]
    profile: str
    adapter: str | None
    records: list[Path]
    sides: list[str]
    stage: int | None
    load_kg: float
    placement: str
    duration_s: float | None
    rate_hz: float
    watchdog_s: float
    scan_timeout_s: float
    no_ui: bool
    json_out: bool
    sound: bool
    params: object = None


def check_live_options(opts: LiveOptions) -> None:
    """ConfigError (exit 2) for option combinations that cannot work."""
    n = max(1, len(opts.devices))
    if opts.stage is not None and opts.stage not in (3, 4):
        raise ConfigError(f"--stage must be 3 or 4, got {opts.stage}")
    if opts.load_kg < 0:
        raise ConfigError(f"--load-kg must be >= 0, got {opts.load_kg}")
    if opts.duration_s is not None and not opts.duration_s > 0:
        raise ConfigError(f"--duration-s must be > 0, got {opts.duration_s}")
    if not opts.watchdog_s > 0:
        raise ConfigError(f"--watchdog-ms must be > 0, got {opts.watchdog_s * 1000:g}")
    if not opts.rate_hz > 0:
        raise ConfigError(f"--rate-hz must be > 0, got {opts.rate_hz}")
    if len(opts.records) > n or len(opts.sides) > n:
        raise ConfigError(f"{len(opts.records)} --record and {len(opts.sides)} --side for {n} sensor(s); "
                          "give at most one of each per --device")
    if n > 1 and (len(opts.records) not in (0, n)):
        raise ConfigError(f"with {n} sensors give one --record per --device (got {len(opts.records)})")
    if len(set(map(str, opts.records))) != len(opts.records):
        raise ConfigError("two sensors cannot record into the same file")
    for path in opts.records:
        if path.exists():
            raise ConfigError(f"{path} exists; refusing to overwrite a recording")


class LiveRun:
    """The running `holdmon live`: sensors found, sessions, links, UI and output."""

    def __init__(self, opts: LiveOptions, out: Console, err: Console) -> None:
        self.opts = opts
        self.out = out
        self.err = err
        self.sessions: list = []
        self.links: list = []
        self.started_s: float | None = None
        self.stop = asyncio.Event()
        self.tones = None
        self.ui_console = err if opts.json_out else out

    async def run(self) -> list:
        """Find, connect, stream until duration/Ctrl-C; returns the finished SessionResults."""
        from sensor.ble import SensorLink, find_sensor

        opts = self.opts
        found = []
        for device in opts.devices or [None]:
            sensor = await find_sensor(device, opts.profile, opts.adapter, opts.scan_timeout_s)
            for other in sensor.same_name_elsewhere:
                self.err.print(f"warning: {other} also advertises {sensor.name!r}; refused, connecting "
                               f"only to {sensor.address}")
            found.append(sensor)
        addresses = [f.address.upper() for f in found]
        if len(set(addresses)) != len(addresses):
            raise DeviceError(f"the same sensor was given twice: {', '.join(addresses)}")
        queue: asyncio.Queue = asyncio.Queue()
        for i, sensor in enumerate(found):
            session = self._open_session(i, sensor)
            self.sessions.append(session)
            self.links.append(SensorLink(sensor, session.profile, session.rate_hz,
                                         lambda item, i=i: queue.put_nowait((i, item)),
                                         adapter=opts.adapter, watchdog_s=opts.watchdog_s))
        if opts.sound:
            self.tones = TonePlayer()
            if not self.tones.available:
                self.err.print(f"sound unavailable: {self.tones.reason}")
        return await self._stream(queue)

    def _open_session(self, index: int, sensor) -> "LiveSession":
        from sensor.ble import nearest_rate_hz
        from sensor.live import LiveSession
        from sensor.protocols import get_profile
        from sensor.recording import RecordingWriter
        from sensor.types import RecordingMeta

        opts = self.opts
        if sensor.profile is None:
            raise DeviceError(f"cannot tell which protocol {sensor.name or ''} {sensor.address} speaks "
                              "from its advertisement; give --profile")
        profile = get_profile(sensor.profile)
        rate_hz = nearest_rate_hz(profile, opts.rate_hz)
        meta = RecordingMeta(device=sensor.name or sensor.address, profile=profile.name, rate_hz=rate_hz,
                             placement=opts.placement, side=opts.sides[index] if index < len(opts.sides) else None,
                             stage=opts.stage, load_kg=opts.load_kg, extra={"address": sensor.address})
        writer = None
        if index < len(opts.records):
            writer = RecordingWriter(opts.records[index], meta, with_seq=profile.has_sample_counter)
        return LiveSession(profile, meta, opts.params, rate_hz, recorder=writer)

    async def _stream(self, queue: asyncio.Queue) -> list:
        from sensor.live import consume

        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self.stop.set)
        consumer = asyncio.create_task(consume(queue, self.sessions, self._on_events))
        link_tasks = [asyncio.create_task(link.run(self.stop)) for link in self.links]
        live = None
        if not self.opts.no_ui:
            from sensor.cli.live_view import render_live

            live = Live(render_live(self.view()), console=self.ui_console, auto_refresh=False, transient=False)
            live.start()
        try:
            await self._tick(live, link_tasks, consumer)
        finally:
            self.stop.set()
            results = await asyncio.gather(*link_tasks, return_exceptions=True)
            queue.put_nowait(None)
            consumer_error = None
            try:
                await consumer
            except HoldmonError as exc:
                consumer_error = exc
            try:
                finished = [s.finish() for s in self.sessions]
            finally:
                self._close_writers()
            if live is not None:
                from sensor.cli.live_view import render_live

                live.update(render_live(self.view()), refresh=True)
                live.stop()
                self.ui_console.line()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)
        for result in results:
            if isinstance(result, BaseException):  # e.g. DeviceError: the first connection failed
                raise result
        if consumer_error is not None:
            raise consumer_error
        return finished

    async def _tick(self, live, link_tasks, consumer) -> None:
        """Refresh the view, flush recordings, end at the duration or when everything has stopped."""
        from sensor.cli.live_view import render_live

        last_flush = time.monotonic()
        while not self.stop.is_set():
            if consumer.done() or all(t.done() for t in link_tasks):
                return
            now = time.monotonic()
            if self.started_s is not None and self.opts.duration_s is not None \
                    and now - self.started_s >= self.opts.duration_s:
                return
            if now - last_flush >= FLUSH_EVERY_S:
                self._flush_writers()
                last_flush = now
            if live is not None:
                live.update(render_live(self.view()), refresh=True)
            try:
                await asyncio.wait_for(self.stop.wait(), UI_REFRESH_S)
            except asyncio.TimeoutError:
                pass

    def _on_events(self, index: int, events: list) -> None:
        from sensor.live import format_event

        side = self.sessions[index].meta.side
        for event in events:
            if event.kind == "streaming" and self.started_s is None:
                self.started_s = time.monotonic()
            if self.opts.no_ui:
                line = format_event(event, side)
                console = self.err if self.opts.json_out else self.out
                console.print(line, markup=False, highlight=False, soft_wrap=True)
            else:
                cue = CUE_EVENTS.get(event.kind)
                if cue is not None:
                    self.ui_console.bell()
            if self.tones is not None and event.kind in CUE_EVENTS:
                self.tones.play(CUE_EVENTS[event.kind])

    def view(self):
        from sensor.live import LiveView

        params = self.opts.params
        elapsed = 0.0 if self.started_s is None else time.monotonic() - self.started_s
        messages = tuple(f"{s.meta.device}: last bad packet: {s.counters.last_decode_error}"
                         for s in self.sessions if s.counters.last_decode_error)
        messages += tuple(f"{s.meta.device}: live analysis stopped: {s.analysis_error}"
                          for s in self.sessions if s.analysis_error)
        messages += tuple(f"{s.meta.device}: {s.rate_warning}" for s in self.sessions if s.rate_warning)
        return LiveView(tuple(s.view() for s in self.sessions), elapsed_s=elapsed,
                        duration_s=self.opts.duration_s, target_hold_s=params.target_hold_s,
                        goal_hold_s=params.goal_hold_s, messages=messages)

    def _flush_writers(self) -> None:
        for session in self.sessions:
            if session.recorder is not None and session.recording_error is None:
                try:
                    session.recorder.flush()
                except RecordingError as exc:
                    session.recording_error = str(exc)

    def _close_writers(self) -> None:
        for session in self.sessions:
            if session.recorder is None:
                continue
            try:
                session.recorder.close()
            except RecordingError as exc:
                session.recording_error = session.recording_error or str(exc)

    def close(self) -> None:
        self._close_writers()
        if self.tones is not None:
            self.tones.close()


def summary_lines(session, result) -> list[str]:
    """The end-of-session summary of one sensor, as text lines."""
    s = session.summary()
    who = f"{s['side']} · " if s["side"] else ""
    lines = [f"{who}{s['device']} ({s['profile']}, {s['rate_hz']:g} Hz): {result.duration_s:.1f} s, "
             f"{s['samples']} samples in {s['packets']} packets, {s['bad_packets']} bad packets, "
             f"{s['lost_samples']} samples lost in {s['gaps']} gaps, {s['reconnects']} reconnects"
             + (f", {s['counter_resets']} counter resets" if s["counter_resets"] else "")
             + (f", {s['duplicate_samples']} duplicate samples dropped" if s["duplicate_samples"] else "")]
    summ = result.summary()
    mean_hold = "-" if summ["mean_hold_s"] is None else f"{summ['mean_hold_s']:.1f} s"
    lines.append(f"  reps {summ['reps']} (target met {summ['reps_target_met']}, aborted {summ['aborted']}), "
                 f"mean hold {mean_hold}")
    for rep in result.reps:
        sway = "" if rep.sway_sd_deg is None else f", sway SD {rep.sway_sd_deg:.2f}°"
        flags = f", flags: {', '.join(rep.flags)}" if rep.flags else ""
        lines.append(f"  #{rep.index}: hold {rep.hold_duration_s:.1f} s"
                     f"{' ✓' if rep.target_met else ''}{sway}{flags}")
    if s["rate_warning"]:
        lines.append(f"  warning: {s['rate_warning']}")
    if s["analysis_error"]:
        lines.append(f"  live analysis stopped: {s['analysis_error']} (replay the recording)")
    if s["recording_error"]:
        lines.append(f"  recording {s['recording']} FAILED after {s['rows_written']} rows: {s['recording_error']}")
    elif s["recording"]:
        lines.append(f"  recording {s['recording']} ({s['rows_written']} rows)")
    return lines


# --------------------------------------------------------------------------------------- commands


def register(app: typer.Typer) -> None:
    """Add scan, live and emulate to the holdmon app."""
    from sensor.cli.main import analysis_params, stderr, stdout

    @app.command()
    def scan(
        adapter: Annotated[Optional[str], typer.Option(help="Bluetooth adapter, e.g. hci0.")] = None,
        timeout_s: Annotated[float, typer.Option(help="How long to listen, in seconds.")] = 5.0,
        json_out: Annotated[bool, typer.Option("--json", help="Print JSON on stdout.")] = False,
    ) -> None:
        """List nearby sensors that match a profile: name, address, profile, signal strength."""
        from sensor.ble import scan as ble_scan

        if not timeout_s > 0:
            raise ConfigError(f"--timeout-s must be > 0, got {timeout_s}")
        found = asyncio.run(ble_scan(adapter, timeout_s))
        if json_out:
            sys.stdout.write(json.dumps({"sensors": [f.to_json() for f in found]}, indent=2) + "\n")
            return
        if not found:
            stderr.print(f"no sensors found within {timeout_s:g} s")
            return
        for f in found:
            rssi = "?" if f.rssi is None else f"{f.rssi} dBm"
            stdout.print(f"{f.address}  {f.profile:<10} {rssi:>8}  {f.name or ''}", markup=False, highlight=False)

    @app.command()
    def live(
        device: Annotated[Optional[list[str]], typer.Option(
            help="Sensor address (connect only to it) or advertised name; repeat for two sensors.")] = None,
        profile: Annotated[ProfileOpt, typer.Option(help="Sensor protocol.")] = ProfileOpt.auto,
        adapter: Annotated[Optional[str], typer.Option(help="Bluetooth adapter, e.g. hci0.")] = None,
        record: Annotated[Optional[list[Path]], typer.Option(
            help="Record every sample to this CSV (one per --device).")] = None,
        side: Annotated[Optional[list[SideOpt]], typer.Option(help="Leg (one per --device).")] = None,
        stage: Annotated[Optional[int], typer.Option(help="Exercise stage, 3 or 4.")] = None,
        load_kg: Annotated[float, typer.Option(help="Ankle weight in kg (stage 4).")] = 0.0,
        placement: Annotated[PlacementOpt, typer.Option(help="Where the sensor is worn.")] = PlacementOpt.ankle,
        duration_s: Annotated[Optional[float], typer.Option(help="Stop after this many seconds of streaming.")] = None,
        rate_hz: Annotated[float, typer.Option(help="Sample rate to configure (nearest supported).")] = 100.0,
        watchdog_ms: Annotated[float, typer.Option(help="No data for this long means the link is lost.")] = 1000.0,
        scan_timeout_s: Annotated[float, typer.Option(help="How long to look for the sensor.")] = 10.0,
        target_hold_s: Annotated[Optional[float], typer.Option(help="Minimum hold time (default 10 s).")] = None,
        goal_hold_s: Annotated[Optional[float], typer.Option(help="Hold goal (default 15 s).")] = None,
        no_ui: Annotated[bool, typer.Option("--no-ui", help="One line per event instead of the live view.")] = False,
        json_out: Annotated[bool, typer.Option("--json", help="Print the replay-format JSON at the end.")] = False,
        sound: Annotated[bool, typer.Option("--sound", help="Play short tones for cues.")] = False,
    ) -> None:
        """Stream a sensor: live feedback on lift angle and hold time, optional recording."""
        opts = LiveOptions(
            devices=list(device or []), profile=profile.value, adapter=adapter, records=list(record or []),
            sides=[s.value for s in side or []], stage=stage, load_kg=load_kg, placement=placement.value,
            duration_s=duration_s, rate_hz=rate_hz, watchdog_s=watchdog_ms / 1000.0,
            scan_timeout_s=scan_timeout_s, no_ui=no_ui, json_out=json_out, sound=sound,
            params=analysis_params(target_hold_s, goal_hold_s))
        check_live_options(opts)
        out = stdout if not json_out else stderr
        runner = LiveRun(opts, out, stderr)
        try:
            results = asyncio.run(runner.run())
        except KeyboardInterrupt:  # before streaming started (while scanning)
            stderr.print("interrupted")
            raise typer.Exit(130) from None
        finally:
            runner.close()
        for session, result in zip(runner.sessions, results):
            for line in summary_lines(session, result):
                out.print(line, markup=False, highlight=False, soft_wrap=True)
        if json_out:
            docs = [r.to_json() for r in results]
            sys.stdout.write(json.dumps(docs[0] if len(docs) == 1 else docs, indent=2) + "\n")
        failed = [s.recording_error for s in runner.sessions if s.recording_error]
        if failed:
            raise HoldmonError(f"recording failed: {'; '.join(failed)}")

    @app.command()
    def emulate(
        profile: Annotated[EmuProfileOpt, typer.Option(help="Packet format to speak.")] = EmuProfileOpt.holdmon,
        from_file: Annotated[Optional[Path], typer.Option("--from", help="Stream this recording.")] = None,
        simulate: Annotated[bool, typer.Option("--simulate", help="Stream a simulated session (default).")] = False,
        adapter: Annotated[str, typer.Option(help="Bluetooth adapter to advertise on.")] = "hci0",
        rate_hz: Annotated[Optional[float], typer.Option(help="Stream rate (default: the source's).")] = None,
        loop: Annotated[bool, typer.Option("--loop", help="Start over at the end of the source.")] = False,
        name: Annotated[Optional[str], typer.Option(help="Advertised name.")] = None,
        seed: Annotated[int, typer.Option(help="Simulator seed (with --simulate).")] = 0,
        emit_log: Annotated[Optional[Path], typer.Option(
            hidden=True, help="Append one line per notification sent to this file (fault tests).")] = None,
        glitch: Annotated[Optional[list[str]], typer.Option(
            hidden=True, help="Fault SIGUSR1 injects: garbage, duplicate or reorder (repeatable).")] = None,
    ) -> None:
        """A virtual sensor on the BlueZ D-Bus API: streams a recording or a simulated session."""
        from sensor.emulate import run_emulator

        if from_file is not None and simulate:
            raise ConfigError("give either --from FILE or --simulate, not both")
        if rate_hz is not None and not rate_hz > 0:
            raise ConfigError(f"--rate-hz must be > 0, got {rate_hz}")
        source = None if from_file is None else str(from_file)
        asyncio.run(run_emulator(source, profile=profile.value, adapter=adapter, rate_hz=rate_hz,
                                 loop=loop, name=name, seed=seed, emit_log=emit_log,
                                 glitches=tuple(glitch or ())))
