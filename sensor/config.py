"""Analysis parameters: one frozen dataclass, units in every name.

`placement` is normally taken from the recording's metadata; set it here (CLI `--placement`) to
override. Every threshold below is applied to smoothed signals (see `motion_gyro_lowpass_hz`).
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

from sensor.errors import ConfigError
from sensor.types import Placement

STANDARD_GRAVITY_MPS2 = 9.80665


@dataclass(frozen=True)
class AnalysisParams:
    """Parameters of the replay/live analysis pipeline.

    Motion score: `|gyro_lp| + motion_acc_weight_dps_per_mps2 * |linear_acc_lp|` in deg/s, the gyro
    low-passed at `motion_gyro_lowpass_hz` (sharp edges), the linear acceleration at
    `motion_acc_lowpass_hz` (below the 4-12 Hz tremor, which shakes an ankle sensor hard). A sample
    is moving above `moving_threshold_dps` and still again below `still_threshold_dps` (hysteresis);
    a still run of `still_min_s` ends a motion episode. Scale: standing rest scores about 1-3, a
    hold's sway 2-8, a lift or lowering 100-300 (and its acceleration alone, 1-3 m/s^2, 30-90).
    Every non-lowering episode inside a hold counts as a correction; those longer than
    `correction_max_s` are also counted in the rep's `long_corrections`.
    """

    placement: Placement | None = None
    # hold targets
    target_hold_s: float = 10.0
    goal_hold_s: float = 15.0
    settle_s: float = 1.0
    # standing reference
    reference_still_s: float = 1.0
    calibration_window_s: tuple[float, float] | None = None
    # gap handling: gaps up to gap_fill_max_samples are filled for the analysis; gaps up to
    # orientation_bridge_max_s are bridged (linear interpolation) only for the orientation filter,
    # which assumes a fixed sample period, and the bridged samples are dropped again afterwards
    gap_fill_max_samples: int = 3
    orientation_bridge_max_s: float = 0.5
    # motion detection
    motion_gyro_lowpass_hz: float = 4.0
    motion_acc_lowpass_hz: float = 2.0
    motion_acc_weight_dps_per_mps2: float = 30.0
    moving_threshold_dps: float = 20.0
    still_threshold_dps: float = 10.0
    still_min_s: float = 0.3
    edge_threshold_dps: float = 5.0
    # lift / lowering classification
    integration_pad_s: float = 0.2
    lift_rise_min_cm: float = 8.0
    lift_angle_min_deg: float = 20.0
    lower_fraction: float = 0.5
    aborted_min_s: float = 0.8
    # corrections inside a hold
    correction_max_s: float = 0.6
    balance_loss_off_plane_deg: float = 4.0
    # metrics
    angle_lowpass_hz: float | None = None
    tremor_band_low_hz: float = 4.0
    tremor_band_high_hz: float = 12.0
    welch_segment_s: float = 1.0
    # flags
    sag_limit_deg_per_s: float = 0.3
    unsteady_sway_sd_deg: float = 2.0
    unsteady_corrections: int = 3
    # live mode
    live_trace_rate_hz: float = 20.0
    max_rep_buffer_s: float = 300.0
    # ankle rise / hip flexion (sensor.analysis.ankle): lengths in cm, None = from the height
    shank_length_cm: float | None = None
    thigh_length_cm: float | None = None
    height_cm: float | None = None
    sensor_above_ankle_cm: float = 8.0

    def __post_init__(self) -> None:
        if self.placement not in (None, "ankle", "thigh"):
            raise ConfigError(f"placement must be 'ankle' or 'thigh', got {self.placement!r}")
        for name in ("target_hold_s", "goal_hold_s", "reference_still_s", "motion_gyro_lowpass_hz",
                     "motion_acc_lowpass_hz",
                     "still_min_s", "correction_max_s", "welch_segment_s", "live_trace_rate_hz"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"{name} must be > 0, got {getattr(self, name)!r}")
        if self.still_threshold_dps >= self.moving_threshold_dps:
            raise ConfigError(
                f"still_threshold_dps ({self.still_threshold_dps}) must be below "
                f"moving_threshold_dps ({self.moving_threshold_dps})")
        if not 0 < self.tremor_band_low_hz < self.tremor_band_high_hz:
            raise ConfigError(
                f"tremor band must satisfy 0 < low < high, got "
                f"{self.tremor_band_low_hz}-{self.tremor_band_high_hz} Hz")
        if self.calibration_window_s is not None:
            start_s, end_s = self.calibration_window_s
            if not end_s > start_s:
                raise ConfigError(f"calibration window end must be after start, got {start_s}-{end_s} s")

    def with_overrides(self, **overrides: object) -> "AnalysisParams":
        """A copy with the given fields replaced (None values are ignored); unknown names raise."""
        known = {f.name for f in fields(self)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise ConfigError(f"unknown analysis parameter(s): {', '.join(unknown)}")
        return replace(self, **{k: v for k, v in overrides.items() if v is not None})
