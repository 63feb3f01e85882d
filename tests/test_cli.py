"""The `tripletlit data` commands end to end, and how they fail on bad input."""

from __future__ import annotations

import json
import subprocess
import sys

import pandas as pd
import pytest

from tripletlit.cli import main
from tripletlit.data.evalrs import load_evalrs
from tripletlit.data.folds import load_fold


@pytest.fixture
def generated(tmp_path):
    out = tmp_path / "tiny"
    assert main(["data", "generate", "--preset", "tiny", "--seed", "3", "--out", str(out)]) == 0
    return out


def test_generate_writes_a_loadable_folder(tmp_path, capsys):
    generated = tmp_path / "out"
    assert main(["data", "generate", "--preset", "tiny", "--seed", "3", "--out", str(generated)]) == 0
    dataset = load_evalrs(generated)
    assert dataset.n_users == 400
    meta = json.loads((generated / "tripletlit.json").read_text())
    assert meta["seed"] == 3 and meta["preset"]["name"] == "tiny"
    assert "synthetic data set 'tiny'" in capsys.readouterr().out


def test_describe_prints_slices_and_writes_json(generated, tmp_path, capsys):
    assert main(["data", "describe", str(generated), "--json", str(tmp_path / "d.json")]) == 0
    out = capsys.readouterr().out
    assert "EvalRS slice: country" in out and "power-law" in out
    summary = json.loads((tmp_path / "d.json").read_text())
    assert summary["counts"]["users"] == 400
    assert sum(summary["slices"]["gender"].values()) == 400


def test_split_writes_readable_folds(generated, tmp_path):
    out = tmp_path / "folds"
    args = ["data", "split", str(generated), "--out", str(out), "--folds", "2", "--seed", "4",
            "--min-count", "3", "--user-fraction", "0.5"]  # fmt: skip
    assert main(args) == 0
    manifest = json.loads((out / "folds.json").read_text())
    assert manifest["seed"] == 4 and manifest["min_count"] == 3 and manifest["user_fraction"] == 0.5
    fold = load_fold(out, 1)
    assert len(fold.test) == manifest["folds"][1]["test_users"]
    assert set(pd.read_parquet(out / "fold0" / "test.parquet").columns) == {"user_id", "track_id"}


def test_existing_output_is_kept_without_force(generated, capsys):
    before = (generated / "evalrs_events.csv").read_bytes()
    code = main(["data", "generate", "--preset", "tiny", "--seed", "9", "--out", str(generated)])
    assert code == 2
    assert "--force" in capsys.readouterr().err
    assert (generated / "evalrs_events.csv").read_bytes() == before
    assert main(["data", "generate", "--preset", "tiny", "--seed", "9", "--out", str(generated), "--force"]) == 0
    assert (generated / "evalrs_events.csv").read_bytes() != before


def test_failed_split_leaves_no_partial_output(generated, tmp_path, capsys):
    out = tmp_path / "folds"
    assert main(["data", "split", str(generated), "--out", str(out), "--min-count", "100000"]) == 2
    assert "lower --min-count" in capsys.readouterr().err
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".folds")]


@pytest.mark.parametrize(
    "args,words",
    [
        (["data", "generate", "--preset", "huge", "--out", "x"], "unknown preset 'huge'"),
        (["data", "describe", "/nonexistent/folder"], "no such data folder"),
        (["data", "split", "/nonexistent/folder", "--out", "y"], "no such data folder"),
        (["data", "split", "/nonexistent", "--out", "y", "--folds", "0"], "--folds must be at least 1"),
        (["data", "import", "interactions", "f.csv", "--out", "z", "--map", "user_id"], "is not OURS=THEIRS"),
    ],
)
def test_bad_input_is_one_line_exit_2(args, words, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert words in err and err.startswith("error:")
    assert len(err.splitlines()) == 1 or len(" ".join(err.split())) <= 400


def test_bad_csv_from_a_real_process_has_no_traceback(generated):
    events = generated / "evalrs_events.csv"
    lines = events.read_text().splitlines(keepends=True)
    lines[3] = lines[3].replace(lines[3].split(",")[1], "oops", 1)
    events.write_text("".join(lines))
    result = subprocess.run(
        [sys.executable, "-m", "tripletlit.cli", "data", "describe", str(generated)],
        capture_output=True, text=True, env={"COLUMNS": "300", "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [
        "error: evalrs_events.csv: column 'user_id' must hold integers but has 'oops' (line 4); fix or remove that row"
    ]


def test_usage_errors_exit_2():
    result = subprocess.run([sys.executable, "-m", "tripletlit.cli", "data", "split"], capture_output=True, text=True)
    assert result.returncode == 2 and "usage:" in result.stderr


def test_import_lfm1b_sample(tmp_path):
    from conftest import shared_file

    events = shared_file("lfm1b", "LFM-1b_LEs-head.tsv")
    users = shared_file("lfm1b", "LFM-1b_users.txt")
    out = tmp_path / "lfm"
    assert main(["data", "import", "lfm1b", str(events), "--users", str(users), "--out", str(out)]) == 0
    dataset = load_evalrs(out)
    assert dataset.events["user_track_count"].sum() == 10_000
    assert dataset.events["user_id"].nunique() == 3


def test_import_interactions_with_mapping(tmp_path):
    source = tmp_path / "ratings.csv"
    pd.DataFrame({"uid": ["a", "a", "b", "b", "b"], "item": [10, 11, 10, 10, 12], "ts": [1, 2, 3, 4, 5]}).to_csv(source, index=False)
    out = tmp_path / "mine"
    assert main(["data", "import", "interactions", str(source), "--map", "user_id=uid,track_id=item,timestamp=ts",
                 "--out", str(out)]) == 0  # fmt: skip
    events = load_evalrs(out).events
    assert len(events) == 4
    assert events["user_track_count"].sum() == 5
    assert events["timestamp"].max() == 5
