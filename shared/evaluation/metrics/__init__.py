"""MMEngine metrics of ``shared.evaluation`` (registered in METRICS)."""

from .loc_accuracy_metric import LocAccuracyMetric
from .loc_base import BaseLocMetric
from .max_box_acc_metric import MaxBoxAccMetric
from .multilabel_map import MultiLabelMAP
from .pxap_metric import PxAPMetric

__all__ = [
    'BaseLocMetric',
    'LocAccuracyMetric',
    'MaxBoxAccMetric',
    'MultiLabelMAP',
    'PxAPMetric',
]
