"""``SANMixedNet``: the fork's hybrid ResNet / SAN / non-local backbone.

FearsomeTuna/SAN ``model/hybrid.py`` (``MixedModel``), restated from spec
§2.4: stages of pre-activation ResNet bottlenecks ('res'), SAN blocks
('san') or non-local blocks ('nl'), optionally with non-local blocks
interleaved into 'res'/'san' stages.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from mmengine.model import BaseModule
from torch import nn

from shared.registry import MODELS

from .nl_block import NLBlock
from .sam import SA_TYPES
from .san import SANBlock

__all__ = [
    'SANMixedNet',
    'PreActBottleneck',
    'TransitionLayer',
    'nl_interleave',
]

STAGE_TYPES = ('res', 'san', 'nl')
STEM_CHANNELS = 64
_RES_WIDTHS = (256, 512, 1024, 2048)
_SAN_WIDTHS = (64, 256, 512, 1024, 2048)


def _preset(
    layer_types: Sequence[str],
    layers: Sequence[int],
    widths: Sequence[int] = _RES_WIDTHS,
    sa_type: str | None = None,
    added_nl_blocks: Sequence[int] | None = None,
) -> dict:
    return dict(
        layer_types=tuple(layer_types),
        layers=tuple(layers),
        widths=tuple(widths),
        sa_type=sa_type,
        added_nl_blocks=None
        if added_nl_blocks is None
        else tuple(added_nl_blocks),
    )


def _build_presets() -> dict[str, dict]:
    res4 = ('res',) * 4
    presets = {
        'resnet26': _preset(res4, (1, 2, 4, 1)),
        'resnet26_nl': _preset(
            res4, (1, 1, 2, 1), added_nl_blocks=(0, 1, 2, 0)
        ),
        'hybrid_nl_2-2': _preset(('res', 'res', 'nl', 'nl'), (1, 2, 4, 1)),
        'hybrid_nl_3-1': _preset(('res', 'res', 'res', 'nl'), (1, 2, 4, 1)),
        'nl': _preset(('nl',) * 4, (3, 2, 4, 1)),
    }
    for short, sa_type in (('pair', 'pairwise'), ('patch', 'patchwise')):
        for split, types in (
            ('2-2', ('res', 'res', 'san', 'san')),
            ('3-1', ('res', 'res', 'res', 'san')),
        ):
            name = f'hybrid_{short}_{split}'
            presets[name] = _preset(types, (1, 2, 4, 1), sa_type=sa_type)
            presets[name + '_nl'] = _preset(
                types,
                (1, 1, 2, 1),
                sa_type=sa_type,
                added_nl_blocks=(0, 1, 2, 0),
            )
    for sa_type in SA_TYPES:
        presets[f'san10_{sa_type}'] = _preset(
            ('san',) * 5, (2, 1, 2, 4, 1), _SAN_WIDTHS, sa_type
        )
        presets[f'san10_{sa_type}_nl'] = _preset(
            ('san',) * 5,
            (2, 1, 1, 2, 1),
            _SAN_WIDTHS,
            sa_type,
            added_nl_blocks=(0, 0, 1, 2, 0),
        )
    return presets


#: Named architectures (spec §2.4 presets table); values are the keyword
#: arguments they stand for.
ARCH_PRESETS: dict[str, dict] = _build_presets()


def nl_interleave(stage_type: str, n: int, q: int) -> list[str]:
    """Block order of a 'res' or 'san' stage with ``q`` NL blocks added.

    Symbols: ``'T'`` a :class:`TransitionLayer`, ``'R'`` a ResNet
    bottleneck (the first 'R' is the strided/projecting one), ``'S'`` a
    SAN block, ``'NL'`` an :class:`NLBlock`. NL blocks go between every
    other pair of blocks when 2q <= n, else between every pair, counting
    from the end; the last block is never an NL block.

    Examples (res): 6/2 → R,R,R,NL,R,R,NL,R; 6/3 → R,NL,R,R,NL,R,R,NL,R;
    6/4 → R,R,NL,R,NL,R,NL,R,NL,R; 1/1 → T,NL,R. SAN: 2/2 → NL,S,NL,S.
    (A 'san' stage's own leading transition is not part of this list.)
    With q = n the transition, not the first bottleneck, changes the shape,
    so such a stage halves the resolution even as stage 0 (as upstream).

    Args:
        stage_type (str): ``'res'`` or ``'san'``.
        n (int): Number of res/SAN blocks, >= 1.
        q (int): Number of NL blocks, 0 <= q <= n.

    Returns:
        list[str]: The block symbols in order (n + q of them, plus a
        leading ``'T'`` for a res stage with q = n >= 1).

    Raises:
        ValueError: ``stage_type`` not 'res'/'san', n < 1, q < 0 or q > n.
    """
    if stage_type not in ('res', 'san'):
        raise ValueError(
            f"nl_interleave: NL blocks can be added to 'res' or 'san' "
            f'stages only, got {stage_type!r}'
        )
    if n < 1:
        raise ValueError(f'nl_interleave: n must be >= 1, got {n}')
    if not 0 <= q <= n:
        raise ValueError(
            f'nl_interleave: the number of added NL blocks must be in '
            f'[0, {n}] (the stage has {n} blocks), got {q}'
        )
    if stage_type == 'san':
        s = 'S'
        if q == 0:
            return [s] * n
        if 2 * q <= n:
            return [s] * (n - 2 * q + 1) + ['NL', s, s] * (q - 1) + ['NL', s]
        return [s] * (n - q) + ['NL', s] * q
    r = 'R'
    if q == 0:
        return [r] * n
    if q == n:
        return ['T'] + ['NL', r] * q
    if 2 * q <= n:
        return [r] + [r] * (n - 2 * q) + ['NL', r, r] * (q - 1) + ['NL', r]
    return [r] + [r] * (n - q - 1) + ['NL', r] * q


class TransitionLayer(nn.Sequential):
    """BN(in) → ReLU → 2×2/2 max-pool → 1×1 conv in→out (no bias).

    Halves the resolution of (N, in, H, W) to (N, out, ⌊H/2⌋, ⌊W/2⌋).
    Keys ``0`` (BN) and ``3`` (conv).

    Args:
        in_channels (int): Input channels.
        out_channels (int): Output channels.
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(
            nn.BatchNorm2d(in_channels),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=2, stride=2),
            nn.Conv2d(in_channels, out_channels, 1, bias=False),
        )


class PreActBottleneck(nn.Module):
    """Full pre-activation ResNet bottleneck (v1.5: stride on the 3×3).

    ::

        out = conv1(relu(bn1(x)))          1×1 in→w
        out = conv2(relu(bn2(out)))        3×3 w→w, stride s, padding 1
        out = conv3(relu(bn3(out)))        1×1 w→out
        return out + (downsample(x) if downsample else x)

    with w = out / 4, every conv without bias, and no ReLU after the add.
    ``downsample`` (1×1/s conv without bias + BN) acts on the raw input.

    Args:
        in_channels (int): Input channels.
        out_channels (int): Output channels, divisible by 4.
        stride (int): Stride of the 3×3 conv. Defaults to 1.
        downsample (nn.Module | None): Shortcut projection. Defaults to
            None (identity).
    """

    expansion = 4

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
    ) -> None:
        super().__init__()
        if out_channels % self.expansion:
            raise ValueError(
                f'PreActBottleneck: out_channels must be divisible by 4, '
                f'got {out_channels}'
            )
        width = out_channels // self.expansion
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.conv1 = nn.Conv2d(in_channels, width, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(
            width, width, 3, stride=stride, padding=1, bias=False
        )
        self.bn3 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, out_channels, 1, bias=False)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, in, H, W) → (N, out, ⌈H/s⌉, ⌈W/s⌉)."""
        out = self.conv1(self.relu(self.bn1(x)))
        out = self.conv2(self.relu(self.bn2(out)))
        out = self.conv3(self.relu(self.bn3(out)))
        identity = x if self.downsample is None else self.downsample(x)
        return out + identity


def _projection(
    in_channels: int, out_channels: int, stride: int
) -> nn.Sequential | None:
    if stride == 1 and in_channels == out_channels:
        return None
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
        nn.BatchNorm2d(out_channels),
    )


@MODELS.register_module()
class SANMixedNet(BaseModule):
    """Hybrid backbone mixing ResNet, SAN and non-local stages (the fork).

    Stem (by ``layer_types[0]``): 'res' → 7×7/2 conv (3→64, no bias) +
    3×3/2 max-pool, with no BN/ReLU (the net is pre-activation); 'san' or
    'nl' → a bare 1×1 conv 3→64 (no bias).

    Stage i, with input width ``([64] + widths[:-1])[i]``:

    - 'res': :class:`PreActBottleneck` blocks of width out/4; the first one
      has stride s = 1 if i == 0 else 2 and a projection shortcut when the
      shape changes;
    - 'san': :class:`TransitionLayer`, then SAN blocks (kernel 3 if i == 0,
      else 7) of type ``sa_type``;
    - 'nl': :class:`TransitionLayer`, then :class:`NLBlock` s.

    The last stage ends with BN(widths[-1]) + ReLU. NL blocks added to a
    'res'/'san' stage are interleaved as :func:`nl_interleave` says.

    Layout: ``stem`` (a conv, or ``stem.0`` for the res stem);
    ``stages.{i}`` = Sequential([TransitionLayer]?, blocks, [BN, ReLU]?),
    where blocks is a Sequential (a res stage with q = n NL blocks holds its
    TransitionLayer as ``blocks.0``). Res block keys: ``bn1..3``,
    ``conv1..3``, ``downsample.{0,1}``; NL block keys: ``bn``, ``theta``,
    ``phi.0``, ``g.0``, ``W_z.{0,2}``. The nesting is the fork's, so its
    checkpoints map by prefix only: ``stem.`` → ``backbone.stem.``,
    ``backbone.{i}.`` → ``backbone.stages.{i}.``, ``fc.`` → ``head.fc.``.

    The head (in the config) is GAP + Linear(widths[-1], classes) with
    PyTorch's default init, i.e. ``LinearClsHead(init_cfg=None)``.
    Cross-checks: 'resnet26' has exactly as many parameters as the
    post-activation ResNet26 (``SANResNet`` depth 26 / torchvision, 13.7M
    with 1000 classes), and 'san10_*' equals ``SAN`` SAN10 in parameters
    and op sequence (only keys and init differ).

    For a 224² input the stages of the presets run at 56…7 (res stem) or
    112…7 / 112…14 (SAN stem, 5 / 4 stages).

    Args:
        arch (str | None): A preset name (:data:`ARCH_PRESETS`). When
            given, ``layers``, ``layer_types``, ``widths``, ``sa_type`` and
            ``added_nl_blocks`` must be left None.
        layers (Sequence[int]): Res/SAN/NL blocks per stage, each >= 1.
        layer_types (Sequence[str]): Stage types, each 'res', 'san' or
            'nl'.
        widths (Sequence[int]): Output channels per stage.
        sa_type (str | None): 'pairwise' or 'patchwise'; required when a
            stage is 'san'.
        added_nl_blocks (Sequence[int] | None): NL blocks added per stage,
            0 <= q <= layers[i]; must be 0 for 'nl' stages. Defaults to
            none added.
        out_indices (Sequence[int]): Stages whose outputs are returned
            (negative indices count from the end). Defaults to (-1,).
        weight_init (str | None): 'fork' — kaiming-normal (fan_out, relu)
            on every Conv2d weight, conv biases left at PyTorch's default,
            BN weight 1 / bias 0; None keeps PyTorch's defaults.
        init_cfg (dict | list[dict] | None): MMEngine init config (e.g.
            ``Pretrained``); None keeps the construction-time init.

    Raises:
        ValueError: An unknown ``arch`` or conflicting explicit arguments;
            lists of unequal length; an unknown stage type; a 'san' stage
            without a valid ``sa_type``; a res width not divisible by 4 or
            a SAN width not divisible by 32; a stage with < 1 block; an
            invalid ``added_nl_blocks`` entry; a bad ``out_indices`` or
            ``weight_init``.
    """

    def __init__(
        self,
        arch: str | None = None,
        layers: Sequence[int] | None = None,
        layer_types: Sequence[str] | None = None,
        widths: Sequence[int] | None = None,
        sa_type: str | None = None,
        added_nl_blocks: Sequence[int] | None = None,
        out_indices: Sequence[int] = (-1,),
        weight_init: str | None = 'fork',
        init_cfg: dict | list[dict] | None = None,
    ) -> None:
        super().__init__(init_cfg=init_cfg)
        if arch is not None:
            if arch not in ARCH_PRESETS:
                raise ValueError(
                    f'SANMixedNet: unknown arch {arch!r}; valid archs: '
                    f'{sorted(ARCH_PRESETS)}'
                )
            given = {
                k: v
                for k, v in dict(
                    layers=layers,
                    layer_types=layer_types,
                    widths=widths,
                    sa_type=sa_type,
                    added_nl_blocks=added_nl_blocks,
                ).items()
                if v is not None
            }
            if given:
                raise ValueError(
                    f'SANMixedNet: arch={arch!r} fixes the structure; do not '
                    f'also pass {sorted(given)}'
                )
            preset = ARCH_PRESETS[arch]
            layers = preset['layers']
            layer_types = preset['layer_types']
            widths = preset['widths']
            sa_type = preset['sa_type']
            added_nl_blocks = preset['added_nl_blocks']
        if layers is None or layer_types is None or widths is None:
            raise ValueError(
                'SANMixedNet: give arch (one of '
                f'{sorted(ARCH_PRESETS)}) or all of layers, layer_types '
                'and widths'
            )
        layers = [int(n) for n in layers]
        layer_types = list(layer_types)
        widths = [int(w) for w in widths]
        num_stages = len(layers)
        if added_nl_blocks is None:
            added_nl_blocks = [0] * num_stages
        added_nl_blocks = [int(q) for q in added_nl_blocks]
        lengths = dict(
            layers=len(layers),
            layer_types=len(layer_types),
            widths=len(widths),
            added_nl_blocks=len(added_nl_blocks),
        )
        if num_stages < 1 or len(set(lengths.values())) != 1:
            raise ValueError(
                'SANMixedNet: layers, layer_types, widths and '
                f'added_nl_blocks must be non-empty and of equal length, got '
                f'lengths {lengths}'
            )
        self._check_stages(layers, layer_types, widths, sa_type)
        self._check_added_nl(layers, layer_types, added_nl_blocks)
        if weight_init not in ('fork', None):
            raise ValueError(
                f"SANMixedNet: weight_init must be 'fork' or None, got "
                f'{weight_init!r}'
            )
        if isinstance(out_indices, int):
            out_indices = (out_indices,)
        indices = []
        for idx in out_indices:
            if not -num_stages <= int(idx) < num_stages:
                raise ValueError(
                    f'SANMixedNet: out_indices entry {idx} is out of range '
                    f'for {num_stages} stages'
                )
            indices.append(int(idx) % num_stages)

        self.arch = arch
        self.layers = tuple(layers)
        self.layer_types = tuple(layer_types)
        self.widths = tuple(widths)
        self.sa_type = sa_type
        self.added_nl_blocks = tuple(added_nl_blocks)
        self.out_indices = tuple(indices)
        self.weight_init = weight_init
        self.num_stages = num_stages

        if layer_types[0] == 'res':
            self.stem = nn.Sequential(
                nn.Conv2d(
                    3, STEM_CHANNELS, 7, stride=2, padding=3, bias=False
                ),
                nn.MaxPool2d(kernel_size=3, stride=2, padding=1),
            )
        else:
            self.stem = nn.Conv2d(3, STEM_CHANNELS, 1, bias=False)

        in_widths = [STEM_CHANNELS] + widths[:-1]
        stages = []
        for i in range(num_stages):
            stage = self._make_stage(
                i,
                layer_types[i],
                layers[i],
                added_nl_blocks[i],
                in_widths[i],
                widths[i],
            )
            if i == num_stages - 1:
                stage.extend([nn.BatchNorm2d(widths[-1]), nn.ReLU(True)])
            stages.append(stage)
        self.stages = nn.ModuleList(stages)
        if weight_init == 'fork':
            self._fork_init()

    @staticmethod
    def _check_stages(
        layers: list[int],
        layer_types: list[str],
        widths: list[int],
        sa_type: str | None,
    ) -> None:
        for i, (n, t, w) in enumerate(zip(layers, layer_types, widths)):
            if t not in STAGE_TYPES:
                raise ValueError(
                    f'SANMixedNet: stage {i} has unknown type {t!r}; valid '
                    f'types: {list(STAGE_TYPES)}'
                )
            if n < 1:
                raise ValueError(
                    f'SANMixedNet: stage {i} needs >= 1 block, got {n}'
                )
            if w < 1:
                raise ValueError(
                    f'SANMixedNet: stage {i} width must be >= 1, got {w}'
                )
            if t == 'res' and w % 4:
                raise ValueError(
                    f'SANMixedNet: res stage {i} width {w} is not '
                    'divisible by 4 (bottleneck width = out / 4)'
                )
            if t == 'san' and w % 32:
                raise ValueError(
                    f'SANMixedNet: san stage {i} width {w} is not '
                    'divisible by 32 (SAM needs C/16 and C/4/8 channels)'
                )
        if sa_type is not None and sa_type not in SA_TYPES:
            raise ValueError(
                f'SANMixedNet: sa_type must be one of {list(SA_TYPES)} or '
                f'None, got {sa_type!r}'
            )
        if 'san' in layer_types and sa_type not in SA_TYPES:
            raise ValueError(
                f"SANMixedNet: 'san' stages need sa_type in "
                f'{list(SA_TYPES)}, got {sa_type!r}'
            )

    @staticmethod
    def _check_added_nl(
        layers: list[int], layer_types: list[str], added: list[int]
    ) -> None:
        for i, (n, t, q) in enumerate(zip(layers, layer_types, added)):
            if q == 0:
                continue
            if t == 'nl':
                raise ValueError(
                    f"SANMixedNet: stage {i} is an 'nl' stage; NL blocks "
                    "can be added to 'res' and 'san' stages only, got "
                    f'added_nl_blocks[{i}] = {q}'
                )
            if not 0 <= q <= n:
                raise ValueError(
                    f'SANMixedNet: added_nl_blocks[{i}] must be in [0, {n}] '
                    f'(stage {i} has {n} blocks), got {q}'
                )

    def _make_stage(
        self,
        i: int,
        stage_type: str,
        n: int,
        q: int,
        in_channels: int,
        out_channels: int,
    ) -> nn.Sequential:
        if stage_type == 'nl':
            blocks = [NLBlock(out_channels) for _ in range(n)]
            return nn.Sequential(
                TransitionLayer(in_channels, out_channels),
                nn.Sequential(*blocks),
            )
        order = nl_interleave(stage_type, n, q)
        if stage_type == 'san':
            kernel_size = 3 if i == 0 else 7
            blocks = [
                NLBlock(out_channels)
                if sym == 'NL'
                else SANBlock(self.sa_type, out_channels, kernel_size)
                for sym in order
            ]
            return nn.Sequential(
                TransitionLayer(in_channels, out_channels),
                nn.Sequential(*blocks),
            )
        stride = 1 if i == 0 else 2
        blocks = []
        for j, sym in enumerate(order):
            if sym == 'T':
                blocks.append(TransitionLayer(in_channels, out_channels))
            elif sym == 'NL':
                blocks.append(NLBlock(out_channels))
            elif j == 0:
                blocks.append(
                    PreActBottleneck(
                        in_channels,
                        out_channels,
                        stride,
                        _projection(in_channels, out_channels, stride),
                    )
                )
            else:
                blocks.append(PreActBottleneck(out_channels, out_channels))
        return nn.Sequential(nn.Sequential(*blocks))

    def _fork_init(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(
                    m.weight, mode='fan_out', nonlinearity='relu'
                )
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def init_weights(self) -> None:
        """Keep the construction-time init unless ``init_cfg`` is set."""
        if self.init_cfg is None:
            self._is_init = True
            return
        super().init_weights()

    def stage_sizes(self, size: int) -> list[int]:
        """Side length of every stage's maps for an input side ``size``.

        Applies the stem and the stages' down-sampling (conv/pool output
        size formulas) to one spatial dimension.

        Args:
            size (int): Input height or width, in pixels.

        Returns:
            list[int]: The stage output side lengths, one per stage.
        """
        if self.layer_types[0] == 'res':
            size = (size - 1) // 2 + 1  # 7×7/2 conv, padding 3
            size = (size - 1) // 2 + 1  # 3×3/2 max-pool, padding 1
        sizes = []
        for i, (t, n, q) in enumerate(
            zip(self.layer_types, self.layers, self.added_nl_blocks)
        ):
            if t != 'res' or q == n:
                size //= 2  # TransitionLayer's 2×2/2 max-pool
            elif i > 0:
                size = (size - 1) // 2 + 1  # strided 3×3 conv, padding 1
            sizes.append(size)
        return sizes

    def _min_side(self, i: int) -> int:
        """Smallest map side stage ``i``'s blocks accept."""
        t = self.layer_types[i]
        if t == 'san':
            # Reflect padding (k-1)/2 must be smaller than the map.
            return (3 if i == 0 else 7) // 2 + 1
        if t == 'nl' or self.added_nl_blocks[i]:
            return 2  # the NL block's 2×2 sub-sampling
        return 1

    def min_input_size(self) -> int:
        """Smallest square input side every stage accepts."""
        size = 1
        while not all(
            s >= self._min_side(i)
            for i, s in enumerate(self.stage_sizes(size))
        ):
            size += 1
        return size

    def _check_input(self, x: torch.Tensor) -> None:
        if x.dim() != 4:
            raise ValueError(
                f'SANMixedNet: expected (N, 3, H, W) images, got shape '
                f'{tuple(x.shape)}'
            )
        for dim, side in zip('HW', x.shape[-2:]):
            for i, s in enumerate(self.stage_sizes(int(side))):
                need = self._min_side(i)
                if s < need:
                    raise ValueError(
                        f'SANMixedNet: input {dim}={side} gives stage {i} '
                        f"('{self.layer_types[i]}') maps of side {s}, but it "
                        f'needs >= {need}; use inputs of at least '
                        f'{self.min_input_size()} pixels'
                    )

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Run the stem and stages.

        Args:
            x (torch.Tensor): Images (N, 3, H, W).

        Returns:
            tuple[torch.Tensor, ...]: The outputs of the stages in
            ``out_indices`` (ascending stage order), each
            (N, widths[i], H_i, W_i); the last one is after the final
            BN + ReLU.

        Raises:
            ValueError: ``x`` is not 4-D, or too small for a stage (SAN
                stages need maps larger than the reflect padding (k-1)/2,
                NL blocks at least 2×2); the message gives the minimum
                input size.
        """
        self._check_input(x)
        x = self.stem(x)
        outs = []
        for i, stage in enumerate(self.stages):
            x = stage(x)
            if i in self.out_indices:
                outs.append(x)
        return tuple(outs)
