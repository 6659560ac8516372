"""``nn.Module`` wrappers of the SAN ops (no parameters, no buffers).

Models must call the ops through exactly these classes: the FLOP counter
(``tools/analysis/complexity.py``) matches their exact types.
"""

from __future__ import annotations

import torch
from torch import nn

from .functional import (
    Pair,
    _check_same_padding,
    aggregation,
    normalize_pad_mode,
    normalize_pair,
    subtraction,
    subtraction2,
)

__all__ = ['Aggregation', 'Subtraction', 'Subtraction2']


class _SAOp(nn.Module):
    """Stores the window configuration as ``(h, w)`` pairs."""

    _op = ''
    _same_padding = False

    def __init__(
        self,
        kernel_size: int | Pair = 3,
        stride: int | Pair = 1,
        padding: int | Pair = 0,
        dilation: int | Pair = 1,
        pad_mode: str | int = 'reflect',
    ) -> None:
        super().__init__()
        op = self._op
        self.kernel_size = normalize_pair(op, 'kernel_size', kernel_size, 1)
        self.stride = normalize_pair(op, 'stride', stride, 1)
        self.padding = normalize_pair(op, 'padding', padding, 0)
        self.dilation = normalize_pair(op, 'dilation', dilation, 1)
        self.pad_mode = normalize_pad_mode(op, pad_mode)
        if self._same_padding:
            _check_same_padding(
                op, self.kernel_size, self.padding, self.dilation
            )

    def _conf(self) -> tuple:
        return (
            self.kernel_size,
            self.stride,
            self.padding,
            self.dilation,
            self.pad_mode,
        )

    def extra_repr(self) -> str:
        return (
            f'kernel_size={self.kernel_size}, stride={self.stride}, '
            f'padding={self.padding}, dilation={self.dilation}, '
            f'pad_mode={self.pad_mode!r}'
        )


class Aggregation(_SAOp):
    """Module form of :func:`shared.ops.aggregation`.

    Args:
        kernel_size: k (int or (h, w) pair).
        stride: s.
        padding: p.
        dilation: d.
        pad_mode: 'zero' or 'reflect' (aliases 0 and 1).

    Shapes:
        input (N, C, H, W), weight (N, Cw, K, L) -> (N, C, Ho, Wo).
    """

    _op = 'Aggregation'

    def forward(
        self, input: torch.Tensor, weight: torch.Tensor
    ) -> torch.Tensor:
        return aggregation(input, weight, *self._conf())


class Subtraction(_SAOp):
    """Module form of :func:`shared.ops.subtraction`.

    Args:
        kernel_size: k, odd.
        stride: s.
        padding: p = d*(k-1)/2 ('same').
        dilation: d.
        pad_mode: 'zero' or 'reflect' (aliases 0 and 1).

    Shapes:
        input (N, C, H, W) -> (N, C, K, L).
    """

    _op = 'Subtraction'
    _same_padding = True

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return subtraction(input, *self._conf())


class Subtraction2(_SAOp):
    """Module form of :func:`shared.ops.subtraction2`.

    Args:
        kernel_size: k, odd.
        stride: s.
        padding: p = d*(k-1)/2 ('same').
        dilation: d.
        pad_mode: 'zero' or 'reflect' (aliases 0 and 1).

    Shapes:
        input1, input2 (N, C, H, W) -> (N, C, K, L).
    """

    _op = 'Subtraction2'
    _same_padding = True

    def forward(
        self, input1: torch.Tensor, input2: torch.Tensor
    ) -> torch.Tensor:
        return subtraction2(input1, input2, *self._conf())
