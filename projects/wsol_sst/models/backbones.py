"""WSOL-SST backbones: ``SSTVGG16``, ``SSTInceptionV3`` (``wsol_sst.md`` §3).

Both are torchvision's conv stacks with SPA's modifications. ``forward``
returns ``(F4, F5)``; the self-correlation (HSC) uses both, the heads and the
self-attention use F5. Pretrained weights are torchvision's ImageNet files,
read from a local path with :func:`shared.utils.checkpoint.safe_load`
(``weights_only=True``); nothing is ever downloaded.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping

import torch
import torch.nn.functional as F
from mmengine.logging import print_log
from mmengine.model import BaseModule
from torch import nn
from torchvision.models.inception import (
    BasicConv2d,
    InceptionA,
    InceptionB,
    InceptionC,
)
from torchvision.models.vgg import cfgs as vgg_cfgs
from torchvision.models.vgg import make_layers

from shared.registry import MODELS
from shared.utils.state_dict import (
    StateDictMismatchError,
    compare_state_dicts,
    read_weight_file,
)

__all__ = [
    'INCEPTION_V3_FILE',
    'MIN_GRID',
    'SSTInceptionV3',
    'SSTVGG16',
    'VGG16_FILE',
    'VGG16_STAGES',
]

#: torchvision's ImageNet weight files (the names users download).
VGG16_FILE = 'vgg16-397923af.pth'
INCEPTION_V3_FILE = 'inception_v3_google-0cc3c7bd.pth'
#: Smallest feature grid side: HSC and SA need at least 2×2 positions.
MIN_GRID = 2
#: (stage attribute, first, end) slices of torchvision's ``vgg16().features``.
#: The trailing pool (index 30) is not built.
VGG16_STAGES = (
    ('conv1_2', 0, 10),
    ('conv3', 10, 17),
    ('conv4', 17, 24),
    ('conv5', 24, 30),
)
#: Upstream key prefixes of the InceptionV3 parts that are not built.
INCEPTION_DROPPED_PREFIXES = (
    'AuxLogits.',
    'Mixed_7a.',
    'Mixed_7b.',
    'Mixed_7c.',
    'fc.',
)
_VGG_FEATURE_KEY = re.compile(r'features\.(\d+)\.(.+)')


def _conv_out(size: int, kernel: int, stride: int = 1, pad: int = 0) -> int:
    """Output side of a conv (or floor-mode pool); ``<= 0`` means empty."""
    return (size + 2 * pad - kernel) // stride + 1 if size > 0 else 0


def _ceil_pool_out(size: int, kernel: int, stride: int, pad: int) -> int:
    """Output side of a ``ceil_mode=True`` pool, PyTorch's rule."""
    if size <= 0 or size + 2 * pad < kernel:
        return 0
    out = -(-(size + 2 * pad - kernel) // stride) + 1
    # The last window must start inside the input or the left padding.
    if (out - 1) * stride >= size + pad:
        out -= 1
    return out


class _SSTBackbone(BaseModule):
    """Shared input checks and local ``Pretrained`` loading.

    Subclasses set ``out_channels`` and ``f4_channels`` and implement
    :meth:`grid_size`, :meth:`_forward` and :meth:`_file_keys`.
    """

    pretrained_file: str = ''
    out_channels: int
    f4_channels: int

    def grid_size(self, height: int, width: int) -> tuple[int, int]:
        """Feature grid (h, w) of F4 and F5 for an input of this size."""
        raise NotImplementedError

    def _forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def _file_keys(self) -> dict[str, str]:
        """Map this module's state-dict keys to the torchvision file's."""
        raise NotImplementedError

    def _dropped(self, key: str) -> bool:
        """Whether a file key belongs to a part that is not built."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Compute the two feature maps.

        Args:
            x (torch.Tensor): Images, (B, 3, H, W), normalised.

        Returns:
            tuple[torch.Tensor, torch.Tensor]: F4 (B, ``f4_channels``, h, w)
            and F5 (B, ``out_channels``, h, w) on the same grid.

        Raises:
            ValueError: ``x`` is not 4-D, or its grid is smaller than 2×2.
        """
        if x.dim() != 4:
            raise ValueError(
                f'{type(self).__name__}: expected a (B, 3, H, W) batch, got '
                f'shape {tuple(x.shape)}'
            )
        height, width = x.shape[-2:]
        grid = self.grid_size(height, width)
        if min(grid) < MIN_GRID:
            raise ValueError(
                f'{type(self).__name__}: input {height}x{width} gives a '
                f'{grid[0]}x{grid[1]} feature grid; self-correlation and '
                f'self-attention need at least {MIN_GRID}x{MIN_GRID} '
                'positions, use larger images'
            )
        return self._forward(x)

    def init_weights(self) -> None:
        """Load ``init_cfg=dict(type='Pretrained', checkpoint=PATH)`` locally.

        ``checkpoint=None`` (or no ``init_cfg``) keeps the construction-time
        initialisation; any other ``init_cfg`` goes to mmengine.
        """
        cfg = self.init_cfg
        if isinstance(cfg, Mapping) and cfg.get('type') == 'Pretrained':
            checkpoint = cfg.get('checkpoint')
            if checkpoint is not None:
                self.load_pretrained(checkpoint)
            self._is_init = True
            return
        if cfg is None:
            self._is_init = True
            return
        super().init_weights()

    def load_pretrained(self, path: str) -> int:
        """Load a torchvision ImageNet state dict from a local file.

        Keys of the parts that are not built are dropped; every other key
        must match in name and shape. BN ``num_batches_tracked`` counters
        absent from older files keep the model's own value.

        Args:
            path (str): Local weight file (a plain state dict, or one under
                ``state_dict``/``model``; ``module.`` is stripped).

        Returns:
            int: Number of tensors loaded.

        Raises:
            FileNotFoundError: ``path`` does not exist.
            shared.utils.checkpoint.UnsafeCheckpointError: The file would
                need arbitrary unpickling.
            StateDictMismatchError: Missing, unexpected or mis-shaped keys,
                every one listed with both shapes (torchvision key names).
        """
        state = read_weight_file(path, self.pretrained_file)
        state = {k: v for k, v in state.items() if not self._dropped(k)}
        to_file = self._file_keys()
        own = self.state_dict()
        expected = {to_file[k]: v for k, v in own.items()}
        for key, value in expected.items():
            if key.endswith('.num_batches_tracked'):
                state.setdefault(key, value)
        problems = compare_state_dicts(expected, state)
        if problems:
            raise StateDictMismatchError(
                f'{path} does not fit {type(self).__name__} (expected the '
                f'torchvision file {self.pretrained_file}; {len(problems)} '
                'problems):\n  ' + '\n  '.join(problems)
            )
        self.load_state_dict({k: state[to_file[k]] for k in own}, strict=True)
        print_log(
            f'{type(self).__name__}: loaded {len(own)} pretrained tensors '
            f'from {path}',
            logger='current',
            level=logging.INFO,
        )
        return len(own)


@MODELS.register_module()
class SSTVGG16(_SSTBackbone):
    """torchvision's VGG16 conv stack without the last pool (§3.1).

    Stages are slices of torchvision's ``vgg16().features`` (13 conv3×3 +
    ReLU, no BN, 2×2/2 max-pools), re-indexed from 0:

    ======== =========== ==========================
    stage    features    output at 224×224
    ======== =========== ==========================
    conv1_2  0–9         128×56×56
    conv3    10–16       256×28×28
    conv4    17–23       F4: 512×14×14 (ends in a pool)
    conv5    24–29       F5: 512×14×14 (after ReLU)
    ======== =========== ==========================

    The output stride is 16: an H×W input gives an ⌊H/16⌋×⌊W/16⌋ grid.

    Args:
        init_cfg (dict | None): ``dict(type='Pretrained', checkpoint=PATH)``
            loads a local ``vgg16-397923af.pth`` (``classifier.*`` dropped);
            ``PATH=None`` keeps torchvision's random initialisation.
    """

    pretrained_file = VGG16_FILE
    out_channels = 512
    f4_channels = 512

    def __init__(self, init_cfg: dict | None = None) -> None:
        super().__init__(init_cfg=init_cfg)
        features = list(make_layers(vgg_cfgs['D'], batch_norm=False))
        for name, start, end in VGG16_STAGES:
            self.add_module(name, nn.Sequential(*features[start:end]))
        # torchvision's VGG initialisation of the conv layers.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(
                    m.weight, mode='fan_out', nonlinearity='relu'
                )
                nn.init.constant_(m.bias, 0)

    def grid_size(self, height: int, width: int) -> tuple[int, int]:
        """Feature grid (h, w): four floor-mode 2×2/2 pools."""
        return int(height) // 16, int(width) // 16

    def _forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.conv1_2(x)
        x = self.conv3(x)
        f4 = self.conv4(x)
        f5 = self.conv5(f4)
        return f4, f5

    def _file_keys(self) -> dict[str, str]:
        offsets = {name: start for name, start, _ in VGG16_STAGES}
        out = {}
        for key in self.state_dict():
            stage, index, rest = key.split('.', 2)
            out[key] = f'features.{int(index) + offsets[stage]}.{rest}'
        return out

    def _dropped(self, key: str) -> bool:
        return key.startswith('classifier.')


class _InceptionBKeepResolution(InceptionB):
    """torchvision's ``InceptionB`` (Mixed_6a) with stride 1 (§3.2).

    The 3×3 branch conv, the last conv of the double-3×3 branch and the
    max-pool use stride 1 and padding 1, so the 28×28 grid at 224² input is
    kept. Parameter names and shapes are torchvision's.
    """

    def __init__(self, in_channels: int) -> None:
        super().__init__(in_channels)
        self.branch3x3 = BasicConv2d(
            in_channels, 384, kernel_size=3, stride=1, padding=1
        )
        self.branch3x3dbl_3 = BasicConv2d(
            96, 96, kernel_size=3, stride=1, padding=1
        )

    def _forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        branch3x3 = self.branch3x3(x)
        branch3x3dbl = self.branch3x3dbl_1(x)
        branch3x3dbl = self.branch3x3dbl_2(branch3x3dbl)
        branch3x3dbl = self.branch3x3dbl_3(branch3x3dbl)
        branch_pool = F.max_pool2d(x, kernel_size=3, stride=1, padding=1)
        return [branch3x3, branch3x3dbl, branch_pool]


@MODELS.register_module()
class SSTInceptionV3(_SSTBackbone):
    """torchvision's InceptionV3 up to Mixed_6e, SPA-modified (§3.2).

    Blocks and their names are torchvision's (``BasicConv2d`` with BN eps
    1e-3, ``InceptionA``/``InceptionC``); Mixed_7x, AuxLogits and fc are not
    built and there is no ``transform_input`` step. Changes:

    - ``Conv2d_1a_3x3`` uses padding 1;
    - both stem max-pools are 3×3/2, padding 1, ``ceil_mode=True``;
    - ``Mixed_6a`` keeps the resolution (stride 1, padding 1).

    At 224×224: 64×56×56 after ``maxpool1``, 192×28×28 after ``maxpool2``,
    F4 = Mixed_5d 288×28×28, F5 = Mixed_6e 768×28×28 (256² → 32×32,
    320² → 40×40). BN layers follow the module's train/eval mode.

    Args:
        init_cfg (dict | None): ``dict(type='Pretrained', checkpoint=PATH)``
            loads a local ``inception_v3_google-*.pth``; ``PATH=None`` keeps
            torchvision's random initialisation (truncated normal, std 0.1).
    """

    pretrained_file = INCEPTION_V3_FILE
    out_channels = 768
    f4_channels = 288

    def __init__(self, init_cfg: dict | None = None) -> None:
        super().__init__(init_cfg=init_cfg)
        self.Conv2d_1a_3x3 = BasicConv2d(
            3, 32, kernel_size=3, stride=2, padding=1
        )
        self.Conv2d_2a_3x3 = BasicConv2d(32, 32, kernel_size=3)
        self.Conv2d_2b_3x3 = BasicConv2d(32, 64, kernel_size=3, padding=1)
        self.maxpool1 = nn.MaxPool2d(3, stride=2, padding=1, ceil_mode=True)
        self.Conv2d_3b_1x1 = BasicConv2d(64, 80, kernel_size=1)
        self.Conv2d_4a_3x3 = BasicConv2d(80, 192, kernel_size=3)
        self.maxpool2 = nn.MaxPool2d(3, stride=2, padding=1, ceil_mode=True)
        self.Mixed_5b = InceptionA(192, pool_features=32)
        self.Mixed_5c = InceptionA(256, pool_features=64)
        self.Mixed_5d = InceptionA(288, pool_features=64)
        self.Mixed_6a = _InceptionBKeepResolution(288)
        self.Mixed_6b = InceptionC(768, channels_7x7=128)
        self.Mixed_6c = InceptionC(768, channels_7x7=160)
        self.Mixed_6d = InceptionC(768, channels_7x7=160)
        self.Mixed_6e = InceptionC(768, channels_7x7=192)
        # torchvision's Inception3(init_weights=True) rule, N(0, 0.1²)
        # truncated to [-2, 2]. The bounds are ±20σ, so a clamp gives the
        # same distribution; torch's trunc_normal_ is ~20x slower here.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                with torch.no_grad():
                    nn.init.normal_(m.weight, mean=0.0, std=0.1).clamp_(-2, 2)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)

    def grid_size(self, height: int, width: int) -> tuple[int, int]:
        """Feature grid (h, w): the stem's strided conv and two pools."""

        def side(size: int) -> int:
            size = _conv_out(int(size), 3, stride=2, pad=1)  # Conv2d_1a
            size = _conv_out(size, 3)  # Conv2d_2a (2b keeps the size)
            size = _ceil_pool_out(size, 3, 2, 1)  # maxpool1
            size = _conv_out(size, 3)  # Conv2d_4a (3b is 1×1)
            return max(_ceil_pool_out(size, 3, 2, 1), 0)  # maxpool2

        return side(height), side(width)

    def _forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.Conv2d_1a_3x3(x)
        x = self.Conv2d_2a_3x3(x)
        x = self.Conv2d_2b_3x3(x)
        x = self.maxpool1(x)
        x = self.Conv2d_3b_1x1(x)
        x = self.Conv2d_4a_3x3(x)
        x = self.maxpool2(x)
        x = self.Mixed_5b(x)
        x = self.Mixed_5c(x)
        f4 = self.Mixed_5d(x)
        x = self.Mixed_6a(f4)
        x = self.Mixed_6b(x)
        x = self.Mixed_6c(x)
        x = self.Mixed_6d(x)
        f5 = self.Mixed_6e(x)
        return f4, f5

    def _file_keys(self) -> dict[str, str]:
        return {key: key for key in self.state_dict()}

    def _dropped(self, key: str) -> bool:
        return key.startswith(INCEPTION_DROPPED_PREFIXES)
