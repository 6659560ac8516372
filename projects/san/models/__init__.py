"""SAN models: the self-attention module and networks, the ResNet
baselines, the fork's mixed (hybrid / non-local) networks, its
sketch-based image retrieval model and embedding retriever, and the
smoothed cross-entropy of the original recipe."""

from .embedding_retriever import SANEmbeddingRetriever
from .gallery_retrieval import GalleryRetrievalMixin
from .mixed_net import SANMixedNet
from .nl_block import NLBlock
from .sam import SAM
from .san import SAN, SANBlock
from .san_resnet import SANResNet
from .sbir_data_preprocessor import SANSBIRDataPreprocessor
from .sbir_losses import sbir_contrastive_loss, sbir_triplet_loss
from .sbir_model import SANSBIRModel
from .smooth_ce_loss import SANSmoothCELoss

__all__ = [
    'GalleryRetrievalMixin',
    'NLBlock',
    'SAM',
    'SAN',
    'SANBlock',
    'SANEmbeddingRetriever',
    'SANMixedNet',
    'SANResNet',
    'SANSBIRDataPreprocessor',
    'SANSBIRModel',
    'SANSmoothCELoss',
    'sbir_contrastive_loss',
    'sbir_triplet_loss',
]
