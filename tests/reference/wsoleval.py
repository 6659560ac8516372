"""wsolevaluation's box and mask evaluators, re-stated literally
(``evaluation.md`` §2, §3.3-3.5, §10).

Slow on purpose: one ``cv2.threshold`` + ``cv2.findContours`` call on the
full map per threshold, a Python loop over contours, and, for V2, the max
over every predicted box x GT box per threshold. The mask evaluator uses
``np.histogram`` with the edges ``np.arange(0, 1, d)`` + [1, 2, 3]. Nothing
here is shared with ``shared/evaluation/wsol.py``.
"""

from __future__ import annotations

import cv2
import numpy as np

__all__ = [
    'reference_boxes',
    'reference_iou',
    'reference_max_box_acc',
    'reference_pxap',
]


def reference_boxes(
    scoremap: np.ndarray,
    thresholds,
    multi_contour: bool,
    clip: bool = True,
    empty_box=(0, 0, 0, 0),
) -> tuple[list[list[list[int]]], list[int]]:
    """Per-threshold boxes of one map, as wsolevaluation computes them.

    Args:
        scoremap (np.ndarray): (H, W) float map in [0, 1]; its dtype is the
            quantisation dtype.
        thresholds: Iterable of tau in [0, 1].
        multi_contour (bool): Every contour (V2) or the largest (V1).
        clip (bool): Clip x1, y1 to W - 1, H - 1.
        empty_box: Box when no contour is found.

    Returns:
        tuple: (boxes per threshold as lists of [x0, y0, x1, y1], box count
        per threshold).
    """
    height, width = scoremap.shape
    image = np.expand_dims((scoremap * 255).astype(np.uint8), 2)
    all_boxes, counts = [], []
    for tau in thresholds:
        _, binary = cv2.threshold(
            src=image,
            thresh=int(tau * np.max(image)),
            maxval=255,
            type=cv2.THRESH_BINARY,
        )
        contours = cv2.findContours(
            image=binary, mode=cv2.RETR_TREE, method=cv2.CHAIN_APPROX_SIMPLE
        )[0]
        if len(contours) == 0:
            all_boxes.append([list(empty_box)])
            counts.append(1)
            continue
        if not multi_contour:
            contours = [max(contours, key=cv2.contourArea)]
        boxes = []
        for contour in contours:
            x, y, w, h = cv2.boundingRect(contour)
            x0, y0, x1, y1 = x, y, x + w, y + h
            if clip:
                x1 = min(x1, width - 1)
                y1 = min(y1, height - 1)
            boxes.append([x0, y0, x1, y1])
        all_boxes.append(boxes)
        counts.append(len(boxes))
    return all_boxes, counts


def reference_iou(box_a, box_b) -> np.ndarray:
    """wsolevaluation's ``calculate_multiple_iou`` (+1 convention)."""
    box_a = np.array(box_a)
    box_b = np.array(box_b)
    num_a = len(box_a)
    num_b = len(box_b)
    box_a = np.tile(box_a, num_b)
    box_a = np.expand_dims(box_a, axis=1).reshape((num_a, num_b, -1))
    box_b = np.tile(box_b, (num_a, 1))
    box_b = np.expand_dims(box_b, axis=0).reshape((num_a, num_b, -1))
    min_x = np.maximum(box_a[:, :, 0], box_b[:, :, 0])
    min_y = np.maximum(box_a[:, :, 1], box_b[:, :, 1])
    max_x = np.minimum(box_a[:, :, 2], box_b[:, :, 2])
    max_y = np.minimum(box_a[:, :, 3], box_b[:, :, 3])
    area_intersect = np.maximum(0, max_x - min_x + 1) * np.maximum(
        0, max_y - min_y + 1
    )
    area_a = (box_a[:, :, 2] - box_a[:, :, 0] + 1) * (
        box_a[:, :, 3] - box_a[:, :, 1] + 1
    )
    area_b = (box_b[:, :, 2] - box_b[:, :, 0] + 1) * (
        box_b[:, :, 3] - box_b[:, :, 1] + 1
    )
    denominator = (area_a + area_b - area_intersect).astype(np.float64)
    area_intersect = area_intersect.astype(np.float64)
    degenerate = np.where(denominator <= 0)
    denominator[degenerate] = 1
    area_intersect[degenerate] = 0
    return area_intersect / denominator


def reference_max_box_acc(
    cams,
    gt_boxes,
    iou_thresholds=(30, 50, 70),
    cam_curve_interval: float = 0.01,
    multi_contour: bool = True,
) -> dict:
    """wsolevaluation's BoxEvaluator: accumulate per image, then compute.

    Returns:
        dict: ``'MaxBoxAccV2'``, ``'MaxBoxAcc@{d}'``,
        ``'best_threshold@{d}'`` and ``'box_acc_curves'`` (L, T) percent.
    """
    thresholds = np.arange(0, 1, cam_curve_interval)
    num_correct = {d: np.zeros(len(thresholds)) for d in iou_thresholds}
    count = 0
    for cam, gt in zip(cams, gt_boxes):
        boxes, numbers = reference_boxes(cam, thresholds, multi_contour)
        flat = [box for per_tau in boxes for box in per_tau]
        multiple_iou = reference_iou(np.array(flat), np.array(gt))
        sliced = []
        idx = 0
        for nr_box in numbers:
            sliced.append(max(multiple_iou.max(1)[idx : idx + nr_box]))
            idx += nr_box
        for d in iou_thresholds:
            correct = np.where(np.asarray(sliced) >= (d / 100))[0]
            num_correct[d][correct] += 1
        count += 1
    result = {}
    curves = []
    best = []
    for d in iou_thresholds:
        box_acc = num_correct[d] * 100.0 / float(count)
        curves.append(box_acc)
        best.append(box_acc.max())
        result[f'MaxBoxAcc@{d}'] = float(box_acc.max())
        result[f'best_threshold@{d}'] = float(
            thresholds[int(np.argmax(box_acc))]
        )
    result['MaxBoxAccV2'] = float(np.mean(best))
    result['box_acc_curves'] = np.array(curves)
    return result


def reference_pxap(
    cams, masks, ignore_masks=None, cam_curve_interval: float = 0.001
) -> dict:
    """wsolevaluation's MaskEvaluator with ``np.histogram`` per image.

    Returns:
        dict: ``'PxAP'``, ``'pIoU'`` (percent) and ``'best_threshold'``.
    """
    thresholds = np.arange(0, 1, cam_curve_interval)
    right_edges = np.append(thresholds, [1.0, 2.0, 3.0])
    num_bins = len(thresholds) + 2
    true_hist = np.zeros(num_bins, dtype=np.float64)
    false_hist = np.zeros(num_bins, dtype=np.float64)
    for i in range(len(cams)):
        gt = np.asarray(masks[i]).astype(np.int64)
        if ignore_masks is not None:
            ignore = np.logical_and(
                np.asarray(ignore_masks[i]) > 0, np.logical_not(gt > 0)
            )
            gt[ignore] = 255
        true_scores = cams[i][gt == 1]
        false_scores = cams[i][gt == 0]
        h, _ = np.histogram(true_scores, bins=right_edges)
        true_hist += h.astype(np.float64)
        h, _ = np.histogram(false_scores, bins=right_edges)
        false_hist += h.astype(np.float64)
    num_true = true_hist.sum()
    tp = true_hist[::-1].cumsum()
    fn = num_true - tp
    fp = false_hist[::-1].cumsum()
    non_zero = (tp + fp) != 0
    with np.errstate(invalid='ignore', divide='ignore'):
        precision = tp / (tp + fp)
    recall = tp / (tp + fn)
    auc = (precision[1:] * np.diff(recall))[non_zero[1:]].sum() * 100
    # pIoU per sweep point; point k counts scores >= right_edges[-2 - k].
    piou = tp / (tp + fp + fn)
    best_val = piou.max()
    best_tau = None
    for k in range(len(piou)):
        if piou[k] == best_val:
            best_tau = float(right_edges[len(right_edges) - 2 - k])
    return {
        'PxAP': float(auc),
        'pIoU': float(best_val * 100),
        'best_threshold': best_tau,
    }
