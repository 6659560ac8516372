"""Export the ResNet-50 trunk of a GOLANG/GAELLE/SwAV checkpoint.

Inputs (``golang_ssl.md`` §6), detected from the keys or forced with
``--src-format``:

- ``mmengine`` (a): this plugin's training checkpoint, ``state_dict`` with
  ``backbone.*``, ``neck.global_proj.*``, ``neck.local_proj.*`` and
  ``head.loss_module.{prototypes,local_prototypes,l2g_prototypes}.weight``
  (its ``message_hub`` is read through the training-checkpoint allowlist);
- ``gaelle`` (b): an original GAELLE ``checkpoint.pth.tar`` /
  ``ckp-{epoch}.pth`` (``{epoch, state_dict, optimizer, scaler}``, DDP
  ``module.`` prefixes): trunk ``conv1``, ``bn1``, ``layer1..4`` (the SwAV
  stem pad is a parameter-free ``ConstantPad2d``), heads
  ``projection_head.*``, ``local_projection_head.*``, ``prototypes.weight``,
  ``local_prototypes.weight``, ``l2g_prototypes.weight``;
- ``swav`` (c): the same without the local heads, or the released flat
  ``module.*`` dict (a multi-bank ``prototypes.prototypesN.weight`` is
  dropped like any head);
- ``torchvision`` (d): a ``resnet50`` state dict (``fc`` dropped).

Output: the flat ``{name: tensor}`` trunk dict in torchvision /
mmpretrain-``ResNet`` naming (no prefix, no ``fc``), fp32 (BN counters stay
int64), written atomically and loadable with ``weights_only=True``: the
``init_cfg=dict(type='Pretrained', checkpoint=OUT)`` of the probe configs.
It is validated by a strict load into a fresh mmpretrain
``ResNet(depth=50)``: equal key sets including ``num_batches_tracked``
(``--allow-missing-bn-counters`` fills absent ones with 0 and warns) and
equal shapes. Known head keys are dropped and summarised; unknown keys raise
(up to 10 listed). SS-PRL's ``strict=False`` load is not reproduced.

``--full`` maps (b)/(c) instead to a whole plugin state dict (``X`` ->
``backbone.X``, ``projection_head.`` -> ``neck.global_proj.``,
``local_projection_head.`` -> ``neck.local_proj.``, ``*prototypes.weight``
-> ``head.loss_module.*prototypes.weight``) written as ``{'state_dict',
'meta'}`` for ``load_from``. It is verified by a strict load into a module
with the plugin's layout: ``ResNet(depth=50)``, ``Sequential(Linear(C,
hid), BN1d(hid), ReLU, Linear(hid, d))`` projections and bias-free
prototype banks, sized from the file (hid, d, d_l, K, K_l) so that
inconsistent sizes show as shape mismatches.

The input is read through :func:`shared.utils.checkpoint.safe_load`: a file
holding pickle globals outside the training-checkpoint allowlist is refused
(nothing in it runs) unless ``--trust-source`` is given.

Examples::

    python tools/model_converters/golang_to_backbone.py \\
        checkpoints/ckp-399.pth checkpoints/golang_r50_coco14_trunk.pth
    python tools/model_converters/golang_to_backbone.py \\
        swav_800ep_pretrain.pth.tar swav_r50_trunk.pth --src-format swav
"""

from __future__ import annotations

import argparse
import functools
import os.path as osp
import sys
import warnings
from collections.abc import Mapping
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
    'ConversionError',
    'FORMATS',
    'convert',
    'detect_format',
    'main',
    'parse_args',
    'summary',
]

FORMATS = ('mmengine', 'gaelle', 'swav', 'torchvision')
#: Top-level trunk modules of the torchvision-style ResNet-50.
TRUNK_ROOTS = ('conv1.', 'bn1.', 'layer1.', 'layer2.', 'layer3.', 'layer4.')
BACKBONE_PREFIX = 'backbone.'
#: Upstream head prefix -> plugin prefix (``--full``).
HEAD_MAP = {
    'projection_head.': 'neck.global_proj.',
    'local_projection_head.': 'neck.local_proj.',
    'prototypes.weight': 'head.loss_module.prototypes.weight',
    'local_prototypes.weight': 'head.loss_module.local_prototypes.weight',
    'l2g_prototypes.weight': 'head.loss_module.l2g_prototypes.weight',
}
GLOBAL_HEADS = ('projection_head.', 'prototypes.')
LOCAL_HEADS = (
    'local_projection_head.',
    'local_prototypes.',
    'l2g_prototypes.',
)
#: Dropped (summarised) key prefixes of each format, most specific first.
KNOWN_HEADS = {
    'mmengine': (
        'neck.global_proj.',
        'neck.local_proj.',
        'head.loss_module.prototypes.',
        'head.loss_module.local_prototypes.',
        'head.loss_module.l2g_prototypes.',
        'neck.',
        'head.',
    ),
    'gaelle': GLOBAL_HEADS + LOCAL_HEADS,
    'swav': GLOBAL_HEADS,
    'torchvision': ('fc.',),
}
#: Documented head sizes (§4.2/§4.3), used when the file lacks the tensor.
DEFAULT_SIZES = dict(
    hid_channels=2048,
    feat_dim=128,
    local_feat_dim=128,
    num_prototypes=3000,
    num_local_prototypes=3000,
)
TRUNK_CHANNELS = 2048
BN_COUNTER = '.num_batches_tracked'
MAX_LISTED = 10


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options (see the module docstring)."""
    parser = converter_parser(
        'Export the ResNet-50 trunk of a GOLANG/GAELLE (plugin or original), '
        'SwAV or torchvision checkpoint as a flat torchvision-named state '
        'dict (no fc, fp32), or with --full map an original GAELLE/SwAV '
        'checkpoint to the plugin key names.',
        'checkpoint to convert (SRC)',
    )
    parser.add_argument(
        '--src-format',
        choices=('auto', *FORMATS),
        default='auto',
        help='input layout: mmengine = this plugin, gaelle / swav = the '
        'original training checkpoints, torchvision = a resnet50 state dict '
        '(default: detected from the keys)',
    )
    parser.add_argument(
        '--full',
        action='store_true',
        help='write the whole plugin state dict (backbone.*, neck.*, '
        "head.loss_module.*) as {'state_dict', 'meta'} instead of the "
        'trunk (gaelle/swav inputs only)',
    )
    parser.add_argument(
        '--allow-missing-bn-counters',
        action='store_true',
        help='fill BN num_batches_tracked tensors absent from the file '
        '(torch < 0.4.1 files) with 0, with a warning, instead of failing',
    )
    return parser.parse_args(argv)


def detect_format(state: Mapping[str, torch.Tensor], had_module: bool) -> str:
    """The source format of an unwrapped state dict.

    Args:
        state: The tensors, ``module.`` already stripped.
        had_module (bool): Whether the keys carried the DDP ``module.``.

    Returns:
        str: ``'mmengine'`` (``backbone.*`` keys), ``'gaelle'`` (local
        heads), ``'swav'`` (global heads only, or a ``module.`` trunk) or
        ``'torchvision'``.
    """
    if any(k.startswith(BACKBONE_PREFIX) for k in state):
        return 'mmengine'
    if any(k.startswith(LOCAL_HEADS) for k in state):
        return 'gaelle'
    if had_module or any(k.startswith(GLOBAL_HEADS) for k in state):
        return 'swav'
    return 'torchvision'


def _fresh_resnet() -> nn.Module:
    """A fresh mmpretrain ``ResNet(depth=50)`` (default init, no weights)."""
    from mmpretrain.models import ResNet

    return ResNet(depth=50)


def _projection(in_channels: int, hid: int, out: int) -> nn.Sequential:
    """The plugin's g/h layout: ``[0] Linear, [1] BN1d, [2] ReLU, [3]
    Linear``."""
    return nn.Sequential(
        nn.Linear(in_channels, hid),
        nn.BatchNorm1d(hid),
        nn.ReLU(inplace=True),
        nn.Linear(hid, out),
    )


def _plugin_model(sizes: Mapping[str, int], with_local: bool) -> nn.Module:
    """A module with the GAELLE algorithm's state-dict layout.

    The plugin model itself is not imported: this stand-in has the
    documented layout (``backbone``, ``neck.global_proj``/``local_proj``,
    ``head.loss_module.*prototypes``) and sizes.
    """
    with torch.device('meta'):  # heads only: shapes, no memory
        neck = nn.Module()
        neck.global_proj = _projection(
            TRUNK_CHANNELS, sizes['hid_channels'], sizes['feat_dim']
        )
        loss = nn.Module()
        loss.prototypes = nn.Linear(
            sizes['feat_dim'], sizes['num_prototypes'], bias=False
        )
        if with_local:
            neck.local_proj = _projection(
                TRUNK_CHANNELS, sizes['hid_channels'], sizes['local_feat_dim']
            )
            loss.local_prototypes = nn.Linear(
                sizes['local_feat_dim'],
                sizes['num_local_prototypes'],
                bias=False,
            )
            loss.l2g_prototypes = nn.Linear(
                sizes['local_feat_dim'], sizes['num_prototypes'], bias=False
            )
    head = nn.Module()
    head.loss_module = loss
    model = nn.Module()
    model.backbone = _fresh_resnet()  # its ctor calls .item(): not on meta
    model.neck = neck
    model.head = head
    return model


def _infer_sizes(state: Mapping[str, torch.Tensor]) -> dict[str, int]:
    """hid, d, d_l, K, K_l read from the upstream head tensors.

    Each size is read from one tensor; the others that depend on it are
    checked by the shape comparison. Absent or non-2-D tensors keep the
    documented default (and then show up as missing or mis-shaped).
    """

    def dim(key: str, axis: int, name: str) -> int:
        value = state.get(key)
        if isinstance(value, torch.Tensor) and value.dim() == 2:
            return int(value.shape[axis])
        return DEFAULT_SIZES[name]

    return dict(
        hid_channels=dim('projection_head.0.weight', 0, 'hid_channels'),
        feat_dim=dim('projection_head.3.weight', 0, 'feat_dim'),
        local_feat_dim=dim(
            'local_projection_head.3.weight', 0, 'local_feat_dim'
        ),
        num_prototypes=dim('prototypes.weight', 0, 'num_prototypes'),
        num_local_prototypes=dim(
            'local_prototypes.weight', 0, 'num_local_prototypes'
        ),
    )


def _capped(lines: list[str], what: str) -> list[str]:
    """At most :data:`MAX_LISTED` lines, then a count of the rest."""
    if len(lines) <= MAX_LISTED:
        return lines
    return [
        *lines[:MAX_LISTED],
        f'... and {len(lines) - MAX_LISTED} more {what}',
    ]


def _unwrap(ckpt: Any, name: str) -> tuple[dict[str, torch.Tensor], bool]:
    """The tensors of ``ckpt`` with ``module.`` stripped, and whether it was
    there."""
    if not isinstance(ckpt, Mapping):
        raise ConversionError(
            f'{name}: the input is a {type(ckpt).__name__}, not a checkpoint '
            'dict'
        )
    try:
        raw = unwrap_state_dict(ckpt, prefix='', name=name)
    except TypeError as exc:
        raise ConversionError(str(exc)) from exc
    state = unwrap_state_dict(raw, containers=(), name=name)
    if len(state) != len(raw):
        twice = sorted(k for k in raw if 'module.' + k in raw)
        raise ConversionError(
            f'{name} holds keys both with and without the module. prefix: '
            f'{twice[:MAX_LISTED]}'
        )
    return state, any(k.startswith('module.') for k in raw)


def _split(
    state: Mapping[str, torch.Tensor], fmt: str
) -> tuple[dict[str, torch.Tensor], dict[str, list[str]], list[str]]:
    """Trunk tensors (torchvision names), dropped head keys by prefix, and
    unknown keys."""
    trunk: dict[str, torch.Tensor] = {}
    heads: dict[str, list[str]] = {}
    unknown = []
    for key, value in state.items():
        if fmt == 'mmengine':
            if key.startswith(BACKBONE_PREFIX):
                trunk[key[len(BACKBONE_PREFIX) :]] = value
                continue
        elif key.startswith(TRUNK_ROOTS):
            trunk[key] = value
            continue
        prefix = next((p for p in KNOWN_HEADS[fmt] if key.startswith(p)), None)
        if prefix is None:
            unknown.append(key)
        else:
            heads.setdefault(prefix, []).append(key)
    return trunk, heads, unknown


def _check(
    expected: Mapping[str, torch.Tensor],
    given: dict[str, torch.Tensor],
    unknown: list[str],
    state: Mapping[str, torch.Tensor],
    allow_missing_bn_counters: bool,
) -> tuple[list[str], list[str]]:
    """Problems (capped) and the BN counters to fill."""
    lines = compare_state_dicts(expected, given)
    missing = [ln.split()[1] for ln in lines if ln.startswith('missing ')]
    counters = [k for k in missing if k.endswith(BN_COUNTER)]
    fill = counters if allow_missing_bn_counters else []
    problems = _capped(
        [f'unknown {k} {tuple(state[k].shape)}' for k in unknown]
        + [
            ln.replace('unexpected', 'unknown', 1)
            for ln in lines
            if ln.startswith('unexpected ')
        ],
        'unknown keys',
    )
    problems += _capped(
        [
            ln
            for ln in lines
            if ln.startswith('missing ') and ln.split()[1] not in fill
        ],
        'missing keys',
    )
    problems += _capped(
        [ln for ln in lines if ln.startswith('shape mismatch ')],
        'shape mismatches',
    )
    if counters and not fill:
        problems.append(
            f'note: {len(counters)} of the missing keys are BN '
            'num_batches_tracked counters (files from torch < 0.4.1); pass '
            '--allow-missing-bn-counters to fill them with 0'
        )
    return problems, fill


def _finish(
    expected: Mapping[str, torch.Tensor],
    given: Mapping[str, torch.Tensor],
    fill: list[str],
    name: str,
) -> tuple[dict[str, torch.Tensor], int]:
    """The output in ``expected``'s order and dtypes; the fp32 cast count."""
    out = {}
    cast = 0
    for key, ref in expected.items():
        if key in fill:
            out[key] = torch.zeros((), dtype=ref.dtype)
            continue
        value = plain_tensor(given[key])
        if value.dtype != ref.dtype:
            if value.is_floating_point() != ref.is_floating_point():
                raise ConversionError(
                    f'{name}: {key} has dtype {value.dtype}, expected '
                    f'{ref.dtype}'
                )
            value = value.to(ref.dtype)
            cast += ref.is_floating_point()
        out[key] = value
    if fill:
        warnings.warn(
            f'{name}: {len(fill)} BN num_batches_tracked counters are absent '
            'from the file and were filled with 0 (--allow-missing-bn-'
            'counters); they only matter for BN momentum=None',
            UserWarning,
            stacklevel=3,
        )
    return out, cast


def _full_state(
    state: Mapping[str, torch.Tensor],
    trunk: Mapping[str, torch.Tensor],
    heads: Mapping[str, list[str]],
) -> tuple[dict[str, torch.Tensor], list[str]]:
    """The plugin names of the trunk and heads; head keys with no plugin
    name."""
    mapped = {BACKBONE_PREFIX + k: v for k, v in trunk.items()}
    unmappable = []
    for key in (k for keys in heads.values() for k in keys):
        prefix = next(
            (
                p
                for p in HEAD_MAP
                if (key.startswith(p) if p.endswith('.') else key == p)
            ),
            None,
        )
        if prefix is None:
            unmappable.append(key)
        else:
            mapped[HEAD_MAP[prefix] + key[len(prefix) :]] = state[key]
    return mapped, unmappable


def _meta_scalar(ckpt: Mapping, key: str) -> int | float | None:
    """``ckpt[key]`` or ``ckpt['meta'][key]`` as a Python number."""
    value = plain_scalar(ckpt.get(key))
    if value is None and isinstance(ckpt.get('meta'), Mapping):
        value = plain_scalar(ckpt['meta'].get(key))
    return value


def convert(
    ckpt: Any,
    name: str = 'checkpoint',
    *,
    src_format: str = 'auto',
    full: bool = False,
    allow_missing_bn_counters: bool = False,
) -> tuple[dict, dict]:
    """Export the trunk (or with ``full`` the plugin state) of a checkpoint.

    Args:
        ckpt (Any): The loaded file: a training checkpoint holding a
            ``state_dict`` (or ``model``) or a bare state dict; ``module.``
            is optional.
        name (str): File name for messages.
        src_format (str): ``'auto'`` or one of :data:`FORMATS`.
        full (bool): Map a ``gaelle``/``swav`` input to the plugin's whole
            state dict instead of exporting the trunk.
        allow_missing_bn_counters (bool): Fill absent BN
            ``num_batches_tracked`` with 0 (and warn) instead of raising.

    Returns:
        tuple[dict, dict]: The state dict (in ``ResNet(depth=50)`` order:
        318 trunk tensors, fp32 apart from the int64 BN counters; with
        ``full`` prefixed ``backbone.`` and followed by the neck and
        prototype tensors) and ``meta`` (JSON primitives: ``format``,
        ``dropped`` = {prefix: count}, ``filled_bn_counters``,
        ``cast_to_fp32``, ``converted_from``, ``epoch`` when present; with
        ``full`` also ``sizes`` and ``with_local``).

    Raises:
        ConversionError: Not a dict, no tensors, an unknown format, no trunk
            keys, ``full`` on a ``mmengine``/``torchvision`` input, or
            unknown / missing / mis-shaped keys (up to 10 of each listed).
    """
    if src_format != 'auto' and src_format not in FORMATS:
        raise ConversionError(
            f'src_format {src_format!r} is not one of auto, '
            f'{", ".join(FORMATS)}'
        )
    state, had_module = _unwrap(ckpt, name)
    detected = detect_format(state, had_module)
    fmt = detected if src_format == 'auto' else src_format
    if full and fmt not in ('gaelle', 'swav'):
        raise ConversionError(
            f'--full maps an original GAELLE or SwAV checkpoint to the '
            f'plugin names; {name} is a {fmt} file'
            + (
                ' (already in plugin names: use it with load_from as is)'
                if fmt == 'mmengine'
                else ' (it has no heads)'
            )
        )
    trunk, heads, unknown = _split(state, fmt)
    if not trunk:
        where = 'backbone.*' if fmt == 'mmengine' else 'conv1/bn1/layer1..4'
        raise ConversionError(
            f'{name}: no ResNet trunk keys ({where}) in this {fmt} file; '
            f'first keys: {sorted(state)[:MAX_LISTED]}'
        )

    meta: dict[str, Any] = dict(format=fmt)
    if full:
        with_local = fmt == 'gaelle'
        sizes = _infer_sizes(state)
        if not with_local:
            sizes = {k: v for k, v in sizes.items() if 'local' not in k}
        model = _plugin_model({**DEFAULT_SIZES, **sizes}, with_local)
        given, unmappable = _full_state(state, trunk, heads)
        unknown += unmappable
        target = (
            f'the GAELLE plugin layout (with_local={with_local}, '
            + ', '.join(f'{k}={v}' for k, v in sizes.items())
            + ')'
        )
        meta.update(sizes=sizes, with_local=with_local, dropped={})
    else:
        model = _fresh_resnet()
        given = trunk
        target = 'mmpretrain ResNet(depth=50)'
        meta['dropped'] = {p: len(keys) for p, keys in heads.items()}

    expected = model.state_dict()  # only its keys, shapes, dtypes are read
    problems, fill = _check(
        expected, given, unknown, state, allow_missing_bn_counters
    )
    if problems and fmt != detected:
        problems.append(
            f'note: the keys look like a {detected} file (--src-format '
            f'{detected} or auto)'
        )
    if problems:
        raise ConversionError(
            f'{name} ({fmt} format) does not fit {target}:\n  '
            + '\n  '.join(problems)
        )
    out, cast = _finish(expected, given, fill, name)
    # The strict load itself, as the probe's Pretrained init will do it
    # (assign: the heads of the --full stand-in live on the meta device).
    model.load_state_dict(out, strict=True, assign=full)
    meta.update(
        filled_bn_counters=len(fill),
        cast_to_fp32=cast,
        converted_from=osp.basename(name),
    )
    epoch = _meta_scalar(ckpt, 'epoch')
    if epoch is not None:
        meta['epoch'] = epoch
    return out, meta


def summary(meta: dict, tensors: int) -> list[str]:
    """The lines printed after a conversion."""
    lines = [f'source format: {meta["format"]}']
    if 'sizes' in meta:
        lines.append(
            f'plugin state dict (with_local={meta["with_local"]}): '
            + ', '.join(f'{k}={v}' for k, v in meta['sizes'].items())
        )
    dropped = meta['dropped']
    if dropped:
        lines.append(
            f'dropped {sum(dropped.values())} head tensors: '
            + ', '.join(f'{p}* ({n})' for p, n in dropped.items())
        )
    if meta['filled_bn_counters']:
        lines.append(
            f'warning: filled {meta["filled_bn_counters"]} missing BN '
            'num_batches_tracked counters with 0'
        )
    if meta['cast_to_fp32']:
        lines.append(f'cast to fp32: {meta["cast_to_fp32"]} tensors')
    lines.append(f'tensors written: {tensors}')
    if 'epoch' in meta:
        lines.append(f'epoch: {meta["epoch"]}')
    return lines


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    args = parse_args(argv)
    return run_converter(
        args,
        functools.partial(
            convert,
            src_format=args.src_format,
            full=args.full,
            allow_missing_bn_counters=args.allow_missing_bn_counters,
        ),
        summary,
        flat=not args.full,
    )


if __name__ == '__main__':
    sys.exit(main())
