"""The paper's composite triplet loss (Eq. 1) with cosine distance.

    L_i = w_i * [ T(u_a, s_p, s_n) + lambda1 * T(u_a, u_p, u_n) + lambda2 * T(s_a, s_p, s_n) ]
    T(a, p, n) = max(d(a, p) - d(a, n) + m, 0),   d(a, b) = 1 - cos(a, b)

Each term has its own margin (m0, m1, m2; the paper shares 0.25). The batch loss is the mean
of L_i over the batch (what the paper's code did; the paper writes a sum, equivalent under
Adam up to the scale of the learning rate).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

TERMS = ("user_song", "user_user", "song_song")


def cosine_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """1 - cos(a, b) row-wise: (B, d), (B, d) -> (B,)."""
    return 1.0 - F.cosine_similarity(a, b, dim=-1, eps=1e-8)


def triplet(anchor: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor, margin: float) -> torch.Tensor:
    """max(d(a, p) - d(a, n) + m, 0) per row: (B, d) x 3 -> (B,)."""
    return torch.clamp(cosine_distance(anchor, positive) - cosine_distance(anchor, negative) + margin, min=0.0)


def composite_loss(
    user: torch.Tensor,
    positive: torch.Tensor,
    negative: torch.Tensor,
    user_positive: torch.Tensor,
    user_negative: torch.Tensor,
    song_anchor: torch.Tensor,
    weight: torch.Tensor | None = None,
    lambda_user: float = 2.5,
    lambda_song: float = 2.5,
    margins: tuple[float, float, float] = (0.25, 0.25, 0.25),
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The weighted batch mean of L_i and each (weighted, mean) term for logging.

    Inputs are embeddings (B, d): u_a, s_p, s_n, u_p, u_n, s_a; ``weight`` (B,) or None (=1).
    Returns ``(total, {"user_song": ..., "user_user": ..., "song_song": ...})`` where total =
    user_song + lambda_user * user_user + lambda_song * song_song.
    """
    w = torch.ones(user.shape[0], device=user.device, dtype=user.dtype) if weight is None else weight
    terms = {
        "user_song": (w * triplet(user, positive, negative, margins[0])).mean(),
        "user_user": (w * triplet(user, user_positive, user_negative, margins[1])).mean(),
        "song_song": (w * triplet(song_anchor, positive, negative, margins[2])).mean(),
    }
    total = terms["user_song"] + lambda_user * terms["user_user"] + lambda_song * terms["song_song"]
    return total, terms
