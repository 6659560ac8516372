"""Convert a released TS-CAM checkpoint to the plugin's key names.

Upstream (``vasgaowei/TS-CAM``, ``tools_cam/train_cam.py``) saves
``{'epoch', 'state_dict', 'best_map'}`` from a ``DataParallel`` model, so
the keys are ``module.<timm key>`` (``cls_token``, ``pos_embed``,
``patch_embed.proj.*``, ``blocks.N.*``, ``norm.*``) plus the TS-CAM conv
head ``module.head.weight`` (C, D, 3, 3) and ``module.head.bias`` (C,)
(``tscam.md`` §3.6). The output maps them to ``backbone.vit.<timm key>`` and
``head.conv.*`` of ``TSCAMClassifier`` and is written, atomically, as
``{'state_dict': …, 'meta': {…}}`` with only JSON primitives in ``meta``,
so ``tools/test.py CONFIG OUT`` loads it with ``weights_only=True``.

The backbone keys and shapes are checked against a ``TSCAMDeiT`` built
with the width, depth and image size read from the file; every missing,
unknown or mis-shaped key is listed. Distilled DeiT checkpoints and linear
(ImageNet classifier) heads are refused.

The input is read through :func:`shared.utils.checkpoint.safe_load`: a file
holding pickle globals outside the training-checkpoint allowlist (e.g. an
``argparse.Namespace``) is refused unless ``--trust-source`` is given.

Examples::

    python tools/model_converters/tscam_to_mono.py \\
        ckpt/CUB/model_best.pth checkpoints/tscam_deit-s_cub_converted.pth
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
from shared.utils.state_dict import (  # noqa: E402
    compare_state_dicts,
    unwrap_state_dict,
)

__all__ = [
    'ConversionError',
    'convert',
    'guess_arch',
    'main',
    'parse_args',
    'summary',
]

PATCH_SIZE = 16
#: Embedding width -> named arch (all have depth 12).
ARCH_BY_WIDTH = {192: 'tiny', 384: 'small', 768: 'base'}
#: Head width of the named DeiTs; the head count is not stored in weights.
HEAD_DIM = 64
BACKBONE_PREFIX = 'backbone.vit.'
HEAD_PREFIX = 'head.conv.'
#: Keys of DeiT's distilled models (TS-CAM uses one class token).
DISTILLED = ('dist_token', 'head_dist.')
_BLOCK_RE = re.compile(r'^blocks\.(\d+)\.')


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options (see the module docstring)."""
    return converter_parser(
        'Convert a released TS-CAM checkpoint '
        "({'epoch', 'state_dict', 'best_map'}, module.<timm key>) to "
        'TSCAMClassifier key names (backbone.vit.*, head.conv.*).',
        'TS-CAM checkpoint',
    ).parse_args(argv)


def guess_arch(embed_dims: int, depth: int, img_size: int) -> str | dict:
    """The ``TSCAMDeiT`` ``arch`` of a backbone with these dimensions.

    Returns:
        str | dict: ``'tiny'``, ``'small'`` or ``'base'`` for the DeiT
        widths 192/384/768 at depth 12 (base also at 384 px), else
        ``dict(embed_dims, depth, num_heads)`` with 64-wide heads where the
        width allows (the head count is not recoverable from weights).
    """
    name = ARCH_BY_WIDTH.get(embed_dims)
    if name and depth == 12 and (img_size == 224 or name == 'base'):
        return name
    heads = embed_dims // HEAD_DIM if embed_dims % HEAD_DIM == 0 else 1
    return dict(embed_dims=embed_dims, depth=depth, num_heads=heads)


def _expected_backbone(
    embed_dims: int, depth: int, img_size: int
) -> dict[str, torch.Tensor]:
    """Keys and shapes of the plugin's ``backbone.vit`` (meta tensors)."""
    # Imported here: registering the plugin is only needed for conversion.
    from projects.tscam.models.tscam_deit import TSCAMDeiT

    heads = embed_dims // HEAD_DIM if embed_dims % HEAD_DIM == 0 else 1
    with torch.device('meta'):  # shapes only, no memory, no init cost
        backbone = TSCAMDeiT(
            arch=dict(embed_dims=embed_dims, depth=depth, num_heads=heads),
            img_size=img_size,
            drop_path_rate=0.0,
        )
    return backbone.vit.state_dict()


def _width_and_size(state: Mapping[str, torch.Tensor]) -> tuple[int, int]:
    """(D, img_size) from ``cls_token``/``pos_embed``."""
    missing = [k for k in ('cls_token', 'pos_embed') if k not in state]
    if missing:
        raise ConversionError(
            f'no DeiT backbone in the checkpoint: {missing} missing (first '
            f'keys: {sorted(state)[:10]}); only the DeiT TS-CAM checkpoints '
            'are converted'
        )
    pos = state['pos_embed']
    if pos.dim() != 3 or pos.shape[0] != 1:
        raise ConversionError(
            f'pos_embed has shape {tuple(pos.shape)}, expected (1, N, D)'
        )
    grid = int(round((pos.shape[1] - 1) ** 0.5))
    if grid * grid != pos.shape[1] - 1:
        raise ConversionError(
            f'pos_embed has {pos.shape[1]} tokens, not 1 class token plus a '
            'square patch grid'
        )
    return int(pos.shape[2]), grid * PATCH_SIZE


def _check_head(state: Mapping[str, torch.Tensor], width: int) -> int:
    """Validate the TS-CAM conv head; return C."""
    weight, bias = state.get('head.weight'), state.get('head.bias')
    if weight is None or bias is None:
        raise ConversionError(
            'head.weight and head.bias are required (the TS-CAM 3x3 conv '
            'head); an ImageNet DeiT backbone file is loaded through '
            "init_cfg=dict(type='Pretrained') instead"
        )
    if weight.dim() == 2:
        raise ConversionError(
            f'head.weight has shape {tuple(weight.shape)}: a Linear '
            'classifier, not the TS-CAM 3x3 conv head; this looks like an '
            "ImageNet DeiT checkpoint: load it with init_cfg=dict(type='"
            "Pretrained') as backbone weights"
        )
    if weight.dim() != 4 or tuple(weight.shape[2:]) != (3, 3):
        raise ConversionError(
            f'head.weight has shape {tuple(weight.shape)}; the TS-CAM head '
            'is a 4-D 3x3 conv weight (C, D, 3, 3)'
        )
    classes = int(weight.shape[0])
    if weight.shape[1] != width:
        raise ConversionError(
            f'head.weight has {weight.shape[1]} input channels but the '
            f'backbone width is {width}'
        )
    if tuple(bias.shape) != (classes,):
        raise ConversionError(
            f'head.bias has shape {tuple(bias.shape)}, expected ({classes},)'
        )
    return classes


def convert(ckpt: Any, name: str = 'checkpoint') -> tuple[dict, dict]:
    """Map a loaded TS-CAM checkpoint to ``TSCAMClassifier`` names.

    Args:
        ckpt (Any): The loaded file: ``{'state_dict': …, 'epoch',
            'best_map'}`` or a bare state dict; ``module.`` is optional.
        name (str): File name for messages.

    Returns:
        tuple[dict, dict]: The state dict (``backbone.vit.*`` in the
        model's order, then ``head.conv.weight`` (C, D, 3, 3) and
        ``head.conv.bias`` (C,)) and ``meta`` (JSON primitives: ``arch``,
        ``embed_dims``, ``depth``, ``img_size``, ``num_classes``,
        ``converted_from``, and ``epoch``/``best_map`` when present).

    Raises:
        ConversionError: Not a dict, no tensors, a distilled checkpoint, a
            head that is not a 4-D 3x3 conv, or missing/unknown/mis-shaped
            backbone keys (all listed).
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
    distilled = sorted(k for k in state if k.startswith(DISTILLED))
    if distilled:
        raise ConversionError(
            f'{name} is a distilled DeiT checkpoint ({", ".join(distilled)}); '
            'TS-CAM has one class token and no distillation head'
        )
    width, img_size = _width_and_size(state)
    classes = _check_head(state, width)
    blocks = {int(m[1]) for k in state if (m := _BLOCK_RE.match(k))}
    depth = max(blocks) + 1 if blocks else 0
    if depth == 0:
        raise ConversionError(f'{name}: no blocks.N.* keys')
    backbone = {k: v for k, v in state.items() if not k.startswith('head.')}
    unknown_head = sorted(
        k
        for k in state
        if k.startswith('head.') and k[5:] not in ('weight', 'bias')
    )
    expected = _expected_backbone(width, depth, img_size)
    problems = compare_state_dicts(expected, backbone)
    problems = [
        line.replace('unexpected', 'unknown', 1) for line in problems
    ] + [f'unknown {k} {tuple(state[k].shape)}' for k in unknown_head]
    if problems:
        raise ConversionError(
            f'{name} does not fit a TS-CAM DeiT (embed_dims={width}, '
            f'depth={depth}, img_size={img_size}; {len(problems)} '
            'problems):\n  ' + '\n  '.join(problems)
        )
    out = {BACKBONE_PREFIX + k: plain_tensor(backbone[k]) for k in expected}
    out[HEAD_PREFIX + 'weight'] = plain_tensor(state['head.weight'])
    out[HEAD_PREFIX + 'bias'] = plain_tensor(state['head.bias'])
    meta: dict[str, Any] = dict(
        arch=guess_arch(width, depth, img_size),
        embed_dims=width,
        depth=depth,
        img_size=img_size,
        num_classes=classes,
        converted_from=osp.basename(name),
    )
    for key in ('epoch', 'best_map'):
        value = plain_scalar(ckpt.get(key)) if 'state_dict' in ckpt else None
        if value is not None:
            meta[key] = value
    return out, meta


def summary(meta: dict, tensors: int) -> list[str]:
    """The lines printed after a conversion."""
    arch = meta['arch']
    lines = [
        f'arch: {arch if isinstance(arch, str) else f"custom {arch}"} '
        f'(embed_dims={meta["embed_dims"]}, depth={meta["depth"]}, '
        f'img_size={meta["img_size"]})'
    ]
    if not isinstance(arch, str):
        lines.append(
            'note: num_heads is not stored in the weights (64-wide heads '
            'assumed); set the arch of the config to the trained one'
        )
    lines.append(f'num_classes: {meta["num_classes"]}')
    lines.append(
        f'tensors converted: {tensors} ({tensors - 2} backbone.vit + 2 '
        'head.conv)'
    )
    lines += [
        f'{key}: {meta[key]}' for key in ('epoch', 'best_map') if key in meta
    ]
    return lines


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    return run_converter(parse_args(argv), convert, summary)


if __name__ == '__main__':
    sys.exit(main())
