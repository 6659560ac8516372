"""Tests of shared/datasets/synthetic/draw.py (the rendering core)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from shared.datasets.synthetic.draw import (
    MAX_CLASSES,
    SHAPES,
    class_color,
    class_style,
    render_scene,
)


def test_class_styles_are_injective_up_to_the_limit():
    styles = {class_style(c) for c in range(MAX_CLASSES)}
    assert len(styles) == MAX_CLASSES == 1280
    # The first classes differ in shape and in hue (easy to learn).
    first = [class_style(c) for c in range(len(SHAPES))]
    assert len({s.shape for s in first}) == len(SHAPES)
    assert len({s.hue for s in first}) == len(SHAPES)
    for bad in (-1, MAX_CLASSES):
        with pytest.raises(ValueError, match='1280 classes'):
            class_style(bad)


def _check_scene(scene, h, w):
    assert scene.img.shape == (h, w, 3) and scene.img.dtype == np.uint8
    assert scene.boxes.dtype == np.float64
    assert scene.boxes.shape == (len(scene.classes), 4)
    covered = np.zeros((h, w), np.int32)
    for mask, box in zip(scene.masks, scene.boxes):
        assert mask.shape == (h, w) and mask.dtype == np.uint8
        assert set(np.unique(mask)) <= {0, 1}
        ys, xs = np.nonzero(mask)
        # Tight box in edge coordinates: columns x0 .. x1 - 1.
        assert box.tolist() == [
            xs.min(),
            ys.min(),
            xs.max() + 1,
            ys.max() + 1,
        ]
        assert 0 <= box[0] < box[2] <= w and 0 <= box[1] < box[3] <= h
        covered += mask
    assert covered.max() <= 1  # visible masks never overlap


@pytest.mark.parametrize('n_objects', [1, 3])
def test_boxes_are_tight_extents_of_visible_masks(n_objects):
    rng = np.random.default_rng(0)
    for _ in range(40):
        h, w = (int(v) for v in rng.integers(24, 160, size=2))
        classes = [int(c) for c in rng.choice(50, n_objects, replace=False)]
        scene = render_scene(rng, h, w, classes)
        _check_scene(scene, h, w)
        assert set(scene.classes) <= set(classes)
        if n_objects == 1:
            assert scene.classes == classes
            x0, y0, x1, y1 = scene.boxes[0]
            frac = (x1 - x0) * (y1 - y0) / (h * w)
            assert 0.06 <= frac <= 0.75, frac


def test_object_pixels_have_the_class_colour():
    rng = np.random.default_rng(1)
    for c in range(16):
        scene = render_scene(rng, 96, 128, [c])
        fg = scene.masks[0].astype(bool)
        # Marks are dark pixels inside the object; the median ignores them.
        inside = np.median(scene.img[fg].astype(np.float32), axis=0)
        color = np.asarray(class_color(c), np.float32)
        ratio = inside / np.maximum(color, 1)
        assert 0.8 < ratio.mean() < 1.05
        assert np.abs(inside - color * ratio.mean()).max() < 15


def test_sketch_scenes_are_black_outlines_on_white():
    rng = np.random.default_rng(2)
    scene = render_scene(rng, 80, 80, [3], sketch=True)
    grey = cv2.cvtColor(scene.img, cv2.COLOR_BGR2GRAY)
    assert set(np.unique(grey)) == {0, 255}
    assert (grey == 255).mean() > 0.7
    ys, xs = np.nonzero(grey == 0)
    x0, y0, x1, y1 = scene.boxes[0]
    # The outline follows the object's boundary (thickness 1 at 80 px).
    assert xs.min() >= x0 - 1 and xs.max() <= x1 and ys.min() >= y0 - 1


def test_same_generator_state_same_scene():
    a = render_scene(np.random.default_rng([5, 1]), 50, 70, [1, 2])
    b = render_scene(np.random.default_rng([5, 1]), 50, 70, [1, 2])
    c = render_scene(np.random.default_rng([5, 2]), 50, 70, [1, 2])
    assert np.array_equal(a.img, b.img)
    assert np.array_equal(a.boxes, b.boxes)
    assert not np.array_equal(a.img, c.img)


def test_empty_scene_and_too_small_image():
    scene = render_scene(np.random.default_rng(0), 32, 32, [])
    assert scene.classes == [] and scene.boxes.shape == (0, 4)
    with pytest.raises(ValueError, match='>= 8x8'):
        render_scene(np.random.default_rng(0), 4, 32, [0])
