"""Rendering core of the synthetic generator (``datasets.md`` §6.1).

A class ``c`` maps injectively (for ``c < MAX_CLASSES = 1280``) to a
:class:`ClassStyle` ``(shape, hue, mark, orientation)``. A scene is a
textured background (low-resolution colour noise upsampled bicubically, a
sinusoidal stripe pattern, mild pixel noise) with one or more filled,
non-antialiased (``LINE_8``) objects, so each instance mask is exact and
each box is the tight extent of its visible mask pixels in edge coordinates
(``[x0, y0, x1, y1]``, the object covers columns ``x0 .. x1 - 1``).

Sketch scenes are black outlines of the same class shapes on white.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

__all__ = [
    'MARKS',
    'MAX_CLASSES',
    'NUM_HUES',
    'ORIENTATIONS',
    'SHAPES',
    'ClassStyle',
    'Scene',
    'class_color',
    'class_style',
    'render_background',
    'render_scene',
]

SHAPES = (
    'ellipse',
    'rectangle',
    'triangle',
    'diamond',
    'pentagon',
    'hexagon',
    'star',
    'cross',
)
NUM_HUES = 10
MARKS = ('none', 'dot', 'bar', 'cross')
ORIENTATIONS = (0.0, 15.0, 30.0, 45.0)  # degrees
MAX_CLASSES = len(SHAPES) * NUM_HUES * len(MARKS) * len(ORIENTATIONS)

_SHIFT = 4  # cv2 fixed-point fractional bits
_SCALE = 1 << _SHIFT


@dataclass(frozen=True)
class ClassStyle:
    """How a class looks: shape, hue index, inner mark, orientation (deg)."""

    shape: str
    hue: int
    mark: str
    orientation: float


def class_style(class_idx: int) -> ClassStyle:
    """Return the injective style of class ``class_idx``.

    Classes ``0..7`` differ in shape *and* hue, so small class counts are
    easy to learn; the mapping stays injective up to :data:`MAX_CLASSES`.

    Raises:
        ValueError: If ``class_idx`` is outside ``[0, MAX_CLASSES)``.
    """
    if not 0 <= class_idx < MAX_CLASSES:
        raise ValueError(
            f'the generator has distinct styles for {MAX_CLASSES} classes '
            f'(0..{MAX_CLASSES - 1}); got class {class_idx}'
        )
    n_shapes = len(SHAPES)
    low = class_idx % (n_shapes * NUM_HUES)
    shape = low % n_shapes
    hue = (shape + low // n_shapes) % NUM_HUES  # injective given the shape
    high = class_idx // (n_shapes * NUM_HUES)
    return ClassStyle(
        shape=SHAPES[shape],
        hue=hue,
        mark=MARKS[high % len(MARKS)],
        orientation=ORIENTATIONS[high // len(MARKS)],
    )


def class_color(class_idx: int) -> tuple[int, int, int]:
    """BGR uint8 colour of a class (saturated, hue from the style)."""
    hue = 360.0 * class_style(class_idx).hue / NUM_HUES
    hsv = np.array([[[hue, 0.9, 235.0]]], dtype=np.float32)
    bgr = cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)[0, 0]
    b, g, r = np.clip(np.rint(bgr), 0, 255).astype(int)
    return int(b), int(g), int(r)


def _regular(n: int, radius: float, phase: float = -np.pi / 2):
    angles = phase + 2.0 * np.pi * np.arange(n) / n
    return np.stack([radius * np.cos(angles), radius * np.sin(angles)], 1)


def _unit_outline(shape: str) -> np.ndarray:
    """Outline of a shape in unit coordinates (about [-1, 1]^2)."""
    if shape == 'ellipse':
        t = np.linspace(0.0, 2.0 * np.pi, 48, endpoint=False)
        return np.stack([np.cos(t), 0.62 * np.sin(t)], 1)
    if shape == 'rectangle':
        return np.array([(-1, -0.7), (1, -0.7), (1, 0.7), (-1, 0.7)], float)
    if shape == 'triangle':
        return np.array([(0, -1), (0.95, 0.8), (-0.95, 0.8)], float)
    if shape == 'diamond':
        return np.array([(0, -1), (0.65, 0), (0, 1), (-0.65, 0)], float)
    if shape == 'pentagon':
        return _regular(5, 1.0)
    if shape == 'hexagon':
        return _regular(6, 1.0, phase=0.0)
    if shape == 'star':
        outer = _regular(5, 1.0)
        inner = _regular(5, 0.45, phase=-np.pi / 2 + np.pi / 5)
        return np.stack([outer, inner], 1).reshape(-1, 2)
    if shape == 'cross':
        w = 0.33
        return np.array(
            [
                (-w, -1), (w, -1), (w, -w), (1, -w), (1, w), (w, w),
                (w, 1), (-w, 1), (-w, w), (-1, w), (-1, -w), (-w, -w),
            ],
            float,
        )  # fmt: skip
    raise ValueError(f'unknown shape {shape!r}; known: {SHAPES}')


_OUTLINES = {s: _unit_outline(s) for s in SHAPES}
_BAR = np.array([(-0.25, -0.07), (0.25, -0.07), (0.25, 0.07), (-0.25, 0.07)])
_MARK_POLYS = {
    'none': [],
    'dot': [_regular(16, 0.2)],
    'bar': [_BAR],
    'cross': [_BAR, _BAR[:, ::-1]],
}


def _rotate(points: np.ndarray, degrees: float) -> np.ndarray:
    t = np.deg2rad(degrees)
    rot = np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])
    return points @ rot.T


def _fixed(points: np.ndarray) -> np.ndarray:
    return np.round(points * _SCALE).astype(np.int32)


def render_background(
    rng: np.random.Generator, height: int, width: int, sketch: bool = False
) -> np.ndarray:
    """Textured float32 (H, W, 3) background (white for sketches)."""
    if sketch:
        return np.full((height, width, 3), 255.0, np.float32)
    grey = rng.uniform(70.0, 180.0)
    grid = (int(rng.integers(3, 8)), int(rng.integers(3, 8)))
    coarse = grey + rng.normal(0.0, 18.0, size=(*grid, 3))
    img = cv2.resize(
        coarse.astype(np.float32), (width, height), interpolation=2
    )  # 2 = INTER_CUBIC
    theta = rng.uniform(0.0, np.pi)
    cycles = rng.uniform(2.0, 9.0)
    amplitude = rng.uniform(6.0, 22.0)
    phase = rng.uniform(0.0, 2.0 * np.pi)
    span = float(max(height, width))
    xs = np.arange(width, dtype=np.float32) * (np.cos(theta) / span)
    ys = np.arange(height, dtype=np.float32) * (np.sin(theta) / span)
    stripes = amplitude * np.sin(
        2.0 * np.pi * cycles * (ys[:, None] + xs[None, :]) + phase
    )
    img += stripes[..., None].astype(np.float32)
    return img


@dataclass
class Scene:
    """A rendered image with its instances.

    Attributes:
        img (numpy.ndarray): uint8 (H, W, 3) BGR image.
        classes (list[int]): Class of each visible instance.
        masks (list[numpy.ndarray]): uint8 (H, W) visible mask (0/1) of each
            instance.
        boxes (numpy.ndarray): float64 (N, 4) tight ``[x0, y0, x1, y1]``
            edge-coordinate box of each visible mask.
    """

    img: np.ndarray
    classes: list[int]
    masks: list[np.ndarray]
    boxes: np.ndarray

    def union_mask(self, class_idx: int | None = None) -> np.ndarray:
        """uint8 (H, W) union of the instance masks (of one class)."""
        out = np.zeros(self.img.shape[:2], np.uint8)
        for c, m in zip(self.classes, self.masks):
            if class_idx is None or c == class_idx:
                out |= m
        return out


def _place(
    rng: np.random.Generator,
    height: int,
    width: int,
    outline: np.ndarray,
    area_frac: float,
    taken: list[tuple[float, float, float, float]],
):
    """Scale and translate ``outline`` to cover ``area_frac`` of the image.

    Up to 30 draws avoid overlapping the extents in ``taken``; after that
    overlap is accepted (occlusion is handled by the caller).

    Returns:
        Callable: Maps unit-coordinate points (N, 2) to pixels.
    """
    stretch = np.array([rng.uniform(0.85, 1.15), 1.0])
    lo, hi = (outline * stretch).min(0), (outline * stretch).max(0)
    ext = hi - lo
    scale = np.sqrt(area_frac * height * width / (ext[0] * ext[1]))
    scale = min(scale, (width - 1) / ext[0], (height - 1) / ext[1])
    size = ext * scale
    for _ in range(30):
        x0 = rng.uniform(0.0, max(width - 1 - size[0], 0.0))
        y0 = rng.uniform(0.0, max(height - 1 - size[1], 0.0))
        rect = (x0, y0, x0 + size[0], y0 + size[1])
        if all(
            rect[2] < t[0]
            or t[2] < rect[0]
            or rect[3] < t[1]
            or t[3] < rect[1]
            for t in taken
        ):
            break
    taken.append(rect)
    origin = np.array([x0, y0])
    return lambda pts: (pts * stretch - lo) * scale + origin


def render_scene(
    rng: np.random.Generator,
    height: int,
    width: int,
    classes: list[int],
    area_range: tuple[float, float] = (0.10, 0.70),
    sketch: bool = False,
) -> Scene:
    """Render one scene with an object of each class in ``classes``.

    Args:
        rng (numpy.random.Generator): Source of all randomness.
        height (int): Image height in pixels.
        width (int): Image width in pixels.
        classes (list[int]): Class of each object, drawn in order (later
            objects occlude earlier ones). May be empty.
        area_range (tuple[float, float]): Range of the fraction of the image
            area an object's extent covers; divided by the number of
            objects for multi-object scenes.
        sketch (bool): Black outlines on white instead of filled objects.

    Returns:
        Scene: Image, visible instances (fully occluded ones dropped),
        masks and tight boxes.
    """
    if height < 8 or width < 8:
        raise ValueError(f'image size must be >= 8x8, got {width}x{height}')
    img = render_background(rng, height, width, sketch)
    n = max(len(classes), 1)
    lo, hi = area_range[0] / n, area_range[1] / n
    taken: list = []
    masks = []
    thickness = max(1, int(round(min(height, width) / 90)))
    for c in classes:
        style = class_style(c)
        outline = _rotate(_OUTLINES[style.shape], style.orientation)
        area = rng.uniform(lo, hi)
        to_pixels = _place(rng, height, width, outline, area, taken)
        poly = to_pixels(outline)
        mask = np.zeros((height, width), np.uint8)
        cv2.fillPoly(mask, [_fixed(poly)], 1, cv2.LINE_8, _SHIFT)
        # Marks lie within |x|, |y| <= 0.25 of the unit frame, inside
        # every shape, and share its rotation and scale.
        marks = [
            to_pixels(_rotate(m, style.orientation))
            for m in _MARK_POLYS[style.mark]
        ]
        if sketch:
            cv2.polylines(
                img, [_fixed(poly)], True, (0, 0, 0), thickness, cv2.LINE_8,
                _SHIFT,
            )  # fmt: skip
            for m in marks:
                cv2.polylines(
                    img, [_fixed(m)], True, (0, 0, 0), thickness,
                    cv2.LINE_8, _SHIFT,
                )  # fmt: skip
        else:
            color = np.asarray(class_color(c), np.float32)
            img[mask.astype(bool)] = color * rng.uniform(0.85, 1.0)
            for m in marks:
                cv2.fillPoly(
                    img, [_fixed(m)], (35.0, 35.0, 35.0), cv2.LINE_8, _SHIFT
                )
        masks.append(mask)
    # Visible part of each instance: later objects occlude earlier ones.
    covered = np.zeros((height, width), np.uint8)
    vis_classes, vis_masks, boxes = [], [], []
    for c, mask in zip(reversed(classes), reversed(masks)):
        visible = mask & (1 - covered)
        covered |= mask
        ys, xs = np.nonzero(visible)
        if not len(xs):
            continue
        vis_classes.append(c)
        vis_masks.append(visible)
        boxes.append([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
    vis_classes.reverse()
    vis_masks.reverse()
    boxes.reverse()
    if not sketch:
        img += rng.normal(0.0, rng.uniform(2.0, 6.0), size=img.shape).astype(
            np.float32
        )
    out = np.clip(np.rint(img), 0, 255).astype(np.uint8)
    return Scene(
        img=out,
        classes=vis_classes,
        masks=vis_masks,
        boxes=np.asarray(boxes, np.float64).reshape(-1, 4),
    )
