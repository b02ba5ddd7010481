"""Plain data types shared by every layer: samples, recording metadata, gaps, reps, results.

Conventions: arrays of vectors are `(n, 3)` in sensor x, y, z order; SI units at this level
(`_s`, `_mps2`, `_radps`, `_ut`); angles in results are degrees (`_deg`, `_dps`).
Quaternions are named with their order, e.g. `quat_wxyz` (vqf is w-first).
"""

from __future__ import annotations

from dataclasses import dataclass, field, asdict
from typing import Literal

import numpy as np

Placement = Literal["ankle", "thigh"]
Side = Literal["left", "right"]

FORMAT_VERSION = 1


@dataclass(frozen=True)
class Samples:
    """A block of IMU samples in SI units.

    t_s: (n,) float64 seconds, strictly increasing within a clean block.
    acc_mps2: (n, 3) float64 specific force (reads +9.81 on the axis pointing up at rest).
    gyr_radps: (n, 3) float64 angular rate.
    seq: (n,) int64 sensor sample counter (unwrapped), or None when the source has none.
    mag_ut: (n, 3) float64 magnetic field, or None.
    """

    t_s: np.ndarray
    acc_mps2: np.ndarray
    gyr_radps: np.ndarray
    seq: np.ndarray | None = None
    mag_ut: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.t_s.shape[0])

    def slice(self, start: int, stop: int) -> "Samples":
        """Samples[start:stop] as a new block (views, no copies)."""
        return Samples(
            self.t_s[start:stop],
            self.acc_mps2[start:stop],
            self.gyr_radps[start:stop],
            None if self.seq is None else self.seq[start:stop],
            None if self.mag_ut is None else self.mag_ut[start:stop],
        )

    @staticmethod
    def empty(with_seq: bool = False) -> "Samples":
        return Samples(
            np.zeros(0), np.zeros((0, 3)), np.zeros((0, 3)),
            np.zeros(0, dtype=np.int64) if with_seq else None,
        )

    @staticmethod
    def concat(blocks: list["Samples"]) -> "Samples":
        """Join blocks in order; seq/mag are kept only if every block has them."""
        if not blocks:
            return Samples.empty()
        has_seq = all(b.seq is not None for b in blocks)
        has_mag = all(b.mag_ut is not None for b in blocks)
        return Samples(
            np.concatenate([b.t_s for b in blocks]),
            np.concatenate([b.acc_mps2 for b in blocks]),
            np.concatenate([b.gyr_radps for b in blocks]),
            np.concatenate([b.seq for b in blocks]) if has_seq else None,
            np.concatenate([b.mag_ut for b in blocks]) if has_mag else None,
        )


@dataclass
class RecordingMeta:
    """The `# key: value` header of a recording (format v1). Unknown keys land in `extra`."""

    format_version: int = FORMAT_VERSION
    device: str = ""
    profile: str = ""
    rate_hz: float | None = None
    placement: Placement = "ankle"
    side: Side | None = None
    stage: int | None = None
    load_kg: float = 0.0
    note: str = ""
    extra: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Gap:
    """Missing data between two received samples: (start_s, end_s) are the samples bracketing it."""

    start_s: float
    end_s: float
    missing_samples: int

    def to_json(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class DataIssue:
    """Something odd found in the data that is not fatal (reported, data kept).

    kind: 'truncated_last_line' | 'non_monotonic_time' | 'duplicate_time' | 'gap' | 'nan' |
          'units_acc_g' | 'units_gyr_dps' | ...
    line: 1-based file line where it was first seen, or None.
    """

    kind: str
    message: str
    line: int | None = None
    count: int = 1


REP_FLAGS = ("early_drop", "sagging", "unsteady", "balance_loss", "aborted")


@dataclass
class Rep:
    """One lift. Times are seconds on the recording's time base; None where not reached (aborted)."""

    index: int
    lift_start_s: float
    hold_start_s: float | None
    hold_end_s: float | None
    lower_end_s: float | None
    hold_duration_s: float
    peak_angle_deg: float | None
    hold_angle_mean_deg: float | None
    sway_sd_deg: float | None
    sway_range_deg: float | None
    sag_deg_per_s: float | None
    mean_speed_dps: float | None
    tremor_rms_dps: float | None
    tremor_growth: float | None
    corrections: int
    target_met: bool
    flags: list[str] = field(default_factory=list)
    extra: dict[str, object] = field(default_factory=dict)

    def to_json(self) -> dict:
        d = asdict(self)
        extra = d.pop("extra")
        d.update(extra)
        return d
