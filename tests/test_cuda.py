"""The CUDA paths (skipped without a GPU; `benchmarks/gpu.sh` runs them on a CUDA machine).

GPU results are compared with the CPU's on the same inputs: ranking and neighbour search must
agree exactly where no two scores tie to float precision; a `fit` on the GPU must run the
dense-Adam path end to end and land near the CPU run's hit rate.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import TINY_FIT

from tripletlit.ranking import seen_matrix, top_k
from tripletlit.sampling import Interactions, neighbour_pools

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]

FIT = [sys.executable, "-m", "tripletlit.cli", "fit", *TINY_FIT, "--folds", "2", "--no-wandb"]


def _fit(tmp_path, name, *extra):
    env = {**os.environ, "WANDB_MODE": "disabled"}
    result = subprocess.run([*FIT, "--out", str(tmp_path / name), *extra], capture_output=True, text=True, env=env,
                            timeout=600)  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads((tmp_path / name / "metrics.json").read_text())


def test_top_k_on_gpu_equals_cpu():
    rng = np.random.default_rng(0)
    users = torch.nn.functional.normalize(torch.from_numpy(rng.standard_normal((300, 32)).astype(np.float32)), dim=1)
    items = torch.nn.functional.normalize(torch.from_numpy(rng.standard_normal((5000, 32)).astype(np.float32)), dim=1)
    seen = seen_matrix(rng.integers(0, 300, 4000), rng.integers(0, 5000, 4000), 300, 5000)
    cpu_idx, cpu_score = top_k(users, items, 100, seen=seen, batch_size=128)
    gpu_idx, gpu_score = top_k(users.cuda(), items.cuda(), 100, seen=seen, batch_size=128)
    np.testing.assert_allclose(gpu_score, cpu_score, rtol=0, atol=1e-5)
    # identical lists wherever neighbouring scores are not within float rounding of each other
    clear = np.all(np.abs(np.diff(cpu_score, axis=1)) > 1e-5, axis=1)
    assert clear.mean() > 0.5
    np.testing.assert_array_equal(gpu_idx[clear], cpu_idx[clear])


def test_neighbour_pools_on_gpu_equal_cpu():
    rng = np.random.default_rng(1)
    index = Interactions.from_rows(rng.integers(0, 400, 6000), rng.integers(0, 900, 6000))
    table = torch.from_numpy(rng.standard_normal((index.n_users, 24)).astype(np.float32))
    cpu = neighbour_pools(index, table, 5, "closest", 10, 64)
    gpu = neighbour_pools(index, table.cuda(), 5, "closest", 10, 64)
    np.testing.assert_array_equal(gpu.indptr, cpu.indptr)
    np.testing.assert_array_equal(gpu.tracks, cpu.tracks)


def test_fit_on_gpu_runs_dense_adam_and_matches_the_cpu_hit_rate(tmp_path):
    gpu = _fit(tmp_path, "gpu", "--accelerator", "gpu")
    cpu = _fit(tmp_path, "cpu", "--accelerator", "cpu", "--train.optimizer", "adam")
    run = json.loads((tmp_path / "gpu" / "run.json").read_text())
    assert run["accelerator"] == "gpu" and run["optimizer"] == "adam"
    for a, b in zip(gpu["folds"], cpu["folds"], strict=True):
        assert np.isfinite(a["metrics"]["HIT_RATE"])
        # the same algorithm in another float order: hit rates within a few test users
        assert abs(a["metrics"]["HIT_RATE"] - b["metrics"]["HIT_RATE"]) < 0.05


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two GPUs")
def test_ddp_on_two_gpus_matches_one_gpu(tmp_path):
    one = _fit(tmp_path, "one", "--accelerator", "gpu", "--train.batch_size", "512")
    two = _fit(tmp_path, "two", "--accelerator", "gpu", "--devices", "2", "--strategy", "ddp",
               "--train.batch_size", "256")  # fmt: skip
    for a, b in zip(one["folds"], two["folds"], strict=True):
        assert abs(a["metrics"]["HIT_RATE"] - b["metrics"]["HIT_RATE"]) < 0.02
