"""The EvalRS 2022 baselines behind one interface the model shares: random, popularity, CBOW.

Every recommender is fitted on a fold's training rows (``user_id, artist_id, album_id,
track_id, timestamp, user_track_count``) and returns, for each requested user in input order,
``k`` distinct track ids best first as an ``(n, k)`` int64 array padded with -1 when fewer than
``k`` candidates exist. Users absent from training are an error (the protocol only tests users
with training rows). Everything is vectorised over users; the CBOW baseline ranks the full
catalogue with :func:`tripletlit.ranking.top_k`.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np
import pandas as pd
import torch

from tripletlit.errors import TripletlitError
from tripletlit.ranking import seen_matrix, top_k

PAD = -1


@runtime_checkable
class Recommender(Protocol):
    """What the protocol needs from a model: fit on a fold, then recommend k tracks per user."""

    def fit(self, train: pd.DataFrame, tracks: pd.DataFrame | None = None) -> Recommender: ...

    def recommend(self, user_ids: np.ndarray, k: int = 100) -> np.ndarray:
        """(n, k) track ids, best first, -1 padding."""
        ...


class _Fitted:
    """Users and tracks of the training set, as sorted ids and per-row indices."""

    def _index(self, train: pd.DataFrame) -> None:
        if len(train) == 0:
            raise TripletlitError(f"{type(self).__name__}: cannot fit on an empty training set")
        users = train["user_id"].to_numpy().astype(np.int64)
        tracks = train["track_id"].to_numpy().astype(np.int64)
        self.users_, self._user_index = np.unique(users, return_inverse=True)
        self.tracks_, self._track_index = np.unique(tracks, return_inverse=True)

    def _rows(self, user_ids: np.ndarray, k: int) -> np.ndarray:
        """Row of each user id in ``users_``; unknown users and k < 1 are errors."""
        if not hasattr(self, "users_"):
            raise TripletlitError(f"{type(self).__name__}: call fit() before recommend()")
        if k < 1:
            raise TripletlitError(f"k must be at least 1, got {k}")
        user_ids = np.asarray(user_ids, dtype=np.int64).reshape(-1)
        rows = np.minimum(np.searchsorted(self.users_, user_ids), len(self.users_) - 1)
        unknown = self.users_[rows] != user_ids
        if unknown.any():
            raise TripletlitError(
                f"user {int(user_ids[np.argmax(unknown)])} has no training rows "
                f"({int(unknown.sum())} unknown user(s)); recommend only for users of the training fold"
            )
        return rows


def distinct_sample(rng: np.random.Generator, n_rows: int, n_items: int, k: int) -> np.ndarray:
    """(n_rows, min(k, n_items)) item indices, distinct within each row, each row a uniform
    random subset in random order. Vectorised: duplicates are redrawn until none are left
    (a few rounds when k is small beside n_items); dense random keys otherwise."""
    k = min(k, n_items)
    if 2 * k > n_items:  # dense: the k smallest of uniform keys
        keys = rng.random((n_rows, n_items))
        return (
            np.argpartition(keys, k - 1, axis=1)[:, :k] if k < n_items else np.argsort(keys, axis=1)
        )
    draw = rng.integers(0, n_items, size=(n_rows, k))
    while True:
        order = np.argsort(draw, axis=1, kind="stable")
        ordered = np.take_along_axis(draw, order, axis=1)
        repeat = np.zeros(draw.shape, dtype=bool)
        repeat[:, 1:] = ordered[:, 1:] == ordered[:, :-1]
        if not repeat.any():
            return draw
        duplicate = np.zeros(draw.shape, dtype=bool)
        np.put_along_axis(duplicate, order, repeat, axis=1)
        draw[duplicate] = rng.integers(0, n_items, size=int(duplicate.sum()))


def _pad(ids: np.ndarray, k: int) -> np.ndarray:
    if ids.shape[1] == k:
        return ids
    out = np.full((ids.shape[0], k), PAD, dtype=np.int64)
    out[:, : ids.shape[1]] = ids
    return out


class RandomRecommender(_Fitted):
    """k distinct tracks drawn uniformly from the training catalogue (HR ~ k / catalogue).

    The generator is seeded once at construction: the same seed and the same sequence of
    ``recommend`` calls give the same recommendations.
    """

    def __init__(self, seed: int = 0):
        self.seed = seed

    def fit(self, train: pd.DataFrame, tracks: pd.DataFrame | None = None) -> RandomRecommender:
        self._index(train)
        self._rng = np.random.default_rng(self.seed)
        return self

    def recommend(self, user_ids: np.ndarray, k: int = 100) -> np.ndarray:
        rows = self._rows(user_ids, k)
        picked = distinct_sample(self._rng, len(rows), len(self.tracks_), k)
        return _pad(self.tracks_[picked], k)


class PopularityRecommender(_Fitted):
    """The most played tracks (sum of ``user_track_count`` in training; ties by track id) that
    the user has not played in training."""

    batch_size = 4096

    def fit(self, train: pd.DataFrame, tracks: pd.DataFrame | None = None) -> PopularityRecommender:
        self._index(train)
        plays = np.bincount(
            self._track_index,
            weights=train["user_track_count"].to_numpy(),
            minlength=len(self.tracks_),
        )
        self.ranked_ = np.lexsort((self.tracks_, -plays))  # track index, most played first
        self.plays_ = plays
        rank = np.empty(len(self.tracks_), dtype=np.int64)
        rank[self.ranked_] = np.arange(len(self.tracks_))
        # Seen tracks by rank position, so that a user's seen candidates are the first columns.
        self._seen = seen_matrix(
            self._user_index, rank[self._track_index], len(self.users_), len(self.tracks_)
        )
        self._seen_count = np.diff(self._seen.indptr)
        return self

    def recommend(self, user_ids: np.ndarray, k: int = 100) -> np.ndarray:
        rows = self._rows(user_ids, k)
        out = np.full((len(rows), k), PAD, dtype=np.int64)
        for start in range(0, len(rows), self.batch_size):
            batch = rows[start : start + self.batch_size]
            # The k + (most seen in the batch) most played tracks hold each user's k best unseen.
            width = min(k + int(self._seen_count[batch].max()), len(self.tracks_))
            seen = self._seen[batch][:, :width].toarray()
            first = np.argsort(seen, axis=1, kind="stable")[:, :k]  # unseen first, in rank order
            ids = self.tracks_[self.ranked_[first]]
            ids[np.take_along_axis(seen, first, axis=1)] = PAD
            out[start : start + len(batch), : ids.shape[1]] = ids
        return out


class CBOWRecommender(_Fitted):
    """The challenge's CBOW baseline (the SCORE's normalisation anchor).

    gensim CBOW word2vec (``sg=0``; vector_size 20, window 40, epochs 5, min_count 0 as the
    reference) over each user's training tracks ordered by timestamp; a user's vector is the
    mean of ``n_samples`` of the user's tracks drawn with replacement (seeded, at fit time);
    recommendations are the nearest tracks by cosine, minus those already heard. ``workers=1``
    makes a seed reproducible; more workers are faster but not bit-reproducible.
    """

    def __init__(
        self,
        vector_size: int = 20,
        window: int = 40,
        epochs: int = 5,
        min_count: int = 0,
        n_samples: int = 40,
        seed: int = 0,
        workers: int = 1,
        batch_size: int = 1024,
    ):
        if n_samples < 1:
            raise TripletlitError(f"n_samples must be at least 1, got {n_samples}")
        self.vector_size = vector_size
        self.window = window
        self.epochs = epochs
        self.min_count = min_count
        self.n_samples = n_samples
        self.seed = seed
        self.workers = workers
        self.batch_size = batch_size

    def fit(self, train: pd.DataFrame, tracks: pd.DataFrame | None = None) -> CBOWRecommender:
        from gensim.models import Word2Vec

        from tripletlit.evaluation.song2vec import user_sentences, word2vec_vectors

        self._index(train)
        model = Word2Vec(
            sentences=user_sentences(train),
            sg=0,
            vector_size=self.vector_size,
            window=self.window,
            epochs=self.epochs,
            min_count=self.min_count,
            seed=self.seed,
            workers=self.workers,
        )
        vocab_ids, vocab_vectors = word2vec_vectors(model)
        # Items = training tracks with a vector (all of them at min_count 0), in tracks_ order.
        has_vector = np.isin(self.tracks_, vocab_ids)
        if not has_vector.any():
            raise TripletlitError(
                f"CBOWRecommender: no track has a vector at min_count={self.min_count}; lower it"
            )
        self.items_ = self.tracks_[has_vector]
        order = np.argsort(vocab_ids)
        item_vectors = vocab_vectors[order][np.searchsorted(vocab_ids[order], self.items_)]
        item_of_track = np.full(len(self.tracks_), -1, dtype=np.int64)
        item_of_track[has_vector] = np.arange(len(self.items_))
        row_item = item_of_track[self._track_index]
        keep = row_item >= 0
        users, items = self._user_index[keep], row_item[keep]

        # User vector: mean of n_samples of the user's tracks drawn with replacement.
        by_user = np.argsort(users, kind="stable")
        counts = np.bincount(users, minlength=len(self.users_))
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        rng = np.random.default_rng(self.seed)
        draws = (rng.random((len(self.users_), self.n_samples)) * counts[:, None]).astype(np.int64)
        sampled = items[by_user][np.minimum(starts[:, None] + draws, max(len(items) - 1, 0))]
        user_vectors = item_vectors[sampled].mean(axis=1)
        user_vectors[counts == 0] = 0.0  # no track with a vector: no preference

        self._user_vectors = torch.from_numpy(_normalise(user_vectors))
        self._item_vectors = torch.from_numpy(_normalise(item_vectors))
        self._seen = seen_matrix(users, items, len(self.users_), len(self.items_))
        return self

    def recommend(self, user_ids: np.ndarray, k: int = 100) -> np.ndarray:
        rows = self._rows(user_ids, k)
        index, _ = top_k(
            self._user_vectors,
            self._item_vectors,
            k,
            users=rows,
            seen=self._seen,
            batch_size=self.batch_size,
        )
        return np.where(index >= 0, self.items_[np.maximum(index, 0)], PAD)


def _normalise(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return np.divide(vectors, norms, out=np.zeros_like(vectors), where=norms > 0)


BASELINES = {
    "random": RandomRecommender,
    "popularity": PopularityRecommender,
    "cbow": CBOWRecommender,
}


def make_baseline(name: str, seed: int = 0) -> Recommender:
    """A fresh baseline by name, seeded when it takes a seed (popularity is deterministic)."""
    import inspect

    if name not in BASELINES:
        raise TripletlitError(f"unknown baseline {name!r}; choose from {', '.join(BASELINES)}")
    cls = BASELINES[name]
    return cls(seed=seed) if "seed" in inspect.signature(cls).parameters else cls()
