"""`tripletlit fit --devices 2 --strategy ddp` on CPU (gloo): the same run as one process.

Each rank draws the triplets of the whole global batch with the same seed and trains on its
part; losses are weighted by each part's share, so DDP's gradient average is the global
batch mean. Two processes with batch 256 therefore take the steps of one process with batch
512: the stated tolerance is float rounding (the all-reduce sums in another order), 1e-5 on
the tables; the metrics must agree to 1e-6.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
from conftest import TINY_FIT

from tripletlit.evaluation.metrics import METRICS

BASE = [sys.executable, "-m", "tripletlit.cli", "fit", *TINY_FIT, "--folds", "2", "--no-wandb", "--train.optimizer",
        "adam", "--accelerator", "cpu"]  # fmt: skip


def _fit(cwd, *extra) -> subprocess.CompletedProcess:
    env = {**os.environ, "WANDB_MODE": "disabled"}
    for var in ("RANK", "LOCAL_RANK", "NODE_RANK", "WORLD_SIZE", "SLURM_PROCID"):
        env.pop(var, None)
    return subprocess.run([*BASE, *extra], capture_output=True, text=True, env=env, cwd=cwd, timeout=600)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("ddp")
    single = _fit(root, "--train.batch_size", "512", "--out", str(root / "one"))
    assert single.returncode == 0, single.stderr[-2000:]
    ddp = _fit(root, "--devices", "2", "--strategy", "ddp", "--train.batch_size", "256", "--out", str(root / "two"))
    assert ddp.returncode == 0, ddp.stderr[-2000:]
    return root, single, ddp


def test_two_ddp_processes_give_the_single_process_run(runs):
    root, _, _ = runs
    one = json.loads((root / "one" / "metrics.json").read_text())
    two = json.loads((root / "two" / "metrics.json").read_text())
    for a, b in zip(one["folds"], two["folds"], strict=True):
        for name in METRICS:
            assert b["metrics"][name] == pytest.approx(a["metrics"][name], abs=1e-6), name
        assert b["score"]["score"] == pytest.approx(a["score"]["score"], abs=1e-6)
    for f in range(2):
        x = torch.load(root / "one" / f"fold{f}" / "checkpoints" / "last.ckpt", weights_only=False)
        y = torch.load(root / "two" / f"fold{f}" / "checkpoints" / "last.ckpt", weights_only=False)
        assert x["global_step"] == y["global_step"] > 0
        for key in ("model.users.weight", "model.tracks.weight"):
            torch.testing.assert_close(y["state_dict"][key], x["state_dict"][key], rtol=0, atol=1e-5)
    assert json.loads((root / "two" / "run.json").read_text())["devices"] == "2"


def test_only_rank_zero_prints_and_writes(runs):
    root, single, ddp = runs
    # one results table, one run folder; the follower wrote nothing of its own
    assert ddp.stdout.count("HIT_RATE") == single.stdout.count("HIT_RATE") > 0
    assert sorted(p.name for p in root.iterdir()) == ["one", "two"]
    assert sorted(p.name for p in (root / "two").iterdir()) == sorted(p.name for p in (root / "one").iterdir())


def test_fused_optimizer_refuses_several_devices(tmp_path):
    result = _fit(tmp_path, "--devices", "2", "--strategy", "ddp", "--train.optimizer", "fused", "--out", str(tmp_path / "x"))
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "train.optimizer=fused runs on one CPU process only" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "x").exists()
