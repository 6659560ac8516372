"""Plot and summarise MMEngine scalar logs (``vis_data/scalars.json``).

Each line of ``scalars.json`` is a JSON dict. Train lines carry ``iter``
(and ``loss``, ``lr``, ``epoch``, ...); validation lines carry the metrics
(``accuracy/top1``, ...) and ``step`` (the epoch, or the iteration for
iteration-based loops) but no ``iter``. A JSON_LOG argument is either the
file itself or a work dir, in which case the newest
``*/vis_data/scalars.json`` under it is used.

Examples::

    python tools/analysis/analyze_logs.py plot_curve work_dirs/exp \\
        --keys loss accuracy/top1 --out curves.png --title exp
    python tools/analysis/analyze_logs.py summary work_dirs/a work_dirs/b
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
if sys.path[0] != str(REPO_ROOT):
    sys.path.insert(0, str(REPO_ROOT))

__all__ = [
    'LogError',
    'ScalarLog',
    'load_log',
    'main',
    'plot_curve',
    'resolve_log',
    'summarize',
]

#: Keys of validation lines that are bookkeeping, not metrics.
NON_METRIC_KEYS = frozenset(
    {'step', 'epoch', 'iter', 'time', 'data_time', 'memory', 'lr'}
)


class LogError(ValueError):
    """A log file is missing, unreadable or lacks a requested key."""


@dataclass
class ScalarLog:
    """The lines of one ``scalars.json``, split into train and val.

    Args:
        path (Path): The json file.
        train (list[dict]): Lines with an ``iter`` key.
        val (list[dict]): The other lines (validation metrics).
        skipped (int): Lines that were blank or not valid JSON dicts (e.g.
            a truncated last line of a running job).
    """

    path: Path
    train: list[dict] = field(default_factory=list)
    val: list[dict] = field(default_factory=list)
    skipped: int = 0

    def keys(self, split: str) -> list[str]:
        """Sorted keys seen in the ``'train'`` or ``'val'`` lines."""
        lines = self.train if split == 'train' else self.val
        return sorted({k for line in lines for k in line})

    def series(self, key: str) -> tuple[str, list[float], list[float]]:
        """Return ``(x_name, xs, ys)`` of ``key``.

        Train keys are indexed by ``iter``, val keys by ``step``.

        Raises:
            LogError: ``key`` is in no line; the message lists the keys
                available.
        """
        for split, x_name in (('train', 'iter'), ('val', 'step')):
            lines = self.train if split == 'train' else self.val
            pts = [
                (line[x_name], line[key])
                for line in lines
                if _is_number(line.get(key)) and _is_number(line.get(x_name))
            ]
            if pts:
                xs, ys = zip(*pts)
                return x_name, list(xs), list(ys)
        raise LogError(
            f'key {key!r} not found in {self.path}; available train keys: '
            f'{", ".join(self.keys("train")) or "none"}; val keys: '
            f'{", ".join(self.keys("val")) or "none"}'
        )


def _is_number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def resolve_log(path: str | Path) -> Path:
    """Map a JSON_LOG argument to a ``scalars.json`` file.

    Args:
        path (str | Path): The json file, a ``<timestamp>`` run dir holding
            ``vis_data/scalars.json``, or a work dir holding run dirs.

    Returns:
        Path: The file (for a work dir: the newest by modification time,
        ties broken by the run dir name).

    Raises:
        LogError: Nothing suitable exists.
    """
    path = Path(path)
    if path.is_file():
        return path
    if not path.is_dir():
        raise LogError(f'{path} does not exist')
    direct = path / 'vis_data' / 'scalars.json'
    if direct.is_file():
        return direct
    found = [p for p in path.glob('*/vis_data/scalars.json') if p.is_file()]
    if not found:
        raise LogError(f'no */vis_data/scalars.json under work dir {path}')
    return max(found, key=lambda p: (p.stat().st_mtime, str(p)))


def load_log(path: str | Path) -> ScalarLog:
    """Read a ``scalars.json`` (or the newest one of a work dir).

    Args:
        path (str | Path): See :func:`resolve_log`.

    Returns:
        ScalarLog: The parsed lines.
    """
    log = ScalarLog(resolve_log(path))
    with open(log.path, encoding='utf-8') as f:
        for raw in f:
            raw = raw.strip()
            try:
                line = json.loads(raw) if raw else None
            except json.JSONDecodeError:
                line = None
            if not isinstance(line, dict):
                log.skipped += int(bool(raw))
                continue
            (log.train if 'iter' in line else log.val).append(line)
    return log


def _lower_is_better(key: str) -> bool:
    name = key.lower()
    return any(s in name for s in ('loss', 'err', 'mae', 'mse', 'rmse'))


def summarize(log: ScalarLog) -> list[str]:
    """Return the summary lines of one log.

    Lists the number of train lines, the last train ``loss`` and, for each
    metric seen in validation lines, its best value (max, or min for
    loss/error-like names) with its ``step`` and its last value.
    """
    out = [f'{log.path}']
    n_train = len(log.train)
    desc = f'  train lines: {n_train}'
    if n_train:
        last = log.train[-1]
        extra = [f'{k} {last[k]}' for k in ('epoch', 'iter') if k in last]
        if extra:
            desc += f' (last {", ".join(extra)})'
    out.append(desc)
    losses = [ln['loss'] for ln in log.train if _is_number(ln.get('loss'))]
    out.append(
        f'  last loss: {losses[-1]:.4f}' if losses else '  last loss: n/a'
    )
    out.append(f'  val lines: {len(log.val)}')
    metrics = [
        k
        for k in log.keys('val')
        if k not in NON_METRIC_KEYS
        and any(_is_number(ln.get(k)) for ln in log.val)
    ]
    for key in metrics:
        pts = [
            (ln.get('step'), ln[key])
            for ln in log.val
            if _is_number(ln.get(key)) and not math.isnan(ln[key])
        ]
        if not pts:
            out.append(f'  {key}: all NaN')
            continue
        pick = min if _lower_is_better(key) else max
        best_step, best = pick(pts, key=lambda p: p[1])
        at = f' (step {best_step})' if best_step is not None else ''
        out.append(
            f'  {key}: best {best:.4f}{at}, last {pts[-1][1]:.4f} '
            f'({len(pts)} evals)'
        )
    if log.skipped:
        out.append(f'  skipped {log.skipped} unreadable line(s)')
    return out


def plot_curve(
    logs: list[ScalarLog],
    keys: list[str],
    out: str | Path,
    title: str | None = None,
    legend: list[str] | None = None,
) -> Path:
    """Plot ``keys`` of every log, one subplot per key, to ``out``.

    Args:
        logs (list[ScalarLog]): Parsed logs.
        keys (list[str]): Scalar names; train keys are plotted against
            ``iter``, val keys against ``step``.
        out (str | Path): Image file to write (format from its suffix).
        title (str | None): Figure title.
        legend (list[str] | None): One label per log (default: the path).

    Returns:
        Path: ``out``.

    Raises:
        LogError: A key is missing from a log (checked before plotting).
    """
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    if legend is not None and len(legend) != len(logs):
        raise LogError(
            f'--legend has {len(legend)} labels for {len(logs)} logs'
        )
    labels = legend or [str(log.path) for log in logs]
    data = [[log.series(key) for log in logs] for key in keys]

    fig, axes = plt.subplots(
        len(keys), 1, figsize=(8, 3.2 * len(keys)), squeeze=False
    )
    for ax, key, per_log in zip(axes[:, 0], keys, data):
        for label, (x_name, xs, ys) in zip(labels, per_log):
            marker = 'o' if x_name == 'step' else None
            ax.plot(xs, ys, marker=marker, label=label)
        ax.set_xlabel(per_log[0][0])
        ax.set_ylabel(key)
        ax.grid(alpha=0.3)
        ax.legend(fontsize='small')
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options (see the module docstring)."""
    parser = argparse.ArgumentParser(
        description='Plot or summarise MMEngine vis_data/scalars.json logs.'
    )
    sub = parser.add_subparsers(dest='command', required=True)
    log_help = 'scalars.json file, or a work dir (newest run is used)'

    plot = sub.add_parser('plot_curve', help='plot scalars to an image')
    plot.add_argument(
        'json_logs', nargs='+', metavar='JSON_LOG', help=log_help
    )
    plot.add_argument(
        '--keys',
        nargs='+',
        default=['loss'],
        help='scalars to plot (default: loss)',
    )
    plot.add_argument('--out', required=True, help='output image (.png)')
    plot.add_argument('--title', help='figure title')
    plot.add_argument('--legend', nargs='+', help='one label per log')

    summary = sub.add_parser('summary', help='print per-log statistics')
    summary.add_argument(
        'json_logs', nargs='+', metavar='JSON_LOG', help=log_help
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the process exit status."""
    args = parse_args(argv)
    # Every tool applies the compat patches (a no-op for what it uses now,
    # but the same environment as train.py for anything it imports).
    from shared.utils.compat import apply_patches

    apply_patches()
    try:
        logs = [load_log(p) for p in args.json_logs]
        if args.command == 'plot_curve':
            out = plot_curve(
                logs, args.keys, args.out, args.title, args.legend
            )
            print(f'analyze_logs: saved {out}')
        else:
            for log in logs:
                print('\n'.join(summarize(log)))
    except LogError as err:
        print(f'analyze_logs: error: {err}', file=sys.stderr)
        return 2
    return 0


if __name__ == '__main__':
    sys.exit(main())
