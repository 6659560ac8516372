"""Smoke test of tools/analysis/benchmark_dataloader.py (no timing asserts:
the < 10 % adapter-overhead target is printed by the benchmark itself)."""

from __future__ import annotations

import re

from shared.datasets.synthetic import generate
from tests.conftest import run_tool

DEMO = 'configs/demo/resnet18-micro_1xb16-5e_synthetic-imagefolder.py'


def test_prints_rates_and_the_adapter_ratio(tmp_path):
    generate(
        'imagefolder',
        tmp_path / 'synthetic_imagefolder',
        2,
        10,
        size_range=(32, 32),
    )
    proc = run_tool(
        [
            'tools/analysis/benchmark_dataloader.py',
            DEMO,
            '--num-samples',
            '12',
            '--repeats',
            '1',
            '--workers',
            '1',
        ],
        env={'DATA_ROOT': str(tmp_path)},
    )
    out = proc.stdout
    for label in ('decode only', 'bare pipeline', 'adapter (dataset[i])'):
        assert re.search(rf'{re.escape(label)}\s+[\d.]+ images/s', out), out
    assert re.search(r'adapter / bare time\s+[\d.]+', out)
    assert re.search(r'DataLoader, 1 workers\s+[\d.]+ images/s', out)
    assert '12 samples' in out
