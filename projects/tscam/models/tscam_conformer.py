"""``TSCAMConformer``: Conformer-S with class-token attention collection.

``tscam.md`` §3.7. The structure and the state-dict key names follow the
official Conformer (Peng et al., ICCV 2021, ``pengzhiliang/Conformer``), so
``conformer_small_patch16.pth`` loads directly. The transformer blocks are
timm ``Block``s (``qkv_bias=True``, LayerNorm eps 1e-6), whose ``attn.qkv``
Linears carry the hooks of :class:`~.attention.ClassTokenAttention`
(§3.5 applies unchanged).

TS-CAM's transformer classifier (``trans_cls_head``, a 3×3 conv over the
14×14 patch tokens) is :class:`~.tscam_head.TSCAMHead`'s ``conv``; the CNN
branch's ``conv_cls_head`` (Linear 1024→C) stays here, and its logits are
the third output, which the head adds to GAP(S) (upstream issue #20).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

import torch
import torch.nn.functional as F
from timm.layers import trunc_normal_
from timm.models.vision_transformer import Block
from torch import nn

from shared.registry import MODELS

from .attention import ClassAttentionBackbone, ClassTokenAttention
from .tscam_deit import check_input_size
from .weights import load_conformer_weights

__all__ = ['ConvBlock', 'ConvTransBlock', 'FCUDown', 'FCUUp', 'TSCAMConformer']

ARCH_SETTINGS = {
    'small': dict(
        embed_dims=384,
        depth=12,
        num_heads=6,
        mlp_ratio=4.0,
        channel_ratio=4,
        base_channels=64,
    ),
}
#: The official ImageNet weight file of each arch.
PRETRAINED_FILES = {'small': 'conformer_small_patch16.pth'}
PATCH_SIZE = 16
IMG_SIZE = 224
#: BN eps of the Conformer's bottlenecks and FCU-up (the stem BN uses 1e-5).
CONV_BN = partial(nn.BatchNorm2d, eps=1e-6)
TRANS_LN = partial(nn.LayerNorm, eps=1e-6)


class ConvBlock(nn.Module):
    """Bottleneck (1×1, 3×3 with stride, 1×1; mid = out/4) of Conformer.

    Args:
        in_channels (int): Input channels.
        out_channels (int): Output channels (a multiple of 4).
        stride (int): Stride of the 3×3 conv (and of the residual conv).
        res_conv (bool): Residual through a strided 1×1 conv + BN instead
            of the identity.
    """

    expansion = 4

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        stride: int = 1,
        res_conv: bool = False,
    ) -> None:
        super().__init__()
        mid = out_channels // self.expansion
        self.conv1 = nn.Conv2d(in_channels, mid, 1, bias=False)
        self.bn1 = CONV_BN(mid)
        self.act1 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(mid, mid, 3, stride, padding=1, bias=False)
        self.bn2 = CONV_BN(mid)
        self.act2 = nn.ReLU(inplace=True)
        self.conv3 = nn.Conv2d(mid, out_channels, 1, bias=False)
        self.bn3 = CONV_BN(out_channels)
        self.act3 = nn.ReLU(inplace=True)
        self.res_conv = res_conv
        if res_conv:
            self.residual_conv = nn.Conv2d(
                in_channels, out_channels, 1, stride, bias=False
            )
            self.residual_bn = CONV_BN(out_channels)

    def forward(
        self, x: torch.Tensor, x_t: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Run the bottleneck.

        Args:
            x (torch.Tensor): (B, in, H, W).
            x_t (torch.Tensor | None): (B, mid, H, W) fusion input (FCU-up
                output), added to the input of the 3×3 conv.

        Returns:
            tuple[torch.Tensor, torch.Tensor]: The block output
            (B, out, H/s, W/s) and x2, the ReLU output of the 3×3 stage
            (B, mid, H/s, W/s).
        """
        residual = x
        out = self.act1(self.bn1(self.conv1(x)))
        if x_t is not None:
            out = out + x_t
        x2 = self.act2(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(x2))
        if self.res_conv:
            residual = self.residual_bn(self.residual_conv(residual))
        return self.act3(out + residual), x2


class FCUDown(nn.Module):
    """Feature coupling, CNN -> tokens: 1×1 conv, avg-pool, LN, GELU.

    Args:
        in_channels (int): CNN channels (the bottleneck's mid width).
        embed_dims (int): Token width D.
        stride (int): Pooling window and stride (CNN map / token grid).
    """

    def __init__(self, in_channels: int, embed_dims: int, stride: int) -> None:
        super().__init__()
        self.stride = stride
        self.conv_project = nn.Conv2d(in_channels, embed_dims, 1, bias=True)
        self.sample_pooling = nn.AvgPool2d(kernel_size=stride, stride=stride)
        self.ln = TRANS_LN(embed_dims)
        self.act = nn.GELU()

    def forward(self, x: torch.Tensor, x_t: torch.Tensor) -> torch.Tensor:
        """(B, c, H, W) map and (B, 1+N, D) tokens -> (B, 1+N, D).

        The class token of ``x_t`` is prepended to the pooled patches.
        """
        x = self.sample_pooling(self.conv_project(x))
        x = self.act(self.ln(x.flatten(2).transpose(1, 2)))
        return torch.cat([x_t[:, :1], x], dim=1)


class FCUUp(nn.Module):
    """Feature coupling, tokens -> CNN: 1×1 conv, BN, ReLU, nearest ×stride.

    Args:
        embed_dims (int): Token width D.
        out_channels (int): CNN channels (the bottleneck's mid width).
        stride (int): Upsampling factor (CNN map / token grid).
    """

    def __init__(
        self, embed_dims: int, out_channels: int, stride: int
    ) -> None:
        super().__init__()
        self.stride = stride
        self.conv_project = nn.Conv2d(embed_dims, out_channels, 1, bias=True)
        self.bn = CONV_BN(out_channels)
        self.act = nn.ReLU()

    def forward(self, x_t: torch.Tensor, grid: int) -> torch.Tensor:
        """(B, 1+grid², D) tokens -> (B, c, grid·s, grid·s); cls dropped."""
        batch, _, dims = x_t.shape
        x = x_t[:, 1:].transpose(1, 2).reshape(batch, dims, grid, grid)
        x = self.act(self.bn(self.conv_project(x)))
        size = grid * self.stride
        return F.interpolate(x, size=(size, size), mode='nearest')


class ConvTransBlock(nn.Module):
    """One CNN bottleneck and one transformer block, coupled by the FCUs.

    Args:
        in_channels (int): CNN input channels.
        out_channels (int): CNN output channels.
        stride (int): Stride of ``cnn_block``.
        res_conv (bool): ``cnn_block`` has a conv residual.
        fcu_stride (int): CNN map side / token grid side (4, 2 or 1).
        embed_dims (int): Token width D.
        num_heads (int): Attention heads.
        mlp_ratio (float): MLP hidden width / D.
        drop_path (float): Stochastic depth of the transformer block.
        last_fusion (bool): ``fusion_block`` has stride 2 and a conv
            residual (the last block: the CNN output becomes 7×7).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        stride: int,
        res_conv: bool,
        fcu_stride: int,
        embed_dims: int,
        num_heads: int,
        mlp_ratio: float,
        drop_path: float,
        last_fusion: bool = False,
    ) -> None:
        super().__init__()
        mid = out_channels // ConvBlock.expansion
        self.fcu_stride = fcu_stride
        self.cnn_block = ConvBlock(in_channels, out_channels, stride, res_conv)
        self.fusion_block = ConvBlock(
            out_channels,
            out_channels,
            stride=2 if last_fusion else 1,
            res_conv=last_fusion,
        )
        self.squeeze_block = FCUDown(mid, embed_dims, fcu_stride)
        self.expand_block = FCUUp(embed_dims, mid, fcu_stride)
        self.trans_block = Block(
            dim=embed_dims,
            num_heads=num_heads,
            mlp_ratio=mlp_ratio,
            qkv_bias=True,
            drop_path=drop_path,
            norm_layer=TRANS_LN,
        )

    def forward(
        self, x: torch.Tensor, x_t: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, in, H, W) map, (B, 1+N, D) tokens -> the next map and tokens."""
        x, x2 = self.cnn_block(x)
        grid = x2.size(-1) // self.fcu_stride
        x_t = self.trans_block(self.squeeze_block(x2, x_t) + x_t)
        x, _ = self.fusion_block(x, self.expand_block(x_t, grid))
        return x, x_t


@MODELS.register_module()
class TSCAMConformer(ClassAttentionBackbone):
    """Conformer-S backbone of TS-CAM (``tscam.md`` §3.7).

    Stem (conv 7×7/2, BN, ReLU, max-pool: 64×56×56), ``conv_1`` and the
    patch conv 4×4/4 to 14×14 tokens with a class token and no positional
    embedding, ``trans_1``, then ``conv_trans_2`` … ``conv_trans_12``
    (CNN 256/512/1024 channels at 56/28/14, last fusion to 7×7).

    Args:
        num_classes (int): C, for ``conv_cls_head`` (the CNN branch's
            Linear 1024→C); must equal the head's ``num_classes``.
        arch (str): Only ``'small'``.
        drop_path_rate (float): Stochastic depth of the last transformer
            block (``linspace(0, rate, 12)``; transformer blocks only).
        attn_layers (str | Sequence[int]): Transformer blocks (0 = ``trans_1``,
            i−1 = ``conv_trans_i``) whose class-token attention forms m*:
            ``'all'``, a list of indices, or ``'rollout'``.
        attn_reduce (str): ``'sum'`` (upstream) or ``'mean'``.
        init_cfg (dict | None): ``dict(type='Pretrained', checkpoint=PATH)``
            loads the local official weights (``PATH=None``: random init).

    Forward returns ``(feat_map, cls_attn, conv_logits)``: the trans-normed
    patch tokens as (B, 384, 14, 14) (token n = 14·row + col), m* (B, 14,
    14) or ``None`` outside :meth:`collect_attention`, and the CNN branch's
    logits (B, C).

    Raises:
        ValueError: ``arch`` is not ``'small'`` or ``num_classes`` < 1.
    """

    def __init__(
        self,
        num_classes: int,
        arch: str = 'small',
        drop_path_rate: float = 0.1,
        attn_layers: str | Sequence[int] = 'all',
        attn_reduce: str = 'sum',
        init_cfg: dict | None = None,
    ) -> None:
        super().__init__(init_cfg=init_cfg)
        if not isinstance(arch, str) or arch not in ARCH_SETTINGS:
            raise ValueError(
                f'TSCAMConformer: unknown arch {arch!r}; choose one of '
                f'{sorted(ARCH_SETTINGS)}'
            )
        if int(num_classes) < 1:
            raise ValueError(
                f'TSCAMConformer: num_classes must be >= 1, got {num_classes}'
            )
        cfg = ARCH_SETTINGS[arch]
        self.arch_name = arch
        self.num_classes = int(num_classes)
        self.embed_dims = dims = cfg['embed_dims']
        self.depth = depth = cfg['depth']
        self.img_size = IMG_SIZE
        self.grid = IMG_SIZE // PATCH_SIZE
        heads, mlp_ratio = cfg['num_heads'], cfg['mlp_ratio']
        channels = [
            cfg['base_channels'] * cfg['channel_ratio'] * 2**s
            for s in range(3)
        ]
        dpr = torch.linspace(0, drop_path_rate, depth, device='cpu').tolist()
        fcu_stride = PATCH_SIZE // 4

        self.cls_token = nn.Parameter(torch.zeros(1, 1, dims))
        self.trans_norm = nn.LayerNorm(dims)
        self.pooling = nn.AdaptiveAvgPool2d(1)
        self.conv_cls_head = nn.Linear(channels[-1], self.num_classes)

        self.conv1 = nn.Conv2d(3, 64, 7, 2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.act1 = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)

        self.conv_1 = ConvBlock(64, channels[0], res_conv=True)
        self.trans_patch_conv = nn.Conv2d(64, dims, fcu_stride, fcu_stride)
        self.trans_1 = Block(
            dim=dims,
            num_heads=heads,
            mlp_ratio=mlp_ratio,
            qkv_bias=True,
            drop_path=dpr[0],
            norm_layer=TRANS_LN,
        )
        # Stages of depth/3 blocks each; the first block of stages 2 and 3
        # halves the CNN map, while the token grid stays 14×14.
        per_stage = depth // 3
        in_ch = channels[0]
        for idx in range(2, depth + 1):
            stage = (idx - 1) // per_stage
            first = stage > 0 and (idx - 1) % per_stage == 0
            out_ch = channels[stage]
            self.add_module(
                f'conv_trans_{idx}',
                ConvTransBlock(
                    in_ch,
                    out_ch,
                    stride=2 if first else 1,
                    res_conv=first,
                    fcu_stride=fcu_stride // 2**stage,
                    embed_dims=dims,
                    num_heads=heads,
                    mlp_ratio=mlp_ratio,
                    drop_path=dpr[idx - 1],
                    last_fusion=idx == depth,
                ),
            )
            in_ch = out_ch

        trunc_normal_(self.cls_token, std=0.02)
        self.apply(self._init_module)

        self.attention = ClassTokenAttention(
            [blk.attn for blk in self.trans_blocks],
            layers=attn_layers,
            reduce=attn_reduce,
            num_prefix_tokens=1,
        )

    @staticmethod
    def _init_module(m: nn.Module) -> None:
        # The official Conformer's _init_weights (§3.7); conv biases keep
        # PyTorch's default.
        if isinstance(m, nn.Linear):
            trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.LayerNorm, nn.BatchNorm2d)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(
                m.weight, mode='fan_out', nonlinearity='relu'
            )

    @property
    def conv_trans_blocks(self) -> list[ConvTransBlock]:
        """``conv_trans_2`` … ``conv_trans_{depth}``, in forward order."""
        return [
            getattr(self, f'conv_trans_{i}') for i in range(2, self.depth + 1)
        ]

    @property
    def trans_blocks(self) -> list[nn.Module]:
        """The transformer blocks in forward order: ``trans_1`` first."""
        return [self.trans_1] + [b.trans_block for b in self.conv_trans_blocks]

    @property
    def pretrained_file(self) -> str:
        """Official ImageNet weight file name of this arch."""
        return PRETRAINED_FILES[self.arch_name]

    def load_pretrained(self, checkpoint: str) -> None:
        """Load the local official Conformer weights (§3.7)."""
        load_conformer_weights(
            self, checkpoint, expected_file=self.pretrained_file
        )

    def forward(
        self, x: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
        """(B, 3, 224, 224) images -> ``(feat_map, cls_attn, conv_logits)``.

        Shapes: feat_map (B, 384, 14, 14), cls_attn (B, 14, 14) or ``None``,
        conv_logits (B, C).
        """
        check_input_size(x, self.img_size, type(self).__name__)
        batch = x.size(0)
        x_base = self.maxpool(self.act1(self.bn1(self.conv1(x))))
        x, _ = self.conv_1(x_base)
        x_t = self.trans_patch_conv(x_base).flatten(2).transpose(1, 2)
        x_t = self.trans_1(
            torch.cat([self.cls_token.expand(batch, -1, -1), x_t], dim=1)
        )
        for block in self.conv_trans_blocks:
            x, x_t = block(x, x_t)
        conv_logits = self.conv_cls_head(self.pooling(x).flatten(1))
        feat_map, cls_attn = self.token_maps(self.trans_norm(x_t)[:, 1:])
        return feat_map, cls_attn, conv_logits
