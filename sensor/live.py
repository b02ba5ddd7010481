"""Live session logic: notification bytes -> decoder -> clock -> pipeline and recorder.

No Bluetooth and no terminal here. `LiveSession` takes what the BLE layer hands over (host arrival
time + payload, link state changes) and keeps everything a live view or a script needs; `consume()`
drains a queue of such items. `sensor.ble` fills the queue; tests feed encoded packets directly.

Queue items (`LinkItem`): `("data", host_time_s, payload)` or `("link", host_time_s, state, note)` with
state one of "connecting", "streaming", "stalled", "disconnected", "reconnecting", "stopped".
"""

from __future__ import annotations

import asyncio
import importlib
from dataclasses import dataclass, field
from typing import Callable, Protocol, Union

import numpy as np

from sensor.clock import SensorClock
from sensor.config import AnalysisParams
from sensor.dsp.timebase import continues_without_gap, find_gaps
from sensor.errors import DecodeError, RecordingError
from sensor.pipeline import Event, LivePipeline, SessionResult
from sensor.protocols.base import DecodedPacket, Profile
from sensor.types import RecordingMeta, Rep, Samples

HOLD_BAND_HALF_WIDTH_DEG = 5.0
LINK_KINDS = ("connecting", "streaming", "stalled", "disconnected", "reconnecting", "stopped")
RECORDING_FAILED = "recording_failed"
ANALYSIS_FAILED = "analysis_failed"
RATE_MISMATCH = "rate_mismatch"
RATE_CHECK_AFTER_S = 3.0
RATE_TOLERANCE = 0.1

DataItem = tuple[str, float, bytes]
LinkItem = Union[DataItem, tuple[str, float, str, str]]


@dataclass(frozen=True)
class SensorView:
    """One sensor's part of the view. Angles in degrees, times in seconds.

    connection: one of LINK_KINDS; connection_note: e.g. "no data for 1.0 s, attempt 2".
    target_band_deg: (low, high) where the leg should be held; high None means "at least low".
    cue: 'rest', 'lift', 'hold', '10 s reached', 'leg sagging', 'lower now', 'lower', or
    'calibrating' before the standing reference is known.
    """

    device: str
    profile: str
    side: str | None
    connection: str
    connection_note: str = ""
    rate_hz: float | None = None
    angle_deg: float | None = None
    target_band_deg: tuple[float, float | None] | None = None
    phase: str = "rest"
    cue: str = "rest"
    calibrated: bool = False
    hold_elapsed_s: float = 0.0
    reps_done: int = 0
    last_rep: Rep | None = None
    packets: int = 0
    bad_packets: int = 0
    lost_samples: int = 0
    reconnects: int = 0
    recording_path: str | None = None
    rows_written: int = 0
    recording_error: str | None = None


@dataclass(frozen=True)
class LiveView:
    """Everything the live view shows: one or more sensors, the hold targets and the session clock."""

    sensors: tuple[SensorView, ...]
    elapsed_s: float = 0.0
    duration_s: float | None = None
    target_hold_s: float = 10.0
    goal_hold_s: float = 15.0
    gauge_max_deg: float = 90.0
    messages: tuple[str, ...] = field(default_factory=tuple)


class Recorder(Protocol):
    """What the session needs from a recording writer (sensor.recording.RecordingWriter fits)."""

    rows_written: int
    path: str

    def append(self, samples: Samples) -> None: ...

    def flush(self) -> None: ...


@dataclass
class LinkCounters:
    """Transport statistics of one sensor link."""

    packets: int = 0
    bad_packets: int = 0
    last_decode_error: str = ""
    reconnects: int = 0
    disconnects: int = 0


def counter_modulus(profile: Profile) -> int | None:
    """The wrap of the profile's raw sample counter, when its module declares one (`SEQ_MODULUS`)."""
    try:
        module = importlib.import_module(f"sensor.protocols.{profile.name}")
    except ModuleNotFoundError:
        return None
    return getattr(module, "SEQ_MODULUS", None) if profile.has_sample_counter else None


class ReorderBuffer:
    """Puts notifications that arrive out of order back in sample-counter order.

    A packet that starts after a gap in the counter is held back until the missing samples arrive,
    or until `max_held` packets are waiting (then the gap is real and everything goes on in counter
    order). Packets from before the expected counter (late or duplicated) pass at once; the clock
    drops what it has already seen. Counters are compared modulo `modulus` when given.
    """

    def __init__(self, modulus: int | None, max_held: int = 3) -> None:
        self.modulus = modulus
        self.max_held = max_held
        self._next: int | None = None
        self._held: list[tuple[int, float, DecodedPacket]] = []

    def _ahead(self, first: int) -> int:
        """How far `first` is ahead of the expected counter (negative: behind)."""
        d = first - self._next
        if self.modulus is not None:
            m = self.modulus
            d = (d + m // 2) % m - m // 2
        return d

    def push(self, host_time_s: float, packet: DecodedPacket) -> list[tuple[float, DecodedPacket]]:
        """The packets that may go on now, in order."""
        first = int(packet.sample_seq[0])
        if self._next is not None and self._ahead(first) < 0:
            return [(host_time_s, packet)]
        self._held.append((first, host_time_s, packet))
        return self._release(force_one=len(self._held) > self.max_held)

    def flush(self) -> list[tuple[float, DecodedPacket]]:
        """Everything held, in counter order (at a link change or the end)."""
        return self._release(force_all=True)

    def _release(self, force_one: bool = False, force_all: bool = False) -> list[tuple[float, DecodedPacket]]:
        """Release held packets that continue the counter; forced ones accept the gap before them."""
        out = []
        while self._held:
            if self._next is None:
                i = min(range(len(self._held)), key=lambda k: self._held[k][0])
            else:
                i = min(range(len(self._held)), key=lambda k: self._ahead(self._held[k][0]))
            first = self._held[i][0]
            if self._next is not None and self._ahead(first) > 0 and not (force_one or force_all):
                break
            _, host_s, packet = self._held.pop(i)
            out.append((host_s, packet))
            self._next = first + len(packet)
            force_one = False
        return out

    def restart(self) -> None:
        """A new connection: the counter may start anywhere."""
        self._next = None


class LiveSession:
    """One sensor's live session. Not thread-safe: call from one task (the consumer).

    profile: the sensor's protocol; meta: recording metadata (device, side, stage, rate...);
    rate_hz: the rate the sensor was configured for; recorder: optional writer for every kept sample.
    """

    def __init__(self, profile: Profile, meta: RecordingMeta, params: AnalysisParams, rate_hz: float,
                 recorder: Recorder | None = None) -> None:
        self.profile = profile
        self.meta = meta
        self.params = params
        self.rate_hz = float(rate_hz)
        self.recorder = recorder
        self.decoder = profile.make_decoder()
        modulus = counter_modulus(profile)
        self.clock = SensorClock(self.rate_hz, has_counter=profile.has_sample_counter, counter_modulus=modulus)
        self.reorder = ReorderBuffer(modulus) if profile.has_sample_counter else None
        self.pipeline = LivePipeline(meta, params, self.rate_hz)
        self.counters = LinkCounters()
        self.connection = "connecting"
        self.connection_note = ""
        self._ever_streamed = False
        self._reconnect_pending = False
        self._hold_angle_deg: float | None = None
        self._last_host_s: float | None = None
        self._finished: SessionResult | None = None
        self.recording_error: str | None = None
        self._last_kept: tuple[float, int] | None = None  # (t_s, seq) of the last sample passed on
        self.gaps_in_stream = 0  # gaps as a reader of the recording finds them (counter jumps and pauses)
        self.analysis_error: str | None = None
        self.rate_warning: str | None = None
        self._rate_probe: tuple[float, int] | None = None  # (time s, sample count) at the first packet

    # ------------------------------------------------------------------ input

    def handle(self, item: LinkItem) -> list[Event]:
        """Process one queue item; returns the events it produced (pipeline and link events)."""
        if item[0] == "data":
            _, host_s, payload = item
            return self.on_notification(host_s, payload)
        _, host_s, state, note = item
        return self.on_link(host_s, state, note)

    def on_notification(self, host_time_s: float, payload: bytes) -> list[Event]:
        """Decode one notification; bad bytes are counted (never fatal), good samples go on."""
        self.counters.packets += 1
        self._last_host_s = host_time_s
        if self._reconnect_pending:  # counted once data flows again
            self._reconnect_pending = False
            self.counters.reconnects += 1
        try:
            packets = self.decoder.decode(payload)
        except DecodeError as exc:
            self.counters.bad_packets += 1
            self.counters.last_decode_error = str(exc)
            take_pending = getattr(self.decoder, "take_pending", None)
            packets = take_pending() if take_pending is not None else []
        events: list[Event] = []
        for packet in packets:
            if self.reorder is not None and packet.sample_seq is not None and len(packet):
                for host_s, p in self.reorder.push(host_time_s, packet):
                    events += self._take(host_s, p)
            else:
                events += self._take(host_time_s, packet)
        return events

    def _flush_reorder(self) -> list[Event]:
        events: list[Event] = []
        if self.reorder is not None:
            for host_s, packet in self.reorder.flush():
                events += self._take(host_s, packet)
        return events

    def on_link(self, host_time_s: float, state: str, note: str = "") -> list[Event]:
        """A link state change from the BLE layer; returns it as an event for scripts."""
        if state not in LINK_KINDS:
            raise ValueError(f"unknown link state {state!r}; expected one of {LINK_KINDS}")
        previous, self.connection, self.connection_note = self.connection, state, note
        events = self._flush_reorder()
        if state == "streaming":
            self._rate_probe = None  # measured within one connection only
            if self._ever_streamed:
                self._reconnect_pending = True
                self.decoder = self.profile.make_decoder()
                self.clock.reconnected()
                if self.reorder is not None:
                    self.reorder.restart()
            self._ever_streamed = True
        elif state in ("stalled", "disconnected") and previous == "streaming":
            self.counters.disconnects += 1
        return events + [Event(state, self.session_time_s(host_time_s), message=note)]

    def _take(self, host_time_s: float, packet) -> list[Event]:
        n = len(packet)
        if n == 0:
            return []
        block = self.clock.map(host_time_s, n, packet.sample_seq, packet.sensor_time_s)
        rate_events = self._check_rate(host_time_s, counted=not self.profile.has_sample_counter
                                       and packet.sensor_time_s is None, packet=packet)
        if block.t_s.size == 0:
            return rate_events
        if block.t_s.shape[0] == n:  # all kept (the usual case): the decoder's fresh arrays as they are
            acc_mps2, gyr_radps = packet.acc_mps2, packet.gyr_radps
        else:
            acc_mps2, gyr_radps = packet.acc_mps2[block.keep], packet.gyr_radps[block.keep]
        samples = Samples(block.t_s, acc_mps2, gyr_radps, block.seq if self.profile.has_sample_counter else None)
        self._count_gaps(samples)
        events = rate_events + self._record(samples)
        events += self._analyse(samples)
        for event in events:
            if event.kind == "hold_start":
                self._hold_angle_deg = self.pipeline.state.angle_deg
            elif event.kind in ("hold_end", "rep_done", "rep_aborted"):
                self._hold_angle_deg = None
        return events

    def _count_gaps(self, samples: Samples) -> None:
        """Count gaps exactly as `find_gaps` will find them in the recording: counter jumps, and pauses
        (counter continuous, time jumped: the sensor stopped streaming while the link was down)."""
        if samples.seq is None:
            return
        t_s, seq = samples.t_s, samples.seq
        if self._last_kept is not None and continues_without_gap(*self._last_kept, t_s, seq, self.rate_hz):
            self._last_kept = (float(t_s[-1]), int(seq[-1]))
            return
        if self._last_kept is not None:
            t_s = np.concatenate([[self._last_kept[0]], t_s])
            seq = np.concatenate([[self._last_kept[1]], seq])
        self.gaps_in_stream += len(find_gaps(t_s, seq, self.rate_hz))
        self._last_kept = (float(t_s[-1]), int(seq[-1]))

    def _check_rate(self, host_time_s: float, counted: bool,
                    packet: DecodedPacket | None = None) -> list[Event]:
        """Once, a few seconds into the stream: does the sensor send at the rate it was configured for?
        (A sensor that ignored the rate command would get wrong times and a wrong analysis.) Lost
        samples count when a counter or the sensor's clock says so, not when the clock only guessed
        them from late arrivals (`counted`). A packet with both a sample counter and sensor times is
        measured on the sensor's own clock, so a host that stalled (notifications arriving in a burst
        afterwards) cannot fake a wrong rate."""
        if self.rate_warning is not None:
            return []
        stats = self.clock.stats
        count = stats.samples + stats.duplicate_samples + (0 if counted else stats.lost_samples)
        now_s = host_time_s
        if packet is not None and packet.sensor_time_s is not None and packet.sample_seq is not None:
            now_s, count = float(packet.sensor_time_s[-1]), int(packet.sample_seq[-1])
        if self._rate_probe is None:
            self._rate_probe = (now_s, count)
            return []
        start_s, start_count = self._rate_probe
        span_s = now_s - start_s
        if span_s < RATE_CHECK_AFTER_S:
            return []
        measured_hz = (count - start_count) / span_s
        if abs(measured_hz / self.rate_hz - 1.0) <= RATE_TOLERANCE:
            self.rate_warning = ""
            return []
        self.rate_warning = (f"the sensor sends about {measured_hz:.0f} Hz, not the configured {self.rate_hz:g} Hz; "
                             f"restart with --rate-hz {measured_hz:.0f}")
        return [Event(RATE_MISMATCH, self.session_time_s(host_time_s), message=self.rate_warning)]

    def _analyse(self, samples: Samples) -> list[Event]:
        """Feed the pipeline; should the analysis fail, recording goes on and the failure is shown."""
        if self.analysis_error is not None:
            return []
        try:
            return self.pipeline.feed(samples)
        except Exception as exc:  # noqa: BLE001 - the recording must outlive an analysis bug
            self.analysis_error = f"{type(exc).__name__}: {exc}"
            return [Event(ANALYSIS_FAILED, float(samples.t_s[0]), message=f"analysis stopped: {self.analysis_error}")]

    def _record(self, samples: Samples) -> list[Event]:
        """Append to the recording; a failing disk stops the recording, never the live session."""
        if self.recorder is None or self.recording_error is not None:
            return []
        try:
            self.recorder.append(samples)
        except RecordingError as exc:
            self.recording_error = str(exc)
            return [Event(RECORDING_FAILED, float(samples.t_s[0]), message=f"recording stopped: {exc}")]
        return []

    # ------------------------------------------------------------------ output

    def session_time_s(self, host_time_s: float) -> float:
        """Host monotonic time on the recording's time base (0 before the first sample)."""
        origin = self.clock.origin_host_s
        return 0.0 if origin is None else host_time_s - origin

    def target_band_deg(self) -> tuple[float, float | None]:
        """Where the leg should be: around the current hold's start angle, else the last rep's mean,
        else at least the lift threshold."""
        centre = self._hold_angle_deg
        last = self.pipeline.state.last_rep
        if centre is None and last is not None:
            centre = last.hold_angle_mean_deg
        if centre is None:
            return (self.params.lift_angle_min_deg, None)
        return (centre - HOLD_BAND_HALF_WIDTH_DEG, centre + HOLD_BAND_HALF_WIDTH_DEG)

    def view(self) -> SensorView:
        """This session as the live view shows it."""
        state = self.pipeline.state
        return SensorView(
            device=self.meta.device, profile=self.profile.name, side=self.meta.side,
            connection=self.connection, connection_note=self.connection_note, rate_hz=self.rate_hz,
            angle_deg=state.angle_deg, target_band_deg=self.target_band_deg(), phase=state.phase,
            cue=state.cue, calibrated=state.calibrated, hold_elapsed_s=state.hold_elapsed_s,
            reps_done=state.reps_done, last_rep=state.last_rep, packets=self.counters.packets,
            bad_packets=self.counters.bad_packets, lost_samples=self.clock.stats.lost_samples,
            reconnects=self.counters.reconnects,
            recording_path=None if self.recorder is None else self.recorder.path,
            rows_written=0 if self.recorder is None else self.recorder.rows_written,
            recording_error=self.recording_error,
        )

    def finish(self) -> SessionResult:
        """End of session: flush the recording, close the open rep, return the result (idempotent)."""
        if self._finished is None:
            self._flush_reorder()
            if self.recorder is not None and self.recording_error is None:
                try:
                    self.recorder.flush()
                except RecordingError as exc:
                    self.recording_error = str(exc)
            path = "" if self.recorder is None else self.recorder.path
            self._finished = self.pipeline.finish(path)
        return self._finished

    def summary(self) -> dict:
        """Counters for the end-of-session summary (JSON-ready)."""
        stats = self.clock.stats
        state = self.pipeline.state
        return {
            "device": self.meta.device, "profile": self.profile.name, "side": self.meta.side,
            "rate_hz": self.rate_hz, "samples": stats.samples, "packets": self.counters.packets,
            "bad_packets": self.counters.bad_packets, "lost_samples": stats.lost_samples,
            "duplicate_samples": stats.duplicate_samples,
            "gaps": self.gaps_in_stream if self.profile.has_sample_counter else stats.gaps,
            "counter_resets": stats.counter_resets, "disconnects": self.counters.disconnects,
            "reconnects": self.counters.reconnects, "reps": state.reps_done,
            "recording": None if self.recorder is None else self.recorder.path,
            "rows_written": None if self.recorder is None else self.recorder.rows_written,
            "recording_error": self.recording_error,
            "analysis_error": self.analysis_error,
            "rate_warning": self.rate_warning or None,
        }


async def consume(queue: asyncio.Queue, sessions: list[LiveSession],
                  on_events: Callable[[int, list[Event]], None]) -> None:
    """Drain `(sensor index, item)` pairs from `queue` into the sessions until a `None` arrives.

    `on_events(index, events)` gets every non-empty list of events (printing, bells).
    """
    while True:
        entry = await queue.get()
        if entry is None:
            return
        index, item = entry
        events = sessions[index].handle(item)
        if events:
            on_events(index, events)


def format_event(event: Event, side: str | None = None) -> str:
    """One line for `--no-ui` output: `  12.34 s  left  hold_start  ...`."""
    who = f"{side}  " if side else ""
    text = f"{event.t_s:8.2f} s  {who}{event.kind}"
    rep = event.rep
    if rep is not None and event.kind == "rep_done":
        angle = "" if rep.hold_angle_mean_deg is None else f"  angle {rep.hold_angle_mean_deg:.1f}°"
        sway = "" if rep.sway_sd_deg is None else f"  sway SD {rep.sway_sd_deg:.2f}°"
        flags = f"  flags: {','.join(rep.flags)}" if rep.flags else ""
        text += f"  #{rep.index}  hold {rep.hold_duration_s:.1f} s{angle}{sway}{flags}"
    if event.message:
        text += f"  {event.message}"
    return text

