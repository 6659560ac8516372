"""Multi-label adapters: COCO instances json and VOC class files.

``datasets.md`` §4.5 and §4.6. Both follow mmpretrain's multi-label
convention: ``gt_label`` is the list of positive class indices and
``gt_label_difficult`` the classes to ignore;
:func:`shared.datasets.utils.multilabel_target` turns them into the
``{1, 0, -1}`` target. VOC with XMLs is mmpretrain's ``VOC`` (reused as
is); :class:`VOCClassList` gives the same targets from the class files.
"""

from __future__ import annotations

import json
import logging
import os
import os.path as osp
from collections.abc import Sequence

import numpy as np
from mmengine.logging import print_log
from mmpretrain.datasets import MultiLabelDataset

from shared.registry import DATASETS

from .base import CheckedDatasetMixin
from .parsing import (
    AnnotationError,
    AnnotationFileNotFoundError,
    parse_int,
    read_lines,
    split_line,
)

__all__ = ['COCOMultiLabel', 'VOCClassList', 'load_json']

#: Real VOC-2007 has 20 classes; VOCClassList insists on it by default.
NUM_VOC_CLASSES = 20
VOC_TEST_HINT = (
    'VOCtest_06-Nov-2007.tar must be extracted into the same folder as '
    "VOCtrainval_06-Nov-2007.tar (SS-PRL's download script fetches only "
    'trainval)'
)


def load_json(path: str) -> dict:
    """Read a json annotation file, naming the file (and line) on error.

    Raises:
        AnnotationFileNotFoundError: If the file does not exist.
        AnnotationError: If it is empty, not json, or not a json object.
    """
    if not osp.isfile(path):
        raise AnnotationFileNotFoundError(path)
    with open(path, 'rb') as f:
        raw = f.read()
    if not raw.strip():
        raise AnnotationError(path, None, 'annotation file is empty')
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as err:
        raise AnnotationError(
            path, err.lineno, f'invalid JSON: {err.msg} (column {err.colno})'
        ) from None
    except UnicodeDecodeError as err:
        raise AnnotationError(path, None, f'not UTF-8 text ({err})') from None
    if not isinstance(data, dict):
        raise AnnotationError(
            path, None, f'expected a JSON object, got {type(data).__name__}'
        )
    return data


class _MultiLabelBase(CheckedDatasetMixin, MultiLabelDataset):
    """Shared plumbing: bad-sample options, refs, no lazy refetch."""

    def __init__(
        self,
        *,
        bad_sample_policy: str,
        skip_invalid: bool | None,
        box_out_of_bounds: str,
        check_images: str,
        **kwargs,
    ):
        self._setup_checks(
            bad_sample_policy, skip_invalid, box_out_of_bounds, check_images
        )
        if kwargs.pop('max_refetch', 0):
            raise ValueError(
                f'{type(self).__name__}: max_refetch must be 0; bad samples '
                'are skipped at initialisation (bad_sample_policy="skip")'
            )
        super().__init__(max_refetch=0, **kwargs)

    def _set_classes(self, names: Sequence[str], source: str) -> None:
        """Set ``metainfo['classes']``; refuse a contradicting config."""
        given = self._metainfo.get('classes')
        if given is not None and tuple(given) != tuple(names):
            raise ValueError(
                f'{type(self).__name__}: metainfo classes {list(given)[:5]}'
                f'... ({len(given)}) differ from the {len(names)} classes '
                f'of {source}: {list(names)[:5]}...'
            )
        self._metainfo['classes'] = tuple(names)


@DATASETS.register_module()
class COCOMultiLabel(_MultiLabelBase):
    """COCO multi-label classification from an instances json (SS-PRL).

    Every annotation (crowd included, unless ``include_crowd=False``) makes
    its category positive; categories map to ``0..C-1`` in **file order**
    (COCO's ids have gaps). Images without annotations are kept with no
    positive class (counted in :attr:`num_empty` and logged) unless
    ``drop_empty=True``. Unknown ``image_id`` / ``category_id`` and
    duplicate image, category or annotation ids raise
    :class:`~shared.datasets.parsing.AnnotationError` naming the file and
    the id (``"<file>:annotation id N: ..."``).

    Data info: ``img_path``, ``img_id`` (COCO image id), ``gt_label``
    (sorted list of positive class indices), ``gt_label_difficult`` (always
    empty: no COCO class is ignored), ``ann_img_shape`` ``(H, W)``
    from the json, ``img_ref``; with ``with_boxes=True`` also
    ``gt_bboxes`` float64 (N, 4) xyxy edge coordinates in original pixels
    (``[x, y, x + w, y + h]``), ``ori_gt_bboxes`` (the json ``[x, y, w,
    h]``), ``ori_box_format='xywh'``, ``gt_bboxes_labels`` int64 (N,) and
    ``ann_ref`` (``'<file>:annotation id N'`` per box).

    Args:
        data_root (str): Dataset root, e.g. ``'data/coco/'``.
        ann_file (str): Instances json relative to ``data_root``, e.g.
            ``'annotations/instances_train2014.json'``.
        data_prefix (str | dict): Image folder (``'train2014'`` or
            ``dict(img_path='train2014')``).
        include_crowd (bool): Count ``iscrowd=1`` annotations as positives
            (SS-PRL does). Defaults to True.
        drop_empty (bool): Remove images without positives. Defaults to
            False (SS-PRL keeps them with an all-zero target).
        with_boxes (bool): Add the boxes of the kept annotations.
        bad_sample_policy, skip_invalid, box_out_of_bounds, check_images:
            See :class:`~shared.datasets.base.CheckedDatasetMixin`.
        **kwargs: Other arguments of mmpretrain ``BaseDataset``
            (``metainfo``, ``pipeline``, ``test_mode``, ...).
    """

    def __init__(
        self,
        data_root: str,
        ann_file: str,
        data_prefix: str | dict = '',
        include_crowd: bool = True,
        drop_empty: bool = False,
        with_boxes: bool = False,
        bad_sample_policy: str = 'error',
        skip_invalid: bool | None = None,
        box_out_of_bounds: str = 'error',
        check_images: str = 'lazy',
        **kwargs,
    ):
        if not ann_file:
            raise ValueError('COCOMultiLabel needs an instances json ann_file')
        self.include_crowd = include_crowd
        self.drop_empty = drop_empty
        self.with_boxes = with_boxes
        self.num_empty = 0
        self.num_crowd = 0
        self.num_annotations = 0
        super().__init__(
            bad_sample_policy=bad_sample_policy,
            skip_invalid=skip_invalid,
            box_out_of_bounds=box_out_of_bounds,
            check_images=check_images,
            data_root=data_root,
            ann_file=ann_file,
            data_prefix=data_prefix,
            **kwargs,
        )

    def load_data_list(self) -> list[dict]:
        """Parse the instances json (see the class docstring)."""
        path = self.ann_file
        data = load_json(path)
        for key in ('images', 'annotations', 'categories'):
            if not isinstance(data.get(key), list):
                raise AnnotationError(
                    path,
                    None,
                    f'no {key!r} list (an instances_*.json is needed; '
                    'image_info_*.json files carry no labels)',
                )
        cat_to_label, names = self._parse_categories(path, data['categories'])
        self._set_classes(names, path)
        images = self._parse_images(path, data['images'])
        positives: dict[int, set[int]] = {i: set() for i in images}
        boxes: dict[int, list] = {i: [] for i in images}
        seen: set = set()
        self.num_crowd = self.num_annotations = 0
        for index, ann in enumerate(data['annotations']):
            if not isinstance(ann, dict):
                raise AnnotationError(
                    path, f'annotations[{index}]', 'not a JSON object'
                )
            ann_id = ann.get('id')
            where = (
                f'annotations[{index}]'
                if ann_id is None
                else f'annotation id {ann_id}'
            )
            if ann_id is not None:
                if ann_id in seen:
                    raise AnnotationError(
                        path, where, 'duplicate annotation id'
                    )
                seen.add(ann_id)
            img_id = ann.get('image_id')
            if img_id not in images:
                raise AnnotationError(
                    path, where, f'unknown image_id {img_id!r}'
                )
            cat_id = ann.get('category_id')
            if cat_id not in cat_to_label:
                raise AnnotationError(
                    path,
                    where,
                    f'unknown category_id {cat_id!r} (categories: '
                    f'{sorted(cat_to_label)[:10]}...)',
                )
            crowd = bool(ann.get('iscrowd', 0))
            self.num_annotations += 1
            self.num_crowd += crowd
            if crowd and not self.include_crowd:
                continue
            label = cat_to_label[cat_id]
            positives[img_id].add(label)
            if self.with_boxes:
                boxes[img_id].append(
                    (self._parse_bbox(path, where, ann), label, where)
                )
        data_list = []
        empty = 0
        for img_id, img in images.items():
            labels = sorted(positives[img_id])
            if not labels:
                empty += 1
                if self.drop_empty:
                    continue
            info = dict(
                img_path=osp.join(self.img_prefix, img['file_name']),
                img_id=img_id,
                gt_label=labels,
                gt_label_difficult=[],
                ann_img_shape=img['shape'],
                img_ref=f'{path}:image id {img_id}',
            )
            if self.with_boxes:
                self._add_boxes(info, path, boxes[img_id])
            data_list.append(info)
        self.num_empty = empty
        crowd = f'{self.num_crowd} crowd annotation(s) ' + (
            'counted' if self.include_crowd else 'ignored'
        )
        print_log(
            f'COCOMultiLabel: {path}: {len(images)} images, {len(names)} '
            f'classes, {self.num_annotations} annotations ({crowd}); '
            f'{empty} image(s) without positives '
            + ('dropped' if self.drop_empty else 'kept with no positive'),
            logger='current',
            level=logging.INFO,
        )
        return self._check_samples(data_list)

    @staticmethod
    def _parse_categories(path: str, categories: list):
        cat_to_label: dict = {}
        names: list[str] = []
        for index, cat in enumerate(categories):
            if (
                not isinstance(cat, dict)
                or 'id' not in cat
                or 'name' not in cat
            ):
                raise AnnotationError(
                    path, f'categories[{index}]', 'needs an id and a name'
                )
            cid, name = cat['id'], str(cat['name'])
            if cid in cat_to_label:
                raise AnnotationError(
                    path,
                    f'category id {cid}',
                    f'duplicate category id (categories[{index}])',
                )
            if name in names:
                raise AnnotationError(
                    path,
                    f'category id {cid}',
                    f'duplicate category name {name!r}',
                )
            cat_to_label[cid] = len(names)
            names.append(name)
        if not names:
            raise AnnotationError(path, None, 'no categories')
        return cat_to_label, names

    @staticmethod
    def _parse_images(path: str, entries: list) -> dict:
        images: dict = {}
        for index, img in enumerate(entries):
            if not isinstance(img, dict) or 'id' not in img:
                raise AnnotationError(
                    path, f'images[{index}]', 'image entry without an id'
                )
            img_id = img['id']
            where = f'image id {img_id}'
            if img_id in images:
                raise AnnotationError(path, where, 'duplicate image id')
            if not isinstance(img.get('file_name'), str):
                raise AnnotationError(path, where, 'no file_name')
            shape = None
            if 'width' in img and 'height' in img:
                w, h = img['width'], img['height']
                if (
                    not (isinstance(w, int) and isinstance(h, int))
                    or min(w, h) <= 0
                ):
                    raise AnnotationError(
                        path, where, f'bad size width={w!r} height={h!r}'
                    )
                shape = (h, w)
            images[img_id] = {'file_name': img['file_name'], 'shape': shape}
        return images

    @staticmethod
    def _parse_bbox(path: str, where: str, ann: dict) -> np.ndarray:
        bbox = ann.get('bbox')
        try:
            arr = np.asarray(bbox, dtype=np.float64)
        except (TypeError, ValueError):
            arr = np.zeros(0)
        if arr.shape != (4,) or not np.isfinite(arr).all():
            raise AnnotationError(
                path, where, f'bbox must be 4 finite numbers, got {bbox!r}'
            )
        if arr[2] < 0 or arr[3] < 0:
            raise AnnotationError(
                path, where, f'negative bbox width or height {bbox!r}'
            )
        return arr

    @staticmethod
    def _add_boxes(info: dict, path: str, boxes: list) -> None:
        raw = np.array([b for b, _, _ in boxes], np.float64).reshape(-1, 4)
        xyxy = raw.copy()
        xyxy[:, 2:] += raw[:, :2]
        info['gt_bboxes'] = xyxy
        info['ori_gt_bboxes'] = raw
        info['ori_box_format'] = 'xywh'
        info['gt_bboxes_labels'] = np.array(
            [label for _, label, _ in boxes], np.int64
        )
        info['ann_ref'] = [f'{path}:{where}' for _, _, where in boxes]

    def extra_repr(self) -> list[str]:
        """Lines added to ``repr(dataset)``."""
        return [
            f'Annotation file: \t{self.ann_file}',
            f'Prefix of images: \t{self.img_prefix}',
            f'Images without positives: \t{self.num_empty}'
            + (' (dropped)' if self.drop_empty else ''),
            f'Crowd annotations: \t{self.num_crowd}'
            + ('' if self.include_crowd else ' (ignored)'),
        ]


@DATASETS.register_module()
class VOCClassList(_MultiLabelBase):
    """VOC multi-label classification from ``<class>_<split>.txt`` files.

    SS-PRL's reader: the image list ``ImageSets/Main/<split>.txt`` and one
    class file ``<class>_<split>.txt`` per class, each line ``<id>
    <flag>``. Flag 1 -> positive (``gt_label``), -1 -> negative, 0 (only
    difficult objects) -> ignore (``gt_label_difficult``), which gives the
    same :func:`~shared.datasets.utils.multilabel_target` as mmpretrain
    ``VOC`` on the XMLs. Any other flag, an id absent from the image list,
    a duplicate id, or an image missing from a class file raise naming the
    file and line (SS-PRL silently ignores missing images;
    ``missing_as_ignore=True`` restores that and ignores the class for
    them).

    Classes: ``metainfo['classes']`` (or ``classes``) when given, in that
    order; otherwise the sorted names of the ``*_<split>.txt`` files, of
    which there must be exactly 20. A test split without them means the
    VOC test tarball was not extracted, and the error says so.

    Args:
        data_root (str): ``VOCdevkit/VOC2007`` folder.
        split (str): ``'trainval'``, ``'test'``, ``'train'`` or ``'val'``.
        image_set_path (str): Image list relative to ``data_root``;
            defaults to ``ImageSets/Main/<split>.txt``. The class files are
            read from its folder.
        data_prefix (str | dict): Image folder, default ``JPEGImages``.
        missing_as_ignore (bool): Treat an image missing from a class file
            as difficult (ignored) instead of raising.
        bad_sample_policy, skip_invalid, check_images: See
            :class:`~shared.datasets.base.CheckedDatasetMixin`.
        **kwargs: Other arguments of mmpretrain ``BaseDataset``
            (``metainfo``, ``pipeline``, ``test_mode``, ...).
    """

    def __init__(
        self,
        data_root: str,
        split: str = 'trainval',
        image_set_path: str = '',
        data_prefix: str | dict = 'JPEGImages',
        missing_as_ignore: bool = False,
        bad_sample_policy: str = 'error',
        skip_invalid: bool | None = None,
        check_images: str = 'lazy',
        **kwargs,
    ):
        self.split = split
        self.missing_as_ignore = missing_as_ignore
        self.num_missing = 0
        image_set_path = image_set_path or osp.join(
            'ImageSets', 'Main', f'{split}.txt'
        )
        self.image_set_path = osp.join(data_root, image_set_path)
        super().__init__(
            bad_sample_policy=bad_sample_policy,
            skip_invalid=skip_invalid,
            box_out_of_bounds='error',
            check_images=check_images,
            data_root=data_root,
            ann_file='',
            data_prefix=data_prefix,
            **kwargs,
        )

    def _where(self) -> str:
        return self.image_set_path

    def _hint(self) -> str:
        return f'; {VOC_TEST_HINT}' if self.split == 'test' else ''

    def _class_names(self, folder: str) -> list[str]:
        suffix = f'_{self.split}.txt'
        given = self._metainfo.get('classes')
        if given is not None:
            missing = [
                osp.join(folder, f'{n}{suffix}')
                for n in given
                if not osp.isfile(osp.join(folder, f'{n}{suffix}'))
            ]
            if missing:
                raise AnnotationError(
                    missing[0],
                    None,
                    f'class file not found ({len(missing)} of {len(given)} '
                    f'classes have no <class>{suffix}){self._hint()}',
                )
            return list(given)
        found = sorted(
            f[: -len(suffix)]
            for f in (os.listdir(folder) if osp.isdir(folder) else ())
            if f.endswith(suffix)
        )
        if len(found) != NUM_VOC_CLASSES:
            raise AnnotationError(
                folder,
                None,
                f'expected exactly {NUM_VOC_CLASSES} class files '
                f'<class>{suffix}, found {len(found)} {found[:5]}'
                f'{"..." if len(found) > 5 else ""} (pass '
                f'metainfo=dict(classes=...) for another class set)'
                f'{self._hint()}',
            )
        return found

    def _read_image_list(self) -> dict[str, int]:
        path = self.image_set_path
        if not osp.isfile(path) and self.split == 'test':
            raise AnnotationError(
                path, None, f'test image list not found{self._hint()}'
            )
        ids: dict[str, int] = {}
        for line_no, line in read_lines(path, f'{self.split} image list'):
            (img_id,) = split_line(path, line_no, line, num=1)
            if img_id in ids:
                raise AnnotationError(
                    path,
                    line_no,
                    f'duplicate image id {img_id!r} (first at line '
                    f'{ids[img_id]})',
                    line,
                )
            ids[img_id] = line_no
        return ids

    def _read_class_file(self, path: str, ids: dict) -> dict[str, int]:
        flags: dict[str, tuple[int, int]] = {}
        for line_no, line in read_lines(path, 'class'):
            img_id, token = split_line(path, line_no, line, num=2)
            flag = parse_int(token, path, line_no, line, what='flag')
            if flag not in (1, 0, -1):
                raise AnnotationError(
                    path,
                    line_no,
                    f'flag {flag} is not 1 (positive), -1 (negative) or 0 '
                    '(difficult)',
                    line,
                )
            if img_id in flags:
                raise AnnotationError(
                    path,
                    line_no,
                    f'duplicate image id {img_id!r} (first at line '
                    f'{flags[img_id][1]})',
                    line,
                )
            if img_id not in ids:
                raise AnnotationError(
                    path,
                    line_no,
                    f'image id {img_id!r} is not in {self.image_set_path}',
                    line,
                )
            flags[img_id] = (flag, line_no)
        return {k: v[0] for k, v in flags.items()}

    def load_data_list(self) -> list[dict]:
        """Read the image list and the class files (see the docstring)."""
        list_path = self.image_set_path
        folder = osp.dirname(list_path)
        names = self._class_names(folder)
        self._set_classes(names, folder)
        ids = self._read_image_list()
        positives = {i: [] for i in ids}
        ignored = {i: [] for i in ids}
        self.num_missing = 0
        for c, name in enumerate(names):
            path = osp.join(folder, f'{name}_{self.split}.txt')
            flags = self._read_class_file(path, ids)
            for img_id, line_no in ids.items():
                flag = flags.get(img_id)
                if flag is None:
                    if not self.missing_as_ignore:
                        raise AnnotationError(
                            list_path,
                            line_no,
                            f'image id {img_id!r} is missing from {path} '
                            '(missing_as_ignore=True ignores the class for '
                            'such images, as SS-PRL does)',
                            img_id,
                        )
                    self.num_missing += 1
                    ignored[img_id].append(c)
                elif flag == 1:
                    positives[img_id].append(c)
                elif flag == 0:
                    ignored[img_id].append(c)
        if self.num_missing:
            print_log(
                f'VOCClassList: {self.num_missing} (image, class) pair(s) '
                f'missing from the class files of {folder} are ignored',
                logger='current',
                level=logging.WARNING,
            )
        data_list = [
            dict(
                img_path=osp.join(self.img_prefix, f'{img_id}.jpg'),
                img_id=img_id,
                gt_label=positives[img_id],
                gt_label_difficult=ignored[img_id],
                img_ref=f'{list_path}:{line_no}',
            )
            for img_id, line_no in ids.items()
        ]
        return self._check_samples(data_list)

    def extra_repr(self) -> list[str]:
        """Lines added to ``repr(dataset)``."""
        return [
            f'Path of image set: \t{self.image_set_path}',
            f'Prefix of images: \t{self.img_prefix}',
        ]
