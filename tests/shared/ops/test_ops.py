"""SAN ops on the PyTorch path: exactness, gradients, semantics, errors.

Every op is checked in float64 against two independent references of
``shared.ops.reference``: the ``nn.Unfold`` formulation (forward, and
gradients by autograd through it) over the whole grid of kernel size,
stride, dilation, pad mode and weight sharing, and plain per-index loops
(forward and explicit adjoints) on a curated subset. H != W everywhere, so
a row/column mix-up (upstream's first reflect fold) cannot cancel out.
"""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F
from torch.autograd import gradcheck

from shared.ops import (
    Aggregation,
    Subtraction,
    Subtraction2,
    aggregation,
    backend,
    reference,
    set_atomic_backward,
    set_backend,
    subtraction,
    subtraction2,
    torch_backend,
)

F64 = torch.float64
ATOL = 1e-12
N, C = 2, 8
KERNELS = (1, 3, 5, 7)
STRIDES = (1, 2, 4)
DILATIONS = (1, 2)
MODES = ('zero', 'reflect')
CWS = (C, C // 2, C // 8)
SIZES = ((7, 6), (8, 5), (6, 9))


@pytest.fixture(autouse=True)
def _default_backend():
    set_backend(None)
    set_atomic_backward(None)
    yield
    set_backend(None)
    set_atomic_backward(None)


def pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


def out_size(hw, k, s, p, d):
    k, s, p, d = pair(k), pair(s), pair(p), pair(d)
    return tuple(
        (hw[i] + 2 * p[i] - d[i] * (k[i] - 1) - 1) // s[i] + 1
        for i in range(2)
    )


def same(k, d):
    k, d = pair(k), pair(d)
    return (d[0] * (k[0] - 1) // 2, d[1] * (k[1] - 1) // 2)


def valid(hw, k, s, p, d, mode) -> bool:
    ho, wo = out_size(hw, k, s, p, d)
    p = pair(p)
    if mode == 'reflect' and (p[0] >= hw[0] or p[1] >= hw[1]):
        return False
    return ho >= 1 and wo >= 1


def rand(*shape, dtype=F64, grad=True, seed=None):
    gen = torch.Generator().manual_seed(
        hash(shape) % 2**31 if seed is None else seed
    )
    t = torch.randn(*shape, generator=gen, dtype=F64).to(dtype)
    return t.requires_grad_(grad)


def agg_inputs(hw, k, s, p, d, cw, n=N, c=C, dtype=F64):
    ho, wo = out_size(hw, k, s, p, d)
    kk = pair(k)[0] * pair(k)[1]
    return (
        rand(n, c, *hw, dtype=dtype, seed=1),
        rand(n, cw, kk, ho * wo, dtype=dtype, seed=2),
    )


def grads(out, inputs, seed=3):
    g = rand(*out.shape, dtype=out.dtype, grad=False, seed=seed)
    return torch.autograd.grad(out, inputs, g), g


def assert_all_close(actual, expected, atol=ATOL):
    for a, e in zip(actual, expected, strict=True):
        assert a.shape == e.shape and a.dtype == e.dtype
        torch.testing.assert_close(a, e, rtol=0, atol=atol)


# -- 1. the whole grid against the unfold reference -----------------------
OPS = ('aggregation', 'subtraction', 'subtraction2')
GRID_SIZES = (*SIZES, (7, 7))  # k = 7 on 7x7 (every k elsewhere)


def _grid(op, hw):
    kernels = (7,) if hw == (7, 7) else KERNELS
    cws = CWS if op == 'aggregation' else (None,)
    return itertools.product(kernels, STRIDES, DILATIONS, MODES, cws)


def _run(op, hw, k, s, p, d, mode, cw, impl):
    """Output and input gradients of ``op`` via ``impl`` ('ops'/'unfold')."""
    if op == 'aggregation':
        inputs = agg_inputs(hw, k, s, p, d, cw)
    else:
        inputs = tuple(
            rand(N, C, *hw, seed=i + 1) for i in range(op.count('2') + 1)
        )
    fn = globals()[op] if impl == 'ops' else getattr(reference, f'{op}_{impl}')
    out = fn(*inputs, k, s, p, d, mode)
    return (out, *grads(out, inputs)[0])


@pytest.mark.parametrize('hw', GRID_SIZES, ids=str)
@pytest.mark.parametrize('op', OPS)
def test_matches_unfold_reference_on_grid(op, hw):
    checked = 0
    for k, s, d, mode, cw in _grid(op, hw):
        p = same(k, d)
        if not valid(hw, k, s, p, d, mode):
            with pytest.raises(ValueError, match='reflect'):
                _run(op, hw, k, s, p, d, mode, cw, 'ops')
            continue
        expected = _run(op, hw, k, s, p, d, mode, cw, 'unfold')
        actual = _run(op, hw, k, s, p, d, mode, cw, 'ops')
        assert_all_close(actual, expected)
        checked += 1
    assert checked >= 10


# aggregation takes any padding; pairs may differ per axis
AGG_EXTRA = [
    # hw, k, s, p, d, mode, cw
    ((7, 6), 3, 1, 0, 1, 'reflect', 4),
    ((8, 5), 3, 2, (2, 1), 1, 'reflect', 8),
    ((6, 9), (3, 5), (2, 1), (0, 3), (2, 1), 'zero', 1),
    ((7, 6), 3, 1, 8, 1, 'zero', 4),  # zero padding beyond the input
    ((6, 9), (1, 3), (1, 4), (0, 2), (1, 2), 'reflect', 2),
]
SUB_EXTRA = [
    ((7, 6), (3, 5), (2, 1), (1, 2), 1, 'reflect'),
    ((8, 5), (5, 1), 1, (4, 0), (2, 1), 'zero'),
    ((6, 9), 3, (1, 2), (1, 2), (1, 2), 'reflect'),
]


@pytest.mark.parametrize('case', AGG_EXTRA, ids=str)
def test_aggregation_any_padding_matches_unfold(case):
    hw, k, s, p, d, mode, cw = case
    expected = _run('aggregation', hw, k, s, p, d, mode, cw, 'unfold')
    assert_all_close(_run('aggregation', hw, k, s, p, d, mode, cw, 'ops'),
                     expected)  # fmt: skip


@pytest.mark.parametrize('case', SUB_EXTRA, ids=str)
@pytest.mark.parametrize('op', ('subtraction', 'subtraction2'))
def test_subtraction_pairs_match_unfold(op, case):
    hw, k, s, p, d, mode = case
    expected = _run(op, hw, k, s, p, d, mode, None, 'unfold')
    assert_all_close(_run(op, hw, k, s, p, d, mode, None, 'ops'), expected)


# -- 1. naive per-index loops (forward and explicit adjoints) -------------
NAIVE = [
    # hw, n, c, cw, k, s, p ('same' if None), d, mode
    ((7, 6), 2, 8, 8, 1, 1, None, 1, 'zero'),
    ((7, 6), 2, 8, 4, 3, 2, None, 2, 'reflect'),
    ((8, 5), 2, 8, 1, 5, 4, None, 1, 'reflect'),
    ((6, 9), 2, 8, 4, 5, 1, None, 2, 'zero'),
    ((6, 9), 2, 8, 1, 3, 4, None, 2, 'zero'),
    ((8, 5), 2, 8, 8, 3, 1, None, 1, 'reflect'),
    ((7, 7), 2, 8, 1, 7, 1, None, 1, 'reflect'),
    ((7, 7), 2, 8, 4, 7, 2, None, 1, 'zero'),
    ((7, 6), 2, 8, 8, 7, 4, None, 2, 'zero'),
    # upstream's self-test: k5 s4 d2 p4, N2 C8 Cw4 on 9x9 and 5x5
    ((9, 9), 2, 8, 4, 5, 4, 4, 2, 'reflect'),
    ((5, 5), 2, 8, 4, 5, 4, 4, 2, 'reflect'),
    ((9, 9), 2, 8, 4, 5, 4, 4, 2, 'zero'),
]


@pytest.mark.parametrize('case', NAIVE, ids=str)
def test_matches_naive_loops(case):
    hw, n, c, cw, k, s, p, d, mode = case
    p = same(k, d) if p is None else p
    conf = (k, s, p, d, mode)
    x, w = agg_inputs(hw, k, s, p, d, cw, n=n, c=c)
    y = aggregation(x, w, *conf)
    (gx, gw), gy = grads(y, (x, w))
    xd, wd = x.detach(), w.detach()
    assert_all_close(
        (y, gx, gw),
        (
            reference.aggregation_naive(xd, wd, *conf),
            *reference.aggregation_naive_grad(gy, xd, wd, *conf),
        ),
    )
    x2 = rand(n, c, *hw, seed=5)
    out = subtraction2(x, x2, *conf)
    (g1, g2), go = grads(out, (x, x2))
    assert_all_close(
        (out, g1, g2),
        (
            reference.subtraction2_naive(xd, x2.detach(), *conf),
            *reference.subtraction2_naive_grad(go, xd, x2.detach(), *conf),
        ),
    )
    out = subtraction(x, *conf)
    (gs,), go = grads(out, (x,))
    assert_all_close(
        (out, gs),
        (
            reference.subtraction_naive(xd, *conf),
            reference.subtraction_naive_grad(go, xd, *conf),
        ),
    )


# -- 2. gradcheck ---------------------------------------------------------
GRADCHECK = [
    # hw, k, s, d, fast_mode
    ((4, 3), 3, 1, 1, False),
    ((6, 5), 3, 2, 2, True),
]


@pytest.mark.parametrize('mode', MODES)
@pytest.mark.parametrize('case', GRADCHECK, ids=str)
def test_gradcheck(case, mode):
    hw, k, s, d, fast = case
    p = same(k, d)
    x, w = agg_inputs(hw, k, s, p, d, cw=2, n=1, c=4)
    x2 = rand(1, 4, *hw, seed=7)
    conf = (k, s, p, d, mode)
    for fn, inputs in (
        (lambda a, b: aggregation(a, b, *conf), (x, w)),
        (lambda a, b: subtraction2(a, b, *conf), (x, x2)),
        (lambda a: subtraction(a, *conf), (x,)),
        # one input at a time (the other without grad)
        (lambda b: aggregation(x.detach(), b, *conf), (w,)),
        (lambda a: aggregation(a, w.detach(), *conf), (x,)),
        (lambda b: subtraction2(x.detach(), b, *conf), (x2,)),
        (lambda a: subtraction2(a, x2.detach(), *conf), (x,)),
    ):
        assert gradcheck(fn, inputs, fast_mode=fast)


# -- 3. semantic probes ---------------------------------------------------
def test_interleaved_weight_sharing_one_hot():
    """Weight channel g selects slot g: channel c shows slot c % Cw."""
    cw, k = 4, 3
    x = rand(1, C, 6, 5, grad=False)
    w = torch.zeros(1, cw, k * k, 30, dtype=F64)
    for g in range(cw):
        w[:, g, g] = 1.0  # weight channel g: slot j = g only
    y = aggregation(x, w, k, 1, 1, 1, 'zero')
    xp = F.pad(x, (1, 1, 1, 1))
    for c in range(C):
        a, b = divmod(c % cw, k)  # slot c % Cw (not c // (C / Cw))
        torch.testing.assert_close(
            y[:, c], xp[:, c, a : a + 6, b : b + 5], rtol=0, atol=0
        )


def test_zero_mode_out_of_range_neighbour_gives_centre():
    x = rand(1, 2, 5, 4, grad=False)
    out = subtraction(x, 3, 1, 1, 1, 'zero').view(1, 2, 9, 5, 4)
    # slot 0 (up-left) of the corner (0, 0) is outside: out = centre - 0
    torch.testing.assert_close(out[:, :, 0, 0, 0], x[:, :, 0, 0])
    # slot 8 (down-right) of (4, 3) is outside too
    torch.testing.assert_close(out[:, :, 8, 4, 3], x[:, :, 4, 3])
    # an in-range neighbour: centre minus neighbour
    torch.testing.assert_close(
        out[:, :, 8, 1, 1], x[:, :, 1, 1] - x[:, :, 2, 2]
    )


def test_reflect_is_reflection_pad_not_replicate():
    x = rand(1, 3, 6, 5, grad=False)
    out = subtraction(x, 3, 1, 1, 1, 'reflect').view(1, 3, 9, 6, 5)
    # slot 3 (left) of (0, 0) reads column -1 -> column 1 (edge not repeated)
    torch.testing.assert_close(
        out[:, :, 3, 0, 0], x[:, :, 0, 0] - x[:, :, 0, 1]
    )
    w = rand(1, 1, 9, 30, grad=False)
    y = aggregation(x, w, 3, 1, 1, 1, 'reflect')
    cols = F.unfold(torch.nn.ReflectionPad2d(1)(x), 3).view(1, 3, 9, 30)
    torch.testing.assert_close(y.view(1, 3, 30), (cols * w).sum(2))
    replicate = F.unfold(F.pad(x, (1, 1, 1, 1), mode='replicate'), 3)
    replicate = (replicate.view(1, 3, 9, 30) * w).sum(2)
    assert not torch.allclose(y.view(1, 3, 30), replicate)


@pytest.mark.parametrize('alias,name', [(0, 'zero'), (1, 'reflect')])
def test_pad_mode_aliases(alias, name):
    x, w = agg_inputs((6, 5), 3, 1, 1, 1, 4)
    x2 = rand(N, C, 6, 5, seed=9)
    assert torch.equal(
        aggregation(x, w, 3, 1, 1, 1, alias),
        aggregation(x, w, 3, 1, 1, 1, name),
    )
    assert torch.equal(
        subtraction(x, 3, 1, 1, 1, alias), subtraction(x, 3, 1, 1, 1, name)
    )
    assert torch.equal(
        subtraction2(x, x2, 3, 1, 1, 1, alias),
        subtraction2(x, x2, 3, 1, 1, 1, name),
    )
    assert Aggregation(3, 1, 1, 1, alias).pad_mode == name


def test_defaults_are_k3_s1_p0_d1_reflect():
    x, w = agg_inputs((6, 5), 3, 1, 0, 1, 4)
    assert torch.equal(aggregation(x, w), aggregation(x, w, 3, 1, 0, 1, 1))
    with pytest.raises(ValueError, match='same'):  # p=0 is not 'same' for k3
        subtraction(x)
    assert torch.equal(
        subtraction(x, padding=1), subtraction(x, 3, 1, 1, 1, 'reflect')
    )


# -- 4. errors ------------------------------------------------------------
def _x(*shape, dtype=F64, device='cpu'):
    return torch.zeros(*shape, dtype=dtype, device=device)


ERRORS = [
    # (call, exception, message pattern)
    (lambda: aggregation(_x(8, 6, 5), _x(1, 4, 9, 30), 3, 1, 1),
     ValueError, r'aggregation: input must be 4-D, got shape \(8, 6, 5\)'),
    (lambda: aggregation(_x(1, 8, 6, 5), _x(4, 9, 30), 3, 1, 1),
     ValueError, r'aggregation: weight must be 4-D, got shape \(4, 9, 30\)'),
    (lambda: aggregation(_x(1, 8, 6, 5), _x(2, 4, 9, 30), 3, 1, 1),
     ValueError, r'aggregation: weight batch size 2 != input batch size 1 '
     r'\(input \(1, 8, 6, 5\), weight \(2, 4, 9, 30\)\)'),
    (lambda: aggregation(_x(1, 8, 6, 5), _x(1, 3, 9, 30), 3, 1, 1),
     ValueError, r'aggregation: input channels C=8 must be a multiple of '
     r'weight channels Cw=3 \(input \(1, 8, 6, 5\)'),
    (lambda: aggregation(_x(1, 8, 6, 5), _x(1, 4, 25, 30), 3, 1, 1),
     ValueError, r'aggregation: weight K=25 != kernel_size 3x3 = 9 '
     r'\(input \(1, 8, 6, 5\), weight \(1, 4, 25, 30\)\)'),
    (lambda: aggregation(_x(1, 8, 6, 5), _x(1, 4, 9, 20), 3, 1, 1),
     ValueError, r'aggregation: weight L=20 != output positions Ho\*Wo = '
     r'6\*5 = 30 \(input \(1, 8, 6, 5\)'),
    (lambda: aggregation(_x(1, 8, 3, 3), _x(1, 4, 25, 1), 5, 1, 0),
     ValueError, r'aggregation: empty output \(-1, -1\).*\(1, 8, 3, 3\)'),
    (lambda: aggregation(_x(1, 8, 6, 5), _x(1, 4, 49, 30), 7, 1, 3, 2),
     ValueError, r'aggregation: empty output'),
    (lambda: aggregation(_x(1, 8, 6, 5), _x(1, 4, 9, 30), 3, 1, 1, 1, 'same'),
     ValueError, r"aggregation: pad_mode must be 'zero' or 'reflect'.*'same'"),
    (lambda: aggregation(_x(1, 8, 6, 5), _x(1, 4, 9, 30), 3, 1, 1, 1, True),
     ValueError, r'aggregation: pad_mode .* got True'),
    (lambda: subtraction(_x(1, 8, 6, 5), 3, 1, 1, 1, 2),
     ValueError, r'subtraction: pad_mode .* got 2'),
    (lambda: subtraction(_x(1, 8, 6, 5), 3, 1, 1, 1, None),
     ValueError, r'subtraction: pad_mode .* got None'),
    (lambda: aggregation(_x(1, 8, 3, 5), _x(1, 4, 9, 15), 3, 1, 3),
     ValueError, r"aggregation: pad_mode='reflect' needs padding < the input "
     r'size, got padding=\(3, 3\) for input shape \(1, 8, 3, 5\)'),
    (lambda: subtraction(_x(1, 8, 6, 4), 9, 1, 4),
     ValueError, r"subtraction: pad_mode='reflect' needs padding < the input "
     r'size, got padding=\(4, 4\) for input shape \(1, 8, 6, 4\)'),
    (lambda: subtraction(_x(1, 8, 6, 5), 4, 1, 2),
     ValueError, r'subtraction: kernel_size must be odd.*\(4, 4\)'),
    (lambda: subtraction2(_x(1, 8, 6, 5), _x(1, 8, 6, 5), (3, 2), 1, 1),
     ValueError, r'subtraction2: kernel_size must be odd.*\(3, 2\)'),
    (lambda: subtraction(_x(1, 8, 6, 5), 3, 1, 0),
     ValueError, r"subtraction: needs 'same' padding .* = \(1, 1\) .*got "
     r'padding=\(0, 0\)'),
    (lambda: subtraction2(_x(1, 8, 6, 5), _x(1, 8, 6, 5), 3, 1, 1, 2),
     ValueError, r"subtraction2: needs 'same' padding .* = \(2, 2\)"),
    (lambda: subtraction2(_x(1, 8, 6, 5), _x(1, 8, 5, 6), 3, 1, 1),
     ValueError, r'subtraction2: input2 shape \(1, 8, 5, 6\) != input1 shape '
     r'\(1, 8, 6, 5\)'),
    (lambda: subtraction2(_x(1, 8, 6, 5), _x(1, 8, 6, 5, device='meta'), 3,
                          1, 1),
     ValueError, r'subtraction2: inputs must be on one device, got input1 on '
     r'cpu, input2 on meta'),
    (lambda: aggregation(_x(1, 8, 6, 5), _x(1, 4, 9, 30, device='meta'), 3,
                         1, 1),
     ValueError, r'aggregation: inputs must be on one device'),
    (lambda: aggregation(_x(1, 8, 6, 5), _x(1, 4, 9, 30, dtype=torch.float32),
                         3, 1, 1),
     TypeError, r'aggregation: inputs must have one dtype, got input '
     r'torch.float64 \(1, 8, 6, 5\), weight torch.float32 \(1, 4, 9, 30\)'),
    (lambda: subtraction2(_x(1, 8, 6, 5, dtype=torch.float16),
                          _x(1, 8, 6, 5), 3, 1, 1),
     TypeError, r'subtraction2: inputs must have one dtype'),
    (lambda: subtraction(_x(1, 8, 6, 5, dtype=torch.int64), 3, 1, 1),
     TypeError, r'subtraction: input must be float16, bfloat16, float32 or '
     r'float64, got torch.int64'),
    (lambda: aggregation(_x(1, 8, 6, 5, dtype=torch.int32),
                         _x(1, 4, 9, 30, dtype=torch.int32), 3, 1, 1),
     TypeError, r'aggregation: input must be float16.*torch.int32'),
    (lambda: subtraction([[1.0]], 3, 1, 1),
     TypeError, r'subtraction: input must be a torch.Tensor, got list'),
    (lambda: subtraction(_x(1, 8, 6, 5), 3.0, 1, 1),
     TypeError, r'subtraction: kernel_size must be an int or a pair'),
    (lambda: subtraction(_x(1, 8, 6, 5), 3, (1, 1, 1), 1),
     TypeError, r'subtraction: stride must be an int or a pair'),
    (lambda: subtraction(_x(1, 8, 6, 5), 3, 0, 1),
     ValueError, r'subtraction: stride must be >= 1, got 0'),
    (lambda: aggregation(_x(1, 8, 6, 5), _x(1, 4, 9, 30), 3, 1, -1),
     ValueError, r'aggregation: padding must be >= 0, got -1'),
    (lambda: subtraction(_x(1, 8, 6, 5), 3, 1, 1, 0),
     ValueError, r'subtraction: dilation must be >= 1'),
    (lambda: subtraction(_x(1, 8, 0, 5), 1, 1, 0),
     ValueError, r'subtraction: input height and width must be >= 1'),
    (lambda: Subtraction(4, 1, 2),
     ValueError, r'Subtraction: kernel_size must be odd'),
    (lambda: Subtraction2(3, 1, 0),
     ValueError, r"Subtraction2: needs 'same' padding"),
    (lambda: Aggregation(3, 1, 1, 1, 'replicate'),
     ValueError, r'Aggregation: pad_mode'),
]  # fmt: skip


@pytest.mark.parametrize('call,exc,pattern', ERRORS)
def test_errors(call, exc, pattern):
    with pytest.raises(exc, match=pattern):
        call()


def test_double_backward_raises_first_order_only():
    x, w = agg_inputs((6, 5), 3, 1, 1, 1, 4)
    x2 = rand(N, C, 6, 5, seed=4)
    for out, inputs, name in (
        (aggregation(x, w, 3, 1, 1), (x, w), 'aggregation'),
        (subtraction(x, 3, 1, 1), (x,), 'subtraction'),
        (subtraction2(x, x2, 3, 1, 1), (x, x2), 'subtraction2'),
    ):
        first = torch.autograd.grad((out**2).sum(), inputs, create_graph=True)
        assert all(g.requires_grad for g in first)
        with pytest.raises(RuntimeError, match=f'{name}.*first-order only'):
            sum(g.sum() for g in first).backward()
    # create_graph=True alone (no second backward) is fine
    y = aggregation(x, w, 3, 1, 1)
    torch.autograd.grad(y.sum(), (x, w), create_graph=True)


# -- 4. layouts, empty batches, autocast ----------------------------------
def test_channels_last_and_sliced_inputs_equal_contiguous():
    k, s, p, d = 3, 2, 1, 1
    base = rand(N, C, 14, 12, grad=False)
    views = {
        'channels_last': base[:, :, :7, :6].contiguous(
            memory_format=torch.channels_last
        ),
        'sliced': base[:, :, ::2, ::2][:, :, :7, :6],
        'transposed': base[:, :, :6, :7].transpose(2, 3),
    }
    w_strided = rand(N, 4, 9, 24, grad=False)[..., ::2]  # L = 4*3 = 12
    for name, x in views.items():
        assert not x.is_contiguous(), name
        xv = x.detach().requires_grad_(True)  # keeps the strides
        wv = w_strided.detach().requires_grad_(True)
        xc = x.contiguous().requires_grad_(True)
        wc = w_strided.contiguous().requires_grad_(True)
        y = aggregation(xv, wv, k, s, p, d)
        yc = aggregation(xc, wc, k, s, p, d)
        assert torch.equal(y, yc), name
        g = rand(*y.shape, grad=False)
        for a, b in zip(torch.autograd.grad(y, (xv, wv), g),
                        torch.autograd.grad(yc, (xc, wc), g)):  # fmt: skip
            assert torch.equal(a, b), name
        assert torch.equal(
            subtraction(xv, k, s, p, d), subtraction(xc, k, s, p, d)
        )
        assert torch.equal(
            subtraction2(xv, xv, k, s, p, d), subtraction2(xc, xc, k, s, p, d)
        ), name


def test_empty_batch_gives_empty_result_and_gradients():
    x = rand(0, C, 6, 5)
    w = rand(0, 4, 9, 30)
    y = aggregation(x, w, 3, 1, 1)
    assert y.shape == (0, C, 6, 5)
    y.sum().backward()
    assert x.grad.shape == x.shape and w.grad.shape == w.shape
    out = subtraction(x, 3, 2, 1)
    assert out.shape == (0, C, 9, 9)
    out2 = subtraction2(x, x, 5, 1, 2, 1, 'zero')
    assert out2.shape == (0, C, 25, 30)
    (out.sum() + out2.sum()).backward()


def test_autocast_casts_mixed_dtypes():
    x, w = agg_inputs((6, 5), 3, 1, 1, 1, 4, dtype=torch.float32)
    w_bf16 = w.detach().bfloat16().requires_grad_(True)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        y = aggregation(x, w_bf16, 3, 1, 1)
        out2 = subtraction2(x, x.detach().bfloat16(), 3, 1, 1)
    assert y.dtype == torch.bfloat16 and out2.dtype == torch.bfloat16
    expected = aggregation(x.detach(), w_bf16.detach().float(), 3, 1, 1)
    torch.testing.assert_close(y.float(), expected, atol=0.1, rtol=0.02)
    y.float().sum().backward()
    assert x.grad.dtype == torch.float32
    assert w_bf16.grad.dtype == torch.bfloat16
    # without autocast the same call is refused
    with pytest.raises(TypeError, match='only under autocast'):
        aggregation(x, w_bf16, 3, 1, 1)


# -- 5. determinism, low precision, modules -------------------------------
def test_repeated_backward_is_bitwise_equal():
    x, w = agg_inputs((9, 7), 5, 2, 2, 1, 2, dtype=torch.float32)
    x2 = rand(N, C, 9, 7, dtype=torch.float32, seed=8)

    def run():
        y = aggregation(x, w, 5, 2, 2, 1)
        o = subtraction2(x, x2, 5, 2, 2, 1)
        s = subtraction(x2, 3, 1, 2, 2, 'zero')
        return (y, *torch.autograd.grad((y.sum(), o.sum() * 2, s.sum()),
                                        (x, w, x2)))  # fmt: skip

    first = run()
    for _ in range(2):
        assert all(torch.equal(a, b) for a, b in zip(first, run()))


@pytest.mark.parametrize(
    'dtype,tol', [(torch.float16, 2e-2), (torch.bfloat16, 6e-2)]
)
def test_low_precision_close_to_float32_and_keeps_dtype(dtype, tol):
    hw, k, s, p, d = (9, 8), 5, 1, 2, 1
    x32, w32 = agg_inputs(hw, k, s, p, d, 4, dtype=torch.float32)
    x32 = x32.detach().to(dtype).float().requires_grad_(True)  # exact input
    w32 = w32.detach().to(dtype).float().requires_grad_(True)
    x, w = (t.detach().to(dtype).requires_grad_(True) for t in (x32, w32))
    x2 = rand(N, C, *hw, dtype=dtype, seed=6)
    for fn, lo, hi in (
        (lambda a, b: aggregation(a, b, k, s, p, d), (x, w), (x32, w32)),
        (lambda a, b: subtraction2(a, b, k, s, p, d),
         (x, x2), (x32, x2.detach().float().requires_grad_(True))),
        (lambda a: subtraction(a, k, s, p, d), (x,), (x32,)),
    ):  # fmt: skip
        out, ref = fn(*lo), fn(*hi)
        assert out.dtype == dtype
        g = rand(*out.shape, dtype=dtype, grad=False, seed=2)
        g_lo = torch.autograd.grad(out, lo, g)
        g_hi = torch.autograd.grad(ref, hi, g.float())
        for a, b in zip((out, *g_lo), (ref, *g_hi)):
            assert a.dtype == dtype
            scale = b.abs().max()
            assert (a.float() - b).abs().max() <= tol * scale


def test_modules_are_parameter_free_with_pairs_and_repr():
    agg = Aggregation(kernel_size=(3, 5), stride=2, padding=(1, 2), pad_mode=0)
    sub = Subtraction(7, 1, 3)
    sub2 = Subtraction2(3, 1, 2, 2, 'zero')
    for m in (agg, sub, sub2):
        assert m.state_dict() == {} and not list(m.parameters())
        assert not list(m.buffers())
    assert agg.kernel_size == (3, 5) and agg.stride == (2, 2)
    assert agg.padding == (1, 2) and agg.dilation == (1, 1)
    assert agg.pad_mode == 'zero' and sub.pad_mode == 'reflect'
    assert repr(sub2) == (
        'Subtraction2(kernel_size=(3, 3), stride=(1, 1), padding=(2, 2), '
        "dilation=(2, 2), pad_mode='zero')"
    )
    x, w = agg_inputs((7, 6), (3, 5), 2, (1, 2), 1, 4)
    assert torch.equal(agg(x, w), aggregation(x, w, (3, 5), 2, (1, 2), 1, 0))
    x2 = rand(N, C, 7, 6, seed=3)
    assert torch.equal(sub2(x, x2), subtraction2(x, x2, 3, 1, 2, 2, 'zero'))
    assert torch.equal(sub(x), subtraction(x, 7, 1, 3))


# -- the backend interface shared with the CuPy backend -------------------
def test_torch_backend_interface_flags():
    conf = ((3, 3), (2, 1), (1, 1), (1, 1), 'reflect')
    x = rand(N, C, 7, 6, grad=False)
    w = rand(N, 4, 9, 4 * 6, grad=False)
    y = torch_backend.aggregation_forward(x, w, *conf)
    gy = torch.ones_like(y)
    gx, gw = torch_backend.aggregation_backward(
        gy, x, w, *conf, True, False, False
    )
    assert gx.shape == x.shape and gw is None and gx.is_contiguous()
    gx, gw = torch_backend.aggregation_backward(
        gy, x, w, *conf, False, True, True
    )
    assert gx is None and gw.shape == w.shape and gw.is_contiguous()
    out = torch_backend.subtraction2_forward(x, x, *conf)
    g1, g2 = torch_backend.subtraction2_backward(
        torch.ones_like(out), tuple(x.shape), *conf, False, True
    )
    assert g1 is None and g2.shape == x.shape
    g = torch_backend.subtraction_backward(
        torch.ones_like(out), tuple(x.shape), *conf
    )
    # the gradient of centre - neighbour summed over all slots and outputs
    g1, g2 = torch_backend.subtraction2_backward(
        torch.ones_like(out), tuple(x.shape), *conf, True, True
    )
    torch.testing.assert_close(g, g1 + g2)


def test_atomic_request_is_ignored_on_the_torch_path():
    set_atomic_backward(True)
    assert backend.atomic_backward_enabled()
    x, w = agg_inputs((6, 5), 3, 1, 1, 1, 4)
    y = aggregation(x, w, 3, 1, 1)
    g_atomic = torch.autograd.grad(y.sum(), (x, w))
    set_atomic_backward(False)
    y = aggregation(x, w, 3, 1, 1)
    assert all(
        torch.equal(a, b)
        for a, b in zip(g_atomic, torch.autograd.grad(y.sum(), (x, w)))
    )
