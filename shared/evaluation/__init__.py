"""WSOL, multi-label and retrieval evaluation (registered in METRICS)."""
