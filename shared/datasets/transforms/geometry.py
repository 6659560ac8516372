"""Box and mask geometry shared by the ``Loc*`` transforms (§3.3).

Conventions (``datasets.md`` §3.1): ``results['gt_bboxes']`` is a float64
(N, 4) array of ``[x0, y0, x1, y1]`` edge coordinates of the current image,
which spans ``[0, W] x [0, H]``; ``results['gt_mask']`` is a uint8 (H, W)
map with 0 background, 1 foreground and 255 ignore. Masks are only ever
resized with OpenCV nearest (``cv2.INTER_NEAREST``), the reference's mask
handling; the image uses the transform's own backend.

Every helper here validates its input and raises :class:`LocTransformError`
naming the transform and ``img_path``.
"""

from __future__ import annotations

import cv2
import mmcv
import numpy as np

__all__ = [
    'LocTransformError',
    'apply_crop',
    'apply_resize',
    'check_results',
    'crop_boxes',
    'resize_boxes',
    'resize_mask',
]


class LocTransformError(ValueError):
    """A results dict a ``Loc*`` transform cannot process."""


def _fail(name: str, results: dict, message: str) -> LocTransformError:
    path = results.get('img_path', '<no img_path>')
    return LocTransformError(f'{name}: {path}: {message}')


def check_results(results: dict, name: str) -> tuple[int, int]:
    """Validate the image, boxes and mask of ``results`` in place.

    ``gt_bboxes`` (when present) is converted to a float64 (N, 4) array; an
    empty sequence becomes a (0, 4) array.

    Args:
        results (dict): The pipeline results.
        name (str): The calling transform, for messages.

    Returns:
        tuple[int, int]: The image height and width in pixels.

    Raises:
        LocTransformError: If ``img`` is missing or not an (H, W[, C])
            array, ``gt_bboxes`` is not (N, 4) or not finite, or
            ``gt_mask`` is not a 2-D array of the image's size.
    """
    img = results.get('img')
    if img is None:
        raise _fail(
            name,
            results,
            "no 'img' in the results (put LoadImageFromFile before this "
            'transform)',
        )
    if not isinstance(img, np.ndarray) or img.ndim not in (2, 3):
        raise _fail(
            name,
            results,
            f"'img' must be an (H, W) or (H, W, C) numpy array, got "
            f'{type(img).__name__} {getattr(img, "shape", "")}',
        )
    height, width = img.shape[:2]
    if 'gt_bboxes' in results and results['gt_bboxes'] is not None:
        boxes = np.asarray(results['gt_bboxes'], dtype=np.float64)
        if boxes.size == 0:
            boxes = boxes.reshape(0, 4)
        if boxes.ndim != 2 or boxes.shape[1] != 4:
            raise _fail(
                name,
                results,
                f"'gt_bboxes' must have shape (N, 4), got {boxes.shape}",
            )
        if not np.isfinite(boxes).all():
            raise _fail(name, results, f"non-finite 'gt_bboxes' {boxes}")
        results['gt_bboxes'] = boxes
    mask = results.get('gt_mask')
    if mask is not None:
        shape = getattr(mask, 'shape', None)
        if shape != (height, width):
            raise _fail(
                name,
                results,
                f"'gt_mask' has shape {shape} but the image is "
                f'{height}x{width} (HxW); a mask must be 2-D and '
                'transformed together with its image',
            )
    return height, width


def resize_boxes(
    boxes: np.ndarray,
    old_size: tuple[int, int],
    new_size: tuple[int, int],
) -> np.ndarray:
    """Scale xyxy boxes from one image size to another.

    ``x' = x * new_w / old_w`` in float64, multiplying **before** dividing:
    the order the reference uses (wsolevaluation's ``resize_bbox``); the
    reverse order rounds differently and changes ``int(x')`` for a small
    fraction of boxes.

    Args:
        boxes (numpy.ndarray): float (N, 4) ``[x0, y0, x1, y1]``.
        old_size (tuple[int, int]): ``(w, h)`` before, pixels.
        new_size (tuple[int, int]): ``(w, h)`` after, pixels.

    Returns:
        numpy.ndarray: New float64 (N, 4) array.
    """
    out = np.array(boxes, dtype=np.float64).reshape(-1, 4)
    (old_w, old_h), (new_w, new_h) = old_size, new_size
    out[:, 0::2] = out[:, 0::2] * float(new_w) / float(old_w)
    out[:, 1::2] = out[:, 1::2] * float(new_h) / float(old_h)
    return out


def resize_mask(mask: np.ndarray, new_size: tuple[int, int]) -> np.ndarray:
    """Resize a label mask with ``cv2.INTER_NEAREST`` to ``(w, h)``.

    OpenCV nearest samples source pixel ``floor(x' * old / new)``; PIL's
    nearest samples ``floor((x' + 0.5) * old / new)``, so the two differ and
    only OpenCV matches the reference evaluators.
    """
    w, h = int(new_size[0]), int(new_size[1])
    if mask.shape[:2] == (h, w):
        return mask
    return cv2.resize(mask, (w, h), interpolation=cv2.INTER_NEAREST)


def crop_boxes(
    boxes: np.ndarray, x0: int, y0: int, width: int, height: int
) -> tuple[np.ndarray, int]:
    """Shift boxes into a crop window, clip them and drop degenerate ones.

    Args:
        boxes (numpy.ndarray): float (N, 4) xyxy boxes in the frame before
            the crop.
        x0, y0 (int): Crop origin (left, top) in that frame.
        width, height (int): Crop size in pixels.

    Returns:
        tuple[numpy.ndarray, int]: float64 (M, 4) boxes in the crop frame,
        clipped to ``[0, width] x [0, height]``, without the boxes whose
        clipped width or height is zero; and the number dropped.
    """
    out = np.array(boxes, dtype=np.float64).reshape(-1, 4)
    out -= np.array([x0, y0, x0, y0], dtype=np.float64)
    out[:, 0::2] = out[:, 0::2].clip(0, width)
    out[:, 1::2] = out[:, 1::2].clip(0, height)
    keep = (out[:, 2] > out[:, 0]) & (out[:, 3] > out[:, 1])
    return out[keep], int((~keep).sum())


def _multiply_scale_factor(results: dict, w_scale: float, h_scale: float):
    old = results.get('scale_factor', (1.0, 1.0))
    old = np.broadcast_to(np.asarray(old, dtype=np.float64), (2,))
    results['scale_factor'] = (
        float(old[0]) * w_scale,
        float(old[1]) * h_scale,
    )


def apply_resize(
    results: dict,
    new_size: tuple[int, int],
    backend: str,
    interpolation: str,
) -> None:
    """Resize image, boxes and mask of ``results`` to ``(w, h)`` in place.

    Updates ``img``, ``img_shape``, ``gt_bboxes``, ``gt_mask`` and multiplies
    ``scale_factor`` (``(w_scale, h_scale)``, 1 when absent) by this
    resize's factors. ``ori_gt_bboxes`` and ``ori_gt_mask`` are untouched.
    """
    img = results['img']
    old_h, old_w = img.shape[:2]
    new_w, new_h = int(new_size[0]), int(new_size[1])
    if (new_w, new_h) != (old_w, old_h):
        img = mmcv.imresize(
            img, (new_w, new_h), interpolation=interpolation, backend=backend
        )
    results['img'] = img
    results['img_shape'] = (new_h, new_w)
    _multiply_scale_factor(results, new_w / old_w, new_h / old_h)
    if results.get('gt_bboxes') is not None:
        results['gt_bboxes'] = resize_boxes(
            results['gt_bboxes'], (old_w, old_h), (new_w, new_h)
        )
    if results.get('gt_mask') is not None:
        results['gt_mask'] = resize_mask(results['gt_mask'], (new_w, new_h))


def apply_crop(
    results: dict, x0: int, y0: int, width: int, height: int, name: str
) -> None:
    """Crop image, boxes and mask of ``results`` in place.

    Boxes are shifted, clipped and degenerate ones dropped (the count is
    added to ``results['dropped_boxes']``); ``crop_bbox`` records the window
    ``(x0, y0, x0 + width, y0 + height)`` in the frame before this crop.

    Raises:
        LocTransformError: If the window is empty or leaves the image.
    """
    img = results['img']
    img_h, img_w = img.shape[:2]
    x0, y0, width, height = int(x0), int(y0), int(width), int(height)
    if (
        width <= 0
        or height <= 0
        or x0 < 0
        or y0 < 0
        or x0 + width > img_w
        or y0 + height > img_h
    ):
        raise _fail(
            name,
            results,
            f'crop window x={x0}, y={y0}, w={width}, h={height} does not '
            f'fit the {img_w}x{img_h} image',
        )
    results['img'] = img[y0 : y0 + height, x0 : x0 + width]
    results['img_shape'] = (height, width)
    results['crop_bbox'] = (x0, y0, x0 + width, y0 + height)
    if results.get('gt_bboxes') is not None:
        boxes, dropped = crop_boxes(
            results['gt_bboxes'], x0, y0, width, height
        )
        results['gt_bboxes'] = boxes
        results['dropped_boxes'] = results.get('dropped_boxes', 0) + dropped
    if results.get('gt_mask') is not None:
        results['gt_mask'] = results['gt_mask'][
            y0 : y0 + height, x0 : x0 + width
        ]
