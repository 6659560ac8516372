"""Smoke test of tools/analysis/benchmark_wsol_sst.py (report structure and
finite positive ratios only; the §6.4 speed target is what the benchmark
itself prints)."""

from __future__ import annotations

import math
import re

import pytest
import torch

from tests.conftest import REPO_ROOT, load_tool

TOOL = REPO_ROOT / 'tools' / 'analysis' / 'benchmark_wsol_sst.py'
NUM = r'([+-]?\d+(?:\.\d+)?)'


bench = load_tool(TOOL)


@pytest.mark.parametrize('mode', ['sos+sa_v3', 'spa'])
def test_tiny_report(capsys, mode):
    threads = torch.get_num_threads()
    rc = bench.main(
        [
            '--arch', 'vgg16', '--mode', mode, '--img-size', '64',
            '--batch-size', '2', '--views', '3', '--num-classes', '7',
            '--iters', '2', '--warmup', '0', '--device', 'cpu',
            '--threads', '1',
        ]
    )  # fmt: skip
    assert rc == 0
    assert torch.get_num_threads() == threads  # restored for other tests
    out = capsys.readouterr().out
    assert re.search(
        rf'^WSOL-SST quick-test benchmark: arch vgg16, mode {re.escape(mode)},'
        r' img 64, batch 2 x 3 views, 7 classes, 10 thresholds, median of 2 '
        r'interleaved repeats after 0 warm-up, 1 CPU threads',
        out,
        re.M,
    ), out

    rates = {}
    for name, label, part in (
        ('ours', 'ours: predict + metric entries', 'metrics'),
        ('reference', 'reference: per-threshold loop', 'loop'),
    ):
        match = re.search(
            rf'^\[cpu\] {re.escape(label)}\s+{NUM} img/s  \({NUM} ms/batch: '
            rf'forward {NUM} ms, {part} {NUM} ms\)$',
            out,
            re.M,
        )
        assert match, (label, out)
        ips, total, forward, evaluation = map(float, match.groups())
        assert math.isfinite(ips) and ips > 0
        assert forward > 0 and evaluation > 0
        # img/s is the batch over the median total (medians of the parts
        # need not add up exactly)
        assert ips == pytest.approx(2e3 / total, rel=0.05)
        rates[name] = ips

    match = re.search(
        rf'^\[cpu\] throughput ours / reference: {NUM}x \(evaluation part '
        rf'alone: {NUM}x\)$',
        out,
        re.M,
    )
    assert match, out
    ratio, eval_ratio = float(match[1]), float(match[2])
    assert math.isfinite(ratio) and ratio > 0
    assert math.isfinite(eval_ratio) and eval_ratio > 0
    assert ratio == pytest.approx(
        rates['ours'] / rates['reference'], rel=0.05, abs=0.01
    )

    # the re-stated upstream loop and the shared metric agree
    match = re.search(
        rf'^\[cpu\] results ours vs reference at the selected threshold: '
        rf'max \|diff\| {NUM} points \((agree|DIFFER)\)$',
        out,
        re.M,
    )
    assert match, out
    assert float(match[1]) == 0.0 and match[2] == 'agree'

    last = out.strip().splitlines()[-1]
    match = re.fullmatch(
        rf'\[cpu\] upstream README quick test: 6\.90 img/s \(5794 CUB test '
        rf'images in ~14 min, one TITAN RTX, batch 20\); ours / README: '
        rf'{NUM}x \(target >= 10x on comparable or newer hardware\)',
        last,
    )
    assert match, last
    assert float(match[1]) == pytest.approx(rates['ours'] / 6.9, abs=0.02)
    assert '[cuda]' not in out


def test_bench_returns_parity_and_ratios():
    """bench() returns the parity of the two paths as a number."""
    args = bench.parse_args(
        ['--img-size', '64', '--batch-size', '3', '--views', '1',
         '--num-classes', '6', '--iters', '1', '--warmup', '0']
    )  # fmt: skip
    result = bench.bench(args)
    assert result['diff'] == 0.0
    for key in ('ours', 'reference', 'ratio', 'eval_ratio'):
        assert math.isfinite(result[key]) and result[key] > 0


def test_bad_options():
    for argv in (
        ['--batch-size', '0'],
        ['--iters', '0'],
        ['--views', '0'],
        ['--arch', 'resnet50'],
        ['--mode', 'sst'],
        ['--img-size', '16'],
        ['--warmup', '-1'],
    ):
        with pytest.raises(SystemExit):
            bench.parse_args(argv)
