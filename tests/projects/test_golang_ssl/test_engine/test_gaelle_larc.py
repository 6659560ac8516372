"""``GAELLELARC`` (``golang_ssl.md`` §4.6, §11 "Optimiser")."""

from __future__ import annotations

import math

import pytest
import torch
from mmengine.optim import OptimWrapper
from mmpretrain.engine.optimizers import LARS
from torch import nn

from projects.golang_ssl.engine.gaelle_larc import GAELLELARC
from shared.registry import OPTIMIZERS, PARAM_SCHEDULERS


def _params(*values) -> list[nn.Parameter]:
    return [nn.Parameter(torch.tensor(v, dtype=torch.float64)) for v in values]


def _run(optimizer, params, grads_per_step, lrs=None) -> None:
    """Set the given gradients and step, optionally changing the lr first."""
    for step, grads in enumerate(grads_per_step):
        if lrs is not None:
            for group in optimizer.param_groups:
                group['lr'] = lrs[step]
        for p, g in zip(params, grads):
            p.grad = None if g is None else g.clone()
        optimizer.step()


def _norm(x: list[float]) -> float:
    return math.sqrt(sum(v * v for v in x))


def _hand_larc(w, grads, lr, m, wd, eta, eps):
    """apex LARC(clip=False) + SGD(momentum=m, no decay) on python lists."""
    buf = None
    for g in grads:
        wn, gn = _norm(w), _norm(g)
        if wn > 0 and gn > 0:
            a = eta * wn / (gn + wd * wn + eps)
            d = [a * (gi + wd * wi) for gi, wi in zip(g, w)]
        else:
            d = list(g)
        buf = d if buf is None else [m * b + di for b, di in zip(buf, d)]
        w = [wi - lr * b for wi, b in zip(w, buf)]
    return w


def test_registered():
    assert OPTIMIZERS.get('GAELLELARC') is GAELLELARC
    opt = OPTIMIZERS.build(
        dict(type='GAELLELARC', params=_params([1.0]), lr=0.6)
    )
    group = opt.param_groups[0]
    assert (group['momentum'], group['weight_decay']) == (0.9, 1e-6)
    assert (group['trust_coefficient'], group['eps']) == (1e-3, 1e-8)
    assert group['clip'] is False


def test_hand_formula_two_momentum_steps():
    """Non-zero norms, a zero weight and a zero gradient, 2 steps."""
    lr, m, wd, eta, eps = 0.5, 0.9, 0.1, 0.02, 1e-8
    w0 = [[3.0, -4.0], [0.0, 0.0], [1.0, 2.0]]
    grads = [
        [[0.5, 1.5], [0.3, -0.2], [0.0, 0.0]],  # w1 = 0; g2 = 0
        [[-1.0, 2.0], [0.1, 0.4], [0.2, -0.1]],
    ]
    params = _params(*w0)
    opt = GAELLELARC(params, lr=lr, momentum=m, weight_decay=wd,
                     trust_coefficient=eta, eps=eps)  # fmt: skip
    _run(opt, params, [[torch.tensor(g, dtype=torch.float64) for g in s]
                       for s in grads])  # fmt: skip
    for i, p in enumerate(params):
        expected = _hand_larc(w0[i], [s[i] for s in grads], lr, m, wd, eta,
                              eps)  # fmt: skip
        torch.testing.assert_close(
            p.detach(), torch.tensor(expected, dtype=torch.float64),
            rtol=1e-13, atol=1e-15,
        )  # fmt: skip


def test_zero_norm_takes_plain_sgd_without_decay():
    """Zero weight (a zero-initialised BN bias): w <- w - lr * g exactly."""
    params = _params([0.0, 0.0, 0.0])
    grad = torch.tensor([0.25, -1.0, 2.0], dtype=torch.float64)
    opt = GAELLELARC(params, lr=0.1, weight_decay=0.5)
    _run(opt, params, [[grad]])
    torch.testing.assert_close(params[0].detach(), -0.1 * grad, rtol=0,
                               atol=0)  # fmt: skip
    # Zero gradient on a non-zero weight: no decay, hence no change on the
    # first step (a momentum buffer of zeros is created).
    params = _params([1.0, -2.0])
    opt = GAELLELARC(params, lr=0.1, weight_decay=0.5)
    _run(opt, params, [[torch.zeros(2, dtype=torch.float64)]])
    assert params[0].tolist() == [1.0, -2.0]
    assert opt.state[params[0]]['momentum_buffer'].tolist() == [0.0, 0.0]


def test_clip():
    """clip=True: a <- min(a / lr, 1)."""
    lr, wd, eta, eps = 0.01, 0.0, 0.5, 0.0
    w, g = [3.0, 4.0], [0.6, 0.8]  # a = eta * 5 / 1 = 2.5 -> a / lr > 1
    params = _params(w)
    opt = GAELLELARC(params, lr=lr, momentum=0.0, weight_decay=wd,
                     trust_coefficient=eta, eps=eps, clip=True)  # fmt: skip
    _run(opt, params, [[torch.tensor(g, dtype=torch.float64)]])
    expected = [wi - lr * 1.0 * gi for wi, gi in zip(w, g)]
    torch.testing.assert_close(
        params[0].detach(), torch.tensor(expected, dtype=torch.float64)
    )
    # a / lr < 1: the ratio is a / lr, so the step is a * g (lr cancels).
    eta = 1e-4  # a = 5e-4, a / lr = 0.05
    params = _params(w)
    opt = GAELLELARC(params, lr=lr, momentum=0.0, weight_decay=wd,
                     trust_coefficient=eta, eps=eps, clip=True)  # fmt: skip
    _run(opt, params, [[torch.tensor(g, dtype=torch.float64)]])
    expected = [wi - lr * (eta * 5.0 / lr) * gi for wi, gi in zip(w, g)]
    torch.testing.assert_close(
        params[0].detach(), torch.tensor(expected, dtype=torch.float64),
        rtol=1e-14, atol=1e-15,
    )  # fmt: skip


def _random_setup(seed: int, steps: int):
    gen = torch.Generator().manual_seed(seed)
    shapes = [(4, 3), (3,), (2, 2, 2)]
    w0 = [torch.randn(s, generator=gen, dtype=torch.float64) for s in shapes]
    grads = [
        [torch.randn(s, generator=gen, dtype=torch.float64) for s in shapes]
        for _ in range(steps)
    ]
    return w0, grads


def _larc_and_lars(lrs, seed=0):
    w0, grads = _random_setup(seed, len(lrs))
    hyper = dict(momentum=0.9, weight_decay=1e-2)
    ours = [nn.Parameter(w.clone()) for w in w0]
    theirs = [nn.Parameter(w.clone()) for w in w0]
    # LARS names the trust coefficient `eta`; it excludes nothing unless a
    # group sets `lars_exclude`, and its eps is the same 1e-8.
    larc = GAELLELARC(ours, lr=lrs[0], trust_coefficient=1e-2, eps=1e-8,
                      **hyper)  # fmt: skip
    lars = LARS(theirs, lr=lrs[0], eta=1e-2, eps=1e-8, **hyper)
    _run(larc, ours, grads, lrs)
    _run(lars, theirs, grads, lrs)
    return ours, theirs


def test_equals_mmpretrain_lars_at_constant_lr():
    ours, theirs = _larc_and_lars([0.3] * 4)
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)
        assert not torch.equal(a, a.new_zeros(a.shape))


def test_differs_from_lars_when_lr_changes():
    ours, theirs = _larc_and_lars([0.3, 0.1, 0.05, 0.02])
    for a, b in zip(ours, theirs):
        assert (a - b).abs().max() > 1e-4


def test_differs_from_lars_at_zero_norm():
    """LARS still decays a zero-gradient tensor; LARC leaves it alone."""
    w = torch.tensor([1.0, -2.0], dtype=torch.float64)
    ours, theirs = nn.Parameter(w.clone()), nn.Parameter(w.clone())
    larc = GAELLELARC([ours], lr=0.1, weight_decay=0.5)
    lars = LARS([theirs], lr=0.1, momentum=0.9, weight_decay=0.5)
    _run(larc, [ours], [[torch.zeros(2, dtype=torch.float64)]])
    _run(lars, [theirs], [[torch.zeros(2, dtype=torch.float64)]])
    assert ours.tolist() == w.tolist()
    torch.testing.assert_close(theirs.detach(), w * (1 - 0.1 * 0.5))


def test_none_grad_skipped_without_state():
    params = _params([1.0, 2.0], [3.0])
    opt = GAELLELARC(params, lr=0.1)
    _run(opt, params, [[torch.tensor([0.5, 0.5], dtype=torch.float64), None]])
    assert params[1].tolist() == [3.0]
    assert params[1] not in opt.state
    assert 'momentum_buffer' in opt.state[params[0]]
    assert params[0].tolist() != [1.0, 2.0]
    # The grad is not modified in place (apex's LARC did modify it).
    assert params[0].grad.tolist() == [0.5, 0.5]


def test_no_per_tensor_item(monkeypatch):
    """The step never reads a device scalar back (``Tensor.item``)."""
    params = _params([1.0, 2.0], [0.0])
    opt = GAELLELARC(params, lr=0.1)

    def fail(self):
        raise AssertionError('GAELLELARC called Tensor.item()')

    monkeypatch.setattr(torch.Tensor, 'item', fail)
    _run(opt, params, [[torch.ones(2, dtype=torch.float64),
                        torch.ones(1, dtype=torch.float64)]] * 2)  # fmt: skip


def test_sparse_gradient_raises():
    emb = nn.Embedding(5, 3, sparse=True)
    emb(torch.tensor([0, 2])).sum().backward()
    opt = GAELLELARC(emb.parameters(), lr=0.1)
    with pytest.raises(RuntimeError, match='sparse'):
        opt.step()


@pytest.mark.parametrize(
    'key', ['lr', 'momentum', 'weight_decay', 'trust_coefficient', 'eps']
)
def test_negative_hyperparameters_raise(key):
    kwargs = dict(lr=0.1)
    kwargs[key] = -1e-3
    with pytest.raises(ValueError, match=f'{key} must be >= 0, got -0.001'):
        GAELLELARC(_params([1.0]), **kwargs)
    with pytest.raises(ValueError, match=key):
        GAELLELARC([dict(params=_params([1.0]), **{key: -1.0})], lr=0.1)


def test_cosine_lr_closed_form():
    """§4.6 schedule: CosineAnnealingLR(by_epoch, convert_to_iter_based),
    lr_t = eta_min + (lr0 - eta_min) (1 + cos(pi t / T)) / 2 per iteration,
    and the optimizer uses exactly that lr."""
    lr0, eta_min, epochs, epoch_length = 0.6, 6e-4, 4, 3
    param = nn.Parameter(torch.zeros(2, dtype=torch.float64))
    optim_wrapper = OptimWrapper(GAELLELARC([param], lr=lr0, momentum=0.0))
    scheduler = PARAM_SCHEDULERS.build(
        dict(type='CosineAnnealingLR', T_max=epochs, eta_min=eta_min,
             by_epoch=True, convert_to_iter_based=True),
        default_args=dict(optimizer=optim_wrapper, epoch_length=epoch_length),
    )  # fmt: skip
    total = epochs * epoch_length
    assert scheduler.T_max == total and not scheduler.by_epoch
    grad = torch.tensor([1.0, 0.0], dtype=torch.float64)
    for t in range(total + 1):
        expected = eta_min + 0.5 * (lr0 - eta_min) * (
            1 + math.cos(math.pi * t / total)
        )
        lr = optim_wrapper.param_groups[0]['lr']
        assert lr == pytest.approx(expected, rel=1e-12, abs=1e-15)
        if t < total:
            # A zero weight takes a plain SGD step: w = -lr * g.
            with torch.no_grad():
                param.zero_()
            param.grad = grad.clone()
            optim_wrapper.step()
            assert param.tolist() == [-lr, 0.0]
            scheduler.step()
    assert optim_wrapper.param_groups[0]['lr'] == pytest.approx(eta_min)
