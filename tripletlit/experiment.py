"""`tripletlit fit`: the EvalRS protocol around the method, and the run folder it writes.

Per fold: index the training rows, compute the row weights, initialise the tables (word2vec
or uniform), train with Lightning (neighbour pools refreshed every epoch), predict the test
users (stochastic or deterministic top-k), evaluate with the evaluation suite. The run folder::

    RUN/config.yaml             the resolved config (reproduce with --config RUN/config.yaml)
    RUN/run.json                seed, git revision, package versions, command, timings
    RUN/fold{f}/checkpoints/last.ckpt   per-fold checkpoint (resume with --ckpt last --run RUN)
    RUN/fold{f}/logs/           Lightning CSV logs (train/loss, train/loss_<term>, sampling/*, val/*)
    RUN/fold{f}/predictions.parquet     user_id + 100 ranked track ids
    RUN/fold{f}/metrics.json    the fold's metrics (a fold with this file is complete)
    RUN/metrics.json            every fold, the means, SCORE, consistency, variance agreement
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import platform
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from tripletlit import __version__
from tripletlit import config as cfg
from tripletlit.data.dataset import Dataset
from tripletlit.data.folds import Fold, FoldConfig, make_fold
from tripletlit.errors import TripletlitError
from tripletlit.evaluation.metrics import METRICS, compute_metrics, fold_slices
from tripletlit.evaluation.protocol import STAND_IN_NOTE, evaluate, summarise, write_metrics
from tripletlit.files import atomic_path, write_text_atomic
from tripletlit.model import TripletMF
from tripletlit.ranking import seen_matrix
from tripletlit.sampling import Interactions
from tripletlit.weights import row_weights

FOLD_DONE = "metrics.json"


def load_data(config: cfg.Config) -> Dataset:
    """The data set of a config: an EvalRS folder, or a synthetic preset generated in memory."""
    if config.data.path:
        from tripletlit.data.evalrs import load_evalrs

        return load_evalrs(config.data.path)
    from tripletlit.data.synthetic import generate

    return generate(config.data.preset, seed=config.data.seed)[0]


def fold_config(config: cfg.Config) -> FoldConfig:
    f = config.folds
    return FoldConfig(n_folds=f.n, user_fraction=f.user_fraction, min_count=f.min_count, strategy=f.strategy,
                      seed=config.seed)  # fmt: skip


def git_revision() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True,
                             text=True, timeout=5)  # fmt: skip
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def environment() -> dict:
    import gensim
    import lightning

    return {
        "tripletlit": __version__, "python": platform.python_version(), "torch": torch.__version__,
        "lightning": lightning.__version__, "numpy": np.__version__, "pandas": pd.__version__,
        "gensim": gensim.__version__, "platform": platform.platform(),
    }  # fmt: skip


def resolve_accelerator(config: cfg.Config) -> str:
    accelerator = config.train.accelerator
    if accelerator == "auto":
        return "gpu" if torch.cuda.is_available() else "cpu"
    return accelerator


class Background:
    """``fn(*args, **kwargs)`` started now in a daemon thread (an error in the main thread does
    not wait for it); :meth:`result` joins, re-raises its exception or returns its value."""

    def __init__(self, fn, *args, **kwargs):
        self.seconds, self._value, self._error = 0.0, None, None

        def target():
            started = time.perf_counter()
            try:
                self._value = fn(*args, **kwargs)
            except BaseException as exc:  # noqa: BLE001 - handed to the caller by result()
                self._error = exc
            self.seconds = time.perf_counter() - started

        self._thread = threading.Thread(target=target, name="tripletlit-background", daemon=True)
        self._thread.start()

    def result(self):
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._value

    def finish(self) -> None:
        """Wait for the thread, ignoring its outcome (before cleaning up after an error)."""
        self._thread.join()


def follower() -> bool:
    """Whether this process is a non-zero rank of a multi-process launch.

    Lightning's ``ddp`` strategy re-runs the command line in one child process per extra
    device with ``LOCAL_RANK`` set; torchrun sets ``RANK``, SLURM ``SLURM_PROCID``. A follower
    trains alongside rank 0 (same data, folds and config) but writes and prints nothing:
    checkpoints, logs, predictions and metrics come from rank 0 alone.
    """
    for var in ("RANK", "LOCAL_RANK", "NODE_RANK", "SLURM_PROCID"):
        value = os.environ.get(var, "0")
        if value.isdigit() and int(value) > 0:
            return True
    return False


def resolve_optimizer(config: cfg.Config) -> str:
    """The fused lazy Adam (:mod:`tripletlit.fused`) on one CPU process; dense Adam elsewhere
    (GPUs, and DDP, whose NCCL/gloo all-reduce wants dense gradients)."""
    single = str(config.train.devices) in ("1", "auto") and config.train.strategy in ("auto", "single_device")
    cpu = resolve_accelerator(config) == "cpu"
    if config.train.optimizer != "auto":
        if config.train.optimizer in ("fused", "sparse_adam") and not (cpu and single):
            raise TripletlitError(f"train.optimizer={config.train.optimizer} runs on one CPU process only; use "
                                  f"train.optimizer=adam (or auto) with accelerator {config.train.accelerator!r}, "
                                  f"devices {config.train.devices!r}, strategy {config.train.strategy!r}")  # fmt: skip
        return config.train.optimizer
    return "fused" if cpu and single else "adam"


@contextlib.contextmanager
def cpu_threads(n: int, active: bool):
    before = torch.get_num_threads()
    if active:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@contextlib.contextmanager
def quiet_lightning():
    """Keep Lightning's start-up chatter (GPU available..., tips) off the user's screen."""
    names = ("lightning.pytorch", "lightning.fabric", "pytorch_lightning")
    levels = {n: logging.getLogger(n).level for n in names}
    for n in names:
        logging.getLogger(n).setLevel(logging.WARNING)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", ".*does not have many workers.*")
        warnings.filterwarnings("ignore", ".*smaller than the logging interval.*")
        warnings.filterwarnings("ignore", ".*Total length of .* across ranks is zero.*")  # no validation asked
        warnings.filterwarnings("ignore", ".*treespec.*")
        warnings.filterwarnings("ignore", ".*LeafSpec.*")
        try:
            yield
        finally:
            for n, level in levels.items():
                logging.getLogger(n).setLevel(level)


@dataclass
class FoldModel:
    """What a fitted fold keeps: the model and the id <-> index maps."""

    model: TripletMF
    index: Interactions


def make_validator(config: cfg.Config, fold: Fold, dataset: Dataset, index: Interactions) -> Callable | None:
    """A callable(model) -> {metric: value} on a seeded sample of the fold's test users."""
    n = config.train.val_users
    if n <= 0:
        return None
    rng = np.random.default_rng([config.seed, fold.index, 7])
    test = fold.test.iloc[np.sort(rng.choice(len(fold.test), size=min(n, len(fold.test)), replace=False))]
    slices = fold_slices(fold.train, test, dataset.users, dataset.tracks)
    users = np.searchsorted(index.user_ids, test["user_id"].to_numpy())
    seen = seen_matrix(index.row_user, index.row_track, index.n_users, index.n_tracks)

    profile = _profile(config)
    perf, fair = ("HIT_RATE", "MRR"), METRICS[2:7]

    def validate(model: TripletMF) -> dict:
        ranked = model.recommend(users, config.predict.k, seen, config.predict.horizon, config.predict.stochastic,
                                 np.random.default_rng([config.seed, fold.index, 11]), config.predict.batch_size)  # fmt: skip
        predictions = np.where(ranked >= 0, index.track_ids[np.maximum(ranked, 0)], -1)
        metrics = compute_metrics(predictions, slices, None, config.predict.k)["metrics"]
        out = {m: metrics[m] for m in METRICS[:7]}
        # the SCORE without its song2vec part (BLW/LD need vectors): what pruning compares per epoch
        norm = {m: (out[m] - profile.base[m]) / (profile.best[m] - profile.base[m]) for m in (*perf, *fair)}
        w = profile.weights
        out["score_proxy"] = (w["perf"] * np.mean([norm[m] for m in perf]) + w["fair"] * np.mean([norm[m] for m in fair])) / (
            w["perf"] + w["fair"])  # fmt: skip
        if profile.gate_metric is not None and out[profile.gate_metric] < profile.gate_min:
            # gated like the SCORE: a model that stopped hitting is "perfectly fair" (all MREDs 0)
            out["score_proxy"] = profile.gate_score
        return out

    return validate


def fit_fold(
    config: cfg.Config,
    dataset: Dataset,
    fold: Fold,
    fold_dir: Path,
    ckpt_path: str | None = None,
    progress_bar: bool = True,
    extra_callbacks: list | None = None,
    logger=None,
) -> tuple[FoldModel, dict]:
    """Train the method on one fold; returns the fitted model and the stage timings (s)."""
    import lightning as L
    from lightning.pytorch.callbacks import ModelCheckpoint

    from tripletlit.callbacks import NeighbourRefresh
    from tripletlit.init import word2vec_init
    from tripletlit.module import TripletLitModule

    timings = {}
    started = time.perf_counter()
    index = Interactions.from_rows(fold.train["user_id"].to_numpy(), fold.train["track_id"].to_numpy())
    if config.predict.k > index.n_tracks:
        raise TripletlitError(f"predict.k = {config.predict.k} exceeds the {index.n_tracks} training tracks of fold "
                              f"{fold.index}; lower --predict.k or use a larger data set")  # fmt: skip
    # row i of the index, of the weights and of fold.train are the same training row
    weights = row_weights(fold.train, dataset.users, config.weights)
    timings["index_and_weights"] = time.perf_counter() - started

    started = time.perf_counter()
    dim = config.model.embedding_dim
    if config.model.init == "word2vec" and ckpt_path is None:
        window = config.model.w2v_window
        user_init, track_init = word2vec_init(index, dataset.tracks, dim, window if window == "sentence" else int(window),
                                              seed=config.seed + 42, workers=config.model.w2v_workers,
                                              epochs=config.model.w2v_epochs, sample=config.model.w2v_sample)  # fmt: skip
    else:
        rng = np.random.default_rng([config.seed, fold.index])
        from tripletlit.init import uniform_init

        user_init, track_init = uniform_init(index.n_users, dim, rng), uniform_init(index.n_tracks, dim, rng)
    timings["init"] = time.perf_counter() - started

    if ckpt_path is not None:
        check_checkpoint(ckpt_path)
    optimizer = resolve_optimizer(config)
    model = TripletMF(index.n_users, index.n_tracks, dim, sparse=optimizer == "sparse_adam",
                      user_init=user_init, track_init=track_init)  # fmt: skip
    module = TripletLitModule(
        model, index, weights, config.loss.lambda_user, config.loss.lambda_song,
        (config.loss.margin_user_song, config.loss.margin_user_user, config.loss.margin_song_song),
        config.train.lr, config.train.batch_size, optimizer, config.seed + fold.index,
        validate=make_validator(config, fold, dataset, index), fused_batches=config.train.fused_batches,
    )  # fmt: skip
    callbacks = [
        NeighbourRefresh(config.sampling.neighbours, config.sampling.direction, config.sampling.extra_neighbours,
                         config.sampling.block_size),
        # "last.ckpt" rewritten at the end of EVERY epoch, so a killed fold resumes from its last
        # finished epoch (save_last alone only writes it when a top-k checkpoint is saved)
        ModelCheckpoint(dirpath=fold_dir / "checkpoints", filename="last", save_top_k=1, every_n_epochs=1,
                        enable_version_counter=False),
        *(extra_callbacks or []),
    ]  # fmt: skip
    devices = config.train.devices
    with quiet_lightning():
        trainer = _trainer(L, config, devices, callbacks, logger, fold_dir, progress_bar)
    started = time.perf_counter()
    with quiet_lightning(), cpu_threads(config.train.cpu_threads, resolve_accelerator(config) == "cpu"):
        try:
            trainer.fit(module, ckpt_path=ckpt_path)
        except RuntimeError as exc:
            if "size mismatch" in str(exc) or "Error(s) in loading state_dict" in str(exc):
                raise TripletlitError(f"checkpoint {ckpt_path} does not fit fold {fold.index} (different users/tracks "
                                      f"or embedding_dim); use a checkpoint of the same fold and config") from None  # fmt: skip
            raise
    timings["train"] = time.perf_counter() - started
    timings["train_rows"] = float(len(weights) * config.train.epochs)  # rows seen in training, for rows/s
    model.cpu()
    return FoldModel(model, index), timings


def check_checkpoint(path: str | os.PathLike) -> dict:
    """Load a checkpoint's dict, or raise a one-line error (garbage, truncated, not Lightning's)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise TripletlitError(f"checkpoint {path}: file not found") from None
    except Exception as exc:  # noqa: BLE001 - any failure to read it is a corrupt file for the user
        raise TripletlitError(f"checkpoint {path} is unreadable ({type(exc).__name__}); delete it or start the fold "
                              f"again without it") from None  # fmt: skip
    if not isinstance(state, dict) or "state_dict" not in state or "model.users.weight" not in state["state_dict"]:
        raise TripletlitError(f"checkpoint {path} is not a tripletlit checkpoint (no model tables)")
    return state


def _trainer(L, config: cfg.Config, devices, callbacks, logger, fold_dir: Path, progress_bar: bool):
    from lightning.pytorch.loggers import CSVLogger

    return L.Trainer(
        max_epochs=config.train.epochs,
        accelerator=config.train.accelerator,
        devices=int(devices) if str(devices).isdigit() else devices,
        strategy=config.train.strategy,
        callbacks=callbacks,
        # local CSV logs always; W&B (or any other logger) beside them
        logger=[CSVLogger(fold_dir, name="logs", version=""), *([logger] if logger is not None else [])],
        default_root_dir=fold_dir,
        log_every_n_steps=config.train.log_every_n_steps,
        enable_progress_bar=progress_bar,
        enable_model_summary=False,
        use_distributed_sampler=False,
        num_sanity_val_steps=0,
        limit_val_batches=1 if config.train.val_users > 0 else 0,
    )


def predict_fold(config: cfg.Config, fitted: FoldModel, fold: Fold) -> pd.DataFrame:
    """Recommendations for the fold's test users: a frame with user_id and columns "0".."k-1"."""
    index = fitted.index
    users = fold.test["user_id"].to_numpy()
    rows = np.searchsorted(index.user_ids, users)
    seen = seen_matrix(index.row_user, index.row_track, index.n_users, index.n_tracks)
    # full-catalogue scoring on the GPU when training ran there; the model goes back to the CPU after
    device = "cuda" if resolve_accelerator(config) == "gpu" and torch.cuda.is_available() else "cpu"
    try:
        ranked = fitted.model.to(device).recommend(rows, config.predict.k, seen, config.predict.horizon,
                                                   config.predict.stochastic,
                                                   np.random.default_rng([config.seed, fold.index]),
                                                   config.predict.batch_size)  # fmt: skip
    finally:
        fitted.model.cpu()
    tracks = np.where(ranked >= 0, index.track_ids[np.maximum(ranked, 0)], -1)
    frame = pd.DataFrame(tracks, columns=[str(i) for i in range(tracks.shape[1])])
    frame.insert(0, "user_id", users)
    return frame


def _fold_table(frame: pd.DataFrame) -> np.ndarray:
    return frame.drop(columns="user_id").to_numpy()


def _read_log(path: Path) -> pd.DataFrame | None:
    """A fold's CSV training log, or None when it is missing or empty: Lightning's CSV logger
    rewrites the whole file at each save, so a run killed during one leaves it empty."""
    if not path.is_file() or path.stat().st_size == 0:
        return None
    try:
        return pd.read_csv(path)
    except pd.errors.EmptyDataError:
        return None


def run(
    config: cfg.Config,
    out: Path,
    resume: bool = False,
    ckpt_path: str | None = None,
    on_fold: Callable[[dict], None] | None = None,
    progress_bar: bool = True,
    command: list[str] | None = None,
    dataset: Dataset | None = None,
    fold_indices: list[int] | None = None,
    callbacks_for_fold: Callable[[int], list] | None = None,
    logger_for_fold: Callable[[int, Path], object] | None = None,
) -> dict:
    """Run the whole protocol into ``out`` (see the module docstring); returns metrics.json's content.

    ``resume``: skip folds already complete and continue an incomplete fold from its
    ``checkpoints/last.ckpt``. ``ckpt_path``: start every fold's training from that checkpoint.
    ``dataset``: an already loaded data set (default: load the config's); ``fold_indices``:
    only these folds (default all); ``callbacks_for_fold(f)`` / ``logger_for_fold(f, dir)``:
    extra Lightning callbacks and a logger per fold (used by tuning and W&B).
    """
    from tripletlit.data.download import default_cache_dir
    from tripletlit.evaluation.song2vec import fold_vectors

    lead = not follower()  # under DDP only rank 0 writes, predicts and evaluates
    if lead:
        out.mkdir(parents=True, exist_ok=True)
        write_text_atomic(out / "config.yaml", cfg.dump(config))
        meta_path = out / "run.json"
        meta = json.loads(meta_path.read_text()) if resume and meta_path.exists() else {}
        meta.update({
            "seed": config.seed, "git_revision": git_revision(), "versions": environment(),
            "command": command or sys.argv, "resumed": resume, "optimizer": resolve_optimizer(config),
            "accelerator": resolve_accelerator(config), "devices": config.train.devices,
            "strategy": config.train.strategy, "started": meta.get("started", time.strftime("%Y-%m-%dT%H:%M:%S")),
        })  # fmt: skip
        write_text_atomic(meta_path, json.dumps(meta, indent=1))

    started = time.perf_counter()
    dataset = load_data(config) if dataset is None else dataset
    load_seconds = time.perf_counter() - started
    folds = fold_config(config)
    per_fold, timings = [], {}
    for f in range(folds.n_folds) if fold_indices is None else fold_indices:
        fold_dir = out / f"fold{f}"
        done = fold_dir / FOLD_DONE
        if resume and done.exists():
            result = json.loads(done.read_text())
            per_fold.append(_restore_nans(result))
            timings[f] = result.get("timings", {})
            if on_fold is not None:
                on_fold(per_fold[-1])
            continue
        started = time.perf_counter()
        fold = make_fold(dataset.events, folds, f)
        fold_time = {"split": time.perf_counter() - started}
        # the song2vec stand-in depends on the fold's training rows only: it trains on a second
        # core while the model trains (gensim and the fused step both release the GIL)
        vectors_job = Background(fold_vectors, fold_dir, fold.train, official=dataset.song2vec,
                                 shared=default_cache_dir() / "song2vec") if lead else None  # fmt: skip
        last = fold_dir / "checkpoints" / "last.ckpt"
        start_from = str(last) if resume and last.exists() else ckpt_path
        if start_from is not None:
            check_checkpoint(start_from)
        log = fold_dir / "logs" / "metrics.csv"
        earlier = log.with_name("metrics-before-resume.csv")
        if lead and start_from is not None and log.exists():
            # Lightning's CSV logger starts a new file on resume: keep the first part's curves aside
            os.replace(log, earlier)
        try:
            fitted, fit_time = fit_fold(
                config, dataset, fold, fold_dir, start_from, progress_bar,
                extra_callbacks=callbacks_for_fold(f) if callbacks_for_fold else None,
                logger=logger_for_fold(f, fold_dir) if logger_for_fold else None,
            )  # fmt: skip
        except Exception:
            if vectors_job is not None:
                vectors_job.finish()  # nothing may still write into a folder the caller removes
            raise
        fold_time |= fit_time
        if not lead:
            continue
        if earlier.exists():  # one log with the curves from before and after the resume
            parts = [frame for frame in (_read_log(earlier), _read_log(log)) if frame is not None]
            if parts:
                with atomic_path(log) as tmp:
                    pd.concat(parts, ignore_index=True).to_csv(tmp, index=False)
            earlier.unlink()
        started = time.perf_counter()
        predictions = predict_fold(config, fitted, fold)
        with atomic_path(fold_dir / "predictions.parquet") as tmp:
            predictions.to_parquet(tmp, index=False)
        fold_time["predict"] = time.perf_counter() - started
        started = time.perf_counter()
        vectors = vectors_job.result()
        fold_time["song2vec"] = time.perf_counter() - started  # the wait left after prediction
        fold_time["song2vec_background"] = vectors_job.seconds
        started = time.perf_counter()
        result = evaluate(_fold_table(predictions), fold, dataset, vectors, _profile(config), config.predict.k)
        fold_time["evaluate"] = time.perf_counter() - started
        result["timings"] = fold_time
        write_metrics(result, done)
        per_fold.append(result)
        timings[f] = fold_time
        if on_fold is not None:
            on_fold(result)
    if not lead:
        return {}
    summary = summarise(per_fold, _profile(config))
    content = {
        "folds": per_fold,
        "summary": summary,
        "profile": _profile(config).as_dict(),
        "config": cfg.to_dict(config),
        "data": {"name": dataset.name, "source": str(dataset.source) if dataset.source else None,
                 "load_seconds": load_seconds},  # fmt: skip
        "timings": timings,
        "notes": [STAND_IN_NOTE] if summary["stand_in"] else [],
    }
    write_metrics(content, out / "metrics.json")
    return content


def _profile(config: cfg.Config):
    from tripletlit.evaluation.scoring import load_profile

    return load_profile(config.eval.profile).with_gate(config.eval.gate)


def _restore_nans(result: dict) -> dict:
    """metrics.json stores NaN as null; bring them back for summaries."""
    result["metrics"] = {k: (float("nan") if v is None else v) for k, v in result["metrics"].items()}
    if result.get("variance_agreement") is None:
        result["variance_agreement"] = float("nan")
    return result
