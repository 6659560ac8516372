"""``NLBlock``: the fork's pre-activation, sub-sampled non-local block.

FearsomeTuna/SAN ``model/nl.py`` (``NLBlock``), restated from spec §2.4.
Only the dot-product pairwise function is implemented, as upstream.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ['NLBlock']


class NLBlock(nn.Module):
    """Dot-product non-local block with sub-sampling (pre-activation).

    With x (N, C, H, W), inter = max(C // 8, 1) and gc = max(C // 4, 1)::

        a = relu(bn(x))
        θ = theta(a)                     (N, inter, H, W)
        φ = maxpool2(phi_conv(a))        (N, inter, ⌊H/2⌋, ⌊W/2⌋)
        g = maxpool2(g_conv(a))          (N, gc,    ⌊H/2⌋, ⌊W/2⌋)
        y = (θᵀ φ / Np) · g              (N, H·W, gc), Np = ⌊H/2⌋·⌊W/2⌋
        out = x + W_z(y reshaped to (N, gc, H, W))

    with ``W_z`` = [BN(gc), ReLU, 1×1 gc→C]. There is no softmax: the
    pairwise weights are the raw dot products divided by the number of
    pooled positions Np. All 1×1 convolutions have a bias. Unlike the
    original non-local block, the block is pre-activation (``bn``/ReLU on
    the input, BN/ReLU before the last conv), so a zero-initialised BN can
    not make it start as the identity; :class:`SANMixedNet` initialises it
    like its other blocks.

    Keys: ``bn``, ``g.0``, ``theta``, ``phi.0``, ``W_z.0``, ``W_z.2``
    (``g.1``/``phi.1`` are the parameter-free 2×2 max-pools).

    Args:
        in_channels (int): C, input and output channels, >= 1.
        inter_channels (int | None): θ/φ channels. Defaults to
            ``max(C // 8, 1)``.
        g_channels (int | None): g channels. Defaults to ``max(C // 4, 1)``.
        mode (str): Pairwise function; only ``'dot'`` exists.

    Raises:
        ValueError: A channel count < 1.
        NotImplementedError: ``mode`` is not ``'dot'``.
    """

    def __init__(
        self,
        in_channels: int,
        inter_channels: int | None = None,
        g_channels: int | None = None,
        mode: str = 'dot',
    ) -> None:
        super().__init__()
        if mode != 'dot':
            raise NotImplementedError(
                f"NLBlock: only mode='dot' is implemented, got {mode!r}"
            )
        if inter_channels is None:
            inter_channels = max(in_channels // 8, 1)
        if g_channels is None:
            g_channels = max(in_channels // 4, 1)
        for name, value in (
            ('in_channels', in_channels),
            ('inter_channels', inter_channels),
            ('g_channels', g_channels),
        ):
            if int(value) < 1:
                raise ValueError(f'NLBlock: {name} must be >= 1, got {value}')
        self.mode = mode
        self.in_channels = int(in_channels)
        self.inter_channels = int(inter_channels)
        self.g_channels = int(g_channels)

        c, inter, gc = self.in_channels, self.inter_channels, self.g_channels
        self.bn = nn.BatchNorm2d(c)
        self.relu = nn.ReLU(inplace=True)
        self.g = nn.Sequential(nn.Conv2d(c, gc, 1), nn.MaxPool2d(2))
        self.theta = nn.Conv2d(c, inter, 1)
        self.phi = nn.Sequential(nn.Conv2d(c, inter, 1), nn.MaxPool2d(2))
        self.W_z = nn.Sequential(
            nn.BatchNorm2d(gc), nn.ReLU(inplace=True), nn.Conv2d(gc, c, 1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the block.

        Args:
            x (torch.Tensor): (N, C, H, W) with H, W >= 2.

        Returns:
            torch.Tensor: (N, C, H, W), ``x`` plus the non-local response.

        Raises:
            ValueError: ``x`` is not (N, C, H, W) with C = ``in_channels``
                and H, W >= 2 (the 2×2 sub-sampling needs one pooled
                position).
        """
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(
                f'NLBlock: expected (N, {self.in_channels}, H, W), got '
                f'{tuple(x.shape)}'
            )
        n, _, h, w = x.shape
        if h < 2 or w < 2:
            raise ValueError(
                f'NLBlock: H and W must be >= 2 for the 2x2 sub-sampling, '
                f'got {h}x{w}'
            )
        a = self.relu(self.bn(x))
        g = self.g(a).flatten(2).transpose(1, 2)  # (N, Np, gc)
        theta = self.theta(a).flatten(2).transpose(1, 2)  # (N, HW, inter)
        phi = self.phi(a).flatten(2)  # (N, inter, Np)
        f = torch.matmul(theta, phi)  # (N, HW, Np)
        f = f / f.shape[-1]
        y = torch.matmul(f, g)  # (N, HW, gc)
        y = y.transpose(1, 2).reshape(n, self.g_channels, h, w)
        return x + self.W_z(y)

    def extra_repr(self) -> str:
        return (
            f'in_channels={self.in_channels}, '
            f'inter_channels={self.inter_channels}, '
            f'g_channels={self.g_channels}, mode={self.mode!r}'
        )
