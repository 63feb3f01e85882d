"""Weights & Biases: one W&B run per `fit` fold and per tuning trial, for review.

W&B records, Optuna searches: there is no W&B sweep controller here. Without an API key the
runs are written offline (``wandb/offline-run-*``; upload later with ``wandb sync``); set
``WANDB_MODE`` to override (``disabled`` turns W&B off entirely).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

PROJECT = "tripletlit"


def wandb_mode() -> str:
    """``WANDB_MODE`` if set; else online with an API key (env or netrc), offline without."""
    if os.environ.get("WANDB_MODE"):
        return os.environ["WANDB_MODE"]
    if os.environ.get("WANDB_API_KEY"):
        return "online"
    netrc = Path.home() / ".netrc"
    if netrc.exists() and "api.wandb.ai" in netrc.read_text(errors="ignore"):
        return "online"
    return "offline"


def wandb_logger(name: str, group: str, config: dict, directory: Path, project: str = PROJECT):
    """A Lightning ``WandbLogger`` for one fold or trial (curves: train/*, sampling/*, val/*)."""
    try:
        from lightning.pytorch.loggers import WandbLogger
    except ImportError as exc:  # pragma: no cover - wandb is a dependency
        from tripletlit.errors import TripletlitError

        raise TripletlitError(f"W&B logging needs the wandb package ({exc}); pip install wandb or pass --no-wandb") from None
    directory.mkdir(parents=True, exist_ok=True)
    return WandbLogger(project=project, name=name, group=group, config=config, save_dir=str(directory),
                       mode=wandb_mode(), reinit="finish_previous")  # fmt: skip


def log_summary(summary: dict, objective_values: list[float] | None = None) -> None:
    """Put a protocol summary (metrics, SCORE, consistency) into the current W&B run's summary."""
    import wandb

    if wandb.run is None:
        return
    values = {f"metrics/{k}": v for k, v in summary["metrics"].items() if v is not None and math.isfinite(v)}
    values["SCORE"] = summary["score"]["score"]
    values["variance_agreement"] = summary.get("variance_agreement")
    if objective_values is not None:
        values |= {f"objective_{i}": v for i, v in enumerate(objective_values)}
    wandb.run.summary.update({k: v for k, v in values.items() if v is not None})
    wandb.finish()


def log_report(panels: dict[str, Path], name: str, directory: Path, project: str = PROJECT) -> bool:
    """Log a report's panels as images in a W&B run of their own (job type "report", group =
    ``name``, the run or study it shows). Returns False when W&B is disabled."""
    if wandb_mode() == "disabled":
        return False
    import wandb

    from tripletlit.report import log_to_wandb

    directory.mkdir(parents=True, exist_ok=True)
    wandb.init(project=project, name=f"{name}-report", group=name, job_type="report", dir=str(directory),
               mode=wandb_mode(), reinit="finish_previous")  # fmt: skip
    try:
        return log_to_wandb(panels)
    finally:
        wandb.finish()
