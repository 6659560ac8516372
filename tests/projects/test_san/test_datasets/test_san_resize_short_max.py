"""``SANResizeShortMax`` against torchvision's ``Resize(short, max_size)``.

The sizes come from an explicit restatement of the rule (truncation of the
long side, then of the capped short side) and from torchvision itself; the
pixels from ``torchvision.transforms.functional.resize`` on PIL images.
"""

from __future__ import annotations

import numpy as np
import pytest
import torchvision.transforms.functional as TF
from mmengine.dataset import Compose
from PIL import Image
from torchvision.transforms import InterpolationMode

from projects.san.datasets.transforms import (
    SANResizeShortMax,
    short_max_size,
)
from shared.registry import TRANSFORMS

#: (H, W) pairs: portrait, landscape, square, aspect ratios just inside and
#: outside the 225/224 cap, tiny and huge, odd sizes.
SIZES = [
    (224, 224),
    (225, 224),
    (224, 225),
    (226, 224),
    (300, 300),
    (64, 64),
    (1, 1),
    (1111, 1110),
    (1110, 1111),
    (448, 449),
    (449, 448),
    (500, 375),
    (375, 500),
    (111, 640),
    (640, 111),
    (257, 256),
    (256, 258),
    (97, 98),
    (2, 3),
    (3, 2),
    (1000, 999),
    (999, 1000),
]


def reference_size(h, w, short, max_long):
    """Spelled out: truncate the long side; if over the cap, truncate the
    short side rescaled from the truncated long side."""
    if w <= h:
        new_w, new_h = short, int(short * h / w)
        if max_long is not None and new_h > max_long:
            new_w, new_h = int(max_long * new_w / new_h), max_long
    else:
        new_h, new_w = short, int(short * w / h)
        if max_long is not None and new_w > max_long:
            new_h, new_w = int(max_long * new_h / new_w), max_long
    return new_h, new_w


def random_image(h, w, seed=0, channels=3):
    rng = np.random.default_rng(seed)
    shape = (h, w, channels) if channels else (h, w)
    return rng.integers(0, 256, shape, dtype=np.uint8)


def test_known_sizes():
    # Short side 224 when the long side fits in 225.
    assert short_max_size(300, 300, 224, 225) == (224, 224)
    assert short_max_size(1111, 1110, 224, 225) == (224, 224)
    # int(224 * 449 / 448) = 224 (224.5 truncated).
    assert short_max_size(449, 448, 224, 225) == (224, 224)
    # 500x375 (portrait): long 298 > 225 -> (225, int(225 * 224 / 298)).
    assert short_max_size(500, 375, 224, 225) == (225, 169)
    assert short_max_size(375, 500, 224, 225) == (169, 225)
    # No cap: plain short-side resize.
    assert short_max_size(500, 375, 224, None) == (298, 224)


@pytest.mark.parametrize('short,max_long', [(224, 225), (224, None), (32, 40)])
def test_size_rule_over_a_grid(short, max_long):
    """Restatement and torchvision agree for every (H, W) in 1..120 × a
    spread of widths, and for the listed sizes."""
    pairs = [(h, w) for h in range(1, 121) for w in (1, 7, 33, 64, 119, 120)]
    pairs += SIZES
    for h, w in pairs:
        expected = reference_size(h, w, short, max_long)
        assert short_max_size(h, w, short, max_long) == expected, (h, w)
        tv = TF._compute_resized_output_size((h, w), [short], max_long)
        assert tuple(tv) == expected, (h, w)


@pytest.mark.parametrize('h,w', SIZES)
def test_pixels_equal_torchvision_pil(h, w):
    img = random_image(h, w, seed=h * 10007 + w)
    results = SANResizeShortMax()(dict(img=img.copy()))
    ref = np.asarray(
        TF.resize(
            Image.fromarray(img),
            224,
            interpolation=InterpolationMode.BILINEAR,
            max_size=225,
        )
    )
    assert results['img'].shape == ref.shape
    assert results['img'].dtype == np.uint8
    np.testing.assert_array_equal(results['img'], ref)
    assert results['img_shape'] == ref.shape[:2]
    assert results['scale_factor'] == (ref.shape[1] / w, ref.shape[0] / h)
    # Either the short side is 224 or the long side is 225.
    new_h, new_w = ref.shape[:2]
    assert min(new_h, new_w) == 224 or max(new_h, new_w) == 225


@pytest.mark.parametrize(
    'interpolation,mode',
    [
        ('nearest', InterpolationMode.NEAREST),
        ('bicubic', InterpolationMode.BICUBIC),
    ],
)
def test_other_interpolations_and_grey_images(interpolation, mode):
    img = random_image(170, 333, seed=3, channels=0)
    out = SANResizeShortMax(64, 80, interpolation=interpolation)(
        dict(img=img)
    )['img']
    ref = TF.resize(Image.fromarray(img), 64, interpolation=mode, max_size=80)
    np.testing.assert_array_equal(out, np.asarray(ref))
    assert out.shape == (40, 80)  # capped: int(80 * 64 / 125) = 40


def test_unchanged_size_is_identity():
    img = random_image(224, 225)
    out = SANResizeShortMax()(dict(img=img))['img']
    assert out is img


def test_cv2_backend_sizes():
    img = random_image(500, 375)
    results = SANResizeShortMax(backend='cv2', interpolation='area')(
        dict(img=img)
    )
    assert results['img'].shape == (225, 169, 3)


def test_builds_from_the_registry_in_a_pipeline():
    pipeline = Compose(
        [dict(type='SANResizeShortMax', short=224, max_long=225)]
    )
    out = pipeline(dict(img=random_image(300, 600)))
    assert out['img'].shape == (112, 225, 3)  # int(225 * 224 / 448)
    assert TRANSFORMS.get('SANResizeShortMax') is SANResizeShortMax
    assert 'max_long=225' in repr(SANResizeShortMax())


@pytest.mark.parametrize(
    'kwargs,error,match',
    [
        (dict(short=0), ValueError, 'short must be >= 1'),
        (dict(short=224, max_long=224), ValueError, 'max_long=224'),
        (dict(short=224.0), TypeError, 'short must be an int'),
        (dict(max_long='225'), TypeError, 'max_long must be an int'),
        (dict(backend='turbo'), ValueError, "backend.*'turbo'"),
        (dict(interpolation='area'), ValueError, "interpolation.*'area'"),
        (dict(interpolation='cubic'), ValueError, "interpolation.*'cubic'"),
    ],
)
def test_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        SANResizeShortMax(**kwargs)


def test_bad_images():
    with pytest.raises(TypeError, match='uint8'):
        SANResizeShortMax()(dict(img=np.zeros((300, 300, 3), np.float32)))
    with pytest.raises(ValueError, match=r'\(H, W\)'):
        SANResizeShortMax()(dict(img=np.zeros((2, 300, 300, 3), np.uint8)))
