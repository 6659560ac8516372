"""Memory of the PyTorch path: saved tensors and peak extra memory.

Spec bound (san.md §1.3): the peak extra memory stays within the padded
input + the output + a few output-sized temporaries (plus, for the
backward, the gradients themselves and a padded gradient buffer), while
the unfold formulation needs K = kh*kw times the output.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from shared.ops import aggregation, reference, subtraction, subtraction2

REPO_ROOT = Path(__file__).resolve().parents[3]
MIB = 2**20


def _saved_bytes(fn) -> int:
    total = 0

    def pack(t):
        nonlocal total
        total += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return total


@pytest.mark.parametrize('dtype', [torch.float32, torch.float16])
def test_saved_tensors_are_at_most_the_inputs(dtype):
    x = torch.randn(2, 16, 20, 18, dtype=dtype, requires_grad=True)
    w = torch.randn(2, 2, 49, 20 * 18, dtype=dtype, requires_grad=True)
    x2 = torch.randn_like(x, requires_grad=True)
    nbytes = x.numel() * x.element_size()
    saved = _saved_bytes(lambda: aggregation(x, w, 7, 1, 3))
    assert 0 < saved <= nbytes + w.numel() * w.element_size()
    assert _saved_bytes(lambda: subtraction(x, 7, 1, 3)) <= nbytes
    assert _saved_bytes(lambda: subtraction2(x, x2, 7, 1, 3)) <= 2 * nbytes
    # the hooks do see what an unfold implementation keeps: K times more
    if dtype == torch.float32:
        unfold = _saved_bytes(
            lambda: reference.aggregation_unfold(x, w, 7, 1, 3)
        )
        assert unfold >= 40 * nbytes


# Measured in a fresh interpreter: glibc serves blocks >= 64 KiB by mmap and
# unmaps them on free, so the peak RSS (VmHWM, reset through clear_refs)
# follows the live tensors.
_PEAK_SCRIPT = r"""
import ctypes, gc, json, sys
import torch
from shared.ops import aggregation, subtraction, subtraction2, reference

torch.manual_seed(0)
libc = ctypes.CDLL('libc.so.6')

def status(key):
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith(key + ':'):
                return int(line.split()[1]) * 1024

try:
    with open('/proc/self/clear_refs', 'w') as f:
        f.write('5')
    assert status('VmHWM') is not None
except (OSError, AssertionError):
    print(json.dumps(None))
    sys.exit(0)

def peak(fn):
    gc.collect()
    libc.malloc_trim(0)
    with open('/proc/self/clear_refs', 'w') as f:
        f.write('5')
    base = status('VmRSS')
    fn()
    return status('VmHWM') - base

def fwd(fn, *a):
    return lambda: fn(*a)

def fwd_bwd(fn, inputs, g, *a):
    def run():
        out = fn(*inputs, *a)
        out.backward(g)
        for t in inputs:
            t.grad = None
    return run

N, C, CW, H, W, K, P = 1, 64, 8, 64, 56, 7, 3
L = H * W
x = torch.randn(N, C, H, W, requires_grad=True)
w = torch.randn(N, CW, K * K, L, requires_grad=True)
gy = torch.randn(N, C, H, W)
c4 = C // 4
x1 = torch.randn(N, c4, H, W, requires_grad=True)
x2 = torch.randn(N, c4, H, W, requires_grad=True)
go = torch.randn(N, c4, K * K, L)
conf = (K, 1, P, 1, 'reflect')
def half(*ts):
    return [t.detach().half().requires_grad_(t.requires_grad) for t in ts]

x16, w16, gy16, x1_16, x2_16, go16 = half(x, w, gy, x1, x2, go)
# warm-up at full size: the first large backward of a process keeps
# ~30 MiB of thread-pool state; mmap'd blocks leave no allocator cache
for fn, inputs, g in ((aggregation, (x, w), gy),
                      (subtraction2, (x1, x2), go),
                      (subtraction, (x1,), go),
                      (aggregation, (x16, w16), gy16),
                      (subtraction2, (x1_16, x2_16), go16)):
    fwd_bwd(fn, inputs, g, *conf)()
res = {
    'agg_fwd': peak(fwd(aggregation, x.detach(), w.detach(), *conf)),
    'agg_fwd_bwd': peak(fwd_bwd(aggregation, (x, w), gy, *conf)),
    'agg_unfold_fwd_bwd': peak(
        fwd_bwd(reference.aggregation_unfold, (x, w), gy, *conf)),
    'sub2_fwd': peak(fwd(subtraction2, x1.detach(), x2.detach(), *conf)),
    'sub2_fwd_bwd': peak(fwd_bwd(subtraction2, (x1, x2), go, *conf)),
    'sub2_unfold_fwd_bwd': peak(
        fwd_bwd(reference.subtraction2_unfold, (x1, x2), go, *conf)),
    'sub_fwd_bwd': peak(fwd_bwd(subtraction, (x1,), go, *conf)),
    'agg_fwd_bwd_fp16': peak(fwd_bwd(aggregation, (x16, w16), gy16, *conf)),
    'sub2_fwd_bwd_fp16': peak(
        fwd_bwd(subtraction2, (x1_16, x2_16), go16, *conf)),
}
print(json.dumps(res))
"""


@pytest.fixture(scope='module')
def peaks():
    env = dict(
        os.environ,
        PYTHONPATH=str(REPO_ROOT),
        MALLOC_MMAP_THRESHOLD_='65536',
    )
    proc = subprocess.run(
        [sys.executable, '-c', textwrap.dedent(_PEAK_SCRIPT)],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    if result is None:
        pytest.skip('peak RSS cannot be reset here (/proc/self/clear_refs)')
    return result


# sizes of the script's problem, in bytes (float32)
N, C, CW, H, W, K, P = 1, 64, 8, 64, 56, 7, 3
F32 = 4
PADDED = N * C * (H + 2 * P) * (W + 2 * P) * F32
X = N * C * H * W * F32
WEIGHT = N * CW * K * K * H * W * F32
SUB_OUT = N * (C // 4) * K * K * H * W * F32
SUB_PADDED = PADDED // 4
SUB_X = X // 4
SLACK = 1 * MIB  # page granularity, allocator bookkeeping


def test_aggregation_peak_within_bound(peaks):
    out = X  # y has the input's shape here (stride 1, 'same' padding)
    # forward: padded input + output (+ a few output-sized temporaries)
    assert peaks['agg_fwd'] <= PADDED + out + 2 * out + SLACK
    # backward adds the gradients, a padded gradient buffer, the re-padded
    # input and one output-sized product
    grads = X + WEIGHT
    bound = 2 * PADDED + out + grads + 3 * out + SLACK
    assert peaks['agg_fwd_bwd'] <= bound, (peaks, bound)
    # unfold keeps K copies of the input: far above, so the bound bites
    assert peaks['agg_unfold_fwd_bwd'] >= 5 * peaks['agg_fwd_bwd'], peaks
    # float16: float32 accumulators (twice the bytes) for y and products
    half = 2 * out // 4  # a float32 buffer of a float16 output's shape
    bound = 3 * PADDED // 2 + out // 2 + (X + WEIGHT) // 2 + 3 * half + SLACK
    assert peaks['agg_fwd_bwd_fp16'] <= bound, (peaks, bound)


def test_subtraction_peak_is_about_the_output(peaks):
    # the output itself is K times the input: nothing else of that order
    assert peaks['sub2_fwd'] <= SUB_PADDED + SUB_OUT + SLACK
    bound = SUB_OUT + 2 * SUB_PADDED + 2 * SUB_X + 2 * SUB_X + SLACK
    assert peaks['sub2_fwd_bwd'] <= bound, (peaks, bound)
    assert peaks['sub_fwd_bwd'] <= bound, (peaks, bound)
    assert peaks['sub2_unfold_fwd_bwd'] >= 2 * peaks['sub2_fwd_bwd'], peaks
    # float16: no float32 copy of the K-times-sized gradient
    assert peaks['sub2_fwd_bwd_fp16'] <= bound // 2 + SLACK, peaks
