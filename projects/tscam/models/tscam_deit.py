"""``TSCAMDeiT``: timm's DeiT with class-token attention collection.

``tscam.md`` §3.1–3.6. timm's ``VisionTransformer`` (``num_classes=0``) is
used as it is; its blocks' ``attn.qkv`` Linears carry the hooks of
:class:`~.attention.ClassTokenAttention`.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

import torch
from timm.models.vision_transformer import VisionTransformer
from torch import nn

from shared.registry import MODELS

from .attention import ClassAttentionBackbone, ClassTokenAttention
from .weights import load_vit_weights

__all__ = ['TSCAMDeiT', 'check_input_size', 'parse_arch']

PATCH_SIZE = 16
ARCH_SETTINGS = {
    'tiny': dict(embed_dims=192, depth=12, num_heads=3),
    'small': dict(embed_dims=384, depth=12, num_heads=6),
    'base': dict(embed_dims=768, depth=12, num_heads=12),
}
#: The upstream ImageNet weight file of each (arch, img_size).
PRETRAINED_FILES = {
    ('tiny', 224): 'deit_tiny_patch16_224-a1311bcf.pth',
    ('small', 224): 'deit_small_patch16_224-cd65a155.pth',
    ('base', 224): 'deit_base_patch16_224-b5f2ef4d.pth',
    ('base', 384): 'deit_base_patch16_384-8de9b5d1.pth',
}


def parse_arch(
    arch: str | dict, settings: dict[str, dict], owner: str
) -> tuple[str | None, dict]:
    """Resolve a named arch or an ``embed_dims/depth/num_heads`` dict.

    Returns:
        tuple[str | None, dict]: The arch name (``None`` for a dict) and
        its ``embed_dims``, ``depth`` and ``num_heads``.

    Raises:
        ValueError: Unknown name, missing or extra keys, non-positive
            values, or ``embed_dims`` not divisible by ``num_heads``.
    """
    if isinstance(arch, str):
        if arch not in settings:
            raise ValueError(
                f'{owner}: unknown arch {arch!r}; choose one of '
                f'{sorted(settings)} or a dict(embed_dims=…, depth=…, '
                'num_heads=…)'
            )
        return arch, dict(settings[arch])
    if not isinstance(arch, dict):
        raise ValueError(
            f'{owner}: arch must be a name or a dict, got '
            f'{type(arch).__name__}'
        )
    required = {'embed_dims', 'depth', 'num_heads'}
    if set(arch) != required:
        raise ValueError(
            f'{owner}: an arch dict needs exactly the keys '
            f'{sorted(required)}; '
            f'missing {sorted(required - set(arch))}, extra '
            f'{sorted(set(arch) - required)}'
        )
    values = {k: int(v) for k, v in arch.items()}
    if min(values.values()) < 1:
        raise ValueError(f'{owner}: arch values must be positive, got {arch}')
    if values['embed_dims'] % values['num_heads']:
        raise ValueError(
            f'{owner}: embed_dims={values["embed_dims"]} is not divisible by '
            f'num_heads={values["num_heads"]}'
        )
    return None, values


def check_input_size(x: torch.Tensor, img_size: int, owner: str) -> None:
    """Raise ``ValueError`` unless ``x`` is (B, C, img_size, img_size)."""
    if x.dim() != 4 or tuple(x.shape[-2:]) != (img_size, img_size):
        raise ValueError(
            f'{owner}: expected input (B, 3, {img_size}, {img_size}) for '
            f'img_size={img_size}, got {tuple(x.shape)}; the test pipeline '
            f'must resize to {img_size}x{img_size} (LocResize scale), or '
            'build the backbone with the img_size of the data'
        )


@MODELS.register_module()
class TSCAMDeiT(ClassAttentionBackbone):
    """DeiT backbone of TS-CAM (``tscam.md`` §3.1).

    Args:
        arch (str | dict): ``'tiny'``, ``'small'``, ``'base'`` or
            ``dict(embed_dims=…, depth=…, num_heads=…)``.
        img_size (int): Input side; only img_size×img_size inputs are
            accepted (224: 14×14 tokens, 384: 24×24).
        drop_path_rate (float): Stochastic depth of the last block (linear
            from 0 at block 0).
        attn_layers (str | Sequence[int]): Blocks whose class-token
            attention forms m*: ``'all'``, a list of indices, or
            ``'rollout'``.
        attn_reduce (str): ``'sum'`` (upstream) or ``'mean'``.
        interpolate_pos_embed (bool): Resample a pretrained ``pos_embed``
            of another length instead of raising.
        init_cfg (dict | None): ``dict(type='Pretrained', checkpoint=PATH)``
            loads local ImageNet weights (``PATH=None``: random init).

    Forward returns ``(feat_map, cls_attn)``: the final-normed patch tokens
    as (B, D, h, w) (token n = w·row + col) and m* (B, h, w), or ``None``
    outside :meth:`collect_attention`.
    """

    def __init__(
        self,
        arch: str | dict = 'small',
        img_size: int = 224,
        drop_path_rate: float = 0.1,
        attn_layers: str | Sequence[int] = 'all',
        attn_reduce: str = 'sum',
        interpolate_pos_embed: bool = False,
        init_cfg: dict | None = None,
    ) -> None:
        super().__init__(init_cfg=init_cfg)
        self.arch_name, settings = parse_arch(arch, ARCH_SETTINGS, 'TSCAMDeiT')
        if img_size % PATCH_SIZE:
            raise ValueError(
                f'TSCAMDeiT: img_size={img_size} is not a multiple of the '
                f'patch size {PATCH_SIZE}'
            )
        self.img_size = int(img_size)
        self.embed_dims = settings['embed_dims']
        self.depth = settings['depth']
        self.grid = self.img_size // PATCH_SIZE
        self.interpolate_pos_embed = interpolate_pos_embed
        self.vit = VisionTransformer(
            img_size=self.img_size,
            patch_size=PATCH_SIZE,
            num_classes=0,
            embed_dim=self.embed_dims,
            depth=self.depth,
            num_heads=settings['num_heads'],
            mlp_ratio=4.0,
            qkv_bias=True,
            norm_layer=partial(nn.LayerNorm, eps=1e-6),
            drop_rate=0.0,
            pos_drop_rate=0.0,
            attn_drop_rate=0.0,
            drop_path_rate=drop_path_rate,
        )
        self.attention = ClassTokenAttention(
            [blk.attn for blk in self.vit.blocks],
            layers=attn_layers,
            reduce=attn_reduce,
            num_prefix_tokens=self.vit.num_prefix_tokens,
        )

    @property
    def pretrained_file(self) -> str | None:
        """Upstream ImageNet weight file name of this arch, if any."""
        return PRETRAINED_FILES.get((self.arch_name, self.img_size))

    def load_pretrained(self, checkpoint: str) -> None:
        """Load local ImageNet DeiT weights into ``vit`` (§3.6)."""
        load_vit_weights(
            self.vit,
            checkpoint,
            interpolate_pos_embed=self.interpolate_pos_embed,
            expected_file=self.pretrained_file,
        )

    def forward(
        self, x: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(B, 3, S, S) images -> ``(feat_map, cls_attn)``."""
        check_input_size(x, self.img_size, type(self).__name__)
        tokens = self.vit.forward_features(x)
        return self.token_maps(tokens[:, self.vit.num_prefix_tokens :])
