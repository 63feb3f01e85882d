"""The neighbour-refresh callback: recompute the negative pools at the start of every epoch.

Schedule and state only; the maths lives in :func:`tripletlit.sampling.neighbour_pools`.
Epoch 1 uses the initial (e.g. word2vec) user vectors, each later epoch the current ones.
Under DDP rank 0 computes the pools and broadcasts them, so every rank samples from the same
pools. The state kept in checkpoints is the refresh history (epoch, fallback counts, mean pool
size); the pools themselves are recomputed from the checkpointed embeddings on resume.
"""

from __future__ import annotations

import lightning as L
import numpy as np

from tripletlit.sampling import neighbour_pools


class NeighbourRefresh(L.Callback):
    """Set ``pl_module.pools`` from the ``neighbours`` nearest users at each epoch start."""

    def __init__(self, neighbours: int = 5, direction: str = "closest", extra_neighbours: int = 50,
                 block_size: int = 4096):  # fmt: skip
        self.neighbours, self.direction = neighbours, direction
        self.extra_neighbours, self.block_size = extra_neighbours, block_size
        self.history: list[dict] = []

    def refresh(self, pl_module) -> dict:
        pools = neighbour_pools(
            pl_module.interactions, pl_module.model.users.weight, self.neighbours, self.direction,
            self.extra_neighbours, self.block_size,
        )  # fmt: skip
        pl_module.pools = pools
        return {
            "fallback_more_neighbours": pools.fallback_more,
            "fallback_uniform": pools.fallback_uniform,
            "mean_pool_size": float(np.mean(pools.sizes())),
        }

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module) -> None:
        if trainer.world_size > 1:
            stats = self.refresh(pl_module) if trainer.global_rank == 0 else None
            pl_module.pools = trainer.strategy.broadcast(pl_module.pools, src=0)
            stats = trainer.strategy.broadcast(stats, src=0)
        else:
            stats = self.refresh(pl_module)
        self.history.append({"epoch": trainer.current_epoch, **stats})
        for name, value in stats.items():
            pl_module.log(f"sampling/{name}", float(value), on_step=False, on_epoch=True, rank_zero_only=True)

    def state_dict(self) -> dict:
        return {"history": list(self.history), "neighbours": self.neighbours, "direction": self.direction}

    def load_state_dict(self, state_dict: dict) -> None:
        self.history = list(state_dict.get("history", []))
