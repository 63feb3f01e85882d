"""Evaluating recommendations under the EvalRS protocol: one fold, all folds, metrics.json.

:func:`evaluate` scores one fold's predictions; :func:`summarise` combines folds (means,
SCORE of the means as the challenge did, consistency, variance agreement);
:func:`run_protocol` fits and evaluates any recommender with ``fit(train, tracks)`` and
``recommend(user_ids, k)`` over every fold.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from tripletlit.data.dataset import Dataset
from tripletlit.data.folds import Fold, FoldConfig, make_folds
from tripletlit.errors import DataError
from tripletlit.evaluation.agreement import variance_agreement
from tripletlit.evaluation.consistency import consistency
from tripletlit.evaluation.metrics import METRICS, K, compute_metrics, fold_slices
from tripletlit.evaluation.scoring import load_profile, score
from tripletlit.evaluation.vectors import TrackVectors
from tripletlit.files import write_text_atomic

STAND_IN_NOTE = (
    "BEING_LESS_WRONG and LATENT_DIVERSITY use a song2vec stand-in trained by tripletlit: "
    "they are not comparable with the EvalRS 2022 leaderboard constants"
)


def read_predictions(path: str | os.PathLike, k: int = K) -> pd.DataFrame:
    """A predictions file (parquet or CSV): ``user_id`` + ``k`` ranked columns (the challenge's
    format: columns "0".."99"; -1 pads). Returns a frame indexed by user_id with k int columns."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: predictions file not found")
    try:
        frame = pd.read_parquet(path) if path.suffix in (".parquet", ".pq") else pd.read_csv(path)
    except Exception as exc:  # noqa: BLE001 - any reader failure is a bad file for the user
        raise DataError(f"{path}: cannot read predictions ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})") from None
    if "user_id" not in frame.columns:
        if frame.index.name == "user_id":
            frame = frame.reset_index()
        else:
            raise DataError(f"{path}: no 'user_id' column; a predictions file has user_id and {k} ranked columns")
    ranked = [c for c in frame.columns if c != "user_id"]
    if len(ranked) != k:
        raise DataError(f"{path}: {len(ranked)} prediction columns, expected {k} (k = {k}); pad short lists with -1")
    values = frame[ranked]
    if not all(pd.api.types.is_integer_dtype(values[c]) for c in ranked):
        bad = next(c for c in ranked if not pd.api.types.is_integer_dtype(values[c]))
        raise DataError(f"{path}: column {bad!r} must hold integer track ids (use -1 for padding, not empty cells)")
    if frame["user_id"].duplicated().any():
        raise DataError(f"{path}: user {frame['user_id'][frame['user_id'].duplicated()].iloc[0]} has two rows")
    out = values.set_axis(range(k), axis=1)
    out.index = frame["user_id"].to_numpy()
    return out


def align_predictions(predictions: pd.DataFrame | np.ndarray, user_ids: np.ndarray, source: str = "predictions") -> np.ndarray:
    """(n, k) array of ``predictions`` in the order of ``user_ids``. A frame must cover exactly
    those users; an array must already be in that order."""
    if isinstance(predictions, np.ndarray):
        return predictions
    unknown = predictions.index.difference(user_ids)
    if len(unknown):
        raise DataError(f"{source}: user {unknown[0]} is not a test user of this fold ({len(unknown)} unknown users)")
    missing = pd.Index(user_ids).difference(predictions.index)
    if len(missing):
        raise DataError(f"{source}: no predictions for test user {missing[0]} ({len(missing)} users missing)")
    return predictions.loc[user_ids].to_numpy()


def evaluate(
    predictions: pd.DataFrame | np.ndarray,
    fold: Fold,
    dataset: Dataset,
    vectors: TrackVectors | None = None,
    profile: str | os.PathLike = "evalrs2022",
    k: int = K,
) -> dict:
    """Score one fold: the nine metrics, per-slice miss rates, the fold's SCORE, variance agreement.

    ``predictions``: an (n_test, k) array in the order of ``fold.test`` or a frame indexed by
    user_id (see :func:`read_predictions`). ``vectors``: song2vec (official or stand-in) for
    BLW/LD; without it those two and the SCORE are NaN.
    """
    user_ids = fold.test["user_id"].to_numpy()
    matrix = align_predictions(predictions, user_ids)
    result = compute_metrics(matrix, fold_slices(fold.train, fold.test, dataset.users, dataset.tracks), vectors, k)
    agreement = variance_agreement(fold.train, user_ids, np.asarray(matrix), dataset.tracks)
    result["fold"] = fold.index
    result["variance_agreement"] = agreement["pearson"]
    result["score"] = score(result["metrics"], profile)
    return result


def summarise(per_fold: list[dict], profile: str | os.PathLike = "evalrs2022") -> dict:
    """Means over folds, the SCORE of the means (as the challenge computed it), consistency and
    the mean variance agreement."""
    means = {m: float(np.mean([f["metrics"][m] for f in per_fold])) for m in METRICS}
    stand_in = {f["stand_in"] for f in per_fold}
    agreement = [f["variance_agreement"] for f in per_fold if math.isfinite(f["variance_agreement"])]
    return {
        "metrics": means,
        "score": score(means, profile),
        "consistency": consistency([f["metrics"] for f in per_fold]),
        "variance_agreement": float(np.mean(agreement)) if agreement else float("nan"),
        "stand_in": None if stand_in == {None} else any(s for s in stand_in),
        "folds": len(per_fold),
    }


def run_protocol(
    make_recommender: Callable[[], object],
    dataset: Dataset,
    config: FoldConfig = FoldConfig(),
    vectors_for: Callable[[Fold], TrackVectors | None] | None = None,
    profile: str | os.PathLike = "evalrs2022",
    k: int = K,
    on_fold: Callable[[dict], None] | None = None,
) -> dict:
    """Fit a fresh recommender on every fold's training rows and evaluate its predictions.

    ``vectors_for(fold)`` supplies song2vec per fold (default: the official file of the data
    set if present, else a stand-in trained on the fold). Returns ``{"folds": [...],
    "summary": {...}, "profile": {...}, "protocol": {...}}``.
    """
    from tripletlit.evaluation.song2vec import fold_vectors

    profile_obj = load_profile(profile)
    if vectors_for is None:
        def vectors_for(fold: Fold) -> TrackVectors:
            return fold_vectors(None, fold.train, official=dataset.song2vec)
    per_fold = []
    for fold in make_folds(dataset.events, config):
        recommender = make_recommender().fit(fold.train, dataset.tracks)
        predictions = recommender.recommend(fold.test["user_id"].to_numpy(), k)
        result = evaluate(predictions, fold, dataset, vectors_for(fold), profile_obj, k)
        per_fold.append(result)
        if on_fold is not None:
            on_fold(result)
    return {
        "folds": per_fold,
        "summary": summarise(per_fold, profile_obj),
        "profile": profile_obj.as_dict(),
        "protocol": {"k": k, **config.__dict__},
        "notes": [STAND_IN_NOTE] if any(f["stand_in"] for f in per_fold) else [],
    }


def _jsonable(value):
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return None  # per-user arrays are not part of metrics.json
    if isinstance(value, (np.floating, float)):
        return None if not math.isfinite(float(value)) else float(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    return value


def write_metrics(result: dict, path: str | os.PathLike) -> Path:
    """Write a result as strict JSON (NaN -> null) atomically; returns the path."""
    path = Path(path)
    write_text_atomic(path, json.dumps(_jsonable(result), indent=1, allow_nan=False))
    return path

