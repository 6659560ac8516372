"""Timing helpers shared by the benchmarks in ``tools/analysis/``."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

import torch

__all__ = ['interleaved_runs', 'synchronize', 'time_interleaved']


def synchronize(device: str | torch.device) -> None:
    """Wait for the queued kernels of ``device`` (a no-op off CUDA)."""
    device = torch.device(device)
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def interleaved_runs(
    fns: dict[str, Callable[[], Any]], iters: int, warmup: int
) -> dict[str, list[Any]]:
    """Call every function ``iters`` times, interleaved.

    Each repeat calls every function once, in reversed order on odd
    repeats so no variant always runs first, after ``warmup`` untimed
    calls of each.

    Args:
        fns: Name -> zero-argument callable (one iteration).
        iters: Timed repeats.
        warmup: Untimed calls of each function first.

    Returns:
        dict[str, list]: Name -> the ``iters`` return values, in order.
    """
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    results: dict[str, list[Any]] = {name: [] for name in fns}
    names = list(fns)
    for rep in range(iters):
        for name in names if rep % 2 == 0 else names[::-1]:
            results[name].append(fns[name]())
    return results


def time_interleaved(
    fns: dict[str, Callable[[], object]],
    iters: int,
    warmup: int,
    device: str | torch.device,
) -> dict[str, float]:
    """Median seconds per call of each function, calls interleaved.

    Args:
        fns: Name -> zero-argument callable (one iteration).
        iters: Timed repeats (see :func:`interleaved_runs`).
        warmup: Untimed calls of each function first.
        device: Synchronised around each timed call.

    Returns:
        dict[str, float]: Name -> median seconds.
    """

    def timed(fn: Callable[[], object]) -> Callable[[], float]:
        def run() -> float:
            synchronize(device)
            start = time.perf_counter()
            fn()
            synchronize(device)
            return time.perf_counter() - start

        return run

    runs = interleaved_runs(
        {name: timed(fn) for name, fn in fns.items()}, iters, warmup
    )
    return {name: statistics.median(t) for name, t in runs.items()}
