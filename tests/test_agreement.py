"""Variance agreement: Gini impurity known answers, random ~0, mirroring the user's mix high."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tripletlit.data.folds import FoldConfig, make_fold
from tripletlit.evaluation.agreement import gini_impurity, variance_agreement


def test_gini_impurity_known_answers():
    owner = np.array([0, 0, 0, 0, 1, 1, 1, 1, 2])
    category = np.array([5, 5, 5, 5, 1, 2, 3, 4, 9])
    g = gini_impurity(owner, category, 4)
    assert g[0] == 0.0  # one artist
    assert g[1] == pytest.approx(0.75)  # four equal artists
    assert g[2] == 0.0
    assert np.isnan(g[3])  # no rows
    g = gini_impurity(np.array([0, 0, 0]), np.array([1, 1, 2]), 1)
    assert g[0] == pytest.approx(1 - (2 / 3) ** 2 - (1 / 3) ** 2)


@pytest.fixture(scope="module")
def fold(small):
    return make_fold(small.events, FoldConfig(), 0)


def _mirror(fold, tracks, rng, k=100):
    """Recommend, per user, tracks whose artists follow the user's own training artist mix."""
    by_artist = tracks.groupby("artist_id")["track_id"].apply(np.array)
    rows = []
    for user, group in fold.train.groupby("user_id"):  # a test helper, not the code under test
        artists = rng.choice(group["artist_id"].to_numpy(), size=k)
        picks = [rng.choice(by_artist[a]) for a in artists]
        picks = list(dict.fromkeys(picks))
        rows.append((user, picks + [-1] * (k - len(picks))))
    order = {u: i for i, (u, _) in enumerate(rows)}
    users = fold.test["user_id"].to_numpy()
    return np.array([rows[order[u]][1] for u in users])


def test_random_is_near_zero_and_mirroring_is_high(small, fold):
    rng = np.random.default_rng(0)
    users = fold.test["user_id"].to_numpy()
    catalogue = fold.train["track_id"].unique()
    random = np.array([rng.choice(catalogue, 100, replace=False) for _ in users])
    r_random = variance_agreement(fold.train, users, random, small.tracks)
    assert abs(r_random["pearson"]) < 0.1
    r_mirror = variance_agreement(fold.train, users, _mirror(fold, small.tracks, rng), small.tracks)
    assert r_mirror["pearson"] > 0.6
    assert r_mirror["users"] == len(users)


def test_matches_per_user_pandas_version(small, fold):
    rng = np.random.default_rng(1)
    users = fold.test["user_id"].to_numpy()[:200]
    catalogue = fold.train["track_id"].unique()
    predictions = np.array([rng.choice(catalogue, 100, replace=False) for _ in users])
    predictions[:, -5:] = -1
    result = variance_agreement(fold.train, users, predictions, small.tracks)
    artist = small.tracks.set_index("track_id")["artist_id"]

    def impurity(artists):
        p = pd.Series(artists).value_counts(normalize=True)
        return 1 - (p**2).sum()

    g = [impurity(fold.train.loc[fold.train["user_id"] == u, "artist_id"]) for u in users]
    h = [impurity(artist.loc[row[row >= 0]].to_numpy()) for row in predictions]
    assert np.allclose(result["train_gini"], g) and np.allclose(result["rec_gini"], h)
    assert result["pearson"] == pytest.approx(np.corrcoef(g, h)[0, 1])
