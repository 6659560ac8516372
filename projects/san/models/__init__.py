"""SAN models: the self-attention module and networks, the ResNet
baselines, the fork's mixed (hybrid / non-local) networks and the
smoothed cross-entropy of the original recipe."""

from .mixed_net import SANMixedNet
from .nl_block import NLBlock
from .sam import SAM
from .san import SAN, SANBlock
from .san_resnet import SANResNet
from .smooth_ce_loss import SANSmoothCELoss

__all__ = [
    'NLBlock',
    'SAM',
    'SAN',
    'SANBlock',
    'SANMixedNet',
    'SANResNet',
    'SANSmoothCELoss',
]
