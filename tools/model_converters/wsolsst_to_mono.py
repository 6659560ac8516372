"""Convert an original WSOL-SST (SPA2Net) checkpoint to the plugin's key names.

Upstream (``KevinDongDong/WGOL-TPAMI`` = ``MsterDC/SPA2Net``,
``exper/train_sst.py``) saves ``{'epoch', 'arch', 'global_counter',
'state_dict', 'optimizer'}`` from a ``DataParallel`` model, so every key
starts with ``module.`` (``wsol_sst.md`` §8). The mapping:

- ``conv1_2.*``, ``conv3.*``, ``conv4.*``, ``conv5.*`` (VGG16) or
  ``Conv2d_1a_3x3.*`` … ``Mixed_6e.*`` (InceptionV3) -> ``backbone.*``
  (``SSTVGG16`` / ``SSTInceptionV3``, same names below the prefix);
- ``cls.{0,2,4}.*`` -> ``cls_head.layers.{0,2,4}.*``;
- ``sos.{0,2,4}.*`` -> ``sos_head.layers.{0,2,4}.*``;
- ``sa.fc_{q,k,v,o}.*`` -> ``sa.fc_{q,k,v,o}.*``.

Upstream's InceptionV3 model names the same layers ``cls_fc6.0`` /
``cls_fc7.0`` / ``cls_fc8`` (cls head indices 0 / 2 / 4) and ``sdpa.fc_*``
(SA); those names are accepted too. SPA's unused ``conv5_add.*`` layer is
dropped with a log line; any other key is an error, and so is every missing
or mis-shaped key (listed with both shapes). Shapes are checked against the
plugin's own modules (meta tensors, no memory): the detected backbone,
``SSTConvHead(F5 channels, 1024, C)`` for the cls head (C read from its last
conv), ``SSTConvHead(F5 channels, 1024, 1)`` for the SOS head and
``SSTEdgeSelfAttention(F5 channels, num_heads=8)``.

The output ``{'state_dict': …, 'meta': {…}}`` (``meta`` holds only JSON
primitives) is written atomically and loads with ``weights_only=True``,
e.g. through ``tools/test.py CONFIG OUT``. The optimizer state is dropped.
The input is read through :func:`shared.utils.checkpoint.safe_load`: a file
holding pickle globals outside the training-checkpoint allowlist is refused
unless ``--trust-source`` is given.

Examples::

    python tools/model_converters/wsolsst_to_mono.py \\
        vgg16_cub_spa2net/cub_epoch_100.pth.tar \\
        checkpoints/wsolsst_vgg16-sos+sa_v3_cub_converted.pth
"""

from __future__ import annotations

import argparse
import os.path as osp
import re
import sys
from collections.abc import Mapping
from typing import Any

REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
if sys.path[0] != REPO_ROOT:
    sys.path.insert(0, REPO_ROOT)

import torch  # noqa: E402

from shared.utils.converter import (  # noqa: E402
    ConversionError,
    converter_parser,
    plain_scalar,
    plain_tensor,
    run_converter,
)
from shared.utils.state_dict import unwrap_state_dict  # noqa: E402

__all__ = [
    'ConversionError',
    'convert',
    'main',
    'map_key',
    'mode_family',
    'parse_args',
    'summary',
]

#: Upstream top-level modules of each backbone -> our backbone class.
VGG_BLOCKS = ('conv1_2', 'conv3', 'conv4', 'conv5')
INCEPTION_BLOCKS = (
    'Conv2d_1a_3x3',
    'Conv2d_2a_3x3',
    'Conv2d_2b_3x3',
    'Conv2d_3b_1x1',
    'Conv2d_4a_3x3',
    'Mixed_5b',
    'Mixed_5c',
    'Mixed_5d',
    'Mixed_6a',
    'Mixed_6b',
    'Mixed_6c',
    'Mixed_6d',
    'Mixed_6e',
)
BACKBONES = {'SSTVGG16': VGG_BLOCKS, 'SSTInceptionV3': INCEPTION_BLOCKS}
#: Width of the two 3x3 convs of both heads (fixed upstream).
HEAD_MID_CHANNELS = 1024
#: Upstream's ``sa_head``; SSTEdgeSelfAttention's default.
SA_HEADS = 8
#: SPA's unused layer: dropped, not an error.
DROPPED_PREFIX = 'conv5_add.'
#: Prefixes of upstream modes that are not ported (a hint in the error).
HISTORICAL = ('mc_sos.', 'hinge.', 'rcst.', 'fpn.', 'thr_avg_pool.')

_HEAD_RE = re.compile(r'^(cls|sos)\.([024])\.(weight|bias)$')
#: Upstream InceptionV3 head names -> cls head index.
_INCEPTION_HEAD_RE = re.compile(
    r'^cls_fc(?:(6)\.0|(7)\.0|(8))\.(weight|bias)$'
)
_SA_RE = re.compile(r'^(?:sa|sdpa)\.(fc_[qkvo]\.(?:weight|bias))$')


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options (see the module docstring)."""
    return converter_parser(
        'Convert an original WSOL-SST/SPA2Net checkpoint '
        "({'epoch', 'arch', 'global_counter', 'state_dict', 'optimizer'}, "
        'module.<key>) to SSTLocalizer key names (backbone.*, '
        'cls_head.layers.*, sos_head.layers.*, sa.fc_*).',
        'upstream .pth.tar file',
    ).parse_args(argv)


def map_key(key: str) -> str | None:
    """The plugin key of an upstream key (``module.`` already stripped).

    Returns:
        str | None: ``backbone.*``, ``cls_head.layers.*``,
        ``sos_head.layers.*`` or ``sa.fc_*``; ``None`` for a key that is
        not part of any WSOL-SST model (``conv5_add.*`` included).
    """
    block = key.split('.', 1)[0]
    if block in VGG_BLOCKS or block in INCEPTION_BLOCKS:
        return 'backbone.' + key
    if m := _HEAD_RE.match(key):
        return f'{m[1]}_head.layers.{m[2]}.{m[3]}'
    if m := _INCEPTION_HEAD_RE.match(key):
        index = {'6': 0, '7': 2, '8': 4}[m[1] or m[2] or m[3]]
        return f'cls_head.layers.{index}.{m[4]}'
    if m := _SA_RE.match(key):
        return 'sa.' + m[1]
    return None


def mode_family(modules: set[str] | list[str]) -> str:
    """The modes a set of converted modules fits.

    Args:
        modules: Present optional modules, a subset of ``{'sa',
            'sos_head'}`` (``backbone`` and ``cls_head`` are ignored).

    Returns:
        str: ``'spa'``, ``'spa+sa'``, ``'sos'`` or ``'sos+sa'`` (the
        v1/v2/v3 wirings have the same parameters).
    """
    sa, sos = 'sa' in modules, 'sos_head' in modules
    return {
        (False, False): 'spa',
        (True, False): 'spa+sa',
        (False, True): 'sos',
        (True, True): 'sos+sa',
    }[(sa, sos)]


def _detect_backbone(state: Mapping[str, torch.Tensor], name: str) -> str:
    """``'SSTVGG16'`` or ``'SSTInceptionV3'`` from the top-level names."""
    blocks = {k.split('.', 1)[0] for k in state}
    found = [b for b, names in BACKBONES.items() if blocks & set(names)]
    if len(found) == 1:
        return found[0]
    if found:
        raise ConversionError(
            f'{name} mixes VGG16 ({sorted(blocks & set(VGG_BLOCKS))}) and '
            f'InceptionV3 ({sorted(blocks & set(INCEPTION_BLOCKS))}) '
            'backbone keys'
        )
    hint = ''
    if any(k.startswith('features.') for k in state):
        hint = (
            '; features.N keys look like a torchvision ImageNet file: load '
            "it as backbone weights with init_cfg=dict(type='Pretrained')"
        )
    raise ConversionError(
        f'{name}: no WSOL-SST backbone found (expected the VGG16 blocks '
        f'{list(VGG_BLOCKS)} or the InceptionV3 blocks Conv2d_1a_3x3 … '
        f'Mixed_6e; first keys: {sorted(state)[:10]}){hint}'
    )


def _num_classes(mapped: Mapping[str, torch.Tensor], name: str) -> int:
    """C from the cls head's last conv (C, 1024, 1, 1)."""
    weight = mapped.get('cls_head.layers.4.weight')
    if weight is None:
        raise ConversionError(
            f'{name}: no cls head (cls.4.weight, or cls_fc8.weight in the '
            'InceptionV3 layout); every WSOL-SST mode has one, so this is '
            'not a trained WSOL-SST model'
        )
    if weight.dim() != 4:
        raise ConversionError(
            f'{name}: the last cls conv weight has shape '
            f'{tuple(weight.shape)}; expected a 4-D 1x1 conv (C, '
            f'{HEAD_MID_CHANNELS}, 1, 1)'
        )
    return int(weight.shape[0])


def _expected(
    backbone: str, classes: int, modules: set[str]
) -> dict[str, torch.Tensor]:
    """Keys and shapes of the plugin's modules (meta tensors)."""
    # Imported here: registering the plugin is only needed for conversion.
    from projects.wsol_sst.models import (
        SSTVGG16,
        SSTConvHead,
        SSTEdgeSelfAttention,
        SSTInceptionV3,
    )

    with torch.device('meta'):  # shapes only, no memory, no init cost
        net = {'SSTVGG16': SSTVGG16, 'SSTInceptionV3': SSTInceptionV3}[
            backbone
        ]()
        channels = net.out_channels
        parts = {
            'backbone': net,
            'cls_head': SSTConvHead(channels, HEAD_MID_CHANNELS, classes),
        }
        if 'sos_head' in modules:
            parts['sos_head'] = SSTConvHead(channels, HEAD_MID_CHANNELS, 1)
        if 'sa' in modules:
            parts['sa'] = SSTEdgeSelfAttention(channels, num_heads=SA_HEADS)
    return {
        f'{prefix}.{key}': value
        for prefix, module in parts.items()
        for key, value in module.state_dict().items()
    }


def _sa_hint(
    state: Mapping[str, torch.Tensor], upstream: Mapping[str, str], dims: int
) -> str:
    """A note when the file's SA has another head count than ours."""
    src = next((k for k, v in upstream.items() if v == 'sa.fc_q.weight'), '')
    weight = state.get(src)
    if weight is None or weight.dim() != 2 or weight.shape[1] != dims:
        return ''
    heads, rest = divmod(int(weight.shape[0]), dims)
    if rest or heads == SA_HEADS:
        return ''
    return (
        f"\n  note: the file's SA has {heads} heads of width {dims} "
        f'(upstream sa_head={heads}); the plugin uses {SA_HEADS}'
    )


def convert(ckpt: Any, name: str = 'checkpoint') -> tuple[dict, dict]:
    """Map a loaded upstream WSOL-SST checkpoint to ``SSTLocalizer`` names.

    Args:
        ckpt (Any): The loaded file: ``{'epoch', 'arch', 'global_counter',
            'state_dict', 'optimizer'}`` or a bare state dict; ``module.``
            is optional.
        name (str): File name for messages.

    Returns:
        tuple[dict, dict]: The state dict (``backbone.*``, ``cls_head.*``,
        then ``sos_head.*`` and ``sa.*`` when present, each in the module's
        own order) and ``meta`` (JSON primitives: ``backbone``,
        ``num_classes``, ``modules``, ``mode_family``, ``dropped``,
        ``converted_from``, and ``epoch``/``global_counter``/
        ``upstream_arch`` when present).

    Raises:
        ConversionError: Not a dict, no tensors, no or two backbones, no
            cls head, or unknown/missing/mis-shaped keys (all listed, with
            both shapes for a mismatch).
    """
    if not isinstance(ckpt, Mapping):
        raise ConversionError(
            f'{name}: the input is a {type(ckpt).__name__}, not a checkpoint '
            'dict'
        )
    try:
        state = unwrap_state_dict(ckpt, name=name)
    except TypeError as exc:
        raise ConversionError(str(exc)) from exc
    backbone = _detect_backbone(state, name)

    dropped = [k for k in state if k.startswith(DROPPED_PREFIX)]
    upstream: dict[str, str] = {}  # upstream key -> plugin key
    unknown = []
    for key in state:
        if key in dropped:
            continue
        target = map_key(key)
        if target is None:
            unknown.append(key)
        else:
            upstream[key] = target
    # Two names for one tensor (e.g. cls.0 and cls_fc6.0) is ambiguous.
    by_target: dict[str, list[str]] = {}
    for key, target in upstream.items():
        by_target.setdefault(target, []).append(key)
    problems = [
        f'duplicate {target}: from {" and ".join(keys)}'
        for target, keys in by_target.items()
        if len(keys) > 1
    ]
    mapped = {t: state[keys[0]] for t, keys in by_target.items()}
    classes = _num_classes(mapped, name)
    modules = {t.split('.', 1)[0] for t in mapped} & {'sos_head', 'sa'}
    expected = _expected(backbone, classes, modules)
    source = {t: keys[0] for t, keys in by_target.items()}

    for key, value in expected.items():
        shape = tuple(value.shape)
        if key not in mapped:
            if key.endswith('.num_batches_tracked'):
                continue  # files from torch < 0.4.1 lack the BN counters
            problems.append(f'missing {key} {shape}')
        elif tuple(mapped[key].shape) != shape:
            problems.append(
                f'shape mismatch {source[key]} -> {key}: model {shape} vs '
                f'file {tuple(mapped[key].shape)}'
            )
    problems += [
        f'unknown {key} {tuple(state[key].shape)}'
        for key in unknown
        + [s for t, s in source.items() if t not in expected]
    ]
    if problems:
        hint = ''
        if any(k.startswith(HISTORICAL) for k in unknown):
            hint += (
                '\n  note: mc_sos/hinge/rcst/sst are historical upstream '
                'modes that are not ported (wsol_sst.md §9)'
            )
        if 'sa' in modules:
            dims = int(expected['sa.fc_q.weight'].shape[1])
            hint += _sa_hint(state, upstream, dims)
        raise ConversionError(
            f'{name} does not fit a WSOL-SST {backbone} model (num_classes='
            f'{classes}, modules: {", ".join(_module_list(modules))}; '
            f'{len(problems)} problems):\n  ' + '\n  '.join(problems) + hint
        )

    out = {}
    for key, value in expected.items():
        if key in mapped:
            out[key] = plain_tensor(mapped[key])
        else:  # a BN counter absent from an old file
            out[key] = torch.zeros((), dtype=value.dtype)
    meta: dict[str, Any] = dict(
        backbone=backbone,
        num_classes=classes,
        modules=_module_list(modules),
        mode_family=mode_family(modules),
        dropped=sorted(dropped),
        converted_from=osp.basename(name),
    )
    if 'state_dict' in ckpt:
        for key in ('epoch', 'global_counter'):
            value = plain_scalar(ckpt.get(key))
            if value is not None:
                meta[key] = value
        if isinstance(ckpt.get('arch'), str):
            meta['upstream_arch'] = ckpt['arch']
    return out, meta


def _module_list(modules: set[str]) -> list[str]:
    """Present modules in the fixed order backbone, cls_head, sos_head, sa."""
    optional = [m for m in ('sos_head', 'sa') if m in modules]
    return ['backbone', 'cls_head', *optional]


def summary(meta: dict, tensors: int) -> list[str]:
    """The lines printed after a conversion."""
    lines = []
    if meta['dropped']:
        lines.append(
            f'dropped {len(meta["dropped"])} {DROPPED_PREFIX}* tensors '
            "(SPA's unused layer): " + ', '.join(meta['dropped'])
        )
    family = meta['mode_family']
    modes = 'sos+sa_v1/v2/v3' if family == 'sos+sa' else family
    note = ' (upstream trains sos+sa_v3)' if family == 'sos+sa' else ''
    lines += [
        f'backbone: {meta["backbone"]}',
        f'num_classes: {meta["num_classes"]}',
        f'modules: {", ".join(meta["modules"])}',
        f'likely mode: {modes}{note}',
        f'tensors converted: {tensors}',
    ]
    lines += [
        f'{key}: {meta[key]}'
        for key in ('upstream_arch', 'epoch', 'global_counter')
        if key in meta
    ]
    return lines


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    return run_converter(parse_args(argv), convert, summary)


if __name__ == '__main__':
    sys.exit(main())
