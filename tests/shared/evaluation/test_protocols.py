"""Tests of ``shared/evaluation/protocols.py`` (``evaluation.md`` §10.7).

Expected values are direct ``cv2.resize`` calls written out per preset,
hand-computed bilinear weights and exact geometric identities.
"""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from shared.evaluation.protocols import (
    PRESETS,
    ProtocolPreset,
    get_preset,
    resize_cam,
)
from shared.evaluation.wsol import cam_to_boxes, normalize_cam

S = 224


def _smooth(seed: int, h: int = 14, w: int = 14) -> np.ndarray:
    """Signed float32 native map with a nonzero offset (h, w)."""
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((h, w)) * 3.0 + 1.5).astype(np.float32)


def _integer_map(seed: int, h: int = 14, w: int = 14) -> np.ndarray:
    """float32 map of integers in [0, 255].

    With the scale 224 / 14 = 16 every bilinear weight is a multiple of
    1 / 32, so the resized values are exact in float32 whatever order
    OpenCV sums in; flips and transposes then commute with the resize bit
    for bit.
    """
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (h, w)).astype(np.float32)


# ---------------------------------------------------------------------------
# preset table
# ---------------------------------------------------------------------------


def test_preset_table():
    assert set(PRESETS) == {'wsoleval', 'tscam', 'spa'}
    ws, ts, spa = PRESETS['wsoleval'], PRESETS['tscam'], PRESETS['spa']
    assert (ws.dtype, ws.interpolation, ws.normalize) == (
        'float64',
        cv2.INTER_CUBIC,
        'after',
    )
    assert (ts.dtype, ts.interpolation, ts.normalize) == (
        'float32',
        cv2.INTER_LINEAR,
        'after',
    )
    assert (spa.dtype, spa.interpolation, spa.normalize) == (
        'float32',
        cv2.INTER_LINEAR,
        'before',
    )
    assert spa.sos_variant and not ws.sos_variant and not ts.sos_variant
    with pytest.raises(dataclasses.FrozenInstanceError):
        ts.dtype = 'float64'
    assert get_preset('tscam') is ts
    assert get_preset(ts) is ts


# ---------------------------------------------------------------------------
# equality with direct cv2.resize
# ---------------------------------------------------------------------------


@pytest.mark.parametrize('size', [(S, S), (20, 30), (30, 20)])
def test_wsoleval_equals_direct_cubic(size):
    cam = _smooth(0, 7, 9)
    h, w = size
    expected = normalize_cam(
        cv2.resize(
            cam.astype(np.float64), (w, h), interpolation=cv2.INTER_CUBIC
        )
    )
    out = resize_cam(cam, size, 'wsoleval')
    assert out.dtype == np.float64 and out.shape == size
    np.testing.assert_array_equal(out, expected)
    assert out.min() == 0.0 and out.max() == 1.0


@pytest.mark.parametrize('size', [(S, S), (20, 30), (30, 20)])
def test_tscam_equals_direct_linear(size):
    cam = _smooth(1, 7, 9).astype(np.float64)  # cast to float32 by preset
    h, w = size
    expected = normalize_cam(
        cv2.resize(
            cam.astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR
        )
    )
    out = resize_cam(cam, size, 'tscam')
    assert out.dtype == np.float32 and out.shape == size
    np.testing.assert_array_equal(out, expected)


@pytest.mark.parametrize('size', [(S, S), (20, 30)])
def test_spa_equals_minmax_then_linear(size):
    cam = _smooth(2, 7, 9)
    h, w = size
    scaled = (cam - cam.min()) / (cam.max() - cam.min() + 1e-10)
    assert scaled.dtype == np.float32
    expected = cv2.resize(scaled, (w, h), interpolation=cv2.INTER_LINEAR)
    out = resize_cam(cam, size, 'spa')
    assert out.dtype == np.float32 and out.shape == size
    np.testing.assert_array_equal(out, expected)


def test_spa_sos_clamps_without_normalising():
    cam = _smooth(3, 7, 9)
    assert cam.min() < 0 and cam.max() > 1
    raw = cv2.resize(cam, (30, 20), interpolation=cv2.INTER_LINEAR)
    out = resize_cam(cam, (20, 30), 'spa', sos=True)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, np.maximum(raw, 0))
    assert out.min() == 0 and out.max() == raw.max() > 1


def test_size_is_height_width():
    cam = _smooth(4, 7, 9)
    out = resize_cam(cam, (10, 40), 'tscam')
    assert out.shape == (10, 40)
    assert resize_cam(cam, (1, 5), 'spa').shape == (1, 5)


def test_spa_order_differs_from_normalise_after():
    # [2, 4, 2] -> width 6 with cv2 INTER_LINEAR (align_corners=False):
    # source x = (j + 0.5) / 2 - 0.5 = -0.25, 0.25, 0.75, 1.25, 1.75, 2.25
    # (edges replicated), i.e. weights (1, 0), (.75, .25), (.25, .75), ...
    cam = np.array([[2.0, 4.0, 2.0]], dtype=np.float32)
    spa = resize_cam(cam, (1, 6), 'spa')
    # min-max first: [0, 1, 0] -> peak is never sampled, max 0.75.
    np.testing.assert_allclose(
        spa[0], [0, 0.25, 0.75, 0.75, 0.25, 0], rtol=0, atol=1e-7
    )
    # normalise after: [2, 2.5, 3.5, 3.5, 2.5, 2] -> [0, 1/3, 1, 1, 1/3, 0].
    after = resize_cam(cam, (1, 6), 'tscam')
    np.testing.assert_allclose(
        after[0], [0, 1 / 3, 1, 1, 1 / 3, 0], rtol=0, atol=1e-7
    )
    assert np.abs(spa - after).max() > 0.08
    # Realistic case: an isolated peak on a 14 x 14 map upsampled x 16.
    peak = np.zeros((14, 14), dtype=np.float32)
    peak[6, 7] = 1.0
    spa = resize_cam(peak, (S, S), 'spa')
    tscam = resize_cam(peak, (S, S), 'tscam')
    assert tscam.max() == 1.0
    assert spa.max() < 0.95
    assert np.abs(spa - tscam).max() > 0.05


def test_constant_map_gives_zeros():
    cam = np.full((5, 6), 3.5, dtype=np.float32)
    for name in PRESETS:
        out = resize_cam(cam, (12, 10), name)
        assert out.shape == (12, 10)
        assert not out.any(), name


def test_float16_cast_and_input_untouched():
    cam16 = _smooth(5, 7, 9).astype(np.float16)
    before = cam16.copy()
    out = resize_cam(cam16, (20, 30), 'tscam')
    np.testing.assert_array_equal(
        out, resize_cam(cam16.astype(np.float32), (20, 30), 'tscam')
    )
    assert out.dtype == np.float32
    assert resize_cam(cam16, (20, 30), 'wsoleval').dtype == np.float64
    np.testing.assert_array_equal(cam16, before)
    # Non-contiguous views are accepted.
    cam = _smooth(6, 9, 9)
    np.testing.assert_array_equal(
        resize_cam(cam[::2, ::-1], (8, 8), 'spa'),
        resize_cam(np.ascontiguousarray(cam[::2, ::-1]), (8, 8), 'spa'),
    )


# ---------------------------------------------------------------------------
# torch bilinear vs cv2 INTER_LINEAR
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ('native', 'size'), [((14, 14), (S, S)), ((7, 9), (20, 30))]
)
def test_torch_bilinear_matches_cv2(native, size):
    cam = _smooth(7, *native)
    raw_cv2 = cv2.resize(
        cam, (size[1], size[0]), interpolation=cv2.INTER_LINEAR
    )
    raw_torch = F.interpolate(
        torch.from_numpy(cam)[None, None],
        size=size,
        mode='bilinear',
        align_corners=False,
    )[0, 0].numpy()
    np.testing.assert_allclose(raw_torch, raw_cv2, rtol=0, atol=1e-5)
    np.testing.assert_allclose(
        normalize_cam(raw_torch),
        resize_cam(cam, size, 'tscam'),
        rtol=0,
        atol=1e-5,
    )


# ---------------------------------------------------------------------------
# geometry: flip and transpose
# ---------------------------------------------------------------------------


@pytest.mark.parametrize('seed', range(4))
def test_horizontal_flip_mirrors_tscam_box(seed):
    cam = _integer_map(seed)
    v = resize_cam(cam, (S, S), 'tscam')
    v_flip = resize_cam(cam[:, ::-1], (S, S), 'tscam')
    np.testing.assert_array_equal(v_flip, v[:, ::-1])  # exact (see helper)
    taus = np.arange(0.05, 1.0, 0.05)
    opts = dict(clip=False, empty_box=(0, 0, 1, 1))
    boxes, counts = cam_to_boxes(v, taus, **opts)
    boxes_f, counts_f = cam_to_boxes(v_flip, taus, **opts)
    np.testing.assert_array_equal(counts, np.ones(len(taus)))
    np.testing.assert_array_equal(counts_f, counts)
    # TS-CAM boxes are [x, y, x + w, y + h]: columns x .. x + w - 1 are
    # foreground, mirrored to S - x - w .. S - 1 - x, whose box is
    # [S - x - w, y, S - x, y + h] = [S - x2, y1, S - x1, y2] exactly (the
    # exclusive right edge maps to the inclusive left one and back).
    mirrored = np.stack(
        [S - boxes[:, 2], boxes[:, 1], S - boxes[:, 0], boxes[:, 3]], axis=1
    )
    np.testing.assert_array_equal(boxes_f, mirrored)
    # The maximum pixel is foreground at every tau < 1, so no empty box.
    assert (boxes[:, 2] > boxes[:, 0]).all()


def test_horizontal_flip_single_blob_by_hand():
    cam = np.zeros((14, 14), dtype=np.float32)
    cam[4:7, 2:5] = 255.0  # columns 2..4 of the native map
    v = resize_cam(cam, (S, S), 'tscam')
    v_flip = resize_cam(cam[:, ::-1], (S, S), 'tscam')
    opts = dict(clip=False, empty_box=(0, 0, 1, 1))
    (box,), _ = cam_to_boxes(v, 0.5, **opts)
    (box_f,), _ = cam_to_boxes(v_flip, 0.5, **opts)
    # Native columns 2..4 cover [32, 80) after x16; v > 0.5 (u > 127)
    # holds up to 8 pixels past the edge centre: columns 32 .. 79.
    assert box.tolist() == [32, 64, 80, 112]
    assert box_f.tolist() == [S - 80, 64, S - 32, 112]


@pytest.mark.parametrize('preset', ['tscam', 'wsoleval', 'spa'])
def test_transpose_swaps_coordinates(preset):
    cam = _integer_map(11, 7, 14)
    # min 0 and range 256 (a power of two): the spa min-max is exact too.
    cam[0, 0], cam[-1, -1] = 0.0, 256.0
    v = resize_cam(cam, (112, 224), preset)
    v_t = resize_cam(cam.T, (224, 112), preset)
    np.testing.assert_array_equal(v_t, v.T)
    if preset == 'spa':
        return  # spa draws no contour boxes
    v = v.astype(np.float32) if preset == 'tscam' else v
    taus = [0.2, 0.5, 0.8]
    boxes, counts = cam_to_boxes(v, taus, multi_contour=True)
    boxes_t, counts_t = cam_to_boxes(v.T, taus, multi_contour=True)
    np.testing.assert_array_equal(counts_t, counts)
    swapped = boxes[:, [1, 0, 3, 2]]
    start = 0
    for n in counts.tolist():  # contour order may differ: compare as sets
        got = sorted(map(tuple, boxes_t[start : start + n].tolist()))
        want = sorted(map(tuple, swapped[start : start + n].tolist()))
        assert got == want
        start += n


# ---------------------------------------------------------------------------
# errors
# ---------------------------------------------------------------------------


def test_errors():
    cam = _smooth(8, 5, 5)
    with pytest.raises(TypeError, match='torch'):
        resize_cam(torch.from_numpy(cam), (8, 8), 'tscam')
    with pytest.raises(TypeError, match='floating'):
        resize_cam(cam.astype(np.int32), (8, 8), 'tscam')
    with pytest.raises(ValueError, match='2-D'):
        resize_cam(cam[None], (8, 8), 'tscam')
    with pytest.raises(ValueError, match='empty'):
        resize_cam(np.zeros((0, 4), np.float32), (8, 8), 'tscam')
    for bad in (np.nan, np.inf, -np.inf):
        broken = cam.copy()
        broken[2, 3] = bad
        with pytest.raises(ValueError, match='NaN or'):
            resize_cam(broken, (8, 8), 'wsoleval')
    for size in ((8,), (8, 8, 1), (0, 8), (8, -1), (8.0, 8), 8, (True, 8)):
        with pytest.raises(ValueError, match='size'):
            resize_cam(cam, size, 'tscam')
    with pytest.raises(ValueError, match='unknown protocol preset'):
        resize_cam(cam, (8, 8), 'gradcam')
    with pytest.raises(ValueError, match='SOS'):
        resize_cam(cam, (8, 8), 'tscam', sos=True)
    assert isinstance(PRESETS['spa'], ProtocolPreset)
