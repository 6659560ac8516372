"""Sketch-photo pairs and triplets for SBIR (``datasets.md`` §4.9).

:class:`SANSBIRDataset` walks the sketches (its length is their number)
and draws one photo (pair mode) or a positive and a negative photo
(triplet mode) for each. The draw uses ``numpy.random.default_rng([seed,
epoch, index])``, so the pairs of an epoch are reproducible and do not
depend on the number of DataLoader workers or on iteration order; the
fork drew from unseeded global state.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from mmengine.dataset import BaseDataset as MMEngineBaseDataset
from mmengine.dataset import Compose
from mmengine.dist import sync_random_seed
from mmpretrain.datasets import BaseDataset

from shared.registry import DATASETS, TRANSFORMS

from .base import SampleLoadError

__all__ = ['SANSBIRDataset']

MODES = ('pair', 'triplet')


def _build_view_dataset(cfg: Any, pipeline: Sequence | None, view: str):
    """Build one view's dataset, giving it ``pipeline`` when set."""
    if isinstance(cfg, dict):
        cfg = dict(cfg)
        if pipeline is not None:
            if cfg.get('pipeline'):
                raise ValueError(
                    f'SANSBIRDataset: give the {view} pipeline either in '
                    f'{view}_dataset or as {view}_pipeline, not both'
                )
            cfg['pipeline'] = list(pipeline)
        return DATASETS.build(cfg)
    if not isinstance(cfg, MMEngineBaseDataset):
        raise TypeError(
            f'SANSBIRDataset: {view}_dataset must be a config dict or an '
            f'mmengine BaseDataset, got {type(cfg).__name__}'
        )
    if pipeline is not None:
        cfg.pipeline = Compose(
            [
                TRANSFORMS.build(t) if isinstance(t, dict) else t
                for t in pipeline
            ]
        )
    return cfg


def _class_to_idx(dataset) -> dict[str, int]:
    classes = dataset.metainfo.get('classes')
    if not classes:
        raise ValueError(
            f'SANSBIRDataset: {type(dataset).__name__} has no '
            "metainfo['classes']"
        )
    return {name: i for i, name in enumerate(classes)}


@DATASETS.register_module()
class SANSBIRDataset(BaseDataset):
    """Sketch-photo pairs (contrastive phase) or triplets (triplet phase).

    Pair mode: an even index gets a photo of the sketch's class, an odd
    index a photo of a uniformly drawn other class. Triplet mode: a
    positive photo and a negative photo of a uniformly drawn other class.
    The sketch and photo datasets must have the same class names with the
    same indices (``ValueError`` otherwise; the fork's README warns that
    Flickr25k names may need renaming), and every class needs photos.

    Each view runs its own pipeline (the view datasets' pipelines, set
    with ``sketch_pipeline`` / ``photo_pipeline``); the outer ``pipeline``
    receives one dict and normally is ``[dict(type='PackPairInputs')]``::

        sketch        results of the sketch pipeline
        photo         results of the photo pipeline (positive in triplets)
        negative      results of the photo pipeline (triplet mode only)
        gt_label      int, the sketch's class
        photo_label   int, the class of ``photo``
        neg_label     int, the class of ``negative`` (triplet mode only)
        img_path, photo_path, neg_path, sample_idx, mode

    Args:
        sketch_dataset (dict | BaseDataset): Sketches, e.g.
            ``dict(type='SANTxtListDataset', data_root=..., ann_file=
            'train.txt')``; any dataset with ``metainfo['classes']`` and an
            int ``gt_label``.
        photo_dataset (dict | BaseDataset): Photos, likewise.
        sketch_pipeline (Sequence[dict] | None): Pipeline of the sketch
            view (loading included); ``None`` keeps the dataset's own.
        photo_pipeline (Sequence[dict] | None): Pipeline of photo views.
        pipeline (Sequence[dict]): Outer pipeline on the combined dict.
        mode (str): ``'pair'`` or ``'triplet'``; see :meth:`set_mode`.
        seed (int | None): Seed of the photo draws. ``None`` takes
            :func:`mmengine.dist.sync_random_seed` (drawn from the global
            numpy state that the runner's ``randomness.seed`` sets, the
            same on every rank), as ``DefaultSampler`` does.
        epoch (int): Initial epoch; see :meth:`set_epoch`.
        **kwargs: mmpretrain ``BaseDataset`` arguments (``test_mode``,
            ``lazy_init``, ``indices``, ``metainfo``).
    """

    def __init__(
        self,
        sketch_dataset: dict | MMEngineBaseDataset,
        photo_dataset: dict | MMEngineBaseDataset,
        sketch_pipeline: Sequence | None = None,
        photo_pipeline: Sequence | None = None,
        pipeline: Sequence = (),
        mode: str = 'pair',
        seed: int | None = None,
        epoch: int = 0,
        **kwargs,
    ):
        self.set_mode(mode)
        self.sketch_dataset = _build_view_dataset(
            sketch_dataset, sketch_pipeline, 'sketch'
        )
        self.photo_dataset = _build_view_dataset(
            photo_dataset, photo_pipeline, 'photo'
        )
        self.seed = int(sync_random_seed() if seed is None else seed)
        self.epoch = int(epoch)
        self._photos_by_class: list[np.ndarray] = []
        kwargs['max_refetch'] = 0
        kwargs.setdefault('serialize_data', False)
        super().__init__(ann_file='', pipeline=pipeline, **kwargs)

    # -- phase control (called by the SBIR phase hook)
    def set_epoch(self, epoch: int) -> None:
        """Use the draws of ``epoch`` (workers must not be persistent)."""
        self.epoch = int(epoch)

    def set_mode(self, mode: str) -> None:
        """Switch between ``'pair'`` and ``'triplet'``."""
        if mode not in MODES:
            raise ValueError(f'mode must be one of {MODES}, got {mode!r}')
        self.mode = mode

    # -- annotations
    def load_data_list(self) -> list[dict]:
        """Check the classes, group photos by class, list the sketches."""
        for ds in (self.sketch_dataset, self.photo_dataset):
            ds.full_init()
        sketch_map = _class_to_idx(self.sketch_dataset)
        photo_map = _class_to_idx(self.photo_dataset)
        if sorted(sketch_map) != sorted(photo_map):
            only_s = sorted(set(sketch_map) - set(photo_map))
            only_p = sorted(set(photo_map) - set(sketch_map))
            raise ValueError(
                'SANSBIRDataset: sketch and photo class names differ '
                f'(only sketches: {only_s[:5]}, only photos: {only_p[:5]}). '
                'Rename the photo classes to the sketch names (the fork '
                'notes Flickr25k names may need renaming).'
            )
        for name, idx in sketch_map.items():
            if photo_map[name] != idx:
                raise ValueError(
                    f'SANSBIRDataset: class {name!r} has index {idx} for '
                    f'sketches but {photo_map[name]} for photos; both '
                    'mappings must give every class the same index'
                )
        if len(sketch_map) < 2:
            raise ValueError('SANSBIRDataset needs at least two classes')
        self._metainfo.setdefault(
            'classes', tuple(self.sketch_dataset.metainfo['classes'])
        )
        photo_labels = self._labels(self.photo_dataset)
        groups = [
            np.flatnonzero(photo_labels == c) for c in range(len(sketch_map))
        ]
        empty = [c for c, g in enumerate(groups) if not len(g)]
        if empty:
            names = self.sketch_dataset.metainfo['classes']
            raise ValueError(
                f'SANSBIRDataset: {len(empty)} class(es) have no photo in '
                f'{getattr(self.photo_dataset, "ann_file", "the photos")}: '
                + ', '.join(repr(names[c]) for c in empty[:5])
            )
        self._photos_by_class = groups
        return [
            dict(sketch_index=i, gt_label=int(label))
            for i, label in enumerate(self._labels(self.sketch_dataset))
        ]

    @staticmethod
    def _labels(dataset) -> np.ndarray:
        return np.array(
            [
                int(dataset.get_data_info(i)['gt_label'])
                for i in range(len(dataset))
            ],
            dtype=np.int64,
        )

    # -- sampling
    def draw(self, idx: int) -> dict:
        """The photo indices and labels drawn for sample ``idx``.

        Returns:
            dict: ``sketch_index``, ``gt_label``, ``photo_index``,
            ``photo_label`` and, in triplet mode, ``neg_index`` and
            ``neg_label``.
        """
        info = self.get_data_info(idx)
        label = info['gt_label']
        rng = np.random.default_rng([self.seed, self.epoch, idx])
        num_classes = len(self._photos_by_class)

        def photo_of(c: int) -> int:
            group = self._photos_by_class[c]
            return int(group[rng.integers(len(group))])

        def other_class() -> int:
            c = int(rng.integers(num_classes - 1))
            return c + 1 if c >= label else c

        out = dict(sketch_index=info['sketch_index'], gt_label=label)
        if self.mode == 'pair' and idx % 2 == 0:
            out.update(photo_index=photo_of(label), photo_label=label)
        elif self.mode == 'pair':
            other = other_class()
            out.update(photo_index=photo_of(other), photo_label=other)
        else:
            out.update(photo_index=photo_of(label), photo_label=label)
            other = other_class()
            out.update(neg_index=photo_of(other), neg_label=other)
        return out

    def prepare_data(self, idx: int) -> Any:
        """Load the views of sample ``idx`` and run the outer pipeline."""
        drawn = self.draw(idx)
        views = dict(
            sketch=(self.sketch_dataset, drawn['sketch_index']),
            photo=(self.photo_dataset, drawn['photo_index']),
        )
        if 'neg_index' in drawn:
            views['negative'] = (self.photo_dataset, drawn['neg_index'])
        results: dict[str, Any] = dict(
            sample_idx=idx,
            mode=self.mode,
            gt_label=drawn['gt_label'],
            photo_label=drawn['photo_label'],
        )
        if 'neg_label' in drawn:
            results['neg_label'] = drawn['neg_label']
        path_keys = dict(
            sketch='img_path', photo='photo_path', negative='neg_path'
        )
        for view, (dataset, index) in views.items():
            results[path_keys[view]] = dataset.get_data_info(index).get(
                'img_path'
            )
            out = dataset.prepare_data(index)
            if out is None:
                raise SampleLoadError(
                    f'SANSBIRDataset[{idx}]: the {view} pipeline returned '
                    f'None for {results[path_keys[view]]}'
                )
            results[view] = out
        try:
            return self.pipeline(results)
        except Exception as err:
            raise SampleLoadError(
                f'SANSBIRDataset[{idx}] (sketch {results["img_path"]}, photo '
                f'{results["photo_path"]}): {type(err).__name__}: {err}'
            ) from err

    def extra_repr(self) -> list[str]:
        """Lines for ``repr``."""
        return [
            f'Mode: \t{self.mode}',
            f'Seed, epoch: \t{self.seed}, {self.epoch}',
            f'Sketches: \t{getattr(self.sketch_dataset, "ann_file", "")}',
            f'Photos: \t{getattr(self.photo_dataset, "ann_file", "")}',
        ]
