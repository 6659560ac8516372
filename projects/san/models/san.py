"""SAN backbone (``san.md`` §2.2): the self-attention networks SAN10/15/19.

Zhao, Jia, Koltun, "Exploring Self-attention for Image Recognition"
(CVPR 2020), upstream ``hszhao/SAN`` ``model/san.py``. Five stages of
pre-activation residual blocks whose spatial mixing is a :class:`SAM`;
stages are separated by 2×2 max-pools and 1×1 transition convs. Keys are
upstream's, so converted upstream checkpoints load strictly.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.utils.checkpoint as cp
from mmpretrain.models.backbones.base_backbone import BaseBackbone
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from shared.registry import MODELS

from .sam import SA_TYPES, SAM

__all__ = ['SAN', 'SANBlock', 'SAN_LAYERS', 'SAN_WIDTHS']

#: Blocks per stage of the paper's networks (``layers=SAN_LAYERS[10]``).
SAN_LAYERS = {
    10: (2, 1, 2, 4, 1),
    15: (3, 2, 3, 5, 2),
    19: (3, 3, 4, 6, 3),
}
#: Stage widths; stage s runs at 1/2^(s+1) of the input resolution.
SAN_WIDTHS = (64, 256, 512, 1024, 2048)
STEM_WIDTH = 64
NUM_STAGES = 5


class SANBlock(nn.Module):
    """Pre-activation SAN residual block (upstream ``Bottleneck``).

    ``out = x + conv(relu(bn2(sam(relu(bn1(x))))))``, no ReLU after the
    add; ``conv`` is a 1×1 C/4→C conv with bias.

    Args:
        sa_type (str): 'pairwise' or 'patchwise'.
        channels (int): Block width C, a multiple of 32.
        kernel_size (int): SAM footprint k, odd.
        with_cp (bool): Recompute the block in backward
            (``torch.utils.checkpoint``) to save activation memory. In
            train mode the recomputation updates the BN running statistics
            a second time, as in mmpretrain's ResNet.

    Shapes:
        (N, C, H, W) -> (N, C, H, W).
    """

    def __init__(
        self,
        sa_type: str,
        channels: int,
        kernel_size: int = 7,
        with_cp: bool = False,
    ) -> None:
        super().__init__()
        self.with_cp = with_cp
        self.sam = SAM(sa_type, channels, kernel_size)
        mid = self.sam.mid_channels
        self.bn1 = nn.BatchNorm2d(channels)
        self.bn2 = nn.BatchNorm2d(mid)
        self.conv = nn.Conv2d(mid, channels, kernel_size=1)
        self.relu = nn.ReLU(inplace=True)

    def _inner_forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(x))
        out = self.relu(self.bn2(self.sam(out)))
        out = self.conv(out)
        return out + x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.with_cp and x.requires_grad:
            return cp.checkpoint(self._inner_forward, x, use_reentrant=False)
        return self._inner_forward(x)


@MODELS.register_module()
class SAN(BaseBackbone):
    """Self-attention network SAN10/15/19 (pairwise or patchwise).

    Stem ``conv_in`` (1×1 3→64, no bias) → ``bn_in`` → ReLU; then for
    stage s = 0..4: ``pool`` (2×2/2 max-pool) → ``conv{s}`` (1×1, no bias,
    to width 64/256/512/1024/2048) → ``layer{s}`` (``layers[s]``
    :class:`SANBlock` of footprint ``kernels[s]``) → ``bn{s}`` → ReLU.
    A 224² input gives stage maps 112², 56², 28², 14², 7².

    Weights keep PyTorch's default initialisation (upstream calls no
    init): kaiming-uniform (a=√5) with uniform bias for convs, BN 1/0.

    Args:
        sa_type (str): 'pairwise' or 'patchwise' (upstream YAML's 0 / 1
            are refused).
        layers (Sequence[int]): Blocks per stage, 5 values; SAN10/15/19
            are :data:`SAN_LAYERS`.
        kernels (Sequence[int]): Odd SAM footprint per stage, 5 values.
        in_channels (int): Input image channels.
        out_indices (Sequence[int]): Stages (0..4, negative from the end)
            whose outputs (after ``bn{s}`` + ReLU) are returned.
        frozen_stages (int): -1 freezes nothing; 0 freezes the stem
            (``conv_in``, ``bn_in``); s >= 1 also freezes stages 0..s-1
            (parameters stop gradients, BN layers stay in eval mode).
        norm_eval (bool): Keep every BN layer in eval mode while training.
        with_cp (bool): Checkpoint every block (activation memory for
            compute; upstream issue #1).
        init_cfg (dict | list[dict], optional): mmengine init config.

    Raises:
        ValueError: Bad ``sa_type``, ``layers``/``kernels`` not of length
            5, a negative block count, an even kernel, bad ``out_indices``
            or ``frozen_stages``; a stage width not divisible by 32 (from
            :class:`SAM`).
    """

    def __init__(
        self,
        sa_type: str,
        layers: Sequence[int],
        kernels: Sequence[int] = (3, 7, 7, 7, 7),
        in_channels: int = 3,
        out_indices: Sequence[int] = (4,),
        frozen_stages: int = -1,
        norm_eval: bool = False,
        with_cp: bool = False,
        init_cfg: dict | list[dict] | None = None,
    ) -> None:
        super().__init__(init_cfg=init_cfg)
        if not isinstance(sa_type, str) or sa_type not in SA_TYPES:
            raise ValueError(
                f'SAN: sa_type must be one of {SA_TYPES}, got {sa_type!r} '
                '(upstream 0 = pairwise, 1 = patchwise)'
            )
        layers = tuple(layers)
        kernels = tuple(kernels)
        if len(layers) != NUM_STAGES:
            raise ValueError(
                f'SAN: layers must have {NUM_STAGES} entries (one per '
                f'stage), got {layers}'
            )
        if len(kernels) != NUM_STAGES:
            raise ValueError(
                f'SAN: kernels must have {NUM_STAGES} entries (one per '
                f'stage), got {kernels}'
            )
        if any(n < 0 for n in layers):
            raise ValueError(f'SAN: block counts must be >= 0, got {layers}')
        for stage, k in enumerate(kernels):
            if k < 1 or k % 2 == 0:
                raise ValueError(
                    f'SAN: kernels[{stage}] must be odd and positive, got '
                    f'{k} (kernels={kernels})'
                )
        if isinstance(out_indices, int):
            out_indices = (out_indices,)
        norm_indices = []
        for index in out_indices:
            if not -NUM_STAGES <= index < NUM_STAGES:
                raise ValueError(
                    f'SAN: out_indices entries must be in '
                    f'[-{NUM_STAGES}, {NUM_STAGES - 1}], got {out_indices}'
                )
            norm_indices.append(index % NUM_STAGES)
        if len(set(norm_indices)) != len(norm_indices) or not norm_indices:
            raise ValueError(
                f'SAN: out_indices must be non-empty and distinct, got '
                f'{out_indices}'
            )
        if not -1 <= frozen_stages <= NUM_STAGES:
            raise ValueError(
                f'SAN: frozen_stages must be in [-1, {NUM_STAGES}], got '
                f'{frozen_stages}'
            )
        self.sa_type = sa_type
        self.layers = layers
        self.kernels = kernels
        self.in_channels = in_channels
        self.out_indices = tuple(sorted(norm_indices))
        self.frozen_stages = frozen_stages
        self.norm_eval = norm_eval
        self.with_cp = with_cp
        # Reflect padding of stage s needs a map side > p_s.
        self.paddings = tuple(k // 2 for k in kernels)  # p at d = 1

        self.conv_in = nn.Conv2d(in_channels, STEM_WIDTH, 1, bias=False)
        self.bn_in = nn.BatchNorm2d(STEM_WIDTH)
        in_width = STEM_WIDTH
        for stage, width in enumerate(SAN_WIDTHS):
            blocks = [
                SANBlock(sa_type, width, kernels[stage], with_cp)
                for _ in range(layers[stage])
            ]
            self.add_module(
                f'conv{stage}', nn.Conv2d(in_width, width, 1, bias=False)
            )
            self.add_module(f'layer{stage}', nn.Sequential(*blocks))
            self.add_module(f'bn{stage}', nn.BatchNorm2d(width))
            in_width = width
        self.relu = nn.ReLU(inplace=True)
        self.pool = nn.MaxPool2d(kernel_size=2, stride=2)
        self._freeze_stages()

    def min_input_size(self) -> int:
        """Smallest input side every stage accepts.

        Stage s sees ⌊side/2^(s+1)⌋ and needs it > p_s, so the side must be
        at least (p_s+1)·2^(s+1); 128 for the default kernels.
        """
        return max(
            (pad + 1) * 2 ** (stage + 1)
            for stage, pad in enumerate(self.paddings)
        )

    def _check_input(self, x: torch.Tensor) -> None:
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(
                f'SAN: expected input (N, {self.in_channels}, H, W), got '
                f'{tuple(x.shape)}'
            )
        h, w = x.shape[-2:]
        for stage, pad in enumerate(self.paddings):
            scale = 2 ** (stage + 1)
            side = min(h // scale, w // scale)
            if side <= pad:
                raise ValueError(
                    f'SAN: input {h}x{w} is too small: stage {stage} '
                    f'(kernel {self.kernels[stage]}, reflect padding {pad}) '
                    f'would see a {h // scale}x{w // scale} map but needs '
                    f'sides > {pad}, i.e. an input of at least '
                    f'{(pad + 1) * scale}x{(pad + 1) * scale}; with '
                    f'kernels={self.kernels} the minimum input is '
                    f'{self.min_input_size()}x{self.min_input_size()}'
                )

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Run the stem and the five stages.

        Args:
            x (torch.Tensor): Images (N, in_channels, H, W); both sides at
                least :meth:`min_input_size` (128 with default kernels).

        Returns:
            tuple[torch.Tensor, ...]: One map per ``out_indices`` entry, in
            stage order; stage s is (N, SAN_WIDTHS[s], H/2^(s+1),
            W/2^(s+1)) (floored).

        Raises:
            ValueError: Wrong input shape, or an input too small for some
                stage (checked before any compute; names the stage and the
                minimum input).
        """
        self._check_input(x)
        x = self.relu(self.bn_in(self.conv_in(x)))
        outs = []
        for stage in range(NUM_STAGES):
            x = self.pool(x)
            x = getattr(self, f'conv{stage}')(x)
            x = getattr(self, f'layer{stage}')(x)
            x = self.relu(getattr(self, f'bn{stage}')(x))
            if stage in self.out_indices:
                outs.append(x)
        return tuple(outs)

    def _frozen_modules(self) -> list[nn.Module]:
        modules: list[nn.Module] = []
        if self.frozen_stages >= 0:
            modules += [self.conv_in, self.bn_in]
        for stage in range(self.frozen_stages):
            modules += [
                getattr(self, f'conv{stage}'),
                getattr(self, f'layer{stage}'),
                getattr(self, f'bn{stage}'),
            ]
        return modules

    def _freeze_stages(self) -> None:
        for module in self._frozen_modules():
            module.eval()
            for param in module.parameters():
                param.requires_grad = False

    def train(self, mode: bool = True) -> SAN:
        """Set train mode, keeping frozen stages (and, with ``norm_eval``,
        every BN layer) in eval mode."""
        super().train(mode)
        self._freeze_stages()
        if mode and self.norm_eval:
            for module in self.modules():
                if isinstance(module, _BatchNorm):
                    module.eval()
        return self
