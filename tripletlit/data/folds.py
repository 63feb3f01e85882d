"""The EvalRS 2022 folds ("bootstrapped nested cross-validation"), vectorised.

For fold f: sample ``user_fraction`` of the unique users with ``random_state = seed + f``
(folds are independent and may overlap), keep their events, apply an iterative k-core filter
(tracks with >= ``min_count`` distinct users, then users with >= ``min_count`` rows, until
nothing changes or ``max_passes``), then hold out one row per user: a uniformly random one
(``strategy="random"``, the 2022 protocol) or the latest one (``strategy="last"``,
leave-last-out as in EvalRS 2023). All other rows of the fold's users are its training set.

Folds are written as ``OUT/fold{f}/train.parquet`` (the six event columns) and
``OUT/fold{f}/test.parquet`` (``user_id``, ``track_id``) plus ``OUT/folds.json`` recording
every parameter and the seed, so that any tool can read them.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from tripletlit.data.schema import EVENT_COLUMNS
from tripletlit.errors import DataError, TripletlitError
from tripletlit.files import atomic_dir, write_text_atomic

STRATEGIES = ("random", "last")
MANIFEST = "folds.json"


@dataclass(frozen=True)
class FoldConfig:
    """Parameters of the protocol; the defaults are EvalRS 2022's."""

    n_folds: int = 4
    user_fraction: float = 0.25
    min_count: int = 10
    max_passes: int = 10
    strategy: str = "random"
    seed: int = 0

    def __post_init__(self):
        if self.n_folds < 1:
            raise TripletlitError(f"--folds must be at least 1, got {self.n_folds}")
        if not 0.0 < self.user_fraction <= 1.0:
            raise TripletlitError(f"--user-fraction must be in (0, 1], got {self.user_fraction}")
        if self.min_count < 1:
            raise TripletlitError(f"--min-count must be at least 1, got {self.min_count}")
        if self.strategy not in STRATEGIES:
            raise TripletlitError(f"--strategy must be one of {', '.join(STRATEGIES)}, got {self.strategy!r}")


@dataclass
class Fold:
    """One fold: ``train`` (six event columns) and ``test`` (``user_id``, ``track_id``)."""

    index: int
    train: pd.DataFrame
    test: pd.DataFrame
    k_core_passes: int
    untested_users: int = 0


def sample_users(user_ids: np.ndarray, fraction: float, random_state: int) -> np.ndarray:
    """``fraction`` of the distinct ``user_ids``, sampled without replacement (sorted)."""
    unique = np.unique(user_ids)
    n = int(round(fraction * len(unique)))
    rng = np.random.default_rng(random_state)
    return np.sort(rng.choice(unique, size=n, replace=False))


def k_core(users: np.ndarray, tracks: np.ndarray, min_count: int, max_passes: int) -> tuple[np.ndarray, int]:
    """Boolean mask of the rows kept by the iterative k-core filter, and the passes it took.

    Each pass keeps tracks with >= ``min_count`` distinct users (rows are distinct
    (user, track) pairs, so rows per track = distinct users), then users with >= ``min_count``
    rows; it stops when a pass removes nothing or after ``max_passes`` passes.
    """
    u = pd.factorize(users)[0]
    t = pd.factorize(tracks)[0]
    keep = np.ones(len(users), dtype=bool)
    passes = 0
    while passes < max_passes:
        passes += 1
        before = int(keep.sum())
        keep &= (np.bincount(t, weights=keep, minlength=t.max(initial=-1) + 1) >= min_count)[t]
        keep &= (np.bincount(u, weights=keep, minlength=u.max(initial=-1) + 1) >= min_count)[u]
        if int(keep.sum()) == before:
            break
    return keep, passes


def hold_out(users: np.ndarray, timestamps: np.ndarray, strategy: str, rng: np.random.Generator) -> np.ndarray:
    """Index of the held-out row of each user: random, or latest (ties broken at random)."""
    noise = rng.random(len(users))
    keys = (noise, users) if strategy == "random" else (noise, -timestamps.astype(np.float64), users)
    order = np.lexsort(keys)
    first = np.concatenate([[True], users[order][1:] != users[order][:-1]]) if len(order) else order
    return order[first]


def make_fold(events: pd.DataFrame, config: FoldConfig, f: int) -> Fold:
    """Build fold ``f`` of ``events`` (one row per (user, track), the six event columns)."""
    random_state = config.seed + f
    chosen = sample_users(events["user_id"].to_numpy(), config.user_fraction, random_state)
    rows = np.flatnonzero(np.isin(events["user_id"].to_numpy(), chosen, assume_unique=False))
    users = events["user_id"].to_numpy()[rows]
    tracks = events["track_id"].to_numpy()[rows]
    keep, passes = k_core(users, tracks, config.min_count, config.max_passes)
    rows = rows[keep]
    if len(rows) == 0:
        raise DataError(
            f"fold {f}: no events survive the {config.min_count}-core filter on "
            f"{config.user_fraction:.0%} of the users; lower --min-count or raise --user-fraction"
        )
    fold_events = events.iloc[rows]
    rng = np.random.default_rng(random_state)
    test_rows = hold_out(
        fold_events["user_id"].to_numpy(), fold_events["timestamp"].to_numpy(), config.strategy, rng
    )
    is_test = np.zeros(len(fold_events), dtype=bool)
    is_test[test_rows] = True
    # A held-out track must be known from training and a test user must have training rows;
    # otherwise the row goes back to training and the user is not tested (rare at k >= 10).
    train_tracks = fold_events["track_id"].to_numpy()[~is_test]
    train_users = fold_events["user_id"].to_numpy()[~is_test]
    unseen = ~np.isin(fold_events["track_id"].to_numpy()[test_rows], train_tracks)
    unseen |= ~np.isin(fold_events["user_id"].to_numpy()[test_rows], train_users)
    is_test[test_rows[unseen]] = False
    train = fold_events[~is_test].reset_index(drop=True)[list(EVENT_COLUMNS)]
    test = fold_events[is_test][["user_id", "track_id"]].sort_values("user_id").reset_index(drop=True)
    return Fold(f, train, test, passes, int(unseen.sum()))


def make_folds(events: pd.DataFrame, config: FoldConfig = FoldConfig()) -> Iterator[Fold]:
    """Yield the folds of ``events`` one at a time (each is independent of the others)."""
    for f in range(config.n_folds):
        yield make_fold(events, config, f)


def fold_stats(fold: Fold) -> dict:
    """Sizes a user checks a fold by (the real EvalRS fold: ~29.7K users, ~6.9M rows, ~228K tracks)."""
    per_user = fold.train.groupby("user_id").size()
    per_track = fold.train.groupby("track_id").size()
    return {
        "fold": fold.index,
        "test_users": len(fold.test),
        "train_rows": len(fold.train),
        "train_tracks": int(fold.train["track_id"].nunique()),
        "rows_per_user_min": int(per_user.min()),
        "rows_per_user_mean": float(per_user.mean()),
        "rows_per_user_max": int(per_user.max()),
        "users_per_track_min": int(per_track.min()),
        "users_per_track_mean": float(per_track.mean()),
        "users_per_track_max": int(per_track.max()),
        "k_core_passes": fold.k_core_passes,
        "untested_users": fold.untested_users,
    }


def write_folds(
    events: pd.DataFrame,
    out: str | os.PathLike,
    config: FoldConfig = FoldConfig(),
    source: str | None = None,
    on_fold: Callable[[Fold], None] | None = None,
) -> list[dict]:
    """Make every fold and write them under ``out`` atomically; returns each fold's stats."""
    out = Path(out)
    stats = []
    with atomic_dir(out) as tmp:
        for fold in make_folds(events, config):
            folder = tmp / f"fold{fold.index}"
            folder.mkdir()
            pq.write_table(pa.Table.from_pandas(fold.train, preserve_index=False), folder / "train.parquet")
            pq.write_table(pa.Table.from_pandas(fold.test, preserve_index=False), folder / "test.parquet")
            stats.append(fold_stats(fold))
            if on_fold is not None:
                on_fold(fold)
        manifest = {"protocol": "evalrs2022", **asdict(config), "source": source, "folds": stats}
        write_text_atomic(tmp / MANIFEST, json.dumps(manifest, indent=1))
    return stats


def read_manifest(folds_dir: str | os.PathLike) -> dict:
    """The ``folds.json`` written by :func:`write_folds`."""
    path = Path(folds_dir) / MANIFEST
    if not path.is_file():
        raise DataError(f"{path}: not found; create the folds with `tripletlit data split DATA --out {folds_dir}`")
    return json.loads(path.read_text())


def load_fold(folds_dir: str | os.PathLike, f: int) -> Fold:
    """Read fold ``f`` written by :func:`write_folds`."""
    manifest = read_manifest(folds_dir)
    if not 0 <= f < manifest["n_folds"]:
        raise DataError(f"{folds_dir}: fold {f} does not exist (folds 0..{manifest['n_folds'] - 1})")
    folder = Path(folds_dir) / f"fold{f}"
    try:
        train = pq.read_table(folder / "train.parquet").to_pandas()
        test = pq.read_table(folder / "test.parquet").to_pandas()
    except (OSError, pa.ArrowException) as exc:
        raise DataError(f"{folder}: unreadable fold ({exc}); recreate it with `tripletlit data split`") from None
    return Fold(f, train, test, manifest["folds"][f]["k_core_passes"])
