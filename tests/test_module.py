"""The LightningModule, its sampler and the neighbour-refresh callback; a checkerboard known answer."""

from __future__ import annotations

import logging
import warnings

import lightning as L
import numpy as np
import pytest
import torch

from tripletlit.callbacks import NeighbourRefresh
from tripletlit.data.folds import FoldConfig, make_fold
from tripletlit.fused import FusedAdam
from tripletlit.losses import TERMS
from tripletlit.model import TripletMF
from tripletlit.module import EpochBatches, TripletLitModule
from tripletlit.ranking import seen_matrix
from tripletlit.sampling import Interactions, neighbour_pools
from tripletlit.weights import row_weights


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Two threads are ~100x slower on a busy two-core machine; keep Lightning quiet too."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    level = logging.getLogger("lightning.pytorch").level
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield
    logging.getLogger("lightning.pytorch").setLevel(level)
    torch.set_num_threads(threads)


def make_trainer(tmp_path, max_epochs=2, callbacks=(), **kwargs):
    return L.Trainer(
        max_epochs=max_epochs,
        accelerator="cpu",
        devices=1,
        enable_progress_bar=False,
        logger=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        use_distributed_sampler=False,
        default_root_dir=tmp_path,
        callbacks=list(callbacks),
        **kwargs,
    )


def same_pools(a, b) -> bool:
    return (
        np.array_equal(a.indptr, b.indptr)
        and np.array_equal(a.tracks, b.tracks)
        and np.array_equal(a.neighbour, b.neighbour)
        and np.array_equal(a.neighbour_rank, b.neighbour_rank)
    )


class Recorder(L.Callback):
    """Placed after NeighbourRefresh: the pools and user vectors at each epoch start / end."""

    def __init__(self):
        self.pools, self.start_users, self.end_users, self.loss = [], [], [], []

    def on_train_epoch_start(self, trainer, pl_module):
        self.pools.append(pl_module.pools)
        self.start_users.append(pl_module.model.users.weight.detach().clone())

    def on_train_epoch_end(self, trainer, pl_module):
        self.end_users.append(pl_module.model.users.weight.detach().clone())
        self.loss.append(float(trainer.callback_metrics["train/loss_epoch"]))


# ------------------------------------------------------------------------ tiny fold fit ---


@pytest.fixture(scope="module")
def tiny_fold(tiny):
    dataset, _ = tiny
    fold = make_fold(dataset.events, FoldConfig(min_count=3, user_fraction=0.5), 0)
    index = Interactions.from_rows(fold.train["user_id"].to_numpy(), fold.train["track_id"].to_numpy())
    weights = row_weights(fold.train, dataset.users)
    seen = seen_matrix(index.row_user, index.row_track, index.n_users, index.n_tracks)
    test_users = np.searchsorted(index.user_ids, fold.test["user_id"].to_numpy())
    test_tracks = np.searchsorted(index.track_ids, fold.test["track_id"].to_numpy())
    assert (index.user_ids[test_users] == fold.test["user_id"].to_numpy()).all()
    assert (index.track_ids[test_tracks] == fold.test["track_id"].to_numpy()).all()

    def hit_rate(model, k=100):
        recs = model.recommend(test_users, k=k, seen=seen, stochastic=False)
        return float((recs == test_tracks[:, None]).any(axis=1).mean())

    return index, weights, hit_rate


def tiny_module(index, weights, hit_rate=None, seed=0, lr=1e-2, **kwargs):
    torch.manual_seed(seed)
    model = TripletMF(index.n_users, index.n_tracks, 32, sparse=kwargs.pop("sparse", False))
    validate = None if hit_rate is None else (lambda m: {"HIT_RATE": hit_rate(m)})
    return TripletLitModule(model, index, weights, lr=lr, batch_size=512, seed=seed, validate=validate, **kwargs)


@pytest.fixture(scope="module")
def trained(tiny_fold, tmp_path_factory):
    index, weights, hit_rate = tiny_fold
    module = tiny_module(index, weights, hit_rate)
    initial_users = module.model.users.weight.detach().clone()
    initial_hr = hit_rate(module.model)
    refresh, recorder = NeighbourRefresh(), Recorder()
    tmp = tmp_path_factory.mktemp("fit")
    trainer = make_trainer(tmp, 2, [refresh, recorder])
    trainer.fit(module)
    return {
        "module": module,
        "trainer": trainer,
        "refresh": refresh,
        "recorder": recorder,
        "initial_users": initial_users,
        "initial_hr": initial_hr,
        "tmp": tmp,
    }


def test_logged_losses_are_finite_and_add_up(trained):
    metrics = {k: float(v) for k, v in trained["trainer"].callback_metrics.items()}
    names = ["train/loss_epoch"] + [f"train/loss_{t}" for t in TERMS]
    assert all(np.isfinite(metrics[n]) and metrics[n] > 0 for n in names), metrics
    # total = user_song + 2.5 user_user + 2.5 song_song holds for the epoch means too
    combined = metrics["train/loss_user_song"] + 2.5 * (metrics["train/loss_user_user"] + metrics["train/loss_song_song"])
    assert metrics["train/loss_epoch"] == pytest.approx(combined, rel=1e-4)
    assert len(trained["recorder"].loss) == 2 and all(np.isfinite(trained["recorder"].loss))
    assert metrics["sampling/fallback_uniform"] == 0.0
    assert metrics["sampling/mean_pool_size"] > 0


def test_training_raises_the_hit_rate(trained, tiny_fold):
    _, _, hit_rate = tiny_fold
    after = hit_rate(trained["module"].model)
    assert after > trained["initial_hr"] + 0.1, (trained["initial_hr"], after)
    # the validate hook logged the same value at the end of the last epoch
    assert float(trained["trainer"].callback_metrics["val/HIT_RATE"]) == pytest.approx(after)


def test_pools_are_recomputed_every_epoch_from_the_current_vectors(trained):
    refresh, recorder, module = trained["refresh"], trained["recorder"], trained["module"]
    assert [h["epoch"] for h in refresh.history] == [0, 1]
    assert len(recorder.pools) == 2
    # epoch 0 uses the initial vectors, epoch 1 those at the end of epoch 0
    torch.testing.assert_close(recorder.start_users[0], trained["initial_users"])
    assert same_pools(recorder.pools[0], neighbour_pools(module.interactions, trained["initial_users"]))
    assert same_pools(recorder.pools[1], neighbour_pools(module.interactions, recorder.end_users[0]))
    assert not same_pools(recorder.pools[0], recorder.pools[1])
    assert (recorder.pools[0].neighbour != recorder.pools[1].neighbour).mean() > 0.1
    assert module.pools is recorder.pools[1]
    for entry, pools in zip(refresh.history, recorder.pools):
        assert entry["mean_pool_size"] == pytest.approx(float(np.mean(pools.sizes())))
        assert entry["fallback_uniform"] == pools.fallback_uniform
        assert entry["fallback_more_neighbours"] == pools.fallback_more


def test_checkpoint_round_trip_restores_callback_state_and_ids(trained, tiny_fold):
    trainer, refresh, module = trained["trainer"], trained["refresh"], trained["module"]
    path = trained["tmp"] / "last.ckpt"
    trainer.save_checkpoint(path)
    checkpoint = torch.load(path, weights_only=False)
    np.testing.assert_array_equal(checkpoint["tripletlit"]["user_ids"], module.interactions.user_ids)
    np.testing.assert_array_equal(checkpoint["tripletlit"]["track_ids"], module.interactions.track_ids)
    states = [s for k, s in checkpoint["callbacks"].items() if "NeighbourRefresh" in k]
    assert len(states) == 1
    restored = NeighbourRefresh()
    restored.load_state_dict(states[0])
    assert restored.history == refresh.history and len(restored.history) == 2
    torch.testing.assert_close(checkpoint["state_dict"]["model.users.weight"], module.model.users.weight.detach())

    # resuming one more epoch continues the history and starts from the saved vectors
    index, weights, _ = tiny_fold
    again = tiny_module(index, weights, seed=0)
    resumed_refresh, recorder = NeighbourRefresh(), Recorder()
    make_trainer(trained["tmp"], 3, [resumed_refresh, recorder]).fit(again, ckpt_path=path)
    assert [h["epoch"] for h in resumed_refresh.history] == [0, 1, 2]
    assert resumed_refresh.history[:2] == refresh.history
    torch.testing.assert_close(recorder.start_users[0], module.model.users.weight.detach())


def test_fit_is_deterministic(tiny_fold, tmp_path):
    index, weights, _ = tiny_fold
    tables = []
    for _ in range(2):
        module = tiny_module(index, weights, seed=3)
        make_trainer(tmp_path, 1, [NeighbourRefresh()]).fit(module)
        tables.append(module.model.users.weight.detach().clone())
    torch.testing.assert_close(tables[0], tables[1], rtol=0, atol=0)


@pytest.mark.parametrize(("optimizer", "sparse", "kind"),
                         [("adam", False, torch.optim.Adam), ("sparse_adam", True, torch.optim.SparseAdam),
                          ("fused", False, FusedAdam)])  # fmt: skip
def test_each_optimizer_takes_a_step(tiny_fold, tmp_path, optimizer, sparse, kind):
    index, weights, _ = tiny_fold
    module = tiny_module(index, weights, optimizer=optimizer, sparse=sparse)
    before = module.model.tracks.weight.detach().clone()
    trainer = make_trainer(tmp_path, 1, [NeighbourRefresh()], limit_train_batches=1)
    trainer.fit(module)
    # autograd paths: one Lightning step = one Adam step; fused: fused_batches Adam steps
    assert trainer.global_step == 1
    if optimizer == "fused":
        steps = int(trainer.optimizers[0].state[module.model.users.weight]["step"])
        assert steps == min(module.fused_batches, -(-len(weights) // module.batch_size))
    assert np.isfinite(float(trainer.callback_metrics["train/loss"]))
    after = module.model.tracks.weight.detach()
    changed = (after != before).any(dim=1)
    assert changed.any()
    assert torch.isfinite(after).all()
    assert isinstance(trainer.optimizers[0], kind)


def test_fused_training_matches_sparse_adam_on_the_same_batches(tiny_fold, tmp_path):
    """fused_batches=1 draws the same triplets per batch as the autograd path: after two
    epochs (two pool refreshes) both tables agree with torch's SparseAdam run."""
    index, weights, _ = tiny_fold
    tables = {}
    for optimizer in ("sparse_adam", "fused"):
        module = tiny_module(index, weights, seed=5, optimizer=optimizer, sparse=optimizer == "sparse_adam",
                             fused_batches=1)  # fmt: skip
        make_trainer(tmp_path, 2, [NeighbourRefresh()]).fit(module)
        tables[optimizer] = (module.model.users.weight.detach().clone(), module.model.tracks.weight.detach().clone())
    for ours, theirs in zip(tables["fused"], tables["sparse_adam"]):
        torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-5)


def test_training_step_without_pools_says_what_is_missing(tiny_fold):
    index, weights, _ = tiny_fold
    module = tiny_module(index, weights)
    with pytest.raises(RuntimeError, match="NeighbourRefresh"):
        module.triplets(np.arange(4), 0)


# -------------------------------------------------------------------------- EpochBatches ---


def _rows(sampler):
    return np.concatenate(list(sampler))


def test_epoch_batches_visit_every_row_once_per_epoch():
    sampler = EpochBatches(1000, 64, seed=7)
    batches = list(sampler)
    assert len(batches) == len(sampler) == 16
    assert all(len(b) == 64 for b in batches[:-1]) and len(batches[-1]) == 1000 - 15 * 64
    np.testing.assert_array_equal(np.sort(_rows(sampler)), np.arange(1000))


def test_epoch_batches_depend_on_seed_and_epoch_only():
    a, b = EpochBatches(500, 50, seed=1), EpochBatches(500, 50, seed=1)
    np.testing.assert_array_equal(_rows(a), _rows(b))
    first = _rows(a)
    a.set_epoch(1)
    second = _rows(a)
    assert not np.array_equal(first, second)
    np.testing.assert_array_equal(np.sort(second), np.arange(500))
    b.set_epoch(1)
    np.testing.assert_array_equal(_rows(b), second)
    assert not np.array_equal(_rows(EpochBatches(500, 50, seed=2)), first)


@pytest.mark.parametrize("n_rows", [1000, 1001])
def test_epoch_batches_shard_global_batches_across_two_ranks(n_rows):
    sampler = EpochBatches(n_rows, 64, seed=3, world_size=2)
    sampler.set_epoch(4)
    batches = list(sampler)
    assert len(batches) == len(sampler) == -(-n_rows // 128)
    parts = [np.concatenate([EpochBatches.part(b, r, 2) for b in batches]) for r in range(2)]
    # both ranks take the same number of steps, parts differ by one row at most
    assert all(abs(len(EpochBatches.part(b, 0, 2)) - len(EpochBatches.part(b, 1, 2))) <= 1 for b in batches)
    # every row exactly once per epoch: no padding, no dropped rows
    np.testing.assert_array_equal(np.sort(np.concatenate(parts)), np.arange(n_rows))
    # global batch b is exactly batch b of one process with twice the batch size
    single = EpochBatches(n_rows, 128, seed=3)
    single.set_epoch(4)
    for ours, theirs in zip(batches, single, strict=True):
        np.testing.assert_array_equal(ours, theirs)


# ------------------------------------------------------------------ checkerboard answer ---


def checkerboard(n=40):
    """Even users play even tracks, odd users odd tracks; each user misses one track of its
    parity (a different one per user), which must come out as its top-1 recommendation."""
    held = np.array([2 * ((u // 2) % (n // 2)) + u % 2 for u in range(n)])
    users, tracks = [], []
    for u in range(n):
        for t in range(u % 2, n, 2):
            if t != held[u]:
                users.append(u)
                tracks.append(t)
    return Interactions.from_rows(np.array(users), np.array(tracks)), held


def test_checkerboard_closest_pools_are_exactly_the_held_out_tracks():
    """Why the known answer below samples negatives from the FARTHEST users: once the user
    vectors separate the parities, the paper's closest-neighbour pool of every user is exactly
    its held-out track (the one it should be recommended), while the farthest neighbour's
    pool is the other parity's tracks."""
    index, held = checkerboard()
    parity = np.arange(40) % 2
    vectors = torch.from_numpy(np.stack([1.0 - parity, parity.astype(float)], axis=1).astype(np.float32))
    vectors = vectors + 0.01 * torch.from_numpy(np.random.default_rng(0).normal(size=(40, 2)).astype(np.float32))
    closest = neighbour_pools(index, vectors)
    for u in range(40):
        assert closest.tracks[closest.indptr[u] : closest.indptr[u + 1]].tolist() == [held[u]]
    farthest = neighbour_pools(index, vectors, direction="farthest")
    for u in range(40):
        pool = farthest.tracks[farthest.indptr[u] : farthest.indptr[u + 1]]
        assert len(pool) == 19 and (pool % 2 != u % 2).all()


def test_checkerboard_held_out_track_is_top_1(tmp_path):
    index, held = checkerboard()
    assert index.n_users == index.n_tracks == 40 and len(index.row_user) == 40 * 19
    assert len(np.unique(held)) == 40
    torch.manual_seed(0)
    model = TripletMF(40, 40, 8)  # uniform init
    module = TripletLitModule(
        model, index, np.ones(len(index.row_user), np.float32), lr=0.05, batch_size=64, seed=0,
        margins=(0.5, 0.5, 0.5),
    )  # fmt: skip
    make_trainer(tmp_path, 20, [NeighbourRefresh(direction="farthest")]).fit(module)
    seen = seen_matrix(index.row_user, index.row_track, 40, 40)
    top = model.recommend(np.arange(40), k=1, seen=seen, stochastic=False)[:, 0]
    np.testing.assert_array_equal(top, held)
    # by a clear margin: the held-out track beats every other unseen track of each user
    scores = model.scores(torch.arange(40)).detach().numpy()
    scores[seen.nonzero()] = -np.inf
    best = scores[np.arange(40), held]
    scores[np.arange(40), held] = -np.inf
    assert (best - scores.max(axis=1)).min() > 0.1
