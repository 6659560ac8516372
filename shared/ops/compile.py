"""CUDA kernel sources of the SAN ops and their GPU-free NVRTC check.

The kernels live in ``shared/ops/kernels/``: ``common.cuh`` (types,
half/bfloat16 conversions, padding geometry) followed by
``aggregation.cu``, ``subtraction.cu`` and ``subtraction2.cu`` form one
translation unit with no ``#include``. :func:`kernel_source` is the one
loader both consumers use:

* :mod:`shared.ops.cupy_backend` builds one ``cupy.RawModule`` per
  (dtype, device arch) from it;
* :func:`compile_all` compiles every kernel x dtype x index width to PTX
  with CuPy's low-level NVRTC bindings
  (``cupy_backends.cuda.libs.nvrtc``). That needs neither a GPU nor a
  driver, only CuPy and the NVRTC library, so CI syntax-checks the
  kernels on CPU-only machines.

CuPy 14 resolves ``libnvrtc`` lazily through ``cuda-pathfinder``, which
finds the ``nvidia-cuda-nvrtc`` wheel (``nvidia/cu13/lib``), conda and
system toolkits. If that fails, :func:`load_nvrtc` preloads the library
from the ``nvidia`` pip packages on ``sys.path`` itself and retries.
``cupy`` is imported only inside functions.
"""

from __future__ import annotations

import ctypes
import functools
import os
import re
import sys
from pathlib import Path
from typing import Any

__all__ = [
    'DTYPES',
    'INDEX_TYPES',
    'KERNELS',
    'MIN_ARCH',
    'compile_all',
    'kernel_source',
    'load_nvrtc',
    'name_expression',
]

KERNEL_DIR = Path(__file__).resolve().parent / 'kernels'
# Concatenated in this order; later files use helpers of earlier ones.
SOURCE_FILES = (
    'common.cuh',
    'aggregation.cu',
    'subtraction.cu',
    'subtraction2.cu',
)

#: Every ``__global__`` template, instantiated for each dtype and index type.
KERNELS = (
    'sa_aggregation_fwd',
    'sa_aggregation_grad_input',
    'sa_aggregation_grad_input_atomic',
    'sa_aggregation_grad_weight',
    'sa_subtraction_fwd',
    'sa_subtraction_grad',
    'sa_subtraction2_fwd',
    'sa_subtraction2_grad1',
    'sa_subtraction2_grad2',
)
#: torch dtype name -> CUDA storage type (16-bit types are bit structs).
DTYPES = {
    'float32': 'float',
    'float64': 'double',
    'float16': 'sa_half',
    'bfloat16': 'sa_bf16',
}
#: Kernel index types: 32-bit, and 64-bit for counts/offsets >= 2**31.
INDEX_TYPES = ('int', 'long long')
#: NVRTC 13 rejects anything older.
MIN_ARCH = 75
COMPILE_OPTIONS = ('--std=c++17',)

_INSTALL_HINT = (
    'install the CUDA 13 pip packages `cupy-cuda13x` (matching the torch '
    'CUDA 13 wheel) and `nvidia-cuda-nvrtc` (e.g. `make setup CUDA=1`, or '
    '`pip install cupy-cuda13x[ctk]`)'
)


@functools.lru_cache(maxsize=1)
def _read_sources() -> str:
    return ''.join(
        f'// ---- {name} ----\n{(KERNEL_DIR / name).read_text()}\n'
        for name in SOURCE_FILES
    )


def name_expression(kernel: str, dtype: str, index_type: str) -> str:
    """The NVRTC name expression of one instantiation.

    Args:
        kernel: One of :data:`KERNELS`.
        dtype: A key of :data:`DTYPES` ('float32', ...).
        index_type: 'int' or 'long long'.

    Returns:
        e.g. ``'sa_aggregation_fwd<float,int>'``.
    """
    return f'{kernel}<{DTYPES[dtype]},{index_type}>'


def kernel_source(dtype: str) -> tuple[str, list[str]]:
    """CUDA source and name expressions of all kernels for one dtype.

    Args:
        dtype: A key of :data:`DTYPES` ('float32', 'float64', 'float16',
            'bfloat16').

    Returns:
        ``(source, name_expressions)``: the full translation unit and every
        kernel in both index widths.
    """
    if dtype not in DTYPES:
        raise TypeError(
            f'SAN ops CUDA kernels support {sorted(DTYPES)}, got {dtype!r}'
        )
    names = [
        name_expression(k, dtype, i) for k in KERNELS for i in INDEX_TYPES
    ]
    return _read_sources(), names


# -- NVRTC without a driver ---------------------------------------------------
def _nvrtc_candidates() -> list[Path]:
    """libnvrtc files of the ``nvidia`` pip packages on ``sys.path``."""
    if sys.platform == 'win32':
        subdirs, patterns = ('cu13/bin', 'cuda_nvrtc/bin'), ('nvrtc64_*.dll',)
    else:
        subdirs, patterns = ('cu13/lib', 'cuda_nvrtc/lib'), ('libnvrtc.so*',)
    found = []
    for entry in dict.fromkeys(sys.path):
        for sub in subdirs:
            lib = Path(entry or '.') / 'nvidia' / sub
            for pattern in patterns:
                found += sorted(
                    p for p in lib.glob(pattern) if 'builtins' not in p.name
                )
    return found


def _preload_nvrtc() -> bool:
    """Load libnvrtc (and its builtins) from the pip packages, globally."""
    mode = getattr(os, 'RTLD_GLOBAL', 0)
    for path in _nvrtc_candidates():
        for builtins in sorted(path.parent.glob('*nvrtc-builtins*')):
            if builtins.suffix in ('.a', '.lib'):
                continue
            try:  # libnvrtc dlopens it by name; best effort
                ctypes.CDLL(str(builtins), mode=mode)
            except OSError:
                pass
        try:
            ctypes.CDLL(str(path), mode=mode)
        except OSError:
            continue
        return True
    return False


def load_nvrtc() -> Any:
    """CuPy's low-level NVRTC module, with a working NVRTC library behind it.

    Returns:
        The ``cupy_backends.cuda.libs.nvrtc`` module.

    Raises:
        RuntimeError: CuPy or the NVRTC library is missing.
    """
    try:
        from cupy_backends.cuda.libs import nvrtc
    except ImportError as e:
        raise RuntimeError(
            f'CuPy is not importable ({e}); {_INSTALL_HINT}.'
        ) from e
    try:
        nvrtc.getVersion()
    except Exception as first:  # pathfinder found no libnvrtc
        if _preload_nvrtc():
            try:
                nvrtc.getVersion()
                return nvrtc
            except Exception:  # report the first error below
                pass
        raise RuntimeError(
            f'NVRTC (libnvrtc) could not be loaded: '
            f'{type(first).__name__}: {first}; {_INSTALL_HINT}.'
        ) from first
    return nvrtc


def _arch_number(arch: str) -> int:
    m = re.fullmatch(r'compute_(\d+)[af]?', str(arch))
    if m is None:
        raise ValueError(
            f'compile_all: arch must look like "compute_80" (a virtual '
            f'architecture, minimum compute_{MIN_ARCH}), got {arch!r}'
        )
    number = int(m.group(1))
    if number < MIN_ARCH:
        raise ValueError(
            f'compile_all: {arch} is not supported; the minimum is '
            f'compute_{MIN_ARCH} (NVRTC 13 dropped older architectures)'
        )
    return number


def _to_str(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode(errors='replace')
    return str(value)


def compile_ptx(
    nvrtc: Any,
    source: str,
    names: list[str],
    arch: str,
    filename: str = 'sa_kernels.cu',
) -> tuple[str, dict[str, str]]:
    """Compile ``source`` to PTX for ``arch``.

    Args:
        nvrtc: The module returned by :func:`load_nvrtc`.
        source: CUDA C++ source.
        names: Name expressions to instantiate.
        arch: Virtual architecture, e.g. 'compute_80'.
        filename: Name NVRTC uses in its log.

    Returns:
        ``(ptx, lowered)``: the PTX text and name expression -> mangled
        symbol.

    Raises:
        RuntimeError: Compilation failed; the message holds the NVRTC log.
    """
    prog = nvrtc.createProgram(source, filename, [], [])
    try:
        for name in names:
            nvrtc.addNameExpression(prog, name)
        options = [f'--gpu-architecture={arch}', *COMPILE_OPTIONS]
        try:
            nvrtc.compileProgram(prog, options)
        except Exception as e:
            try:
                log = _to_str(nvrtc.getProgramLog(prog))
            except Exception:  # the log itself is unavailable
                log = '(no log)'
            raise RuntimeError(
                f'NVRTC failed to compile {filename} for {arch} '
                f'({" ".join(options)}): {e}\nNVRTC log:\n{log}'
            ) from e
        lowered = {name: nvrtc.getLoweredName(prog, name) for name in names}
        ptx = _to_str(nvrtc.getPTX(prog))
    finally:
        nvrtc.destroyProgram(prog)
    missing = [n for n, sym in lowered.items() if f'.entry {sym}(' not in ptx]
    if missing:
        raise RuntimeError(
            f'NVRTC produced no PTX entry for {missing} ({filename}, {arch})'
        )
    return ptx, lowered


def compile_all(arch: str = 'compute_80') -> list[str]:
    """Compile every SAN kernel x dtype x index width to PTX, no GPU needed.

    Args:
        arch: Virtual GPU architecture, ``compute_75`` or newer.

    Returns:
        The sorted name expressions, e.g. ``'sa_aggregation_fwd<float,int>'``.

    Raises:
        ValueError: ``arch`` is malformed or older than compute_75.
        RuntimeError: CuPy or NVRTC is missing, or a kernel does not compile
            (the message holds the NVRTC log).
    """
    _arch_number(arch)
    nvrtc = load_nvrtc()
    compiled = []
    for dtype in DTYPES:
        source, names = kernel_source(dtype)
        compile_ptx(nvrtc, source, names, arch, f'sa_kernels_{dtype}.cu')
        compiled += names
    return sorted(compiled)
