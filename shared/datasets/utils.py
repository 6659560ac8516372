"""Small helpers shared by the multi-label adapters, losses and metrics."""

from __future__ import annotations

from collections.abc import Sequence

import torch

__all__ = ['multilabel_target']


def multilabel_target(
    gt_label: Sequence[int] | torch.Tensor,
    gt_label_difficult: Sequence[int] | torch.Tensor | None,
    num_classes: int,
) -> torch.Tensor:
    """Build the float (C,) target in {1, 0, -1} of one multi-label sample.

    ``1`` marks a positive class, ``-1`` a class to ignore (VOC
    difficult-only), ``0`` a negative. A class listed both as positive and
    as difficult is positive (mmpretrain's VOC convention).

    Args:
        gt_label: Positive class indices.
        gt_label_difficult: Class indices to ignore, or ``None``.
        num_classes (int): ``C``.

    Returns:
        torch.Tensor: float32 (C,) target.

    Raises:
        ValueError: If an index is outside ``[0, C)``.
    """
    target = torch.zeros(num_classes, dtype=torch.float32)
    for name, labels, value in (
        ('gt_label_difficult', gt_label_difficult, -1.0),
        ('gt_label', gt_label, 1.0),
    ):
        if labels is None:
            continue
        idx = torch.as_tensor(labels, dtype=torch.long).reshape(-1)
        if idx.numel() and (idx.min() < 0 or idx.max() >= num_classes):
            raise ValueError(
                f'{name} {idx.tolist()} has a class outside [0, {num_classes})'
            )
        target[idx] = value
    return target
