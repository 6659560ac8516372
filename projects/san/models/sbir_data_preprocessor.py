"""``SANSBIRDataPreprocessor``: per-modality normalisation of SBIR batches."""

from __future__ import annotations

from collections.abc import Sequence
from numbers import Number

import torch
from mmengine.model import BaseDataPreprocessor

from shared.registry import MODELS

__all__ = ['SANSBIRDataPreprocessor', 'MODALITIES', 'batch_modality']

#: The two modalities of SBIR; view 0 of a training sample is a sketch and
#: every later view a photo.
MODALITIES = ('sketch', 'photo')

_IMAGENET_MEAN = (123.675, 116.28, 103.53)
_IMAGENET_STD = (58.395, 57.12, 57.375)


def batch_modality(data_samples, default: str = 'sketch') -> str:
    """The modality shared by a batch's data samples.

    Reads each sample's ``metainfo['modality']`` (missing → ``default``).

    Args:
        data_samples (Sequence | None): Data samples of the batch.
        default (str): Modality of samples without the key.

    Returns:
        str: 'sketch' or 'photo'.

    Raises:
        ValueError: The samples disagree, or a value is not a modality.
    """
    found = {
        getattr(s, 'metainfo', {}).get('modality', default)
        for s in (data_samples or ())
    } or {default}
    if len(found) > 1:
        raise ValueError(
            'all data samples of a batch must have one modality, got '
            f'{sorted(map(str, found))}'
        )
    modality = found.pop()
    if modality not in MODALITIES:
        raise ValueError(
            f'modality must be one of {list(MODALITIES)}, got {modality!r}'
        )
    return modality


@MODELS.register_module()
class SANSBIRDataPreprocessor(BaseDataPreprocessor):
    """Normalise sketch and photo views with their own statistics.

    Accepted ``inputs`` (uint8 or float, channels first):

    - training (``PackPairInputs`` + ``pseudo_collate``): a list of views,
      each a list of (3, H, W) tensors or a stacked (B, 3, H, W) tensor;
      view 0 is normalised as a sketch, views 1.. as photos; the result is
      a list of float32 (B, 3, H, W) tensors;
    - evaluation (``PackInputs``): a list of (3, H, W) tensors or a
      (B, 3, H, W) tensor, normalised with the modality of the data
      samples' ``metainfo['modality']`` (default 'sketch'); the result is
      one float32 (B, 3, H, W) tensor.

    Per view: move to the device, stack, flip BGR→RGB (``to_rgb``), convert
    to float32 and compute (x − mean) / std per channel (pixel units).

    Args:
        mean (Sequence[Number]): Default per-channel mean (RGB order when
            ``to_rgb``). Defaults to ImageNet's.
        std (Sequence[Number]): Default per-channel std, > 0. Defaults to
            ImageNet's.
        to_rgb (bool): Flip the channel order (packed images are BGR).
            Defaults to True.
        sketch_mean, sketch_std (Sequence[Number] | None): Sketch
            statistics; None uses ``mean`` / ``std``.
        photo_mean, photo_std (Sequence[Number] | None): Photo statistics;
            None uses ``mean`` / ``std``.

    Raises:
        ValueError: A statistic without 3 values or a non-positive std.
    """

    def __init__(
        self,
        mean: Sequence[Number] = _IMAGENET_MEAN,
        std: Sequence[Number] = _IMAGENET_STD,
        to_rgb: bool = True,
        sketch_mean: Sequence[Number] | None = None,
        sketch_std: Sequence[Number] | None = None,
        photo_mean: Sequence[Number] | None = None,
        photo_std: Sequence[Number] | None = None,
    ) -> None:
        super().__init__()
        self.to_rgb = bool(to_rgb)
        stats = dict(
            sketch_mean=mean if sketch_mean is None else sketch_mean,
            sketch_std=std if sketch_std is None else sketch_std,
            photo_mean=mean if photo_mean is None else photo_mean,
            photo_std=std if photo_std is None else photo_std,
        )
        for name, values in stats.items():
            values = [float(v) for v in values]
            if len(values) != 3:
                raise ValueError(
                    f'SANSBIRDataPreprocessor: {name} needs 3 values (one '
                    f'per channel), got {values}'
                )
            if name.endswith('std') and not all(v > 0 for v in values):
                raise ValueError(
                    f'SANSBIRDataPreprocessor: {name} must be > 0, got '
                    f'{values}'
                )
            # Not persistent: the model's state_dict keeps the fork's keys.
            self.register_buffer(
                name, torch.tensor(values).view(3, 1, 1), persistent=False
            )

    @staticmethod
    def _is_multi_view(inputs) -> bool:
        if isinstance(inputs, torch.Tensor) or len(inputs) == 0:
            return False
        first = inputs[0]
        if isinstance(first, torch.Tensor):
            return first.dim() == 4
        return isinstance(first, (list, tuple))

    def _normalise(self, view, modality: str) -> torch.Tensor:
        if not isinstance(view, torch.Tensor):
            if len(view) == 0:
                raise ValueError('SANSBIRDataPreprocessor: empty batch')
            shapes = {tuple(t.shape) for t in view}
            if len(shapes) > 1:
                raise ValueError(
                    'SANSBIRDataPreprocessor: all images of a view must '
                    f'have one shape (no padding), got {sorted(shapes)}'
                )
            view = torch.stack(list(view))
        if view.dim() != 4 or view.shape[1] != 3:
            raise ValueError(
                'SANSBIRDataPreprocessor: expected (B, 3, H, W) images, got '
                f'shape {tuple(view.shape)}'
            )
        if self.to_rgb:
            view = view.flip(1)
        mean = getattr(self, f'{modality}_mean')
        std = getattr(self, f'{modality}_std')
        return (view.float() - mean) / std

    def forward(self, data: dict, training: bool = False) -> dict:
        """Stack and normalise a batch.

        Args:
            data (dict): ``inputs`` (see the class docstring) and optionally
                ``data_samples``.
            training (bool): Unused (no batch augmentation).

        Returns:
            dict: ``inputs`` (a float32 (B, 3, H, W) tensor, or a list of
            them for multi-view batches) and ``data_samples`` on the device.

        Raises:
            ValueError: Wrong rank or channel count, mixed shapes, views of
                unequal batch size, or data samples of mixed modality.
        """
        data = self.cast_data(data)
        inputs = data['inputs']
        data_samples = data.get('data_samples', None)
        if self._is_multi_view(inputs):
            out = [
                self._normalise(v, 'sketch' if i == 0 else 'photo')
                for i, v in enumerate(inputs)
            ]
            sizes = [int(v.shape[0]) for v in out]
            if len(set(sizes)) != 1:
                raise ValueError(
                    'SANSBIRDataPreprocessor: every view must have the same '
                    f'batch size, got {sizes}'
                )
        else:
            out = self._normalise(inputs, batch_modality(data_samples))
        return dict(inputs=out, data_samples=data_samples)
