"""SAM: the self-attention module of SAN (``san.md`` §2.1).

Zhao, Jia, Koltun, "Exploring Self-attention for Image Recognition"
(CVPR 2020). For a block of width C the module computes, at every
position i with footprint R(i) (a k×k window, dilation d):

    y_i = Σ_{j ∈ R(i)} α(x_i, x_j) ⊙ β(x_j),

with β a 1×1 conv C→m (m = C/4) and one attention weight shared by the
interleaved channel group {g, g+Cw, ...} (Cw = m/8, weight channel
``c mod Cw`` serves value channel c). Two forms of α:

* pairwise (Eq. 2-4): α depends on the pair (i, j) only, through the
  relation δ = φ(x_i) − ψ(x_j) concatenated with a relative position
  encoding, mapped by γ (``conv_w``) and normalised by a softmax over the
  k² slots;
* patchwise (Eq. 5): α(x_{R(i)})_j is computed from the whole footprint
  at once, from the concatenation of φ(x_i) and ψ(x_j) for every j in
  R(i). Each slot's weight can therefore depend on every feature in the
  patch, not only on its own pair; there is no softmax and no position
  encoding.

All window ops run through the :mod:`shared.ops` modules (the FLOP
counter hooks their exact types) with reflect padding and stride 1.
"""

from __future__ import annotations

import torch
from torch import nn

from shared.ops import Aggregation, Subtraction, Subtraction2

__all__ = ['SAM', 'SA_TYPES', 'position_map']

#: Accepted ``sa_type`` strings (upstream YAML used 0 / 1).
SA_TYPES = ('pairwise', 'patchwise')
#: Width granularity: C/16 relation channels and C/4 / 8 weight channels.
WIDTH_MULTIPLE = 32


def position_map(
    height: int,
    width: int,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Normalised pixel coordinates P⁰ of an H×W map.

    Channel 0 is the column coordinate ``-1 + 2w/(W-1)`` (a linspace along
    the width, constant down a column), channel 1 the row coordinate
    ``-1 + 2h/(H-1)``. A side of 1 gives -1.

    Args:
        height (int): H.
        width (int): W.
        dtype (torch.dtype, optional): Floating dtype; torch's default
            when None.
        device (torch.device | str, optional): Device of the result.

    Returns:
        torch.Tensor: (1, 2, H, W).
    """
    loc_w = torch.linspace(-1.0, 1.0, width, dtype=dtype, device=device)
    loc_h = torch.linspace(-1.0, 1.0, height, dtype=dtype, device=device)
    return torch.stack(
        [
            loc_w.view(1, width).expand(height, width),
            loc_h.view(height, 1).expand(height, width),
        ]
    ).unsqueeze(0)


class SAM(nn.Module):
    """Pairwise or patchwise self-attention (upstream ``SAM``).

    Widths follow the block width C: r = C/16 relation channels (φ, ψ),
    m = C/4 value channels (β), Cw = m/8 attention weights per slot.
    Padding is p = (d(k-1)+1)//2 (= d(k-1)/2 for odd k), reflect mode.

    Submodules (checkpoint keys, in upstream order): ``conv1`` φ,
    ``conv2`` ψ (1×1 C→r, bias), ``conv3`` β (1×1 C→m, bias),
    ``conv_w`` γ (see below) and, pairwise only, ``conv_p`` (1×1 2→2,
    bias) applied to the position map.

    * pairwise ``conv_w``: BN(r+2), ReLU, Conv r+2→r (no bias), BN(r),
      ReLU, Conv r→Cw (bias). It runs on δ (N, r+2, K, L), so the BN
      statistics span N·K·L. α = softmax over the K slots.
    * patchwise ``conv_w``: BN(r(K+1)), ReLU, Conv r(K+1)→Cw (no bias),
      BN(Cw), ReLU, Conv Cw→K·Cw (bias). It runs on
      cat([φx as (N, r, 1, L), keys (N, r·K, 1, L)]) where key channel
      c·K+j is ψx at slot j; output channel o is weight channel o//K at
      slot o%K.

    Some biases only add constants that a later softmax or train-mode BN
    removes (pairwise: ``conv1``/``conv2``/``conv3``/``conv_p`` and
    ``conv_w.5`` biases; patchwise: ``conv1``/``conv2`` biases). They are
    kept, as upstream, so parameter counts and checkpoints match.

    Args:
        sa_type (str): 'pairwise' or 'patchwise'.
        channels (int): Block width C, a multiple of 32.
        kernel_size (int): Footprint side k, odd.
        dilation (int): Footprint dilation d.
        stride (int): Must be 1 (the only stride SAN uses; upstream's
            patchwise module crashed for any other).

    Shapes:
        input (N, C, H, W) with H, W > p -> output (N, C/4, H, W).

    Raises:
        ValueError: Unknown ``sa_type`` (integers included), C not a
            positive multiple of 32, even or non-positive k, d < 1, or
            stride != 1.
    """

    def __init__(
        self,
        sa_type: str,
        channels: int,
        kernel_size: int = 3,
        dilation: int = 1,
        stride: int = 1,
    ) -> None:
        super().__init__()
        if not isinstance(sa_type, str) or sa_type not in SA_TYPES:
            raise ValueError(
                f'SAM: sa_type must be one of {SA_TYPES}, got {sa_type!r} '
                '(upstream 0 = pairwise, 1 = patchwise)'
            )
        if channels <= 0 or channels % WIDTH_MULTIPLE != 0:
            raise ValueError(
                f'SAM: channels must be a positive multiple of '
                f'{WIDTH_MULTIPLE} (C/16 relation and C/32 weight '
                f'channels), got {channels}'
            )
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(
                f'SAM: kernel_size must be odd and positive, got {kernel_size}'
            )
        if dilation < 1:
            raise ValueError(f'SAM: dilation must be >= 1, got {dilation}')
        if stride != 1:
            raise ValueError(
                f'SAM: only stride 1 is supported, got {stride} (SAN '
                'downsamples with max-pools between stages)'
            )
        self.sa_type = sa_type
        self.channels = channels
        self.kernel_size = kernel_size
        self.dilation = dilation
        self.stride = stride
        self.rel_channels = r = channels // 16
        self.mid_channels = m = channels // 4
        self.weight_channels = cw = m // 8
        self.num_slots = k2 = kernel_size * kernel_size
        self.padding = pad = (dilation * (kernel_size - 1) + 1) // 2

        self.conv1 = nn.Conv2d(channels, r, kernel_size=1)
        self.conv2 = nn.Conv2d(channels, r, kernel_size=1)
        self.conv3 = nn.Conv2d(channels, m, kernel_size=1)
        if sa_type == 'pairwise':
            self.conv_w = nn.Sequential(
                nn.BatchNorm2d(r + 2),
                nn.ReLU(inplace=True),
                nn.Conv2d(r + 2, r, kernel_size=1, bias=False),
                nn.BatchNorm2d(r),
                nn.ReLU(inplace=True),
                nn.Conv2d(r, cw, kernel_size=1),
            )
            self.conv_p = nn.Conv2d(2, 2, kernel_size=1)
            self.subtraction = Subtraction(
                kernel_size, 1, pad, dilation, 'reflect'
            )
            self.subtraction2 = Subtraction2(
                kernel_size, 1, pad, dilation, 'reflect'
            )
            self.softmax = nn.Softmax(dim=-2)
        else:
            self.conv_w = nn.Sequential(
                nn.BatchNorm2d(r * (k2 + 1)),
                nn.ReLU(inplace=True),
                nn.Conv2d(r * (k2 + 1), cw, kernel_size=1, bias=False),
                nn.BatchNorm2d(cw),
                nn.ReLU(inplace=True),
                nn.Conv2d(cw, k2 * cw, kernel_size=1),
            )
            # Upstream padded k//2 whatever d (crashing for d > 1); the
            # 'same' padding d(k-1)/2 agrees with it at d = 1.
            self.pad = nn.ReflectionPad2d(dilation * (kernel_size - 1) // 2)
            self.unfold_j = nn.Unfold(kernel_size, dilation=dilation)
        self.aggregation = Aggregation(
            kernel_size, 1, pad, dilation, 'reflect'
        )

    def extra_repr(self) -> str:
        return (
            f'sa_type={self.sa_type!r}, channels={self.channels}, '
            f'kernel_size={self.kernel_size}, dilation={self.dilation}'
        )

    def attention(self, x: torch.Tensor) -> torch.Tensor:
        """Attention weights α.

        Args:
            x (torch.Tensor): (N, C, H, W).

        Returns:
            torch.Tensor: (N, Cw, K, H·W); pairwise weights sum to 1 over
            the K slots.
        """
        n, _, h, w = x.shape
        x1, x2 = self.conv1(x), self.conv2(x)
        if self.sa_type == 'pairwise':
            # Rebuilt per call in x's dtype/device (upstream hard-coded
            # CUDA float32); the reflect padding of the subtraction makes
            # border relations use reflected coordinates, as upstream.
            pos = self.conv_p(position_map(h, w, x.dtype, x.device))
            pos = self.subtraction(pos).expand(n, -1, -1, -1)
            delta = torch.cat([self.subtraction2(x1, x2), pos], 1)
            return self.softmax(self.conv_w(delta))
        length = h * w
        query = x1.view(n, self.rel_channels, 1, length)
        keys = self.unfold_j(self.pad(x2)).view(n, -1, 1, length)
        weight = self.conv_w(torch.cat([query, keys], 1))
        return weight.view(n, self.weight_channels, self.num_slots, length)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Attend over each position's k×k footprint.

        Args:
            x (torch.Tensor): (N, C, H, W) with H, W > p.

        Returns:
            torch.Tensor: (N, C/4, H, W).

        Raises:
            ValueError: ``x`` is not (N, C, H, W) or a side is <= p (reflect
                padding needs a larger map).
        """
        if x.dim() != 4 or x.shape[1] != self.channels:
            raise ValueError(
                f'SAM: expected input (N, {self.channels}, H, W), got '
                f'{tuple(x.shape)}'
            )
        h, w = x.shape[-2:]
        if min(h, w) <= self.padding:
            raise ValueError(
                f'SAM: a {h}x{w} map is too small for kernel_size='
                f'{self.kernel_size}, dilation={self.dilation}: reflect '
                f'padding {self.padding} needs both sides > {self.padding}'
            )
        return self.aggregation(self.conv3(x), self.attention(x))
