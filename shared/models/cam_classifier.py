"""``CAMClassifier``: the vanilla CAM baseline (Zhou et al., CVPR 2016).

An mmpretrain ``ImageClassifier`` whose head is global average pooling
followed by one linear layer. The class activation map of class k is the
last backbone feature map weighted by the linear weights of class k,
``M_k(x, y) = sum_d w_kd f_d(x, y)``; since pooling is linear,
``mean_{x,y} M_k + b_k`` equals the logit of class k. This is the "CAM"
method of ``clovaai/wsolevaluation``. In predict mode the model follows the
contract of ``evaluation.md`` §2.1.
"""

from __future__ import annotations

import torch
from mmpretrain.models.classifiers import ImageClassifier
from mmpretrain.models.heads import LinearClsHead
from mmpretrain.models.necks import GlobalAveragePooling
from mmpretrain.structures import DataSample
from torch import nn

from shared.registry import MODELS

from .loc_outputs import pack_loc_samples

__all__ = ['CAMClassifier']


@MODELS.register_module()
class CAMClassifier(ImageClassifier):
    """Image classifier that also returns class activation maps.

    The architecture is an ordinary mmpretrain classifier restricted to
    ``neck=GlobalAveragePooling`` (2-D) and a ``LinearClsHead``; the CAMs
    reuse the head's ``fc`` weights, so the model has exactly the
    parameters (and the checkpoints) of the plain ``ImageClassifier``.
    Training (``mode='loss'``) is unchanged.

    In ``mode='predict'`` each returned ``DataSample`` holds:

    - ``pred_score``: (C,) softmax of the logits;
    - ``pred_label``: (1,) the top-1 class of the ranking below;
    - ``loc_labels``: int64 (K,) the top-min(5, C) classes ranked by logit
      (descending, ties by class index), followed by the ground-truth
      class(es) of the input sample if it has ``gt_label`` (duplicates
      allowed);
    - ``loc_maps``: float32 (K, h, w) the CAM of each class of
      ``loc_labels``, un-normalised, at the backbone's native resolution
      (h, w) = input size / output stride (no bias added).

    Args:
        backbone (dict): Backbone config; its last output is the CAM
            feature map (N, D, h, w).
        neck (dict): Must build a ``GlobalAveragePooling`` with ``dim=2``.
        head (dict): Must build a ``LinearClsHead`` (``fc``: D -> C).
        **kwargs: Further ``ImageClassifier`` arguments
            (``data_preprocessor``, ``train_cfg``, ``init_cfg``, ...).

    Raises:
        TypeError: The neck or head does not have the required type.
    """

    #: Tells ``tools/test.py`` and ``vis_cam.py`` that predict mode returns
    #: ``loc_maps`` (``evaluation.md`` §2.1).
    returns_loc_maps = True

    def __init__(self, backbone: dict, neck: dict, head: dict, **kwargs):
        super().__init__(backbone=backbone, neck=neck, head=head, **kwargs)
        name = type(self).__name__
        if not isinstance(self.neck, GlobalAveragePooling) or not isinstance(
            self.neck.gap, nn.AdaptiveAvgPool2d
        ):
            raise TypeError(
                f'{name} needs neck=dict(type="GlobalAveragePooling") (2-D), '
                f'got {type(self.neck).__name__}'
            )
        if not isinstance(self.head, LinearClsHead) or not isinstance(
            getattr(self.head, 'fc', None), nn.Linear
        ):
            raise TypeError(
                f'{name} needs head=dict(type="LinearClsHead"), got '
                f'{type(self.head).__name__}'
            )

    @property
    def num_classes(self) -> int:
        """Number of classes C of the linear head."""
        return int(self.head.fc.out_features)

    def cam_forward(
        self, inputs: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits and the last feature map of a batch.

        Args:
            inputs (torch.Tensor): (N, 3, H, W) pre-processed images.

        Returns:
            tuple[torch.Tensor, torch.Tensor]: logits (N, C) and the
            backbone's last feature map (N, D, h, w).
        """
        feats = self.extract_feat(inputs, stage='backbone')
        fmap = feats[-1]
        if fmap.dim() != 4:
            raise ValueError(
                f'{type(self).__name__}: the backbone must output a (N, D, '
                f'h, w) feature map, got shape {tuple(fmap.shape)}'
            )
        logits = self.head(self.neck(feats))
        return logits, fmap

    def class_activation_maps(
        self, fmap: torch.Tensor, labels: torch.Tensor
    ) -> torch.Tensor:
        """CAMs of the given classes for one image.

        Args:
            fmap (torch.Tensor): (D, h, w) last feature map of one image.
            labels (torch.Tensor): (K,) int64 class indices.

        Returns:
            torch.Tensor: float32 (K, h, w) maps ``w_k . f(x, y)`` (no bias).
        """
        weight = self.head.fc.weight[labels].float()
        return torch.einsum('kd,dhw->khw', weight, fmap.float())

    def predict(
        self,
        inputs: torch.Tensor,
        data_samples: list[DataSample] | None = None,
        **kwargs,
    ) -> list[DataSample]:
        """Predict scores, labels and CAMs (``evaluation.md`` §2.1).

        Args:
            inputs (torch.Tensor): (N, 3, H, W) pre-processed images.
            data_samples (list[DataSample], optional): Annotations; their
                ``gt_label`` (if any) is appended to ``loc_labels``.
            **kwargs: Unused (accepted for API compatibility).

        Returns:
            list[DataSample]: The input samples (or new ones) with
            ``pred_score``, ``pred_label``, ``loc_labels``, ``loc_maps``.

        Raises:
            ValueError: A ``gt_label`` is outside [0, C).
            FloatingPointError: NaN or inf in the logits or the CAMs.
        """
        logits, fmap = self.cam_forward(inputs)
        return pack_loc_samples(
            logits,
            data_samples,
            lambda i, labels: self.class_activation_maps(fmap[i], labels),
            type(self).__name__,
        )
