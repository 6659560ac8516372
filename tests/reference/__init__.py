"""Slow, literal re-statements of the reference evaluators.

Written from ``specs/evaluation.md`` (not from our implementation); the
tests compare ``shared.evaluation`` against them.
"""
