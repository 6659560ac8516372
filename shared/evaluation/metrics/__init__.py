"""MMEngine metrics of ``shared.evaluation`` (registered in METRICS)."""

from .multilabel_map import MultiLabelMAP

__all__ = ['MultiLabelMAP']
