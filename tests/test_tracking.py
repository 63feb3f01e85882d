"""W&B review in offline mode: read back what the runs recorded in their .wandb files."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
import yaml
from conftest import TINY_FIT

from tripletlit.cli import main
from tripletlit.tracking import wandb_mode

TINY = [*TINY_FIT, "--folds", "1", "--train.val_users", "30"]


def wandb_records(path: Path) -> list:
    """Records of a .wandb file: 7-byte header, then 32 KiB blocks of chunks (crc32, length,
    type: full / first / middle / last) holding serialised ``Record`` protobufs."""
    from wandb.proto import wandb_internal_pb2 as pb

    data = path.read_bytes()
    assert data[:4] == b":W&B"
    pos, block, pending, chunks = 7, 32768, b"", []
    while pos + 7 <= len(data):
        if block - pos % block < 7:
            pos += block - pos % block
            continue
        _, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        chunk, pos = data[pos + 7 : pos + 7 + length], pos + 7 + length
        if kind == 1:
            chunks.append(chunk)
        elif kind == 2:
            pending = chunk
        elif kind == 3:
            pending += chunk
        elif kind == 4:
            chunks.append(pending + chunk)
        else:
            break
    return [pb.Record.FromString(c) for c in chunks]


def read_run(path: Path) -> dict:
    run, config, summary, history, values = None, {}, {}, set(), {}
    for record in wandb_records(path):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            run = record.run
            config |= {u.key: u.value_json for u in record.run.config.update}
        elif kind == "config":
            config |= {u.key: u.value_json for u in record.config.update}
        elif kind == "summary":
            summary |= {u.key or "/".join(u.nested_key): u.value_json for u in record.summary.update}
        elif kind == "history":
            for item in record.history.item:
                key = item.key or "/".join(item.nested_key)
                history.add(key)
                values[key] = item.value_json
    return {"group": run.run_group, "name": run.display_name, "project": run.project, "config": config,
            "summary": summary, "history": history, "history_values": values}  # fmt: skip


def _runs(folder: Path) -> list[dict]:
    return [read_run(p) for p in sorted(folder.glob("wandb/offline-run-*/run-*.wandb"))]


def test_mode_is_offline_without_a_key(monkeypatch, tmp_path):
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert wandb_mode() == "offline"
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    assert wandb_mode() == "online"


def test_fit_records_one_run_per_fold(monkeypatch, tmp_path):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    out = tmp_path / "run"
    assert main(["fit", *TINY, "--out", str(out)]) == 0
    runs = _runs(out)
    assert len(runs) == 1
    run = runs[0]
    assert run["project"] == "tripletlit" and run["group"] == "run" and run["name"] == "run-fold0"
    assert json.loads(run["config"]["model.embedding_dim"]) == 16
    metrics = json.loads((out / "fold0" / "metrics.json").read_text())
    assert float(run["summary"]["SCORE"]) == pytest.approx(metrics["score"]["score"])
    assert float(run["summary"]["metrics/HIT_RATE"]) == pytest.approx(metrics["metrics"]["HIT_RATE"])
    assert {"train/loss_epoch", "val/HIT_RATE"} <= run["history"]
    # local CSV logs are still written beside W&B
    assert (out / "fold0" / "logs" / "metrics.csv").is_file()


def test_tune_records_one_run_per_trial(monkeypatch, tmp_path):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    repo = Path(__file__).resolve().parents[1]
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(yaml.safe_dump({
        "study": "wb", "sampler": {"type": "random", "seed": 0}, "pruner": {"type": "none"}, "n_trials": 2,
        "search_space": str(repo / "search_spaces" / "small.yaml"),
        "base": {"data.preset": "tiny", "folds.min_count": 3, "folds.user_fraction": 0.5, "predict.k": 50,
                 "model.embedding_dim": 16},
    }))  # fmt: skip
    studies = tmp_path / "studies"
    assert main(["tune", "--sweep", str(sweep), "--trials", "2", "--studies", str(studies)]) == 0
    runs = _runs(studies / "wb")
    assert len(runs) == 2 and {r["group"] for r in runs} == {"wb"}
    for run in runs:
        assert {"loss.lambda_user", "loss.lambda_song", "train.lr", "trial"} <= set(run["config"])
        assert "SCORE" in run["summary"] and "objective_0" in run["summary"]


def test_report_panels_go_to_wandb_as_images(monkeypatch, tmp_path):
    monkeypatch.setenv("WANDB_SILENT", "true")
    out = tmp_path / "run"
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert main(["fit", *TINY, "--out", str(out)]) == 0
    monkeypatch.setenv("WANDB_MODE", "offline")
    assert main(["report", str(out), "--formats", "png"]) == 0
    runs = _runs(out)
    assert len(runs) == 1 and runs[0]["name"] == "run-report" and runs[0]["group"] == "run"
    keys = {p["key"] for p in json.loads((out / "report" / "panels.json").read_text())["panels"]}
    # each image is recorded as report/<panel>/{_type, path, sha256, ...}
    logged = {k.split("/")[1] for k in runs[0]["history"] if k.startswith("report/")}
    assert logged == keys and "miss_rate_slices" in logged
    image_types = {runs[0]["history_values"].get(f"report/{k}/_type") for k in keys}
    assert image_types == {'"image-file"'}
