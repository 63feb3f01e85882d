"""The baselines on fold 0 of the `small` synthetic data: shape, validity, ranking and hit rate."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tripletlit.data.folds import FoldConfig, make_fold
from tripletlit.errors import TripletlitError
from tripletlit.evaluation.baselines import (
    BASELINES,
    CBOWRecommender,
    PopularityRecommender,
    RandomRecommender,
    Recommender,
    distinct_sample,
)

K = 100


@pytest.fixture(scope="module")
def fold(small):
    return make_fold(small.events, FoldConfig(), 0)


@pytest.fixture(scope="module")
def users(fold):
    return fold.test["user_id"].to_numpy()


@pytest.fixture(scope="module")
def fitted(fold, small):
    return {name: cls().fit(fold.train, small.tracks) for name, cls in BASELINES.items()}


@pytest.fixture(scope="module")
def recs(fitted, users):
    return {name: model.recommend(users, K) for name, model in fitted.items()}


def hit_rate(rec: np.ndarray, fold) -> float:
    return float((rec == fold.test["track_id"].to_numpy()[:, None]).any(axis=1).mean())


@pytest.mark.parametrize("name", list(BASELINES))
def test_valid_recommendations(name, recs, fitted, fold, users):
    rec = recs[name]
    assert isinstance(fitted[name], Recommender)
    assert rec.shape == (len(users), K) and rec.dtype == np.int64
    assert (rec >= 0).all()  # the catalogue is far larger than k: no padding
    ordered = np.sort(rec, axis=1)
    assert (ordered[:, 1:] != ordered[:, :-1]).all()  # distinct per row
    assert np.isin(rec, fold.train["track_id"].unique()).all()


@pytest.mark.parametrize("name", ["popularity", "cbow"])
def test_never_recommends_seen_tracks(name, recs, fold, users):
    rec = recs[name]
    pairs = pd.DataFrame({"user_id": np.repeat(users, K), "track_id": rec.ravel()})
    seen = pairs.merge(fold.train[["user_id", "track_id"]], on=["user_id", "track_id"])
    assert seen.empty


def test_popularity_matches_pandas(recs, fold, users):
    plays = fold.train.groupby("track_id")["user_track_count"].sum().reset_index()
    ranked = plays.sort_values(["user_track_count", "track_id"], ascending=[False, True])[
        "track_id"
    ].to_numpy()
    rec = recs["popularity"]
    for i in [0, 1, len(users) // 2, len(users) - 1]:
        heard = set(fold.train.loc[fold.train["user_id"] == users[i], "track_id"])
        expected = [t for t in ranked if t not in heard][:K]
        assert rec[i, 0] == expected[0]
        np.testing.assert_array_equal(rec[i], expected)


def test_hit_rates(recs, fold):
    hr = {name: hit_rate(rec, fold) for name, rec in recs.items()}
    catalogue = fold.train["track_id"].nunique()
    assert hr["random"] < 3 * K / catalogue
    assert hr["popularity"] > 5 * hr["random"]
    assert hr["cbow"] > 5 * hr["random"]


def test_same_seed_same_recommendations(fold, users, recs):
    again = RandomRecommender(seed=0).fit(fold.train).recommend(users, K)
    np.testing.assert_array_equal(again, recs["random"])
    other = RandomRecommender(seed=1).fit(fold.train).recommend(users, K)
    assert not np.array_equal(other, recs["random"])
    # CBOW: two fits on a part of the fold (a full refit costs seconds).
    part = fold.train[fold.train["user_id"].isin(users[:400])]
    first = CBOWRecommender(seed=0).fit(part).recommend(users[:400], K)
    second = CBOWRecommender(seed=0).fit(part).recommend(users[:400], K)
    np.testing.assert_array_equal(first, second)
    third = CBOWRecommender(seed=1).fit(part).recommend(users[:400], K)
    assert not np.array_equal(first, third)


@pytest.mark.parametrize("name", list(BASELINES))
def test_unknown_user_raises(name, fitted, users):
    with pytest.raises(TripletlitError, match="user -5 has no training rows"):
        fitted[name].recommend(np.array([users[0], -5, -6]), K)
    with pytest.raises(TripletlitError, match="k must be at least 1"):
        fitted[name].recommend(users[:2], 0)


def test_not_fitted_and_empty_training():
    with pytest.raises(TripletlitError, match="fit"):
        PopularityRecommender().recommend(np.array([1]))
    empty = pd.DataFrame(
        {
            c: pd.Series(dtype="int64")
            for c in ["user_id", "track_id", "timestamp", "user_track_count"]
        }
    )
    with pytest.raises(TripletlitError, match="empty"):
        RandomRecommender().fit(empty)


def test_small_catalogue_pads():
    train = pd.DataFrame(
        {
            "user_id": [1, 1, 2, 2, 2],
            "track_id": [10, 11, 10, 12, 13],
            "timestamp": [1, 2, 1, 2, 3],
            "user_track_count": [5, 1, 5, 2, 9],
        }
    )
    pop = PopularityRecommender().fit(train).recommend(np.array([2, 1]), 4)
    np.testing.assert_array_equal(pop, [[11, -1, -1, -1], [13, 12, -1, -1]])
    rnd = RandomRecommender().fit(train).recommend(np.array([1, 2]), 6)
    assert (rnd[:, 4:] == -1).all() and (np.sort(rnd[:, :4], axis=1) == [10, 11, 12, 13]).all()
    cbow = CBOWRecommender(vector_size=4, window=2, epochs=1).fit(train).recommend(np.array([1]), 3)
    assert sorted(cbow[0, :2]) == [12, 13] and cbow[0, 2] == -1


def test_distinct_sample_is_uniform():
    rng = np.random.default_rng(0)
    draw = distinct_sample(rng, 20_000, 10, 3)
    assert draw.shape == (20_000, 3)
    ordered = np.sort(draw, axis=1)
    assert (ordered[:, 1:] != ordered[:, :-1]).all()
    freq = np.bincount(draw.ravel(), minlength=10) / draw.size
    np.testing.assert_allclose(freq, 0.1, atol=0.01)
    dense = distinct_sample(rng, 5, 10, 8)
    assert dense.shape == (5, 8) and all(len(set(row)) == 8 for row in dense)
