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


def nearest_users(
    user_vectors: torch.Tensor, n: int, direction: str = "closest", block_size: int = 4096
) -> np.ndarray:
    """(U, n) indices of each user's ``n`` nearest (or farthest) users by cosine, self excluded,
    computed ``block_size`` rows at a time: memory O(block_size x U), never U x U."""
    if direction not in ("closest", "farthest"):
        raise ValueError(f"direction must be 'closest' or 'farthest', got {direction!r}")
    with torch.no_grad():
        unit = torch.nn.functional.normalize(user_vectors.detach().float(), dim=1)
        n_users = unit.shape[0]
        n = min(n, n_users - 1)
        out = np.empty((n_users, max(n, 0)), dtype=np.int64)
        if n <= 0:
            return out
        sign = 1.0 if direction == "closest" else -1.0
        for start in range(0, n_users, block_size):
            stop = min(start + block_size, n_users)
            sims = sign * (unit[start:stop] @ unit.T)
            sims[torch.arange(stop - start), torch.arange(start, stop)] = -torch.inf
            out[start:stop] = torch.topk(sims, n, dim=1).indices.cpu().numpy()
    return out


def _set_difference(index: Interactions, users: np.ndarray, others: np.ndarray, keys: np.ndarray):
    """For each (user, other) pair: the other's tracks minus the user's, flattened.

    Returns (owner position into ``users``, track) of every surviving candidate.
    """
    lengths = np.diff(index.user_indptr)[others]
    owner = np.repeat(np.arange(len(users)), lengths)
    starts = np.repeat(index.user_indptr[others], lengths)
    offsets = np.arange(len(owner)) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    tracks = index.user_tracks[starts + offsets]
    keep = ~index.heard(users[owner], tracks, keys)
    return owner[keep], tracks[keep]


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
    """
    keys = index.pair_keys()
    n_users = index.n_users
    total = min(n_users - 1, max(n_neighbours, n_neighbours + extra_neighbours))
    neighbours = nearest_users(user_vectors, total, direction, block_size)
    chosen = np.full(n_users, -1, dtype=np.int64)
    rank = np.full(n_users, -1, dtype=np.int64)
    owners, tracks = [], []
    pending = np.arange(n_users)
    for j in range(neighbours.shape[1]):
        if len(pending) == 0:
            break
        other = neighbours[pending, j]
        owner, track = _set_difference(index, pending, other, keys)
        got = np.unique(owner)
        owners.append(pending[owner])
        tracks.append(track)
        chosen[pending[got]] = other[got]
        rank[pending[got]] = j
        pending = np.setdiff1d(pending, pending[got], assume_unique=True)
    owner = np.concatenate(owners) if owners else np.zeros(0, np.int64)
    track = np.concatenate(tracks) if tracks else np.zeros(0, np.int64)
    order = np.argsort(owner, kind="stable")
    return Pools(
        indptr=np.concatenate([[0], np.cumsum(np.bincount(owner, minlength=n_users))]),
        tracks=track[order],
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
