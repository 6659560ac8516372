"""``SSTDataPreprocessor``: single- and multi-view image batches (§6.1)."""

from __future__ import annotations

from collections.abc import Sequence
from numbers import Number

import torch
from mmpretrain.models.utils import ClsDataPreprocessor

from shared.registry import MODELS

__all__ = ['SSTDataPreprocessor']


@MODELS.register_module()
class SSTDataPreprocessor(ClsDataPreprocessor):
    """Normalise single-view (training) or multi-view (test) image batches.

    Training pipelines pack one image per sample, ``(3, H, W)``; the test
    pipeline (``SSTTenCropWithLocView`` + ``SSTPackMultiViewInputs``) packs
    ``(V, 3, H, W)`` views per sample, the last being the localisation
    view. Both collate formats are accepted: a list of per-sample tensors
    (``pseudo_collate``) or an already stacked tensor (``default_collate``).

    Steps: move to the device, stack to ``(B, 3, H, W)`` or
    ``(B, V, 3, H, W)``, check the view count, flip BGR→RGB on the channel
    axis (``to_rgb``), convert to float32 and normalise with ``mean``/``std``
    (per channel, broadcast over views). The data samples are moved to the
    device. No padding and no batch augmentation: every image (view) of a
    batch must have the same size.

    Args:
        mean (Sequence[Number] | None): Per-channel mean (R, G, B order when
            ``to_rgb``), in pixel units. ``None`` skips normalisation.
        std (Sequence[Number] | None): Per-channel std, > 0. Required with
            ``mean``.
        to_rgb (bool): Flip the channel order (packed images are BGR).
            Defaults to False.
        num_views (int | None): Expected V of multi-view (5-D) batches, e.g.
            11 for ten crops plus the localisation view. ``None`` accepts any
            V. Single-view (4-D) batches are not checked. Independently, a
            multi-view batch whose samples carry ``num_views`` metainfo (set
            by ``SSTPackMultiViewInputs``) must match it.

    Raises:
        ValueError: ``mean``/``std`` are not three values, ``std`` is not
            positive, only one of them is given, or ``num_views`` < 1.
    """

    def __init__(
        self,
        mean: Sequence[Number] | None = None,
        std: Sequence[Number] | None = None,
        to_rgb: bool = False,
        num_views: int | None = None,
    ) -> None:
        if (mean is None) != (std is None):
            raise ValueError(
                'SSTDataPreprocessor: give both mean and std or neither, got '
                f'mean={mean} and std={std}'
            )
        if mean is not None:
            if len(mean) != 3 or len(std) != 3:
                raise ValueError(
                    'SSTDataPreprocessor: mean and std need 3 values (one '
                    f'per channel), got mean={list(mean)} and '
                    f'std={list(std)}'
                )
            if not all(float(s) > 0 for s in std):
                raise ValueError(
                    f'SSTDataPreprocessor: std must be > 0, got {list(std)}'
                )
        if num_views is not None and int(num_views) < 1:
            raise ValueError(
                f'SSTDataPreprocessor: num_views must be >= 1 or None, got '
                f'{num_views}'
            )
        super().__init__(mean=mean, std=std, to_rgb=to_rgb)
        self.num_views = None if num_views is None else int(num_views)

    @staticmethod
    def _stack(inputs: torch.Tensor | Sequence[torch.Tensor]) -> torch.Tensor:
        if isinstance(inputs, torch.Tensor):
            return inputs
        if len(inputs) == 0:
            raise ValueError('SSTDataPreprocessor: empty batch')
        shapes = {tuple(t.shape) for t in inputs}
        if len(shapes) > 1:
            raise ValueError(
                'SSTDataPreprocessor: all images (views) of a batch must '
                f'have one shape (no padding), got {sorted(shapes)}'
            )
        return torch.stack(list(inputs))

    def _check_views(self, batch: torch.Tensor, data_samples) -> None:
        views = batch.size(1)
        if self.num_views is not None and views != self.num_views:
            raise ValueError(
                f'SSTDataPreprocessor: the batch has V={views} views per '
                f'image but num_views={self.num_views} is configured; make '
                'the test pipeline (SSTTenCropWithLocView tencrop/cls_views) '
                'and the data preprocessor agree'
            )
        for pos, sample in enumerate(data_samples or ()):
            expected = getattr(sample, 'metainfo', {}).get('num_views')
            if expected is not None and int(expected) != views:
                raise ValueError(
                    f'SSTDataPreprocessor: sample at batch position {pos} '
                    f'was packed with num_views={expected} but the batch has '
                    f'V={views} views per image'
                )

    def forward(self, data: dict, training: bool = False) -> dict:
        """Stack, check and normalise a batch.

        Args:
            data (dict): ``inputs`` (a list of (3, H, W) or (V, 3, H, W)
                tensors, or the stacked batch; typically uint8) and
                optionally ``data_samples``.
            training (bool): Unused (no batch augmentation).

        Returns:
            dict: ``inputs`` float32 (B, 3, H, W) or (B, V, 3, H, W) and the
            ``data_samples`` on the device.

        Raises:
            ValueError: Wrong rank or channel count, mixed shapes, or a view
                count that differs from ``num_views`` or from the samples'
                ``num_views`` metainfo.
        """
        batch = self._stack(self.cast_data(data['inputs']))
        data_samples = self.cast_data(data.get('data_samples', None))
        if batch.dim() not in (4, 5) or batch.size(-3) != 3:
            raise ValueError(
                'SSTDataPreprocessor: expected (B, 3, H, W) or (B, V, 3, H, '
                f'W) images, got shape {tuple(batch.shape)}'
            )
        if data_samples is not None and len(data_samples) != batch.size(0):
            raise ValueError(
                f'SSTDataPreprocessor: {len(data_samples)} data samples for '
                f'{batch.size(0)} images'
            )
        if batch.dim() == 5:
            self._check_views(batch, data_samples)
        if self.to_rgb:
            batch = batch.flip(-3)
        batch = batch.float()
        if self._enable_normalize:
            batch = (batch - self.mean) / self.std
        return {'inputs': batch, 'data_samples': data_samples}
