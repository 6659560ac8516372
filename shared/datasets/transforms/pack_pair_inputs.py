"""Pack the views of an SBIR sample (``datasets.md`` §4.9)."""

from __future__ import annotations

from collections.abc import Sequence

from mmcv.transforms import BaseTransform
from mmpretrain.datasets.transforms import PackInputs
from mmpretrain.structures import DataSample

from shared.registry import TRANSFORMS

__all__ = ['PackPairInputs']


@TRANSFORMS.register_module()
class PackPairInputs(BaseTransform):
    """Pack a :class:`~shared.datasets.sbir.SANSBIRDataset` sample.

    Input: the dataset's dict, whose ``sketch``, ``photo`` and (triplet
    mode) ``negative`` entries are the results of each view's pipeline
    (each with an ``img`` array (H, W, C), as after ``LoadImageFromFile``
    and the augmentations).

    Output:

    - ``inputs``: list of tensors ``[sketch, photo]`` or ``[sketch, photo,
      negative]``, each uint8 (C, H, W) like ``PackInputs`` gives; mmengine's
      ``pseudo_collate`` turns a batch into one list per view;
    - ``data_samples``: a ``DataSample`` whose ``gt_label`` is the sketch's
      class and whose metainfo holds ``photo_label`` (and ``neg_label``)
      plus ``meta_keys``.

    Args:
        view_keys (Sequence[str]): Views in output order; the first two are
            required, later ones are packed when present.
        input_key (str): The image key inside each view.
        meta_keys (Sequence[str]): Top-level keys copied into metainfo.
    """

    DEFAULT_META_KEYS = (
        'sample_idx',
        'img_path',
        'photo_path',
        'neg_path',
        'photo_label',
        'neg_label',
        'mode',
    )

    def __init__(
        self,
        view_keys: Sequence[str] = ('sketch', 'photo', 'negative'),
        input_key: str = 'img',
        meta_keys: Sequence[str] = DEFAULT_META_KEYS,
    ):
        if len(view_keys) < 2:
            raise ValueError('PackPairInputs needs at least two view keys')
        self.view_keys = tuple(view_keys)
        self.input_key = input_key
        self.meta_keys = tuple(meta_keys)

    def transform(self, results: dict) -> dict:
        """Pack ``results`` (see the class docstring)."""
        inputs = []
        for i, key in enumerate(self.view_keys):
            if key not in results:
                if i < 2:
                    raise KeyError(
                        f'PackPairInputs: view {key!r} is missing (keys: '
                        f'{sorted(results)}) for {results.get("img_path")}'
                    )
                continue
            view = results[key]
            if not isinstance(view, dict) or self.input_key not in view:
                path = view.get('img_path') if isinstance(view, dict) else None
                raise KeyError(
                    f'PackPairInputs: view {key!r} has no {self.input_key!r} '
                    f'({path}); its pipeline must load the image and must '
                    'not pack it'
                )
            inputs.append(PackInputs.format_input(view[self.input_key]))
        if 'gt_label' not in results:
            raise KeyError('PackPairInputs: gt_label (sketch class) missing')
        sample = DataSample()
        sample.set_gt_label(results['gt_label'])
        for key in self.meta_keys:
            if key in results:
                sample.set_field(results[key], key, field_type='metainfo')
        return dict(inputs=inputs, data_samples=sample)

    def __repr__(self) -> str:
        return (
            f'{type(self).__name__}(view_keys={self.view_keys}, '
            f'input_key={self.input_key!r}, meta_keys={self.meta_keys})'
        )
