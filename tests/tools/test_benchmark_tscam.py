"""Smoke test of tools/analysis/benchmark_tscam.py (report structure only:
the §11 speed target is what the benchmark itself prints)."""

from __future__ import annotations

import math
import re

import pytest
import torch

from tests.conftest import REPO_ROOT, load_tool

TOOL = REPO_ROOT / 'tools' / 'analysis' / 'benchmark_tscam.py'
NUM = r'([+-]?\d+(?:\.\d+)?)'


bench = load_tool(TOOL)


def _rate(out: str, kind: str, label: str) -> tuple[float, float]:
    match = re.search(
        rf'^\[cpu\] {kind}\s+{re.escape(label)}\s+{NUM} img/s  '
        rf'\({NUM} ms/iter\)$',
        out,
        re.M,
    )
    assert match, (label, out)
    return float(match[1]), float(match[2])


def test_micro_report(capsys):
    threads = torch.get_num_threads()
    rc = bench.main(
        [
            '--arch', 'micro', '--img-size', '64', '--batch-size', '2',
            '--num-classes', '5', '--iters', '2', '--warmup', '1',
            '--device', 'cpu', '--threads', '1',
        ]
    )  # fmt: skip
    assert rc == 0
    assert torch.get_num_threads() == threads  # restored for other tests
    out = capsys.readouterr().out
    assert re.search(
        r'^TS-CAM benchmark: arch micro \(D=64, depth=2, heads=2\), img 64, '
        r'batch 2, 5 classes, median of 2 interleaved repeats after 1 '
        r'warm-up, 1 CPU threads',
        out,
        re.M,
    ), out

    rates = {}
    for kind, label in [
        ('train', 'timm DeiT + Linear head'),
        ('train', 'TSCAMClassifier (loss)'),
        ('predict', 'timm DeiT forward'),
        ('predict', 'TS-CAM forward, no collection'),
        ('predict', 'TS-CAM forward + collection'),
        ('predict', 'TSCAMClassifier.predict'),
    ]:
        ips, ms = _rate(out, kind, label)
        assert math.isfinite(ips) and ips > 0, (label, ips)
        assert ms > 0, (label, ms)
        # img/s is the batch over the median time (printed rounded)
        assert ips == pytest.approx(2e3 / ms, rel=0.05)
        rates[kind, label] = ips

    ratio = re.search(
        rf'^\[cpu\] train   throughput TS-CAM / timm: {NUM} '
        rf'\(time overhead {NUM}%\)$',
        out,
        re.M,
    )
    assert ratio, out
    value = float(ratio[1])
    assert math.isfinite(value) and value > 0
    expected = (
        rates['train', 'TSCAMClassifier (loss)']
        / rates['train', 'timm DeiT + Linear head']
    )
    assert value == pytest.approx(expected, rel=0.05, abs=2e-3)
    assert float(ratio[2]) == pytest.approx(100 * (1 / value - 1), abs=0.5)

    for pattern in (
        rf'^\[cpu\] predict collection only vs no collection: {NUM}%$',
        rf'^\[cpu\] predict TS-CAM forward vs timm forward: {NUM}%; '
        rf'predict vs timm forward: {NUM}%$',
    ):
        match = re.search(pattern, out, re.M)
        assert match, (pattern, out)
        for pct in match.groups():
            assert math.isfinite(float(pct)) and float(pct) > -100.0

    last = out.strip().splitlines()[-1]
    match = re.fullmatch(
        rf'predict overhead of attention collection: {NUM}% '
        r'\(target < 10%: (met|NOT met)\) \[cpu\]',
        last,
    )
    assert match, last
    pct = float(match[1])
    assert math.isfinite(pct) and pct > -100.0
    if abs(pct - 10.0) > 0.1:  # the verdict uses the unrounded value
        assert (match[2] == 'met') == (pct < 10.0)
    # no CUDA lines on a CPU-only run
    assert '[cuda]' not in out and 'MiB' not in out


def test_bad_options():
    with pytest.raises(SystemExit):
        bench.parse_args(['--img-size', '100'])
    with pytest.raises(SystemExit):
        bench.parse_args(['--iters', '0'])
    with pytest.raises(SystemExit):
        bench.parse_args(['--arch', 'huge'])
