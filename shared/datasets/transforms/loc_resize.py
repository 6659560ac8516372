"""``LocResize``: resize the image, its boxes and its mask (§3.3)."""

from __future__ import annotations

from collections.abc import Sequence

import mmcv
from mmcv.transforms import BaseTransform

from shared.registry import TRANSFORMS

from .geometry import apply_resize, check_results

__all__ = ['LocResize']


@TRANSFORMS.register_module()
class LocResize(BaseTransform):
    """Resize an image with its ``gt_bboxes`` and ``gt_mask``.

    The image goes through :func:`mmcv.imresize` with ``backend`` and
    ``interpolation`` (PIL bilinear by default, the reference pipelines').
    Boxes become ``x' = x * new_w / old_w`` (and likewise for y) in float64,
    multiplying before dividing. The mask is always resized with
    ``cv2.INTER_NEAREST`` to the target size whatever the image backend,
    which reproduces the reference mask handling (PIL nearest samples other
    pixels).

    **Scale convention**: ``scale`` is ``(w, h)`` as in mmcv ``Resize``; an
    int ``s`` means ``(s, s)``. With ``keep_ratio=True`` the image is
    rescaled as large as possible within ``scale`` read as (long edge,
    short edge) bounds, exactly as mmcv ``Resize(keep_ratio=True)``
    (:func:`mmcv.rescale_size`), and the boxes use the realised sizes.

    Required keys: ``img``. Optional: ``gt_bboxes`` float (N, 4) xyxy,
    ``gt_mask`` uint8 (H, W). Modified: ``img``, ``img_shape`` ``(H, W)``,
    ``gt_bboxes`` (float64), ``gt_mask``, ``scale_factor`` (``(w_scale,
    h_scale)`` multiplied into the existing one, the product of all
    resizes). ``ori_gt_bboxes`` and ``ori_gt_mask`` are left alone.

    Args:
        scale (int | Sequence[int]): Target ``(w, h)`` in pixels, or one
            side for a square.
        keep_ratio (bool): Keep the aspect ratio (see above).
        backend (str): ``'pillow'`` or ``'cv2'``, image only.
        interpolation (str): Image interpolation, as mmcv names it.
    """

    def __init__(
        self,
        scale: int | Sequence[int],
        keep_ratio: bool = False,
        backend: str = 'pillow',
        interpolation: str = 'bilinear',
    ) -> None:
        if isinstance(scale, int):
            scale = (scale, scale)
        scale = tuple(int(s) for s in scale)
        if len(scale) != 2 or min(scale) <= 0:
            raise ValueError(
                f'LocResize: scale must be a positive int or (w, h), got '
                f'{scale}'
            )
        if backend not in ('pillow', 'cv2'):
            raise ValueError(
                f"LocResize: backend must be 'pillow' or 'cv2', got "
                f'{backend!r}'
            )
        self.scale = scale
        self.keep_ratio = keep_ratio
        self.backend = backend
        self.interpolation = interpolation

    def target_size(self, height: int, width: int) -> tuple[int, int]:
        """The ``(w, h)`` an ``height`` x ``width`` image is resized to."""
        if self.keep_ratio:
            return mmcv.rescale_size((width, height), self.scale)
        return self.scale

    def transform(self, results: dict) -> dict:
        """Resize ``img``, ``gt_bboxes`` and ``gt_mask`` in ``results``."""
        height, width = check_results(results, type(self).__name__)
        apply_resize(
            results,
            self.target_size(height, width),
            self.backend,
            self.interpolation,
        )
        results['keep_ratio'] = self.keep_ratio
        return results

    def __repr__(self) -> str:
        return (
            f'{type(self).__name__}(scale={self.scale}, '
            f'keep_ratio={self.keep_ratio}, backend={self.backend!r}, '
            f'interpolation={self.interpolation!r})'
        )
