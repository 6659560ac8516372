"""``SANGalleryHook``: embeds the retrieval gallery before each validation
and test run (``san.md`` §3.4)."""

from __future__ import annotations

import copy
from collections.abc import Mapping

from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from torch.utils.data import DataLoader

from shared.registry import HOOKS

__all__ = ['SANGalleryHook']

_MODALITIES = ('sketch', 'photo')


def _check_gallery(value, name: str):
    if value is None or isinstance(value, (Mapping, DataLoader)):
        return value
    raise TypeError(
        f'SANGalleryHook: {name} must be a dataloader config dict, a '
        f'DataLoader or None, got {type(value).__name__}'
    )


@HOOKS.register_module()
class SANGalleryHook(Hook):
    """Embed the gallery once per evaluation (mmpretrain prototype style).

    Before every validation epoch (``val_gallery``) and every test epoch
    (``test_gallery``) the hook unwraps ``runner.model`` and calls its
    ``prepare_gallery(gallery, modality)``
    (:class:`~projects.san.models.gallery_retrieval.GalleryRetrievalMixin`):
    the gallery is embedded with the current weights, sharded by
    ``DefaultSampler(shuffle=False)``, all-gathered and truncated to the
    dataset length. The model then attaches it to each query prediction,
    which :class:`~projects.san.evaluation.SANRetrievalMetric` scores.
    Embedding again each time keeps validation honest while training
    changes the weights, and a test run never sees the validation gallery.

    Args:
        val_gallery (dict | DataLoader | None): Gallery of the validation
            loop, usually the data base config's ``val_gallery_dataloader``.
        test_gallery (dict | DataLoader | None): Gallery of the test loop
            (``test_gallery_dataloader``).
        modality (str): Modality of the gallery images, ``'photo'`` (SBIR)
            or ``'sketch'`` (sketch-to-sketch zero-shot). Defaults to
            ``'photo'``.

    Raises:
        TypeError: A gallery that is neither a dict, a DataLoader nor None;
            a model without ``prepare_gallery``.
        ValueError: An unknown ``modality``; a validation or test epoch
            starting while its gallery is None.
    """

    priority = 'NORMAL'

    def __init__(
        self,
        val_gallery: dict | DataLoader | None = None,
        test_gallery: dict | DataLoader | None = None,
        modality: str = 'photo',
    ) -> None:
        if modality not in _MODALITIES:
            raise ValueError(
                f'SANGalleryHook: modality must be one of {_MODALITIES}, got '
                f'{modality!r}'
            )
        self.val_gallery = _check_gallery(val_gallery, 'val_gallery')
        self.test_gallery = _check_gallery(test_gallery, 'test_gallery')
        self.modality = modality

    def _prepare(self, runner, gallery, name: str) -> None:
        if gallery is None:
            raise ValueError(
                f'SANGalleryHook: a {name[:-8]} run started but {name} is '
                f"None; pass the data base config's {name}_dataloader"
            )
        model = runner.model
        if is_model_wrapper(model):
            model = model.module
        prepare = getattr(model, 'prepare_gallery', None)
        if prepare is None:
            raise TypeError(
                f'SANGalleryHook: {type(model).__name__} has no '
                'prepare_gallery(); use SANSBIRModel or SANEmbeddingRetriever'
            )
        if isinstance(gallery, Mapping):
            gallery = copy.deepcopy(dict(gallery))  # the model may edit it
        prepare(gallery, self.modality)

    def before_val_epoch(self, runner) -> None:
        """Embed ``val_gallery`` with the current weights."""
        self._prepare(runner, self.val_gallery, 'val_gallery')

    def before_test_epoch(self, runner) -> None:
        """Embed ``test_gallery`` with the current weights."""
        self._prepare(runner, self.test_gallery, 'test_gallery')
