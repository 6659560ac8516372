"""Shared builders and the reference attention path of the TS-CAM tests."""

from __future__ import annotations

import torch
from mmpretrain.structures import DataSample

import projects.tscam  # noqa: F401  (registers the TS-CAM models)
from projects.tscam.models import TSCAMClassifier, TSCAMDeiT
from shared.registry import MODELS

#: The CPU demo's micro DeiT (configs/demo/tscam_deit-micro_*.py).
MICRO = dict(embed_dims=64, depth=2, num_heads=2)
WIDTHS = dict(tiny=192, small=384, base=768)


def classifier_cfg(
    arch: str | dict = 'tiny',
    num_classes: int = 10,
    img_size: int = 224,
    **backbone_kwargs,
) -> dict:
    """A ``TSCAMClassifier`` config as in ``configs/tscam`` (no weights)."""
    width = arch['embed_dims'] if isinstance(arch, dict) else WIDTHS[arch]
    return dict(
        type='TSCAMClassifier',
        data_preprocessor=dict(
            num_classes=num_classes,
            mean=[123.675, 116.28, 103.53],
            std=[58.395, 57.12, 57.375],
            to_rgb=True,
        ),
        backbone=dict(
            type='TSCAMDeiT', arch=arch, img_size=img_size, **backbone_kwargs
        ),
        head=dict(
            type='TSCAMHead',
            num_classes=num_classes,
            in_channels=width,
            loss=dict(type='CrossEntropyLoss', loss_weight=1.0),
            topk=(1, 5),
        ),
    )


def sharpen(backbone: TSCAMDeiT, scale: float = 8.0) -> None:
    """Scale every ``qkv`` weight so that attention is far from uniform.

    timm's init (trunc-normal 0.02) gives near-uniform attention rows, with
    which a wrong row or a wrong layer would hardly show.
    """
    with torch.no_grad():
        for blk in backbone.vit.blocks:
            blk.attn.qkv.weight.mul_(scale)
            blk.attn.qkv.bias.normal_(0, 0.5)


def build_classifier(
    arch: str | dict = MICRO,
    num_classes: int = 10,
    img_size: int = 224,
    seed: int = 0,
    sharp: bool = True,
    init: bool = True,
    **backbone_kwargs,
) -> TSCAMClassifier:
    """A seeded eval-mode classifier with random weights.

    ``init=False`` skips ``init_weights()`` (a no-op without weights that
    logs every tensor), for the large shape-only builds.
    """
    torch.manual_seed(seed)
    model = MODELS.build(
        classifier_cfg(arch, num_classes, img_size, **backbone_kwargs)
    )
    if init:
        model.init_weights()
    if sharp:
        sharpen(model.backbone)
    return model.eval()


def samples(labels, start: int = 0) -> list[DataSample]:
    """Data samples with ``gt_label`` and ``sample_idx`` start, start+1…"""
    return [
        DataSample(metainfo=dict(sample_idx=start + i)).set_gt_label(int(k))
        for i, k in enumerate(labels)
    ]


def reference_attention(
    backbone: TSCAMDeiT, x: torch.Tensor
) -> list[torch.Tensor]:
    """Full attention probabilities of every block, the reference path.

    Sets ``blk.attn.fused_attn = False`` and hooks the *input* of
    ``blk.attn.attn_drop``, which is the softmax output B×H×N×N (taken
    before dropout), then restores the modules.

    Args:
        backbone (TSCAMDeiT): The backbone (eval mode).
        x (torch.Tensor): (B, 3, S, S) input.

    Returns:
        list[torch.Tensor]: float64 (B, H, N, N) per block, first block
        first.
    """
    probs: list[torch.Tensor] = []
    handles, fused = [], []
    for blk in backbone.vit.blocks:
        fused.append(blk.attn.fused_attn)
        blk.attn.fused_attn = False
        handles.append(
            blk.attn.attn_drop.register_forward_pre_hook(
                lambda module, args: probs.append(args[0].detach().double())
            )
        )
    try:
        with torch.no_grad():
            backbone.vit.forward_features(x)
    finally:
        for handle in handles:
            handle.remove()
        for blk, flag in zip(backbone.vit.blocks, fused):
            blk.attn.fused_attn = flag
    assert len(probs) == len(backbone.vit.blocks)
    return probs


def reference_rows(probs: list[torch.Tensor]) -> list[torch.Tensor]:
    """Head-mean class-token rows, patch columns only: (B, N−1) per block."""
    return [p.mean(dim=1)[:, 0, 1:] for p in probs]
