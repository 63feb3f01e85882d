"""Hyper-parameter studies with Optuna: search spaces, sweeps, workers, the best config.

- A *search space* (``search_spaces/*.yaml``) maps dotted config keys to distributions::

      loss.lambda_user: {type: float, low: 0.5, high: 10.0, log: true}
      model.embedding_dim: {type: categorical, choices: [64, 128, 256]}

- A *sweep* (``sweeps/*.yaml``) describes one study: name, storage, objective(s) and
  direction(s), sampler and seed, pruner, n_trials, search-space file, base config (dotted
  keys), the folds each trial runs on, and trials to enqueue first (e.g. the paper's values).
- The objective turns a trial into plain values, builds a :class:`~tripletlit.config.Config`
  and runs exactly what ``tripletlit fit`` runs on the sweep's folds: the model never sees the
  trial (only Optuna's Lightning pruning callback does).
- Storage: SQLite in the study folder by default (``studies/<name>/study.db``); any RDB URL
  (PostgreSQL, MySQL) lets many machines join; ``journal:///path/study.log`` uses Optuna's
  journal file. RDB storages run with a heartbeat, so trials of a killed worker are failed
  after a grace period and retried.
- ``n_trials`` counts *finished* trials (complete or pruned) in the whole study: workers ask
  for a trial only while finished + running trials are below it, so a resumed or multi-worker
  study ends with exactly that many.
"""

from __future__ import annotations

import copy
import json
import math
import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tripletlit import config as cfg
from tripletlit.errors import TripletlitError
from tripletlit.evaluation.metrics import METRICS
from tripletlit.files import read_yaml, write_text_atomic

SPACE_TYPES = ("float", "int", "categorical")
SAMPLERS = ("tpe", "random", "nsgaii", "cmaes")
PRUNERS = ("median", "percentile", "hyperband", "none")
DIRECTIONS = ("maximize", "minimize")
OBJECTIVE_METRICS = ("SCORE", "phase1", "MEAN_MRED", *METRICS)
SWEEP_KEYS = ("study", "storage", "objectives", "sampler", "pruner", "prune_on", "n_trials", "search_space", "base",
              "folds", "enqueue", "heartbeat", "keep_checkpoints", "wandb")  # fmt: skip
FINISHED = ("COMPLETE", "PRUNED")


# ------------------------------------------------------------------------ search spaces ---
def parse_space(raw: dict, source: str = "search space") -> dict:
    """Optuna distributions from a mapping of dotted key -> {type, low, high, log | choices}."""
    import optuna.distributions as od

    if not isinstance(raw, dict) or not raw:
        raise TripletlitError(f"{source}: a search space is a non-empty mapping of dotted key -> distribution")
    space = {}
    for key, spec in raw.items():
        if key not in cfg.KEYS:
            raise TripletlitError(f"{source}: unknown key {key!r}; use dotted config keys such as loss.lambda_user")
        if not isinstance(spec, dict) or spec.get("type") not in SPACE_TYPES:
            raise TripletlitError(f"{source}: {key} needs type: one of {', '.join(SPACE_TYPES)} (got {spec!r})")
        kind = spec["type"]
        extra = set(spec) - {"type", "low", "high", "log", "step", "choices"}
        if extra:
            raise TripletlitError(f"{source}: {key} has unknown field {sorted(extra)[0]!r}")
        if kind == "categorical":
            choices = spec.get("choices")
            if not isinstance(choices, list) or not choices:
                raise TripletlitError(f"{source}: {key} (categorical) needs a non-empty list of choices")
            for choice in choices:
                cfg.set_value(cfg.Config(), key, choice)  # each choice must be a valid value
            space[key] = od.CategoricalDistribution(choices)
            continue
        try:
            low, high = float(spec["low"]), float(spec["high"])
        except (KeyError, TypeError, ValueError):
            raise TripletlitError(f"{source}: {key} ({kind}) needs numeric low and high") from None
        if low > high:
            raise TripletlitError(f"{source}: {key} has low {low:g} > high {high:g}; swap them")
        log = bool(spec.get("log", False))
        if log and low <= 0:
            raise TripletlitError(f"{source}: {key} is log-scale, so low must be > 0 (got {low:g})")
        expected = cfg.KEYS[key]
        if kind == "int":
            if expected is float:
                pass  # an int distribution for a float key is fine
            space[key] = od.IntDistribution(int(low), int(high), log=log, step=int(spec.get("step", 1)))
        else:
            if expected is int:
                raise TripletlitError(f"{source}: {key} is an integer key; use type: int")
            space[key] = od.FloatDistribution(low, high, log=log)
    return space


def load_space(path: str | os.PathLike) -> dict:
    return parse_space(read_yaml(path, "search space file"), str(path))


# ------------------------------------------------------------------------------- sweeps ---
@dataclass
class Sweep:
    """One study's definition (see the module docstring)."""

    study: str
    objectives: list[tuple[str, str]]
    space: dict
    space_file: str
    storage: str | None = None
    sampler: dict = field(default_factory=lambda: {"type": "tpe", "seed": 0})
    pruner: dict = field(default_factory=lambda: {"type": "median", "n_startup_trials": 5})
    prune_on: str = "val/score_proxy"
    n_trials: int = 200
    base: dict = field(default_factory=dict)
    folds: list[int] = field(default_factory=lambda: [0])
    enqueue: list[dict] = field(default_factory=list)
    heartbeat: dict = field(default_factory=lambda: {"interval": 30, "grace": 90})
    keep_checkpoints: bool = False
    source: str = ""

    @property
    def multi_objective(self) -> bool:
        return len(self.objectives) > 1


def parse_sweep(raw: dict, source: str, base_dir: Path) -> Sweep:
    if not isinstance(raw, dict):
        raise TripletlitError(f"{source}: a sweep is a mapping (study, objectives, search_space, ...)")
    unknown = [k for k in raw if k not in SWEEP_KEYS]
    if unknown:
        raise TripletlitError(f"{source}: unknown key {unknown[0]!r}; allowed: {', '.join(SWEEP_KEYS)}")
    if not raw.get("study"):
        raise TripletlitError(f"{source}: 'study' (the study name) is required")
    objectives = []
    for item in raw.get("objectives") or [{"metric": "SCORE", "direction": "maximize"}]:
        metric, direction = (item or {}).get("metric"), (item or {}).get("direction", "maximize")
        if metric not in OBJECTIVE_METRICS:
            raise TripletlitError(f"{source}: unknown objective metric {metric!r}; choose from {', '.join(OBJECTIVE_METRICS)}")
        if direction not in DIRECTIONS:
            raise TripletlitError(f"{source}: direction of {metric} must be maximize or minimize, got {direction!r}")
        objectives.append((metric, direction))
    sampler = raw.get("sampler") or {"type": "tpe", "seed": 0}
    if not isinstance(sampler, dict) or sampler.get("type") not in SAMPLERS:
        raise TripletlitError(f"{source}: unknown sampler {sampler!r}; choose type from {', '.join(SAMPLERS)}")
    pruner = raw.get("pruner") or {"type": "none"}
    if not isinstance(pruner, dict) or pruner.get("type") not in PRUNERS:
        raise TripletlitError(f"{source}: unknown pruner {pruner!r}; choose type from {', '.join(PRUNERS)}")
    if len(objectives) > 1 and pruner["type"] != "none":
        raise TripletlitError(f"{source}: Optuna cannot prune multi-objective trials; set pruner: {{type: none}}")
    space_file = raw.get("search_space")
    if not space_file:
        raise TripletlitError(f"{source}: 'search_space' (a file in search_spaces/) is required")
    space_path = (base_dir / space_file).resolve() if not Path(space_file).is_absolute() else Path(space_file)
    space = load_space(space_path)
    base = cfg.flatten(raw.get("base") or {})
    probe = cfg.Config()
    for key, value in base.items():
        try:
            cfg.set_value(probe, key, value)
        except TripletlitError as exc:
            raise TripletlitError(f"{source}: base: {exc}") from None
    if str(probe.train.devices) not in ("1", "auto") or probe.train.strategy not in ("auto", "single_device"):
        # Lightning's ddp launcher re-runs the command line once per device: that is `fit`'s job
        raise TripletlitError(f"{source}: base: a trial runs on one device (train.devices {probe.train.devices!r}, "
                              f"train.strategy {probe.train.strategy!r}); use `tripletlit tune --workers N` for one "
                              "trial per device")  # fmt: skip
    folds = raw.get("folds", [0])
    folds = list(range(folds)) if isinstance(folds, int) else list(folds)
    if not folds or not all(isinstance(f, int) and f >= 0 for f in folds):
        raise TripletlitError(f"{source}: folds must be a count or a list of fold indices, got {raw.get('folds')!r}")
    enqueue = raw.get("enqueue") or []
    for point in enqueue:
        for key, value in cfg.flatten(point).items():
            if key not in space:
                raise TripletlitError(f"{source}: enqueued key {key!r} is not in the search space")
            cfg.set_value(cfg.Config(), key, value)
    try:
        n_trials = int(raw.get("n_trials", 200))
    except (TypeError, ValueError):
        raise TripletlitError(f"{source}: n_trials must be an integer") from None
    return Sweep(
        study=str(raw["study"]), objectives=objectives, space=space, space_file=str(space_path),
        storage=raw.get("storage"), sampler=sampler, pruner=pruner,
        prune_on=str(raw.get("prune_on", "val/score_proxy")), n_trials=n_trials, base=base, folds=folds,
        enqueue=[cfg.flatten(p) for p in enqueue], heartbeat=raw.get("heartbeat") or {"interval": 30, "grace": 90},
        keep_checkpoints=bool(raw.get("keep_checkpoints", False)), source=source,
    )  # fmt: skip


def load_sweep(path: str | os.PathLike) -> Sweep:
    path = Path(path)
    return parse_sweep(read_yaml(path, "sweep file (see sweeps/ for examples)"), str(path), path.parent)


# ------------------------------------------------------------------------------ studies ---
def study_dir(name: str, root: str | os.PathLike = "studies") -> Path:
    return Path(root) / name


def storage_url(sweep: Sweep, override: str | None, root: str | os.PathLike = "studies") -> str:
    url = override or sweep.storage
    if url:
        return url
    folder = study_dir(sweep.study, root)
    folder.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{(folder / 'study.db').resolve()}"


def open_storage(url: str, heartbeat: dict):
    """An Optuna storage for ``url``: RDB (with heartbeat and retry of failed trials) or journal."""
    import optuna
    from optuna.storages import RDBStorage, RetryFailedTrialCallback

    if url.startswith("journal://"):
        from optuna.storages import JournalStorage
        from optuna.storages.journal import JournalFileBackend

        path = url[len("journal://"):]
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        return JournalStorage(JournalFileBackend(path))
    import inspect

    # Optuna >= 4.9 renamed the retry hook (heartbeat_stale_trial_callback); older releases
    # only know failed_trial_callback
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # heartbeats and retries are flagged "experimental"
        if "heartbeat_stale_trial_callback" in inspect.signature(RDBStorage).parameters:
            from optuna.storages import RetryHeartbeatStaleTrialCallback

            retry = {"heartbeat_stale_trial_callback": RetryHeartbeatStaleTrialCallback(max_retry=2)}
        else:
            retry = {"failed_trial_callback": RetryFailedTrialCallback(max_retry=2)}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return RDBStorage(
                url,
                heartbeat_interval=int(heartbeat.get("interval", 30)),
                grace_period=int(heartbeat.get("grace", 90)),
                engine_kwargs={"pool_pre_ping": True} if not url.startswith("sqlite") else None,
                **retry,
            )
    except (ImportError, ModuleNotFoundError) as exc:
        raise TripletlitError(f"storage {url}: missing database driver ({exc}); e.g. pip install 'tripletlit[postgres]'") from None
    except optuna.exceptions.StorageInternalError as exc:
        raise TripletlitError(f"storage {url}: cannot connect ({str(exc).splitlines()[0]})") from None


def make_sampler(sweep: Sweep):
    import optuna

    spec = dict(sweep.sampler)
    kind, seed = spec.pop("type"), spec.pop("seed", None)
    if kind == "tpe":
        return optuna.samplers.TPESampler(seed=seed, multivariate=True, **spec)
    if kind == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if kind == "nsgaii":
        return optuna.samplers.NSGAIISampler(seed=seed, **spec)
    return optuna.samplers.CmaEsSampler(seed=seed, **spec)


def make_pruner(sweep: Sweep):
    import optuna

    spec = dict(sweep.pruner)
    kind = spec.pop("type")
    if kind == "median":
        return optuna.pruners.MedianPruner(**spec)
    if kind == "percentile":
        return optuna.pruners.PercentilePruner(**spec)
    if kind == "hyperband":
        return optuna.pruners.HyperbandPruner(**spec)
    return optuna.pruners.NopPruner()


def open_study(sweep: Sweep, url: str):
    """Create or load the study and enqueue the sweep's starting points once."""
    import optuna

    storage = open_storage(url, sweep.heartbeat)
    study = optuna.create_study(
        study_name=sweep.study, storage=storage, load_if_exists=True, sampler=make_sampler(sweep),
        pruner=make_pruner(sweep), directions=[d for _, d in sweep.objectives],
    )  # fmt: skip
    if sweep.enqueue and not study.user_attrs.get("enqueued"):
        study.set_user_attr("enqueued", True)
        for point in sweep.enqueue:
            study.enqueue_trial(point, skip_if_exists=True)
    study.set_user_attr("sweep", {"objectives": sweep.objectives, "folds": sweep.folds, "base": sweep.base,
                                  "search_space": sweep.space_file})  # fmt: skip
    return study


def suggest(trial, space: dict) -> dict:
    """Plain values for every key of ``space`` from a trial (public Optuna API only)."""
    import optuna.distributions as od

    params = {}
    for key, dist in space.items():
        if isinstance(dist, od.CategoricalDistribution):
            params[key] = trial.suggest_categorical(key, list(dist.choices))
        elif isinstance(dist, od.IntDistribution):
            params[key] = trial.suggest_int(key, dist.low, dist.high, step=dist.step, log=dist.log)
        else:
            params[key] = trial.suggest_float(key, dist.low, dist.high, log=dist.log)
    return params


def base_config(sweep: Sweep) -> cfg.Config:
    config = cfg.Config()
    for key, value in sweep.base.items():
        cfg.set_value(config, key, value)
    return config


def trial_config(base: cfg.Config, params: dict) -> cfg.Config:
    """The base config with a trial's dotted parameters applied (plain values only)."""
    config = copy.deepcopy(base)
    for key, value in params.items():
        cfg.set_value(config, key, value)
    return config


def objective_values(summary: dict, objectives: list[tuple[str, str]]) -> list[float]:
    """The objective value(s) of a protocol summary (means over the trial's folds)."""
    values = []
    for metric, _ in objectives:
        if metric == "SCORE":
            values.append(summary["score"]["score"])
        elif metric == "phase1":
            values.append(summary["score"]["phase1"])
        elif metric == "MEAN_MRED":
            values.append(float(np.mean([summary["metrics"][m] for m in METRICS[2:7]])))
        else:
            values.append(summary["metrics"][metric])
    return values


def run_trial(trial, sweep: Sweep, base: cfg.Config, dataset, root: Path, wandb: bool = False) -> list[float]:
    """Run one trial: suggest, build the config, run the sweep's folds, return the objective(s)."""
    from tripletlit.experiment import run

    params = suggest(trial, sweep.space)
    config = trial_config(base, params)
    if not sweep.multi_objective and sweep.pruner.get("type") != "none" and config.train.val_users <= 0:
        config.train.val_users = 500  # pruning needs the per-epoch validation metric
    out = root / "trials" / f"trial_{trial.number:05d}"

    def callbacks_for_fold(f):
        if f != sweep.folds[0] or sweep.multi_objective or sweep.pruner.get("type") == "none":
            return []
        from optuna_integration import PyTorchLightningPruningCallback

        return [PyTorchLightningPruningCallback(trial, monitor=sweep.prune_on)]

    logger_for_fold = None
    if wandb:
        from tripletlit.tracking import wandb_logger

        def logger_for_fold(f, fold_dir):
            return wandb_logger(name=f"{sweep.study}-trial{trial.number}-fold{f}", group=sweep.study,
                                config={**params, "trial": trial.number, "fold": f}, directory=root)  # fmt: skip

    content = run(config, out, progress_bar=False, dataset=dataset, fold_indices=sweep.folds,
                  callbacks_for_fold=callbacks_for_fold, logger_for_fold=logger_for_fold)  # fmt: skip
    if not sweep.keep_checkpoints:
        for ckpt in out.glob("fold*/checkpoints/*.ckpt"):
            ckpt.unlink()
    summary = content["summary"]
    trial.set_user_attr("metrics", {m: _finite(v) for m, v in summary["metrics"].items()})
    trial.set_user_attr("score", _finite(summary["score"]["score"]))
    trial.set_user_attr("run_dir", str(out))
    values = objective_values(summary, sweep.objectives)
    if wandb:
        from tripletlit.tracking import log_summary

        log_summary(summary, values)
    if not all(math.isfinite(v) for v in values):
        raise TripletlitError(f"trial {trial.number}: objective is not finite ({values})")
    return values


def _finite(value):
    return value if value is not None and math.isfinite(value) else None


def count_states(study) -> dict[str, int]:
    counts: dict[str, int] = {}
    for t in study.get_trials(deepcopy=False):
        counts[t.state.name] = counts.get(t.state.name, 0) + 1
    return counts


class _GiveBack(Exception):
    """A worker lost the race for the study's last slot: its trial is recorded as FAIL."""


def worker(sweep: Sweep, url: str, n_trials: int, root: Path, wandb: bool = False, poll: float = 2.0,
           on_trial=None, max_consecutive_failures: int = 10) -> int:  # fmt: skip
    """Run trials until the study has ``n_trials`` finished ones; returns how many ran here.

    Each trial runs through ``study.optimize(n_trials=1)``, so Optuna keeps its heartbeat,
    fails stale RUNNING trials of killed workers and re-enqueues them (RetryFailedTrialCallback).
    A trial is only started while finished + running < n_trials; a worker that loses a race
    for the last slot gives its trial back (recorded as FAIL, not counted). A failing trial
    (NaN loss, bad value) fails alone; ``max_consecutive_failures`` in a row stop the worker
    with the last reason, since the sweep itself is then likely wrong.
    """
    import optuna
    from optuna.trial import TrialState

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    study = open_study(sweep, url)
    base = base_config(sweep)
    from tripletlit.experiment import load_data

    dataset = load_data(base)

    def objective(trial):
        counts = count_states(study)
        finished = sum(counts.get(s, 0) for s in FINISHED)
        running = sorted(t.number for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)))
        if trial.number in running and running.index(trial.number) >= n_trials - finished:
            trial.set_user_attr("fail_reason", "given back: the study already had enough trials running")
            raise _GiveBack()
        try:
            values = run_trial(trial, sweep, base, dataset, root, wandb)
        except TripletlitError as exc:
            trial.set_user_attr("fail_reason", str(exc))  # a bad trial fails alone, with its reason
            raise
        return values if sweep.multi_objective else values[0]

    ran, failures = 0, 0
    while True:
        optuna.storages.fail_stale_trials(study)  # a no-op for storages without a heartbeat
        counts = count_states(study)
        finished = sum(counts.get(s, 0) for s in FINISHED)
        if finished >= n_trials:
            return ran
        if finished + counts.get("RUNNING", 0) >= n_trials:
            time.sleep(poll)  # the last slots are taken by running trials: wait for them (or their heartbeat)
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Optuna warns for every caught trial failure
            study.optimize(objective, n_trials=1, catch=(TripletlitError, _GiveBack), gc_after_trial=False)
        done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL))
        last = max(done, key=lambda t: t.datetime_complete)
        ran += 1
        reason = last.user_attrs.get("fail_reason", "")
        if last.state == TrialState.FAIL and not reason.startswith("given back"):
            failures += 1
            if failures >= max_consecutive_failures:
                raise TripletlitError(f"study {sweep.study}: {failures} trials failed in a row, the last because: {reason}")
        else:
            failures = 0
        if on_trial is not None:
            on_trial(last.number, last.state.name.lower(), study)


def worker_devices(workers: int) -> list[str | None]:
    """The GPU each worker sees: worker i gets visible GPU i mod n (one trial per device);
    None everywhere on machines without CUDA."""
    import torch

    if not torch.cuda.is_available():
        return [None] * workers
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    ids = [d.strip() for d in visible.split(",") if d.strip()] if visible else [str(i) for i in range(torch.cuda.device_count())]
    return [ids[i % len(ids)] for i in range(workers)]


def _worker_process(sweep_path: str, url: str, n_trials: int, root: str, wandb: bool, index: int,
                    device: str | None = None) -> int:  # fmt: skip
    """Entry point of a worker process (spawned): each loads the sweep and runs trials, on its
    own GPU when ``device`` is given (set before anything initialises CUDA in this process)."""
    if device is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = device
    import torch

    torch.set_num_threads(1)
    sweep = load_sweep(sweep_path)
    return worker(sweep, url, n_trials, Path(root), wandb)


def best_trial(study, sweep: Sweep):
    """The best trial (single objective) or the Pareto-front trial with the best first objective."""
    if not sweep.multi_objective:
        return study.best_trial
    front = study.best_trials
    if not front:
        raise TripletlitError(f"study {sweep.study}: no completed trial yet")
    sign = 1 if sweep.objectives[0][1] == "maximize" else -1
    return max(front, key=lambda t: sign * t.values[0])


def export_best(study, sweep: Sweep, root: Path) -> Path:
    """Write the best trial's resolved config (best_config.yaml) and details (best.json)."""
    trial = best_trial(study, sweep)
    config = trial_config(base_config(sweep), trial.params)
    write_text_atomic(root / "best_config.yaml", cfg.dump(config))
    details = {"number": trial.number, "values": trial.values, "params": trial.params,
               "metrics": trial.user_attrs.get("metrics"), "run_dir": trial.user_attrs.get("run_dir"),
               "study": sweep.study, "objectives": sweep.objectives}  # fmt: skip
    write_text_atomic(root / "best.json", json.dumps(details, indent=1, default=str))
    return root / "best_config.yaml"


def importances(study) -> dict[str, float]:
    import optuna

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return optuna.importance.get_param_importances(study)
        except (RuntimeError, ValueError, ZeroDivisionError):
            return {}
