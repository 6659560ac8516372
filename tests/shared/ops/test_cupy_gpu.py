"""CuPy CUDA kernels of the SAN ops against the PyTorch path (GPU only).

Spec §6 item 8. `make test` deselects the ``gpu`` marker; `make test-gpu`
runs these on a CUDA machine with CuPy installed:

* CuPy matches :mod:`shared.ops.torch_backend` in float32 (relative error
  <= 1e-5) for every op, gradient and pad mode, with stride and dilation;
  float16/bfloat16 stay close to float32 and keep their dtype;
* forced 64-bit indexing equals 32-bit, and a > 2**31-element output is
  indexed correctly;
* no recompilation across shapes and batch sizes; torch's current stream
  and the tensors' device are honoured;
* the gather backward is bitwise deterministic; gradcheck passes through
  the public API; the benchmark's ``--quick`` run passes.
"""

from __future__ import annotations

import itertools

import pytest
import torch

import shared.ops
from shared.ops import cupy_backend as cb
from shared.ops import torch_backend as tb
from tests.conftest import run_tool

pytestmark = pytest.mark.gpu

DEV = 'cuda'
MODES = ('zero', 'reflect')
LOW_TOL = {torch.float16: 1e-2, torch.bfloat16: 4e-2}


@pytest.fixture(autouse=True)
def cupy_ready():
    assert torch.cuda.is_available(), 'gpu tests need a CUDA device'
    cb._cupy()  # CuPy importable, CUDA majors match, NVRTC loadable
    yield
    shared.ops.set_backend(None)


def _out(hw, k, s, p, d):
    return tuple(
        (n + 2 * pp - dd * (kk - 1) - 1) // ss + 1
        for n, kk, ss, pp, dd in zip(hw, k, s, p, d)
    )


def _same(k, d):
    return ((k[0] - 1) // 2 * d[0], (k[1] - 1) // 2 * d[1])


def _rel(a, b):
    """max |a - b| relative to max |b| (float64)."""
    a, b = a.double(), b.double()
    return ((a - b).abs().max() / b.abs().max().clamp_min(1e-30)).item()


def _problem(n, c, cw, hw, k, s, p, d, dtype, seed=0):
    gen = torch.Generator(device=DEV).manual_seed(seed)
    out = _out(hw, k, s, p, d)  # aggregation, padding p
    same = _out(hw, k, s, _same(k, d), d)  # subtraction(2)
    kk, ll = k[0] * k[1], out[0] * out[1]

    def rand(*shape):
        t = torch.randn(*shape, generator=gen, device=DEV)
        return t.to(dtype)

    return dict(
        x=rand(n, c, *hw),
        x2=rand(n, c, *hw),
        w=rand(n, cw, kk, ll),
        gy=rand(n, c, *out),
        go=rand(n, c, kk, same[0] * same[1]),
    )


def _all_results(backend, t, k, s, p_agg, d, mode, atomic=False):
    """Every output and gradient of the three ops on one backend."""
    conf_a = (k, s, p_agg, d, mode)
    conf_s = (k, s, _same(k, d), d, mode)
    x, x2, w, gy, go = t['x'], t['x2'], t['w'], t['gy'], t['go']
    res = {'agg': backend.aggregation_forward(x, w, *conf_a)}
    kwargs = {'atomic': atomic} if backend is cb else {}
    res['agg_gx'], res['agg_gw'] = backend.aggregation_backward(
        gy, x, w, *conf_a, True, True, **kwargs
    )
    res['sub'] = backend.subtraction_forward(x, *conf_s)
    res['sub_g'] = backend.subtraction_backward(go, x.shape, *conf_s)
    res['sub2'] = backend.subtraction2_forward(x, x2, *conf_s)
    res['sub2_g1'], res['sub2_g2'] = backend.subtraction2_backward(
        go, x.shape, *conf_s, True, True
    )
    return res


CASES = [
    # (k, s, d)
    *(((k, k), (s, s), (d, d)) for k in (1, 3, 5, 7) for s in (1, 2)
      for d in (1, 2)),
    ((3, 5), (2, 1), (1, 2)),
    ((7, 3), (1, 3), (2, 1)),
]  # fmt: skip


# -- accuracy -----------------------------------------------------------------
@pytest.mark.parametrize('mode', MODES)
@pytest.mark.parametrize('k,s,d', CASES)
def test_cupy_matches_torch_fp32(k, s, d, mode):
    hw = (11, 9)
    for cw, p_agg, atomic in ((16, _same(k, d), False), (8, (0, 1), True),
                              (2, (1, 0), False)):  # fmt: skip
        if mode == 'reflect' and max(_same(k, d)) >= min(hw):
            pytest.skip('reflect padding larger than the input')
        if min(_out(hw, k, s, p_agg, d)) < 1:
            continue
        t = _problem(2, 16, cw, hw, k, s, p_agg, d, torch.float32)
        got = _all_results(cb, t, k, s, p_agg, d, mode, atomic)
        ref = _all_results(tb, t, k, s, p_agg, d, mode)
        for name in ref:
            assert got[name].shape == ref[name].shape, name
            assert got[name].dtype == torch.float32, name
            assert _rel(got[name], ref[name]) <= 1e-5, (name, cw, atomic)


@pytest.mark.parametrize('mode', MODES)
def test_cupy_matches_upstream_self_test_case(mode):
    # upstream's check: k5 s4 d2 p4, N2 C8 Cw4, on 9x9 and 5x5 (p < H, so
    # reflect is valid on both)
    for hw in ((9, 9), (5, 5)):
        k, s, p, d = (5, 5), (4, 4), (4, 4), (2, 2)
        t = _problem(2, 8, 4, hw, k, s, p, d, torch.float64)
        conf = (k, s, p, d, mode)
        y = cb.aggregation_forward(t['x'], t['w'], *conf)
        gx, gw = cb.aggregation_backward(
            t['gy'], t['x'], t['w'], *conf, True, True
        )
        ry = tb.aggregation_forward(t['x'], t['w'], *conf)
        rgx, rgw = tb.aggregation_backward(
            t['gy'], t['x'], t['w'], *conf, True, True
        )
        for a, b in ((y, ry), (gx, rgx), (gw, rgw)):
            assert _rel(a, b) <= 1e-12


@pytest.mark.parametrize('dtype', [torch.float16, torch.bfloat16])
@pytest.mark.parametrize('mode', MODES)
def test_low_precision_close_to_fp32(dtype, mode):
    k, s, d = (7, 7), (1, 1), (1, 1)
    p = _same(k, d)
    t = _problem(2, 32, 4, (14, 12), k, s, p, d, dtype)
    t32 = {key: v.float() for key, v in t.items()}
    for atomic in (False, True):
        got = _all_results(cb, t, k, s, p, d, mode, atomic)
        ref = _all_results(cb, t32, k, s, p, d, mode)
        for name in ref:
            assert got[name].dtype == dtype, name
            assert _rel(got[name], ref[name]) <= LOW_TOL[dtype], name


def test_float64_matches_torch_tightly():
    k, s, d = (5, 3), (2, 1), (2, 1)
    for mode in MODES:
        t = _problem(2, 8, 2, (10, 9), k, s, (1, 2), d, torch.float64)
        got = _all_results(cb, t, k, s, (1, 2), d, mode)
        ref = _all_results(tb, t, k, s, (1, 2), d, mode)
        for name in ref:
            assert _rel(got[name], ref[name]) <= 1e-12, name


# -- indexing -----------------------------------------------------------------
def test_forced_int64_equals_int32(monkeypatch):
    widths = []
    real_launch = cb._launch

    def spy(kernel, ref, total, wide, *args):
        widths.append(wide)
        return real_launch(kernel, ref, total, wide, *args)

    monkeypatch.setattr(cb, '_launch', spy)
    k, s, d = (7, 7), (2, 2), (1, 2)
    p = _same(k, d)
    for dtype, mode in itertools.product(
        (torch.float32, torch.float16), MODES
    ):
        t = _problem(2, 16, 2, (13, 15), k, s, p, d, dtype)
        monkeypatch.setattr(cb, 'FORCE_INT64', False)
        narrow = _all_results(cb, t, k, s, p, d, mode)
        assert not any(widths)
        widths.clear()
        monkeypatch.setattr(cb, 'FORCE_INT64', True)
        wide = _all_results(cb, t, k, s, p, d, mode)
        assert widths and all(widths)
        widths.clear()
        for name in narrow:
            assert torch.equal(narrow[name], wide[name]), (name, dtype)


def test_outputs_beyond_2_31_elements_use_64_bit_indices():
    # subtraction2 at C=16, k=7 on 1700^2 has 16*49*1700^2 ~ 2.27e9 > 2^31
    # output elements (4.5 GB in float16); the last channel lies beyond
    # 2^31 and must equal the torch path on that channel alone
    free, _ = torch.cuda.mem_get_info()
    if free < 16 * 2**30:
        pytest.skip('needs 16 GiB of free GPU memory')
    k, s, d = (7, 7), (1, 1), (1, 1)
    p = _same(k, d)
    conf = (k, s, p, d, 'reflect')
    gen = torch.Generator(device=DEV).manual_seed(0)
    x1 = torch.randn(1, 16, 1700, 1700, generator=gen, device=DEV).half()
    x2 = torch.randn(1, 16, 1700, 1700, generator=gen, device=DEV).half()
    assert cb._wide(16 * 49 * 1700 * 1700)
    out = cb.subtraction2_forward(x1, x2, *conf)
    assert out.numel() > 2**31
    ref = tb.subtraction2_forward(x1[:, -1:], x2[:, -1:], *conf)
    assert torch.equal(out[:, -1:], ref)
    # backward reads grad_out beyond 2^31 as well
    go = out  # any values; reuse the buffer to save memory
    g1, g2 = cb.subtraction2_backward(go, x1.shape, *conf, True, True)
    r1, r2 = tb.subtraction2_backward(
        go[:, -1:].contiguous(), (1, 1, 1700, 1700), *conf, True, True
    )
    assert _rel(g1[:, -1:], r1) <= LOW_TOL[torch.float16]
    assert _rel(g2[:, -1:], r2) <= LOW_TOL[torch.float16]


# -- compilation, streams, devices --------------------------------------------
def test_no_recompiles_across_shapes_and_batch_sizes():
    k, s, d = (3, 3), (1, 1), (1, 1)
    p = _same(k, d)
    for dtype in (torch.float32, torch.float64, torch.float16, torch.bfloat16):
        t = _problem(1, 8, 1, (6, 5), k, s, p, d, dtype)
        _all_results(cb, t, k, s, p, d, 'reflect')
    count = cb.compile_count()
    assert 1 <= count <= 4 * torch.cuda.device_count()
    for n, hw, (k, s, d), mode in itertools.product(
        (1, 3, 8), ((6, 5), (17, 23)), CASES[::5], MODES
    ):
        p = _same(k, d)
        if mode == 'reflect' and max(p) >= min(hw):
            continue
        for dtype in (torch.float32, torch.float16):
            t = _problem(n, 16, 4, hw, k, s, p, d, dtype)
            _all_results(cb, t, k, s, p, d, mode)
    assert cb.compile_count() == count


def test_current_stream_is_honoured():
    k, s, d = (7, 7), (1, 1), (1, 1)
    p = _same(k, d)
    t = _problem(4, 64, 8, (56, 56), k, s, p, d, torch.float32)
    ref = _all_results(cb, t, k, s, p, d, 'reflect')  # also compiles
    torch.cuda.synchronize()
    side = torch.cuda.Stream()
    with torch.cuda.stream(side):
        # the inputs are NaN until a copy that waits behind a long sleep
        # on `side`; kernels on any other stream would read the NaNs
        delayed = {
            key: torch.full_like(v, float('nan')) for key, v in t.items()
        }
        torch.cuda._sleep(1_000_000_000)  # ~0.5 s
        for key, v in t.items():
            delayed[key].copy_(v)
        got = _all_results(cb, delayed, k, s, p, d, 'reflect')
        assert not side.query(), 'the host waited for the GPU'
    side.synchronize()
    for name in ref:
        assert torch.equal(got[name], ref[name]), name


@pytest.mark.skipif(
    torch.cuda.device_count() < 2, reason='needs two CUDA devices'
)
def test_tensor_device_is_honoured():
    k, s, d = (3, 3), (1, 1), (1, 1)
    p = _same(k, d)
    t = _problem(2, 8, 2, (9, 7), k, s, p, d, torch.float32)
    ref = _all_results(cb, t, k, s, p, d, 'reflect')
    other = {key: v.to('cuda:1') for key, v in t.items()}
    with torch.cuda.device(0):
        got = _all_results(cb, other, k, s, p, d, 'reflect')
    for name in ref:
        assert got[name].device == torch.device('cuda:1')
        assert _rel(got[name].cpu(), ref[name].cpu()) <= 1e-6, name


# -- determinism and the public API -------------------------------------------
def test_repeated_backward_is_bitwise_equal():
    k, s, d = (7, 7), (2, 2), (1, 1)
    p = _same(k, d)
    for dtype in (torch.float32, torch.float16):
        t = _problem(4, 64, 8, (57, 55), k, s, p, d, dtype)
        first = _all_results(cb, t, k, s, p, d, 'reflect')
        for _ in range(3):
            again = _all_results(cb, t, k, s, p, d, 'reflect')
            for name in first:
                assert torch.equal(first[name], again[name]), name


def test_public_api_uses_cupy_and_passes_gradcheck():
    shared.ops.set_backend('cupy')
    gen = torch.Generator(device=DEV).manual_seed(0)

    def rand(*shape):
        return torch.randn(
            *shape, generator=gen, device=DEV, dtype=torch.float64,
            requires_grad=True,
        )  # fmt: skip

    for mode in MODES:
        x, x2 = rand(2, 4, 6, 5), rand(2, 4, 6, 5)
        w = rand(2, 2, 9, 30)
        conf = dict(kernel_size=3, stride=1, padding=1, dilation=1)
        y = shared.ops.aggregation(x, w, **conf, pad_mode=mode)
        assert torch.equal(
            y,
            cb.aggregation_forward(
                x.detach(), w.detach(), (3, 3), (1, 1), (1, 1), (1, 1), mode
            ),
        )
        assert torch.autograd.gradcheck(
            lambda a, b, m=mode, c=conf: shared.ops.aggregation(
                a, b, **c, pad_mode=m
            ),
            (x, w),
        )
        assert torch.autograd.gradcheck(
            lambda a, m=mode, c=conf: shared.ops.subtraction(
                a, **c, pad_mode=m
            ),
            (x,),
        )
        assert torch.autograd.gradcheck(
            lambda a, b, m=mode, c=conf: shared.ops.subtraction2(
                a, b, **c, pad_mode=m
            ),
            (x, x2),
        )


def test_benchmark_quick_passes_on_gpu():
    proc = run_tool(
        ['tools/analysis/benchmark_san_ops.py', '--device', 'cuda', '--quick'],
        timeout=600,
    )
    assert 'cupy' in proc.output
