"""song2vec: the skip-gram stand-in, its per-fold cache, and the official KeyedVectors loader."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tripletlit.errors import TripletlitError
from tripletlit.evaluation import song2vec
from tripletlit.evaluation.song2vec import (
    fold_vectors,
    load_official,
    train_stand_in,
    user_sentences,
)
from tripletlit.evaluation.vectors import TrackVectors

FAST = {"vector_size": 16, "window": 5, "epochs": 2}


@pytest.fixture(scope="module")
def events(tiny):
    return tiny[0].events


def test_sentences_are_users_by_timestamp_then_track():
    train = pd.DataFrame(
        {
            "user_id": [2, 1, 1, 1, 2],
            "track_id": [30, 12, 11, 10, 31],
            "timestamp": [5, 9, 3, 9, 1],
        }
    )
    assert user_sentences(train) == [["11", "10", "12"], ["31", "30"]]
    assert user_sentences(train, max_length=2) == [["11", "10"], ["12"], ["31", "30"]]
    assert user_sentences(train.iloc[:0]) == []


def test_stand_in_is_deterministic_for_a_seed(events):
    first = train_stand_in(events, seed=3, **FAST)
    second = train_stand_in(events, seed=3, **FAST)
    assert isinstance(first, TrackVectors) and first.stand_in
    assert first.vectors.shape == (events["track_id"].nunique(), 16)
    assert first.vectors.dtype == np.float32
    assert np.all(np.diff(first.ids) > 0)
    np.testing.assert_array_equal(first.ids, second.ids)
    np.testing.assert_array_equal(first.vectors, second.vectors)
    other = train_stand_in(events, seed=4, **FAST)
    assert not np.array_equal(first.vectors, other.vectors)


def test_stand_in_rejects_empty_training_set(events):
    with pytest.raises(TripletlitError, match="empty"):
        train_stand_in(events.iloc[:0])


def test_cache_is_written_and_reused(tmp_path, events, monkeypatch):
    trained = fold_vectors(tmp_path, events, **FAST)
    files = list(tmp_path.glob("song2vec-standin-*.npz"))
    assert len(files) == 1 and not list(tmp_path.glob(".*.tmp"))

    def no_training(*args, **kwargs):
        raise AssertionError("the cached stand-in should have been reused")

    monkeypatch.setattr(song2vec, "train_stand_in", no_training)
    cached = fold_vectors(tmp_path, events, **FAST)
    assert cached.stand_in
    np.testing.assert_array_equal(cached.ids, trained.ids)
    np.testing.assert_array_equal(cached.vectors, trained.vectors)
    # Other parameters are another file; other training rows are retrained, not reused.
    assert song2vec.cache_path(tmp_path, **FAST) == files[0]
    assert song2vec.cache_path(tmp_path, **{**FAST, "seed": 1}) != files[0]
    with pytest.raises(AssertionError, match="reused"):
        fold_vectors(tmp_path, events.iloc[100:], **FAST)


def test_no_cache_without_fold_dir_and_unknown_param(tmp_path, events, monkeypatch):
    calls = []
    monkeypatch.setattr(song2vec, "train_stand_in", lambda train, **p: calls.append(p) or "vectors")
    assert fold_vectors(None, events, **FAST) == "vectors"
    assert calls[0]["vector_size"] == 16 and calls[0]["seed"] == 42
    with pytest.raises(TripletlitError, match="unknown song2vec stand-in parameter 'dims'"):
        fold_vectors(tmp_path, events, dims=3)


@pytest.mark.parametrize("key_type", [int, str])
def test_official_round_trip(tmp_path, key_type, monkeypatch):
    from gensim.models import KeyedVectors

    ids = [30, 7, 12]
    vectors = np.arange(9, dtype=np.float32).reshape(3, 3)
    kv = KeyedVectors(vector_size=3)
    kv.add_vectors([key_type(i) for i in ids], vectors)
    path = tmp_path / "song2vec.wv"
    kv.save(str(path))

    loaded = load_official(path)
    assert not loaded.stand_in
    np.testing.assert_array_equal(loaded.ids, [7, 12, 30])
    np.testing.assert_array_equal(loaded.vectors, vectors[[1, 2, 0]])
    # fold_vectors prefers the official file and never trains.
    monkeypatch.setattr(song2vec, "train_stand_in", None)
    via_fold = fold_vectors(tmp_path, pd.DataFrame(), official=path)
    np.testing.assert_array_equal(via_fold.vectors, loaded.vectors)
    assert not list(tmp_path.glob("song2vec-standin-*"))


def test_official_bad_files(tmp_path):
    missing = tmp_path / "absent.wv"
    with pytest.raises(TripletlitError, match="absent.wv: song2vec file not found"):
        load_official(missing)
    garbage = tmp_path / "song2vec.wv"
    garbage.write_bytes(b"\x00\x01fake-gensim")
    with pytest.raises(TripletlitError, match="song2vec.wv: unreadable song2vec file") as info:
        load_official(garbage)
    assert "\n" not in str(info.value)


def test_official_non_integer_keys(tmp_path):
    from gensim.models import KeyedVectors

    kv = KeyedVectors(vector_size=2)
    kv.add_vectors(["a", "b"], np.ones((2, 2), dtype=np.float32))
    path = tmp_path / "words.wv"
    kv.save(str(path))
    with pytest.raises(TripletlitError, match="keys must be track ids"):
        load_official(path)


def test_shared_cache_serves_other_runs_of_the_same_rows(tmp_path, events, monkeypatch):
    shared = tmp_path / "shared"
    first = fold_vectors(tmp_path / "run1", events, shared=shared, **FAST)
    assert len(list(shared.glob("*.npz"))) == 1

    def no_training(*args, **kwargs):
        raise AssertionError("the shared stand-in should have been reused")

    monkeypatch.setattr(song2vec, "train_stand_in", no_training)
    second = fold_vectors(tmp_path / "run2", events, shared=shared, **FAST)
    np.testing.assert_array_equal(second.vectors, first.vectors)
    assert list((tmp_path / "run2").glob("song2vec-standin-*.npz"))  # the run folder keeps its copy
    # other rows or other parameters are not served from it
    monkeypatch.undo()
    calls = []
    monkeypatch.setattr(song2vec, "train_stand_in", lambda train, **p: calls.append(1) or first)
    fold_vectors(tmp_path / "run3", events.iloc[50:], shared=shared, **FAST)
    fold_vectors(tmp_path / "run4", events, shared=shared, **{**FAST, "seed": 7})
    assert len(calls) == 2
