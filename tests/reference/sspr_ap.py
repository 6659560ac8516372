"""SS-PRL's ``compute_AP``, re-stated literally (``evaluation.md`` §6).

One scikit-learn ``average_precision_score`` call per class on the rows
whose target is not the ignore value, after shifting the positives' scores
down by ``tie_shift`` in the scores' dtype. The ignore value is ``-1``
(SS-PRL: 255). Slow on purpose: a Python loop over classes.
"""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.metrics import average_precision_score

__all__ = ['sspr_average_precision', 'sspr_mean_average_precision']


def sspr_average_precision(
    scores: np.ndarray, targets: np.ndarray, tie_shift: float = 1e-5
) -> np.ndarray:
    """Per-class AP (fraction in [0, 1], not percent), class by class.

    Args:
        scores (np.ndarray): (N, C) float scores; their dtype is kept.
        targets (np.ndarray): (N, C) in {1, 0, -1}.
        tie_shift (float): Subtracted from the positives' scores.

    Returns:
        np.ndarray: float64 (C,).

    Raises:
        ValueError: If a class has no row with target >= 0.
    """
    scores = np.asarray(scores)
    targets = np.asarray(targets)
    aps = []
    for j in range(scores.shape[1]):
        column_scores = []
        column_truth = []
        for i in range(scores.shape[0]):
            if targets[i, j] == -1:  # SS-PRL: == 255
                continue
            column_truth.append(1 if targets[i, j] == 1 else 0)
            column_scores.append(scores[i, j])
        if not column_truth:
            raise ValueError(f'class {j} has no evaluated sample')
        y = np.array(column_truth)
        s = np.array(column_scores, dtype=scores.dtype)
        # A Python float times a float32 array stays float32 (NEP 50), as
        # in SS-PRL's float32 logits.
        s = s - tie_shift * y.astype(scores.dtype)
        assert s.dtype == scores.dtype
        with warnings.catch_warnings():
            # "No positive class found in y_true": AP 0, asserted by tests.
            warnings.simplefilter('ignore', UserWarning)
            aps.append(float(average_precision_score(y, s)))
    return np.array(aps, dtype=np.float64)


def sspr_mean_average_precision(
    scores: np.ndarray, targets: np.ndarray, tie_shift: float = 1e-5
) -> float:
    """mAP in percent: the mean over all classes of the per-class AP x 100."""
    return 100.0 * float(
        np.mean(sspr_average_precision(scores, targets, tie_shift))
    )
