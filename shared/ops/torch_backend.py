"""Chunked pure-PyTorch implementation of the SAN ops (any device).

The input is padded once (``F.pad``; 'reflect' is ``ReflectionPad2d``) and
the ops then loop over the K = kh*kw kernel slots. Slot ``j = a*kw + b``
reads the strided view ``Xp[:, :, a*dh : a*dh + sh*(Ho-1)+1 : sh, ...]`` of
the padded input, which is exactly X~ at the neighbours of every output
position, so no unfolded (K times larger) tensor is ever materialised:

* aggregation accumulates ``y += w_j * Xp_j`` with ``addcmul_`` into
  ``y.view(N, C//Cw, Cw, Ho, Wo)``: channel ``c`` uses weight channel
  ``c % Cw`` (interleaved sharing);
* subtraction(2) writes ``centre - Xp_j`` straight into the preallocated
  output slot;
* backward adds every slot's contribution into a zero padded gradient
  buffer through the same strided views, folds the padding back
  (reflect mode; zero mode drops it) and crops; the weight gradient is the
  per-slot product summed over the C//Cw channel groups.

Every step is sequential and elementwise, so results are deterministic.
float16/bfloat16 accumulate in float32 (float64 in float64); a
subtraction output, a single difference, is rounded once either way. The
extra
memory is the padded input (and padded gradient) plus the output and a
few output-sized temporaries.

All functions take contiguous tensors of one floating dtype on one device
that :mod:`shared.ops.functional` has validated; ``kernel``, ``stride``,
``padding`` and ``dilation`` are ``(h, w)`` int tuples and ``pad_mode`` is
'zero' or 'reflect'. :mod:`shared.ops.cupy_backend` has the same functions.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
import torch.nn.functional as F

from .functional import output_size

Pair = tuple[int, int]

__all__ = [
    'aggregation_backward',
    'aggregation_forward',
    'subtraction2_backward',
    'subtraction2_forward',
    'subtraction_backward',
    'subtraction_forward',
]


# -- helpers ------------------------------------------------------------------
def _acc_dtype(dtype: torch.dtype) -> torch.dtype:
    """Accumulation dtype: float64 for float64, float32 otherwise."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def _pad(x: torch.Tensor, padding: Pair, pad_mode: str) -> torch.Tensor:
    """Pad ``x`` (N, C, H, W) by ``padding`` on each side (no copy if 0)."""
    ph, pw = padding
    if ph == 0 and pw == 0:
        return x
    mode = 'reflect' if pad_mode == 'reflect' else 'constant'
    return F.pad(x, (pw, pw, ph, ph), mode=mode)


def _window(
    t: torch.Tensor, top: int, left: int, stride: Pair, out: Pair
) -> torch.Tensor:
    """Strided view ``t[:, :, top::sh, left::sw]`` of ``out = (Ho, Wo)``."""
    (sh, sw), (ho, wo) = stride, out
    return t[
        :,
        :,
        top : top + sh * (ho - 1) + 1 : sh,
        left : left + sw * (wo - 1) + 1 : sw,
    ]


def _slots(
    t: torch.Tensor, kernel: Pair, dilation: Pair, stride: Pair, out: Pair
) -> Iterator[tuple[int, torch.Tensor]]:
    """Yield ``(j, view)`` for every kernel slot ``j = a*kw + b``.

    ``view`` (N, C, Ho, Wo) is the padded tensor ``t`` at the slot-``j``
    neighbour of every output position.
    """
    (kh, kw), (dh, dw) = kernel, dilation
    for a in range(kh):
        for b in range(kw):
            yield a * kw + b, _window(t, a * dh, b * dw, stride, out)


def _fold_crop(
    gp: torch.Tensor, size: Pair, padding: Pair, pad_mode: str
) -> torch.Tensor:
    """Adjoint of :func:`_pad`: fold the padding back (reflect) and crop.

    Args:
        gp: Gradient w.r.t. the padded input, (N, C, H+2ph, W+2pw). It is
            modified in place.
        size: ``(H, W)``.
        padding: ``(ph, pw)``.
        pad_mode: 'zero' (padding gradient dropped) or 'reflect'.

    Returns:
        A view (N, C, H, W) of ``gp``.
    """
    (h, w), (ph, pw) = size, padding
    if pad_mode == 'reflect':
        if ph:  # padded row r < ph -> 2ph - r; row ph+h+t -> ph+h-2-t
            gp[:, :, ph + 1 : 2 * ph + 1] += gp[:, :, :ph].flip(2)
            gp[:, :, h - 1 : h - 1 + ph] += gp[:, :, ph + h :].flip(2)
        gp = gp[:, :, ph : ph + h]
        if pw:  # the same for columns, so corners fold twice
            gp[..., pw + 1 : 2 * pw + 1] += gp[..., :pw].flip(3)
            gp[..., w - 1 : w - 1 + pw] += gp[..., pw + w :].flip(3)
        return gp[..., pw : pw + w]
    return gp[:, :, ph : ph + h, pw : pw + w]


def _finish(g: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``g`` as a contiguous tensor of ``dtype`` (a copy only if needed)."""
    return g.to(dtype).contiguous()


# -- aggregation --------------------------------------------------------------
def aggregation_forward(
    x: torch.Tensor,
    w: torch.Tensor,
    kernel: Pair,
    stride: Pair,
    padding: Pair,
    dilation: Pair,
    pad_mode: str,
) -> torch.Tensor:
    """``y[n,c,i] = sum_j w[n, c % Cw, j, i] * X~[n, c, nbr_j(i)]``.

    Args:
        x: Input (N, C, H, W).
        w: Weight (N, Cw, K, L) with K = kh*kw, L = Ho*Wo, C % Cw == 0.
        kernel, stride, padding, dilation: ``(h, w)`` pairs.
        pad_mode: 'zero' or 'reflect'.

    Returns:
        y (N, C, Ho, Wo) in the dtype of ``x``.
    """
    n, c, h, wd = x.shape
    cw = w.shape[1]
    g = c // cw
    ho, wo = output_size((h, wd), kernel, stride, padding, dilation)
    xp = _pad(x, padding, pad_mode)
    y = torch.zeros(
        (n, g, cw, ho, wo), dtype=_acc_dtype(x.dtype), device=x.device
    )
    for j, xs in _slots(xp, kernel, dilation, stride, (ho, wo)):
        y.addcmul_(
            xs.view(n, g, cw, ho, wo), w[:, :, j].view(n, 1, cw, ho, wo)
        )
    return _finish(y.view(n, c, ho, wo), x.dtype)


def aggregation_backward(
    grad_y: torch.Tensor,
    x: torch.Tensor,
    w: torch.Tensor,
    kernel: Pair,
    stride: Pair,
    padding: Pair,
    dilation: Pair,
    pad_mode: str,
    need_input_grad: bool,
    need_weight_grad: bool,
    atomic: bool = False,
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """Gradients of :func:`aggregation_forward`.

    Args:
        grad_y: dL/dy (N, C, Ho, Wo).
        x: Input (N, C, H, W).
        w: Weight (N, Cw, K, L).
        kernel, stride, padding, dilation: ``(h, w)`` pairs.
        pad_mode: 'zero' or 'reflect'.
        need_input_grad: Compute dL/dx.
        need_weight_grad: Compute dL/dw.
        atomic: Ignored (this path is always deterministic).

    Returns:
        ``(grad_x (N, C, H, W) or None, grad_w (N, Cw, K, L) or None)``.
    """
    del atomic
    n, c, h, wd = x.shape
    cw, k = w.shape[1], w.shape[2]
    g = c // cw
    ho, wo = output_size((h, wd), kernel, stride, padding, dilation)
    acc = _acc_dtype(x.dtype)
    out = (ho, wo)
    gy = grad_y.view(n, g, cw, ho, wo)
    grad_x = grad_w = None
    if need_input_grad:
        # transposed gather: slot j's neighbour of output i gets w_j * gy_i
        ph, pw = padding
        gp = torch.zeros(
            (n, c, h + 2 * ph, wd + 2 * pw), dtype=acc, device=x.device
        )
        for j, gs in _slots(gp, kernel, dilation, stride, out):
            gs.view(n, g, cw, ho, wo).addcmul_(
                gy, w[:, :, j].view(n, 1, cw, ho, wo)
            )
        grad_x = _finish(_fold_crop(gp, (h, wd), padding, pad_mode), x.dtype)
        del gp
    if need_weight_grad:
        xp = _pad(x, padding, pad_mode)
        grad_w = torch.empty(
            (n, cw, k, ho, wo), dtype=w.dtype, device=w.device
        )
        low = w.dtype != acc  # float16/bfloat16: products in float32
        prod = None
        if g > 1 or low:
            prod = torch.empty((n, g, cw, ho, wo), dtype=acc, device=x.device)
        for j, xs in _slots(xp, kernel, dilation, stride, out):
            xs = xs.view(n, g, cw, ho, wo)
            gw = grad_w[:, :, j]  # (N, Cw, Ho, Wo) view
            if low:
                gw.copy_(prod.copy_(xs).mul_(gy).sum(1))
            elif g == 1:
                torch.mul(xs, gy, out=gw.unsqueeze(1))
            else:  # sum the C//Cw channel groups straight into grad_w
                torch.sum(torch.mul(xs, gy, out=prod), dim=1, out=gw)
        grad_w = grad_w.view(n, cw, k, ho * wo)
    return grad_x, grad_w


# -- subtraction --------------------------------------------------------------
def subtraction_forward(
    x: torch.Tensor,
    kernel: Pair,
    stride: Pair,
    padding: Pair,
    dilation: Pair,
    pad_mode: str,
) -> torch.Tensor:
    """``out[n,c,j,i] = x[n,c,centre(i)] - X~[n,c,nbr_j(i)]``.

    Args:
        x: Input (N, C, H, W).
        kernel, stride, padding, dilation: ``(h, w)`` pairs with 'same'
            padding ``p = d*(k-1)/2`` and odd ``k``.
        pad_mode: 'zero' or 'reflect'.

    Returns:
        out (N, C, K, L), K = kh*kw, L = Ho*Wo.
    """
    return subtraction2_forward(
        x, x, kernel, stride, padding, dilation, pad_mode
    )


def subtraction_backward(
    grad_out: torch.Tensor,
    input_shape: tuple[int, int, int, int],
    kernel: Pair,
    stride: Pair,
    padding: Pair,
    dilation: Pair,
    pad_mode: str,
) -> torch.Tensor:
    """Gradient of :func:`subtraction_forward` w.r.t. its input.

    Args:
        grad_out: dL/dout (N, C, K, L).
        input_shape: ``(N, C, H, W)``.
        kernel, stride, padding, dilation, pad_mode: As in the forward.

    Returns:
        grad_x (N, C, H, W): the centre term minus the (folded) neighbour
        term.
    """
    return _subtraction_grad(
        grad_out, input_shape, kernel, stride, padding, dilation, pad_mode,
        centre=True, neighbour=True,
    )[0]  # fmt: skip


def subtraction2_forward(
    x1: torch.Tensor,
    x2: torch.Tensor,
    kernel: Pair,
    stride: Pair,
    padding: Pair,
    dilation: Pair,
    pad_mode: str,
) -> torch.Tensor:
    """``out[n,c,j,i] = x1[n,c,centre(i)] - X~2[n,c,nbr_j(i)]``.

    Args:
        x1: Centre input (N, C, H, W).
        x2: Neighbour input (N, C, H, W).
        kernel, stride, padding, dilation: ``(h, w)`` pairs with 'same'
            padding ``p = d*(k-1)/2`` and odd ``k``.
        pad_mode: 'zero' or 'reflect'.

    Returns:
        out (N, C, K, L), K = kh*kw, L = Ho*Wo.
    """
    n, c, h, wd = x1.shape
    ho, wo = output_size((h, wd), kernel, stride, padding, dilation)
    k = kernel[0] * kernel[1]
    out = torch.empty((n, c, k, ho, wo), dtype=x1.dtype, device=x1.device)
    # 'same' padding: the centre of output (ho, wo) is x1[ho*sh, wo*sw]
    centre = _window(x1, 0, 0, stride, (ho, wo))
    x2p = _pad(x2, padding, pad_mode)
    for j, xs in _slots(x2p, kernel, dilation, stride, (ho, wo)):
        torch.sub(centre, xs, out=out[:, :, j])
    return out.view(n, c, k, ho * wo)


def subtraction2_backward(
    grad_out: torch.Tensor,
    input_shape: tuple[int, int, int, int],
    kernel: Pair,
    stride: Pair,
    padding: Pair,
    dilation: Pair,
    pad_mode: str,
    need_grad1: bool,
    need_grad2: bool,
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """Gradients of :func:`subtraction2_forward`.

    Args:
        grad_out: dL/dout (N, C, K, L).
        input_shape: ``(N, C, H, W)`` of both inputs.
        kernel, stride, padding, dilation, pad_mode: As in the forward.
        need_grad1: Compute dL/dx1 (the centre term).
        need_grad2: Compute dL/dx2 (minus the folded neighbour term).

    Returns:
        ``(grad1 (N, C, H, W) or None, grad2 (N, C, H, W) or None)``.
    """
    if need_grad1 and need_grad2:
        g1 = _subtraction_grad(
            grad_out, input_shape, kernel, stride, padding, dilation,
            pad_mode, centre=True, neighbour=False,
        )[0]  # fmt: skip
        g2 = _subtraction_grad(
            grad_out, input_shape, kernel, stride, padding, dilation,
            pad_mode, centre=False, neighbour=True,
        )[0]  # fmt: skip
        return g1, g2
    if not (need_grad1 or need_grad2):
        return None, None
    g = _subtraction_grad(
        grad_out, input_shape, kernel, stride, padding, dilation, pad_mode,
        centre=need_grad1, neighbour=need_grad2,
    )[0]  # fmt: skip
    return (g, None) if need_grad1 else (None, g)


def _subtraction_grad(
    grad_out: torch.Tensor,
    input_shape: tuple[int, int, int, int],
    kernel: Pair,
    stride: Pair,
    padding: Pair,
    dilation: Pair,
    pad_mode: str,
    centre: bool,
    neighbour: bool,
) -> tuple[torch.Tensor]:
    """Centre term (+) and/or neighbour term (-) of the input gradient."""
    n, c, h, wd = input_shape
    ho, wo = output_size((h, wd), kernel, stride, padding, dilation)
    k = kernel[0] * kernel[1]
    dtype, acc = grad_out.dtype, _acc_dtype(grad_out.dtype)
    go = grad_out.view(n, c, k, ho, wo)
    ph, pw = padding if neighbour else (0, 0)
    gp = torch.zeros(
        (n, c, h + 2 * ph, wd + 2 * pw), dtype=acc, device=grad_out.device
    )
    if neighbour:
        for j, gs in _slots(gp, kernel, dilation, stride, (ho, wo)):
            gs.sub_(go[:, :, j])
    if centre:  # every slot of output i reads x at the centre of i
        cen = _window(gp, ph, pw, stride, (ho, wo))
        if dtype == acc:
            cen.add_(go.sum(2))
        else:  # no float32 copy of the whole K-times-sized gradient
            for j in range(k):
                cen.add_(go[:, :, j])
    if neighbour:
        gp = _fold_crop(gp, (h, wd), padding, pad_mode)
    return (_finish(gp, dtype),)
