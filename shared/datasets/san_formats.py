"""The SAN fork's dataset formats (``datasets.md`` §4.8, ``san.md`` §5).

Three readers, registered in ``DATASETS``:

- :class:`SANTxtListDataset`: ``<path><sep><idx>`` lists with a
  ``<name><sep><idx>`` mapping file (the fork's committed data lists);
- :class:`SANInitFileDataset`: ``torch.save``\\ d path lists
  (``*_init.pt``: ``classes``, ``class_to_idx``, ``samples`` [(path, idx)],
  ``extensions``);
- :class:`SANInMemoryDataset`: preloaded encoded images (``*_imgs.pt``).

Every ``.pt`` file is read with :func:`shared.utils.checkpoint.safe_load`
(tensors and primitives only). The port's in-memory format (``format =
'san_inmemory_v1'``) is a ``weights_only``-loadable dict::

    format       'san_inmemory_v1'
    preprocess   'train' (short side resized to 256), 'val' (resized to
                 256, then centre crop 224) or 'none' (files as they were)
    classes      list[str], class names in index order
    class_to_idx dict[str, int], classes[i] -> i
    data         uint8 tensor (B,): every encoded image, concatenated
    offsets      int64 tensor (N + 1,): image i is data[offsets[i]:
                 offsets[i + 1]]
    targets      int64 tensor (N,): class index of each image
    extensions   list[str] (optional), as in the init file

One flat buffer instead of N small objects keeps loading fast (a single
zip record) and leaves nothing for DataLoader workers' reference counting
to copy. Entry i is the fork's ``(encoded bytes, idx)`` pair. The fork's
own files hold ``io.BytesIO`` objects, which only a full unpickle can read;
they are refused, naming ``tools/dataset_converters/san_imgs_to_raw.py
--trust-source``, which converts them once.

The writer (:func:`encode_inmemory_image`, :func:`pack_inmemory`,
:func:`save_san_file`) is shared by ``make_inmemory_dataset.py``,
``san_imgs_to_raw.py`` and the synthetic generator. It stores the original
encoding when no transform changed the image and lossless PNG otherwise;
``legacy_reencode`` re-saves in the original format at PIL's default
quality, like the fork.

In-memory samples are decoded with mmcv's pillow backend
(``color_ignore_orientation``: RGB without EXIF rotation, grayscale and
palette images expanded to three identical channels) into
``results['img']`` as BGR uint8 (H, W, 3), exactly what
``LoadImageFromFile(imdecode_backend='pillow',
color_type='color_ignore_orientation')`` gives for the same bytes; the
data preprocessor's ``to_rgb=True`` then feeds RGB to the model.
"""

from __future__ import annotations

import io
import logging
import os
import os.path as osp
from collections.abc import Sequence
from typing import Any

import mmcv
import numpy as np
import torch
from mmengine.logging import print_log
from mmpretrain.datasets import BaseDataset
from PIL import Image

from shared.registry import DATASETS
from shared.utils.checkpoint import UnsafeCheckpointError, safe_load

from .base import CheckedDatasetMixin, SampleLoadError
from .parsing import AnnotationError, parse_int, read_lines, split_line

__all__ = [
    'IMG_EXTENSIONS',
    'INMEMORY_FORMAT',
    'LegacyInMemoryFileError',
    'PREPROCESS',
    'SANInMemoryDataset',
    'SANInitFileDataset',
    'SANTxtListDataset',
    'check_classes',
    'decode_image',
    'encode_inmemory_image',
    'inmemory_image_bytes',
    'load_init_file',
    'load_inmemory',
    'load_san_file',
    'pack_inmemory',
    'read_mapping',
    'read_txt_list',
    'save_san_file',
]

#: torchvision's ``IMG_EXTENSIONS`` (the fork's make_dataset_paths list).
IMG_EXTENSIONS = (
    '.jpg',
    '.jpeg',
    '.png',
    '.ppm',
    '.bmp',
    '.pgm',
    '.tif',
    '.tiff',
    '.webp',
)
INMEMORY_FORMAT = 'san_inmemory_v1'
#: What ``make_inmemory_dataset.py -t`` did to the images before storing.
PREPROCESS = ('train', 'val', 'none')
CONVERTER = 'tools/dataset_converters/san_imgs_to_raw.py'
RESIZE_SHORT = 256
CROP = 224
#: PIL modes a PNG can hold; other modes (CMYK, YCbCr ...) become RGB.
PNG_MODES = ('1', 'L', 'LA', 'P', 'RGB', 'RGBA', 'I', 'I;16')


class LegacyInMemoryFileError(ValueError):
    """A fork ``*_imgs.pt`` holding ``io.BytesIO`` objects (not loadable
    without a full unpickle)."""


# -- torch.save files
def load_san_file(path: str, what: str = 'SAN dataset file') -> Any:
    """Read a ``torch.save``\\ d SAN file with :func:`safe_load`.

    Raises:
        FileNotFoundError: If ``path`` does not exist.
        LegacyInMemoryFileError: If the file holds ``io.BytesIO`` objects
            (the fork's in-memory format).
        UnsafeCheckpointError: For any other global outside the allowlist.
    """
    if not osp.isfile(path):
        raise FileNotFoundError(f'{what} not found: {path}')
    try:
        return safe_load(path, map_location='cpu')
    except UnsafeCheckpointError as err:
        if 'BytesIO' not in str(err):
            raise
        raise LegacyInMemoryFileError(
            f'{path} is a SAN fork in-memory file whose samples are '
            'io.BytesIO objects; reading them needs a full unpickle, which '
            'no dataset ever does (it can run arbitrary code). If you trust '
            f'the file, convert it once with: python {CONVERTER} {path} '
            '<output.pt> --trust-source'
        ) from None


def save_san_file(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save`` ``obj`` to ``path`` atomically and reproducibly.

    The zip is built in memory, so its bytes do not depend on the file name
    (``torch.save`` names the archive after the file otherwise).
    """
    path = os.fspath(path)
    buf = io.BytesIO()
    torch.save(obj, buf)
    directory = osp.dirname(osp.abspath(path))
    os.makedirs(directory, exist_ok=True)
    tmp = osp.join(directory, f'.{osp.basename(path)}.tmp{os.getpid()}')
    try:
        with open(tmp, 'wb') as f:
            f.write(buf.getvalue())
        os.replace(tmp, path)
    finally:
        if osp.exists(tmp):
            os.remove(tmp)


def check_classes(
    classes: Any, class_to_idx: Any, path: str
) -> tuple[list[str], dict[str, int]]:
    """Validate ``classes`` / ``class_to_idx`` of an init or imgs file.

    They agree when the names are the same, unique, and
    ``class_to_idx[classes[i]] == i`` (what every fork tool writes).

    Returns:
        tuple[list[str], dict[str, int]]: The classes in index order and
        the mapping.

    Raises:
        AnnotationError: Naming ``path`` and the first disagreement.
    """
    if not isinstance(classes, list | tuple) or not all(
        isinstance(c, str) for c in classes
    ):
        raise AnnotationError(path, 'classes', 'must be a list of str')
    if not isinstance(class_to_idx, dict):
        raise AnnotationError(path, 'class_to_idx', 'must be a dict')
    if not classes:
        raise AnnotationError(path, 'classes', 'is empty')
    seen: set[str] = set()
    for i, name in enumerate(classes):
        if name in seen:
            raise AnnotationError(
                path, f'classes[{i}]', f'class {name!r} is listed twice'
            )
        seen.add(name)
    for name, idx in class_to_idx.items():
        if name not in seen:
            raise AnnotationError(
                path,
                'class_to_idx',
                f'class {name!r} (index {idx}) is not in classes',
            )
    for i, name in enumerate(classes):
        if name not in class_to_idx:
            raise AnnotationError(
                path, 'class_to_idx', f'class {name!r} of classes is missing'
            )
        if class_to_idx[name] != i:
            raise AnnotationError(
                path,
                'class_to_idx',
                f'class {name!r} has index {class_to_idx[name]!r} but is '
                f'classes[{i}] (class_to_idx must agree with classes)',
            )
    return list(classes), dict(class_to_idx)


# -- txt lists
def read_mapping(
    path: str, sep: str = '\t', target_last: bool = True
) -> list[str]:
    """Read a ``<name><sep><idx>`` mapping file.

    Args:
        path (str): The mapping file (``mapping.txt``).
        sep (str): Token separator.
        target_last (bool): ``name<sep>idx`` (True) or ``idx<sep>name``.

    Returns:
        list[str]: Class names in index order (not necessarily sorted: the
        fork's Sketch_EITZ mapping is not).

    Raises:
        AnnotationError: On a malformed line, a repeated name or index, or
            indices that are not exactly ``0..K-1``; cites file and line.
    """
    names: dict[str, int] = {}
    by_idx: dict[int, tuple[str, int, str]] = {}
    for line_no, line in read_lines(path, 'class mapping'):
        tokens = split_line(path, line_no, line, num=2, sep=sep)
        name, token = tokens if target_last else tokens[::-1]
        idx = parse_int(token, path, line_no, line, what='class index')
        if not name:
            raise AnnotationError(path, line_no, 'empty class name', line)
        if name in names:
            raise AnnotationError(
                path,
                line_no,
                f'class {name!r} is already on line {names[name]}',
                line,
            )
        if idx in by_idx:
            raise AnnotationError(
                path,
                line_no,
                f'class index {idx} is already used on line {by_idx[idx][1]}',
                line,
            )
        names[name] = line_no
        by_idx[idx] = (name, line_no, line)
    k = len(by_idx)
    for idx in sorted(by_idx):
        if not 0 <= idx < k:
            name, line_no, line = by_idx[idx]
            missing = [i for i in range(k) if i not in by_idx][:5]
            raise AnnotationError(
                path,
                line_no,
                f'class index {idx} is outside 0..{k - 1}: the {k} indices '
                f'of a mapping must be contiguous (missing: {missing})',
                line,
            )
    return [by_idx[i][0] for i in range(k)]


def read_txt_list(
    path: str,
    num_classes: int,
    sep: str = '\t',
    target_last: bool = True,
    mapping_path: str = 'the mapping',
) -> list[tuple[str, int, int, str]]:
    """Read a ``<path><sep><idx>`` list.

    Returns:
        list[tuple[str, int, int, str]]: ``(path as written, label,
        line_no, line)`` per sample.

    Raises:
        AnnotationError: On a malformed line, a label outside the mapping
            or a repeated path; cites file and line.
    """
    out = []
    seen: dict[str, int] = {}
    for line_no, line in read_lines(path, 'image list'):
        tokens = split_line(path, line_no, line, num=2, sep=sep)
        img, token = tokens if target_last else tokens[::-1]
        label = parse_int(token, path, line_no, line, what='label')
        if not 0 <= label < num_classes:
            raise AnnotationError(
                path,
                line_no,
                f'label {label} is not in {mapping_path} (indices '
                f'0..{num_classes - 1})',
                line,
            )
        if not img:
            raise AnnotationError(path, line_no, 'empty image path', line)
        if img in seen:
            raise AnnotationError(
                path,
                line_no,
                f'duplicate image {img!r} (first on line {seen[img]})',
                line,
            )
        seen[img] = line_no
        out.append((img, label, line_no, line))
    return out


def _check_path_replace(path_replace) -> tuple[str, str] | None:
    if path_replace is None:
        return None
    if (
        not isinstance(path_replace, list | tuple)
        or len(path_replace) != 2
        or not all(isinstance(p, str) for p in path_replace)
    ):
        raise ValueError(
            f'path_replace must be a pair of str (old, new), got '
            f'{path_replace!r}'
        )
    return path_replace[0], path_replace[1]


class _SANPathsMixin:
    """Path resolution shared by the txt-list and init-file readers."""

    path_prefix: str | None
    path_replace: tuple[str, str] | None

    def _resolve(self, raw: str) -> str:
        path = raw
        if self.path_replace is not None:
            path = path.replace(*self.path_replace)
        path = osp.expanduser(path)
        if osp.isabs(path):
            return path
        if self.path_prefix is not None:
            prefix = self.path_prefix
            if not osp.isabs(prefix) and self.data_root:
                prefix = osp.join(self.data_root, prefix)
            return osp.join(prefix, path)
        return osp.join(self.data_root, path) if self.data_root else path

    def _set_classes(self, classes: list[str], source: str) -> None:
        given = self._metainfo.get('classes')
        if given is not None and tuple(given) != tuple(classes):
            raise ValueError(
                f'{type(self).__name__}: metainfo classes {tuple(given)} '
                f'disagree with {source} {tuple(classes)}'
            )
        self._metainfo['classes'] = tuple(classes)

    def _warn_empty_classes(self, classes, labels, source: str) -> None:
        empty = sorted(set(range(len(classes))) - set(labels))
        if empty:
            print_log(
                f'{type(self).__name__}: {len(empty)} class(es) of {source} '
                f'have no sample in {self.ann_file}: '
                + ', '.join(repr(classes[i]) for i in empty[:5]),
                logger='current',
                level=logging.WARNING,
            )


@DATASETS.register_module()
class SANTxtListDataset(_SANPathsMixin, CheckedDatasetMixin, BaseDataset):
    """The fork's txt lists: ``<path><sep><idx>`` and a class mapping.

    Args:
        data_root (str): Root of the layout; ``ann_file`` and
            ``classes_file`` are relative to it.
        ann_file (str): The list (``train.txt``, ``val.txt``,
            ``val_queries.txt``, ``test.txt`` ...).
        classes_file (str): ``<name><sep><idx>`` lines, indices exactly
            ``0..K-1``; defines ``metainfo['classes']`` in index order.
        sep (str): Token separator (the fork's lists use a tab).
        target_last (bool): ``path<sep>idx`` (True) or ``idx<sep>path``,
            for both files.
        path_prefix (str | None): Directory that relative image paths are
            joined to (itself relative to ``data_root``); ``None`` joins
            them to ``data_root``.
        path_replace (tuple[str, str] | None): ``(old, new)`` substring
            replacement applied to each image path first, e.g. to move the
            absolute paths committed in the fork's lists
            (``('/mnt/ssdDrive/', '/data/')``).
        check_path_class (bool): Require each image's parent folder to be
            the name of its class (true for Sketch_EITZ, flickr25k and
            miniQuickDraw; false for Flickr15k and flat ImageNet val).
        bad_sample_policy, skip_invalid, check_images: See
            :class:`~shared.datasets.base.CheckedDatasetMixin`.
        **kwargs: mmpretrain ``BaseDataset`` arguments (``pipeline``,
            ``test_mode``, ``lazy_init``, ``indices``, ``metainfo`` ...).

    Each data info holds ``img_path``, ``gt_label`` (int), ``img_id`` (the
    path as written) and ``img_ref`` (``'file:line'``); ``sample_idx`` is
    added by mmengine.
    """

    def __init__(
        self,
        data_root: str = '',
        ann_file: str = '',
        classes_file: str = 'mapping.txt',
        sep: str = '\t',
        target_last: bool = True,
        path_prefix: str | None = None,
        path_replace: Sequence[str] | None = None,
        check_path_class: bool = False,
        bad_sample_policy: str = 'error',
        skip_invalid: bool | None = None,
        check_images: str = 'lazy',
        **kwargs,
    ):
        if not ann_file:
            raise ValueError('SANTxtListDataset needs an ann_file')
        self._setup_checks(
            bad_sample_policy, skip_invalid, 'error', check_images
        )
        self.classes_file = classes_file
        self.sep = sep
        self.target_last = target_last
        self.path_prefix = path_prefix
        self.path_replace = _check_path_replace(path_replace)
        self.check_path_class = check_path_class
        kwargs['max_refetch'] = 0
        super().__init__(ann_file=ann_file, data_root=data_root, **kwargs)

    def _mapping_path(self) -> str:
        path = osp.expanduser(self.classes_file)
        if not osp.isabs(path) and self.data_root:
            path = osp.join(self.data_root, path)
        return path

    def load_data_list(self) -> list[dict]:
        """Parse the mapping and the list (see the class docstring)."""
        mapping = self._mapping_path()
        classes = read_mapping(mapping, self.sep, self.target_last)
        self._set_classes(classes, mapping)
        rows = read_txt_list(
            self.ann_file, len(classes), self.sep, self.target_last, mapping
        )
        data_list = []
        for raw, label, line_no, line in rows:
            if self.check_path_class:
                folder = osp.basename(osp.dirname(raw))
                if folder != classes[label]:
                    raise AnnotationError(
                        self.ann_file,
                        line_no,
                        f'label {label} is class {classes[label]!r} in '
                        f"{mapping} but the image's class folder is "
                        f'{folder!r}',
                        line,
                    )
            data_list.append(
                dict(
                    img_path=self._resolve(raw),
                    gt_label=label,
                    img_id=raw,
                    img_ref=f'{self.ann_file}:{line_no}',
                )
            )
        self._warn_empty_classes(
            classes, [d['gt_label'] for d in data_list], mapping
        )
        return self._check_samples(data_list)

    def extra_repr(self) -> list[str]:
        """Lines for ``repr``."""
        return [
            f'Annotation file: \t{self.ann_file}',
            f'Class mapping: \t{self._mapping_path()}',
        ]


def load_init_file(path: str) -> dict:
    """Load and validate a fork ``*_init.pt`` path list.

    Returns:
        dict: ``classes`` (index order), ``class_to_idx``, ``samples``
        (list of ``(path, idx)``), ``extensions`` (or ``None``) and any
        other key of the file.

    Raises:
        AnnotationError: Naming the file and the offending key or sample.
    """
    obj = load_san_file(path, 'init file')
    if not isinstance(obj, dict):
        raise AnnotationError(
            path, None, f'expected a dict, got {type(obj).__name__}'
        )
    for key in ('classes', 'class_to_idx', 'samples'):
        if key not in obj:
            raise AnnotationError(
                path, None, f'missing key {key!r} (keys: {sorted(obj)})'
            )
    classes, class_to_idx = check_classes(
        obj['classes'], obj['class_to_idx'], path
    )
    samples = obj['samples']
    if not isinstance(samples, list | tuple) or not samples:
        raise AnnotationError(path, 'samples', 'must be a non-empty list')
    seen: dict[str, int] = {}
    clean = []
    for j, sample in enumerate(samples):
        where = f'samples[{j}]'
        if (
            not isinstance(sample, list | tuple)
            or len(sample) != 2
            or not isinstance(sample[0], str)
            or isinstance(sample[1], bool)
            or not isinstance(sample[1], int)
        ):
            raise AnnotationError(
                path,
                where,
                'expected a (path, class index) pair',
                repr(sample),
            )
        img, label = sample
        if not 0 <= label < len(classes):
            raise AnnotationError(
                path,
                where,
                f'class index {label} is outside 0..{len(classes) - 1}',
                repr(sample),
            )
        if img in seen:
            raise AnnotationError(
                path,
                where,
                f'duplicate image (first at samples[{seen[img]}])',
                repr(sample),
            )
        seen[img] = j
        clean.append((img, label))
    out = dict(obj)
    out.update(
        classes=classes,
        class_to_idx=class_to_idx,
        samples=clean,
        extensions=obj.get('extensions'),
    )
    return out


@DATASETS.register_module()
class SANInitFileDataset(_SANPathsMixin, CheckedDatasetMixin, BaseDataset):
    """The fork's ``*_init.pt`` path lists, read with ``safe_load``.

    The file is a dict with ``classes`` (names, index order),
    ``class_to_idx``, ``samples`` [(path, idx)] and ``extensions``;
    ``class_to_idx`` must agree with ``classes`` and with every sample.

    Args:
        ann_file (str): The ``.pt`` file (relative to ``data_root``).
        data_root (str): Root joined to ``ann_file`` and to relative image
            paths (unless ``path_prefix`` is given).
        path_prefix (str | None): Directory relative image paths are joined
            to (itself relative to ``data_root`` unless absolute). The
            fork's tools store paths as given on their command line, often
            relative to the fork's working directory.
        path_replace (tuple[str, str] | None): ``(old, new)`` applied to
            every image path first.
        bad_sample_policy, skip_invalid, check_images: See
            :class:`~shared.datasets.base.CheckedDatasetMixin`.
        **kwargs: mmpretrain ``BaseDataset`` arguments.
    """

    def __init__(
        self,
        ann_file: str = '',
        data_root: str = '',
        path_prefix: str | None = None,
        path_replace: Sequence[str] | None = None,
        bad_sample_policy: str = 'error',
        skip_invalid: bool | None = None,
        check_images: str = 'lazy',
        **kwargs,
    ):
        if not ann_file:
            raise ValueError('SANInitFileDataset needs an ann_file')
        self._setup_checks(
            bad_sample_policy, skip_invalid, 'error', check_images
        )
        self.path_prefix = path_prefix
        self.path_replace = _check_path_replace(path_replace)
        kwargs['max_refetch'] = 0
        super().__init__(ann_file=ann_file, data_root=data_root, **kwargs)

    def load_data_list(self) -> list[dict]:
        """Load the init file (see the class docstring)."""
        init = load_init_file(self.ann_file)
        self.extensions = init['extensions']
        self._set_classes(init['classes'], self.ann_file)
        data_list = [
            dict(
                img_path=self._resolve(raw),
                gt_label=label,
                img_id=raw,
                img_ref=f'{self.ann_file}:samples[{j}]',
            )
            for j, (raw, label) in enumerate(init['samples'])
        ]
        self._warn_empty_classes(
            init['classes'], [d['gt_label'] for d in data_list], 'classes'
        )
        return self._check_samples(data_list)


# -- in-memory files
def _png_bytes(img: Image.Image) -> bytes:
    if img.mode not in PNG_MODES:
        img = img.convert('RGB')
    buf = io.BytesIO()
    img.save(buf, format='PNG')
    return buf.getvalue()


def encode_inmemory_image(
    src: str | bytes, preprocess: str, legacy_reencode: bool = False
) -> bytes:
    """Encoded bytes of one image as ``make_inmemory_dataset.py`` stores it.

    ``preprocess='train'`` resizes the short side to 256, ``'val'`` then
    centre-crops 224 (torchvision ``Resize(256)`` / ``CenterCrop(224)`` on
    the PIL image, the fork's transforms), ``'none'`` keeps the image.

    Args:
        src (str | bytes): Image file path or its bytes.
        preprocess (str): One of :data:`PREPROCESS`.
        legacy_reencode (bool): Re-save in the original format with PIL's
            defaults (JPEG quality 75) as the fork did, even when nothing
            changed; otherwise keep the original bytes when no transform
            changed the image and write lossless PNG when one did.

    Returns:
        bytes: The encoded image.
    """
    if preprocess not in PREPROCESS:
        raise ValueError(f'preprocess must be one of {PREPROCESS}')
    if isinstance(src, bytes | bytearray):
        data = bytes(src)
    else:
        with open(src, 'rb') as f:
            data = f.read()
    if preprocess == 'none' and not legacy_reencode:
        return data
    import torchvision.transforms.functional as TF

    with Image.open(io.BytesIO(data)) as img:
        fmt = img.format
        out = img
        if preprocess != 'none':
            out = TF.resize(out, RESIZE_SHORT)
        if preprocess == 'val':
            out = TF.center_crop(out, CROP)
        if legacy_reencode:
            buf = io.BytesIO()
            out.save(buf, format=fmt)
            return buf.getvalue()
        # torchvision's resize is a no-op exactly when the size is kept and
        # a 224 crop of a 224 image is the image: size tells what changed.
        if out.size == img.size:
            return data
        return _png_bytes(out)


def _entry_bytes(entry: Any, path: str, j: int) -> bytes:
    if isinstance(entry, io.BytesIO):
        return entry.getvalue()
    if isinstance(entry, bytes | bytearray):
        return bytes(entry)
    if isinstance(entry, torch.Tensor) and entry.dtype == torch.uint8:
        return entry.contiguous().numpy().tobytes()
    raise AnnotationError(
        path,
        f'samples[{j}]',
        f'expected encoded image bytes, got {type(entry).__name__}',
    )


def pack_inmemory(
    encoded: Sequence[Any],
    targets: Sequence[int],
    classes: Sequence[str],
    class_to_idx: dict[str, int],
    preprocess: str,
    extensions: Sequence[str] | None = None,
    source: str = '<memory>',
) -> dict:
    """Build the port's in-memory dict (``san_inmemory_v1``).

    Args:
        encoded (Sequence): Encoded images (bytes, ``io.BytesIO`` or uint8
            tensors), one per sample.
        targets (Sequence[int]): Class index of each image.
        classes (Sequence[str]): Class names in index order.
        class_to_idx (dict[str, int]): Must agree with ``classes``.
        preprocess (str): What was applied (:data:`PREPROCESS`).
        extensions (Sequence[str] | None): Kept from the init file.
        source (str): Name used in error messages.

    Returns:
        dict: See the module docstring; save it with :func:`save_san_file`.
    """
    if preprocess not in PREPROCESS:
        raise ValueError(f'preprocess must be one of {PREPROCESS}')
    classes, class_to_idx = check_classes(classes, class_to_idx, source)
    if len(encoded) != len(targets) or not len(encoded):
        raise ValueError(
            f'{source}: need as many targets as images (> 0), got '
            f'{len(encoded)} images and {len(targets)} targets'
        )
    blobs = [_entry_bytes(e, source, j) for j, e in enumerate(encoded)]
    for j, t in enumerate(targets):
        if isinstance(t, bool) or not 0 <= int(t) < len(classes):
            raise AnnotationError(
                source, f'samples[{j}]', f'class index {t!r} out of range'
            )
    offsets = np.zeros(len(blobs) + 1, np.int64)
    offsets[1:] = np.cumsum([len(b) for b in blobs])
    data = torch.frombuffer(bytearray(b''.join(blobs)), dtype=torch.uint8)
    obj = dict(
        format=INMEMORY_FORMAT,
        preprocess=preprocess,
        classes=classes,
        class_to_idx=class_to_idx,
        data=data,
        offsets=torch.from_numpy(offsets),
        targets=torch.tensor([int(t) for t in targets], dtype=torch.int64),
    )
    if extensions is not None:
        obj['extensions'] = list(extensions)
    return obj


def load_inmemory(path: str) -> dict:
    """Load and validate a ``san_inmemory_v1`` file.

    Returns:
        dict: The file's dict with ``data`` / ``offsets`` / ``targets`` as
        numpy arrays.

    Raises:
        LegacyInMemoryFileError: For the fork's ``io.BytesIO`` files.
        AnnotationError: For anything else that is not a valid file.
    """
    obj = load_san_file(path, 'in-memory file')
    if not isinstance(obj, dict) or obj.get('format') != INMEMORY_FORMAT:
        got = obj.get('format') if isinstance(obj, dict) else type(obj)
        raise AnnotationError(
            path,
            None,
            f'not a {INMEMORY_FORMAT} in-memory file (format: {got!r}); '
            'write it with tools/dataset_converters/make_inmemory_dataset.py '
            f'or convert a fork file with {CONVERTER} --trust-source',
        )
    keys = ('preprocess', 'classes', 'class_to_idx', 'data', 'offsets')
    for key in (*keys, 'targets'):
        if key not in obj:
            raise AnnotationError(path, None, f'missing key {key!r}')
    if obj['preprocess'] not in PREPROCESS:
        raise AnnotationError(
            path,
            'preprocess',
            f'{obj["preprocess"]!r} is not one of {PREPROCESS}',
        )
    classes, class_to_idx = check_classes(
        obj['classes'], obj['class_to_idx'], path
    )
    data, offsets, targets = obj['data'], obj['offsets'], obj['targets']
    if not (
        isinstance(data, torch.Tensor)
        and data.dtype == torch.uint8
        and data.dim() == 1
    ):
        raise AnnotationError(path, 'data', 'must be a 1-D uint8 tensor')
    n = len(targets) if isinstance(targets, torch.Tensor) else -1
    if (
        n < 1
        or targets.dim() != 1
        or not isinstance(offsets, torch.Tensor)
        or offsets.shape != (n + 1,)
    ):
        raise AnnotationError(
            path,
            'offsets',
            'need targets (N,) and offsets (N + 1,) tensors with N > 0',
        )
    offsets_np = offsets.numpy().astype(np.int64)
    if (
        offsets_np[0] != 0
        or offsets_np[-1] != data.numel()
        or (np.diff(offsets_np) <= 0).any()
    ):
        raise AnnotationError(
            path,
            'offsets',
            'must rise strictly from 0 to the size of data',
        )
    targets_np = targets.numpy().astype(np.int64)
    bad = np.flatnonzero((targets_np < 0) | (targets_np >= len(classes)))
    if len(bad):
        raise AnnotationError(
            path,
            f'targets[{bad[0]}]',
            f'class index {targets_np[bad[0]]} is outside '
            f'0..{len(classes) - 1}',
        )
    out = dict(obj)
    out.update(
        classes=classes,
        class_to_idx=class_to_idx,
        data=data.numpy(),
        offsets=offsets_np,
        targets=targets_np,
    )
    return out


def inmemory_image_bytes(obj: dict, index: int) -> bytes:
    """Encoded bytes of image ``index`` of a :func:`load_inmemory` dict."""
    lo, hi = obj['offsets'][index], obj['offsets'][index + 1]
    return obj['data'][lo:hi].tobytes()


def decode_image(data: bytes) -> np.ndarray:
    """Decode like ``LoadImageFromFile`` with pillow, no EXIF rotation.

    Returns:
        numpy.ndarray: BGR uint8 (H, W, 3); grayscale and palette images
        have three identical channels.
    """
    img = mmcv.imfrombytes(
        data, flag='color_ignore_orientation', backend='pillow'
    )
    if img is None:
        raise ValueError('cannot decode image bytes')
    return img


@DATASETS.register_module()
class SANInMemoryDataset(BaseDataset):
    """Preloaded encoded images (the fork's ``*_imgs.pt``), port format.

    The whole file is read once with ``safe_load`` (see the module
    docstring for its structure). Train files are pre-resized to short
    side 256 and val files to 256 then centre-cropped to 224, so a val
    pipeline must only normalise; the file records which
    (``preprocess``).

    Each sample is decoded before the pipeline: ``results['img']`` is BGR
    uint8 (H, W, 3) as ``LoadImageFromFile`` would give (so the pipeline
    starts after loading), with ``img_shape`` / ``ori_shape`` set.

    Args:
        ann_file (str): The ``.pt`` file (relative to ``data_root``).
        data_root (str): Root of ``ann_file``.
        expected_preprocess (str | None): ``'train'``, ``'val'`` or
            ``'none'``; raise if the file records something else (e.g. a
            train file under a val pipeline that only normalises).
        **kwargs: mmpretrain ``BaseDataset`` arguments.

    Data infos hold ``img_path`` (``'<ann_file>[<i>]'``), ``gt_label`` and
    ``inmemory_index``.

    Raises:
        LegacyInMemoryFileError: For a fork file holding ``io.BytesIO``
            objects; convert it with ``san_imgs_to_raw.py --trust-source``.
    """

    def __init__(
        self,
        ann_file: str = '',
        data_root: str = '',
        expected_preprocess: str | None = None,
        **kwargs,
    ):
        if not ann_file:
            raise ValueError('SANInMemoryDataset needs an ann_file')
        if expected_preprocess not in (None, *PREPROCESS):
            raise ValueError(
                f'expected_preprocess must be None or one of {PREPROCESS}, '
                f'got {expected_preprocess!r}'
            )
        self.expected_preprocess = expected_preprocess
        self.preprocess: str | None = None
        self._images: dict | None = None
        kwargs['max_refetch'] = 0
        super().__init__(ann_file=ann_file, data_root=data_root, **kwargs)

    def load_data_list(self) -> list[dict]:
        """Load the file and list its samples."""
        obj = load_inmemory(self.ann_file)
        self.preprocess = obj['preprocess']
        if (
            self.expected_preprocess is not None
            and self.preprocess != self.expected_preprocess
        ):
            raise ValueError(
                f'{self.ann_file} holds images preprocessed for '
                f'{self.preprocess!r} (make_inmemory_dataset.py -t), but '
                f'the config expects {self.expected_preprocess!r}: train '
                'files are resized to short side 256, val files also '
                'centre-cropped to 224 (their pipeline only normalises), '
                "'none' files are untouched"
            )
        self._set_classes(obj['classes'])
        self._images = {'data': obj['data'], 'offsets': obj['offsets']}
        return [
            dict(
                img_path=f'{self.ann_file}[{i}]',
                gt_label=int(label),
                inmemory_index=i,
            )
            for i, label in enumerate(obj['targets'])
        ]

    def _set_classes(self, classes: list[str]) -> None:
        given = self._metainfo.get('classes')
        if given is not None and tuple(given) != tuple(classes):
            raise ValueError(
                f'SANInMemoryDataset: metainfo classes {tuple(given)} '
                f'disagree with {self.ann_file} {tuple(classes)}'
            )
        self._metainfo['classes'] = tuple(classes)

    def get_image_bytes(self, idx: int) -> bytes:
        """Encoded bytes of sample ``idx`` (dataset index)."""
        info = self.get_data_info(idx)
        return inmemory_image_bytes(self._images, info['inmemory_index'])

    def prepare_data(self, idx: int) -> Any:
        """Decode sample ``idx`` and run the pipeline; errors name it."""
        info = self.get_data_info(idx)
        try:
            img = decode_image(
                inmemory_image_bytes(self._images, info['inmemory_index'])
            )
            info['img'] = img
            info['img_shape'] = img.shape[:2]
            info['ori_shape'] = img.shape[:2]
            return self.pipeline(info)
        except Exception as err:
            raise SampleLoadError(
                f'SANInMemoryDataset[{idx}] ({info["img_path"]}): '
                f'{type(err).__name__}: {err}'
            ) from err
