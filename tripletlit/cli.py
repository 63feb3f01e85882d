"""The ``tripletlit`` command.

Every sub-command is a thin layer over the Python API: it parses flags, calls one function,
and prints rich output. Errors a user can fix (:class:`~tripletlit.errors.TripletlitError`)
print one line and exit with code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import json
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
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
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
