#!/usr/bin/env python
"""Benchmark of the tripletlit data layer: generate, load (CSV and parquet cache), split.

One run prints a side-by-side table of every stage (median wall time, peak memory, target,
measured/target and, for the comparisons, the speed-up over a reference-style pandas version
written the way the EvalRS 2022 challenge code did it), then a one-line summary, and saves all
figures to ``benchmarks/out/data.json``.

Every measured stage runs in its own child process (``python bench_data.py --child STAGE``):
its peak memory is the child's ``ru_maxrss`` as returned by ``os.wait4`` for that child alone
(``getrusage(RUSAGE_CHILDREN)`` would give the maximum over all children so far). The wall
time is measured inside the child around the work only (imports excluded). Linux hands a
child the parent's RSS high-water mark at ``exec``, so this parent never imports numpy or
pandas: it stays at a few tens of MB, which is the floor of every child's peak.

Usage::

    python benchmarks/bench_data.py            # the evalrs preset (~37M rows), several minutes
    python benchmarks/bench_data.py --quick    # the medium preset, under two minutes
    python benchmarks/bench_data.py --preset small --repeat 3 --keep --workdir /tmp/b
    python benchmarks/bench_data.py --profile  # also dump cProfile stats per stage
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from _harness import child_main, machine_info  # benchmarks/_harness.py

HERE = Path(__file__).resolve().parent
DEFAULT_JSON = HERE / "out" / "data.json"
GB = 1e9

#: Targets at the full evalrs scale (wall seconds, peak bytes); ``None`` = no target.
TARGETS = {
    "generate": (300.0, 8 * GB),
    "load-csv": (None, None),
    "load-cached": (15.0, None),
    "split": (120.0, None),  # soft: no official figure
    "tiny": (1.0, None),  # the issue says "well under a second"
}
SOFT = {"split"}
#: stages of a few seconds at the medium preset: run 3 times with --quick
CHEAP = {"load-csv-events", "load-csv-ref", "load-cached", "split-ours", "split-ref"}
COMPARE_PRESET = "medium"
TINY_CALLS = 5


# =============================================================================================
# Child side: each function does one stage and returns {"wall_s": ..., **extras}.
# Imports of numpy / pandas / tripletlit happen only here, in the child processes.
# =============================================================================================
def _child_imports() -> None:
    import numpy  # noqa: F401
    import pandas  # noqa: F401
    import pyarrow  # noqa: F401

    import tripletlit.data.evalrs  # noqa: F401
    import tripletlit.data.folds  # noqa: F401
    import tripletlit.data.synthetic  # noqa: F401


def _dir_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def child_baseline(spec: dict) -> dict:
    """Imports only: the RSS every other child starts from; also the preset sizes."""
    import numpy as np
    import pandas as pd
    import pyarrow as pa

    from tripletlit.data.synthetic import PRESETS

    return {
        "wall_s": 0.0,
        "versions": {
            "python": platform.python_version(),
            "numpy": np.__version__,
            "pandas": pd.__version__,
            "pyarrow": pa.__version__,
        },  # fmt: skip
        # expected rows per preset (users x mean distinct tracks per user): the target scale
        "expected_rows": {name: p.n_users * p.tracks_per_user for name, p in PRESETS.items()},
    }


def child_generate(spec: dict) -> dict:
    from tripletlit.data.evalrs import write_evalrs
    from tripletlit.data.synthetic import generate

    folder = Path(spec["folder"])
    t0 = time.perf_counter()
    dataset, event_ids = generate(spec["preset"], seed=spec["seed"])
    t1 = time.perf_counter()
    write_evalrs(dataset, folder, event_ids, cache=True)
    t2 = time.perf_counter()
    return {
        "wall_s": t2 - t0,
        "generate_s": t1 - t0,
        "write_s": t2 - t1,
        "events": len(dataset.events),
        "users": dataset.n_users,
        "tracks": dataset.n_tracks,
        "events_csv_bytes": (folder / "evalrs_events.csv").stat().st_size,
        "folder_bytes": _dir_bytes(folder),
    }


def child_load_csv(spec: dict) -> dict:
    """Ours: the three CSVs parsed with pyarrow and validated (no cache read or written)."""
    from tripletlit.data.evalrs import load_evalrs

    t0 = time.perf_counter()
    dataset = load_evalrs(spec["folder"], cache=False)
    return {"wall_s": time.perf_counter() - t0, "events": len(dataset.events)}


def child_load_csv_events(spec: dict) -> dict:
    """Ours on the events file alone (parse + validation), like for like with the reference."""
    from tripletlit.data import schema
    from tripletlit.data.evalrs import read_csv

    t0 = time.perf_counter()
    events = schema.validate_events(read_csv(Path(spec["folder"]) / schema.EVENTS_FILE))
    return {"wall_s": time.perf_counter() - t0, "events": len(events)}


def child_load_csv_ref(spec: dict) -> dict:
    """Reference style: the events CSV read the way the 2022 challenge code read it."""
    import pandas as pd

    t0 = time.perf_counter()
    events = pd.read_csv(Path(spec["folder"]) / "evalrs_events.csv", index_col=0)
    return {"wall_s": time.perf_counter() - t0, "events": len(events)}


def child_load_cached(spec: dict) -> dict:
    from tripletlit.data import evalrs

    parsed = []
    real_read_csv = evalrs.read_csv
    evalrs.read_csv = lambda path, *a, **k: parsed.append(str(path)) or real_read_csv(path, *a, **k)
    t0 = time.perf_counter()
    dataset = evalrs.load_evalrs(spec["folder"])
    wall = time.perf_counter() - t0
    if parsed:
        raise RuntimeError(
            f"load-cached parsed CSVs ({', '.join(parsed)}): the parquet cache was missed"
        )
    return {"wall_s": wall, "events": len(dataset.events)}


def child_split(spec: dict) -> dict:
    """write_folds with the EvalRS folds, after a cached load (the `tripletlit data split` path)."""
    from tripletlit.data.evalrs import load_evalrs
    from tripletlit.data.folds import FoldConfig, write_folds

    t0 = time.perf_counter()
    dataset = load_evalrs(spec["folder"])
    t1 = time.perf_counter()
    config = FoldConfig(n_folds=spec["folds"], seed=spec["seed"])
    stats = write_folds(dataset.events, spec["out"], config, source=spec["folder"])
    t2 = time.perf_counter()
    return {
        "wall_s": t2 - t1,
        "load_s": t1 - t0,
        "folds": len(stats),
        "test_users": [s["test_users"] for s in stats],
        "train_rows": [s["train_rows"] for s in stats],
        "k_core_passes": [s["k_core_passes"] for s in stats],
        "out_bytes": _dir_bytes(Path(spec["out"])),
    }


def reference_k_core(df, k: int, max_iter: int = 10):
    """The 2022 challenge's k-core, pandas style: count, filter with isin, until stable."""
    df_ut = df[["user_id", "track_id"]]
    prev = (None, None)
    for _ in range(max_iter):
        users_per_track = df_ut.groupby("track_id")["user_id"].nunique()
        valid_tracks = users_per_track[users_per_track >= k].index
        df_ut = df_ut[df_ut["track_id"].isin(valid_tracks)]
        rows_per_user = df_ut["user_id"].value_counts()
        valid_users = rows_per_user[rows_per_user >= k].index
        df_ut = df_ut[df_ut["user_id"].isin(valid_users)]
        if (len(valid_users), len(valid_tracks)) == prev:
            break
        prev = (len(valid_users), len(valid_tracks))
    return df[df["user_id"].isin(valid_users) & df["track_id"].isin(valid_tracks)]


def reference_fold(df_events, frac: float, seed: int, k: int):
    """One EvalRS fold the way the challenge code built it: sampled users, k-core, one random
    held-out row per user (groupby-sample) and the training rows as an index anti-join."""
    fold_users = df_events[["user_id"]].drop_duplicates().sample(frac=frac, random_state=seed)
    df_fold = df_events[df_events["user_id"].isin(fold_users["user_id"])]
    df_fold = reference_k_core(df_fold, k=k)
    df_test = df_fold.groupby("user_id", as_index=False).sample(n=1, random_state=seed)
    df_test = df_test[["user_id", "track_id"]]
    df_train = df_events.loc[df_fold.index.difference(df_test.index)]
    return df_train, df_test


def child_split_ours(spec: dict) -> dict:
    from tripletlit.data.evalrs import load_evalrs
    from tripletlit.data.folds import FoldConfig, make_fold

    events = load_evalrs(spec["folder"]).events
    t0 = time.perf_counter()
    fold = make_fold(events, FoldConfig(n_folds=1, seed=spec["seed"]), 0)
    return {"wall_s": time.perf_counter() - t0, "test_users": len(fold.test),
            "train_rows": len(fold.train), "k_core_passes": fold.k_core_passes}  # fmt: skip


def child_split_ref(spec: dict) -> dict:
    import numpy as np

    from tripletlit.data.evalrs import load_evalrs
    from tripletlit.data.folds import FoldConfig, k_core, sample_users

    events = load_evalrs(spec["folder"]).events
    config = FoldConfig(n_folds=1, seed=spec["seed"])
    t0 = time.perf_counter()
    train, test = reference_fold(events, config.user_fraction, config.seed, config.min_count)
    wall = time.perf_counter() - t0
    # untimed cross-check: on the same sampled users, the pandas k-core keeps the same rows
    users = events["user_id"].to_numpy()
    rows = np.flatnonzero(np.isin(users, sample_users(users, config.user_fraction, config.seed)))
    keep, _ = k_core(
        users[rows], events["track_id"].to_numpy()[rows], config.min_count, config.max_passes
    )
    ref_kept = reference_k_core(events.iloc[rows], config.min_count, config.max_passes)
    return {"wall_s": wall, "test_users": len(test), "train_rows": len(train),
            "k_core_agrees": bool(np.array_equal(np.sort(rows[keep]), np.sort(ref_kept.index.to_numpy())))}  # fmt: skip


def child_tiny(spec: dict) -> dict:
    from tripletlit.data.synthetic import generate

    times = []
    for _ in range(spec["calls"]):
        t0 = time.perf_counter()
        generate("tiny", seed=spec["seed"])
        times.append(time.perf_counter() - t0)
    return {"wall_s": statistics.median(times), "first_call_s": times[0], "calls_s": times}


CHILDREN = {
    "baseline": child_baseline,
    "generate": child_generate,
    "prep-compare": child_generate,
    "load-csv": child_load_csv,
    "load-csv-events": child_load_csv_events,
    "load-csv-ref": child_load_csv_ref,
    "load-cached": child_load_cached,
    "split": child_split,
    "split-ours": child_split_ours,
    "split-ref": child_split_ref,
    "tiny": child_tiny,
}


# =============================================================================================
# Parent side: stdlib + rich only (see the module docstring for why).
# =============================================================================================
class StageFailed(RuntimeError):
    pass


def run_child(stage: str, spec: dict, workdir: Path, profile_dir: Path | None) -> dict:
    """Run one stage in a fresh interpreter; its result plus wall and peak RSS from wait4."""
    result = workdir / f".result-{stage}.json"
    result.unlink(missing_ok=True)
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", stage,
           "--spec", json.dumps(spec), "--result", str(result)]  # fmt: skip
    if profile_dir is not None:
        cmd += ["--profile-to", str(profile_dir / f"profile-{stage}.pstats")]
    started = time.perf_counter()
    proc = subprocess.Popen(cmd)
    try:
        _, status, usage = os.wait4(proc.pid, 0)
    except BaseException:  # Ctrl-C, SIGTERM: do not leave the child running
        proc.kill()
        proc.wait()
        raise
    proc.returncode = os.waitstatus_to_exitcode(status)
    process_s = time.perf_counter() - started
    if proc.returncode != 0 or not result.exists():
        raise StageFailed(f"stage {stage} exited with {proc.returncode}")
    out = json.loads(result.read_text())
    result.unlink()
    out["peak_bytes"] = usage.ru_maxrss * 1024  # Linux: kilobytes
    out["process_s"] = process_s
    out["cpu_s"] = usage.ru_utime + usage.ru_stime
    return out


def summarise(runs: list[dict]) -> dict:
    """Median wall over the runs, largest peak; extras from the median run."""
    walls = [r["wall_s"] for r in runs]
    median_run = sorted(runs, key=lambda r: r["wall_s"])[(len(runs) - 1) // 2]
    return {
        "runs": runs,
        "n": len(runs),
        "wall_s": statistics.median(walls),
        "wall_min_s": min(walls),
        "wall_max_s": max(walls),
        "peak_bytes": max(r["peak_bytes"] for r in runs),
        "cpu_s": statistics.median(r["cpu_s"] for r in runs),
        "extra": {
            k: v for k, v in median_run.items() if k not in ("wall_s", "peak_bytes", "cpu_s")
        },
    }


def scaled_targets(
    stage: str, scale: float, floor_bytes: float
) -> tuple[float | None, float | None]:
    """Targets at this preset: times scale with the expected rows (never below 1 s), memory
    above the import floor (never below floor + 0.25 GB). Only the evalrs figures are real
    targets; scaled ones are indicative (fixed costs do not shrink with the data)."""
    wall, peak = TARGETS.get(stage, (None, None))
    if stage == "tiny" or scale == 1.0:
        return wall, peak
    return (None if wall is None else max(wall * scale, 1.0),
            None if peak is None else floor_bytes + max((peak - floor_bytes) * scale, 0.25 * GB))  # fmt: skip


def stage_notes(name: str, e: dict) -> str:
    """A short line of the extras of one stage for the table."""
    if name == "generate":
        return (f"gen {e['generate_s']:.1f} s + write {e['write_s']:.1f} s; {e['events']:,} rows, "
                f"events CSV {e['events_csv_bytes'] / GB:.2f} GB")  # fmt: skip
    if name in ("load-csv", "load-csv-events", "load-csv-ref"):
        return f"{e['events']:,} rows"
    if name == "load-cached":
        return "cache hit checked (no CSV parsed)"
    if name == "split":
        return (f"+ cached load {e['load_s']:.1f} s; {sum(e['train_rows']):,} train rows, "
                f"{sum(e['test_users']):,} test users in all")  # fmt: skip
    if name == "split-ours":
        return f"{e['train_rows']:,} train rows, {e['test_users']:,} test users"
    if name == "split-ref":
        return (f"{e['train_rows']:,} train rows, {e['test_users']:,} test users; "
                f"same k-core rows as ours: {e['k_core_agrees']}")  # fmt: skip
    if name == "tiny":
        return f"first (cold) call {e['first_call_s']:.3f} s"
    return ""


def fmt_s(x: float | None) -> str:
    if x is None:
        return "—"
    return f"{x:.3f} s" if x < 1 else f"{x:.1f} s"


def fmt_gb(x: float | None) -> str:
    return "—" if x is None else f"{x / GB:.2f} GB"


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help=f"use the {COMPARE_PRESET} preset for stages 1-4 (< 2 min)",
    )
    p.add_argument("--preset", help="preset of stages 1-4 (default evalrs, or medium with --quick)")
    p.add_argument(
        "--repeat",
        type=int,
        help="runs per stage, median reported (default 1; 3 for the cheap ones with --quick)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--folds", type=int, default=4, help="folds of the split stage (default 4, as EvalRS)"
    )
    p.add_argument("--workdir", help="where data and folds are written (default: a temp dir)")
    p.add_argument("--keep", action="store_true", help="keep the temp workdir at the end")
    p.add_argument(
        "--json", default=str(DEFAULT_JSON), help=f"figures saved here (default {DEFAULT_JSON})"
    )
    p.add_argument("--profile", action="store_true",
                   help="profile each stage with cProfile (inflates the times); stats next to the JSON")  # fmt: skip
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--spec", help=argparse.SUPPRESS)
    p.add_argument("--result", help=argparse.SUPPRESS)
    p.add_argument("--profile-to", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.repeat is not None and args.repeat < 1:
        p.error("--repeat must be at least 1")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.child:
        child_main(CHILDREN, args.child, json.loads(args.spec), Path(args.result),
                   Path(args.profile_to) if args.profile_to else None, _child_imports)  # fmt: skip
        return 0

    from rich.console import Console
    from rich.table import Table

    # SIGTERM ends the run like Ctrl-C: the running child is killed and the temp dir removed
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))

    # rich falls back to 80 columns when stdout is not a terminal: too narrow for the table
    console = Console() if sys.stdout.isatty() else Console(width=170)
    log = Console(stderr=True)
    preset = args.preset or (COMPARE_PRESET if args.quick else "evalrs")

    def repeats(name: str) -> int:
        if args.repeat is not None:
            return args.repeat
        return 3 if args.quick and name in CHEAP else 1

    own_workdir = args.workdir is None
    workdir = (
        Path(tempfile.mkdtemp(prefix="tripletlit-bench-")) if own_workdir else Path(args.workdir)
    )
    workdir.mkdir(parents=True, exist_ok=True)
    json_path = Path(args.json)
    profile_dir = json_path.parent if args.profile else None
    if profile_dir is not None:
        profile_dir.mkdir(parents=True, exist_ok=True)
    data = workdir / f"data-{preset}"
    compare_data = data if preset == COMPARE_PRESET else workdir / f"data-{COMPARE_PRESET}"
    started = time.perf_counter()
    load_before = os.getloadavg()
    stages: dict[str, dict] = {}
    scale, floor, failed = 1.0, 0.0, None

    def stage(name: str, spec: dict, n: int, label: str) -> dict:
        runs = []
        for i in range(n):
            log.print(
                f"[dim]{time.perf_counter() - started:6.0f} s[/]  {label}"
                + (f"  ({i + 1}/{n})" if n > 1 else "")
            )
            runs.append(run_child(name, spec, workdir, profile_dir))
        stages[name] = summarise(runs)
        s = stages[name]
        log.print(f"         -> {fmt_s(s['wall_s'])}, peak {fmt_gb(s['peak_bytes'])}")
        return s

    try:
        base = stage("baseline", {}, 1, "baseline: imports only")
        expected = base["extra"]["expected_rows"]
        scale = expected[preset] / expected["evalrs"] if preset in expected else 1.0
        floor = base["peak_bytes"]
        seed = args.seed
        stage("generate", {"preset": preset, "seed": seed, "folder": str(data)}, repeats("generate"),
              f"1. generate {preset} + write_evalrs (CSV + parquet cache)")  # fmt: skip
        stage(
            "load-csv",
            {"folder": str(data)},
            repeats("load-csv"),
            "2. load_evalrs(cache=False): 3 CSVs + validation",
        )
        stage(
            "load-csv-events",
            {"folder": str(data)},
            repeats("load-csv-events"),
            "2. ours, events CSV only: read_csv + validate_events",
        )
        stage(
            "load-csv-ref",
            {"folder": str(data)},
            repeats("load-csv-ref"),
            "2. reference: pandas.read_csv(events, index_col=0)",
        )
        stage(
            "load-cached",
            {"folder": str(data)},
            repeats("load-cached"),
            "3. load_evalrs() from the parquet cache",
        )
        stage("split", {"folder": str(data), "out": str(workdir / f"folds-{preset}"), "folds": args.folds, "seed": seed},
              repeats("split"), f"4. write_folds, {args.folds} folds")  # fmt: skip
        if compare_data != data:
            stage("prep-compare", {"preset": COMPARE_PRESET, "seed": seed, "folder": str(compare_data)}, 1,
                  f"5. (prep) generate {COMPARE_PRESET} for the split comparison")  # fmt: skip
        stage("split-ours", {"folder": str(compare_data), "seed": seed}, repeats("split-ours"),
              f"5. make_fold, 1 fold of {COMPARE_PRESET}")  # fmt: skip
        stage("split-ref", {"folder": str(compare_data), "seed": seed}, repeats("split-ref"),
              f"5. reference-style pandas fold of {COMPARE_PRESET}")  # fmt: skip
        stage(
            "tiny",
            {"seed": seed, "calls": TINY_CALLS},
            1,
            f"6. generate tiny, median of {TINY_CALLS} calls",
        )
    except StageFailed as exc:
        failed = str(exc)
        log.print(f"[red]{exc}; the stages before it are reported below[/]")
    finally:
        if own_workdir and not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    total_s = time.perf_counter() - started

    # ---------------------------------------------------------------------- figures + table
    def speedup(ours: str, ref: str) -> float | None:
        if ours in stages and ref in stages and stages[ours]["wall_s"] > 0:
            return stages[ref]["wall_s"] / stages[ours]["wall_s"]
        return None

    speedups = {
        "load-csv": speedup("load-csv", "load-csv-ref"),
        "load-csv-events": speedup("load-csv-events", "load-csv-ref"),
        "split-ours": speedup("split-ours", "split-ref"),
    }
    rows = [
        ("baseline", "imports only (floor of every peak)", "—"),
        ("generate", f"generate({preset}) + write_evalrs CSV + cache", preset),
        ("load-csv", "load_evalrs(cache=False): 3 CSVs, pyarrow + validation", preset),
        ("load-csv-events", "ours, events CSV only: parse + validate_events", preset),
        ("load-csv-ref", "reference: pandas.read_csv(events, index_col=0)", preset),
        ("load-cached", "load_evalrs() from the parquet cache", preset),
        ("split", f"write_folds, {args.folds} EvalRS folds (after a cached load)", preset),
        ("split-ours", "make_fold, 1 fold (vectorised numpy)", COMPARE_PRESET),
        ("split-ref", "reference: pandas sample / groupby k-core / groupby-sample", COMPARE_PRESET),
        ("tiny", f"generate(tiny), median of {TINY_CALLS} calls in one process", "tiny"),
    ]
    title = f"tripletlit data layer — preset {preset}" + (
        f" (targets scaled ×{scale:.2f} from evalrs by expected rows)" if scale != 1.0 else ""
    )
    table = Table(title=title, title_justify="left")
    for col, justify in (("stage", "left"), ("data", "left"), ("runs", "right"), ("wall (median)", "right"),
                         ("peak RSS", "right"), ("target", "right"), ("measured/target", "right"),
                         ("vs reference", "right"), ("notes", "left")):  # fmt: skip
        table.add_column(col, justify=justify, overflow="fold")
    verdicts = []
    for name, _, data_name in rows:
        if name not in stages:
            continue
        s = stages[name]
        stage_scale = scale if data_name == preset else 1.0
        hard = name not in SOFT and (stage_scale == 1.0 or name == "tiny")
        t_wall, t_peak = scaled_targets(name, stage_scale, floor)
        s["target_wall_s"], s["target_peak_bytes"] = t_wall, t_peak
        ratios, targets = [], []
        if t_wall is not None:
            s["wall_ratio"] = s["wall_s"] / t_wall
            targets.append(f"≤ {fmt_s(t_wall)}")
            ratios.append(f"{s['wall_ratio']:.2f}")
            verdicts.append((name, "wall", s["wall_ratio"], hard))
        if t_peak is not None:
            s["peak_ratio"] = s["peak_bytes"] / t_peak
            targets.append(f"≤ {fmt_gb(t_peak)}")
            ratios.append(f"{s['peak_ratio']:.2f}")
            verdicts.append((name, "peak", s["peak_ratio"], hard))
        s["speedup_vs_reference"] = speedups.get(name)
        vs = (
            f"×{speedups[name]:.2f}"
            if speedups.get(name)
            else ("(reference)" if name.endswith("-ref") else "")
        )
        runs = f"{s['n']}" + (
            f" ({fmt_s(s['wall_min_s'])}–{fmt_s(s['wall_max_s'])})" if s["n"] > 1 else ""
        )
        table.add_row(name + (" (soft)" if name in SOFT else ""), data_name, runs, fmt_s(s["wall_s"]),
                      fmt_gb(s["peak_bytes"]), ", ".join(targets) or "—", " / ".join(ratios) or "—", vs,
                      stage_notes(name, s["extra"]))  # fmt: skip
    console.print(table)
    for name, what, _ in rows:
        if name in stages:
            console.print(f"  {name:<16} {what}", style="dim", markup=False, highlight=False)
    console.print("  vs reference = reference wall / ours (higher is faster); peak RSS = the child's ru_maxrss "
                  "(wait4), the largest over the runs", style="dim", markup=False, highlight=False)  # fmt: skip

    parts = [f"FAILED: {failed}"] if failed else []
    hard_missed = [f"{n} {kind} ×{r:.2f}" for n, kind, r, hard in verdicts if hard and r > 1.0]
    other_missed = [f"{n} {kind} ×{r:.2f}" for n, kind, r, hard in verdicts if not hard and r > 1.0]
    n_hard = sum(hard for *_, hard in verdicts)
    parts.append(f"{n_hard - len(hard_missed)}/{n_hard} targets met"
                 + (f" (missed: {', '.join(hard_missed)})" if hard_missed else ""))  # fmt: skip
    if len(verdicts) > n_hard:
        label = "scaled/soft targets (indicative)"
        parts.append(f"{len(verdicts) - n_hard - len(other_missed)}/{len(verdicts) - n_hard} {label} met"
                     + (f" (missed: {', '.join(other_missed)})" if other_missed else ""))  # fmt: skip
    for key, label in (
        ("load-csv", "CSV load vs pandas.read_csv"),
        ("split-ours", "fold vs reference"),
    ):
        if speedups.get(key):
            parts.append(f"{label} ×{speedups[key]:.1f}")
    if "tiny" in stages:
        parts.append(f"tiny generate {stages['tiny']['wall_s']:.3f} s")
    load_after = os.getloadavg()
    parts.append(
        f"total {total_s:.0f} s, load avg {load_before[0]:.1f}→{load_after[0]:.1f} on {os.cpu_count()} CPUs"
    )
    summary = "; ".join(parts)
    ok = not failed and not hard_missed
    console.print(summary, style="green" if ok else "red", markup=False)

    figures = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": machine_info()
        | {
            "loadavg_before": load_before,
            "loadavg_after": load_after,
            "parent_maxrss_bytes": _self_maxrss(),
        },  # fmt: skip
        "args": {
            k: v
            for k, v in vars(args).items()
            if k not in ("child", "spec", "result", "profile_to")
        },
        "preset": preset,
        "compare_preset": COMPARE_PRESET,
        "target_scale": scale,
        "targets_at_evalrs": {k: {"wall_s": w, "peak_bytes": m} for k, (w, m) in TARGETS.items()},
        "stages": stages,
        "speedups_vs_reference": speedups,
        "summary": summary,
        "failed": failed,
        "total_s": total_s,
    }
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(figures, indent=1, default=str))
    log.print(
        f"figures saved to {json_path}"
        + (f"; workdir kept at {workdir}" if not own_workdir or args.keep else "")
    )
    if profile_dir is not None:
        _print_profiles(profile_dir, list(stages), log)
    return 0 if ok else 1


def _self_maxrss() -> int:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _print_profiles(folder: Path, names: list[str], log) -> None:
    import io
    import pstats

    for name in names:
        path = folder / f"profile-{name}.pstats"
        if path.exists():
            buffer = io.StringIO()
            pstats.Stats(str(path), stream=buffer).sort_stats("cumulative").print_stats(12)
            log.print(f"profile of {name} ({path})", style="bold", markup=False)
            sys.stderr.write(buffer.getvalue().split("\n", 4)[-1])  # unwrapped, unlike rich


if __name__ == "__main__":
    sys.exit(main())
