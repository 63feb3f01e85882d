"""Popularity / fairness weights (method.md section 4): thetas by hand and their normalisation."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from tripletlit.data.folds import FoldConfig, make_fold
from tripletlit.weights import TRAITS, WeightConfig, row_weights, trait_thetas

LN = math.log


@pytest.fixture
def toy():
    """Three training users (and a fourth user, absent from training, who still counts for
    gender and country, which are counted on all users)."""
    users = pd.DataFrame(
        {
            "user_id": [1, 2, 3, 4],
            "gender": ["m", "f", "m", None],
            "country": ["US", None, "US", "DE"],
        }
    )
    train = pd.DataFrame(
        {
            "user_id": [1, 1, 2, 3],
            "track_id": [10, 20, 10, 30],
            "artist_id": [100, 100, 100, 200],
            "album_id": [7, 7, 7, 8],
            "timestamp": [1, 2, 3, 4],
            "user_track_count": [3, 1, 2, 5],
        }
    )
    return train, users


def test_thetas_by_hand(toy):
    train, users = toy
    thetas = trait_thetas(train, users)
    # gender over all 4 users: m 2, f 1, missing 1 -> raw 1/2, 1, 1 (sum 2.5)
    g = {"m": 0.5 / 2.5, "f": 1 / 2.5}
    np.testing.assert_allclose(thetas["gender"], [g["m"], g["m"], g["f"], g["m"]])
    # country: US 2, missing 1, DE 1 -> raw 1/ln3, 1/ln2, 1/ln2
    c_sum = 1 / LN(3) + 2 / LN(2)
    c = {"US": 1 / LN(3) / c_sum, "missing": 1 / LN(2) / c_sum}
    np.testing.assert_allclose(thetas["country"], [c["US"], c["US"], c["missing"], c["US"]])
    # artist plays: 100 -> 3+1+2 = 6, 200 -> 5
    a_sum = 1 / LN(7) + 1 / LN(6)
    a = {100: 1 / LN(7) / a_sum, 200: 1 / LN(6) / a_sum}
    np.testing.assert_allclose(thetas["artist"], [a[100], a[100], a[100], a[200]])
    # song plays: 10 -> 5, 20 -> 1, 30 -> 5
    s_sum = 2 / LN(6) + 1 / LN(2)
    s = {10: 1 / LN(6) / s_sum, 20: 1 / LN(2) / s_sum, 30: 1 / LN(6) / s_sum}
    np.testing.assert_allclose(thetas["song"], [s[10], s[20], s[10], s[30]])
    # activity (plays): user 1 -> 4, user 2 -> 2, user 3 -> 5
    p_sum = 1 / LN(5) + 1 / LN(3) + 1 / LN(6)
    p = {1: 1 / LN(5) / p_sum, 2: 1 / LN(3) / p_sum, 3: 1 / LN(6) / p_sum}
    np.testing.assert_allclose(thetas["activity"], [p[1], p[1], p[2], p[3]])
    assert set(thetas) == set(TRAITS)
    assert all(v.shape == (4,) for v in thetas.values())


def test_activity_by_songs_counts_distinct_tracks(toy):
    train, users = toy
    by_plays = trait_thetas(train, users, activity_by="plays")
    by_songs = trait_thetas(train, users, activity_by="songs")
    # songs: user 1 -> 2, user 2 -> 1, user 3 -> 1
    q_sum = 1 / LN(3) + 2 / LN(2)
    np.testing.assert_allclose(by_songs["activity"], [1 / LN(3) / q_sum] * 2 + [1 / LN(2) / q_sum] * 2)
    # user 2 and user 3 tie on songs but not on plays (2 vs 5 plays)
    assert by_songs["activity"][2] == pytest.approx(by_songs["activity"][3])
    assert by_plays["activity"][2] > by_plays["activity"][3]
    for trait in ("gender", "country", "artist", "song"):
        np.testing.assert_array_equal(by_plays[trait], by_songs[trait])
    with pytest.raises(ValueError):
        trait_thetas(train, users, activity_by="minutes")


def test_row_weights_sum_and_average(toy):
    train, users = toy
    config = WeightConfig(gender=2.0, country=3.0, artist=5.0, song=7.0, activity=11.0)
    thetas = trait_thetas(train, users)
    expected = sum(c * thetas[t] for t, c in config.coefficients().items())
    summed = row_weights(train, users, config)
    assert summed.dtype == np.float32 and summed.shape == (4,)
    np.testing.assert_allclose(summed, expected, rtol=1e-6)
    averaged = row_weights(train, users, WeightConfig(**{**config.__dict__, "combine": "average"}))
    np.testing.assert_allclose(summed / averaged, np.full(4, 2 + 3 + 5 + 7 + 11.0), rtol=1e-5)
    with pytest.raises(ValueError):
        row_weights(train, users, WeightConfig(combine="max"))


def test_row_weights_single_trait_and_disabled(toy):
    train, users = toy
    only_song = WeightConfig(gender=0, country=0, artist=0, song=1, activity=0)
    np.testing.assert_allclose(row_weights(train, users, only_song), trait_thetas(train, users)["song"], rtol=1e-6)
    disabled = row_weights(train, users, WeightConfig(enabled=False))
    np.testing.assert_array_equal(disabled, np.ones(4, dtype=np.float32))
    assert disabled.dtype == np.float32


def test_rare_categories_weigh_more(toy):
    train, users = toy
    thetas = trait_thetas(train, users)
    assert thetas["gender"][2] > thetas["gender"][0]  # f (1 user) over m (2 users)
    assert thetas["song"][1] > thetas["song"][0]  # track 20 (1 play) over track 10 (5)
    w = row_weights(train, users)
    assert w[1] > w[0]  # same user, artist; rarer track


def test_paper_table_1_defaults():
    config = WeightConfig()
    assert config.coefficients() == {
        "gender": 5.0,
        "country": 100.0,
        "artist": 1e4,
        "song": 1e5,
        "activity": 1e4,
    }
    assert config.combine == "sum" and config.activity_by == "plays" and config.enabled


def _one_theta_per_category(theta: np.ndarray, category: pd.Series) -> pd.Series:
    grouped = pd.Series(theta).groupby(category.to_numpy(), dropna=False)
    assert (grouped.nunique() == 1).all(), "theta differs within one category"
    return grouped.first()


def test_thetas_sum_to_one_over_distinct_categories(tiny):
    dataset, _ = tiny
    train = dataset.events  # every user trains here, so every gender / country occurs
    users = dataset.users
    thetas = trait_thetas(train, users)
    meta = users.set_index("user_id").reindex(train["user_id"].to_numpy())
    categories = {
        "gender": meta["gender"].astype(object).fillna("<none>"),
        "country": meta["country"].astype(object).fillna("<none>"),
        "artist": train["artist_id"],
        "song": train["track_id"],
        "activity": train["user_id"],
    }
    for trait, category in categories.items():
        per_category = _one_theta_per_category(thetas[trait], category)
        assert len(per_category) == category.nunique(dropna=False)
        assert per_category.sum() == pytest.approx(1.0, abs=1e-9), trait
        # the sum over rows is NOT 1 (normalised over categories, not rows)
        assert thetas[trait].sum() > 1.5, trait
    assert meta["country"].isna().any()  # the missing country is one of the categories


def test_fold_traits_sum_to_one_and_gender_country_over_all_users(tiny):
    dataset, _ = tiny
    fold = make_fold(dataset.events, FoldConfig(min_count=3, user_fraction=0.5), 0)
    thetas = trait_thetas(fold.train, dataset.users)
    for trait, column in (("artist", "artist_id"), ("song", "track_id"), ("activity", "user_id")):
        assert _one_theta_per_category(thetas[trait], fold.train[column]).sum() == pytest.approx(1.0)
    # gender is counted on all users: theta = (1/count) / sum(1/count) over the whole user table
    counts = dataset.users["gender"].astype(object).fillna("<none>").value_counts()
    raw = 1.0 / counts
    expected = (raw / raw.sum()).reindex(
        dataset.users.set_index("user_id")["gender"].astype(object).fillna("<none>")
        .reindex(fold.train["user_id"].to_numpy()).to_numpy()
    )  # fmt: skip
    np.testing.assert_allclose(thetas["gender"], expected.to_numpy(dtype=float))
