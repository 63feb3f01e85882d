"""The nine EvalRS 2022 metrics at k = 100, vectorised over users.

``hit_u = 1`` when the held-out track g_u is among the user's k predictions; miss_u = 1 - hit_u.
MRED over a partition into slices is ``- mean_s |MR(s) - MR(all)|`` over the non-empty slices
(higher is better, 0 = equal miss rates). Definitions follow ``../shared/spec/evalrs2022.md``
sections 3-4; where the reference code produced NaN (latent diversity with out-of-vocabulary
tracks) those users are skipped instead, and BLW/LD skip users whose tracks have no vector.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from tripletlit.data import slices as sl
from tripletlit.errors import TripletlitError
from tripletlit.evaluation.vectors import TrackVectors

K = 100
PAD = -1
LD_POSITIONS = 20
LD_DIVERSITY_WEIGHT, LD_BIAS_WEIGHT = 0.3, 0.7
METRICS = (
    "HIT_RATE",
    "MRR",
    "MRED_COUNTRY",
    "MRED_USER_ACTIVITY",
    "MRED_TRACK_POPULARITY",
    "MRED_ARTIST_POPULARITY",
    "MRED_GENDER",
    "BEING_LESS_WRONG",
    "LATENT_DIVERSITY",
)
SLICE_METRICS = METRICS[2:7]


@dataclass
class FoldSlices:
    """What the metrics need to know about the test users of a fold, in test order.

    All arrays have one entry per test user: ``user_id``, ``target`` (held-out track id),
    ``country`` (MRED_COUNTRY slice or None = excluded), ``gender`` (slice or None = dropped),
    ``activity``/``track_popularity``/``artist_popularity`` (np.digitize bin indices) and
    ``labels`` giving the readable name of every bin.
    """

    user_id: np.ndarray
    target: np.ndarray
    country: np.ndarray
    gender: np.ndarray
    activity: np.ndarray
    track_popularity: np.ndarray
    artist_popularity: np.ndarray

    def __len__(self) -> int:
        return len(self.user_id)


def fold_slices(train: pd.DataFrame, test: pd.DataFrame, users: pd.DataFrame, tracks: pd.DataFrame) -> FoldSlices:
    """Slice keys of every test user of a fold (``test``: ``user_id``, ``track_id``).

    Activity = the user's training plays; track popularity = training plays of g_u; artist
    popularity = training plays of g_u's artist (taken from the tracks table).
    """
    counts = train["user_track_count"].to_numpy()
    activity = sl.plays_by(train["user_id"].to_numpy(), counts)
    track_plays = sl.plays_by(train["track_id"].to_numpy(), counts)
    artist_plays = sl.plays_by(train["artist_id"].to_numpy(), counts)
    user_id = test["user_id"].to_numpy()
    target = test["track_id"].to_numpy()
    meta = users.set_index("user_id").reindex(user_id)
    target_artist = tracks.set_index("track_id")["artist_id"].reindex(target).to_numpy()
    if np.isnan(target_artist.astype(np.float64)).any():
        missing = target[np.isnan(target_artist.astype(np.float64))][0]
        raise TripletlitError(f"test track {missing} is not in the tracks table; use the data set the folds were made from")
    return FoldSlices(
        user_id=user_id,
        target=target,
        country=sl.country_slice(meta["country"].to_numpy(dtype=object)),
        gender=sl.gender_slice(meta["gender"].to_numpy(dtype=object)),
        activity=sl.popularity_bins(activity.reindex(user_id, fill_value=0).to_numpy(), sl.USER_ACTIVITY_EDGES),
        track_popularity=sl.popularity_bins(track_plays.reindex(target, fill_value=0).to_numpy(), sl.TRACK_POPULARITY_EDGES),
        artist_popularity=sl.popularity_bins(
            artist_plays.reindex(target_artist.astype(np.int64), fill_value=0).to_numpy(), sl.ARTIST_POPULARITY_EDGES
        ),
    )


def check_predictions(predictions: np.ndarray, n_users: int, k: int = K) -> np.ndarray:
    """Validate a (n_users, k) integer matrix of track ids (PAD = -1 allowed, no duplicates)."""
    predictions = np.asarray(predictions)
    if predictions.ndim != 2 or predictions.shape != (n_users, k):
        raise TripletlitError(f"predictions must have shape ({n_users} users, {k}) but have {predictions.shape}")
    if predictions.dtype.kind not in "iu":
        raise TripletlitError(f"predictions must be integer track ids, got dtype {predictions.dtype}")
    predictions = predictions.astype(np.int64, copy=False)
    bad = predictions < PAD
    if bad.any():
        row, col = np.argwhere(bad)[0]
        raise TripletlitError(f"predictions row {row}, position {col}: track id {predictions[row, col]} is negative (only -1 pads)")
    ordered = np.sort(predictions, axis=1)
    dup = (ordered[:, 1:] == ordered[:, :-1]) & (ordered[:, 1:] != PAD)
    if dup.any():
        row = int(np.flatnonzero(dup.any(axis=1))[0])
        value = ordered[row, 1:][dup[row]][0]
        raise TripletlitError(f"predictions row {row}: track {value} appears twice; each user needs {k} distinct tracks")
    return predictions


def _mred(miss: np.ndarray, keys: np.ndarray, take_part: np.ndarray | None = None) -> tuple[float, dict]:
    """``-mean_s |MR(s) - MR(all)|`` and each slice's (users, miss rate).

    ``keys`` is the slice of each user (None = not in any slice); ``take_part`` restricts the
    population of both MR(s) and MR(all) (used by MRED_COUNTRY).
    """
    if take_part is not None:
        miss, keys = miss[take_part], keys[take_part]
    if len(miss) == 0:
        return float("nan"), {}
    overall = miss.mean()
    keyed = pd.Series(keys, dtype=object)
    has_key = keyed.notna().to_numpy()
    groups = pd.Series(miss[has_key]).groupby(keyed[has_key].astype(str).to_numpy())
    rates = groups.mean()
    detail = {str(s): {"users": int(n), "miss_rate": float(r)} for s, n, r in zip(rates.index, groups.size(), rates)}
    if len(rates) == 0:
        return float("nan"), detail
    return float(-np.abs(rates.to_numpy() - overall).mean()), detail


def _cosine_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    na, nb = np.linalg.norm(a, axis=-1), np.linalg.norm(b, axis=-1)
    return np.einsum("...d,...d->...", a, b) / np.maximum(na * nb, 1e-12)


def being_less_wrong(predictions: np.ndarray, target: np.ndarray, hit: np.ndarray, vectors: TrackVectors) -> float:
    """Mean cosine(g_u, top-1) over missed users whose two tracks have vectors."""
    top1 = predictions[:, 0]
    (gi, gf), (ti, tf) = vectors.lookup(target), vectors.lookup(top1)
    use = (~hit) & gf & tf & (top1 != PAD)
    if not use.any():
        return float("nan")
    g = vectors.vectors[gi[use]].astype(np.float64)
    return float(_cosine_rows(g, vectors.vectors[ti[use]].astype(np.float64)).mean())


def latent_diversity(predictions: np.ndarray, target: np.ndarray, vectors: TrackVectors) -> float:
    """mean_u (0.3 * diversity_u - 0.7 * bias_u) over positions 1-20 (in-vocabulary ones).

    m_u = sum of the in-vocabulary vectors of the top 20; diversity_u = mean_j (1 - cos(m_u, v_j));
    bias_u = 1 - cos(m_u, v(g_u)). Users with no in-vocabulary track in their top 20, or whose
    g_u has no vector, are skipped (the reference code produced NaN for them).
    """
    if len(vectors.ids) == 0:
        return float("nan")
    top = predictions[:, :LD_POSITIONS]
    idx, found = vectors.lookup(top)
    found &= top != PAD
    v = np.where(found[..., None], vectors.vectors[idx], 0.0).astype(np.float64)  # (n, 20, d)
    m = v.sum(axis=1)  # (n, d)
    gi, gf = vectors.lookup(target)
    use = gf & found.any(axis=1) & (np.linalg.norm(m, axis=1) > 0)
    if not use.any():
        return float("nan")
    v, m, found = v[use], m[use], found[use]
    cos = _cosine_rows(m[:, None, :], v)  # (n, 20)
    diversity = np.where(found, 1.0 - cos, 0.0).sum(axis=1) / found.sum(axis=1)
    bias = 1.0 - _cosine_rows(m, vectors.vectors[gi[use]].astype(np.float64))
    return float((LD_DIVERSITY_WEIGHT * diversity - LD_BIAS_WEIGHT * bias).mean())


def compute_metrics(predictions: np.ndarray, fold: FoldSlices, vectors: TrackVectors | None = None, k: int = K) -> dict:
    """All nine metrics of one fold.

    ``predictions``: (n_test_users, k) track ids in the order of ``fold.user_id``, best first.
    Returns ``{"metrics": {NAME: value}, "slices": {MRED_NAME: {slice: {users, miss_rate}}},
    "miss_rate": overall, "users": n, "stand_in": bool | None}``; BLW/LD are NaN without vectors.
    """
    predictions = check_predictions(predictions, len(fold), k)
    match = predictions == fold.target[:, None]
    hit = match.any(axis=1)
    rank = match.argmax(axis=1) + 1
    miss = (~hit).astype(np.float64)
    metrics = {"HIT_RATE": float(hit.mean()), "MRR": float(np.where(hit, 1.0 / rank, 0.0).mean())}
    details = {}
    labels = {
        "MRED_USER_ACTIVITY": sl.bin_labels(sl.USER_ACTIVITY_EDGES),
        "MRED_TRACK_POPULARITY": sl.bin_labels(sl.TRACK_POPULARITY_EDGES),
        "MRED_ARTIST_POPULARITY": sl.bin_labels(sl.ARTIST_POPULARITY_EDGES),
    }
    country = fold.country
    metrics["MRED_COUNTRY"], details["MRED_COUNTRY"] = _mred(miss, country, pd.notna(country))
    for name, bins in (
        ("MRED_USER_ACTIVITY", fold.activity),
        ("MRED_TRACK_POPULARITY", fold.track_popularity),
        ("MRED_ARTIST_POPULARITY", fold.artist_popularity),
    ):
        keys = np.asarray(labels[name], dtype=object)[bins]
        metrics[name], details[name] = _mred(miss, keys)
    metrics["MRED_GENDER"], details["MRED_GENDER"] = _mred(miss, fold.gender)
    if vectors is not None:
        metrics["BEING_LESS_WRONG"] = being_less_wrong(predictions, fold.target, hit, vectors)
        metrics["LATENT_DIVERSITY"] = latent_diversity(predictions, fold.target, vectors)
    else:
        metrics["BEING_LESS_WRONG"] = metrics["LATENT_DIVERSITY"] = float("nan")
    return {
        "metrics": {name: metrics[name] for name in METRICS},
        "slices": details,
        "miss_rate": float(miss.mean()),
        "users": len(fold),
        "stand_in": None if vectors is None else bool(vectors.stand_in),
    }
