"""Reproducibility across processes, the run folder's record, and property tests.

- The same seed gives identical folds, row weights, word2vec tables, negative pools,
  predictions and metrics in TWO separate processes; another seed gives different ones.
- Every run folder records the seed, the git revision, package versions and the resolved
  config, and `fit --config RUN/config.yaml` reproduces the run's metrics.
- Hypothesis properties that tests/test_metrics.py and tests/test_sampling.py do not cover yet:
  test_metrics.py::test_properties_and_user_permutation already checks MRED <= 0, HR in [0, 1],
  MRR <= HR and user-permutation invariance of ``compute_metrics`` on an (n, k) array, and
  test_sampling.py::test_property_pools_and_triplets checks pools against a brute-force oracle
  and triplet validity on random (tie-free) vectors. Here: the same invariants through the
  public ``evaluate`` on a predictions FRAME (the `tripletlit evaluate` path: alignment by
  user_id, test rows and frame rows both shuffled), slice details consistent with the MRED
  values, monotonicity of HR/MRR, fold-order invariance of ``summarise``; and sampler
  invariants (negatives unheard, positives heard, pools = one neighbour's set difference,
  fallback counts) on DEGENERATE vectors (zeros, duplicates, collinear: ties everywhere), where
  no oracle ordering exists.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import textwrap

import conftest
import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from tripletlit import config as cfg
from tripletlit.cli import main
from tripletlit.data.dataset import Dataset
from tripletlit.data.folds import Fold
from tripletlit.evaluation.metrics import METRICS, SLICE_METRICS
from tripletlit.evaluation.protocol import evaluate, summarise
from tripletlit.sampling import Interactions, draw_triplets, neighbour_pools

TINY_FIT = [*conftest.TINY_FIT, "--folds", "1"]

# Run in a fresh interpreter: prints one line "HASHES {json}" with a sha256 per artefact.
SCRIPT = textwrap.dedent(
    """
    import hashlib, json, sys
    from pathlib import Path

    import numpy as np
    import pandas as pd
    import torch

    from tripletlit.cli import main
    from tripletlit.data.folds import FoldConfig, make_fold
    from tripletlit.data.synthetic import generate
    from tripletlit.init import word2vec_init
    from tripletlit.sampling import Interactions, neighbour_pools
    from tripletlit.weights import WeightConfig, row_weights

    seed, out, tiny_fit = int(sys.argv[1]), sys.argv[2], json.loads(sys.argv[3])

    def digest(*arrays):
        h = hashlib.sha256()
        for a in arrays:
            a = np.ascontiguousarray(np.asarray(a))
            h.update(f"{a.dtype}{a.shape}".encode())
            h.update(a.tobytes())
        return h.hexdigest()

    dataset, _ = generate("tiny", seed=0)  # the data stay fixed: only the experiment seed varies
    fold = make_fold(dataset.events, FoldConfig(n_folds=1, user_fraction=0.5, min_count=3, seed=seed), 0)
    index = Interactions.from_rows(fold.train["user_id"].to_numpy(), fold.train["track_id"].to_numpy())
    weights = row_weights(fold.train, dataset.users, WeightConfig())
    users, tracks = word2vec_init(index, dataset.tracks, 16, "sentence", seed=seed + 42)
    pools = neighbour_pools(index, torch.from_numpy(users), 5, "closest", 50)
    assert main(["fit", *tiny_fit, "--seed", str(seed), "--out", out]) == 0
    metrics = json.loads((Path(out) / "metrics.json").read_text())
    scored = [{k: f[k] for k in ("metrics", "score", "variance_agreement", "slices")} for f in metrics["folds"]]
    predictions = pd.read_parquet(Path(out) / "fold0" / "predictions.parquet").to_numpy()
    print("HASHES " + json.dumps({
        "fold": digest(*(fold.train[c] for c in fold.train.columns), fold.test["user_id"], fold.test["track_id"]),
        "weights": digest(weights),
        "word2vec": digest(users, tracks),
        "pools": digest(pools.indptr, pools.tracks, pools.neighbour, pools.neighbour_rank),
        "predictions": digest(predictions),
        "metrics": hashlib.sha256(json.dumps(scored, sort_keys=True).encode()).hexdigest(),
    }))
    """
)


@pytest.fixture(scope="module")
def processes(tmp_path_factory):
    """Three fresh processes, run side by side: seed 0 twice, seed 1 once."""
    root = tmp_path_factory.mktemp("repro")
    script = root / "hashes.py"
    script.write_text(SCRIPT)
    env = {**os.environ, "WANDB_MODE": "disabled", "COLUMNS": "300"}
    runs = {"a": (0, root / "a"), "b": (0, root / "b"), "other": (1, root / "other")}
    started = {
        name: subprocess.Popen([sys.executable, str(script), str(seed), str(out), json.dumps(TINY_FIT)], cwd=root,
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for name, (seed, out) in runs.items()
    }  # fmt: skip
    results = {}
    for name, process in started.items():
        stdout, stderr = process.communicate(timeout=600)
        assert process.returncode == 0, stderr[-3000:]
        line = [x for x in stdout.splitlines() if x.startswith("HASHES ")][-1]
        results[name] = {"hashes": json.loads(line[len("HASHES "):]), "run": runs[name][1], "seed": runs[name][0]}
    return results


KINDS = ("fold", "weights", "word2vec", "pools", "predictions", "metrics")


def test_same_seed_same_everything_across_processes(processes):
    a, b = processes["a"]["hashes"], processes["b"]["hashes"]
    assert set(a) == set(KINDS)
    for kind in KINDS:
        assert a[kind] == b[kind], f"{kind} differs between two processes with the same seed"
    ma = json.loads((processes["a"]["run"] / "metrics.json").read_text())
    mb = json.loads((processes["b"]["run"] / "metrics.json").read_text())
    assert ma["summary"]["metrics"] == mb["summary"]["metrics"]
    assert ma["summary"]["score"] == mb["summary"]["score"]


def test_other_seed_changes_everything(processes):
    a, other = processes["a"]["hashes"], processes["other"]["hashes"]
    for kind in KINDS:
        assert a[kind] != other[kind], f"{kind} did not change with the seed"


@pytest.mark.parametrize("name", ["a", "other"])
def test_run_folder_records_seed_revision_versions_and_config(processes, name):
    run, seed = processes[name]["run"], processes[name]["seed"]
    meta = json.loads((run / "run.json").read_text())
    assert meta["seed"] == seed
    assert isinstance(meta["git_revision"], str) and meta["git_revision"]
    for package in ("tripletlit", "python", "torch", "lightning", "numpy", "pandas", "gensim"):
        assert meta["versions"].get(package), package
    config = cfg.load(run / "config.yaml")  # the resolved config: every key, and it loads back
    assert config.seed == seed and config.data.preset == "tiny" and config.folds.n == 1
    assert config.model.embedding_dim == 16 and config.predict.k == 50 and config.folds.min_count == 3
    assert config.loss.lambda_user == 2.5 and config.weights.song == 1e5  # defaults written out too
    assert set(cfg.flatten(cfg.to_dict(config))) == set(cfg.KEYS)
    metrics = json.loads((run / "metrics.json").read_text())
    assert cfg.flatten(metrics["config"]) == cfg.flatten(cfg.to_dict(config))


def test_run_json_records_the_fit_command(processes):
    command = json.loads((processes["a"]["run"] / "run.json").read_text())["command"]
    assert command[:2] == ["tripletlit", "fit"] and "--seed" in command and "--model.embedding_dim" in command


def test_fit_config_yaml_reproduces_the_metrics(processes, tmp_path):
    """Refit from RUN/config.yaml in this (third) process: the same numbers as the recorded run."""
    run = processes["other"]["run"]
    again = tmp_path / "again"
    assert main(["fit", "--config", str(run / "config.yaml"), "--out", str(again), "--no-progress"]) == 0
    first = json.loads((run / "metrics.json").read_text())
    second = json.loads((again / "metrics.json").read_text())
    assert [f["metrics"] for f in second["folds"]] == [f["metrics"] for f in first["folds"]]
    assert second["summary"]["score"] == first["summary"]["score"]
    pd.testing.assert_frame_equal(pd.read_parquet(again / "fold0" / "predictions.parquet"),
                                  pd.read_parquet(run / "fold0" / "predictions.parquet"))  # fmt: skip
    assert json.loads((again / "run.json").read_text())["seed"] == 1


# ----------------------------------------------------------------- metric properties ---
COUNTRIES = ["US", "DE", "SE", "XX", None]  # XX: not an EvalRS country (left out of MRED_COUNTRY)
GENDERS = ["m", "f", "n", None]


def make_world(seed: int, n_users: int, k: int, hit_share: float):
    """A random fold: users with country/gender, tracks with artists, training plays over every
    activity/popularity bin, one held-out track per user, and a predictions frame by user_id."""
    rng = np.random.default_rng(seed)
    n_tracks = max(3 * k, 30)
    tracks = pd.DataFrame({"track_id": 1000 + 3 * np.arange(n_tracks), "artist_id": rng.integers(0, 6, n_tracks)})
    user_ids = 10 + 7 * rng.permutation(n_users)
    users = pd.DataFrame({"user_id": user_ids, "country": rng.choice(np.array(COUNTRIES, dtype=object), n_users),
                          "gender": rng.choice(np.array(GENDERS, dtype=object), n_users)})  # fmt: skip
    rows = []
    for u in user_ids:
        for t in rng.choice(n_tracks, size=int(rng.integers(1, 8)), replace=False):
            rows.append((u, tracks["artist_id"][t], 0, tracks["track_id"][t], 0, int(rng.choice([1, 5, 50, 500, 5000]))))
    train = pd.DataFrame(rows, columns=["user_id", "artist_id", "album_id", "track_id", "timestamp", "user_track_count"])
    target = tracks["track_id"].to_numpy()[rng.integers(0, n_tracks, n_users)]
    test = pd.DataFrame({"user_id": np.sort(user_ids), "track_id": target})
    lists = np.stack([rng.choice(tracks["track_id"].to_numpy(), size=k, replace=False) for _ in range(n_users)])
    hit = rng.random(n_users) < hit_share
    for i in np.flatnonzero(hit):  # the target at a random position (no duplicate in the row)
        row = lists[i][lists[i] != target[i]][: k - 1]
        lists[i] = np.insert(row, int(rng.integers(0, k)), target[i])[:k]
    lists[rng.random((n_users, k)) < 0.1] = -1  # some padding
    for i in np.flatnonzero(hit):  # keep the planted hit even where padding landed on it
        if target[i] not in lists[i]:
            lists[i][0] = target[i]
    frame = pd.DataFrame(lists, index=test["user_id"].to_numpy())
    dataset = Dataset(train, tracks, users)
    return Fold(0, train, test, 1), dataset, frame


def _same(x, y, tol=0.0) -> bool:
    if x is None or y is None or (isinstance(x, float) and math.isnan(x)):
        return (x is None or math.isnan(x)) and (y is None or math.isnan(y))
    return abs(x - y) <= tol


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**31), n_users=st.integers(2, 40), k=st.sampled_from([5, 10, 20]),
       hit_share=st.floats(0.0, 1.0), perm_seed=st.integers(0, 2**31))  # fmt: skip
def test_evaluate_invariants_on_a_predictions_frame(seed, n_users, k, hit_share, perm_seed):
    fold, dataset, frame = make_world(seed, n_users, k, hit_share)
    result = evaluate(frame, fold, dataset, None, k=k)
    m = result["metrics"]
    assert 0.0 <= m["HIT_RATE"] <= 1.0 and 0.0 <= m["MRR"] <= m["HIT_RATE"] + 1e-15
    assert m["HIT_RATE"] == pytest.approx(1.0 - result["miss_rate"], abs=1e-12)
    for name in SLICE_METRICS:
        assert math.isnan(m[name]) or -1.0 <= m[name] <= 0.0, name
        for cell in result["slices"][name].values():
            assert 0.0 <= cell["miss_rate"] <= 1.0 and cell["users"] >= 1
    for name in ("MRED_USER_ACTIVITY", "MRED_TRACK_POPULARITY", "MRED_ARTIST_POPULARITY"):
        cells = result["slices"][name].values()  # every user is in exactly one bin
        assert sum(c["users"] for c in cells) == n_users
        assert m[name] == pytest.approx(-np.mean([abs(c["miss_rate"] - result["miss_rate"]) for c in cells]), abs=1e-12)
    va = result["variance_agreement"]
    assert math.isnan(va) or -1.0 - 1e-9 <= va <= 1.0 + 1e-9

    # shuffle both the fold's test rows and the frame's rows: nothing may change
    rng = np.random.default_rng(perm_seed)
    shuffled = Fold(0, fold.train.sample(frac=1.0, random_state=perm_seed).reset_index(drop=True),
                    fold.test.iloc[rng.permutation(n_users)].reset_index(drop=True), 1)  # fmt: skip
    again = evaluate(frame.iloc[rng.permutation(n_users)], shuffled, dataset, None, k=k)
    for name in METRICS:
        assert _same(again["metrics"][name], m[name], 1e-12), name
    assert _same(again["variance_agreement"], va, 1e-12)
    for name in SLICE_METRICS:
        assert again["slices"][name].keys() == result["slices"][name].keys()
        for key, cell in result["slices"][name].items():
            assert again["slices"][name][key]["users"] == cell["users"]
            assert again["slices"][name][key]["miss_rate"] == pytest.approx(cell["miss_rate"], abs=1e-12)

    # moving some targets to the top can only raise HR and MRR
    better = frame.copy()
    targets = fold.test.set_index("user_id")["track_id"]
    for user in rng.choice(better.index.to_numpy(), size=max(1, n_users // 3), replace=False):
        row = better.loc[user].to_numpy()
        row = row[row != targets[user]]
        better.loc[user] = np.concatenate([[targets[user]], row])[:k]
    improved = evaluate(better, fold, dataset, None, k=k)["metrics"]
    assert improved["HIT_RATE"] >= m["HIT_RATE"] and improved["MRR"] >= m["MRR"] - 1e-15


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**31), n_folds=st.integers(2, 5))
def test_summary_does_not_depend_on_fold_order(seed, n_folds):
    per_fold = []
    for f in range(n_folds):
        fold, dataset, frame = make_world(seed + f, 20, 10, 0.4)
        per_fold.append(evaluate(frame, fold, dataset, None, k=10))
    summary = summarise(per_fold)
    reordered = summarise(list(reversed(per_fold)))
    for name in METRICS:
        assert _same(reordered["metrics"][name], summary["metrics"][name], 1e-12), name
    for name, value in summary["consistency"]["per_metric"].items():
        assert _same(reordered["consistency"]["per_metric"][name], value, 1e-9), name
        assert math.isnan(value) or value <= 1.0 + 1e-12
    overall = summary["consistency"]["overall"]
    assert math.isnan(overall) or overall <= 1.0 + 1e-12
    assert _same(reordered["consistency"]["overall"], overall, 1e-9)


# ---------------------------------------------------------------- sampler properties ---
@st.composite
def degenerate_worlds(draw):
    """Random interactions (no user heard everything) + user vectors full of ties."""
    n_users, n_tracks = draw(st.integers(2, 14)), draw(st.integers(2, 16))
    seed = draw(st.integers(0, 2**31))
    rng = np.random.default_rng(seed)
    matrix = rng.random((n_users, n_tracks)) < draw(st.floats(0.05, 0.9))
    matrix[np.arange(n_users), rng.integers(0, n_tracks, n_users)] = True
    matrix = matrix[:, matrix.any(axis=0)]
    assume(matrix.shape[1] >= 2 and not matrix.all(axis=1).any())
    kind = draw(st.sampled_from(["zeros", "duplicates", "collinear", "one-hot", "random"]))
    dim = 3
    if kind == "zeros":
        vectors = np.zeros((n_users, dim))
    elif kind == "duplicates":
        palette = rng.normal(size=(2, dim))
        vectors = palette[rng.integers(0, 2, n_users)]
    elif kind == "collinear":
        vectors = np.outer(rng.choice([0.5, 1.0, 2.0, -1.0], n_users), rng.normal(size=dim))
    elif kind == "one-hot":
        vectors = np.eye(dim)[rng.integers(0, dim, n_users)]
    else:
        vectors = rng.normal(size=(n_users, dim))
    return matrix, vectors.astype(np.float32), seed


@settings(max_examples=80, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(degenerate_worlds(), st.sampled_from(["closest", "farthest"]), st.integers(1, 6), st.integers(0, 4))
def test_sampler_invariants_with_ties(world, direction, n_neighbours, extra):
    matrix, vectors, seed = world
    users, tracks = np.nonzero(matrix)
    index = Interactions.from_rows(users * 5 + 3, tracks * 11 + 7)  # sparse original ids
    heard = [set(index.user_tracks[index.user_indptr[u]:index.user_indptr[u + 1]].tolist()) for u in range(index.n_users)]
    pools = neighbour_pools(index, torch.from_numpy(vectors), n_neighbours, direction, extra)

    assert np.all(np.diff(pools.indptr) >= 0) and pools.indptr[-1] == len(pools.tracks)
    for u in range(index.n_users):
        pool = pools.tracks[pools.indptr[u]:pools.indptr[u + 1]]
        if len(pool):
            other = int(pools.neighbour[u])
            assert 0 <= other < index.n_users and other != u and pools.neighbour_rank[u] >= 0
            # the pool is exactly one neighbour's tracks minus the user's own
            assert sorted(pool.tolist()) == sorted(heard[other] - heard[u])
        else:
            assert pools.neighbour[u] == -1 and pools.neighbour_rank[u] == -1
    sizes = pools.sizes()
    assert pools.fallback_uniform == int((sizes == 0).sum())
    assert pools.fallback_more == int((pools.neighbour_rank >= n_neighbours).sum())

    rows = np.tile(np.arange(len(users)), 4)
    t = draw_triplets(index, pools, rows, np.random.default_rng(seed))
    keys = index.pair_keys()
    assert index.heard(t.user, t.positive, keys).all()  # positives heard
    assert not index.heard(t.user, t.negative, keys).any()  # negatives unheard (pool or fallback)
    assert index.heard(t.user_positive, t.positive, keys).all() and index.heard(t.user_negative, t.negative, keys).all()
    assert index.heard(t.user, t.song_anchor, keys).all()
