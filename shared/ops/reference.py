"""Independent reference implementations of the SAN ops (tests/benchmark).

Two references, written from the formulas and sharing no code with the
backends:

* ``*_unfold``: ``nn.ReflectionPad2d``/``nn.ZeroPad2d`` then
  ``F.unfold`` (the original formulation, K = kh*kw times the input in
  memory); differentiable through autograd.
* ``*_naive`` and ``*_naive_grad``: plain Python loops over every slot and
  output position, reading X~ through an explicit index map; forward and
  the exact adjoints. Meant for float64 and small sizes.

Arguments follow :func:`shared.ops.aggregation` etc. (int or pair; pad_mode
'zero'/'reflect' or 0/1); no validation beyond what the formulas need.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    'aggregation_naive',
    'aggregation_naive_grad',
    'aggregation_unfold',
    'subtraction2_naive',
    'subtraction2_naive_grad',
    'subtraction2_unfold',
    'subtraction_naive',
    'subtraction_naive_grad',
    'subtraction_unfold',
]


def _two(v) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else (int(v[0]), int(v[1]))


def _conf(kernel_size, stride, padding, dilation, pad_mode):
    mode = {0: 'zero', 1: 'reflect'}.get(pad_mode, pad_mode)
    if mode not in ('zero', 'reflect'):
        raise ValueError(f'bad pad_mode {pad_mode!r}')
    return (
        _two(kernel_size),
        _two(stride),
        _two(padding),
        _two(dilation),
        mode,
    )


def _out(size, k, s, p, d) -> tuple[int, int]:
    return tuple(
        (size[i] + 2 * p[i] - d[i] * (k[i] - 1) - 1) // s[i] + 1
        for i in range(2)
    )


# -- unfold -------------------------------------------------------------------
def _unfold(x, k, s, p, d, mode) -> torch.Tensor:
    """(N, C, H, W) -> (N, C, K, L) neighbourhoods via padding + unfold."""
    pad = (p[1], p[1], p[0], p[0])
    layer = nn.ReflectionPad2d(pad) if mode == 'reflect' else nn.ZeroPad2d(pad)
    cols = F.unfold(layer(x), k, dilation=d, stride=s)
    return cols.view(x.shape[0], x.shape[1], k[0] * k[1], -1)


def aggregation_unfold(
    input, weight, kernel_size=3, stride=1, padding=0, dilation=1,
    pad_mode='reflect',
) -> torch.Tensor:  # fmt: skip
    """Unfold reference of aggregation: (N,C,H,W), (N,Cw,K,L) -> (N,C,Ho,Wo).

    Memory: the unfolded input and the product are each K times the
    output.
    """
    k, s, p, d, mode = _conf(kernel_size, stride, padding, dilation, pad_mode)
    n, c = input.shape[:2]
    cw = weight.shape[1]
    ho, wo = _out(input.shape[-2:], k, s, p, d)
    cols = _unfold(input, k, s, p, d, mode)  # (N, C, K, L)
    # channel c = g*Cw + r uses weight channel r = c % Cw
    cols = cols.view(n, c // cw, cw, k[0] * k[1], ho * wo)
    y = (cols * weight.unsqueeze(1)).sum(3)
    return y.reshape(n, c, ho, wo)


def subtraction_unfold(
    input, kernel_size=3, stride=1, padding=0, dilation=1, pad_mode='reflect'
) -> torch.Tensor:
    """Unfold reference of subtraction: (N,C,H,W) -> (N,C,K,L)."""
    return subtraction2_unfold(
        input, input, kernel_size, stride, padding, dilation, pad_mode
    )


def subtraction2_unfold(
    input1, input2, kernel_size=3, stride=1, padding=0, dilation=1,
    pad_mode='reflect',
) -> torch.Tensor:  # fmt: skip
    """Unfold reference of subtraction2: centre slot of x1 minus x2 slots."""
    k, s, p, d, mode = _conf(kernel_size, stride, padding, dilation, pad_mode)
    mid = (k[0] * k[1]) // 2  # the centre slot of an odd kernel
    centre = _unfold(input1, k, s, p, d, mode)[:, :, mid : mid + 1]
    return centre - _unfold(input2, k, s, p, d, mode)


# -- naive loops --------------------------------------------------------------
def _source(pos: int, size: int, mode: str) -> int | None:
    """Index of X~ along one axis: ``pos`` itself, its reflection or None."""
    if 0 <= pos < size:
        return pos
    if mode == 'zero':
        return None
    return -pos if pos < 0 else 2 * (size - 1) - pos


def _positions(shape, k, s, p, d, mode):
    """Yield ``(j, i, ho, wo, centre, neighbour)`` for every slot/position.

    ``centre`` and ``neighbour`` are ``(h, w)`` source indices into the
    unpadded input, or None where X~ is zero.
    """
    h, w = shape
    ho_n, wo_n = _out(shape, k, s, p, d)
    for a in range(k[0]):
        for b in range(k[1]):
            j = a * k[1] + b
            for ho in range(ho_n):
                for wo in range(wo_n):
                    i = ho * wo_n + wo
                    hn = ho * s[0] - p[0] + a * d[0]
                    wn = wo * s[1] - p[1] + b * d[1]
                    hc = ho * s[0] - p[0] + (k[0] - 1) // 2 * d[0]
                    wc = wo * s[1] - p[1] + (k[1] - 1) // 2 * d[1]
                    src = (_source(hn, h, mode), _source(wn, w, mode))
                    cen = (_source(hc, h, mode), _source(wc, w, mode))
                    yield (
                        j, i, ho, wo,
                        None if None in cen else cen,
                        None if None in src else src,
                    )  # fmt: skip


def aggregation_naive(
    input, weight, kernel_size=3, stride=1, padding=0, dilation=1,
    pad_mode='reflect',
) -> torch.Tensor:  # fmt: skip
    """Per-index loop: ``y[n,c,i] = sum_j w[n, c % Cw, j, i] X~[n,c,nbr]``."""
    k, s, p, d, mode = _conf(kernel_size, stride, padding, dilation, pad_mode)
    n, c, h, w = input.shape
    cw = weight.shape[1]
    ho_n, wo_n = _out((h, w), k, s, p, d)
    wsel = weight[:, [ch % cw for ch in range(c)]]  # (N, C, K, L)
    y = input.new_zeros(n, c, ho_n, wo_n)
    for j, i, ho, wo, _, src in _positions((h, w), k, s, p, d, mode):
        if src is not None:
            y[:, :, ho, wo] += wsel[:, :, j, i] * input[:, :, src[0], src[1]]
    return y


def aggregation_naive_grad(
    grad_y, input, weight, kernel_size=3, stride=1, padding=0, dilation=1,
    pad_mode='reflect',
) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """Adjoint loops of aggregation: ``(grad_input, grad_weight)``."""
    k, s, p, d, mode = _conf(kernel_size, stride, padding, dilation, pad_mode)
    n, c, h, w = input.shape
    cw = weight.shape[1]
    wsel = weight[:, [ch % cw for ch in range(c)]]
    gx = torch.zeros_like(input)
    gsel = torch.zeros_like(wsel)  # per input channel, then summed
    for j, i, ho, wo, _, src in _positions((h, w), k, s, p, d, mode):
        if src is None:
            continue
        gy = grad_y[:, :, ho, wo]
        gx[:, :, src[0], src[1]] += wsel[:, :, j, i] * gy
        gsel[:, :, j, i] = input[:, :, src[0], src[1]] * gy
    gw = torch.zeros_like(weight)
    for ch in range(c):
        gw[:, ch % cw] += gsel[:, ch]
    return gx, gw


def subtraction_naive(
    input, kernel_size=3, stride=1, padding=0, dilation=1, pad_mode='reflect'
) -> torch.Tensor:
    """Per-index loop: ``out[n,c,j,i] = x[n,c,centre] - X~[n,c,nbr]``."""
    return subtraction2_naive(
        input, input, kernel_size, stride, padding, dilation, pad_mode
    )


def subtraction2_naive(
    input1, input2, kernel_size=3, stride=1, padding=0, dilation=1,
    pad_mode='reflect',
) -> torch.Tensor:  # fmt: skip
    """Per-index loop: ``out[n,c,j,i] = x1[n,c,centre] - X~2[n,c,nbr]``."""
    k, s, p, d, mode = _conf(kernel_size, stride, padding, dilation, pad_mode)
    n, c, h, w = input1.shape
    ho_n, wo_n = _out((h, w), k, s, p, d)
    out = input1.new_zeros(n, c, k[0] * k[1], ho_n * wo_n)
    for j, i, _, _, cen, src in _positions((h, w), k, s, p, d, mode):
        val = input1[:, :, cen[0], cen[1]].clone()
        if src is not None:
            val -= input2[:, :, src[0], src[1]]
        out[:, :, j, i] = val
    return out


def subtraction_naive_grad(
    grad_out, input, kernel_size=3, stride=1, padding=0, dilation=1,
    pad_mode='reflect',
) -> torch.Tensor:  # fmt: skip
    """Adjoint loop of subtraction: grad_input."""
    g1, g2 = subtraction2_naive_grad(
        grad_out, input, input, kernel_size, stride, padding, dilation,
        pad_mode,
    )  # fmt: skip
    return g1 + g2


def subtraction2_naive_grad(
    grad_out, input1, input2, kernel_size=3, stride=1, padding=0,
    dilation=1, pad_mode='reflect',
) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """Adjoint loops of subtraction2: ``(grad_input1, grad_input2)``."""
    k, s, p, d, mode = _conf(kernel_size, stride, padding, dilation, pad_mode)
    h, w = input1.shape[-2:]
    g1 = torch.zeros_like(input1)
    g2 = torch.zeros_like(input2)
    for j, i, _, _, cen, src in _positions((h, w), k, s, p, d, mode):
        g = grad_out[:, :, j, i]
        g1[:, :, cen[0], cen[1]] += g
        if src is not None:
            g2[:, :, src[0], src[1]] -= g
    return g1, g2
