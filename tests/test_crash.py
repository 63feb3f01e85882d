"""Crashes: `kill -9` during `fit`, then `fit --ckpt last --run DIR`; and NaN losses.

- A `fit` (tiny, 2 folds, 3 epochs) runs in a real process that is SIGKILLed at a few points;
  the killed run must hold no torn file (every metrics.json parses, every predictions.parquet
  reads), and resuming it must give the metrics of an uninterrupted run with the same seed,
  fold by fold.
- `last.ckpt` must be written at the end of every epoch, so that a fold killed in the middle
  of its training continues from its last finished epoch (the README's promise).
- A NaN loss fails `fit` with one line naming the loss (exit 2), and fails only its own trial
  in `tune` (recorded with its ``fail_reason``).
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pandas as pd
import pytest
import torch
import yaml
from conftest import TINY_FIT
from lightning.pytorch.callbacks import Callback
from optuna.trial import TrialState

from tripletlit import config as cfg
from tripletlit.cli import main
from tripletlit.evaluation.metrics import METRICS
from tripletlit.experiment import run

FIT = [sys.executable, "-m", "tripletlit.cli", "fit", *TINY_FIT, "--folds", "2", "--train.epochs", "3",
       "--train.batch_size", "128"]  # fmt: skip
ENV = {**os.environ, "WANDB_MODE": "disabled", "COLUMNS": "300"}


def _fit(*extra: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([*FIT, *extra], capture_output=True, text=True, env=ENV, timeout=timeout)


@pytest.fixture(scope="module")
def straight(tmp_path_factory) -> dict:
    """metrics.json of an uninterrupted run (same command, same seed)."""
    out = tmp_path_factory.mktemp("straight") / "run"
    result = _fit("--out", str(out))
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads((out / "metrics.json").read_text())


# When to pull the plug: a predicate on the run folder, polled every few milliseconds.
KILL_POINTS = {
    # fold 0 is complete, fold 1 has not started (or barely): resume keeps fold 0 as it is
    "after-fold0-finished": lambda run: (run / "fold0" / "metrics.json").exists(),
    # fold 1's trainer has started (its log folder exists) but no fold-1 checkpoint yet
    "fold1-training-before-checkpoint": lambda run: (run / "fold1" / "logs").exists()
    and not (run / "fold1" / "checkpoints" / "last.ckpt").exists(),
    # fold 1 has a last.ckpt but no metrics.json: with a checkpoint per epoch (see
    # test_last_ckpt_is_written_every_epoch) this is inside its training, today it is after it
    "fold1-after-its-last-ckpt": lambda run: (run / "fold1" / "checkpoints" / "last.ckpt").exists(),
}
MISSED = {  # the kill came too late for the scenario: the run went past the point
    "after-fold0-finished": lambda run: (run / "fold1" / "metrics.json").exists(),
    "fold1-training-before-checkpoint": lambda run: (run / "fold1" / "checkpoints" / "last.ckpt").exists(),
    "fold1-after-its-last-ckpt": lambda run: (run / "fold1" / "metrics.json").exists(),
}


def _kill_at(out: Path, point: str, timeout: float = 180) -> bool:
    """Start the fit, SIGKILL it as soon as KILL_POINTS[point] holds; True if it was hit in time."""
    process = subprocess.Popen([*FIT, "--out", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV)
    deadline = time.monotonic() + timeout
    try:
        while process.poll() is None and time.monotonic() < deadline:
            if KILL_POINTS[point](out):
                os.kill(process.pid, signal.SIGKILL)
                break
            time.sleep(0.003)
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()
    return process.returncode == -signal.SIGKILL and not MISSED[point](out)


def _assert_no_torn_files(out: Path) -> None:
    for path in out.rglob("metrics.json"):
        json.loads(path.read_text())  # complete JSON or absent, never half a file
    for path in out.rglob("predictions.parquet"):
        frame = pd.read_parquet(path)
        assert frame.shape[1] == 51 and frame["user_id"].is_unique
    if (out / "config.yaml").exists():
        cfg.load(out / "config.yaml")
    if (out / "run.json").exists():
        json.loads((out / "run.json").read_text())


def _assert_same_metrics(resumed: dict, straight: dict) -> None:
    assert len(resumed["folds"]) == len(straight["folds"]) == 2
    for got, want in zip(resumed["folds"], straight["folds"]):
        assert got["fold"] == want["fold"]
        assert got["metrics"] == pytest.approx(want["metrics"], rel=1e-6, nan_ok=True), f"fold {got['fold']}"
        assert got["score"]["score"] == pytest.approx(want["score"]["score"], rel=1e-6, nan_ok=True)
        assert got["variance_agreement"] == pytest.approx(want["variance_agreement"], rel=1e-6, nan_ok=True)
    assert resumed["summary"]["metrics"] == pytest.approx(straight["summary"]["metrics"], rel=1e-6, nan_ok=True)
    assert set(resumed["summary"]["metrics"]) == set(METRICS)


@pytest.mark.parametrize("point", list(KILL_POINTS))
def test_kill_9_then_resume_gives_the_uninterrupted_metrics(point, straight, tmp_path):
    for attempt in range(3):  # the kill windows are ~0.5-1 s wide; retry if the machine was too slow
        out = tmp_path / f"run{attempt}"
        if _kill_at(out, point):
            break
    else:
        pytest.fail(f"could not SIGKILL the fit at '{point}' in 3 attempts")
    assert not (out / "metrics.json").exists()  # the run is really incomplete
    _assert_no_torn_files(out)
    fold0_before = (out / "fold0" / "metrics.json").read_bytes() if (out / "fold0" / "metrics.json").exists() else None

    result = subprocess.run([*FIT[:4], "--ckpt", "last", "--run", str(out), "--no-progress"], capture_output=True,
                            text=True, env=ENV, timeout=300)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    _assert_no_torn_files(out)
    if fold0_before is not None:  # a complete fold is kept as it was, not refitted
        assert (out / "fold0" / "metrics.json").read_bytes() == fold0_before
    resumed = json.loads((out / "metrics.json").read_text())
    _assert_same_metrics(resumed, straight)
    for f in range(2):  # the per-fold files agree with the run's metrics.json
        fold = json.loads((out / f"fold{f}" / "metrics.json").read_text())
        assert fold["metrics"] == pytest.approx(resumed["folds"][f]["metrics"], rel=1e-12, nan_ok=True)
    assert json.loads((out / "run.json").read_text())["resumed"] is True


# ------------------------------------------------------------------ per-epoch checkpoint ---
class _CheckpointProbe(Callback):
    """At the start of epochs 1, 2, ...: the epoch stored in last.ckpt (None if there is none)."""

    def __init__(self, path: Path):
        self.path, self.seen = path, {}

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        if trainer.current_epoch > 0:
            exists = self.path.is_file()
            self.seen[trainer.current_epoch] = torch.load(self.path, weights_only=False)["epoch"] if exists else None


def _tiny_config(**over) -> cfg.Config:
    config = cfg.Config()
    values = {"data.preset": "tiny", "folds.n": 1, "folds.min_count": 3, "folds.user_fraction": 0.5, "predict.k": 50,
              "model.embedding_dim": 16, "train.epochs": 3, **over}  # fmt: skip
    for key, value in values.items():
        cfg.set_value(config, key, value)
    return config


def test_last_ckpt_is_written_every_epoch(tmp_path):
    out = tmp_path / "run"
    probe = _CheckpointProbe(out / "fold0" / "checkpoints" / "last.ckpt")
    run(_tiny_config(), out, progress_bar=False, callbacks_for_fold=lambda f: [probe])
    assert probe.seen == {1: 0, 2: 1}  # before epoch e starts, last.ckpt holds epoch e - 1


def test_resume_keeps_the_training_logs(tmp_path):
    out = tmp_path / "run"
    assert main(["fit", *FIT[4:], "--folds", "1", "--out", str(out)]) == 0
    logs = out / "fold0" / "logs" / "metrics.csv"
    before = pd.read_csv(logs)
    assert before["train/loss_epoch"].notna().sum() == 3
    (out / "metrics.json").unlink()  # as if killed after the fold's last.ckpt, before its metrics
    (out / "fold0" / "metrics.json").unlink()
    assert main(["fit", "--ckpt", "last", "--run", str(out), "--no-progress"]) == 0
    assert logs.is_file(), "the resumed fold's training log was deleted"
    assert pd.read_csv(logs)["train/loss_epoch"].notna().sum() == 3


def test_resume_after_a_kill_that_emptied_the_training_log(tmp_path):
    """Lightning's CSV logger rewrites metrics.csv at each save: a kill during one leaves it
    empty. The resume still completes, with the metrics of the uninterrupted run."""
    out = tmp_path / "run"
    assert main(["fit", *FIT[4:], "--folds", "1", "--out", str(out)]) == 0
    want = json.loads((out / "metrics.json").read_text())
    (out / "metrics.json").unlink()
    (out / "fold0" / "metrics.json").unlink()
    logs = out / "fold0" / "logs" / "metrics.csv"
    logs.write_bytes(b"")
    assert main(["fit", "--ckpt", "last", "--run", str(out), "--no-progress"]) == 0
    got = json.loads((out / "metrics.json").read_text())
    assert got["folds"][0]["metrics"] == pytest.approx(want["folds"][0]["metrics"], rel=1e-6, nan_ok=True)
    assert not logs.with_name("metrics-before-resume.csv").exists()
    assert not logs.exists()  # nothing was left to keep, and the finished fold logged nothing new


# ----------------------------------------------------------------------------- NaN loss ---
GIANT = "1e39"  # weights.song: row weights near the float32 limit, the weighted loss overflows to NaN/inf


@pytest.mark.parametrize("coefficient,message", [
    (GIANT, "error: the training loss became "),
    ("1e300", "error: row weights overflow float32"),  # caught before training starts
])  # fmt: skip
def test_nan_loss_fails_fit_with_one_line(coefficient, message, tmp_path):
    out = tmp_path / "nan"
    result = subprocess.run([*FIT[:4], "--preset", "tiny", "--folds", "1", "--folds.min_count", "3",
                             "--folds.user_fraction", "0.5", "--predict.k", "50", "--model.embedding_dim", "16",
                             "--weights.song", coefficient, "--no-progress", "--out", str(out)],
                            capture_output=True, text=True, env=ENV, timeout=300)  # fmt: skip
    assert result.returncode == 2, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr[-3000:]
    assert lines[0].startswith(message) and "weight" in lines[0]
    assert not list(out.rglob("metrics.json")) and not list(out.rglob("predictions.parquet"))


def test_nan_loss_fails_only_its_trial_in_tune(tmp_path, capsys):
    (tmp_path / "space.yaml").write_text(yaml.safe_dump({"weights.song": {"type": "categorical",
                                                                          "choices": [1e5, float(GIANT)]}}))  # fmt: skip
    sweep = {"study": "nan", "objectives": [{"metric": "SCORE", "direction": "maximize"}],
             "sampler": {"type": "random", "seed": 0}, "pruner": {"type": "none"}, "n_trials": 1,
             "search_space": "space.yaml", "folds": [0], "heartbeat": {"interval": 1, "grace": 2},
             "base": {"data.preset": "tiny", "folds.min_count": 3, "folds.user_fraction": 0.5, "predict.k": 50,
                      "model.embedding_dim": 16, "train.epochs": 1, "eval.gate": None},
             "enqueue": [{"weights.song": float(GIANT)}, {"weights.song": 1e5}]}  # fmt: skip
    (tmp_path / "sweep.yaml").write_text(yaml.safe_dump(sweep))
    studies = tmp_path / "studies"
    assert main(["tune", "--sweep", str(tmp_path / "sweep.yaml"), "--studies", str(studies), "--no-wandb"]) == 0
    study = optuna.load_study(study_name="nan", storage=f"sqlite:///{studies / 'nan' / 'study.db'}")
    trials = sorted(study.trials, key=lambda t: t.number)
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.COMPLETE]
    assert trials[0].params == {"weights.song": float(GIANT)}
    assert "the training loss became" in trials[0].user_attrs["fail_reason"]
    assert "\n" not in trials[0].user_attrs["fail_reason"]
    assert trials[1].params == {"weights.song": 1e5} and math.isfinite(trials[1].values[0])
    assert json.loads((studies / "nan" / "best.json").read_text())["number"] == trials[1].number
