"""``LocRandomFlip``: flip the image with its boxes and mask (§3.3)."""

from __future__ import annotations

from collections.abc import Sequence

import mmcv
import numpy as np
from mmcv.transforms import RandomFlip

from shared.registry import TRANSFORMS

from .geometry import check_results

__all__ = ['LocRandomFlip']


@TRANSFORMS.register_module()
class LocRandomFlip(RandomFlip):
    """mmcv ``RandomFlip`` that also flips ``gt_mask``.

    The direction is drawn by ``RandomFlip._choose_direction`` (same
    arguments and random stream). A horizontal flip maps boxes to
    ``x0' = W - x1``, ``x1' = W - x0`` (edge coordinates, exact in float64);
    ``'vertical'`` and ``'diagonal'`` do the same on y / both axes. The mask
    is flipped the same way; ``flip`` and ``flip_direction`` are set as by
    mmcv (``False`` / ``None`` when not flipped).

    Required keys: ``img``. Optional: ``gt_bboxes``, ``gt_mask``. Modified:
    ``img``, ``gt_bboxes``, ``gt_mask``. Added: ``flip``, ``flip_direction``.

    Args:
        prob (float | list[float]): Flip probability (per direction when a
            list).
        direction (str | list[str]): ``'horizontal'``, ``'vertical'`` or
            ``'diagonal'``, or a list of them.
    """

    def __init__(
        self,
        prob: float | Sequence[float],
        direction: str | Sequence[str] = 'horizontal',
    ) -> None:
        if isinstance(prob, int):  # mmcv accepts floats only
            prob = float(prob)
        elif isinstance(prob, Sequence):
            prob = [float(p) for p in prob]
        if not isinstance(direction, str):
            direction = list(direction)
        super().__init__(prob=prob, direction=direction)

    def _flip(self, results: dict) -> None:
        direction = results['flip_direction']
        img = results['img']
        results['img'] = mmcv.imflip(img, direction=direction)
        if results.get('gt_bboxes') is not None:
            results['gt_bboxes'] = self._flip_bbox(
                results['gt_bboxes'], img.shape[:2], direction
            )
        if results.get('gt_mask') is not None:
            results['gt_mask'] = np.ascontiguousarray(
                mmcv.imflip(results['gt_mask'], direction=direction)
            )

    def transform(self, results: dict) -> dict:
        """Flip ``img``, ``gt_bboxes`` and ``gt_mask`` at random."""
        check_results(results, type(self).__name__)
        self._flip_on_direction(results)
        return results
