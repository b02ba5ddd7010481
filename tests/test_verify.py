"""verify() on hand-made reps: each rule, the baseline comparison, and the TOML override path."""

from __future__ import annotations

import pytest

from sensor.analysis.verify import VerifyRules, verify
from sensor.errors import ConfigError
from sensor.types import Rep


def make_rep(index: int, **changes) -> Rep:
    values = dict(
        index=index, lift_start_s=10.0 * index, hold_start_s=10.0 * index + 1, hold_end_s=10.0 * index + 13,
        lower_end_s=10.0 * index + 14, hold_duration_s=12.0, peak_angle_deg=20.0, hold_angle_mean_deg=18.0,
        sway_sd_deg=0.5, sway_range_deg=1.6, sag_deg_per_s=-0.05, mean_speed_dps=2.0, tremor_rms_dps=1.0,
        tremor_growth=1.1, corrections=0, target_met=True, flags=[],
    )
    values.update(changes)
    return Rep(**values)


BASELINE = [make_rep(i) for i in range(4)]


def test_steady_weighted_session_is_stable():
    weighted = [make_rep(i, sway_sd_deg=0.6, tremor_rms_dps=1.5) for i in range(4)]
    result = verify(weighted, BASELINE)
    assert result.stable
    assert all(v.stable and not v.reasons for v in result.reps)
    assert result.baseline is not None and result.baseline.sway_sd_deg == pytest.approx(0.5)


def test_each_rule_gives_its_reason():
    weighted = [
        make_rep(0, hold_duration_s=6.0, flags=["early_drop"]),
        make_rep(1, sag_deg_per_s=-0.8),
        make_rep(2, sway_sd_deg=1.6),
        make_rep(3, tremor_rms_dps=8.5),
        make_rep(4, hold_angle_mean_deg=2.0),
        make_rep(5, flags=["balance_loss"]),
        make_rep(6, hold_start_s=None, flags=["aborted"]),
    ]
    result = verify(weighted, BASELINE, placement="thigh")
    reasons = {v.index: " ".join(v.reasons) for v in result.reps}
    assert "hold 6.0 s < 10 s" in reasons[0]
    assert "sag -0.80 deg/s" in reasons[1]
    assert "sway SD 1.60 deg > 3 x baseline 0.50 deg" in reasons[2]
    assert "tremor 4-12 Hz RMS 8.50 deg/s > 8 x baseline 1.00 deg/s" in reasons[3]
    assert "lift angle 2.0 deg is more than 15 deg below the baseline's 18.0 deg" in reasons[4]
    assert "balance lost" in reasons[5]
    assert "aborted" in reasons[6]
    assert not result.stable
    assert "rep 5: balance lost during the hold" in result.reasons
    assert "rep 0: hold 6.0 s < 10 s" in result.reasons


def test_ankle_tilt_is_not_compared_as_lift_height():
    result = verify([make_rep(0, hold_angle_mean_deg=2.0)], BASELINE, placement="ankle")
    assert result.stable and result.baseline.lift_measure is None


def test_absolute_limits_without_baseline():
    result = verify([make_rep(0, sway_sd_deg=2.5), make_rep(1)], [])
    assert result.baseline is None
    assert "limit 2 deg (no baseline)" in result.reps[0].reasons[0]
    assert result.reps[1].stable
    assert not result.stable  # 50 % stable < 80 %


def test_hip_flexion_preferred_when_both_sides_have_it():
    base = [make_rep(i, extra={"hip_flexion_deg": 85.0}) for i in range(3)]
    low = [make_rep(0, extra={"hip_flexion_deg": 65.0})]
    result = verify(low, base)
    assert result.baseline.lift_measure == "hip_flexion_deg"
    assert "hip flexion 65.0 deg" in result.reps[0].reasons[0]


def test_one_critical_rep_makes_the_session_unstable():
    reps = [make_rep(i) for i in range(9)] + [make_rep(9, sag_deg_per_s=0.9)]
    result = verify(reps, BASELINE)
    assert sum(v.stable for v in result.reps) == 9
    assert not result.stable and result.reasons == ("rep 9: sag +0.90 deg/s beyond +-0.5 deg/s",)


def test_json_shape():
    doc = verify([make_rep(0)], BASELINE).to_json()
    assert doc["format"] == "holdmon.verify/1"
    assert doc["verdict"] == "stable"
    assert doc["reps"] == [{"index": 0, "verdict": "stable", "reasons": []}]
    assert doc["criteria"]["min_hold_s"] == 10.0
    assert doc["baseline"]["reps"] == 4


def test_rules_override_and_errors():
    rules = VerifyRules.from_mapping({"min_hold_s": 5, "sway_factor": 3})
    assert rules.min_hold_s == 5.0 and rules.sway_factor == 3.0
    assert verify([make_rep(0, hold_duration_s=6.0)], BASELINE, rules).stable
    with pytest.raises(ConfigError, match="unknown rule 'nope'"):
        VerifyRules.from_mapping({"nope": 1})
    with pytest.raises(ConfigError, match="must be a non-negative number"):
        VerifyRules.from_mapping({"min_hold_s": "ten"})
