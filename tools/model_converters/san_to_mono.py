"""Convert an upstream SAN / SAN-fork checkpoint to the plugin's key names.

Upstream ``hszhao/SAN`` (``tool/train.py``) and the fork
``FearsomeTuna/SAN`` (``tool/train.py``, ``tool/sbir_train.py``) save
``{'epoch', 'state_dict', 'optimizer', 'scheduler', ...}`` from a
``DistributedDataParallel`` model, so every key starts with ``module.``
(``san.md`` §3.1). A bare state dict, with or without ``module.``, is
accepted too. Only prefixes change (``--arch``):

- ``san``: ``hszhao/SAN`` ``SAN`` (``conv_in``, ``bn_in``, ``conv{s}``,
  ``bn{s}``, ``layer{s}.{b}.*``) or a torchvision-layout ResNet-26/38/50
  baseline (``conv1``, ``bn1``, ``layer{1-4}.*``; hszhao/SAN ships no
  ResNet code, its README baselines are torchvision ResNets): ``fc.`` →
  ``head.fc.``, everything else → ``backbone.`` (``SAN`` / ``SANResNet``
  in an ``ImageClassifier``);
- ``mixed``: the fork's ``MixedModel``: ``stem.`` → ``backbone.stem.``,
  ``backbone.{i}.`` → ``backbone.stages.{i}.``, ``fc.`` → ``head.fc.``
  (``SANMixedNet`` in an ``ImageClassifier``);
- ``sbir``: the fork's ``MixedBiModal``: names unchanged (``sketchStem``,
  ``imageStem``, ``sketchBackbone``, ``imageBackbone``, ``shareBackbone``,
  ``shareFc``, ``bn``, ``shareFeatVecFc``, ``classifier``), as
  ``SANSBIRModel`` keeps the fork's names.

The network structure (SAN block counts and type, mixed stage types,
widths and added non-local blocks, SBIR share count, classes) is read from
the keys and shapes, the plugin's model is built with it on the meta device
(no memory) and every key and shape is checked: unknown keys (named with
their upstream names), missing keys and shape mismatches are all listed and
nothing is written. The output ``{'state_dict': …, 'meta': {…}}`` (``meta``
holds JSON primitives: the structure, the ``SANMixedNet`` preset name when
one matches, and the converter's provenance) is written atomically and loads
with ``weights_only=True``, e.g. through ``tools/test.py CONFIG OUT``.
``--verify-config CONFIG`` also builds the config's model (meta device) and
refuses the conversion unless the result loads into it strictly.

The input is read through :func:`shared.utils.checkpoint.safe_load`: a file
holding pickle globals outside the training-checkpoint allowlist is refused
unless ``--trust-source`` is given.

Examples::

    python tools/model_converters/san_to_mono.py \\
        exp/imagenet/san10_pairwise/model/model_best.pth \\
        checkpoints/san10-pairwise_in1k_converted.pth --arch san \\
        --verify-config configs/san/san10-pairwise_8xb32_in1k.py
    python tools/model_converters/san_to_mono.py \\
        exp/sketch_eitz/resnet26/model/model_best.pth \\
        checkpoints/mixed-resnet26_sketch-eitz_converted.pth --arch mixed
"""

from __future__ import annotations

import argparse
import math
import os.path as osp
import re
import sys
from collections.abc import Mapping
from functools import partial
from typing import Any

REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
if sys.path[0] != REPO_ROOT:
    sys.path.insert(0, REPO_ROOT)

import torch  # noqa: E402
from torch import nn  # noqa: E402

from shared.utils.converter import (  # noqa: E402
    ConversionError,
    converter_parser,
    plain_scalar,
    plain_tensor,
    run_converter,
)
from shared.utils.state_dict import (  # noqa: E402
    compare_state_dicts,
    unwrap_state_dict,
)

__all__ = [
    'ARCHS',
    'ConversionError',
    'convert',
    'guess_layout',
    'main',
    'map_key',
    'parse_args',
    'summary',
]

ARCHS = ('san', 'mixed', 'sbir')
CONVERTER = 'tools/model_converters/san_to_mono.py'
#: Top-level children of the fork's ``MixedBiModal`` (= ``SANSBIRModel``).
SBIR_CHILDREN = (
    'sketchStem',
    'imageStem',
    'sketchBackbone',
    'imageBackbone',
    'shareBackbone',
    'shareFc',
    'bn',
    'shareFeatVecFc',
    'classifier',
)
#: Upstream scalars copied into ``meta`` when present.
META_SCALARS = ('epoch', 'top1_val', 'top5_val', 'mAP_val')
#: At most this many problem lines are printed (the count is always given).
MAX_LINES = 40
NUM_SAN_STAGES = 5
_MIXED_STAGE_RE = re.compile(r'^backbone\.(\d+)\.(.+)$')
_INDEXED_RE = re.compile(r'^(\d+)\.(.+)$')


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options (see the module docstring)."""
    parser = converter_parser(
        'Convert an upstream hszhao/SAN or FearsomeTuna/SAN checkpoint '
        "({'epoch', 'state_dict', 'optimizer', ...}, module.<key>) to the "
        'plugin key names (SAN/SANResNet/SANMixedNet classifiers, '
        'SANSBIRModel).',
        'upstream .pth file',
    )
    parser.add_argument(
        '--arch',
        required=True,
        choices=ARCHS,
        help="'san': hszhao/SAN SAN or a torchvision-layout ResNet "
        "baseline; 'mixed': the fork's MixedModel; 'sbir': the fork's "
        'MixedBiModal',
    )
    parser.add_argument(
        '--verify-config',
        metavar='CONFIG',
        help='also check that the result loads strictly into the model of '
        'this config (built on the meta device); nothing is written '
        'otherwise',
    )
    return parser.parse_args(argv)


def map_key(key: str, arch: str) -> str | None:
    """The plugin key of an upstream key (``module.`` already stripped).

    Args:
        key (str): Upstream key.
        arch (str): ``'san'``, ``'mixed'`` or ``'sbir'``.

    Returns:
        str | None: The plugin key, or None when ``key`` belongs to no
        model of that ``arch`` ('mixed': not under ``stem.``,
        ``backbone.{i}.`` or ``fc.``; 'sbir': not under a
        :data:`SBIR_CHILDREN` child). 'san' maps every key (unknown ones
        are caught by the shape check).
    """
    if arch == 'san':
        return 'head.' + key if key.startswith('fc.') else 'backbone.' + key
    if arch == 'mixed':
        if key.startswith('fc.'):
            return 'head.' + key
        if key.startswith('stem.'):
            return 'backbone.' + key
        if m := _MIXED_STAGE_RE.match(key):
            return f'backbone.stages.{m[1]}.{m[2]}'
        return None
    if arch == 'sbir':
        return key if key.split('.', 1)[0] in SBIR_CHILDREN else None
    raise ValueError(f'arch must be one of {ARCHS}, got {arch!r}')


def guess_layout(keys: Any) -> str | None:
    """The ``--arch`` whose upstream layout ``keys`` look like, or None."""
    keys = list(keys)
    tops = {k.split('.', 1)[0] for k in keys}
    if tops & {'sketchStem', 'imageStem', 'shareBackbone'}:
        return 'sbir'
    if 'stem' in tops or any(_MIXED_STAGE_RE.match(k) for k in keys):
        return 'mixed'
    if tops & {'conv_in', 'layer0', 'layer1'}:
        return 'san'
    return None


def _fail(name: str, what: str, problems: list[str], hint: str = '') -> None:
    """Raise a :class:`ConversionError` listing ``problems``."""
    shown = problems[:MAX_LINES]
    if len(problems) > MAX_LINES:
        shown.append(f'... and {len(problems) - MAX_LINES} more')
    raise ConversionError(
        f'{name} does not fit {what} ({len(problems)} problems):\n  '
        + '\n  '.join(shown)
        + hint
    )


def _layout_hint(state: Mapping[str, torch.Tensor], arch: str) -> str:
    layout = guess_layout(state)
    if layout is None or layout == arch:
        return ''
    return (
        f'\n  note: the keys look like an --arch {layout} checkpoint, not '
        f'--arch {arch}'
    )


def _children(sub: Mapping[str, torch.Tensor]) -> dict[int, dict]:
    """``{'3.x': t}`` -> ``{3: {'x': t}}`` (non-indexed keys dropped)."""
    out: dict[int, dict] = {}
    for key, value in sub.items():
        if m := _INDEXED_RE.match(key):
            out.setdefault(int(m[1]), {})[m[2]] = value
    return dict(sorted(out.items()))


def _under(state: Mapping[str, torch.Tensor], prefix: str) -> dict:
    return {
        k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)
    }


def _shape(sub: Mapping[str, torch.Tensor], key: str, dim: int) -> tuple:
    value = sub.get(key)
    return (
        tuple(value.shape) if value is not None and value.dim() == dim else ()
    )


# --------------------------------------------------------------- structures
def _san_structure(state: Mapping[str, torch.Tensor], name: str) -> dict:
    """``SAN`` arguments read from hszhao/SAN keys."""
    layers = [len(_children(_under(state, f'layer{s}.'))) for s in range(5)]
    pairwise = any('.sam.conv_p.' in k for k in state)
    sa_type = 'pairwise' if pairwise else 'patchwise'
    kernels = [3, 7, 7, 7, 7]
    for s in range(NUM_SAN_STAGES):
        # patchwise: conv_w.0 is BN(r (k^2 + 1)) with r = C / 16
        bn = _shape(state, f'layer{s}.0.sam.conv_w.0.weight', 1)
        conv = _shape(state, f'layer{s}.0.sam.conv1.weight', 4)
        if pairwise or not bn or not conv:
            continue
        ratio, rest = divmod(bn[0], conv[0])
        k = math.isqrt(max(ratio - 1, 0))
        if not rest and k * k == ratio - 1 and k % 2:
            kernels[s] = k
    return dict(sa_type=sa_type, layers=layers, kernels=kernels)


def _resnet_depth(state: Mapping[str, torch.Tensor], name: str) -> int:
    from projects.san.models.san_resnet import SANResNet

    blocks = tuple(
        len(_children(_under(state, f'layer{s}.'))) for s in range(1, 5)
    )
    for depth, (_, counts) in SANResNet.arch_settings.items():
        if tuple(counts) == blocks:
            return depth
    raise ConversionError(
        f'{name}: a ResNet with {blocks} blocks per stage; SANResNet '
        f'supports depths {sorted(SANResNet.arch_settings)} = '
        f'{[tuple(c) for _, c in SANResNet.arch_settings.values()]}'
    )


def _stage_structure(sub: Mapping[str, torch.Tensor], where: str) -> tuple:
    """(type, n, q, width) of one fork stage (keys relative to it)."""
    parts = _children(sub)
    first = parts.get(0, {})
    if _shape(first, '3.weight', 4) and _shape(first, '0.weight', 1):
        # TransitionLayer, then a Sequential of SAN / NL blocks
        kinds = [
            'S' if any(k.startswith('sam.') for k in block) else 'NL'
            for block in _children(parts.get(1, {})).values()
        ]
        width = first['3.weight'].shape[0]
        if kinds and 'S' not in kinds:
            return 'nl', len(kinds), 0, width
        return 'san', kinds.count('S'), kinds.count('NL'), width
    kinds, width = [], None
    for block in _children(first).values():
        if 'conv1.weight' in block:
            kinds.append('R')
            conv3 = _shape(block, 'conv3.weight', 4)
            if width is None and conv3:
                width = conv3[0]
        elif any(k.startswith('theta.') for k in block):
            kinds.append('NL')
    if 'R' not in kinds or width is None:
        raise ConversionError(
            f'{where}: not a res (0.{{b}}.conv1..3), san or nl '
            f'(TransitionLayer 0.0/0.3 + blocks 1.{{b}}) stage of the fork '
            f'(first keys: {sorted(sub)[:6]})'
        )
    return 'res', kinds.count('R'), kinds.count('NL'), width


def _mixed_structure(
    stages: list[Mapping[str, torch.Tensor]], name: str
) -> dict:
    """``SANMixedNet`` arguments from the per-stage key groups."""
    found = [
        _stage_structure(sub, f'{name}: stage {i}')
        for i, sub in enumerate(stages)
    ]
    types = [f[0] for f in found]
    pairwise = any('.sam.conv_p.' in k for sub in stages for k in sub)
    sa_type = None
    if 'san' in types:
        sa_type = 'pairwise' if pairwise else 'patchwise'
    added = [f[2] for f in found]
    return dict(
        layers=[f[1] for f in found],
        layer_types=types,
        widths=[int(f[3]) for f in found],
        sa_type=sa_type,
        added_nl_blocks=added if any(added) else None,
    )


def _preset_name(structure: Mapping[str, Any]) -> str | None:
    """The ``SANMixedNet`` preset equal to ``structure``, if any."""
    from projects.san.models.mixed_net import ARCH_PRESETS

    def norm(d):
        added = d['added_nl_blocks']
        return (
            tuple(d['layer_types']),
            tuple(d['layers']),
            tuple(d['widths']),
            d['sa_type'],
            tuple(added) if added and any(added) else None,
        )

    for arch, preset in ARCH_PRESETS.items():
        if norm(preset) == norm(structure):
            return arch
    return None


def _stage_groups(
    state: Mapping[str, torch.Tensor], prefix: str, name: str
) -> list[dict]:
    """Keys under ``{prefix}{i}.`` for i = 0, 1, … (contiguous)."""
    groups = _children(_under(state, prefix))
    if list(groups) != list(range(len(groups))):
        raise ConversionError(
            f'{name}: the {prefix}{{i}} stages are not numbered 0..n-1 '
            f'(found {list(groups)})'
        )
    return list(groups.values())


def _head_classes(
    state: Mapping[str, torch.Tensor], key: str, name: str
) -> int:
    shape = _shape(state, key, 2)
    if not shape:
        raise ConversionError(
            f'{name}: no classifier {key} (a 2-D Linear weight); first keys: '
            f'{sorted(state)[:10]}'
        )
    return int(shape[0])


def _expected(
    arch: str, state: Mapping[str, torch.Tensor], name: str
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The plugin model's keys/shapes (meta tensors) and the structure."""
    from projects.san.models import SAN, SANMixedNet, SANResNet

    def build(factory, meta=True, **kwargs):
        try:
            # meta: shapes only, no memory, no init cost
            with torch.device('meta' if meta else 'cpu'):
                return factory(**kwargs)
        except ValueError as exc:
            raise ConversionError(
                f'{name}: the structure read from the keys is invalid: {exc}'
                + _layout_hint(state, arch)
            ) from exc

    info: dict[str, Any] = {}
    if arch in ('san', 'mixed'):
        classes = _head_classes(state, 'fc.weight', name)
        info['num_classes'] = classes
        head = build(
            nn.Linear,
            in_features=state['fc.weight'].shape[1],
            out_features=classes,
        )
    if arch == 'san':
        if 'conv_in.weight' in state:
            info['model'] = 'SAN'
            info.update(_san_structure(state, name))
            backbone = build(
                SAN, **{k: info[k] for k in ('sa_type', 'layers', 'kernels')}
            )
        elif _shape(state, 'conv1.weight', 4)[2:] == (7, 7):
            info['model'] = 'SANResNet'
            info['depth'] = _resnet_depth(state, name)
            # mmpretrain's ResNet calls .item() while building: not on meta
            backbone = build(SANResNet, meta=False, depth=info['depth'])
        else:
            raise ConversionError(
                f'{name}: neither a SAN (conv_in.weight) nor a ResNet (7x7 '
                f'conv1.weight) stem (first keys: {sorted(state)[:10]})'
                + _layout_hint(state, arch)
            )
        parts = {'backbone': backbone, 'head.fc': head}
    elif arch == 'mixed':
        stages = _stage_groups(state, 'backbone.', name)
        if not stages:
            raise ConversionError(
                f'{name}: no backbone.{{i}}.* stage keys'
                + _layout_hint(state, arch)
            )
        info['model'] = 'SANMixedNet'
        info.update(_mixed_structure(stages, name))
        info['preset'] = _preset_name(info)
        backbone = build(SANMixedNet, weight_init=None, **_mixed_kwargs(info))
        parts = {'backbone': backbone, 'head.fc': head}
    else:
        from projects.san.models.sbir_model import SANSBIRModel

        unshared = _stage_groups(state, 'sketchBackbone.', name)
        shared = _stage_groups(state, 'shareBackbone.', name)
        if not shared:
            raise ConversionError(
                f'{name}: no shareBackbone.{{i}}.* stage keys'
                + _layout_hint(state, arch)
            )
        info['model'] = 'SANSBIRModel'
        info.update(_mixed_structure(unshared + shared, name))
        info['preset'] = _preset_name(info)
        info['share'] = len(shared)
        info['num_classes'] = _head_classes(state, 'classifier.weight', name)
        info['embed_dims'] = _head_classes(
            state, 'shareFeatVecFc.weight', name
        )
        model = build(
            SANSBIRModel,
            share=info['share'],
            num_classes=info['num_classes'],
            embed_dims=info['embed_dims'],
            **_mixed_kwargs(info),
        )
        return model.state_dict(), info
    expected = {
        f'{prefix}.{key}': value
        for prefix, module in parts.items()
        for key, value in module.state_dict().items()
    }
    return expected, info


def _mixed_kwargs(info: Mapping[str, Any]) -> dict:
    if info.get('preset'):
        return dict(arch=info['preset'])
    return {
        k: info[k]
        for k in (
            'layers',
            'layer_types',
            'widths',
            'sa_type',
            'added_nl_blocks',
        )
    }


# ------------------------------------------------------------------ convert
def convert(
    ckpt: Any,
    name: str = 'checkpoint',
    *,
    arch: str,
    verify_config: str | None = None,
) -> tuple[dict, dict]:
    """Map a loaded upstream SAN / fork checkpoint to the plugin's names.

    Args:
        ckpt (Any): The loaded file: ``{'epoch', 'state_dict', ...}`` or a
            bare state dict; ``module.`` is optional.
        name (str): File name for messages.
        arch (str): ``'san'``, ``'mixed'`` or ``'sbir'`` (see the module
            docstring).
        verify_config (str | None): A config whose model must accept the
            result strictly (checked on the meta device).

    Returns:
        tuple[dict, dict]: The state dict, in the plugin model's order, and
        ``meta`` (JSON primitives: ``arch``, ``model``, the structure,
        ``num_classes``, ``converter``, ``converted_from``, and ``epoch`` /
        ``top1_val`` / ``top5_val`` / ``mAP_val`` when present).

    Raises:
        ConversionError: Not a dict, no tensors, an unreadable structure,
            unknown/missing/mis-shaped keys (all listed, unknown ones with
            their upstream names), or a mismatch with ``verify_config``.
        ValueError: ``arch`` is not one of :data:`ARCHS`.
    """
    if arch not in ARCHS:
        raise ValueError(f'arch must be one of {ARCHS}, got {arch!r}')
    if not isinstance(ckpt, Mapping):
        raise ConversionError(
            f'{name}: the input is a {type(ckpt).__name__}, not a checkpoint '
            'dict'
        )
    try:
        state = unwrap_state_dict(ckpt, name=name)
    except TypeError as exc:
        raise ConversionError(str(exc)) from exc

    source: dict[str, str] = {}  # plugin key -> upstream key
    unknown = []
    for key in state:
        target = map_key(key, arch)
        if target is None:
            unknown.append(key)
        else:
            source[target] = key
    mapped = {t: state[k] for t, k in source.items()}
    unknown_lines = [f'unknown {k} {tuple(state[k].shape)}' for k in unknown]
    try:
        expected, info = _expected(arch, state, name)
    except ConversionError:
        if unknown_lines:  # most likely the wrong --arch: name the keys
            _fail(
                name,
                f'--arch {arch}',
                unknown_lines,
                _layout_hint(state, arch),
            )
        raise

    problems = []
    for key, value in expected.items():
        if key not in mapped:
            if key.endswith('.num_batches_tracked'):
                continue  # files from torch < 0.4.1 lack the BN counters
            problems.append(f'missing {key} {tuple(value.shape)}')
        elif tuple(mapped[key].shape) != tuple(value.shape):
            problems.append(
                f'shape mismatch {source[key]} -> {key}: model '
                f'{tuple(value.shape)} vs file {tuple(mapped[key].shape)}'
            )
    problems += unknown_lines + [
        f'unknown {source[t]} {tuple(mapped[t].shape)}'
        for t in mapped
        if t not in expected
    ]
    if problems:
        _fail(name, _describe(info), problems, _layout_hint(state, arch))

    out = {}
    for key, value in expected.items():
        if key in mapped:
            out[key] = plain_tensor(mapped[key])
        else:  # a BN counter absent from an old file
            out[key] = torch.zeros((), dtype=value.dtype)
    if verify_config is not None:
        _verify(out, verify_config, name)

    meta: dict[str, Any] = dict(arch=arch, **info)
    meta['converter'] = CONVERTER
    meta['converted_from'] = osp.basename(name)
    if verify_config is not None:
        meta['verified_with'] = verify_config
    if 'state_dict' in ckpt:
        for key in META_SCALARS:
            value = plain_scalar(ckpt.get(key))
            if value is not None:
                meta[key] = value
    return out, meta


def _describe(info: Mapping[str, Any]) -> str:
    fields = {k: v for k, v in info.items() if k != 'model' and v is not None}
    listed = ', '.join(f'{k}={v}' for k, v in fields.items())
    return f'a {info["model"]} ({listed})'


def _verify(out: Mapping[str, torch.Tensor], config: str, name: str) -> None:
    """Raise unless ``out`` fits the config's model exactly."""
    from mmengine.registry import init_default_scope

    from shared.registry import MODELS
    from shared.utils.entrypoint import explain_registry_errors, load_config

    try:
        cfg = load_config(config)
    except (FileNotFoundError, ImportError, ValueError) as exc:
        raise ConversionError(f'--verify-config: {exc}') from exc
    init_default_scope(cfg.get('default_scope', 'mmpretrain'))
    model_cfg = cfg.model.copy()
    if cfg.get('data_preprocessor') is not None:
        model_cfg.setdefault('data_preprocessor', cfg.data_preprocessor)
    with explain_registry_errors(cfg), torch.device('meta'):
        model = MODELS.build(model_cfg)  # init_weights() is never called
    problems = compare_state_dicts(model.state_dict(), out)
    if problems:
        _fail(f'the conversion of {name}', f'the model of {config}', problems)


def summary(meta: dict, tensors: int) -> list[str]:
    """The lines printed after a conversion."""
    skip = ('arch', 'model', 'converter', 'converted_from', 'verified_with')
    lines = [f'model: {meta["model"]} (--arch {meta["arch"]})']
    lines += [f'{k}: {v}' for k, v in meta.items() if k not in skip]
    if meta.get('model') == 'SAN' and meta.get('sa_type') == 'pairwise':
        lines.append(
            'note: pairwise SAM kernels are not stored in the weights; '
            'set kernels in the config to the trained ones'
        )
    if 'verified_with' in meta:
        lines.append(
            f'loads strictly into the model of {meta["verified_with"]}'
        )
    lines.append(f'tensors converted: {tensors}')
    return lines


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    args = parse_args(argv)
    return run_converter(
        args,
        partial(convert, arch=args.arch, verify_config=args.verify_config),
        summary,
    )


if __name__ == '__main__':
    sys.exit(main())
