"""``LoadLocAnnotations``: boxes checked at load time and masks (§3.3).

Runs after ``LoadImageFromFile`` (configs use
``LoadImageFromFile(imdecode_backend='pillow',
color_type='color_ignore_orientation')``, ``datasets.md`` §2.2).
"""

from __future__ import annotations

import cv2
import numpy as np
from mmcv.transforms import BaseTransform
from mmengine import fileio

from shared.registry import TRANSFORMS

from ..base import DatasetSampleError, boxes_out_of_bounds, clip_boxes
from .geometry import check_results

__all__ = ['LoadLocAnnotations']


@TRANSFORMS.register_module()
class LoadLocAnnotations(BaseTransform):
    """Check boxes against the decoded image and load OpenImages masks.

    **Boxes** (``gt_bboxes``, float (N, 4) xyxy in original pixels) are
    compared with the decoded size ``[0, W] x [0, H]`` under the dataset's
    policy ``results['box_out_of_bounds']`` (default ``'error'``):
    ``'error'`` raises naming the box's ``ann_ref`` and ``img_path``;
    ``'clip'`` clips and stores the count in ``results['clipped_boxes']``.
    ``'skip'`` removes such samples at dataset initialisation, so a box
    still outside here is an error too. A size stated by the annotation
    (``ann_img_shape``) must equal the decoded size. ``gt_bboxes`` leaves as
    a new float64 array; ``ori_gt_bboxes`` is never touched.

    **Masks** (``mask_paths``: one png per instance, ``mask_refs``: the
    ``'localization.txt:line'`` of each, ``ignore_path``: ignore-box png or
    ``None``): each png is decoded as 8-bit grayscale with OpenCV (the
    reference's reader); foreground = union over instances of
    ``value > mask_threshold``; ignore = ``(ignore png > 0) & ~foreground``;
    ``gt_mask`` = uint8 (H, W) with 1 foreground, 255 ignore, 0 background.
    A missing or undecodable png raises naming the png and its reference.
    A png whose size differs from the image raises unless
    ``results['allow_mask_size_mismatch']``, in which case that png alone is
    resized to the image with ``cv2.INTER_NEAREST`` (as the reference
    does). A sample without ``mask_paths`` gets no ``gt_mask``.

    Required keys: ``img``, ``img_path``. Optional: ``gt_bboxes``,
    ``ann_ref``, ``ann_img_shape``, ``box_out_of_bounds``, ``mask_paths``,
    ``mask_refs``, ``ignore_path``, ``mask_threshold``,
    ``allow_mask_size_mismatch``. Modified: ``gt_bboxes``. Added:
    ``gt_mask``, ``ori_gt_mask`` (with ``keep_original_mask``),
    ``clipped_boxes`` (with ``'clip'``).

    Args:
        with_mask (bool): Load ``mask_paths`` into ``gt_mask``.
        mask_threshold (int | None): Foreground is ``value >
            mask_threshold``; ``None`` takes ``results['mask_threshold']``
            (set by the dataset), else 0.
        keep_original_mask (bool): Also store a copy as ``ori_gt_mask``
            for original-frame evaluation.
        backend_args (dict | None): mmengine file backend arguments for
            reading the pngs.
    """

    def __init__(
        self,
        with_mask: bool = True,
        mask_threshold: int | None = None,
        keep_original_mask: bool = False,
        backend_args: dict | None = None,
    ) -> None:
        self.with_mask = with_mask
        self.mask_threshold = mask_threshold
        self.keep_original_mask = keep_original_mask
        self.backend_args = (
            None if backend_args is None else dict(backend_args)
        )

    # -- boxes --------------------------------------------------------------
    def _check_boxes(self, results: dict, height: int, width: int) -> None:
        path = results.get('img_path', '<no img_path>')
        stated = results.get('ann_img_shape')
        if stated is not None and tuple(stated) != (height, width):
            ref = (results.get('ann_ref') or [path])[0]
            raise DatasetSampleError(
                f'{ref}: annotation says {stated[1]}x{stated[0]} (WxH) but '
                f'the decoded image {path} is {width}x{height}'
            )
        boxes = results.get('gt_bboxes')
        if boxes is None:
            return
        boxes = np.array(boxes, dtype=np.float64).reshape(-1, 4)
        bad = boxes_out_of_bounds(boxes, height, width)
        if bad.any():
            policy = results.get('box_out_of_bounds', 'error')
            if policy == 'clip':
                boxes = clip_boxes(boxes, height, width)
                results['clipped_boxes'] = int(bad.sum())
            else:
                refs = results.get('ann_ref') or [path] * len(boxes)
                i = int(np.flatnonzero(bad)[0])
                raise DatasetSampleError(
                    f'{refs[i]}: box {boxes[i].tolist()} lies outside the '
                    f'decoded {width}x{height} image {path} '
                    f'(box_out_of_bounds={policy!r})'
                )
        elif results.get('box_out_of_bounds') == 'clip':
            results['clipped_boxes'] = 0
        results['gt_bboxes'] = boxes

    # -- masks --------------------------------------------------------------
    def _read_png(
        self, png: str, ref: str, results: dict, height: int, width: int
    ) -> np.ndarray:
        img_path = results.get('img_path', '<no img_path>')
        try:
            content = fileio.get(png, backend_args=self.backend_args)
        except Exception as err:  # noqa: BLE001 - any backend error
            raise DatasetSampleError(
                f'{ref}: cannot read mask png {png} of image {img_path} '
                f'({type(err).__name__}: {err})'
            ) from err
        mask = cv2.imdecode(
            np.frombuffer(content, np.uint8), cv2.IMREAD_GRAYSCALE
        )
        if mask is None:
            raise DatasetSampleError(
                f'{ref}: cannot decode mask png {png} of image {img_path}'
            )
        if mask.shape != (height, width):
            if not results.get('allow_mask_size_mismatch', False):
                raise DatasetSampleError(
                    f'{ref}: mask png {png} is {mask.shape[1]}x'
                    f'{mask.shape[0]} but the image {img_path} is '
                    f'{width}x{height} (WxH); set '
                    'allow_mask_size_mismatch=True to resize it'
                )
            mask = cv2.resize(
                mask, (width, height), interpolation=cv2.INTER_NEAREST
            )
        return mask

    def _load_mask(self, results: dict, height: int, width: int):
        paths = list(results['mask_paths'])
        refs = list(results.get('mask_refs') or [])
        if len(refs) != len(paths):
            refs = [results.get('img_path', '<no img_path>')] * len(paths)
        threshold = self.mask_threshold
        if threshold is None:
            threshold = results.get('mask_threshold', 0)
        foreground = np.zeros((height, width), dtype=bool)
        for png, ref in zip(paths, refs):
            foreground |= (
                self._read_png(png, ref, results, height, width) > threshold
            )
        gt_mask = foreground.astype(np.uint8)
        ignore_path = results.get('ignore_path')
        if ignore_path:
            ignore = self._read_png(
                ignore_path, refs[0], results, height, width
            )
            gt_mask[(ignore > 0) & ~foreground] = 255
        results['gt_mask'] = gt_mask
        if self.keep_original_mask:
            results['ori_gt_mask'] = gt_mask.copy()

    def transform(self, results: dict) -> dict:
        """Check the boxes and load the mask of one sample."""
        height, width = check_results(results, type(self).__name__)
        self._check_boxes(results, height, width)
        if self.with_mask and results.get('mask_paths'):
            self._load_mask(results, height, width)
        return results

    def __repr__(self) -> str:
        return (
            f'{type(self).__name__}(with_mask={self.with_mask}, '
            f'mask_threshold={self.mask_threshold}, '
            f'keep_original_mask={self.keep_original_mask}, '
            f'backend_args={self.backend_args})'
        )
