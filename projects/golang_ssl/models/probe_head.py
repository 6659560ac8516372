"""``GAELLEMultiLabelLinearHead``: the SS-PRL linear-probe head
(``golang_ssl.md`` §7)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from mmengine.model import BaseModule
from mmpretrain.structures import DataSample
from torch import nn

from shared.datasets.utils import multilabel_target
from shared.registry import MODELS

__all__ = ['IGNORE_VALUE', 'GAELLEMultiLabelLinearHead']

#: Target value of an ignored entry (VOC difficult-only classes), as built by
#: :func:`shared.datasets.utils.multilabel_target` (``datasets.md`` §3.2).
IGNORE_VALUE = -1.0


def _describe(sample) -> str:
    return (
        f'sample_idx={sample.get("sample_idx")!r}, '
        f'img_path={sample.get("img_path")!r}'
    )


@MODELS.register_module()
class GAELLEMultiLabelLinearHead(BaseModule):
    """Linear multi-label head of the SS-PRL probe.

    ``fc = Linear(in_channels, num_classes)`` with weight ~ N(0, 0.01²) and
    bias 0.1, set at construction as SS-PRL does (``init_cfg=None`` keeps
    them through :meth:`init_weights`).

    **Loss.** With logits ``s`` (B, C) and targets ``t`` (B, C) in
    ``{1, 0, -1}`` (-1 = ignore), ``loss = Σ_{b,c} [t ≠ -1] ·
    BCEWithLogits(s_bc, t_bc) / B``: summed over classes and samples, then
    divided by the batch size; ignored entries contribute neither loss nor
    gradient. Targets come, per sample, from

    - ``gt_score`` (C,) when present (mmpretrain's one-hot labels, e.g.
      ``ClsDataPreprocessor(to_onehot=True)``), which must hold only 0, 1
      or -1; classes in the metainfo ``gt_label_difficult`` that are not
      positive are then set to -1;
    - otherwise ``gt_label`` (positive indices) and ``gt_label_difficult``
      through :func:`~shared.datasets.utils.multilabel_target`, as
      ``MultiLabelMAP`` does.

    **Prediction.** ``pred_logit`` holds the raw logits (C,) (the mAP is
    computed on them, as SS-PRL computed AP on logits), ``pred_score`` the
    sigmoid scores and ``pred_label`` the classes with score ≥ ``thr``
    (or the ``topk`` best), as in mmpretrain's ``MultiLabelClsHead``.

    Args:
        num_classes (int): C (80 COCO, 20 VOC).
        in_channels (int): Feature width after pooling. Defaults to 2048.
        thr (float, optional): Sigmoid threshold for ``pred_label``.
        topk (int, optional): Predict the ``topk`` best classes instead.
            With neither given, ``thr=0.5`` (mmpretrain's default).
        init_cfg (dict | list[dict], optional): MMEngine init config;
            ``None`` keeps the SS-PRL initialisation.

    Raises:
        ValueError: ``num_classes`` or ``in_channels`` below 1, ``topk``
            outside ``[1, num_classes]``; in :meth:`loss`, a feature width
            other than ``in_channels``, a target width other than
            ``num_classes``, a class index outside ``[0, num_classes)``, a
            target value outside ``{0, 1, -1}`` or a sample without
            targets.
    """

    def __init__(
        self,
        num_classes: int,
        in_channels: int = 2048,
        thr: float | None = None,
        topk: int | None = None,
        init_cfg: dict | list[dict] | None = None,
    ) -> None:
        super().__init__(init_cfg=init_cfg)
        name = type(self).__name__
        for key, value in (
            ('num_classes', num_classes),
            ('in_channels', in_channels),
        ):
            if int(value) < 1:
                raise ValueError(f'{name}: {key} must be >= 1, got {value}')
        if thr is None and topk is None:
            thr = 0.5
        if topk is not None and not 1 <= int(topk) <= int(num_classes):
            raise ValueError(
                f'{name}: topk must be in [1, {num_classes}], got {topk}'
            )
        self.num_classes = int(num_classes)
        self.in_channels = int(in_channels)
        self.thr = thr
        self.topk = topk
        self.fc = nn.Linear(self.in_channels, self.num_classes)
        with torch.no_grad():
            self.fc.weight.normal_(mean=0.0, std=0.01)
            self.fc.bias.fill_(0.1)

    def pre_logits(self, feats: tuple[torch.Tensor] | torch.Tensor):
        """The last stage's pooled features (B, in_channels)."""
        x = feats[-1] if isinstance(feats, (tuple, list)) else feats
        if x.dim() != 2 or x.shape[1] != self.in_channels:
            raise ValueError(
                f'{type(self).__name__}: expected pooled features of shape '
                f'(B, {self.in_channels}), got {tuple(x.shape)}'
            )
        return x

    def forward(self, feats: tuple[torch.Tensor] | torch.Tensor):
        """Logits (B, num_classes)."""
        return self.fc(self.pre_logits(feats))

    def _target(self, sample) -> torch.Tensor:
        """Float (C,) target in {1, 0, -1} of one data sample."""
        name = type(self).__name__
        difficult = sample.get('gt_label_difficult')
        if 'gt_score' in sample:
            target = torch.as_tensor(sample.get('gt_score')).float()
            if target.shape != (self.num_classes,):
                raise ValueError(
                    f'{name}: gt_score has shape {tuple(target.shape)}, '
                    f'expected ({self.num_classes},) ({_describe(sample)})'
                )
            valid = (target == 0) | (target == 1) | (target == IGNORE_VALUE)
            if not bool(valid.all()):
                bad = torch.unique(target[~valid]).tolist()
                raise ValueError(
                    f'{name}: target values must be 0, 1 or {IGNORE_VALUE} '
                    f'(ignore), got {bad} ({_describe(sample)})'
                )
            if difficult is not None:
                ignore = multilabel_target([], difficult, self.num_classes)
                target = torch.where(
                    (ignore == IGNORE_VALUE) & (target != 1),
                    torch.full_like(target, IGNORE_VALUE),
                    target,
                )
            return target
        if 'gt_label' not in sample:
            raise ValueError(
                f'{name}: the sample has neither gt_score nor gt_label '
                f'({_describe(sample)})'
            )
        try:
            return multilabel_target(
                sample.get('gt_label'), difficult, self.num_classes
            )
        except ValueError as exc:
            raise ValueError(f'{name}: {exc} ({_describe(sample)})') from exc

    def targets(self, data_samples: Sequence) -> torch.Tensor:
        """Stacked float targets (B, C) in {1, 0, -1}, on the CPU."""
        return torch.stack([self._target(s) for s in data_samples])

    def loss(self, feats, data_samples: Sequence[DataSample]) -> dict:
        """Masked, batch-normalised BCE-with-logits.

        Args:
            feats (tuple[Tensor]): Pooled features; the last is used,
                (B, in_channels).
            data_samples (Sequence[DataSample]): B samples with targets.

        Returns:
            dict: ``loss``, a scalar.
        """
        logits = self(feats)
        if len(data_samples) != logits.shape[0]:
            raise ValueError(
                f'{type(self).__name__}: {len(data_samples)} data samples '
                f'for a batch of {logits.shape[0]}'
            )
        target = self.targets(data_samples).to(logits.device, logits.dtype)
        keep = target != IGNORE_VALUE
        per_entry = F.binary_cross_entropy_with_logits(
            logits, target.clamp(min=0), reduction='none'
        )
        per_entry = torch.where(keep, per_entry, torch.zeros_like(per_entry))
        return dict(loss=per_entry.sum() / logits.shape[0])

    def predict(
        self, feats, data_samples: Sequence[DataSample] | None = None
    ) -> list[DataSample]:
        """Set ``pred_logit`` (raw), ``pred_score`` (sigmoid), ``pred_label``.

        Args:
            feats (tuple[Tensor]): Pooled features (B, in_channels) last.
            data_samples (Sequence[DataSample], optional): Samples to fill;
                new ones are created when ``None``.

        Returns:
            list[DataSample]: The filled samples.
        """
        logits = self(feats).detach()
        scores = torch.sigmoid(logits)
        if data_samples is None:
            data_samples = [DataSample() for _ in range(logits.shape[0])]
        for sample, logit, score in zip(data_samples, logits, scores):
            if self.thr is not None:
                label = torch.where(score >= self.thr)[0]
            else:
                label = score.topk(self.topk).indices
            sample.set_field(logit, 'pred_logit', dtype=torch.Tensor)
            sample.set_pred_score(score).set_pred_label(label)
        return list(data_samples)
