"""The ``tripletlit`` command.

Every sub-command is a thin layer over the Python API: it parses flags, calls one function,
and prints rich output. Errors a user can fix (:class:`~tripletlit.errors.TripletlitError`)
print one line and exit with code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from tripletlit import __version__
from tripletlit.errors import TripletlitError

console = Console(stderr=False)
err_console = Console(stderr=True)


def _progress() -> Progress:
    return Progress(
        SpinnerColumn(),
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err_console,
        transient=True,
    )


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:,.4g}" if abs(value) < 1e4 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _refuse_overwrite(out: Path, force: bool) -> None:
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not force:
        raise TripletlitError(f"{out} already exists and is not empty; choose another --out or pass --force to replace it")


# ----------------------------------------------------------------------------------- data ---
def cmd_data_generate(args) -> int:
    from tripletlit.data.evalrs import write_evalrs
    from tripletlit.data.synthetic import generate, resolve_preset
    from tripletlit.files import atomic_dir

    preset = resolve_preset(args.preset)
    out = Path(args.out)
    _refuse_overwrite(out, args.force)
    started = time.perf_counter()
    with _progress() as bar:
        task = bar.add_task(f"generating {preset.name}", total=preset.n_users)
        dataset, event_ids = generate(preset, seed=args.seed, progress=lambda done, total: bar.update(task, completed=done))
        bar.add_task("writing CSVs + parquet cache", total=None)
        with atomic_dir(out) as tmp:
            write_evalrs(dataset, tmp, event_ids)
    table = Table(title=f"synthetic data set '{preset.name}' (seed {args.seed}) -> {out}")
    for column in ("events", "users", "tracks", "artists", "seconds"):
        table.add_column(column, justify="right")
    table.add_row(
        _fmt(len(dataset.events)), _fmt(dataset.n_users), _fmt(dataset.n_tracks), _fmt(dataset.n_artists),
        f"{time.perf_counter() - started:.1f}",
    )
    console.print(table)
    return 0


def cmd_data_download(args) -> int:
    from tripletlit.data.download import EVALRS_URLS, download_evalrs, install_from_zip

    if args.from_zip:
        folder = install_from_zip(args.from_zip, to=args.to, sha256=args.sha256)
    else:
        urls = (args.url,) if args.url else EVALRS_URLS
        folder = download_evalrs(to=args.to, urls=urls, sha256=args.sha256, progress=True)
    console.print(f"EvalRS data set ready in [bold]{folder}[/]; use it with `--data {folder}`")
    return 0


def cmd_data_import(args) -> int:
    from tripletlit.data.evalrs import write_evalrs
    from tripletlit.files import atomic_dir

    out = Path(args.out)
    _refuse_overwrite(out, args.force)
    with _progress() as bar:
        bar.add_task(f"importing {args.format}", total=None)
        if args.format == "lfm1b":
            from tripletlit.data.lfm1b import load_lfm1b

            dataset = load_lfm1b(args.events, args.users, args.tracks, args.artists, args.albums)
        else:
            from tripletlit.data.interactions import load_interactions

            dataset = load_interactions(args.events, columns=_parse_mapping(args.map), users_path=args.users)
        with atomic_dir(out) as tmp:
            write_evalrs(dataset, tmp)
    console.print(f"wrote {dataset!r} to [bold]{out}[/] in the EvalRS format")
    return 0


def _parse_mapping(text: str | None) -> dict[str, str] | None:
    if not text:
        return None
    mapping = {}
    for part in text.split(","):
        ours, _, theirs = part.partition("=")
        if not ours.strip() or not theirs.strip():
            raise TripletlitError(f"--map: {part!r} is not OURS=THEIRS (e.g. --map user_id=uid,track_id=item)")
        mapping[ours.strip()] = theirs.strip()
    return mapping


def cmd_data_describe(args) -> int:
    from tripletlit.data.describe import describe
    from tripletlit.data.evalrs import load_evalrs

    with _progress() as bar:
        bar.add_task(f"loading {args.data}", total=None)
        summary = describe(load_evalrs(args.data))
    counts = Table(title=f"{summary['name']}: sizes")
    counts.add_column("what")
    counts.add_column("value", justify="right")
    for key, value in summary["counts"].items():
        counts.add_row(key, _fmt(value))
    console.print(counts)
    power = Table(title="popularity and activity (power-law summary)")
    for column in ("distribution", "n", "median", "max", "gini", "top 1% share", "tail alpha"):
        power.add_column(column, justify="right")
    for key, s in summary["power_law"].items():
        power.add_row(key, _fmt(s["n"]), _fmt(s["median"]), _fmt(s["max"]), f"{s['gini']:.3f}",
                      f"{s['top1pct_share']:.1%}", f"{s['tail_alpha']:.2f}")  # fmt: skip
    console.print(power)
    users = summary["users"]
    console.print(
        "users: gender "
        + ", ".join(f"{g} {v:.1%}" for g, v in users["gender_share"].items())
        + f"; country missing {users['country_missing_share']:.1%} ({users['countries']} countries)"
        + f"; age known {users['age_known_share']:.1%} (median {users['age_median_known']:.0f})"
        + f"; median playcount {users['playcount_median']:,.0f}"
    )
    for name, population in summary["slices"].items():
        table = Table(title=f"EvalRS slice: {name}")
        for label in population:
            table.add_column(label, justify="right")
        table.add_row(*(_fmt(v) for v in population.values()))
        console.print(table)
    if args.json:
        from tripletlit.files import write_text_atomic

        write_text_atomic(args.json, json.dumps(summary, indent=1))
        console.print(f"summary written to {args.json}")
    return 0


def cmd_data_split(args) -> int:
    from tripletlit.data.evalrs import load_evalrs
    from tripletlit.data.folds import FoldConfig, write_folds

    config = FoldConfig(
        n_folds=args.folds, user_fraction=args.user_fraction, min_count=args.min_count,
        max_passes=args.max_passes, strategy=args.strategy, seed=args.seed,
    )  # fmt: skip
    out = Path(args.out)
    _refuse_overwrite(out, args.force)
    started = time.perf_counter()
    with _progress() as bar:
        loading = bar.add_task(f"loading {args.data}", total=None)
        dataset = load_evalrs(args.data)
        bar.remove_task(loading)
        task = bar.add_task("making folds", total=config.n_folds)
        stats = write_folds(dataset.events, out, config, source=str(args.data), on_fold=lambda _: bar.advance(task))
    table = Table(title=f"{config.n_folds} folds of {args.data} (seed {config.seed}, {config.strategy} hold-out) -> {out}")
    for column in ("fold", "test users", "train rows", "train tracks", "rows/user min-mean-max",
                   "users/track min-mean-max", "k-core passes"):  # fmt: skip
        table.add_column(column, justify="right")
    for s in stats:
        table.add_row(
            str(s["fold"]), _fmt(s["test_users"]), _fmt(s["train_rows"]), _fmt(s["train_tracks"]),
            f"{s['rows_per_user_min']}-{s['rows_per_user_mean']:.0f}-{s['rows_per_user_max']}",
            f"{s['users_per_track_min']}-{s['users_per_track_mean']:.0f}-{s['users_per_track_max']}",
            str(s["k_core_passes"]),
        )  # fmt: skip
    console.print(table)
    console.print(f"done in {time.perf_counter() - started:.1f} s")
    return 0


# ----------------------------------------------------------------------------- evaluation ---
def _gate(value: str | None):
    if value is None:
        return "keep"
    if value.lower() == "none":
        return None
    try:
        return float(value)
    except ValueError:
        raise TripletlitError(f"--gate must be a number or 'none', got {value!r}") from None


def _profile(args):
    from tripletlit.evaluation.scoring import load_profile

    profile = load_profile(args.profile)
    gate = _gate(args.gate)
    return profile if gate == "keep" else profile.with_gate(gate)


def _metrics_table(title: str, columns: dict[str, dict], stand_in: bool | None) -> Table:
    """Rows: the nine metrics, the meta-scores and SCORE; one column per run/fold."""
    from tripletlit.evaluation.metrics import METRICS

    table = Table(title=title)
    table.add_column("metric")
    for name in columns:
        table.add_column(name, justify="right")
    mark = " (stand-in)" if stand_in else ""
    for metric in METRICS:
        label = metric + (mark if metric in ("BEING_LESS_WRONG", "LATENT_DIVERSITY") else "")
        table.add_row(label, *(f"{c['metrics'][metric]:.6f}" for c in columns.values()))
    for key in ("perf", "fair", "behav"):
        table.add_row(f"[dim]{key} (normalised)[/]", *(f"{c['score'][key]:.4f}" for c in columns.values()))
    table.add_row("[bold]SCORE[/]", *(
        f"[bold]{c['score']['score']:.4f}[/]" + (" [red](gated)[/]" if c["score"]["gated"] else "") for c in columns.values()
    ))  # fmt: skip
    table.add_row("phase-1 mean", *(f"{c['score']['phase1']:.6f}" for c in columns.values()))
    return table


def cmd_evaluate(args) -> int:
    from tripletlit.data.evalrs import load_evalrs
    from tripletlit.data.folds import load_fold
    from tripletlit.evaluation.metrics import METRICS, check_predictions
    from tripletlit.evaluation.protocol import (
        STAND_IN_NOTE,
        align_predictions,
        evaluate,
        read_predictions,
        write_metrics,
    )
    from tripletlit.evaluation.song2vec import fold_vectors

    profile = _profile(args)
    predictions = read_predictions(args.predictions, args.k)
    with _progress() as bar:
        bar.add_task("loading data and fold", total=None)
        dataset = load_evalrs(args.data)
        fold = load_fold(args.folds, args.fold)
        # check the predictions against the fold before the (slow) song2vec stand-in is trained
        aligned = align_predictions(predictions, fold.test["user_id"].to_numpy(), str(args.predictions))
        check_predictions(aligned, len(fold.test), args.k)
        vectors = fold_vectors(Path(args.folds) / f"fold{args.fold}", fold.train, official=dataset.song2vec)
        result = evaluate(predictions, fold, dataset, vectors, profile, args.k)
    table = Table(title=f"{args.predictions} on fold {args.fold} of {args.folds} ({result['users']:,} test users)")
    for column in ("metric", "value", "normalised"):
        table.add_column(column, justify="right" if column != "metric" else "left")
    for metric in METRICS:
        table.add_row(metric, f"{result['metrics'][metric]:.6f}", f"{result['score']['normalised'][metric]:.4f}")
    for key in ("perf", "fair", "behav"):
        table.add_row(f"[dim]{key}[/]", "", f"{result['score'][key]:.4f}")
    gated = " [red](below the HR gate)[/]" if result["score"]["gated"] else ""
    table.add_row("[bold]SCORE[/]", "", f"[bold]{result['score']['score']:.4f}[/]{gated}")
    console.print(table)
    slices = Table(title=f"miss rate per slice (overall {result['miss_rate']:.4f})")
    for column in ("metric", "slice", "users", "miss rate", "vs overall"):
        slices.add_column(column, justify="right" if column not in ("metric", "slice") else "left")
    for metric, detail in result["slices"].items():
        for name, cell in detail.items():
            slices.add_row(metric, name, f"{cell['users']:,}", f"{cell['miss_rate']:.4f}",
                           f"{cell['miss_rate'] - result['miss_rate']:+.4f}")  # fmt: skip
    console.print(slices)
    variance = result["variance_agreement"]
    console.print(f"variance agreement (artist Gini, Pearson r over users): {variance:.4f}")
    if result["stand_in"]:
        console.print(f"[yellow]note:[/] {STAND_IN_NOTE}")
    out = Path(args.out) if args.out else Path(args.predictions).parent
    path = write_metrics({**result, "profile": profile.as_dict(), "predictions": str(args.predictions),
                          "folds_dir": str(args.folds)}, out / "metrics.json")  # fmt: skip
    console.print(f"metrics written to {path}")
    return 0


def _load_or_generate(args):
    from tripletlit.data.evalrs import load_evalrs

    if args.data:
        return load_evalrs(args.data)
    from tripletlit.data.synthetic import generate

    return generate(args.preset, seed=args.data_seed)[0]


def cmd_baselines(args) -> int:
    from tripletlit.data.folds import FoldConfig
    from tripletlit.evaluation.baselines import BASELINES, make_baseline
    from tripletlit.evaluation.protocol import STAND_IN_NOTE, run_protocol, write_metrics
    from tripletlit.evaluation.song2vec import fold_vectors

    which = [w.strip() for w in args.which.split(",") if w.strip()]
    unknown = [w for w in which if w not in BASELINES]
    if unknown:
        raise TripletlitError(f"--which: unknown baseline {unknown[0]!r}; choose from {', '.join(BASELINES)}")
    profile = _profile(args)
    config = FoldConfig(n_folds=args.folds, seed=args.seed, user_fraction=args.user_fraction, min_count=args.min_count)
    out = Path(args.out or f"runs/baselines-{time.strftime('%Y%m%d-%H%M%S')}")
    _refuse_overwrite(out, args.force)
    results = {}
    with _progress() as bar:
        loading = bar.add_task("loading data", total=None)
        dataset = _load_or_generate(args)
        bar.remove_task(loading)

        def vectors_for(fold):  # trained once per fold, cached in the run folder, shared by all baselines
            return fold_vectors(out / "song2vec" / f"fold{fold.index}", fold.train, official=dataset.song2vec)

        for name in which:
            task = bar.add_task(f"{name}: {config.n_folds} folds", total=config.n_folds)
            results[name] = run_protocol(
                lambda name=name: make_baseline(name, args.seed),
                dataset, config, vectors_for, profile, on_fold=lambda _, task=task: bar.advance(task),
            )  # fmt: skip
    stand_in = any(r["summary"]["stand_in"] for r in results.values())
    table = _metrics_table(f"baselines on {dataset.name} ({config.n_folds} folds, mean)",
                           {n: r["summary"] for n, r in results.items()}, stand_in)  # fmt: skip
    table.add_row("consistency (overall)", *(f"{r['summary']['consistency']['overall']:.4f}" for r in results.values()))
    table.add_row("variance agreement", *(f"{r['summary']['variance_agreement']:.4f}" for r in results.values()))
    console.print(table)
    if stand_in:
        console.print(f"[yellow]note:[/] {STAND_IN_NOTE}")
    for name, result in results.items():
        write_metrics({**result, "recommender": name, "data": dataset.name}, out / name / "metrics.json")
    console.print(f"metrics written to {out}/<baseline>/metrics.json")
    _report_hint(" ".join(str(out / name) for name in results) + " [RUN ...]")
    return 0


# ------------------------------------------------------------------------------------ fit ---
def _config_from_args(args):
    from tripletlit import config as cfg

    config = cfg.load(args.config) if args.config else cfg.Config()
    if args.data:
        cfg.set_value(config, "data.path", args.data)
    if args.preset:
        cfg.set_value(config, "data.preset", args.preset)
        cfg.set_value(config, "data.path", None)
    if args.folds is not None:
        cfg.set_value(config, "folds.n", args.folds)
    if args.seed is not None:
        cfg.set_value(config, "seed", args.seed)
    for key in cfg.KEYS:
        value = getattr(args, key, None)
        if value is not None:
            cfg.set_value(config, key, value)
    return config


def _print_run(content: dict, title: str) -> None:
    folds = {f"fold {r['fold']}": r for r in content["folds"]}
    columns = {**folds, "mean": content["summary"]}
    table = _metrics_table(title, columns, content["summary"]["stand_in"])
    consistency = content["summary"]["consistency"]
    table.add_row("consistency", *([""] * len(folds)), f"{consistency['overall']:.4f}")
    table.add_row("variance agreement", *(f"{r['variance_agreement']:.4f}" for r in content["folds"]),
                  f"{content['summary']['variance_agreement']:.4f}")  # fmt: skip
    console.print(table)
    if consistency["undefined"]:
        console.print(f"[dim]consistency undefined (|mean| ~ 0) for: {', '.join(consistency['undefined'])}[/]")
    if content["notes"]:
        console.print(f"[yellow]note:[/] {content['notes'][0]}")


def _wandb_on(args) -> bool:
    import os

    return bool(getattr(args, "wandb", True)) and os.environ.get("WANDB_MODE", "").lower() != "disabled"


def _best_config(args):
    """--ckpt best: the best trial of a study, refitted on the full protocol (all folds)."""
    from tripletlit import config as cfg
    from tripletlit.tune import study_dir

    name = args.study or "default"
    folder = study_dir(name, args.studies)
    best = folder / "best_config.yaml"
    if not best.is_file():
        raise TripletlitError(f"--ckpt best: {best} not found; run `tripletlit tune --study {name}` first")
    config = cfg.load(best)
    cfg.set_value(config, "folds.n", args.folds if args.folds is not None else 4)
    out = Path(args.run or args.out or folder / f"best-fit-{time.strftime('%Y%m%d-%H%M%S')}")
    _refuse_overwrite(out, args.force)
    console.print(f"refitting the best trial of study [bold]{name}[/] ({best}) on {config.folds.n} folds")
    return config, out


def _fit_target(args):
    """What `fit`'s flags ask for: (config, run folder, resume?, starting checkpoint or None)."""
    from tripletlit import config as cfg

    if args.ckpt == "last":
        if not args.run:
            raise TripletlitError("--ckpt last resumes a run: give its folder with --run DIR")
        out = Path(args.run)
        if not (out / "config.yaml").is_file():
            raise TripletlitError(f"{out}: not a run folder (no config.yaml); start a new run without --ckpt last")
        return cfg.load(out / "config.yaml"), out, True, None
    if args.ckpt == "best":
        config, out = _best_config(args)
        return config, out, False, None
    ckpt_path = None
    if args.ckpt:
        ckpt_path = str(args.ckpt)
        if not Path(ckpt_path).is_file():
            raise TripletlitError(f"--ckpt {ckpt_path}: checkpoint file not found")
    out = Path(args.run or args.out or f"runs/fit-{time.strftime('%Y%m%d-%H%M%S')}")
    return _config_from_args(args), out, False, ckpt_path


def cmd_fit(args) -> int:
    from tripletlit import config as cfg
    from tripletlit.experiment import follower, run

    config, out, resume, ckpt_path = _fit_target(args)
    if follower():
        # a non-zero DDP rank re-running this command: train every fold beside rank 0 in
        # silence (no folder checks or writes, no W&B, no output); rank 0 owns the run folder
        # and passes its path in the environment (the default name has a time stamp)
        run(config, Path(os.environ.get(RUN_DIR_ENV, out)), resume=resume, ckpt_path=ckpt_path, progress_bar=False)
        return 0
    if args.ckpt not in ("last", "best"):
        _refuse_overwrite(out, args.force)
    started = time.perf_counter()
    done = []

    def on_fold(result):
        done.append(result)
        console.print(f"fold {result['fold']}: HIT_RATE {result['metrics']['HIT_RATE']:.4f}, "
                      f"SCORE {result['score']['score']:.4f}  [dim]({time.perf_counter() - started:.0f} s)[/]")  # fmt: skip

    logger_for_fold = None
    if _wandb_on(args):
        from tripletlit.tracking import log_summary, wandb_logger

        def logger_for_fold(f, fold_dir):
            return wandb_logger(name=f"{out.name}-fold{f}", group=out.name, config=cfg.flatten(cfg.to_dict(config)),
                                directory=out)  # fmt: skip

        inner = on_fold

        def on_fold(result):  # noqa: F811 - wraps the printer: W&B summary of each fold
            inner(result)
            log_summary(result)

    from tripletlit.experiment import FOLD_DONE, check_checkpoint

    # unreadable checkpoints are reported before anything is written
    if ckpt_path is not None:
        check_checkpoint(ckpt_path)
    if resume:
        for last in sorted(out.glob("fold*/checkpoints/last.ckpt")):
            if not (last.parent.parent / FOLD_DONE).exists():
                check_checkpoint(last)
    created = not out.exists()
    # under DDP, Lightning re-runs this command for each extra device: they find the run here
    os.environ[RUN_DIR_ENV] = str(out.resolve())
    try:
        content = run(config, out, resume=resume, ckpt_path=ckpt_path, on_fold=on_fold,
                      progress_bar=not args.no_progress, command=["tripletlit", *args.argv],
                      logger_for_fold=logger_for_fold)  # fmt: skip
    except TripletlitError:
        if created:  # a new run that failed leaves nothing behind
            import shutil

            shutil.rmtree(out, ignore_errors=True)
        raise
    source = config.data.path or f"synthetic '{config.data.preset}'"
    _print_run(content, f"tripletlit fit on {source} ({len(content['folds'])} folds, seed {config.seed})")
    console.print(f"run folder: [bold]{out}[/] (config.yaml, run.json, fold*/checkpoints, predictions, metrics.json) "
                  f"in {time.perf_counter() - started:.0f} s")  # fmt: skip
    _finish_with_report(args, [out])
    return 0


RUN_DIR_ENV = "TRIPLETLIT_RUN_DIR"


def _finish_with_report(args, runs: list[Path], study: Path | None = None) -> None:
    """Write the report with --report, else say how to get it."""
    if getattr(args, "report", False):
        from tripletlit.report import build_report

        out = (runs[0] if runs else study) / "report"
        html = build_report(runs, out, study)
        if _wandb_on(args):
            from tripletlit.report import panel_files
            from tripletlit.tracking import log_report

            source = runs[0] if runs else study
            log_report(panel_files(out), source.name, source)
        console.print(f"report: [bold]{html}[/]")
    elif runs:
        _report_hint(" ".join(str(r) for r in runs))
    else:
        _report_hint(f"--study {study.name} --studies {study.parent}")


def cmd_recommend(args) -> int:
    import numpy as np
    import scipy.sparse as sp
    import torch

    from tripletlit import config as cfg
    from tripletlit.experiment import load_data
    from tripletlit.model import TripletMF

    run_dir = Path(args.run)
    ckpt = run_dir / f"fold{args.fold}" / "checkpoints" / "last.ckpt"
    if not ckpt.is_file():
        raise TripletlitError(f"{ckpt}: no checkpoint; is {run_dir} a `tripletlit fit` run folder with fold {args.fold}?")
    try:
        state = torch.load(ckpt, map_location="cpu", weights_only=False)
        extra = state["tripletlit"]
        users_w, tracks_w = state["state_dict"]["model.users.weight"], state["state_dict"]["model.tracks.weight"]
    except Exception as exc:  # noqa: BLE001 - any failure to read it is a corrupt checkpoint for the user
        raise TripletlitError(f"{ckpt}: unreadable checkpoint ({type(exc).__name__}); re-run `tripletlit fit`") from None
    extra = {key: np.asarray(value) for key, value in extra.items()}
    user_ids = extra["user_ids"]
    position = np.searchsorted(user_ids, args.user)
    if position >= len(user_ids) or user_ids[position] != args.user:
        examples = ", ".join(str(u) for u in user_ids[:5])
        raise TripletlitError(f"user {args.user} is not among the {len(user_ids):,} training users of fold {args.fold} "
                              f"(e.g. {examples}); every user_id in {run_dir}/fold{args.fold}/predictions.parquet works")  # fmt: skip
    model = TripletMF(len(user_ids), len(extra["track_ids"]), users_w.shape[1])
    model.load_state_dict({"users.weight": users_w.to_dense(), "tracks.weight": tracks_w.to_dense()})
    seen = sp.csr_matrix((np.ones(len(extra["seen_tracks"]), bool), extra["seen_tracks"], extra["seen_indptr"]),
                         shape=(len(user_ids), len(extra["track_ids"])))  # fmt: skip
    ranked = model.recommend(np.array([position]), args.k, seen, stochastic=False)[0]
    track_ids = np.asarray(extra["track_ids"])[ranked[ranked >= 0]]
    config = cfg.load(run_dir / "config.yaml")
    tracks = load_data(config).tracks.set_index("track_id").reindex(track_ids)
    table = Table(title=f"top {args.k} for user {args.user} (fold {args.fold} of {run_dir}, seen tracks excluded)")
    for column in ("rank", "track_id", "track", "artist"):
        table.add_column(column, justify="right" if column in ("rank", "track_id") else "left")
    for rank, (track_id, row) in enumerate(tracks.iterrows(), start=1):
        table.add_row(str(rank), str(track_id), str(row["track"]), str(row["artist"]))
    console.print(table)
    return 0


ABLATIONS = {
    "full": {},
    "no_user_user": {"loss.lambda_user": 0.0},
    "no_song_song": {"loss.lambda_song": 0.0},
    "no_word2vec": {"model.init": "uniform"},
    "no_weights": {"weights.enabled": False},
}


def cmd_ablate(args) -> int:
    import copy

    from tripletlit import config as cfg
    from tripletlit.experiment import follower, run

    which = [w.strip() for w in args.variants.split(",") if w.strip()]
    unknown = [w for w in which if w not in ABLATIONS]
    if unknown:
        raise TripletlitError(f"--variants: unknown variant {unknown[0]!r}; choose from {', '.join(ABLATIONS)}")
    base = _config_from_args(args)
    out = Path(args.out or f"runs/ablate-{time.strftime('%Y%m%d-%H%M%S')}")
    lead = not follower()
    if lead:
        _refuse_overwrite(out, args.force)
        os.environ[RUN_DIR_ENV] = str(out.resolve())  # for DDP ranks re-running this command
    else:  # a non-zero DDP rank: train each variant beside rank 0, write and print nothing
        out = Path(os.environ.get(RUN_DIR_ENV, out))
    results = {}
    for name in which:
        config = copy.deepcopy(base)
        for key, value in ABLATIONS[name].items():
            cfg.set_value(config, key, value)
        if not lead:
            run(config, out / name, progress_bar=False)
            continue
        console.print(f"[bold]{name}[/] {ABLATIONS[name] or '(paper defaults)'}")
        results[name] = run(config, out / name, progress_bar=not args.no_progress,
                            command=["tripletlit", *args.argv])["summary"]  # fmt: skip
    if not lead:
        return 0
    table = _metrics_table(f"ablations (paper Table 4) over the same {base.folds.n} folds, seed {base.seed}",
                           results, any(r["stand_in"] for r in results.values()))  # fmt: skip
    table.add_row("consistency", *(f"{r['consistency']['overall']:.4f}" for r in results.values()))
    table.add_row("variance agreement", *(f"{r['variance_agreement']:.4f}" for r in results.values()))
    console.print(table)
    write_metrics_summary = {name: r for name, r in results.items()}
    from tripletlit.evaluation.protocol import write_metrics

    write_metrics(write_metrics_summary, out / "ablations.json")
    console.print(f"per-variant runs in {out}/<variant>/, summary in {out}/ablations.json")
    _finish_with_report(args, [out / name for name in which])
    return 0


# ----------------------------------------------------------------------------------- tune ---
def cmd_tune(args) -> int:
    import multiprocessing as mp

    import optuna
    from rich.live import Live

    from tripletlit.tune import (
        _worker_process,
        best_trial,
        count_states,
        export_best,
        importances,
        load_sweep,
        open_study,
        storage_url,
        study_dir,
        worker,
        worker_devices,
    )

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sweep = load_sweep(args.sweep)
    if args.study:
        sweep.study = args.study
    n_trials = args.trials if args.trials is not None else sweep.n_trials
    if n_trials < 1:
        raise TripletlitError(f"--trials must be at least 1, got {n_trials}")
    root = study_dir(sweep.study, args.studies)
    root.mkdir(parents=True, exist_ok=True)
    url = storage_url(sweep, args.storage, args.studies)
    study = open_study(sweep, url)
    wandb = _wandb_on(args)
    started = time.perf_counter()

    def view(study) -> Table:
        counts = count_states(study)
        table = Table(title=f"study {sweep.study} ({url})")
        for column in ("finished / target", "complete", "pruned", "failed", "running", "best", "elapsed"):
            table.add_column(column, justify="right")
        finished = counts.get("COMPLETE", 0) + counts.get("PRUNED", 0)
        try:
            best = best_trial(study, sweep)
            best_text = f"#{best.number}: " + ", ".join(f"{v:.4f}" for v in best.values)
        except (ValueError, TripletlitError):
            best_text = "-"
        table.add_row(f"{finished} / {n_trials}", str(counts.get("COMPLETE", 0)), str(counts.get("PRUNED", 0)),
                      str(counts.get("FAIL", 0)), str(counts.get("RUNNING", 0)), best_text,
                      f"{time.perf_counter() - started:.0f} s")  # fmt: skip
        return table

    with Live(view(study), console=console, refresh_per_second=1, transient=False) as live:
        if args.workers <= 1:
            worker(sweep, url, n_trials, root, wandb, on_trial=lambda number, state, st: live.update(view(st)))
        else:
            context = mp.get_context("spawn")
            devices = worker_devices(args.workers)  # one GPU per worker where there are GPUs
            processes = [context.Process(target=_worker_process,
                                         args=(args.sweep, url, n_trials, str(root), wandb, i, devices[i]))
                         for i in range(args.workers)]  # fmt: skip
            for process in processes:
                process.start()
            while any(p.is_alive() for p in processes):
                live.update(view(study))
                time.sleep(1.0)
            live.update(view(study))
            failed = [p.exitcode for p in processes if p.exitcode != 0]
            if failed:
                raise TripletlitError(f"{len(failed)} worker(s) exited with an error (codes {failed}); see their output above")
    _print_study(study, sweep, root, export_best, importances)
    _finish_with_report(args, [], root)
    return 0


def _print_study(study, sweep, root, export_best, importances) -> None:
    from optuna.trial import TrialState

    trials = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.COMPLETE]
    if not trials:
        console.print("[yellow]no complete trial yet[/]")
        return
    sign = 1 if sweep.objectives[0][1] == "maximize" else -1
    top = sorted(trials, key=lambda t: -sign * t.values[0])[:10]
    table = Table(title="top trials" if not sweep.multi_objective else "top trials by the first objective")
    table.add_column("trial", justify="right")
    for metric, direction in sweep.objectives:
        table.add_column(f"{metric} ({direction[:3]})", justify="right")
    keys = list(sweep.space)
    for key in keys:
        table.add_column(key, justify="right")
    for t in top:
        table.add_row(str(t.number), *(f"{v:.4f}" for v in t.values),
                      *(f"{t.params[k]:.4g}" if isinstance(t.params.get(k), float) else str(t.params.get(k)) for k in keys))  # fmt: skip
    console.print(table)
    if sweep.multi_objective:
        console.print(f"Pareto front: trials {sorted(t.number for t in study.best_trials)}")
    else:
        weights = importances(study)
        if weights:
            imp = Table(title="parameter importances (Optuna's default evaluator)")
            imp.add_column("parameter")
            imp.add_column("importance", justify="right")
            for key, value in weights.items():
                imp.add_row(key, f"{value:.3f}")
            console.print(imp)
    path = export_best(study, sweep, root)
    console.print(f"best config written to [bold]{path}[/]; refit it on all folds with "
                  f"`tripletlit fit --ckpt best --study {sweep.study}`")  # fmt: skip


# --------------------------------------------------------------------------------- report ---
def cmd_report(args) -> int:
    from tripletlit.report import build_report, panel_files

    study = None
    if args.study:
        from tripletlit.tune import study_dir

        study = study_dir(args.study, args.studies)
    if not args.runs and study is None:
        raise TripletlitError("give one or more run folders, or --study NAME")
    default = Path(args.runs[0]) / "report" if args.runs else Path(study) / "report"
    out = Path(args.out) if args.out else default
    formats = tuple(f.strip() for f in args.formats.split(",") if f.strip())
    with _progress() as bar:
        bar.add_task("drawing the report", total=None)
        html = build_report([Path(r) for r in args.runs], out, study, formats)
    if _wandb_on(args):
        from tripletlit.tracking import log_report

        source = Path(args.runs[0]) if args.runs else Path(study)
        log_report(panel_files(out), source.name, source)
    console.print(f"report: [bold]{html}[/] (panels as {', '.join(formats)} beside it)")
    return 0


def _report_hint(target: str) -> None:
    console.print(f"[dim]see it: tripletlit report {target}[/]")


# --------------------------------------------------------------------------------- parser ---
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tripletlit",
        description="Triplet-loss matrix factorisation for accurate and fair music recommendation (EvalRS 2022).",
    )
    parser.add_argument("--version", action="version", version=f"tripletlit {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    data = commands.add_parser("data", help="generate, download, import, describe and split data sets")
    data_commands = data.add_subparsers(dest="data_command", metavar="ACTION", required=True)

    p = data_commands.add_parser("generate", help="write a synthetic LFM-like data set in the EvalRS format")
    p.add_argument("--preset", default="small", help="tiny, small (default), medium or evalrs (full scale)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--out", required=True, help="folder to write the three EvalRS CSVs into")
    p.add_argument("--force", action="store_true", help="replace --out if it exists")
    p.set_defaults(func=cmd_data_generate)

    p = data_commands.add_parser("download", help="fetch the official EvalRS 2022 data set (about 600 MB)")
    p.add_argument("--to", type=Path, help="cache folder (default: $TRIPLETLIT_CACHE or the user cache dir)")
    p.add_argument("--from-zip", type=Path, help="install from an evalrs_dataset.zip downloaded by hand")
    p.add_argument("--url", help="download from this URL instead of the official ones")
    p.add_argument("--sha256", help="expected SHA-256 of the zip")
    p.set_defaults(func=cmd_data_download)

    p = data_commands.add_parser("import", help="convert raw LFM-1b files or your own interactions to the EvalRS format")
    p.add_argument("format", choices=("lfm1b", "interactions"), help="lfm1b raw files, or any CSV/TSV/parquet interactions")
    p.add_argument("events", help="LFM-1b_LEs.txt, or your interactions file")
    p.add_argument("--users", help="LFM-1b_users.txt (required for lfm1b), or a users file for interactions")
    p.add_argument("--tracks", help="LFM-1b_tracks.txt (optional: track titles)")
    p.add_argument("--artists", help="LFM-1b_artists.txt (optional: artist names)")
    p.add_argument("--albums", help="LFM-1b_albums.txt (optional: album names)")
    p.add_argument("--map", help="column mapping OURS=THEIRS,... e.g. user_id=uid,track_id=item,timestamp=ts")
    p.add_argument("--out", required=True, help="folder to write the EvalRS CSVs into")
    p.add_argument("--force", action="store_true", help="replace --out if it exists")
    p.set_defaults(func=cmd_data_import)

    p = data_commands.add_parser("describe", help="sizes, power laws and slice populations of a data set")
    p.add_argument("data", help="an EvalRS-format folder")
    p.add_argument("--json", help="also write the summary as JSON to this file")
    p.set_defaults(func=cmd_data_describe)

    p = data_commands.add_parser("split", help="write the EvalRS folds (train.parquet / test.parquet per fold)")
    p.add_argument("data", help="an EvalRS-format folder")
    p.add_argument("--out", required=True, help="folder for fold0/ .. fold{N-1}/ and folds.json")
    p.add_argument("--folds", type=int, default=4, help="number of folds (EvalRS: 4)")
    p.add_argument("--seed", type=int, default=0, help="fold f samples users with random_state = seed + f")
    p.add_argument("--user-fraction", type=float, default=0.25, help="share of users per fold (EvalRS: 0.25)")
    p.add_argument("--min-count", type=int, default=10, help="k of the iterative k-core filter (EvalRS: 10)")
    p.add_argument("--max-passes", type=int, default=10, help="at most this many k-core passes (EvalRS: 10)")
    p.add_argument("--strategy", choices=("random", "last"), default="random",
                   help="held-out row per user: random (EvalRS 2022) or latest (leave-last-out)")  # fmt: skip
    p.add_argument("--force", action="store_true", help="replace --out if it exists")
    p.set_defaults(func=cmd_data_split)

    p = commands.add_parser(
        "fit",
        help="train and evaluate the method over the EvalRS folds (default: the `small` synthetic preset)",
        description=(
            "Train the triplet-loss model on every fold, predict the test users, evaluate. Every parameter is a "
            "dotted key (also in the saved config.yaml). --ckpt last --run DIR resumes an interrupted run; "
            "--ckpt PATH starts training from a checkpoint. --ckpt best has a meaning of its own (Lightning's fit "
            "knows no 'best'): take the best trial of a tuning study (--study NAME, default 'default'; written "
            "by `tripletlit tune` to studies/NAME/best_config.yaml) and refit its config on the full protocol "
            "(all 4 folds, or --folds N)."
        ),
    )
    source = p.add_mutually_exclusive_group()
    source.add_argument("--data", help="an EvalRS-format folder (real or synthetic)")
    source.add_argument("--preset", help="a synthetic preset: tiny, small (default), medium, evalrs")
    p.add_argument("--config", help="a YAML config (e.g. RUN/config.yaml of an earlier run); flags override it")
    p.add_argument("--folds", type=int, help="number of folds (default 4)")
    p.add_argument("--seed", type=int, help="seed of folds, training and sampling (default 0)")
    p.add_argument("--out", help="run folder (default runs/fit-<time>)")
    p.add_argument("--run", help="run folder to resume (with --ckpt last) or to write")
    p.add_argument("--ckpt", help="'last' (resume --run DIR), 'best' (refit a study's best trial) or a checkpoint path")
    p.add_argument("--study", help="with --ckpt best: the study name (default 'default')")
    p.add_argument("--studies", default="studies", help="folder holding the studies (default studies/)")
    p.add_argument("--force", action="store_true", help="replace an existing, non-empty run folder")
    p.add_argument("--no-progress", action="store_true", help="no progress bars (logs only)")
    p.add_argument("--report", action="store_true", help="write the run's HTML report at the end")
    _add_wandb_flag(p)
    _add_config_flags(p)
    p.set_defaults(func=cmd_fit)

    p = commands.add_parser("tune", help="an Optuna study over the search space (resumable, multi-worker)")
    p.add_argument("--trials", type=int, help="finished trials the study should have in total (default: the sweep's)")
    p.add_argument("--sweep", default=str(_default_sweep()), help="a sweep YAML (default sweeps/default.yaml)")
    p.add_argument("--storage", help="Optuna storage URL (default sqlite in studies/NAME/; postgresql://..., journal:///path)")
    p.add_argument("--study", help="study name (default: the sweep's)")
    p.add_argument("--workers", type=int, default=1, help="worker processes on this machine (one trial each)")
    p.add_argument("--studies", default="studies", help="folder for study folders (default studies/)")
    _add_wandb_flag(p)
    p.add_argument("--report", action="store_true", help="write the study's HTML report at the end")
    p.set_defaults(func=cmd_tune)

    p = commands.add_parser("report", help="an HTML report (+ PNG/SVG panels) of runs or of a study")
    p.add_argument("runs", nargs="*", help="run folders of `fit` (or an `ablate` folder); several are compared")
    p.add_argument("--study", help="a study name (its folder under --studies)")
    p.add_argument("--studies", default="studies", help="folder holding the studies (default studies/)")
    p.add_argument("--out", help="report folder (default RUN/report or the study's report/)")
    p.add_argument("--formats", default="png,svg", help="panel files besides the HTML: png, svg, pdf")
    _add_wandb_flag(p)
    p.set_defaults(func=cmd_report)

    p = commands.add_parser("recommend", help="top-k tracks of one user from a fitted run")
    p.add_argument("--run", required=True, help="a `tripletlit fit` run folder")
    p.add_argument("--user", type=int, required=True, help="a user_id of the run's training users")
    p.add_argument("-k", "--k", type=int, default=10, help="number of tracks (default 10)")
    p.add_argument("--fold", type=int, default=0, help="which fold's model (default 0)")
    p.set_defaults(func=cmd_recommend)

    p = commands.add_parser("ablate", help="the paper's ablations (Table 4) over the same folds, as one table")
    source = p.add_mutually_exclusive_group()
    source.add_argument("--data", help="an EvalRS-format folder")
    source.add_argument("--preset", help="a synthetic preset (default small)")
    p.add_argument("--variants", default=",".join(ABLATIONS), help=f"comma-separated, from {', '.join(ABLATIONS)}")
    p.add_argument("--config", help="a YAML config applied to every variant")
    p.add_argument("--folds", type=int, help="number of folds (default 4)")
    p.add_argument("--seed", type=int, help="seed (default 0)")
    p.add_argument("--out", help="output folder (default runs/ablate-<time>)")
    p.add_argument("--force", action="store_true", help="replace --out if it exists")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--report", action="store_true", help="write the comparison report at the end")
    _add_config_flags(p)
    p.set_defaults(func=cmd_ablate)

    p = commands.add_parser("evaluate", help="score a predictions file against a fold (nine metrics, SCORE, slices)")
    p.add_argument("--predictions", required=True, help="parquet or CSV: user_id + 100 ranked track-id columns (-1 pads)")
    p.add_argument("--data", required=True, help="the EvalRS-format folder the folds were made from")
    p.add_argument("--folds", required=True, help="folder written by `tripletlit data split`")
    p.add_argument("--fold", type=int, required=True, help="fold index")
    p.add_argument("--out", help="folder for metrics.json (default: beside the predictions file)")
    _add_scoring_flags(p)
    p.set_defaults(func=cmd_evaluate)

    p = commands.add_parser("baselines", help="run random / popularity / CBOW baselines over the EvalRS folds")
    source = p.add_mutually_exclusive_group()
    source.add_argument("--data", help="an EvalRS-format folder")
    source.add_argument("--preset", default="small", help="a synthetic preset (default small) when --data is not given")
    p.add_argument("--data-seed", type=int, default=0, help="seed of the synthetic preset")
    p.add_argument("--which", default="random,popularity,cbow", help="comma-separated baselines")
    p.add_argument("--folds", type=int, default=4, help="number of folds (EvalRS: 4)")
    p.add_argument("--seed", type=int, default=0, help="fold seed (fold f uses seed + f) and baseline seed")
    p.add_argument("--user-fraction", type=float, default=0.25, help="share of users per fold (EvalRS: 0.25)")
    p.add_argument("--min-count", type=int, default=10, help="k of the k-core filter (EvalRS: 10)")
    p.add_argument("--out", help="output folder (default runs/baselines-<time>)")
    p.add_argument("--force", action="store_true", help="replace --out if it exists")
    _add_scoring_flags(p)
    p.set_defaults(func=cmd_baselines)
    return parser


def _add_wandb_flag(p) -> None:
    p.add_argument("--wandb", action=argparse.BooleanOptionalAction, default=True,
                   help="log to Weights & Biases (offline without an API key; WANDB_MODE=disabled turns it off)")  # fmt: skip


def _default_sweep() -> Path:
    return Path("sweeps") / "default.yaml"


def _add_config_flags(p) -> None:
    from tripletlit import config as cfg

    group = p.add_argument_group("parameters (dotted keys; defaults = the paper's)")
    defaults = cfg.flatten(cfg.to_dict(cfg.Config()))
    # Lightning's own names for the device flags, beside their dotted keys
    short = {"train.devices": "--devices", "train.strategy": "--strategy", "train.accelerator": "--accelerator"}
    for key in cfg.KEYS:
        if key in ("seed", "data.path", "data.preset", "folds.n"):
            continue
        names = [f"--{key}", *([short[key]] if key in short else [])]
        group.add_argument(*names, dest=key, default=None, metavar="V", help=f"(default {defaults[key]})")


def _add_scoring_flags(p) -> None:
    p.add_argument("--profile", default="evalrs2022", help="score constants: a built-in name or a YAML file")
    p.add_argument("--gate", help="minimum mean HIT_RATE for a SCORE (default: the profile's, 0.015); 'none' disables it")
    p.add_argument("--k", type=int, default=100, help="list length (EvalRS: 100)")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.argv = argv  # recorded in run.json
    try:
        return args.func(args) or 0
    except TripletlitError as exc:
        err_console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        return exc.exit_code
    except KeyboardInterrupt:
        err_console.print("[yellow]interrupted[/]")
        return 130


if __name__ == "__main__":
    sys.exit(main())
