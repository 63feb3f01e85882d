"""ranking.top_k against a brute-force numpy oracle (both selection paths), and stochastic_top_k."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch

import tripletlit.ranking as ranking
from tripletlit.ranking import seen_matrix, stochastic_top_k, top_k


def oracle(user_vectors, item_vectors, k, users=None, seen=None):
    """Float64 scores, seen items at -inf, a stable argsort: (indices with -1 tail, scores)."""
    u = np.asarray(user_vectors, dtype=np.float64)
    v = np.asarray(item_vectors, dtype=np.float64)
    users = np.arange(len(u)) if users is None else np.asarray(users)
    scores = u[users] @ v.T
    if seen is not None:
        scores[seen[users].toarray()] = -np.inf
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    values = np.take_along_axis(scores, order, axis=1)
    index = np.where(np.isfinite(values), order, -1)
    pad = k - index.shape[1]
    if pad > 0:
        index = np.pad(index, ((0, 0), (0, pad)), constant_values=-1)
        values = np.pad(values, ((0, 0), (0, pad)), constant_values=-np.inf)
    return index, values


def integer_problem(n_users, n_items, d=8, seed=0):
    """Vectors whose dot products are exact small integers in float32 (any summation order)
    and pairwise distinct within a row: s_ij = perm_j + 4 n_items (a_i . b_j)."""
    rng = np.random.default_rng(seed)
    users = np.concatenate(
        [np.ones((n_users, 1)), 4 * n_items * rng.integers(-3, 4, size=(n_users, d - 1))], axis=1
    )
    items = np.concatenate(
        [rng.permutation(n_items)[:, None], rng.integers(-3, 4, size=(n_items, d - 1))], axis=1
    )
    assert np.abs(users @ items.T).max() < 2**24
    return torch.tensor(users, dtype=torch.float32), torch.tensor(items, dtype=torch.float32)


def unit_problem(n_users, n_items, d=16, seed=0):
    rng = np.random.default_rng(seed)
    u = rng.standard_normal((n_users, d)).astype(np.float32)
    v = rng.standard_normal((n_items, d)).astype(np.float32)
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    return torch.from_numpy(u), torch.from_numpy(v)


def random_seen(n_users, n_items, per_user, seed=0):
    rng = np.random.default_rng(seed)
    rows = np.repeat(np.arange(n_users), per_user)
    return seen_matrix(rows, rng.integers(0, n_items, size=len(rows)), n_users, n_items)


PATHS = [pytest.param(False, id="plain-topk"), pytest.param(True, id="prefilter")]


@pytest.mark.parametrize("prefilter", PATHS)
@pytest.mark.parametrize("n_items", [3000, 3008])  # padded to 3008 / already a multiple of 64
@pytest.mark.parametrize("k", [10, 40])  # threshold from groups of 64 (47 >= 2k) / of 16
def test_exact_on_tie_free_integer_scores(prefilter, n_items, k):
    u, v = integer_problem(70, n_items)
    seen = random_seen(70, n_items, 40)
    index, values = top_k(u, v, k, seen=seen, batch_size=32, prefilter=prefilter)
    want_index, want_values = oracle(u, v, k, seen=seen)
    np.testing.assert_array_equal(index, want_index)
    np.testing.assert_array_equal(values, want_values.astype(np.float32))
    assert not np.asarray(seen[np.arange(70)[:, None], index].todense()).any()


@pytest.mark.parametrize("prefilter", PATHS)
def test_matches_oracle_on_unit_vectors(prefilter):
    """Cosine scores of random unit vectors (float32 sums, float64 oracle): the same items in
    the same order, except where two oracle scores are within float32 rounding (~1e-7)."""
    u, v = unit_problem(60, 5000)
    users = np.array([5, 3, 59, 0, 3, 17])  # unordered, repeated
    seen = random_seen(60, 5000, 100, seed=1)
    index, values = top_k(u, v, 50, users=users, seen=seen, batch_size=4, prefilter=prefilter)
    want_index, want_values = oracle(u, v, 51, users=users, seen=seen)
    np.testing.assert_allclose(values, want_values[:, :50], atol=1e-6)
    exact = u.double()[users] @ v.double().T
    got = np.take_along_axis(exact.numpy(), index, axis=1)
    np.testing.assert_allclose(got, want_values[:, :50], atol=1e-6)  # other items: near-ties
    boundary = want_values[:, 49] - want_values[:, 50] > 1e-5
    same_set = [set(a) == set(b) for a, b in zip(index, want_index[:, :50])]
    assert all(np.array(same_set)[boundary])
    assert (index == want_index[:, :50]).mean() > 0.99


@pytest.mark.parametrize("prefilter", PATHS)
def test_fewer_candidates_than_k_leaves_a_minus_one_tail(prefilter):
    u, v = integer_problem(5, 3000)
    keep = {0: 3000, 1: 7, 2: 0, 3: 39, 4: 41}  # unseen items per user
    rows, cols = [], []
    for user, n_keep in keep.items():
        hidden = np.random.default_rng(user).permutation(3000)[n_keep:]
        rows += [user] * len(hidden)
        cols += list(hidden)
    seen = seen_matrix(np.array(rows), np.array(cols), 5, 3000)
    index, values = top_k(u, v, 40, seen=seen, prefilter=prefilter)
    want_index, want_values = oracle(u, v, 40, seen=seen)
    np.testing.assert_array_equal(index, want_index)
    np.testing.assert_array_equal(values, want_values.astype(np.float32))
    assert (index[1, 7:] == -1).all() and (index[2] == -1).all() and (index[3, 39:] == -1).all()
    assert np.isneginf(values[2]).all() and (index[4] >= 0).all()


def test_k_larger_than_the_catalogue():
    u, v = integer_problem(3, 20)
    index, values = top_k(u, v, 25)
    want_index, want_values = oracle(u, v, 25)
    np.testing.assert_array_equal(index, want_index)
    assert (index[:, 20:] == -1).all() and np.isneginf(values[:, 20:]).all()


def test_prefilter_is_the_default_only_for_large_catalogues(monkeypatch):
    made = []

    class Spy(ranking._Prefilter):
        def __init__(self, *args):
            made.append(1)
            super().__init__(*args)

    monkeypatch.setattr(ranking, "_Prefilter", Spy)
    u, v = integer_problem(3, 3000)
    top_k(u, v, 40)  # 3000 >= 64 * 40
    assert made
    made.clear()
    top_k(u, v, 48)  # 3008 < 64 * 48: plain topk
    top_k(u, v, 40, prefilter=False)
    assert not made


def _fallback_calls(monkeypatch):
    """Record the row counts of torch.topk calls over a whole catalogue row (the fallback)."""
    calls = []
    real = torch.topk

    def spy(x, k, *args, **kwargs):
        if x.dim() == 2 and x.shape[1] == spy.n_items:
            calls.append(x.shape[0])
        return real(x, k, *args, **kwargs)

    monkeypatch.setattr(ranking.torch, "topk", spy)
    return calls, spy


def test_degenerate_rows_fall_back_to_a_whole_row_topk(monkeypatch):
    """A zero user vector (every score 0: all groups tie at the threshold) and a NaN row take
    the plain torch.topk over the whole row inside the prefilter: same result as without."""
    u, v = unit_problem(6, 5000)
    u[1] = 0.0
    u[4] = float("nan")
    seen = random_seen(6, 5000, 30)
    plain = top_k(u, v, 10, seen=seen, prefilter=False)
    calls, spy = _fallback_calls(monkeypatch)
    spy.n_items = 5000
    fast = top_k(u, v, 10, seen=seen, prefilter=True)  # groups of 64: 79 > 2k tied for row 1
    assert calls == [2]  # rows 1 and 4, one call
    np.testing.assert_array_equal(fast[0], plain[0])
    np.testing.assert_array_equal(fast[1], plain[1])
    want_index, _ = oracle(u[[0, 2, 3, 5]], v, 10, seen=seen[[0, 2, 3, 5]])
    np.testing.assert_array_equal(fast[0][[0, 2, 3, 5]], want_index)


def test_rows_with_too_long_a_list_fall_back(monkeypatch):
    """70 groups of 64 tie at the threshold (<= 2k) but list 70 x 16 = 1,120 4-groups, more
    than max(8k, 1024): the row takes the whole-row topk, the other row the listing."""
    n, k = 5200, 40  # padded 5248: 82 groups of 64 >= 2k
    u, v = unit_problem(2, n)
    u[0] = 0.0
    stride = 5248 // 64
    group_of = np.arange(n) % stride  # item c + j * stride is in 64-group c
    hidden = np.flatnonzero(group_of >= 70)
    seen = seen_matrix(np.zeros(len(hidden), dtype=np.int64), hidden, 2, n)
    plain = top_k(u, v, k, seen=seen, prefilter=False)
    calls, spy = _fallback_calls(monkeypatch)
    spy.n_items = n
    fast = top_k(u, v, k, seen=seen)
    assert calls == [1]
    np.testing.assert_array_equal(fast[0], plain[0])
    np.testing.assert_array_equal(fast[1], plain[1])
    np.testing.assert_array_equal(fast[0][1], oracle(u[1:], v, k)[0][0])


def test_ties_are_kept_to_tied_items():
    """Integer scores with many ties: the values equal the oracle's and each returned item
    really has its returned score (the order among equal scores is free)."""
    rng = np.random.default_rng(3)
    u = torch.tensor(rng.integers(-2, 3, size=(20, 4)), dtype=torch.float32)
    v = torch.tensor(rng.integers(-2, 3, size=(4000, 4)), dtype=torch.float32)
    for prefilter in (False, True):
        index, values = top_k(u, v, 30, prefilter=prefilter)
        _, want_values = oracle(u, v, 30)
        np.testing.assert_array_equal(values, want_values.astype(np.float32))
        exact = (u.double() @ v.double().T).numpy()
        np.testing.assert_array_equal(np.take_along_axis(exact, index, axis=1), values)
        assert all(len(set(row)) == 30 for row in index)


def test_empty_users():
    u, v = integer_problem(3, 100)
    index, values = top_k(u, v, 5, users=np.array([], dtype=np.int64))
    assert index.shape == (0, 5) and values.shape == (0, 5)


def test_seen_matrix_dedups():
    seen = seen_matrix(np.array([0, 0, 1]), np.array([2, 2, 0]), 2, 3)
    assert isinstance(seen, sp.csr_matrix) and seen.nnz == 2
    assert seen[0, 2] and seen[1, 0] and not seen[0, 0]


def test_stochastic_top_k_draws_in_rank_order_and_never_padding():
    ranked = np.tile(np.arange(50), (200, 1))
    ranked[0, 10:] = -1
    picked = stochastic_top_k(ranked, 10, np.random.default_rng(0))
    assert picked.shape == (200, 10)
    assert (np.diff(picked[1:], axis=1) > 0).all()  # rank order, no repeats
    np.testing.assert_array_equal(picked[0], np.arange(10))  # only 10 real candidates
    assert picked[1:, 0].mean() < 10  # 1/(r+1) favours the head
