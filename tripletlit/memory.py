"""Large CPU tensors backed by 2 MB pages (Linux transparent huge pages), where the kernel allows.

Training touches a few thousand random rows of each embedding table and of its two Adam moments
per step: at EvalRS scale that is ~400 MB of tables, and with 4 KB pages nearly every row costs
a TLB miss and a page walk on top of its cache misses. Linux backs memory with 2 MB pages when
``/sys/kernel/mm/transparent_hugepage/enabled`` is ``always``, or when it is ``madvise`` (the
common default) and the range was advised with ``MADV_HUGEPAGE`` before it is first touched.
:func:`empty` asks for that advice; elsewhere (other systems, THP off, small tensors) it is a
plain ``torch.empty`` and nothing changes but speed.

PyTorch's own switch, ``THP_MEM_ALLOC_ENABLE=1``, does the same for every allocation but is read
once, before any tensor exists; this module advises just the tables that are randomly accessed.
``TRIPLETLIT_HUGEPAGES=0`` in the environment turns the advice off (read at the first call).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import mmap
import os
import sys
from functools import cache

import torch

HUGE_PAGE = 2 << 20
# below this an allocation cannot hold a whole aligned 2 MB page worth advising
MIN_BYTES = 2 * HUGE_PAGE


@cache
def _madvise():
    """libc's ``madvise`` (None where there is none, no MADV_HUGEPAGE, or it is turned off)."""
    if os.environ.get("TRIPLETLIT_HUGEPAGES", "1") == "0":
        return None
    if not sys.platform.startswith("linux") or not hasattr(mmap, "MADV_HUGEPAGE"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    except OSError:
        return None
    fn = libc.madvise
    fn.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
    fn.restype = ctypes.c_int
    return fn


def advise(tensor: torch.Tensor) -> int:
    """Ask for huge pages under the whole 2 MB pages inside ``tensor``'s memory; returns the
    number of bytes advised (0 when nothing was: small, not on CPU, or unsupported). Pages the
    tensor already touched keep their size; advise before the first write."""
    fn = _madvise()
    nbytes = tensor.numel() * tensor.element_size()
    if fn is None or tensor.device.type != "cpu" or nbytes < MIN_BYTES or not tensor.is_contiguous():
        return 0
    start = tensor.data_ptr()
    first = -(-start // HUGE_PAGE) * HUGE_PAGE
    last = (start + nbytes) // HUGE_PAGE * HUGE_PAGE
    if last <= first or fn(ctypes.c_void_p(first), last - first, mmap.MADV_HUGEPAGE) != 0:
        return 0
    return last - first


def empty(shape: tuple[int, ...], dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """An uninitialised contiguous CPU tensor, advised for huge pages before anything touches it."""
    tensor = torch.empty(shape, dtype=dtype)
    advise(tensor)
    return tensor

