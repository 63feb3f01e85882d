"""Triplet sampling (method.md section 3): pools against a slow oracle, triplet validity, fallbacks."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from tripletlit.data.folds import FoldConfig, make_fold
from tripletlit.sampling import (
    Interactions,
    draw_triplets,
    nearest_users,
    neighbour_pools,
    uniform_unheard,
)

# ------------------------------------------------------------------------------ helpers ---


def user_sets(index: Interactions) -> list[set[int]]:
    return [
        set(index.user_tracks[index.user_indptr[u] : index.user_indptr[u + 1]].tolist())
        for u in range(index.n_users)
    ]


def brute_force_pools(index, vectors, n_neighbours, extra_neighbours, direction):
    """Per-user Python: full cosine matrix, argsort, walk neighbours, first non-empty difference.

    Returns per user (sorted pool, neighbour, rank) with (empty, -1, -1) for no pool.
    """
    v = np.asarray(vectors, dtype=np.float64)
    unit = v / np.linalg.norm(v, axis=1, keepdims=True)
    sims = unit @ unit.T
    sets = user_sets(index)
    n_users = index.n_users
    total = min(n_users - 1, n_neighbours + extra_neighbours)
    out = []
    for u in range(n_users):
        key = -sims[u] if direction == "closest" else sims[u]
        walk = [int(o) for o in np.argsort(key, kind="stable") if o != u]
        result = ([], -1, -1)
        for rank, other in enumerate(walk[:total]):
            diff = sets[other] - sets[u]
            if diff:
                result = (sorted(diff), other, rank)
                break
        # the outcome depends on the order of the first rank + 2 (or total + 1) neighbours only:
        # they must not tie within float32 precision, or the oracle could differ by rounding
        walked = key[walk[: (result[2] + 2 if result[2] >= 0 else total + 1)]]
        assert np.diff(walked).min(initial=1.0) > 1e-6, "near-tie in the oracle's similarities"
        out.append(result)
    return out


def assert_pools_equal_brute_force(
    index, vectors, n_neighbours=5, extra_neighbours=50, direction="closest", block_size=4096
):
    pools = neighbour_pools(
        index, torch.as_tensor(vectors), n_neighbours, direction, extra_neighbours, block_size
    )
    expected = brute_force_pools(index, vectors, n_neighbours, extra_neighbours, direction)
    for u, (pool, neighbour, rank) in enumerate(expected):
        got = pools.tracks[pools.indptr[u] : pools.indptr[u + 1]]
        assert sorted(got.tolist()) == pool, f"user {u}"
        assert pools.neighbour[u] == neighbour, f"user {u}"
        assert pools.neighbour_rank[u] == rank, f"user {u}"
    ranks = np.array([r for _, _, r in expected])
    assert pools.fallback_more == int((ranks >= n_neighbours).sum())
    assert pools.fallback_uniform == int((ranks == -1).sum())
    return pools


def assert_triplets_valid(index, triplets, rows):
    keys = index.pair_keys()
    np.testing.assert_array_equal(triplets.user, index.row_user[rows])
    np.testing.assert_array_equal(triplets.positive, index.row_track[rows])
    assert index.heard(triplets.user, triplets.positive, keys).all()
    assert not index.heard(triplets.user, triplets.negative, keys).any(), "a negative was heard by its user"
    assert index.heard(triplets.user_positive, triplets.positive, keys).all(), "u_p did not listen to s_p"
    assert index.heard(triplets.user_negative, triplets.negative, keys).all(), "u_n did not listen to s_n"
    assert index.heard(triplets.user, triplets.song_anchor, keys).all(), "s_a is not a track of u_a"
    for arr, n in (
        (triplets.negative, index.n_tracks),
        (triplets.song_anchor, index.n_tracks),
        (triplets.user_positive, index.n_users),
        (triplets.user_negative, index.n_users),
    ):
        assert arr.min() >= 0 and arr.max() < n


def random_interactions(rng, n_users=30, n_tracks=40, density=0.2):
    matrix = rng.random((n_users, n_tracks)) < density
    matrix[np.arange(n_users), rng.integers(0, n_tracks, n_users)] = True  # every user has a track
    users, tracks = np.nonzero(matrix)
    # original ids: sparse, shuffled row order
    perm = rng.permutation(len(users))
    return Interactions.from_rows(users[perm] * 7 + 100, tracks[perm] * 13 + 5)


def nested_interactions(rng, n_users=70, n_tracks=6):
    """A tiny catalogue, 1-3 tracks per user skewed to track 0, and a sixth of the users with all
    of it: many users' nearest neighbours heard nothing new to them, so pools often come from the
    extra neighbours (the second search) and some users (the complete ones) get none at all."""
    skew = np.array([8, 4, 2, 1, 1, 1]) / 17
    users, tracks = [], []
    for u, k in enumerate(rng.choice([1, 1, 1, 2, 3, n_tracks], size=n_users)):
        users += [u] * k
        tracks += rng.choice(n_tracks, size=k, replace=False, p=None if k == n_tracks else skew).tolist()
    return Interactions.from_rows(np.array(users), np.array(tracks))


def angle_vectors(n):
    """2-d unit vectors at growing angles (gaps 10, 11.3, 12.6, ... degrees, so no two distances
    tie): user 0's neighbours are 1, 2, 3, ... in order."""
    angles = np.deg2rad(np.concatenate([[0.0], np.cumsum(10.0 + 1.3 * np.arange(n - 1))]))
    return np.stack([np.cos(angles), np.sin(angles)], axis=1).astype(np.float32)


# --------------------------------------------------------------------------- Interactions ---


def test_from_rows_builds_both_adjacencies():
    users = np.array([30, 10, 30, 20, 10])
    tracks = np.array([7, 7, 5, 9, 9])
    index = Interactions.from_rows(users, tracks)
    np.testing.assert_array_equal(index.user_ids, [10, 20, 30])
    np.testing.assert_array_equal(index.track_ids, [5, 7, 9])
    np.testing.assert_array_equal(index.user_ids[index.row_user], users)
    np.testing.assert_array_equal(index.track_ids[index.row_track], tracks)
    assert user_sets(index) == [{1, 2}, {2}, {0, 1}]
    listeners = [
        index.track_users[index.track_indptr[t] : index.track_indptr[t + 1]].tolist() for t in range(3)
    ]
    assert listeners == [[2], [0, 2], [0, 1]]
    assert index.heard(np.array([0, 0, 1, 2]), np.array([1, 0, 2, 2])).tolist() == [True, False, True, False]


# ------------------------------------------------------------------------- nearest_users ---


@pytest.mark.parametrize("direction", ["closest", "farthest"])
@pytest.mark.parametrize("n", [1, 7, 22])
def test_nearest_users_blocked_equals_unblocked_and_excludes_self(direction, n):
    # tiles smaller than n, not dividing 23, one row, the whole matrix; n = 22 = every other user
    vectors = torch.from_numpy(np.random.default_rng(1).normal(size=(23, 6)).astype(np.float32))
    large = nearest_users(vectors, n, direction, block_size=10_000)
    for block_size in (1, 2, 3, 5, 22, 23):
        np.testing.assert_array_equal(nearest_users(vectors, n, direction, block_size), large)
    assert large.shape == (23, n)
    assert not (large == np.arange(23)[:, None]).any()
    unit = torch.nn.functional.normalize(vectors, dim=1).double().numpy()
    sims = unit @ unit.T
    for u in range(23):
        order = np.argsort(-sims[u] if direction == "closest" else sims[u])
        np.testing.assert_array_equal(large[u], [o for o in order if o != u][:n])


def test_nearest_users_caps_at_other_users_and_rejects_bad_direction():
    vectors = torch.eye(3)
    assert nearest_users(vectors, 10).shape == (3, 2)
    with pytest.raises(ValueError):
        nearest_users(vectors, 2, "sideways")


# ------------------------------------------------------------------------ neighbour_pools ---


@pytest.mark.parametrize("direction", ["closest", "farthest"])
@pytest.mark.parametrize("seed", [0, 1])
def test_pools_equal_brute_force_on_random_data(direction, seed):
    rng = np.random.default_rng(seed)
    index = random_interactions(rng)
    vectors = rng.normal(size=(index.n_users, 8)).astype(np.float32)
    assert_pools_equal_brute_force(index, vectors, direction=direction)
    assert_pools_equal_brute_force(index, vectors, n_neighbours=2, extra_neighbours=1, direction=direction)


@pytest.mark.parametrize("direction", ["closest", "farthest"])
@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("block_size", [4, 32, 4096])
def test_pools_equal_brute_force_when_many_users_need_extra_neighbours(direction, seed, block_size):
    # the second search (users the first n_neighbours did not serve): fewer pending users than
    # a block (padded GEMM), several blocks, the first neighbours masked out; n_neighbours = 0
    # sends every user through it
    rng = np.random.default_rng(seed)
    index = nested_interactions(rng)
    vectors = rng.normal(size=(index.n_users, 8)).astype(np.float32)
    for n_neighbours, extra in ((1, 10), (2, 50), (0, 6), (3, 0)):
        pools = assert_pools_equal_brute_force(index, vectors, n_neighbours, extra, direction, block_size)
        assert pools.fallback_uniform > 0
        if n_neighbours <= 1 and extra:  # the second search served someone
            assert pools.fallback_more > 0
    # the same walk whether the first neighbours come from the tiled or the row search
    tiled = neighbour_pools(index, torch.from_numpy(vectors), 6, direction, 0, block_size)
    rows = neighbour_pools(index, torch.from_numpy(vectors), 0, direction, 6, block_size)
    for field in ("indptr", "tracks", "neighbour", "neighbour_rank"):
        np.testing.assert_array_equal(getattr(tiled, field), getattr(rows, field))
    assert tiled.fallback_uniform == rows.fallback_uniform


@pytest.mark.parametrize("block_size", [4, 16, 32])
def test_pool_search_memory_is_bounded_by_the_block(monkeypatch, block_size):
    # every similarity product is at most max(block_size, 16) x U (16: the padded row search),
    # never U x U
    rng = np.random.default_rng(0)
    index = nested_interactions(rng)
    vectors = torch.from_numpy(rng.normal(size=(index.n_users, 8)).astype(np.float32))
    shapes = []
    matmul = torch.matmul

    def recording_matmul(a, b, *args, **kwargs):
        out = matmul(a, b, *args, **kwargs)
        shapes.append(tuple(out.shape))
        return out

    monkeypatch.setattr(torch, "matmul", recording_matmul)
    pools = neighbour_pools(index, vectors, 1, "closest", 10, block_size)
    monkeypatch.undo()
    assert pools.fallback_more > 0 and shapes
    assert max(r for r, _ in shapes) <= max(block_size, 16)
    assert max(r * c for r, c in shapes) <= max(block_size, 16) * index.n_users


@pytest.fixture(scope="module")
def tiny_index(tiny):
    dataset, _ = tiny
    fold = make_fold(dataset.events, FoldConfig(min_count=3, user_fraction=0.5), 0)
    return Interactions.from_rows(fold.train["user_id"].to_numpy(), fold.train["track_id"].to_numpy())


@pytest.mark.parametrize("direction", ["closest", "farthest"])
def test_pools_equal_brute_force_on_tiny_fold(tiny_index, direction):
    vectors = np.random.default_rng(3).normal(size=(tiny_index.n_users, 16)).astype(np.float32)
    pools = assert_pools_equal_brute_force(tiny_index, vectors, direction=direction)
    assert (pools.sizes() > 0).all()


def test_triplets_valid_on_tiny_fold(tiny_index):
    vectors = torch.from_numpy(np.random.default_rng(4).normal(size=(tiny_index.n_users, 16)).astype(np.float32))
    pools = neighbour_pools(tiny_index, vectors)
    rows = np.arange(len(tiny_index.row_user))
    triplets = draw_triplets(tiny_index, pools, rows, np.random.default_rng(0))
    assert_triplets_valid(tiny_index, triplets, rows)
    # every s_n is from the user's pool
    pool_keys = np.repeat(np.arange(tiny_index.n_users), pools.sizes()) * tiny_index.n_tracks + pools.tracks
    assert np.isin(triplets.user * tiny_index.n_tracks + triplets.negative, pool_keys).all()
    # u_p is sometimes another user than u_a, s_a sometimes another track than s_p
    assert (triplets.user_positive != triplets.user).any()
    assert (triplets.song_anchor != triplets.positive).any()


def test_triplets_valid_on_random_data_and_draws_are_seeded():
    rng = np.random.default_rng(5)
    index = random_interactions(rng)
    pools = neighbour_pools(index, torch.from_numpy(rng.normal(size=(index.n_users, 4)).astype(np.float32)))
    rows = np.tile(np.arange(len(index.row_user)), 5)
    a = draw_triplets(index, pools, rows, np.random.default_rng(9))
    b = draw_triplets(index, pools, rows, np.random.default_rng(9))
    assert_triplets_valid(index, a, rows)
    np.testing.assert_array_equal(a.negative, b.negative)
    np.testing.assert_array_equal(a.song_anchor, b.song_anchor)


def test_negative_is_uniform_over_the_pool():
    # user 0 = {0}; its nearest neighbour user 1 = {1, 2, 3, 4}: pool {1, 2, 3, 4}
    index = Interactions.from_rows(np.array([0, 1, 1, 1, 1, 2]), np.array([0, 1, 2, 3, 4, 0]))
    vectors = torch.tensor([[1.0, 0.0], [1.0, 0.1], [0.0, 1.0]])
    pools = neighbour_pools(index, vectors)
    assert pools.tracks[pools.indptr[0] : pools.indptr[1]].tolist() == [1, 2, 3, 4]
    rows = np.zeros(8000, dtype=np.int64)  # row 0 is (user 0, track 0)
    counts = np.bincount(draw_triplets(index, pools, rows, np.random.default_rng(0)).negative, minlength=5)
    assert counts[0] == 0
    assert np.all(np.abs(counts[1:] / 8000 - 0.25) < 0.03)


# ------------------------------------------------------------------------------ fallbacks ---


def test_fallback_to_a_further_neighbour_is_counted():
    # users 1..5 (the 5 nearest of user 0) heard only tracks user 0 heard; user 6 has track 4
    users = [0, 0, 0, 0, 1, 2, 2, 3, 4, 4, 4, 5, 6, 6]
    tracks = [0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 3, 2, 4, 0]
    index = Interactions.from_rows(np.array(users), np.array(tracks))
    vectors = angle_vectors(7)
    pools = assert_pools_equal_brute_force(index, vectors, n_neighbours=5, extra_neighbours=50)
    assert pools.neighbour[0] == 6 and pools.neighbour_rank[0] == 5
    assert pools.tracks[pools.indptr[0] : pools.indptr[1]].tolist() == [4]
    assert pools.fallback_more >= 1 and pools.fallback_uniform == 0
    rows = np.repeat(np.arange(4), 50)  # rows of user 0
    triplets = draw_triplets(index, pools, rows, np.random.default_rng(0))
    assert_triplets_valid(index, triplets, rows)
    assert (triplets.negative == 4).all()
    # with no extra neighbour allowed user 0 falls back to uniform unheard tracks: track 4 only
    none = assert_pools_equal_brute_force(index, vectors, n_neighbours=5, extra_neighbours=0)
    assert none.neighbour_rank[0] == -1 and none.sizes()[0] == 0
    assert none.fallback_uniform >= 1 and none.fallback_more == 0
    triplets = draw_triplets(index, none, rows, np.random.default_rng(0))
    assert_triplets_valid(index, triplets, rows)
    assert (triplets.negative == 4).all()


def _almost_everything(n_tracks=200, unheard=(50, 120, 199)):
    """User 0 heard every track but ``unheard``; its only neighbour (user 1) heard a subset of
    user 0's tracks; user 2 (far away) listens to the ``unheard`` tracks."""
    heard0 = [t for t in range(n_tracks) if t not in unheard]
    users = [0] * len(heard0) + [1, 1] + [2] * len(unheard)
    tracks = heard0 + [0, 1] + list(unheard)
    index = Interactions.from_rows(np.array(users), np.array(tracks))
    vectors = torch.tensor([[1.0, 0.0], [1.0, 0.1], [-1.0, 0.0]])
    return index, vectors, np.array(unheard)


def test_uniform_fallback_for_a_user_who_heard_almost_every_track():
    index, vectors, unheard = _almost_everything()
    pools = neighbour_pools(index, vectors, n_neighbours=1, extra_neighbours=0)
    assert pools.neighbour_rank[0] == -1 and pools.sizes()[0] == 0
    assert pools.fallback_uniform == 1  # users 1 and 2 get pools from user 0 and user 1
    rows = np.repeat(np.flatnonzero(index.row_user == 0)[:1], 500)
    triplets = draw_triplets(index, pools, rows, np.random.default_rng(0))
    assert_triplets_valid(index, triplets, rows)
    assert set(triplets.negative.tolist()) == set(unheard.tolist())


def test_uniform_unheard_only_returns_unheard_tracks():
    index, _, unheard = _almost_everything()
    users = np.zeros(1000, dtype=np.int64)
    drawn = uniform_unheard(index, users, np.random.default_rng(0))
    assert np.isin(drawn, unheard).all(), f"heard tracks returned: {np.unique(drawn[~np.isin(drawn, unheard)])}"


# ------------------------------------------------------------------------------- property ---


@st.composite
def interaction_sets(draw):
    n_users = draw(st.integers(2, 9))
    n_tracks = draw(st.integers(2, 12))
    cells = draw(st.lists(st.booleans(), min_size=n_users * n_tracks, max_size=n_users * n_tracks))
    matrix = np.array(cells, dtype=bool).reshape(n_users, n_tracks)
    matrix = matrix[matrix.any(axis=1)]
    matrix = matrix[:, matrix.any(axis=0)]
    seed = draw(st.integers(0, 2**32 - 1))
    return matrix, seed


@settings(max_examples=60, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(interaction_sets(), st.sampled_from(["closest", "farthest"]), st.integers(1, 5), st.integers(0, 3))
def test_property_pools_and_triplets(data, direction, n_neighbours, extra):
    matrix, seed = data
    assume(matrix.shape[0] >= 2 and matrix.shape[1] >= 2)
    assume(not matrix.all(axis=1).any())  # every user has at least one unheard track
    users, tracks = np.nonzero(matrix)
    index = Interactions.from_rows(users, tracks)
    rng = np.random.default_rng(seed)
    vectors = rng.normal(size=(index.n_users, 3)).astype(np.float32)
    pools = assert_pools_equal_brute_force(index, vectors, n_neighbours, extra, direction)
    rows = np.tile(np.arange(len(users)), 3)
    triplets = draw_triplets(index, pools, rows, rng)
    assert_triplets_valid(index, triplets, rows)
