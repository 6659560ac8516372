"""``SANSmoothCELoss``: the label-smoothed cross-entropy of hszhao/SAN (§3.1).

Upstream ``smooth_loss(output, target, eps)`` puts 1 − ε on the true class
and ε/(K−1) on each of the other K−1 classes. This is *not* torch's
``label_smoothing=ε`` (which gives 1 − ε + ε/K and ε/K); it equals
``label_smoothing=εK/(K−1)`` and mmpretrain's
``LabelSmoothLoss(label_smooth_val=εK/(K−1), mode='original')``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from mmpretrain.models.losses.utils import weight_reduce_loss
from torch import nn

from shared.registry import MODELS

__all__ = ['SANSmoothCELoss']

_REDUCTIONS = ('none', 'mean', 'sum')


@MODELS.register_module()
class SANSmoothCELoss(nn.Module):
    """Cross-entropy against SAN's smoothed target.

    For logits z ``(N, K)`` and label y, the target is q_y = 1 − ε and
    q_k = ε/(K−1) for k ≠ y, and the per-sample loss is
    −Σ_k q_k log_softmax(z)_k (nats). A soft target t ``(N, K)`` (rows
    summing to 1, e.g. from batch augments) is mapped the same way,
    q = (1 − ε) t + ε (1 − t)/(K−1), which reduces to the above for one-hot t
    and still sums to 1.

    Args:
        eps (float): ε in [0, 1). Defaults to 0.1 (SAN's ImageNet recipe).
        reduction (str): 'none', 'mean' or 'sum'. Defaults to 'mean'.
        loss_weight (float): Multiplier of the loss. Defaults to 1.0.

    Raises:
        ValueError: ``eps`` outside [0, 1) or an unknown ``reduction``; at
            call time, K < 2, labels out of range or of the wrong shape.
    """

    def __init__(
        self,
        eps: float = 0.1,
        reduction: str = 'mean',
        loss_weight: float = 1.0,
    ) -> None:
        super().__init__()
        if isinstance(eps, bool) or not 0.0 <= eps < 1.0:
            raise ValueError(
                f'SANSmoothCELoss: eps must be in [0, 1), got {eps!r}'
            )
        if reduction not in _REDUCTIONS:
            raise ValueError(
                f'SANSmoothCELoss: reduction must be one of {_REDUCTIONS}, '
                f'got {reduction!r}'
            )
        self.eps = float(eps)
        self.reduction = reduction
        self.loss_weight = loss_weight

    def smooth_target(
        self,
        label: torch.Tensor,
        num_classes: int,
        dtype: torch.dtype = torch.float32,
    ) -> torch.Tensor:
        """The smoothed target distribution q.

        Args:
            label (Tensor): ``(N,)`` integer class indices in [0, K), or a
                ``(N, K)`` soft target.
            num_classes (int): K ≥ 2.
            dtype (torch.dtype): Floating dtype of the result.

        Returns:
            Tensor: ``(N, K)`` target of ``dtype``, each row summing to 1.
        """
        if num_classes < 2:
            raise ValueError(
                f'SANSmoothCELoss: needs K >= 2 classes, got K={num_classes}'
            )
        if label.dim() == 1 and not label.is_floating_point():
            if label.numel() and (
                label.min() < 0 or label.max() >= num_classes
            ):
                raise ValueError(
                    f'SANSmoothCELoss: labels must be in [0, {num_classes}), '
                    f'got min {int(label.min())} and max {int(label.max())}'
                )
            target = F.one_hot(label.long(), num_classes).to(dtype)
        elif label.dim() == 2 and label.shape[1] == num_classes:
            target = label.to(dtype)
        else:
            raise ValueError(
                f'SANSmoothCELoss: label must be (N,) integers or (N, '
                f'{num_classes}) scores, got {tuple(label.shape)} '
                f'{label.dtype}'
            )
        off = self.eps / (num_classes - 1)
        return target * (1.0 - self.eps) + (1.0 - target) * off

    def forward(
        self,
        cls_score: torch.Tensor,
        label: torch.Tensor,
        weight: torch.Tensor | None = None,
        avg_factor: float | None = None,
        reduction_override: str | None = None,
        **kwargs,
    ) -> torch.Tensor:
        """Compute the loss (mmpretrain loss-module interface).

        Args:
            cls_score (Tensor): ``(N, K)`` logits.
            label (Tensor): ``(N,)`` class indices or ``(N, K)`` soft target.
            weight (Tensor, optional): ``(N,)`` per-sample weights.
            avg_factor (float, optional): Divisor of the summed loss for
                'mean' (``LinearClsHead`` passes N).
            reduction_override (str, optional): Overrides ``reduction``.

        Returns:
            Tensor: Scalar for 'mean'/'sum', ``(N,)`` for 'none' (nats).
        """
        if cls_score.dim() != 2:
            raise ValueError(
                f'SANSmoothCELoss: cls_score must be (N, K), got '
                f'{tuple(cls_score.shape)}'
            )
        if label.shape[0] != cls_score.shape[0]:
            raise ValueError(
                f'SANSmoothCELoss: {label.shape[0]} labels for '
                f'{cls_score.shape[0]} scores'
            )
        reduction = reduction_override or self.reduction
        if reduction not in _REDUCTIONS:
            raise ValueError(
                f'SANSmoothCELoss: reduction must be one of {_REDUCTIONS}, '
                f'got {reduction!r}'
            )
        log_prob = F.log_softmax(cls_score, dim=1)
        # At least float32 (fp16 logits under autocast), float64 kept.
        dtype = torch.promote_types(log_prob.dtype, torch.float32)
        target = self.smooth_target(label, cls_score.shape[1], dtype)
        loss = -(target * log_prob).sum(dim=1)
        if weight is not None:
            weight = weight.float()
        loss = weight_reduce_loss(
            loss, weight=weight, reduction=reduction, avg_factor=avg_factor
        )
        return self.loss_weight * loss

    def extra_repr(self) -> str:
        return f'eps={self.eps}, reduction={self.reduction!r}'
