"""Quality on the `small` preset: tripletlit fit vs the three baselines and the ablations.

Every variant runs the full EvalRS protocol (4 folds) for several seeds (fold sampling,
training and the stochastic top-k all follow the seed); the table shows mean +- std over
seeds of each metric, plus each variant's ratio to popularity on the five MREDs (lower |MRED|
is fairer). Results go to benchmarks/out/quality.json.

    python benchmarks/bench_quality.py                # 3 seeds, ~25 minutes on 2 cores
    python benchmarks/bench_quality.py --quick        # 1 seed, 2 folds, no ablations
"""

from __future__ import annotations

import argparse
import copy
import json
import tempfile
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from tripletlit import config as cfg
from tripletlit.cli import ABLATIONS
from tripletlit.data.folds import FoldConfig
from tripletlit.data.synthetic import generate
from tripletlit.evaluation.baselines import BASELINES, make_baseline
from tripletlit.evaluation.metrics import METRICS
from tripletlit.evaluation.protocol import run_protocol
from tripletlit.evaluation.song2vec import fold_vectors
from tripletlit.experiment import run

MREDS = [m for m in METRICS if m.startswith("MRED")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="small")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--folds", type=int, default=4)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", default="benchmarks/out/quality.json")
    args = parser.parse_args()
    if args.quick:
        args.seeds, args.folds = 1, 2
    variants = ["full"] if args.quick else list(ABLATIONS)
    dataset = generate(args.preset, seed=0)[0]
    console = Console()
    scores: dict[str, list[dict]] = {}
    seconds: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for seed in range(args.seeds):
            folds = FoldConfig(n_folds=args.folds, seed=seed)
            cache = Path(tmp) / f"s2v-{seed}"

            def vectors_for(fold, cache=cache):
                return fold_vectors(cache / f"fold{fold.index}", fold.train)

            for name in BASELINES:
                started = time.perf_counter()
                result = run_protocol(lambda name=name, seed=seed: make_baseline(name, seed), dataset, folds, vectors_for)
                scores.setdefault(name, []).append(result["summary"])
                seconds.setdefault(name, []).append(time.perf_counter() - started)
                console.print(f"seed {seed} {name}: SCORE {result['summary']['score']['score']:.3f}")
            for variant in variants:
                config = cfg.Config()
                cfg.set_value(config, "data.preset", args.preset)
                cfg.set_value(config, "seed", seed)
                cfg.set_value(config, "folds.n", args.folds)
                for key, value in ABLATIONS[variant].items():
                    cfg.set_value(config, key, value)
                started = time.perf_counter()
                content = run(copy.deepcopy(config), Path(tmp) / f"{variant}-{seed}", progress_bar=False)
                name = "tripletlit" if variant == "full" else f"tripletlit {variant}"
                scores.setdefault(name, []).append(content["summary"])
                seconds.setdefault(name, []).append(time.perf_counter() - started)
                console.print(f"seed {seed} {name}: SCORE {content['summary']['score']['score']:.3f}")

    def cell(name, getter):
        values = np.array([getter(s) for s in scores[name]], dtype=float)
        return f"{values.mean():.4f} ± {values.std():.4f}" if len(values) > 1 else f"{values.mean():.4f}"

    table = Table(title=f"{args.preset}: mean ± std over {args.seeds} seed(s), {args.folds} folds each")
    table.add_column("metric")
    for name in scores:
        table.add_column(name, justify="right")
    for metric in METRICS:
        table.add_row(metric, *(cell(n, lambda s, m=metric: s["metrics"][m]) for n in scores))
    table.add_row("SCORE (evalrs2022 constants)", *(cell(n, lambda s: s["score"]["score"]) for n in scores))
    table.add_row("consistency", *(cell(n, lambda s: s["consistency"]["overall"]) for n in scores))
    table.add_row("variance agreement", *(cell(n, lambda s: s["variance_agreement"]) for n in scores))
    popularity_mred = np.mean([[abs(s["metrics"][m]) for m in MREDS] for s in scores["popularity"]], axis=0)
    table.add_row("mean |MRED| / popularity's", *(
        f"{np.mean(np.mean([[abs(s['metrics'][m]) for m in MREDS] for s in scores[n]], axis=0) / popularity_mred):.3f}"
        for n in scores
    ))  # fmt: skip
    table.add_row("seconds per protocol run", *(f"{np.median(seconds[n]):.0f}" for n in scores))
    console.print(table)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    summary = {
        name: {
            "metrics_mean": {m: float(np.mean([s["metrics"][m] for s in runs])) for m in METRICS},
            "metrics_std": {m: float(np.std([s["metrics"][m] for s in runs])) for m in METRICS},
            "score_mean": float(np.mean([s["score"]["score"] for s in runs])),
            "variance_agreement_mean": float(np.mean([s["variance_agreement"] for s in runs])),
            "seconds_median": float(np.median(seconds[name])),
        }
        for name, runs in scores.items()
    }
    out.write_text(json.dumps({"preset": args.preset, "seeds": args.seeds, "folds": args.folds, "results": summary},
                              indent=1))  # fmt: skip
    best_fair = min(scores, key=lambda n: np.mean([abs(scores[n][0]["metrics"][m]) for m in MREDS]))
    console.print(f"summary: tripletlit HR {summary['tripletlit']['metrics_mean']['HIT_RATE']:.3f} vs popularity "
                  f"{summary['popularity']['metrics_mean']['HIT_RATE']:.3f}; fairest (mean |MRED|): {best_fair}")  # fmt: skip


if __name__ == "__main__":
    main()
