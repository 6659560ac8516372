"""Dataset adapters and box/mask-aware transforms (registered in DATASETS)."""
