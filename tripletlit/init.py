"""Initial embeddings: word2vec over co-listening sentences (paper section 2.3) or uniform.

Corpus: one sentence per training track: ``user=<id>`` for every listener, then
``track=<id>``, ``artist=<id>`` and ``album=<id>`` for each of its albums. gensim skip-gram
(sg=1, hs=0, negative=5, ns_exponent=0.5, sample=1e-5, min_count=1, epochs=1, seed=42,
vector_size=d). The paper's window is the longest sentence (whole sentence as context), the
slow part at full scale; ``window`` may instead be a bounded integer. The user and track
tables start from the ``user=`` and ``track=`` vectors; other tokens are dropped.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from tripletlit.sampling import Interactions

MAX_SENTENCE = 10_000  # gensim ignores words past this in one sentence


def uniform_init(n_rows: int, dim: int, rng: np.random.Generator) -> np.ndarray:
    """Uniform(-k, k) with k = n_rows^(-1/2) (the paper's fallback)."""
    bound = n_rows ** -0.5
    return rng.uniform(-bound, bound, size=(n_rows, dim)).astype(np.float32)


def _tokens(prefix: str, ids: np.ndarray) -> np.ndarray:
    return np.char.add(prefix, np.asarray(ids).astype(np.int64).astype(str))


def track_sentences(index: Interactions, tracks: pd.DataFrame | None) -> list[list[str]]:
    """One sentence per training track: its listeners, then track, artist and album tokens.

    Built as one flat token array ordered by (track, kind, position), then split per track.
    """
    n_tracks = index.n_tracks
    owners = [np.repeat(np.arange(n_tracks), np.diff(index.track_indptr)), np.arange(n_tracks)]
    words = [_tokens("user=", index.user_ids[index.track_users]), _tokens("track=", index.track_ids)]
    if tracks is not None:
        meta = tracks.set_index("track_id").reindex(index.track_ids)
        known = meta["artist_id"].notna().to_numpy()
        owners.append(np.flatnonzero(known))
        words.append(_tokens("artist=", meta["artist_id"].to_numpy()[known]))
        albums = meta["albums_id"].to_numpy()
        counts = np.array([len(a) if isinstance(a, np.ndarray) else 0 for a in albums])
        if counts.sum():
            owners.append(np.repeat(np.arange(n_tracks), counts))
            words.append(_tokens("album=", np.concatenate([a for a in albums if isinstance(a, np.ndarray)])))
    owner = np.concatenate(owners)
    kind = np.concatenate([np.full(len(o), k) for k, o in enumerate(owners)])
    order = np.lexsort((np.arange(len(owner)), kind, owner))
    flat = np.concatenate(words)[order]
    bounds = np.cumsum(np.bincount(owner, minlength=n_tracks))[:-1]
    sentences = [part.tolist() for part in np.split(flat, bounds)]
    # gensim ignores words past MAX_SENTENCE: split the few huge sentences, each part ending
    # with the track's own tokens so that every listener still co-occurs with its track
    n_listeners = np.diff(index.track_indptr)
    for t in np.flatnonzero(np.array([len(x) for x in sentences]) > MAX_SENTENCE):
        listeners, tail = sentences[t][: n_listeners[t]], sentences[t][n_listeners[t] :]
        step = MAX_SENTENCE - len(tail)
        sentences[t] = listeners[:step] + tail
        sentences.extend(listeners[i : i + step] + tail for i in range(step, len(listeners), step))
    return sentences


def word2vec_init(
    index: Interactions,
    tracks: pd.DataFrame | None,
    dim: int,
    window: int | str = "sentence",
    seed: int = 42,
    workers: int = 1,
    epochs: int = 1,
    sample: float = 1e-5,
) -> tuple[np.ndarray, np.ndarray]:
    """(user table (U, d), track table (T, d)) from word2vec over the co-listening corpus."""
    from gensim.models import Word2Vec

    sentences = track_sentences(index, tracks)
    longest = max(len(s) for s in sentences)
    size = longest if window == "sentence" else int(window)
    model = Word2Vec(
        sentences, vector_size=dim, window=size, sg=1, hs=0, negative=5, ns_exponent=0.5, sample=sample,
        min_count=1, epochs=epochs, seed=seed, workers=workers,
    )  # fmt: skip
    users = model.wv[[f"user={u}" for u in index.user_ids.tolist()]]
    tracks_table = model.wv[[f"track={t}" for t in index.track_ids.tolist()]]
    return np.asarray(users, dtype=np.float32), np.asarray(tracks_table, dtype=np.float32)
