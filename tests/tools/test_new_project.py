"""tools/new_project.py: a scaffolded plugin imports, trains and tests."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

NAME = 'scaffold_check'
CAMEL = 'ScaffoldCheck'
STEM = 'scaffold-check_1xb16-5e_synthetic-imagefolder'


def _new_project(python: str, repo_root: Path, *args: str):
    return subprocess.run(
        [python, str(repo_root / 'tools' / 'new_project.py'), *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def _repo_state(repo_root: Path) -> tuple[list[str], bytes | None]:
    index = repo_root / 'model-index.yml'
    return (
        sorted(os.listdir(repo_root / 'projects')),
        index.read_bytes() if index.exists() else None,
    )


def test_scaffold_passes_its_own_tests(tmp_path, repo_root, python):
    before = _repo_state(repo_root)
    dest = tmp_path / 'tree'
    result = _new_project(python, repo_root, NAME, '--dest', str(dest))
    assert result.returncode == 0, result.stderr
    assert 'Next steps' in result.stdout
    assert f'python tools/train.py configs/{NAME}/{STEM}.py' in result.stdout
    for rel in (
        'projects/__init__.py',
        f'projects/{NAME}/__init__.py',
        f'projects/{NAME}/{NAME}_backbone.py',
        f'projects/{NAME}/{NAME}_head.py',
        f'projects/{NAME}/README.md',
        f'projects/{NAME}/metafile.yml',
        f'configs/{NAME}/{STEM}.py',
        'configs/_base_/datasets/synthetic_imagefolder.py',
        'configs/_base_/schedules/sgd-coslr-100e_8xb32.py',
        'configs/_base_/default_runtime.py',
        f'tests/projects/{NAME}/__init__.py',
        f'tests/projects/{NAME}/test_{NAME}.py',
    ):
        assert (dest / rel).is_file(), rel
    # Only the three bases the config inherits are copied.
    assert sorted(
        str(p.relative_to(dest / 'configs'))
        for p in (dest / 'configs').rglob('*.py')
    ) == sorted(
        [
            '_base_/datasets/synthetic_imagefolder.py',
            '_base_/default_runtime.py',
            '_base_/schedules/sgd-coslr-100e_8xb32.py',
            f'{NAME}/{STEM}.py',
        ]
    )
    assert (dest / 'model-index.yml').read_text() == (
        f'Import:\n  - projects/{NAME}/metafile.yml\n'
    )
    metafile = yaml.safe_load(
        (dest / f'projects/{NAME}/metafile.yml').read_text()
    )
    assert metafile['Collections'][0]['Name'] == CAMEL
    (model,) = metafile['Models']
    assert model['Name'] == STEM
    assert model['In Collection'] == CAMEL
    assert model['Config'] == f'configs/{NAME}/{STEM}.py'
    assert 'Results' not in model
    assert (
        'not yet reproduced'
        in (dest / f'projects/{NAME}/README.md').read_text()
    )

    # The plugin comes from the tree, ``shared`` and the tools from the
    # repository; the scaffold's own tests include a one-epoch training.
    basetemp = tmp_path / 'inner'
    result = subprocess.run(
        [
            python,
            '-m',
            'pytest',
            f'tests/projects/{NAME}',
            '-q',
            '-p',
            'no:cacheprovider',
            '-o',
            'addopts=',
            f'--basetemp={basetemp}',
        ],
        cwd=dest,
        env=dict(os.environ, PYTHONPATH=f'{dest}{os.pathsep}{repo_root}'),
        capture_output=True,
        text=True,
        timeout=300,
    )
    output = result.stdout[-4000:] + result.stderr[-4000:]
    assert result.returncode == 0, output
    assert '6 passed' in result.stdout, output
    assert list(basetemp.rglob('work_dir/epoch_1.pth')), output

    assert not (repo_root / 'projects' / NAME).exists()
    assert _repo_state(repo_root) == before


def test_generated_python_passes_ruff(tmp_path, repo_root, python):
    ruff = Path(python).parent / 'ruff'
    if not ruff.exists():
        ruff = shutil.which('ruff')
    if ruff is None:
        pytest.skip('ruff is not installed')
    # The longest allowed name: every generated line must still fit.
    name = 'a' * 10 + '_' + 'b' * 10 + '_' + 'c' * 8
    dest = tmp_path / 'tree'
    result = _new_project(python, repo_root, name, '--dest', str(dest))
    assert result.returncode == 0, result.stderr
    config = str(repo_root / 'pyproject.toml')
    for command in (['check'], ['format', '--check', '--diff']):
        result = subprocess.run(
            [str(ruff), *command, '--config', config, '.'],
            cwd=dest,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    'name,message',
    [
        ('1paper', 'must not start with a digit'),
        ('MyPaper', "e.g. 'my_paper'"),
        ('my-paper', 'only lowercase letters, digits and underscores'),
        ('_paper', 'must start with a letter'),
        ('class', 'Python keyword'),
        ('json', 'standard library'),
        ('demo', 'reserved'),
        ('x' * 31, 'at most 30 characters'),
    ],
)
def test_invalid_names_are_rejected(
    tmp_path, repo_root, python, name, message
):
    dest = tmp_path / 'tree'
    result = _new_project(python, repo_root, name, '--dest', str(dest))
    assert result.returncode != 0
    assert f'invalid plugin name {name!r}' in result.stderr
    assert message in result.stderr
    assert not dest.exists()


def test_existing_plugin_needs_force(tmp_path, repo_root, python):
    dest = tmp_path / 'tree'
    args = (NAME, '--dest', str(dest))
    assert _new_project(python, repo_root, *args).returncode == 0
    head = dest / f'projects/{NAME}/{NAME}_head.py'
    head.write_text('# edited\n')

    result = _new_project(python, repo_root, *args)
    assert result.returncode != 0
    assert f"plugin '{NAME}' already exists" in result.stderr
    assert '--force' in result.stderr
    assert head.read_text() == '# edited\n'

    result = _new_project(python, repo_root, *args, '--force')
    assert result.returncode == 0, result.stderr
    assert f'class {CAMEL}ClsHead(ClsHead)' in head.read_text()
    # The model index lists the metafile once.
    assert (dest / 'model-index.yml').read_text().count(NAME) == 1


def test_hand_written_plugins_are_never_overwritten(
    tmp_path, repo_root, python
):
    # A copy of the real plugins' packages, so nothing in the repository
    # is at risk even if the check regressed.
    dest = tmp_path / 'tree'
    for plugin in ('san', 'tscam', 'wsol_sst', 'golang_ssl'):
        source = repo_root / 'projects' / plugin / '__init__.py'
        target = dest / 'projects' / plugin / '__init__.py'
        target.parent.mkdir(parents=True)
        shutil.copyfile(source, target)
    original = (dest / 'projects/san/__init__.py').read_text()
    for extra, message in (
        ((), "plugin 'san' already exists"),
        (('--force',), 'not created by tools/new_project.py'),
    ):
        result = _new_project(
            python, repo_root, 'san', '--dest', str(dest), *extra
        )
        assert result.returncode != 0
        assert message in result.stderr
    assert (dest / 'projects/san/__init__.py').read_text() == original
    assert sorted(p.name for p in dest.iterdir()) == ['projects']


def test_default_dest_is_the_repository(repo_root, python):
    # Refused before anything is written: san exists in the repository.
    before = _repo_state(repo_root)
    result = _new_project(python, repo_root, 'san')
    assert result.returncode != 0
    assert str(repo_root / 'projects' / 'san') in result.stderr
    assert _repo_state(repo_root) == before


def test_help(repo_root, python):
    result = _new_project(python, repo_root, '--help')
    assert result.returncode == 0
    assert '--dest' in result.stdout and '--force' in result.stdout
