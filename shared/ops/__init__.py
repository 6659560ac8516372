"""SAN self-attention ops (CuPy CUDA kernels with a pure-PyTorch path).

Ops (Zhao et al., "Exploring Self-attention for Image Recognition"):

* :func:`aggregation` (x (N,C,H,W), w (N,Cw,K,L)) -> (N,C,Ho,Wo);
* :func:`subtraction` x -> (N,C,K,L): centre minus neighbours;
* :func:`subtraction2` (x1, x2) -> (N,C,K,L): x1 centre minus x2
  neighbours;

and their parameter-free modules :class:`Aggregation`,
:class:`Subtraction`, :class:`Subtraction2`. CUDA tensors use the CuPy
kernels when CuPy is installed; everything else (and CUDA with
``set_backend('torch')``) uses the chunked, memory-lean PyTorch path.

``cupy`` is imported only inside the CUDA path and :func:`compile_all`,
never at import time.
"""

from __future__ import annotations

from .backend import (
    cupy_available,
    get_backend,
    set_atomic_backward,
    set_backend,
)
from .functional import aggregation, subtraction, subtraction2
from .modules import Aggregation, Subtraction, Subtraction2

__all__ = [
    'Aggregation',
    'Subtraction',
    'Subtraction2',
    'aggregation',
    'compile_all',
    'cupy_available',
    'get_backend',
    'set_atomic_backward',
    'set_backend',
    'subtraction',
    'subtraction2',
]


def compile_all(arch: str = 'compute_80') -> list[str]:
    """Compile every CUDA kernel to PTX with NVRTC (no GPU/driver needed).

    A syntax check of ``shared/ops/kernels/*.cu`` for CI; see
    :func:`shared.ops.compile.compile_all` (imported lazily, as it imports
    CuPy's NVRTC bindings).

    Args:
        arch: Virtual architecture, ``compute_75`` or newer.

    Returns:
        Sorted kernel name expressions, e.g. ``sa_aggregation_fwd<float,int>``.

    Raises:
        RuntimeError: CuPy or NVRTC is missing, or compilation failed.
        ValueError: An unsupported ``arch``.
    """
    from .compile import compile_all as _compile_all

    return _compile_all(arch)
