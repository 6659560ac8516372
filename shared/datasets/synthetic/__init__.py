"""Deterministic synthetic datasets in every on-disk layout we read.

``generate(fmt, out, ...)`` renders images with objects of class-specific
shape, colour, mark and orientation at known boxes and masks
(:mod:`.draw`), writes them in the real layout of ``fmt`` (one module per
format), and records ``synthetic_manifest.json`` in ``out``. The command
line is ``tools/dataset_converters/make_synthetic.py``.
"""

from __future__ import annotations

import importlib
import json
import platform
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from .common import (
    CORRUPT_KINDS,
    FORMAT_IDS,
    SyntheticSpec,
    WriterResult,
    sha256_file,
)
from .draw import MAX_CLASSES

__all__ = [
    'ALIASES',
    'CORRUPT_KINDS',
    'MANIFEST',
    'WRITERS',
    'SyntheticSpec',
    'WriterResult',
    'generate',
    'get_writer',
]

#: Format -> ``'module:function'`` of its writer (imported on use).
WRITERS: dict[str, str] = {
    'imagefolder': 'imagefolder:write',
    'cub': 'cub:write',
    'imagenet-loc': 'imagenet:write',
    'openimages-mask': 'openimages:write',
    'coco': 'coco:write',
    'voc': 'voc:write',
    'sketch': 'sketch:write',
}
#: Accepted alternative spellings of formats.
ALIASES = {'coco-multilabel': 'coco', 'txt-list': 'sketch'}
MANIFEST = 'synthetic_manifest.json'

#: Default image file type per format.
DEFAULT_EXT = {'imagefolder': 'png'}


def get_writer(fmt: str) -> Callable[[SyntheticSpec], WriterResult]:
    """Import and return the writer of ``fmt`` (aliases accepted)."""
    fmt = ALIASES.get(fmt, fmt)
    if fmt not in WRITERS:
        raise ValueError(
            f'unknown format {fmt!r}; known: {sorted(WRITERS)} '
            f'(aliases {sorted(ALIASES)})'
        )
    module, func = WRITERS[fmt].split(':')
    return getattr(importlib.import_module(f'{__name__}.{module}'), func)


def generate(
    fmt: str,
    out: str | Path,
    num_classes: int,
    per_class: int,
    val_per_class: int | None = None,
    size_range: tuple[int, int] = (160, 320),
    seed: int = 0,
    workers: int = 1,
    corrupt: str | None = None,
    write_oracle_maps: bool = False,
    **options,
) -> dict:
    """Generate a synthetic dataset in layout ``fmt`` under ``out``.

    Args:
        fmt (str): A key of :data:`WRITERS` or :data:`ALIASES`.
        out (str | Path): Output directory (created if missing).
        num_classes (int): Number of classes, ``1..MAX_CLASSES``.
        per_class (int): Training images per class (>= 1).
        val_per_class (int | None): Evaluation images per class; ``None``
            means ``max(1, per_class // 4)``.
        size_range (tuple[int, int]): Inclusive range of image sides.
        seed (int): Global seed (>= 0).
        workers (int): Rendering processes.
        corrupt (str | None): Defect to inject (:data:`CORRUPT_KINDS`).
        write_oracle_maps (bool): Write oracle score maps of eval images.
        **options: Format options (``ext``, ``val_layout``, ``legacy_pt``).

    Returns:
        dict: The manifest entry written for this run: ``format``,
        ``args``, ``versions``, ``counts``, ``annotation_sha256`` (relative
        path -> hex digest), ``corruption`` and the writer's extras.
    """
    fmt = ALIASES.get(fmt, fmt)
    writer = get_writer(fmt)
    if val_per_class is None:
        val_per_class = max(1, per_class // 4)
    lo, hi = (int(v) for v in size_range)
    for name, value, low in (
        ('num_classes', num_classes, 1),
        ('per_class', per_class, 1),
        ('val_per_class', val_per_class, 0),
        ('size', lo, 8),
        ('seed', seed, 0),
        ('workers', workers, 1),
    ):
        if value < low:
            raise ValueError(f'{name} must be >= {low}, got {value}')
    if hi < lo:
        raise ValueError(f'size range {lo}..{hi} is empty')
    if num_classes > MAX_CLASSES:
        raise ValueError(
            f'--num-classes {num_classes} exceeds the {MAX_CLASSES} '
            'distinct class styles the generator can draw'
        )
    if corrupt is not None and corrupt not in CORRUPT_KINDS:
        raise ValueError(f'unknown --corrupt {corrupt!r}; {CORRUPT_KINDS}')
    options = {k: v for k, v in options.items() if v is not None}
    options.setdefault('ext', DEFAULT_EXT.get(fmt, 'jpg'))
    spec = SyntheticSpec(
        fmt=fmt,
        out=Path(out),
        num_classes=num_classes,
        per_class=per_class,
        val_per_class=val_per_class,
        size_range=(lo, hi),
        seed=seed,
        workers=workers,
        corrupt=corrupt,
        write_oracle_maps=write_oracle_maps,
        options=options,
    )
    spec.out.mkdir(parents=True, exist_ok=True)
    result = writer(spec)
    entry = {
        'format': fmt,
        'format_id': FORMAT_IDS[fmt],
        'args': {
            'num_classes': num_classes,
            'per_class': per_class,
            'val_per_class': val_per_class,
            'size_range': [lo, hi],
            'seed': seed,
            'corrupt': corrupt,
            'write_oracle_maps': write_oracle_maps,
            **options,
        },
        'versions': {
            'python': platform.python_version(),
            'numpy': np.__version__,
            'opencv': cv2.__version__,
        },
        'counts': result.counts,
        'annotation_sha256': {
            str(Path(p).relative_to(spec.out)): sha256_file(Path(p))
            for p in sorted(result.annotation_files)
        },
        'corruption': result.corruption,
        **result.extra,
    }
    _update_manifest(spec.out / MANIFEST, fmt, entry)
    return entry


def _update_manifest(path: Path, fmt: str, entry: dict) -> None:
    """Merge ``entry`` under ``formats[fmt]`` (several formats share DIR)."""
    manifest = {'formats': {}}
    if path.is_file():
        try:
            manifest = json.loads(path.read_text())
            manifest.setdefault('formats', {})
        except json.JSONDecodeError:
            manifest = {'formats': {}}
    manifest['formats'][fmt] = entry
    tmp = path.with_suffix('.json.tmp')
    tmp.write_text(json.dumps(manifest, indent=2, sort_keys=True) + '\n')
    tmp.replace(path)
