"""Batched full-catalogue top-k with seen-track filtering, and the paper's stochastic top-k.

Shared by the model and the baselines: scores are ``users @ items.T`` (cosine when both are
L2-normalised), computed ``batch_size`` users at a time so memory stays bounded by
``batch_size x n_items``; tracks a user already played are masked out before the top-k.

At EvalRS scale (30K users x 228K tracks, d = 128, top-500) nearly all of the time is the
float32 product and ``torch.topk``; :func:`top_k` does three things about them, none of which
changes a result (the same float32 scores; the same top k, up to the order of exactly tied
scores):

* **One reused, padded score buffer.** A fresh (batch, n_items) matrix per batch costs about a
  third of the product in page faults. Its rows are padded to a multiple of 64 floats and the
  product is written into the (batch, n_items) view of it (row stride = the padded length):
  MKL's sgemm was ~1.4x slower with the output's leading dimension 227,989 than with a
  multiple of 16 (0.54 s vs 0.37 s for 1,024 users on 2 cores; the scores came out bitwise
  equal). The pad columns hold ``-inf`` for good.
* **Seen tracks** are set to ``-inf`` in place (one indexed assignment per batch).
* **Top-k through a threshold** (``prefilter``). ``torch.topk`` on CPU keeps a k-heap per row;
  at k = 500 over 228K columns most of its time is heap updates, not the scan (a top-500 over
  57K columns still costs half as much as over 228K). Instead, with the padded row cut into 4
  quarters of length ``q = padded / 4``:

  1. ``g4[c] = max(s[c], s[c+q], s[c+2q], s[c+3q])`` (three elementwise maxima into a reused
     buffer), and ``gm[c]`` = the max of ``g4`` over its ``m / 4`` blocks, i.e. the max of a
     group of ``m = 64`` scores (``m = 16`` when there are fewer than 2k groups of 64: with
     too few groups the threshold below is loose);
  2. ``t`` = the k-th largest ``gm`` (a top-k over padded/64 = 3,563 columns here). The k
     groups with the largest maxima hold k distinct scores ``>= t``, so the k-th largest score
     is ``>= t``: every score of the top k is ``>= t``;
  3. the 4-groups with ``g4 >= t`` hold every score ``>= t``. They are listed with
     ``nonzero`` (about 1.1 x k per row with random vectors: 558 at most for k = 500),
     packed into a (rows, width) table, their 4 members gathered (members below ``t`` come
     along; harmless) and the top k taken over those ~4.4 x k columns.

  Rows where ``t`` is not finite (a ``NaN`` score, fewer than k unseen tracks), where more
  than 2k groups tie at ``t`` (e.g. a zero user vector) or whose list would be longer than
  ``max(8k, 1024)`` groups take ``torch.topk`` over the whole row instead, so every case gives
  the plain result and the listing stays O(rows x k). Used by default when the padded row
  has ``>= 64 k`` columns (at one thread and at two quiet ones it beat ``torch.topk`` at every
  size measured: from 40K columns for k = 500 and 8K for k = 100; with another process on one
  of two cores its ~20 small parallel operations can lose, see the README). Per 1,024 users x
  227,989 tracks (k = 500, one thread): ``torch.topk``
  0.55 s, the prefilter 0.29 s (maxima 0.08, threshold 0.04, comparison 0.03, ``nonzero``
  0.06, final top-k 0.04, the rest 0.04).

Figures of the whole pipeline: ``benchmarks/README.md`` (evaluation benchmark). Tried and not
kept: a bfloat16 screening product (3x cheaper than float32 on AVX512-BF16) with a rigorous
rounding-error bound and exact float32 rescoring of every candidate it cannot rule out; for
k = 500 that is ~730 candidates per user, and gathering their vectors plus a top-1,065 over the
bf16 scores cost as much as the cheaper product saved.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch

#: Scores per row of the score buffer are padded to a multiple of this (a multiple of 64 also
#: makes the row split evenly into the 4 quarters and 16 blocks of the prefilter).
_ALIGN = 64


def seen_matrix(
    user_index: np.ndarray, item_index: np.ndarray, n_users: int, n_items: int
) -> sp.csr_matrix:
    """(n_users, n_items) boolean CSR of the (user, item) pairs a user has already played."""
    data = np.ones(len(user_index), dtype=bool)
    matrix = sp.csr_matrix((data, (user_index, item_index)), shape=(n_users, n_items))
    matrix.sum_duplicates()
    return matrix


def _mask_seen(scores: torch.Tensor, seen: sp.csr_matrix, rows: np.ndarray) -> None:
    block = seen[rows]
    r = np.repeat(np.arange(len(rows)), np.diff(block.indptr))
    scores[
        torch.from_numpy(r).to(scores.device),
        torch.from_numpy(block.indices.astype(np.int64)).to(scores.device),
    ] = -torch.inf


def top_k(
    user_vectors: torch.Tensor,
    item_vectors: torch.Tensor,
    k: int,
    users: np.ndarray | None = None,
    seen: sp.csr_matrix | None = None,
    batch_size: int = 1024,
    *,
    prefilter: bool | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Indices (n, k) and scores (n, k) of the best ``k`` items per user, best first.

    ``user_vectors``: (n_users, d); ``item_vectors``: (n_items, d); ``users``: rows of
    ``user_vectors`` to rank for (default all); ``seen``: CSR (n_users, n_items) of items to
    exclude. Items masked out are never returned unless a user has fewer than ``k``
    candidates, in which case the tail holds index -1 and score -inf.

    ``prefilter``: select through a threshold from group maxima instead of one
    ``torch.topk`` over the whole catalogue (module docstring; same result). ``None``
    (default): when ``n_items >= 64 k`` (after padding to a multiple of 64); ``True``:
    whenever ``n_items >= 16 k`` (after padding); ``False``: never.
    """
    n_items = item_vectors.shape[0]
    users = np.arange(user_vectors.shape[0]) if users is None else np.asarray(users)
    k_eff = min(k, n_items)
    out_idx = np.full((len(users), k), -1, dtype=np.int64)
    out_score = np.full((len(users), k), -np.inf, dtype=np.float32)
    if len(users) == 0 or k_eff <= 0:
        return out_idx, out_score
    padded = -(-n_items // _ALIGN) * _ALIGN
    # groups of 64 scores for the threshold when there are >= 2k of them, else of 16
    group = 64 if padded // 64 >= 2 * k_eff else 16
    use_prefilter = padded // group >= k_eff and (
        padded >= 64 * k_eff if prefilter is None else prefilter
    )
    with torch.no_grad():
        # one score buffer reused by every batch; the pad columns are -inf for good
        buffer = torch.empty((min(batch_size, len(users)), padded), dtype=item_vectors.dtype,
                             device=item_vectors.device)  # fmt: skip
        buffer[:, n_items:] = -torch.inf
        select = _Prefilter(group) if use_prefilter else None
        for start in range(0, len(users), batch_size):
            rows = users[start : start + batch_size]
            scores = buffer[: len(rows)]
            view = scores[:, :n_items]  # row stride `padded`: the aligned output MKL likes
            torch.mm(
                user_vectors[torch.from_numpy(rows).to(user_vectors.device)],
                item_vectors.T,
                out=view,
            )
            if seen is not None:
                _mask_seen(view, seen, rows)
            if select is not None:
                values, index = select(scores, view, k_eff)
            else:
                values, index = torch.topk(view, k_eff, dim=1)
            index = index.cpu().numpy()
            values = values.float().cpu().numpy()
            index[~np.isfinite(values)] = -1
            out_idx[start : start + len(rows), :k_eff] = index
            out_score[start : start + len(rows), :k_eff] = values
    return out_idx, out_score


class _Prefilter:
    """``torch.topk(view, k, dim=1)`` through the group-maximum threshold (module docstring).

    Called with ``scores``, the contiguous (rows, padded) buffer whose pad columns are
    ``-inf``, and ``view``, its first ``n_items`` columns; ``padded`` is a multiple of 64 with
    ``padded / group >= k``. Its two (rows, padded / 4) work buffers are reused from batch to
    batch (freshly allocated ones would cost more in page faults than the maxima themselves).
    """

    def __init__(self, group: int = 64) -> None:
        self.group = group  # scores per group of the threshold: 16 or 64
        self.g4: torch.Tensor | None = None
        self.hit: torch.Tensor | None = None

    def __call__(
        self, scores: torch.Tensor, view: torch.Tensor, k: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        rows, padded = scores.shape
        device = scores.device
        q, s = padded // 4, padded // self.group
        if self.g4 is None or self.g4.numel() < rows * q:
            self.g4 = torch.empty(rows * q, dtype=scores.dtype, device=device)
            self.hit = torch.empty(rows * q, dtype=torch.bool, device=device)
        g4 = self.g4[: rows * q].view(rows, q)
        torch.maximum(scores[:, :q], scores[:, q : 2 * q], out=g4)
        torch.maximum(g4, scores[:, 2 * q : 3 * q], out=g4)
        torch.maximum(g4, scores[:, 3 * q :], out=g4)  # g4[c] = max of s[c + j q], j = 0..3
        gm = g4.view(rows, self.group // 4, s).amax(dim=1)  # maxima of s[c + j s], j < group
        threshold = torch.topk(gm, k, dim=1, sorted=False).values.amin(dim=1)  # NaN: a NaN score

        # rows for the plain topk: NaN / -inf threshold, or many groups tied at it (e.g. a zero
        # user vector); they stay out of the listing, which so stays O(rows * k)
        tied = (gm >= threshold[:, None]).view(torch.uint8).sum(dim=1, dtype=torch.int32) > 2 * k
        whole = ~torch.isfinite(threshold) | tied
        above = torch.ge(
            g4,
            threshold.masked_fill(whole, torch.nan)[:, None],
            out=self.hit[: rows * q].view(rows, q),
        )
        hit = torch.nonzero(above)  # (row, 4-group), row-major
        counts = torch.bincount(hit[:, 0], minlength=rows)
        long = counts > max(8 * k, 1024)
        if bool(long.any()):
            whole |= long
            hit, counts = hit[~long[hit[:, 0]]], counts.masked_fill(long, 0)
        values = torch.full((rows, k), -torch.inf, dtype=scores.dtype, device=device)
        index = torch.zeros((rows, k), dtype=torch.int64, device=device)
        width = int(counts.max())
        if width:
            # each row's groups packed to the left of a (rows, width) table, then their members
            r = hit[:, 0]
            pos = torch.arange(len(r), device=device) - (torch.cumsum(counts, 0) - counts)[r]
            groups = torch.zeros((rows, width), dtype=torch.int64, device=device)
            valid = torch.zeros((rows, width), dtype=torch.bool, device=device)
            groups[r, pos] = hit[:, 1]
            valid[r, pos] = True
            cols = (groups[:, :, None] + q * torch.arange(4, device=device)).reshape(
                rows, 4 * width
            )
            candidate = torch.gather(scores, 1, cols)
            candidate.masked_fill_(~valid.repeat_interleave(4, dim=1), -torch.inf)
            top, at = torch.topk(candidate, min(k, 4 * width), dim=1)
            values[:, : top.shape[1]], index[:, : top.shape[1]] = top, torch.gather(cols, 1, at)
        if bool(whole.any()):
            fallback = torch.nonzero(whole).flatten()
            values[fallback], index[fallback] = torch.topk(view[fallback], k, dim=1)
        return values, index


def stochastic_top_k(
    ranked: np.ndarray, k: int, rng: np.random.Generator, exponent: float = 1.0
) -> np.ndarray:
    """Draw ``k`` of each row's ranked candidates without replacement, p(rank r) ~ 1/(r+1)^exponent,
    and return them in rank order (the paper's inverse-rank sampling; -1 candidates are never drawn).

    ``ranked``: (n, m) candidate indices, best first, m >= k (e.g. m = k * horizon = 500).
    Uses Gumbel top-k: the k largest ``log p_r + Gumbel`` are a draw without replacement.
    """
    n, m = ranked.shape
    log_p = -exponent * np.log(np.arange(1, m + 1, dtype=np.float64))
    keys = log_p[None, :] + rng.gumbel(size=(n, m))
    keys[ranked < 0] = -np.inf
    chosen = np.argpartition(-keys, min(k, m) - 1, axis=1)[:, :k]
    chosen.sort(axis=1)  # rank order
    picked = np.take_along_axis(ranked, chosen, axis=1)
    return picked
