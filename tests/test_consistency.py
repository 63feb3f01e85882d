"""Consistency over folds (paper Eq. 2) and its guard near zero."""

from __future__ import annotations

import math

import numpy as np

from tripletlit.evaluation.consistency import consistency


def test_matches_equation_two_by_hand():
    folds = [{"A": 1.0, "B": -0.002}, {"A": 3.0, "B": -0.004}]
    result = consistency(folds)
    # A: mean 2, population std 1 -> 0.5; B: mean -0.003, std 0.001 -> 1 - 1/3
    assert math.isclose(result["per_metric"]["A"], 0.5)
    assert math.isclose(result["per_metric"]["B"], 2 / 3)
    assert math.isclose(result["overall"], (0.5 + 2 / 3) / 2)
    assert result["undefined"] == [] and result["folds"] == 2


def test_identical_folds_are_perfectly_consistent():
    result = consistency([{"A": 0.2, "B": -0.01}] * 4)
    assert result["per_metric"] == {"A": 1.0, "B": 1.0} and result["overall"] == 1.0


def test_near_zero_mean_is_undefined_not_exploding():
    folds = [{"A": 0.5, "MRED": 1e-12}, {"A": 0.5, "MRED": -1e-12}, {"A": 0.5, "MRED": 0.0}]
    result = consistency(folds)
    assert math.isnan(result["per_metric"]["MRED"])
    assert result["undefined"] == ["MRED"]
    assert result["overall"] == 1.0  # the mean of the metrics that remain


def test_nan_metric_is_undefined():
    result = consistency([{"A": float("nan"), "B": 1.0}, {"A": 0.3, "B": 1.0}])
    assert result["undefined"] == ["A"] and result["overall"] == 1.0


def test_paper_style_values_are_in_range():
    rng = np.random.default_rng(0)
    folds = [{"HR": 0.0155 + rng.normal(0, 0.0005), "MRED": -0.004 + rng.normal(0, 0.0007)} for _ in range(4)]
    result = consistency(folds)
    assert 0.9 < result["per_metric"]["HR"] <= 1.0
    assert 0.5 < result["per_metric"]["MRED"] <= 1.0
