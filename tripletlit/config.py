"""The run configuration: typed sections addressed by dotted keys.

The same dotted key (``model.embedding_dim``, ``loss.lambda_user``, ``weights.song``) names a
parameter on the command line (``--model.embedding_dim 256``), in a YAML config, in the
resolved ``config.yaml`` every run saves, in a search space and in ``trial.params``. Unknown
keys and badly typed values are errors, never silently ignored. Defaults are the paper's.
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from tripletlit.errors import TripletlitError
from tripletlit.weights import WeightConfig


@dataclass
class DataConfig:
    preset: str = "small"  # synthetic preset used when no path is given
    path: str | None = None  # an EvalRS-format folder
    seed: int = 0  # seed of the synthetic preset


@dataclass
class FoldsConfig:
    n: int = 4
    user_fraction: float = 0.25
    min_count: int = 10
    strategy: str = "random"


@dataclass
class ModelConfig:
    embedding_dim: int = 128  # paper Table 1 (the code's default was 256)
    init: str = "word2vec"  # or "uniform"
    w2v_window: str = "sentence"  # whole sentence (paper) or an integer window
    w2v_workers: int = 1  # >1 is faster but not bit-reproducible
    w2v_epochs: int = 1  # paper: 1
    w2v_sample: float = 1e-5  # paper: 1e-5 (downsampling of frequent tokens; small data may want 1e-3)


@dataclass
class LossConfig:
    lambda_user: float = 2.5
    lambda_song: float = 2.5
    margin_user_song: float = 0.25
    margin_user_user: float = 0.25
    margin_song_song: float = 0.25


@dataclass
class SamplingConfig:
    neighbours: int = 5
    direction: str = "closest"  # or "farthest"
    extra_neighbours: int = 50  # fallback before uniform unheard tracks
    block_size: int = 4096  # users per block of the neighbour search


@dataclass
class TrainConfig:
    epochs: int = 2
    batch_size: int = 512
    lr: float = 1e-3
    optimizer: str = "auto"  # auto (fused on one CPU, Adam elsewhere) | fused | adam | sparse_adam
    fused_batches: int = 64  # fused optimizer: Adam steps (batches) per Lightning step
    accelerator: str = "auto"
    devices: str = "1"
    strategy: str = "auto"
    val_users: int = 0  # > 0: per-epoch validation metrics on that many test users
    cpu_threads: int = 1  # torch intra-op threads while training on CPU (small batches: 1 is fastest)
    log_every_n_steps: int = 50


@dataclass
class PredictConfig:
    k: int = 100
    horizon: int = 5
    stochastic: bool = True
    batch_size: int = 1024


@dataclass
class EvalConfig:
    profile: str = "evalrs2022"
    gate: float | None = 0.015  # minimum mean HIT_RATE for a SCORE; None disables the gate


@dataclass
class Config:
    seed: int = 0  # folds (seed + f), training and the stochastic top-k
    data: DataConfig = field(default_factory=DataConfig)
    folds: FoldsConfig = field(default_factory=FoldsConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    weights: WeightConfig = field(default_factory=WeightConfig)
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    predict: PredictConfig = field(default_factory=PredictConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)


CHOICES = {
    "folds.strategy": ("random", "last"),
    "model.init": ("word2vec", "uniform"),
    "sampling.direction": ("closest", "farthest"),
    "train.optimizer": ("auto", "fused", "adam", "sparse_adam"),
    "weights.combine": ("sum", "average"),
    "weights.activity_by": ("plays", "songs"),
}
POSITIVE = ("model.embedding_dim", "train.epochs", "train.batch_size", "train.lr", "predict.k", "predict.horizon",
            "sampling.neighbours", "sampling.block_size", "folds.n", "folds.min_count", "model.w2v_workers",
            "train.cpu_threads", "model.w2v_epochs", "train.fused_batches")  # fmt: skip
NON_NEGATIVE = ("model.w2v_sample", "loss.lambda_user", "loss.lambda_song", "loss.margin_user_song", "loss.margin_user_user",
                "loss.margin_song_song", "weights.gender", "weights.country", "weights.artist", "weights.song",
                "weights.activity", "sampling.extra_neighbours", "train.val_users")  # fmt: skip


def _leaf_types(cls=Config, prefix: str = "") -> dict[str, type]:
    hints = typing.get_type_hints(cls)
    out = {}
    for f in dataclasses.fields(cls):
        kind = hints[f.name]
        if dataclasses.is_dataclass(kind):
            out |= _leaf_types(kind, f"{prefix}{f.name}.")
        else:
            out[f"{prefix}{f.name}"] = kind
    return out


KEYS: dict[str, type] = _leaf_types()


def _coerce(key: str, value, kind):
    """Convert ``value`` (from YAML or a command line string) to the field's type."""
    optional = isinstance(kind, types.UnionType) and type(None) in typing.get_args(kind)
    base = next((a for a in typing.get_args(kind) if a is not type(None)), kind) if optional else kind
    if value is None or (isinstance(value, str) and value.lower() in ("none", "null") and optional):
        if optional:
            return None
        raise TripletlitError(f"{key}: a value is required (got none)")
    try:
        if base is bool:
            if isinstance(value, bool):
                return value
            if str(value).lower() in ("true", "1", "yes", "on"):
                return True
            if str(value).lower() in ("false", "0", "no", "off"):
                return False
            raise ValueError
        if base is int:
            if isinstance(value, float) and not value.is_integer():
                raise ValueError
            if isinstance(value, bool):
                raise ValueError
            return int(float(value)) if isinstance(value, str) and "e" in value.lower() else int(value)
        if base is float:
            if isinstance(value, bool):
                raise ValueError
            return float(value)
        return str(value)
    except (TypeError, ValueError):
        raise TripletlitError(f"{key}: expected {base.__name__}, got {value!r}") from None


def get(config: Config, key: str):
    node = config
    for part in key.split("."):
        node = getattr(node, part)
    return node


def set_value(config: Config, key: str, value) -> None:
    """Set a dotted key, converting and checking the value."""
    if key not in KEYS:
        close = [k for k in KEYS if k.split(".")[-1] == key.split(".")[-1]]
        hint = f"; did you mean {close[0]}?" if close else f"; see `tripletlit fit --help` for the {len(KEYS)} keys"
        raise TripletlitError(f"unknown config key {key!r}{hint}")
    value = _coerce(key, value, KEYS[key])
    if key in CHOICES and value not in CHOICES[key]:
        raise TripletlitError(f"{key}: {value!r} is not one of {', '.join(CHOICES[key])}")
    if key in POSITIVE and value is not None and value <= 0:
        raise TripletlitError(f"{key}: must be positive, got {value}")
    if key in NON_NEGATIVE and value is not None and value < 0:
        raise TripletlitError(f"{key}: must not be negative, got {value}")
    if key == "folds.user_fraction" and not 0 < value <= 1:
        raise TripletlitError(f"{key}: must be in (0, 1], got {value}")
    if key == "model.w2v_window" and value != "sentence" and not (value.isdigit() and int(value) > 0):
        raise TripletlitError(f"{key}: 'sentence' or a positive integer, got {value!r}")
    parts = key.split(".")
    node = config
    for part in parts[:-1]:
        node = getattr(node, part)
    setattr(node, parts[-1], value)


def flatten(mapping: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in mapping.items():
        if isinstance(value, dict):
            out |= flatten(value, f"{prefix}{key}.")
        else:
            out[f"{prefix}{key}"] = value
    return out


def to_dict(config: Config) -> dict:
    return dataclasses.asdict(config)


def from_dict(values: dict, base: Config | None = None) -> Config:
    """A config from a (nested or dotted) mapping applied over ``base`` (default: the paper's)."""
    config = base if base is not None else Config()
    for key, value in flatten(values).items():
        set_value(config, key, value)
    return config


def load(path: str | os.PathLike, base: Config | None = None) -> Config:
    """Read a YAML config (a run's ``config.yaml`` or a hand-written one)."""
    from tripletlit.files import read_yaml

    path = Path(path)
    raw = read_yaml(path, "config file") or {}
    if not isinstance(raw, dict):
        raise TripletlitError(f"{path}: a config is a mapping of sections (data, model, loss, ...)")
    raw = raw.get("config", raw) if isinstance(raw.get("config"), dict) else raw
    try:
        return from_dict(raw, base)
    except TripletlitError as exc:
        raise TripletlitError(f"{path}: {exc}") from None


def dump(config: Config) -> str:
    return yaml.safe_dump(to_dict(config), sort_keys=False)
