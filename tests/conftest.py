"""Shared fixtures: tiny synthetic data made here, and the real samples in ../shared (if present)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tripletlit.data.evalrs import write_evalrs
from tripletlit.data.synthetic import generate

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


# `tripletlit fit` flags for quick runs on the tiny preset (add --folds N and any others)
TINY_FIT = ["--preset", "tiny", "--folds.min_count", "3", "--folds.user_fraction", "0.5", "--predict.k", "50",
            "--model.embedding_dim", "16", "--no-progress"]  # fmt: skip


def shared_file(*parts: str) -> Path:
    """A file of ../shared/data, or skip the test with the reason when it is absent."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} is absent (the real data samples live in ../shared beside the repository)")
    return path


@pytest.fixture(scope="session")
def tiny():
    """The `tiny` synthetic data set (seed 0) and its event ids."""
    return generate("tiny", seed=0)


@pytest.fixture(scope="session")
def small():
    """The `small` synthetic data set (seed 0): 10,000 users, the default of `tripletlit fit`."""
    return generate("small", seed=0)[0]


@pytest.fixture
def tiny_folder(tmp_path, tiny):
    """The tiny data set written as an EvalRS folder (CSVs only, no parquet cache)."""
    dataset, event_ids = tiny
    return write_evalrs(dataset, tmp_path / "tiny", event_ids, cache=False)


# W&B stays off in tests (also in module- and session-scoped fixtures) unless a test turns it
# on (offline) explicitly with monkeypatch.setenv("WANDB_MODE", "offline").
os.environ.setdefault("WANDB_MODE", "disabled")
# the shared caches (downloads, song2vec stand-ins) of this test session, not the user's
if "TRIPLETLIT_CACHE" not in os.environ:
    import tempfile

    os.environ["TRIPLETLIT_CACHE"] = tempfile.mkdtemp(prefix="tripletlit-test-cache-")
