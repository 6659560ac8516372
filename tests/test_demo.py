"""`make demo` in a clean copy of the repository (slow; runs in CI)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT


def clean_copy(dst: Path) -> None:
    """Copy what a clone holds (tracked + unignored files), keeping mtimes."""
    files = subprocess.run(
        ['git', 'ls-files', '-co', '--exclude-standard', '-z'],
        cwd=REPO_ROOT,
        capture_output=True,
        check=True,
    ).stdout.split(b'\0')
    for name in filter(None, files):
        src = REPO_ROOT / name.decode()
        if src.is_file():
            target = dst / name.decode()
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, target)


@pytest.mark.slow
def test_make_demo_from_clean_copy(tmp_path):
    repo = tmp_path / 'repo'
    clean_copy(repo)
    # The environment this suite runs in stands in for `make setup`
    # (`-o` tells make the stamp is current even if a requirement file was
    # edited after it).
    venv = Path(sys.prefix)
    assert (venv / '.stamp').is_file(), 'run the suite through make test'
    (repo / '.venv').symlink_to(venv)
    env = {k: v for k, v in os.environ.items() if k != 'DATA_ROOT'}
    proc = subprocess.run(
        ['make', '-o', '.venv/.stamp', 'demo'],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-6000:]
    assert 'pip install' not in out  # no set-up step was needed
    metrics = json.loads(
        (repo / 'work_dirs/demo/test_metrics.json').read_text()
    )
    # 4 classes (chance 25 %), one object per image; trained on labels only.
    assert metrics['tscam/top1_cls'] > 50
    assert metrics['wsol/MaxBoxAccV2'] > 50
    assert metrics['tscam/gt_known_loc'] > 50
    assert metrics['tscam/top1_loc'] > 40
    assert (repo / 'work_dirs/demo/curves.png').stat().st_size > 0
    # One CAM overlay per test image (16) from tools/test.py --show-dir.
    assert len(list((repo / 'work_dirs/demo/vis').iterdir())) == 16
    vis_cam = repo / 'work_dirs/demo/vis_cam'
    # One overlay and one per-block attention sheet per test image.
    assert len(list(vis_cam.glob('*_layers.jpg'))) == 8
    assert len(list(vis_cam.glob('*.jpg'))) == 16
    assert (vis_cam / 'summary.csv').is_file()
    for name in ('Top-1 Loc', 'GT-known Loc', 'MaxBoxAccV2'):
        assert name in out
    assert 'demo finished in' in out
