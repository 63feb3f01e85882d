"""The model: users and tracks as rows of two tables in ONE embedding space, cosine scoring.

A plain ``nn.Module`` that knows no loss, trial or config (the LightningModule wires those).
No biases, no side features, no normalisation of the parameters (``method.md`` section 1).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn

from tripletlit import memory
from tripletlit.ranking import stochastic_top_k, top_k


class TripletMF(nn.Module):
    """``users``: (n_users, d) and ``tracks``: (n_tracks, d) embedding tables.

    ``sparse=True`` makes their gradients sparse (only the rows of a batch), which pays off on
    CPU with a lazy Adam; DDP with NCCL needs dense gradients.
    """

    def __init__(self, n_users: int, n_tracks: int, dim: int, sparse: bool = False,
                 user_init: np.ndarray | None = None, track_init: np.ndarray | None = None):  # fmt: skip
        super().__init__()
        # tables in memory advised for huge pages (training reads random rows; see memory.py),
        # filled below rather than by nn.Embedding's normal_ init
        self.users = nn.Embedding(n_users, dim, sparse=sparse, _weight=memory.empty((n_users, dim)))
        self.tracks = nn.Embedding(n_tracks, dim, sparse=sparse, _weight=memory.empty((n_tracks, dim)))
        with torch.no_grad():
            for table, init in ((self.users, user_init), (self.tracks, track_init)):
                if init is None:
                    bound = table.num_embeddings ** -0.5
                    table.weight.uniform_(-bound, bound)
                else:
                    if init.shape != tuple(table.weight.shape):
                        raise ValueError(f"initial table has shape {init.shape}, expected {tuple(table.weight.shape)}")
                    table.weight.copy_(torch.from_numpy(np.ascontiguousarray(init)))

    @property
    def dim(self) -> int:
        return self.users.embedding_dim

    def scores(self, users: torch.Tensor) -> torch.Tensor:
        """Cosine of each user in ``users`` (B,) with every track: (B, n_tracks)."""
        u = nn.functional.normalize(self.users(users), dim=1)
        return u @ nn.functional.normalize(self.tracks.weight, dim=1).T

    @torch.no_grad()
    def recommend(
        self,
        users: np.ndarray,
        k: int = 100,
        seen: sp.csr_matrix | None = None,
        horizon: int = 5,
        stochastic: bool = True,
        rng: np.random.Generator | None = None,
        batch_size: int = 1024,
    ) -> np.ndarray:
        """(len(users), k) track indices, best first, excluding ``seen`` (CSR users x tracks).

        Deterministic: the cosine top-k. Stochastic (the paper): the top ``k * horizon`` by
        cosine, then ``k`` drawn without replacement with p(rank r) ~ 1/(r + 1), in rank order.
        """
        unit_users = nn.functional.normalize(self.users.weight, dim=1)
        unit_tracks = nn.functional.normalize(self.tracks.weight, dim=1)
        depth = k * horizon if stochastic else k
        ranked, _ = top_k(unit_users, unit_tracks, depth, users=np.asarray(users), seen=seen, batch_size=batch_size)
        if not stochastic:
            return ranked
        return stochastic_top_k(ranked, k, rng if rng is not None else np.random.default_rng(0))
