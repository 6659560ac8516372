"""Generate a small deterministic synthetic dataset.

Every image is a textured, noisy background (low-frequency blotches, a
random smooth colour gradient and per-pixel noise) with ONE object on it
whose shape and colour are both determined by the class, at a random
position and a random size (30%-70% of the image side), fully inside the
image. :func:`draw_sample` is the reusable core; each on-disk layout is a
writer function registered in :data:`WRITERS`.

Examples::

    python tools/dataset_converters/make_synthetic.py --out data/synth \\
        --num-classes 4 --per-class 50
    python tools/dataset_converters/make_synthetic.py --format imagefolder \\
        --out data/synth --classes 10 --per-class 20 --size 96 --ext jpg

ImageFolder layout (``--format imagefolder``)::

    OUT/classes.txt                 one class name per line, label order
    OUT/train/class_000/class_000_0000.png ...  train images, a folder per
                                                class (unique basenames)
    OUT/val/class_000/class_000_0000.png ...    val images
    OUT/meta/train.txt              '<path relative to train/> <label>'
    OUT/meta/val.txt                '<path relative to val/> <label>'

The output depends only on the arguments: image ``k`` of class ``c`` in a
split is drawn from a generator seeded with ``(seed, split, c, k)``, so the
files are byte-identical for the same arguments whatever the iteration
order. Existing files under ``OUT`` are overwritten, others are left alone.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
if sys.path[0] != str(REPO_ROOT):
    sys.path.insert(0, str(REPO_ROOT))

import cv2  # noqa: E402
import numpy as np  # noqa: E402

__all__ = [
    'SHAPES',
    'SPLITS',
    'WRITERS',
    'SyntheticSpec',
    'class_color',
    'class_names',
    'class_shape',
    'draw_sample',
    'generate',
    'main',
    'sample_rng',
]

#: Object shapes, cycled by class index (class ``c`` -> ``SHAPES[c % n]``).
SHAPES = (
    'circle',
    'square',
    'triangle',
    'cross',
    'diamond',
    'ring',
    'star',
    'ellipse',
    'hexagon',
    'arrow',
)

#: Split name -> id mixed into the per-sample seed.
SPLITS = {'train': 0, 'val': 1, 'test': 2}

_SHIFT = 4  # cv2 fixed-point fractional bits for sub-pixel vertices
_SCALE = 1 << _SHIFT
_MIN_FRAC, _MAX_FRAC = 0.3, 0.7  # object side / image side


def sample_rng(seed: int, split: str, class_idx: int, index: int):
    """Return the generator of one sample.

    Args:
        seed (int): Global seed (non-negative).
        split (str): A key of :data:`SPLITS`.
        class_idx (int): Class index.
        index (int): Index of the sample within its class and split.

    Returns:
        numpy.random.Generator: Seeded from ``(seed, split, class, index)``.
    """
    return np.random.default_rng([seed, SPLITS[split], class_idx, index])


def class_shape(class_idx: int) -> str:
    """Return the shape name of a class (cycled through :data:`SHAPES`)."""
    return SHAPES[class_idx % len(SHAPES)]


def class_color(class_idx: int, num_classes: int) -> tuple[int, int, int]:
    """Return the BGR colour of a class.

    Hues are spread evenly over the colour wheel, so every class has its
    own hue and, together with :func:`class_shape`, a distinct
    (shape, colour) pair; saturation and value are high so the object
    stands out from the desaturated background.

    Args:
        class_idx (int): Class index in ``[0, num_classes)``.
        num_classes (int): Number of classes.

    Returns:
        tuple[int, int, int]: Colour as uint8 BGR values.
    """
    hue = 360.0 * class_idx / max(num_classes, 1)
    hsv = np.array([[[hue, 0.9, 235.0]]], dtype=np.float32)
    bgr = cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)[0, 0]
    b, g, r = np.clip(np.rint(bgr), 0, 255).astype(int)
    return int(b), int(g), int(r)


def class_names(num_classes: int) -> list[str]:
    """Return ``class_000``, ``class_001``, ... (sortable, label order)."""
    width = max(3, len(str(num_classes - 1)))
    return [f'class_{c:0{width}d}' for c in range(num_classes)]


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """Desaturated gradient + low-frequency blotches + pixel noise."""
    grey = rng.uniform(60.0, 190.0, size=2)
    tint = rng.uniform(-20.0, 20.0, size=(2, 3))
    c0, c1 = grey[0] + tint[0], grey[1] + tint[1]
    theta = rng.uniform(0.0, 2.0 * np.pi)
    coords = np.arange(size, dtype=np.float32) / max(size - 1, 1)
    proj = coords[None, :] * np.cos(theta) + coords[:, None] * np.sin(theta)
    t = (proj - proj.min()) / max(float(proj.max() - proj.min()), 1e-6)
    img = c0 + t[..., None] * (c1 - c0)
    grid = max(2, size // 12)
    blotch = rng.normal(0.0, rng.uniform(4.0, 12.0), size=(grid, grid, 3))
    img += cv2.resize(
        blotch.astype(np.float32),
        (size, size),
        interpolation=cv2.INTER_CUBIC,
    )
    return img


def _fixed(points: np.ndarray) -> np.ndarray:
    """Float (N, 2) vertices -> cv2 fixed-point int32 (1, N, 2)."""
    return np.round(points * _SCALE).astype(np.int32)[None]


def _regular(n: int, cx, cy, r, phase=-np.pi / 2) -> np.ndarray:
    angles = phase + 2.0 * np.pi * np.arange(n) / n
    return np.stack([cx + r * np.cos(angles), cy + r * np.sin(angles)], 1)


def _draw_shape(mask: np.ndarray, shape: str, x0: int, y0: int, side: int):
    """Fill ``shape`` (value 1) into the ``side`` square at ``(x0, y0)``."""
    r = (side - 1) / 2.0  # vertices lie on pixel centres in [x0, x0+side-1]
    cx, cy = x0 + r, y0 + r
    lo_x, hi_x, lo_y, hi_y = x0, x0 + side - 1, y0, y0 + side - 1

    def poly(points):
        cv2.fillPoly(mask, _fixed(np.asarray(points)), 1, cv2.LINE_8, _SHIFT)

    def disk(radius, value=1):
        center = (int(round(cx * _SCALE)), int(round(cy * _SCALE)))
        rad = int(round(radius * _SCALE))
        cv2.circle(mask, center, rad, value, -1, cv2.LINE_8, _SHIFT)

    if shape == 'circle':
        disk(r)
    elif shape == 'square':
        poly([(lo_x, lo_y), (hi_x, lo_y), (hi_x, hi_y), (lo_x, hi_y)])
    elif shape == 'triangle':
        poly([(cx, lo_y), (hi_x, hi_y), (lo_x, hi_y)])
    elif shape == 'cross':
        w = r / 3.0
        poly([(cx - w, lo_y), (cx + w, lo_y), (cx + w, hi_y), (cx - w, hi_y)])
        poly([(lo_x, cy - w), (hi_x, cy - w), (hi_x, cy + w), (lo_x, cy + w)])
    elif shape == 'diamond':
        poly([(cx, lo_y), (hi_x, cy), (cx, hi_y), (lo_x, cy)])
    elif shape == 'ring':
        disk(r)
        disk(0.55 * r, value=0)
    elif shape == 'star':
        outer = _regular(5, cx, cy, r)
        inner = _regular(5, cx, cy, 0.45 * r, phase=-np.pi / 2 + np.pi / 5)
        poly(np.stack([outer, inner], 1).reshape(-1, 2))
    elif shape == 'ellipse':
        center = (int(round(cx * _SCALE)), int(round(cy * _SCALE)))
        axes = (int(round(r * _SCALE)), int(round(0.55 * r * _SCALE)))
        cv2.ellipse(mask, center, axes, 0, 0, 360, 1, -1, cv2.LINE_8, _SHIFT)
    elif shape == 'hexagon':
        poly(_regular(6, cx, cy, r, phase=0.0))
    elif shape == 'arrow':
        w = r / 3.0
        poly(
            [
                (lo_x, cy - w),
                (cx, cy - w),
                (cx, lo_y),
                (hi_x, cy),
                (cx, hi_y),
                (cx, cy + w),
                (lo_x, cy + w),
            ]
        )
    else:
        raise ValueError(f'unknown shape {shape!r}; known: {SHAPES}')


def draw_sample(
    rng: np.random.Generator,
    class_idx: int,
    num_classes: int,
    size: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Draw one synthetic image with one object of class ``class_idx``.

    The object has shape :func:`class_shape` and colour :func:`class_color`
    (with a small per-image brightness jitter), a random side between 30%
    and 70% of ``size`` and a random position fully inside the image. The
    whole image then gets low-contrast per-pixel noise.

    Args:
        rng (numpy.random.Generator): Source of all randomness (see
            :func:`sample_rng`).
        class_idx (int): Class index in ``[0, num_classes)``.
        num_classes (int): Number of classes (sets the hue wheel).
        size (int): Image side in pixels.

    Returns:
        tuple[numpy.ndarray, numpy.ndarray, numpy.ndarray]: ``img``
        (``size x size x 3`` uint8, BGR), ``box`` (float32 ``[x1, y1, x2,
        y2]`` in pixels, the tight box of the mask with inclusive ``x1,
        y1`` and exclusive ``x2, y2``: the object covers columns
        ``x1 .. x2 - 1`` and rows ``y1 .. y2 - 1``) and ``mask``
        (``size x size`` uint8, 1 on the object, 0 elsewhere).
    """
    if not 0 <= class_idx < num_classes:
        raise ValueError(f'class_idx {class_idx} not in [0, {num_classes})')
    if size < 4:
        raise ValueError(f'size must be >= 4, got {size}')
    img = _background(rng, size)

    lo = max(2, int(round(_MIN_FRAC * size)))
    hi = max(lo, int(round(_MAX_FRAC * size)))
    side = int(rng.integers(lo, hi + 1))
    x0 = int(rng.integers(0, size - side + 1))
    y0 = int(rng.integers(0, size - side + 1))
    mask = np.zeros((size, size), dtype=np.uint8)
    _draw_shape(mask, class_shape(class_idx), x0, y0, side)

    color = np.asarray(class_color(class_idx, num_classes), np.float32)
    color *= rng.uniform(0.85, 1.0)
    img[mask.astype(bool)] = color
    img += rng.normal(0.0, rng.uniform(2.0, 6.0), size=img.shape)
    img = np.clip(np.rint(img), 0, 255).astype(np.uint8)

    ys, xs = np.nonzero(mask)
    box = np.array(
        [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], dtype=np.float32
    )
    return img, box, mask


def _write_image(path: Path, img: np.ndarray, ext: str) -> None:
    params = [cv2.IMWRITE_JPEG_QUALITY, 95] if ext == 'jpg' else []
    ok, buf = cv2.imencode(f'.{ext}', img, params)
    if not ok:
        raise RuntimeError(f'cv2.imencode failed for {path}')
    path.write_bytes(buf.tobytes())


@dataclass(frozen=True)
class SyntheticSpec:
    """What to generate; passed to every writer in :data:`WRITERS`.

    Args:
        out (Path): Output root.
        num_classes (int): Number of classes.
        per_class (int): Train images per class.
        val_per_class (int): Val images per class.
        size (int): Image side in pixels.
        seed (int): Global seed.
        ext (str): Image extension, ``'png'`` or ``'jpg'``.
    """

    out: Path
    num_classes: int
    per_class: int
    val_per_class: int
    size: int = 64
    seed: int = 0
    ext: str = 'png'

    def split_counts(self) -> dict[str, int]:
        """Images per class of each split."""
        return {'train': self.per_class, 'val': self.val_per_class}


def write_imagefolder(spec: SyntheticSpec) -> dict:
    """Write the ImageFolder layout (see the module docstring).

    Args:
        spec (SyntheticSpec): What to generate.

    Returns:
        dict: Image counts per split (``train``, ``val``) and ``classes``.
    """
    names = class_names(spec.num_classes)
    spec.out.mkdir(parents=True, exist_ok=True)
    (spec.out / 'meta').mkdir(exist_ok=True)
    (spec.out / 'classes.txt').write_text(''.join(f'{n}\n' for n in names))
    counts = {}
    for split, per_class in spec.split_counts().items():
        lines = []
        for c, name in enumerate(names):
            folder = spec.out / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for k in range(per_class):
                rng = sample_rng(spec.seed, split, c, k)
                img, _, _ = draw_sample(rng, c, spec.num_classes, spec.size)
                _write_image(
                    folder / f'{name}_{k:04d}.{spec.ext}', img, spec.ext
                )
                lines.append(f'{name}/{name}_{k:04d}.{spec.ext} {c}\n')
        (spec.out / 'meta' / f'{split}.txt').write_text(''.join(lines))
        counts[split] = len(lines)
    return {**counts, 'classes': names}


#: Output format -> writer ``(SyntheticSpec) -> dict``. Add cub,
#: imagenet-loc, openimages-mask, coco, voc, sketch here as they come.
WRITERS: dict[str, Callable[[SyntheticSpec], dict]] = {
    'imagefolder': write_imagefolder,
}


def generate(
    fmt: str,
    out: str | Path,
    num_classes: int,
    per_class: int,
    size: int = 64,
    seed: int = 0,
    val_per_class: int | None = None,
    ext: str = 'png',
) -> dict:
    """Generate a synthetic dataset in format ``fmt`` under ``out``.

    Args:
        fmt (str): A key of :data:`WRITERS`.
        out (str | Path): Output root (created if missing).
        num_classes (int): Number of classes (>= 1).
        per_class (int): Train images per class (>= 1).
        size (int): Image side in pixels. Defaults to 64.
        seed (int): Global seed (>= 0). Defaults to 0.
        val_per_class (int | None): Val images per class; ``None`` means
            ``max(1, per_class // 4)``.
        ext (str): ``'png'`` or ``'jpg'``. Defaults to ``'png'``.

    Returns:
        dict: ``format``, ``out``, ``num_classes``, ``size``, ``seed``,
        ``ext`` plus the writer's summary (for imagefolder: ``train`` and
        ``val`` image counts and ``classes``).
    """
    if fmt not in WRITERS:
        raise ValueError(f'unknown format {fmt!r}; known: {sorted(WRITERS)}')
    if ext not in ('png', 'jpg'):
        raise ValueError(f"ext must be 'png' or 'jpg', got {ext!r}")
    if val_per_class is None:
        val_per_class = max(1, per_class // 4)
    for name, value, low in (
        ('num_classes', num_classes, 1),
        ('per_class', per_class, 1),
        ('val_per_class', val_per_class, 0),
        ('size', size, 4),
        ('seed', seed, 0),
    ):
        if value < low:
            raise ValueError(f'{name} must be >= {low}, got {value}')
    spec = SyntheticSpec(
        out=Path(out),
        num_classes=num_classes,
        per_class=per_class,
        val_per_class=val_per_class,
        size=size,
        seed=seed,
        ext=ext,
    )
    summary = WRITERS[fmt](spec)
    return {
        'format': fmt,
        'out': str(spec.out),
        'num_classes': num_classes,
        'size': size,
        'seed': seed,
        'ext': ext,
        **summary,
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options (see the module docstring)."""
    parser = argparse.ArgumentParser(
        description='Generate a deterministic synthetic dataset '
        '(one class-coloured, class-shaped object per image).'
    )
    parser.add_argument(
        '--format',
        dest='fmt',
        default='imagefolder',
        choices=sorted(WRITERS),
        help='output layout (default: imagefolder)',
    )
    parser.add_argument('--out', required=True, help='output directory')
    parser.add_argument(
        '--num-classes',
        '--classes',
        dest='num_classes',
        type=int,
        default=4,
        help='number of classes (default: 4)',
    )
    parser.add_argument(
        '--per-class',
        type=int,
        default=20,
        help='train images per class (default: 20)',
    )
    parser.add_argument(
        '--val-per-class',
        type=int,
        default=None,
        help='val images per class (default: max(1, per_class // 4))',
    )
    parser.add_argument(
        '--size', type=int, default=64, help='image side in px (default: 64)'
    )
    parser.add_argument(
        '--seed', type=int, default=0, help='global seed (default: 0)'
    )
    parser.add_argument(
        '--ext',
        choices=('jpg', 'png'),
        default='png',
        help='image file type (default: png)',
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
        summary = generate(
            args.fmt,
            args.out,
            num_classes=args.num_classes,
            per_class=args.per_class,
            size=args.size,
            seed=args.seed,
            val_per_class=args.val_per_class,
            ext=args.ext,
        )
    except ValueError as err:
        print(f'make_synthetic: error: {err}', file=sys.stderr)
        return 2
    counts = ', '.join(
        f'{summary[s]} {s}' for s in ('train', 'val', 'test') if s in summary
    )
    print(
        f'make_synthetic: {summary["format"]}: {counts} images, '
        f'{summary["num_classes"]} classes, {summary["size"]}px, '
        f'seed {summary["seed"]} -> {summary["out"]}'
    )
    return 0


if __name__ == '__main__':
    sys.exit(main())
