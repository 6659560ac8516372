"""``SANRandomRotation``: the fork's ±20° sketch rotation with white fill.

Checked against torchvision's ``rotate`` on PIL images (the fork's path)
and against an independent inverse-mapping rotation written out here.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torchvision.transforms.functional as TF
from mmengine.dataset import Compose
from mmengine.runner import set_random_seed
from PIL import Image
from torchvision.transforms import InterpolationMode

from projects.san.datasets.transforms import SANRandomRotation
from shared.registry import TRANSFORMS


def random_image(h, w, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 255, (h, w, 3), dtype=np.uint8)  # never 255


def with_angle(angle, **kwargs):
    """A transform whose draw is the fixed ``angle``."""
    return SANRandomRotation(degrees=(angle, angle), **kwargs)


def test_angle_zero_is_identity():
    img = random_image(37, 52)
    out = with_angle(0.0)(dict(img=img.copy()))
    np.testing.assert_array_equal(out['img'], img)
    assert out['rotation_angle'] == 0.0


@pytest.mark.parametrize('angle', [-20.0, -7.3, 5.0, 13.25, 20.0, 90.0])
@pytest.mark.parametrize('shape', [(64, 64), (45, 70), (71, 40)])
def test_equals_torchvision_rotate_nearest_fill(angle, shape):
    img = random_image(*shape, seed=int(angle * 100) % 97)
    out = with_angle(angle)(dict(img=img.copy()))
    ref = TF.rotate(
        Image.fromarray(img),
        angle,
        interpolation=InterpolationMode.NEAREST,
        expand=False,
        fill=255,
    )
    assert out['img'].shape == img.shape
    assert out['img'].dtype == np.uint8
    np.testing.assert_array_equal(out['img'], np.asarray(ref))
    assert out['rotation_angle'] == angle


def test_bilinear_and_per_channel_fill_equal_torchvision():
    img = random_image(50, 61, seed=5)
    out = with_angle(12.5, interpolation='bilinear', fill=(10, 20, 30))(
        dict(img=img.copy())
    )['img']
    ref = TF.rotate(
        Image.fromarray(img),
        12.5,
        interpolation=InterpolationMode.BILINEAR,
        fill=[10, 20, 30],
    )
    np.testing.assert_array_equal(out, np.asarray(ref))


def test_quarter_turn_is_an_exact_permutation():
    """90° counter-clockwise about the centre of an even square is
    np.rot90: the pixel grid maps onto itself, nothing is filled."""
    img = random_image(32, 32, seed=1)
    out = with_angle(90.0)(dict(img=img.copy()))['img']
    np.testing.assert_array_equal(out, np.rot90(img))


def test_matches_an_independent_inverse_mapping():
    """Each output pixel centre (x+0.5, y+0.5) rotated back by -angle about
    (W/2, H/2) samples the input pixel containing it; outside -> fill.
    Pixels whose source point lies within 0.01 px of a pixel edge are
    skipped: PIL's nearest affine path steps in 16.16 fixed point, which
    can move a source point by ~1e-4 px."""
    h, w, angle = 41, 58, 17.0
    img = random_image(h, w, seed=2)
    out = with_angle(angle)(dict(img=img.copy()))['img']
    a = math.radians(angle)
    cx, cy = w / 2, h / 2
    checked = 0
    for y in range(h):
        for x in range(w):
            dx, dy = x + 0.5 - cx, y + 0.5 - cy
            # Counter-clockwise on screen (y down): source = R(-a) applied
            # in the y-up frame.
            sx = cx + dx * math.cos(a) - dy * math.sin(a)
            sy = cy + dx * math.sin(a) + dy * math.cos(a)
            frac = (sx % 1.0, sy % 1.0)
            if min(min(f, 1 - f) for f in frac) < 0.01:
                continue
            checked += 1
            if 0 <= sx < w and 0 <= sy < h:
                expected = img[int(sy), int(sx)]
            else:
                expected = np.full(3, 255, np.uint8)
            np.testing.assert_array_equal(out[y, x], expected, err_msg=(y, x))
    assert checked > 0.9 * h * w


def test_corners_get_the_fill_and_the_centre_survives():
    img = random_image(60, 60, seed=4)
    out = with_angle(20.0, fill=255)(dict(img=img.copy()))['img']
    for y, x in ((0, 0), (0, 59), (59, 0), (59, 59)):
        assert (out[y, x] == 255).all()
    # The input never holds 255, so white pixels are exactly the fill; a
    # 20° turn of a square uncovers a small share of it at the corners.
    white = (out == 255).all(axis=2)
    assert 0.02 < white.mean() < 0.2
    np.testing.assert_array_equal(out[30, 30], img[30, 30])


def test_grey_images_keep_their_shape():
    img = random_image(30, 40)[..., 0]
    out = with_angle(10.0, fill=0)(dict(img=img.copy()))['img']
    ref = TF.rotate(Image.fromarray(img), 10.0, fill=0)
    assert out.shape == (30, 40)
    np.testing.assert_array_equal(out, np.asarray(ref))


def test_seeded_draws_are_reproducible_and_uniform():
    transform = SANRandomRotation(degrees=20)
    img = random_image(24, 24)

    def draws(seed):
        set_random_seed(seed)
        return [
            transform(dict(img=img.copy()))['rotation_angle']
            for _ in range(400)
        ]

    a, b, c = draws(0), draws(0), draws(1)
    assert a == b
    assert a != c
    assert all(-20 <= x <= 20 for x in a)
    # U(-20, 20): mean 0, sd 20/sqrt(3) ~ 11.5; 400 draws.
    assert abs(np.mean(a)) < 2.0
    assert np.std(a) == pytest.approx(20 / math.sqrt(3), rel=0.1)
    # Same seed, same pixels.
    set_random_seed(3)
    p = transform(dict(img=img.copy()))['img']
    set_random_seed(3)
    q = transform(dict(img=img.copy()))['img']
    np.testing.assert_array_equal(p, q)


def test_prob_skips_some_rotations():
    transform = SANRandomRotation(degrees=20, prob=0.3)
    set_random_seed(0)
    angles = [
        transform(dict(img=random_image(8, 8)))['rotation_angle']
        for _ in range(500)
    ]
    rotated = np.mean([a != 0.0 for a in angles])
    assert rotated == pytest.approx(0.3, abs=0.07)
    img = random_image(8, 8)
    out = SANRandomRotation(prob=0.0)(dict(img=img.copy()))
    np.testing.assert_array_equal(out['img'], img)


def test_builds_from_the_registry_in_a_pipeline():
    assert TRANSFORMS.get('SANRandomRotation') is SANRandomRotation
    pipeline = Compose(
        [dict(type='SANRandomRotation', degrees=(7, 7), fill=255)]
    )
    img = random_image(33, 47)
    out = pipeline(dict(img=img.copy()))['img']
    np.testing.assert_array_equal(
        out, np.asarray(TF.rotate(Image.fromarray(img), 7, fill=255))
    )
    assert 'fill=255' in repr(SANRandomRotation())


@pytest.mark.parametrize(
    'kwargs,error,match',
    [
        (dict(degrees=-1), ValueError, 'degrees must be >= 0'),
        (dict(degrees=(5, -5)), ValueError, r'lo <= hi'),
        (dict(degrees=(1, 2, 3)), TypeError, 'degrees'),
        (dict(degrees='20'), TypeError, 'degrees'),
        (dict(fill=256), ValueError, r'fill values must be in \[0, 255\]'),
        (dict(fill=-1), ValueError, 'fill'),
        (dict(fill=255.0), TypeError, 'fill must be an int'),
        (dict(fill=()), TypeError, 'fill'),
        (dict(interpolation='area'), ValueError, "interpolation.*'area'"),
        (dict(prob=1.5), ValueError, r'prob must be in \[0, 1\]'),
        (dict(prob='1'), TypeError, 'prob must be a number'),
    ],
)
def test_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        SANRandomRotation(**kwargs)


def test_bad_images():
    with pytest.raises(TypeError, match='uint8'):
        with_angle(5.0)(dict(img=np.zeros((8, 8, 3), np.float32)))
    with pytest.raises(ValueError, match='3 values but the image has 1'):
        with_angle(5.0, fill=(1, 2, 3))(dict(img=np.zeros((8, 8), np.uint8)))
