"""Utilities: compat patches, safe checkpoints, CPU distributed, setup."""
