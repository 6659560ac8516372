"""WSOL-SST models: the localizer and its data preprocessor, backbones,
heads, edge self-attention and the parameter-free functions (HSC, SCG,
pseudo-mask, losses)."""

from .attention import SSTEdgeSelfAttention
from .backbones import SSTVGG16, SSTInceptionV3
from .data_preprocessor import SSTDataPreprocessor
from .functional import (
    check_so_thr,
    check_threshold,
    edge_code,
    fuse_correlation,
    pseudo_mask,
    ra_loss,
    scg_v1,
    scg_v2,
    self_correlation,
    sparse_loss,
)
from .heads import SSTConvHead
from .localizer import SSTLocalizer

__all__ = [
    'SSTConvHead',
    'SSTDataPreprocessor',
    'SSTLocalizer',
    'SSTEdgeSelfAttention',
    'SSTInceptionV3',
    'SSTVGG16',
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
