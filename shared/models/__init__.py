"""Models shared by every project: the vanilla CAM baseline."""

from .cam_classifier import CAMClassifier

__all__ = ['CAMClassifier']
