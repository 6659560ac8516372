"""Box- and mask-aware transforms (``datasets.md`` §3), registered in
TRANSFORMS on import."""

from .formatting import PackLocInputs
from .loading import LoadLocAnnotations
from .loc_crop import LocCenterCrop, LocRandomCrop, LocRandomResizedCrop
from .loc_flip import LocRandomFlip
from .loc_resize import LocResize
from .pack_pair_inputs import PackPairInputs

__all__ = [
    'LoadLocAnnotations',
    'LocCenterCrop',
    'LocRandomCrop',
    'LocRandomFlip',
    'LocRandomResizedCrop',
    'LocResize',
    'PackLocInputs',
    'PackPairInputs',
]
