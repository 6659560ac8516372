"""WSOL, multi-label and retrieval evaluation (registered in METRICS)."""

from . import metrics  # noqa: F401
