"""Box- and mask-aware crops (§3.3).

Each class reuses the window of the transform it replaces, so a config can
swap one for the other and get the same image:

- :class:`LocRandomCrop` subclasses mmpretrain ``RandomCrop`` (its
  ``rand_crop_params``; ``crop_size`` is **(h, w)** as there);
- :class:`LocRandomResizedCrop` subclasses mmpretrain ``RandomResizedCrop``
  (its ``rand_crop_params``; ``scale`` is **(h, w)** as there);
- :class:`LocCenterCrop` subclasses mmcv ``CenterCrop`` (its arguments and
  window formula; ``crop_size`` is **(w, h)** as there).

All of them shift the boxes by the crop origin, clip them to the crop,
drop the boxes left with zero width or height (adding the count to
``results['dropped_boxes']``), crop ``gt_mask`` and record ``crop_bbox``
``(x0, y0, x1, y1)`` in the frame before the crop (the last crop's window
when several run).
"""

from __future__ import annotations

from collections.abc import Sequence

from mmcv.transforms import CenterCrop
from mmpretrain.datasets.transforms import RandomCrop, RandomResizedCrop

from shared.registry import TRANSFORMS

from .geometry import apply_crop, apply_resize, check_results

__all__ = ['LocCenterCrop', 'LocRandomCrop', 'LocRandomResizedCrop']


@TRANSFORMS.register_module()
class LocRandomCrop(RandomCrop):
    """mmpretrain ``RandomCrop`` that also crops boxes and the mask.

    The window is drawn by ``RandomCrop.rand_crop_params`` (same random
    stream; an image smaller than the crop is cropped to its own size on
    that side). Padding is not supported: a padded border has no
    annotation.

    Required keys: ``img``. Optional: ``gt_bboxes``, ``gt_mask``. Modified:
    ``img``, ``img_shape`` ``(H, W)``, ``gt_bboxes``, ``gt_mask``. Added:
    ``crop_bbox``, ``dropped_boxes``.

    Args:
        crop_size (int | Sequence[int]): Output ``(h, w)`` in pixels (the
            mmpretrain convention), or one side for a square.
    """

    def __init__(self, crop_size: int | Sequence[int], **kwargs) -> None:
        for key in ('padding', 'pad_if_needed'):
            if kwargs.get(key):
                raise ValueError(
                    f'LocRandomCrop does not support {key}: a padded border '
                    'has no box or mask annotation'
                )
        super().__init__(crop_size, **kwargs)

    def transform(self, results: dict) -> dict:
        """Crop ``img``, ``gt_bboxes`` and ``gt_mask`` at a random window."""
        check_results(results, type(self).__name__)
        off_h, off_w, target_h, target_w = self.rand_crop_params(
            results['img']
        )
        apply_crop(
            results, off_w, off_h, target_w, target_h, type(self).__name__
        )
        return results


@TRANSFORMS.register_module()
class LocCenterCrop(CenterCrop):
    """mmcv ``CenterCrop`` that also drops degenerate boxes and crops masks.

    The window is mmcv's: ``x0 = max(0, int(round((W - w) / 2)))`` (same for
    y), with the crop reduced to the image size on a side where the image
    is smaller. Padding (``auto_pad``) is not supported.

    Required keys: ``img``. Optional: ``gt_bboxes``, ``gt_mask``. Modified:
    ``img``, ``img_shape`` ``(H, W)``, ``gt_bboxes``, ``gt_mask``. Added:
    ``crop_bbox``, ``dropped_boxes``.

    Args:
        crop_size (int | Sequence[int]): Output ``(w, h)`` in pixels (the
            mmcv convention), or one side for a square.
    """

    def __init__(self, crop_size: int | Sequence[int]) -> None:
        if not isinstance(crop_size, int):
            crop_size = tuple(crop_size)
        super().__init__(crop_size)

    def crop_window(self, height: int, width: int) -> tuple[int, ...]:
        """``(x0, y0, w, h)`` of the window for an ``height`` x ``width``
        image (mmcv ``CenterCrop``'s formula, without padding)."""
        crop_w = min(self.crop_size[0], width)
        crop_h = min(self.crop_size[1], height)
        y0 = max(0, int(round((height - crop_h) / 2.0)))
        x0 = max(0, int(round((width - crop_w) / 2.0)))
        return x0, y0, min(width - x0, crop_w), min(height - y0, crop_h)

    def transform(self, results: dict) -> dict:
        """Crop ``img``, ``gt_bboxes`` and ``gt_mask`` at the centre."""
        height, width = check_results(results, type(self).__name__)
        apply_crop(
            results,
            *self.crop_window(height, width),
            name=type(self).__name__,
        )
        return results

    def __repr__(self) -> str:
        return f'{type(self).__name__}(crop_size={self.crop_size})'


@TRANSFORMS.register_module()
class LocRandomResizedCrop(RandomResizedCrop):
    """mmpretrain ``RandomResizedCrop`` carrying boxes and the mask.

    The window comes from ``RandomResizedCrop.rand_crop_params``; the crop
    is then resized like :class:`LocResize` (image with ``backend`` /
    ``interpolation``, boxes multiplied then divided in float64, mask with
    ``cv2.INTER_NEAREST``) and ``scale_factor`` is multiplied by the resize
    factors. Boxes are clipped and degenerate ones dropped before the
    resize.

    Required keys: ``img``. Optional: ``gt_bboxes``, ``gt_mask``. Modified:
    ``img``, ``img_shape``, ``gt_bboxes``, ``gt_mask``, ``scale_factor``.
    Added: ``crop_bbox``, ``dropped_boxes``.

    Args:
        scale (int | Sequence[int]): Output ``(h, w)`` in pixels (the
            mmpretrain convention), or one side for a square.
        crop_ratio_range (tuple[float, float]): Crop area range, as a
            fraction of the image area.
        aspect_ratio_range (tuple[float, float]): Crop aspect ratio range.
        max_attempts (int): Draws before falling back to a central crop.
        interpolation (str): Image interpolation.
        backend (str): Image resize backend; ``'pillow'`` by default
            (mmpretrain's default is ``'cv2'``).
    """

    def __init__(
        self,
        scale: int | Sequence[int],
        crop_ratio_range: tuple[float, float] = (0.08, 1.0),
        aspect_ratio_range: tuple[float, float] = (3.0 / 4.0, 4.0 / 3.0),
        max_attempts: int = 10,
        interpolation: str = 'bilinear',
        backend: str = 'pillow',
    ) -> None:
        super().__init__(
            scale,
            crop_ratio_range=crop_ratio_range,
            aspect_ratio_range=aspect_ratio_range,
            max_attempts=max_attempts,
            interpolation=interpolation,
            backend=backend,
        )

    def transform(self, results: dict) -> dict:
        """Crop a random window of ``results`` and resize it to ``scale``."""
        name = type(self).__name__
        check_results(results, name)
        off_h, off_w, target_h, target_w = self.rand_crop_params(
            results['img']
        )
        apply_crop(results, off_w, off_h, target_w, target_h, name)
        out_h, out_w = self.scale
        apply_resize(results, (out_w, out_h), self.backend, self.interpolation)
        return results
