"""The synthetic generator: determinism, calibration to LFM-1b users, planted structure.

Tolerances are for the `small` preset (10,000 users): about three standard errors of a share
estimated on 10,000 users, so a calibration drift fails the test but sampling noise does not.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from tripletlit.data import synthetic
from tripletlit.data.describe import gini_coefficient
from tripletlit.data.folds import FoldConfig, make_fold
from tripletlit.data.synthetic import PRESETS, generate
from tripletlit.errors import TripletlitError


def test_same_seed_same_data_other_seed_other_data(tiny):
    dataset, ids = tiny
    again, ids_again = generate("tiny", seed=0)
    pd.testing.assert_frame_equal(again.events, dataset.events)
    pd.testing.assert_frame_equal(again.users, dataset.users)
    pd.testing.assert_frame_equal(again.tracks, dataset.tracks)
    assert np.array_equal(ids, ids_again)
    other, _ = generate("tiny", seed=1)
    assert not other.events[["user_id", "track_id"]].equals(dataset.events[["user_id", "track_id"]])


def test_sizes_follow_the_preset(small):
    preset = PRESETS["small"]
    assert small.n_users == preset.n_users and small.n_tracks == preset.n_tracks
    assert small.n_artists == preset.n_artists
    rows_per_user = len(small.events) / preset.n_users
    assert 0.8 * preset.tracks_per_user <= rows_per_user <= preset.tracks_per_user
    # the cap applies to each user's target; rounding the per-artist quotas adds a few rows
    assert small.events.groupby("user_id").size().max() <= 1.05 * preset.max_tracks_per_user


def test_unknown_preset():
    with pytest.raises(TripletlitError, match="unknown preset 'huge'; choose one of tiny, small"):
        generate("huge")


def test_gender_and_country_shares(small):
    users = small.users
    gender = users["gender"].value_counts(normalize=True, dropna=False)
    for value, share in {"n": 0.535, "m": 0.332, "f": 0.131}.items():
        assert abs(gender[value] - share) < 0.015, (value, gender[value])
    assert abs(users["gender"].isna().mean() - 0.002) < 0.002
    country = users["country"]
    assert abs(country.isna().mean() - 0.541) < 0.015
    for code, share in {"US": 0.085, "RU": 0.042, "DE": 0.038, "BR": 0.032, "FI": 0.012}.items():
        assert abs((country == code).mean() - share) < 0.009, code
    known = users[country.notna()]
    assert 0.58 <= (known["gender"] == "m").mean() <= 0.70
    assert 0.19 <= (known["gender"] == "f").mean() <= 0.38
    assert (users.loc[country.isna(), "gender"] == "n").mean() >= 0.70


def test_age_and_playcount_distributions(small):
    age = small.users["age"].to_numpy()
    assert abs((age > 0).mean() - 0.383) < 0.015
    q05, q25, q50, q75, q95 = np.quantile(age[age > 0], [0.05, 0.25, 0.5, 0.75, 0.95])
    assert (16 <= q05 <= 18) and (19 <= q25 <= 21) and (22 <= q50 <= 24) and (27 <= q75 <= 29) and (39 <= q95 <= 45)
    playcount = small.users["playcount"].to_numpy()
    logs = np.log(playcount[playcount > 0])
    assert abs(logs.mean() - 7.95) < 0.1 and abs(logs.std() - 2.03) < 0.1
    for q, real in {0.05: 137, 0.25: 670, 0.5: 1689, 0.75: 17847, 0.95: 76023}.items():
        assert abs(np.log(np.quantile(playcount[playcount > 0], q)) - np.log(real)) < 0.15, q


def test_timestamps_inside_each_user_window(small):
    events = small.events.merge(small.users[["user_id", "registered_unixtime"]], on="user_id")
    start = np.maximum(events["registered_unixtime"], synthetic.LOG_FIRST_EVENT)
    assert (events["timestamp"] >= start).all()
    assert (events["timestamp"] <= synthetic.LOG_LAST_EVENT).all()
    assert events.groupby("user_id")["timestamp"].nunique().median() > 10


def test_power_law_popularity(small):
    plays = small.events.groupby("track_id")["user_track_count"].sum()
    artists = small.events.groupby("artist_id")["user_track_count"].sum()
    assert gini_coefficient(plays.to_numpy()) > 0.5
    assert gini_coefficient(artists.to_numpy()) > 0.5
    assert plays.max() > 50 * plays.median()
    counts = small.events["user_track_count"]
    assert counts.max() > 100 * counts.median()


def test_artist_variety_spreads_over_zero_one(small):
    per = small.events.groupby(["user_id", "artist_id"]).size()
    share = per / per.groupby(level=0).transform("sum")
    impurity = 1 - (share**2).groupby(level=0).sum()
    assert (impurity == 0).mean() > 0.005  # some one-artist users
    assert impurity.quantile(0.1) < 0.5 and impurity.quantile(0.9) > 0.9
    assert impurity.std() > 0.15


def _home_share(events, users, code):
    """Mean share of `code` users among the listeners of the artists `code` users play."""
    country = events["user_id"].map(users.set_index("user_id")["country"])
    is_home = (country == code).to_numpy()
    listeners = events.assign(home=is_home).groupby("artist_id")["home"].mean()
    return listeners.reindex(events.loc[is_home, "artist_id"]).mean(), is_home.mean()


def test_minority_countries_have_their_own_taste(small):
    for code in ("RU", "BR"):
        home, population = _home_share(small.events, small.users, code)
        assert home > 5 * population, (code, home, population)
    us, population = _home_share(small.events, small.users, "US")
    assert us < 2 * population  # the majority listens to global styles


def test_female_users_lean_to_other_artists(small):
    gender = small.events["user_id"].map(small.users.set_index("user_id")["gender"])

    def artist_distribution(mask):
        p = small.events.loc[mask, "artist_id"].value_counts(normalize=True)
        return p

    def tv(a, b):
        return 0.5 * a.subtract(b, fill_value=0).abs().sum()

    female, male = artist_distribution(gender == "f"), artist_distribution(gender == "m")
    users = small.users.loc[small.users["gender"] == "m", "user_id"].to_numpy()
    half = small.events["user_id"].isin(users[: len(users) // 2])
    male_a, male_b = artist_distribution((gender == "m") & half), artist_distribution((gender == "m") & ~half)
    assert tv(female, male) > 1.5 * tv(male_a, male_b)


def _hit_rate(scores, train, test, k=100):
    scores = scores.copy()
    scores[train.nonzero()] = -np.inf
    top = np.argpartition(-scores, k, axis=1)[:, :k]
    return float((top == test[:, None]).any(axis=1).mean())


def test_co_listening_beats_popularity_beats_random(small):
    """The planted taste is learnable: item co-occurrence > popularity > random on HR@100."""
    fold = make_fold(small.events, FoldConfig(), 0)
    users, u = np.unique(fold.train["user_id"], return_inverse=True)
    tracks, t = np.unique(fold.train["track_id"], return_inverse=True)
    x = sp.csr_matrix((np.ones(len(u)), (u, t)), shape=(len(users), len(tracks)))
    test = fold.test.set_index("user_id").loc[users, "track_id"].to_numpy()
    test = np.searchsorted(tracks, test)
    popularity = np.broadcast_to(np.asarray(x.sum(axis=0)), x.shape).astype(np.float64)
    norm = np.sqrt(np.asarray(x.sum(axis=0))).ravel() + 1e-9
    similarity = (x.T @ x).toarray() / norm[:, None] / norm[None, :]
    np.fill_diagonal(similarity, 0.0)
    co = np.asarray(x @ similarity)
    random = np.random.default_rng(0).random(x.shape)
    hr_co, hr_pop, hr_rand = (_hit_rate(s, x, test) for s in (co, popularity, random))
    assert hr_co > 1.3 * hr_pop, (hr_co, hr_pop)
    assert hr_pop > 3 * hr_rand, (hr_pop, hr_rand)


def test_catalogue_tables(small):
    tracks = small.tracks
    assert tracks["track_id"].is_unique
    n_albums = tracks["albums_id"].map(len)
    assert n_albums.min() >= 1 and 1.2 < n_albums.mean() < 2.0
    assert all(len(np.unique(a)) == len(a) for a in tracks["albums_id"].iloc[:2000])
    # events point at the artist and primary album of their track
    merged = small.events.merge(tracks[["track_id", "artist_id", "albums_id"]], on="track_id", suffixes=("", "_t"))
    assert (merged["artist_id"] == merged["artist_id_t"]).all()
    first_album = merged["albums_id"].map(lambda a: a[0])
    assert (merged["album_id"] == first_album).all()
    # user extras are consistent with the events
    counts = small.events.groupby("user_id")["user_track_count"].sum()
    extras = small.users.set_index("user_id")
    assert np.array_equal(extras.loc[counts.index, "cnt_listeningevents"].to_numpy(), counts.to_numpy())
    weekday = extras[[f"relative_le_per_weekday{d}" for d in range(1, 8)]].sum(axis=1)
    assert np.allclose(weekday, 1.0)
