"""``SANResNet``: the ResNet-26/38/50 baselines of the SAN code base (§2.3).

hszhao/SAN compares its self-attention networks with torchvision v1.5
bottleneck ResNets of depth 26, 38 and 50 (README: 13.7M / 19.6M / 25.6M
parameters with a 1000-class head). This backbone is mmpretrain's
:class:`~mmpretrain.models.backbones.ResNet` with its depth table replaced
by those three depths, the stride on the 3×3 conv (``style='pytorch'``), no
zero-initialised residual BN and torchvision's initialisation.
"""

from __future__ import annotations

import copy

from mmpretrain.models.backbones import ResNet
from mmpretrain.models.backbones.resnet import Bottleneck

from shared.registry import MODELS

__all__ = ['SANResNet']

#: torchvision's ResNet init: kaiming-normal fan_out on convs, BN 1/0.
TORCHVISION_INIT = (
    dict(
        type='Kaiming',
        layer=['Conv2d'],
        mode='fan_out',
        nonlinearity='relu',
        distribution='normal',
    ),
    dict(type='Constant', val=1, bias=0, layer=['_BatchNorm']),
)


@MODELS.register_module()
class SANResNet(ResNet):
    """Torchvision-style bottleneck ResNet-26/38/50 (SAN's baselines).

    Structure (input ``(N, 3, H, W)``): 7×7/2 conv (3→64, no bias) + BN +
    ReLU, 3×3/2 max-pool, then four stages of bottlenecks 1×1 → 3×3
    (stride 2 in the first block of stages 2-4) → 1×1 (×4 expansion), each
    conv followed by BN, ReLU after the residual add, and a 1×1/s conv + BN
    projection on the first block of every stage. Stage outputs are
    ``(N, 256, H/4, W/4)``, ``(N, 512, H/8, W/8)``, ``(N, 1024, H/16,
    W/16)`` and ``(N, 2048, H/32, W/32)``.

    Blocks per stage: 26 = (1, 2, 4, 1), 38 = (2, 3, 5, 2), 50 = (3, 4, 6, 3);
    depth 50 is torchvision's ``resnet50``.

    State-dict keys equal torchvision's (``conv1``, ``bn1``,
    ``layer{1-4}.{b}.{conv,bn}{1-3}``, ``layer{s}.0.downsample.{0,1}``), so a
    torchvision checkpoint maps onto ``backbone.`` plus ``fc.`` →
    ``head.fc.``.

    Initialisation follows torchvision: kaiming-normal (``fan_out``, ReLU
    gain) on every conv, BN weight 1 / bias 0, no zero-initialised last BN.
    Pair it with ``LinearClsHead(init_cfg=None)`` so that the classifier
    keeps PyTorch's default ``Linear`` init, as torchvision does.

    Args:
        depth (int): 26, 38 or 50.
        zero_init_residual (bool): Zero the last BN of every block. Defaults
            to False (torchvision's default and SAN's baselines).
        init_cfg (dict | list[dict] | None): mmengine init config. Defaults
            to torchvision's scheme described above (:data:`TORCHVISION_INIT`);
            None leaves PyTorch's per-layer defaults.
        **kwargs: The remaining :class:`ResNet` arguments (``out_indices``,
            ``frozen_stages``, ``norm_eval``, ``with_cp``, ...). ``style``
            defaults to ``'pytorch'``.

    Raises:
        ValueError: ``depth`` is not one of 26, 38, 50.
    """

    arch_settings = {
        26: (Bottleneck, (1, 2, 4, 1)),
        38: (Bottleneck, (2, 3, 5, 2)),
        50: (Bottleneck, (3, 4, 6, 3)),
    }

    def __init__(
        self,
        depth: int,
        zero_init_residual: bool = False,
        init_cfg: dict | list[dict] | None = TORCHVISION_INIT,
        **kwargs,
    ) -> None:
        if depth not in self.arch_settings:
            raise ValueError(
                f'SANResNet: depth must be one of '
                f'{sorted(self.arch_settings)}, got {depth!r}'
            )
        if isinstance(init_cfg, tuple):
            init_cfg = copy.deepcopy(list(init_cfg))
        kwargs.setdefault('style', 'pytorch')
        super().__init__(
            depth=depth,
            zero_init_residual=zero_init_residual,
            init_cfg=init_cfg,
            **kwargs,
        )
