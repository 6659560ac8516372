"""CuPy/NVRTC CUDA path of the SAN ops.

Same functions as :mod:`shared.ops.torch_backend`; they take contiguous
CUDA tensors of one float dtype that :mod:`shared.ops.functional` has
validated, ``(h, w)`` int pairs and ``pad_mode`` 'zero' or 'reflect'.

* Kernels (``shared/ops/kernels/*.cu``, loaded by
  :func:`shared.ops.compile.kernel_source`) take every size,
  hyper-parameter and the pad mode as arguments. One ``cupy.RawModule``
  per (dtype, device arch) holds all of them in both index widths; it is
  compiled once per process (:func:`compile_count`), never per shape.
* Launches use 1-D grid-stride loops on torch's current stream and the
  tensors' device; outputs come from ``torch.empty``.
* 64-bit indexing is used when a count or offset could exceed 2**31 - 1
  (or always, with :data:`FORCE_INT64`).
* Backward kernels gather (one thread per gradient element, fixed
  summation order; the reflect fold happens inside the gather), so results
  are bitwise reproducible. ``aggregation_backward(..., atomic=True)``
  scatters with ``atomicAdd`` into a float32 (float64) buffer instead.
* float16/bfloat16 are read and written as 16-bit values and accumulated
  in float32; float64 accumulates in float64.

``cupy`` is imported only inside functions. Compile or launch failures
raise ``RuntimeError`` with the NVRTC/CUDA message; nothing falls back
silently.
"""

from __future__ import annotations

import math
import threading
import warnings
from typing import Any

import numpy as np
import torch
from torch.autograd.function import once_differentiable

from . import compile as _src
from .functional import output_size

Pair = tuple[int, int]

__all__ = [
    'FORCE_INT64',
    'aggregation_backward',
    'aggregation_forward',
    'compile_count',
    'subtraction2_backward',
    'subtraction2_forward',
    'subtraction_backward',
    'subtraction_forward',
    'templated_reference',
]

#: Use the 64-bit index kernels for every launch (tests compare with int32).
FORCE_INT64 = False

_BLOCK = 256  # threads per block
_MAX_BLOCKS = 8192  # grid-stride loops cover the rest
# int32 kernels only while every count plus the grid-stride step fits.
_INT32_LIMIT = 2**31 - 1 - _BLOCK * _MAX_BLOCKS

_TORCH_HINT = (
    "or call shared.ops.set_backend('torch') to use the pure-PyTorch path"
)
_DTYPE_NAMES = {
    torch.float32: 'float32',
    torch.float64: 'float64',
    torch.float16: 'float16',
    torch.bfloat16: 'bfloat16',
}

_lock = threading.RLock()
_cupy_module: Any = None
# (dtype name, compute capability) -> {name expression: cupy.RawKernel}
_kernels: dict[tuple[str, str], dict[str, Any]] = {}
_archs: dict[int, str] = {}  # device index -> compute capability ('90')
_compiles = 0


def compile_count() -> int:
    """Number of kernel modules this process compiled (NVRTC runs).

    One per (dtype, device arch) at most; a new shape never adds one.
    """
    return _compiles


# -- CuPy, modules, launches --------------------------------------------------
def _cuda_major(version: str | None) -> int | None:
    try:
        return int(str(version).split('.')[0])
    except ValueError:
        return None


def _cupy() -> Any:
    """Import CuPy and check that it matches torch's CUDA and has NVRTC."""
    global _cupy_module
    if _cupy_module is not None:
        return _cupy_module
    try:
        import cupy
    except ImportError as e:
        raise RuntimeError(
            f'shared.ops CUDA kernels need CuPy, which is not importable '
            f'({e}); install it with `make setup CUDA=1` (cupy-cuda13x), '
            f'{_TORCH_HINT}.'
        ) from e
    torch_major = _cuda_major(torch.version.cuda)
    try:
        runtime = cupy.cuda.runtime.runtimeGetVersion()
    except Exception as e:
        raise RuntimeError(
            f'CuPy {cupy.__version__} cannot load its CUDA runtime ({e}); '
            f'reinstall it with `make setup CUDA=1`, {_TORCH_HINT}.'
        ) from e
    cupy_cuda = f'{runtime // 1000}.{runtime % 1000 // 10}'
    if torch_major is None or runtime // 1000 != torch_major:
        raise RuntimeError(
            f'CuPy {cupy.__version__} uses CUDA {cupy_cuda} but torch '
            f'{torch.__version__} was built with CUDA {torch.version.cuda}; '
            f'the CUDA majors must match: install '
            f'cupy-cuda{torch_major}x with `make setup CUDA=1`, '
            f'{_TORCH_HINT}.'
        )
    try:
        _src.load_nvrtc()
    except RuntimeError as e:
        raise RuntimeError(
            f'{e} For CuPy {cupy.__version__} (CUDA {cupy_cuda}), '
            f'`pip install cupy-cuda13x[ctk]` brings NVRTC along; '
            f'{_TORCH_HINT}.'
        ) from e
    _cupy_module = cupy
    return cupy


def _module_kernels(cupy: Any, dtype: str, device: int) -> dict[str, Any]:
    """Every kernel of ``dtype`` for ``device``'s arch (compiled once)."""
    global _compiles
    arch = _archs.get(device)
    if arch is None:
        arch = _archs[device] = cupy.cuda.Device(device).compute_capability
    key = (dtype, arch)
    kernels = _kernels.get(key)
    if kernels is not None:
        return kernels
    with _lock:
        kernels = _kernels.get(key)
        if kernels is not None:
            return kernels
        source, names = _src.kernel_source(dtype)
        try:
            module = cupy.RawModule(
                code=source,
                options=_src.COMPILE_OPTIONS,
                name_expressions=names,
            )
            module.compile()
            kernels = {name: module.get_function(name) for name in names}
        except Exception as e:
            raise RuntimeError(
                f'shared.ops: compiling the SAN CUDA kernels ({dtype}, '
                f'sm_{arch}) failed ({type(e).__name__}); {_TORCH_HINT}. '
                f'NVRTC log:\n{e}'
            ) from e
        _compiles += 1
        _kernels[key] = kernels
        return kernels


def _stream(cupy: Any, device: torch.device) -> Any:
    """torch's current stream on ``device`` as a CuPy stream (not owned)."""
    current = torch.cuda.current_stream(device)
    if hasattr(cupy.cuda.Stream, 'from_external'):  # CuPy >= 14
        return cupy.cuda.Stream.from_external(current)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', DeprecationWarning)
        return cupy.cuda.ExternalStream(current.cuda_stream, device.index)


def _wide(*counts: int) -> bool:
    """Whether the 64-bit index kernels are needed."""
    return FORCE_INT64 or max(counts) > _INT32_LIMIT


def _launch(
    kernel: str,
    ref: torch.Tensor,
    total: int,
    wide: bool,
    pointers: list[torch.Tensor],
    ints: list[int],
    reflect: int,
) -> None:
    """Run ``kernel`` over ``total`` work items on ``ref``'s device/stream.

    Args:
        kernel: Base kernel name (one of ``shared.ops.compile.KERNELS``).
        ref: A tensor of the op's dtype and device.
        total: Work items (the kernel's loop bound); 0 launches nothing.
        wide: Use the ``long long`` index instantiation.
        pointers: Tensors passed by pointer, in kernel order.
        ints: Size and geometry arguments, in kernel order.
        reflect: 1 for reflect padding, 0 for zeros.
    """
    if total == 0:
        return
    cupy = _cupy()
    dtype = _DTYPE_NAMES[ref.dtype]
    index_type = _src.INDEX_TYPES[1 if wide else 0]
    itype = np.int64 if wide else np.int32
    name = _src.name_expression(kernel, dtype, index_type)
    args = (
        *(np.uintp(t.data_ptr()) for t in pointers),
        *(itype(v) for v in ints),
        np.int32(reflect),
    )
    blocks = min(math.ceil(total / _BLOCK), _MAX_BLOCKS)
    device = ref.device
    with cupy.cuda.Device(device.index):
        kernels = _module_kernels(cupy, dtype, device.index)
        try:
            kernels[name](
                (blocks,), (_BLOCK,), args, stream=_stream(cupy, device)
            )
        except Exception as e:
            raise RuntimeError(
                f'shared.ops: launching {name} on {device} failed: '
                f'{type(e).__name__}: {e}; {_TORCH_HINT}.'
            ) from e


def _geometry(
    shape: tuple[int, ...],
    kernel: Pair,
    stride: Pair,
    padding: Pair,
    dilation: Pair,
) -> tuple[list[int], Pair]:
    """``[N, C, H, W, Ho, Wo, kh, kw, sh, sw, ph, pw, dh, dw]``, ``(Ho, Wo)``.

    The order of the kernels' ``SA_GEOMETRY_PARAMS``.
    """
    n, c, h, w = shape
    out = output_size((h, w), kernel, stride, padding, dilation)
    return [n, c, h, w, *out, *kernel, *stride, *padding, *dilation], out


def _reflect(pad_mode: str | int) -> int:
    return 1 if pad_mode in ('reflect', 1) else 0


def _acc_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


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
    x, w = x.contiguous(), w.contiguous()
    geo, (ho, wo) = _geometry(x.shape, kernel, stride, padding, dilation)
    n, c = x.shape[:2]
    y = torch.empty((n, c, ho, wo), dtype=x.dtype, device=x.device)
    _launch(
        'sa_aggregation_fwd',
        x,
        y.numel(),
        _wide(x.numel(), w.numel(), y.numel()),
        [x, w, y],
        [w.shape[1], *geo],
        _reflect(pad_mode),
    )
    return y


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
        atomic: Compute dL/dx by an ``atomicAdd`` scatter into a float32
            (float64) buffer: faster, but not bitwise reproducible.

    Returns:
        ``(grad_x (N, C, H, W) or None, grad_w (N, Cw, K, L) or None)``.
    """
    grad_y, x, w = grad_y.contiguous(), x.contiguous(), w.contiguous()
    geo, _ = _geometry(x.shape, kernel, stride, padding, dilation)
    ints = [w.shape[1], *geo]
    reflect = _reflect(pad_mode)
    wide = _wide(x.numel(), w.numel(), grad_y.numel())
    grad_x = grad_w = None
    if need_input_grad:
        if atomic:
            acc = torch.zeros(
                x.shape, dtype=_acc_dtype(x.dtype), device=x.device
            )
            _launch(
                'sa_aggregation_grad_input_atomic',
                x,
                grad_y.numel(),
                wide,
                [grad_y, w, acc],
                ints,
                reflect,
            )
            grad_x = acc.to(x.dtype)
        else:
            grad_x = torch.empty_like(x)
            _launch(
                'sa_aggregation_grad_input',
                x,
                x.numel(),
                wide,
                [grad_y, w, grad_x],
                ints,
                reflect,
            )
    if need_weight_grad:
        grad_w = torch.empty_like(w)
        _launch(
            'sa_aggregation_grad_weight',
            x,
            w.numel(),
            wide,
            [grad_y, x, grad_w],
            ints,
            reflect,
        )
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
        kernel, stride, padding, dilation: ``(h, w)`` pairs ('same'
            padding, odd kernel).
        pad_mode: 'zero' or 'reflect'.

    Returns:
        out (N, C, K, L), K = kh*kw, L = Ho*Wo.
    """
    x = x.contiguous()
    geo, (ho, wo) = _geometry(x.shape, kernel, stride, padding, dilation)
    n, c = x.shape[:2]
    k = kernel[0] * kernel[1]
    out = torch.empty((n, c, k, ho * wo), dtype=x.dtype, device=x.device)
    _launch(
        'sa_subtraction_fwd',
        x,
        out.numel(),
        _wide(x.numel(), out.numel()),
        [x, out],
        geo,
        _reflect(pad_mode),
    )
    return out


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
    grad_out = grad_out.contiguous()
    geo, _ = _geometry(tuple(input_shape), kernel, stride, padding, dilation)
    grad_x = torch.empty(
        tuple(input_shape), dtype=grad_out.dtype, device=grad_out.device
    )
    _launch(
        'sa_subtraction_grad',
        grad_out,
        grad_x.numel(),
        _wide(grad_x.numel(), grad_out.numel()),
        [grad_out, grad_x],
        geo,
        _reflect(pad_mode),
    )
    return grad_x


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
        kernel, stride, padding, dilation: ``(h, w)`` pairs ('same'
            padding, odd kernel).
        pad_mode: 'zero' or 'reflect'.

    Returns:
        out (N, C, K, L), K = kh*kw, L = Ho*Wo.
    """
    x1, x2 = x1.contiguous(), x2.contiguous()
    geo, (ho, wo) = _geometry(x1.shape, kernel, stride, padding, dilation)
    n, c = x1.shape[:2]
    k = kernel[0] * kernel[1]
    out = torch.empty((n, c, k, ho * wo), dtype=x1.dtype, device=x1.device)
    _launch(
        'sa_subtraction2_fwd',
        x1,
        out.numel(),
        _wide(x1.numel(), out.numel()),
        [x1, x2, out],
        geo,
        _reflect(pad_mode),
    )
    return out


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
    grad_out = grad_out.contiguous()
    shape = tuple(input_shape)
    geo, _ = _geometry(shape, kernel, stride, padding, dilation)
    reflect = _reflect(pad_mode)
    numel = math.prod(shape)
    wide = _wide(numel, grad_out.numel())
    grads = []
    for need, kernel_name in (
        (need_grad1, 'sa_subtraction2_grad1'),
        (need_grad2, 'sa_subtraction2_grad2'),
    ):
        if not need:
            grads.append(None)
            continue
        g = torch.empty(shape, dtype=grad_out.dtype, device=grad_out.device)
        _launch(
            kernel_name, grad_out, numel, wide, [grad_out, g], geo, reflect
        )
        grads.append(g)
    return grads[0], grads[1]


# -- the original per-shape kernels, for the benchmark ------------------------
def _pair(v: int | tuple[int, int]) -> Pair:
    return (int(v), int(v)) if isinstance(v, int) else (int(v[0]), int(v[1]))


class _TemplatedFunction(torch.autograd.Function):
    """Autograd wrapper of :class:`TemplatedReference` (first order)."""

    @staticmethod
    def forward(ctx, ref, op, conf, *inputs):
        ctx.ref, ctx.op, ctx.conf = ref, op, conf
        ctx.save_for_backward(*inputs)
        return ref.forward(op, inputs, conf)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        grads = ctx.ref.backward(
            ctx.op,
            ctx.saved_tensors,
            grad.contiguous(),
            ctx.conf,
            ctx.needs_input_grad[3:],
        )
        return (None, None, None, *grads)


class TemplatedReference:
    """Re-creation of the original per-shape kernels (benchmark only).

    The upstream ops pasted every size and hyper-parameter into the kernel
    source as constants and compiled new modules for every new shape. This
    class does the same with this package's kernel bodies: a call with a
    new (op, shape, hyper-parameters, dtype, device arch) generates
    ``extern "C"`` kernels whose size arguments are literals, compiles each
    with NVRTC (:meth:`compile_count` counts them) and launches them like
    the main path. float32/float64 and 32-bit indexing only, like the
    original; backward is the deterministic gather.

    Call it as ``templated_reference(op, *inputs, kernel_size=3, stride=1,
    padding=0, dilation=1, pad_mode='reflect')`` with ``op`` one of
    'aggregation', 'subtraction', 'subtraction2'; the result supports
    ``backward``. No argument validation.
    """

    OPS = ('aggregation', 'subtraction', 'subtraction2')

    def __init__(self) -> None:
        self._cache: dict[tuple, Any] = {}
        self._compiles = 0

    def compile_count(self) -> int:
        """Number of per-shape kernels compiled so far."""
        return self._compiles

    def __call__(
        self,
        op: str,
        *inputs: torch.Tensor,
        kernel_size: int | Pair = 3,
        stride: int | Pair = 1,
        padding: int | Pair = 0,
        dilation: int | Pair = 1,
        pad_mode: str | int = 'reflect',
    ) -> torch.Tensor:
        """``op`` on ``inputs`` through per-shape compiled kernels."""
        if op not in self.OPS:
            raise ValueError(f'templated reference: unknown op {op!r}')
        conf = (
            _pair(kernel_size),
            _pair(stride),
            _pair(padding),
            _pair(dilation),
            _reflect(pad_mode),
        )
        inputs = tuple(t.contiguous() for t in inputs)
        return _TemplatedFunction.apply(self, op, conf, *inputs)

    def forward(
        self, op: str, inputs: tuple[torch.Tensor, ...], conf: tuple
    ) -> torch.Tensor:
        """Forward of ``op``; ``conf`` is (kernel, stride, padding, ...).

        ``conf`` = ``(kernel, stride, padding, dilation, reflect)``.
        """
        kernel, stride, padding, dilation, reflect = conf
        x = inputs[0]
        geo, (ho, wo) = _geometry(x.shape, kernel, stride, padding, dilation)
        n, c = x.shape[:2]
        if op == 'aggregation':
            w = inputs[1]
            out = torch.empty((n, c, ho, wo), dtype=x.dtype, device=x.device)
            return self._run(
                'sa_aggregation_fwd_impl',
                (x, w, out),
                [w.shape[1], *geo, reflect],
            )
        k = kernel[0] * kernel[1]
        out = torch.empty((n, c, k, ho * wo), dtype=x.dtype, device=x.device)
        return self._run(
            'sa_subtraction_fwd_impl', (x, inputs[-1], out), [*geo, reflect]
        )

    def backward(
        self,
        op: str,
        inputs: tuple[torch.Tensor, ...],
        grad: torch.Tensor,
        conf: tuple,
        needs: tuple[bool, ...],
    ) -> list[torch.Tensor | None]:
        """Gradients of :meth:`forward` w.r.t. the inputs in ``needs``."""
        kernel, stride, padding, dilation, reflect = conf
        x = inputs[0]
        geo, _ = _geometry(x.shape, kernel, stride, padding, dilation)
        grads: list[torch.Tensor | None] = [None] * len(inputs)
        if op == 'aggregation':
            w = inputs[1]
            ints = [w.shape[1], *geo, reflect]
            if needs[0]:
                grads[0] = self._run(
                    'sa_aggregation_grad_input_impl',
                    (grad, w, torch.empty_like(x)),
                    ints,
                )
            if needs[1]:
                grads[1] = self._run(
                    'sa_aggregation_grad_weight_impl',
                    (grad, x, torch.empty_like(w)),
                    ints,
                )
            return grads
        signs = ((1, 1),) if op == 'subtraction' else ((1, 0), (0, 1))
        for i, (centre, neighbour) in enumerate(signs):
            if needs[i]:
                grads[i] = self._run(
                    'sa_subtraction_grad_impl',
                    (grad, grad, torch.empty_like(x)),
                    [*geo, reflect],
                    signs=f'{centre}, {neighbour}, ',
                )
        return grads

    def _run(
        self,
        impl: str,
        tensors: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
        consts: list[int],
        signs: str = '',
    ) -> torch.Tensor:
        """Compile (once per shape) and launch ``impl`` on ``tensors``.

        ``tensors`` are the kernel's a, b, out (b is ignored by the
        subtraction gradient); ``consts`` become literals.
        """
        a, b, out = tensors
        if a.dtype not in (torch.float32, torch.float64):
            raise RuntimeError('templated reference: float32/float64 only')
        if max(t.numel() for t in tensors) > _INT32_LIMIT:
            raise RuntimeError('templated reference: 32-bit indexing only')
        if out.numel() == 0:
            return out
        cupy = _cupy()
        dtype = _DTYPE_NAMES[a.dtype]
        t = _src.DTYPES[dtype]
        literals = ', '.join(str(int(v)) for v in consts)
        if impl == 'sa_subtraction_grad_impl':
            body = f'{impl}<{t}, int>(a, out, {signs}{literals})'
        else:
            body = f'{impl}<{t}, int>(a, b, out, {literals})'
        device = a.device
        with cupy.cuda.Device(device.index):
            arch = cupy.cuda.Device(device.index).compute_capability
            kernel = self._kernel(cupy, body, dtype, arch)
            blocks = min(math.ceil(out.numel() / _BLOCK), _MAX_BLOCKS)
            kernel(
                (blocks,),
                (_BLOCK,),
                tuple(np.uintp(v.data_ptr()) for v in tensors),
                stream=_stream(cupy, device),
            )
        return out

    @staticmethod
    def source(body: str, dtype: str) -> str:
        """CUDA source of ``extern "C" sa_templated(a, b, out) { body; }``.

        Args:
            body: One call of a kernel body (``sa_*_impl<T, int>(...)``)
                with literal sizes.
            dtype: 'float32' or 'float64'.
        """
        source, _ = _src.kernel_source(dtype)
        t = _src.DTYPES[dtype]
        return source + (
            f'\nextern "C" __global__ void sa_templated('
            f'const {t}* __restrict__ a, const {t}* __restrict__ b, '
            f'{t}* __restrict__ out) {{\n  {body};\n}}\n'
        )

    def _kernel(self, cupy: Any, body: str, dtype: str, arch: str) -> Any:
        key = (body, arch)
        kernel = self._cache.get(key)
        if kernel is not None:
            return kernel
        try:
            kernel = cupy.RawKernel(
                self.source(body, dtype),
                'sa_templated',
                options=_src.COMPILE_OPTIONS,
            )
            kernel.compile()
        except Exception as e:
            raise RuntimeError(
                f'templated reference: compiling {body} failed: {e}'
            ) from e
        self._compiles += 1
        self._cache[key] = kernel
        return kernel


#: The per-shape kernels of the original implementation (benchmark only).
templated_reference = TemplatedReference()
