"""Smoke test of tools/analysis/benchmark_golang.py: the report's
structure and the single-process agreement of the two Sinkhorns (speed
targets are what the benchmark itself prints)."""

from __future__ import annotations

import re

import pytest

from tests.conftest import REPO_ROOT, load_tool

TOOL = REPO_ROOT / 'tools' / 'analysis' / 'benchmark_golang.py'


bench = load_tool(TOOL)


def test_quick_run_reports_every_variant_and_ratio(capsys):
    out = bench.main(
        [
            '--depth',
            '18',
            '--crops',
            '64',
            '32',
            '--batch-size',
            '2',
            '--prototypes',
            '50',
            '--queue-rows',
            '64',
            '--iters',
            '1',
            '--warmup',
            '0',
        ]
    )
    text = capsys.readouterr().out
    assert set(out) == {'train', 'neck', 'sinkhorn'}
    for kind, names in (
        ('train', ('gaelle', 'swav')),
        ('neck', ('neck loop', 'neck flatten')),
        ('sinkhorn', ('sinkhorn ours', 'sinkhorn mmpretrain')),
    ):
        for name in names:
            assert out[kind][name] > 0
            assert re.search(
                rf'^\[{kind}\] {re.escape(name)}\s+[\d.]+ img/s', text, re.M
            ), name
        ratio = out[kind][names[0]] / out[kind][names[1]]
        match = re.search(
            rf'^\[{kind}\] ratio .*: ([\d.]+)x time$', text, re.M
        )
        assert float(match[1]) == pytest.approx(ratio, abs=1e-3)
    err = re.search(r'max \|ours - mmpretrain\| = (\S+)', text)
    assert float(err[1]) < 1e-6


def test_batch_size_one_is_refused():
    with pytest.raises(SystemExit):
        bench.parse_args(['--batch-size', '1'])
