"""``SSTEdgeSelfAttention``: the edge-biased self-attention "SA" (§3.5)."""

from __future__ import annotations

import math

import torch
from mmengine.model import BaseModule
from torch import nn

from shared.registry import MODELS

__all__ = ['SSTEdgeSelfAttention']


@MODELS.register_module()
class SSTEdgeSelfAttention(BaseModule):
    """Multi-head self-attention over F5 positions, biased by the edge code E.

    The tokens are the N = h·w positions of F5 in raster order, T (B, N, C).
    Each of the ``num_heads`` heads is **C wide** (not C/heads):
    ``fc_q``, ``fc_k`` and ``fc_v`` are Linear(C → heads·C), and ``fc_o`` is
    Linear(heads·C → C), all with bias; the heads·C axis is head-major, as
    upstream's ``view(B, N, heads, C)``. Per head::

        L_h = Q_h K_hᵀ / √C + E        E (B, N, N) broadcast over heads,
                                        indexed [query i, key j]
        A_h = Dropout(softmax_j(L_h))
        Out = concat_h(A_h V_h) · W_oᵀ + b_o

    and Out (B, N, C) is reshaped to (B, C, h, w) with the input's own h and
    w (non-square grids work). There is no residual, LayerNorm or FFN: the
    output *replaces* F5. The attention probabilities are the input of
    ``self.attn_drop``, so a forward hook there can read them.

    All Linear weights are N(0, init_std²) and biases zero, set at
    construction (:meth:`init_weights` with ``init_cfg=None`` leaves them),
    so at initialisation A ≈ softmax(E) and the output is orders of
    magnitude smaller than F5.

    Args:
        embed_dims (int): C, the F5 channels (512 VGG16, 768 InceptionV3).
        num_heads (int): Number of heads. Defaults to 8.
        attn_drop (float): Dropout probability on the attention
            probabilities, in [0, 1). Defaults to 0.1.
        init_std (float): Std of the Linear weights, > 0. Defaults to 1e-3.
        use_edge (bool): Add E to the logits. With ``False`` any ``edge``
            passed to :meth:`forward` is ignored. Defaults to True.
        init_cfg (dict | list[dict] | None): MMEngine init config. Keep
            ``None`` so the construction-time initialisation stands.

    Raises:
        ValueError: ``embed_dims`` or ``num_heads`` < 1, ``attn_drop``
            outside [0, 1), or ``init_std`` not > 0.
    """

    def __init__(
        self,
        embed_dims: int,
        num_heads: int = 8,
        attn_drop: float = 0.1,
        init_std: float = 1e-3,
        use_edge: bool = True,
        init_cfg: dict | list[dict] | None = None,
    ) -> None:
        super().__init__(init_cfg=init_cfg)
        if int(embed_dims) < 1:
            raise ValueError(
                f'SSTEdgeSelfAttention: embed_dims must be >= 1, got '
                f'{embed_dims}'
            )
        if int(num_heads) < 1:
            raise ValueError(
                f'SSTEdgeSelfAttention: num_heads must be >= 1, got '
                f'{num_heads}'
            )
        if not 0.0 <= float(attn_drop) < 1.0:
            raise ValueError(
                f'SSTEdgeSelfAttention: attn_drop must be in [0, 1), got '
                f'{attn_drop}'
            )
        if not float(init_std) > 0.0:
            raise ValueError(
                f'SSTEdgeSelfAttention: init_std must be > 0, got {init_std}'
            )
        self.embed_dims = int(embed_dims)
        self.num_heads = int(num_heads)
        self.init_std = float(init_std)
        self.use_edge = bool(use_edge)
        self.temperature = math.sqrt(self.embed_dims)

        inner = self.num_heads * self.embed_dims
        self.fc_q = nn.Linear(self.embed_dims, inner)
        self.fc_k = nn.Linear(self.embed_dims, inner)
        self.fc_v = nn.Linear(self.embed_dims, inner)
        self.fc_o = nn.Linear(inner, self.embed_dims)
        self.attn_drop = nn.Dropout(float(attn_drop))
        for fc in (self.fc_q, self.fc_k, self.fc_v, self.fc_o):
            nn.init.normal_(fc.weight, mean=0.0, std=self.init_std)
            nn.init.zeros_(fc.bias)

    def forward(
        self, feat: torch.Tensor, edge: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Attend over the positions of ``feat``.

        Args:
            feat (torch.Tensor): (B, C, h, w) feature map (F5), C =
                ``embed_dims``.
            edge (torch.Tensor | None): (B, N, N) edge code E, N = h·w,
                rows queries and columns keys. Required when ``use_edge``;
                ignored otherwise.

        Returns:
            torch.Tensor: (B, C, h, w), the attended features.

        Raises:
            ValueError: ``feat`` is not (B, embed_dims, h, w); ``use_edge``
                and ``edge`` is None; ``edge`` is not (B, N, N).
        """
        if feat.dim() != 4 or feat.size(1) != self.embed_dims:
            raise ValueError(
                f'SSTEdgeSelfAttention: expected a (B, {self.embed_dims}, h, '
                f'w) feature map (embed_dims={self.embed_dims}), got shape '
                f'{tuple(feat.shape)}'
            )
        batch, channels, height, width = feat.shape
        num_tokens = height * width
        if self.use_edge:
            if edge is None:
                raise ValueError(
                    'SSTEdgeSelfAttention: use_edge=True but edge is None; '
                    'pass the (B, N, N) edge code or build with '
                    'use_edge=False'
                )
            expected = (batch, num_tokens, num_tokens)
            if tuple(edge.shape) != expected:
                raise ValueError(
                    f'SSTEdgeSelfAttention: edge must have shape {expected} '
                    f'for a {height}x{width} grid, got {tuple(edge.shape)}'
                )

        tokens = feat.flatten(2).transpose(1, 2)  # B, N, C

        def split_heads(x: torch.Tensor) -> torch.Tensor:
            # (B, N, heads·C) -> (B, heads, N, C), head-major as upstream.
            return x.view(
                batch, num_tokens, self.num_heads, channels
            ).transpose(1, 2)

        q = split_heads(self.fc_q(tokens))
        k = split_heads(self.fc_k(tokens))
        v = split_heads(self.fc_v(tokens))
        logits = torch.matmul(q, k.transpose(-2, -1)) / self.temperature
        if self.use_edge:
            logits = logits + edge.to(logits.dtype).unsqueeze(1)
        attn = self.attn_drop(logits.softmax(dim=-1))
        out = torch.matmul(attn, v)  # B, heads, N, C
        out = out.transpose(1, 2).reshape(batch, num_tokens, -1)
        out = self.fc_o(out)  # B, N, C
        return out.transpose(1, 2).reshape(batch, channels, height, width)
