"""The EvalRS 2022 slices of users and items: country list, popularity and activity bins.

These definitions are shared by ``tripletlit data describe`` and the evaluation suite, so
that the populations a user inspects are exactly those the MRED metrics are computed over.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

#: Countries taking part in MRED_COUNTRY; users with a missing country form the "NaN" slice and
#: users of any other country are excluded from that metric.
COUNTRIES = ("US", "RU", "DE", "UK", "PL", "BR", "FI", "NL", "ES", "SE", "UA", "CA", "FR")
MISSING_COUNTRY = "NaN"
#: np.digitize edges: sum of the user's training plays.
USER_ACTIVITY_EDGES = (1, 100, 1000)
#: sum of training plays of the held-out track.
TRACK_POPULARITY_EDGES = (1, 10, 100, 1000)
#: sum of training plays of the held-out track's artist.
ARTIST_POPULARITY_EDGES = (1, 100, 1000, 10000)
GENDER_SLICES = ("f", "m", "n")


def bin_labels(edges) -> list[str]:
    """Readable labels of ``np.digitize(x, edges)`` results 0..len(edges)."""
    labels = [f"<{edges[0]}"]
    labels += [f"[{lo},{hi})" for lo, hi in zip(edges[:-1], edges[1:])]
    labels.append(f">={edges[-1]}")
    return labels


def popularity_bins(values: np.ndarray, edges) -> np.ndarray:
    """Bin index (``np.digitize``) of each value: 0 below the first edge, len(edges) above the last."""
    return np.digitize(np.asarray(values), np.asarray(edges))


def country_slice(country: pd.Series | np.ndarray) -> np.ndarray:
    """The MRED_COUNTRY slice of each user: a listed country, ``"NaN"`` when missing, else None."""
    values = pd.Series(country, dtype=object)
    out = values.where(values.isin(COUNTRIES), None)
    out[values.isna().to_numpy()] = MISSING_COUNTRY
    return out.to_numpy(dtype=object)


def gender_slice(gender: pd.Series | np.ndarray) -> np.ndarray:
    """The MRED_GENDER slice of each user: ``f``, ``m``, ``n``, or None when missing."""
    values = pd.Series(gender, dtype=object)
    return values.where(values.isin(GENDER_SLICES), None).to_numpy(dtype=object)


def plays_by(keys: np.ndarray, counts: np.ndarray) -> pd.Series:
    """Sum of ``counts`` per distinct key (e.g. plays per track or per artist)."""
    return pd.Series(counts, copy=False).groupby(pd.Series(keys, copy=False)).sum()
