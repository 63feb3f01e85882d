"""`tripletlit evaluate` and `tripletlit baselines` end to end on tiny data."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from tripletlit.cli import main
from tripletlit.data.folds import load_fold
from tripletlit.evaluation.baselines import PopularityRecommender
from tripletlit.evaluation.metrics import METRICS

SMALL_PROTOCOL = ["--min-count", "3", "--user-fraction", "0.5"]


@pytest.fixture
def split(tmp_path):
    data, folds = tmp_path / "tiny", tmp_path / "folds"
    assert main(["data", "generate", "--preset", "tiny", "--out", str(data)]) == 0
    assert main(["data", "split", str(data), "--out", str(folds), "--folds", "2", *SMALL_PROTOCOL]) == 0
    return data, folds


def _popularity_file(folds, path, fold_index=1):
    fold = load_fold(folds, fold_index)
    users = fold.test["user_id"].to_numpy()
    matrix = PopularityRecommender().fit(fold.train).recommend(users, 100)
    frame = pd.DataFrame(matrix, columns=[str(i) for i in range(100)])
    frame.insert(0, "user_id", users)
    frame.to_parquet(path)
    return fold, matrix


def test_evaluate_prints_and_writes_metrics(split, tmp_path, capsys):
    data, folds = split
    fold, matrix = _popularity_file(folds, tmp_path / "pred.parquet")
    code = main(["evaluate", "--predictions", str(tmp_path / "pred.parquet"), "--data", str(data),
                 "--folds", str(folds), "--fold", "1", "--out", str(tmp_path / "eval")])  # fmt: skip
    assert code == 0
    out = capsys.readouterr().out
    assert "SCORE" in out and "miss rate per slice" in out and "stand-in" in out
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert set(metrics["metrics"]) == set(METRICS)
    hits = (matrix == fold.test["track_id"].to_numpy()[:, None]).any(axis=1).mean()
    assert metrics["metrics"]["HIT_RATE"] == pytest.approx(hits)
    assert metrics["stand_in"] is True and metrics["profile"]["name"] == "evalrs2022"
    assert metrics["score"]["gated"] == (hits < 0.015)
    # the stand-in song2vec is cached per fold beside the fold files
    assert list((folds / "fold1").glob("song2vec-standin-*.npz"))


def test_evaluate_with_gate_disabled_and_yaml_profile(split, tmp_path):
    data, folds = split
    _popularity_file(folds, tmp_path / "pred.parquet")
    profile = tmp_path / "p.yaml"
    metrics = {m: {"base": 0.0, "best": 1.0} for m in METRICS}
    profile.write_text(json.dumps({"name": "unit", "gate": None, "metrics": metrics}))  # JSON is YAML
    code = main(["evaluate", "--predictions", str(tmp_path / "pred.parquet"), "--data", str(data), "--folds",
                 str(folds), "--fold", "1", "--out", str(tmp_path / "e2"), "--profile", str(profile)])  # fmt: skip
    assert code == 0
    result = json.loads((tmp_path / "e2" / "metrics.json").read_text())
    assert result["profile"]["name"] == "unit" and result["score"]["gated"] is False
    assert result["score"]["normalised"]["HIT_RATE"] == pytest.approx(result["metrics"]["HIT_RATE"])


def test_evaluate_rejects_unknown_users_without_writing(split, tmp_path, capsys):
    data, folds = split
    _popularity_file(folds, tmp_path / "pred.parquet", fold_index=0)  # fold 0's users on fold 1
    code = main(["evaluate", "--predictions", str(tmp_path / "pred.parquet"), "--data", str(data),
                 "--folds", str(folds), "--fold", "1", "--out", str(tmp_path / "eval")])  # fmt: skip
    assert code == 2
    assert "is not a test user of this fold" in capsys.readouterr().err
    assert not (tmp_path / "eval").exists()


def test_baselines_command(tmp_path, capsys):
    out = tmp_path / "bl"
    code = main(["baselines", "--preset", "tiny", "--which", "random,popularity", "--folds", "2",
                 *SMALL_PROTOCOL, "--out", str(out)])  # fmt: skip
    assert code == 0
    table = capsys.readouterr().out
    assert "consistency (overall)" in table and "variance agreement" in table
    for name in ("random", "popularity"):
        result = json.loads((out / name / "metrics.json").read_text())
        assert len(result["folds"]) == 2 and result["recommender"] == name
        mean_hr = sum(f["metrics"]["HIT_RATE"] for f in result["folds"]) / 2
        assert result["summary"]["metrics"]["HIT_RATE"] == pytest.approx(mean_hr)
        assert result["summary"]["consistency"]["folds"] == 2
    popularity = json.loads((out / "popularity" / "metrics.json").read_text())["summary"]["metrics"]["HIT_RATE"]
    random = json.loads((out / "random" / "metrics.json").read_text())["summary"]["metrics"]["HIT_RATE"]
    assert popularity > random


def test_baselines_unknown_name(tmp_path, capsys):
    assert main(["baselines", "--preset", "tiny", "--which", "svd", "--out", str(tmp_path / "x")]) == 2
    assert "unknown baseline 'svd'" in capsys.readouterr().err
