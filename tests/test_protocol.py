"""Reading predictions files, aligning them with a fold, evaluate() and metrics.json."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from tripletlit.data.folds import FoldConfig, make_fold
from tripletlit.errors import DataError
from tripletlit.evaluation import evaluate, read_predictions, summarise, write_metrics
from tripletlit.evaluation.protocol import align_predictions
from tripletlit.evaluation.vectors import TrackVectors


@pytest.fixture(scope="module")
def fold(small):
    return make_fold(small.events, FoldConfig(), 0)


def _frame(users, matrix):
    frame = pd.DataFrame(matrix, columns=[str(i) for i in range(matrix.shape[1])])
    frame.insert(0, "user_id", users)
    return frame


def _perfect(fold, k=100):
    """The held-out track first, then other training tracks (distinct), -1 padding at the end."""
    others = fold.train["track_id"].unique()
    matrix = np.full((len(fold.test), k), -1, dtype=np.int64)
    matrix[:, 0] = fold.test["track_id"].to_numpy()
    return matrix, others


def test_perfect_predictions_hit_everything(small, fold, tmp_path):
    matrix, _ = _perfect(fold)
    path = tmp_path / "pred.parquet"
    _frame(fold.test["user_id"].to_numpy(), matrix).sample(frac=1.0, random_state=0).to_parquet(path)
    predictions = read_predictions(path)
    result = evaluate(predictions, fold, small)
    assert result["metrics"]["HIT_RATE"] == 1.0 and result["metrics"]["MRR"] == 1.0
    for name in ("MRED_COUNTRY", "MRED_USER_ACTIVITY", "MRED_TRACK_POPULARITY", "MRED_ARTIST_POPULARITY", "MRED_GENDER"):
        assert result["metrics"][name] == 0.0
    assert np.isnan(result["metrics"]["BEING_LESS_WRONG"])  # no vectors given
    assert result["stand_in"] is None


def test_csv_predictions_and_vectors(small, fold, tmp_path):
    matrix, _ = _perfect(fold)
    matrix[::2, 0] = -1  # half the users: no hit, top-1 is padding
    path = tmp_path / "pred.csv"
    _frame(fold.test["user_id"].to_numpy(), matrix).to_csv(path, index=False)
    ids = fold.train["track_id"].unique()
    vectors = TrackVectors.from_mapping(ids, np.random.default_rng(0).normal(size=(len(ids), 8)))
    result = evaluate(read_predictions(path), fold, small, vectors)
    assert result["metrics"]["HIT_RATE"] == pytest.approx(0.5, abs=0.001)
    assert result["stand_in"] is True
    assert np.isfinite(result["metrics"]["LATENT_DIVERSITY"])


@pytest.mark.parametrize(
    "mutate,message",
    [
        (lambda f: f.drop(columns="user_id"), "no 'user_id' column"),
        (lambda f: f.drop(columns="99"), "99 prediction columns, expected 100"),
        (lambda f: f.assign(**{"5": f["5"].astype(float) + 0.5}), "column '5' must hold integer track ids"),
        (lambda f: pd.concat([f, f.iloc[:1]]), "has two rows"),
    ],
)
def test_malformed_predictions_file(fold, tmp_path, mutate, message):
    matrix, _ = _perfect(fold)
    path = tmp_path / "bad.parquet"
    mutate(_frame(fold.test["user_id"].to_numpy(), matrix)).to_parquet(path)
    with pytest.raises(DataError, match=message):
        read_predictions(path)


def test_unreadable_and_missing_file(tmp_path):
    (tmp_path / "x.parquet").write_bytes(b"nope")
    with pytest.raises(DataError, match="cannot read predictions"):
        read_predictions(tmp_path / "x.parquet")
    with pytest.raises(DataError, match="not found"):
        read_predictions(tmp_path / "missing.csv")


def test_alignment_rejects_unknown_and_missing_users(fold):
    matrix, _ = _perfect(fold)
    users = fold.test["user_id"].to_numpy()
    frame = pd.DataFrame(matrix, index=users)
    with pytest.raises(DataError, match="is not a test user"):
        align_predictions(frame.rename(index={users[0]: -5}), users)
    with pytest.raises(DataError, match="no predictions for test user"):
        align_predictions(frame.iloc[1:], users)
    assert np.array_equal(align_predictions(frame.iloc[::-1], users), matrix)


def test_metrics_json_is_strict_and_summarises(small, fold, tmp_path):
    matrix, _ = _perfect(fold)
    one = evaluate(matrix, fold, small)
    summary = summarise([one, one])
    assert summary["consistency"]["per_metric"]["HIT_RATE"] == 1.0
    path = write_metrics({"folds": [one], "summary": summary}, tmp_path / "m" / "metrics.json")
    def reject(constant):
        raise AssertionError(f"non-standard JSON constant {constant}")

    data = json.loads(path.read_text(), parse_constant=reject)  # strict: NaN became null
    assert data["folds"][0]["metrics"]["BEING_LESS_WRONG"] is None
    assert data["summary"]["metrics"]["HIT_RATE"] == 1.0
    assert "NaN" in data["folds"][0]["slices"]["MRED_COUNTRY"]  # the missing-country slice keeps its name
