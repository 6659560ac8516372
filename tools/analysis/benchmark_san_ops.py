"""Benchmark the SAN ops (``shared.ops``) against an ``nn.Unfold`` reference.

Shapes are the SAN stages for a 224x224 input, ``(C, HxW, k)`` =
(16, 112², 3), (64, 56², 7), (128, 28², 7), (256, 14², 7), (512, 7², 7):
aggregation on C channels with Cw = C/8 weight channels, subtraction2
(and subtraction) on C/4 channels, stride 1, 'same' reflect padding.

Backends: ``torch`` (the chunked PyTorch path), ``cupy`` (the CUDA kernels,
GPU only, when CuPy is installed), ``cupy-templated`` (a re-creation of
the original per-shape templated kernels, if ``shared.ops.cupy_backend``
provides ``templated_reference``) and ``unfold`` (the reference).

For each op, shape and backend it prints the forward time, the
forward+backward time (best of the repetitions), the peak extra memory of
one forward+backward (CUDA: ``max_memory_allocated``; CPU: the peak RSS of
a fresh subprocess that runs only that measurement), the max error
against a float64 unfold reference (relative to the reference's largest
magnitude) and, per row, the ratios unfold / backend of time and memory.
Exits with status 1 when an error exceeds the tolerance of the dtype.

Examples::

    python tools/analysis/benchmark_san_ops.py --quick
    python tools/analysis/benchmark_san_ops.py --device cuda \\
        --dtype float16 --batch 8
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import json
import math
import os
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
if sys.path[0] != str(REPO_ROOT):
    sys.path.insert(0, str(REPO_ROOT))

import torch  # noqa: E402

__all__ = ['STAGES', 'main', 'measure', 'parse_args']

#: SAN stage shapes for a 224² input: (C, H = W, k).
STAGES = ((16, 112, 3), (64, 56, 7), (128, 28, 7), (256, 14, 7), (512, 7, 7))
OPS = ('aggregation', 'subtraction2', 'subtraction')
DTYPES = {
    'float16': torch.float16,
    'bfloat16': torch.bfloat16,
    'float32': torch.float32,
    'float64': torch.float64,
}
#: Max error relative to max |reference| (forward and every gradient).
TOLERANCE = {
    'float64': 1e-12,
    'float32': 1e-5,
    'float16': 1e-2,
    'bfloat16': 5e-2,
}
#: The stage and targets of the issue: torch path vs unfold, forward+backward.
TARGET_STAGE, TARGET_SPEEDUP, TARGET_MEMORY = 1, 3.0, 5.0
MIB = 1024.0**2
#: Timing: keep repeating a short op up to this many runs / seconds.
MAX_REPS, MIN_TIME_S = 50, 0.25


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Benchmark the SAN ops against an nn.Unfold reference: '
        'time, peak memory and error per op and SAN stage shape.'
    )
    parser.add_argument(
        '--device',
        choices=('cpu', 'cuda', 'auto'),
        default='auto',
        help='cuda if available for auto (default: auto)',
    )
    parser.add_argument(
        '--dtype', choices=tuple(DTYPES), default='float32',
        help='default: float32',
    )  # fmt: skip
    parser.add_argument(
        '--batch',
        type=int,
        default=None,
        help='images per call (default: 2 on CPU, 32 on CUDA; 1 with --quick)',
    )
    parser.add_argument(
        '--quick',
        action='store_true',
        help='stages 0-1, aggregation and subtraction2 only, fewer '
        'repetitions (CPU: under a minute on 2 cores)',
    )
    parser.add_argument(
        '--stages',
        type=lambda s: [int(v) for v in s.split(',')],
        default=None,
        help='comma-separated stage indices 0-4 (default: all; 0,1 with '
        '--quick)',
    )
    parser.add_argument(
        '--ops',
        type=lambda s: s.split(','),
        default=None,
        help=f'comma-separated subset of {",".join(OPS)}',
    )
    parser.add_argument(
        '--reps', type=int, default=None,
        help='timed repetitions (default: 5, 3 with --quick)',
    )  # fmt: skip
    parser.add_argument(
        '--threads', type=int, default=None,
        help="CPU threads (default: torch's default); 1 gives steadier "
        'timings on a machine shared with other jobs',
    )  # fmt: skip
    parser.add_argument('--seed', type=int, default=0)
    # internal: measure one (backend, op, shape) in this process
    parser.add_argument('--_measure', default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.batch is not None and args.batch < 1:
        parser.error('--batch must be >= 1')
    if args.threads is not None and args.threads < 1:
        parser.error('--threads must be >= 1')
    for stage in args.stages or ():
        if not 0 <= stage < len(STAGES):
            parser.error(f'--stages: {stage} is not in 0..{len(STAGES) - 1}')
    for op in args.ops or ():
        if op not in OPS:
            parser.error(f'--ops: unknown op {op!r}; choose from {OPS}')
    return args


# -- problem set-up -----------------------------------------------------------
def make_problem(
    op: str, stage: int, batch: int, dtype: torch.dtype, device: str, seed: int
) -> dict:
    """Inputs, output gradient and configuration of one op at one stage."""
    c, hw, k = STAGES[stage]
    gen = torch.Generator().manual_seed(seed)
    pad = (k - 1) // 2
    conf = dict(kernel_size=k, stride=1, padding=pad, dilation=1)

    def rand(*shape: int) -> torch.Tensor:
        t = torch.randn(*shape, generator=gen, dtype=torch.float64)
        return t.to(device=device, dtype=dtype)

    if op == 'aggregation':
        cw = c // 8
        inputs = [rand(batch, c, hw, hw), rand(batch, cw, k * k, hw * hw)]
        grad = rand(batch, c, hw, hw)
        channels = f'C={c} Cw={cw}'
    else:
        c4 = c // 4
        n_in = 2 if op == 'subtraction2' else 1
        inputs = [rand(batch, c4, hw, hw) for _ in range(n_in)]
        grad = rand(batch, c4, k * k, hw * hw)
        channels = f'C={c4}'
    # the least memory any implementation needs: output + input gradients
    ideal = grad.numel() + sum(t.numel() for t in inputs)
    return dict(
        inputs=inputs,
        grad=grad,
        conf=conf,
        desc=f'{channels} {hw}x{hw} k={k}',
        ideal_mib=ideal * grad.element_size() / MIB,
    )


def op_function(op: str, backend: str) -> Callable:
    """``f(*inputs, **conf)`` of ``op`` on ``backend``."""
    from shared.ops import functional, reference

    if backend == 'unfold':
        return getattr(reference, f'{op}_unfold')
    if backend == 'cupy-templated':
        from shared.ops import cupy_backend

        ref = cupy_backend.templated_reference

        def templated(*inputs, **conf):
            return ref(op, *inputs, **conf)

        return templated

    from shared.ops import set_backend

    set_backend(backend)
    return getattr(functional, op)


def _call(fn: Callable, problem: dict) -> torch.Tensor:
    return fn(*problem['inputs'], **problem['conf'], pad_mode='reflect')


# -- measurement --------------------------------------------------------------
def _status_kib(key: str) -> int | None:
    try:
        with open('/proc/self/status') as f:
            for line in f:
                if line.startswith(key + ':'):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _trim_heap() -> None:
    """Give freed heap memory back to the OS (glibc), so RSS ~ live data."""
    try:
        ctypes.CDLL('libc.so.6').malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _reset_peak_rss() -> bool:
    """Reset the peak RSS (VmHWM) to the current RSS (Linux >= 4.0)."""
    _trim_heap()
    try:
        with open('/proc/self/clear_refs', 'w') as f:
            f.write('5')
        return _status_kib('VmHWM') is not None
    except OSError:
        return False


class _PeakMemory:
    """Peak extra memory (bytes) since :meth:`start`, on CPU or CUDA."""

    def __init__(self, device: str) -> None:
        self.device = device

    def start(self) -> None:
        gc.collect()
        if self.device == 'cuda':
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.base = torch.cuda.memory_allocated()
        elif _reset_peak_rss():
            self.base = _status_kib('VmRSS') * 1024
            self.hwm = True
        else:  # ru_maxrss cannot be reset: only an upper growth is seen
            self.base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            self.base *= 1024
            self.hwm = False

    def peak(self) -> float:
        if self.device == 'cuda':
            torch.cuda.synchronize()
            return float(torch.cuda.max_memory_allocated() - self.base)
        if self.hwm:
            return float(_status_kib('VmHWM') * 1024 - self.base)
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        return float(rss - self.base)


def _sync(device: str) -> None:
    if device == 'cuda':
        torch.cuda.synchronize()


def measure(spec: dict, timing: bool = True, memory: bool = True) -> dict:
    """Time and/or peak memory of one (backend, op, stage) in this process.

    Args:
        spec: ``op``, ``backend``, ``stage``, ``batch``, ``dtype``,
            ``device``, ``reps``, ``seed``.
        timing: Measure ``fwd_ms`` and ``fwdbwd_ms`` (best of ``reps``).
        memory: Measure ``peak_fwd_mib`` and ``peak_mib``: the extra memory
            of one forward, and of one forward+backward. On CPU this is the
            process's peak RSS, meaningful only in a fresh process.

    Returns:
        The measured values by name.
    """
    device, dtype = spec['device'], DTYPES[spec['dtype']]
    fn = op_function(spec['op'], spec['backend'])
    problem = make_problem(
        spec['op'], spec['stage'], spec['batch'], dtype, device, spec['seed']
    )
    for t in problem['inputs']:
        t.requires_grad_(True)
    result = {}
    if memory:
        # warm up code paths and thread pools (the first large backward
        # of a process keeps ~30 MiB of thread state); the CPU child runs
        # with mmap'd blocks, so this leaves no allocator cache behind
        _call(fn, problem).backward(problem['grad'])
        for t in problem['inputs']:
            t.grad = None
        peak = _PeakMemory(device)
        peak.start()
        out = _call(fn, problem)
        _sync(device)
        result['peak_fwd_mib'] = peak.peak() / MIB
        out.backward(problem['grad'])
        _sync(device)
        result['peak_mib'] = peak.peak() / MIB
        del out
    if not timing:
        return result

    def forward() -> None:
        with torch.no_grad():
            _call(fn, problem)

    def forward_backward() -> None:
        for t in problem['inputs']:
            t.grad = None
        _call(fn, problem).backward(problem['grad'])

    for name, body in (('fwd_ms', forward), ('fwdbwd_ms', forward_backward)):
        body()
        best, spent, done = math.inf, 0.0, 0
        # at least `reps` runs, more (up to MAX_REPS) while under MIN_TIME_S:
        # the best of many runs of a short op resists CPU interference
        while done < spec['reps'] or (spent < MIN_TIME_S and done < MAX_REPS):
            _sync(device)
            start = time.perf_counter()
            body()
            _sync(device)
            elapsed = time.perf_counter() - start
            best, spent, done = min(best, elapsed), spent + elapsed, done + 1
        result[name] = best * 1e3
    return result


def _measure_in_child(spec: dict) -> dict:
    """Peak memory by :func:`measure` in a fresh interpreter (clean RSS)."""
    # glibc: serve every block >= 64 KiB by mmap and unmap it when freed
    # (a fixed threshold also stops glibc raising it dynamically), so the
    # peak RSS follows the live allocations instead of the heap's history
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_='65536')
    proc = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), '--_measure',
         json.dumps(spec)],
        capture_output=True, text=True, check=False, env=env,
    )  # fmt: skip
    if proc.returncode != 0:
        raise RuntimeError(
            f'measurement of {spec} failed:\n{proc.stderr.strip()}'
        )
    return json.loads(proc.stdout.strip().splitlines()[-1])


def max_error(op: str, backend: str, problem: dict) -> float:
    """Max |backend - float64 unfold| over output and gradients, relative."""
    from shared.ops import reference

    ref_fn = getattr(reference, f'{op}_unfold')
    inputs64 = [
        t.detach().double().requires_grad_(True) for t in problem['inputs']
    ]
    grad64 = problem['grad'].double()
    ref = ref_fn(*inputs64, **problem['conf'], pad_mode='reflect')
    ref_grads = torch.autograd.grad(ref, inputs64, grad64)
    inputs = [t.detach().requires_grad_(True) for t in problem['inputs']]
    out = _call(op_function(op, backend), {**problem, 'inputs': inputs})
    grads = torch.autograd.grad(out, inputs, problem['grad'])
    worst = 0.0
    for a, b in zip((out, *grads), (ref, *ref_grads)):
        scale = b.abs().max().item() or 1.0
        worst = max(worst, (a.double() - b).abs().max().item() / scale)
    return worst


# -- driver -------------------------------------------------------------------
def _backends(device: str) -> list[str]:
    names = ['torch']
    if device == 'cuda':
        from shared.ops import cupy_available

        if cupy_available():
            names.append('cupy')
            from shared.ops import cupy_backend

            if hasattr(cupy_backend, 'templated_reference'):
                names.append('cupy-templated')
    return [*names, 'unfold']


def _fmt(value: float | None, spec: str = '.2f') -> str:
    return 'n/a' if value is None else format(value, spec)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args._measure is not None:
        spec = json.loads(args._measure)
        if spec.get('threads'):
            torch.set_num_threads(spec['threads'])
        print(json.dumps(measure(spec, timing=False)))
        return 0
    if args.threads:
        torch.set_num_threads(args.threads)
    device = args.device
    if device == 'auto':
        device = 'cuda' if torch.cuda.is_available() else 'cpu'
    if device == 'cuda' and not torch.cuda.is_available():
        print('error: --device cuda, but CUDA is unavailable', file=sys.stderr)
        return 2
    batch = args.batch or (1 if args.quick else 2 if device == 'cpu' else 32)
    stages = args.stages or ([0, 1] if args.quick else list(range(5)))
    ops = args.ops or (
        ['aggregation', 'subtraction2'] if args.quick else list(OPS)
    )
    reps = args.reps or (3 if args.quick else 5)
    dtype = DTYPES[args.dtype]
    backends = _backends(device)
    cupy_backend = None
    if 'cupy' in backends:
        from shared.ops import cupy_backend
    count = getattr(cupy_backend, 'compile_count', None)
    compiles_before = count() if count else None

    print(
        f'SAN ops benchmark: device={device} dtype={args.dtype} '
        f'batch={batch} reps={reps} torch={torch.__version__} '
        f'threads={torch.get_num_threads()}'
    )
    print(
        'peak = extra memory of one forward+backward '
        + (
            '(max_memory_allocated)'
            if device == 'cuda'
            else '(peak RSS of a fresh subprocess)'
        )
        + '; lean = peak / (output + input gradients); x = unfold / backend'
    )
    header = (
        f'{"stage":>5} {"op":<12} {"shape":<24} {"backend":<14} '
        f'{"fwd ms":>9} {"f+b ms":>9} {"peak MiB":>9} {"lean":>5} '
        f'{"max err":>9} {"x fwd":>6} {"x f+b":>6} {"x mem":>6}'
    )
    print(header)
    print('-' * len(header))
    failed = []
    target_rows = []
    for stage in stages:
        for op in ops:
            problem = make_problem(op, stage, batch, dtype, device, args.seed)
            rows = {}
            for backend in backends:
                spec = dict(
                    op=op, stage=stage, batch=batch, dtype=args.dtype,
                    device=device, reps=reps, seed=args.seed,
                    backend=backend, threads=args.threads,
                )  # fmt: skip
                optional = backend in ('unfold', 'cupy-templated')
                try:
                    if device == 'cuda':
                        row = measure(spec)
                    else:  # memory in a fresh process, timing here
                        row = _measure_in_child(spec)
                        row.update(measure(spec, memory=False))
                    if backend != 'unfold':
                        row['err'] = max_error(op, backend, problem)
                except Exception as exc:  # noqa: BLE001
                    if not optional:
                        raise
                    # e.g. out of memory for the reference
                    line = str(exc).strip().splitlines() or [repr(exc)]
                    print(f'  ({backend} skipped: {line[0][:160]})')
                    continue
                if 'err' in row and not row['err'] <= TOLERANCE[args.dtype]:
                    failed.append((stage, op, backend, row['err']))
                rows[backend] = row
            ref = rows.get('unfold')
            for backend, row in rows.items():
                ratios = [None] * 3
                if ref is not None and backend != 'unfold':
                    ratios = [
                        ref[key] / row[key] if row[key] > 0 else None
                        for key in ('fwd_ms', 'fwdbwd_ms', 'peak_mib')
                    ]
                    if stage == TARGET_STAGE and backend == 'torch':
                        target_rows.append((op, ratios))
                print(
                    f'{stage:>5} {op:<12} {problem["desc"]:<24} '
                    f'{backend:<14} {row["fwd_ms"]:>9.2f} '
                    f'{row["fwdbwd_ms"]:>9.2f} {row["peak_mib"]:>9.1f} '
                    f'{row["peak_mib"] / problem["ideal_mib"]:>5.1f} '
                    f'{_fmt(row.get("err"), ".1e"):>9} '
                    f'{_fmt(ratios[0], ".1f"):>6} '
                    f'{_fmt(ratios[1], ".1f"):>6} '
                    f'{_fmt(ratios[2], ".1f"):>6}'
                )
            del problem
    if count:
        print(
            f'cupy compile_count: {compiles_before} before, {count()} after '
            f'(no recompiles across shapes)'
        )
    templated = getattr(cupy_backend, 'templated_reference', None)
    if 'cupy-templated' in backends and hasattr(templated, 'compile_count'):
        print(
            f'cupy-templated (per-shape kernels, as upstream) compiled '
            f'{templated.compile_count()} kernels'
        )
    for op, (_, speed, mem) in target_rows:
        line = (
            f'stage-{TARGET_STAGE} {op} torch vs unfold (fwd+bwd): '
            f'{_fmt(speed, ".1f")}x faster, {_fmt(mem, ".1f")}x less peak '
            f'memory'
        )
        if op == 'aggregation':
            ok = (speed or 0) >= TARGET_SPEEDUP and (mem or 0) >= TARGET_MEMORY
            line += (
                f' (target >= {TARGET_SPEEDUP:g}x / >= {TARGET_MEMORY:g}x: '
                f'{"met" if ok else "NOT met"})'
            )
        else:  # the output itself is K times the input
            line += ' (memory floor: its K-times output; see lean)'
        print(line)
    if failed:
        for stage, op, backend, err in failed:
            print(
                f'TOLERANCE BREACH: stage {stage} {op} {backend}: max error '
                f'{err:.2e} > {TOLERANCE[args.dtype]:.0e}',
                file=sys.stderr,
            )
        return 1
    print(f'all errors within tolerance ({TOLERANCE[args.dtype]:.0e})')
    return 0


if __name__ == '__main__':
    sys.exit(main())
