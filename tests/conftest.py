"""Test-suite set-up: patches, default scope, no network, clean singletons."""

from __future__ import annotations

import atexit
import ipaddress
import os
import shutil
import socket
import sys
import tempfile
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
os.environ['TORCH_HOME'] = tempfile.mkdtemp(prefix='torch_home_')
atexit.register(shutil.rmtree, os.environ['TORCH_HOME'], True)
os.environ.setdefault('MPLBACKEND', 'Agg')

from mmengine.registry import init_default_scope  # noqa: E402

from shared.utils.compat import apply_patches  # noqa: E402

apply_patches()
init_default_scope('mmpretrain')


# -- no network: only loopback connections ------------------------------------
_real_connect = socket.socket.connect


def _is_loopback(address) -> bool:
    if not isinstance(address, tuple):
        return True  # AF_UNIX paths
    host = address[0]
    if host in ('localhost', ''):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _guarded_connect(self, address):
    if not _is_loopback(address):
        raise OSError(
            f'tests may not reach the network (connect to '
            f'{address!r} blocked by tests/conftest.py)'
        )
    return _real_connect(self, address)


socket.socket.connect = _guarded_connect


# -- fixtures ---------------------------------------------------------------
@pytest.fixture(scope='session', autouse=True)
def _session_loggers() -> set:
    """Names of the MMLogger instances that exist before any fixture."""
    from mmengine.logging import MMLogger

    return set(MMLogger._instance_dict)


@pytest.fixture(autouse=True)
def _reset_mmengine_singletons(_session_loggers):
    """Drop MessageHub/Visualizer/logger instances a test created."""
    from mmengine.logging import MessageHub, MMLogger
    from mmengine.visualization import Visualizer

    def drop(cls, names):
        for name in set(cls._instance_dict) - names:
            instance = cls._instance_dict.pop(name)
            if isinstance(instance, MMLogger):
                for handler in list(instance.handlers):
                    handler.close()
                    instance.removeHandler(handler)

    # Loggers made by module- or session-scoped fixtures hold stream
    # handlers bound to the output capture of that moment; drop them so
    # each test logs through a logger made while its own capture is active.
    drop(MMLogger, _session_loggers)
    before = {
        cls: set(cls._instance_dict)
        for cls in (MessageHub, MMLogger, Visualizer)
    }
    yield
    for cls, names in before.items():
        drop(cls, names)


@pytest.fixture(scope='session')
def repo_root() -> Path:
    """The repository root."""
    return REPO_ROOT


@pytest.fixture(scope='session')
def python() -> str:
    """The interpreter running the tests (the project's venv)."""
    return sys.executable


class PickleBomb:
    """Unpickles to ``os.system('touch MARKER')``: a planted payload.

    A loader that executes it creates ``marker``; the safe loaders must
    refuse it, so the tests assert that the file never appears.
    """

    def __init__(self, marker) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f'touch {self.marker}',))


def load_tool(path, name: str | None = None):
    """Import a script of ``tools/`` (not a package) as a module.

    Args:
        path: The script, absolute or relative to the repository root.
        name: Module name; ``<stem>_tool`` by default. The module is put in
            ``sys.modules`` under it (dataclasses look their module up).

    Returns:
        module: The executed script.
    """
    import importlib.util

    path = Path(path)
    if not path.is_absolute():
        path = REPO_ROOT / path
    name = name or f'{path.stem}_tool'
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def run_tool(
    args: list[str],
    *,
    env: dict | None = None,
    cwd=None,
    timeout: int = 600,
    check: bool = True,
):
    """Run a repository tool (``tools/x.py`` or ``.sh``) in a subprocess.

    Returns the CompletedProcess with ``output`` = stdout + stderr.
    """
    import subprocess

    cmd = list(args)
    if cmd[0].endswith('.py'):
        cmd = [sys.executable, str(REPO_ROOT / cmd[0]), *cmd[1:]]
    elif cmd[0].endswith('.sh'):
        cmd = ['bash', str(REPO_ROOT / cmd[0]), *cmd[1:]]
    full_env = dict(os.environ)
    full_env['PYTHON'] = sys.executable
    for key, value in (env or {}).items():
        if value is None:
            full_env.pop(key, None)  # None unsets a variable
        else:
            full_env[key] = value
    proc = subprocess.run(
        cmd,
        cwd=cwd or REPO_ROOT,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    proc.output = proc.stdout + proc.stderr
    if check and proc.returncode != 0:
        raise AssertionError(
            f'{" ".join(cmd)} exited {proc.returncode}:\n{proc.output[-6000:]}'
        )
    return proc


@pytest.fixture(scope='session')
def synthetic_root(tmp_path_factory) -> Path:
    """A DATA_ROOT holding synthetic data for the demo and base configs."""
    root = tmp_path_factory.mktemp('data_root')
    run_tool(
        [
            'tools/dataset_converters/make_synthetic.py',
            '--format',
            'imagefolder',
            '--out',
            str(root / 'synthetic_imagefolder'),
            '--num-classes',
            '4',
            '--per-class',
            '8',
            '--val-per-class',
            '3',
            '--size',
            '32',
            '--seed',
            '0',
        ]
    )
    # The WSOL demo config reads <DATA_ROOT>/demo/CUB_200_2011.
    run_tool(
        [
            'tools/dataset_converters/make_synthetic.py',
            '--format',
            'cub',
            '--out',
            str(root / 'demo'),
            '--num-classes',
            '4',
            '--per-class',
            '4',
            '--size',
            '64',
            '--seed',
            '0',
        ]
    )
    return root
