"""Triplet sampling, as pure vectorised functions (no Lightning, no Python loop over rows or users).

For each training row (user u_a, track s_p) the method needs (``method.md`` section 3):

- s_n: a hard negative, uniform from u_a's *negative pool*: the tracks of the first of u_a's
  nearest users (cosine on the current user embeddings, self excluded) whose tracks minus u_a's
  own are non-empty; recomputed every epoch (:func:`neighbour_pools`);
- u_p: a uniform listener of s_p (may be u_a); u_n: a uniform listener of s_n;
- s_a: a uniform track of u_a (may be s_p).

Where no neighbour gives a non-empty pool the reference crashed; here more neighbours are
tried, then the user falls back to uniform unheard tracks, and both fallbacks are counted.
Everything works on contiguous indices (users 0..U-1, tracks 0..T-1) of one training fold.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass
class Interactions:
    """The training rows of one fold as contiguous indices, with both CSR adjacencies.

    ``user_ids`` / ``track_ids``: original ids of index 0..U-1 / 0..T-1 (sorted);
    ``row_user`` / ``row_track``: (N,) indices of every training row; ``user_indptr`` +
    ``user_tracks``: the tracks of each user (sorted); ``track_indptr`` + ``track_users``:
    the listeners of each track (sorted).
    """

    user_ids: np.ndarray
    track_ids: np.ndarray
    row_user: np.ndarray
    row_track: np.ndarray
    user_indptr: np.ndarray
    user_tracks: np.ndarray
    track_indptr: np.ndarray
    track_users: np.ndarray

    @classmethod
    def from_rows(cls, users: np.ndarray, tracks: np.ndarray) -> Interactions:
        """Build from the ``user_id`` / ``track_id`` columns of the training rows."""
        user_ids, row_user = np.unique(users, return_inverse=True)
        track_ids, row_track = np.unique(tracks, return_inverse=True)
        row_user, row_track = row_user.astype(np.int64), row_track.astype(np.int64)
        by_user = np.lexsort((row_track, row_user))
        by_track = np.lexsort((row_user, row_track))
        return cls(
            user_ids=user_ids,
            track_ids=track_ids,
            row_user=row_user,
            row_track=row_track,
            user_indptr=np.concatenate([[0], np.cumsum(np.bincount(row_user, minlength=len(user_ids)))]),
            user_tracks=row_track[by_user],
            track_indptr=np.concatenate([[0], np.cumsum(np.bincount(row_track, minlength=len(track_ids)))]),
            track_users=row_user[by_track],
        )

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def n_tracks(self) -> int:
        return len(self.track_ids)

    def pair_keys(self) -> np.ndarray:
        """Sorted int64 keys ``user * n_tracks + track`` of every training pair (for membership)."""
        return np.repeat(np.arange(self.n_users, dtype=np.int64), np.diff(self.user_indptr)) * self.n_tracks + self.user_tracks

    def heard(self, users: np.ndarray, tracks: np.ndarray, keys: np.ndarray | None = None) -> np.ndarray:
        """Whether each (user, track) pair is a training pair."""
        keys = self.pair_keys() if keys is None else keys
        query = users.astype(np.int64) * self.n_tracks + tracks
        pos = np.minimum(np.searchsorted(keys, query), len(keys) - 1)
        return keys[pos] == query


@dataclass
class Pools:
    """Negative pools in CSR form: pool of user u = ``tracks[indptr[u]:indptr[u+1]]``.

    Users with an empty pool (``indptr`` run of length 0) draw uniform unheard tracks.
    ``neighbour_rank[u]`` is the rank (0 = nearest) of the neighbour that gave the pool, -1
    for the uniform fallback; ``fallback_more`` counts users served by an extra neighbour
    beyond the first ``n_neighbours``, ``fallback_uniform`` those with no pool at all.
    """

    indptr: np.ndarray
    tracks: np.ndarray
    neighbour: np.ndarray
    neighbour_rank: np.ndarray
    fallback_more: int
    fallback_uniform: int

    def sizes(self) -> np.ndarray:
        return np.diff(self.indptr)


# BLAS kernels can round a row differently when only a handful of rows is multiplied (MKL takes
# GEMV / small-matrix paths below ~4 rows); gathered row sets are padded to this many rows so
# that their similarities are bitwise those of the tiled pass (checked on the EvalRS-scale fold).
_MIN_GEMM_ROWS = 16


def _unit_vectors(user_vectors: torch.Tensor) -> torch.Tensor:
    """The rows of ``user_vectors`` scaled to unit length (float32, detached, contiguous)."""
    return torch.nn.functional.normalize(user_vectors.detach().float(), dim=1).contiguous()


def _merge_top(values: torch.Tensor, indices: torch.Tensor, new_values: torch.Tensor,
               new_indices: torch.Tensor, n: int) -> None:  # fmt: skip
    """In place: ``values`` / ``indices`` (R, n) := the ``n`` best of them and the new candidates."""
    both = torch.cat([values, new_values], dim=1)
    top_values, top = torch.topk(both, n, dim=1)
    indices.copy_(torch.gather(torch.cat([indices, new_indices], dim=1), 1, top))
    values.copy_(top_values)


def _search_all(unit: torch.Tensor, n: int, sign: float, tile: int) -> np.ndarray:
    """(U, n) columns of the ``n`` largest ``sign * cos`` of every row, best first, self excluded.

    The similarity matrix is symmetric, so only its tiles on and above the diagonal are
    multiplied (half the flops of a row-blocked search): tile (I, J), J >= I, gives top-n
    candidates to the rows of I, and its transpose (copied into a second buffer, so the top-k
    runs along contiguous rows) to the rows of J. Each row keeps a running top-n (O(U x n)).
    Memory: two (tile, tile) buffers. The sign is folded into the left operand (negation is
    exact). With the MKL kernels used here a tile, its transpose and any row/column subset hold
    bitwise the same values as a full ``unit @ unit.T`` (checked on the EvalRS-scale fold), so
    the result equals a dense search up to exact ties; another BLAS could differ in the last
    bit, which can only swap neighbours whose similarities tie to float32 precision.
    """
    n_users = unit.shape[0]
    out = np.empty((n_users, n), dtype=np.int64)
    if n_users == 0 or n <= 0:
        return out
    left = unit if sign > 0 else -unit
    tile = max(1, min(tile, n_users))
    best = torch.full((n_users, n), -torch.inf, dtype=unit.dtype, device=unit.device)
    best_ids = torch.full((n_users, n), -1, dtype=torch.int64, device=unit.device)
    buf = torch.empty((tile, tile), dtype=unit.dtype, device=unit.device)
    buf_t = torch.empty((tile, tile), dtype=unit.dtype, device=unit.device)
    for a in range(0, n_users, tile):
        b = min(a + tile, n_users)
        for c in range(a, n_users, tile):
            e = min(c + tile, n_users)
            sims = torch.matmul(left[a:b], unit[c:e].T, out=buf[: b - a, : e - c])
            if c == a:
                sims.diagonal().fill_(-torch.inf)
            values, ids = torch.topk(sims, min(n, e - c), dim=1)
            _merge_top(best[a:b], best_ids[a:b], values, ids + c, n)
            if c != a:
                sims_t = buf_t[: e - c, : b - a]
                sims_t.copy_(sims.T)
                values, ids = torch.topk(sims_t, min(n, b - a), dim=1)
                _merge_top(best[c:e], best_ids[c:e], values, ids + a, n)
    out[:] = best_ids.cpu().numpy()
    return out


def _search_rows(
    unit: torch.Tensor, rows: np.ndarray, n: int, sign: float, block_size: int, exclude: np.ndarray
) -> np.ndarray:
    """(R, n) columns of the ``n`` largest ``sign * cos`` of the users ``rows``, best first,
    skipping self and ``exclude`` (R, c) (neighbours already walked); ``block_size`` rows at a
    time against all users: memory O(block_size x U)."""
    n_users = unit.shape[0]
    out = np.empty((len(rows), n), dtype=np.int64)
    if len(rows) == 0 or n <= 0:
        return out
    left = unit if sign > 0 else -unit
    device = unit.device
    buf_rows = max(min(block_size, len(rows)), _MIN_GEMM_ROWS)
    buf = torch.empty((buf_rows, n_users), dtype=unit.dtype, device=device)
    for start in range(0, len(rows), block_size):
        stop = min(start + block_size, len(rows))
        ids = torch.from_numpy(rows[start:stop]).to(device)
        padded = ids
        if len(ids) < _MIN_GEMM_ROWS:  # repeat the first row: GEMM path, same rounding
            padded = torch.cat([ids, ids[:1].expand(_MIN_GEMM_ROWS - len(ids))])
        sims = torch.matmul(left[padded], unit.T, out=buf[: len(padded)])[: len(ids)]
        local = torch.arange(stop - start, device=device)
        sims[local, ids] = -torch.inf
        if exclude.shape[1]:
            sims[local[:, None], torch.from_numpy(exclude[start:stop]).to(device)] = -torch.inf
        out[start:stop] = torch.topk(sims, n, dim=1).indices.cpu().numpy()
    return out


def nearest_users(
    user_vectors: torch.Tensor, n: int, direction: str = "closest", block_size: int = 4096
) -> np.ndarray:
    """(U, n) indices of each user's ``n`` nearest (or farthest) users by cosine, self excluded,
    computed on (block_size, block_size) tiles of the similarity matrix, only those on and
    above its diagonal: memory O(block_size^2 + U x n), never U x U."""
    if direction not in ("closest", "farthest"):
        raise ValueError(f"direction must be 'closest' or 'farthest', got {direction!r}")
    with torch.no_grad():
        unit = _unit_vectors(user_vectors)
        n = max(min(n, unit.shape[0] - 1), 0)
        return _search_all(unit, n, 1.0 if direction == "closest" else -1.0, block_size)


def _set_difference(index: Interactions, users: np.ndarray, others: np.ndarray, keys: np.ndarray):
    """For each (user, other) pair: the other's tracks minus the user's.

    Returns (counts, tracks): ``counts[p]`` tracks survive for pair p, and ``tracks`` holds them
    pair after pair, each pair's in the other's (ascending) track order. All pairs' candidates
    are gathered at once; membership is one ``searchsorted`` of their pair keys into ``keys``
    (:meth:`Interactions.pair_keys`).
    """
    indptr = index.user_indptr
    lengths = indptr[others + 1] - indptr[others]
    ends = np.cumsum(lengths)
    # candidate i of pair p sits at user_tracks[indptr[other_p] + i]
    positions = np.repeat(indptr[others] - (ends - lengths), lengths)
    positions += np.arange(len(positions))
    tracks = index.user_tracks[positions]
    query = np.repeat(users.astype(np.int64) * index.n_tracks, lengths)
    query += tracks
    found = np.searchsorted(keys, query)
    np.minimum(found, len(keys) - 1, out=found)
    keep = keys[found] != query
    kept_before = np.concatenate([[0], np.cumsum(keep)])
    return kept_before[ends] - kept_before[ends - lengths], tracks[keep]


def neighbour_pools(
    index: Interactions,
    user_vectors: torch.Tensor,
    n_neighbours: int = 5,
    direction: str = "closest",
    extra_neighbours: int = 50,
    block_size: int = 4096,
) -> Pools:
    """Negative pools from the nearest users on ``user_vectors`` (U, d).

    Walks each user's ``n_neighbours`` neighbours in order and takes the first non-empty set
    difference (the paper); users still without a pool try up to ``extra_neighbours`` more,
    then fall back to uniform unheard tracks.

    Two searches: the ``n_neighbours`` nearest of every user (:func:`_search_all`: symmetric
    tiles, memory O(block_size^2)); then, only for the users none of those served (usually
    none), the next ``extra_neighbours`` (the first ones masked out; :func:`_search_rows`:
    memory O(block_size x U)). This equals one search for ``n_neighbours + extra_neighbours``
    without paying for the longer top-k on every user. Each walk step is one vectorised set
    difference over the users still pending (after step 0, usually none).
    """
    if direction not in ("closest", "farthest"):
        raise ValueError(f"direction must be 'closest' or 'farthest', got {direction!r}")
    keys = index.pair_keys()
    n_users = index.n_users
    total = max(min(n_users - 1, max(n_neighbours, n_neighbours + extra_neighbours)), 0)
    first = max(min(n_neighbours, total), 0)
    sign = 1.0 if direction == "closest" else -1.0
    chosen = np.full(n_users, -1, dtype=np.int64)
    rank = np.full(n_users, -1, dtype=np.int64)
    sizes = np.zeros(n_users, dtype=np.int64)
    steps = []  # per walk step: (users served, their pool sizes, their pools concatenated)
    pending = np.arange(n_users)

    def walk(columns: np.ndarray, offset: int) -> None:
        """Walk ``columns`` (row i: the next neighbours of ``pending[i]``) in order."""
        nonlocal pending
        row = np.arange(len(pending))
        for j in range(columns.shape[1]):
            if len(pending) == 0:
                break
            other = columns[row, j]
            counts, track = _set_difference(index, pending, other, keys)
            got = counts > 0
            served = pending[got]
            steps.append((served, counts[got], track))
            sizes[served] = counts[got]
            chosen[served] = other[got]
            rank[served] = offset + j
            pending, row = pending[~got], row[~got]

    with torch.no_grad():
        unit = _unit_vectors(user_vectors)
        nearest = _search_all(unit, first, sign, block_size)
        walk(nearest, 0)
        if len(pending) and total > first:
            extra = _search_rows(unit, pending, total - first, sign, block_size, nearest[pending])
            walk(extra, first)
    if len(steps) == 1:  # the usual case: step 0 served users in ascending order
        track = steps[0][2]
    elif steps:  # pools of several steps: order them by user
        owner = np.concatenate([np.repeat(served, counts) for served, counts, _ in steps])
        track = np.concatenate([t for _, _, t in steps])[np.argsort(owner, kind="stable")]
    else:
        track = np.zeros(0, np.int64)
    return Pools(
        indptr=np.concatenate([[0], np.cumsum(sizes)]),
        tracks=track,
        neighbour=chosen,
        neighbour_rank=rank,
        fallback_more=int((rank >= n_neighbours).sum()),
        fallback_uniform=len(pending),
    )


def _uniform_in_runs(indptr: np.ndarray, runs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """For each run index r in ``runs``: a uniform position in ``[indptr[r], indptr[r+1])``."""
    lengths = indptr[runs + 1] - indptr[runs]
    return indptr[runs] + np.floor(rng.random(len(runs)) * lengths).astype(np.int64)


def uniform_unheard(index: Interactions, users: np.ndarray, rng: np.random.Generator,
                    keys: np.ndarray | None = None, max_rounds: int = 64) -> np.ndarray:  # fmt: skip
    """A uniform track each user has not heard.

    Rejection sampling, vectorised over users; the rare users still unserved after
    ``max_rounds`` (they heard almost the whole catalogue) draw from their explicit complement.
    A user who heard every track gets a uniform track (there is no unheard one).
    """
    keys = index.pair_keys() if keys is None else keys
    out = rng.integers(0, index.n_tracks, size=len(users))
    todo = np.flatnonzero(index.heard(users, out, keys))
    for _ in range(max_rounds):
        if len(todo) == 0:
            break
        out[todo] = rng.integers(0, index.n_tracks, size=len(todo))
        todo = todo[index.heard(users[todo], out[todo], keys)]
    for i in todo:  # almost-complete listeners only: a handful at most
        u = users[i]
        unheard = np.setdiff1d(np.arange(index.n_tracks), index.user_tracks[index.user_indptr[u] : index.user_indptr[u + 1]])
        if len(unheard):
            out[i] = unheard[rng.integers(len(unheard))]
    return out


@dataclass
class Triplets:
    """Indices for one batch of rows: anchors (u_a, s_p), s_n, u_p, u_n, s_a; each (B,)."""

    user: np.ndarray
    positive: np.ndarray
    negative: np.ndarray
    user_positive: np.ndarray
    user_negative: np.ndarray
    song_anchor: np.ndarray


def draw_triplets(
    index: Interactions, pools: Pools, rows: np.ndarray, rng: np.random.Generator, keys: np.ndarray | None = None
) -> Triplets:
    """Draw s_n, u_p, u_n and s_a for the training rows ``rows`` (indices into the rows)."""
    user = index.row_user[rows]
    positive = index.row_track[rows]
    has_pool = pools.sizes()[user] > 0
    negative = np.empty(len(rows), dtype=np.int64)
    pooled = np.flatnonzero(has_pool)
    negative[pooled] = pools.tracks[_uniform_in_runs(pools.indptr, user[pooled], rng)]
    lonely = np.flatnonzero(~has_pool)
    if len(lonely):
        negative[lonely] = uniform_unheard(index, user[lonely], rng, keys)
    return Triplets(
        user=user,
        positive=positive,
        negative=negative,
        user_positive=index.track_users[_uniform_in_runs(index.track_indptr, positive, rng)],
        user_negative=index.track_users[_uniform_in_runs(index.track_indptr, negative, rng)],
        song_anchor=index.user_tracks[_uniform_in_runs(index.user_indptr, user, rng)],
    )
