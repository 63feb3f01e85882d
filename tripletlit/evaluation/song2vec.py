"""song2vec track vectors for BEING_LESS_WRONG and LATENT_DIVERSITY: official or a stand-in.

EvalRS 2022 shipped ``song2vec.wv``, a gensim ``KeyedVectors`` of a skip-gram embedding whose
recipe and dimension were never published. :func:`load_official` reads it. Without it,
:func:`train_stand_in` trains a gensim skip-gram word2vec over one "sentence" per user (the
user's training tracks ordered by timestamp). BLW/LD measured with a stand-in are NOT
comparable with the 2022 leaderboard constants (``TrackVectors.stand_in`` says which).

:func:`fold_vectors` picks one of the two and caches the stand-in per fold.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd

from tripletlit.errors import TripletlitError
from tripletlit.evaluation.vectors import TrackVectors
from tripletlit.files import atomic_path

CACHE_PREFIX = "song2vec-standin-"
# gensim's word2vec silently truncates sentences longer than this; longer users are cut in chunks.
MAX_SENTENCE = 10_000


def user_sentences(train: pd.DataFrame, max_length: int = MAX_SENTENCE) -> list[list[str]]:
    """One sentence per user: the user's training track ids as strings, ordered by timestamp
    (ties by track id); users in ascending id order. A user with more than ``max_length``
    tracks gives consecutive sentences of at most ``max_length`` tokens (gensim would truncate).

    Vectorised: one lexsort and one ``np.split``; only the final conversion to Python lists
    (which gensim needs) visits each user.
    """
    users = train["user_id"].to_numpy()
    tracks = train["track_id"].to_numpy()
    order = np.lexsort((tracks, train["timestamp"].to_numpy(), users))
    users, tokens = users[order], tracks[order].astype(str)
    if len(users) == 0:
        return []
    firsts = np.concatenate([[0], np.flatnonzero(users[1:] != users[:-1]) + 1])
    lengths = np.diff(np.append(firsts, len(users)))
    position = np.arange(len(users)) - np.repeat(firsts, lengths)  # rank within the user
    cuts = np.flatnonzero(position % max_length == 0)[1:]  # user starts and every max_length-th
    return [chunk.tolist() for chunk in np.split(tokens, cuts)]


def word2vec_vectors(model) -> tuple[np.ndarray, np.ndarray]:
    """Track ids (int64, vocabulary order) and vectors (float32) of a trained gensim model."""
    ids = np.asarray(model.wv.index_to_key).astype(np.int64)
    return ids, np.asarray(model.wv.vectors, dtype=np.float32)


PASSES = 5_000_000  # tokens the stand-in sees at least over its epochs ("auto")


def auto_epochs(n_tokens: int, most: int = 5) -> int:
    """``epochs="auto"``: as many passes as reach ``PASSES`` tokens, between 1 and ``most``
    (5 on the small presets; 1 on an EvalRS-scale fold of ~6.9M rows, where 5 epochs of
    skip-gram cost ~11 minutes on one core and one pass already sees every track in context)."""
    return int(min(most, max(1, -(-PASSES // max(n_tokens, 1)))))


def train_stand_in(
    train: pd.DataFrame,
    vector_size: int = 64,
    window: int = 10,
    epochs: int | str = "auto",
    min_count: int = 1,
    seed: int = 42,
    workers: int = 1,
) -> TrackVectors:
    """A song2vec stand-in: gensim skip-gram (``sg=1``) word2vec over :func:`user_sentences`.

    ``epochs="auto"`` (:func:`auto_epochs`) scales the passes with the corpus: 5 on small
    folds, 1 from 5M training rows up.

    With ``workers=1`` (the default) the same ``seed`` and data give bit-identical vectors.
    More workers train faster (the paper used 8) but threads interleave their updates, so the
    vectors are then not reproducible run to run. Tracks played by fewer than ``min_count``
    users have no vector.
    """
    from gensim.models import Word2Vec

    if len(train) == 0:
        raise TripletlitError("cannot train the song2vec stand-in on an empty training set")
    if epochs == "auto":
        epochs = auto_epochs(len(train))
    model = Word2Vec(
        sentences=user_sentences(train),
        sg=1,
        vector_size=vector_size,
        window=window,
        epochs=epochs,
        min_count=min_count,
        seed=seed,
        workers=workers,
    )
    ids, vectors = word2vec_vectors(model)
    return TrackVectors.from_mapping(ids, vectors, stand_in=True)


def load_official(path: str | os.PathLike) -> TrackVectors:
    """The official ``song2vec.wv`` (gensim ``KeyedVectors``; keys ints or strings of ints)."""
    from gensim.models import KeyedVectors

    path = Path(path)
    if not path.is_file():
        raise TripletlitError(
            f"{path}: song2vec file not found; pass an existing song2vec.wv or omit it to train a stand-in"
        )
    try:
        kv = KeyedVectors.load(str(path))
    except Exception as exc:  # pickle, numpy and gensim raise many types for a bad file
        raise TripletlitError(
            f"{path}: unreadable song2vec file ({type(exc).__name__}: {exc}); "
            "it must be a gensim KeyedVectors saved with .save()"
        ) from None
    kv = getattr(kv, "wv", kv)  # a whole Word2Vec model saved instead of its vectors
    if not hasattr(kv, "index_to_key") or not hasattr(kv, "vectors"):
        raise TripletlitError(f"{path}: not a gensim KeyedVectors file (got {type(kv).__name__})")
    try:
        ids = np.asarray(list(kv.index_to_key)).astype(np.int64).reshape(-1)
    except (ValueError, TypeError, OverflowError):
        raise TripletlitError(
            f"{path}: song2vec keys must be track ids (integers or strings of integers)"
        ) from None
    if len(np.unique(ids)) != len(ids):
        raise TripletlitError(
            f"{path}: song2vec has duplicate track ids (e.g. both 1 and '1' as keys)"
        )
    return TrackVectors.from_mapping(ids, np.asarray(kv.vectors, dtype=np.float32), stand_in=False)


STAND_IN_DEFAULTS = {
    name: p.default
    for name, p in inspect.signature(train_stand_in).parameters.items()
    if name != "train"
}


def stand_in_params(**params) -> dict:
    """All parameters of :func:`train_stand_in` (defaults filled in); unknown names are an error."""
    unknown = sorted(set(params) - set(STAND_IN_DEFAULTS))
    if unknown:
        raise TripletlitError(
            f"unknown song2vec stand-in parameter {unknown[0]!r}; known: {', '.join(STAND_IN_DEFAULTS)}"
        )
    return {**STAND_IN_DEFAULTS, **params}


def cache_name(**params) -> str:
    """``song2vec-standin-<hash>.npz``: the hash covers every training parameter."""
    full = stand_in_params(**params)
    digest = hashlib.sha256(json.dumps(full, sort_keys=True).encode()).hexdigest()[:16]
    return f"{CACHE_PREFIX}{digest}.npz"


def cache_path(fold_dir: str | os.PathLike, **params) -> Path:
    """``fold_dir/`` + :func:`cache_name`."""
    return Path(fold_dir) / cache_name(**params)


def _fingerprint(train: pd.DataFrame) -> np.ndarray:
    """A cheap order-independent checksum of the training rows the stand-in learns from."""
    hashed = pd.util.hash_pandas_object(train[["user_id", "track_id", "timestamp"]], index=False)
    return np.array([len(train), int(hashed.to_numpy().sum(dtype=np.uint64))], dtype=np.uint64)


def _read_cache(path: Path, fingerprint: np.ndarray) -> TrackVectors | None:
    try:
        with np.load(path) as data:
            if not np.array_equal(data["fingerprint"], fingerprint):
                return None  # the fold was rebuilt: retrain
            return TrackVectors(
                data["ids"].astype(np.int64), data["vectors"].astype(np.float32), True
            )
    except (OSError, KeyError, ValueError, zipfile.BadZipFile):
        return None  # missing or damaged cache: retrain and overwrite


def fold_vectors(
    fold_dir: str | os.PathLike | None,
    train: pd.DataFrame,
    official: str | os.PathLike | None = None,
    shared: str | os.PathLike | None = None,
    **params,
) -> TrackVectors:
    """song2vec for one fold: the ``official`` file when given, else the stand-in.

    The stand-in is cached as ``fold_dir/song2vec-standin-<hash of params>.npz`` (ids,
    vectors and a checksum of ``train``; written atomically) and reused when present and made
    from the same training rows. ``shared``: a folder of stand-ins shared by every run on this
    machine, named by the checksum of the training rows and the parameters, so that the runs of
    a study, an ablation or a refit on the same folds train each fold's stand-in once (a few
    minutes at EvalRS scale). ``fold_dir=None`` and ``shared=None`` disable caching. ``params``
    are those of :func:`train_stand_in`.
    """
    if official is not None:
        return load_official(official)
    full = stand_in_params(**params)
    fingerprint = _fingerprint(train)
    own = cache_path(fold_dir, **full) if fold_dir is not None else None
    common = None
    if shared is not None:
        common = Path(shared) / f"{fingerprint[0]:x}-{fingerprint[1]:016x}-{cache_name(**full)}"
    for path in (own, common):
        if path is not None and path.is_file():
            cached = _read_cache(path, fingerprint)
            if cached is not None:
                if own is not None and path != own:
                    _write_cache(own, cached, fingerprint)
                return cached
    vectors = train_stand_in(train, **full)
    if own is not None:
        _write_cache(own, vectors, fingerprint)
    if common is not None:
        try:
            _write_cache(common, vectors, fingerprint)
        except OSError:
            pass  # a read-only or full cache folder only costs the next run the training
    return vectors


def _write_cache(path: Path, vectors: TrackVectors, fingerprint: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, ids=vectors.ids, vectors=vectors.vectors, fingerprint=fingerprint)
