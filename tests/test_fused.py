"""The fused CPU step against autograd + torch's SparseAdam on the same triplets."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tripletlit.fused import FusedAdam
from tripletlit.losses import TERMS, composite_loss
from tripletlit.sampling import Triplets


def random_triplets(rng, n, n_users, n_tracks) -> Triplets:
    return Triplets(*(rng.integers(0, m, n) for m in (n_users, n_tracks, n_tracks, n_users, n_users, n_tracks)))


def reference_run(users0, tracks0, t, weight, batch_size, lambdas, margins, lr, betas=(0.9, 0.999)):
    """What the sparse_adam path does: embedding lookups, composite_loss, backward, SparseAdam."""
    users = torch.nn.Embedding.from_pretrained(users0.clone(), freeze=False, sparse=True)
    tracks = torch.nn.Embedding.from_pretrained(tracks0.clone(), freeze=False, sparse=True)
    optimizer = torch.optim.SparseAdam([users.weight, tracks.weight], lr=lr, betas=betas)
    losses = []
    for start in range(0, len(t.user), batch_size):
        part = slice(start, start + batch_size)

        def ix(a, part=part):
            return torch.from_numpy(a[part])

        optimizer.zero_grad()
        total, terms = composite_loss(
            users(ix(t.user)), tracks(ix(t.positive)), tracks(ix(t.negative)), users(ix(t.user_positive)),
            users(ix(t.user_negative)), tracks(ix(t.song_anchor)), weight=torch.from_numpy(weight[part]),
            lambda_user=lambdas[0], lambda_song=lambdas[1], margins=margins,
        )  # fmt: skip
        total.backward()
        optimizer.step()
        losses.append([total.item(), *(terms[name].item() for name in TERMS)])
    return users.weight.detach(), tracks.weight.detach(), np.array(losses)


def fused_run(users0, tracks0, t, weight, batch_size, lambdas, margins, lr, betas=(0.9, 0.999), calls=1):
    users, tracks = torch.nn.Parameter(users0.clone()), torch.nn.Parameter(tracks0.clone())
    optimizer = FusedAdam([users, tracks], lr=lr, betas=betas)
    # the triplets may be fed in several calls (as Lightning steps do): steps carry over
    per_call = -(-len(t.user) // (batch_size * calls)) * batch_size
    losses = []
    for start in range(0, len(t.user), per_call):
        part = Triplets(*(a[start : start + per_call] for a in vars(t).values()))
        losses.append(optimizer.train(part, weight[start : start + per_call], batch_size, *lambdas, margins))
    return users.detach(), tracks.detach(), np.concatenate(losses), optimizer


@pytest.mark.parametrize(
    ("n_users", "n_tracks", "dim", "batch_size", "n_rows", "lambdas", "margins", "calls"),
    [
        (40, 60, 16, 32, 32 * 6, (2.5, 2.5), (0.25, 0.25, 0.25), 1),  # many repeated rows per batch
        (7, 9, 8, 16, 16 * 5 + 3, (5.0, 0.5), (0.3, 0.1, 0.6), 2),  # tiny tables, short last batch
        (500, 900, 64, 128, 128 * 4, (0.0, 1.0), (0.0, 0.5, 0.25), 4),  # a term switched off
    ],
)
def test_fused_steps_equal_autograd_with_sparse_adam(n_users, n_tracks, dim, batch_size, n_rows, lambdas, margins,
                                                     calls):  # fmt: skip
    rng = np.random.default_rng(n_users)
    users0 = torch.from_numpy(rng.standard_normal((n_users, dim)).astype(np.float32))
    tracks0 = torch.from_numpy(rng.standard_normal((n_tracks, dim)).astype(np.float32))
    t = random_triplets(rng, n_rows, n_users, n_tracks)
    weight = (rng.random(n_rows) * 3 + 0.1).astype(np.float32)
    ref_users, ref_tracks, ref_losses = reference_run(users0, tracks0, t, weight, batch_size, lambdas, margins, 1e-2)
    users, tracks, losses, optimizer = fused_run(users0, tracks0, t, weight, batch_size, lambdas, margins, 1e-2,
                                                 calls=calls)  # fmt: skip
    assert (users - users0).abs().max() > 1e-3  # it trained
    np.testing.assert_allclose(losses, ref_losses, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(users, ref_users, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(tracks, ref_tracks, rtol=1e-5, atol=1e-6)
    steps = -(-n_rows // batch_size)
    for table in (optimizer.param_groups[0]["params"]):
        assert int(optimizer.state[table]["step"]) == steps
    # the workspace maps are left clean for the next call
    assert (optimizer._work["slotU"] == -1).all() and (optimizer._work["slotT"] == -1).all()


def test_all_hinges_closed_still_steps_momentum_and_reports_zero_loss():
    rng = np.random.default_rng(0)
    users0 = torch.from_numpy(rng.standard_normal((5, 8)).astype(np.float32))
    tracks0 = torch.from_numpy(rng.standard_normal((6, 8)).astype(np.float32))
    t = random_triplets(rng, 20, 5, 6)
    weight = np.ones(20, np.float32)
    # negative margins large enough close every hinge: zero loss and zero gradients
    args = (users0, tracks0, t, weight, 10, (2.5, 2.5), (-3.0, -3.0, -3.0), 1e-2)
    users, tracks, losses, _ = fused_run(*args)
    ref_users, ref_tracks, ref_losses = reference_run(*args)
    assert (losses == 0).all() and (ref_losses == 0).all()
    torch.testing.assert_close(users, ref_users, rtol=0, atol=0)
    torch.testing.assert_close(tracks, ref_tracks, rtol=0, atol=0)


def test_zero_rows_give_finite_updates():
    users0 = torch.zeros(3, 4)
    tracks0 = torch.ones(4, 4)
    t = Triplets(*(np.array([0, 1, 2]) for _ in range(6)))
    users, tracks, losses, _ = fused_run(users0, tracks0, t, np.ones(3, np.float32), 3, (2.5, 2.5), (0.25,) * 3, 1e-2)
    assert np.isfinite(losses).all() and torch.isfinite(users).all() and torch.isfinite(tracks).all()


def test_state_dict_round_trip_continues_identically():
    rng = np.random.default_rng(3)
    users0 = torch.from_numpy(rng.standard_normal((30, 16)).astype(np.float32))
    tracks0 = torch.from_numpy(rng.standard_normal((50, 16)).astype(np.float32))
    first, second = random_triplets(rng, 64, 30, 50), random_triplets(rng, 64, 30, 50)
    w = np.ones(64, np.float32)
    users, tracks = torch.nn.Parameter(users0.clone()), torch.nn.Parameter(tracks0.clone())
    straight = FusedAdam([users, tracks], lr=1e-2)
    straight.train(first, w, 16, 2.5, 2.5, (0.25,) * 3)
    saved_tables = (users.detach().clone(), tracks.detach().clone())
    saved = {k: v for k, v in straight.state_dict().items()}
    saved = torch.utils._pytree.tree_map(lambda x: x.clone() if isinstance(x, torch.Tensor) else x, saved)
    straight.train(second, w, 16, 2.5, 2.5, (0.25,) * 3)

    users2, tracks2 = torch.nn.Parameter(saved_tables[0]), torch.nn.Parameter(saved_tables[1])
    resumed = FusedAdam([users2, tracks2], lr=1e-2)
    resumed.load_state_dict(saved)
    resumed.train(second, w, 16, 2.5, 2.5, (0.25,) * 3)
    torch.testing.assert_close(users2.detach(), users.detach(), rtol=0, atol=0)
    torch.testing.assert_close(tracks2.detach(), tracks.detach(), rtol=0, atol=0)


def test_fused_adam_refuses_what_it_cannot_do():
    with pytest.raises(ValueError, match="exactly the two tables"):
        FusedAdam([torch.nn.Parameter(torch.zeros(2, 2))])
    with pytest.raises(ValueError, match="float32"):
        FusedAdam([torch.nn.Parameter(torch.zeros(2, 2, dtype=torch.float64)), torch.nn.Parameter(torch.zeros(2, 2))])
    optimizer = FusedAdam([torch.nn.Parameter(torch.zeros(2, 2)), torch.nn.Parameter(torch.zeros(2, 2))])
    with pytest.raises(RuntimeError, match="FusedAdam.train"):
        optimizer.step()
    assert optimizer.step(lambda: "ran") == "ran"


def test_moments_are_one_interleaved_buffer_that_checkpoints_round_trip(tmp_path):
    """exp_avg / exp_avg_sq are the two halves of each row of one buffer (one block per row for
    the update); torch.save stores that buffer once, and a restore keeps values and layout."""
    rng = np.random.default_rng(4)
    users = torch.nn.Parameter(torch.from_numpy(rng.standard_normal((300, 32)).astype(np.float32)))
    tracks = torch.nn.Parameter(torch.from_numpy(rng.standard_normal((500, 32)).astype(np.float32)))
    optimizer = FusedAdam([users, tracks], lr=1e-2)
    optimizer.train(random_triplets(rng, 256, 300, 500), np.ones(256, np.float32), 32, 1.0, 1.0, (0.5,) * 3)
    for table in (users, tracks):
        m, v = optimizer.state[table]["exp_avg"], optimizer.state[table]["exp_avg_sq"]
        assert v.data_ptr() == m.data_ptr() + 32 * 4 and m.stride() == (64, 1)
        assert m.abs().sum() > 0 and v.abs().sum() > 0
    path = tmp_path / "state.pt"
    torch.save(optimizer.state_dict(), path)
    moment_bytes = 2 * (300 + 500) * 32 * 4
    assert moment_bytes <= path.stat().st_size < moment_bytes * 1.1  # not saved twice
    restored = FusedAdam([users, tracks], lr=1e-2)
    restored.load_state_dict(torch.load(path, weights_only=True))
    for table in (users, tracks):
        for key in ("exp_avg", "exp_avg_sq"):
            assert torch.equal(restored.state[table][key], optimizer.state[table][key])
        m, v = restored.state[table]["exp_avg"], restored.state[table]["exp_avg_sq"]
        assert v.data_ptr() == m.data_ptr() + 32 * 4
