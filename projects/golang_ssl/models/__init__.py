"""GOLANG models: the algorithm, neck, head and loss, the Sinkhorn-Knopp
and the linear-probe head."""

from .gaelle import GAELLE
from .gaelle_head import GAELLEHead
from .gaelle_loss import GAELLELoss
from .gaelle_neck import GAELLENeck
from .probe_head import GAELLEMultiLabelLinearHead
from .sinkhorn import distributed_sinkhorn_knopp

__all__ = [
    'GAELLE',
    'GAELLEHead',
    'GAELLELoss',
    'GAELLEMultiLabelLinearHead',
    'GAELLENeck',
    'distributed_sinkhorn_knopp',
]
