"""Variance agreement (paper section 3): does a user's list vary in artists as much as the user does?

Per user, the artist Gini impurity ``g_u = 1 - sum_a p_a^2`` of the artists of the user's
training tracks (p_a = share of the user's training rows by artist a), and ``g^_u`` of the
artists of the recommended tracks; the metric is the Pearson correlation of (g_u, g^_u) over
users. A random recommender scores ~0; one that mirrors each user's artist mix scores high.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from tripletlit.evaluation.metrics import PAD


def gini_impurity(owner: np.ndarray, category: np.ndarray, n_owners: int) -> np.ndarray:
    """``1 - sum_c p_c^2`` of the categories of each owner (owners 0..n_owners-1; an owner
    with no rows gets NaN). ``owner`` and ``category`` are integer arrays of equal length."""
    owner = np.asarray(owner, dtype=np.int64)
    cat = pd.factorize(np.asarray(category))[0].astype(np.int64)  # hash-based: no sort of all rows
    key = owner * (int(cat.max(initial=0)) + 1) + cat
    codes, pairs = pd.factorize(key)
    counts = np.bincount(codes, minlength=len(pairs))
    pair_owner = pairs // (int(cat.max(initial=0)) + 1)
    totals = np.bincount(owner, minlength=n_owners).astype(np.float64)
    squares = np.bincount(pair_owner, weights=counts.astype(np.float64) ** 2, minlength=n_owners)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(totals > 0, 1.0 - squares / totals**2, np.nan)


def variance_agreement(
    train: pd.DataFrame, user_ids: np.ndarray, predictions: np.ndarray, tracks: pd.DataFrame
) -> dict:
    """Pearson r over users between training and recommendation artist Gini impurity.

    ``predictions``: (n, k) track ids for ``user_ids`` (-1 padding ignored); the artists of
    recommended tracks come from ``tracks`` (track_id -> artist_id). Returns ``{"pearson",
    "users", "train_gini", "rec_gini"}`` (the last two per user, for plots).
    """
    user_ids = np.asarray(user_ids)
    position = pd.Series(np.arange(len(user_ids)), index=user_ids)
    rows = train["user_id"].isin(user_ids).to_numpy()
    owner = position.reindex(train["user_id"].to_numpy()[rows]).to_numpy()
    g_train = gini_impurity(owner, train["artist_id"].to_numpy()[rows], len(user_ids))
    flat = predictions.ravel()
    valid = flat != PAD
    artist_of = tracks.set_index("track_id")["artist_id"]
    rec_owner = np.repeat(np.arange(len(user_ids)), predictions.shape[1])[valid]
    rec_artist = artist_of.reindex(flat[valid]).to_numpy()
    known = ~pd.isna(rec_artist)
    g_rec = gini_impurity(rec_owner[known], rec_artist[known].astype(np.int64), len(user_ids))
    both = np.isfinite(g_train) & np.isfinite(g_rec)
    x, y = g_train[both], g_rec[both]
    pearson = float(np.corrcoef(x, y)[0, 1]) if both.sum() > 1 and x.std() > 0 and y.std() > 0 else float("nan")
    return {"pearson": pearson, "users": int(both.sum()), "train_gini": g_train, "rec_gini": g_rec}
