"""The in-memory data set: the three EvalRS tables, validated."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd


@dataclass
class Dataset:
    """The EvalRS tables of one data set, as validated by :mod:`tripletlit.data.schema`.

    ``events``: one row per (user, track) with ``user_id, artist_id, album_id, track_id,
    timestamp, user_track_count``; ``tracks``: one row per track; ``users``: one row per user.
    ``song2vec`` is the path of an official ``song2vec.wv`` shipped with the data, if any.
    """

    events: pd.DataFrame
    tracks: pd.DataFrame
    users: pd.DataFrame
    name: str = "dataset"
    source: Path | None = None
    song2vec: Path | None = None
    meta: dict = field(default_factory=dict)

    @property
    def n_users(self) -> int:
        return len(self.users)

    @property
    def n_tracks(self) -> int:
        return len(self.tracks)

    @property
    def n_artists(self) -> int:
        return int(self.tracks["artist_id"].nunique())

    def __repr__(self) -> str:
        return (
            f"Dataset({self.name!r}, events={len(self.events):,}, users={self.n_users:,}, "
            f"tracks={self.n_tracks:,}, artists={self.n_artists:,})"
        )
