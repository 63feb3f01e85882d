"""Per-interaction popularity/fairness weights (paper section 2.2, ``method.md`` section 4).

Five traits, each with a coefficient; within a trait every DISTINCT category gets a raw value,
normalised to sum to 1 over the categories (theta), and a row's weight combines the thetas of
its categories:

| trait    | category of row i             | raw value of a category | counted on     |
|----------|-------------------------------|-------------------------|----------------|
| gender   | the user's gender (missing = own category) | 1 / count of users | all users |
| country  | the user's country (missing = own category) | 1 / ln(count + 1) | all users |
| artist   | the row's artist              | 1 / ln(plays + 1)        | training fold |
| song     | the row's track               | 1 / ln(plays + 1)        | training fold |
| activity | the row's user                | 1 / ln(plays + 1) (or distinct songs) | training fold |

``w_i = sum_t coef_t * theta_t(category_i)`` (the code's sum; ``combine="average"`` divides by
the sum of the coefficients, the paper's wording). Only ratios matter under Adam.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

TRAITS = ("gender", "country", "artist", "song", "activity")
MISSING = "<missing>"


@dataclass
class WeightConfig:
    """Coefficients (paper Table 1 defaults) and the two paper-vs-code options."""

    gender: float = 5.0
    country: float = 100.0
    artist: float = 1e4
    song: float = 1e5
    activity: float = 1e4
    combine: str = "sum"  # "sum" (code) or "average" (paper's wording)
    activity_by: str = "plays"  # "plays" (code) or "songs" (paper's wording)
    enabled: bool = True

    def coefficients(self) -> dict[str, float]:
        return {t: float(getattr(self, t)) for t in TRAITS}


def _theta(categories: pd.Series, raw: pd.Series) -> np.ndarray:
    """theta of each row's category: raw value of the category / sum over distinct categories."""
    theta = raw / raw.sum()
    return theta.reindex(categories.to_numpy()).to_numpy(dtype=np.float64)


def trait_thetas(train: pd.DataFrame, users: pd.DataFrame, activity_by: str = "plays") -> dict[str, np.ndarray]:
    """theta_t(category of row i) for every trait, each (N,) aligned with ``train``'s rows."""
    if activity_by not in ("plays", "songs"):
        raise ValueError(f"activity_by must be 'plays' or 'songs', got {activity_by!r}")
    counts = train["user_track_count"].astype(np.float64)
    meta = users.set_index("user_id")
    thetas = {}
    for trait, transform in (("gender", lambda n: 1.0 / n), ("country", lambda n: 1.0 / np.log(n + 1.0))):
        per_user = meta[trait].astype(object).where(meta[trait].notna(), MISSING)
        raw = transform(per_user.value_counts().astype(np.float64))
        row_category = per_user.reindex(train["user_id"].to_numpy()).fillna(MISSING)
        thetas[trait] = _theta(row_category, raw)
    for trait, column in (("artist", "artist_id"), ("song", "track_id")):
        plays = counts.groupby(train[column].to_numpy()).sum()
        thetas[trait] = _theta(train[column], 1.0 / np.log(plays + 1.0))
    if activity_by == "plays":
        activity = counts.groupby(train["user_id"].to_numpy()).sum()
    else:
        activity = train.groupby("user_id").size().astype(np.float64)
    thetas["activity"] = _theta(train["user_id"], 1.0 / np.log(activity + 1.0))
    return thetas


def row_weights(train: pd.DataFrame, users: pd.DataFrame, config: WeightConfig | None = None) -> np.ndarray:
    """(N,) float32 weight of every training row (ones when ``config.enabled`` is False)."""
    config = WeightConfig() if config is None else config
    if not config.enabled:
        return np.ones(len(train), dtype=np.float32)
    if config.combine not in ("sum", "average"):
        raise ValueError(f"combine must be 'sum' or 'average', got {config.combine!r}")
    coefficients = config.coefficients()
    thetas = trait_thetas(train, users, config.activity_by)
    weight = sum(coefficients[t] * thetas[t] for t in TRAITS)
    if config.combine == "average":
        weight = weight / sum(coefficients.values())
    if not np.isfinite(weight).all() or np.abs(weight).max(initial=0) > np.finfo(np.float32).max:
        from tripletlit.errors import TripletlitError

        raise TripletlitError(f"row weights overflow float32 (largest coefficient {max(coefficients.values()):g}); "
                              "use smaller weights.* coefficients (only their ratios matter)")  # fmt: skip
    return np.asarray(weight, dtype=np.float32)
