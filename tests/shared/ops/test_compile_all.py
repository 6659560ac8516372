"""The SAN CUDA kernel sources: NVRTC compile check and CPU emulation.

No GPU or driver is needed. ``compile_all`` compiles every kernel x dtype x
index width to PTX through CuPy's NVRTC bindings (spec §6 item 7); with
``CI=true`` a missing CuPy/NVRTC fails instead of skipping. The host test
compiles the same ``.cu`` sources as C++ (CUDA keywords shimmed, the
grid-stride loops run by a fake grid) and checks every kernel's semantics
against an ``F.unfold`` reference, so the kernels' index logic is tested
on CPU as well (skipped without a C++ compiler).
"""

from __future__ import annotations

import ctypes
import itertools
import os
import random
import re
import shutil
import subprocess

import pytest
import torch
import torch.nn.functional as F

import shared.ops
from shared.ops import compile as kernels_src

KERNELS = {
    # name: (tensor pointers, has the Cw argument)
    'sa_aggregation_fwd': (3, True),
    'sa_aggregation_grad_input': (3, True),
    'sa_aggregation_grad_input_atomic': (3, True),
    'sa_aggregation_grad_weight': (3, True),
    'sa_subtraction_fwd': (2, False),
    'sa_subtraction_grad': (2, False),
    'sa_subtraction2_fwd': (3, False),
    'sa_subtraction2_grad1': (2, False),
    'sa_subtraction2_grad2': (2, False),
}
CUDA_TYPES = ('float', 'double', 'sa_half', 'sa_bf16')
EXPECTED = sorted(
    f'{k}<{t},{i}>'
    for k in KERNELS
    for t in CUDA_TYPES
    for i in ('int', 'long long')
)


@pytest.fixture(scope='module')
def nvrtc():
    """CuPy's NVRTC module; missing: fail under CI=true, else skip."""
    try:
        return kernels_src.load_nvrtc()
    except RuntimeError as e:
        if os.environ.get('CI', '').lower() in ('1', 'true', 'yes'):
            pytest.fail(f'CI=true, but the NVRTC kernel check cannot run: {e}')
        pytest.skip(f'CuPy/NVRTC unavailable: {e}')


# -- NVRTC --------------------------------------------------------------------
@pytest.mark.parametrize('arch', ['compute_75', 'compute_90'])
def test_compile_all_lists_every_kernel_dtype_and_width(nvrtc, arch):
    names = shared.ops.compile_all(arch)
    assert names == EXPECTED
    assert len(names) == 9 * 4 * 2


@pytest.mark.parametrize('arch', ['compute_70', 'compute_52', 'sm_80', '80'])
def test_compile_all_rejects_old_or_malformed_arch(arch):
    with pytest.raises(ValueError, match='compute_75'):
        shared.ops.compile_all(arch)


def test_compile_error_carries_the_nvrtc_log(nvrtc, monkeypatch):
    real = kernels_src.kernel_source

    def broken(dtype):
        source, names = real(dtype)
        return source + '\n__device__ int sa_broken( { return 0; }\n', names

    monkeypatch.setattr(kernels_src, 'kernel_source', broken)
    with pytest.raises(RuntimeError, match='NVRTC log') as info:
        shared.ops.compile_all('compute_80')
    message = str(info.value)
    assert 'sa_kernels_float32.cu' in message
    assert 'error' in message and 'compute_80' in message


def test_missing_nvrtc_names_the_pip_packages(monkeypatch):
    monkeypatch.setattr(kernels_src, 'load_nvrtc', _raise_missing)
    with pytest.raises(RuntimeError, match='cupy-cuda13x') as info:
        shared.ops.compile_all('compute_80')
    assert 'nvidia-cuda-nvrtc' in str(info.value)


def _raise_missing():
    raise RuntimeError(kernels_src._INSTALL_HINT)


def _entry_params(ptx: str, symbol: str) -> list[str]:
    start = ptx.index(f'.entry {symbol}(')
    block = ptx[start : ptx.index(')', start)]
    return re.findall(r'\.param \.(\w+)', block)


def test_sizes_are_runtime_arguments_in_both_widths(nvrtc):
    # every size, hyper-parameter and the pad mode is a kernel parameter:
    # pointers (u64), then Cw?/N/C/H/W/Ho/Wo/kh/kw/sh/sw/ph/pw/dh/dw in the
    # index width (u32 for int, u64 for long long), then the int pad mode
    source, names = kernels_src.kernel_source('float32')
    ptx, lowered = kernels_src.compile_ptx(nvrtc, source, names, 'compute_80')
    for kernel, (pointers, has_cw) in KERNELS.items():
        n_sizes = 14 + has_cw
        for index, width in (('int', 'u32'), ('long long', 'u64')):
            params = _entry_params(ptx, lowered[f'{kernel}<float,{index}>'])
            assert params == (
                ['u64'] * pointers + [width] * n_sizes + ['u32']
            ), (kernel, index, params)


def test_sources_have_no_include_and_no_baked_constants():
    files = sorted(kernels_src.KERNEL_DIR.glob('*.cu*'))
    assert {f.name for f in files} == set(kernels_src.SOURCE_FILES)
    for f in files:
        text = f.read_text()
        assert not re.search(r'^\s*#\s*include', text, re.M), f
        # the only macros are the SA_ loop/parameter helpers
        for name in re.findall(r'^\s*#\s*define\s+(\w+)', text, re.M):
            assert name.startswith('SA_'), (f, name)
    # one source for every dtype: nothing is substituted per dtype or shape
    sources = {kernels_src.kernel_source(d)[0] for d in kernels_src.DTYPES}
    assert len(sources) == 1
    source = sources.pop()
    kernels = re.findall(r'__global__\s+void\s+(\w+)\s*\(', source)
    assert sorted(kernels) == sorted(KERNELS)
    assert kernels_src.KERNELS == tuple(KERNELS)
    names = kernels_src.kernel_source('float16')[1]
    assert sorted(names) == [n for n in EXPECTED if '<sa_half,' in n]


def test_templated_reference_source_compiles(nvrtc):
    # the benchmark's per-shape re-creation of the original kernels
    from shared.ops.cupy_backend import templated_reference

    body = (
        'sa_aggregation_fwd_impl<float, int>(a, b, out, 2, 2, 16, 7, 9, 7, '
        '9, 3, 3, 1, 1, 1, 1, 1, 1, 1)'
    )
    source = templated_reference.source(body, 'float32')
    ptx, _ = kernels_src.compile_ptx(nvrtc, source, [], 'compute_80')
    assert '.entry sa_templated(' in ptx


# -- host emulation -----------------------------------------------------------
SHIM = r"""
#include <cmath>
#include <cstring>
struct sa_dim3 { unsigned x, y, z; };
static sa_dim3 threadIdx = {0, 0, 0}, blockIdx = {0, 0, 0};
static sa_dim3 blockDim = {1, 1, 1}, gridDim = {1, 1, 1};
#define __global__
#define __device__
#define __forceinline__ inline
static inline float __uint_as_float(unsigned u) {
  float f; std::memcpy(&f, &u, 4); return f;
}
static inline unsigned __float_as_uint(float f) {
  unsigned u; std::memcpy(&u, &f, 4); return u;
}
static inline float atomicAdd(float* p, float v) {
  float o = *p; *p = o + v; return o;
}
static inline double atomicAdd(double* p, double v) {
  double o = *p; *p = o + v; return o;
}
static inline float sa_host_half_to_float(unsigned short h) {
  unsigned e = (h >> 10) & 31u, m = h & 1023u;
  float v = e == 0 ? std::ldexp((float)m, -24)
          : e == 31 ? (m ? NAN : INFINITY)
          : std::ldexp((float)(m | 1024u), (int)e - 25);
  return (h & 0x8000u) ? -v : v;
}
static inline unsigned short sa_host_float_to_half(float f) {
  unsigned short s = std::signbit(f) ? 0x8000 : 0;
  double a = std::fabs((double)f);
  if (std::isnan(f)) return s | 0x7e00;
  if (a >= 65520.0) return s | 0x7c00;
  if (a < 6.103515625e-05)
    return s | (unsigned short)std::nearbyint(a * 16777216.0);
  int e; std::frexp(a, &e);
  unsigned m = (unsigned)std::nearbyint(std::ldexp(a, 11 - e));
  int E = e + 14;
  if (m == 2048) { m = 1024; ++E; }
  return s | (unsigned short)((E << 10) | (m - 1024));
}
"""
HOST_TYPES = {
    'float': torch.float32,
    'double': torch.float64,
    'sa_half': torch.float16,
    'sa_bf16': torch.bfloat16,
}


def _host_wrappers() -> str:
    out = []
    for kernel, (pointers, has_cw) in KERNELS.items():
        for t, index in itertools.product(HOST_TYPES, ('int', 'long long')):
            args = [f'(const {t}*)p[{i}]' for i in range(pointers - 1)]
            last = (
                f'(typename sa_acc<{t}>::type*)'
                if kernel.endswith('_atomic')
                else f'({t}*)'
            )
            args.append(f'{last}p[{pointers - 1}]')
            args += [f'({index})v[{i}]' for i in range(14 + has_cw)]
            args.append('(int)v[15]')
            suffix = '64' if index == 'long long' else '32'
            out.append(
                f'extern "C" void run_{kernel}_{t}_{suffix}(void** p, '
                f'long long* v, unsigned nb, unsigned nt) {{\n'
                f'  blockDim.x = nt; gridDim.x = nb;\n'
                f'  for (unsigned b = 0; b < nb; ++b)\n'
                f'    for (unsigned t = 0; t < nt; ++t) {{\n'
                f'      blockIdx.x = b; threadIdx.x = t;\n'
                f'      {kernel}<{t}, {index}>({", ".join(args)});\n'
                f'    }}\n}}\n'
            )
    return '\n'.join(out)


@pytest.fixture(scope='module')
def host_kernels(tmp_path_factory):
    """The kernel sources compiled for the CPU (a ctypes library)."""
    compiler = shutil.which('g++') or shutil.which('c++')
    if compiler is None:
        pytest.skip('no C++ compiler for the host emulation of the kernels')
    tmp = tmp_path_factory.mktemp('sa_host')
    source, _ = kernels_src.kernel_source('float32')
    cpp = tmp / 'sa_host.cpp'
    cpp.write_text(SHIM + source + _host_wrappers())
    lib = tmp / 'sa_host.so'
    proc = subprocess.run(
        [compiler, '-O1', '-std=c++17', '-shared', '-fPIC', '-o', str(lib),
         str(cpp)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-4000:]
    return ctypes.CDLL(str(lib))


def _host_call(lib, kernel, tensors, ints, reflect, wide, grid):
    t = {v: k for k, v in HOST_TYPES.items()}[tensors[0].dtype]
    fn = getattr(lib, f'run_{kernel}_{t}_{64 if wide else 32}')
    ptrs = (ctypes.c_void_p * len(tensors))(*[x.data_ptr() for x in tensors])
    values = list(ints) + [0] * (15 - len(ints)) + [reflect]
    fn(ptrs, (ctypes.c_longlong * 16)(*values), *grid)


def _out_size(n, k, s, p, d):
    return (n + 2 * p - d * (k - 1) - 1) // s + 1


def _unfold(x, k, s, p, d, reflect):
    mode = 'reflect' if reflect else 'constant'
    xp = F.pad(x, (p[1], p[1], p[0], p[0]), mode=mode)
    cols = F.unfold(xp, k, dilation=d, stride=s)
    return xp, cols.view(x.shape[0], x.shape[1], k[0] * k[1], cols.shape[-1])


def _ref_aggregation(x, w, k, s, p, d, reflect, out):
    n, c = x.shape[:2]
    _, cols = _unfold(x, k, s, p, d, reflect)
    y = (cols * w.repeat(1, c // w.shape[1], 1, 1)).sum(2)
    return y.view(n, c, *out)


def _ref_subtraction2(x1, x2, k, s, p, d, reflect, out):
    xp1, _ = _unfold(x1, k, s, p, d, reflect)
    _, cols = _unfold(x2, k, s, p, d, reflect)
    c0, c1 = (k[0] - 1) // 2 * d[0], (k[1] - 1) // 2 * d[1]
    centre = xp1[
        :,
        :,
        c0 : c0 + s[0] * (out[0] - 1) + 1 : s[0],
        c1 : c1 + s[1] * (out[1] - 1) + 1 : s[1],
    ]
    return centre.reshape(*x1.shape[:2], 1, -1) - cols


def _check(name, got, expected, tol):
    assert got.dtype in HOST_TYPES.values()
    err = (got.double() - expected.double()).abs().max().item()
    scale = max(expected.abs().max().item(), 1.0)
    assert err <= tol * scale, f'{name}: max error {err} (scale {scale})'


def _host_case(lib, n, c, cw, hw, k, s, p, d, reflect, dtype, wide, grid):
    tol = {
        torch.float64: 1e-12,
        torch.float32: 1e-5,
        torch.float16: 1e-2,
        torch.bfloat16: 4e-2,
    }[dtype]
    out = (
        _out_size(hw[0], k[0], s[0], p[0], d[0]),
        _out_size(hw[1], k[1], s[1], p[1], d[1]),
    )
    kk, ll = k[0] * k[1], out[0] * out[1]
    geo = [n, c, *hw, *out, *k, *s, *p, *d]
    tag = f'{dtype} wide={wide} n{n} c{c}/{cw} {hw} k{k} s{s} p{p} d{d}'
    tag += f' reflect={reflect}'

    def rand(*shape):
        return torch.randn(*shape, dtype=torch.float64).to(dtype)

    def call(kernel, tensors, ints):
        _host_call(lib, kernel, tensors, ints, reflect, wide, grid)
        return tensors[-1]

    x, x2 = rand(n, c, *hw), rand(n, c, *hw)
    w, gy, go = rand(n, cw, kk, ll), rand(n, c, *out), rand(n, c, kk, ll)
    # references in float64 from the (rounded) inputs
    x64 = x.double().requires_grad_()
    x264 = x2.double().requires_grad_()
    w64 = w.double().requires_grad_()
    y64 = _ref_aggregation(x64, w64, k, s, p, d, reflect, out)
    gx64, gw64 = torch.autograd.grad(y64, (x64, w64), gy.double())
    o64 = _ref_subtraction2(x64, x264, k, s, p, d, reflect, out)
    g164, g264 = torch.autograd.grad(o64, (x64, x264), go.double())
    s64 = _ref_subtraction2(x64, x64, k, s, p, d, reflect, out)
    (g64,) = torch.autograd.grad(s64, (x64,), go.double())

    def nan(*shape, dt=dtype):
        return torch.full(shape, float('nan'), dtype=dt)

    agg = [cw, *geo]
    _check(
        f'aggregation fwd {tag}',
        call('sa_aggregation_fwd', [x, w, nan(n, c, *out)], agg),
        y64,
        tol,
    )
    _check(
        f'aggregation grad_input {tag}',
        call('sa_aggregation_grad_input', [gy, w, nan(*x.shape)], agg),
        gx64,
        tol,
    )
    acc = torch.zeros(
        x.shape,
        dtype=torch.float64 if dtype == torch.float64 else torch.float32,
    )
    _check(
        f'aggregation grad_input atomic {tag}',
        call('sa_aggregation_grad_input_atomic', [gy, w, acc], agg),
        gx64,
        tol,
    )
    _check(
        f'aggregation grad_weight {tag}',
        call('sa_aggregation_grad_weight', [gy, x, nan(*w.shape)], agg),
        gw64,
        tol,
    )
    _check(
        f'subtraction fwd {tag}',
        call('sa_subtraction_fwd', [x, nan(n, c, kk, ll)], geo),
        s64,
        tol,
    )
    _check(
        f'subtraction grad {tag}',
        call('sa_subtraction_grad', [go, nan(*x.shape)], geo),
        g64,
        tol,
    )
    _check(
        f'subtraction2 fwd {tag}',
        call('sa_subtraction2_fwd', [x, x2, nan(n, c, kk, ll)], geo),
        o64,
        tol,
    )
    _check(
        f'subtraction2 grad1 {tag}',
        call('sa_subtraction2_grad1', [go, nan(*x.shape)], geo),
        g164,
        tol,
    )
    _check(
        f'subtraction2 grad2 {tag}',
        call('sa_subtraction2_grad2', [go, nan(*x.shape)], geo),
        g264,
        tol,
    )


def test_host_kernels_match_unfold_reference_grid(host_kernels):
    # the §6 item 1 grid (float64, H != W, both modes, interleaved Cw), with
    # 'same' and other paddings; 32/64-bit indices and odd fake grids so
    # the grid-stride loops really stride
    rng = random.Random(0)
    cases = 0
    for k, s, d, reflect, hw, cw in itertools.product(
        (1, 3, 5, 7), (1, 2, 4), (1, 2), (0, 1),
        ((7, 6), (8, 5), (6, 9)), (4, 2, 1),
    ):  # fmt: skip
        for p in sorted({0, d * (k - 1) // 2, 2}):
            if reflect and p >= min(hw):
                continue
            if min(_out_size(n, k, s, p, d) for n in hw) < 1:
                continue
            _host_case(
                host_kernels, 2, 4, cw, hw, (k, k), (s, s), (p, p), (d, d),
                reflect, torch.float64, rng.random() < 0.5,
                (rng.randint(1, 3), rng.randint(1, 5)),
            )  # fmt: skip
            cases += 1
    # k=7 on 7x7 and upstream's self-test case (k5 s4 d2 p4, N2 C8 Cw4)
    for reflect in (0, 1):
        _host_case(
            host_kernels, 2, 8, 1, (7, 7), (7, 7), (1, 1), (3, 3), (1, 1),
            reflect, torch.float64, False, (2, 3),
        )  # fmt: skip
        for hw in ((9, 9), (5, 5)):
            if reflect and hw[0] <= 4:
                continue
            _host_case(
                host_kernels, 2, 8, 4, hw, (5, 5), (4, 4), (4, 4), (2, 2),
                reflect, torch.float64, True, (3, 2),
            )  # fmt: skip
            cases += 1
    assert cases > 300


def test_host_kernels_anisotropic_and_low_precision(host_kernels):
    rng = random.Random(1)
    torch.manual_seed(1)
    dtypes = list(HOST_TYPES.values())
    for i in range(120):
        k = (rng.choice((1, 2, 3, 5)), rng.choice((1, 3, 4, 7)))
        s = (rng.randint(1, 3), rng.randint(1, 3))
        d = (rng.randint(1, 3), rng.randint(1, 3))
        hw = (rng.randint(1, 10), rng.randint(1, 10))
        reflect = rng.randint(0, 1)
        p = (rng.randint(0, 4), rng.randint(0, 4))
        if reflect:
            p = (min(p[0], hw[0] - 1), min(p[1], hw[1] - 1))
        if min(_out_size(hw[j], k[j], s[j], p[j], d[j]) for j in (0, 1)) < 1:
            continue
        cw = rng.choice((1, 2, 3))
        _host_case(
            host_kernels, rng.randint(1, 2), cw * rng.randint(1, 3), cw, hw,
            k, s, p, d, reflect, dtypes[i % 4], rng.random() < 0.5,
            (rng.randint(1, 4), rng.randint(1, 6)),
        )  # fmt: skip
    # a SAN-like case in every dtype and width
    for dtype, wide, reflect in itertools.product(
        dtypes, (False, True), (0, 1)
    ):
        _host_case(
            host_kernels, 2, 16, 2, (9, 11), (7, 7), (1, 1), (3, 3), (1, 1),
            reflect, dtype, wide, (4, 32),
        )  # fmt: skip


def test_host_16_bit_stores_round_to_nearest_even(host_kernels):
    # aggregation with a 1x2 window and unit weights computes hi + lo in
    # float and stores it as 16 bit: that store must equal torch's
    # round-to-nearest-even cast, ties and overflow to inf included (on
    # the host, half uses the shim's conversion; bfloat16 uses the
    # production bit code)
    gen = torch.Generator().manual_seed(2)
    scale = 10.0 ** torch.randint(-8, 5, (4000,), generator=gen)
    values = torch.randn(4000, generator=gen, dtype=torch.float64) * scale
    for dtype, ties in (
        (torch.float16, [(1.0, 2**-11), (1.0, 3 * 2**-11), (65504.0, 16.0),
                         (-65504.0, -8.0), (2**-24, 2**-25)]),
        (torch.bfloat16, [(1.0, 2**-8), (1.0, 3 * 2**-8), (3.0e38, 3.0e38),
                          (-1.0, -(2**-8))]),
    ):  # fmt: skip
        v = values.float()
        hi = v.to(dtype)
        lo = (v - hi.float()).to(dtype)
        hi = torch.cat([hi, torch.tensor([t[0] for t in ties], dtype=dtype)])
        lo = torch.cat([lo, torch.tensor([t[1] for t in ties], dtype=dtype)])
        n = hi.numel()
        x = torch.stack([hi, lo], 1).view(n, 1, 1, 2).contiguous()
        w = torch.ones(n, 1, 2, 1, dtype=dtype)
        y = torch.full((n, 1, 1, 1), float('nan'), dtype=dtype)
        geo = [1, n, 1, 1, 2, 1, 1, 1, 2, 1, 1, 0, 0, 1, 1]
        _host_call(
            host_kernels, 'sa_aggregation_fwd', [x, w, y], geo, 0, False,
            (3, 7),
        )  # fmt: skip
        expected = (hi.float() + lo.float()).to(dtype)
        assert torch.equal(y.view(-1), expected), dtype
        assert expected[-len(ties) :].isinf().any()


class _FakeCupy:
    """Just enough of CuPy for cupy_backend, running the host kernels."""

    def __init__(self, lib):
        self.lib, self.launches = lib, []
        fake = self

        class Device:
            def __init__(self, index):
                self.compute_capability = '80'

            def __enter__(self):
                return self

            def __exit__(self, *exc):
                return False

        class RawModule:
            def __init__(self, code, options, name_expressions):
                self.names = list(name_expressions)

            def compile(self):
                pass

            def get_function(self, name):
                assert name in self.names
                return lambda *a, **kw: fake.launch(name, *a, **kw)

        self.RawModule = RawModule
        self.cuda = type('cuda', (), {'Device': Device})

    def launch(self, name, grid, block, args, stream=None):
        import numpy as np

        assert stream == 'torch-current-stream'
        kernel, t, index = re.fullmatch(r'(\w+)<(\w+),(.+)>', name).groups()
        pointers = KERNELS[kernel][0]
        width = np.int64 if index == 'long long' else np.int32
        assert all(type(a) is np.uintp for a in args[:pointers])
        assert all(type(a) is width for a in args[pointers:-1]), name
        assert type(args[-1]) is np.int32
        assert len(args) == pointers + 14 + KERNELS[kernel][1] + 1
        assert grid[0] >= 1 and block[0] == 256
        self.launches.append(name)
        values = [int(a) for a in args[pointers:-1]]
        values += [0] * (15 - len(values)) + [int(args[-1])]
        fn = getattr(
            self.lib, f'run_{kernel}_{t}_{64 if index != "int" else 32}'
        )
        fn(
            (ctypes.c_void_p * pointers)(*[int(a) for a in args[:pointers]]),
            (ctypes.c_longlong * 16)(*values),
            min(grid[0], 3),  # a smaller fake grid: the loops still stride
            7,
        )


def test_cupy_backend_glue_on_host(host_kernels, monkeypatch):
    # cupy_backend's argument marshalling, output allocation, index-width
    # choice and module caching, run on CPU tensors through the host build
    from shared.ops import cupy_backend as cb

    fake = _FakeCupy(host_kernels)
    monkeypatch.setattr(cb, '_cupy', lambda: fake)
    monkeypatch.setattr(
        cb, '_stream', lambda cupy, device: 'torch-current-stream'
    )
    monkeypatch.setattr(cb, '_kernels', {})
    monkeypatch.setattr(cb, '_archs', {})
    monkeypatch.setattr(cb, '_compiles', 0)
    torch.manual_seed(3)
    for dtype, force64, n, reflect in itertools.product(
        HOST_TYPES.values(), (False, True), (1, 3), (0, 1)
    ):
        monkeypatch.setattr(cb, 'FORCE_INT64', force64)
        tol = {
            torch.float64: 1e-12,
            torch.float32: 1e-5,
            torch.float16: 1e-2,
            torch.bfloat16: 4e-2,
        }[dtype]
        mode = 'reflect' if reflect else 'zero'
        k, s, d, hw = (3, 5), (2, 1), (1, 2), (7, 9)
        p = ((k[0] - 1) // 2 * d[0], (k[1] - 1) // 2 * d[1])
        conf = (k, s, p, d, mode)
        out = tuple(_out_size(hw[j], k[j], s[j], p[j], d[j]) for j in (0, 1))
        x = torch.randn(n, 8, *hw, dtype=torch.float64)
        x2 = torch.randn(n, 8, *hw, dtype=torch.float64)
        w = torch.randn(n, 2, k[0] * k[1], out[0] * out[1])
        gy = torch.randn(n, 8, *out, dtype=torch.float64)
        go = torch.randn(n, 8, k[0] * k[1], out[0] * out[1])
        xs, x2s, ws, gys, gos = (
            t.to(dtype) for t in (x, x2, w, gy, go)
        )  # fmt: skip
        x64, x264, w64 = (
            t.double().requires_grad_() for t in (xs, x2s, ws)
        )  # fmt: skip
        y64 = _ref_aggregation(x64, w64, k, s, p, d, reflect, out)
        gx64, gw64 = torch.autograd.grad(y64, (x64, w64), gys.double())
        o64 = _ref_subtraction2(x64, x264, k, s, p, d, reflect, out)
        g164, g264 = torch.autograd.grad(o64, (x64, x264), gos.double())
        s64 = _ref_subtraction2(x64, x64, k, s, p, d, reflect, out)
        (g64,) = torch.autograd.grad(s64, (x64,), gos.double())

        _check('agg', cb.aggregation_forward(xs, ws, *conf), y64, tol)
        for atomic in (False, True):
            gx, gw = cb.aggregation_backward(
                gys, xs, ws, *conf, True, True, atomic
            )
            assert gx.dtype == gw.dtype == dtype
            _check('agg gx', gx, gx64, tol)
            _check('agg gw', gw, gw64, tol)
        none = cb.aggregation_backward(gys, xs, ws, *conf, False, False)
        assert none == (None, None)
        _check('sub', cb.subtraction_forward(xs, *conf), s64, tol)
        g = cb.subtraction_backward(gos, xs.shape, *conf)
        _check('sub g', g, g64, tol)
        _check('sub2', cb.subtraction2_forward(xs, x2s, *conf), o64, tol)
        g1, g2 = cb.subtraction2_backward(gos, xs.shape, *conf, True, True)
        _check('sub2 g1', g1, g164, tol)
        _check('sub2 g2', g2, g264, tol)
        g1, g2 = cb.subtraction2_backward(gos, xs.shape, *conf, False, True)
        assert g1 is None
        _check('sub2 g2 only', g2, g264, tol)
    # 64-bit kernels exactly when forced; one module per dtype, none per
    # shape or batch size
    assert {'long long' in n for n in fake.launches} == {False, True}
    assert cb.compile_count() == 4
    # N = 0 launches nothing and returns empty results
    before = len(fake.launches)
    empty = cb.subtraction_forward(
        torch.randn(0, 2, 5, 5), (3, 3), (1, 1), (1, 1), (1, 1), 'reflect'
    )
    assert empty.shape == (0, 2, 9, 25) and len(fake.launches) == before


@pytest.mark.parametrize('dtype', kernels_src.DTYPES)
def test_sm75_cubin_with_cupy_options(nvrtc, dtype):
    """Assemble to SASS as CuPy's RawModule does (-arch=sm_XX, -ftz=true).

    PTX alone leaves the inline asm of the half conversions unchecked;
    building a cubin runs ptxas over it, still without a GPU or driver.
    """
    source, names = kernels_src.kernel_source(dtype)
    prog = nvrtc.createProgram(source, f'cubin_{dtype}.cu', [], [])
    try:
        for name in names:
            nvrtc.addNameExpression(prog, name)
        options = [
            '--gpu-architecture=sm_75',
            '-ftz=true',
            *kernels_src.COMPILE_OPTIONS,
        ]
        nvrtc.compileProgram(prog, options)
        cubin = nvrtc.getCUBIN(prog)
    finally:
        nvrtc.destroyProgram(prog)
    assert len(cubin) > 1000
    assert bytes(cubin[:4]) == b'\x7fELF'
