"""Imports, backend selection and settings of ``shared.ops``; benchmark CLI.

CUDA dispatch is exercised without a GPU through stand-in tensors whose
``device`` is CUDA: :func:`shared.ops.backend.select_backend` looks at the
device type only.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import textwrap
import types
import warnings
from pathlib import Path

import pytest
import torch

import shared.ops
from shared.ops import (
    backend,
    cupy_available,
    get_backend,
    set_atomic_backward,
    set_backend,
    torch_backend,
)

REPO_ROOT = Path(__file__).resolve().parents[3]
BENCHMARK = REPO_ROOT / 'tools' / 'analysis' / 'benchmark_san_ops.py'


@pytest.fixture(autouse=True)
def _default_settings(monkeypatch):
    monkeypatch.delenv(backend.BACKEND_ENV, raising=False)
    monkeypatch.delenv(backend.ATOMIC_ENV, raising=False)
    set_backend(None)
    set_atomic_backward(None)
    yield
    set_backend(None)
    set_atomic_backward(None)


def run_py(code: str, **env) -> subprocess.CompletedProcess:
    full_env = dict(os.environ, PYTHONPATH=str(REPO_ROOT), **env)
    for key in (backend.BACKEND_ENV, backend.ATOMIC_ENV):
        full_env.pop(key, None)
    return subprocess.run(
        [sys.executable, '-c', textwrap.dedent(code)],
        cwd=REPO_ROOT, env=full_env, capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip


def test_exports():
    for name in (
        'aggregation', 'subtraction', 'subtraction2', 'Aggregation',
        'Subtraction', 'Subtraction2', 'set_backend', 'get_backend',
        'set_atomic_backward', 'cupy_available', 'compile_all',
    ):  # fmt: skip
        assert name in shared.ops.__all__ and hasattr(shared.ops, name)


def _plugins() -> list[str]:
    """Plugins that use the ops (imported alongside them when present)."""
    return [
        name
        for name in ('projects.san',)
        if importlib.util.find_spec(name) is not None
    ]


def test_import_does_not_import_cupy():
    proc = run_py(f"""
        import sys
        import shared.ops
        import torch
        for name in {_plugins()!r}:
            __import__(name)
        x = torch.randn(1, 4, 6, 5)
        shared.ops.subtraction(x, 3, 1, 1)
        shared.ops.aggregation(x, torch.randn(1, 2, 9, 30), 3, 1, 1)
        assert not any(m == 'cupy' or m.startswith(('cupy.', 'cupyx',
                       'cupy_backends')) for m in sys.modules), 'cupy'
        print('OK')
        """)
    assert proc.returncode == 0 and 'OK' in proc.stdout, proc.stderr


def test_without_cupy_auto_uses_torch_and_forced_cupy_raises():
    proc = run_py(f"""
        import sys
        class NoCupy:
            def find_spec(self, name, path=None, target=None):
                if name.split('.')[0] in ('cupy', 'cupyx', 'cupy_backends'):
                    raise ImportError('cupy blocked by the test')
        sys.meta_path.insert(0, NoCupy())
        import torch
        import shared.ops
        from shared.ops import backend, torch_backend
        for name in {_plugins()!r}:
            __import__(name)
        assert 'cupy' not in sys.modules
        assert not shared.ops.cupy_available()
        assert shared.ops.get_backend() == 'auto'
        x = torch.randn(1, 4, 6, 5)
        assert backend.select_backend(x) is torch_backend
        cuda = type('T', (), {{'device': torch.device('cuda', 0)}})()
        assert backend.select_backend(cuda) is torch_backend  # auto
        shared.ops.set_backend('cupy')
        try:
            backend.select_backend(cuda)
        except RuntimeError as e:
            assert 'make setup CUDA=1' in str(e), e
            assert 'cupy-cuda13x' in str(e), e
        else:
            raise AssertionError('forced cupy without CuPy did not raise')
        assert 'cupy' not in sys.modules
        print('OK')
        """)
    assert proc.returncode == 0 and 'OK' in proc.stdout, proc.stderr


def test_cupy_available_does_not_import(monkeypatch):
    monkeypatch.delitem(sys.modules, 'cupy', raising=False)
    found = importlib.util.find_spec('cupy') is not None
    assert cupy_available() is found
    assert 'cupy' not in sys.modules
    monkeypatch.setitem(sys.modules, 'cupy', None)  # blocked import
    assert cupy_available() is False


def _cuda_tensor():
    return types.SimpleNamespace(device=torch.device('cuda', 0))


def test_dispatch_rules(monkeypatch):
    stub = types.ModuleType('shared.ops.cupy_backend')
    monkeypatch.setitem(sys.modules, 'shared.ops.cupy_backend', stub)
    cpu = torch.zeros(1)
    meta = torch.zeros(1, device='meta')
    cuda = _cuda_tensor()

    monkeypatch.setattr(backend, 'cupy_available', lambda: True)
    assert backend.select_backend(cpu) is torch_backend
    assert backend.select_backend(meta) is torch_backend
    assert backend.select_backend(cuda) is stub  # auto with CuPy
    set_backend('torch')
    assert backend.select_backend(cuda) is torch_backend
    set_backend('cupy')
    assert backend.select_backend(cuda) is stub
    with pytest.raises(RuntimeError, match=r"'cupy' was forced.*on cpu.*"
                       r'make setup CUDA=1'):  # fmt: skip
        backend.select_backend(cpu)
    with pytest.raises(RuntimeError, match=r'CUDA tensors'):
        shared.ops.subtraction(torch.zeros(1, 2, 5, 4), 3, 1, 1)

    monkeypatch.setattr(backend, 'cupy_available', lambda: False)
    set_backend('auto')
    assert backend.select_backend(cuda) is torch_backend
    set_backend('cupy')
    with pytest.raises(RuntimeError, match=r'CuPy is not installed.*'
                       r'make setup CUDA=1.*cupy-cuda13x'):  # fmt: skip
        backend.select_backend(cuda)


def test_backend_setting_and_environment(monkeypatch):
    assert get_backend() == 'auto'
    monkeypatch.setenv(backend.BACKEND_ENV, 'torch')
    assert get_backend() == 'torch'
    set_backend('cupy')  # an explicit choice wins over the environment
    assert get_backend() == 'cupy'
    set_backend(None)
    assert get_backend() == 'torch'
    monkeypatch.setenv(backend.BACKEND_ENV, 'gpu')
    with pytest.raises(ValueError, match='SHARED_OPS_BACKEND.*gpu'):
        get_backend()
    with pytest.raises(ValueError, match=r"backend must be one of .*'CUDA'"):
        set_backend('CUDA')


def test_atomic_backward_setting(monkeypatch):
    assert backend.atomic_backward_enabled() is False
    monkeypatch.setenv(backend.ATOMIC_ENV, '1')
    assert backend.atomic_backward_enabled() is True
    set_atomic_backward(False)
    assert backend.atomic_backward_enabled() is False
    set_atomic_backward(None)
    monkeypatch.setenv(backend.ATOMIC_ENV, 'maybe')
    with pytest.raises(ValueError, match='SHARED_OPS_ATOMIC_BACKWARD'):
        backend.atomic_backward_enabled()
    with pytest.raises(TypeError, match='expects a bool'):
        set_atomic_backward(1)
    set_atomic_backward(True)
    previous = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        with pytest.warns(UserWarning, match='deterministic'):
            assert backend.atomic_backward_enabled() is False
        # the CPU path has no atomic variant: its backward never asks
        x = torch.randn(1, 2, 5, 4, requires_grad=True)
        w = torch.randn(1, 1, 9, 20, requires_grad=True)
        y = shared.ops.aggregation(x, w, 3, 1, 1)
        with warnings.catch_warnings():
            warnings.simplefilter('error')
            y.sum().backward()
        assert x.grad is not None
    finally:
        torch.use_deterministic_algorithms(previous)


def test_benchmark_help():
    proc = subprocess.run(
        [sys.executable, str(BENCHMARK), '--help'],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    for flag in ('--device', '--dtype', '--batch', '--quick'):
        assert flag in proc.stdout


def test_benchmark_cpu_smoke():
    proc = subprocess.run(
        [sys.executable, str(BENCHMARK), '--device', 'cpu', '--stages', '4',
         '--ops', 'subtraction2', '--reps', '1', '--batch', '1'],
        capture_output=True, text=True, timeout=300, cwd='/',
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert 'subtraction2 C=128 7x7 k=7' in out
    rows = [line.split() for line in out.splitlines() if line[:5].strip()]
    assert {r[-9] for r in rows if r[0] == '4'} == {'torch', 'unfold'}
    assert 'all errors within tolerance' in out
