"""Tuning: search spaces and sweeps, the objective, a small study, pruning, best export, resume."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import yaml
from optuna.trial import FixedTrial, TrialState

from tripletlit import config as cfg
from tripletlit.cli import main
from tripletlit.errors import TripletlitError
from tripletlit.experiment import load_data, run
from tripletlit.tune import (
    base_config,
    load_sweep,
    open_study,
    parse_space,
    parse_sweep,
    run_trial,
    suggest,
    trial_config,
    worker,
)

REPO = Path(__file__).resolve().parents[1]
SMALL_SPACE = str(REPO / "search_spaces" / "small.yaml")
TINY_BASE = {"data.preset": "tiny", "folds.min_count": 3, "folds.user_fraction": 0.5, "predict.k": 50,
             "model.embedding_dim": 16, "train.val_users": 50, "eval.gate": None}  # fmt: skip


def _sweep_raw(**over):
    raw = {"study": "t", "objectives": [{"metric": "SCORE", "direction": "maximize"}],
           "sampler": {"type": "random", "seed": 0}, "pruner": {"type": "none"}, "n_trials": 3,
           "search_space": SMALL_SPACE, "base": dict(TINY_BASE), "folds": [0],
           "heartbeat": {"interval": 1, "grace": 2}}  # fmt: skip
    raw.update(over)
    return raw


def _write_sweep(tmp_path, **over) -> Path:
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(_sweep_raw(**over)))
    return path


# ------------------------------------------------------------------------- validation ---
@pytest.mark.parametrize(
    "space,message",
    [
        ({"model.embeding_dim": {"type": "int", "low": 8, "high": 64}}, "unknown key 'model.embeding_dim'"),
        ({"loss.lambda_user": {"type": "float", "low": 5, "high": 1}}, "low 5 > high 1"),
        ({"loss.lambda_user": {"type": "gaussian", "low": 0, "high": 1}}, "needs type: one of float, int, categorical"),
        ({"train.lr": {"type": "float", "low": 0, "high": 1, "log": True}}, "log-scale, so low must be > 0"),
        ({"model.init": {"type": "categorical", "choices": ["word2vec", "glove"]}}, "'glove' is not one of"),
        ({"model.embedding_dim": {"type": "float", "low": 8, "high": 64}}, "integer key; use type: int"),
        ({}, "non-empty mapping"),
    ],
)
def test_search_space_errors(space, message):
    with pytest.raises(TripletlitError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_space(space, "space.yaml")


@pytest.mark.parametrize(
    "over,message",
    [
        ({"sampler": {"type": "annealing"}}, "unknown sampler"),
        ({"pruner": {"type": "median"}, "objectives": [{"metric": "HIT_RATE"}, {"metric": "MEAN_MRED"}]},
         "cannot prune multi-objective"),
        ({"objectives": [{"metric": "ACCURACY"}]}, "unknown objective metric 'ACCURACY'"),
        ({"colour": "blue"}, "unknown key 'colour'"),
        ({"base": {"model.embedding_dim": -1}}, "base: model.embedding_dim: must be positive"),
        ({"enqueue": [{"model.embedding_dim": 64}]}, "not in the search space"),
        ({"base": {"train.devices": "2", "train.strategy": "ddp"}}, "use `tripletlit tune --workers N`"),
    ],
)
def test_sweep_errors(tmp_path, over, message):
    with pytest.raises(TripletlitError, match=message):
        parse_sweep(_sweep_raw(**over), "sweep.yaml", tmp_path)


def test_shipped_sweeps_load():
    default = load_sweep(REPO / "sweeps" / "default.yaml")
    assert default.objectives == [("SCORE", "maximize")] and default.pruner["type"] == "median"
    assert {"model.embedding_dim", "loss.lambda_user", "loss.lambda_song", "loss.margin_user_song",
            "loss.margin_user_user", "loss.margin_song_song", "weights.gender", "weights.country",
            "weights.artist", "weights.song", "weights.activity", "train.lr"} <= set(default.space)  # fmt: skip
    assert default.space["weights.song"].log and default.enqueue[0]["weights.song"] == 1e5
    assert default.enqueue[1]["weights.song"] == 5e5 and default.enqueue[1]["model.embedding_dim"] == 256
    pareto = load_sweep(REPO / "sweeps" / "pareto.yaml")
    assert pareto.multi_objective and pareto.pruner["type"] == "none"


# -------------------------------------------------------------------------- objective ---
def test_objective_with_fixed_trial_equals_fit(tmp_path):
    sweep = parse_sweep(_sweep_raw(), "sweep", tmp_path)
    params = {"loss.lambda_user": 1.5, "loss.lambda_song": 4.0, "train.lr": 0.003}
    assert suggest(FixedTrial(params), sweep.space) == params
    config = trial_config(base_config(sweep), params)
    assert config.loss.lambda_user == 1.5 and config.train.lr == 0.003 and config.model.embedding_dim == 16
    dataset = load_data(config)
    value = run_trial(FixedTrial(params), sweep, base_config(sweep), dataset, tmp_path / "study")
    # the same plain config through `fit`'s own code path on the same fold
    direct = run(config, tmp_path / "direct", progress_bar=False, fold_indices=[0])
    assert value == [pytest.approx(direct["summary"]["score"]["score"])]


# ---------------------------------------------------------------------------- studies ---
def test_small_study_cli_best_export_and_refit(tmp_path, capsys):
    path = _write_sweep(tmp_path, enqueue=[{"loss.lambda_user": 2.5, "loss.lambda_song": 2.5, "train.lr": 0.001}])
    studies = tmp_path / "studies"
    assert main(["tune", "--sweep", str(path), "--trials", "3", "--studies", str(studies)]) == 0
    out = capsys.readouterr().out
    assert "top trials" in out and "fit --ckpt best --study t" in out
    study = optuna.load_study(study_name="t", storage=f"sqlite:///{studies / 't' / 'study.db'}")
    assert len([t for t in study.trials if t.state == TrialState.COMPLETE]) == 3
    assert study.trials[0].params == {"loss.lambda_user": 2.5, "loss.lambda_song": 2.5, "train.lr": 0.001}
    best = json.loads((studies / "t" / "best.json").read_text())
    assert best["number"] == study.best_trial.number and best["values"] == [study.best_value]
    config = cfg.load(studies / "t" / "best_config.yaml")
    for key, value in study.best_params.items():
        assert cfg.get(config, key) == pytest.approx(value)
    # resume with the same command: nothing is redone
    assert main(["tune", "--sweep", str(path), "--trials", "3", "--studies", str(studies)]) == 0
    assert len(optuna.load_study(study_name="t", storage=f"sqlite:///{studies / 't' / 'study.db'}").trials) == 3
    # fit --ckpt best refits the best config on the full protocol (2 folds here)
    refit = tmp_path / "refit"
    assert main(["fit", "--ckpt", "best", "--study", "t", "--studies", str(studies), "--folds", "2",
                 "--out", str(refit), "--no-progress"]) == 0  # fmt: skip
    saved = cfg.load(refit / "config.yaml")
    assert saved.folds.n == 2 and saved.loss.lambda_user == pytest.approx(study.best_params["loss.lambda_user"])
    assert len(json.loads((refit / "metrics.json").read_text())["folds"]) == 2


def test_missing_study_for_ckpt_best(tmp_path, capsys):
    assert main(["fit", "--ckpt", "best", "--study", "nope", "--studies", str(tmp_path)]) == 2
    assert "run `tripletlit tune --study nope` first" in capsys.readouterr().err


def test_pruning_prunes_a_hopeless_trial(tmp_path):
    raw = _sweep_raw(
        objectives=[{"metric": "HIT_RATE", "direction": "maximize"}], prune_on="val/HIT_RATE", n_trials=2,
        pruner={"type": "median", "n_startup_trials": 1, "n_warmup_steps": 0},
        base={**TINY_BASE, "model.init": "uniform", "train.epochs": 3, "train.val_users": 100},
        enqueue=[{"loss.lambda_user": 2.5, "loss.lambda_song": 2.5, "train.lr": 0.01},
                 {"loss.lambda_user": 2.5, "loss.lambda_song": 2.5, "train.lr": 0.0001}],
    )  # fmt: skip
    sweep = parse_sweep(raw, "sweep", tmp_path)
    url = f"sqlite:///{tmp_path / 'p.db'}"
    worker(sweep, url, 2, tmp_path / "study")
    trials = open_study(sweep, url).trials
    assert trials[0].state == TrialState.COMPLETE
    assert trials[1].state == TrialState.PRUNED  # learning rate 1e-4 from a random start: no hits yet
    assert trials[1].intermediate_values[0] < trials[0].intermediate_values[0]


def test_failing_trials_fail_alone_then_stop_the_worker(tmp_path):
    raw = _sweep_raw(n_trials=2, base={**TINY_BASE, "predict.k": 100_000})
    sweep = parse_sweep(raw, "sweep", tmp_path)
    url = f"sqlite:///{tmp_path / 'f.db'}"
    with pytest.raises(TripletlitError, match="3 trials failed in a row, the last because: predict.k = 100000 exceeds"):
        worker(sweep, url, 2, tmp_path / "study", max_consecutive_failures=3)
    failed = [t for t in open_study(sweep, url).trials if t.state == TrialState.FAIL]
    assert len(failed) == 3
    assert all("predict.k = 100000 exceeds" in t.user_attrs["fail_reason"] for t in failed)


def _finished(db: Path, name: str) -> int:
    """Finished trials, read with plain sqlite: Optuna's load_study would try to create the
    schema itself while the tune process is still creating it (a UNIQUE constraint race)."""
    import sqlite3

    try:
        with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)) as con:
            row = con.execute(
                "SELECT count(*) FROM trials JOIN studies USING (study_id) "
                "WHERE studies.study_name = ? AND trials.state IN ('COMPLETE', 'PRUNED')", (name,)
            ).fetchone()
    except sqlite3.Error:  # no database or no tables yet, or a write lock held too long
        return 0
    return int(row[0])


def test_kill_9_during_tune_then_resume_gives_exact_count(tmp_path):
    path = _write_sweep(tmp_path, n_trials=8)  # tiny trials take about a second: kill early enough
    studies = tmp_path / "studies"
    command = [sys.executable, "-m", "tripletlit.cli", "tune", "--sweep", str(path), "--studies", str(studies)]
    env = {**os.environ, "WANDB_MODE": "disabled"}
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    db = studies / "t" / "study.db"
    deadline = time.time() + 120
    while time.time() < deadline and (not db.exists() or _finished(db, "t") < 1):
        time.sleep(0.3)
    process.send_signal(signal.SIGKILL)  # now in the middle of a later trial
    process.wait()
    before = _finished(db, "t")
    assert 1 <= before < 8
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert _finished(db, "t") == 8  # exactly the requested number, none lost
    study = optuna.load_study(study_name="t", storage=f"sqlite:///{db}")
    assert not [t for t in study.trials if t.state == TrialState.RUNNING]


def test_workers_get_one_device_each_or_none_without_cuda(monkeypatch):
    import torch

    from tripletlit.tune import worker_devices

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert worker_devices(3) == [None, None, None]
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert worker_devices(3) == ["0", "1", "0"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "4,6")
    assert worker_devices(4) == ["4", "6", "4", "6"]
