"""GAELLELoss and GAELLEHead: terms, averaging, shuffle, gradients, queues.

``golang_ssl.md`` §4.3, §4.5 and the "Loss", "Prototypes" and "Queue"
bullets of §11. Expected values come from the formulas of §4.3 written
here as explicit loops over (c, v, a) pairs, fed with the codes that the
real Sinkhorn produced (recorded by a spy around the module's reference to
``distributed_sinkhorn_knopp``).
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import projects.golang_ssl.models.gaelle_loss as loss_module
from projects.golang_ssl.models.gaelle_loss import GAELLELoss
from projects.golang_ssl.models.gaelle_neck import GAELLENeck
from projects.golang_ssl.models.sinkhorn import distributed_sinkhorn_knopp
from shared.registry import MODELS

D, DL, K, KL = 8, 6, 10, 7
B, M = 3, 4
T = 0.1


def _unit(rows: int, dim: int, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(rows, dim, generator=gen), dim=1)


def _make(**kwargs) -> GAELLELoss:
    cfg = dict(
        feat_dim=D,
        local_feat_dim=DL,
        num_prototypes=K,
        num_local_prototypes=KL,
        num_crops=(2, 3),
        crops_for_assign=(0, 1),
        temperature=T,
    )
    cfg.update(kwargs)
    torch.manual_seed(0)
    return GAELLELoss(**cfg)


def _inputs(loss: GAELLELoss, seed: int = 1, batch: int = B, tokens: int = M):
    n = sum(loss.num_crops)
    z = _unit(n * batch, loss.feat_dim, seed)
    y = _unit(
        loss.num_crops[0] * batch * tokens, loss.local_feat_dim, seed + 1
    )
    return z, y


def _run(loss, z, y, batch=B, tokens=M):
    return loss(
        global_emb=z,
        local_emb=y if loss.with_local else None,
        batch_size=batch,
        num_tokens=tokens,
    )


@pytest.fixture
def spy(monkeypatch):
    """Record (scores, codes) of every Sinkhorn call of the loss module."""
    calls = []

    def recording(scores, *args, **kwargs):
        out = distributed_sinkhorn_knopp(scores, *args, **kwargs)
        calls.append((scores.detach().clone(), out.detach().clone()))
        return out

    monkeypatch.setattr(loss_module, 'distributed_sinkhorn_knopp', recording)
    return calls


def _ce(q: torch.Tensor, s: torch.Tensor) -> float:
    """−(1/R) Σ_r Σ_k q[r,k] log softmax(s[r]/T)_k, by explicit loops."""
    q, s = q.detach().double(), s.detach().double()
    total = 0.0
    for r in range(s.shape[0]):
        logits = [float(x) / T for x in s[r]]
        top = max(logits)
        lse = top + math.log(sum(math.exp(x - top) for x in logits))
        total -= sum(
            float(q[r, k]) * (logits[k] - lse) for k in range(len(logits))
        )
    return total / s.shape[0]


def _reference(loss, z, y, gcodes, lcodes, perms=None, batch=B, tokens=M):
    """§4.3 formulas with the given codes; perms maps (c, v) to π."""
    a_set = loss.crops_for_assign
    n, v_cnt = sum(loss.num_crops), loss.num_crops[0]
    with torch.no_grad():
        sg = z @ loss.prototypes.weight.t()
        glb = 0.0
        for j, c in enumerate(a_set):
            glb += sum(
                _ce(gcodes[j], sg[v * batch : (v + 1) * batch])
                for v in range(n)
                if v != c
            ) / (n - 1)
        terms = {'glb': glb / len(a_set)}
        if not loss.with_local:
            return terms
        rows = batch * tokens
        sl = (y @ loss.local_prototypes.weight.t()).view(
            v_cnt, batch, tokens, -1
        )
        alg = 0.0
        for j, c in enumerate(a_set):
            sub = 0.0
            for v in range(v_cnt):
                if v == c:
                    continue
                pi = list(range(tokens)) if perms is None else perms[(c, v)]
                pred = torch.stack(
                    [
                        sl[v, b, pi[k]]
                        for b in range(batch)
                        for k in range(tokens)
                    ]
                )
                sub += _ce(lcodes[j], pred)
            alg += sub / (v_cnt - 1)
        terms['alg'] = alg / len(a_set)
        if loss.with_l2g:
            yv = y.view(v_cnt, batch, tokens, -1)
            l2g = 0.0
            for c in a_set:
                sub = 0.0
                for v in range(v_cnt):
                    if v == c:
                        continue
                    pooled = F.normalize(yv[v].mean(dim=1), dim=1)
                    logits = pooled @ loss.l2g_prototypes.weight.t()
                    sub += sum(_ce(q, logits) for q in gcodes) / len(a_set)
                l2g += sub / (v_cnt - 1)
            terms['l2g'] = l2g / len(a_set)
        assert rows == lcodes[0].shape[0]
        return terms


def _split_codes(loss, calls):
    na = len(loss.crops_for_assign)
    gcodes = [out for _, out in calls[:na]]
    lcodes = [out for _, out in calls[na : 2 * na]]
    return gcodes, lcodes


# --------------------------------------------------------------- structure


def test_registered_banks_and_state_dict():
    loss = MODELS.build(
        dict(
            type='GAELLELoss',
            feat_dim=D,
            local_feat_dim=DL,
            num_prototypes=K,
            num_local_prototypes=KL,
        )
    )
    assert type(loss) is GAELLELoss
    assert loss.prototypes.weight.shape == (K, D)
    assert loss.local_prototypes.weight.shape == (KL, DL)
    assert loss.l2g_prototypes.weight.shape == (K, DL)
    assert all(m.bias is None for m in loss.children())
    assert sorted(loss.state_dict()) == [
        'l2g_prototypes.weight',
        'local_prototypes.weight',
        'prototypes.weight',
    ]
    assert loss.queue is None and loss.local_queue is None
    assert loss.use_queue is False and loss.use_local_queue is False
    assert loss.loss_weights == pytest.approx(
        dict(glb=1 / 3, alg=1 / 3, l2g=1 / 3)
    )

    swav = _make(with_local=False)
    assert list(swav.state_dict()) == ['prototypes.weight']
    assert swav.loss_weights == {'glb': 1.0}
    no_l2g = _make(with_l2g=False)
    assert not hasattr(no_l2g, 'l2g_prototypes')
    assert no_l2g.loss_weights == {'glb': 0.5, 'alg': 0.5}


def test_only_loss_key_contains_loss_and_terms_are_detached():
    loss = _make()
    z, y = _inputs(loss)
    z.requires_grad_(True)
    out = _run(loss, z, y)
    assert set(out) == {'loss', 'glb', 'alg', 'l2g', 'q_used'}
    assert [k for k in out if 'loss' in k] == ['loss']
    assert out['loss'].requires_grad and out['loss'].dim() == 0
    for key in ('glb', 'alg', 'l2g', 'q_used'):
        assert not out[key].requires_grad and out[key].dim() == 0
    assert out['q_used'].item() == 0.0
    out_swav = _run(_make(with_local=False), z, y)
    assert set(out_swav) == {'loss', 'glb', 'q_used'}


# ------------------------------------------------------- closed forms, CE


@pytest.mark.parametrize(
    'weights',
    [None, dict(glb=0.5, alg=0.2, l2g=0.3), dict(glb=1, alg=0, l2g=2)],
)
def test_uniform_codes_zero_logits_give_ln_k(weights):
    loss = _make(loss_weights=weights)
    with torch.no_grad():
        for bank in (
            loss.prototypes,
            loss.local_prototypes,
            loss.l2g_prototypes,
        ):
            bank.weight.zero_()
    z, y = _inputs(loss)
    out = _run(loss, z, y)
    expected = dict(glb=math.log(K), alg=math.log(KL), l2g=math.log(K))
    for term, value in expected.items():
        assert out[term].item() == pytest.approx(value, abs=1e-5)
    w = loss.loss_weights
    assert out['loss'].item() == pytest.approx(
        sum(w[t] * expected[t] for t in expected), abs=1e-5
    )


def test_ce_matches_formula_for_one_hot_and_soft_targets():
    gen = torch.Generator().manual_seed(3)
    scores = torch.randn(5, K, generator=gen, dtype=torch.float64)
    target = torch.tensor([0, 3, 9, 3, 1])
    one_hot = F.one_hot(target, K).double()
    got = loss_module._swapped_ce(one_hot, scores, T)
    expected = (
        -sum(
            math.log(
                math.exp(scores[r, target[r]] / T)
                / sum(math.exp(x / T) for x in scores[r].tolist())
            )
            for r in range(5)
        )
        / 5
    )
    assert got.item() == pytest.approx(expected, rel=1e-12)
    torch.testing.assert_close(got, F.cross_entropy(scores / T, target))

    soft = torch.softmax(
        torch.randn(5, K, generator=gen, dtype=torch.float64), 1
    )
    got = loss_module._swapped_ce(soft, scores, T)
    assert got.item() == pytest.approx(_ce(soft, scores), rel=1e-12)
    torch.testing.assert_close(got, F.cross_entropy(scores / T, soft))


@pytest.mark.parametrize(
    'cfg',
    [
        dict(),
        dict(num_crops=(3, 2), crops_for_assign=(0, 2)),
        dict(
            num_crops=(3, 1),
            crops_for_assign=(1,),
            loss_weights=dict(glb=0.7, alg=0.1, l2g=0.2),
        ),
        dict(with_l2g=False),
        dict(with_local=False, num_crops=(2, 4)),
    ],
)
def test_terms_match_section_4_3_formulas(spy, cfg):
    loss = _make(local_shuffle=False, **cfg)
    z, y = _inputs(loss)
    out = _run(loss, z, y)
    gcodes, lcodes = _split_codes(loss, spy)
    na = len(loss.crops_for_assign)
    # Codes come from the detached scores of the assigned crops only.
    for j, c in enumerate(loss.crops_for_assign):
        torch.testing.assert_close(
            spy[j][0], z[c * B : (c + 1) * B] @ loss.prototypes.weight.t()
        )
        if loss.with_local:
            rows = B * M
            torch.testing.assert_close(
                spy[na + j][0],
                y[c * rows : (c + 1) * rows]
                @ loss.local_prototypes.weight.t(),
            )
    assert len(spy) == na * (2 if loss.with_local else 1)
    expected = _reference(loss, z, y, gcodes, lcodes)
    assert set(expected) == set(loss.active_terms)
    for term, value in expected.items():
        assert out[term].item() == pytest.approx(value, rel=1e-5, abs=1e-6)
    total = sum(loss.loss_weights[t] * expected[t] for t in expected)
    assert out['loss'].item() == pytest.approx(total, rel=1e-5)


def test_averaging_structure_by_perturbing_single_predictors(spy):
    """Change one non-assigned predictor; each term moves by its weight.

    V = 3, A = {0, 2}: view 1 is a first-group predictor in every (c, v)
    pair, view 4 (second group) only in global pairs. Their codes stay put.
    """
    loss = _make(
        num_crops=(3, 2), crops_for_assign=(0, 2), local_shuffle=False
    )
    z, y = _inputs(loss)
    base = _run(loss, z, y)
    gcodes, lcodes = _split_codes(loss, spy)
    na, n, v_cnt = 2, 5, 3
    rows = B * M

    # Global predictor of the second group: only glb moves, by
    # (1/|A|)(1/(N−1)) Σ_c ΔCE(q_c, s_4).
    z2 = z.clone()
    z2[4 * B : 5 * B] = _unit(B, D, 40)
    spy.clear()
    out = _run(loss, z2, y)
    for old, (_, new) in zip(gcodes, spy[:na]):
        torch.testing.assert_close(old, new)
    cg = loss.prototypes.weight
    delta = sum(
        _ce(q, z2[4 * B :] @ cg.t()) - _ce(q, z[4 * B :] @ cg.t())
        for q in gcodes
    ) / (na * (n - 1))
    assert (out['glb'] - base['glb']).item() == pytest.approx(delta, abs=1e-5)
    assert abs(delta) > 1e-3
    assert out['alg'].item() == pytest.approx(base['alg'].item(), abs=1e-6)
    assert out['l2g'].item() == pytest.approx(base['l2g'].item(), abs=1e-6)

    # Local tokens of first-group view 1: alg moves by
    # (1/|A|)(1/(V−1)) Σ_c ΔCE(q^l_c, s^l_1) and l2g by
    # (1/|A|) Σ_c (1/(V−1)) (1/|A|) Σ_a ΔCE(q_a, C_x ŷ_1).
    y2 = y.clone()
    y2[rows : 2 * rows] = _unit(rows, DL, 41)
    spy.clear()
    out = _run(loss, z, y2)
    for old, (_, new) in zip(gcodes + lcodes, spy):
        torch.testing.assert_close(old, new)
    cl, cx = loss.local_prototypes.weight, loss.l2g_prototypes.weight
    d_alg = sum(
        _ce(q, y2[rows : 2 * rows] @ cl.t())
        - _ce(q, y[rows : 2 * rows] @ cl.t())
        for q in lcodes
    ) / (na * (v_cnt - 1))

    def pooled_logits(tokens):
        return F.normalize(tokens.view(B, M, DL).mean(1), dim=1) @ cx.t()

    d_view = (
        sum(
            _ce(q, pooled_logits(y2[rows : 2 * rows]))
            - _ce(q, pooled_logits(y[rows : 2 * rows]))
            for q in gcodes
        )
        / na
    )
    d_l2g = na * (1 / (v_cnt - 1)) * d_view / na
    assert (out['alg'] - base['alg']).item() == pytest.approx(d_alg, abs=1e-5)
    assert (out['l2g'] - base['l2g']).item() == pytest.approx(d_l2g, abs=1e-5)
    assert abs(d_alg) > 1e-3 and abs(d_l2g) > 1e-3
    assert out['glb'].item() == pytest.approx(base['glb'].item(), abs=1e-6)


# ------------------------------------------------------------------ shuffle


def test_identity_shuffle_equals_no_shuffle(monkeypatch):
    z, y = _inputs(_make())
    plain = _run(_make(local_shuffle=False), z, y)
    shuffled = _make(local_shuffle=True)
    monkeypatch.setattr(shuffled, '_permutation', lambda m: torch.arange(m))
    ident = _run(shuffled, z, y)
    for key in plain:
        torch.testing.assert_close(ident[key], plain[key])
    # A real permutation changes the local term and nothing else.
    other = _run(_make(local_shuffle=True, shuffle_generator_seed=5), z, y)
    assert abs(other['alg'].item() - plain['alg'].item()) > 1e-4
    torch.testing.assert_close(other['glb'], plain['glb'])
    torch.testing.assert_close(other['l2g'], plain['l2g'])


@pytest.mark.parametrize('dedicated', [True, False])
def test_seeded_shuffle_equals_manual_permutation(spy, dedicated):
    seed = 11
    loss = _make(
        num_crops=(3, 2),
        crops_for_assign=(0, 1),
        shuffle_generator_seed=seed if dedicated else None,
    )
    z, y = _inputs(loss)
    # One π per (c, v) pair, in loop order, shared by the batch.
    gen = torch.Generator().manual_seed(seed)
    pairs = [(c, v) for c in (0, 1) for v in range(3) if v != c]
    perms = {p: torch.randperm(M, generator=gen).tolist() for p in pairs}
    assert any(p != list(range(M)) for p in perms.values())

    torch.manual_seed(seed)
    global_before = torch.get_rng_state()
    out = _run(loss, z, y)
    global_after = torch.get_rng_state()
    if dedicated:
        # The dedicated generator leaves the global CPU RNG alone.
        assert torch.equal(global_before, global_after)
    else:
        torch.manual_seed(seed)
        for _ in pairs:
            torch.randperm(M)
        assert torch.equal(torch.get_rng_state(), global_after)
    gcodes, lcodes = _split_codes(loss, spy)
    expected = _reference(loss, z, y, gcodes, lcodes, perms=perms)
    assert out['alg'].item() == pytest.approx(expected['alg'], rel=1e-5)
    wrong = _reference(loss, z, y, gcodes, lcodes)
    assert abs(wrong['alg'] - expected['alg']) > 1e-4


# ------------------------------------------------------------ gradient flow


def _grad_norm(t):
    return 0.0 if t.grad is None else t.grad.abs().sum().item()


@pytest.mark.parametrize('stop_grad', [True, False])
@pytest.mark.parametrize('term', ['glb', 'alg', 'l2g'])
def test_gradient_flow_on_embeddings_and_banks(term, stop_grad):
    weights = {t: float(t == term) for t in ('glb', 'alg', 'l2g')}
    loss = _make(loss_weights=weights, l2g_stop_grad=stop_grad)
    z, y = _inputs(loss)
    z.requires_grad_(True)
    y.requires_grad_(True)
    _run(loss, z, y)['loss'].backward()
    got = {
        'z': _grad_norm(z),
        'y': _grad_norm(y),
        'C_g': _grad_norm(loss.prototypes.weight),
        'C_l': _grad_norm(loss.local_prototypes.weight),
        'C_x': _grad_norm(loss.l2g_prototypes.weight),
    }
    reach = {
        'glb': {'z', 'C_g'},
        'alg': {'y', 'C_l'},
        'l2g': {'C_x'} if stop_grad else {'C_x', 'y'},
    }[term]
    assert {k for k, v in got.items() if v > 0} == reach, got


def _tiny_neck_setup(stop_grad: bool, weights: dict):
    torch.manual_seed(0)
    c, g = 8, 4
    neck = GAELLENeck(
        in_channels=c,
        hid_channels=16,
        feat_dim=D,
        local_feat_dim=DL,
        num_groups=g,
        norm_cfg=dict(type='BN'),
    ).train()
    loss = _make(
        num_crops=(2, 2), loss_weights=weights, l2g_stop_grad=stop_grad
    )
    gen = torch.Generator().manual_seed(7)
    trunk = [
        torch.randn(2 * B, c, 3, 3, generator=gen).requires_grad_(True),
        torch.randn(2 * B, c, 2, 2, generator=gen).requires_grad_(True),
    ]
    neck_out = neck(trunk, batch_size=B, num_crops=(2, 2))
    assert neck_out['num_tokens'] == D // g
    return neck, loss, trunk, neck_out


@pytest.mark.parametrize('stop_grad', [True, False])
@pytest.mark.parametrize('term', ['glb', 'alg', 'l2g'])
def test_gradient_flow_through_real_neck(term, stop_grad):
    """§4.3: glb → trunk, g, C_g; alg → trunk, g, h, C_l; l2g → C_x only
    under stop-grad, and also h, g (attention) and trunk without it."""
    weights = {t: float(t == term) for t in ('glb', 'alg', 'l2g')}
    neck, loss, trunk, neck_out = _tiny_neck_setup(stop_grad, weights)
    loss(**neck_out)['loss'].backward()

    def module_grad(module):
        return sum(_grad_norm(p) for p in module.parameters())

    got = {
        'trunk0': _grad_norm(trunk[0]),
        'trunk1': _grad_norm(trunk[1]),
        'g': module_grad(neck.global_proj),
        'h': module_grad(neck.local_proj),
        'C_g': _grad_norm(loss.prototypes.weight),
        'C_l': _grad_norm(loss.local_prototypes.weight),
        'C_x': _grad_norm(loss.l2g_prototypes.weight),
    }
    reach = {
        'glb': {'trunk0', 'trunk1', 'g', 'C_g'},
        # Local tokens come from the first group only, weighted by g's
        # attention.
        'alg': {'trunk0', 'g', 'h', 'C_l'},
        'l2g': {'C_x'} if stop_grad else {'trunk0', 'g', 'h', 'C_x'},
    }[term]
    assert {k for k, v in got.items() if v > 0} == reach, got


# ------------------------------------------------------------ vs mmpretrain


@pytest.mark.parametrize('with_queue', [False, True])
def test_equals_mmpretrain_swav_loss_without_local_branch(with_queue):
    from mmpretrain.models.losses import SwAVLoss

    ours = _make(with_local=False, num_crops=(2, 3))
    theirs = SwAVLoss(
        feat_dim=D,
        crops_for_assign=[0, 1],
        num_crops=[2, 3],
        num_prototypes=K,
        temperature=T,
    )
    with torch.no_grad():
        theirs.prototypes.weight.copy_(ours.prototypes.weight)
    if with_queue:
        # W = 1 and no zero prototype rows: both queue paths are SwAV's
        # (check, prepend queue @ Cᵀ, FIFO fill, keep the last B codes).
        queue = torch.cat([_unit(2 * B, D, 60), torch.zeros(B, D)])[None]
        ours.queue = queue.repeat(2, 1, 1)
        theirs.queue = queue.repeat(2, 1, 1)
        ours.use_queue = theirs.use_queue = True
    z, _ = _inputs(ours)
    z1 = z.clone().requires_grad_(True)
    z2 = z.clone().requires_grad_(True)
    a = _run(ours, z1, None)['loss']
    b = theirs(z2)
    torch.testing.assert_close(a, b)
    a.backward()
    b.backward()
    torch.testing.assert_close(z1.grad, z2.grad)
    torch.testing.assert_close(
        ours.prototypes.weight.grad, theirs.prototypes.weight.grad
    )
    if with_queue:
        torch.testing.assert_close(ours.queue, theirs.queue)


# --------------------------------------------------------------- prototypes


def test_prototypes_unit_rows_and_idempotent_normalisation():
    loss = _make()
    with torch.no_grad():
        for bank in (
            loss.prototypes,
            loss.local_prototypes,
            loss.l2g_prototypes,
        ):
            bank.weight.mul_(torch.rand(bank.weight.shape[0], 1) * 5 + 0.1)
    before = loss.prototypes.weight.detach().clone()
    z, y = _inputs(loss)
    _run(loss, z, y)  # forward normalises first
    for bank in (loss.prototypes, loss.local_prototypes, loss.l2g_prototypes):
        norms = bank.weight.norm(dim=1)
        torch.testing.assert_close(norms, torch.ones_like(norms))
        assert bank.weight.requires_grad
    torch.testing.assert_close(
        loss.prototypes.weight.detach(), F.normalize(before, dim=1)
    )
    once = [p.detach().clone() for p in loss.parameters()]
    loss.normalize_prototypes()
    for old, new in zip(once, loss.parameters()):
        torch.testing.assert_close(new.detach(), old, rtol=0, atol=1e-7)


# -------------------------------------------------------------------- queue


def _tagged(step: int, rows: int, dim: int) -> torch.Tensor:
    return _unit(rows, dim, 1000 + step)


def test_queue_fifo_first_use_and_sinkhorn_rows(spy):
    loss = _make(with_local=False, num_crops=(2, 2))
    length = 3 * B  # L/W with W = 1: first use at iteration 3
    loss.queue = torch.zeros(2, length, D)
    history = []
    for it in range(6):
        z = _tagged(it, 4 * B, D)
        history.append(z)
        snapshot = loss.queue.clone()
        spy.clear()
        out = _run(loss, z, None)
        used = it >= length // B
        assert out['q_used'].item() == float(used)
        assert loss.use_queue is used
        cg = loss.prototypes.weight
        for j, c in enumerate((0, 1)):
            scores, codes = spy[j]
            batch_scores = z[c * B : (c + 1) * B] @ cg.t()
            if used:
                # L/W + B rows: the queue scored with the current C_g, then
                # the batch.
                assert scores.shape == (length + B, K)
                torch.testing.assert_close(
                    scores[:length], snapshot[j] @ cg.t()
                )
                torch.testing.assert_close(scores[length:], batch_scores)
            else:
                assert scores.shape == (B, K)
                torch.testing.assert_close(scores, batch_scores)
            # FIFO: newest batch on top, then the older ones.
            for age in range(min(it + 1, length // B)):
                src = history[it - age][c * B : (c + 1) * B]
                assert torch.equal(loss.queue[j, age * B : (age + 1) * B], src)
        # Only the last B rows of the codes enter the loss.
        gcodes = [codes[-B:] for _, codes in spy]
        expected = _reference(loss, z, None, gcodes, None)
        assert out['glb'].item() == pytest.approx(expected['glb'], rel=1e-5)


def test_queue_flag_forces_use_and_bad_shape_raises(spy):
    loss = _make(with_local=False)
    loss.queue = torch.zeros(2, 2 * B, D)
    loss.use_queue = True
    z, _ = _inputs(loss)
    out = _run(loss, z, None)
    assert out['q_used'].item() == 1.0
    assert spy[0][0].shape == (3 * B, K)
    loss.queue = torch.zeros(2, 2 * B + 1, D)
    with pytest.raises(ValueError, match='queue must have shape'):
        _run(loss, z, None)
    loss.queue = torch.zeros(3, 2 * B, D)
    with pytest.raises(ValueError, match=r'\(3, 7, 8\)|\(3, 6, 8\)'):
        _run(loss, z, None)


def test_local_queue_uses_local_prototypes_and_own_flag(spy):
    loss = _make(num_crops=(2, 1))
    rows = B * M
    length = 2 * rows
    loss.local_queue = torch.zeros(2, length, DL)
    z_hist, y_hist = [], []
    for it in range(3):
        z = _tagged(it, 3 * B, D)
        y = _tagged(100 + it, 2 * rows, DL)
        z_hist.append(z)
        y_hist.append(y)
        snapshot = loss.local_queue.clone()
        spy.clear()
        out = _run(loss, z, y)
        used = it >= 2
        assert loss.use_local_queue is used
        assert loss.use_queue is False and out['q_used'].item() == 0.0
        cl = loss.local_prototypes.weight
        for j, c in enumerate((0, 1)):
            assert spy[j][0].shape == (B, K)  # global: no queue
            scores, _ = spy[2 + j]
            batch_scores = y[c * rows : (c + 1) * rows] @ cl.t()
            if used:
                assert scores.shape == (length + rows, KL)
                torch.testing.assert_close(
                    scores[:length], snapshot[j] @ cl.t()
                )
                torch.testing.assert_close(scores[length:], batch_scores)
            else:
                assert scores.shape == (rows, KL)
            assert torch.equal(
                loss.local_queue[j, :rows], y[c * rows : (c + 1) * rows]
            )
            if it >= 1:
                assert torch.equal(
                    loss.local_queue[j, rows : 2 * rows],
                    y_hist[it - 1][c * rows : (c + 1) * rows],
                )


# ------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    'kwargs, match',
    [
        (dict(crops_for_assign=()), 'must not be empty'),
        (dict(crops_for_assign=(0, 0)), 'duplicates'),
        (dict(crops_for_assign=(0, 2)), 'first-group views'),
        (dict(crops_for_assign=(-1,)), 'first-group views'),
        (dict(temperature=0), 'temperature'),
        (dict(epsilon=-0.1), 'epsilon'),
        (dict(sinkhorn_iterations=0), 'sinkhorn_iterations'),
        (dict(sinkhorn_dtype='float16'), 'sinkhorn_dtype'),
        (dict(num_crops=()), 'num_crops'),
        (dict(num_crops=(1,), crops_for_assign=(0,)), 'at least 2 views'),
        (dict(num_crops=(1, 2), crops_for_assign=(0,)), 'local branch'),
        (
            dict(with_local=False, loss_weights=dict(glb=1, alg=0.5)),
            'disabled',
        ),
        (dict(with_l2g=False, loss_weights=dict(glb=1, alg=1, l2g=1)), 'l2g'),
        (dict(loss_weights=dict(glb=1, alg=1, l2g=1, x=1)), 'unknown'),
        (dict(loss_weights=dict(glb=1, alg=1)), 'lacks'),
        (dict(loss_weights=dict(glb=1, alg=-1, l2g=0)), '>= 0'),
    ],
)
def test_constructor_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        _make(**kwargs)


def test_disabled_term_with_zero_weight_is_accepted():
    loss = _make(with_local=False, loss_weights=dict(glb=2.0, alg=0, l2g=0))
    assert loss.loss_weights == {'glb': 2.0}


def test_forward_errors():
    loss = _make()
    z, y = _inputs(loss)
    with pytest.raises(ValueError, match=r'N·B = 5·3 = 15 rows'):
        loss(global_emb=z[:-1], local_emb=y, batch_size=B, num_tokens=M)
    with pytest.raises(ValueError, match=r'V·B·M = 2·3·4 = 24 rows'):
        loss(global_emb=z, local_emb=y[:-2], batch_size=B, num_tokens=M)
    with pytest.raises(ValueError, match='V·B·M'):
        loss(global_emb=z, local_emb=None, batch_size=B, num_tokens=M)
    with pytest.raises(ValueError, match='with_local=False'):
        _make(with_local=False)(
            global_emb=z, local_emb=y, batch_size=B, num_tokens=M
        )


def test_non_finite_term_raises_with_queue_state():
    loss = _make(num_crops=(2, 2))
    loss.queue = torch.zeros(2, 2 * B, D)
    z, y = _inputs(loss)
    z[3 * B] = float('nan')  # a predictor only: the codes stay finite
    with pytest.raises(RuntimeError, match=r"'glb'.*queue=\(2, 6, 8\)"):
        _run(loss, z, y)
    y = y.clone()
    y[0] = float('inf')
    z, _ = _inputs(loss)
    loss2 = _make(num_crops=(2, 2), local_shuffle=False)
    with pytest.raises((RuntimeError, FloatingPointError)):
        _run(loss2, z, y)


def test_float64_sinkhorn_matches_float32():
    z, y = _inputs(_make())
    a = _run(_make(sinkhorn_dtype='float32', local_shuffle=False), z, y)
    b = _run(_make(sinkhorn_dtype='float64', local_shuffle=False), z, y)
    assert b['loss'].dtype == torch.float32
    for key in ('loss', 'glb', 'alg', 'l2g'):
        torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-6)
