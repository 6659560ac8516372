"""Plumbing shared by the synthetic-format writers (``datasets.md`` §6).

A writer is a function ``write(spec: SyntheticSpec) -> WriterResult``
registered in :data:`shared.datasets.synthetic.WRITERS`. It renders images
in parallel with :func:`parallel_map` (each image from
:func:`sample_rng`, so output does not depend on ``--workers`` or order),
writes annotation files with :func:`write_lines`, and injects the requested
``spec.corrupt`` defect, returning where it is (file and line) so tests can
match the adapter's error against it.
"""

from __future__ import annotations

import hashlib
import multiprocessing
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

__all__ = [
    'CORRUPT_KINDS',
    'FORMAT_IDS',
    'SyntheticSpec',
    'WriterResult',
    'edit_line',
    'encode_image',
    'image_size',
    'parallel_map',
    'sample_rng',
    'save_oracle_map',
    'sha256_file',
    'write_lines',
    'write_wsol_metadata',
]

#: Format name -> id mixed into every per-image seed.
FORMAT_IDS = {
    'imagefolder': 0,
    'cub': 1,
    'imagenet-loc': 2,
    'openimages-mask': 3,
    'coco': 4,
    'voc': 5,
    'sketch': 6,
}

CORRUPT_KINDS = (
    'missing_image',
    'truncated_image',
    'box_outside',
    'empty_annotation',
    'class_mismatch',
    'duplicate_id',
    'bad_flag',
    'mask_missing',
)


@dataclass(frozen=True)
class SyntheticSpec:
    """What to generate; passed to every writer.

    Args:
        fmt (str): The format (a key of :data:`FORMAT_IDS`).
        out (Path): Output directory (``DIR``); layouts go under it.
        num_classes (int): Number of classes.
        per_class (int): Training images per class.
        val_per_class (int): Evaluation images per class (per eval split).
        size_range (tuple[int, int]): Inclusive range of each image side;
            width and height are drawn independently.
        seed (int): Global seed.
        workers (int): Processes used to render (1 = in-process).
        corrupt (str | None): One defect to inject (:data:`CORRUPT_KINDS`).
        write_oracle_maps (bool): Also write each evaluation image's object
            mask as a float32 ``.npy`` score map.
        options (dict): Format-specific options (``ext``, ``val_layout``,
            ``legacy_pt``).
    """

    fmt: str
    out: Path
    num_classes: int
    per_class: int
    val_per_class: int
    size_range: tuple[int, int] = (160, 320)
    seed: int = 0
    workers: int = 1
    corrupt: str | None = None
    write_oracle_maps: bool = False
    options: dict = field(default_factory=dict)

    @property
    def format_id(self) -> int:
        """The format's seed component."""
        return FORMAT_IDS[self.fmt]


@dataclass
class WriterResult:
    """What a writer reports back.

    Attributes:
        counts (dict): Number of images per split (or other named counts).
        annotation_files (list[Path]): Files whose SHA-256 go into the
            manifest (annotation files, not images).
        corruption (dict | None): ``{'kind', 'file', 'line'}`` of the
            injected defect (``line`` is ``None`` for a whole-file defect,
            ``file`` is the annotation file the adapter should name, and
            ``target`` the image/mask file affected if any).
        extra (dict): Anything else worth recording (class names ...).
    """

    counts: dict
    annotation_files: list[Path]
    corruption: dict | None = None
    extra: dict = field(default_factory=dict)


def sample_rng(spec: SyntheticSpec, split_id: int, index: int):
    """The generator of image ``index`` of split ``split_id``.

    Seeded with ``[seed, format_id, split_id, index]`` so every image is
    independent of the worker count and of generation order.
    """
    return np.random.default_rng([spec.seed, spec.format_id, split_id, index])


def image_size(rng: np.random.Generator, spec: SyntheticSpec):
    """Draw ``(height, width)`` independently from ``spec.size_range``."""
    lo, hi = spec.size_range
    return int(rng.integers(lo, hi + 1)), int(rng.integers(lo, hi + 1))


def encode_image(img: np.ndarray, ext: str) -> bytes:
    """Encode a BGR (or grey) uint8 image; JPEG at quality 95."""
    ext = ext.lower().lstrip('.')
    params = [cv2.IMWRITE_JPEG_QUALITY, 95] if ext in ('jpg', 'jpeg') else []
    ok, buf = cv2.imencode(f'.{ext}', img, params)
    if not ok:
        raise RuntimeError(f'cv2.imencode failed for .{ext}')
    return buf.tobytes()


def write_image(path: Path, img: np.ndarray) -> None:
    """Encode by extension and write ``img`` to ``path`` (dirs created)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(encode_image(img, path.suffix))


def write_lines(path: Path, lines: Iterable[str]) -> Path:
    """Write ``lines`` (``\\n``-terminated, UTF-8) to ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, 'w', encoding='utf-8', newline='\n') as f:
        for line in lines:
            f.write(f'{line}\n')
    return path


def write_wsol_metadata(folder: Path, rows: Iterable) -> list[Path]:
    """Write wsolevaluation box metadata (``datasets.md`` §4.3).

    Args:
        folder (Path): ``metadata/<dataset>/<split>``.
        rows: ``(image_id, label, height, width, boxes)`` per image, boxes
            being integer ``[x0, y0, x1, y1]`` rows (one
            ``localization.txt`` line each).

    Returns:
        list[Path]: ``image_ids.txt``, ``class_labels.txt``,
        ``image_sizes.txt`` and ``localization.txt``.
    """
    rows = list(rows)
    return [
        write_lines(folder / 'image_ids.txt', (r[0] for r in rows)),
        write_lines(
            folder / 'class_labels.txt', (f'{r[0]},{r[1]}' for r in rows)
        ),
        write_lines(
            folder / 'image_sizes.txt',
            (f'{i},{w},{h}' for i, _, h, w, _ in rows),
        ),
        write_lines(
            folder / 'localization.txt',
            (
                f'{i},' + ','.join(str(int(v)) for v in box)
                for i, _, _, _, boxes in rows
                for box in boxes
            ),
        ),
    ]


def save_oracle_map(spec: SyntheticSpec, key: str, mask: np.ndarray) -> None:
    """Save ``mask`` as a float32 score map ``oracle_maps/<fmt>/<key>.npy``.

    ``key`` is the image's path relative to its layout root (its id).
    """
    path = spec.out / 'oracle_maps' / spec.fmt / f'{key}.npy'
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, mask.astype(np.float32))


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file."""
    h = hashlib.sha256()
    with open(path, 'rb') as f:
        for chunk in iter(lambda: f.read(1 << 20), b''):
            h.update(chunk)
    return h.hexdigest()


def edit_line(
    path: Path, line_no: int, edit: Callable[[str], str | None]
) -> tuple[str, str | None]:
    """Replace (or with ``None`` delete) 1-based line ``line_no`` of a file.

    Returns:
        tuple[str, str | None]: The old and the new line.
    """
    lines = path.read_text(encoding='utf-8').split('\n')
    old = lines[line_no - 1]
    new = edit(old)
    if new is None:
        del lines[line_no - 1]
    else:
        lines[line_no - 1] = new
    path.write_text('\n'.join(lines), encoding='utf-8')
    return old, new


def duplicate_line(path: Path, line_no: int) -> int:
    """Insert a copy of line ``line_no`` after it; return the copy's line."""
    lines = path.read_text(encoding='utf-8').split('\n')
    lines.insert(line_no, lines[line_no - 1])
    path.write_text('\n'.join(lines), encoding='utf-8')
    return line_no + 1


def truncate_file(path: Path, keep: float = 0.4) -> None:
    """Cut a file to ``keep`` of its bytes (a truncated image)."""
    data = path.read_bytes()
    path.write_bytes(data[: max(1, int(len(data) * keep))])


def unsupported_corruption(spec: SyntheticSpec, supported: Sequence[str]):
    """Raise the error for a ``--corrupt`` kind the format cannot inject."""
    raise ValueError(
        f'--corrupt {spec.corrupt} is not available for --format {spec.fmt}; '
        f'it supports {", ".join(supported)}'
    )


def parallel_map(
    fn: Callable[[Any], Any], tasks: Sequence[Any], workers: int
) -> list:
    """``[fn(t) for t in tasks]``, over ``workers`` processes when > 1.

    ``fn`` must be a module-level function. Results keep the task order. A
    worker that dies (e.g. a spawned child that cannot import the caller)
    raises ``BrokenProcessPool`` instead of hanging.
    """
    tasks = list(tasks)
    if workers <= 1 or len(tasks) < 8:
        return [fn(t) for t in tasks]
    # spawn, not fork: a forked child can deadlock in OpenCV's thread pool.
    ctx = multiprocessing.get_context('spawn')
    chunk = max(1, len(tasks) // (workers * 8))
    with ProcessPoolExecutor(workers, mp_context=ctx) as pool:
        return list(pool.map(fn, tasks, chunksize=chunk))
