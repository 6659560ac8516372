"""Sinkhorn-Knopp equipartition, exact under DDP (``golang_ssl.md`` §4.4).

SwAV's ``distributed_sinkhorn`` all-reduces the total mass and, in every
iteration, the per-prototype row sums, so that equipartition holds over the
global batch. mmpretrain 1.2.0 all-reduces the row sums only inside a guard
branch that fires when a row sum is exactly zero (and caches the world size
at construction), so with several ranks its rows are normalised with local
sums. This function is the original's arithmetic with unconditional
collectives, float64 support and input checks.
"""

from __future__ import annotations

import warnings

import torch
import torch.distributed as dist

__all__ = ['distributed_sinkhorn_knopp']

_warned_unnormalised = False


def _world_size(group) -> int:
    if not (dist.is_available() and dist.is_initialized()):
        return 1
    return dist.get_world_size(group)


def _all_reduce(tensor: torch.Tensor, group) -> None:
    if _world_size(group) > 1:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM, group=group)


def _check_equal_rows(rows: int, group) -> None:
    """All-gather R and raise when the ranks disagree."""
    world = _world_size(group)
    if world == 1:
        return
    device = (
        torch.device('cuda', torch.cuda.current_device())
        if dist.get_backend(group) == 'nccl'
        else torch.device('cpu')
    )
    mine = torch.tensor([rows], dtype=torch.long, device=device)
    gathered = [torch.zeros_like(mine) for _ in range(world)]
    dist.all_gather(gathered, mine, group=group)
    counts = [int(t.item()) for t in gathered]
    if len(set(counts)) != 1:
        raise ValueError(
            'distributed_sinkhorn_knopp: the number of score rows must be '
            f'equal on every rank, got {counts} (rank order)'
        )


def distributed_sinkhorn_knopp(
    scores: torch.Tensor,
    epsilon: float,
    iterations: int,
    dtype: torch.dtype = torch.float32,
    group=None,
    check_rows: bool = False,
) -> torch.Tensor:
    """Soft codes of SwAV's Sinkhorn-Knopp over the global batch.

    Q = exp(scores / epsilon)ᵀ is normalised to total mass 1 over all
    ranks, then ``iterations`` times: rows (prototypes) to 1/K with sums
    all-reduced over the group, columns (samples) to 1/B_tot with local
    sums. Exactly ``1 + iterations`` SUM all-reduces are issued, in the
    same order on every rank and whatever the data.

    Args:
        scores (Tensor): ``(R, K)`` prototype scores of this rank (queue
            rows first, then the batch); R must be equal on every rank.
        epsilon (float): Entropic regularisation ε (> 0), SwAV's 0.05.
        iterations (int): Number of Sinkhorn iterations (>= 1).
        dtype (torch.dtype): Floating dtype of the computation
            (``torch.float32`` or ``torch.float64``); autocast is off.
        group: Process group; the world size W is read at call time and
            is 1 without an initialised default group.
        check_rows (bool): All-gather R and raise when the ranks differ.

    Returns:
        Tensor: ``(R, K)`` codes in ``dtype``; every row sums to 1 and each
        prototype's mass over the R·W global rows tends to R·W/K.

    Raises:
        ValueError: ``scores`` not 2-D, empty or not floating; ``epsilon``
            <= 0; ``iterations`` < 1; an unequal R with ``check_rows``.
        FloatingPointError: a non-finite Q or output.
    """
    global _warned_unnormalised
    if not isinstance(scores, torch.Tensor) or scores.dim() != 2:
        shape = tuple(scores.shape) if hasattr(scores, 'shape') else scores
        raise ValueError(
            f'distributed_sinkhorn_knopp: scores must be a 2-D (R, K) '
            f'tensor, got {shape!r}'
        )
    if scores.numel() == 0:
        raise ValueError(
            'distributed_sinkhorn_knopp: scores is empty, shape '
            f'{tuple(scores.shape)}'
        )
    if not scores.is_floating_point():
        raise ValueError(
            'distributed_sinkhorn_knopp: scores must be floating point, got '
            f'{scores.dtype}'
        )
    if not epsilon > 0:
        raise ValueError(f'epsilon must be > 0, got {epsilon!r}')
    if int(iterations) != iterations or iterations < 1:
        raise ValueError(
            f'iterations must be an integer >= 1, got {iterations!r}'
        )
    if check_rows:
        _check_equal_rows(scores.shape[0], group)

    # no_grad here rather than as a decorator, whose wrapper frame would
    # take the warning's stacklevel=2 away from the caller.
    with (
        torch.no_grad(),
        torch.autocast(device_type=scores.device.type, enabled=False),
    ):
        s = scores.detach().to(dtype)
        max_abs = s.abs().max()
        if not _warned_unnormalised and max_abs.item() > 1.001:
            _warned_unnormalised = True
            warnings.warn(
                'distributed_sinkhorn_knopp: max |score| = '
                f'{max_abs.item():.4g} > 1; the embeddings or prototypes are '
                'probably not L2-normalised, and exp(score / epsilon) may '
                'overflow (swav#67)',
                stacklevel=2,
            )
        q = torch.exp(s / epsilon).t()  # (K, R)
        num_rows = q.shape[1] * _world_size(group)
        num_protos = q.shape[0]

        total = q.sum()
        _all_reduce(total, group)
        q /= total
        # Raised only after the loop: a rank leaving before its row
        # all-reduces would leave the other ranks waiting on them.
        q_finite = bool(torch.isfinite(q).all())
        for _ in range(iterations):
            row = q.sum(dim=1, keepdim=True)
            _all_reduce(row, group)
            q /= row
            q /= num_protos
            q /= q.sum(dim=0, keepdim=True)
            q /= num_rows
        q *= num_rows
        out = q.t()
        if not q_finite:
            raise FloatingPointError(
                'distributed_sinkhorn_knopp: exp(scores / epsilon) is not '
                f'finite (epsilon={epsilon}, dtype={dtype}, max |score|='
                f'{max_abs.item():.4g}); normalise the inputs or use float64'
            )
        if not torch.isfinite(out).all():
            raise FloatingPointError(
                'distributed_sinkhorn_knopp: the codes are not finite '
                f'(epsilon={epsilon}, dtype={dtype}, max |score|='
                f'{max_abs.item():.4g}); a prototype got zero mass: lower '
                'the scale of the scores or use float64'
            )
        return out
