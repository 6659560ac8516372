"""``distributed_sinkhorn_knopp`` (``golang_ssl.md`` §2 item 1, §4.4, §11).

Expected values come from closed forms derived here, from the same call on
the concatenated global batch, or from mmpretrain's ``distributed_sinkhorn``
where the two must agree (one process).
"""

from __future__ import annotations

import math
import os
import socket
import warnings
from datetime import timedelta

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from mmpretrain.models.losses.swav_loss import distributed_sinkhorn

import projects.golang_ssl.models.sinkhorn as sinkhorn_module
from projects.golang_ssl.models.sinkhorn import distributed_sinkhorn_knopp

F64 = torch.float64
EPS = 0.05


def _scores(rows: int, protos: int, seed: int = 0, dtype=F64) -> torch.Tensor:
    """Cosine scores of unit embeddings and unit prototypes, ``(R, K)``."""
    gen = torch.Generator().manual_seed(seed)
    emb = F.normalize(torch.randn(rows, 8, generator=gen, dtype=F64), dim=1)
    proto = F.normalize(
        torch.randn(protos, 8, generator=gen, dtype=F64), dim=1
    )
    return (emb @ proto.t()).to(dtype)


# -- normalisation ------------------------------------------------------------


@pytest.mark.parametrize(
    'dtype,tol', [(torch.float64, 1e-12), (torch.float32, 1e-6)]
)
@pytest.mark.parametrize('iterations', [1, 3, 7])
def test_rows_sum_to_one(dtype, tol, iterations):
    scores = _scores(24, 10, seed=1, dtype=dtype)
    out = distributed_sinkhorn_knopp(scores, EPS, iterations, dtype=dtype)
    assert out.shape == (24, 10)
    assert out.dtype == dtype
    assert (out >= 0).all()
    torch.testing.assert_close(
        out.sum(dim=1), torch.ones(24, dtype=dtype), atol=tol, rtol=0
    )


def test_column_mass_tends_to_rows_over_prototypes():
    rows, protos = 12, 5
    scores = _scores(rows, protos, seed=0)
    errors = []
    for iterations in range(3, 11):
        out = distributed_sinkhorn_knopp(scores, EPS, iterations, dtype=F64)
        errors.append((out.sum(dim=0) - rows / protos).abs().max().item())
    assert all(b < a for a, b in zip(errors, errors[1:])), errors
    # More iterations close the gap (equipartition is the fixed point).
    out = distributed_sinkhorn_knopp(scores, EPS, 2000, dtype=F64)
    assert (out.sum(dim=0) - rows / protos).abs().max().item() < 1e-6
    assert errors[-1] > 1e-2  # 10 iterations are still far from it


@pytest.mark.parametrize('shape', [(6, 4), (3, 9)])
def test_zero_scores_give_uniform_codes(shape):
    # Q is constant, hence every normalisation keeps it constant: 1/K.
    out = distributed_sinkhorn_knopp(torch.zeros(shape), EPS, 3)
    torch.testing.assert_close(
        out, torch.full(shape, 1 / shape[1]), atol=1e-7, rtol=0
    )


@pytest.mark.parametrize('iterations', [1, 3, 10])
def test_two_by_two_diagonal_dominant_closed_form(iterations):
    # S = [[a, b], [b, a]] gives a doubly stochastic Q after the total
    # normalisation, so no iteration moves it and each code is the softmax
    # of its row: p = sigmoid((a - b) / eps).
    a, b = 0.8, 0.3
    scores = torch.tensor([[a, b], [b, a]], dtype=F64)
    p = 1 / (1 + math.exp(-(a - b) / EPS))
    expected = torch.tensor([[p, 1 - p], [1 - p, p]], dtype=F64)
    out = distributed_sinkhorn_knopp(scores, EPS, iterations, dtype=F64)
    torch.testing.assert_close(out, expected, atol=1e-12, rtol=0)


@pytest.mark.parametrize('iterations', [1, 3])
def test_two_by_two_same_preference_identical_samples(iterations):
    # Both samples prefer prototype 0 equally: the first row normalisation
    # gives every entry 1/4, so the codes are 1/2 (a softmax would give
    # sigmoid(0.6 / 0.05) ~ 1 to prototype 0 for both).
    scores = torch.tensor([[0.9, 0.3], [0.9, 0.3]], dtype=F64)
    out = distributed_sinkhorn_knopp(scores, EPS, iterations, dtype=F64)
    torch.testing.assert_close(
        out, torch.full((2, 2), 0.5, dtype=F64), atol=1e-12, rtol=0
    )


def test_two_by_two_same_preference_limit_closed_form():
    # Both samples prefer prototype 0 (0.9 > 0.1, 0.6 > 0.2). Row and
    # column scalings keep the cross ratio c = q00 q11 / (q01 q10), and the
    # limit with marginals 1/2 is [[p, 1-p], [1-p, p]] / 2 with
    # p^2 / (1-p)^2 = c: p = sqrt(c) / (1 + sqrt(c)). Sample 1 ends on
    # prototype 1: equipartition overrides its preference.
    eps = 0.1
    scores = torch.tensor([[0.9, 0.1], [0.6, 0.2]], dtype=F64)
    root_c = math.exp((0.9 + 0.2 - 0.1 - 0.6) / (2 * eps))
    p = root_c / (1 + root_c)
    expected = torch.tensor([[p, 1 - p], [1 - p, p]], dtype=F64)
    out = distributed_sinkhorn_knopp(scores, eps, 100, dtype=F64)
    torch.testing.assert_close(out, expected, atol=1e-12, rtol=0)
    assert out[1, 1] > 0.85


def test_row_permutation_equivariance():
    scores = _scores(16, 7, seed=2)
    perm = torch.randperm(16, generator=torch.Generator().manual_seed(3))
    out = distributed_sinkhorn_knopp(scores, EPS, 3, dtype=F64)
    out_perm = distributed_sinkhorn_knopp(scores[perm], EPS, 3, dtype=F64)
    torch.testing.assert_close(out_perm, out[perm], atol=1e-12, rtol=0)


def test_fp16_input_gives_finite_fp32_output():
    scores = _scores(16, 10, seed=4, dtype=torch.float16)
    out = distributed_sinkhorn_knopp(scores, EPS, 3)
    assert out.dtype == torch.float32
    assert torch.isfinite(out).all()
    torch.testing.assert_close(
        out.sum(dim=1), torch.ones(16), atol=1e-6, rtol=0
    )
    # The port upcasts before dividing by epsilon: same as fp32 input.
    ref = distributed_sinkhorn_knopp(scores.float(), EPS, 3)
    torch.testing.assert_close(out, ref, atol=0, rtol=0)


def test_float64_path_matches_float32_to_rounding():
    scores = _scores(20, 6, seed=5)
    out64 = distributed_sinkhorn_knopp(scores.float(), EPS, 3, dtype=F64)
    out32 = distributed_sinkhorn_knopp(scores.float(), EPS, 3)
    assert out64.dtype == F64
    torch.testing.assert_close(out64.float(), out32, atol=1e-5, rtol=0)


def test_equals_mmpretrain_on_one_process():
    # W = 1: the guard branch of mmpretrain never fires on these scores, so
    # the two are the same arithmetic.
    scores = _scores(20, 6, seed=6)
    ours = distributed_sinkhorn_knopp(scores, EPS, 3, dtype=F64)
    ref = distributed_sinkhorn(scores.clone(), 3, 1, EPS)
    torch.testing.assert_close(ours, ref, atol=1e-12, rtol=0)


def test_input_is_not_modified_and_no_grad():
    scores = _scores(6, 4, seed=7).requires_grad_()
    before = scores.detach().clone()
    out = distributed_sinkhorn_knopp(scores, EPS, 3, dtype=F64)
    assert not out.requires_grad
    assert torch.equal(scores.detach(), before)


# -- errors and warnings ------------------------------------------------------


@pytest.mark.parametrize(
    'scores,kwargs,match',
    [
        (torch.zeros(4), {}, r'2-D \(R, K\).*\(4,\)'),
        (torch.zeros(2, 3, 4), {}, r'2-D.*\(2, 3, 4\)'),
        ([[0.0, 1.0]], {}, '2-D'),
        (torch.zeros(0, 4), {}, r'empty.*\(0, 4\)'),
        (torch.zeros(3, 0), {}, r'empty.*\(3, 0\)'),
        (torch.zeros(3, 4, dtype=torch.long), {}, 'torch.int64'),
        (torch.zeros(3, 4), dict(epsilon=0.0), 'epsilon must be > 0, got 0'),
        (torch.zeros(3, 4), dict(epsilon=-0.1), 'got -0.1'),
        (torch.zeros(3, 4), dict(epsilon=float('nan')), 'got nan'),
        (torch.zeros(3, 4), dict(iterations=0), 'iterations.*got 0'),
        (torch.zeros(3, 4), dict(iterations=-2), 'got -2'),
        (torch.zeros(3, 4), dict(iterations=2.5), 'got 2.5'),
    ],
)
def test_value_errors(scores, kwargs, match):
    args = dict(epsilon=EPS, iterations=3)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        distributed_sinkhorn_knopp(scores, **args)


@pytest.fixture
def already_warned(monkeypatch):
    """Silence the once-only scale warning (the inputs below exceed 1)."""
    monkeypatch.setattr(sinkhorn_module, '_warned_unnormalised', True)


@pytest.mark.parametrize('value', [float('inf'), float('nan'), 10.0])
def test_non_finite_q_raises(already_warned, value):
    scores = _scores(4, 3, seed=8).float()
    scores[1, 2] = value  # 10 / 0.05 = 200 overflows exp in fp32
    with pytest.raises(FloatingPointError) as info:
        distributed_sinkhorn_knopp(scores, EPS, 3)
    message = str(info.value)
    assert 'epsilon=0.05' in message
    assert 'dtype=torch.float32' in message
    assert 'max |score|=' in message


def test_zero_prototype_mass_raises(already_warned):
    # exp(-1 / 0.001) underflows to 0 in fp64 and prototype 1 gets no mass
    # at all: 0 / 0 in the row normalisation.
    scores = torch.zeros(4, 3, dtype=F64)
    scores[:, 1] = -1.0
    with pytest.raises(FloatingPointError, match='codes are not finite'):
        distributed_sinkhorn_knopp(scores, 0.001, 3, dtype=F64)


def test_fp32_overflow_is_fine_in_float64(already_warned):
    scores = _scores(4, 3, seed=8)
    scores[1, 2] = 10.0
    out = distributed_sinkhorn_knopp(scores, EPS, 3, dtype=F64)
    assert torch.isfinite(out).all()


def test_unnormalised_scores_warn_once(monkeypatch):
    monkeypatch.setattr(sinkhorn_module, '_warned_unnormalised', False)
    scores = _scores(4, 3, seed=9)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        distributed_sinkhorn_knopp(scores * 1.0009, EPS, 3, dtype=F64)
        assert not caught  # up to 1.001 is rounding of unit vectors
        scores[0, 0] = 1.5
        distributed_sinkhorn_knopp(scores, EPS, 3, dtype=F64)
        distributed_sinkhorn_knopp(scores * 2, EPS, 3, dtype=F64)
    assert len(caught) == 1, [str(w.message) for w in caught]
    message = str(caught[0].message)
    assert 'max |score| = 1.5' in message
    assert 'not L2-normalised' in message
    assert caught[0].filename == __file__  # points at the caller


def test_check_rows_single_process_is_a_no_op():
    scores = _scores(5, 3, seed=10)
    out = distributed_sinkhorn_knopp(
        scores, EPS, 3, dtype=F64, check_rows=True
    )
    ref = distributed_sinkhorn_knopp(scores, EPS, 3, dtype=F64)
    assert torch.equal(out, ref)


# -- collectives with a fake two-rank group -----------------------------------


class _PeerSpy:
    """``dist`` stand-in for W = 2: records every all-reduce.

    ``mode='double'`` plays a peer holding identical scores (the SUM doubles
    the tensor); ``mode='mass'`` a peer adding one unit of mass per entry.
    """

    ReduceOp = dist.ReduceOp

    def __init__(self, mode: str = 'double', peer_rows: int | None = None):
        self.mode = mode
        self.peer_rows = peer_rows
        self.calls = []

    def all_reduce(self, tensor, op=dist.ReduceOp.SUM, group=None):
        self.calls.append((tuple(tensor.shape), op, group))
        if self.mode == 'double':
            tensor.mul_(2)
        else:
            tensor.add_(1)

    def get_backend(self, group=None):
        return 'gloo'

    def all_gather(self, tensor_list, tensor, group=None):
        tensor_list[0].copy_(tensor)
        tensor_list[1].fill_(self.peer_rows)


@pytest.fixture
def fake_two_ranks(monkeypatch):
    def install(spy: _PeerSpy) -> _PeerSpy:
        monkeypatch.setattr(sinkhorn_module, 'dist', spy)
        monkeypatch.setattr(sinkhorn_module, '_world_size', lambda group: 2)
        return spy

    return install


def _zero_row_scores() -> torch.Tensor:
    # fp64 with eps 0.001: prototype 1 is exactly 0 in Q on this rank.
    scores = -0.1 * torch.rand(
        6, 4, generator=torch.Generator().manual_seed(0)
    )
    scores = scores.double()
    scores[:, 1] = -1.0
    return scores


_DATA = {
    'random': (lambda: _scores(6, 4, seed=11), EPS, None),
    'zeros': (lambda: torch.zeros(6, 4, dtype=F64), EPS, None),
    'zero_row': (_zero_row_scores, 0.001, 'codes are not finite'),
    'inf': (
        lambda: torch.full((6, 4), float('inf'), dtype=F64),
        EPS,
        'exp\\(scores / epsilon\\) is not finite',
    ),
    'nan': (
        lambda: torch.full((6, 4), float('nan'), dtype=F64),
        EPS,
        'exp\\(scores / epsilon\\) is not finite',
    ),
}


@pytest.mark.parametrize('iterations', [1, 3, 5])
@pytest.mark.parametrize('case', sorted(_DATA))
def test_one_plus_iterations_all_reduces_for_any_data(
    fake_two_ranks, already_warned, case, iterations
):
    make, eps, error = _DATA[case]
    spy = fake_two_ranks(_PeerSpy('double'))
    group = object()
    if error is None:
        distributed_sinkhorn_knopp(make(), eps, iterations, F64, group=group)
    else:
        # Raised only after the last collective, so a peer whose data is
        # finite is not left waiting in an all-reduce.
        with pytest.raises(FloatingPointError, match=error):
            distributed_sinkhorn_knopp(
                make(), eps, iterations, F64, group=group
            )
    assert len(spy.calls) == 1 + iterations
    assert spy.calls[0][0] == ()  # the total mass
    assert all(shape == (4, 1) for shape, _, _ in spy.calls[1:])  # rows
    assert all(op == dist.ReduceOp.SUM for _, op, _ in spy.calls)
    assert all(g is group for _, _, g in spy.calls)


def test_zero_local_row_with_peer_mass_is_finite(fake_two_ranks):
    spy = fake_two_ranks(_PeerSpy('mass'))
    out = distributed_sinkhorn_knopp(_zero_row_scores(), 0.001, 3, F64)
    assert len(spy.calls) == 4
    assert torch.isfinite(out).all()
    assert (out[:, 1] == 0).all()
    torch.testing.assert_close(
        out.sum(dim=1), torch.ones(6, dtype=F64), atol=1e-12, rtol=0
    )


def test_identical_peer_gives_single_process_codes(fake_two_ranks):
    # Duplicating every row leaves each row's codes unchanged, and B_tot
    # is R * W = 2R: the doubled sums reproduce the W = 1 result.
    scores = _scores(6, 4, seed=12)
    single = distributed_sinkhorn_knopp(scores, EPS, 3, dtype=F64)
    doubled = distributed_sinkhorn_knopp(
        torch.cat([scores, scores]), EPS, 3, dtype=F64
    )
    fake_two_ranks(_PeerSpy('double'))
    out = distributed_sinkhorn_knopp(scores, EPS, 3, dtype=F64)
    torch.testing.assert_close(out, single, atol=1e-12, rtol=0)
    torch.testing.assert_close(out, doubled[:6], atol=1e-12, rtol=0)


def test_check_rows_with_fake_peer(fake_two_ranks):
    spy = fake_two_ranks(_PeerSpy('double', peer_rows=7))
    with pytest.raises(ValueError, match=r'equal on every rank, got \[6, 7\]'):
        distributed_sinkhorn_knopp(_scores(6, 4), EPS, 3, check_rows=True)
    assert not spy.calls  # raised before any all-reduce
    spy.peer_rows = 6
    distributed_sinkhorn_knopp(_scores(6, 4), EPS, 3, check_rows=True)
    assert len(spy.calls) == 4


# -- two gloo processes -------------------------------------------------------

WORLD = 2
ITERS = 3


def _peaked_exact_zero() -> torch.Tensor:
    """Rank 1's local row sum of prototype 0 is exactly 0 (fp64 underflow)."""
    gen = torch.Generator().manual_seed(21)
    scores = -0.1 * torch.rand(8, 5, generator=gen, dtype=F64)
    scores[4:, 0] = -1.0  # exp(-1 / 0.001) == 0.0
    return scores


def _peaked_concentrated() -> torch.Tensor:
    """All of rank 1's samples sit on prototype 0 (the others ~exp(-40))."""
    scores = _scores(8, 5, seed=22)
    scores[4:] = -1.0
    scores[4:, 0] = 1.0
    return scores


# name -> (global scores split in rank order, epsilon)
_GLOO_CASES = {
    'random': (lambda: _scores(10, 6, seed=20), EPS),
    'peaked_exact_zero': (_peaked_exact_zero, 0.001),
    'peaked_concentrated': (_peaked_concentrated, EPS),
}


def _shard(scores: torch.Tensor, rank: int) -> torch.Tensor:
    half = scores.shape[0] // WORLD
    return scores[rank * half : (rank + 1) * half]


def _gloo_worker(rank: int, port: int, out_dir: str) -> None:
    dist.init_process_group(
        'gloo',
        init_method=f'tcp://127.0.0.1:{port}',
        rank=rank,
        world_size=WORLD,
        timeout=timedelta(seconds=60),  # a desync fails instead of hanging
    )
    warnings.simplefilter('ignore')
    try:
        results = {}
        for name, (make, eps) in _GLOO_CASES.items():
            mine = _shard(make(), rank)
            assert mine.shape[0] > 0
            if name == 'peaked_exact_zero' and rank == 1:
                assert (torch.exp(mine[:, 0] / eps) == 0).all()
            results[name] = distributed_sinkhorn_knopp(
                mine, eps, ITERS, dtype=F64, check_rows=True
            )
            if name != 'peaked_exact_zero':  # exp(-100) is 0 in fp32
                results[f'{name}_fp32'] = distributed_sinkhorn_knopp(
                    mine.float(), eps, ITERS
                )
        mine = _shard(_GLOO_CASES['random'][0](), rank)
        results['mmpretrain'] = distributed_sinkhorn(
            mine.clone(), ITERS, WORLD, EPS
        )
        # Unequal R: both ranks see the all-gathered counts and raise.
        try:
            distributed_sinkhorn_knopp(
                _scores(3 + rank, 6), EPS, ITERS, check_rows=True
            )
            results['unequal_rows'] = 'no error'
        except ValueError as exc:
            results['unequal_rows'] = str(exc)
        # Overflow on rank 0 only: both ranks raise after all collectives.
        bad = _scores(4, 6, seed=23).float()
        if rank == 0:
            bad[0, 0] = 10.0
        try:
            distributed_sinkhorn_knopp(bad, EPS, ITERS)
            results['one_rank_overflow'] = 'no error'
        except FloatingPointError as exc:
            results['one_rank_overflow'] = str(exc)
        # The collectives are still paired: a clean call agrees again.
        results['after_errors'] = distributed_sinkhorn_knopp(
            mine, EPS, ITERS, dtype=F64
        )
        torch.save(results, os.path.join(out_dir, f'rank{rank}.pt'))
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


@pytest.fixture(scope='module')
def gloo_results(tmp_path_factory):
    """Both ranks' results for every case, from a single spawn."""
    out_dir = tmp_path_factory.mktemp('sinkhorn_gloo')
    old = os.environ.get('OMP_NUM_THREADS')
    os.environ['OMP_NUM_THREADS'] = '1'
    try:
        mp.spawn(
            _gloo_worker,
            args=(_free_port(), str(out_dir)),
            nprocs=WORLD,
            join=True,
        )
    finally:
        if old is None:
            del os.environ['OMP_NUM_THREADS']
        else:
            os.environ['OMP_NUM_THREADS'] = old
    return [
        torch.load(out_dir / f'rank{r}.pt', weights_only=True)
        for r in range(WORLD)
    ]


def _gathered(results, key: str) -> torch.Tensor:
    return torch.cat([results[r][key] for r in range(WORLD)])


@pytest.mark.parametrize('name', sorted(_GLOO_CASES))
def test_gloo_shards_equal_concatenated_batch(gloo_results, name):
    make, eps = _GLOO_CASES[name]
    full = make()
    ref = distributed_sinkhorn_knopp(full, eps, ITERS, dtype=F64)
    sharded = _gathered(gloo_results, name)
    assert torch.isfinite(sharded).all()
    torch.testing.assert_close(sharded, ref, atol=1e-10, rtol=0)
    if name != 'peaked_exact_zero':
        ref32 = distributed_sinkhorn_knopp(full.float(), eps, ITERS)
        sharded32 = _gathered(gloo_results, f'{name}_fp32')
        torch.testing.assert_close(sharded32, ref32, atol=1e-5, rtol=0)


def test_gloo_peaked_rank_differs_from_local_sinkhorn(gloo_results):
    # The global row sums matter: rank 1 alone would split its samples
    # evenly over the prototypes instead of keeping them on prototype 0.
    full = _peaked_concentrated()
    local = distributed_sinkhorn_knopp(_shard(full, 1), EPS, ITERS, F64)
    sharded = gloo_results[1]['peaked_concentrated']
    assert (sharded - local).abs().max() > 0.1
    assert (sharded.argmax(dim=1) == 0).all()


def test_gloo_mmpretrain_deviates_from_concatenated_batch(gloo_results):
    # mmpretrain all-reduces the row sums only inside its zero-row guard,
    # which never fires here: its rows are normalised with local sums.
    full = _GLOO_CASES['random'][0]()
    ref = distributed_sinkhorn_knopp(full, EPS, ITERS, dtype=F64)
    theirs = _gathered(gloo_results, 'mmpretrain')
    assert (theirs - ref).abs().max() > 1e-2
    ours = _gathered(gloo_results, 'random')
    torch.testing.assert_close(ours, ref, atol=1e-10, rtol=0)


def test_gloo_unequal_rows_raise_on_both_ranks(gloo_results):
    for rank in range(WORLD):
        message = gloo_results[rank]['unequal_rows']
        assert 'equal on every rank, got [3, 4]' in message


def test_gloo_overflow_on_one_rank_raises_on_both(gloo_results):
    assert (
        'exp(scores / epsilon) is not finite'
        in (gloo_results[0]['one_rank_overflow'])
    )
    # The peer's Q is finite; the NaN reaches it through the row sums.
    assert 'codes are not finite' in gloo_results[1]['one_rank_overflow']
    full = _GLOO_CASES['random'][0]()
    ref = distributed_sinkhorn_knopp(full, EPS, ITERS, dtype=F64)
    torch.testing.assert_close(
        _gathered(gloo_results, 'after_errors'), ref, atol=1e-10, rtol=0
    )
