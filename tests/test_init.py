"""Initial embeddings (method.md section 5): the word2vec corpus, word2vec vectors, uniform init."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

import tripletlit.init as init_module
from tripletlit.data.folds import FoldConfig, make_fold
from tripletlit.init import track_sentences, uniform_init, word2vec_init
from tripletlit.model import TripletMF
from tripletlit.sampling import Interactions


@pytest.fixture
def toy_fold():
    """Training rows as (user, track) ids and a tracks table with one track outside the fold."""
    users = np.array([5, 7, 5, 9, 7])
    tracks = np.array([20, 20, 30, 10, 30])
    table = pd.DataFrame(
        {
            "track_id": [30, 10, 20, 99],
            "artist_id": [301, 101, 201, 999],
            "albums_id": [
                np.array([3000], dtype=np.int64),
                np.array([], dtype=np.int64),
                np.array([2001, 2000], dtype=np.int64),
                np.array([9], dtype=np.int64),
            ],
        }
    )
    return Interactions.from_rows(users, tracks), table


def test_track_sentences_listeners_then_track_artist_albums(toy_fold):
    index, table = toy_fold
    assert track_sentences(index, table) == [
        ["user=9", "track=10", "artist=101"],
        ["user=5", "user=7", "track=20", "artist=201", "album=2001", "album=2000"],
        ["user=5", "user=7", "track=30", "artist=301", "album=3000"],
    ]


def test_track_sentences_without_metadata(toy_fold):
    index, _ = toy_fold
    assert track_sentences(index, None) == [
        ["user=9", "track=10"],
        ["user=5", "user=7", "track=20"],
        ["user=5", "user=7", "track=30"],
    ]


def test_long_sentences_are_split_keeping_the_track_tokens(monkeypatch):
    monkeypatch.setattr(init_module, "MAX_SENTENCE", 5)
    index = Interactions.from_rows(np.array([1, 2, 3, 4, 5, 6, 1]), np.array([8, 8, 8, 8, 8, 8, 4]))
    table = pd.DataFrame({"track_id": [4, 8], "artist_id": [40, 80], "albums_id": [np.array([400]), np.array([800])]})
    sentences = track_sentences(index, table)
    tail = ["track=8", "artist=80", "album=800"]
    assert sentences[0] == ["user=1", "track=4", "artist=40", "album=400"]
    pieces = sentences[1:]
    assert all(len(p) <= 5 and p[-3:] == tail for p in pieces)
    listeners = [w for p in pieces for w in p[:-3]]
    assert listeners == [f"user={u}" for u in range(1, 7)]


def test_track_sentences_cover_a_real_fold(tiny):
    dataset, _ = tiny
    fold = make_fold(dataset.events, FoldConfig(min_count=3, user_fraction=0.5), 0)
    index = Interactions.from_rows(fold.train["user_id"].to_numpy(), fold.train["track_id"].to_numpy())
    sentences = track_sentences(index, dataset.tracks)
    assert len(sentences) == index.n_tracks
    meta = dataset.tracks.set_index("track_id")
    for t in (0, index.n_tracks // 2, index.n_tracks - 1):
        track_id = int(index.track_ids[t])
        listeners = sorted(fold.train.loc[fold.train["track_id"] == track_id, "user_id"].tolist())
        albums = [f"album={a}" for a in meta.loc[track_id, "albums_id"].tolist()]
        assert sentences[t] == [f"user={u}" for u in listeners] + [
            f"track={track_id}",
            f"artist={int(meta.loc[track_id, 'artist_id'])}",
            *albums,
        ]


@pytest.fixture(scope="module")
def small_w2v(small):
    fold = make_fold(small.events, FoldConfig(), 0)
    index = Interactions.from_rows(fold.train["user_id"].to_numpy(), fold.train["track_id"].to_numpy())
    # epochs=10: at this scale (150K rows) one epoch leaves the vectors almost where they started
    users, tracks = word2vec_init(index, small.tracks, 32, window=10, epochs=10)
    return index, users, tracks


def _unit(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_word2vec_shapes_and_finite(small_w2v):
    index, users, tracks = small_w2v
    assert users.shape == (index.n_users, 32) and users.dtype == np.float32
    assert tracks.shape == (index.n_tracks, 32) and tracks.dtype == np.float32
    assert np.isfinite(users).all() and np.isfinite(tracks).all()
    assert len(np.unique(users.round(5), axis=0)) == index.n_users  # no two users share a vector


def test_word2vec_co_listeners_are_closer_than_random_users(small_w2v):
    index, users, tracks = small_w2v
    matrix = sp.csr_matrix(
        (np.ones(len(index.row_user)), (index.row_user, index.row_track)), shape=(index.n_users, index.n_tracks)
    )
    shared = (matrix @ matrix.T).toarray()
    np.fill_diagonal(shared, -1)
    partner = shared.argmax(axis=1)  # the user sharing the most tracks
    unit = _unit(users)
    rng = np.random.default_rng(0)
    random_partner = (np.arange(index.n_users) + rng.integers(1, index.n_users, index.n_users)) % index.n_users
    close = (unit * unit[partner]).sum(axis=1)
    far = (unit * unit[random_partner]).sum(axis=1)
    assert close.mean() > far.mean()
    assert (close > far).mean() > 0.7
    # rows are aligned with index.user_ids / track_ids: a user is closer to its own tracks
    tracks_unit = _unit(tracks)
    own = (unit[index.row_user] * tracks_unit[index.row_track]).sum(axis=1).mean()
    other = (unit[index.row_user] * tracks_unit[rng.permutation(index.row_track)]).sum(axis=1).mean()
    assert own > other


def test_word2vec_is_deterministic(toy_fold):
    index, table = toy_fold
    a = word2vec_init(index, table, 8, window="sentence")
    b = word2vec_init(index, table, 8, window="sentence")
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert a[0].shape == (3, 8) and a[1].shape == (3, 8)


@pytest.mark.parametrize("n_rows", [4, 100, 2500])
def test_uniform_init_bound(n_rows):
    table = uniform_init(n_rows, 64, np.random.default_rng(0))
    bound = n_rows**-0.5
    assert table.shape == (n_rows, 64) and table.dtype == np.float32
    assert np.abs(table).max() <= bound
    assert np.abs(table).max() > 0.9 * bound
    assert abs(table.mean()) < 0.1 * bound


def test_model_default_init_uses_the_same_bound_per_table():
    model = TripletMF(400, 25, 16)
    users, tracks = model.users.weight.detach().numpy(), model.tracks.weight.detach().numpy()
    assert np.abs(users).max() <= 400**-0.5 and np.abs(users).max() > 0.9 * 400**-0.5
    assert np.abs(tracks).max() <= 25**-0.5 and np.abs(tracks).max() > 0.9 * 25**-0.5
    given = uniform_init(400, 16, np.random.default_rng(1))
    model = TripletMF(400, 25, 16, user_init=given)
    np.testing.assert_array_equal(model.users.weight.detach().numpy(), given)
    with pytest.raises(ValueError):
        TripletMF(400, 25, 16, track_init=given)
