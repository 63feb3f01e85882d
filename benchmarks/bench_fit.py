#!/usr/bin/env python
"""Benchmark of the whole `tripletlit fit` on a synthetic preset: wall time, peak memory, stage shares.

One child process runs exactly what a user types::

    tripletlit fit --preset evalrs --out benchmarks/out/fit-evalrs --force --no-progress --no-wandb

(4 EvalRS folds: data generation, split, word2vec initialisation, 2 epochs with the neighbour
refresh, prediction with the stochastic top-k, song2vec stand-in, all metrics). The parent
measures the child's wall time and peak RSS (``ru_maxrss`` from ``os.wait4``), samples the
machine's load every 5 s (other processes' CPU use is printed as contention), then reads the
per-fold stage timings that `fit` writes into metrics.json and prints each stage's share,
the ratios to the targets (30 min, 8 GB) and to the paper's GPU figure (66-79 min for 4 folds),
and a one-line summary. Figures go to ``benchmarks/out/fit-<preset>.json``.

Usage::

    python benchmarks/bench_fit.py                   # evalrs preset, 4 folds (~15-25 min)
    python benchmarks/bench_fit.py --quick           # small preset, 4 folds (< 2 min)
    python benchmarks/bench_fit.py --preset medium --folds 2 -- --train.epochs 1   # extra fit flags
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from _harness import children_map, cpu_ticks, machine_info, process_tree  # benchmarks/_harness.py

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "benchmarks" / "out"
TARGET_S, TARGET_BYTES = 30 * 60, 8 * 1024**3
PAPER_GPU_S = (66 * 60, 79 * 60)  # the paper's 4 folds on one GPU
STAGES = ("split", "index_and_weights", "init", "train", "predict", "song2vec", "evaluate")


class LoadWatch:
    """CPU seconds used by processes other than the child's tree, sampled from /proc/stat."""

    def __init__(self, pid_of_child):
        self.pid_of_child, self.samples, self._stop = pid_of_child, [], threading.Event()

    @staticmethod
    def _busy_total() -> tuple[int, int]:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        idle = fields[3] + fields[4]
        return sum(fields) - idle, sum(fields)

    def _tree_ticks(self) -> int:
        pid = self.pid_of_child()
        return 0 if pid is None else cpu_ticks(process_tree(pid, children_map()))

    def _run(self) -> None:
        busy0, total0 = self._busy_total()
        mine0 = self._tree_ticks()
        while not self._stop.wait(5.0):
            busy1, total1 = self._busy_total()
            mine1 = self._tree_ticks()
            cores = os.cpu_count() or 1
            if total1 > total0:
                others = max(0, (busy1 - busy0) - (mine1 - mine0)) / (total1 - total0) * cores
                self.samples.append(others)
            busy0, total0, mine0 = busy1, total1, mine1

    def __enter__(self):
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def run_fit(argv: list[str], cache: str | None) -> dict:
    env = {**os.environ, "WANDB_MODE": "disabled"}
    if cache is not None:  # an empty cache: the song2vec stand-in is trained, as on a first run
        env["TRIPLETLIT_CACHE"] = cache
    started = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-m", "tripletlit.cli", "fit", *argv], cwd=ROOT, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # fmt: skip
    output: list[str] = []
    with LoadWatch(lambda: process.pid) as watch:
        reader = threading.Thread(target=lambda: output.extend(process.stdout), daemon=True)
        reader.start()
        _, status, usage = os.wait4(process.pid, 0)
        reader.join()
    wall = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    return {"wall_s": wall, "peak_bytes": usage.ru_maxrss * 1024, "returncode": process.returncode,
            "output_tail": "".join(output)[-3000:], "others_cores": watch.samples}  # fmt: skip


def stage_table(metrics: dict, wall: float) -> dict[str, float]:
    """Seconds per stage over all folds, with data loading and what the stages leave out."""
    seconds = {"data (generate or load)": metrics["data"]["load_seconds"]}
    for stage in STAGES:
        seconds[stage] = sum(t.get(stage, 0.0) for t in metrics["timings"].values())
    seconds["other (start-up, checkpoints, printing)"] = max(0.0, wall - sum(seconds.values()))
    return seconds


def training_rate(metrics: dict) -> float:
    """Training rows per second over all folds (pool refreshes included)."""
    rows = sum(t.get("train_rows", 0.0) for t in metrics["timings"].values())
    train = sum(t.get("train", 0.0) for t in metrics["timings"].values())
    return rows / train if train else float("nan")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", help="synthetic preset (default evalrs; small with --quick)")
    p.add_argument("--folds", type=int, default=4, help="folds (default 4)")
    p.add_argument("--quick", action="store_true", help="the small preset (< 2 min)")
    p.add_argument("--shared-cache", action="store_true",
                   help="use the user's cache (TRIPLETLIT_CACHE or the default): song2vec vectors cached by an "
                        "earlier run are reused; default: a fresh empty cache, as a first run sees")  # fmt: skip
    p.add_argument("extra", nargs="*", help="more `tripletlit fit` flags, after --")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    preset = args.preset or ("small" if args.quick else "evalrs")
    out = OUT / f"fit-{preset}"
    fit_args = ["--preset", preset, "--folds", str(args.folds), "--out", str(out), "--force", "--no-progress",
                "--no-wandb", *args.extra]  # fmt: skip
    print(f"tripletlit fit {' '.join(fit_args)}", flush=True)
    with tempfile.TemporaryDirectory(prefix="tripletlit-bench-fit-cache-") as cache:
        result = run_fit(fit_args, None if args.shared_cache else cache)
    if result["returncode"] != 0:
        print(result["output_tail"])
        print(f"fit failed with exit code {result['returncode']}")
        return 1
    metrics = json.loads((out / "metrics.json").read_text())
    seconds = stage_table(metrics, result["wall_s"])
    wall, peak = result["wall_s"], result["peak_bytes"]
    others = result["others_cores"]
    contention = sum(others) / len(others) if others else 0.0

    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"tripletlit fit --preset {preset}, {args.folds} folds: where the time goes")
    for column in ("stage", "seconds", "share"):
        table.add_column(column, justify="left" if column == "stage" else "right")
    for stage, s in seconds.items():
        table.add_row(stage, f"{s:,.1f}", f"{s / wall:.1%}")
    table.add_row("[bold]total (wall)[/]", f"[bold]{wall:,.1f}[/]", "100.0%")
    console = Console()
    console.print(table)
    ratios = Table(title="against the targets")
    for column in ("measure", "ours", "target / reference", "ratio"):
        ratios.add_column(column, justify="left" if column == "measure" else "right")
    ratios.add_row("wall time", f"{wall / 60:.1f} min", "30 min", f"{wall / TARGET_S:.2f}x")
    ratios.add_row("peak memory", f"{peak / 1024**3:.2f} GB", "8 GB", f"{peak / TARGET_BYTES:.2f}x")
    rate = training_rate(metrics)
    ratios.add_row("training rows/s (refresh included)", f"{rate:,.0f}", "-", "-")
    ratios.add_row("vs the paper's GPU run", f"{wall / 60:.1f} min", "66-79 min (4 folds, 1 GPU)",
                   f"{PAPER_GPU_S[0] / wall:.1f}-{PAPER_GPU_S[1] / wall:.1f}x faster")  # fmt: skip
    console.print(ratios)
    summary = metrics["summary"]
    hit = summary["metrics"]["HIT_RATE"] if "metrics" in summary else float("nan")
    line = (f"fit --preset {preset} ({args.folds} folds): {wall / 60:.1f} min wall ({wall / TARGET_S:.2f}x of 30 min), "
            f"peak {peak / 1024**3:.2f} GB ({peak / TARGET_BYTES:.2f}x of 8 GB), train {seconds['train'] / wall:.0%} "
            f"of the time ({rate:,.0f} rows/s); HIT_RATE {hit:.4f}; other processes used {contention:.2f} cores on average")  # fmt: skip
    print(line)
    OUT.mkdir(parents=True, exist_ok=True)
    record = {"preset": preset, "folds": args.folds, "machine": machine_info(), "fit_args": fit_args, "fresh_cache": not args.shared_cache, "wall_s": wall, "peak_bytes": peak,
              "stages_s": seconds, "train_rows_per_s": rate, "others_cores_mean": contention, "others_cores_samples": others,
              "summary_line": line, "when": time.strftime("%Y-%m-%dT%H:%M:%S")}  # fmt: skip
    (OUT / f"fit-{preset}.json").write_text(json.dumps(record, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
