"""Repository rules that code review would otherwise have to remember."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO_ROOT

PRODUCT_DIRS = ('shared', 'projects', 'tools')
PLUGINS = ('san', 'tscam', 'wsol_sst', 'golang_ssl')
CHECKPOINT_MODULE = Path('shared/utils/checkpoint.py')


def python_files(*dirs: str) -> list[Path]:
    files = []
    for d in dirs:
        files += sorted((REPO_ROOT / d).rglob('*.py'))
    return [f for f in files if '.venv' not in f.parts]


def rel(path: Path) -> Path:
    return path.relative_to(REPO_ROOT)


def calls(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            if isinstance(func, ast.Attribute) and isinstance(
                func.value, ast.Name
            ):
                yield node, f'{func.value.id}.{func.attr}'
            elif isinstance(func, ast.Attribute):
                yield node, f'?.{func.attr}'
            elif isinstance(func, ast.Name):
                yield node, func.id


def test_ruff_check_and_format():
    ruff = Path(sys.executable).with_name('ruff')
    for args in (['check', '.'], ['format', '--check', '.']):
        proc = subprocess.run(
            [str(ruff), *args], cwd=REPO_ROOT, capture_output=True, text=True
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr


def test_force_true_only_in_checkpoint_loader_registration():
    offenders = []
    for path in python_files(*PRODUCT_DIRS, 'configs'):
        tree = ast.parse(path.read_text())
        for node, _ in calls(tree):
            for kw in node.keywords:
                if (
                    kw.arg == 'force'
                    and isinstance(kw.value, ast.Constant)
                    and kw.value.value is True
                ):
                    offenders.append(f'{rel(path)}:{node.lineno}')
    assert offenders == [
        f'{CHECKPOINT_MODULE}:{line}' for line in _checkpoint_force_lines()
    ]


def _checkpoint_force_lines() -> list[int]:
    tree = ast.parse((REPO_ROOT / CHECKPOINT_MODULE).read_text())
    lines = []
    for node, name in calls(tree):
        if name.endswith('register_scheme') and any(
            kw.arg == 'force' for kw in node.keywords
        ):
            lines.append(node.lineno)
    assert len(lines) == 1
    return lines


def test_registries_only_via_shared_registry():
    offenders = []
    for path in python_files(*PRODUCT_DIRS):
        if rel(path) == Path('shared/registry.py'):
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module in (
                'mmpretrain.registry',
                'mmengine.registry',
            ):
                names = {a.name for a in node.names}
                registries = {n for n in names if n.isupper()}
                if registries and node.module == 'mmpretrain.registry':
                    offenders.append(f'{rel(path)}:{node.lineno}')
                if node.module == 'mmengine.registry' and (
                    registries
                    & {'MODELS', 'DATASETS', 'HOOKS', 'METRICS', 'TRANSFORMS'}
                ):
                    offenders.append(f'{rel(path)}:{node.lineno}')
    assert not offenders


def test_no_mmcv_ops_and_no_top_level_cupy():
    offenders = []
    for path in python_files(*PRODUCT_DIRS):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                if name.startswith('mmcv.ops'):
                    offenders.append(f'{rel(path)}:{node.lineno} mmcv.ops')
        for node in tree.body:  # module level only
            if isinstance(node, ast.Import | ast.ImportFrom):
                mods = (
                    [a.name for a in node.names]
                    if isinstance(node, ast.Import)
                    else [node.module or '']
                )
                if any(
                    m.split('.')[0] in ('cupy', 'cupyx', 'cupy_backends')
                    for m in mods
                ):
                    offenders.append(f'{rel(path)}:{node.lineno} cupy')
    assert not offenders


UNPICKLING = {
    'torch.load',
    'pickle.load',
    'pickle.loads',
    'cPickle.load',
    'hub.load_state_dict_from_url',
    'torch.hub.load_state_dict_from_url',
    'load_state_dict_from_url',
    'load_url',
    'joblib.load',
    'dill.load',
}


def test_unpickling_only_in_checkpoint_module():
    offenders = []
    for path in python_files(*PRODUCT_DIRS):
        if rel(path) == CHECKPOINT_MODULE:
            continue
        tree = ast.parse(path.read_text())
        for node, name in calls(tree):
            short = name.split('.', 1)[-1]
            if name in UNPICKLING or short in ('load_state_dict_from_url',):
                offenders.append(f'{rel(path)}:{node.lineno} {name}')
            if name.endswith('.load') and name.startswith(('np.', 'numpy.')):
                for kw in node.keywords:
                    if kw.arg == 'allow_pickle' and not (
                        isinstance(kw.value, ast.Constant)
                        and kw.value.value is False
                    ):
                        offenders.append(f'{rel(path)}:{node.lineno} {name}')
        text = path.read_text()
        if 'weights_only=False' in text:
            offenders.append(f'{rel(path)} weights_only=False')
    assert not offenders


def test_configs_have_no_absolute_paths_or_read_base():
    offenders = []
    for path in (REPO_ROOT / 'configs').rglob('*.py'):
        text = path.read_text()
        if 'read_base' in text or 'mmpretrain::' in text:
            offenders.append(f'{rel(path)}: read_base / mmpretrain:: base')
        for match in re.finditer(r"['\"](/[^'\"]*)['\"]", text):
            offenders.append(f'{rel(path)}: absolute path {match[1]}')
    assert not offenders


def test_every_project_has_package_readme_metafile():
    for name in PLUGINS:
        for f in ('__init__.py', 'README.md', 'metafile.yml'):
            assert (REPO_ROOT / 'projects' / name / f).is_file(), (name, f)


def test_model_index_imports_every_metafile():
    index = yaml.safe_load((REPO_ROOT / 'model-index.yml').read_text())
    imported = set(index['Import'])
    expected = {f'projects/{n}/metafile.yml' for n in PLUGINS}
    assert expected <= imported
    for path in imported:
        assert (REPO_ROOT / path).is_file(), path


def metafile_configs() -> set[str]:
    configs = set()
    for name in PLUGINS:
        meta = yaml.safe_load(
            (REPO_ROOT / 'projects' / name / 'metafile.yml').read_text()
        )
        for model in meta.get('Models') or []:
            assert (REPO_ROOT / model['Config']).is_file(), model['Config']
            assert Path(model['Config']).stem == model['Name']
            configs.add(model['Config'])
    return configs


def test_every_config_is_listed_in_a_metafile():
    listed = metafile_configs()
    missing = [
        str(rel(p))
        for p in (REPO_ROOT / 'configs').rglob('*.py')
        if '_base_' not in p.parts
        and 'demo' not in p.parts
        and str(rel(p)) not in listed
    ]
    assert not missing


def test_cuda_extra_equals_requirements_file():
    pyproject = tomllib.loads((REPO_ROOT / 'pyproject.toml').read_text())
    extra = pyproject['project']['optional-dependencies']['cuda']
    lines = [
        line.split('#')[0].strip()
        for line in (REPO_ROOT / 'requirements/cuda.txt')
        .read_text()
        .splitlines()
    ]
    assert sorted(extra) == sorted(line for line in lines if line)


@pytest.mark.parametrize(
    'pattern', ['.venv/', 'work_dirs/', 'data/', '*.pth', '*.pkl']
)
def test_gitignore_covers(pattern):
    lines = (REPO_ROOT / '.gitignore').read_text().splitlines()
    assert pattern in lines
