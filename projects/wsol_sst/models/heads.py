"""``SSTConvHead``: the cls head and the SOS head of WSOL-SST (§3.3)."""

from __future__ import annotations

import torch
from mmengine.model import BaseModule
from torch import nn

from shared.registry import MODELS

__all__ = ['SSTConvHead']


@MODELS.register_module()
class SSTConvHead(BaseModule):
    """Three-conv head mapping a feature map to per-position outputs.

    ``layers = Sequential(Conv3×3(Cin→mid, pad 1), ReLU,
    Conv3×3(mid→mid, pad 1), ReLU, Conv1×1(mid→Cout))``: the convs sit at
    indices 0, 2 and 4, so the state-dict keys ``layers.{0,2,4}.*`` map one
    to one onto upstream's ``cls.{0,2,4}.*`` and ``sos.{0,2,4}.*``. There is
    no dropout and no normalisation; stride 1 everywhere, so the spatial
    size is kept.

    - **cls head**: ``out_channels = C`` classes; the output is ``cls_map``
      (B, C, h, w), whose spatial mean gives the logits.
    - **SOS head**: ``out_channels = 1``. The output stays (B, 1, h, w);
      the caller squeezes **dim 1** explicitly (never a bare ``squeeze()``,
      which drops the batch dimension at B = 1 as upstream did).

    Weights are Xavier-uniform and biases zero, set at construction as
    upstream does; :meth:`init_weights` (with ``init_cfg=None``) leaves
    them unchanged.

    Args:
        in_channels (int): Cin, the F5 channels (512 VGG16, 768
            InceptionV3).
        mid_channels (int): Width of the two 3×3 convs. Defaults to 1024.
        out_channels (int): Cout: the number of classes (cls head) or 1
            (SOS head). Required.
        init_cfg (dict | list[dict] | None): MMEngine init config. Keep
            ``None`` so the construction-time initialisation stands.

    Raises:
        ValueError: A channel count is missing or below 1.
    """

    def __init__(
        self,
        in_channels: int,
        mid_channels: int = 1024,
        out_channels: int | None = None,
        init_cfg: dict | list[dict] | None = None,
    ) -> None:
        super().__init__(init_cfg=init_cfg)
        if out_channels is None:
            raise ValueError(
                'SSTConvHead: out_channels must be given (the number of '
                'classes for the cls head, 1 for the SOS head)'
            )
        for name, value in (
            ('in_channels', in_channels),
            ('mid_channels', mid_channels),
            ('out_channels', out_channels),
        ):
            if int(value) < 1:
                raise ValueError(
                    f'SSTConvHead: {name} must be >= 1, got {value}'
                )
        self.in_channels = int(in_channels)
        self.mid_channels = int(mid_channels)
        self.out_channels = int(out_channels)
        self.layers = nn.Sequential(
            nn.Conv2d(self.in_channels, self.mid_channels, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(self.mid_channels, self.mid_channels, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(self.mid_channels, self.out_channels, 1),
        )
        for module in self.layers:
            if isinstance(module, nn.Conv2d):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the head.

        Args:
            x (torch.Tensor): (B, Cin, h, w) feature map.

        Returns:
            torch.Tensor: (B, Cout, h, w); (B, 1, h, w) for the SOS head.

        Raises:
            ValueError: ``x`` is not 4-D or its channels differ from
                ``in_channels``.
        """
        if x.dim() != 4 or x.size(1) != self.in_channels:
            raise ValueError(
                f'SSTConvHead: expected a (B, {self.in_channels}, h, w) '
                f'feature map (in_channels={self.in_channels}), got shape '
                f'{tuple(x.shape)}'
            )
        return self.layers(x)
