"""``PackLocInputs``: the localization ``DataSample`` of §3.2."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from mmpretrain.datasets.transforms import PackInputs

from shared.registry import TRANSFORMS

from .geometry import LocTransformError, check_results

__all__ = ['PackLocInputs']


@TRANSFORMS.register_module()
class PackLocInputs(PackInputs):
    """mmpretrain ``PackInputs`` plus the box and mask ground truth.

    Data fields (tensors, moved to the device with the sample):

    - ``gt_label``: LongTensor (1,) single-label, (k,) positive class
      indices for multi-label (mmpretrain ``set_gt_label``);
    - ``gt_bboxes``: float32 (N, 4) xyxy boxes of the current frame, set
      (possibly (0, 4)) whenever the results carry ``gt_bboxes``;
    - ``gt_mask``: uint8 (H, W), 0 / 1 / 255, when the results carry one.

    Meta fields (kept as given; ``ori_gt_bboxes`` stays float64 numpy and
    ``ori_gt_mask`` uint8 numpy): the keys of :attr:`DEFAULT_META_KEYS`
    present in the results.

    Args:
        input_key (str): Key of the network input.
        algorithm_keys (Sequence[str]): Extra data fields, as in
            ``PackInputs``.
        meta_keys (Sequence[str]): Meta fields to copy when present.
    """

    DEFAULT_META_KEYS = (
        *PackInputs.DEFAULT_META_KEYS,
        'crop_bbox',
        'ori_gt_bboxes',
        'ori_box_format',
        'ann_ref',
        'gt_label_difficult',
        'img_id',
        'ori_gt_mask',
        'dropped_boxes',
        'clipped_boxes',
    )

    def __init__(
        self,
        input_key: str = 'img',
        algorithm_keys: Sequence[str] = (),
        meta_keys: Sequence[str] = DEFAULT_META_KEYS,
    ) -> None:
        super().__init__(
            input_key=input_key,
            algorithm_keys=algorithm_keys,
            meta_keys=meta_keys,
        )

    @staticmethod
    def _drop_degenerate(results: dict) -> dict:
        """Remove zero-width/height boxes (annotated so, or made so by a
        resize), adding their number to ``dropped_boxes``."""
        boxes = results.get('gt_bboxes')
        if boxes is None:
            return results
        boxes = np.asarray(boxes, dtype=np.float64)
        if boxes.ndim != 2 or boxes.shape[1] != 4 or not len(boxes):
            return results
        keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        if keep.all():
            return results
        results = dict(results)
        results['gt_bboxes'] = boxes[keep]
        results['dropped_boxes'] = results.get('dropped_boxes', 0) + int(
            (~keep).sum()
        )
        return results

    def transform(self, results: dict) -> dict:
        """Pack ``results`` into ``inputs`` and a ``DataSample``."""
        if self.input_key == 'img':
            check_results(results, type(self).__name__)
        results = self._drop_degenerate(results)
        packed = super().transform(results)
        sample = packed['data_samples']
        if results.get('gt_bboxes') is not None:
            boxes = np.asarray(results['gt_bboxes'], dtype=np.float32)
            boxes = boxes.reshape(-1, 4) if boxes.size == 0 else boxes
            if boxes.ndim != 2 or boxes.shape[1] != 4:
                raise LocTransformError(
                    f'{type(self).__name__}: '
                    f'{results.get("img_path", "<no img_path>")}: '
                    f"'gt_bboxes' must have shape (N, 4), got {boxes.shape}"
                )
            sample.set_field(
                torch.from_numpy(np.ascontiguousarray(boxes)),
                'gt_bboxes',
                dtype=torch.Tensor,
            )
        if results.get('gt_mask') is not None:
            mask = np.ascontiguousarray(results['gt_mask'], dtype=np.uint8)
            sample.set_field(
                torch.from_numpy(mask), 'gt_mask', dtype=torch.Tensor
            )
        return packed
