"""Smoke test of tools/analysis/benchmark_wsol_eval.py (no timing asserts:
the §4 ratios are printed by the benchmark itself)."""

from __future__ import annotations

import re

from tests.conftest import run_tool


def test_prints_ratios_and_identical_results():
    proc = run_tool(['tools/analysis/benchmark_wsol_eval.py', '--num', '20'])
    out = proc.stdout
    assert '20 maps of 224x224 per set' in out
    for name in ('single', 'multi'):
        for d in ('0.01 ', '0.001'):
            head = rf'\[{name}\s+d={re.escape(d)}\s*\]'
            assert re.search(
                head + r' MaxBoxAccV2 [\d.]+ .*\(x[\d.]+\).*\(x[\d.]+\)'
                r'\s+identical: True',
                out,
            ), out
            assert re.search(
                head + r' PxAP [\d.]+ .*\(x[\d.]+\)\s+identical: True', out
            ), out
    assert 'all results identical: True' in out
    assert re.search(r'MaxBoxAccV2 target \(>= 10x\): (met|NOT met)', out)
