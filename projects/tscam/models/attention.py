"""Class-token attention of timm ``Attention`` modules, without forking timm.

timm's ``Attention`` runs fused SDPA and never materialises the attention
probabilities. :class:`ClassTokenAttention` registers a forward hook on each
block's ``attn.qkv`` Linear, whose B×N×3D output timm computes anyway, and
recomputes only what TS-CAM needs (``tscam.md`` §3.4–3.5):

- the class-token row ``softmax(q_cls · Kᵀ · scale)`` over all N keys,
  averaged over heads, patch columns only (the cls→cls entry is dropped
  after the softmax), added into one running B×(N−p) buffer: O(B·H·N·d)
  extra work per layer and one buffer of memory;
- with ``rollout`` (ablation / visualisation): the head-mean N×N matrix of
  every layer, multiplied into the attention rollout of Abnar & Zuidema
  (identity added, rows renormalised, first layer rightmost);
- with ``return_layers`` (visualisation): every layer's row.

Collection happens only inside :meth:`ClassTokenAttention.collect`; outside
it (training, loss mode) the hooks return at once.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from functools import partial

import torch
from mmengine.model import BaseModule
from torch import nn

__all__ = [
    'ATTN_REDUCES',
    'ClassAttentionBackbone',
    'ClassTokenAttention',
    'attention_rollout',
]

#: Reductions over the selected layers (min-max makes them equivalent).
ATTN_REDUCES = ('sum', 'mean')


def attention_rollout(attn: Sequence[torch.Tensor]) -> torch.Tensor:
    """Attention rollout of head-averaged attention matrices.

    ``R = Â_L ⋯ Â_1`` with ``Â_l = rownorm(Ā_l + I)`` (Abnar & Zuidema,
    2020).

    Args:
        attn (Sequence[torch.Tensor]): L head-mean matrices (B, N, N), first
            layer first; rows are queries.

    Returns:
        torch.Tensor: (B, N, N) rollout.
    """
    result = None
    for mat in attn:
        eye = torch.eye(mat.size(-1), dtype=mat.dtype, device=mat.device)
        hat = mat + eye
        hat = hat / hat.sum(dim=-1, keepdim=True)
        result = hat if result is None else hat @ result
    return result


class ClassTokenAttention:
    """Running class-token attention over the blocks of a transformer.

    Args:
        attn_modules (Sequence[nn.Module]): The timm ``Attention`` module of
            every block, first block first. Each must have ``qkv``,
            ``num_heads``, ``head_dim``, ``scale``, ``q_norm``, ``k_norm``.
        layers (str | Sequence[int]): ``'all'``, a list of block indices
            (summed in that set), or ``'rollout'`` (m* is the rollout's
            class row instead of a sum).
        reduce (str): ``'sum'`` (upstream) or ``'mean'`` over the selected
            layers; ignored by ``'rollout'``.
        num_prefix_tokens (int): Tokens before the patches (1: the class
            token, which is token 0).

    Raises:
        ValueError: Unknown ``layers`` or ``reduce``, or layer indices out
            of range or repeated.
    """

    def __init__(
        self,
        attn_modules: Sequence[nn.Module],
        layers: str | Sequence[int] = 'all',
        reduce: str = 'sum',
        num_prefix_tokens: int = 1,
    ) -> None:
        depth = len(attn_modules)
        if reduce not in ATTN_REDUCES:
            raise ValueError(
                f'attn_reduce must be one of {ATTN_REDUCES}, got {reduce!r}'
            )
        if isinstance(layers, str):
            if layers not in ('all', 'rollout'):
                raise ValueError(
                    "attn_layers must be 'all', 'rollout' or a list of block "
                    f'indices in [0, {depth}), got {layers!r}'
                )
            selected = list(range(depth))
        else:
            selected = [int(i) for i in layers]
            if (
                not selected
                or len(set(selected)) != len(selected)
                or min(selected) < 0
                or max(selected) >= depth
            ):
                raise ValueError(
                    'attn_layers must be a non-empty list of distinct block '
                    f'indices in [0, {depth}), got {list(layers)}'
                )
        self.depth = depth
        self.layers = layers
        self.selected = frozenset(selected)
        self.reduce = reduce
        self.num_prefix_tokens = num_prefix_tokens
        self.active = False
        self.return_layers = False
        self.with_rollout = False
        self._reset()
        self._handles = [
            attn.qkv.register_forward_hook(partial(self._hook, idx, attn))
            for idx, attn in enumerate(attn_modules)
        ]

    def release(self) -> None:
        """Drop the collected buffers (the per-layer rows and N×N
        matrices of a ``return_layers``/``rollout`` pass can be large)."""
        self._reset()

    def _reset(self) -> None:
        self.summed: torch.Tensor | None = None
        self.layer_rows: list[torch.Tensor] = []
        self.layer_matrices: list[torch.Tensor] = []
        self.calls = 0

    @contextmanager
    def collect(
        self, return_layers: bool = False, rollout: bool = False
    ) -> Iterator[ClassTokenAttention]:
        """Collect attention during the forward passes inside the block.

        Args:
            return_layers (bool): Also keep every layer's class row.
            rollout (bool): Also keep the full head-mean matrices (needed
                for :meth:`rollout`); forced on by ``layers='rollout'``.

        Yields:
            ClassTokenAttention: ``self``, reset.
        """
        self._reset()
        self.active = True
        self.return_layers = return_layers
        self.with_rollout = rollout or self.layers == 'rollout'
        try:
            yield self
        finally:
            self.active = False
            self.return_layers = False
            self.with_rollout = False

    def _hook(
        self,
        idx: int,
        attn: nn.Module,
        module: nn.Module,
        inputs: tuple,
        output: torch.Tensor,
    ) -> None:
        if not self.active:
            return
        # float32 even inside an autocast region (which would cast the
        # matmul inputs back down).
        with (
            torch.no_grad(),
            torch.autocast(output.device.type, enabled=False),
        ):
            batch, num_tokens, _ = output.shape
            qkv = output.detach().float()
            qkv = qkv.reshape(
                batch, num_tokens, 3, attn.num_heads, attn.head_dim
            ).permute(2, 0, 3, 1, 4)
            q, k = attn.q_norm(qkv[0]), attn.k_norm(qkv[1])
            q = q * attn.scale  # the order of timm's unfused path
            if self.with_rollout:
                full = (q @ k.transpose(-2, -1)).softmax(dim=-1).mean(dim=1)
                self.layer_matrices.append(full)
                row = full[:, 0]
            else:
                logits = q[:, :, :1] @ k.transpose(-2, -1)  # B, H, 1, N
                row = logits.softmax(dim=-1).mean(dim=1)[:, 0]
            row = row[:, self.num_prefix_tokens :]
            if self.return_layers:
                self.layer_rows.append(row)
            if idx in self.selected:
                self.summed = (
                    row.clone() if self.summed is None else self.summed + row
                )
            self.calls += 1

    def _check_complete(self) -> None:
        if self.calls != self.depth:
            raise RuntimeError(
                f'class-token attention saw {self.calls} attention layers, '
                f'expected {self.depth}: run one forward pass inside '
                'collect()'
            )

    def aggregated(self) -> torch.Tensor:
        """m*: the selected layers' class rows, reduced (B, N−p)."""
        self._check_complete()
        if self.layers == 'rollout':
            return self.rollout()
        if self.reduce == 'mean':
            return self.summed / len(self.selected)
        return self.summed

    def rollout(self) -> torch.Tensor:
        """Class row of the attention rollout over all layers (B, N−p)."""
        self._check_complete()
        if not self.layer_matrices:
            raise RuntimeError('collect(rollout=True) is needed for rollout')
        return attention_rollout(self.layer_matrices)[
            :, 0, self.num_prefix_tokens :
        ]

    def remove(self) -> None:
        """Remove the hooks."""
        for handle in self._handles:
            handle.remove()
        self._handles = []


class ClassAttentionBackbone(BaseModule):
    """What the TS-CAM backbones share: local pretrained weights, the
    attention gate and the token-map output.

    Subclasses set ``attention`` (a :class:`ClassTokenAttention` over their
    transformer blocks), ``embed_dims``, ``grid`` (tokens per side) and
    ``pretrained_file``, and implement :meth:`load_pretrained`.
    """

    attention: ClassTokenAttention
    embed_dims: int
    grid: int

    def load_pretrained(self, checkpoint: str) -> None:
        """Load the local weight file ``checkpoint`` (subclass-specific)."""
        raise NotImplementedError

    def init_weights(self) -> None:
        """Load ``init_cfg`` ``Pretrained`` weights from a local file.

        ``checkpoint=None`` or no ``init_cfg`` keeps the initialisation of
        construction time; any other ``init_cfg`` goes to mmengine.
        """
        cfg = self.init_cfg
        if isinstance(cfg, dict) and cfg.get('type') == 'Pretrained':
            if cfg.get('checkpoint') is not None:
                self.load_pretrained(cfg['checkpoint'])
        elif cfg is not None:
            super().init_weights()
            return
        self._is_init = True

    @contextmanager
    def collect_attention(
        self, return_layers: bool = False, rollout: bool = False
    ) -> Iterator[ClassTokenAttention]:
        """Collect class-token attention in the forward passes inside."""
        with self.attention.collect(return_layers, rollout) as collector:
            yield collector

    def token_maps(
        self, patches: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Patch tokens (B, N, D) -> feat_map (B, D, h, w) row-major, and m*
        (B, h, w) while collecting, else ``None``."""
        batch = patches.size(0)
        feat_map = patches.transpose(1, 2).reshape(
            batch, self.embed_dims, self.grid, self.grid
        )
        cls_attn = None
        if self.attention.active:
            cls_attn = self.attention.aggregated().reshape(
                batch, self.grid, self.grid
            )
        return feat_map, cls_attn
