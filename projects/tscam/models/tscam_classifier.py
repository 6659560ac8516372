"""``TSCAMClassifier``: predict gating of the attention, visualisation maps."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch
from mmengine.logging import print_log
from mmpretrain.models.classifiers import ImageClassifier
from mmpretrain.structures import DataSample

from shared.registry import MODELS

from .tscam_head import TSCAMHead

__all__ = ['TSCAMClassifier']


@MODELS.register_module()
class TSCAMClassifier(ImageClassifier):
    """TS-CAM: an ``ImageClassifier`` whose predict mode returns TS-CAMs.

    The backbone (``TSCAMDeiT`` or ``TSCAMConformer``) returns
    ``(feat_map, cls_attn[, branch_logits])`` and offers
    ``collect_attention()``; the head is a :class:`TSCAMHead`. Loss mode is
    plain cross-entropy on the logits with attention collection off;
    :meth:`predict` turns collection on for its forward pass and returns
    the ``loc_maps``/``loc_labels`` of the shared contract
    (``evaluation.md`` §2.1).

    Args:
        backbone (dict): ``TSCAMDeiT`` / ``TSCAMConformer`` config.
        head (dict): ``TSCAMHead`` config; ``in_channels`` must equal the
            backbone's ``embed_dims``.
        neck (dict | None): Must be ``None`` (the head reads the token map).
        **kwargs: Further ``ImageClassifier`` arguments.

    Raises:
        TypeError: The head is not a ``TSCAMHead``, the backbone cannot
            collect attention, or a neck is given.
        ValueError: ``head.in_channels`` differs from the backbone width,
            or a backbone with its own classifier branch (Conformer) has
            another ``num_classes`` than the head.
    """

    #: Tells ``tools/test.py`` and ``vis_cam.py`` that predict mode returns
    #: ``loc_maps`` (``evaluation.md`` §2.1).
    returns_loc_maps = True

    def __init__(
        self, backbone: dict, head: dict, neck: dict | None = None, **kwargs
    ):
        if neck is not None:
            raise TypeError('TSCAMClassifier takes no neck')
        super().__init__(backbone=backbone, head=head, **kwargs)
        if not isinstance(self.head, TSCAMHead):
            raise TypeError(
                'TSCAMClassifier needs a TSCAMHead, got '
                f'{type(self.head).__name__}'
            )
        if not hasattr(self.backbone, 'collect_attention'):
            raise TypeError(
                'TSCAMClassifier needs a backbone with collect_attention() '
                '(TSCAMDeiT, TSCAMConformer), got '
                f'{type(self.backbone).__name__}'
            )
        branch_classes = getattr(self.backbone, 'num_classes', None)
        if branch_classes is not None and branch_classes != self.num_classes:
            raise ValueError(
                f'TSCAMClassifier: the backbone '
                f'{type(self.backbone).__name__} has num_classes='
                f'{branch_classes} but the head num_classes='
                f'{self.num_classes}'
            )
        width = int(self.backbone.embed_dims)
        if self.head.in_channels != width:
            raise ValueError(
                f'TSCAMClassifier: head.in_channels={self.head.in_channels} '
                f'but the backbone {type(self.backbone).__name__} has '
                f'embed_dims={width}'
            )

    @property
    def num_classes(self) -> int:
        """C."""
        return self.head.num_classes

    def _warn_if_training(self) -> None:
        if self.training:
            print_log(
                'TSCAMClassifier.predict called in training mode: drop-path '
                'is active, so scores and maps are stochastic; call '
                'model.eval() first',
                logger='current',
                level=logging.WARNING,
            )

    def predict(
        self,
        inputs: torch.Tensor,
        data_samples: list[DataSample] | None = None,
        **kwargs,
    ) -> list[DataSample]:
        """Predict scores, labels and coupled maps (``tscam.md`` §2).

        Args:
            inputs (torch.Tensor): (B, 3, S, S) pre-processed images.
            data_samples (list[DataSample] | None): Their ``gt_label`` is
                appended to ``loc_labels``.

        Returns:
            list[DataSample]: ``pred_score``, ``pred_label``,
            ``loc_labels`` and ``loc_maps`` (K, h, w), raw.
        """
        self._warn_if_training()
        with self.backbone.collect_attention():
            feats = self.extract_feat(inputs)
        return self.head.predict(feats, data_samples)

    def extra_maps(
        self,
        inputs: torch.Tensor,
        data_samples: list[DataSample] | None = None,
        target: int | Sequence[int] | None = None,
    ) -> dict[str, torch.Tensor]:
        """Raw per-layer and per-part maps for visualisation (§7).

        Args:
            inputs (torch.Tensor): (B, 3, S, S) pre-processed images.
            data_samples: Unused (accepted for the ``vis_cam.py`` interface).
            target (int | Sequence[int] | None): Class of the semantic and
                coupled maps: one for all images, one per image, or
                ``None`` for each image's top-1 class.

        Returns:
            dict[str, torch.Tensor]: float32 (B, h, w) maps at native
            resolution, un-normalised: ``attn/layer_00`` … (head-mean
            class→patch attention of every block), ``attn/aggregated`` (m*
            as configured), ``attn/rollout``, and for every distinct target
            class c ``semantic/c`` (S_c) and ``tscam/c`` (m* ⊙ S_c).
        """
        self._warn_if_training()
        with torch.no_grad():
            with self.backbone.collect_attention(
                return_layers=True, rollout=True
            ) as collector:
                feats = self.extract_feat(inputs)
            semantic = self.head.semantic_maps(feats).float()
            logits = self.head._add_branch_logits(
                semantic.mean(dim=(2, 3)), feats
            )
        batch, _, height, width = semantic.shape
        cls_attn = feats[1].float()
        maps = {
            f'attn/layer_{i:02d}': row.reshape(batch, height, width)
            for i, row in enumerate(collector.layer_rows)
        }
        maps['attn/aggregated'] = cls_attn
        maps['attn/rollout'] = collector.rollout().reshape(
            batch, height, width
        )
        collector.release()
        if target is None:
            classes = logits.argmax(dim=1).tolist()
        elif isinstance(target, int):
            classes = [target] * batch
        else:
            classes = [int(c) for c in target]
        if len(classes) != batch or not all(
            0 <= c < self.num_classes for c in classes
        ):
            raise ValueError(
                f'TSCAMClassifier.extra_maps: target must give {batch} class '
                f'indices in [0, {self.num_classes}), got {target!r}'
            )
        for c in sorted(set(classes)):
            maps[f'semantic/{c}'] = semantic[:, c]
            maps[f'tscam/{c}'] = self.head.couple(
                cls_attn, semantic[:, c : c + 1]
            )[:, 0]
        return maps
