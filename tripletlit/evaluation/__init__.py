"""The EvalRS 2022 evaluation suite: nine metrics, SCORE, consistency, variance agreement.

Python API::

    from tripletlit.evaluation import evaluate, score
    result = evaluate(predictions, fold, dataset, vectors)   # one fold
    score(result["metrics"], profile="evalrs2022")           # SCORE of any metric dict
"""

from tripletlit.evaluation.agreement import variance_agreement
from tripletlit.evaluation.consistency import consistency
from tripletlit.evaluation.metrics import METRICS, compute_metrics, fold_slices
from tripletlit.evaluation.protocol import (
    evaluate,
    read_predictions,
    run_protocol,
    summarise,
    write_metrics,
)
from tripletlit.evaluation.scoring import EVALRS2022, Profile, load_profile, score
from tripletlit.evaluation.vectors import TrackVectors

__all__ = [
    "EVALRS2022",
    "METRICS",
    "Profile",
    "TrackVectors",
    "compute_metrics",
    "consistency",
    "evaluate",
    "fold_slices",
    "load_profile",
    "read_predictions",
    "run_protocol",
    "score",
    "summarise",
    "variance_agreement",
    "write_metrics",
]
