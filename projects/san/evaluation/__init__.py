"""SAN evaluation: the SBIR / zero-shot retrieval metric."""

from .retrieval_metric import SANRetrievalMetric

__all__ = ['SANRetrievalMetric']
