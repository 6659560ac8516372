"""tools/analysis/check_metafiles.py on the repository and on broken copies."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import load_tool

REPO_ROOT = Path(__file__).resolve().parents[2]
TOOL = REPO_ROOT / 'tools' / 'analysis' / 'check_metafiles.py'
PROJECTS = ('san', 'tscam', 'wsol_sst', 'golang_ssl')


tool = load_tool(TOOL)


@pytest.fixture
def repo_copy(tmp_path) -> Path:
    """A minimal checkout: model-index.yml, metafiles, READMEs, configs."""
    shutil.copy(REPO_ROOT / 'model-index.yml', tmp_path / 'model-index.yml')
    shutil.copytree(REPO_ROOT / 'configs', tmp_path / 'configs')
    for name in PROJECTS:
        dst = tmp_path / 'projects' / name
        dst.mkdir(parents=True)
        for fname in ('metafile.yml', 'README.md'):
            shutil.copy(REPO_ROOT / 'projects' / name / fname, dst / fname)
    return tmp_path


def _edit_metafile(root: Path, project: str, fn) -> Path:
    path = root / 'projects' / project / 'metafile.yml'
    data = yaml.safe_load(path.read_text())
    fn(data)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _model(name: str, config: str, collection: str = 'SAN', **extra):
    return {
        'Name': name,
        'In Collection': collection,
        'Config': config,
        **extra,
    }


def _matching(problems: list[str], *parts: str) -> list[str]:
    return [p for p in problems if all(part in p for part in parts)]


def test_repository_passes():
    report = tool.run_checks(REPO_ROOT)
    assert report.problems == []
    assert report.metafiles == len(PROJECTS)
    assert report.collections >= len(PROJECTS)
    assert report.registered == report.models
    assert tool.check(REPO_ROOT) == []


def test_copy_passes_and_registers_a_valid_model(repo_copy):
    cfg = repo_copy / 'configs' / 'san' / 'san-extra_1xb1_in1k.py'
    cfg.parent.mkdir(parents=True, exist_ok=True)
    cfg.write_text('# placeholder\n')
    meta = {'Parameters': 10500000, 'FLOPs': 2200000000}

    def add(data):
        data['Models'] = list(data.get('Models') or []) + [
            _model(
                'san-extra_1xb1_in1k',
                'configs/san/san-extra_1xb1_in1k.py',
                Metadata=meta,
            )
        ]

    _edit_metafile(repo_copy, 'san', add)
    report = tool.run_checks(repo_copy)
    assert report.problems == []
    # The added model plus those the repository's metafiles already list.
    listed = tool.run_checks(REPO_ROOT).models
    assert (report.models, report.registered) == (listed + 1, listed + 1)


def test_check_leaves_modelhub_untouched(repo_copy):
    from mmpretrain.apis import ModelHub

    before = dict(ModelHub._models_dict)
    tool.check(repo_copy)
    assert ModelHub._models_dict == before


def test_broken_metafile_reports_each_problem(repo_copy):
    def break_san(data):
        data['Models'] = [
            _model(
                'san-missing_8xb32_in1k',
                'configs/san/san-missing_8xb32_in1k.py',
            ),
            _model(
                'san-orphan_8xb32_in1k',
                'configs/san/san-orphan_8xb32_in1k.py',
                collection='NoSuchCollection',
            ),
            _model(
                'wrong-name',
                'configs/san/san-other_8xb32_in1k.py',
                Metadata={'Parameters': 1000},
            ),
        ]

    def break_tscam(data):
        del data['Collections'][0]['Code']

    _edit_metafile(repo_copy, 'san', break_san)
    _edit_metafile(repo_copy, 'tscam', break_tscam)
    problems = tool.check(repo_copy)
    san = 'projects/san/metafile.yml'
    assert _matching(
        problems, san, 'san-missing_8xb32_in1k', 'Config', 'does not exist'
    )
    assert _matching(
        problems,
        san,
        'san-orphan_8xb32_in1k',
        'In Collection',
        'NoSuchCollection',
    )
    assert _matching(problems, san, 'wrong-name', 'Name', 'config stem')
    assert _matching(problems, san, 'wrong-name', 'Metadata.FLOPs', 'missing')
    assert _matching(
        problems, 'projects/tscam/metafile.yml', 'TS-CAM', 'Code', 'missing'
    )
    # the missing and orphan configs are reported as well, and nothing else
    assert len(problems) == 7, problems


def test_broken_index_reports_missing_and_unimported(repo_copy):
    index = repo_copy / 'model-index.yml'
    data = yaml.safe_load(index.read_text())
    data['Import'] = [p for p in data['Import'] if 'golang' not in p]
    data['Import'].append('projects/nope/metafile.yml')
    index.write_text(yaml.safe_dump(data))
    (repo_copy / 'projects' / 'san' / 'README.md').unlink()
    problems = tool.check(repo_copy)
    assert _matching(
        problems,
        'model-index.yml',
        'Import',
        'projects/nope/metafile.yml',
        'does not exist',
    )
    assert _matching(
        problems,
        'model-index.yml',
        'Import',
        'projects/golang_ssl/metafile.yml',
        'not imported',
    )
    assert _matching(
        problems, 'projects/san/metafile.yml', 'README', 'does not exist'
    )


def test_invalid_yaml_and_missing_index(repo_copy, tmp_path_factory):
    (repo_copy / 'projects' / 'wsol_sst' / 'metafile.yml').write_text(
        'Collections: [\n'
    )
    assert _matching(
        tool.check(repo_copy), 'projects/wsol_sst/metafile.yml', 'invalid YAML'
    )
    empty = tmp_path_factory.mktemp('empty')
    assert _matching(tool.check(empty), 'model-index.yml', 'does not exist')


def test_cli(repo_copy):
    run = [sys.executable, str(TOOL)]
    help_ = subprocess.run([*run, '--help'], capture_output=True, text=True)
    assert help_.returncode == 0 and '--root' in help_.stdout
    ok = subprocess.run(
        [*run, '--root', str(repo_copy)], capture_output=True, text=True
    )
    assert ok.returncode == 0, ok.stderr
    assert 'OK: 4 metafiles' in ok.stdout
    _edit_metafile(
        repo_copy,
        'san',
        lambda d: d['Models'].append(
            _model('x_1xb1_y', 'configs/x_1xb1_y.py')
        ),
    )
    bad = subprocess.run(
        [*run, '--root', str(repo_copy)], capture_output=True, text=True
    )
    assert bad.returncode == 1
    index = len(
        yaml.safe_load((REPO_ROOT / 'projects/san/metafile.yml').read_text())[
            'Models'
        ]
    )
    assert (
        f"projects/san/metafile.yml: Models[{index}] 'x_1xb1_y': Config"
        in bad.stderr
    )
