"""``SANEmbeddingRetriever``: retrieval with a classifier backbone's features.

The fork's zero-shot test (``tool/monomodal_zeroshot_test.py``) embeds
queries and catalog with ``MixedModel(..., getFeatVec=True)``: the
globally average-pooled last-stage map (san.md §2.5, §3.4).
"""

from __future__ import annotations

import torch
from mmengine.model import BaseModel
from mmpretrain.structures import DataSample
from torch import nn

from shared.registry import MODELS

from .gallery_retrieval import GalleryRetrievalMixin
from .sbir_data_preprocessor import MODALITIES, batch_modality

__all__ = ['SANEmbeddingRetriever']


@MODELS.register_module()
class SANEmbeddingRetriever(GalleryRetrievalMixin, BaseModel):
    """Backbone + global average pooling as an evaluation-only retriever.

    The embedding is the pooled last output of the backbone, (N, C_last)
    (2048-d for the :class:`SANMixedNet` presets). Train the classifier
    with ``ImageClassifier`` and load its checkpoint into this model
    (``load_from``; the ``backbone.*`` keys match, ``head.*`` keys are
    unused).

    Args:
        backbone (dict): Backbone config, e.g. ``dict(type='SANMixedNet',
            arch='resnet26')``; it returns a tuple of (N, C, H, W) maps.
        data_preprocessor (dict | None): Defaults to
            ``dict(type='SANSBIRDataPreprocessor')`` (ImageNet statistics).
        init_cfg (dict | None): MMEngine init config.
    """

    def __init__(
        self,
        backbone: dict,
        data_preprocessor: dict | None = None,
        init_cfg: dict | None = None,
    ) -> None:
        if data_preprocessor is None:
            data_preprocessor = dict(type='SANSBIRDataPreprocessor')
        if isinstance(data_preprocessor, dict):
            # Our registry (mmpretrain scope); BaseModel would look the type
            # up in mmengine's root registry.
            data_preprocessor = MODELS.build(data_preprocessor)
        super().__init__(
            data_preprocessor=data_preprocessor, init_cfg=init_cfg
        )
        if not isinstance(backbone, dict):
            raise TypeError(
                'SANEmbeddingRetriever: backbone must be a config dict, got '
                f'{type(backbone).__name__}'
            )
        self.backbone = MODELS.build(backbone)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))

    def extract_feat(
        self, inputs: torch.Tensor, modality: str = 'sketch'
    ) -> torch.Tensor:
        """Embed images (one backbone for every modality).

        Args:
            inputs (Tensor): (N, 3, H, W) normalised images.
            modality (str): 'sketch' or 'photo'; validated, otherwise
                unused.

        Returns:
            Tensor: (N, C_last) pooled features.
        """
        if modality not in MODALITIES:
            raise ValueError(
                f'SANEmbeddingRetriever: modality must be one of '
                f'{list(MODALITIES)}, got {modality!r}'
            )
        feats = self.backbone(inputs)
        if isinstance(feats, (list, tuple)):
            feats = feats[-1]
        return self.avgpool(feats).flatten(1)

    def forward(
        self,
        inputs: torch.Tensor,
        data_samples: list[DataSample] | None = None,
        mode: str = 'tensor',
    ):
        """'predict' → retrieval predictions; 'tensor' → (N, C) embeddings.

        Raises:
            ValueError: ``mode='loss'`` (this is an evaluation model) or an
                unknown mode.
        """
        if mode == 'predict':
            return self.predict(inputs, data_samples)
        if mode == 'tensor':
            return self.extract_feat(inputs, batch_modality(data_samples))
        if mode == 'loss':
            raise ValueError(
                'SANEmbeddingRetriever is an evaluation model and has no '
                "loss; train the backbone with ImageClassifier (mode='loss' "
                'is not supported)'
            )
        raise ValueError(
            "SANEmbeddingRetriever: mode must be 'predict' or 'tensor', got "
            f'{mode!r}'
        )
