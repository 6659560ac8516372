"""env_check: the environment must equal the lock."""

from __future__ import annotations

import subprocess
import sys

from shared.utils import env_check
from tests.conftest import REPO_ROOT


def test_current_environment_matches_lock():
    assert env_check.check() == []
    proc = subprocess.run(
        [sys.executable, '-m', 'shared.utils.env_check'],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert 'env_check: OK' in proc.stdout


def test_lock_pins_the_verified_stack():
    lock = env_check.read_lock()
    assert lock['torch'] == '2.15.0'
    assert lock['torchvision'] == '0.29.2'
    assert lock['mmengine'] == '0.10.7'
    assert lock['mmcv-lite'] == '2.2.0'
    assert lock['mmpretrain'] == '1.2.0'
    assert lock['numpy'] == '2.4.6'
    assert lock['opencv-python-headless'].startswith('4.')
    assert 'opencv-python' not in lock
    major, minor = (int(x) for x in lock['setuptools'].split('.')[:2])
    assert (77, 0) <= (major, minor) < (82, 0)


def test_opencv_python_and_version_drift_are_reported(monkeypatch):
    real = env_check.installed()
    fake = dict(real)
    fake['opencv-python'] = '4.10.0.84'
    fake['timm'] = '0.9.16'
    del fake['einops']
    monkeypatch.setattr(env_check, 'installed', lambda: fake)
    problems = '\n'.join(env_check.check())
    assert 'opencv-python is installed next to opencv-python-headless' in (
        problems
    )
    assert 'timm==0.9.16 is installed but the lock says 1.0.31' in problems
    assert 'einops (requirements/base.txt) is not installed' in problems
    assert 'make setup' in problems


def test_every_requirement_is_locked():
    lock = env_check.read_lock()
    for name in (
        'base.txt',
        'torch.txt',
        'openmmlab.txt',
        'dev.txt',
        'test.txt',
        'cuda.txt',
    ):
        for req in env_check.read_requirement_names(
            REPO_ROOT / 'requirements' / name
        ):
            assert req in lock, (name, req)


def test_base_lists_every_runtime_dependency_of_torch_but_triton():
    """torch.txt is installed --no-deps, so base.txt must carry its deps,
    and nothing installed with deps may require torch (pip would then pull
    torch and triton in the first step)."""
    import importlib.metadata as md

    from packaging.requirements import Requirement

    listed = set(
        env_check.read_requirement_names(REPO_ROOT / 'requirements/base.txt')
    )
    for dist in ('torch', 'torchvision', 'timm'):
        for text in md.requires(dist) or []:
            req = Requirement(text)
            if req.marker is not None and not req.marker.evaluate(
                {'extra': ''}
            ):
                continue
            name = env_check.canonical(req.name)
            if name in ('triton', 'torch', 'torchvision'):
                continue
            assert name in listed, (dist, text)
    torch_txt = env_check.read_requirement_names(
        REPO_ROOT / 'requirements/torch.txt'
    )
    assert torch_txt == ['torch', 'torchvision', 'timm']
    assert 'triton' not in listed
    cuda = env_check.read_requirement_names(
        REPO_ROOT / 'requirements/cuda.txt'
    )
    assert 'triton' in cuda

    torch_users = []
    for dist in md.distributions():
        name = env_check.canonical(dist.metadata['Name'])
        if name in torch_txt:
            continue
        for text in dist.requires or []:
            req = Requirement(text)
            applies = req.marker is None or req.marker.evaluate({'extra': ''})
            if applies and env_check.canonical(req.name) in torch_txt:
                torch_users.append(name)
    openmmlab = env_check.read_requirement_names(
        REPO_ROOT / 'requirements/openmmlab.txt'
    )
    assert sorted(set(torch_users) - set(openmmlab)) == []
