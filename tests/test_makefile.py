"""`make setup` refuses unusable interpreters before creating anything."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.conftest import REPO_ROOT

FAKE = """#!{python}
import collections, sys
VersionInfo = collections.namedtuple(
    'VersionInfo', 'major minor micro releaselevel serial')
{patch}
code = sys.argv[sys.argv.index('-c') + 1]
sys.argv = ['-c']
exec(compile(code, '<string>', 'exec'))
"""


def fake_python(tmp_path, patch: str):
    path = tmp_path / 'fakepython'
    path.write_text(FAKE.format(python=sys.executable, patch=patch))
    path.chmod(0o755)
    return path


def make_setup(tmp_path, python) -> subprocess.CompletedProcess:
    return subprocess.run(
        ['make', 'setup', f'PYTHON={python}', f'VENV={tmp_path}/venv'],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env=dict(os.environ),
    )


@pytest.mark.parametrize(
    'patch,message',
    [
        (
            "sys.version_info = VersionInfo(3, 10, 12, 'final', 0)",
            'Python >= 3.11 is required',
        ),
        ("sys.modules['venv'] = None", 'install python3-venv'),
        (
            'import shutil; shutil.disk_usage = lambda path: '
            "collections.namedtuple('U', 'total used free')(2**34, 0, 2**30)",
            'make setup needs about 6 GiB free',
        ),
    ],
)
def test_setup_rejects_interpreter(tmp_path, patch, message):
    proc = make_setup(tmp_path, fake_python(tmp_path, patch))
    assert proc.returncode != 0
    assert message in proc.stdout + proc.stderr
    assert not (tmp_path / 'venv').exists()


def test_fake_interpreter_works_when_unpatched(tmp_path):
    """Control: the unpatched fake runs the same check code successfully."""
    python = fake_python(tmp_path, 'pass')
    code = (
        'import sys, venv, ensurepip; v = sys.version_info; '
        'print(v >= (3, 11))'
    )
    proc = subprocess.run(
        [str(python), '-c', code], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == 'True'
