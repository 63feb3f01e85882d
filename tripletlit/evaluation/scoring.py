"""The EvalRS 2022 phase-2 SCORE, its constants as a replaceable profile, and the phase-1 mean.

SCORE: gate (mean HIT_RATE below the gate -> -100), then each metric t is normalised as
``n_t = (x_t - base_t) / (best_t - base_t)``; perf = mean(n_HR, n_MRR), fair = mean of the five
n_MRED, behav = mean(n_BLW, n_LD); SCORE = (1 * perf + 1.5 * fair + 1.5 * behav) / 4 (a profile's own weights divide by their sum).

The ``evalrs2022`` constants belong to the real data set (base = the CBOW baseline, best =
the best phase-1 value); on other data the formula runs but its absolute value means little,
so a user can pass their own profile as YAML::

    name: my-profile
    gate: {metric: HIT_RATE, min: 0.015, score: -100.0}
    weights: {perf: 1.0, fair: 1.5, behav: 1.5}
    metrics:
      HIT_RATE: {base: 0.018763, best: 0.264642}
      ...  # all nine metrics
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from tripletlit.errors import TripletlitError
from tripletlit.evaluation.metrics import METRICS
from tripletlit.files import read_yaml

GROUPS = {
    "perf": ("HIT_RATE", "MRR"),
    "fair": ("MRED_COUNTRY", "MRED_USER_ACTIVITY", "MRED_TRACK_POPULARITY", "MRED_ARTIST_POPULARITY", "MRED_GENDER"),
    "behav": ("BEING_LESS_WRONG", "LATENT_DIVERSITY"),
}


@dataclass(frozen=True)
class Profile:
    """Normalisation constants (base, best) per metric, group weights and the accuracy gate."""

    name: str
    base: dict[str, float]
    best: dict[str, float]
    weights: dict[str, float] = field(default_factory=lambda: {"perf": 1.0, "fair": 1.5, "behav": 1.5})
    gate_metric: str | None = "HIT_RATE"
    gate_min: float = 0.015
    gate_score: float = -100.0

    def __post_init__(self):
        for table in ("base", "best"):
            missing = [m for m in METRICS if m not in getattr(self, table)]
            if missing:
                raise TripletlitError(f"score profile {self.name!r}: no {table} value for {missing[0]}; give all nine metrics")
        same = [m for m in METRICS if self.best[m] == self.base[m]]
        if same:
            raise TripletlitError(f"score profile {self.name!r}: best equals base for {same[0]}; the range must not be empty")
        if set(self.weights) != set(GROUPS):
            raise TripletlitError(f"score profile {self.name!r}: weights must be exactly perf, fair, behav")
        if self.gate_metric is not None and self.gate_metric not in METRICS:
            raise TripletlitError(f"score profile {self.name!r}: unknown gate metric {self.gate_metric!r}")

    def with_gate(self, minimum: float | None) -> Profile:
        """The same profile with another HR gate (None disables it)."""
        from dataclasses import replace

        return replace(self, gate_metric=None if minimum is None else self.gate_metric or "HIT_RATE",
                       gate_min=self.gate_min if minimum is None else minimum)  # fmt: skip

    def as_dict(self) -> dict:
        return {
            "name": self.name,
            "gate": None if self.gate_metric is None else {"metric": self.gate_metric, "min": self.gate_min, "score": self.gate_score},
            "weights": dict(self.weights),
            "metrics": {m: {"base": self.base[m], "best": self.best[m]} for m in METRICS},
        }


EVALRS2022 = Profile(
    name="evalrs2022",
    base={
        "HIT_RATE": 0.018763, "MRR": 0.001654, "MRED_COUNTRY": -0.006944, "MRED_USER_ACTIVITY": -0.012460,
        "MRED_TRACK_POPULARITY": -0.006816, "MRED_ARTIST_POPULARITY": -0.003915, "MRED_GENDER": -0.004354,
        "BEING_LESS_WRONG": 0.2744871, "LATENT_DIVERSITY": -0.324706,
    },
    best={
        "HIT_RATE": 0.264642, "MRR": 0.067493, "MRED_COUNTRY": -0.004490, "MRED_USER_ACTIVITY": -0.006922,
        "MRED_TRACK_POPULARITY": -0.005865, "MRED_ARTIST_POPULARITY": -0.003623, "MRED_GENDER": -0.000032,
        "BEING_LESS_WRONG": 0.40635, "LATENT_DIVERSITY": -0.202812,
    },
)  # fmt: skip
PROFILES = {EVALRS2022.name: EVALRS2022}


def load_profile(profile: str | os.PathLike | Profile = "evalrs2022") -> Profile:
    """A built-in profile by name, a :class:`Profile`, or a YAML file (see the module docstring)."""
    if isinstance(profile, Profile):
        return profile
    if str(profile) in PROFILES:
        return PROFILES[str(profile)]
    path = Path(profile)
    if not path.is_file():
        raise TripletlitError(f"score profile {str(profile)!r}: neither a built-in profile ({', '.join(PROFILES)}) nor a YAML file")
    raw = read_yaml(path, "score profile")
    if not isinstance(raw, dict) or not isinstance(raw.get("metrics"), dict):
        raise TripletlitError(f"{path}: a score profile needs a 'metrics' mapping of NAME: {{base, best}}")
    unknown = [k for k in raw if k not in ("name", "gate", "weights", "metrics")]
    unknown += [m for m in raw["metrics"] if m not in METRICS]
    if unknown:
        raise TripletlitError(f"{path}: unknown key {unknown[0]!r}; allowed: name, gate, weights, metrics ({', '.join(METRICS)})")
    try:
        base = {m: float(v["base"]) for m, v in raw["metrics"].items()}
        best = {m: float(v["best"]) for m, v in raw["metrics"].items()}
    except (KeyError, TypeError, ValueError):
        raise TripletlitError(f"{path}: every metric needs numeric 'base' and 'best'") from None
    gate = raw.get("gate", {"metric": "HIT_RATE", "min": 0.015, "score": -100.0})
    weights = raw.get("weights", {"perf": 1.0, "fair": 1.5, "behav": 1.5})
    if gate is not None and (not isinstance(gate, dict) or set(gate) - {"metric", "min", "score"}):
        raise TripletlitError(f"{path}: 'gate' must be null or a mapping of metric, min, score (got {gate!r})")
    if not isinstance(weights, dict):
        raise TripletlitError(f"{path}: 'weights' must be a mapping perf/fair/behav -> number (got {weights!r})")
    try:
        weights = {k: float(v) for k, v in weights.items()}
        gate_min = 0.0 if gate is None else float(gate.get("min", 0.015))
        gate_score = -100.0 if gate is None else float(gate.get("score", -100.0))
    except (TypeError, ValueError):
        raise TripletlitError(f"{path}: gate min/score and weights must be numbers") from None
    return Profile(
        name=str(raw.get("name", path.stem)),
        base=base,
        best=best,
        weights=weights,
        gate_metric=None if gate is None else gate.get("metric", "HIT_RATE"),
        gate_min=gate_min,
        gate_score=gate_score,
    )


def score(metrics: dict[str, float], profile: str | os.PathLike | Profile = "evalrs2022") -> dict:
    """Phase-2 SCORE of metric values (averaged over folds) under ``profile``.

    Returns ``{"score", "phase1", "gated", "normalised": {NAME: n}, "perf", "fair", "behav",
    "profile"}``. NaN metrics (e.g. BLW/LD without vectors) make their group and the SCORE NaN.
    """
    profile = load_profile(profile)
    missing = [m for m in METRICS if m not in metrics]
    if missing:
        raise TripletlitError(f"cannot score: metric {missing[0]} is missing")
    normalised = {m: (metrics[m] - profile.base[m]) / (profile.best[m] - profile.base[m]) for m in METRICS}
    groups = {g: sum(normalised[m] for m in names) / len(names) for g, names in GROUPS.items()}
    total = sum(profile.weights[g] * groups[g] for g in GROUPS) / sum(profile.weights.values())
    gated = profile.gate_metric is not None and metrics[profile.gate_metric] < profile.gate_min
    return {
        "score": profile.gate_score if gated else total,
        "ungated_score": total,
        "gated": bool(gated),
        "phase1": sum(metrics[m] for m in METRICS) / len(METRICS),
        "normalised": normalised,
        **groups,
        "profile": profile.name,
    }
