"""Bad-sample policy shared by the adapters (``datasets.md`` §2.1).

:class:`CheckedDatasetMixin` gives every adapter the same options and
behaviour:

- ``bad_sample_policy='error'|'skip'`` (``skip_invalid=True`` is shorthand
  for ``'skip'``) for a missing or undecodable image, a box outside the image
  and a mask whose size differs from the image. ``'skip'`` removes the
  sample **at initialisation**, logs one warning per problem kind with the
  count and the first five offenders, and records them in
  :attr:`skipped`. Nothing is skipped lazily: ``max_refetch`` is 0.
- ``box_out_of_bounds='error'|'clip'|'skip'``.
- ``check_images='lazy'|'header'|'full'``: when the images are checked.
  ``'lazy'`` checks at load time; ``'header'`` opens every header with PIL
  at init (existence, format, size, sizes stated by the annotations);
  ``'full'`` decodes every image. A ``'skip'`` policy needs to know at init
  which samples are bad, so it implies at least ``'header'``, which also
  checks that JPEG and PNG files end with their end marker (truncated
  downloads); other decoder failures need ``'full'``.

Errors raised while a sample goes through the pipeline are re-raised as
:class:`SampleLoadError` naming the sample index and image path.

Data-info keys the mixin understands (written by the adapters):
``img_path``, ``gt_bboxes`` (float64 (N, 4) xyxy, original pixels),
``ann_ref`` (list of ``'file:line'`` per box), ``img_ref`` (the
``'file:line'`` listing the image, cited in image errors),
``ann_img_shape`` (``(H, W)`` stated by the annotation, optional),
``mask_paths`` and ``mask_refs`` (png paths and their ``'file:line'``).
"""

from __future__ import annotations

import logging
import os
from collections import defaultdict

import numpy as np
from mmengine.logging import MMLogger, print_log
from PIL import Image

from .parsing import first_items

__all__ = ['CheckedDatasetMixin', 'DatasetSampleError', 'SampleLoadError']

BAD_SAMPLE_POLICIES = ('error', 'skip')
BOX_POLICIES = ('error', 'clip', 'skip')
CHECK_IMAGES = ('lazy', 'header', 'full')


class DatasetSampleError(ValueError):
    """A sample whose image, boxes or mask are unusable."""


class SampleLoadError(RuntimeError):
    """An error raised while loading a sample, with the sample named."""


def boxes_out_of_bounds(boxes: np.ndarray, height: int, width: int):
    """Boolean mask of boxes leaving ``[0, W] x [0, H]`` (edge coords)."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    return (
        (boxes[:, 0] < 0)
        | (boxes[:, 1] < 0)
        | (boxes[:, 2] > width)
        | (boxes[:, 3] > height)
    )


def clip_boxes(boxes: np.ndarray, height: int, width: int) -> np.ndarray:
    """Clip xyxy boxes to ``[0, W] x [0, H]`` (returns a new array)."""
    boxes = np.array(boxes, dtype=np.float64).reshape(-1, 4)
    boxes[:, 0::2] = boxes[:, 0::2].clip(0, width)
    boxes[:, 1::2] = boxes[:, 1::2].clip(0, height)
    return boxes


def _ends_complete(path: str, fmt: str | None) -> bool:
    """Whether a JPEG / PNG file ends with its end marker.

    A header check alone passes a truncated file; this reads only the last
    bytes, so ``check_images='header'`` still catches cut-off downloads.
    Other formats are not checked here (``'full'`` decodes them).
    """
    if fmt not in ('JPEG', 'PNG'):
        return True
    with open(path, 'rb') as f:
        f.seek(0, os.SEEK_END)
        f.seek(max(0, f.tell() - 64))
        tail = f.read()
    if fmt == 'JPEG':
        return tail.rstrip(b'\x00\r\n ').endswith(b'\xff\xd9')
    return b'IEND' in tail[-12:]


class CheckedDatasetMixin:
    """Bad-sample options for an mmengine ``BaseDataset`` subclass.

    Use it first in the bases, call :meth:`_setup_checks` before
    ``super().__init__`` and pass the parsed list through
    :meth:`_check_samples` at the end of ``load_data_list``.
    """

    skipped: dict[str, list[str]]

    def _setup_checks(
        self,
        bad_sample_policy: str = 'error',
        skip_invalid: bool | None = None,
        box_out_of_bounds: str = 'error',
        check_images: str = 'lazy',
        allow_mask_size_mismatch: bool = False,
    ) -> None:
        if skip_invalid:
            bad_sample_policy = 'skip'
        for name, value, allowed in (
            ('bad_sample_policy', bad_sample_policy, BAD_SAMPLE_POLICIES),
            ('box_out_of_bounds', box_out_of_bounds, BOX_POLICIES),
            ('check_images', check_images, CHECK_IMAGES),
        ):
            if value not in allowed:
                raise ValueError(
                    f'{type(self).__name__}: {name} must be one of '
                    f'{allowed}, got {value!r}'
                )
        if box_out_of_bounds == 'error' and bad_sample_policy == 'skip':
            box_out_of_bounds = 'skip'
        if check_images == 'lazy' and 'skip' in (
            bad_sample_policy,
            box_out_of_bounds,
        ):
            check_images = 'header'
        self.bad_sample_policy = bad_sample_policy
        self.box_out_of_bounds = box_out_of_bounds
        self.check_images = check_images
        self.allow_mask_size_mismatch = allow_mask_size_mismatch
        self.skipped = {}
        self.clipped_boxes = 0

    # -- init-time checks -------------------------------------------------
    def _check_samples(self, data_list: list[dict]) -> list[dict]:
        """Apply the image / box / mask checks to a parsed data list.

        Returns:
            list[dict]: ``data_list`` without the skipped samples.
        """
        problems: dict[str, list[str]] = defaultdict(list)
        kept = []
        for info in data_list:
            kind, message = self._check_one(info)
            if kind is None:
                kept.append(info)
                continue
            if self.bad_sample_policy == 'error' and not (
                kind == 'box_outside' and self.box_out_of_bounds == 'skip'
            ):
                raise DatasetSampleError(message)
            problems[kind].append(message)
        name = type(self).__name__
        for kind, refs in problems.items():
            print_log(
                f'{name}: skipped {len(refs)} sample(s) with {kind}; first: '
                + '; '.join(first_items(refs)),
                logger='current',
                level=logging.WARNING,
            )
        self.skipped = dict(problems)
        if self.clipped_boxes:
            print_log(
                f'{name}: clipped {self.clipped_boxes} box(es) to the image',
                logger='current',
                level=logging.WARNING,
            )
        if not kept:
            raise DatasetSampleError(
                f'{name}: no samples left in {self._where()}'
                + (f' after skipping {dict(problems)}' if problems else '')
            )
        return kept

    def _where(self) -> str:
        return str(getattr(self, 'ann_file', '') or self.data_root)

    def _check_one(self, info: dict) -> tuple[str | None, str]:
        """Return ``(problem kind, message)`` or ``(None, '')``."""
        path = info['img_path']
        ref = self._sample_ref(info)
        size = None
        if self.check_images != 'lazy':
            if not os.path.isfile(path):
                return 'missing_image', f'{ref}: image not found: {path}'
            try:
                with Image.open(path) as img:
                    size = img.size  # (W, H)
                    if self.check_images == 'full':
                        img.load()
                    elif not _ends_complete(path, img.format):
                        raise OSError('truncated file (no end marker)')
            except Exception as err:  # noqa: BLE001 - any decoder error
                return 'undecodable_image', (
                    f'{ref}: cannot decode image {path}: {err}'
                )
            stated = info.get('ann_img_shape')
            if stated is not None and tuple(stated) != (size[1], size[0]):
                return 'size_mismatch', (
                    f'{ref}: annotation says {stated[1]}x{stated[0]} (WxH) '
                    f'but image {path} is {size[0]}x{size[1]}'
                )
        if size is None and info.get('ann_img_shape') is not None:
            size = (info['ann_img_shape'][1], info['ann_img_shape'][0])
        boxes = info.get('gt_bboxes')
        if size is not None and boxes is not None and len(boxes):
            bad = boxes_out_of_bounds(boxes, size[1], size[0])
            if bad.any():
                if self.box_out_of_bounds == 'clip':
                    info['gt_bboxes'] = clip_boxes(boxes, size[1], size[0])
                    self.clipped_boxes += int(bad.sum())
                else:
                    refs = info.get('ann_ref') or [ref] * len(boxes)
                    i = int(np.flatnonzero(bad)[0])
                    return 'box_outside', (
                        f'{refs[i]}: box {boxes[i].tolist()} lies outside '
                        f'the {size[0]}x{size[1]} image {path}'
                    )
        if size is not None and self.check_images != 'lazy':
            # Cite each png's own annotation line (mask_refs) when known.
            mask_refs = info.get('mask_refs') or ()
            for i, mask_path in enumerate(info.get('mask_paths') or ()):
                mask_ref = mask_refs[i] if i < len(mask_refs) else ref
                kind, msg = self._check_mask(mask_path, size, mask_ref)
                if kind is not None:
                    return kind, msg
        return None, ''

    def _check_mask(self, mask_path: str, size, ref: str):
        if not os.path.isfile(mask_path):
            return 'missing_mask', f'{ref}: mask not found: {mask_path}'
        try:
            with Image.open(mask_path) as m:
                msize = m.size
        except Exception as err:  # noqa: BLE001
            return 'undecodable_mask', (
                f'{ref}: cannot decode mask {mask_path}: {err}'
            )
        if msize != tuple(size) and not self.allow_mask_size_mismatch:
            return 'mask_size_mismatch', (
                f'{ref}: mask {mask_path} is {msize[0]}x{msize[1]} but the '
                f'image is {size[0]}x{size[1]}'
            )
        return None, ''

    @staticmethod
    def _sample_ref(info: dict) -> str:
        """Where a sample is listed: ``img_ref``, else its first box's."""
        if info.get('img_ref'):
            return info['img_ref']
        refs = info.get('ann_ref')
        if refs:
            return refs[0]
        return str(info.get('img_id', info['img_path']))

    # -- load time ------------------------------------------------------------
    def get_data_info(self, idx: int) -> dict:
        """Data info plus the policy keys the Loc transforms read."""
        info = super().get_data_info(idx)
        info['box_out_of_bounds'] = self.box_out_of_bounds
        info['allow_mask_size_mismatch'] = self.allow_mask_size_mismatch
        return info

    def prepare_data(self, idx: int):
        """Run the pipeline; name the sample in any error it raises."""
        try:
            return super().prepare_data(idx)
        except (SampleLoadError, KeyboardInterrupt):
            raise
        except Exception as err:
            try:
                path = super().get_data_info(idx).get('img_path', '?')
            except Exception:  # noqa: BLE001 - keep the original error
                path = '?'
            hint = ''
            if (
                self.bad_sample_policy == 'skip'
                and self.check_images != 'full'
            ):
                hint = (
                    " (bad_sample_policy='skip' removes only what the "
                    f"check_images='{self.check_images}' pass at init "
                    "finds; check_images='full' decodes every image)"
                )
            raise SampleLoadError(
                f'{type(self).__name__}[{idx}] ({path}): '
                f'{type(err).__name__}: {err}{hint}'
            ) from err


def get_logger() -> MMLogger:
    """The current mmengine logger (for adapters' info messages)."""
    return MMLogger.get_current_instance()
