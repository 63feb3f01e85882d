"""Two worker processes run one study on a real PostgreSQL server on 127.0.0.1.

The server is started by the test in a temporary folder (`.ci/run` installs PostgreSQL when it
is missing); the test is skipped with the reason when no server binaries exist outside CI.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import optuna
import pytest
import yaml
from optuna.trial import TrialState

REPO = Path(__file__).resolve().parents[1]


def _binary(name: str) -> str | None:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return found[-1] if found else shutil.which(name)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def postgres_url():
    initdb, pg_ctl = _binary("initdb"), _binary("pg_ctl")
    if not initdb or not pg_ctl:
        if os.environ.get("CI"):
            pytest.fail("PostgreSQL server binaries missing in CI: .ci/run should have installed them")
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) not installed; `apt-get install postgresql`")
    pytest.importorskip("psycopg2", reason="the dev extra installs psycopg2-binary")
    folder = Path(tempfile.mkdtemp(prefix="tripletlit-pg-", dir="/tmp"))
    as_user: list[str] = []
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root
        user = pwd.getpwnam("postgres")
        os.chown(folder, user.pw_uid, user.pw_gid)
        as_user = ["runuser", "-u", "postgres", "--"]
    port = _free_port()
    data = folder / "data"
    subprocess.run([*as_user, initdb, "-D", str(data), "-A", "trust", "-U", "postgres"], check=True,
                   capture_output=True)  # fmt: skip
    subprocess.run([*as_user, pg_ctl, "-D", str(data), "-l", str(folder / "server.log"), "-w", "start", "-o",
                    f"-p {port} -k {folder} -c listen_addresses=127.0.0.1"], check=True, capture_output=True)  # fmt: skip
    try:
        yield f"postgresql+psycopg2://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*as_user, pg_ctl, "-D", str(data), "-m", "immediate", "stop"], capture_output=True)
        shutil.rmtree(folder, ignore_errors=True)


def test_two_workers_share_one_study(postgres_url, tmp_path):
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(yaml.safe_dump({
        "study": "shared", "sampler": {"type": "random", "seed": 0}, "pruner": {"type": "none"}, "n_trials": 5,
        "search_space": str(REPO / "search_spaces" / "small.yaml"), "heartbeat": {"interval": 2, "grace": 6},
        "base": {"data.preset": "tiny", "folds.min_count": 3, "folds.user_fraction": 0.5, "predict.k": 50,
                 "model.embedding_dim": 16},
    }))  # fmt: skip
    env = {**os.environ, "WANDB_MODE": "disabled"}
    command = [sys.executable, "-m", "tripletlit.cli", "tune", "--sweep", str(sweep), "--storage", postgres_url,
               "--workers", "2", "--studies", str(tmp_path / "studies")]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    study = optuna.load_study(study_name="shared", storage=postgres_url)
    finished = [t for t in study.trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert len(finished) == 5  # exact, although two processes raced for the slots
    assert not [t for t in study.trials if t.state == TrialState.RUNNING]
    # both workers took part: trials overlapped in time
    spans = sorted((t.datetime_start, t.datetime_complete) for t in finished)
    assert any(b[0] < a[1] for a, b in zip(spans, spans[1:]))
