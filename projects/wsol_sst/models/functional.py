"""Parameter-free building blocks of WSOL-SST (``wsol_sst.md`` §3.4, §3.7, §4).

Everything here is batched, device-agnostic and free of module state:

- :func:`self_correlation` — high-order self-correlation (HSC): first-order
  (FO) and second-order (SO) position affinities of one feature map;
- :func:`fuse_correlation` — the structure matrix S that SCG and the
  pseudo-mask propagate class maps through;
- :func:`edge_code` — the un-normalised edge code E added to the SA logits;
- :func:`scg_v2` / :func:`scg_v1` — self-correlation map generation;
- :func:`pseudo_mask` — the SOS target (TC / BC / raw), batch-global min–max
  all-reduced across ranks;
- :func:`ra_loss` and :func:`sparse_loss`.

The affinity products run with autocast disabled, in the promoted dtype of
their inputs (float32 for the float32 S of :func:`self_correlation`), so
thresholds and eps keep their meaning under AMP.

Affinity matrices are indexed ``[b, i, j]`` with i the row and j the column;
"column-normalised" means each column j sums to one over the rows i. Positions
are flattened in raster order (``n = y * w + x``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from mmengine.dist import all_reduce, get_world_size
from torch import Tensor

__all__ = [
    'PSEUDO_MASK_NORMS',
    'PSEUDO_MASK_TARGETS',
    'SCG_SOURCES',
    'check_so_thr',
    'check_threshold',
    'edge_code',
    'fuse_correlation',
    'pseudo_mask',
    'ra_loss',
    'scg_v1',
    'scg_v2',
    'self_correlation',
    'sparse_loss',
]

#: Correlations fused into S (``test_cfg.scg_source``).
SCG_SOURCES = ('fused', 'fo', 'so')
#: Pseudo-mask target types (``sos_cfg.target``).
PSEUDO_MASK_TARGETS = ('tc', 'bc', 'raw')
#: Pseudo-mask normalisation groups (``sos_cfg.norm``).
PSEUDO_MASK_NORMS = ('batch_global', 'per_image')

CorrelationPair = tuple[Tensor, Tensor]


# -- validation ---------------------------------------------------------------


def check_threshold(value: float, name: str) -> float:
    """Check that a threshold lies in [0, 1].

    Args:
        value (float): The threshold.
        name (str): Its config name, used in the error message.

    Returns:
        float: ``value`` as a float.

    Raises:
        ValueError: If ``value`` is not a finite number in [0, 1].
    """
    value = float(value)
    if not 0.0 <= value <= 1.0:  # also rejects NaN
        raise ValueError(f'{name} must lie in [0, 1], got {value}')
    return value


def check_so_thr(value: float, name: str = 'so_thr') -> float:
    """Check the second-order threshold (a multiple of 1/N, any value >= 0).

    Args:
        value (float): The threshold.
        name (str): Its config name, used in the error message.

    Returns:
        float: ``value`` as a float.

    Raises:
        ValueError: If ``value`` is negative, NaN or infinite.
    """
    value = float(value)
    if not (value >= 0.0 and math.isfinite(value)):
        raise ValueError(f'{name} must be a finite number >= 0, got {value}')
    return value


def _check_choice(value: str, choices: Sequence[str], name: str) -> str:
    if value not in choices:
        raise ValueError(
            f'{name} must be one of {tuple(choices)}, got {value!r}'
        )
    return value


def _check_labels(labels: Tensor, batch: int, num_classes: int) -> None:
    if labels.shape != (batch,):
        raise ValueError(
            f'labels must have shape ({batch},), got {tuple(labels.shape)}'
        )
    bad = ((labels < 0) | (labels >= num_classes)).nonzero()
    if bad.numel():
        idx = int(bad[0, 0])
        raise ValueError(
            f'label {int(labels[idx])} of sample {idx} is outside '
            f'[0, {num_classes})'
        )


def _check_structure(s: Tensor, batch: int, n: int) -> None:
    if s.shape != (batch, n, n):
        raise ValueError(
            f'S must have shape ({batch}, {n}, {n}) to match the maps, got '
            f'{tuple(s.shape)}'
        )


# -- helpers ------------------------------------------------------------------


def _colnorm(x: Tensor, eps: float) -> Tensor:
    """Divide each column of a (B, N, N) matrix by its sum + eps."""
    return x / (x.sum(dim=1, keepdim=True) + eps)


def _common_dtype(a: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
    """Cast both to their promoted dtype (keeps float32 S under AMP maps)."""
    dtype = torch.promote_types(a.dtype, b.dtype)
    return a.to(dtype), b.to(dtype)


def _no_autocast(t: Tensor) -> torch.autocast:
    """Context that disables autocast on ``t``'s device (float32 products)."""
    return torch.autocast(device_type=t.device.type, enabled=False)


def _minmax(x: Tensor, dim: int | tuple[int, ...], eps: float) -> Tensor:
    """Min–max normalise ``x`` over ``dim``: (x − min) / (max − min + eps)."""
    lo = x.amin(dim=dim, keepdim=True)
    hi = x.amax(dim=dim, keepdim=True)
    return (x - lo) / (hi - lo + eps)


# -- HSC, S, E (§3.4) ---------------------------------------------------------


@torch.no_grad()
def self_correlation(
    feat: Tensor, fo_thr: float = 0.2, so_thr: float = 1.0
) -> CorrelationPair:
    """High-order self-correlation (HSC) of a feature map.

    With x_i the L2-normalised feature of position i (eps 1e-10) and
    A_ij = max(0, x_iᵀx_j) zeroed where A_ij < ``fo_thr``:

    - FO = A column-normalised (eps 1e-5);
    - P = A with a zero diagonal, column-normalised (eps 1e-5);
      SO = P·P column-normalised (eps 1e-10), zeroed where SO_ij < so_thr / N.

    Runs under ``no_grad`` and in float32 (autocast disabled): the outputs are
    detached and the eps / 1/N thresholds keep their meaning under AMP.

    Args:
        feat (Tensor): (B, C, h, w) feature map; h and w need not be equal.
        fo_thr (float): First-order threshold in [0, 1]. Defaults to 0.2.
        so_thr (float): Second-order threshold, in units of 1/N (N = h·w),
            >= 0. Defaults to 1.0.

    Returns:
        tuple[Tensor, Tensor]: FO and SO, each (B, N, N) float32, indexed
        [b, i, j] over raster-order positions, column-normalised.

    Raises:
        ValueError: On a threshold out of range or a grid smaller than 2×2.
    """
    check_threshold(fo_thr, 'fo_thr')
    check_so_thr(so_thr)
    if feat.dim() != 4:
        raise ValueError(f'feat must be (B, C, h, w), got {tuple(feat.shape)}')
    h, w = feat.shape[-2:]
    if h < 2 or w < 2:
        raise ValueError(
            f'self-correlation needs a feature grid of at least 2x2, got '
            f'{h}x{w}'
        )
    n = h * w
    with _no_autocast(feat):
        x = feat.float().flatten(2).transpose(1, 2)  # (B, N, C)
        x = x / (x.norm(dim=2, keepdim=True) + 1e-10)
        a = torch.bmm(x, x.transpose(1, 2)).clamp_(min=0)
        a = a.masked_fill_(a < fo_thr, 0.0)
        fo = _colnorm(a, 1e-5)
        a.diagonal(dim1=1, dim2=2).zero_()  # `a` is not used again
        p = _colnorm(a, 1e-5)
        so = _colnorm(torch.bmm(p, p), 1e-10)
        so = so.masked_fill_(so < so_thr / n, 0.0)
    return fo, so


def _check_pairs(pairs: Sequence[CorrelationPair]) -> None:
    if len(pairs) == 0:
        raise ValueError('at least one (FO, SO) stage pair is required')
    shape = pairs[0][0].shape
    for fo, so in pairs:
        if fo.shape != shape or so.shape != shape:
            raise ValueError(
                f'all FO/SO matrices must share one shape, got '
                f'{tuple(fo.shape)} and {tuple(so.shape)} '
                f'(first {tuple(shape)})'
            )


@torch.no_grad()
def fuse_correlation(
    pairs: Sequence[CorrelationPair], source: str = 'fused'
) -> Tensor:
    """Structure matrix S from the (FO, SO) pairs of the HSC stages.

    - ``'fused'``: S = Σ_s colnorm(max(FO_s, SO_s));
    - ``'fo'``: S = Σ_s colnorm(FO_s) (first order only);
    - ``'so'``: S = Σ_s colnorm(SO_s) (second order only);

    where colnorm divides each column by its sum + 1e-10, so each non-empty
    column of S sums to about the number of stages.

    Args:
        pairs (Sequence[tuple[Tensor, Tensor]]): One (FO, SO) pair per stage,
            as returned by :func:`self_correlation`, each (B, N, N).
        source (str): One of :data:`SCG_SOURCES`. Defaults to ``'fused'``.

    Returns:
        Tensor: S, (B, N, N), detached.
    """
    _check_choice(source, SCG_SOURCES, 'source')
    _check_pairs(pairs)
    total = None
    for fo, so in pairs:
        if source == 'fused':
            mat = torch.maximum(fo, so)
        else:
            mat = fo if source == 'fo' else so
        mat = _colnorm(mat, 1e-10)
        total = mat if total is None else total + mat
    return total


@torch.no_grad()
def edge_code(pairs: Sequence[CorrelationPair]) -> Tensor:
    """Edge code E = Σ_s max(FO_s, SO_s), not re-normalised.

    Args:
        pairs (Sequence[tuple[Tensor, Tensor]]): One (FO, SO) pair per stage,
            each (B, N, N).

    Returns:
        Tensor: E, (B, N, N), indexed [query i, key j], detached.
    """
    _check_pairs(pairs)
    total = None
    for fo, so in pairs:
        mat = torch.maximum(fo, so)
        total = mat if total is None else total + mat
    return total


# -- SCG (§3.7) ---------------------------------------------------------------


def _check_cam(cam: Tensor, s: Tensor) -> tuple[int, int, int, int]:
    if cam.dim() != 4:
        raise ValueError(f'cam must be (B, K, h, w), got {tuple(cam.shape)}')
    b, k, h, w = cam.shape
    _check_structure(s, b, h * w)
    return b, k, h, w


def _normalised_cam(cam: Tensor) -> Tensor:
    """(B, K, h, w) maps -> (B, K, N) per-map min–max of ReLU(cam)."""
    return _minmax(F.relu(cam).flatten(2), dim=2, eps=1e-10)


def scg_v2(cam: Tensor, s: Tensor) -> Tensor:
    """Self-correlation map generation, v2 (the default).

    ĉ = min–max(ReLU(cam_k)) per map (eps 1e-10);
    SCM_j = Σ_i ĉ_i·S_ij; output ReLU(SCM), without a final min–max.

    Args:
        cam (Tensor): (B, K, h, w) class maps (ReLU is applied again; it is
            idempotent).
        s (Tensor): (B, N, N) structure matrix, N = h·w.

    Returns:
        Tensor: (B, K, h, w) SCG maps, non-negative, un-normalised.
    """
    b, k, h, w = _check_cam(cam, s)
    cam, s = _common_dtype(cam, s)
    c = _normalised_cam(cam)
    with _no_autocast(c):
        return F.relu(torch.bmm(c, s)).view(b, k, h, w)


def scg_v1(
    cam: Tensor, s: Tensor, fg_thr: float = 0.05, bg_thr: float = 0.05
) -> Tensor:
    """Self-correlation map generation, v1 (SPA's original).

    With ĉ = min–max(ReLU(cam_k)) (eps 1e-10):

    - pos = min–max(Σ_{j: ĉ_j >= fg_thr} min–max(S[:, j])), 0 if no column
      is selected;
    - neg = the same over the columns with ĉ_j <= bg_thr;
    - output min–max(ReLU(pos − neg)).

    Every min–max uses eps 1e-10; a column's min–max runs over its rows.

    Args:
        cam (Tensor): (B, K, h, w) class maps.
        s (Tensor): (B, N, N) structure matrix, N = h·w.
        fg_thr (float): Foreground threshold on ĉ, in [0, 1].
            Defaults to 0.05.
        bg_thr (float): Background threshold on ĉ, in [0, 1].
            Defaults to 0.05.

    Returns:
        Tensor: (B, K, h, w) SCG maps in [0, 1].
    """
    check_threshold(fg_thr, 'scgv1_fg_thr')
    check_threshold(bg_thr, 'scgv1_bg_thr')
    b, k, h, w = _check_cam(cam, s)
    cam, s = _common_dtype(cam, s)
    c = _normalised_cam(cam)  # (B, K, N)
    s_cols = _minmax(s, dim=1, eps=1e-10)  # each column over rows
    # (B, K, N) @ (B, N, N)ᵀ sums the selected columns for every map at once;
    # an empty selection gives zeros, whose min–max is 0.
    with _no_autocast(c):
        pos = torch.bmm((c >= fg_thr).to(c.dtype), s_cols.transpose(1, 2))
        neg = torch.bmm((c <= bg_thr).to(c.dtype), s_cols.transpose(1, 2))
    pos = _minmax(pos, dim=2, eps=1e-10)
    neg = _minmax(neg, dim=2, eps=1e-10)
    out = _minmax(F.relu(pos - neg), dim=2, eps=1e-10)
    return out.view(b, k, h, w)


# -- SOS pseudo-mask (§4.2) ---------------------------------------------------


@torch.no_grad()
def pseudo_mask(
    cam_gt: Tensor,
    s: Tensor,
    fg_thr: float,
    bg_thr: float,
    target: str = 'tc',
    norm: str = 'batch_global',
) -> Tensor:
    """SOS pseudo-mask from the GT-class maps and the structure matrix.

    1. c = min–max(ReLU(cam_gt)) per image (eps 1e-10);
    2. SCM = ReLU(c_flat·S);
    3. min–max (eps 1e-10) with one min and one max over the whole batch
       (``'batch_global'``; under torch.distributed they are all-reduced over
       all ranks, so every rank must call this) or per image
       (``'per_image'``);
    4. target: ``'tc'`` sets ≥ fg_thr to 1, then ≤ bg_thr to 0 and keeps the
       values in between; ``'bc'`` gives 1 where ≥ fg_thr, else 0;
       ``'raw'`` keeps the normalised SCM;
    5. detached (computed under ``no_grad``).

    Args:
        cam_gt (Tensor): (B, h, w) class map of each image's GT class.
        s (Tensor): (B, N, N) structure matrix, N = h·w.
        fg_thr (float): Foreground threshold in [0, 1].
        bg_thr (float): Background threshold in [0, 1] (TC only).
        target (str): One of :data:`PSEUDO_MASK_TARGETS`. Defaults to ``'tc'``.
        norm (str): One of :data:`PSEUDO_MASK_NORMS`.
            Defaults to ``'batch_global'``.

    Returns:
        Tensor: (B, h, w) target in [0, 1], detached, in the promoted dtype
        of ``cam_gt`` and ``s``.

    Raises:
        ValueError: On an unknown ``target``/``norm``, a threshold outside
            [0, 1], or TC with fg_thr <= bg_thr.
    """
    _check_choice(target, PSEUDO_MASK_TARGETS, 'target')
    _check_choice(norm, PSEUDO_MASK_NORMS, 'norm')
    fg_thr = check_threshold(fg_thr, 'fg_thr')
    bg_thr = check_threshold(bg_thr, 'bg_thr')
    if target == 'tc' and fg_thr <= bg_thr:
        raise ValueError(
            f"target='tc' needs fg_thr > bg_thr, got fg_thr={fg_thr} and "
            f'bg_thr={bg_thr}'
        )
    if cam_gt.dim() != 3:
        raise ValueError(
            f'cam_gt must be (B, h, w), got {tuple(cam_gt.shape)}'
        )
    b, h, w = cam_gt.shape
    _check_structure(s, b, h * w)

    cam_gt, s = _common_dtype(cam_gt, s)
    c = _minmax(F.relu(cam_gt).flatten(1), dim=1, eps=1e-10)  # (B, N)
    with _no_autocast(c):
        scm = F.relu(torch.bmm(c.unsqueeze(1), s).squeeze(1))
    if norm == 'per_image':
        x = _minmax(scm, dim=1, eps=1e-10)
    else:
        # One collective for both statistics: max over ranks of (max, −min).
        stats = torch.stack([scm.max(), -scm.min()])
        if get_world_size() > 1:
            all_reduce(stats, op='max')
        hi, lo = stats[0], -stats[1]
        x = (scm - lo) / (hi - lo + 1e-10)

    if target == 'tc':
        x = torch.where(x >= fg_thr, torch.ones_like(x), x)
        x = torch.where(x <= bg_thr, torch.zeros_like(x), x)
    elif target == 'bc':
        x = (x >= fg_thr).to(x.dtype)
    return x.view(b, h, w)


# -- losses (§4.3, §4.4) ------------------------------------------------------


def ra_loss(
    cls_map: Tensor, labels: Tensor, bg_thr: float, gap: float
) -> Tensor:
    """Restricted activation (RA) loss.

    v = unbiased variance over classes of softmax(cls_map); v̂ = per-image
    min–max of v (eps 1e-15); masks bg = [v̂ < bg_thr] and
    fg = [v̂ > bg_thr + gap] (no gradient); s = σ(cls_map[b, y_b]);
    loss = mean over (b, h, w) of s·bg + (1 − s)·fg.

    The gradient reaches only the GT-class map, through s.

    Args:
        cls_map (Tensor): (B, C, h, w) class logit maps, C >= 2.
        labels (Tensor): (B,) integer class labels in [0, C).
        bg_thr (float): Background threshold θ_bg on v̂, in [0, 1].
        gap (float): Margin between the background and foreground
            thresholds, in [0, 1].

    Returns:
        Tensor: Scalar loss.

    Raises:
        ValueError: If C < 2, a threshold is out of range or a label is
            outside [0, C).
    """
    check_threshold(bg_thr, 'bg_thr')
    check_threshold(gap, 'gap')
    if cls_map.dim() != 4 or cls_map.shape[1] < 2:
        raise ValueError(
            f'the RA loss needs (B, C, h, w) maps with C >= 2 (the class '
            f'variance is undefined otherwise), got {tuple(cls_map.shape)}'
        )
    b, c = cls_map.shape[:2]
    _check_labels(labels, b, c)
    with torch.no_grad():
        var = torch.softmax(cls_map, dim=1).var(dim=1, unbiased=True)
        var = _minmax(var, dim=(1, 2), eps=1e-15)
        bg = (var < bg_thr).to(cls_map.dtype)
        fg = (var > bg_thr + gap).to(cls_map.dtype)
    s = torch.sigmoid(cls_map[torch.arange(b, device=cls_map.device), labels])
    return (s * bg + (1 - s) * fg).mean()


def sparse_loss(cls_map: Tensor, labels: Tensor) -> Tensor:
    """Sparse term: batch mean of Σ_hw ReLU(cls_map[b, y_b]) / (h·w).

    Args:
        cls_map (Tensor): (B, C, h, w) class logit maps.
        labels (Tensor): (B,) integer class labels in [0, C).

    Returns:
        Tensor: Scalar loss.
    """
    if cls_map.dim() != 4:
        raise ValueError(
            f'cls_map must be (B, C, h, w), got {tuple(cls_map.shape)}'
        )
    b, c = cls_map.shape[:2]
    _check_labels(labels, b, c)
    gt = cls_map[torch.arange(b, device=cls_map.device), labels]
    return F.relu(gt).mean()
