"""A corpus of bad input: every case must fail with exit code 2 and ONE line naming the problem.

Each case runs the real command line (`python -m tripletlit.cli ...`) in a fresh folder, either
as a subprocess (`sub=True`, at least ten cases: they prove there is no traceback, no stray
warning and the right exit status from a real process) or through ``main()`` in this process
(cheaper: no torch import per case). For every case:

- exit code 2;
- stderr is exactly one non-empty line starting with ``error:`` and holding a substring that
  names the problem;
- no ``Traceback``;
- nothing is created or changed in the case folder: a snapshot (path -> sha256 of every file
  and folder, hidden ones included) taken before the command equals the one taken after it.

Two kinds of case are checked differently and say so in their id:

- ``...-REBUILDS-exit0``: a corrupt parquet cache is not an error; the loader warns and rebuilds
  it from the CSVs, so that case must succeed, warn, and leave a readable cache;
- ``...-ARGPARSE-usage``: an unknown (misspelt) flag is rejected by argparse itself, which exits
  2 with its usage line plus an error line: two lines, accepted for that case only.
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import conftest
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import yaml

from tripletlit.cli import main
from tripletlit.data.evalrs import CACHE_FOLDER
from tripletlit.data.folds import load_fold

EVENTS, TRACKS, USERS = "evalrs_events.csv", "evalrs_tracks.csv", "evalrs_users.csv"
TINY_FIT = [*conftest.TINY_FIT, "--folds", "1"]
GARBAGE = b"this is not a checkpoint\x00\x01\x02" * 40


# ------------------------------------------------------------------------ shared inputs ---
@pytest.fixture(scope="module")
def res(tmp_path_factory):
    """Read-only inputs every case copies from: tiny data (with cache), folds, a fitted run."""
    root = tmp_path_factory.mktemp("bad_input_inputs")
    data, folds, run = root / "data", root / "folds", root / "run"
    assert main(["data", "generate", "--preset", "tiny", "--out", str(data)]) == 0
    assert main(["data", "split", str(data), "--out", str(folds), "--folds", "1", "--min-count", "3",
                 "--user-fraction", "0.5"]) == 0  # fmt: skip
    assert main(["fit", *TINY_FIT, "--out", str(run)]) == 0
    fold = load_fold(folds, 0)
    users = fold.test["user_id"].to_numpy()
    tracks = np.sort(fold.train["track_id"].unique())[:100]
    predictions = pd.DataFrame(np.tile(tracks, (len(users), 1)), columns=[str(i) for i in range(100)])
    predictions.insert(0, "user_id", users)
    some_user = int(pd.read_parquet(run / "fold0" / "predictions.parquet")["user_id"].iloc[0])
    return SimpleNamespace(data=data, folds=folds, run=run, predictions=predictions, user=some_user,
                           cache_home=tmp_path_factory.mktemp("cache_home"))  # fmt: skip


# ---------------------------------------------------------------------- building blocks ---
def _read_rows(path: Path) -> list[list[str]]:
    with open(path, newline="") as f:
        return list(csv.reader(f))


def _write_rows(path: Path, rows: list[list[str]]) -> None:
    with open(path, "w", newline="") as f:
        csv.writer(f, lineterminator="\n").writerows(rows)


def _copy_data(case: Path, res, keep_cache: bool = True) -> Path:
    """A copy of the tiny folder (copytree keeps mtimes, so the parquet cache stays valid)."""
    dst = case / "data"
    shutil.copytree(res.data, dst)
    if not keep_cache:
        shutil.rmtree(dst / CACHE_FOLDER)
    return dst


def data_edit(edit: Callable[[Path], None]) -> Callable:
    """Setup: copy the tiny folder without its cache, then corrupt it with ``edit(folder)``."""
    def setup(case: Path, res) -> None:
        edit(_copy_data(case, res, keep_cache=False))
    return setup


def set_field(file: str, line: int, column: str, value: str) -> Callable[[Path], None]:
    """Edit: set ``column`` on file line ``line`` (1-based; the header is line 1)."""
    def edit(folder: Path) -> None:
        rows = _read_rows(folder / file)
        rows[line - 1][rows[0].index(column)] = value
        _write_rows(folder / file, rows)
    return edit


def rename_column(file: str, column: str) -> Callable[[Path], None]:
    def edit(folder: Path) -> None:
        rows = _read_rows(folder / file)
        rows[0][rows[0].index(column)] = "renamed"
        _write_rows(folder / file, rows)
    return edit


def keep_lines(file: str, n: int) -> Callable[[Path], None]:
    def edit(folder: Path) -> None:
        lines = (folder / file).read_text().splitlines(keepends=True)
        (folder / file).write_text("".join(lines[:n]))
    return edit


def duplicate_line(file: str, line: int) -> Callable[[Path], None]:
    def edit(folder: Path) -> None:
        rows = _read_rows(folder / file)
        _write_rows(folder / file, [*rows, list(rows[line - 1])])
    return edit


def remove_file(file: str) -> Callable[[Path], None]:
    return lambda folder: (folder / file).unlink()


def corrupt_cache(case: Path, res) -> None:
    folder = _copy_data(case, res, keep_cache=True)
    (folder / CACHE_FOLDER / "events.parquet").write_bytes(b"PAR1 not really parquet")


def copy_data(case: Path, res) -> None:
    _copy_data(case, res)


def copy_run(edit: Callable[[Path], None] | None = None) -> Callable:
    def setup(case: Path, res) -> None:
        shutil.copytree(res.run, case / "run")
        if edit is not None:
            edit(case / "run")
    return setup


def garbage_last_ckpt(run: Path) -> None:
    (run / "fold0" / "checkpoints" / "last.ckpt").write_bytes(GARBAGE)


def interrupted_with_garbage_ckpt(run: Path) -> None:
    """As if killed inside fold 0 after a (torn) checkpoint: no metrics, garbage last.ckpt."""
    (run / "metrics.json").unlink()
    (run / "fold0" / "metrics.json").unlink()
    garbage_last_ckpt(run)


def garbage_file(name: str) -> Callable:
    return lambda case, res: (case / name).write_bytes(GARBAGE)


def text_file(name: str, text: str) -> Callable:
    return lambda case, res: (case / name).write_text(text)


def zip_of(files: dict[str, str] | None, truncate: bool = False) -> Callable:
    """Setup: evalrs_dataset.zip holding ``files`` (default: the tiny CSVs), maybe cut in half."""
    def setup(case: Path, res) -> None:
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED) as zf:
            zf.writestr("evalrs_dataset/", "")
            names = files if files is not None else {n: (res.data / n).read_text() for n in (EVENTS, TRACKS, USERS)}
            for name, text in names.items():
                zf.writestr(f"evalrs_dataset/{name}", text)
        payload = buf.getvalue()
        (case / "evalrs_dataset.zip").write_bytes(payload[: len(payload) // 2] if truncate else payload)
    return setup


def predictions(change: Callable[[pd.DataFrame], pd.DataFrame]) -> Callable:
    """Setup for `evaluate`: data + folds copies and preds.parquet = change(valid predictions)."""
    def setup(case: Path, res) -> None:
        _copy_data(case, res)
        shutil.copytree(res.folds, case / "folds")
        change(res.predictions.copy()).to_parquet(case / "preds.parquet", index=False)
    return setup


def _unknown_user(frame: pd.DataFrame) -> pd.DataFrame:
    frame.loc[0, "user_id"] = 999_999_999
    return frame


def _float_ids(frame: pd.DataFrame) -> pd.DataFrame:
    frame["7"] = frame["7"].astype(float) + 0.5
    return frame


EVALUATE = ["evaluate", "--predictions", "preds.parquet", "--data", "data", "--folds", "folds", "--fold", "0"]


def sweep(space: dict | None = None, **over) -> Callable:
    """Setup for `tune`: space.yaml + sweep.yaml (tiny base) with ``over`` applied."""
    def setup(case: Path, res) -> None:
        (case / "space.yaml").write_text(yaml.safe_dump(space or {"train.lr": {"type": "float", "low": 1e-4,
                                                                               "high": 1e-2, "log": True}}))  # fmt: skip
        raw = {"study": "t", "objectives": [{"metric": "SCORE", "direction": "maximize"}],
               "sampler": {"type": "random", "seed": 0}, "pruner": {"type": "none"}, "n_trials": 2,
               "search_space": "space.yaml", "base": {"data.preset": "tiny"}, "folds": [0]}  # fmt: skip
        raw.update(over)
        (case / "sweep.yaml").write_text(yaml.safe_dump(raw))
    return setup


TUNE = ["tune", "--sweep", "sweep.yaml", "--studies", "studies"]


def interactions_file(text: str) -> Callable:
    return text_file("plays.csv", text)


# -------------------------------------------------------------------------------- cases ---
@dataclass(frozen=True)
class Case:
    id: str
    argv: tuple[str, ...]
    expect: str  # a substring of the one error line that names the problem
    setup: Callable | None = None  # setup(case_dir, res): build the inputs inside the case folder
    sub: bool = False  # a real subprocess (else main() in this process)
    kind: str = "error"  # "error" | "rebuild" | "usage"
    bug: str | None = None  # a known bug: the case is xfail(strict) with this reason


def C(id, argv, expect, setup=None, sub=False, kind="error", bug=None) -> Case:  # noqa: N802
    return Case(id, tuple(argv), expect, setup, sub, kind, bug)


DESCRIBE = ["data", "describe", "data", "--json", "summary.json"]
SPLIT = ["data", "split", "data", "--out", "folds_out", "--folds", "1", "--min-count", "3", "--user-fraction", "0.5"]

CASES = [
    # ---- an EvalRS folder: files, columns, dtypes, values, references -------------------------
    C("events-file-missing", DESCRIBE, "evalrs_events.csv: file not found", data_edit(remove_file(EVENTS)), sub=True),
    C("users-file-empty", SPLIT, "evalrs_users.csv", data_edit(lambda d: (d / USERS).write_text(""))),
    C("tracks-header-only", SPLIT, "evalrs_tracks.csv: the file has no rows", data_edit(keep_lines(TRACKS, 1))),
    C("events-column-missing", DESCRIBE, "evalrs_events.csv: missing column 'timestamp'",
      data_edit(rename_column(EVENTS, "timestamp")), sub=True),
    C("users-column-missing", SPLIT, "evalrs_users.csv: missing column 'gender'", data_edit(rename_column(USERS, "gender"))),
    C("events-user-id-text", SPLIT, "column 'user_id' must hold integers but has 'oops'",
      data_edit(set_field(EVENTS, 4, "user_id", "oops"))),
    C("events-track-id-fraction", SPLIT, "column 'track_id' must hold integers but has 12.5",
      data_edit(set_field(EVENTS, 6, "track_id", "12.5"))),
    C("events-track-id-nan", DESCRIBE, "column 'track_id' has a missing/NaN value (line 5)",
      data_edit(set_field(EVENTS, 5, "track_id", "")), sub=True),
    C("events-user-id-negative", SPLIT, "column 'user_id' has -5 below the minimum 0",
      data_edit(set_field(EVENTS, 3, "user_id", "-5"))),
    C("events-count-negative", DESCRIBE, "column 'user_track_count' has -3 below the minimum 0",
      data_edit(set_field(EVENTS, 4, "user_track_count", "-3")), sub=True),
    C("events-count-zero", SPLIT, "column 'user_track_count' is 0", data_edit(set_field(EVENTS, 4, "user_track_count", "0"))),
    C("events-duplicate-user-track", DESCRIBE, "duplicate (user_id, track_id) pair",
      data_edit(duplicate_line(EVENTS, 2)), sub=True),
    C("events-unknown-track", SPLIT, "track_id 123 (line 2) is not in evalrs_tracks.csv",
      data_edit(set_field(EVENTS, 2, "track_id", "123"))),
    C("events-unknown-user", SPLIT, "user_id 77777777 (line 2) is not in evalrs_users.csv",
      data_edit(set_field(EVENTS, 2, "user_id", "77777777"))),
    C("tracks-albums-id-not-a-list", DESCRIBE, "column 'albums_id' must be a list like",
      data_edit(set_field(TRACKS, 3, "albums_id", "1, 2")), sub=True),
    C("tracks-albums-id-empty", SPLIT, "column 'albums_id' is empty (line 2)", data_edit(set_field(TRACKS, 2, "albums_id", ""))),
    C("users-duplicate-user", SPLIT, "evalrs_users.csv: duplicate user_id", data_edit(duplicate_line(USERS, 2))),
    C("users-gender-invalid", SPLIT, "column 'gender' has 'x'", data_edit(set_field(USERS, 3, "gender", "x"))),
    C("users-age-text", SPLIT, "column 'age' must hold integers but has 'old'", data_edit(set_field(USERS, 3, "age", "old"))),
    C("data-folder-missing", SPLIT, "no such data folder"),
    C("corrupt-parquet-cache-REBUILDS-exit0-with-warning", ["data", "describe", "data"], "rebuilding it from the CSVs",
      corrupt_cache, sub=True, kind="rebuild"),
    # ---- the official zip ------------------------------------------------------------------
    C("zip-truncated", ["data", "download", "--from-zip", "evalrs_dataset.zip", "--to", "cache"], "is not a readable zip",
      zip_of(None, truncate=True), sub=True),
    C("zip-without-users-csv", ["data", "download", "--from-zip", "evalrs_dataset.zip", "--to", "cache"],
      "does not hold the EvalRS data set (missing evalrs_users.csv)",
      zip_of({EVENTS: "user_id,track_id\n1,2\n", TRACKS: "track_id\n2\n"})),
    C("zip-missing", ["data", "download", "--from-zip", "nope.zip", "--to", "cache"], "check the path given to --from-zip"),
    # ---- data import ------------------------------------------------------------------------
    C("import-file-missing", ["data", "import", "interactions", "plays.csv", "--out", "mine"], "plays.csv: file not found"),
    C("import-mapped-column-missing", ["data", "import", "interactions", "plays.csv", "--map", "user_id=uid", "--out", "mine"],
      "no column 'uid' (mapped from 'user_id')", interactions_file("user,track_id\n1,2\n1,3\n")),
    C("import-user-id-empty", ["data", "import", "interactions", "plays.csv", "--out", "mine"],
      "plays.csv: column 'user_id' has a missing/NaN value (line 3)", interactions_file("user_id,track_id\n1,2\n,3\n")),
    # ---- recommend ---------------------------------------------------------------------------
    C("recommend-unknown-user", ["recommend", "--run", "run", "--user", "123456789"],
      "user 123456789 is not among the", copy_run(), sub=True),
    C("recommend-corrupt-checkpoint", ["recommend", "--run", "run", "--user", "1"], "last.ckpt: unreadable checkpoint",
      copy_run(garbage_last_ckpt), sub=True),
    C("recommend-not-a-run", ["recommend", "--run", "data", "--user", "1"], "no checkpoint", copy_data),
    # ---- fit: checkpoints ---------------------------------------------------------------------
    C("fit-ckpt-garbage-file", ["fit", *TINY_FIT, "--ckpt", "garbage.ckpt", "--out", "out"], "garbage.ckpt",
      garbage_file("garbage.ckpt"), sub=True),
    C("fit-resume-corrupt-last-ckpt", ["fit", "--ckpt", "last", "--run", "run", "--no-progress"], "last.ckpt",
      copy_run(interrupted_with_garbage_ckpt), sub=True),
    C("fit-ckpt-other-config", ["fit", *TINY_FIT, "--model.embedding_dim", "32", "--ckpt", "run/fold0/checkpoints/last.ckpt",
                                "--out", "out"], "does not fit fold 0", copy_run()),
    C("fit-ckpt-missing-file", ["fit", *TINY_FIT, "--ckpt", "nope.ckpt", "--out", "out"], "--ckpt nope.ckpt: checkpoint file not found"),
    C("fit-ckpt-last-without-run", ["fit", "--ckpt", "last", "--out", "out"], "--ckpt last resumes a run: give its folder with --run DIR"),
    C("fit-ckpt-last-not-a-run", ["fit", "--ckpt", "last", "--run", "data"], "not a run folder (no config.yaml)", copy_data),
    C("fit-ckpt-best-no-study", ["fit", "--ckpt", "best", "--study", "nope", "--studies", "studies"],
      "run `tripletlit tune --study nope` first"),
    # ---- fit: existing output, config keys and values -----------------------------------------------
    C("fit-out-exists-without-force", ["fit", *TINY_FIT, "--out", "run"], "run already exists and is not empty",
      copy_run(), sub=True),
    C("fit-config-unknown-key", ["fit", "--config", "c.yaml", "--out", "out"], "unknown config key 'model.embeding_dim'",
      text_file("c.yaml", "model:\n  embeding_dim: 64\n")),
    C("fit-config-not-yaml", ["fit", "--config", "c.yaml", "--out", "out"], "c.yaml: not valid YAML",
      text_file("c.yaml", "model: [unclosed\n")),
    C("fit-config-missing", ["fit", "--config", "c.yaml", "--out", "out"], "c.yaml: config file not found"),
    C("fit-misspelt-flag-ARGPARSE-usage", ["fit", "--model.embeding_dim", "64", "--out", "out"],
      "unrecognized arguments: --model.embeding_dim 64", sub=True, kind="usage"),
    C("fit-negative-margin", ["fit", *TINY_FIT, "--loss.margin_user_song", "-0.1", "--out", "out"],
      "loss.margin_user_song: must not be negative, got -0.1"),
    C("fit-lr-not-a-number", ["fit", *TINY_FIT, "--train.lr", "fast", "--out", "out"], "train.lr: expected float, got 'fast'"),
    C("fit-user-fraction-above-one", ["fit", *TINY_FIT, "--folds.user_fraction", "1.5", "--out", "out"],
      "folds.user_fraction: must be in (0, 1], got 1.5"),
    C("fit-unknown-init", ["fit", *TINY_FIT, "--model.init", "glove", "--out", "out"], "'glove' is not one of word2vec, uniform"),
    C("fit-predict-k-above-catalogue", ["fit", *TINY_FIT, "--predict.k", "100000", "--out", "out"], "predict.k = 100000 exceeds the"),
    # ---- --force missing on other commands -----------------------------------------------------
    C("generate-out-exists-without-force", ["data", "generate", "--preset", "tiny", "--out", "data"],
      "data already exists and is not empty", copy_data),
    C("split-out-exists-without-force", ["data", "split", "data", "--out", "data"], "data already exists and is not empty", copy_data),
    C("baselines-out-exists-without-force", ["baselines", "--preset", "tiny", "--out", "data"], "data already exists and is not empty",
      copy_data),
    C("ablate-unknown-variant", ["ablate", "--preset", "tiny", "--variants", "full,no_magic", "--out", "out"],
      "unknown variant 'no_magic'"),
    C("baselines-unknown", ["baselines", "--preset", "tiny", "--which", "random,magic", "--out", "out"], "unknown baseline 'magic'"),
    C("generate-unknown-preset", ["data", "generate", "--preset", "huge", "--out", "out"], "unknown preset 'huge'"),
    C("split-min-count-too-high", [*SPLIT[:5], "--min-count", "100000"], "lower --min-count", copy_data),
    # ---- evaluate: malformed predictions -------------------------------------------------------
    C("evaluate-wrong-column-count", EVALUATE, "50 prediction columns, expected 100",
      predictions(lambda f: f.iloc[:, :51]), sub=True),
    C("evaluate-duplicate-users", EVALUATE, "has two rows", predictions(lambda f: pd.concat([f, f.iloc[:1]]))),
    C("evaluate-float-ids", EVALUATE, "column '7' must hold integer track ids", predictions(_float_ids)),
    C("evaluate-no-user-id-column", EVALUATE, "no 'user_id' column", predictions(lambda f: f.rename(columns={"user_id": "uid"}))),
    C("evaluate-unknown-user", EVALUATE, "user 999999999 is not a test user of this fold", predictions(_unknown_user)),
    C("evaluate-predictions-missing", [*EVALUATE[:2], "nope.parquet", *EVALUATE[3:]], "nope.parquet: predictions file not found"),
    C("evaluate-fold-out-of-range", [*EVALUATE[:-1], "3"], "fold 3 does not exist", predictions(lambda f: f)),
    C("evaluate-bad-gate", [*EVALUATE, "--gate", "high"], "--gate must be a number or 'none', got 'high'", predictions(lambda f: f)),
    # ---- tune: search spaces and sweeps ----------------------------------------------------------
    C("tune-space-unknown-key", TUNE, "unknown key 'model.embeding_dim'",
      sweep({"model.embeding_dim": {"type": "int", "low": 8, "high": 64}}), sub=True),
    C("tune-space-low-above-high", TUNE, "loss.lambda_user has low 5 > high 1; swap them",
      sweep({"loss.lambda_user": {"type": "float", "low": 5, "high": 1}})),
    C("tune-space-bad-type", TUNE, "needs type: one of float, int, categorical",
      sweep({"loss.lambda_user": {"type": "gaussian", "low": 0, "high": 1}})),
    C("tune-sampler-unknown", TUNE, "unknown sampler", sweep(sampler={"type": "annealing"})),
    C("tune-sweep-unknown-key", TUNE, "unknown key 'colour'", sweep(colour="blue")),
    C("tune-sweep-base-out-of-range", TUNE, "base: loss.margin_user_user: must not be negative",
      sweep(base={"loss.margin_user_user": -1})),
    C("tune-sweep-missing", ["tune", "--sweep", "nope.yaml", "--studies", "studies"], "nope.yaml: sweep file"),
    C("tune-trials-zero", [*TUNE, "--trials", "0"], "--trials must be at least 1", sweep()),
]


def _snapshot(root: Path) -> dict[str, str]:
    """Every file and folder under ``root`` (hidden ones too) -> sha256 of its bytes or '<dir>'."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "<dir>"
        for p in sorted(root.rglob("*"))
    }


def _env(res) -> dict[str, str]:
    return {**os.environ, "WANDB_MODE": "disabled", "COLUMNS": "300", "TRIPLETLIT_CACHE": str(res.cache_home)}


def _invoke(case: Case, cwd: Path, res, capsys, monkeypatch) -> tuple[int, str, str]:
    if case.sub:
        result = subprocess.run([sys.executable, "-m", "tripletlit.cli", *case.argv], cwd=cwd, env=_env(res),
                                capture_output=True, text=True, timeout=300)  # fmt: skip
        return result.returncode, result.stdout, result.stderr
    monkeypatch.chdir(cwd)
    monkeypatch.setenv("TRIPLETLIT_CACHE", str(res.cache_home))
    capsys.readouterr()
    try:
        code = main(list(case.argv))
    except SystemExit as exc:  # argparse
        code = exc.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _params():
    for case in CASES:
        marks = [pytest.mark.xfail(strict=True, reason=f"BUG: {case.bug}")] if case.bug else []
        yield pytest.param(case, id=case.id, marks=marks)


def test_corpus_is_large_and_mostly_real():
    assert len(CASES) >= 30
    assert len({c.id for c in CASES}) == len(CASES)
    assert sum(c.sub for c in CASES) >= 10


@pytest.mark.parametrize("case", list(_params()))
def test_bad_input(case: Case, res, tmp_path, capsys, monkeypatch):
    cwd = tmp_path / "case"
    cwd.mkdir()
    if case.setup is not None:
        case.setup(cwd, res)
    before = _snapshot(cwd)
    code, out, err = _invoke(case, cwd, res, capsys, monkeypatch)
    lines = [line for line in err.splitlines() if line.strip()]
    assert "Traceback" not in err + out, err[-3000:]

    if case.kind == "rebuild":  # not an error: the loader warns and rebuilds the cache from the CSVs
        assert code == 0, err[-3000:]
        assert case.expect in err and "parquet cache" in err
        after = _snapshot(cwd)
        assert {k: v for k, v in after.items() if CACHE_FOLDER not in k} == {
            k: v for k, v in before.items() if CACHE_FOLDER not in k}  # the CSVs are untouched
        assert after[f"data/{CACHE_FOLDER}/events.parquet"] != before[f"data/{CACHE_FOLDER}/events.parquet"]
        for table in ("events", "tracks", "users"):
            assert pq.read_table(cwd / "data" / CACHE_FOLDER / f"{table}.parquet").num_rows > 0
        return

    assert code == 2, err[-3000:]
    if case.kind == "usage":  # argparse's own error: usage line + error line, both on stderr
        assert len(lines) == 2 and lines[0].startswith("usage: tripletlit"), err
        assert lines[1].startswith("tripletlit: error:") and case.expect in lines[1], err
    else:
        assert len(lines) == 1, err[-3000:]
        assert lines[0].startswith("error: "), err
        assert case.expect in lines[0], err
    assert _snapshot(cwd) == before, "the failed command created or changed files"
