"""Summary statistics of a data set: sizes, power laws and the EvalRS slice populations."""

from __future__ import annotations

import numpy as np
import pandas as pd

from tripletlit.data import slices
from tripletlit.data.dataset import Dataset


def gini_coefficient(values: np.ndarray) -> float:
    """Gini coefficient of a non-negative distribution (0 = equal, -> 1 = concentrated)."""
    x = np.sort(np.asarray(values, dtype=np.float64))
    if len(x) == 0 or x.sum() == 0:
        return 0.0
    ranks = np.arange(1, len(x) + 1)
    return float((2 * ranks - len(x) - 1) @ x / (len(x) * x.sum()))


def tail_exponent(values: np.ndarray, tail: float = 0.1) -> float:
    """Hill estimate of the power-law exponent alpha of the top ``tail`` share of ``values``
    (density ~ x^-alpha); smaller alpha = heavier tail."""
    x = np.sort(np.asarray(values, dtype=np.float64))[::-1]
    k = max(2, int(len(x) * tail))
    if len(x) < 3 or x[k - 1] <= 0:
        return float("nan")
    return float(1.0 + k / np.log(x[:k] / x[k - 1]).sum())


def power_law_summary(values: np.ndarray) -> dict:
    """How skewed a popularity distribution is."""
    x = np.sort(np.asarray(values, dtype=np.float64))[::-1]
    top = max(1, len(x) // 100)
    return {
        "n": len(x),
        "min": float(x.min()) if len(x) else 0.0,
        "median": float(np.median(x)) if len(x) else 0.0,
        "max": float(x.max()) if len(x) else 0.0,
        "gini": gini_coefficient(x),
        "top1pct_share": float(x[:top].sum() / x.sum()) if x.sum() else 0.0,
        "tail_alpha": tail_exponent(x),
    }


def _bin_population(values: np.ndarray, edges) -> dict[str, int]:
    counts = np.bincount(slices.popularity_bins(values, edges), minlength=len(edges) + 1)
    return dict(zip(slices.bin_labels(edges), counts.tolist()))


def describe(dataset: Dataset) -> dict:
    """Counts, power-law summaries and the population of every EvalRS slice.

    The slice populations use the whole events table (the metrics use each fold's training
    rows, which have the same shape): users per country, gender and activity bin; tracks and
    artists per popularity bin.
    """
    events, users, tracks = dataset.events, dataset.users, dataset.tracks
    counts = events["user_track_count"].to_numpy()
    activity = slices.plays_by(events["user_id"].to_numpy(), counts)
    track_plays = slices.plays_by(events["track_id"].to_numpy(), counts)
    artist_plays = slices.plays_by(events["artist_id"].to_numpy(), counts)
    rows_per_user = events.groupby("user_id").size()
    users_per_track = events.groupby("track_id").size()
    country = pd.Series(slices.country_slice(users["country"]), dtype=object)
    gender = pd.Series(slices.gender_slice(users["gender"]), dtype=object)
    age = users["age"].to_numpy()
    playcount = users["playcount"].to_numpy()
    n_albums = len(np.unique(np.concatenate(list(tracks["albums_id"])))) if len(tracks) else 0
    return {
        "name": dataset.name,
        "counts": {
            "events": len(events),
            "plays": int(counts.sum()),
            "users": len(users),
            "users_with_events": int(len(rows_per_user)),
            "tracks": len(tracks),
            "tracks_with_events": int(len(users_per_track)),
            "artists": int(tracks["artist_id"].nunique()),
            "albums": n_albums,
            "rows_per_user_mean": float(rows_per_user.mean()),
            "rows_per_user_median": float(rows_per_user.median()),
            "rows_per_user_max": int(rows_per_user.max()),
            "users_per_track_mean": float(users_per_track.mean()),
        },
        "power_law": {
            "track_plays": power_law_summary(track_plays.to_numpy()),
            "artist_plays": power_law_summary(artist_plays.to_numpy()),
            "user_activity": power_law_summary(activity.to_numpy()),
            "user_track_count": power_law_summary(counts),
        },
        "users": {
            "gender_share": {
                g: float((users["gender"] == g).mean()) for g in ("n", "m", "f")
            } | {"missing": float(users["gender"].isna().mean())},
            "country_missing_share": float(users["country"].isna().mean()),
            "countries": int(users["country"].nunique()),
            "age_known_share": float((age > 0).mean()),
            "age_median_known": float(np.median(age[age > 0])) if (age > 0).any() else float("nan"),
            "playcount_median": float(np.median(playcount[playcount >= 0])) if (playcount >= 0).any() else float("nan"),
        },
        "slices": {
            "country": {
                **{c: int((country == c).sum()) for c in (*slices.COUNTRIES, slices.MISSING_COUNTRY)},
                "excluded": int(country.isna().sum()),
            },
            "gender": {
                **{g: int((gender == g).sum()) for g in slices.GENDER_SLICES},
                "missing": int(gender.isna().sum()),
            },
            "user_activity_users": _bin_population(activity.to_numpy(), slices.USER_ACTIVITY_EDGES),
            "track_popularity_tracks": _bin_population(track_plays.to_numpy(), slices.TRACK_POPULARITY_EDGES),
            "artist_popularity_artists": _bin_population(artist_plays.to_numpy(), slices.ARTIST_POPULARITY_EDGES),
        },
    }
