"""Reports: figures and one self-contained HTML page from run folders and Optuna studies.

:func:`build_report` reads ``tripletlit fit`` run folders (``RUN/metrics.json``, the Lightning
CSV logs, the predictions) and optionally a study folder (``studies/NAME/study.db``) and writes::

    OUT/report.html     one page, every panel embedded as a base64 PNG (no external files)
    OUT/<panel>.png     every panel as PNG, and as SVG/PDF (``formats``)
    OUT/panels.json     the panels: key, title, section, files

Run panels (one column per run, or grouped bars when several runs are compared, e.g. the
variants of ``tripletlit ablate``): miss rate per slice of the five MRED metrics per fold with
the overall miss rate as a reference line (the paper's argument: MRED averages these gaps);
the SCORE split into its normalised terms; the training curves (loss terms, sampling
fallbacks, val/* metrics); variance agreement (user artist Gini in training vs in the
recommendations, rebuilt from the run's config and predictions); consistency per metric.
Study panels: optimisation history, parameter importances, parallel coordinates of the top
trials and, for two objectives, the Pareto front.

Every number in the HTML tables is read from ``metrics.json`` (study tables: from the study)
and printed with 6 decimals, as the command line does. The folder is written atomically: it
is built aside and swapped in whole, so a failure never leaves half a report. Figures are
drawn on matplotlib's Agg canvas directly (``Figure`` + ``FigureCanvasAgg``), never through
pyplot, so the caller's backend and open figures are left alone.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
import os
import sys
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from tripletlit import __version__
from tripletlit.errors import TripletlitError
from tripletlit.evaluation.metrics import METRICS, SLICE_METRICS
from tripletlit.files import atomic_dir

REPORT = "report.html"
MANIFEST = "panels.json"
FORMATS = ("png", "svg", "pdf")
DPI = 110
TOP_TRIALS = 20
GROUPS = ("perf", "fair", "behav")
FOLD_STYLES = ("-", "--", ":", "-.")
RC = {
    "font.size": 8.5,
    "axes.titlesize": 9,
    "axes.labelsize": 8.5,
    "legend.fontsize": 7.5,
    "xtick.labelsize": 7.5,
    "ytick.labelsize": 7.5,
    "figure.titlesize": 11,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "svg.fonttype": "none",  # text stays text in the SVG (small, searchable)
    "svg.hashsalt": "tripletlit",  # reproducible SVG ids
}


# ----------------------------------------------------------------------------- inputs ---
@dataclass
class RunData:
    """A run folder as the report reads it."""

    path: Path
    name: str
    content: dict
    curves: dict[int, pd.DataFrame | None] = field(default_factory=dict)

    @property
    def folds(self) -> list[dict]:
        return self.content["folds"]

    @property
    def summary(self) -> dict:
        return self.content["summary"]


def load_run(path: str | os.PathLike, name: str | None = None) -> RunData:
    """Read ``RUN/metrics.json`` and the per-fold Lightning CSV logs of a run folder."""
    path = Path(path)
    if not path.is_dir():
        raise TripletlitError(f"{path}: run folder not found; pass folders written by `tripletlit fit --out`")
    metrics = path / "metrics.json"
    if not metrics.is_file():
        raise TripletlitError(f"{path}: no metrics.json, so the run is not complete; finish it with "
                              f"`tripletlit fit --ckpt last --run {path}`")  # fmt: skip
    try:
        content = json.loads(metrics.read_text())
    except (OSError, ValueError) as exc:
        raise TripletlitError(f"{metrics}: not readable JSON ({str(exc).splitlines()[0]})") from None
    if not isinstance(content, dict) or not content.get("folds") or not isinstance(content.get("summary"), dict):
        raise TripletlitError(f"{metrics}: no 'folds' and 'summary'; is this a `tripletlit fit` run folder?")
    run = RunData(path=path, name=name or path.name, content=content)
    for fold in run.folds:
        f = int(fold.get("fold", 0))
        run.curves[f] = _read_curves(path / f"fold{f}" / "logs" / "metrics.csv")
    return run


def expand_runs(paths: Sequence[str | os.PathLike]) -> list[Path]:
    """The run folders of ``paths``: a `tripletlit ablate` folder (``ablations.json`` and one run
    folder per variant) stands for its variants; any other folder is one run."""
    out = []
    for p in map(Path, paths):
        if not (p / "metrics.json").exists() and (p / "ablations.json").is_file():
            variants = list(json.loads((p / "ablations.json").read_text()))
            out += [p / v for v in variants if (p / v).is_dir()]
        else:
            out.append(p)
    return out


def _read_curves(path: Path) -> pd.DataFrame | None:
    """One row per epoch, one column per logged metric (the last value of that epoch)."""
    if not path.is_file():
        return None
    try:
        frame = pd.read_csv(path)
    except (OSError, ValueError, pd.errors.EmptyDataError):
        return None
    if "epoch" not in frame.columns or frame.empty:
        return None
    values = frame.drop(columns=[c for c in ("step",) if c in frame.columns])
    return values.groupby("epoch").last().sort_index()


def load_study(folder: str | os.PathLike):
    """The Optuna study of a study folder (``folder/study.db``, study named after the folder)."""
    import optuna

    folder = Path(folder)
    if not folder.is_dir():
        raise TripletlitError(f"{folder}: study folder not found; pass studies/NAME as written by `tripletlit tune`")
    db = folder / "study.db"
    if not db.is_file():
        raise TripletlitError(f"{folder}: no study.db; a study folder is written by `tripletlit tune --studies ...`")
    url = f"sqlite:///{db.resolve()}"
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                return optuna.load_study(study_name=folder.name, storage=url)
            except KeyError:
                names = optuna.get_all_study_names(url)
                if len(names) != 1:
                    raise TripletlitError(f"{db}: no study named {folder.name!r} (it holds {', '.join(names) or 'none'})") from None
                return optuna.load_study(study_name=names[0], storage=url)
    except TripletlitError:
        raise
    except Exception as exc:  # noqa: BLE001 - any storage failure is a bad file for the user
        raise TripletlitError(f"{db}: cannot open the study ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})") from None


# ------------------------------------------------------------------- variance agreement ---
class _DataCache:
    """Data sets loaded from run configs, shared by the runs of one report (runs of an ablation
    or a study usually share theirs)."""

    def __init__(self):
        self.datasets: dict = {}

    def dataset(self, config):
        from tripletlit.experiment import load_data

        key = (config.data.path, config.data.preset, config.data.seed)
        if key not in self.datasets:
            self.datasets[key] = load_data(config)
        return self.datasets[key]


def agreement_points(run: RunData, cache: _DataCache | None = None) -> dict[int, dict | str]:
    """Per fold: ``{"train_gini", "rec_gini", "pearson"}`` of every test user (from the run's
    config, data and predictions), or a one-line reason why they cannot be rebuilt."""
    from tripletlit import config as cfg
    from tripletlit.data.folds import make_fold
    from tripletlit.evaluation.agreement import variance_agreement
    from tripletlit.experiment import fold_config

    cache = cache or _DataCache()
    out: dict[int, dict | str] = {}
    try:
        yaml_path = run.path / "config.yaml"
        config = cfg.load(yaml_path) if yaml_path.is_file() else cfg.from_dict(run.content.get("config") or {})
        dataset = cache.dataset(config)
        folds = fold_config(config)
    except (TripletlitError, OSError) as exc:
        reason = " ".join(str(exc).split()) or type(exc).__name__
        return {int(f.get("fold", 0)): f"training rows unavailable: {reason}" for f in run.folds}
    for fold_result in run.folds:
        f = int(fold_result.get("fold", 0))
        predictions = run.path / f"fold{f}" / "predictions.parquet"
        if not predictions.is_file():
            out[f] = f"fold {f}: no predictions.parquet"
            continue
        try:
            frame = pd.read_parquet(predictions)
            fold = make_fold(dataset.events, folds, f)
        except (OSError, ValueError, TripletlitError) as exc:
            out[f] = f"fold {f}: {str(exc).splitlines()[0]}"
            continue
        users = frame["user_id"].to_numpy()
        result = variance_agreement(fold.train, users, frame.drop(columns="user_id").to_numpy(), dataset.tracks)
        out[f] = {"train_gini": result["train_gini"], "rec_gini": result["rec_gini"], "pearson": result["pearson"]}
    return out


# ---------------------------------------------------------------------------- helpers ---
def _finite(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _value(value) -> float:
    return float(value) if _finite(value) else float("nan")


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(min(width, 40.0), min(height, 40.0)), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _colours(n: int) -> list:
    import matplotlib

    cmap = matplotlib.colormaps["tab10"]
    return [cmap(i % 10) for i in range(n)]


def _message(ax, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, wrap=True, fontsize=9, color="0.3")
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)


def _axes_grid(fig, rows: int, cols: int, **kw) -> np.ndarray:
    """A rows x cols array of axes (always 2-D)."""
    return fig.subplots(rows, cols, squeeze=False, **kw)


def _slice_order(metric: str, names: set[str]) -> list[str]:
    from tripletlit.data import slices as sl

    edges = {"MRED_USER_ACTIVITY": sl.USER_ACTIVITY_EDGES, "MRED_TRACK_POPULARITY": sl.TRACK_POPULARITY_EDGES,
             "MRED_ARTIST_POPULARITY": sl.ARTIST_POPULARITY_EDGES}  # fmt: skip
    if metric in edges:
        known = sl.bin_labels(edges[metric])
    elif metric == "MRED_COUNTRY":
        known = [*sl.COUNTRIES, sl.MISSING_COUNTRY]
    else:
        known = list(sl.GENDER_SLICES)
    return [s for s in known if s in names] + sorted(names - set(known))


# ------------------------------------------------------------------------- run panels ---
def plot_slices(runs: list[RunData]):
    """Miss rate per slice of each MRED metric, bars per fold, overall miss rate as a line."""
    fig = _figure(1.0 + 5.6 * len(runs), 2.5 * len(SLICE_METRICS) + 0.9)
    axes = _axes_grid(fig, len(SLICE_METRICS), len(runs), sharey="row")
    lows = np.ones(len(SLICE_METRICS))
    handles: dict[str, object] = {}
    for c, run in enumerate(runs):
        colours = _colours(len(run.folds))
        for r, metric in enumerate(SLICE_METRICS):
            ax = axes[r, c]
            per_fold = [fold.get("slices", {}).get(metric, {}) for fold in run.folds]
            names = _slice_order(metric, set().union(*[set(s) for s in per_fold]))
            if not names:
                _message(ax, f"{metric}: no slice")
                continue
            width = 0.8 / len(run.folds)
            x = np.arange(len(names))
            for i, (fold, slices) in enumerate(zip(run.folds, per_fold)):
                f = fold.get("fold", i)
                rates = [_value(slices.get(s, {}).get("miss_rate")) for s in names]
                handles.setdefault(f"fold {f}", ax.bar(x - 0.4 + width * (i + 0.5), rates, width, color=colours[i]))
                if _finite(fold.get("miss_rate")):
                    line = ax.axhline(fold["miss_rate"], color=colours[i], linestyle="--", linewidth=1.1)
                    handles.setdefault(f"fold {f}: overall miss rate", line)
                lows[r] = min([lows[r], *(v for v in rates if math.isfinite(v)), _value(fold.get("miss_rate"))])
            users = [sum(int(s.get(n, {}).get("users", 0)) for s in per_fold) for n in names]
            ax.set_xticks(x, [f"{n}\n{u}" for n, u in zip(names, users)], fontsize=6.5 if len(names) > 8 else 7.5)
            mean = run.summary.get("metrics", {}).get(metric)
            ax.set_title(f"{metric}" + (f"  (mean {mean:.4f})" if _finite(mean) else ""))
            if c == 0:
                ax.set_ylabel("miss rate")
            ax.grid(axis="y", alpha=0.3)
        axes[0, c].annotate(run.name, (0.5, 1.18), xycoords="axes fraction", ha="center", fontsize=10,
                            fontweight="bold")  # fmt: skip
    for r in range(len(SLICE_METRICS)):
        low = lows[r] if math.isfinite(lows[r]) else 0.0
        axes[r, 0].set_ylim(max(0.0, low - 0.05 - 0.1 * (1.0 - low)), 1.01)
    order = sorted(handles, key=lambda k: (k.split(":")[0], ":" in k))
    fig.legend([handles[k] for k in order], order, loc="outside lower center", ncol=min(8, len(order)),
               title="bars: miss rate of the slice (its test users over all folds under its name); dashed: the fold's "
                     "overall miss rate; the y axis need not start at 0", title_fontsize=8)  # fmt: skip
    return fig


def plot_score(runs: list[RunData]):
    """The SCORE, perf/fair/behav and the nine normalised metrics: bars = means, dots = folds."""
    fig = _figure(12.5, 1.8 + len(METRICS) * (0.18 + 0.2 * len(runs)))
    axes = fig.subplots(1, 2, width_ratios=[1, 2])
    colours = _colours(len(runs))
    height = 0.8 / len(runs)

    def term_value(score: dict, term: str) -> float:
        return _value(score.get(term) if term in ("score", *GROUPS) else score.get("normalised", {}).get(term))

    handles = []
    for ax, terms in ((axes[0], ("score", *GROUPS)), (axes[1], METRICS)):
        y = np.arange(len(terms))
        for i, run in enumerate(runs):
            offset = y - 0.4 + height * (i + 0.5)
            summary = run.summary.get("score", {})
            values = [term_value(summary, t) for t in terms]
            bars = ax.barh(offset, values, height, color=colours[i],
                           label=run.name + (" (gated)" if summary.get("gated") else ""))  # fmt: skip
            if ax is axes[0]:
                handles.append(bars)
            for fold in run.folds:
                dots = ax.plot([term_value(fold.get("score", {}), t) for t in terms], offset, "d", color="black",
                               markersize=3, alpha=0.7, label="a fold")  # fmt: skip
            if len(runs) <= 4:  # the mean's value in a column at the right edge
                for v, yy in zip(values, offset):
                    ax.text(1.01, yy, f"{v:.3g}" if math.isfinite(v) else "n/a", va="center", ha="left", fontsize=6.5,
                            color=colours[i], transform=ax.get_yaxis_transform())  # fmt: skip
        ax.set_yticks(y, ["SCORE" if t == "score" else t for t in terms])
        ax.invert_yaxis()
        ax.axvline(0, color="0.3", linewidth=0.8)
        ax.set_xscale("symlog", linthresh=1.0)
        ax.grid(axis="x", alpha=0.3)
    axes[0].set_title("SCORE = (1 perf + 1.5 fair + 1.5 behav) / 4")
    axes[1].set_title("normalised metrics: (x - base) / (best - base); 1 = best EvalRS 2022 entry, 0 = baseline")
    axes[0].set_xlabel("value (symlog axis)")
    axes[1].set_xlabel("normalised value (symlog axis)")
    fig.legend([*handles, dots[0]], [h.get_label() for h in handles] + ["one fold"], loc="outside lower center",
               ncol=min(6, len(handles) + 1), title="bars: SCORE of the fold means (as EvalRS scored); diamonds: each fold",
               title_fontsize=8)  # fmt: skip
    return fig


CURVE_ROWS: tuple[tuple[str, Callable[[str], bool]], ...] = (
    ("training loss (total)", lambda c: c in ("train/loss_epoch", "train/loss")),
    ("loss terms (unweighted)", lambda c: c.startswith("train/loss_") and c not in ("train/loss_epoch", "train/loss_step")),
    ("sampling fallbacks (users)", lambda c: c.startswith("sampling/fallback")),
    ("mean negative-pool size", lambda c: c == "sampling/mean_pool_size"),
    ("validation accuracy", lambda c: c in ("val/HIT_RATE", "val/MRR")),
    ("validation MRED", lambda c: c.startswith("val/MRED")),
    ("validation SCORE proxy (no BLW/LD)", lambda c: c == "val/score_proxy"),
    ("validation, other", lambda c: c.startswith("val/") and c not in ("val/HIT_RATE", "val/MRR", "val/score_proxy")
     and not c.startswith("val/MRED")),
)  # fmt: skip


def _curve_label(name: str) -> str:
    short = name.split("/", 1)[-1]
    return {"loss_epoch": "total", "loss": "total"}.get(short, short.removeprefix("loss_"))


def plot_curves(runs: list[RunData]):
    """Per-epoch training curves: one row per group of logged metrics, one column per run."""
    from matplotlib.lines import Line2D
    from matplotlib.ticker import MaxNLocator

    columns = set()
    for run in runs:
        for frame in run.curves.values():
            if frame is not None:
                columns |= {c for c in frame.columns if frame[c].notna().any()}
    rows = [(title, sorted(c for c in columns if keep(c))) for title, keep in CURVE_ROWS]
    rows = [(title, names) for title, names in rows if names]
    if not rows:
        fig = _figure(8, 2.5)
        _message(fig.subplots(), "no training logs (fold*/logs/metrics.csv) in " + ", ".join(r.name for r in runs))
        return fig
    fig = _figure(2.6 + 4.6 * len(runs), 1.9 * len(rows) + 0.8)
    axes = _axes_grid(fig, len(rows), len(runs), sharex="col")
    fold_keys = sorted(set().union(*[set(run.curves) for run in runs]))
    styles = {f: FOLD_STYLES[i % len(FOLD_STYLES)] for i, f in enumerate(fold_keys)}
    for c, run in enumerate(runs):
        for r, (title, names) in enumerate(rows):
            ax = axes[r, c]
            colours = _colours(len(names))
            drawn = False
            for f, frame in sorted(run.curves.items()):
                if frame is None:
                    continue
                for name, colour in zip(names, colours):
                    if name in frame.columns and frame[name].notna().any():
                        series = frame[name].dropna()
                        ax.plot(series.index, series.to_numpy(), styles[f], color=colour,
                                marker="o", markersize=3)  # fmt: skip
                        drawn = True
            ax.set_title(title)
            if not drawn:
                _message(ax, "not logged")
                continue
            ax.grid(alpha=0.3)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            if c == len(runs) - 1:  # one legend per row, right of the last column
                handles = [Line2D([], [], color=col, label=_curve_label(n)) for n, col in zip(names, colours)]
                handles += [Line2D([], [], color="black", linestyle=styles[f], label=f"fold {f}") for f in fold_keys]
                ax.legend(handles=handles, fontsize=6.5, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
        axes[-1, c].set_xlabel("epoch")
        axes[0, c].annotate(run.name, (0.5, 1.25), xycoords="axes fraction", ha="center", fontsize=10, fontweight="bold")
    return fig


def plot_agreement(runs: list[RunData], points: dict[str, dict[int, dict | str]]):
    """Per user: artist Gini impurity of the training tracks vs of the recommended tracks."""
    fig = _figure(0.5 + 5.0 * len(runs), 5.0)
    axes = _axes_grid(fig, 1, len(runs))[0]
    for ax, run in zip(axes, runs):
        per_fold = points.get(run.name, {})
        colours = _colours(len(run.folds))
        reasons = []
        for i, fold in enumerate(run.folds):
            f = int(fold.get("fold", i))
            data = per_fold.get(f, f"fold {f}: not computed")
            if isinstance(data, str):
                reasons.append(data)
                continue
            x, y = np.asarray(data["train_gini"]), np.asarray(data["rec_gini"])
            ok = np.isfinite(x) & np.isfinite(y)
            stored = fold.get("variance_agreement")
            r_text = f"{stored:.4f}" if _finite(stored) else "n/a"
            # rasterized: SVG/PDF of a full-size run (tens of thousands of users) stay small
            ax.scatter(x[ok], y[ok], s=7, alpha=0.5, color=colours[i], edgecolors="none", rasterized=True,
                       label=f"fold {f}: r = {r_text} ({int(ok.sum())} users)")  # fmt: skip
            if ok.sum() > 1 and x[ok].std() > 0 and y[ok].std() > 0:
                slope, intercept = np.polyfit(x[ok], y[ok], 1)
                xs = np.array([x[ok].min(), x[ok].max()])
                ax.plot(xs, slope * xs + intercept, color=colours[i], linewidth=1.4)
        mean = run.summary.get("variance_agreement")
        ax.set_title(f"{run.name}: Pearson r = {mean:.4f}" if _finite(mean) else f"{run.name}: Pearson r = n/a")
        if reasons and len(reasons) == len(run.folds):
            _message(ax, "\n".join(reasons))
            continue
        ax.plot([0, 1], [0, 1], color="0.6", linestyle=":", linewidth=1)
        ax.set_xlim(-0.02, 1.02)
        ax.set_ylim(-0.02, 1.02)
        ax.set_xlabel("user's artist Gini impurity (training)")
        ax.set_ylabel("artist Gini impurity of the recommendations")
        ax.legend(loc="lower right", markerscale=2)
        ax.grid(alpha=0.3)
    return fig


def plot_consistency(runs: list[RunData]):
    """1 - sigma/|mu| of each metric across folds; undefined metrics (|mu| ~ 0 or NaN) marked."""
    fig = _figure(max(9.0, 2.0 + 0.32 * len(METRICS) * len(runs)), 4.8)
    ax = fig.subplots()
    colours = _colours(len(runs))
    width = 0.8 / len(runs)
    x = np.arange(len(METRICS))
    values_all = []
    for i, run in enumerate(runs):
        cons = run.summary.get("consistency", {})
        per_metric = cons.get("per_metric", {})
        undefined = set(cons.get("undefined", [])) | {m for m in METRICS if not _finite(per_metric.get(m))}
        values = [_value(per_metric.get(m)) if m not in undefined else 0.0 for m in METRICS]
        values_all += [v for v, m in zip(values, METRICS) if m not in undefined]
        folds = cons.get("folds", len(run.folds))
        offset = x - 0.4 + width * (i + 0.5)
        ax.bar(offset, values, width, color=colours[i], label=f"{run.name} ({folds} folds)")
        for xo, m in zip(offset, METRICS):
            if m in undefined:
                ax.bar(xo, 0.08, width, bottom=-0.04, color="white", edgecolor=colours[i], hatch="xxx")
                ax.text(xo, 0.06, "undefined", rotation=90, ha="center", va="bottom", fontsize=6.5, color="0.25")
        if _finite(cons.get("overall")):
            ax.axhline(cons["overall"], color=colours[i], linestyle="--", linewidth=1,
                       label=f"{run.name} overall {cons['overall']:.4f}")  # fmt: skip
    ax.set_xticks(x, METRICS, rotation=25, ha="right")
    ax.axhline(0, color="0.3", linewidth=0.8)
    ax.axhline(1, color="0.6", linewidth=0.8, linestyle=":")
    top = max([1.05, *values_all])
    ax.set_ylim(min([-0.1, *values_all]) - 0.05, top + 0.05)
    ax.set_ylabel("consistency 1 - sigma / |mu|")
    ax.legend(loc="lower left", ncol=2, framealpha=0.85)
    ax.grid(axis="y", alpha=0.3)
    return fig


# ----------------------------------------------------------------------- study panels ---
def _objectives(study) -> list[tuple[str, str]]:
    names = [d.name.lower() for d in study.directions]
    sweep = study.user_attrs.get("sweep") or {}
    stored = sweep.get("objectives") or []
    if len(stored) == len(names):
        return [(str(m), d) for (m, _), d in zip(stored, names)]
    return [(f"objective {i}", d) for i, d in enumerate(names)]


def _complete(study) -> list:
    from optuna.trial import TrialState

    return study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))


def _ranked(study) -> list:
    """Complete trials, best first by the first objective."""
    sign = 1 if study.directions[0].name.lower() == "maximize" else -1
    return sorted(_complete(study), key=lambda t: (-sign * t.values[0], t.number))


def _state_counts(study) -> str:
    counts: dict[str, int] = {}
    for t in study.get_trials(deepcopy=False):
        counts[t.state.name.lower()] = counts.get(t.state.name.lower(), 0) + 1
    return ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "no trial"


def plot_history(study):
    """Objective value of each complete trial and the best so far, per objective."""
    from matplotlib.ticker import MaxNLocator

    objectives = _objectives(study)
    fig = _figure(0.5 + 6.0 * len(objectives), 4.2)
    axes = _axes_grid(fig, 1, len(objectives))[0]
    trials = sorted(_complete(study), key=lambda t: t.number)
    from optuna.trial import TrialState

    pruned = [t.number for t in study.get_trials(deepcopy=False, states=(TrialState.PRUNED,))]
    for i, (ax, (metric, direction)) in enumerate(zip(axes, objectives)):
        if not trials:
            _message(ax, f"no complete trial yet ({_state_counts(study)})")
            continue
        numbers = np.array([t.number for t in trials])
        values = np.array([t.values[i] for t in trials], dtype=float)
        best = np.maximum.accumulate(values) if direction == "maximize" else np.minimum.accumulate(values)
        ax.plot(numbers, values, "o", color="tab:blue", markersize=4, label="complete trial")
        ax.step(numbers, best, where="post", color="tab:red", label="best so far" + (" (this objective alone)" if len(objectives) > 1 else ""))
        if pruned:
            ax.plot(pruned, np.full(len(pruned), np.nanmin(values)), "x", color="0.5", label="pruned (number only)")
        ax.set_xlabel("trial number")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(f"{metric} ({direction})")
        ax.set_title(f"{metric}: {_state_counts(study)}")
        ax.grid(alpha=0.3)
        ax.legend(loc="best")
    return fig


def plot_importances(study):
    """Importance of each parameter (per objective) with Optuna's default evaluator (no
    scikit-learn needed, unlike fANOVA), guarded for too few trials."""
    import optuna

    objectives = _objectives(study)
    trials = _complete(study)
    params = sorted({k for t in trials for k in t.params})
    results, reason = [], None
    if len(trials) < 2 or not params:
        reason = f"parameter importances need at least 2 complete trials with parameters ({len(trials)} complete)"
    else:
        for i, (metric, _) in enumerate(objectives):
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    target = None if len(objectives) == 1 else (lambda t, i=i: t.values[i])
                    results.append((metric, optuna.importance.get_param_importances(study, target=target)))
            except (RuntimeError, ValueError, ZeroDivisionError, ImportError) as exc:
                reason = f"importances could not be computed: {str(exc).splitlines()[0]}"
                results = []
                break
    fig = _figure(8.0, 1.6 + 0.45 * max(1, len(params)) * max(1, len(results)) ** 0.5)
    ax = fig.subplots()
    if reason:
        _message(ax, reason)
        return fig
    colours = _colours(len(results))
    height = 0.8 / len(results)
    y = np.arange(len(params))
    for i, (metric, weights) in enumerate(results):
        values = [weights.get(p, 0.0) for p in params]
        ax.barh(y - 0.4 + height * (i + 0.5), values, height, color=colours[i], label=metric)
        for yy, v in zip(y - 0.4 + height * (i + 0.5), values):
            ax.text(v, yy, f" {v:.3f}", va="center", fontsize=7)
    ax.set_yticks(y, params)
    ax.invert_yaxis()
    ax.set_xlim(0, 1.1)
    ax.set_xlabel(f"importance (Optuna's default evaluator, {len(trials)} complete trials; few trials make this rough)")
    ax.legend(loc="lower right", title="objective")
    ax.grid(axis="x", alpha=0.3)
    return fig


def _normalise_param(dist, values: list) -> tuple[np.ndarray, str, str]:
    """Values of one parameter mapped to [0, 1] over its search range; labels for both ends."""
    import optuna.distributions as od

    if isinstance(dist, od.CategoricalDistribution):
        choices = list(dist.choices)
        if len(choices) == 1:
            return np.full(len(values), 0.5), str(choices[0]), str(choices[0])
        return np.array([choices.index(v) / (len(choices) - 1) for v in values]), str(choices[0]), str(choices[-1])
    low, high = float(dist.low), float(dist.high)
    data = np.array(values, dtype=float)
    if getattr(dist, "log", False) and low > 0:
        low_t, high_t, data = math.log10(low), math.log10(high), np.log10(data)
    else:
        low_t, high_t = low, high
    scaled = np.full(len(values), 0.5) if high_t == low_t else (data - low_t) / (high_t - low_t)
    return scaled, f"{low:.4g}", f"{high:.4g}"


def plot_parallel(study):
    """Parallel coordinates of the top trials: each parameter scaled to [0, 1] over its search
    range (log scale where the space is), objectives over their shown range."""
    import matplotlib

    objectives = _objectives(study)
    top = _ranked(study)[:TOP_TRIALS]
    fig = _figure(9.0, 5.0)
    if not top:
        _message(fig.subplots(), f"no complete trial yet ({_state_counts(study)})")
        return fig
    params = sorted({k for t in top for k in t.params})
    fig.set_size_inches(min(40.0, 2.0 + 1.7 * (len(params) + len(objectives))), 5.0)
    ax = fig.subplots()
    columns, ends = [], []
    for p in params:
        dist = next(t.distributions[p] for t in top if p in t.distributions)
        fill = next(t.params[p] for t in top if p in t.params)
        scaled, low, high = _normalise_param(dist, [t.params.get(p, fill) for t in top])
        columns.append(scaled)
        ends.append((low, high))
    for i, _ in enumerate(objectives):
        values = np.array([t.values[i] for t in top], dtype=float)
        lo, hi = float(values.min()), float(values.max())
        columns.append(np.full(len(values), 0.5) if hi == lo else (values - lo) / (hi - lo))
        ends.append((f"{lo:.4g}", f"{hi:.4g}"))
    matrix = np.column_stack(columns)
    first = np.array([t.values[0] for t in top], dtype=float)
    norm = matplotlib.colors.Normalize(vmin=first.min(), vmax=first.max() if first.max() > first.min() else first.min() + 1)
    cmap = matplotlib.colormaps["viridis" if objectives[0][1] == "maximize" else "viridis_r"]
    x = np.arange(matrix.shape[1])
    for row, value, trial in sorted(zip(matrix, first, top), key=lambda item: item[2] is top[0]):
        best = trial is top[0]
        ax.plot(x, row, color="tab:red" if best else cmap(norm(value)), linewidth=2.6 if best else 1.2,
                alpha=1.0 if best else 0.8, marker="o", markersize=3, zorder=3 if best else 2,
                label=f"best: trial {trial.number}" if best else None)  # fmt: skip
    labels = params + [f"{m}\n({d})" for m, d in objectives]
    for xi, (low, high) in zip(x, ends):
        ax.axvline(xi, color="0.5", linewidth=0.8, zorder=1)
        ax.text(xi, -0.06, low, ha="center", va="top", fontsize=7, color="0.3")
        ax.text(xi, 1.06, high, ha="center", va="bottom", fontsize=7, color="0.3")
    ax.set_xticks(x, labels, rotation=15, ha="right")
    ax.set_ylim(-0.16, 1.16)
    ax.set_yticks([0, 0.5, 1])
    ax.set_ylabel("scaled to [0, 1] (search range; objectives: shown range)")
    ax.set_title(f"top {len(top)} of {len(_complete(study))} complete trials by {objectives[0][0]}")
    mappable = matplotlib.cm.ScalarMappable(norm=norm, cmap=cmap)
    fig.colorbar(mappable, ax=ax, label=objectives[0][0], shrink=0.8)
    ax.legend(loc="upper left", bbox_to_anchor=(0, -0.2), fontsize=7)
    return fig


def plot_pareto(study):
    """Two objectives: every complete trial, the Pareto front highlighted and numbered."""
    objectives = _objectives(study)
    fig = _figure(7.5, 5.5)
    ax = fig.subplots()
    trials = _complete(study)
    if not trials:
        _message(ax, f"no complete trial yet ({_state_counts(study)})")
        return fig
    front = sorted(study.best_trials, key=lambda t: t.values[0])
    numbers = {t.number for t in front}
    rest = [t for t in trials if t.number not in numbers]
    if rest:
        ax.scatter([t.values[0] for t in rest], [t.values[1] for t in rest], s=22, color="0.6", label="dominated trial")
    ax.plot([t.values[0] for t in front], [t.values[1] for t in front], "-o", color="tab:red", markersize=6,
            label=f"Pareto front ({len(front)} trials)")  # fmt: skip
    for t in front:
        ax.annotate(f"#{t.number}", (t.values[0], t.values[1]), textcoords="offset points", xytext=(4, 4), fontsize=7)
    ax.set_xlabel(f"{objectives[0][0]} ({objectives[0][1]})")
    ax.set_ylabel(f"{objectives[1][0]} ({objectives[1][1]})")
    ax.set_title(f"trials: {_state_counts(study)}")
    ax.legend(loc="best")
    ax.grid(alpha=0.3)
    return fig


# ----------------------------------------------------------------------------- tables ---
def _num(value) -> str:
    """A number as the tables show it: 6 decimals (like the command line), n/a for null/NaN."""
    if value is None or isinstance(value, bool):
        return "n/a" if value is None else ("yes" if value else "no")
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return f"{value:.6f}" if math.isfinite(value) else "n/a"
    return html.escape(str(value))


def _table(table_id: str, header: list[str], rows: list[tuple[str, list]], caption: str = "") -> str:
    out = [f'<table id="{html.escape(table_id)}">']
    if caption:
        out.append(f"<caption>{html.escape(caption)}</caption>")
    out.append("<thead><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in header) + "</tr></thead><tbody>")
    for label, cells in rows:
        out.append(f"<tr><th>{html.escape(label)}</th>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    out.append("</tbody></table>")
    return "\n".join(out)


def summary_rows(runs: list[RunData]) -> list[tuple[str, list[str]]]:
    """The comparison table: one column per run, every value straight from metrics.json."""
    def get(run, *keys):
        value = run.summary
        for key in keys:
            value = value.get(key) if isinstance(value, dict) else None
        return value

    rows = [(m, [_num(get(r, "metrics", m)) for r in runs]) for m in METRICS]
    rows += [(f"{g} (normalised)", [_num(get(r, "score", g)) for r in runs]) for g in GROUPS]
    rows.append(("SCORE", [_num(get(r, "score", "score")) for r in runs]))
    rows.append(("gated", [_num(get(r, "score", "gated")) for r in runs]))
    rows.append(("phase-1 mean", [_num(get(r, "score", "phase1")) for r in runs]))
    rows.append(("consistency", [_num(get(r, "consistency", "overall")) for r in runs]))
    rows.append(("variance agreement", [_num(get(r, "variance_agreement")) for r in runs]))
    rows.append(("folds", [_num(get(r, "folds")) for r in runs]))
    return rows


def fold_rows(run: RunData) -> tuple[list[str], list[tuple[str, list[str]]]]:
    """One run per fold: the folds, the mean and each metric's consistency (from metrics.json)."""
    folds, summary = run.folds, run.summary
    header = ["metric", *(f"fold {f.get('fold', i)}" for i, f in enumerate(folds)), "mean", "consistency"]
    per_metric = summary.get("consistency", {}).get("per_metric", {})
    rows = [(m, [*(_num(f.get("metrics", {}).get(m)) for f in folds), _num(summary.get("metrics", {}).get(m)),
                 _num(per_metric.get(m))]) for m in METRICS]  # fmt: skip
    rows.append(("SCORE", [*(_num(f.get("score", {}).get("score")) for f in folds),
                           _num(summary.get("score", {}).get("score")), ""]))  # fmt: skip
    rows.append(("miss rate", [*(_num(f.get("miss_rate")) for f in folds), "", ""]))
    rows.append(("test users", [*(_num(f.get("users")) for f in folds), "", ""]))
    rows.append(("variance agreement", [*(_num(f.get("variance_agreement")) for f in folds),
                                        _num(summary.get("variance_agreement")), ""]))  # fmt: skip
    return header, rows


def _settings_rows(runs: list[RunData]) -> list[tuple[str, list[str]]]:
    from tripletlit import config as cfg

    flat = [cfg.flatten(r.content.get("config") or {}) for r in runs]
    keys = sorted(set().union(*flat))
    return [(k, [html.escape(str(f.get(k, "-"))) for f in flat]) for k in keys
            if len({json.dumps(f.get(k), sort_keys=True, default=str) for f in flat}) > 1]  # fmt: skip


def _study_rows(study) -> tuple[list[str], list[tuple[str, list[str]]]]:
    objectives = _objectives(study)
    top = _ranked(study)[:10]
    params = sorted({k for t in top for k in t.params})
    header = ["trial", *(f"{m} ({d})" for m, d in objectives), *params]
    rows = []
    for t in top:
        values = [_num(float(v)) for v in t.values]
        shown = [(f"{t.params[p]:.6g}" if isinstance(t.params.get(p), float) else html.escape(str(t.params.get(p, "-"))))
                 for p in params]  # fmt: skip
        rows.append((f"#{t.number}", values + shown))
    return header, rows


# ------------------------------------------------------------------------------- HTML ---
CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:24px auto;max-width:1500px;color:#222;padding:0 16px}
h1{font-size:1.6em;margin-bottom:0.2em} h2{border-bottom:2px solid #ddd;padding-bottom:4px;margin-top:2em}
h3{margin:1.4em 0 0.4em} .meta{color:#666;font-size:0.9em}
table{border-collapse:collapse;margin:0.6em 0 1.2em;font-size:0.86em}
th,td{border:1px solid #ddd;padding:3px 8px} td{text-align:right;font-variant-numeric:tabular-nums}
thead th{background:#f3f3f3} tbody th{text-align:left;font-weight:normal;background:#fafafa}
caption{text-align:left;color:#555;padding-bottom:4px}
figure{margin:1.2em 0 2em} figure img{max-width:100%;height:auto;border:1px solid #eee}
figcaption{color:#555;font-size:0.88em;max-width:1100px} code{background:#f4f4f4;padding:0 3px}
.note{background:#fff7e0;border-left:4px solid #e0b000;padding:6px 10px;font-size:0.9em}
"""


@dataclass
class Panel:
    key: str
    title: str
    section: str
    caption: str
    png: bytes = b""
    files: dict[str, str] = field(default_factory=dict)


def _figure_html(panel: Panel) -> str:
    data = base64.b64encode(panel.png).decode("ascii")
    files = ", ".join(f"<code>{html.escape(name)}</code>" for name in panel.files.values())
    return (f'<figure id="panel-{panel.key}"><h3>{html.escape(panel.title)}</h3>\n'
            f'<img alt="{html.escape(panel.title)}" src="data:image/png;base64,{data}">\n'
            f"<figcaption>{html.escape(panel.caption)} Files: {files}.</figcaption></figure>")  # fmt: skip


def _render(fig, panel: Panel, folder: Path, formats: Sequence[str]) -> None:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI, facecolor="white")
    panel.png = buffer.getvalue()
    fig.set_layout_engine("none")  # keep the layout just computed: the other formats need not redo it
    for fmt in formats:
        name = f"{panel.key}.{fmt}"
        if fmt == "png":
            (folder / name).write_bytes(panel.png)
        else:
            metadata = {"Date": None} if fmt == "svg" else {"CreationDate": None}
            fig.savefig(folder / name, format=fmt, facecolor="white", metadata=metadata)
        panel.files[fmt] = name


RUN_PANELS = (
    ("miss_rate_slices", "Miss rate per slice", "plot_slices",
     "Each MRED metric is minus the mean gap between a slice's miss rate and the overall miss rate (dashed); "
     "bars far from their fold's dashed line are what the fairness terms of the SCORE punish. Small slices "
     "(user counts under the names) move most between folds."),
    ("score_terms", "SCORE and its normalised terms", "plot_score",
     "Bars: the SCORE of the fold means and its groups; diamonds: each fold. Normalised 1 is the best EvalRS 2022 "
     "entry, 0 the CBOW baseline (constants of the real data set: on other data the scale means little)."),
    ("training_curves", "Training curves", "plot_curves",
     "Per-epoch values from fold*/logs/metrics.csv: total loss, each triplet term, how many users fell back to "
     "more neighbours or to uniform negatives, and the per-epoch validation metrics when logged."),
    ("variance_agreement", "Variance agreement", "plot_agreement",
     "One dot per test user: artist Gini impurity of the user's training tracks against that of the recommended "
     "list; r is the Pearson correlation stored in metrics.json (lines: least-squares fit per fold)."),
    ("consistency", "Consistency across folds", "plot_consistency",
     "1 - sigma / |mu| per metric over the folds (1 = identical folds); metrics whose |mean| is ~0 or that are "
     "NaN are undefined and left out of the overall value (dashed)."),
)  # fmt: skip
STUDY_PANELS = (
    ("study_history", "Optimisation history", "plot_history",
     "Objective value of every complete trial and the best value so far."),
    ("study_importances", "Parameter importances", "plot_importances",
     "Parameter importances (Optuna's default evaluator); with few trials they are rough."),
    ("study_parallel", "Parallel coordinates of the top trials", "plot_parallel",
     "Each line is a trial; parameters are scaled to [0, 1] over their search range (log where the space is), "
     "the ends of each axis are labelled; the best trial is red."),
    ("study_pareto", "Pareto front", "plot_pareto",
     "All complete trials of the two objectives; the non-dominated ones (the Pareto front) in red."),
)  # fmt: skip


def _check_out(out: Path, inputs: list[Path]) -> None:
    if out.exists() and not out.is_dir():
        raise TripletlitError(f"{out}: exists and is not a folder; choose another report folder")
    if out.is_dir() and any(out.iterdir()) and not (out / REPORT).is_file():
        raise TripletlitError(f"{out}: exists, is not empty and holds no {REPORT}; choose an empty or new report folder")
    resolved = out.resolve()
    for p in inputs:
        p = p.resolve()
        if resolved == p or resolved in p.parents:
            raise TripletlitError(f"{out}: would replace the input folder {p}; choose another report folder")


def _unique_names(paths: list[Path]) -> list[str]:
    names = [p.name for p in paths]
    for i, p in enumerate(paths):
        if names.count(p.name) > 1:
            names[i] = f"{p.parent.name}/{p.name}"
    seen: dict[str, int] = {}
    for i, n in enumerate(names):
        seen[n] = seen.get(n, 0) + 1
        if seen[n] > 1:
            names[i] = f"{n} ({seen[n]})"
    return names


def build_report(
    runs: Sequence[str | os.PathLike],
    out: str | os.PathLike,
    study: str | os.PathLike | None = None,
    formats: Sequence[str] = ("png", "svg"),
) -> Path:
    """Write ``out/report.html`` and every panel as files in ``out``; returns the HTML path.

    ``runs``: run folders of ``tripletlit fit`` (an ``ablate`` folder stands for its variants);
    ``study``: a study folder holding ``study.db``; ``formats``: files written per panel
    (png, svg, pdf; the HTML always embeds PNG). ``out`` is replaced atomically and only if it
    is new, empty or an earlier report. Missing inputs raise :class:`TripletlitError`.
    """
    import matplotlib

    out = Path(out)
    formats = tuple(dict.fromkeys(str(f).lower().lstrip(".") for f in formats))
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise TripletlitError(f"report format {unknown[0]!r} is not supported; choose from {', '.join(FORMATS)}")
    paths = expand_runs(runs)
    if not paths and study is None:
        raise TripletlitError("nothing to report: give at least one run folder or a study folder")
    loaded = [load_run(p, n) for p, n in zip(paths, _unique_names(paths))]
    study_obj = load_study(study) if study is not None else None
    _check_out(out, [*paths, *([Path(study)] if study is not None else [])])

    notes: list[str] = []
    cache = _DataCache()
    points = {run.name: agreement_points(run, cache) for run in loaded}
    for run in loaded:
        for fold in run.folds:
            data = points[run.name].get(int(fold.get("fold", 0)))
            if isinstance(data, str):
                notes.append(f"{run.name}: variance-agreement scatter incomplete ({data})")
            elif _finite(fold.get("variance_agreement")) and _finite(data["pearson"]) and \
                    abs(data["pearson"] - fold["variance_agreement"]) > 1e-6:
                notes.append(f"{run.name}, fold {fold.get('fold')}: the rebuilt scatter gives r = {data['pearson']:.6f} "
                             f"but metrics.json says {fold['variance_agreement']:.6f}; the data or config changed since the run")  # fmt: skip
    shared: dict[str, list[str]] = {}  # a note of metrics.json (e.g. the song2vec stand-in) once, with its runs
    for run in loaded:
        for note in run.content.get("notes", []):
            shared.setdefault(str(note), []).append(run.name)
    notes += [f"{', '.join(names)}: {note}" for note, names in shared.items()]

    panels: list[Panel] = []
    with atomic_dir(out) as tmp, matplotlib.rc_context(RC), warnings.catch_warnings():
        warnings.filterwarnings("ignore", ".*constrained_layout.*")
        warnings.filterwarnings("ignore", ".*[Tt]ight.*layout.*")
        if loaded:
            for key, title, function, caption in RUN_PANELS:
                panel = Panel(key, title, "runs", caption)
                plot = globals()[function]
                fig = plot(loaded, points) if function == "plot_agreement" else plot(loaded)
                fig.suptitle(title, fontweight="bold")
                _render(fig, panel, tmp, formats)
                panels.append(panel)
        if study_obj is not None:
            for key, title, function, caption in STUDY_PANELS:
                if key == "study_pareto" and len(study_obj.directions) != 2:
                    continue
                panel = Panel(key, title, "study", caption)
                fig = globals()[function](study_obj)
                fig.suptitle(f"{title}: study {study_obj.study_name}", fontweight="bold")
                _render(fig, panel, tmp, formats)
                panels.append(panel)
        page = _html(loaded, study_obj, Path(study) if study is not None else None, panels, notes)
        (tmp / REPORT).write_text(page, encoding="utf-8")
        manifest = [{"key": p.key, "title": p.title, "section": p.section, "files": p.files} for p in panels]
        (tmp / MANIFEST).write_text(json.dumps({"report": REPORT, "panels": manifest}, indent=1))
    return out / REPORT


def _html(runs: list[RunData], study, study_path: Path | None, panels: list[Panel], notes: list[str]) -> str:
    parts = ['<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">',
             '<meta name="viewport" content="width=device-width, initial-scale=1">',
             f"<title>tripletlit report</title><style>{CSS}</style></head><body>",
             "<h1>tripletlit report</h1>"]  # fmt: skip
    sources = [f"runs: {', '.join(html.escape(str(r.path)) for r in runs)}"] if runs else []
    if study_path is not None:
        sources.append(f"study: {html.escape(str(study_path))}")
    parts.append(f'<p class="meta">{"; ".join(sources)}. Written by tripletlit {__version__}; every number in '
                 "the tables is read from the runs' metrics.json (6 decimals).</p>")  # fmt: skip
    if runs:
        parts.append("<h2>Runs</h2>")
        parts.append(_table("summary", ["", *(r.name for r in runs)], summary_rows(runs),
                            "Means over folds (SCORE of the means), consistency and variance agreement per run"))  # fmt: skip
        if len(runs) > 1:
            rows = _settings_rows(runs)
            if rows:
                parts.append(_table("settings", ["setting", *(r.name for r in runs)], rows, "Settings that differ between the runs"))
            else:
                parts.append('<p class="meta">The runs share every setting.</p>')
        for i, run in enumerate(runs):
            header, rows = fold_rows(run)
            parts.append(f"<h3>{html.escape(run.name)}: per fold</h3>")
            parts.append(_table(f"folds-{i}", header, rows, f"{run.path}"))
        for note in dict.fromkeys(notes):
            parts.append(f'<p class="note">{html.escape(note)}</p>')
        parts += [_figure_html(p) for p in panels if p.section == "runs"]
    if study is not None:
        parts.append(f"<h2>Study {html.escape(study.study_name)}</h2>")
        parts.append(f'<p class="meta">{html.escape(_state_counts(study))}; objectives: '
                     f"{html.escape(', '.join(f'{m} ({d})' for m, d in _objectives(study)))}.</p>")  # fmt: skip
        header, rows = _study_rows(study)
        if rows:
            parts.append(_table("study-trials", header, rows, "Top trials by the first objective (values from the study)"))
        parts += [_figure_html(p) for p in panels if p.section == "study"]
    parts.append("</body></html>\n")
    return "\n".join(parts)


# ------------------------------------------------------------------------------ W&B ---
def panel_files(out: str | os.PathLike, fmt: str = "png") -> dict[str, Path]:
    """``{panel key: file}`` of a report folder (from its panels.json)."""
    manifest = Path(out) / MANIFEST
    if not manifest.is_file():
        raise TripletlitError(f"{out}: no {MANIFEST}; is this a folder written by build_report?")
    panels = json.loads(manifest.read_text())["panels"]
    return {p["key"]: Path(out) / p["files"][fmt] for p in panels if fmt in p["files"]}


def log_to_wandb(paths: dict[str, Path]) -> bool:
    """Log the PNG panels as ``wandb.Image`` under ``report/<key>`` when a W&B run is active;
    returns whether anything was logged (no-op without wandb or without an active run)."""
    wandb = sys.modules.get("wandb")  # a W&B run can only be active if wandb is imported already
    if wandb is None or getattr(wandb, "run", None) is None:
        return False
    images = {f"report/{key}": wandb.Image(str(path), caption=key)
              for key, path in paths.items() if Path(path).suffix.lower() == ".png"}  # fmt: skip
    if not images:
        return False
    wandb.log(images)
    return True
