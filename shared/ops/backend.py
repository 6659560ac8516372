"""Backend selection for the SAN ops: CuPy kernels or the PyTorch path.

Dispatch rules (:func:`select_backend`):

* CPU (any non-CUDA) tensors always use :mod:`shared.ops.torch_backend`;
  forcing 'cupy' with them raises ``RuntimeError``.
* CUDA tensors use :mod:`shared.ops.cupy_backend` when the backend is
  'cupy', or 'auto' and CuPy is installed; 'torch' forces the PyTorch path.
  Forcing 'cupy' without CuPy raises ``RuntimeError`` with an install hint.

The backend defaults to the ``SHARED_OPS_BACKEND`` environment variable,
else 'auto'; the atomic (non-deterministic, faster) CUDA backward defaults
to ``SHARED_OPS_ATOMIC_BACKWARD``, else off. Both variables are read when
first needed, until :func:`set_backend` / :func:`set_atomic_backward` set
an explicit value. ``cupy`` itself is never imported here.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
import warnings
from types import ModuleType

import torch

__all__ = [
    'BACKENDS',
    'atomic_backward_enabled',
    'cupy_available',
    'get_backend',
    'select_backend',
    'set_atomic_backward',
    'set_backend',
]

#: Valid backend names.
BACKENDS = ('auto', 'cupy', 'torch')
BACKEND_ENV = 'SHARED_OPS_BACKEND'
ATOMIC_ENV = 'SHARED_OPS_ATOMIC_BACKWARD'
INSTALL_HINT = (
    'install CuPy with `make setup CUDA=1` (or `pip install cupy-cuda13x`, '
    "matching torch's CUDA 13 wheel)"
)

_TRUE = frozenset({'1', 'true', 'yes', 'on'})
_FALSE = frozenset({'', '0', 'false', 'no', 'off'})

# None: not set explicitly, use the environment variable.
_backend: str | None = None
_atomic: bool | None = None


def _check_backend(name: object, source: str) -> str:
    if not isinstance(name, str) or name not in BACKENDS:
        raise ValueError(
            f'shared.ops: {source} must be one of {BACKENDS}, got {name!r}'
        )
    return name


def set_backend(name: str | None) -> None:
    """Choose the backend of the SAN ops for CUDA tensors.

    Args:
        name: 'auto' (CuPy kernels if CuPy is installed, else the PyTorch
            path), 'cupy' (always the kernels; an error without CuPy or
            for CPU tensors) or 'torch' (always the PyTorch path). None
            goes back to the ``SHARED_OPS_BACKEND`` default.

    Raises:
        ValueError: An unknown name.
    """
    global _backend
    _backend = None if name is None else _check_backend(name, 'backend')


def get_backend() -> str:
    """The current backend name: 'auto', 'cupy' or 'torch'.

    Raises:
        ValueError: ``SHARED_OPS_BACKEND`` holds an unknown name.
    """
    if _backend is not None:
        return _backend
    value = os.environ.get(BACKEND_ENV, '').strip()
    return _check_backend(value, f'${BACKEND_ENV}') if value else 'auto'


def set_atomic_backward(enabled: bool | None) -> None:
    """Opt into (or out of) the atomic CUDA backward of aggregation.

    The atomic grad-input kernels are faster but not bitwise deterministic.
    The request is ignored, with a warning, while
    ``torch.are_deterministic_algorithms_enabled()``. The PyTorch path is
    always deterministic and ignores it.

    Args:
        enabled: True or False; None goes back to the
            ``SHARED_OPS_ATOMIC_BACKWARD`` default (off when unset).

    Raises:
        TypeError: ``enabled`` is not a bool (or None).
    """
    global _atomic
    if enabled is not None and not isinstance(enabled, bool):
        raise TypeError(
            f'shared.ops: set_atomic_backward expects a bool, got {enabled!r}'
        )
    _atomic = enabled


def _atomic_requested() -> bool:
    if _atomic is not None:
        return _atomic
    value = os.environ.get(ATOMIC_ENV, '').strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueError(
        f'shared.ops: ${ATOMIC_ENV} must be a boolean (1/0, true/false, '
        f'yes/no, on/off), got {value!r}'
    )


def atomic_backward_enabled() -> bool:
    """Whether a backward call may use the atomic kernels now.

    Warns and returns False when atomics were requested while
    deterministic algorithms are enforced.
    """
    if not _atomic_requested():
        return False
    if torch.are_deterministic_algorithms_enabled():
        warnings.warn(
            'shared.ops: the atomic backward was requested but '
            'torch.are_deterministic_algorithms_enabled() is True; using '
            'the deterministic backward',
            stacklevel=2,
        )
        return False
    return True


def cupy_available() -> bool:
    """Whether CuPy is installed (found without importing it)."""
    if 'cupy' in sys.modules:
        return sys.modules['cupy'] is not None
    try:
        return importlib.util.find_spec('cupy') is not None
    except (ImportError, ValueError):
        return False


def select_backend(tensor: torch.Tensor) -> ModuleType:
    """The backend module that handles ``tensor``'s device.

    Args:
        tensor: An input of the op.

    Returns:
        :mod:`shared.ops.torch_backend` or :mod:`shared.ops.cupy_backend`
        (imported lazily).

    Raises:
        RuntimeError: 'cupy' is forced for a non-CUDA tensor or without
            CuPy.
    """
    name = get_backend()
    if tensor.device.type != 'cuda':
        if name == 'cupy':
            raise RuntimeError(
                f"shared.ops: backend 'cupy' was forced but the tensors are "
                f'on {tensor.device}; the CuPy kernels need CUDA tensors. '
                f"Use set_backend('auto') or set_backend('torch') for the "
                f'PyTorch path (CuPy for CUDA tensors: {INSTALL_HINT})'
            )
        return importlib.import_module(f'{__package__}.torch_backend')
    if name == 'torch':
        return importlib.import_module(f'{__package__}.torch_backend')
    if not cupy_available():
        if name == 'cupy':
            raise RuntimeError(
                f"shared.ops: backend 'cupy' was forced but CuPy is not "
                f"installed: {INSTALL_HINT}; or use set_backend('torch')"
            )
        return importlib.import_module(f'{__package__}.torch_backend')
    return importlib.import_module(f'{__package__}.cupy_backend')
