"""The composite triplet loss (method.md section 2) against values computed by hand."""

from __future__ import annotations

import math

import pytest
import torch

from tripletlit.losses import TERMS, composite_loss, cosine_distance, triplet

E1 = [1.0, 0.0]
E2 = [0.0, 1.0]
NEG_E1 = [-1.0, 0.0]


def t(*rows):
    return torch.tensor(rows, dtype=torch.float32)


def test_cosine_distance_of_parallel_orthogonal_and_opposite_vectors():
    a = t(E1, E1, E1, [3.0, 4.0])
    b = t([5.0, 0.0], E2, NEG_E1, [4.0, 3.0])
    expected = torch.tensor([0.0, 1.0, 2.0, 1.0 - 24.0 / 25.0])
    torch.testing.assert_close(cosine_distance(a, b), expected)


def test_triplet_by_hand():
    anchor = t(E1, E1, E1, E1)
    positive = t(E1, E2, E1, NEG_E1)
    negative = t(E2, E1, NEG_E1, E1)
    # d(a,p) - d(a,n) + m with m = 0.25:
    #   0 - 1 + .25 -> 0 (hinge);  1 - 0 + .25 = 1.25;  0 - 2 + .25 -> 0;  2 - 0 + .25 = 2.25
    torch.testing.assert_close(triplet(anchor, positive, negative, 0.25), torch.tensor([0.0, 1.25, 0.0, 2.25]))
    # margin large enough to open the hinge everywhere
    torch.testing.assert_close(triplet(anchor, positive, negative, 3.0), torch.tensor([2.0, 4.0, 1.0, 5.0]))


def test_triplet_hinge_is_exactly_zero_with_zero_gradient():
    anchor = t(E1).requires_grad_()
    loss = triplet(anchor, t(E1), t(NEG_E1), 0.5)  # 0 - 2 + 0.5 < 0
    assert loss.item() == 0.0
    loss.sum().backward()
    assert torch.count_nonzero(anchor.grad) == 0


def _batch():
    """Two rows whose terms are known: d-values 0, 1 or 2 only."""
    user = t(E1, E1)
    positive = t(E2, E1)  # d(u, s_p) = 1, 0
    negative = t(E1, E2)  # d(u, s_n) = 0, 1
    user_positive = t(NEG_E1, E2)  # d(u, u_p) = 2, 1
    user_negative = t(E2, E1)  # d(u, u_n) = 1, 0
    song_anchor = t(E2, NEG_E1)  # d(s_a, s_p) = 0, 2 ; d(s_a, s_n) = 1, 1
    return user, positive, negative, user_positive, user_negative, song_anchor


def test_composite_loss_by_hand_with_margins_per_term_lambdas_and_weights():
    margins = (0.1, 0.2, 0.3)
    # per-row terms before the weight:
    # user_song: (1 - 0 + .1, 0 - 1 + .1 -> 0) = (1.1, 0)
    # user_user: (2 - 1 + .2, 1 - 0 + .2) = (1.2, 1.2)
    # song_song: (0 - 1 + .3 -> 0, 2 - 1 + .3) = (0, 1.3)
    weight = torch.tensor([2.0, 0.5])
    total, terms = composite_loss(*_batch(), weight=weight, lambda_user=3.0, lambda_song=0.5, margins=margins)
    assert set(terms) == set(TERMS)
    expected = {
        "user_song": (2.0 * 1.1 + 0.5 * 0.0) / 2,
        "user_user": (2.0 * 1.2 + 0.5 * 1.2) / 2,
        "song_song": (2.0 * 0.0 + 0.5 * 1.3) / 2,
    }
    for name, value in expected.items():
        assert terms[name].item() == pytest.approx(value, abs=1e-6), name
    assert total.item() == pytest.approx(
        expected["user_song"] + 3.0 * expected["user_user"] + 0.5 * expected["song_song"], abs=1e-6
    )


def test_composite_loss_defaults_paper_values_and_unit_weight():
    total, terms = composite_loss(*_batch())  # lambdas 2.5, margins 0.25, weight 1
    us = (1.25 + 0.0) / 2
    uu = (1.25 + 1.25) / 2
    ss = (0.0 + 1.25) / 2
    assert terms["user_song"].item() == pytest.approx(us)
    assert terms["user_user"].item() == pytest.approx(uu)
    assert terms["song_song"].item() == pytest.approx(ss)
    assert total.item() == pytest.approx(us + 2.5 * uu + 2.5 * ss)
    ones, _ = composite_loss(*_batch(), weight=torch.ones(2))
    assert ones.item() == pytest.approx(total.item())


def test_weight_scales_each_row_of_the_batch_mean():
    batch = _batch()
    _, unit = composite_loss(*batch, margins=(0.25, 0.25, 0.25))
    _, heavy_first = composite_loss(*batch, weight=torch.tensor([10.0, 0.0]))
    # only the first row counts, times 10, still divided by the batch size 2
    assert heavy_first["user_song"].item() == pytest.approx(10 * 1.25 / 2)
    assert heavy_first["user_user"].item() == pytest.approx(10 * 1.25 / 2)
    assert heavy_first["song_song"].item() == pytest.approx(0.0)
    assert unit["song_song"].item() > 0


def test_all_hinges_closed_give_zero_loss():
    e = t(E1)
    total, terms = composite_loss(e, e, t(NEG_E1), e, t(NEG_E1), e)
    assert total.item() == 0.0
    assert all(v.item() == 0.0 for v in terms.values())


def test_gradient_step_on_user_song_term_pulls_positive_and_pushes_negative():
    anchor = torch.nn.Parameter(torch.tensor([[1.0, 1.0]]))
    positive = torch.tensor([[1.0, -0.2]])
    negative = torch.tensor([[0.1, 1.0]])
    cos = torch.nn.functional.cosine_similarity

    before_p = cos(anchor, positive).item()
    before_n = cos(anchor, negative).item()
    other = torch.tensor([[1.0, 0.0]])
    _, terms = composite_loss(anchor, positive, negative, other, other, other)
    assert terms["user_song"].item() > 0  # the hinge is open
    optimiser = torch.optim.SGD([anchor], lr=0.1)
    optimiser.zero_grad()
    terms["user_song"].backward()
    optimiser.step()
    assert cos(anchor, positive).item() > before_p
    assert cos(anchor, negative).item() < before_n
    # the new loss term is smaller
    _, after = composite_loss(anchor, positive, negative, other, other, other)
    assert after["user_song"].item() < terms["user_song"].item()


def test_cosine_distance_is_scale_invariant_and_safe_at_zero():
    a = t([2.0, 1.0])
    b = t([-1.0, 3.0])
    torch.testing.assert_close(cosine_distance(a, b), cosine_distance(7 * a, 0.1 * b))
    zero = cosine_distance(t([0.0, 0.0]), b)
    assert math.isfinite(zero.item()) and zero.item() == pytest.approx(1.0)
