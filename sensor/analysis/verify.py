"""Is a weighted (stage 4) session stable? Rules comparing its reps with an unweighted baseline.

Pure code: reps in, verdicts out. The rules are a frozen dataclass that a TOML table can override
(`VerifyRules.from_mapping`). Every failed rule adds a reason string that states the values involved.

Tremor is compared as the RMS angular velocity over the whole 4-12 Hz band, not at a peak frequency:
an ankle weight lowers the tremor frequency (mechanical resonance), so a peak or a narrow band would
move out from under the comparison while the broad band still holds the shifted tremor.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from statistics import median
from typing import Iterable, Mapping

from sensor.errors import ConfigError
from sensor.types import Rep


@dataclass(frozen=True)
class VerifyRules:
    """Default criteria for a stable weighted hold (all overridable).

    With a baseline, sway and tremor may grow by a factor over the baseline's median; without one,
    absolute limits apply. A weight is expected to raise both (more mass, more effort: tremor amplitude
    grows with effort, up to tenfold after maximal effort), so a hold counts as unsteady only beyond
    three times the baseline's sway SD or eight times its tremor RMS, i.e. close to exhaustion; and the
    weight pulls the leg down, so the lift may be up to 15 deg lower. These are starting points for a
    physiotherapist to adjust in a rules file, not clinically validated limits. The lift may drop by at most `lift_margin_deg` below the baseline's median
    (hip flexion where both sides measure it, else the lift angle).
    """

    min_hold_s: float = 10.0
    sway_factor: float = 3.0
    tremor_factor: float = 8.0
    sway_limit_deg: float = 2.0
    tremor_limit_dps: float = 4.0
    sag_limit_deg_per_s: float = 0.5
    lift_margin_deg: float = 15.0
    min_stable_fraction: float = 0.8

    @classmethod
    def from_mapping(cls, values: Mapping[str, object], source: str = "rules") -> "VerifyRules":
        """Build rules from a TOML table; unknown keys and non-numbers raise ConfigError."""
        known = {f.name for f in fields(cls)}
        out: dict[str, float] = {}
        for key, value in values.items():
            if key not in known:
                raise ConfigError(f"{source}: unknown rule '{key}' (known: {', '.join(sorted(known))})")
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise ConfigError(f"{source}: rule '{key}' must be a non-negative number, got {value!r}")
            out[key] = float(value)
        return cls(**out)

    def to_json(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Baseline:
    """Medians over the completed reps of the unweighted recordings (None where nothing measured)."""

    reps: int
    sway_sd_deg: float | None
    tremor_rms_dps: float | None
    lift_deg: float | None
    lift_measure: str | None

    def to_json(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class RepVerdict:
    index: int
    stable: bool
    reasons: tuple[str, ...]

    def to_json(self) -> dict:
        return {"index": self.index, "verdict": "stable" if self.stable else "unstable",
                "reasons": list(self.reasons)}


@dataclass(frozen=True)
class Verification:
    stable: bool
    reps: tuple[RepVerdict, ...]
    rules: VerifyRules
    baseline: Baseline | None
    reasons: tuple[str, ...]

    def to_json(self) -> dict:
        return {
            "format": "holdmon.verify/1",
            "verdict": "stable" if self.stable else "unstable",
            "reasons": list(self.reasons),
            "reps": [r.to_json() for r in self.reps],
            "criteria": self.rules.to_json(),
            "baseline": self.baseline.to_json() if self.baseline else None,
        }


def _lift_value(rep: Rep, measure: str) -> float | None:
    value = rep.extra.get("hip_flexion_deg") if measure == "hip_flexion_deg" else rep.hold_angle_mean_deg
    return None if value is None else float(value)


def _median(values: Iterable[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return median(present) if present else None


def _completed(reps: Iterable[Rep]) -> list[Rep]:
    return [r for r in reps if "aborted" not in r.flags and r.hold_start_s is not None]


def lift_measure(weighted: list[Rep], baseline: list[Rep], placement: str) -> str | None:
    """What "how high" is compared by: hip flexion when every completed rep on both sides has it;
    else the thigh's lift angle; else nothing, because an ankle sensor's tilt is the shank's, which
    says little about how high the knee came up."""
    both = _completed(weighted) + _completed(baseline)
    if both and all(r.extra.get("hip_flexion_deg") is not None for r in both):
        return "hip_flexion_deg"
    return "hold_angle_mean_deg" if placement == "thigh" else None


def make_baseline(reps: list[Rep], measure: str | None) -> Baseline | None:
    """Medians of the baseline's completed reps; None when it has none."""
    done = _completed(reps)
    if not done:
        return None
    return Baseline(
        reps=len(done),
        sway_sd_deg=_median(r.sway_sd_deg for r in done),
        tremor_rms_dps=_median(r.tremor_rms_dps for r in done),
        lift_deg=_median(_lift_value(r, measure) for r in done) if measure else None,
        lift_measure=measure,
    )


def _critical_reasons(rep: Rep, rules: VerifyRules) -> list[str]:
    """Failures that make the whole session unstable: the hold was not done safely."""
    if "aborted" in rep.flags:
        return ["aborted: the lift never settled into a hold"]
    reasons: list[str] = []
    if rep.hold_duration_s < rules.min_hold_s:
        reasons.append(f"hold {rep.hold_duration_s:.1f} s < {rules.min_hold_s:g} s")
    if "balance_loss" in rep.flags:
        reasons.append("balance lost during the hold")
    if rep.sag_deg_per_s is not None and abs(rep.sag_deg_per_s) > rules.sag_limit_deg_per_s:
        reasons.append(f"sag {rep.sag_deg_per_s:+.2f} deg/s beyond +-{rules.sag_limit_deg_per_s:g} deg/s")
    return reasons


def _comparative_reasons(rep: Rep, rules: VerifyRules, base: Baseline | None, measure: str | None) -> list[str]:
    """Failures against the baseline (or the absolute limits): the hold was less steady or lower."""
    if "aborted" in rep.flags:
        return []
    reasons = _compare(rep.sway_sd_deg, base and base.sway_sd_deg, rules.sway_factor,
                       rules.sway_limit_deg, "sway SD", "deg")
    reasons += _compare(rep.tremor_rms_dps, base and base.tremor_rms_dps, rules.tremor_factor,
                        rules.tremor_limit_dps, "tremor 4-12 Hz RMS", "deg/s")
    lift = _lift_value(rep, measure) if measure else None
    if base is not None and base.lift_deg is not None and lift is not None:
        if lift < base.lift_deg - rules.lift_margin_deg:
            name = "hip flexion" if measure == "hip_flexion_deg" else "lift angle"
            reasons.append(f"{name} {lift:.1f} deg is more than {rules.lift_margin_deg:g} deg below "
                           f"the baseline's {base.lift_deg:.1f} deg")
    return reasons


def _compare(value: float | None, base_value: float | None, factor: float, limit: float,
             name: str, unit: str) -> list[str]:
    if value is None:
        return []
    if base_value is not None and base_value > 0:
        if value > factor * base_value:
            return [f"{name} {value:.2f} {unit} > {factor:g} x baseline {base_value:.2f} {unit}"]
        return []
    if value > limit:
        return [f"{name} {value:.2f} {unit} > limit {limit:g} {unit} (no baseline)"]
    return []


def verify(weighted: list[Rep], baseline: list[Rep], rules: VerifyRules = VerifyRules(),
           placement: str = "ankle") -> Verification:
    """Judge every rep of a weighted session, then the session.

    A rep is stable when no rule fails. The session is unstable when it has no reps, when any rep
    failed a critical rule (too short, balance lost, sagging, aborted: back to stage 3), or when
    fewer than `min_stable_fraction` of its reps are stable (sway, tremor or lift against the baseline).
    """
    measure = lift_measure(weighted, baseline, placement)
    base = make_baseline(baseline, measure)
    verdicts, critical = [], []
    for rep in weighted:
        hard = _critical_reasons(rep, rules)
        reasons = hard + _comparative_reasons(rep, rules, base, measure)
        verdicts.append(RepVerdict(rep.index, not reasons, tuple(reasons)))
        critical += [f"rep {rep.index}: {reason}" for reason in hard]
    session_reasons: list[str] = critical
    if not verdicts:
        session_reasons.append("no reps found")
    else:
        stable_fraction = sum(v.stable for v in verdicts) / len(verdicts)
        if stable_fraction < rules.min_stable_fraction:
            session_reasons.append(f"{stable_fraction:.0%} of reps stable < {rules.min_stable_fraction:.0%}")
    return Verification(not session_reasons, tuple(verdicts), rules, base, tuple(session_reasons))
