"""`tripletlit fit` end to end on tiny data: artefacts, reproducibility, resume, bad input."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import yaml
from conftest import TINY_FIT

from tripletlit.cli import main
from tripletlit.evaluation.metrics import METRICS

TINY = [*TINY_FIT, "--folds", "2"]


def _fit(out, *extra):
    return main(["fit", *TINY, "--out", str(out), *extra])


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "tiny"
    assert _fit(out) == 0
    return out


def test_fit_writes_every_artefact(run_dir):
    for name in ("config.yaml", "run.json", "metrics.json"):
        assert (run_dir / name).is_file()
    for f in range(2):
        fold = run_dir / f"fold{f}"
        assert (fold / "checkpoints" / "last.ckpt").is_file()
        assert (fold / "metrics.json").is_file()
        logs = pd.read_csv(fold / "logs" / "metrics.csv")
        for column in ("train/loss_epoch", "train/loss_user_song", "train/loss_user_user", "train/loss_song_song",
                       "sampling/fallback_uniform"):  # fmt: skip
            assert column in logs.columns and logs[column].notna().any()
        predictions = pd.read_parquet(fold / "predictions.parquet")
        assert predictions.shape[1] == 51 and predictions["user_id"].is_unique
    meta = json.loads((run_dir / "run.json").read_text())
    assert meta["seed"] == 0 and "git_revision" in meta and meta["versions"]["torch"]
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert config["model"]["embedding_dim"] == 16 and config["predict"]["k"] == 50
    assert config["loss"]["lambda_user"] == 2.5 and config["weights"]["song"] == 1e5  # paper defaults kept


def test_metrics_json_matches_fold_files(run_dir):
    content = json.loads((run_dir / "metrics.json").read_text())
    assert len(content["folds"]) == 2
    for f, result in enumerate(content["folds"]):
        fold_file = json.loads((run_dir / f"fold{f}" / "metrics.json").read_text())
        assert result["metrics"] == fold_file["metrics"]
    for m in METRICS:
        mean = sum(r["metrics"][m] for r in content["folds"]) / 2
        assert content["summary"]["metrics"][m] == pytest.approx(mean)
    assert content["summary"]["stand_in"] is True
    assert 0 < content["summary"]["metrics"]["HIT_RATE"] <= 1


def test_config_yaml_reproduces_the_run(run_dir, tmp_path):
    again = tmp_path / "again"
    assert main(["fit", "--config", str(run_dir / "config.yaml"), "--out", str(again), "--no-progress"]) == 0
    first = json.loads((run_dir / "metrics.json").read_text())["summary"]["metrics"]
    second = json.loads((again / "metrics.json").read_text())["summary"]["metrics"]
    assert first == second


def test_resume_continues_training_to_the_same_result(run_dir, tmp_path):
    """Train 1 epoch, then resume with --ckpt last to 2 epochs: same metrics as 2 epochs straight."""
    partial = tmp_path / "partial"
    assert _fit(partial, "--train.epochs", "1") == 0
    config = yaml.safe_load((partial / "config.yaml").read_text())
    config["train"]["epochs"] = 2
    (partial / "config.yaml").write_text(yaml.safe_dump(config))
    for f in range(2):  # as if the run had stopped after the first epoch of each fold
        (partial / f"fold{f}" / "metrics.json").unlink()
    (partial / "fold1" / "predictions.parquet").unlink()
    assert main(["fit", "--ckpt", "last", "--run", str(partial), "--no-progress"]) == 0
    resumed = json.loads((partial / "metrics.json").read_text())["summary"]["metrics"]
    straight = json.loads((run_dir / "metrics.json").read_text())["summary"]["metrics"]
    assert resumed == pytest.approx(straight, rel=1e-6, nan_ok=True)


def test_resume_skips_complete_folds(run_dir, tmp_path, monkeypatch):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(run_dir, copy)
    from tripletlit import experiment

    monkeypatch.setattr(experiment, "fit_fold", lambda *a, **k: (_ for _ in ()).throw(AssertionError("refit")))
    assert main(["fit", "--ckpt", "last", "--run", str(copy), "--no-progress"]) == 0


@pytest.mark.parametrize(
    "args,message",
    [
        (["--model.embedding_dim", "-3"], "model.embedding_dim: must be positive"),
        (["--loss.margin_user_song", "-0.1"], "must not be negative"),
        (["--model.init", "glove"], "model.init: 'glove' is not one of word2vec, uniform"),
        (["--train.lr", "fast"], "train.lr: expected float, got 'fast'"),
        (["--predict.k", "100000"], "predict.k = 100000 exceeds the"),
        (["--ckpt", "/nonexistent.ckpt"], "checkpoint file not found"),
        (["--ckpt", "last"], "--ckpt last resumes a run: give its folder with --run DIR"),
    ],
)
def test_bad_parameters_are_one_line_errors(tmp_path, capsys, args, message):
    out = tmp_path / "bad"
    assert _fit(out, *args) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_unknown_config_key_in_yaml(tmp_path, capsys):
    path = tmp_path / "c.yaml"
    path.write_text("model:\n  embeding_dim: 64\n")
    assert main(["fit", "--config", str(path), "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert "unknown config key 'model.embeding_dim'" in err


def test_recommend_command(run_dir, capsys):
    user = int(pd.read_parquet(run_dir / "fold0" / "predictions.parquet")["user_id"].iloc[0])
    assert main(["recommend", "--run", str(run_dir), "--user", str(user), "-k", "3"]) == 0
    out = capsys.readouterr().out
    assert f"top 3 for user {user}" in out and "Track " in out and "Artist " in out
    assert main(["recommend", "--run", str(run_dir), "--user", "-5"]) == 2
    assert "is not among the" in capsys.readouterr().err
