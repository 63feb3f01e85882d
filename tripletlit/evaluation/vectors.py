"""Track vectors looked up by track id (song2vec, official or stand-in), vectorised."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class TrackVectors:
    """Vectors of a vocabulary of track ids.

    ``ids``: (V,) int64, sorted ascending and unique; ``vectors``: (V, d) float32 in the same
    order. ``stand_in`` is True for vectors trained by tripletlit (not the official
    ``song2vec.wv``), whose BLW/LD are not comparable with the 2022 leaderboard constants.
    """

    ids: np.ndarray
    vectors: np.ndarray
    stand_in: bool = True

    @classmethod
    def from_mapping(cls, ids, vectors, stand_in: bool = True) -> TrackVectors:
        """Build from ids in any order (sorted here); ids must be unique."""
        ids = np.asarray(ids, dtype=np.int64)
        order = np.argsort(ids, kind="stable")
        return cls(ids[order], np.asarray(vectors, dtype=np.float32)[order], stand_in)

    def lookup(self, track_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Row index of each track id and whether it is in the vocabulary (any shape)."""
        track_ids = np.asarray(track_ids, dtype=np.int64)
        pos = np.searchsorted(self.ids, track_ids)
        pos = np.minimum(pos, max(len(self.ids) - 1, 0))
        found = (self.ids[pos] == track_ids) if len(self.ids) else np.zeros(track_ids.shape, bool)
        return pos, found

    @property
    def unit(self) -> np.ndarray:
        """L2-normalised vectors (zero vectors stay zero)."""
        if not hasattr(self, "_unit"):
            norms = np.linalg.norm(self.vectors, axis=1, keepdims=True)
            self._unit = np.divide(self.vectors, norms, out=np.zeros_like(self.vectors), where=norms > 0)
        return self._unit
