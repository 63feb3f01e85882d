"""The EvalRS fold protocol: properties, determinism, a slow oracle for the k-core, file layout."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tripletlit.data.folds import (
    FoldConfig,
    k_core,
    load_fold,
    make_fold,
    read_manifest,
    sample_users,
    write_folds,
)
from tripletlit.errors import DataError, TripletlitError


def _pairs(df):
    return set(zip(df["user_id"].tolist(), df["track_id"].tolist()))


@pytest.fixture(scope="module")
def fold0(small):
    return make_fold(small.events, FoldConfig(), 0)


def test_ten_core_holds_on_the_fold(fold0):
    rows = pd.concat([fold0.train[["user_id", "track_id"]], fold0.test])
    assert rows.groupby("track_id")["user_id"].nunique().min() >= 10
    assert rows.groupby("user_id").size().min() >= 10


def test_one_test_row_per_user_and_every_test_user_trains(fold0):
    assert fold0.test["user_id"].is_unique
    assert set(fold0.test["user_id"]) == set(fold0.train["user_id"])


def test_every_test_track_occurs_in_train(fold0):
    assert fold0.test["track_id"].isin(fold0.train["track_id"]).all()


def test_no_test_row_in_train(fold0):
    assert not (_pairs(fold0.test) & _pairs(fold0.train))


def test_test_rows_come_from_the_user_events(small, fold0):
    assert _pairs(fold0.test) <= _pairs(small.events)


def test_quarter_of_users_sampled_with_seed_plus_fold(small):
    users = small.events["user_id"].to_numpy()
    chosen = sample_users(users, 0.25, 0 + 2)
    assert len(chosen) == round(0.25 * len(np.unique(users)))
    fold2 = make_fold(small.events, FoldConfig(), 2)
    assert set(fold2.test["user_id"]) <= set(chosen)
    # seed s, fold f uses random_state s + f: (seed 1, fold 1) equals (seed 0, fold 2)
    shifted = make_fold(small.events, FoldConfig(seed=1), 1)
    pd.testing.assert_frame_equal(shifted.test, fold2.test)


def test_same_seed_same_fold_other_fold_or_seed_differs(small, fold0):
    again = make_fold(small.events, FoldConfig(), 0)
    pd.testing.assert_frame_equal(again.train, fold0.train)
    pd.testing.assert_frame_equal(again.test, fold0.test)
    other = make_fold(small.events, FoldConfig(), 1)
    assert set(other.test["user_id"]) != set(fold0.test["user_id"])
    reseeded = make_fold(small.events, FoldConfig(seed=7), 0)
    assert set(reseeded.test["user_id"]) != set(fold0.test["user_id"])


def test_train_has_all_six_columns_and_types(small, fold0):
    assert list(fold0.train.columns) == list(small.events.columns)
    assert list(fold0.test.columns) == ["user_id", "track_id"]
    assert (fold0.train.dtypes == small.events.dtypes).all()


def test_leave_last_out_holds_out_the_latest_row(small):
    fold = make_fold(small.events, FoldConfig(strategy="last"), 0)
    latest = fold.train.groupby("user_id")["timestamp"].max()
    held = fold.test.merge(small.events, on=["user_id", "track_id"]).set_index("user_id")["timestamp"]
    assert (held >= latest.reindex(held.index)).all()


def test_random_hold_out_is_not_temporal(small, fold0):
    latest = fold0.train.groupby("user_id")["timestamp"].max()
    held = fold0.test.merge(small.events, on=["user_id", "track_id"]).set_index("user_id")["timestamp"]
    assert (held >= latest.reindex(held.index)).mean() < 0.5


def _k_core_oracle(df: pd.DataFrame, k: int, max_passes: int) -> pd.DataFrame:
    """Straightforward pandas version of the iterative k-core (the reference's way)."""
    for _ in range(max_passes):
        before = len(df)
        track_users = df.groupby("track_id")["user_id"].nunique()
        df = df[df["track_id"].isin(track_users[track_users >= k].index)]
        user_rows = df.groupby("user_id").size()
        df = df[df["user_id"].isin(user_rows[user_rows >= k].index)]
        if len(df) == before:
            break
    return df


@settings(max_examples=40, deadline=None)
@given(
    n_rows=st.integers(0, 400),
    n_users=st.integers(1, 30),
    n_tracks=st.integers(1, 30),
    k=st.integers(1, 6),
    passes=st.integers(1, 10),
    seed=st.integers(0, 2**16),
)
def test_k_core_matches_pandas_oracle(n_rows, n_users, n_tracks, k, passes, seed):
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({"user_id": rng.integers(0, n_users, n_rows) * 7, "track_id": rng.integers(0, n_tracks, n_rows) * 3})
    df = df.drop_duplicates().reset_index(drop=True)
    keep, used = k_core(df["user_id"].to_numpy(), df["track_id"].to_numpy(), k, passes)
    expected = _k_core_oracle(df, k, passes)
    assert sorted(df.index[keep]) == sorted(expected.index)
    assert 1 <= used <= passes


def test_parameters_for_smaller_data(tiny):
    dataset, _ = tiny
    fold = make_fold(dataset.events, FoldConfig(user_fraction=0.5, min_count=3), 0)
    rows = pd.concat([fold.train[["user_id", "track_id"]], fold.test])
    assert rows.groupby("track_id").size().min() >= 3
    assert len(fold.test) > 0.4 * dataset.n_users


def test_empty_fold_is_a_clear_error(tiny):
    with pytest.raises(DataError, match="lower --min-count"):
        make_fold(tiny[0].events, FoldConfig(min_count=10_000), 0)


@pytest.mark.parametrize("kwargs", [{"n_folds": 0}, {"user_fraction": 0}, {"user_fraction": 1.5},
                                    {"min_count": 0}, {"strategy": "temporal"}])
def test_bad_parameters(kwargs):
    with pytest.raises(TripletlitError):
        FoldConfig(**kwargs)


def test_written_folds_read_back(tiny, tmp_path):
    config = FoldConfig(n_folds=2, min_count=3, seed=5)
    stats = write_folds(tiny[0].events, tmp_path / "folds", config, source="tiny")
    manifest = read_manifest(tmp_path / "folds")
    assert manifest["seed"] == 5 and manifest["n_folds"] == 2 and manifest["source"] == "tiny"
    assert manifest["folds"] == stats
    for f in range(2):
        assert (tmp_path / "folds" / f"fold{f}" / "train.parquet").exists()
        fold = load_fold(tmp_path / "folds", f)
        expected = make_fold(tiny[0].events, config, f)
        pd.testing.assert_frame_equal(fold.train, expected.train)
        pd.testing.assert_frame_equal(fold.test, expected.test)
    with pytest.raises(DataError, match="fold 2 does not exist"):
        load_fold(tmp_path / "folds", 2)
