"""CAM overlays and input de-normalisation (``evaluation.md`` §8).

:func:`overlay_cam` draws a score map over a BGR image with the same
resize/normalise code as the metrics (:func:`~shared.evaluation.protocols.
resize_cam`), GT boxes in red and predicted boxes in green;
:func:`denormalize` turns a normalised network input back into a uint8
image.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
import torch

from shared.evaluation.protocols import PRESETS, resize_cam

__all__ = [
    'GT_COLOR',
    'PRED_COLOR',
    'TEXT_COLOR',
    'denormalize',
    'overlay_cam',
    'read_frame_image',
]

#: BGR colour of ground-truth boxes (red).
GT_COLOR = (0, 0, 255)
#: BGR colour of predicted boxes (green).
PRED_COLOR = (0, 255, 0)
#: BGR colour of the text (white).
TEXT_COLOR = (255, 255, 255)

#: TS-CAM's dumps: 0.2 * image + 0.8 * heat.
_TSCAM_ALPHA = 0.8


def _check_image(image) -> np.ndarray:
    """Validate a uint8 (H, W, 3) BGR image."""
    if isinstance(image, torch.Tensor):
        raise TypeError(
            'image must be a numpy array, got a torch.Tensor; convert it '
            'with denormalize() or tensor.cpu().numpy()'
        )
    if not isinstance(image, np.ndarray):
        raise TypeError(f'image must be a numpy array, got {type(image)}')
    if image.dtype != np.uint8:
        raise TypeError(f'image must be uint8, got {image.dtype}')
    if image.ndim != 3 or image.shape[2] != 3 or 0 in image.shape:
        raise ValueError(
            f'image must be a non-empty (H, W, 3) BGR array, got shape '
            f'{image.shape}'
        )
    return image


def _check_boxes(boxes, name: str) -> np.ndarray | None:
    """Validate optional (n, 4) boxes; return them as float64 or None."""
    if boxes is None:
        return None
    if isinstance(boxes, torch.Tensor):
        raise TypeError(
            f'{name} must be a numpy array or a sequence, got a '
            'torch.Tensor; convert it with .cpu().numpy()'
        )
    arr = np.asarray(boxes)
    if arr.dtype.kind not in 'iuf':
        raise TypeError(f'{name} must be numeric, got {arr.dtype}')
    if arr.ndim != 2 or arr.shape[1] != 4:
        raise ValueError(f'{name} must have shape (n, 4), got {arr.shape}')
    arr = arr.astype(np.float64)
    if not np.isfinite(arr).all():
        raise ValueError(f'{name} has non-finite coordinates')
    return arr


def _draw_boxes(
    canvas: np.ndarray, boxes: np.ndarray, color, thickness: int
) -> None:
    # Inclusive pixel boxes [x0, y0, x1, y1]; fractional pipeline boxes are
    # floored as the metrics' ``gt_source='pipeline'`` does.
    for x0, y0, x1, y1 in np.floor(boxes).astype(np.int64):
        cv2.rectangle(
            canvas, (int(x0), int(y0)), (int(x1), int(y1)), color, thickness
        )


def _draw_text(canvas: np.ndarray, text: str) -> None:
    height = canvas.shape[0]
    scale = max(0.35, min(1.0, height / 400))
    org = (3, 3 + int(round(22 * scale)))
    font = cv2.FONT_HERSHEY_SIMPLEX
    # A dark outline keeps white text readable on bright heat.
    cv2.putText(canvas, text, org, font, scale, (0, 0, 0), 3, cv2.LINE_AA)
    cv2.putText(canvas, text, org, font, scale, TEXT_COLOR, 1, cv2.LINE_AA)


def overlay_cam(
    image: np.ndarray,
    cam: np.ndarray,
    pred_boxes: np.ndarray | Sequence[Sequence[float]] | None = None,
    gt_boxes: np.ndarray | Sequence[Sequence[float]] | None = None,
    *,
    alpha: float = 0.5,
    colormap: int = cv2.COLORMAP_JET,
    mask_outside_box: bool = False,
    text: str | None = None,
    thickness: int = 2,
    preset: str | None = None,
) -> np.ndarray:
    """Blend a score map over an image and draw boxes.

    The map is resized to the image and normalised with
    :func:`~shared.evaluation.protocols.resize_cam`: bilinearly (the
    ``tscam`` rule: float32, ``INTER_LINEAR``, min-max after) when
    ``preset`` is None, else with the preset's own rule, so a map drawn
    with ``preset='wsoleval'`` is exactly the map the metric thresholds.
    heat = ``colormap(uint8(255 * cam))`` (truncation) and the result is
    ``(1 - alpha) * image + alpha * heat``, rounded. GT boxes are drawn in
    red (0, 0, 255), then predicted boxes in green (0, 255, 0), as
    inclusive pixel boxes (fractional coordinates floored); the optional
    text (e.g. ``'IoU 73.2'``) is white at the top left.

    ``preset='tscam'`` reproduces TS-CAM's dumps (its ``blend_cam``): the
    map is zeroed outside the first predicted box ``cam[y0:y1, x0:x1]``
    (slice ends exclusive, as TS-CAM's ``[x, y, x + w, y + h]`` boxes) and
    the blend is ``0.2 * image + 0.8 * heat``; ``alpha`` and
    ``mask_outside_box`` are then ignored. Without a predicted box nothing
    is zeroed.

    Args:
        image (np.ndarray): uint8 (H, W, 3) BGR image.
        cam (np.ndarray): (h, w) floating score map of any size and scale.
        pred_boxes (np.ndarray | Sequence | None): (n, 4) predicted boxes
            [x0, y0, x1, y1] in image pixels.
        gt_boxes (np.ndarray | Sequence | None): (m, 4) ground-truth boxes
            [x0, y0, x1, y1] in image pixels.
        alpha (float): Weight of the heat map in [0, 1].
        colormap (int): OpenCV colormap (``cv2.COLORMAP_*``).
        mask_outside_box (bool): Zero the map outside the union of the
            predicted boxes (inclusive pixel ranges); needs ``pred_boxes``.
        text (str | None): Text drawn at the top left.
        thickness (int): Box line thickness in pixels (>= 1).
        preset (str | None): None, ``'wsoleval'``, ``'tscam'`` or ``'spa'``.

    Returns:
        np.ndarray: New uint8 (H, W, 3) BGR image; the inputs are never
        modified.

    Raises:
        TypeError: Torch tensors, a non-uint8 image, a non-floating map or
            non-numeric boxes.
        ValueError: Image not (H, W, 3), map not 2-D or non-finite, boxes
            not (n, 4), ``alpha`` outside [0, 1], ``thickness`` < 1,
            unknown preset, or ``mask_outside_box`` without predicted boxes.
    """
    image = _check_image(image)
    height, width = image.shape[:2]
    if preset is not None and preset not in PRESETS:
        raise ValueError(
            f'unknown preset {preset!r}; expected None or one of '
            f'{sorted(PRESETS)}'
        )
    if not 0.0 <= float(alpha) <= 1.0:
        raise ValueError(f'alpha must be in [0, 1], got {alpha}')
    if int(thickness) < 1:
        raise ValueError(f'thickness must be >= 1, got {thickness}')
    pred = _check_boxes(pred_boxes, 'pred_boxes')
    gt = _check_boxes(gt_boxes, 'gt_boxes')
    if isinstance(cam, torch.Tensor):
        raise TypeError(
            'cam must be a numpy array, got a torch.Tensor; convert it with '
            '.detach().cpu().numpy()'
        )
    cam = resize_cam(cam, (height, width), preset or 'tscam')
    # Keep the map in [0, 1] for the uint8 cast (the spa SOS variant is not
    # reachable here, so this only guards against rounding).
    cam = np.clip(cam, 0.0, 1.0)

    tscam = preset == 'tscam'
    if tscam:
        alpha = _TSCAM_ALPHA
        if pred is not None and len(pred):
            x0, y0, x1, y1 = np.floor(pred[0]).astype(np.int64)
            keep = np.zeros_like(cam)
            keep[max(y0, 0) : max(y1, 0), max(x0, 0) : max(x1, 0)] = 1
            cam = cam * keep
    elif mask_outside_box:
        if pred is None or not len(pred):
            raise ValueError('mask_outside_box=True needs pred_boxes')
        keep = np.zeros(cam.shape, dtype=bool)
        for x0, y0, x1, y1 in np.floor(pred).astype(np.int64):
            keep[max(y0, 0) : max(y1 + 1, 0), max(x0, 0) : max(x1 + 1, 0)] = (
                True
            )
        cam = np.where(keep, cam, 0.0).astype(cam.dtype)

    heat = cv2.applyColorMap((cam * 255).astype(np.uint8), colormap)
    blend = (1.0 - alpha) * image.astype(np.float64) + alpha * heat
    canvas = np.clip(np.rint(blend), 0, 255).astype(np.uint8)
    if gt is not None:
        _draw_boxes(canvas, gt, GT_COLOR, int(thickness))
    if pred is not None:
        _draw_boxes(canvas, pred, PRED_COLOR, int(thickness))
    if text:
        _draw_text(canvas, str(text))
    return canvas


def _as_values(values, name: str, channels: int) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64).reshape(-1)
    if arr.size == 1:
        arr = np.repeat(arr, channels)
    if arr.size != channels:
        raise ValueError(
            f'{name} has {arr.size} values but the input has {channels} '
            'channels'
        )
    if not np.isfinite(arr).all():
        raise ValueError(f'{name} has non-finite values')
    return arr


def denormalize(
    tensor: torch.Tensor | np.ndarray,
    mean: Sequence[float],
    std: Sequence[float],
    to_bgr: bool = True,
    *,
    pixel_scale: float = 1.0,
) -> np.ndarray:
    """Undo ``(x - mean) / std`` of a network input: ``x * std + mean``.

    TS-CAM's dumps swap mean and std; this is the correct inverse. The
    result is multiplied by ``pixel_scale`` (255 for inputs on the [0, 1]
    scale of torchvision ``ToTensor`` + ``Normalize``; 1 for mmpretrain's
    ``data_preprocessor``, which works on 0..255), rounded and clipped to
    uint8. Overlays should rather re-read the original image.

    Args:
        tensor (torch.Tensor | np.ndarray): (C, H, W) or (N, C, H, W)
            normalised input (channel-first for numpy too), in the channel
            order of ``mean``/``std`` (RGB for mmpretrain with
            ``to_rgb=True``).
        mean (Sequence[float]): C per-channel means (or one value).
        std (Sequence[float]): C per-channel standard deviations (or one).
        to_bgr (bool): Reverse the channel order (RGB -> BGR for OpenCV);
            needs C = 3.
        pixel_scale (float): Factor from the un-normalised values to 0..255
            (keyword-only).

    Returns:
        np.ndarray: uint8 (H, W, C) or (N, H, W, C) image(s).

    Raises:
        TypeError: Non-numeric input.
        ValueError: Input not 3-D/4-D, ``mean``/``std`` lengths differing
            from C, a zero or non-finite ``std``, or ``to_bgr`` with C != 3.
    """
    if isinstance(tensor, torch.Tensor):
        arr = tensor.detach().cpu().to(torch.float64).numpy()
    else:
        arr = np.asarray(tensor)
        if arr.dtype.kind not in 'iuf':
            raise TypeError(f'input must be numeric, got {arr.dtype}')
        arr = arr.astype(np.float64)
    if arr.ndim not in (3, 4):
        raise ValueError(
            f'input must be (C, H, W) or (N, C, H, W), got shape {arr.shape}'
        )
    channels = arr.shape[-3]
    mean_arr = _as_values(mean, 'mean', channels)
    std_arr = _as_values(std, 'std', channels)
    if (std_arr == 0).any():
        raise ValueError(f'std must be non-zero, got {std_arr.tolist()}')
    if to_bgr and channels != 3:
        raise ValueError(f'to_bgr needs 3 channels, got {channels}')
    shape = (channels, 1, 1)
    out = arr * std_arr.reshape(shape) + mean_arr.reshape(shape)
    if pixel_scale != 1:
        out = out * float(pixel_scale)
    out = np.moveaxis(out, -3, -1)  # channel-last
    if to_bgr:
        out = out[..., ::-1]
    return np.ascontiguousarray(np.clip(np.rint(out), 0, 255).astype(np.uint8))


_FLIP_CODES = {'horizontal': 1, 'vertical': 0, 'diagonal': -1}


def read_frame_image(sample) -> np.ndarray:
    """Re-read a sample's original image and bring it to its input frame.

    Replays the geometric metainfo of the test pipeline on the original
    pixels: a resize to ``ori_shape`` x ``scale_factor``, the
    ``crop_bbox`` window when the pipeline cropped (then resized to
    ``img_shape`` if the crop was resized afterwards), and the flip of
    ``flip``/``flip_direction``. Without ``crop_bbox`` the image is
    resized straight to ``img_shape``.

    Args:
        sample (DataSample | dict): Needs ``img_path`` and ``img_shape``;
            reads ``ori_shape``, ``scale_factor``, ``crop_bbox``, ``flip``
            and ``flip_direction`` when present.

    Returns:
        np.ndarray: uint8 (H, W, 3) BGR image of shape ``img_shape``.

    Raises:
        ValueError: Missing ``img_path``/``img_shape``, an unreadable
            image, or an unknown flip direction.
    """
    path = sample.get('img_path', None)
    shape = sample.get('img_shape', None)
    if path is None or shape is None:
        raise ValueError('the sample needs img_path and img_shape')
    height, width = int(shape[0]), int(shape[1])
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError(f'cannot read the image {path}')
    crop = sample.get('crop_bbox', None)
    if crop is not None:
        ori_h, ori_w = image.shape[:2]
        sx, sy = sample.get('scale_factor', None) or (1.0, 1.0)
        pre = (round(ori_w * float(sx)), round(ori_h * float(sy)))
        if pre != (ori_w, ori_h):
            image = cv2.resize(image, pre, interpolation=cv2.INTER_LINEAR)
        x0, y0, x1, y1 = (int(v) for v in crop)
        image = image[max(y0, 0) : y1, max(x0, 0) : x1]
    if image.shape[:2] != (height, width):
        image = cv2.resize(
            image, (width, height), interpolation=cv2.INTER_LINEAR
        )
    if sample.get('flip', False):
        direction = sample.get('flip_direction', None) or 'horizontal'
        if direction not in _FLIP_CODES:
            raise ValueError(
                f'unknown flip_direction {direction!r} of {path}; expected '
                f'one of {sorted(_FLIP_CODES)}'
            )
        image = cv2.flip(image, _FLIP_CODES[direction])
    return np.ascontiguousarray(image)
