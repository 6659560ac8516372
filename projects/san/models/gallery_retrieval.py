"""``GalleryRetrievalMixin``: embed a gallery once, attach it to predictions.

Used by :class:`SANSBIRModel` and :class:`SANEmbeddingRetriever`
(san.md §3.4, mmpretrain prototype style): ``SANGalleryHook`` calls
:meth:`prepare_gallery` before each validation / test epoch, and
``predict`` hands every query's embedding together with (references to)
the gallery to ``SANRetrievalMetric``.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
from mmengine.dist import (
    broadcast_object_list,
    collect_results,
    get_world_size,
)
from mmpretrain.structures import DataSample
from torch.utils.data import DataLoader

from .sbir_data_preprocessor import MODALITIES, batch_modality

__all__ = ['GalleryRetrievalMixin']


def _label_of(sample) -> int:
    label = getattr(sample, 'gt_label', None)
    if label is None:
        raise ValueError(
            'prepare_gallery: every gallery sample needs a gt_label'
        )
    label = torch.as_tensor(label).reshape(-1)
    if label.numel() != 1:
        raise ValueError(
            'prepare_gallery: a gallery sample needs one gt_label, got '
            f'{label.tolist()}'
        )
    return int(label.item())


class GalleryRetrievalMixin:
    """Gallery embedding and retrieval predictions for an embedding model.

    The host class is an mmengine ``BaseModel`` with ``data_preprocessor``
    and ``extract_feat(inputs, modality) -> (N, D)``.

    Attributes:
        gallery_embeddings (Tensor | None): (Ng, D) float32 CPU embeddings
            in dataset order, set by :meth:`prepare_gallery`.
        gallery_labels (Tensor | None): (Ng,) int64 classes.
    """

    gallery_embeddings: torch.Tensor | None = None
    gallery_labels: torch.Tensor | None = None

    @staticmethod
    def _build_gallery_loader(dataloader: DataLoader | dict) -> DataLoader:
        if isinstance(dataloader, DataLoader):
            return dataloader
        if not isinstance(dataloader, dict):
            raise TypeError(
                'prepare_gallery: dataloader must be a DataLoader or a '
                f'dataloader config dict, got {type(dataloader).__name__}'
            )
        from mmengine.runner import Runner

        cfg = copy.deepcopy(dataloader)
        # Sharded in order; collect_results restores the dataset order.
        cfg['sampler'] = dict(type='DefaultSampler', shuffle=False)
        return Runner.build_dataloader(cfg)

    def prepare_gallery(
        self, dataloader: DataLoader | dict, modality: str = 'photo'
    ) -> None:
        """Embed every gallery item and store the result on the model.

        Each batch goes through ``data_preprocessor(batch, False)`` (with
        ``metainfo['modality']`` of its samples set to ``modality``) and
        ``extract_feat(inputs, modality)`` in eval mode under
        ``torch.no_grad()``; the previous train/eval mode is restored. In
        distributed runs each rank embeds its shard; the results are
        gathered in dataset order and truncated to the dataset length
        (which drops the sampler's padding duplicates) on rank 0 and
        broadcast, so every rank holds the whole gallery.

        Args:
            dataloader (DataLoader | dict): The gallery loader, or its
                config (its sampler is forced to
                ``DefaultSampler(shuffle=False)``).
            modality (str): 'photo' or 'sketch'. Defaults to 'photo'.

        Raises:
            ValueError: An unknown modality, an empty gallery or a sample
                without one ``gt_label``.
        """
        if modality not in MODALITIES:
            raise ValueError(
                f'prepare_gallery: modality must be one of '
                f'{list(MODALITIES)}, got {modality!r}'
            )
        loader = self._build_gallery_loader(dataloader)
        size = len(loader.dataset)
        if size == 0:
            raise ValueError('prepare_gallery: the gallery dataset is empty')
        results: list[tuple[torch.Tensor, int]] = []
        was_training = self.training
        self.eval()
        try:
            with torch.no_grad():
                for batch in loader:
                    samples = batch.get('data_samples')
                    if samples is None:
                        raise ValueError(
                            'prepare_gallery: gallery batches need '
                            'data_samples with gt_label'
                        )
                    for sample in samples:
                        sample.set_metainfo(dict(modality=modality))
                    data = self.data_preprocessor(batch, False)
                    feats = self.extract_feat(data['inputs'], modality)
                    feats = feats.detach().float().cpu()
                    for feat, sample in zip(feats, data['data_samples']):
                        results.append((feat, _label_of(sample)))
        finally:
            self.train(was_training)
        results = collect_results(results, size, device='cpu')
        if get_world_size() > 1:
            # collect_results returns the list on rank 0 only; every rank
            # ranks its own query shard against the whole gallery.
            holder = [results]
            broadcast_object_list(holder, src=0)
            results = holder[0]
        if not results:
            raise ValueError('prepare_gallery: the gallery is empty')
        self.gallery_embeddings = torch.stack([r[0] for r in results])
        self.gallery_labels = torch.tensor(
            [r[1] for r in results], dtype=torch.int64
        )

    def _check_gallery(self) -> None:
        if self.gallery_embeddings is None or self.gallery_labels is None:
            raise RuntimeError(
                f'{type(self).__name__}: no gallery has been prepared; add '
                'SANGalleryHook to custom_hooks (it calls prepare_gallery '
                'before every validation/test epoch)'
            )

    def predict(
        self,
        inputs: torch.Tensor,
        data_samples: Sequence[DataSample] | None = None,
    ) -> list[DataSample]:
        """Embed a batch of queries and attach the gallery.

        Args:
            inputs (Tensor): (N, 3, H, W) normalised queries.
            data_samples (Sequence[DataSample] | None): Their samples; the
                modality is their ``metainfo['modality']`` (default
                'sketch', all equal).

        Returns:
            list[DataSample]: See :meth:`_retrieval_predictions`.

        Raises:
            RuntimeError: No gallery was prepared.
            ValueError: The samples have mixed or unknown modalities.
        """
        self._check_gallery()
        modality = batch_modality(data_samples)
        feats = self.extract_feat(inputs, modality)
        return self._retrieval_predictions(feats, data_samples)

    def _retrieval_predictions(
        self,
        embeddings: torch.Tensor,
        data_samples: Sequence[DataSample] | None = None,
    ) -> list[DataSample]:
        """Pack query embeddings with the gallery for the metric.

        Args:
            embeddings (Tensor): (N, D) query embeddings.
            data_samples (Sequence[DataSample] | None): The queries' samples
                (their ``gt_label`` is kept); None creates new ones.

        Returns:
            list[DataSample]: One per query, with ``embedding`` (D,)
            float32 CPU and references to ``gallery_embeddings`` and
            ``gallery_labels``.

        Raises:
            RuntimeError: No gallery was prepared.
        """
        self._check_gallery()
        embeddings = embeddings.detach().float().cpu()
        if data_samples is None:
            data_samples = [DataSample() for _ in range(len(embeddings))]
        if len(data_samples) != len(embeddings):
            raise ValueError(
                f'{type(self).__name__}: {len(data_samples)} data samples '
                f'for {len(embeddings)} queries'
            )
        for emb, sample in zip(embeddings, data_samples):
            sample.set_field(emb, 'embedding', field_type='data')
            sample.set_field(
                self.gallery_embeddings,
                'gallery_embeddings',
                field_type='data',
            )
            sample.set_field(
                self.gallery_labels, 'gallery_labels', field_type='data'
            )
        return list(data_samples)
