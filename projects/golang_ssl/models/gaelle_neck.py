"""``GAELLENeck``: global projection plus local semantic attention (§4.2).

The neck receives the stage-4 maps of every resolution group and returns

- the global embedding z = normalize(g(GAP)) of every crop (SwAV's head), and
- the local embedding y = normalize(h(tokens)) of the first-group views,
  where the tokens pool the first-group maps with an attention whose scores
  come from the **same** g applied at every spatial position.

It reproduces ``ResNet.forward_alignment`` / ``forward_head`` /
``forward_local_head`` of chunyen5927/GAELLE ``src/resnet50.py``, including
the order of g's BatchNorm running-statistics updates: P per-position calls
first, then one call over the pooled vectors of all N·B crops.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
import torch.distributed as dist
import torch.nn.functional as F
from mmcv.cnn import build_norm_layer
from mmengine.model import BaseModule
from torch import nn

from shared.registry import MODELS

__all__ = ['GAELLENeck']

_POSITION_BN_MODES = ('loop', 'flatten')


def _positive_int(owner: str, name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f'{owner}: {name} must be an int >= 1, got {value!r}')
    return value


@MODELS.register_module()
class GAELLENeck(BaseModule):
    """Global projection head g and local attention head h of GAELLE.

    Both heads are ``Sequential([0] Linear(C, hid), [1] BN1d(hid), [2] ReLU,
    [3] Linear(hid, out))`` with PyTorch's default Linear init; ``out`` is
    ``feat_dim`` (d) for g = ``global_proj`` and ``local_feat_dim`` (d_l) for
    h = ``local_proj``. Their state-dict keys map one to one onto the
    original ``projection_head.*`` and ``local_projection_head.*``.

    **Forward** (notation of ``golang_ssl.md`` §4: B batch, V first-group
    views, N crops, C channels, P first-group positions, G groups,
    M = d / G tokens per view):

    1. *Per-position scores* (only ``with_local``): with the first-group
       maps F ∈ ℝ^{VB×C×P} (view-major rows), a_p = g(F[:, :, p]).
       ``position_bn='loop'`` (faithful) makes P calls of g, hence P sets of
       per-position batch statistics and P running-stat updates (P
       collectives under SyncBN). ``'flatten'`` folds the positions into the
       batch (one call over VB·P rows): an unfaithful ablation.
    2. *Attention*: A = softmax_P(normalize_d(a) / attn_temperature), one
       distribution over P for each (sample, channel of d). At temperature
       τ every weight lies in [1/(1+(P−1)e^{2/τ}), e^{2/τ}/(e^{2/τ}+P−1)].
    3. *Grouped pooling*: C splits into G contiguous blocks F_j and the d
       attention maps into G contiguous blocks of M;
       u_{j,k} = Σ_p A[n, jM+k, p] · F_j[n, :, p] and the token
       t_k = [u_{1,k}; …; u_{G,k}] ∈ ℝ^C. Output row = v·B·M + b·M + k.
    4. *Global embedding*: z = normalize(g(GAP of every group, concatenated
       crop-major)); this call of g sees N·B rows and comes after step 1.
    5. *Local embedding*: y = normalize(h(tokens)), (VB·M) × d_l.

    **SyncBN.** ``norm_cfg=dict(type='SyncBN')`` builds
    ``torch.nn.SyncBatchNorm`` (through mmengine's thin subclass). PyTorch's
    SyncBatchNorm already falls back to plain ``F.batch_norm`` when no
    process group is initialised (single process, CPU or GPU) or when the
    group has one rank on an accelerator, which is what §8 asks for; no
    conversion is needed there. With an initialised group and **CPU**
    inputs PyTorch refuses (it only syncs accelerator tensors); rather than
    silently using per-rank statistics, :meth:`forward` raises a
    ``ValueError`` that names the fix: ``norm_cfg=dict(type='BN')`` (the
    backbone needs the same change under gloo) or
    ``mmengine.model.revert_sync_batchnorm``. ``type='BN'`` is read as
    ``'BN1d'`` because the heads see (rows, hid) inputs and a 2-D BatchNorm
    would reject them; the module and its state-dict keys are identical.

    Args:
        in_channels (int): C, channels of the trunk maps. Defaults to 2048.
        hid_channels (int): Hidden width of g and h. Defaults to 2048.
        feat_dim (int): d, output width of g; also fixes M = d / G.
            Defaults to 128.
        local_feat_dim (int): d_l, output width of h. Defaults to 128.
        num_groups (int): G, channel groups of the pooling. Must divide
            both C and d (checked even when ``with_local=False`` so that
            ``num_tokens`` is always defined). Defaults to 4.
        with_local (bool): Build h and compute the local branch; ``False``
            gives plain SwAV (``local_emb`` is ``None``, g is called once).
            Defaults to True.
        attn_temperature (float): τ > 0 dividing the normalised scores
            before the softmax. Defaults to 1.0 (as released).
        position_bn (str): ``'loop'`` (faithful) or ``'flatten'``.
            Defaults to ``'loop'``.
        norm_cfg (dict | None): Norm layer of both heads, built with
            ``mmcv.cnn.build_norm_layer``. ``None`` (the default) means
            ``dict(type='SyncBN')``.
        init_cfg (dict | list[dict] | None): MMEngine init config. Keep
            ``None`` for PyTorch's default init, as in the original.

    Raises:
        ValueError: A width is not a positive int; C % G ≠ 0 or d % G ≠ 0;
            an unknown ``position_bn``; ``attn_temperature`` ≤ 0.
    """

    def __init__(
        self,
        in_channels: int = 2048,
        hid_channels: int = 2048,
        feat_dim: int = 128,
        local_feat_dim: int = 128,
        num_groups: int = 4,
        with_local: bool = True,
        attn_temperature: float = 1.0,
        position_bn: str = 'loop',
        norm_cfg: dict | None = None,
        init_cfg: dict | list[dict] | None = None,
    ) -> None:
        super().__init__(init_cfg=init_cfg)
        name = type(self).__name__
        self.in_channels = _positive_int(name, 'in_channels', in_channels)
        self.hid_channels = _positive_int(name, 'hid_channels', hid_channels)
        self.feat_dim = _positive_int(name, 'feat_dim', feat_dim)
        self.local_feat_dim = _positive_int(
            name, 'local_feat_dim', local_feat_dim
        )
        self.num_groups = _positive_int(name, 'num_groups', num_groups)
        if in_channels % num_groups:
            raise ValueError(
                f'{name}: in_channels={in_channels} must be divisible by '
                f'num_groups={num_groups}'
            )
        if feat_dim % num_groups:
            raise ValueError(
                f'{name}: feat_dim={feat_dim} must be divisible by '
                f'num_groups={num_groups} (M = feat_dim / num_groups tokens '
                'per view)'
            )
        if position_bn not in _POSITION_BN_MODES:
            raise ValueError(
                f'{name}: position_bn must be one of {_POSITION_BN_MODES}, '
                f'got {position_bn!r}'
            )
        temperature = float(attn_temperature)
        if not temperature > 0:  # also rejects NaN
            raise ValueError(
                f'{name}: attn_temperature must be > 0, got '
                f'{attn_temperature!r}'
            )
        self.num_tokens = feat_dim // num_groups
        self.with_local = bool(with_local)
        self.attn_temperature = temperature
        self.position_bn = position_bn
        self.norm_cfg = self._resolve_norm_cfg(norm_cfg)

        self.global_proj = self._build_mlp(feat_dim)
        if self.with_local:
            self.local_proj = self._build_mlp(local_feat_dim)

    @staticmethod
    def _resolve_norm_cfg(norm_cfg: dict | None) -> dict:
        if norm_cfg is None:
            return dict(type='SyncBN')
        cfg = copy.deepcopy(norm_cfg)
        if cfg.get('type') == 'BN':
            cfg['type'] = 'BN1d'
        return cfg

    def _build_mlp(self, out_channels: int) -> nn.Sequential:
        return nn.Sequential(
            nn.Linear(self.in_channels, self.hid_channels),
            build_norm_layer(self.norm_cfg, self.hid_channels)[1],
            nn.ReLU(inplace=True),
            nn.Linear(self.hid_channels, out_channels),
        )

    def position_scores(self, feats: torch.Tensor) -> torch.Tensor:
        """Apply g at every position of the first-group maps.

        Args:
            feats (torch.Tensor): (VB, C, P) first-group maps.

        Returns:
            torch.Tensor: (VB, d, P) raw scores a_p.
        """
        n, c, p = feats.shape
        if self.position_bn == 'loop':
            # One call per position: per-position BN statistics and P
            # running-stat updates, in position order, as released.
            return torch.stack(
                [self.global_proj(feats[:, :, i]) for i in range(p)], dim=2
            )
        flat = feats.permute(0, 2, 1).reshape(n * p, c)
        return self.global_proj(flat).reshape(n, p, -1).permute(0, 2, 1)

    def attention(self, scores: torch.Tensor) -> torch.Tensor:
        """Softmax over positions of the L2-normalised scores.

        Args:
            scores (torch.Tensor): (VB, d, P) raw scores.

        Returns:
            torch.Tensor: (VB, d, P) weights; each (row, channel) sums to 1
            over P.
        """
        scores = F.normalize(scores, p=2, dim=1) / self.attn_temperature
        return scores.softmax(dim=2)

    def pool_tokens(
        self, feats: torch.Tensor, attn: torch.Tensor
    ) -> torch.Tensor:
        """Grouped attention pooling into M tokens per map.

        Args:
            feats (torch.Tensor): (VB, C, P) first-group maps.
            attn (torch.Tensor): (VB, d, P) attention weights.

        Returns:
            torch.Tensor: (VB·M, C) tokens, row = n·M + k with n = v·B + b;
            token k of map n is [u_{1,k}; …; u_{G,k}].
        """
        n, c, p = feats.shape
        g, m = self.num_groups, self.num_tokens
        grouped = feats.reshape(n, g, c // g, p)
        weights = attn.reshape(n, g, m, p)
        # (n, G, C/G, P) @ (n, G, P, M) -> (n, G, C/G, M): u_{j,k} columns.
        pooled = torch.matmul(grouped, weights.transpose(2, 3))
        return pooled.reshape(n, c, m).transpose(1, 2).reshape(n * m, c)

    def _check_inputs(
        self,
        inputs: Sequence[torch.Tensor],
        batch_size: int,
        num_crops: Sequence[int],
    ) -> None:
        name = type(self).__name__
        if not isinstance(inputs, (list, tuple)) or len(inputs) == 0:
            raise ValueError(
                f'{name}: inputs must be a non-empty list of per-group maps, '
                f'got {type(inputs).__name__}'
            )
        _positive_int(name, 'batch_size', batch_size)
        crops = list(num_crops)
        if not crops or any(
            isinstance(v, bool) or not isinstance(v, int) or v < 1
            for v in crops
        ):
            raise ValueError(
                f'{name}: num_crops must be a non-empty sequence of ints >= '
                f'1, got {num_crops!r}'
            )
        if len(inputs) != len(crops):
            raise ValueError(
                f'{name}: expected one map per resolution group '
                f'(len(num_crops)={len(crops)}), got {len(inputs)} maps'
            )
        for i, (x, views) in enumerate(zip(inputs, crops)):
            if not torch.is_tensor(x) or x.dim() != 4:
                shape = tuple(x.shape) if torch.is_tensor(x) else type(x)
                raise ValueError(
                    f'{name}: inputs[{i}] must be a 4-D (rows, C, H, W) '
                    f'tensor, got {shape}'
                )
            if x.size(1) != self.in_channels:
                raise ValueError(
                    f'{name}: inputs[{i}] has {x.size(1)} channels, expected '
                    f'in_channels={self.in_channels} (shape {tuple(x.shape)})'
                )
            if x.size(0) != views * batch_size:
                raise ValueError(
                    f'{name}: inputs[{i}] has {x.size(0)} rows, expected '
                    f'num_crops[{i}] * batch_size = {views} * {batch_size}'
                )

    def _check_sync_bn(self, x: torch.Tensor) -> None:
        if not (
            self.training
            and x.device.type == 'cpu'
            and dist.is_available()
            and dist.is_initialized()
        ):
            return
        if any(isinstance(m, nn.SyncBatchNorm) for m in self.modules()):
            raise ValueError(
                f'{type(self).__name__}: SyncBatchNorm cannot synchronise CPU '
                'tensors under an initialised process group (PyTorch '
                'supports only accelerator inputs there); use '
                "norm_cfg=dict(type='BN') for CPU/gloo runs (as for the "
                'backbone) or mmengine.model.revert_sync_batchnorm'
            )

    def forward(
        self,
        inputs: Sequence[torch.Tensor],
        batch_size: int,
        num_crops: Sequence[int],
    ) -> dict:
        """Compute the global and local embeddings.

        Args:
            inputs (Sequence[torch.Tensor]): One stage-4 map per resolution
                group, in crop order: ``inputs[i]`` is
                (num_crops[i]·B, C, H_i, W_i) with view-major rows. The
                first group (V = num_crops[0] views, P = H_0·W_0) feeds the
                local branch.
            batch_size (int): B, images per view.
            num_crops (Sequence[int]): Views per resolution group.

        Returns:
            dict: ``global_emb`` (N·B, d) unit rows, crop-major;
            ``local_emb`` (V·B·M, d_l) unit rows (row v·B·M + b·M + k) or
            ``None`` without the local branch; ``batch_size`` B;
            ``num_tokens`` M.

        Raises:
            ValueError: ``inputs`` is not a list of 4-D maps with C channels
                and num_crops[i]·B rows; SyncBN on CPU under a process group.
        """
        self._check_inputs(inputs, batch_size, num_crops)
        self._check_sync_bn(inputs[0])

        local_emb = None
        if self.with_local:
            first = inputs[0].flatten(2)
            attn = self.attention(self.position_scores(first))
            tokens = self.pool_tokens(first, attn)
            local_emb = F.normalize(self.local_proj(tokens), p=2, dim=1)

        pooled = torch.cat([x.mean(dim=(2, 3)) for x in inputs], dim=0)
        global_emb = F.normalize(self.global_proj(pooled), p=2, dim=1)
        return dict(
            global_emb=global_emb,
            local_emb=local_emb,
            batch_size=batch_size,
            num_tokens=self.num_tokens,
        )
