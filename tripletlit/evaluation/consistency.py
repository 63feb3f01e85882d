"""Consistency of metrics across folds (paper Eq. 2).

``c = (1/|M|) sum_m (1 - sigma_m / |mu_m|)`` with the population standard deviation (ddof 0)
over folds. It explodes when |mu_m| is near 0 (MREDs are ~1e-3, and exactly 0 for a perfectly
fair model): a metric whose |mean| is below ``min_abs_mean`` gets consistency NaN, is reported
as such, and is left out of the overall mean, which is taken over the metrics that remain.
"""

from __future__ import annotations

import numpy as np

MIN_ABS_MEAN = 1e-9


def consistency(per_fold: list[dict[str, float]], min_abs_mean: float = MIN_ABS_MEAN) -> dict:
    """Per-metric and overall consistency of ``per_fold`` metric dicts (one per fold).

    Returns ``{"per_metric": {NAME: c or NaN}, "overall": mean of the finite ones,
    "undefined": [names whose |mean| < min_abs_mean or that are NaN], "folds": n}``.
    With a single fold every c is 1 (no spread), which says nothing: check ``folds``.
    """
    names = list(per_fold[0]) if per_fold else []
    per_metric, undefined = {}, []
    for name in names:
        values = np.array([fold[name] for fold in per_fold], dtype=np.float64)
        mean = values.mean()
        if not np.isfinite(values).all() or abs(mean) < min_abs_mean:
            per_metric[name] = float("nan")
            undefined.append(name)
        else:
            per_metric[name] = float(1.0 - values.std(ddof=0) / abs(mean))
    finite = [c for c in per_metric.values() if np.isfinite(c)]
    return {
        "per_metric": per_metric,
        "overall": float(np.mean(finite)) if finite else float("nan"),
        "undefined": undefined,
        "folds": len(per_fold),
    }
