"""Protocol-specific GT boxes in the evaluated frame (``evaluation.md`` §2).

Each reference protocol rescales the **raw** annotation numbers
(``ori_gt_bboxes``, ``datasets.md`` §3.2) to the evaluated frame with its
own integer arithmetic, giving inclusive integer pixel boxes. With the
original image (H0, W0) and the evaluated frame (H, W); x uses W0 -> W and
y uses H0 -> H:

- ``wsoleval``: xywh -> xyxy first (x2 = x + w, float64), then
  int(x * W / W0) (multiply then divide, truncation), no clip.
- ``tscam``: int(float(v)) on the four raw numbers first; xywh: x2 = x + w;
  then int(max(x / W0 * W, 0)) and int(min(x2 / W0 * W, W - 1)) (divide
  then multiply). The initial truncation is applied to ``'xyxy'`` input as
  well (TS-CAM's ILSVRC list holds integers, so it is the identity there).
- ``spa``: as ``tscam`` without the initial truncation, and xywh:
  x2 = x + w - 1.

All arithmetic is IEEE float64, identical to the Python-float expressions
of the originals; ``int`` truncates toward zero.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .protocols import PRESETS
from .wsol import _reject_torch

__all__ = ['protocol_gt_boxes']

BOX_FORMATS = ('xywh', 'xyxy')


def _check_frame(value, name: str) -> tuple[int, int]:
    """Validate a frame size (H, W) of two positive integers."""
    try:
        values = tuple(value)
    except TypeError:
        raise ValueError(f'{name} must be (H, W), got {value!r}') from None
    if len(values) != 2 or not all(
        isinstance(v, (int, np.integer)) and not isinstance(v, bool)
        for v in values
    ):
        raise ValueError(f'{name} must be two integers (H, W), got {value!r}')
    if min(values) <= 0:
        raise ValueError(f'{name} must be positive, got {value!r}')
    return int(values[0]), int(values[1])


def _check_raw_boxes(value, box_format: str) -> np.ndarray:
    """Validate raw (N, 4) boxes; return a float64 copy."""
    _reject_torch(value, 'ori_boxes')
    boxes = np.asarray(value)
    if boxes.dtype.kind not in 'iuf':
        raise TypeError(f'ori_boxes must be int or float, got {boxes.dtype}')
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(
            f'ori_boxes must have shape (N, 4), got {boxes.shape}'
        )
    boxes = boxes.astype(np.float64)  # always a copy
    finite = np.isfinite(boxes).all(axis=1)
    if not finite.all():
        idx = int(np.flatnonzero(~finite)[0])
        raise ValueError(f'ori_boxes[{idx}] has non-finite values')
    if box_format == 'xywh':
        bad = (boxes[:, 2] < 0) | (boxes[:, 3] < 0)
        what = 'negative width or height'
    else:
        bad = (boxes[:, 2] < boxes[:, 0]) | (boxes[:, 3] < boxes[:, 1])
        what = 'x2 < x1 or y2 < y1'
    if bad.any():
        idx = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f'ori_boxes[{idx}] ({box_format}) has {what}: '
            f'{boxes[idx].tolist()}'
        )
    return boxes


def protocol_gt_boxes(
    ori_boxes: np.ndarray | Sequence[Sequence[float]],
    ori_box_format: str,
    ori_size: tuple[int, int],
    eval_size: tuple[int, int],
    protocol: str,
) -> np.ndarray:
    """Rescale raw annotation boxes to the evaluated frame per protocol.

    See the module docstring for the three rules (``evaluation.md`` §2, row
    'GT boxes in the frame'). Only ``tscam`` and ``spa`` clip (to
    [0, W - 1] x [0, H - 1]); ``wsoleval`` may return coordinates beyond
    the frame (or negative ones for negative raw coordinates).

    Args:
        ori_boxes (np.ndarray | Sequence[Sequence[float]]): (N, 4) raw
            annotation numbers in pixels of the original image, exactly as
            parsed (``ori_gt_bboxes``).
        ori_box_format (str): ``'xywh'`` (CUB: x, y, width, height) or
            ``'xyxy'``.
        ori_size (tuple[int, int]): Original image size (H0, W0) in pixels.
        eval_size (tuple[int, int]): Evaluated frame size (H, W) in pixels.
        protocol (str): ``'wsoleval'``, ``'tscam'`` or ``'spa'``.

    Returns:
        np.ndarray: int64 (N, 4) inclusive boxes [x1, y1, x2, y2] in pixels
        of the evaluated frame.

    Raises:
        TypeError: Torch tensors or non-numeric boxes.
        ValueError: Unknown format or protocol, boxes not (N, 4), non-finite
            values, negative width/height (xywh) or x2 < x1 / y2 < y1
            (xyxy), sizes that are not two positive integers.
    """
    if ori_box_format not in BOX_FORMATS:
        raise ValueError(
            f'ori_box_format must be one of {BOX_FORMATS}, got '
            f'{ori_box_format!r}'
        )
    if not isinstance(protocol, str) or protocol not in PRESETS:
        raise ValueError(
            f'unknown protocol {protocol!r}; expected one of {sorted(PRESETS)}'
        )
    boxes = _check_raw_boxes(ori_boxes, ori_box_format)
    src_h, src_w = _check_frame(ori_size, 'ori_size')
    dst_h, dst_w = _check_frame(eval_size, 'eval_size')
    xywh = ori_box_format == 'xywh'

    if protocol == 'tscam':
        boxes = np.trunc(boxes)  # int(float(v)) on the raw numbers
    x1, y1, a, b = boxes.T
    if xywh:
        shift = 1.0 if protocol == 'spa' else 0.0
        x2 = x1 + a - shift
        y2 = y1 + b - shift
    else:
        x2, y2 = a, b

    if protocol == 'wsoleval':
        # int(x * S / W): multiply then divide, no clip.
        out = np.stack(
            [
                x1 * dst_w / src_w,
                y1 * dst_h / src_h,
                x2 * dst_w / src_w,
                y2 * dst_h / src_h,
            ],
            axis=1,
        )
    else:
        # int(max(x / W * S, 0)), int(min(x2 / W * S, S - 1)).
        out = np.stack(
            [
                np.maximum(x1 / src_w * dst_w, 0.0),
                np.maximum(y1 / src_h * dst_h, 0.0),
                np.minimum(x2 / src_w * dst_w, float(dst_w - 1)),
                np.minimum(y2 / src_h * dst_h, float(dst_h - 1)),
            ],
            axis=1,
        )
    return np.trunc(out).astype(np.int64).reshape(-1, 4)
