"""``GAELLE``: the GOLANG/GAELLE self-supervised algorithm
(``golang_ssl.md`` §4.1)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from mmpretrain.models.selfsup import BaseSelfSupervisor

from shared.registry import MODELS

__all__ = ['GAELLE']


@MODELS.register_module()
class GAELLE(BaseSelfSupervisor):
    """SwAV with a local semantic-attention branch (GOLANG / GAELLE).

    ``loss()`` groups the consecutive views of equal size, runs the
    backbone once per concatenated group (2B crops at 224 px, then 6B at
    96 px in the recipe, so BN statistics are per resolution group as in
    the original), hands the list of stage-4 maps to the neck and returns
    the head's loss dict. The multi-crop layout is the loss module's
    ``num_crops``.

    Args:
        backbone (dict): A backbone returning a tuple whose last element is
            the ``(n, C, h, w)`` stage-4 map (``ResNet(out_indices=(3,))``).
        neck (dict): ``GAELLENeck``.
        head (dict): ``GAELLEHead`` (holds ``loss_module``).
        data_preprocessor (dict, optional): ``SelfSupDataPreprocessor``.
        init_cfg (dict, optional): Initialisation config.
    """

    def __init__(
        self,
        backbone: dict,
        neck: dict,
        head: dict,
        data_preprocessor: dict | None = None,
        init_cfg: dict | None = None,
    ) -> None:
        super().__init__(
            backbone=backbone,
            neck=neck,
            head=head,
            data_preprocessor=data_preprocessor,
            init_cfg=init_cfg,
        )

    @property
    def num_crops(self) -> list[int]:
        """Views per resolution group, e.g. ``[2, 6]``."""
        return [int(n) for n in self.head.loss_module.num_crops]

    def _check_views(self, inputs) -> tuple[int, list[int]]:
        """Validate the multi-crop list; return B and the group sizes."""
        num_crops = self.num_crops
        if not isinstance(inputs, (list, tuple)):
            raise ValueError(
                'GAELLE.loss expects a list of views (the MultiView '
                f'pipeline), got {type(inputs).__name__}'
            )
        if len(inputs) != sum(num_crops):
            raise ValueError(
                f'GAELLE.loss got {len(inputs)} views, but num_crops='
                f'{num_crops} needs {sum(num_crops)}'
            )
        sizes = [int(x.shape[0]) for x in inputs]
        if len(set(sizes)) != 1:
            raise ValueError(
                f'GAELLE.loss: every view must have the same batch size, got '
                f'{sizes}'
            )
        res = [tuple(x.shape[-2:]) for x in inputs]
        groups: list[int] = []
        for i, r in enumerate(res):
            if i > 0 and r == res[i - 1]:
                groups[-1] += 1
            else:
                groups.append(1)
        if groups != num_crops:
            raise ValueError(
                f'GAELLE.loss: the views form groups of equal size {groups} '
                f'(resolutions {res}), expected num_crops={num_crops}: the '
                'global (largest) crops must come first, one group per '
                'resolution'
            )
        first = res[0][0] * res[0][1]
        if any(h * w > first for h, w in res):
            raise ValueError(
                f'GAELLE.loss: the first view group {res[0]} must have the '
                f'largest resolution, got resolutions {res}'
            )
        return sizes[0], groups

    def loss(self, inputs: list[torch.Tensor], data_samples=None, **kwargs):
        """Multi-crop forward and the GAELLE loss.

        Args:
            inputs (list[Tensor]): ``sum(num_crops)`` views
                ``(B, 3, h_v, w_v)``, global crops first.
            data_samples: Unused (self-supervised).

        Returns:
            dict: ``loss`` and the detached components of the head.

        Raises:
            ValueError: A non-list input, a wrong number of views, unequal
                batch sizes, groups other than ``num_crops`` or a first
                group that is not the largest, or a first-group map with
                fewer than 2 positions.
        """
        batch_size, groups = self._check_views(inputs)
        maps = []
        start = 0
        for size in groups:
            feats = self.backbone(
                torch.cat(list(inputs[start : start + size]))
            )
            maps.append(feats[-1] if isinstance(feats, Sequence) else feats)
            start += size
        positions = maps[0].shape[-2] * maps[0].shape[-1]
        if positions < 2:
            raise ValueError(
                'GAELLE.loss: the first-group feature map has '
                f'{tuple(maps[0].shape[-2:])} = {positions} position(s); the '
                'local attention needs at least 2 (use larger global crops)'
            )
        neck_out = self.neck(maps, batch_size=batch_size, num_crops=groups)
        return self.head.loss(neck_out)

    def forward(self, inputs, data_samples=None, mode: str = 'tensor'):
        """``'tensor'`` (backbone features), ``'loss'`` or ``'predict'``
        (which raises :class:`NotImplementedError`)."""
        if mode == 'predict':
            return self.predict(inputs, data_samples)
        return super().forward(inputs, data_samples, mode=mode)

    def predict(self, *args, **kwargs):
        """Not available: evaluate with the linear probe configs."""
        raise NotImplementedError(
            'GAELLE is a pre-training algorithm without a predict mode: '
            'export the backbone with tools/model_converters/'
            'golang_to_backbone.py and run configs/golang_ssl/benchmarks/'
            'linear-probe_golang-resnet50_*.py'
        )
