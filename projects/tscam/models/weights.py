"""Local ImageNet weights for the TS-CAM backbones (``tscam.md`` §3.6).

Nothing is downloaded: the file comes from a path in the config and is read
with :func:`shared.utils.checkpoint.safe_load` (``weights_only=True``; a file
that needs arbitrary unpickling is refused and nothing in it runs).
"""

from __future__ import annotations

import logging
import math

from mmengine.logging import print_log
from timm.layers import resample_abs_pos_embed
from torch import nn

from shared.utils.state_dict import load_state_dict_checked, read_weight_file

__all__ = ['load_conformer_weights', 'load_vit_weights']

#: Classifier tensors of the ImageNet models; TS-CAM's head is a new conv.
VIT_DROPPED_PREFIXES = ('head.', 'fc_norm.')
#: Keys of DeiT's distilled models, which TS-CAM cannot use.
DISTILLED_KEYS = ('dist_token', 'head_dist.')


def load_vit_weights(
    vit: nn.Module,
    path: str,
    *,
    interpolate_pos_embed: bool = False,
    expected_file: str | None = None,
) -> int:
    """Load ImageNet DeiT weights into a timm ``VisionTransformer``.

    ``head.*`` and ``fc_norm.*`` are dropped; every other tensor must match
    the model's key and shape. A ``pos_embed`` of another length is
    resampled with timm's ``resample_abs_pos_embed`` only when
    ``interpolate_pos_embed`` is set.

    Args:
        vit (nn.Module): The backbone's ``VisionTransformer``
            (``num_classes=0``).
        path (str): Local weight file.
        interpolate_pos_embed (bool): Allow a ``pos_embed`` length mismatch.
        expected_file (str | None): Upstream file name for messages.

    Returns:
        int: Number of tensors loaded.

    Raises:
        ValueError: A distilled checkpoint, or a ``pos_embed`` length
            mismatch without ``interpolate_pos_embed``.
        StateDictMismatchError: Missing, unexpected or mis-shaped keys
            (every one listed, with both shapes).
    """
    state = read_weight_file(path, expected_file)
    distilled = sorted(
        k for k in state if any(k.startswith(d) for d in DISTILLED_KEYS)
    )
    if distilled:
        raise ValueError(
            f'{path} is a distilled DeiT checkpoint ({", ".join(distilled)}); '
            'TS-CAM uses one class token and no distillation token: take the '
            'non-distilled deit_*_patch16_* weights'
        )
    state = {
        k: v
        for k, v in state.items()
        if not k.startswith(VIT_DROPPED_PREFIXES)
    }
    own = vit.state_dict()
    pos = state.get('pos_embed')
    if pos is not None and pos.shape != own['pos_embed'].shape:
        if (
            not interpolate_pos_embed
            or pos.shape[-1] != own['pos_embed'].shape[-1]
        ):
            raise ValueError(
                f'{path}: pos_embed has {pos.shape[1]} tokens, the model '
                f'{own["pos_embed"].shape[1]} (shapes {tuple(pos.shape)} vs '
                f'{tuple(own["pos_embed"].shape)}); use weights trained at '
                'this img_size, or set interpolate_pos_embed=True to resample '
                'them'
            )
        prefix = vit.num_prefix_tokens
        old = int(round(math.sqrt(pos.shape[1] - prefix)))
        grid = vit.patch_embed.grid_size
        state['pos_embed'] = resample_abs_pos_embed(
            pos,
            new_size=list(grid),
            old_size=[old, old],
            num_prefix_tokens=prefix,
        )
        print_log(
            f'{path}: pos_embed resampled from {old}x{old} to '
            f'{grid[0]}x{grid[1]} patches (interpolate_pos_embed=True)',
            logger='current',
            level=logging.WARNING,
        )
    return load_state_dict_checked(vit, state, path, 'the DeiT backbone')


def load_conformer_weights(
    model: nn.Module, path: str, *, expected_file: str | None = None
) -> int:
    """Load official Conformer weights (``conformer_small_patch16.pth``).

    Head tensors (``trans_cls_head.*``, ``conv_cls_head.*``) whose shape
    differs from the model's are dropped with a log line; every other key
    must match (missing BN ``num_batches_tracked`` counters are tolerated).

    Args:
        model (nn.Module): The Conformer module (official key names).
        path (str): Local weight file.
        expected_file (str | None): Upstream file name for messages.

    Returns:
        int: Number of tensors loaded.

    Raises:
        StateDictMismatchError: Missing, unexpected or mis-shaped non-head
            keys.
    """
    state = read_weight_file(path, expected_file)
    own = model.state_dict()
    heads = ('trans_cls_head.', 'conv_cls_head.')
    dropped = [
        k
        for k, v in state.items()
        if k.startswith(heads) and (k not in own or own[k].shape != v.shape)
    ]
    for key in dropped:
        del state[key]
    if dropped:
        print_log(
            f'{path}: new classifier, dropped {", ".join(dropped)}',
            logger='current',
            level=logging.INFO,
        )
    # BN counters (num_batches_tracked) are absent from files saved before
    # PyTorch 0.4.1; the model's own are kept.
    return load_state_dict_checked(
        model,
        state,
        path,
        'the Conformer',
        may_be_missing=lambda key: (
            key.startswith(heads) or key.endswith('.num_batches_tracked')
        ),
    )
