"""``overlay_cam`` and ``denormalize`` (``evaluation.md`` §8, §10 item 11)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from shared.evaluation.protocols import resize_cam
from shared.visualization import denormalize, overlay_cam
from shared.visualization.overlay import GT_COLOR, PRED_COLOR

H, W = 48, 64


@pytest.fixture
def image() -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (H, W, 3), dtype=np.uint8)


@pytest.fixture
def cam() -> np.ndarray:
    """A smooth native 12 x 16 map, peak near the centre."""
    y, x = np.mgrid[0:12, 0:16]
    return np.exp(-((x - 8.0) ** 2 + (y - 6.0) ** 2) / 10.0).astype(np.float32)


def _edge_pixels(box) -> list[tuple[int, int]]:
    """(y, x) of the four sides of an inclusive box."""
    x0, y0, x1, y1 = box
    top = [(y0, x) for x in range(x0, x1 + 1)]
    bottom = [(y1, x) for x in range(x0, x1 + 1)]
    left = [(y, x0) for y in range(y0, y1 + 1)]
    right = [(y, x1) for y in range(y0, y1 + 1)]
    return top + bottom + left + right


def test_shape_dtype_and_inputs_untouched(image, cam):
    image_before, cam_before = image.copy(), cam.copy()
    out = overlay_cam(image, cam)
    assert out.shape == (H, W, 3) and out.dtype == np.uint8
    assert out is not image
    np.testing.assert_array_equal(image, image_before)
    np.testing.assert_array_equal(cam, cam_before)


def test_blend_formula(image, cam):
    """(1 - alpha) image + alpha colormap(uint8(255 cam)), cam bilinear."""
    alpha = 0.3
    out = overlay_cam(image, cam, alpha=alpha, colormap=cv2.COLORMAP_HOT)
    frame = resize_cam(cam, (H, W), 'tscam')  # bilinear + min-max
    heat = cv2.applyColorMap((frame * 255).astype(np.uint8), cv2.COLORMAP_HOT)
    expected = np.rint((1 - alpha) * image + alpha * heat.astype(np.float64))
    np.testing.assert_array_equal(out, expected.astype(np.uint8))
    # alpha = 0 returns the image, alpha = 1 the heat map alone.
    np.testing.assert_array_equal(overlay_cam(image, cam, alpha=0.0), image)
    full = overlay_cam(image, cam, alpha=1.0, colormap=cv2.COLORMAP_HOT)
    np.testing.assert_array_equal(full, heat)


def test_preset_uses_the_metric_resize(image, cam):
    out = overlay_cam(image, cam, alpha=1.0, preset='wsoleval')
    frame = resize_cam(cam, (H, W), 'wsoleval')  # bicubic, float64
    heat = cv2.applyColorMap((frame * 255).astype(np.uint8), cv2.COLORMAP_JET)
    np.testing.assert_array_equal(out, heat)


def test_box_edges_carry_the_box_colours(image, cam):
    gt = [[5, 6, 25, 30]]
    pred = [[34, 10, 58, 40]]
    out = overlay_cam(image, cam, pred_boxes=pred, gt_boxes=gt, thickness=1)
    for y, x in _edge_pixels(gt[0]):
        assert tuple(out[y, x]) == GT_COLOR == (0, 0, 255)
    for y, x in _edge_pixels(pred[0]):
        assert tuple(out[y, x]) == PRED_COLOR == (0, 255, 0)
    # The interior is the blend, not a box colour.
    inner = overlay_cam(image, cam)
    np.testing.assert_array_equal(out[12:25, 10:20], inner[12:25, 10:20])


def test_prediction_drawn_over_gt_and_fractional_boxes_floored(image, cam):
    box = [[10.7, 8.2, 40.9, 30.5]]
    out = overlay_cam(image, cam, pred_boxes=box, gt_boxes=box, thickness=1)
    for y, x in _edge_pixels((10, 8, 40, 30)):
        assert tuple(out[y, x]) == PRED_COLOR


def test_text_is_drawn_in_white(cam):
    image = np.zeros((400, 300, 3), np.uint8)
    plain = overlay_cam(image, cam)
    out = overlay_cam(image, cam, text='IoU 73.2')
    changed = (out != plain).any(axis=2)
    assert changed[:40].any() and not changed[40:].any()
    assert (out[:40] == 255).all(axis=2).any()


def test_tscam_preset_zeroes_heat_outside_the_box(image, cam):
    box = np.array([[10, 5, 40, 30]])
    out = overlay_cam(image, cam, pred_boxes=box, preset='tscam')
    frame = resize_cam(cam, (H, W), 'tscam')
    keep = np.zeros_like(frame)
    keep[5:30, 10:40] = 1  # TS-CAM's I[y1:y2, x1:x2] = 1
    heat = cv2.applyColorMap(
        (frame * keep * 255).astype(np.uint8), cv2.COLORMAP_JET
    )
    expected = np.rint(0.2 * image + 0.8 * heat.astype(np.float64))
    expected = expected.astype(np.uint8)
    cv2.rectangle(expected, (10, 5), (40, 30), PRED_COLOR, 2)
    np.testing.assert_array_equal(out, expected)
    # Outside the box (away from the drawn edge) only colormap(0) remains.
    zero_heat = cv2.applyColorMap(np.zeros((1, 1), np.uint8), 2)[0, 0]
    corner = np.rint(0.2 * image[45, 60] + 0.8 * zero_heat.astype(float))
    np.testing.assert_array_equal(out[45, 60], corner.astype(np.uint8))


def test_mask_outside_box_keeps_inclusive_box(image, cam):
    box = [[10, 5, 40, 30]]
    out = overlay_cam(
        image, cam, pred_boxes=box, mask_outside_box=True, alpha=1.0
    )
    frame = resize_cam(cam, (H, W), 'tscam')
    keep = np.zeros_like(frame)
    keep[5:31, 10:41] = 1
    heat = cv2.applyColorMap(
        (frame * keep * 255).astype(np.uint8), cv2.COLORMAP_JET
    )
    cv2.rectangle(heat, (10, 5), (40, 30), PRED_COLOR, 2)
    np.testing.assert_array_equal(out, heat)


def test_constant_map_gives_colormap_zero(image):
    out = overlay_cam(image, np.full((7, 7), 3.0), alpha=1.0)
    zero = cv2.applyColorMap(np.zeros((1, 1), np.uint8), cv2.COLORMAP_JET)
    assert (out == zero[0, 0]).all()


@pytest.mark.parametrize(
    'kwargs, error, match',
    [
        (dict(image=np.zeros((H, W, 3), np.float32)), TypeError, 'uint8'),
        (dict(image=np.zeros((H, W), np.uint8)), ValueError, r'\(H, W, 3\)'),
        (
            dict(image=torch.zeros(H, W, 3, dtype=torch.uint8)),
            TypeError,
            'torch',
        ),  # fmt: skip
        (dict(cam=np.zeros((2, 4, 4))), ValueError, '2-D'),
        (dict(cam=np.ones((4, 4), np.int64)), TypeError, 'floating'),
        (dict(cam=torch.ones(4, 4)), TypeError, 'torch'),
        (dict(cam=np.array([[0.0, np.nan]])), ValueError, 'NaN'),
        (dict(gt_boxes=[1, 2, 3, 4]), ValueError, r'\(n, 4\)'),
        (dict(pred_boxes=np.zeros((2, 5))), ValueError, r'\(n, 4\)'),
        (dict(pred_boxes=[[0, 0, np.inf, 3]]), ValueError, 'non-finite'),
        (dict(alpha=1.5), ValueError, 'alpha'),
        (dict(thickness=0), ValueError, 'thickness'),
        (dict(preset='cam'), ValueError, 'unknown preset'),
        (dict(mask_outside_box=True), ValueError, 'pred_boxes'),
    ],
)
def test_errors(image, cam, kwargs, error, match):
    args = dict(image=image, cam=cam)
    args.update(kwargs)
    with pytest.raises(error, match=match):
        overlay_cam(**args)


def _normalize(image_bgr: np.ndarray, mean, std) -> torch.Tensor:
    """mmpretrain's preprocessing: BGR -> RGB, CHW, (x - mean) / std."""
    rgb = torch.from_numpy(image_bgr[..., ::-1].copy()).permute(2, 0, 1)
    mean_t = torch.tensor(mean, dtype=torch.float32).view(3, 1, 1)
    std_t = torch.tensor(std, dtype=torch.float32).view(3, 1, 1)
    return (rgb.float() - mean_t) / std_t


def test_denormalize_inverts_normalize(image):
    mean, std = (123.675, 116.28, 103.53), (58.395, 57.12, 57.375)
    tensor = _normalize(image, mean, std)
    np.testing.assert_array_equal(denormalize(tensor, mean, std), image)
    # numpy input, channel-first, without the channel swap gives RGB.
    rgb = denormalize(tensor.numpy(), mean, std, to_bgr=False)
    np.testing.assert_array_equal(rgb, image[..., ::-1])
    # A batch (N, C, H, W) gives (N, H, W, C).
    batch = denormalize(torch.stack([tensor, tensor]), mean, std)
    assert batch.shape == (2, H, W, 3) and batch.dtype == np.uint8
    np.testing.assert_array_equal(batch[1], image)


def test_denormalize_unit_scale(image):
    """ToTensor + Normalize (values in [0, 1]) is rescaled to 0..255."""
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    rgb = torch.from_numpy(image[..., ::-1].copy()).permute(2, 0, 1) / 255.0
    tensor = (rgb - torch.tensor(mean).view(3, 1, 1)) / torch.tensor(std).view(
        3, 1, 1
    )
    np.testing.assert_array_equal(
        denormalize(tensor, mean, std, pixel_scale=255), image
    )


def test_denormalize_identity_statistics_keep_the_scale(image):
    """mean 0, std 1 (no normalisation) returns the pixels unchanged."""
    tensor = torch.from_numpy(image[..., ::-1].copy()).permute(2, 0, 1)
    out = denormalize(tensor.double(), (0, 0, 0), (1, 1, 1))
    np.testing.assert_array_equal(out, image)


def test_denormalize_is_not_the_swapped_formula(image):
    """TS-CAM's dumps compute x * mean + std; that does not invert."""
    mean, std = (123.675, 116.28, 103.53), (58.395, 57.12, 57.375)
    tensor = _normalize(image, mean, std)
    swapped = denormalize(tensor, std, mean)
    assert not np.array_equal(swapped, image)


@pytest.mark.parametrize(
    'tensor, mean, std, match',
    [
        (torch.zeros(4, 4), (0,), (1,), r'\(C, H, W\)'),
        (torch.zeros(3, 4, 4), (0, 0), (1, 1, 1), 'mean has 2 values'),
        (torch.zeros(3, 4, 4), (0, 0, 0), (1, 0, 1), 'non-zero'),
        (torch.zeros(1, 4, 4), (0,), (1,), 'to_bgr needs 3 channels'),
    ],
)
def test_denormalize_errors(tensor, mean, std, match):
    with pytest.raises(ValueError, match=match):
        denormalize(tensor, mean, std)


def test_denormalize_single_channel_without_swap():
    gray = torch.full((1, 2, 2), 0.5)
    out = denormalize(gray, [100.0], [20.0], to_bgr=False)
    assert out.shape == (2, 2, 1) and (out == 110).all()


def test_read_frame_image_replays_resize_crop_and_flip(tmp_path):
    from shared.visualization import read_frame_image

    rng = np.random.default_rng(0)
    original = rng.integers(0, 256, (40, 60, 3), dtype=np.uint8)
    path = str(tmp_path / 'img.png')
    cv2.imwrite(path, original)
    # Resize to 80 x 120 (scale 2), centre crop 64 x 64 at (28, 8), flip.
    sample = dict(img_path=path, img_shape=(64, 64), ori_shape=(40, 60),
                  scale_factor=(2.0, 2.0), crop_bbox=(28, 8, 92, 72),
                  flip=True, flip_direction='vertical')  # fmt: skip
    resized = cv2.resize(original, (120, 80), interpolation=cv2.INTER_LINEAR)
    want = cv2.flip(resized[8:72, 28:92], 0)
    np.testing.assert_array_equal(read_frame_image(sample), want)
    plain = read_frame_image(dict(img_path=path, img_shape=(20, 30)))
    np.testing.assert_array_equal(
        plain, cv2.resize(original, (30, 20), interpolation=cv2.INTER_LINEAR)
    )
    with pytest.raises(ValueError, match='flip_direction'):
        read_frame_image({**sample, 'flip_direction': 'sideways'})
    with pytest.raises(ValueError, match='cannot read'):
        read_frame_image({**sample, 'img_path': str(tmp_path / 'no.png')})
