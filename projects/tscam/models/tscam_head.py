"""``TSCAMHead``: semantic re-allocation head and coupling (§3.2–3.4)."""

from __future__ import annotations

import torch
from mmpretrain.models.heads import ClsHead
from mmpretrain.structures import DataSample
from torch import nn

from shared.models.loc_outputs import check_gt_labels, pack_loc_samples
from shared.registry import MODELS

__all__ = ['CONV_INITS', 'LOC_MAP_TYPES', 'TSCAMHead']

#: Initialisations of the 3x3 conv (DeiT: PyTorch's; Conformer: kaiming).
CONV_INITS = ('default', 'kaiming')

#: ``'coupled'`` m*⊙S_c (the paper); ``'attention'`` m* for every class;
#: ``'semantic'`` S_c (the last two for ablation only).
LOC_MAP_TYPES = ('coupled', 'attention', 'semantic')


@MODELS.register_module()
class TSCAMHead(ClsHead):
    """3×3 conv to class maps S, logits by their spatial mean.

    ``S = conv(feat_map)`` (B, C, h, w) with one ``Conv2d(D, C, 3, 1, 1)``
    at PyTorch's default initialisation; ``logits = mean_{h,w} S`` (plus
    ``feats[2]``, the logits of a backbone's own classifier branch, when
    the backbone returns one: Conformer's CNN head). In predict mode the
    localization map of class c is ``m* ⊙ S_c``.

    Args:
        num_classes (int): C.
        in_channels (int): D, the backbone's embedding width.
        loc_map (str): Map written to ``loc_maps``, one of
            :data:`LOC_MAP_TYPES`.
        loss (dict): Classification loss (plain cross-entropy upstream).
        topk (tuple[int]): Accuracy top-k (used with ``cal_acc``).
        cal_acc (bool): Log training accuracy.
        conv_init (str): ``'default'``: PyTorch's Conv2d initialisation
            (TS-CAM DeiT: upstream's ``_init_weights`` call on the conv
            does nothing); ``'kaiming'``: kaiming-normal weights (fan_out,
            ReLU) with PyTorch's default bias, as the Conformer's
            ``_init_weights`` gives its ``trans_cls_head`` conv (§3.7).
        init_cfg (dict | None): Keep ``None`` (the conv is initialised at
            construction, as upstream).
    """

    def __init__(
        self,
        num_classes: int,
        in_channels: int,
        loc_map: str = 'coupled',
        loss: dict | None = None,
        topk: int | tuple[int, ...] = (1,),
        cal_acc: bool = False,
        conv_init: str = 'default',
        init_cfg: dict | None = None,
    ) -> None:
        if loss is None:
            loss = dict(type='CrossEntropyLoss', loss_weight=1.0)
        super().__init__(
            loss=loss, topk=topk, cal_acc=cal_acc, init_cfg=init_cfg
        )
        if int(num_classes) < 1:
            raise ValueError(
                f'TSCAMHead: num_classes must be >= 1, got {num_classes}'
            )
        if int(in_channels) < 1:
            raise ValueError(
                f'TSCAMHead: in_channels must be >= 1, got {in_channels}'
            )
        if loc_map not in LOC_MAP_TYPES:
            raise ValueError(
                f'TSCAMHead: loc_map must be one of {LOC_MAP_TYPES}, got '
                f'{loc_map!r}'
            )
        self.num_classes = int(num_classes)
        self.in_channels = int(in_channels)
        self.loc_map = loc_map
        if conv_init not in CONV_INITS:
            raise ValueError(
                f'TSCAMHead: conv_init must be one of {CONV_INITS}, got '
                f'{conv_init!r}'
            )
        self.conv = nn.Conv2d(
            self.in_channels, self.num_classes, 3, 1, 1, bias=True
        )
        if conv_init == 'kaiming':
            nn.init.kaiming_normal_(
                self.conv.weight, mode='fan_out', nonlinearity='relu'
            )

    def semantic_maps(self, feats: tuple) -> torch.Tensor:
        """S (B, C, h, w) from ``feats[0]``, the (B, D, h, w) feature map."""
        feat_map = feats[0]
        if feat_map.dim() != 4 or feat_map.size(1) != self.in_channels:
            raise ValueError(
                f'TSCAMHead: expected a (B, {self.in_channels}, h, w) feature '
                f'map, got {tuple(feat_map.shape)}'
            )
        return self.conv(feat_map)

    @staticmethod
    def _add_branch_logits(logits: torch.Tensor, feats: tuple) -> torch.Tensor:
        # A backbone with a second classifier (Conformer's CNN branch) hands
        # its logits as feats[2]; they add to GAP(S) (upstream issue #20).
        if len(feats) > 2 and feats[2] is not None:
            logits = logits + feats[2].to(logits.dtype)
        return logits

    def forward(self, feats: tuple) -> torch.Tensor:
        """Logits (B, C): the spatial mean of S (+ ``feats[2]`` if given)."""
        return self._add_branch_logits(
            self.semantic_maps(feats).mean(dim=(2, 3)), feats
        )

    def loss(
        self, feats: tuple, data_samples: list[DataSample], **kwargs
    ) -> dict:
        """Cross-entropy of the logits (only ``feats[0]`` is used)."""
        check_gt_labels(data_samples, self.num_classes, 'TSCAMHead')
        return self._get_loss(self(feats), data_samples, **kwargs)

    @staticmethod
    def couple(cls_attn: torch.Tensor, semantic: torch.Tensor) -> torch.Tensor:
        """M = m* ⊙ S: (B, h, w) with (B, K, h, w) -> (B, K, h, w)."""
        return cls_attn.unsqueeze(1) * semantic

    def predict(
        self, feats: tuple, data_samples: list[DataSample] | None = None
    ) -> list[DataSample]:
        """Scores and localization maps under the shared contract.

        Args:
            feats (tuple): ``(feat_map, cls_attn)`` of the backbone, with
                ``cls_attn`` (B, h, w) collected (not ``None``).
            data_samples (list[DataSample] | None): Their ``gt_label`` is
                appended to ``loc_labels``.

        Returns:
            list[DataSample]: With ``pred_score``, ``pred_label``,
            ``loc_labels`` (top-min(5, C), then GT) and raw ``loc_maps``
            (K, h, w) of type ``loc_map``.

        Raises:
            RuntimeError: ``cls_attn`` is missing.
        """
        if len(feats) < 2 or feats[1] is None:
            raise RuntimeError(
                'TSCAMHead.predict needs the class-token attention m*; call '
                'TSCAMClassifier.predict (it collects the attention), not the '
                'head or the backbone directly'
            )
        cls_attn = feats[1].detach().float()
        with torch.no_grad():
            semantic = self.semantic_maps(feats).float()
        logits = self._add_branch_logits(semantic.mean(dim=(2, 3)), feats)

        def class_maps(i: int, labels: torch.Tensor) -> torch.Tensor:
            if self.loc_map == 'attention':
                return cls_attn[i].repeat(len(labels), 1, 1)
            maps = semantic[i, labels]
            if self.loc_map == 'coupled':
                maps = cls_attn[i] * maps
            return maps

        return pack_loc_samples(logits, data_samples, class_maps, 'TSCAMHead')
