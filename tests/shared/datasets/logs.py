"""Capture what the adapters log through mmengine's current logger."""

from __future__ import annotations

import logging
from contextlib import contextmanager

from mmengine.logging import MMLogger


@contextmanager
def captured_log(level: int = logging.WARNING):
    """Yield the list of records logged at ``level`` or above in the block."""
    logger = MMLogger.get_current_instance()
    records: list[logging.LogRecord] = []
    handler = logging.Handler(level)
    handler.emit = records.append
    logger.addHandler(handler)
    try:
        yield records
    finally:
        logger.removeHandler(handler)
