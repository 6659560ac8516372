"""Random scenes with exact instance masks for the transform tests."""

from __future__ import annotations

import numpy as np

from shared.datasets.synthetic.draw import render_scene


def scene_results(
    rng: np.random.Generator,
    size_range: tuple[int, int] = (48, 96),
    max_objects: int = 3,
    rectangles: bool = False,
) -> dict:
    """A results dict whose ``gt_mask`` labels instance ``i`` with ``i + 1``.

    ``gt_bboxes`` are the tight edge-coordinate extents of the instance
    masks (the generator's guarantee). With ``rectangles`` every instance
    mask is replaced by the filled rectangle of its box (overlapping boxes
    are left out), so a box and its mask agree exactly under any crop.
    """
    height, width = (int(v) for v in rng.integers(*size_range, 2))
    num = int(rng.integers(1, max_objects + 1))
    classes = [int(c) for c in rng.choice(40, num, replace=False)]
    scene = render_scene(rng, height, width, classes)
    label = np.zeros((height, width), np.uint8)
    boxes = scene.boxes.copy()
    if rectangles:
        # Keep the boxes that overlap no kept box, so each rectangle is
        # fully visible.
        kept: list[np.ndarray] = []
        for box in boxes:
            if all(
                box[2] <= k[0]
                or k[2] <= box[0]
                or box[3] <= k[1]
                or k[3] <= box[1]
                for k in kept
            ):
                kept.append(box)
        boxes = np.array(kept).reshape(-1, 4)
        for i, (x0, y0, x1, y1) in enumerate(boxes.astype(int)):
            label[y0:y1, x0:x1] = i + 1
    else:
        for i, mask in enumerate(scene.masks):
            label[mask.astype(bool)] = i + 1
    return {
        'img_path': f'scene_{height}x{width}.png',
        'img': scene.img,
        'img_shape': (height, width),
        'ori_shape': (height, width),
        'gt_bboxes': boxes.astype(np.float64),
        'ori_gt_bboxes': boxes.astype(np.float64).copy(),
        'gt_mask': label,
    }


def mask_extent(mask: np.ndarray) -> np.ndarray:
    """Tight ``[x0, y0, x1, y1]`` edge-coordinate extent (NaN if empty)."""
    ys, xs = np.nonzero(mask)
    if not len(xs):
        return np.full(4, np.nan)
    return np.array(
        [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], dtype=np.float64
    )


def instance_extents(label: np.ndarray, num: int) -> np.ndarray:
    """(num, 4) extents of the instances ``1..num`` of a label mask."""
    return np.array([mask_extent(label == i + 1) for i in range(num)])
