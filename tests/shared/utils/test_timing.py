"""shared.utils.timing: interleaved call order, warm-up and medians."""

from __future__ import annotations

import pytest

from shared.utils.timing import (
    interleaved_runs,
    synchronize,
    time_interleaved,
)


def test_interleaved_order_warmup_and_results():
    calls = []

    def make(name):
        def fn():
            calls.append(name)
            return len(calls)

        return fn

    runs = interleaved_runs({'a': make('a'), 'b': make('b')}, 3, 2)
    # 2 warm-up rounds in order, then a,b / b,a / a,b
    assert calls == ['a', 'b', 'a', 'b', 'a', 'b', 'b', 'a', 'a', 'b']
    assert runs == {'a': [5, 8, 9], 'b': [6, 7, 10]}


def test_time_interleaved_medians(monkeypatch):
    """A fake clock that each call advances by its own cost."""
    from shared.utils import timing

    clock = [0.0]
    monkeypatch.setattr(timing.time, 'perf_counter', lambda: clock[0])
    costs = {'a': iter([3.0, 1.0, 2.0]), 'b': iter([10.0, 30.0, 20.0])}

    def make(name):
        def fn():
            clock[0] += next(costs[name])

        return fn

    out = time_interleaved({'a': make('a'), 'b': make('b')}, 3, 0, 'cpu')
    assert out == {'a': 2.0, 'b': 20.0}


def test_synchronize_is_a_noop_off_cuda():
    synchronize('cpu')
    with pytest.raises(RuntimeError):
        synchronize('not-a-device')
