"""SS-PRL multi-label mean average precision (``evaluation.md`` §6).

SS-PRL's ``compute_AP`` (``benchmarks/classification/metrics.py``) scores
every class with scikit-learn's ``average_precision_score`` on the rows
whose target is not the ignore value, after shifting the scores of the
positives down by ``1e-5`` in the scores' own dtype. This module computes
the same numbers for all classes at once, with ``-1`` as the ignore value
(SS-PRL's ``255`` is rejected with a hint), and without scikit-learn:

- per class ``j`` the kept rows are those with ``target >= 0`` and
  ``y = (target == 1)``;
- ``s' = s - tie_shift * y`` computed in the scores' dtype;
- ``AP_j`` is the non-interpolated step sum ``sum_n (R_n - R_{n-1}) P_n``
  over the **distinct** values of ``s'`` (tied scores form one step, exactly
  as scikit-learn groups them);
- a class with kept rows but no positive gets ``AP = 0`` (scikit-learn's
  value) and is named in a logged warning; a class without any kept row
  raises;
- ``mAP`` is the mean over **all** classes, times 100.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import torch
from mmengine.logging import print_log

__all__ = ['average_precision_per_class', 'mean_average_precision']

#: SS-PRL's ignore value; we use ``-1`` instead.
_SSPRL_IGNORE = 255


def _to_numpy(value, name: str) -> np.ndarray:
    """Return ``value`` as a numpy array (torch tensors moved to CPU)."""
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu()
        if value.dtype in (torch.bfloat16, torch.float16):
            value = value.float()
        return value.numpy()
    try:
        return np.asarray(value)
    except (TypeError, ValueError) as err:
        raise TypeError(
            f'{name} must be a numpy array or a torch tensor, got '
            f'{type(value).__name__}'
        ) from err


def _check_scores(scores) -> np.ndarray:
    """Validate ``scores`` and return them in their evaluation dtype.

    float32 and float64 keep their dtype (the shift is applied in it);
    float16 becomes float32; bool and integer scores become float64.
    """
    s = _to_numpy(scores, 'scores')
    if s.dtype == np.float16:
        s = s.astype(np.float32)
    elif s.dtype.kind in 'biu':
        s = s.astype(np.float64)
    elif s.dtype.kind != 'f':
        raise TypeError(f'scores must be a real array, got dtype {s.dtype}')
    if s.ndim != 2:
        raise ValueError(f'scores must have shape (N, C), got {s.shape}')
    finite = np.isfinite(s)
    if not finite.all():
        row, col = np.argwhere(~finite)[0]
        raise ValueError(
            f'scores contain non-finite values (first at row {row}, class '
            f'{col}: {s[row, col]}); multi-label AP needs finite scores'
        )
    return s


def _check_targets(targets, shape: tuple[int, ...]) -> np.ndarray:
    """Validate ``targets`` against ``shape``; return them as int8."""
    t = _to_numpy(targets, 'targets')
    if t.shape != shape:
        raise ValueError(
            f'targets have shape {t.shape} but scores have shape {shape}'
        )
    if t.dtype.kind not in 'biuf':
        raise TypeError(f'targets must be numeric, got dtype {t.dtype}')
    valid = (t == 1) | (t == 0) | (t == -1)
    if not valid.all():
        bad = np.unique(t[~valid])
        hint = ''
        if np.any(bad == _SSPRL_IGNORE):
            hint = (
                '; 255 is the ignore value of SS-PRL, here it is -1: '
                'convert with np.where(targets == 255, -1, targets)'
            )
        row, col = np.argwhere(~valid)[0]
        raise ValueError(
            f'targets must take values in {{1, 0, -1}} (-1 = ignored), got '
            f'{bad[:10].tolist()} (first at row {row}, class {col}){hint}'
        )
    return t.astype(np.int8)


def _class_label(index: int, class_names: Sequence[str] | None) -> str:
    if class_names is None:
        return str(index)
    return f'{index} ({class_names[index]})'


def average_precision_per_class(
    scores: np.ndarray | torch.Tensor,
    targets: np.ndarray | torch.Tensor,
    tie_shift: float = 1e-5,
    *,
    class_names: Sequence[str] | None = None,
) -> np.ndarray:
    """Per-class SS-PRL average precision, in percent.

    Equals ``100 * sklearn.metrics.average_precision_score(y, s')`` for
    every class on its kept rows, with ``s' = s - tie_shift * y`` in the
    scores' dtype. Vectorised over classes: a stable descending sort per
    column, tie groups from the differences of the sorted ``s'``, ignored
    entries weighted 0, precision 0 where ``TP + FP = 0``.

    Args:
        scores: ``(N, C)`` real scores (SS-PRL: float32 logits); numpy array
            or torch tensor. float32/float64 keep their dtype, float16
            becomes float32, integers become float64.
        targets: ``(N, C)`` values in ``{1, 0, -1}``; ``-1`` marks an entry
            to ignore (VOC difficult).
        tie_shift (float): Amount subtracted from the scores of positives;
            ``0`` gives plain scikit-learn.
        class_names (Sequence[str], optional): ``C`` names used in messages.

    Returns:
        np.ndarray: float64 ``(C,)`` AP per class, in percent ``[0, 100]``.

    Raises:
        TypeError: If an input is not array-like or not numeric.
        ValueError: On a shape mismatch, non-finite scores, target values
            outside ``{1, 0, -1}`` (with a hint for ``255``), a negative or
            non-finite ``tie_shift``, ``C = 0``, a ``class_names`` length
            other than ``C`` or a class whose targets are all ``-1``.
    """
    s = _check_scores(scores)
    t = _check_targets(targets, s.shape)
    num_rows, num_classes = s.shape
    if num_classes == 0:
        raise ValueError('scores have no class (shape (N, 0))')
    if class_names is not None and len(class_names) != num_classes:
        raise ValueError(
            f'{len(class_names)} class names for {num_classes} score columns'
        )
    if not np.isfinite(tie_shift) or tie_shift < 0:
        raise ValueError(f'tie_shift must be finite and >= 0, got {tie_shift}')

    keep = t >= 0
    pos = t == 1
    num_kept = keep.sum(axis=0)
    num_pos = pos.sum(axis=0)
    empty = np.flatnonzero(num_kept == 0)
    if empty.size:
        labels = ', '.join(_class_label(j, class_names) for j in empty)
        raise ValueError(
            f'class(es) {labels} have no evaluated sample (every target is '
            '-1): their average precision is undefined'
        )

    # s' = s - tie_shift * y, every operation in the scores' dtype.
    shift = np.asarray(tie_shift, dtype=s.dtype)
    shifted = s - shift * pos.astype(s.dtype)

    # Stable descending order per column (negating a float is exact).
    order = np.argsort(-shifted, axis=0, kind='stable')
    sorted_s = np.take_along_axis(shifted, order, axis=0)
    sorted_pos = np.take_along_axis(pos, order, axis=0)
    sorted_neg = np.take_along_axis(keep & ~pos, order, axis=0)
    tp = np.cumsum(sorted_pos, axis=0, dtype=np.int64)
    fp = np.cumsum(sorted_neg, axis=0, dtype=np.int64)

    # Index of the last row of each row's tie group: a group ends where
    # the next sorted value differs, and at the last row.
    rows = np.arange(num_rows)[:, None]
    is_end = np.ones_like(sorted_pos)
    is_end[:-1] = sorted_s[:-1] != sorted_s[1:]
    end_at = np.where(is_end, rows, num_rows)
    group_end = np.minimum.accumulate(end_at[::-1], axis=0)[::-1]

    # Precision at every group end (0 where nothing kept yet); each
    # positive adds 1/P recall at the end of its group.
    tp_end = np.take_along_axis(tp, group_end, axis=0)
    fp_end = np.take_along_axis(fp, group_end, axis=0)
    predicted = tp_end + fp_end
    precision = np.zeros(tp_end.shape, dtype=np.float64)
    np.divide(tp_end, predicted, out=precision, where=predicted > 0)
    ap_sum = np.where(sorted_pos, precision, 0.0).sum(axis=0)
    ap = np.zeros(num_classes, dtype=np.float64)
    has_pos = num_pos > 0
    ap[has_pos] = ap_sum[has_pos] / num_pos[has_pos]

    no_pos = np.flatnonzero(~has_pos)
    if no_pos.size:
        labels = ', '.join(_class_label(j, class_names) for j in no_pos)
        print_log(
            f'multi-label AP: class(es) {labels} have no positive among the '
            'evaluated samples; their AP is 0 and stays in the mean '
            '(scikit-learn convention)',
            logger='current',
            level=logging.WARNING,
        )
    return ap * 100.0


def mean_average_precision(
    scores: np.ndarray | torch.Tensor,
    targets: np.ndarray | torch.Tensor,
    *,
    tie_shift: float = 1e-5,
    class_names: Sequence[str] | None = None,
) -> float:
    """SS-PRL mAP in percent: the mean of :func:`average_precision_per_class`.

    Args:
        scores: ``(N, C)`` real scores (numpy array or torch tensor).
        targets: ``(N, C)`` values in ``{1, 0, -1}`` (``-1`` = ignored).
        tie_shift (float): Shift of the positives' scores (SS-PRL: 1e-5).
        class_names (Sequence[str], optional): Names used in messages.

    Returns:
        float: Mean over all ``C`` classes of the per-class AP, in percent.

    Raises:
        TypeError: See :func:`average_precision_per_class`.
        ValueError: See :func:`average_precision_per_class`.
    """
    ap = average_precision_per_class(
        scores, targets, tie_shift, class_names=class_names
    )
    return float(ap.mean())
