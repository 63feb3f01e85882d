"""Batched full-catalogue top-k with seen-track filtering, and the paper's stochastic top-k.

Shared by the model and the baselines: scores are ``users @ items.T`` (cosine when both are
L2-normalised), computed ``batch_size`` users at a time so memory stays bounded by
``batch_size x n_items``; tracks a user already played are masked out before the top-k.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch


def seen_matrix(user_index: np.ndarray, item_index: np.ndarray, n_users: int, n_items: int) -> sp.csr_matrix:
    """(n_users, n_items) boolean CSR of the (user, item) pairs a user has already played."""
    data = np.ones(len(user_index), dtype=bool)
    matrix = sp.csr_matrix((data, (user_index, item_index)), shape=(n_users, n_items))
    matrix.sum_duplicates()
    return matrix


def _mask_seen(scores: torch.Tensor, seen: sp.csr_matrix, rows: np.ndarray) -> None:
    block = seen[rows]
    r = np.repeat(np.arange(len(rows)), np.diff(block.indptr))
    scores[torch.from_numpy(r).to(scores.device), torch.from_numpy(block.indices.astype(np.int64)).to(scores.device)] = -torch.inf


def top_k(
    user_vectors: torch.Tensor,
    item_vectors: torch.Tensor,
    k: int,
    users: np.ndarray | None = None,
    seen: sp.csr_matrix | None = None,
    batch_size: int = 1024,
) -> tuple[np.ndarray, np.ndarray]:
    """Indices (n, k) and scores (n, k) of the best ``k`` items per user, best first.

    ``user_vectors``: (n_users, d); ``item_vectors``: (n_items, d); ``users``: rows of
    ``user_vectors`` to rank for (default all); ``seen``: CSR (n_users, n_items) of items to
    exclude. Items masked out are never returned unless a user has fewer than ``k``
    candidates, in which case the tail holds index -1 and score -inf.
    """
    n_items = item_vectors.shape[0]
    users = np.arange(user_vectors.shape[0]) if users is None else np.asarray(users)
    k_eff = min(k, n_items)
    out_idx = np.full((len(users), k), -1, dtype=np.int64)
    out_score = np.full((len(users), k), -np.inf, dtype=np.float32)
    with torch.no_grad():
        # one score buffer reused by every batch: a fresh (batch, n_items) matrix per batch costs
        # about a third of the matrix product in page faults at catalogue scale
        buffer = torch.empty((min(batch_size, max(len(users), 1)), n_items), dtype=item_vectors.dtype,
                             device=item_vectors.device)  # fmt: skip
        for start in range(0, len(users), batch_size):
            rows = users[start : start + batch_size]
            scores = buffer[: len(rows)]
            torch.mm(user_vectors[torch.from_numpy(rows).to(user_vectors.device)], item_vectors.T, out=scores)
            if seen is not None:
                _mask_seen(scores, seen, rows)
            values, index = torch.topk(scores, k_eff, dim=1)
            index = index.cpu().numpy()
            values = values.float().cpu().numpy()
            index[~np.isfinite(values)] = -1
            out_idx[start : start + len(rows), :k_eff] = index
            out_score[start : start + len(rows), :k_eff] = values
    return out_idx, out_score


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
