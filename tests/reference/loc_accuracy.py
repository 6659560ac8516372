"""TS-CAM's and WGOL/SPA's localization-accuracy loops, re-stated literally
(``evaluation.md`` §2, §3.6, §10 item 6).

One box per top-5 class map as the originals compute it (TS-CAM:
``cv2.threshold(THRESH_TOZERO)`` + ``findContours`` + the largest
``contourArea``, unclipped, [0, 0, 1, 1] when empty; WGOL: one box around
every pixel with v >= tau), scored with ``calculate_IOU`` (+1 convention)
against every GT box, and the top-1 failure breakdown in the order of the
spec. Nothing here is shared with ``shared/evaluation/wsol.py``.
"""

from __future__ import annotations

import cv2
import numpy as np

__all__ = ['reference_loc_accuracy', 'tscam_box', 'wgol_box']


def tscam_box(cam: np.ndarray, cam_thr: float) -> list[int]:
    """TS-CAM's ``get_bboxes`` on a [0, 1] float32 map."""
    cam = (cam * 255.0).astype(np.uint8)
    map_thr = cam_thr * np.max(cam)
    _, thr_map = cv2.threshold(cam, int(map_thr), 255, cv2.THRESH_TOZERO)
    contours, _ = cv2.findContours(
        thr_map, cv2.RETR_TREE, cv2.CHAIN_APPROX_SIMPLE
    )
    if len(contours) != 0:
        c = max(contours, key=cv2.contourArea)
        x, y, w, h = cv2.boundingRect(c)
        return [x, y, x + w, y + h]
    return [0, 0, 1, 1]


def wgol_box(cam: np.ndarray, thr: float) -> list[int]:
    """WGOL's box around every pixel with v >= thr ([0, 0, 0, 0] if none)."""
    ys, xs = np.where(cam >= thr)
    if len(xs) == 0:
        return [0, 0, 0, 0]
    return [int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max())]


def _overlap(box, gt):
    iw = max(0, min(box[2], gt[2]) - max(box[0], gt[0]) + 1)
    ih = max(0, min(box[3], gt[3]) - max(box[1], gt[1]) + 1)
    inter = iw * ih
    area_box = (box[2] - box[0] + 1) * (box[3] - box[1] + 1)
    area_gt = (gt[2] - gt[0] + 1) * (gt[3] - gt[1] + 1)
    return inter, area_box, area_gt


def calculate_iou(box, gt) -> float:
    inter, area_box, area_gt = _overlap(box, gt)
    union = area_box + area_gt - inter
    return inter / union if union > 0 else 0.0


def _breakdown(box, gts, cls_ok: bool, iou_thr: float) -> str:
    if not cls_ok:
        return 'top1_cls_wrong'
    ious = [calculate_iou(box, g) for g in gts]
    best = int(np.argmax(ious))
    if ious[best] > iou_thr:
        return 'top1_right'
    iogs = []
    for g in gts:
        inter, _, area_gt = _overlap(box, g)
        iogs.append(inter / area_gt if area_gt > 0 else 0.0)
    if len(gts) > 1 and sum(v > 0.3 for v in iogs) > 1:
        return 'top1_multi_instance'
    inter, area_box, _ = _overlap(box, gts[best])
    if area_box > 0 and inter / area_box > 0.5:
        return 'top1_part'
    if iogs[best] >= 0.7:
        return 'top1_more'
    return 'top1_wrong'


def reference_loc_accuracy(
    cams, labels, gt_labels, gt_boxes, thr, protocol, num_topk=5
) -> dict:
    """Percent accuracies at one threshold, looping over the top-k maps.

    Args:
        cams: (N, K, H, W) maps in the evaluated frame.
        labels: (N, K) classes of the maps.
        gt_labels: (N,) GT classes.
        gt_boxes: N lists of inclusive GT boxes.
        thr (float): CAM threshold.
        protocol (str): ``'tscam'`` or ``'spa'``.
        num_topk (int): Ranked columns.
    """
    keys = [
        'top1_cls', 'top5_cls', 'gt_known_loc', 'top1_loc', 'top5_loc',
        'top1_right', 'top1_cls_wrong', 'top1_multi_instance', 'top1_part',
        'top1_more', 'top1_wrong',
    ]  # fmt: skip
    counts = dict.fromkeys(keys, 0)
    for i in range(len(cams)):
        gts = [list(map(int, g)) for g in gt_boxes[i]]

        def box_of(cam):
            if protocol == 'tscam':
                cam = cam.astype(np.float32)
                lo, hi = cam.min(), cam.max()
                cam = (cam - lo) / (hi - lo) if hi > lo else np.zeros_like(cam)
                return tscam_box(cam, thr)
            return wgol_box(cam, thr)

        top5_hit = False
        for k in range(num_topk):
            box = box_of(cams[i][k])
            iou = max(calculate_iou(box, g) for g in gts)
            correct = labels[i][k] == gt_labels[i]
            if k == 0:
                counts['top1_cls'] += int(correct)
                counts['top1_loc'] += int(correct and iou > 0.5)
                counts[_breakdown(box, gts, correct, 0.5)] += 1
            if correct:
                counts['top5_cls'] += 1
                top5_hit = top5_hit or iou > 0.5
        counts['top5_loc'] += int(top5_hit)
        j = list(labels[i]).index(gt_labels[i])
        box = box_of(cams[i][j])
        iou = max(calculate_iou(box, g) for g in gts)
        known = iou >= 0.5 if protocol == 'tscam' else iou > 0.5
        counts['gt_known_loc'] += int(known)
    return {k: v * 100.0 / len(cams) for k, v in counts.items()}
