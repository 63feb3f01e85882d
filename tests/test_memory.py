"""Huge-page advice for the randomly accessed tables (tripletlit.memory)."""

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from tripletlit import memory
from tripletlit.fused import FusedAdam
from tripletlit.model import TripletMF
from tripletlit.sampling import Triplets

THP = Path("/sys/kernel/mm/transparent_hugepage/enabled")
needs_thp = pytest.mark.skipif(not (sys.platform.startswith("linux") and THP.exists()),
                               reason="Linux with transparent huge pages")  # fmt: skip


def vm_flags(tensor: torch.Tensor) -> set[str]:
    """VmFlags of the mapping that holds the middle of ``tensor`` (from /proc/self/smaps)."""
    addr = tensor.data_ptr() + tensor.numel() * tensor.element_size() // 2
    inside = False
    for line in Path("/proc/self/smaps").read_text().splitlines():
        head = line.split()[0] if line else ""
        if "-" in head and all(c in "0123456789abcdef-" for c in head):
            lo, hi = (int(x, 16) for x in head.split("-"))
            inside = lo <= addr < hi
        elif inside and line.startswith("VmFlags:"):
            return set(line.split()[1:])
    raise AssertionError("no mapping holds the tensor")


@needs_thp
def test_large_tensors_are_advised_before_first_touch():
    t = memory.empty((3000, 1024))  # 12 MB
    assert memory.advise(t) >= 12_000_000 - 2 * memory.HUGE_PAGE
    assert "hg" in vm_flags(t)  # MADV_HUGEPAGE is set on the mapping


def test_the_environment_switch_turns_the_advice_off(monkeypatch):
    monkeypatch.setenv("TRIPLETLIT_HUGEPAGES", "0")
    memory._madvise.cache_clear()
    try:
        assert memory.advise(torch.empty(3000, 1024)) == 0
    finally:
        monkeypatch.delenv("TRIPLETLIT_HUGEPAGES")
        memory._madvise.cache_clear()


def test_small_or_foreign_tensors_are_left_alone():
    assert memory.advise(torch.empty(100, 16)) == 0
    assert memory.advise(torch.empty(4000, 1024)[:, ::2]) == 0  # not contiguous


def test_empty_gives_the_shape_and_dtype_asked_for():
    for shape, dtype in (((5000, 300), torch.float32), ((2, 3), torch.float64), ((700, 2, 64), torch.float32)):
        out = memory.empty(shape, dtype)
        assert out.is_contiguous() and out.dtype == dtype and tuple(out.shape) == shape


@needs_thp
def test_model_tables_and_adam_moments_live_in_advised_memory():
    model = TripletMF(20_000, 30_000, 64, user_init=np.full((20_000, 64), 0.5, np.float32))
    assert torch.all(model.users.weight == 0.5)
    bound = 30_000**-0.5
    assert model.tracks.weight.abs().max() <= bound and model.tracks.weight.std() > bound / 3
    assert "hg" in vm_flags(model.users.weight) and "hg" in vm_flags(model.tracks.weight)

    optimizer = FusedAdam([model.users.weight, model.tracks.weight], lr=1e-2)
    rng = np.random.default_rng(0)
    t = Triplets(*(rng.integers(0, 20_000, 256) for _ in range(6)))
    optimizer.train(t, np.ones(256, np.float32), 64, 1.0, 1.0, (0.5,) * 3)
    state = optimizer.state[model.tracks.weight]
    assert "hg" in vm_flags(state["exp_avg"]) and "hg" in vm_flags(state["exp_avg_sq"])
    assert state["exp_avg"].abs().sum() > 0

    # moments restored from a checkpoint move into advised memory, values unchanged
    saved = torch.utils._pytree.tree_map(lambda x: x.clone() if isinstance(x, torch.Tensor) else x,
                                         optimizer.state_dict())  # fmt: skip
    restored = FusedAdam([model.users.weight, model.tracks.weight], lr=1e-2)
    restored.load_state_dict(saved)
    for key in ("exp_avg", "exp_avg_sq"):
        moved = restored.state[model.tracks.weight][key]
        assert torch.equal(moved, state[key]) and "hg" in vm_flags(moved)
