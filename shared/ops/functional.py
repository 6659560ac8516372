"""Functional SAN ops: argument checks, autograd and backend dispatch.

Notation: k, s, p, d are an int or an ``(h, w)`` pair;
``Ho = (H + 2p - d(k-1) - 1) // s + 1`` (likewise Wo), K = kh*kw,
L = Ho*Wo. Slot ``j = a*kw + b`` reads the neighbour
``(ho*s - p + a*d, wo*s - p + b*d)`` of output position ``i = ho*Wo + wo``
through X~: ``x`` in range, else 0 ('zero') or its reflection without
repeating the edge ('reflect', i.e. ``ReflectionPad2d``).
"""

from __future__ import annotations

import functools
import numbers
from collections.abc import Callable

import torch
from torch.autograd import Function

from . import backend

Pair = tuple[int, int]

__all__ = [
    'AggregationFunction',
    'Subtraction2Function',
    'SubtractionFunction',
    'aggregation',
    'normalize_pad_mode',
    'normalize_pair',
    'subtraction',
    'subtraction2',
]

#: Floating dtypes the ops accept.
FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
#: pad_mode aliases of the original implementation (0 = zero, 1 = reflect).
_PAD_MODES = {'zero': 'zero', 'reflect': 'reflect', 0: 'zero', 1: 'reflect'}


# -- argument normalisation ---------------------------------------------------
def normalize_pair(op: str, name: str, value: object, minimum: int) -> Pair:
    """``value`` (an int or a pair of ints) as an ``(h, w)`` tuple.

    Args:
        op: Op name for messages.
        name: Argument name for messages.
        value: An int or a length-2 tuple/list of ints.
        minimum: The smallest allowed value.

    Raises:
        TypeError: Not an int or a pair of ints (bools are rejected).
        ValueError: A value below ``minimum``.
    """

    def is_int(v: object) -> bool:
        return isinstance(v, numbers.Integral) and not isinstance(v, bool)

    if is_int(value):
        pair = (int(value), int(value))
    elif (
        isinstance(value, tuple | list)
        and len(value) == 2
        and all(is_int(v) for v in value)
    ):
        pair = (int(value[0]), int(value[1]))
    else:
        raise TypeError(
            f'{op}: {name} must be an int or a pair of ints, got {value!r}'
        )
    if min(pair) < minimum:
        raise ValueError(f'{op}: {name} must be >= {minimum}, got {value!r}')
    return pair


def normalize_pad_mode(op: str, pad_mode: object) -> str:
    """``pad_mode`` as 'zero' or 'reflect' (0/1 accepted, True is not).

    Raises:
        ValueError: Any other value.
    """
    if (
        not isinstance(pad_mode, bool)
        and isinstance(pad_mode, str | int)
        and pad_mode in _PAD_MODES
    ):
        return _PAD_MODES[pad_mode]
    raise ValueError(
        f"{op}: pad_mode must be 'zero' or 'reflect' (or the aliases 0 and "
        f'1), got {pad_mode!r}'
    )


def _shape(t: torch.Tensor) -> tuple[int, ...]:
    return tuple(t.shape)


def _check_tensors(
    op: str, named: dict[str, object]
) -> tuple[torch.Tensor, ...]:
    """Type, rank, device and dtype checks; autocast for mixed dtypes.

    Returns:
        The tensors, cast to the autocast dtype when their dtypes differ
        under autocast, and made contiguous.
    """
    for name, t in named.items():
        if not isinstance(t, torch.Tensor):
            raise TypeError(
                f'{op}: {name} must be a torch.Tensor, got {type(t).__name__}'
            )
    tensors: list[torch.Tensor] = list(named.values())  # type: ignore
    names = list(named)
    for name, t in zip(names, tensors):
        if t.dim() != 4:
            raise ValueError(
                f'{op}: {name} must be 4-D, got shape {_shape(t)}'
            )
    devices = {t.device for t in tensors}
    if len(devices) > 1:
        desc = ', '.join(f'{n} on {t.device}' for n, t in zip(names, tensors))
        raise ValueError(f'{op}: inputs must be on one device, got {desc}')
    for name, t in zip(names, tensors):
        if t.dtype not in FLOAT_DTYPES:
            raise TypeError(
                f'{op}: {name} must be float16, bfloat16, float32 or '
                f'float64, got {t.dtype} (shape {_shape(t)})'
            )
    dtypes = {t.dtype for t in tensors}
    if len(dtypes) > 1:
        device_type = tensors[0].device.type
        if not torch.is_autocast_enabled(device_type):
            desc = ', '.join(
                f'{n} {t.dtype} {_shape(t)}' for n, t in zip(names, tensors)
            )
            raise TypeError(
                f'{op}: inputs must have one dtype, got {desc} (mixed '
                f'dtypes are cast only under autocast)'
            )
        dtype = torch.get_autocast_dtype(device_type)
        tensors = [t.to(dtype) for t in tensors]
    return tuple(t.contiguous() for t in tensors)


def output_size(
    size: Pair, kernel: Pair, stride: Pair, padding: Pair, dilation: Pair
) -> Pair:
    """``(Ho, Wo)`` of a window op over a ``size = (H, W)`` input.

    ``Ho = (H + 2p - d(k-1) - 1) // s + 1``, likewise ``Wo``; the one place
    the formula lives (both backends use it).
    """
    return tuple(
        (n + 2 * p - d * (k - 1) - 1) // s + 1
        for n, k, s, p, d in zip(size, kernel, stride, padding, dilation)
    )


def _out_size(
    op: str,
    x: torch.Tensor,
    kernel: Pair,
    stride: Pair,
    padding: Pair,
    dilation: Pair,
    pad_mode: str,
) -> Pair:
    """Check the spatial size and padding and return ``(Ho, Wo)``."""
    h, w = x.shape[-2:]
    if h < 1 or w < 1:
        raise ValueError(
            f'{op}: input height and width must be >= 1, got shape {_shape(x)}'
        )
    if pad_mode == 'reflect' and (padding[0] >= h or padding[1] >= w):
        raise ValueError(
            f"{op}: pad_mode='reflect' needs padding < the input size, got "
            f'padding={padding} for input shape {_shape(x)} (H={h}, W={w})'
        )
    ho, wo = output_size((h, w), kernel, stride, padding, dilation)
    if ho < 1 or wo < 1:
        raise ValueError(
            f'{op}: empty output ({ho}, {wo}): the dilated kernel '
            f'{kernel} (dilation={dilation}) does not fit the input shape '
            f'{_shape(x)} padded by {padding}'
        )
    return ho, wo


def _check_same_padding(
    op: str, kernel: Pair, padding: Pair, dilation: Pair
) -> None:
    """Subtraction ops need an odd kernel and ``p = d*(k-1)/2``."""
    if kernel[0] % 2 == 0 or kernel[1] % 2 == 0:
        raise ValueError(
            f'{op}: kernel_size must be odd (the centre is a pixel), got '
            f'{kernel}'
        )
    same = tuple(d * (k - 1) // 2 for k, d in zip(kernel, dilation))
    if tuple(padding) != same:
        raise ValueError(
            f"{op}: needs 'same' padding dilation*(kernel_size-1)/2 = "
            f'{same} for kernel_size={kernel}, dilation={dilation}; got '
            f'padding={padding}'
        )


# -- autograd -----------------------------------------------------------------
class _FirstOrderOnly(Function):
    """Identity on gradients whose own backward raises (double backward).

    ``anchors`` (tensors that require grad) only make the outputs part of
    the graph, as the gradients were computed without grad.
    """

    @staticmethod
    def forward(ctx, op: str, count: int, *tensors: torch.Tensor):
        """Return clones of the first ``count`` tensors."""
        ctx.op = op
        return tuple(t.clone() for t in tensors[:count])

    @staticmethod
    def backward(ctx, *_):
        """Always raises."""
        raise RuntimeError(
            f'{ctx.op}: double backward is not supported (the op is '
            f'first-order only; its backward is once_differentiable)'
        )


def _first_order_only(op: str) -> Callable:
    """Like ``once_differentiable``, with an error that names the op.

    The backward runs without grad. When a graph of the gradients is being
    built (``create_graph=True``) and they depend on tensors that require
    grad, they are returned attached to a node whose backward raises
    ``RuntimeError`` ("first-order only").
    """

    def decorate(fn: Callable) -> Callable:
        @functools.wraps(fn)
        def wrapper(ctx, *grads):
            with torch.no_grad():
                outputs = fn(ctx, *grads)
            if not torch.is_grad_enabled():
                return outputs
            anchors = [
                t
                for t in (*grads, *ctx.saved_tensors)
                if isinstance(t, torch.Tensor) and t.requires_grad
            ]
            index = [i for i, o in enumerate(outputs) if o is not None]
            if not anchors or not index:
                return outputs
            marked = _FirstOrderOnly.apply(
                op, len(index), *(outputs[i] for i in index), *anchors
            )
            outputs = list(outputs)
            for i, o in zip(index, marked):
                outputs[i] = o
            return tuple(outputs)

        return wrapper

    return decorate


def _empty(x: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor | None:
    """An empty result of ``shape`` when ``x`` has no elements."""
    return x.new_zeros(shape) if x.numel() == 0 else None


def _spatial(x: torch.Tensor, conf: tuple) -> Pair:
    """``(Ho, Wo)`` from the configuration (inputs already validated)."""
    kernel, stride, padding, dilation, _ = conf
    return output_size(x.shape[-2:], kernel, stride, padding, dilation)


class AggregationFunction(Function):
    """Autograd function of :func:`aggregation` (saves only its inputs)."""

    @staticmethod
    def forward(ctx, x, w, kernel, stride, padding, dilation, pad_mode):
        """Inputs as in :func:`aggregation`, already validated."""
        ctx.conf = (kernel, stride, padding, dilation, pad_mode)
        ctx.save_for_backward(x, w)
        n, c = x.shape[:2]
        ctx.impl = backend.select_backend(x)
        empty = _empty(x, (n, c, *_spatial(x, ctx.conf)))
        if empty is not None:
            return empty
        return ctx.impl.aggregation_forward(x, w, *ctx.conf)

    @staticmethod
    @_first_order_only('aggregation')
    def backward(ctx, grad_y):
        """Gradients w.r.t. input and weight."""
        x, w = ctx.saved_tensors
        need_x, need_w = ctx.needs_input_grad[:2]
        if x.numel() == 0:
            gx = torch.zeros_like(x) if need_x else None
            gw = torch.zeros_like(w) if need_w else None
        else:
            gx, gw = ctx.impl.aggregation_backward(
                grad_y.contiguous(), x, w, *ctx.conf, need_x, need_w,
                need_x
                and ctx.impl.__name__.endswith('.cupy_backend')
                and backend.atomic_backward_enabled(),
            )  # fmt: skip
        return gx, gw, None, None, None, None, None


class SubtractionFunction(Function):
    """Autograd function of :func:`subtraction` (saves nothing)."""

    @staticmethod
    def forward(ctx, x, kernel, stride, padding, dilation, pad_mode):
        """Inputs as in :func:`subtraction`, already validated."""
        ctx.conf = (kernel, stride, padding, dilation, pad_mode)
        ctx.input_shape = tuple(x.shape)
        ctx.input_meta = (x.dtype, x.device)
        n, c = x.shape[:2]
        ho, wo = _spatial(x, ctx.conf)
        ctx.impl = backend.select_backend(x)
        empty = _empty(x, (n, c, kernel[0] * kernel[1], ho * wo))
        if empty is not None:
            return empty
        return ctx.impl.subtraction_forward(x, *ctx.conf)

    @staticmethod
    @_first_order_only('subtraction')
    def backward(ctx, grad_out):
        """Gradient w.r.t. the input."""
        if 0 in ctx.input_shape:
            dtype, device = ctx.input_meta
            return (
                torch.zeros(ctx.input_shape, dtype=dtype, device=device),
                *([None] * 5),
            )
        gx = ctx.impl.subtraction_backward(
            grad_out.contiguous(), ctx.input_shape, *ctx.conf
        )
        return gx, None, None, None, None, None


class Subtraction2Function(Function):
    """Autograd function of :func:`subtraction2` (saves nothing)."""

    @staticmethod
    def forward(ctx, x1, x2, kernel, stride, padding, dilation, pad_mode):
        """Inputs as in :func:`subtraction2`, already validated."""
        ctx.conf = (kernel, stride, padding, dilation, pad_mode)
        ctx.input_shape = tuple(x1.shape)
        ctx.input_meta = (x1.dtype, x1.device)
        n, c = x1.shape[:2]
        ho, wo = _spatial(x1, ctx.conf)
        ctx.impl = backend.select_backend(x1)
        empty = _empty(x1, (n, c, kernel[0] * kernel[1], ho * wo))
        if empty is not None:
            return empty
        return ctx.impl.subtraction2_forward(x1, x2, *ctx.conf)

    @staticmethod
    @_first_order_only('subtraction2')
    def backward(ctx, grad_out):
        """Gradients w.r.t. both inputs."""
        need1, need2 = ctx.needs_input_grad[:2]
        if 0 in ctx.input_shape:
            dtype, device = ctx.input_meta

            def zeros():
                return torch.zeros(ctx.input_shape, dtype=dtype, device=device)

            g1 = zeros() if need1 else None
            g2 = zeros() if need2 else None
        else:
            g1, g2 = ctx.impl.subtraction2_backward(
                grad_out.contiguous(), ctx.input_shape, *ctx.conf, need1,
                need2,
            )  # fmt: skip
        return g1, g2, None, None, None, None, None


# -- public ops ---------------------------------------------------------------
def _config(
    op: str,
    kernel_size: object,
    stride: object,
    padding: object,
    dilation: object,
    pad_mode: object,
) -> tuple[Pair, Pair, Pair, Pair, str]:
    return (
        normalize_pair(op, 'kernel_size', kernel_size, 1),
        normalize_pair(op, 'stride', stride, 1),
        normalize_pair(op, 'padding', padding, 0),
        normalize_pair(op, 'dilation', dilation, 1),
        normalize_pad_mode(op, pad_mode),
    )


def aggregation(
    input: torch.Tensor,
    weight: torch.Tensor,
    kernel_size: int | Pair = 3,
    stride: int | Pair = 1,
    padding: int | Pair = 0,
    dilation: int | Pair = 1,
    pad_mode: str | int = 'reflect',
) -> torch.Tensor:
    """Weighted sum over each output position's k x k (dilated) footprint.

    ``y[n, c, i] = sum_j weight[n, c % Cw, j, i] * X~[n, c, nbr_j(i)]``:
    weight channel g serves the input channels g, g+Cw, g+2Cw, ...
    (interleaved sharing).

    Args:
        input: x (N, C, H, W).
        weight: w (N, Cw, K, L) with C % Cw == 0, K = kh*kw, L = Ho*Wo.
        kernel_size: k, an int or an (h, w) pair.
        stride: s.
        padding: p (reflect needs p < the input size).
        dilation: d.
        pad_mode: 'zero' or 'reflect' (aliases 0 and 1).

    Returns:
        y (N, C, Ho, Wo).

    Raises:
        ValueError: Bad shapes, sizes, padding, pad_mode or devices.
        TypeError: Non-float or (outside autocast) mixed dtypes.
    """
    op = 'aggregation'
    conf = _config(op, kernel_size, stride, padding, dilation, pad_mode)
    kernel = conf[0]
    x, w = _check_tensors(op, {'input': input, 'weight': weight})
    ho, wo = _out_size(op, x, *conf)
    n, c = x.shape[:2]
    wn, cw, k, length = w.shape
    shapes = f'input {_shape(x)}, weight {_shape(w)}'
    if wn != n:
        raise ValueError(
            f'{op}: weight batch size {wn} != input batch size {n} ({shapes})'
        )
    if cw < 1 or c % cw:
        raise ValueError(
            f'{op}: input channels C={c} must be a multiple of weight '
            f'channels Cw={cw} ({shapes})'
        )
    if k != kernel[0] * kernel[1]:
        raise ValueError(
            f'{op}: weight K={k} != kernel_size {kernel[0]}x{kernel[1]} = '
            f'{kernel[0] * kernel[1]} ({shapes})'
        )
    if length != ho * wo:
        raise ValueError(
            f'{op}: weight L={length} != output positions Ho*Wo = {ho}*{wo}'
            f' = {ho * wo} ({shapes}, stride={conf[1]}, padding={conf[2]}, '
            f'dilation={conf[3]})'
        )
    return AggregationFunction.apply(x, w, *conf)


def subtraction(
    input: torch.Tensor,
    kernel_size: int | Pair = 3,
    stride: int | Pair = 1,
    padding: int | Pair = 0,
    dilation: int | Pair = 1,
    pad_mode: str | int = 'reflect',
) -> torch.Tensor:
    """Centre minus each neighbour of the k x k (dilated) footprint.

    ``out[n, c, j, i] = x[n, c, centre(i)] - X~[n, c, nbr_j(i)]``; with the
    required 'same' padding the centre of output ``(ho, wo)`` is
    ``x[ho*s, wo*s]``.

    Args:
        input: x (N, C, H, W).
        kernel_size: k, odd (int or (h, w) pair).
        stride: s.
        padding: p, must equal ``dilation * (kernel_size - 1) / 2``.
        dilation: d.
        pad_mode: 'zero' or 'reflect' (aliases 0 and 1).

    Returns:
        out (N, C, K, L), K = kh*kw, L = Ho*Wo.

    Raises:
        ValueError: Bad shapes, kernel, padding, pad_mode.
        TypeError: A non-float dtype.
    """
    op = 'subtraction'
    conf = _config(op, kernel_size, stride, padding, dilation, pad_mode)
    _check_same_padding(op, conf[0], conf[2], conf[3])
    (x,) = _check_tensors(op, {'input': input})
    _out_size(op, x, *conf)
    return SubtractionFunction.apply(x, *conf)


def subtraction2(
    input1: torch.Tensor,
    input2: torch.Tensor,
    kernel_size: int | Pair = 3,
    stride: int | Pair = 1,
    padding: int | Pair = 0,
    dilation: int | Pair = 1,
    pad_mode: str | int = 'reflect',
) -> torch.Tensor:
    """``input1`` at the centre minus ``input2`` at each neighbour.

    ``out[n, c, j, i] = x1[n, c, centre(i)] - X~2[n, c, nbr_j(i)]``.

    Args:
        input1: x1 (N, C, H, W).
        input2: x2, the same shape as ``input1``.
        kernel_size: k, odd (int or (h, w) pair).
        stride: s.
        padding: p, must equal ``dilation * (kernel_size - 1) / 2``.
        dilation: d.
        pad_mode: 'zero' or 'reflect' (aliases 0 and 1).

    Returns:
        out (N, C, K, L), K = kh*kw, L = Ho*Wo.

    Raises:
        ValueError: Bad or unequal shapes, kernel, padding, pad_mode,
            devices.
        TypeError: Non-float or (outside autocast) mixed dtypes.
    """
    op = 'subtraction2'
    conf = _config(op, kernel_size, stride, padding, dilation, pad_mode)
    _check_same_padding(op, conf[0], conf[2], conf[3])
    x1, x2 = _check_tensors(op, {'input1': input1, 'input2': input2})
    if x1.shape != x2.shape:
        raise ValueError(
            f'{op}: input2 shape {_shape(x2)} != input1 shape {_shape(x1)}'
        )
    _out_size(op, x1, *conf)
    return Subtraction2Function.apply(x1, x2, *conf)
