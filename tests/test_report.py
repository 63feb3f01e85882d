"""The HTML report: every panel as valid files, numbers straight from metrics.json, atomic output, errors."""

from __future__ import annotations

import base64
import json
import struct
import sys
import types
from html.parser import HTMLParser
from pathlib import Path

import optuna
import pytest
import yaml
from conftest import TINY_FIT
from matplotlib import image as mpimg

from tripletlit import report
from tripletlit.cli import main
from tripletlit.errors import TripletlitError
from tripletlit.evaluation.metrics import METRICS

REPO = Path(__file__).resolve().parents[1]
FIT = ["fit", *TINY_FIT, "--folds", "2", "--train.val_users", "30"]
BASE = {"data.preset": "tiny", "folds.min_count": 3, "folds.user_fraction": 0.5, "predict.k": 50,
        "model.embedding_dim": 16}  # fmt: skip
OBJECTIVES = {
    "single": [{"metric": "SCORE", "direction": "maximize"}],
    "pareto": [{"metric": "HIT_RATE", "direction": "maximize"}, {"metric": "MEAN_MRED", "direction": "maximize"}],
}
RUN_PANELS = ["miss_rate_slices", "score_terms", "training_curves", "variance_agreement", "consistency"]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """Two runs (the full method and lambda_user = 0, named like `ablate` variants) and two
    3-trial studies (one objective; two objectives for the Pareto front)."""
    root = tmp_path_factory.mktemp("report")
    runs = [root / "runs" / "full", root / "runs" / "no_user_user"]
    assert main([*FIT, "--out", str(runs[0])]) == 0
    assert main([*FIT, "--loss.lambda_user", "0", "--out", str(runs[1])]) == 0
    studies = root / "studies"
    for name, objectives in OBJECTIVES.items():
        sweep = root / f"{name}.yaml"
        sweep.write_text(yaml.safe_dump({
            "study": name, "objectives": objectives, "sampler": {"type": "random", "seed": 0},
            "pruner": {"type": "none"}, "n_trials": 3, "search_space": str(REPO / "search_spaces" / "small.yaml"),
            "base": BASE, "folds": [0],
        }))  # fmt: skip
        assert main(["tune", "--sweep", str(sweep), "--trials", "3", "--studies", str(studies)]) == 0
    return types.SimpleNamespace(root=root, runs=runs, single=studies / "single", pareto=studies / "pareto")


@pytest.fixture(scope="module")
def built(inputs):
    out = inputs.root / "report"
    path = report.build_report(inputs.runs, out, inputs.single)
    assert path == out / "report.html"
    return out


class _Page(HTMLParser):
    """Tables (by id: rows of cell texts) and <img> sources of an HTML page."""

    def __init__(self, text: str):
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self.images: list[str] = []
        self._table = self._row = self._cell = None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "table":
            self._table = self.tables.setdefault(attrs.get("id", f"table{len(self.tables)}"), [])
        elif tag == "tr" and self._table is not None:
            self._row = []
            self._table.append(self._row)
        elif tag in ("td", "th") and self._row is not None:
            self._cell = []
        elif tag == "img":
            self.images.append(attrs.get("src", ""))

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self._row.append("".join(self._cell).strip())
            self._cell = None
        elif tag == "table":
            self._table = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def _rows(table: list[list[str]]) -> dict[str, list[str]]:
    return {row[0]: row[1:] for row in table[1:]}


def _fmt(value) -> str:
    return "n/a" if value is None else f"{value:.6f}"


def _check_png(path: Path) -> None:
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE, path
    width, height = struct.unpack(">II", data[16:24])  # the IHDR chunk
    assert width >= 300 and height >= 150, (path, width, height)
    pixels = mpimg.imread(path)[..., :3]
    assert pixels.std() > 0.02, f"{path} looks blank"
    assert (pixels.min(axis=-1) < 0.9).mean() > 0.01, f"{path} is nearly all white"


def _manifest(out: Path) -> list[dict]:
    return json.loads((out / "panels.json").read_text())["panels"]


# ------------------------------------------------------------------------------ panels ---
def test_every_panel_is_a_valid_png_and_svg(built):
    panels = _manifest(built)
    assert [p["key"] for p in panels] == [*RUN_PANELS, "study_history", "study_importances", "study_parallel"]
    for panel in panels:
        assert set(panel["files"]) == {"png", "svg"}
        _check_png(built / panel["files"]["png"])
        svg = (built / panel["files"]["svg"]).read_text()
        assert "<svg" in svg[:2000] and svg.rstrip().endswith("</svg>")
    assert sorted(p.name for p in built.iterdir()) == sorted(
        ["report.html", "panels.json", *(f for p in panels for f in p["files"].values())]
    )


def test_html_is_self_contained_and_shows_every_panel(built):
    text = (built / "report.html").read_text()
    panels = _manifest(built)
    assert text.count("data:image/png;base64,") == len(panels)
    page = _Page(text)
    assert len(page.images) == len(panels) and all(src.startswith("data:image/png;base64,") for src in page.images)
    for panel, src in zip(panels, page.images):
        assert panel["title"] in text
        # the embedded image is exactly the panel file
        assert base64.b64decode(src.split(",", 1)[1]) == (built / panel["files"]["png"]).read_bytes()
    for external in ("http://", "https://", "<script", "<link", "url(", "@import"):
        assert external not in text
    assert "rebuilt scatter gives" not in text and "incomplete" not in text  # the scatter was rebuilt and agrees


def test_tables_show_metrics_json_values(built, inputs):
    page = _Page((built / "report.html").read_text())
    contents = [json.loads((run / "metrics.json").read_text()) for run in inputs.runs]
    summary = _rows(page.tables["summary"])
    assert page.tables["summary"][0][1:] == ["full", "no_user_user"]
    for i, content in enumerate(contents):
        s = content["summary"]
        for metric in METRICS:
            assert summary[metric][i] == _fmt(s["metrics"][metric])
        assert summary["SCORE"][i] == _fmt(s["score"]["score"])
        for group in ("perf", "fair", "behav"):
            assert summary[f"{group} (normalised)"][i] == _fmt(s["score"][group])
        assert summary["consistency"][i] == _fmt(s["consistency"]["overall"])
        assert summary["variance agreement"][i] == _fmt(s["variance_agreement"])
        folds = _rows(page.tables[f"folds-{i}"])
        for metric in METRICS:
            expected = [_fmt(f["metrics"][metric]) for f in content["folds"]]
            expected += [_fmt(s["metrics"][metric]), _fmt(s["consistency"]["per_metric"][metric])]
            assert folds[metric] == expected
        assert folds["SCORE"][:-1] == [*(_fmt(f["score"]["score"]) for f in content["folds"]), _fmt(s["score"]["score"])]
        assert folds["variance agreement"][:-1] == [*(_fmt(f["variance_agreement"]) for f in content["folds"]),
                                                    _fmt(s["variance_agreement"])]  # fmt: skip
    # the one setting that differs between the two runs
    assert _rows(page.tables["settings"]) == {"loss.lambda_user": ["2.5", "0.0"]}


def test_scatter_is_rebuilt_from_the_run(inputs):
    run = report.load_run(inputs.runs[0])
    points = report.agreement_points(run)
    for fold in run.folds:
        data = points[fold["fold"]]
        assert data["pearson"] == pytest.approx(fold["variance_agreement"], abs=1e-9)
        assert len(data["train_gini"]) == fold["users"]


def test_pareto_study_alone_with_pdf(inputs, tmp_path):
    out = tmp_path / "pareto"
    report.build_report([], out, inputs.pareto, formats=("png", "pdf"))
    panels = _manifest(out)
    assert [p["key"] for p in panels] == ["study_history", "study_importances", "study_parallel", "study_pareto"]
    for panel in panels:
        _check_png(out / panel["files"]["png"])
        assert (out / panel["files"]["pdf"]).read_bytes()[:5] == b"%PDF-"
    text = (out / "report.html").read_text()
    assert text.count("data:image/png;base64,") == 4 and "Pareto front" in text
    study = optuna.load_study(study_name="pareto", storage=f"sqlite:///{inputs.pareto / 'study.db'}")
    trials = _rows(_Page(text).tables["study-trials"])
    for trial in study.trials:
        assert trials[f"#{trial.number}"][:2] == [f"{v:.6f}" for v in trial.values]


def test_degraded_run_still_reports(inputs, tmp_path):
    """No logs, no predictions, an undefined consistency: placeholders and n/a, not a crash."""
    run = tmp_path / "bare"
    run.mkdir()
    content = json.loads((inputs.runs[0] / "metrics.json").read_text())
    content["summary"]["consistency"]["per_metric"]["MRED_GENDER"] = None
    content["summary"]["consistency"]["undefined"] = ["MRED_GENDER"]
    (run / "metrics.json").write_text(json.dumps(content))
    out = report.build_report([run], tmp_path / "out", formats=("png",))
    text = out.read_text()
    assert text.count("data:image/png;base64,") == len(RUN_PANELS)
    assert "no predictions.parquet" in text
    assert _rows(_Page(text).tables["folds-0"])["MRED_GENDER"][-1] == "n/a"
    for key in RUN_PANELS:
        _check_png(out.parent / f"{key}.png")


# ---------------------------------------------------------------------------- atomicity ---
def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_a_failure_leaves_no_partial_report(inputs, built, tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("plot failed")

    monkeypatch.setattr(report, "plot_score", broken)  # the second panel: the first is already written
    new = tmp_path / "new"
    with pytest.raises(RuntimeError, match="plot failed"):
        report.build_report(inputs.runs[:1], new, formats=("png",))
    assert not new.exists() and not list(tmp_path.iterdir())  # no temporary folder left either
    before = _snapshot(built)
    with pytest.raises(RuntimeError, match="plot failed"):
        report.build_report(inputs.runs[:1], built, formats=("png",))
    assert _snapshot(built) == before
    assert [p.name for p in built.parent.iterdir() if p.name.startswith(".report")] == []


# ------------------------------------------------------------------------------- errors ---
def test_missing_inputs_raise_one_line_errors(inputs, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "keep.txt").write_text("mine")
    cases = [
        (lambda: report.build_report([tmp_path / "nope"], tmp_path / "o"), "run folder not found"),
        (lambda: report.build_report([empty], tmp_path / "o"), "no metrics.json"),
        (lambda: report.build_report(inputs.runs[:1], tmp_path / "o", study=empty), "no study.db"),
        (lambda: report.build_report([], tmp_path / "o", study=tmp_path / "nope"), "study folder not found"),
        (lambda: report.build_report([], tmp_path / "o"), "nothing to report"),
        (lambda: report.build_report(inputs.runs[:1], tmp_path / "busy"), "holds no report.html"),
        (lambda: report.build_report(inputs.runs[:1], inputs.runs[0]), "is not empty"),
        (lambda: report.build_report(inputs.runs[:1], tmp_path / "o", formats=("png", "gif")), "'gif' is not supported"),
    ]
    for call, message in cases:
        with pytest.raises(TripletlitError, match=message) as info:
            call()
        assert "\n" not in str(info.value)
    assert not (tmp_path / "o").exists() and (tmp_path / "busy" / "keep.txt").read_text() == "mine"
    assert not (empty / "study.db").exists()  # looking for a study creates no database


# ---------------------------------------------------------------------------------- W&B ---
def test_log_to_wandb(built, monkeypatch):
    files = report.panel_files(built)
    assert set(files) == {p["key"] for p in _manifest(built)} and all(p.suffix == ".png" for p in files.values())
    monkeypatch.delitem(sys.modules, "wandb", raising=False)
    assert report.log_to_wandb(files) is False  # wandb never imported: no run can be active
    monkeypatch.setitem(sys.modules, "wandb", types.SimpleNamespace(run=None))
    assert report.log_to_wandb(files) is False  # no active W&B run: nothing to do
    logged = []
    fake = types.SimpleNamespace(run=object(), Image=lambda path, caption=None: ("image", Path(path).name),
                                 log=logged.append)  # fmt: skip
    monkeypatch.setitem(sys.modules, "wandb", fake)
    assert report.log_to_wandb({**files, "vector": built / "consistency.svg"}) is True
    assert logged == [{f"report/{key}": ("image", path.name) for key, path in files.items()}]


def test_panels_are_drawn_without_pyplot(built):
    # figures go through the Agg canvas directly: nothing is left open in pyplot's registry
    if "matplotlib.pyplot" in sys.modules:
        assert sys.modules["matplotlib.pyplot"].get_fignums() == []


def test_an_ablate_folder_stands_for_its_variants(inputs, tmp_path):
    root = tmp_path / "ablate"
    root.mkdir()
    for run in inputs.runs:
        (root / run.name).symlink_to(run, target_is_directory=True)
    (root / "ablations.json").write_text(json.dumps({"full": {}, "no_user_user": {}}))
    assert report.expand_runs([root]) == [root / "full", root / "no_user_user"]
    assert report.expand_runs([inputs.runs[0]]) == [inputs.runs[0]]
