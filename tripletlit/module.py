"""The LightningModule: wires the model, the triplet sampler, the composite loss and Adam.

The dataloader yields only batches of training-row indices; the triplets of a batch are drawn
inside ``training_step`` from the negative pools current at that moment, so a refresh by
:class:`~tripletlit.callbacks.NeighbourRefresh` at the start of an epoch takes effect for that
epoch whatever Lightning's order of dataloader reloads and hooks.
"""

from __future__ import annotations

from collections.abc import Callable

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from tripletlit.errors import TripletlitError
from tripletlit.fused import FusedAdam
from tripletlit.losses import TERMS, composite_loss
from tripletlit.model import TripletMF
from tripletlit.sampling import Interactions, Pools, Triplets, draw_triplets


class RowIndex(Dataset):
    """The training rows 0..n-1, fetched a whole batch at a time (no per-row Python)."""

    def __init__(self, n_rows: int):
        self.n_rows = n_rows

    def __len__(self) -> int:
        return self.n_rows

    def __getitem__(self, i: int) -> int:
        return i

    def __getitems__(self, indices) -> torch.Tensor:
        return torch.as_tensor(np.asarray(indices), dtype=torch.int64)


class EpochBatches(Sampler):
    """Global batches of a fresh permutation of the rows every epoch.

    The permutation depends only on (seed, epoch) - Lightning calls :meth:`set_epoch` - so a
    resumed run sees the same batches. Each step yields the GLOBAL batch: ``world_size *
    batch_size`` consecutive rows of the permutation (the last one shorter). Every rank
    receives it, draws the triplets of the whole global batch with the same seed and trains on
    its own part (:meth:`part`: every ``world_size``-th row from ``rank``; parts differ by one
    row at most, and the module scales each rank's loss so that DDP's gradient average is the
    mean over the global batch). So a run on N devices with batch B takes the same steps as
    one process with batch N x B, without padding or dropped rows.
    """

    def __init__(self, n_rows: int, batch_size: int, seed: int = 0, world_size: int = 1):
        self.n_rows, self.batch_size, self.seed = n_rows, batch_size, seed
        self.world_size, self.epoch = world_size, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return -(-self.n_rows // (self.batch_size * self.world_size))

    def __iter__(self):
        order = np.random.default_rng([self.seed, self.epoch]).permutation(self.n_rows)
        step = self.batch_size * self.world_size
        for start in range(0, self.n_rows, step):
            yield order[start : start + step]

    @staticmethod
    def part(rows, rank: int, world_size: int):
        """The rows of a global batch that rank ``rank`` of ``world_size`` trains on."""
        return rows[rank::world_size]


def _identity(batch):
    return batch


class TripletLitModule(L.LightningModule):
    """Training of :class:`~tripletlit.model.TripletMF` with the paper's composite loss.

    ``interactions``: the fold's training rows as indices; ``row_weight``: (N,) per-row weight;
    ``loss``: lambda_user, lambda_song and the three margins; ``optimizer``: "adam" (autograd,
    dense Adam: GPUs, DDP), "sparse_adam" (autograd, torch's lazy SparseAdam; needs ``model``
    built with ``sparse=True``) or "fused" (one CPU: :class:`~tripletlit.fused.FusedAdam`
    computes the gradients itself and applies SparseAdam's update, ``fused_batches`` batches of
    ``batch_size`` rows per Lightning step, with Lightning's manual optimisation);
    ``validate``: optional callable(model) -> metric dict, logged as ``val/<NAME>`` each epoch.
    """

    def __init__(
        self,
        model: TripletMF,
        interactions: Interactions,
        row_weight: np.ndarray,
        lambda_user: float = 2.5,
        lambda_song: float = 2.5,
        margins: tuple[float, float, float] = (0.25, 0.25, 0.25),
        lr: float = 1e-3,
        batch_size: int = 512,
        optimizer: str = "adam",
        seed: int = 0,
        validate: Callable[[TripletMF], dict] | None = None,
        fused_batches: int = 64,
    ):
        super().__init__()
        if optimizer not in ("adam", "sparse_adam", "fused"):
            raise ValueError(f"unknown optimizer {optimizer!r}")
        # the fused optimizer computes its own gradients: Lightning must not run backward
        self.automatic_optimization = optimizer != "fused"
        self.fused_batches = fused_batches if optimizer == "fused" else 1
        self.model = model
        self.interactions = interactions
        self.row_weight_np = np.ascontiguousarray(row_weight, dtype=np.float32)
        self.row_weight = torch.from_numpy(self.row_weight_np)
        self.lambda_user, self.lambda_song, self.margins = lambda_user, lambda_song, tuple(margins)
        self.lr, self.batch_size, self.optimizer_name, self.seed = lr, batch_size, optimizer, seed
        self.validate = validate
        self.pools: Pools | None = None
        self._pair_keys = interactions.pair_keys()
        self.hparams.update(
            {"lambda_user": lambda_user, "lambda_song": lambda_song, "margins": list(margins), "lr": lr,
             "batch_size": batch_size, "optimizer": optimizer, "seed": seed, "embedding_dim": model.dim,
             "fused_batches": self.fused_batches,
             "n_users": interactions.n_users, "n_tracks": interactions.n_tracks}
        )  # fmt: skip

    # ---------------------------------------------------------------------------- data ---
    def train_dataloader(self) -> DataLoader:
        # the fused path takes fused_batches consecutive batches per Lightning step: the same rows
        # in the same order, one Adam step per batch_size rows
        chunk = self.batch_size * self.fused_batches
        batches = EpochBatches(len(self.row_weight), chunk, self.seed, self._world_size())
        return DataLoader(RowIndex(len(self.row_weight)), batch_sampler=batches, collate_fn=_identity)

    def _world_size(self) -> int:
        return self.trainer.world_size if self._trainer is not None else 1

    def triplets(self, rows: np.ndarray, batch_idx: int):
        """Draw the triplets of a (global) batch, seeded by seed, epoch and batch: resumable, and
        the same on every rank."""
        if self.pools is None:
            raise RuntimeError("negative pools are not set: add the NeighbourRefresh callback to the Trainer")
        rng = np.random.default_rng([self.seed, self.current_epoch, batch_idx])
        return draw_triplets(self.interactions, self.pools, rows, rng, self._pair_keys)

    def _check_finite(self, total: float) -> None:
        if not np.isfinite(total):
            raise TripletlitError(
                f"the training loss became {total} at epoch {self.current_epoch}; "
                "lower train.lr or the weight coefficients"
            )

    # ------------------------------------------------------------------------ training ---
    def training_step(self, batch: torch.Tensor, batch_idx: int) -> torch.Tensor:
        if not self.automatic_optimization:
            return self._fused_step(batch, batch_idx)
        rows = batch.cpu().numpy()
        t = self.triplets(rows, batch_idx)
        world, n_global = self._world_size(), len(rows)
        if world > 1:  # this rank's part of the global batch
            rows = EpochBatches.part(rows, self.global_rank, world)
            t = Triplets(*(EpochBatches.part(a, self.global_rank, world) for a in vars(t).values()))
        device = self.model.users.weight.device
        users, tracks = self.model.users, self.model.tracks

        def idx(a):
            return torch.from_numpy(a).to(device)

        total, terms = composite_loss(
            users(idx(t.user)), tracks(idx(t.positive)), tracks(idx(t.negative)),
            users(idx(t.user_positive)), users(idx(t.user_negative)), tracks(idx(t.song_anchor)),
            weight=self.row_weight[torch.from_numpy(rows)].to(device),
            lambda_user=self.lambda_user, lambda_song=self.lambda_song, margins=self.margins,
        )  # fmt: skip
        self._check_finite(total.item())
        self._log_losses(total, terms, len(rows))
        # DDP averages the ranks' gradients: weigh each rank's mean by its share of the global
        # batch, so the average is the mean over the global batch even when parts differ by a row
        return total * (world * len(rows) / n_global) if world > 1 else total

    def _fused_step(self, batch: torch.Tensor, batch_idx: int) -> torch.Tensor:
        rows = batch.numpy()
        t = self.triplets(rows, batch_idx)
        optimizer = self.optimizers()  # Lightning's wrapper: its step() counts the global step

        def closure():
            return optimizer.optimizer.train(t, self.row_weight_np[rows], self.batch_size, self.lambda_user,
                                             self.lambda_song, self.margins)  # fmt: skip

        losses = optimizer.step(closure=closure)
        # the chunk's loss: batch means weighted by batch length (the last batch may be short)
        sizes = np.minimum(self.batch_size, len(rows) - self.batch_size * np.arange(len(losses)))
        mean = sizes @ losses / len(rows)
        self._check_finite(float(mean[0]))
        total = torch.tensor(mean[0])
        self._log_losses(total, {name: torch.tensor(mean[i + 1]) for i, name in enumerate(TERMS)}, len(rows))
        return total

    def _log_losses(self, total: torch.Tensor, terms: dict, rows: int) -> None:
        self.log("train/loss", total, on_step=True, on_epoch=True, prog_bar=True, batch_size=rows)
        for name in TERMS:
            self.log(f"train/loss_{name}", terms[name], on_step=False, on_epoch=True, batch_size=rows)

    # ---------------------------------------------------------------------- validation ---
    def val_dataloader(self) -> DataLoader:
        """One pseudo-batch per epoch: validation ranks a fixed sample of test users in one go,
        so Lightning's validation hooks (and Optuna's pruning callback) run once per epoch."""
        return DataLoader([0] if self.validate is not None else [], batch_size=None)

    def validation_step(self, batch, batch_idx: int) -> None:
        for name, value in self.validate(self.model).items():
            self.log(f"val/{name}", float(value), prog_bar=name == "HIT_RATE", batch_size=1)

    def configure_optimizers(self):
        if self.optimizer_name == "fused":
            return FusedAdam([self.model.users.weight, self.model.tracks.weight], lr=self.lr)
        if self.optimizer_name == "sparse_adam":
            return torch.optim.SparseAdam(list(self.model.parameters()), lr=self.lr)
        if self.optimizer_name == "adam":
            return torch.optim.Adam(self.model.parameters(), lr=self.lr)
        raise ValueError(f"unknown optimizer {self.optimizer_name!r}")

    # ------------------------------------------------------------------ checkpointing ---
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        # tensors, not numpy arrays, so Lightning's weights-only loading accepts the checkpoint
        checkpoint["tripletlit"] = {
            "user_ids": torch.from_numpy(np.asarray(self.interactions.user_ids, dtype=np.int64)),
            "track_ids": torch.from_numpy(np.asarray(self.interactions.track_ids, dtype=np.int64)),
            # each user's training tracks, so a checkpoint alone can recommend unseen tracks
            "seen_indptr": torch.from_numpy(np.asarray(self.interactions.user_indptr, dtype=np.int64)),
            "seen_tracks": torch.from_numpy(self.interactions.user_tracks.astype(np.int32)),
        }
