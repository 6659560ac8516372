"""Multi-view test transforms of WSOL-SST (``wsol_sst.md`` §6.1).

The "quick" test path classifies an image from several views and localises
it on one more view:

- :class:`SSTTenCropWithLocView` builds the classification views (the ten
  crops of upstream's ``TenCrop`` test, or one centre crop) and resizes the
  image itself, boxes and mask included, to the localisation view through
  the shared :class:`~shared.datasets.transforms.LocResize`;
- :class:`SSTPackMultiViewInputs` packs all views into one ``V x 3 x H x W``
  tensor, the localisation view last, and the ground truth exactly as
  :class:`~shared.datasets.transforms.PackLocInputs` does.
"""

from __future__ import annotations

from collections.abc import Sequence

import mmcv
import numpy as np
import torch
from mmcv.transforms import BaseTransform

from shared.datasets.transforms import LocResize, PackLocInputs
from shared.datasets.transforms.geometry import (
    LocTransformError,
    check_results,
)
from shared.registry import TRANSFORMS

__all__ = [
    'CLS_VIEWS_KEY',
    'NUM_VIEWS_KEY',
    'SSTPackMultiViewInputs',
    'SSTTenCropWithLocView',
    'center_crop_origin',
    'short_side_size',
]

#: Results key of the classification views: a list of (H, W[, C]) arrays.
CLS_VIEWS_KEY = 'cls_imgs'
#: Results and metainfo key of the number of views V (classification views
#: plus the localisation view, or 1 when the localisation view classifies).
NUM_VIEWS_KEY = 'num_views'

#: Classification views per image for each ``tencrop`` setting.
_TENCROP_VIEWS = {True: 10, False: 1}


def center_crop_origin(
    height: int, width: int, crop_h: int, crop_w: int
) -> tuple[int, int]:
    """Top-left corner ``(top, left)`` of torchvision's centre crop.

    ``int(round((H - h) / 2))`` with Python's round-half-to-even, exactly as
    :func:`torchvision.transforms.functional.center_crop`: an odd margin of
    9 puts the crop at 4, one of 11 at 6.
    """
    return (
        int(round((height - crop_h) / 2.0)),
        int(round((width - crop_w) / 2.0)),
    )


def short_side_size(height: int, width: int, short: int) -> tuple[int, int]:
    """``(w, h)`` after resizing the short side to ``short`` pixels.

    The long side becomes ``int(short * long / short_side)`` (truncated),
    torchvision's ``Resize(int)`` rule; mmcv's ``rescale_size`` rounds
    instead and gives other sizes for some images.
    """
    if width <= height:
        return short, int(short * height / width)
    return int(short * width / height), short


@TRANSFORMS.register_module()
class SSTTenCropWithLocView(BaseTransform):
    """Classification views plus the box-aware localisation view.

    With the defaults an image yields V = 11 views, all
    ``crop_size x crop_size``:

    - views 0-9: the image resized to ``resize x resize`` (aspect not kept),
      then torchvision's ``TenCrop(crop_size)`` in its order: top-left,
      top-right, bottom-left, bottom-right, centre, then the same five of
      the horizontally flipped image;
    - view 10: the **localisation view**, the whole image resized to
      ``crop_size x crop_size`` by :class:`LocResize` (same image backend,
      same box and mask arithmetic), so ``gt_bboxes``, ``gt_mask``,
      ``img_shape`` and ``scale_factor`` refer to it exactly as in the
      shared ``LocResize((crop_size, crop_size))`` test pipeline.

    ``tencrop=False`` replaces views 0-9 by one view (short side resized to
    ``crop_size`` keeping the aspect, torchvision's rule, then the centre
    ``crop_size`` crop): V = 2. ``cls_views=0`` drops the classification
    views; the model classifies from the localisation view: V = 1.

    The classification views carry no boxes and leave no geometric history
    (``flip``, ``crop_bbox``): the packed sample's geometry is that of the
    localisation view, which is resize-only, so the metrics' protocol GT
    rescaling stays valid.

    Required keys: ``img``. Optional: ``gt_bboxes``, ``gt_mask``.
    Modified: ``img`` (the localisation view), ``img_shape``,
    ``gt_bboxes``, ``gt_mask``, ``scale_factor``, ``keep_ratio`` (as
    :class:`LocResize`). Added: ``cls_imgs`` (list of the V - 1
    classification views, (crop, crop[, C]) arrays in the image's channel
    order) and ``num_views`` (V).

    Args:
        crop_size (int): Side of every view, pixels.
        resize (int): Side of the square resize before the ten crops,
            pixels; must be at least ``crop_size``. Unused with
            ``tencrop=False``.
        tencrop (bool): Ten crops (``True``) or one centre crop.
        cls_views (int | None): Number of classification views: ``None``
            for all that the ``tencrop`` setting gives (10 or 1), ``0`` to
            classify from the localisation view alone. Any other value must
            equal 10 with ``tencrop`` or 1 without.
        backend (str): Image resize backend, ``'pillow'`` (upstream's
            torchvision/PIL) or ``'cv2'``.
        interpolation (str): Image interpolation, as mmcv names it.
    """

    def __init__(
        self,
        crop_size: int = 224,
        resize: int = 256,
        tencrop: bool = True,
        cls_views: int | None = None,
        backend: str = 'pillow',
        interpolation: str = 'bilinear',
    ) -> None:
        name = type(self).__name__
        for arg, value in (('crop_size', crop_size), ('resize', resize)):
            if (
                isinstance(value, bool)
                or not isinstance(value, int)
                or value < 1
            ):
                raise ValueError(
                    f'{name}: {arg} must be a positive int, got {value!r}'
                )
        tencrop = bool(tencrop)
        if tencrop and resize < crop_size:
            raise ValueError(
                f'{name}: resize={resize} is smaller than '
                f'crop_size={crop_size}; the ten crops must fit the '
                'resized image'
            )
        full = _TENCROP_VIEWS[tencrop]
        if cls_views is None:
            cls_views = full
        if cls_views not in (0, full):
            raise ValueError(
                f'{name}: cls_views={cls_views!r} with tencrop={tencrop}; '
                f'allowed: None or {full} (all classification views) or 0 '
                '(classify from the localisation view)'
            )
        # The localisation view goes through LocResize itself (which also
        # validates ``backend``), so its pixels and boxes cannot drift from
        # the shared single-view test pipeline.
        self.loc_resize = LocResize(
            scale=(crop_size, crop_size),
            backend=backend,
            interpolation=interpolation,
        )
        self.crop_size = crop_size
        self.resize = resize
        self.tencrop = tencrop
        self.cls_views = cls_views
        self.backend = backend
        self.interpolation = interpolation

    @property
    def num_views(self) -> int:
        """V: the classification views plus the localisation view, or 1."""
        return self.cls_views + 1 if self.cls_views else 1

    def _resize(self, img: np.ndarray, size: tuple[int, int]) -> np.ndarray:
        """Resize to ``(w, h)`` as :class:`LocResize` resizes images."""
        if img.shape[1::-1] == tuple(size):
            return img
        return mmcv.imresize(
            img, size, interpolation=self.interpolation, backend=self.backend
        )

    def _five_crop(self, img: np.ndarray) -> list[np.ndarray]:
        """torchvision ``five_crop`` order: tl, tr, bl, br, centre."""
        c = self.crop_size
        height, width = img.shape[:2]
        top, left = center_crop_origin(height, width, c, c)
        origins = [
            (0, 0),
            (0, width - c),
            (height - c, 0),
            (height - c, width - c),
            (top, left),
        ]
        return [img[y : y + c, x : x + c] for y, x in origins]

    def cls_view_images(self, img: np.ndarray) -> list[np.ndarray]:
        """The classification views of an (H, W[, C]) image.

        Args:
            img (numpy.ndarray): The image before any resize.

        Returns:
            list[numpy.ndarray]: ``cls_views`` contiguous
            (crop_size, crop_size[, C]) arrays in view order.
        """
        if not self.cls_views:
            return []
        if self.tencrop:
            resized = self._resize(img, (self.resize, self.resize))
            views = self._five_crop(resized)
            views += self._five_crop(mmcv.imflip(resized, 'horizontal'))
        else:
            c = self.crop_size
            resized = self._resize(img, short_side_size(*img.shape[:2], c))
            top, left = center_crop_origin(*resized.shape[:2], c, c)
            views = [resized[top : top + c, left : left + c]]
        return [np.ascontiguousarray(view) for view in views]

    def transform(self, results: dict) -> dict:
        """Add ``cls_imgs`` and ``num_views``; make ``img`` the
        localisation view."""
        check_results(results, type(self).__name__)
        results[CLS_VIEWS_KEY] = self.cls_view_images(results['img'])
        results = self.loc_resize.transform(results)
        results[NUM_VIEWS_KEY] = self.num_views
        return results

    def __repr__(self) -> str:
        return (
            f'{type(self).__name__}(crop_size={self.crop_size}, '
            f'resize={self.resize}, tencrop={self.tencrop}, '
            f'cls_views={self.cls_views}, backend={self.backend!r}, '
            f'interpolation={self.interpolation!r})'
        )


@TRANSFORMS.register_module()
class SSTPackMultiViewInputs(PackLocInputs):
    """Pack the views of :class:`SSTTenCropWithLocView` and the ground truth.

    ``inputs`` is a ``V x C x H x W`` tensor of the image dtype (uint8 from
    ``LoadImageFromFile``): the classification views in order, then the
    localisation view. Every view is formatted by ``PackInputs.format_input``
    and the channels keep the pipeline's order (BGR from mmcv's loaders,
    like :class:`PackLocInputs`; the data preprocessor's ``to_rgb`` swaps
    them). The ``DataSample`` is exactly :class:`PackLocInputs`' for the
    localisation view, plus the metainfo ``num_views`` (V).

    Args:
        algorithm_keys (Sequence[str]): Extra data fields, as in
            ``PackInputs``.
        meta_keys (Sequence[str]): Meta fields to copy when present;
            ``num_views`` is always set.

    Raises:
        LocTransformError: If the results do not come from
            :class:`SSTTenCropWithLocView` (no ``num_views``), or the number
            or sizes of the views disagree with ``num_views`` and the
            localisation view.
    """

    DEFAULT_META_KEYS = (*PackLocInputs.DEFAULT_META_KEYS, NUM_VIEWS_KEY)

    def __init__(
        self,
        algorithm_keys: Sequence[str] = (),
        meta_keys: Sequence[str] = DEFAULT_META_KEYS,
    ) -> None:
        super().__init__(
            input_key='img', algorithm_keys=algorithm_keys, meta_keys=meta_keys
        )

    def _fail(self, results: dict, message: str) -> LocTransformError:
        path = results.get('img_path', '<no img_path>')
        return LocTransformError(f'{type(self).__name__}: {path}: {message}')

    def transform(self, results: dict) -> dict:
        """Pack ``cls_imgs`` + ``img`` into ``inputs`` and a DataSample."""
        if NUM_VIEWS_KEY not in results:
            raise self._fail(
                results,
                f"no '{NUM_VIEWS_KEY}' in the results (put "
                'SSTTenCropWithLocView before this transform)',
            )
        num_views = int(results[NUM_VIEWS_KEY])
        cls_imgs = list(results.get(CLS_VIEWS_KEY) or [])
        if num_views < 1 or len(cls_imgs) + 1 != num_views:
            raise self._fail(
                results,
                f'{len(cls_imgs)} classification views plus the '
                f'localisation view do not make num_views={num_views}',
            )
        packed = super().transform(results)
        loc = packed['inputs']
        views = [self.format_input(img) for img in cls_imgs]
        for i, view in enumerate(views):
            if view.shape != loc.shape or view.dtype != loc.dtype:
                raise self._fail(
                    results,
                    f'classification view {i} is {tuple(view.shape)} '
                    f'{view.dtype} but the localisation view is '
                    f'{tuple(loc.shape)} {loc.dtype}; all views must share '
                    'size and dtype',
                )
        packed['inputs'] = torch.stack([*views, loc])
        packed['data_samples'].set_metainfo({NUM_VIEWS_KEY: num_views})
        return packed
