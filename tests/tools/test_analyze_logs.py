"""Tests of tools/analysis/analyze_logs.py and print_config.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import load_tool

REPO_ROOT = Path(__file__).resolve().parents[2]
ANALYZE = REPO_ROOT / 'tools' / 'analysis' / 'analyze_logs.py'
PRINT_CONFIG = REPO_ROOT / 'tools' / 'analysis' / 'print_config.py'
PNG_MAGIC = b'\x89PNG\r\n\x1a\n'


al = load_tool(ANALYZE, 'analyze_logs')


def _write_scalars(run_dir: Path, loss0: float = 2.0) -> Path:
    """2 epochs x 4 iters, val after each epoch, truncated last line."""
    lines = []
    for epoch in (1, 2):
        for i in range(1, 5):
            it = (epoch - 1) * 4 + i
            lines.append(
                dict(
                    lr=0.1,
                    data_time=0.01,
                    loss=loss0 - 0.125 * it,
                    time=0.2,
                    epoch=epoch,
                    iter=it,
                    memory=10,
                    step=it,
                )
            )
        acc = {1: 62.5, 2: 56.25}[epoch]
        lines.append(
            {
                'accuracy/top1': acc,
                'accuracy/top5': 100.0,
                'data_time': 0.01,
                'time': 0.05,
                'step': epoch,
            }
        )
    path = run_dir / 'vis_data' / 'scalars.json'
    path.parent.mkdir(parents=True)
    text = ''.join(json.dumps(line) + '\n' for line in lines)
    path.write_text(text + '{"loss": 0.1, "it')  # job still running
    return path


@pytest.fixture
def work_dir(tmp_path) -> Path:
    wd = tmp_path / 'work_dirs' / 'exp'
    old = _write_scalars(wd / '20240101_000000', loss0=9.0)
    new = _write_scalars(wd / '20240102_000000')
    os.utime(old, (1_000_000, 1_000_000))
    os.utime(new, (2_000_000, 2_000_000))
    return wd


def test_resolve_and_load(work_dir):
    newest = work_dir / '20240102_000000' / 'vis_data' / 'scalars.json'
    assert al.resolve_log(work_dir) == newest
    assert al.resolve_log(newest) == newest
    assert al.resolve_log(newest.parents[1]) == newest
    log = al.load_log(work_dir)
    assert len(log.train) == 8 and len(log.val) == 2 and log.skipped == 1
    assert log.series('loss') == (
        'iter',
        list(range(1, 9)),
        [2.0 - 0.125 * i for i in range(1, 9)],
    )
    assert log.series('accuracy/top1') == ('step', [1, 2], [62.5, 56.25])
    with pytest.raises(al.LogError, match='does not exist'):
        al.resolve_log(work_dir / 'nope')
    with pytest.raises(al.LogError, match='no \\*/vis_data'):
        al.resolve_log(work_dir.parent.parent)


def test_summary(work_dir, capsys):
    assert al.main(['summary', str(work_dir)]) == 0
    out = capsys.readouterr().out
    assert '20240102_000000' in out
    assert 'train lines: 8' in out and '(last epoch 2, iter 8)' in out
    assert 'last loss: 1.0000' in out
    assert 'val lines: 2' in out
    assert 'accuracy/top1: best 62.5000 (step 1), last 56.2500' in out
    assert 'accuracy/top5: best 100.0000' in out
    assert 'data_time' not in out.split('val lines')[1]
    assert 'skipped 1 unreadable line' in out


def test_plot_curve(work_dir, tmp_path, capsys):
    out = tmp_path / 'plots' / 'curve.png'
    log_file = work_dir / '20240101_000000' / 'vis_data' / 'scalars.json'
    rc = al.main(
        ['plot_curve', str(work_dir), str(log_file), '--keys', 'loss',
         'accuracy/top1', '--out', str(out), '--title', 'exp']
    )  # fmt: skip
    assert rc == 0
    assert str(out) in capsys.readouterr().out
    data = out.read_bytes()
    assert data.startswith(PNG_MAGIC) and len(data) > 1000


def test_plot_curve_bad_key(work_dir, tmp_path, capsys):
    out = tmp_path / 'bad.png'
    rc = al.main(
        ['plot_curve', str(work_dir), '--keys', 'loss', 'acc/top1',
         '--out', str(out)]
    )  # fmt: skip
    assert rc == 2
    err = capsys.readouterr().err
    assert "key 'acc/top1' not found" in err
    assert 'accuracy/top1' in err and 'loss' in err  # keys available
    assert not out.exists()


@pytest.mark.parametrize('script', [ANALYZE, PRINT_CONFIG])
def test_help_exits_zero(script):
    proc = subprocess.run(
        [sys.executable, str(script), '--help'],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert 'usage:' in proc.stdout


def test_print_config(tmp_path):
    cfg = tmp_path / 'cfg.py'
    cfg.write_text("model = dict(type='Toy', depth=3)\nlr = 0.1\n")
    cmd = [sys.executable, str(PRINT_CONFIG), str(cfg), '--cfg-options']
    proc = subprocess.run(
        [*cmd, 'model.depth=5', 'lr=0.2'],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "type='Toy'" in proc.stdout
    assert 'depth=5' in proc.stdout and 'lr = 0.2' in proc.stdout
