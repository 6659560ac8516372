"""WSOL dataset adapters (``datasets.md`` §4.1-4.4).

- :class:`CUBLoc`: CUB-200-2011 in its original layout, with boxes.
- :class:`ImageNetLoc`: ILSVRC-2012 validation images with the
  ``ILSVRC2012_bbox_val_v3`` XMLs or TS-CAM's ``val_folder_new.txt``.
- :class:`WSOLMetaDataset`: the wsolevaluation metadata layout (CUB and
  ILSVRC boxes, OpenImages instance masks).
- :class:`WSOLListDataset`: the SPA / WGOL list + box files.

Every adapter joins its files by key, raises an
:class:`~shared.datasets.parsing.AnnotationError` naming the file and line
of any defect, and applies the bad-sample policy of
:class:`~shared.datasets.base.CheckedDatasetMixin`. Samples follow the
data-info contract of ``datasets.md`` §3: ``img_path``, ``img_id``,
``gt_label``, and when there are boxes ``gt_bboxes`` (float64 (N, 4) xyxy,
original pixels, edge convention), ``ori_gt_bboxes`` (the raw numbers),
``ori_box_format`` and ``ann_ref`` (``'file:line'`` per box). Each sample
also carries ``img_ref``, the ``file:line`` (or XML file) that lists its
image, which image errors cite.
"""

from __future__ import annotations

import logging
import os
import os.path as osp
import re
import xml.parsers.expat
from collections.abc import Sequence

import numpy as np
from mmengine.logging import print_log
from mmpretrain.datasets import CUB, BaseDataset
from PIL import Image

from shared.registry import DATASETS

from .base import CheckedDatasetMixin
from .parsing import (
    AnnotationError,
    AnnotationFileNotFoundError,
    check_box,
    check_same_keys,
    first_items,
    parse_float,
    parse_int,
    read_lines,
    split_line,
)

__all__ = [
    'CUBLoc',
    'ImageNetLoc',
    'WSOLListDataset',
    'WSOLMetaDataset',
    'load_wnids',
    'parse_ilsvrc_xml',
]

#: ``NNN.Class_Name`` class folder of CUB (group 1: the 1-based class id).
_CUB_FOLDER = re.compile(r'^(\d+)\.')


def _join(root: str, path: str) -> str:
    """``root/path`` unless ``path`` is absolute or ``root`` empty."""
    if not root or osp.isabs(path):
        return path
    return osp.join(root, path)


def _warn(message: str) -> None:
    print_log(message, logger='current', level=logging.WARNING)


def _class_names(
    given: Sequence[str] | None, labels, where: str
) -> tuple[str, ...]:
    """``given`` names, or ``class_<k>`` for ``k < max(labels) + 1``."""
    if given:
        return tuple(given)
    if not len(labels):
        raise AnnotationError(where, None, 'no labelled sample')
    return tuple(f'class_{k}' for k in range(int(max(labels)) + 1))


# ---------------------------------------------------------------------------
# CUB-200-2011, original layout
# ---------------------------------------------------------------------------
@DATASETS.register_module()
class CUBLoc(CheckedDatasetMixin, CUB):
    """CUB-200-2011 with its bounding boxes (``datasets.md`` §4.1).

    Layout under ``data_root`` (``CUB_200_2011/``)::

        images/<NNN.Class_Name>/<file>.jpg
        images.txt               <img_id> <path under images/>
        image_class_labels.txt   <img_id> <class_id 1..C>
        train_test_split.txt     <img_id> <1 = train | 0 = test>
        bounding_boxes.txt       <img_id> <x> <y> <w> <h>
        classes.txt              <class_id> <NNN.Class_Name>

    All files are joined by image id (their id sets must be equal); the
    ``NNN`` of an image's class folder must equal its class id.
    ``gt_label`` is ``class_id - 1``; ``metainfo['classes']`` holds the
    names of ``classes.txt`` without the ``NNN.`` prefix. Boxes:
    ``ori_gt_bboxes`` = the (x, y, w, h) floats of the file
    (``ori_box_format='xywh'``), ``gt_bboxes`` = (x, y, x + w, y + h).
    ``img_id`` is the integer CUB image id.

    Args:
        data_root (str): The ``CUB_200_2011`` folder.
        split (str): ``'train'`` or ``'test'``.
        with_boxes (bool): Read ``bounding_boxes.txt``.
        bad_sample_policy (str): ``'error'`` or ``'skip'`` (see
            :class:`~shared.datasets.base.CheckedDatasetMixin`).
        skip_invalid (bool | None): ``True`` is shorthand for ``'skip'``.
        box_out_of_bounds (str): ``'error'``, ``'clip'`` or ``'skip'``.
        check_images (str): ``'lazy'``, ``'header'`` or ``'full'``.
        **kwargs: Other mmpretrain ``BaseDataset`` arguments (``pipeline``,
            ``test_mode``, ...).
    """

    def __init__(
        self,
        data_root: str,
        split: str = 'train',
        with_boxes: bool = True,
        bad_sample_policy: str = 'error',
        skip_invalid: bool | None = None,
        box_out_of_bounds: str = 'error',
        check_images: str = 'lazy',
        **kwargs,
    ):
        self._setup_checks(
            bad_sample_policy, skip_invalid, box_out_of_bounds, check_images
        )
        self.with_boxes = with_boxes
        self.classes_file = osp.join(data_root, 'classes.txt')
        self.bbox_file = osp.join(data_root, 'bounding_boxes.txt')
        super().__init__(
            data_root=data_root, split=split, max_refetch=0, **kwargs
        )

    @staticmethod
    def _read_id_table(
        path: str, num: int
    ) -> dict[int, tuple[list[str], str, int]]:
        """``{img_id: (tokens, line, line_no)}``; duplicate ids raise."""
        table: dict[int, tuple[list[str], str, int]] = {}
        for line_no, line in read_lines(path, 'annotation'):
            tokens = split_line(path, line_no, line, num=num)
            key = parse_int(tokens[0], path, line_no, line, 'image id')
            if key in table:
                raise AnnotationError(
                    path,
                    line_no,
                    f'duplicate image id {key} (first on line '
                    f'{table[key][2]})',
                    line,
                )
            table[key] = (tokens, line, line_no)
        return table

    def _read_classes(self) -> list[str]:
        path = self.classes_file
        folders: dict[int, tuple[str, int]] = {}
        for line_no, line in read_lines(path, 'annotation'):
            cid_tok, folder = split_line(path, line_no, line, num=2)
            cid = parse_int(cid_tok, path, line_no, line, 'class id')
            if cid in folders:
                raise AnnotationError(
                    path,
                    line_no,
                    f'duplicate class id {cid} (first on line '
                    f'{folders[cid][1]})',
                    line,
                )
            folders[cid] = (folder, line_no)
        num = len(folders)
        for cid, (_, line_no) in folders.items():
            if not 1 <= cid <= num:
                raise AnnotationError(
                    path,
                    line_no,
                    f'class ids must be 1..{num} (one line per class), got '
                    f'{cid}',
                )
        return [folders[c][0].split('.', 1)[-1] for c in range(1, num + 1)]

    def load_data_list(self) -> list[dict]:
        """Parse the CUB files (see the class docstring)."""
        names = self._read_classes()
        self._metainfo['classes'] = tuple(names)
        num_classes = len(names)
        images_file = self.ann_file
        labels_file = self.image_class_labels_file
        split_file = self.train_test_split_file
        images = self._read_id_table(images_file, 2)
        labels = self._read_id_table(labels_file, 2)
        splits = self._read_id_table(split_file, 2)
        tables = {images_file: images, labels_file: labels, split_file: splits}
        boxes = {}
        if self.with_boxes:
            boxes = self._read_id_table(self.bbox_file, 5)
            tables[self.bbox_file] = boxes
        check_same_keys(tables, 'image id')

        data_list = []
        for img_id in sorted(images):
            (_, rel), img_line, img_line_no = images[img_id]
            (_, flag), split_text, split_no = splits[img_id]
            if flag not in ('0', '1'):
                raise AnnotationError(
                    split_file,
                    split_no,
                    f'split flag must be 1 (train) or 0 (test), got {flag!r}',
                    split_text,
                )
            (_, cid_tok), label_line, label_no = labels[img_id]
            cid = parse_int(cid_tok, labels_file, label_no, label_line, 'id')
            if not 1 <= cid <= num_classes:
                raise AnnotationError(
                    labels_file,
                    label_no,
                    f'class id {cid} (label {cid - 1}) outside 1..'
                    f'{num_classes} (label outside [0, {num_classes}); '
                    f'{self.classes_file} has {num_classes} classes)',
                    label_line,
                )
            folder = rel.replace('\\', '/').split('/')[0]
            match = _CUB_FOLDER.match(folder) if '/' in rel else None
            if match is None:
                raise AnnotationError(
                    images_file,
                    img_line_no,
                    f'path {rel!r} is not <NNN.Class_Name>/<file>',
                    img_line,
                )
            if int(match.group(1)) != cid:
                raise AnnotationError(
                    labels_file,
                    label_no,
                    f'class id {cid} of image {img_id} does not match its '
                    f'class folder {folder!r} ({images_file}:{img_line_no})',
                    label_line,
                )
            if (flag == '1') != (self.split == 'train'):
                continue
            info = dict(
                img_path=osp.join(self.img_prefix, rel),
                img_id=img_id,
                gt_label=cid - 1,
                img_ref=f'{images_file}:{img_line_no}',
            )
            if self.with_boxes:
                (_, *xywh), box_line, box_no = boxes[img_id]
                x, y, w, h = (
                    parse_float(t, self.bbox_file, box_no, box_line, n)
                    for t, n in zip(xywh, 'xywh')
                )
                box = check_box(
                    [x, y, x + w, y + h], self.bbox_file, box_no, box_line
                )
                info.update(
                    gt_bboxes=box[None],
                    ori_gt_bboxes=np.array([[x, y, w, h]], np.float64),
                    ori_box_format='xywh',
                    ann_ref=[f'{self.bbox_file}:{box_no}'],
                )
            data_list.append(info)
        return self._check_samples(data_list)


# ---------------------------------------------------------------------------
# ILSVRC-2012 validation boxes
# ---------------------------------------------------------------------------
def parse_ilsvrc_xml(path: str) -> dict:
    """Parse one ``ILSVRC2012_bbox_val_v3`` (PASCAL VOC style) XML file.

    Args:
        path (str): The XML file.

    Returns:
        dict: ``filename`` (str | None), ``width``/``height`` (str | None,
        as written), ``size_line`` (int | None) and ``objects``: a list of
        dicts with ``name`` (wnid), ``coords`` (the four strings xmin, ymin,
        xmax, ymax as written) and ``line`` (line of ``<object>``).

    Raises:
        AnnotationError: Malformed XML (naming the line), a root other than
            ``<annotation>``, an object without ``<name>`` or a complete
            ``<bndbox>``.
    """
    if not osp.isfile(path):
        raise AnnotationFileNotFoundError(path, 'XML annotation')
    parser = xml.parsers.expat.ParserCreate()
    stack: list[list] = []  # [name, text parts]
    out: dict = {
        'filename': None,
        'width': None,
        'height': None,
        'size_line': None,
        'objects': [],
    }
    coord_names = ('xmin', 'ymin', 'xmax', 'ymax')

    def start(name, _attrs):
        if not stack and name != 'annotation':
            raise AnnotationError(
                path,
                parser.CurrentLineNumber,
                f'root element is <{name}>, expected <annotation>',
            )
        stack.append([name, []])
        names = [s[0] for s in stack]
        if names == ['annotation', 'object']:
            out['objects'].append(
                {'name': None, 'box': {}, 'line': parser.CurrentLineNumber}
            )
        elif names == ['annotation', 'size']:
            out['size_line'] = parser.CurrentLineNumber

    def chars(data):
        if stack:
            stack[-1][1].append(data)

    def end(_name):
        names = [s[0] for s in stack]
        text = ''.join(stack.pop()[1]).strip()
        if names == ['annotation', 'filename']:
            out['filename'] = text
        elif names in (
            ['annotation', 'size', 'width'],
            ['annotation', 'size', 'height'],
        ):
            out[names[-1]] = text
        elif names == ['annotation', 'object', 'name']:
            out['objects'][-1]['name'] = text
        elif names[:3] == ['annotation', 'object', 'bndbox'] and (
            len(names) == 4 and names[3] in coord_names
        ):
            out['objects'][-1]['box'][names[3]] = text
        elif names == ['annotation', 'object']:
            obj = out['objects'][-1]
            if not obj['name']:
                raise AnnotationError(
                    path, obj['line'], 'object has no <name>'
                )
            missing = [c for c in coord_names if c not in obj['box']]
            if missing:
                raise AnnotationError(
                    path,
                    obj['line'],
                    f'object has no complete <bndbox> (missing '
                    f'{", ".join(missing)})',
                )

    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = chars
    try:
        with open(path, 'rb') as f:
            parser.ParseFile(f)
    except xml.parsers.expat.ExpatError as err:
        raise AnnotationError(
            path, err.lineno, f'malformed XML: {err}'
        ) from None
    for obj in out['objects']:
        obj['coords'] = [obj['box'][c] for c in coord_names]
        del obj['box']
    return out


def load_wnids(
    data_root: str,
    synsets_file: str | None = None,
    train_dir: str = 'train',
) -> tuple[list[str], str]:
    """The ILSVRC class order (``datasets.md`` §2.3, §4.2).

    Args:
        data_root (str): The ``ILSVRC2012`` folder.
        synsets_file (str | None): One wnid per line (further tokens on a
            line are ignored); relative to ``data_root``. ``None`` uses
            ``synsets.txt`` when present, else the sorted folders of
            ``train_dir``.
        train_dir (str): Train folder (relative to ``data_root``).

    Returns:
        tuple[list[str], str]: The wnids in class order and where they
        came from (for messages).
    """
    path = None
    if synsets_file is not None:
        path = _join(data_root, synsets_file)
    elif osp.isfile(osp.join(data_root, 'synsets.txt')):
        path = osp.join(data_root, 'synsets.txt')
    if path is not None:
        seen: dict[str, int] = {}
        for line_no, line in read_lines(path, 'annotation'):
            wnid = line.split()[0]
            if wnid in seen:
                raise AnnotationError(
                    path,
                    line_no,
                    f'duplicate wnid {wnid} (first on line {seen[wnid]})',
                    line,
                )
            seen[wnid] = line_no
        if list(seen) != sorted(seen):
            _warn(
                f'{path}: wnids are not sorted; class indices follow the '
                'file order, which differs from the sorted order that '
                'mmpretrain ImageNet training uses'
            )
        return list(seen), path
    train = _join(data_root, train_dir)
    if not osp.isdir(train):
        raise AnnotationFileNotFoundError(
            osp.join(data_root, 'synsets.txt'),
            f'class list (neither synsets.txt nor {train}/<wnid>/ folders '
            'exist; pass synsets_file=...); synsets',
        )
    wnids = sorted(
        d for d in os.listdir(train) if osp.isdir(osp.join(train, d))
    )
    if not wnids:
        raise AnnotationError(train, None, 'no class folders to read wnids')
    return wnids, f'{train}/<wnid> folders'


@DATASETS.register_module()
class ImageNetLoc(CheckedDatasetMixin, BaseDataset):
    """ILSVRC-2012 validation images with boxes (``datasets.md`` §4.2).

    Two annotation sources give identical samples:

    - ``ann_format='xml'``: every ``*.xml`` of ``ann_dir``
      (``ILSVRC2012_bbox_val_v3``). All objects of an image must name one
      wnid; ``<size>`` becomes ``ann_img_shape`` and is compared with the
      decoded image by the image checks. ``ann_ref`` is ``'<xml>:<line of
      <object>>'``.
    - ``ann_format='tscam_list'``: TS-CAM's ``val_folder_new.txt``,
      ``<wnid>/<file> <label> x1 y1 x2 y2 [...]``. The label must equal the
      class index of the wnid. The legacy ``val_folder.txt`` (float
      coordinates, one box) needs ``allow_first_box_only=True``.

    Labels are indices in the class list (``synsets.txt`` or the sorted
    ``train/`` folders, :func:`load_wnids`), which is
    ``metainfo['classes']``. Boxes are ``xyxy`` as written
    (``ori_box_format='xyxy'``), all kept. ``img_id`` is the file stem
    (``ILSVRC2012_val_XXXXXXXX``).

    Images are ``val/<wnid>/<file>`` (``val_layout='class_subdirs'``,
    TS-CAM) or ``val/<file>`` (``'flat'``); ``'auto'`` takes the first
    layout under which an annotated image exists (class folders first) and
    records it in :attr:`val_layout`.

    Args:
        data_root (str): The ``ILSVRC2012`` folder.
        ann_format (str): ``'xml'`` or ``'tscam_list'``.
        ann_dir (str): XML folder (relative to ``data_root``).
        ann_file (str): TS-CAM list (relative to ``data_root``).
        val_layout (str): ``'auto'``, ``'flat'`` or ``'class_subdirs'``.
        data_prefix (str): Image folder (relative to ``data_root``).
        synsets_file (str | None): Class list, see :func:`load_wnids`.
        train_dir (str): Folder whose sorted subfolders give the classes
            when there is no ``synsets.txt``.
        img_ext (str): Image extension for XML stems.
        allow_first_box_only (bool): Accept the legacy ``val_folder.txt``.
        bad_sample_policy, skip_invalid, box_out_of_bounds, check_images:
            See :class:`~shared.datasets.base.CheckedDatasetMixin`.
        **kwargs: Other mmpretrain ``BaseDataset`` arguments.
    """

    ANN_FORMATS = ('xml', 'tscam_list')
    VAL_LAYOUTS = ('auto', 'flat', 'class_subdirs')

    def __init__(
        self,
        data_root: str,
        ann_format: str = 'xml',
        ann_dir: str = 'bbox_val',
        ann_file: str = 'ILSVRC2012_list/val_folder_new.txt',
        val_layout: str = 'auto',
        data_prefix: str = 'val',
        synsets_file: str | None = None,
        train_dir: str = 'train',
        img_ext: str = '.JPEG',
        allow_first_box_only: bool = False,
        bad_sample_policy: str = 'error',
        skip_invalid: bool | None = None,
        box_out_of_bounds: str = 'error',
        check_images: str = 'lazy',
        **kwargs,
    ):
        if ann_format not in self.ANN_FORMATS:
            raise ValueError(
                f'ann_format must be one of {self.ANN_FORMATS}, got '
                f'{ann_format!r}'
            )
        if val_layout not in self.VAL_LAYOUTS:
            raise ValueError(
                f'val_layout must be one of {self.VAL_LAYOUTS}, got '
                f'{val_layout!r}'
            )
        self._setup_checks(
            bad_sample_policy, skip_invalid, box_out_of_bounds, check_images
        )
        self.ann_format = ann_format
        self.ann_dir = _join(data_root, ann_dir)
        self.val_layout = val_layout
        self.synsets_file = synsets_file
        self.train_dir = train_dir
        self.img_ext = img_ext
        self.allow_first_box_only = allow_first_box_only
        super().__init__(
            ann_file=ann_file if ann_format == 'tscam_list' else '',
            data_root=data_root,
            data_prefix=data_prefix,
            max_refetch=0,
            **kwargs,
        )

    def _where(self) -> str:
        return (
            self.ann_file
            if self.ann_format == 'tscam_list'
            else (self.ann_dir)
        )

    def load_data_list(self) -> list[dict]:
        """Parse the XMLs or the TS-CAM list (see the class docstring)."""
        wnids, source = load_wnids(
            self.data_root, self.synsets_file, self.train_dir
        )
        self._metainfo['classes'] = tuple(wnids)
        index = {w: i for i, w in enumerate(wnids)}
        if self.ann_format == 'xml':
            samples = self._load_xml(index, source)
        else:
            samples = self._load_tscam(index, source)
        layout = self._resolve_layout(samples)
        for info in samples:
            wnid, name = info.pop('_wnid'), info.pop('_file')
            if layout == 'class_subdirs':
                info['img_path'] = osp.join(self.img_prefix, wnid, name)
            else:
                info['img_path'] = osp.join(self.img_prefix, name)
        return self._check_samples(samples)

    def _resolve_layout(self, samples: list[dict]) -> str:
        if self.val_layout != 'auto':
            return self.val_layout
        for info in samples:
            wnid, name = info['_wnid'], info['_file']
            if osp.isfile(osp.join(self.img_prefix, wnid, name)):
                self.val_layout = 'class_subdirs'
                return self.val_layout
            if osp.isfile(osp.join(self.img_prefix, name)):
                self.val_layout = 'flat'
                return self.val_layout
        first = samples[0]
        raise FileNotFoundError(
            f'{first["img_ref"]}: val_layout="auto" found no annotated image '
            f'under either candidate layout: neither '
            f'{osp.join(self.img_prefix, first["_wnid"], first["_file"])} '
            f'(class_subdirs) nor {osp.join(self.img_prefix, first["_file"])}'
            ' (flat) exists'
        )

    def _load_xml(self, index: dict[str, int], source: str) -> list[dict]:
        ann_dir = self.ann_dir
        if not osp.isdir(ann_dir):
            raise AnnotationFileNotFoundError(ann_dir, 'XML annotation folder')
        names = sorted(f for f in os.listdir(ann_dir) if f.endswith('.xml'))
        if not names:
            raise AnnotationError(ann_dir, None, 'no .xml annotation files')
        samples = []
        for fname in names:
            path = osp.join(ann_dir, fname)
            ann = parse_ilsvrc_xml(path)
            objects = ann['objects']
            if not objects:
                raise AnnotationError(path, None, 'no <object> in the XML')
            wnid = objects[0]['name']
            for obj in objects[1:]:
                if obj['name'] != wnid:
                    raise AnnotationError(
                        path,
                        obj['line'],
                        f'objects of one validation image name different '
                        f'classes: {wnid} (line {objects[0]["line"]}) and '
                        f'{obj["name"]}',
                    )
            if wnid not in index:
                raise AnnotationError(
                    path,
                    objects[0]['line'],
                    f'class {wnid} is not in the class list ({source})',
                )
            raw = np.array(
                [
                    [
                        parse_float(t, path, o['line'], None, c)
                        for t, c in zip(
                            o['coords'], ('xmin', 'ymin', 'xmax', 'ymax')
                        )
                    ]
                    for o in objects
                ],
                np.float64,
            )
            for box, obj in zip(raw, objects):
                check_box(box, path, obj['line'])
            info = dict(
                img_id=fname[:-4],
                gt_label=index[wnid],
                gt_bboxes=raw.copy(),
                ori_gt_bboxes=raw,
                ori_box_format='xyxy',
                ann_ref=[f'{path}:{o["line"]}' for o in objects],
                img_ref=path,
                _wnid=wnid,
                _file=fname[:-4] + self.img_ext,
            )
            if ann['width'] is not None and ann['height'] is not None:
                w = parse_int(ann['width'], path, ann['size_line'], None, 'w')
                h = parse_int(ann['height'], path, ann['size_line'], None, 'h')
                if w <= 0 or h <= 0:
                    raise AnnotationError(
                        path, ann['size_line'], f'bad <size> {w}x{h}'
                    )
                info['ann_img_shape'] = (h, w)
            samples.append(info)
        return samples

    def _load_tscam(self, index: dict[str, int], source: str) -> list[dict]:
        path = self.ann_file
        num_classes = len(index)
        seen: dict[str, int] = {}
        samples = []
        legacy = 0
        for line_no, line in read_lines(path, 'annotation'):
            tokens = split_line(path, line_no, line, min_num=6)
            rel, label_tok, coords = tokens[0], tokens[1], tokens[2:]
            if len(coords) % 4:
                raise AnnotationError(
                    path,
                    line_no,
                    f'the number of box coordinates must be a positive '
                    f'multiple of 4, got {len(coords)}',
                    line,
                )
            if rel in seen:
                raise AnnotationError(
                    path,
                    line_no,
                    f'duplicate image {rel!r} (first on line {seen[rel]})',
                    line,
                )
            seen[rel] = line_no
            label = parse_int(label_tok, path, line_no, line, 'label')
            if not 0 <= label < num_classes:
                raise AnnotationError(
                    path,
                    line_no,
                    f'label {label} outside [0, {num_classes})',
                    line,
                )
            parts = rel.replace('\\', '/').split('/')
            if len(parts) != 2:
                raise AnnotationError(
                    path, line_no, f'path {rel!r} is not <wnid>/<file>', line
                )
            wnid, name = parts
            if wnid not in index:
                raise AnnotationError(
                    path,
                    line_no,
                    f'class {wnid} is not in the class list ({source})',
                    line,
                )
            if index[wnid] != label:
                raise AnnotationError(
                    path,
                    line_no,
                    f'label {label} does not match the class of its folder '
                    f'{wnid} (index {index[wnid]} in the class list; class-id '
                    'mismatch)',
                    line,
                )
            if any('.' in c for c in coords):
                if not self.allow_first_box_only:
                    raise AnnotationError(
                        path,
                        line_no,
                        'float coordinates: this looks like the legacy '
                        'val_folder.txt (first box only); use '
                        'val_folder_new.txt or pass allow_first_box_only=True',
                        line,
                    )
                legacy += 1
                coords = coords[:4]
            raw = np.array(
                [parse_float(c, path, line_no, line, 'coordinate')
                 for c in coords],
                np.float64,
            ).reshape(-1, 4)  # fmt: skip
            for box in raw:
                check_box(box, path, line_no, line)
            samples.append(
                dict(
                    img_id=osp.splitext(name)[0],
                    gt_label=label,
                    gt_bboxes=raw.copy(),
                    ori_gt_bboxes=raw,
                    ori_box_format='xyxy',
                    ann_ref=[f'{path}:{line_no}'] * len(raw),
                    img_ref=f'{path}:{line_no}',
                    _wnid=wnid,
                    _file=name,
                )
            )
        if legacy:
            _warn(
                f'ImageNetLoc: {path} is a legacy first-box-only list; '
                f'{legacy} image(s) keep only their first box'
            )
        return samples


# ---------------------------------------------------------------------------
# wsolevaluation metadata
# ---------------------------------------------------------------------------
@DATASETS.register_module()
class WSOLMetaDataset(CheckedDatasetMixin, BaseDataset):
    """The wsolevaluation metadata layout (``datasets.md`` §4.3).

    ``metadata_root`` holds ``image_ids.txt`` (``<path>``),
    ``image_ids_proxy.txt`` (optional), ``class_labels.txt``
    (``<path>,<label>``), ``image_sizes.txt`` (``<path>,<w>,<h>``, optional)
    and ``localization.txt``: boxes ``<path>,<x0>,<y0>,<x1>,<y1>`` (one line
    per box) or masks ``<path>,<mask_png>,<ignore_png>`` (one line per
    instance, the ignore png only on an image's first line). Paths are
    relative to ``data_root`` (images) and ``mask_root`` (pngs).

    Every id of ``image_ids.txt`` needs a label, a size when
    ``image_sizes.txt`` exists, and with ``loc_type`` set at least one
    localization line; lines for ids not in ``image_ids.txt`` are errors.
    Where every path starts with a CUB class folder ``NNN.Class``, ``NNN -
    1`` must equal the label. With ``image_sizes.txt`` the boxes are
    checked against the stated sizes at initialisation.

    ``metainfo['classes']``: ``classes`` when given (labels must be below
    its length), else ``class_<k>`` for ``k`` up to the largest label of
    ``class_labels.txt``. ``img_id`` is the metadata path.

    Mask samples carry ``mask_paths`` (instance pngs), ``mask_refs``
    (``'localization.txt:line'`` per png), ``ignore_path`` (or ``None``:
    an empty ignore field on an image's first line means no ignore region,
    and is reported in one warning) and ``mask_threshold``; the pngs are
    read by ``LoadLocAnnotations``. With ``check_images`` other than
    ``'lazy'`` every png (instances and ignore) is checked for existence
    and size at initialisation.

    Args:
        data_root (str): Image root (``dataset/CUB`` ...).
        metadata_root (str): The split's metadata folder (taken as given,
            not joined with ``data_root``).
        loc_type (str): ``'box'``, ``'mask'`` or ``'none'``.
        mask_root (str | None): Root of the pngs; ``None`` = ``data_root``.
        proxy (bool): Read ``image_ids_proxy.txt`` (a subset of
            ``image_ids.txt``) instead of ``image_ids.txt``.
        num_sample_per_class (int): Keep this many images per class (0 =
            all), drawn without replacement with ``sample_seed``; the kept
            ids are in :attr:`sampled_ids`. The original draws them
            unseeded.
        sample_seed (int): Seed of that draw.
        classes (str | Sequence[str] | None): Class names (or a file with
            one name per line).
        mask_threshold (int): Foreground is png value > this (0 =
            wsolevaluation, 128 = SPA/WGOL).
        bad_sample_policy, skip_invalid, box_out_of_bounds, check_images,
        allow_mask_size_mismatch: See
            :class:`~shared.datasets.base.CheckedDatasetMixin`.
        **kwargs: Other mmpretrain ``BaseDataset`` arguments.
    """

    LOC_TYPES = ('box', 'mask', 'none')

    def __init__(
        self,
        data_root: str,
        metadata_root: str,
        loc_type: str = 'box',
        mask_root: str | None = None,
        proxy: bool = False,
        num_sample_per_class: int = 0,
        sample_seed: int = 0,
        classes: str | Sequence[str] | None = None,
        mask_threshold: int = 0,
        bad_sample_policy: str = 'error',
        skip_invalid: bool | None = None,
        box_out_of_bounds: str = 'error',
        check_images: str = 'lazy',
        allow_mask_size_mismatch: bool = False,
        **kwargs,
    ):
        if loc_type not in self.LOC_TYPES:
            raise ValueError(
                f'loc_type must be one of {self.LOC_TYPES}, got {loc_type!r}'
            )
        if num_sample_per_class < 0:
            raise ValueError(
                f'num_sample_per_class must be >= 0, got '
                f'{num_sample_per_class}'
            )
        self._setup_checks(
            bad_sample_policy,
            skip_invalid,
            box_out_of_bounds,
            check_images,
            allow_mask_size_mismatch,
        )
        self.metadata_root = str(metadata_root)
        self.loc_type = loc_type
        self.mask_root = data_root if mask_root is None else mask_root
        self.proxy = proxy
        self.num_sample_per_class = num_sample_per_class
        self.sample_seed = sample_seed
        self.mask_threshold = mask_threshold
        self.sampled_ids: list[str] | None = None
        super().__init__(
            ann_file='',
            data_root=data_root,
            classes=classes,
            max_refetch=0,
            **kwargs,
        )

    def _where(self) -> str:
        return self.metadata_root

    def _meta(self, name: str) -> str:
        return osp.join(self.metadata_root, name)

    @staticmethod
    def _read_ids(path: str) -> dict[str, int]:
        ids: dict[str, int] = {}
        for line_no, line in read_lines(path, 'annotation'):
            if line in ids:
                raise AnnotationError(
                    path,
                    line_no,
                    f'duplicate image id (first on line {ids[line]})',
                    line,
                )
            ids[line] = line_no
        return ids

    def _read_keyed(
        self, name: str, num: int, ids: dict[str, int]
    ) -> dict[str, tuple[list[str], str, int]]:
        """One line per id, joined with ``ids`` in both directions."""
        path = self._meta(name)
        table: dict[str, tuple[list[str], str, int]] = {}
        for line_no, line in read_lines(path, 'annotation'):
            tokens = split_line(path, line_no, line, num=num, sep=',')
            key = tokens[0]
            if key in table:
                raise AnnotationError(
                    path,
                    line_no,
                    f'duplicate image id (first on line {table[key][2]})',
                    line,
                )
            if key not in ids:
                raise AnnotationError(
                    path,
                    line_no,
                    f'image id {key!r} is not in '
                    f'{self._meta("image_ids.txt")}',
                    line,
                )
            table[key] = (tokens[1:], line, line_no)
        for key, line_no in ids.items():
            if key not in table:
                raise AnnotationError(
                    self._meta('image_ids.txt'),
                    line_no,
                    f'image id {key!r} is missing from {path}',
                    key,
                )
        return table

    def load_data_list(self) -> list[dict]:
        """Parse the metadata files (see the class docstring)."""
        ids_file = self._meta('image_ids.txt')
        all_ids = self._read_ids(ids_file)
        selected, sel_file = all_ids, ids_file
        if self.proxy:
            sel_file = self._meta('image_ids_proxy.txt')
            selected = self._read_ids(sel_file)
            for key, line_no in selected.items():
                if key not in all_ids:
                    raise AnnotationError(
                        sel_file,
                        line_no,
                        f'proxy image id is not in {ids_file}',
                        key,
                    )
        label_rows = self._read_keyed('class_labels.txt', 2, all_ids)
        labels_file = self._meta('class_labels.txt')
        labels: dict[str, int] = {}
        for key, ((tok,), line, line_no) in label_rows.items():
            labels[key] = parse_int(tok, labels_file, line_no, line, 'label')
        given = self._metainfo.get('classes')
        names = _class_names(given, list(labels.values()), labels_file)
        self._metainfo['classes'] = names
        self._check_labels(label_rows, labels, len(names))

        sizes: dict[str, tuple[int, int]] = {}
        if osp.isfile(self._meta('image_sizes.txt')):
            sizes_file = self._meta('image_sizes.txt')
            rows = self._read_keyed('image_sizes.txt', 3, all_ids)
            for key, ((w_tok, h_tok), line, line_no) in rows.items():
                w = parse_int(w_tok, sizes_file, line_no, line, 'width')
                h = parse_int(h_tok, sizes_file, line_no, line, 'height')
                if w <= 0 or h <= 0:
                    raise AnnotationError(
                        sizes_file, line_no, f'bad size {w}x{h}', line
                    )
                sizes[key] = (h, w)

        loc: dict[str, dict] = {}
        if self.loc_type == 'box':
            loc = self._read_boxes(all_ids)
        elif self.loc_type == 'mask':
            loc = self._read_masks(all_ids)

        keys = list(selected)
        if self.num_sample_per_class:
            keys = self._subsample(keys, labels)
        data_list = []
        for key in keys:
            info = dict(
                img_path=osp.join(self.data_root, key),
                img_id=key,
                gt_label=labels[key],
                img_ref=f'{sel_file}:{selected[key]}',
            )
            if key in sizes:
                info['ann_img_shape'] = sizes[key]
            if key in loc:
                info.update(loc[key])
            data_list.append(info)
        return self._check_samples(data_list)

    def _check_labels(self, rows, labels: dict[str, int], num: int) -> None:
        path = self._meta('class_labels.txt')
        for key, label in labels.items():
            if not 0 <= label < num:
                _, line, line_no = rows[key]
                raise AnnotationError(
                    path,
                    line_no,
                    f'label {label} outside [0, {num})',
                    line,
                )
        folders = [
            _CUB_FOLDER.match(k.replace('\\', '/').split('/')[0])
            if '/' in k
            else None
            for k in labels
        ]
        if not folders or not all(folders):
            return
        for (key, label), match in zip(labels.items(), folders):
            if int(match.group(1)) - 1 != label:
                _, line, line_no = rows[key]
                raise AnnotationError(
                    path,
                    line_no,
                    f'label {label} does not match the class folder of '
                    f'{key!r} (class id {match.group(1)} = label '
                    f'{int(match.group(1)) - 1}; class-id mismatch)',
                    line,
                )

    def _read_boxes(self, ids: dict[str, int]) -> dict[str, dict]:
        path = self._meta('localization.txt')
        boxes: dict[str, list] = {}
        for line_no, line in read_lines(path, 'annotation'):
            tokens = split_line(path, line_no, line, num=5, sep=',')
            key = tokens[0]
            if key not in ids:
                raise AnnotationError(
                    path,
                    line_no,
                    f'localization for unknown image id {key!r} (not in '
                    f'{self._meta("image_ids.txt")})',
                    line,
                )
            values = [
                parse_float(t, path, line_no, line, n)
                for t, n in zip(tokens[1:], ('x0', 'y0', 'x1', 'y1'))
            ]
            box = check_box(values, path, line_no, line)
            boxes.setdefault(key, []).append((box, line_no))
        self._require_loc(ids, boxes, path)
        out = {}
        for key, items in boxes.items():
            arr = np.stack([b for b, _ in items]).astype(np.float64)
            out[key] = dict(
                gt_bboxes=arr,
                ori_gt_bboxes=arr.copy(),
                ori_box_format='xyxy',
                ann_ref=[f'{path}:{n}' for _, n in items],
            )
        return out

    def _read_masks(self, ids: dict[str, int]) -> dict[str, dict]:
        path = self._meta('localization.txt')
        out: dict[str, dict] = {}
        no_ignore: list[str] = []
        for line_no, line in read_lines(path, 'annotation'):
            key, mask, ignore = split_line(path, line_no, line, num=3, sep=',')
            if key not in ids:
                raise AnnotationError(
                    path,
                    line_no,
                    f'localization for unknown image id {key!r} (not in '
                    f'{self._meta("image_ids.txt")})',
                    line,
                )
            if not mask:
                raise AnnotationError(
                    path, line_no, 'empty mask png field', line
                )
            ref = f'{path}:{line_no}'
            if key not in out:
                if not ignore:
                    no_ignore.append(ref)
                out[key] = dict(
                    mask_paths=[],
                    mask_refs=[],
                    ignore_path=(
                        osp.join(self.mask_root, ignore) if ignore else None
                    ),
                    mask_threshold=self.mask_threshold,
                )
            elif ignore:
                raise AnnotationError(
                    path,
                    line_no,
                    f'ignore png on a later line of image {key!r} (only its '
                    f'first line, {out[key]["mask_refs"][0]}, may name one)',
                    line,
                )
            out[key]['mask_paths'].append(osp.join(self.mask_root, mask))
            out[key]['mask_refs'].append(ref)
        self._require_loc(ids, out, path)
        if no_ignore:
            _warn(
                f'{type(self).__name__}: {len(no_ignore)} image(s) have an '
                'empty ignore field on their first localization line (no '
                'ignore region); first: ' + '; '.join(first_items(no_ignore))
            )
        return out

    def _require_loc(self, ids: dict[str, int], loc: dict, path: str) -> None:
        for key, line_no in ids.items():
            if key not in loc:
                raise AnnotationError(
                    self._meta('image_ids.txt'),
                    line_no,
                    f'image id {key!r} has no line in {path}',
                    key,
                )

    def _subsample(self, keys: list[str], labels: dict[str, int]):
        num = self.num_sample_per_class
        by_class: dict[int, list[int]] = {}
        for i, key in enumerate(keys):
            by_class.setdefault(labels[key], []).append(i)
        rng = np.random.default_rng(self.sample_seed)
        chosen: list[int] = []
        for label in sorted(by_class):
            members = by_class[label]
            if len(members) < num:
                raise ValueError(
                    f'{type(self).__name__}: num_sample_per_class={num} but '
                    f'class {label} has only {len(members)} image(s) in '
                    f'{self.metadata_root}'
                )
            chosen.extend(rng.choice(members, num, replace=False).tolist())
        keys = [keys[i] for i in sorted(chosen)]
        self.sampled_ids = keys
        return keys

    def _check_one(self, info: dict) -> tuple[str | None, str]:
        kind, message = super()._check_one(info)
        ignore = info.get('ignore_path')
        if kind is not None or self.check_images == 'lazy' or not ignore:
            return kind, message
        with Image.open(info['img_path']) as img:
            size = img.size
        return self._check_mask(ignore, size, info['mask_refs'][0])


# ---------------------------------------------------------------------------
# SPA / WGOL list files
# ---------------------------------------------------------------------------
def _is_number(token: str) -> bool:
    try:
        float(token)
    except ValueError:
        return False
    return True


def _same_image(token: str, path: str) -> bool:
    """Whether a box-file path token names the list entry ``path``.

    Extensions are ignored (SPA's ILSVRC box file names the ``.xml``); a
    token without folders is compared with the entry's file name.
    """
    a = osp.splitext(token.replace('\\', '/'))[0]
    b = osp.splitext(path.replace('\\', '/'))[0]
    if a == b:
        return True
    return '/' not in a and a == b.rsplit('/', 1)[-1]


@DATASETS.register_module()
class WSOLListDataset(CheckedDatasetMixin, BaseDataset):
    """SPA / WGOL list and box files (``datasets.md`` §4.4).

    ``list_file`` lines are ``<relpath>[ <label> ...]`` or
    ``<relpath>;<labels>``; ``default_ext`` is appended to a path without
    extension. If any line has more than one distinct label the dataset is
    multi-label (``gt_label`` a list of positives on every sample),
    otherwise ``gt_label`` is an int.

    ``box_file`` lines align with the list lines by position, as in the
    original: ``box_format='cub_xywh'``: ``<tok> <tok> <x> <y> <w> <h>``
    (``gt_bboxes`` = (x, y, x + w, y + h), ``ori_gt_bboxes`` = (x, y, w,
    h); WGOL's x + w - 1 is the metric's ``'spa'`` protocol);
    ``box_format='xyxy'``: ``<tok> <x1> <y1> <x2> <y2> [...]``. Leading
    tokens that are paths must name the list entry on the same position
    (extensions ignored), else the error names both files and lines.

    ``metainfo['classes']``: ``classes`` when given, else ``class_<k>`` up
    to the largest label. ``img_id`` is the list path.

    Args:
        img_dir (str): Image folder (relative to ``data_root``).
        list_file (str): The list (relative to ``data_root``).
        box_file (str | None): The box file (relative to ``data_root``).
        box_format (str): ``'xyxy'`` or ``'cub_xywh'``.
        default_ext (str): Extension added to paths without one.
        data_root (str): Root of the relative paths above.
        classes (str | Sequence[str] | None): Class names or a file.
        bad_sample_policy, skip_invalid, box_out_of_bounds, check_images:
            See :class:`~shared.datasets.base.CheckedDatasetMixin`.
        **kwargs: Other mmpretrain ``BaseDataset`` arguments.
    """

    BOX_FORMATS = {'xyxy': 1, 'cub_xywh': 2}  # -> leading tokens

    def __init__(
        self,
        img_dir: str,
        list_file: str,
        box_file: str | None = None,
        box_format: str = 'xyxy',
        default_ext: str = '.jpg',
        data_root: str = '',
        classes: str | Sequence[str] | None = None,
        bad_sample_policy: str = 'error',
        skip_invalid: bool | None = None,
        box_out_of_bounds: str = 'error',
        check_images: str = 'lazy',
        **kwargs,
    ):
        if box_format not in self.BOX_FORMATS:
            raise ValueError(
                f'box_format must be one of {tuple(self.BOX_FORMATS)}, got '
                f'{box_format!r}'
            )
        self._setup_checks(
            bad_sample_policy, skip_invalid, box_out_of_bounds, check_images
        )
        self.box_file = (
            None if box_file is None else _join(data_root, box_file)
        )
        self.box_format = box_format
        self.default_ext = default_ext
        self.multi_label = False
        super().__init__(
            ann_file=list_file,
            data_root=data_root,
            data_prefix=img_dir,
            classes=classes,
            max_refetch=0,
            **kwargs,
        )

    def load_data_list(self) -> list[dict]:
        """Parse the list (and box) file (see the class docstring)."""
        path = self.ann_file
        given = self._metainfo.get('classes')
        entries = []
        seen: dict[str, int] = {}
        for line_no, line in read_lines(path, 'annotation'):
            if ';' in line:
                rel, rest = line.split(';', 1)
                label_tokens = rest.replace(',', ' ').split()
            else:
                rel, *label_tokens = line.split()
            rel = rel.strip()
            if not label_tokens:
                raise AnnotationError(path, line_no, 'no label', line)
            labels = sorted(
                {
                    parse_int(t, path, line_no, line, 'label')
                    for t in label_tokens
                }
            )
            bad = [
                la for la in labels if la < 0 or (given and la >= len(given))
            ]
            if bad:
                upper = len(given) if given else 'C'
                raise AnnotationError(
                    path, line_no, f'label {bad[0]} outside [0, {upper})', line
                )
            if not osp.splitext(rel)[1]:
                rel += self.default_ext
            if rel in seen:
                raise AnnotationError(
                    path,
                    line_no,
                    f'duplicate image {rel!r} (first on line {seen[rel]})',
                    line,
                )
            seen[rel] = line_no
            entries.append((rel, labels, line_no))
        self.multi_label = any(len(e[1]) > 1 for e in entries)
        names = _class_names(given, [la for e in entries for la in e[1]], path)
        self._metainfo['classes'] = names
        boxes = self._read_boxes(entries) if self.box_file else None
        data_list = []
        for i, (rel, labels, line_no) in enumerate(entries):
            info = dict(
                img_path=osp.join(self.img_prefix, rel),
                img_id=rel,
                gt_label=list(labels) if self.multi_label else labels[0],
                img_ref=f'{path}:{line_no}',
            )
            if boxes is not None:
                info.update(boxes[i])
            data_list.append(info)
        return self._check_samples(data_list)

    def _read_boxes(self, entries: list) -> list[dict]:
        path, list_file = self.box_file, self.ann_file
        lines = read_lines(path, 'annotation')
        lead = self.BOX_FORMATS[self.box_format]
        if len(lines) != len(entries):
            n = min(len(lines), len(entries))
            where = (
                f'{path}:{lines[n][0]}' if n < len(lines) else
                f'{list_file}:{entries[n][2]}'
            )  # fmt: skip
            raise AnnotationError(
                path,
                None,
                f'{len(lines)} box lines but {len(entries)} entries in '
                f'{list_file} (lines align by position); first unmatched: '
                f'{where}',
            )
        out = []
        for (rel, _, list_no), (line_no, line) in zip(entries, lines):
            if self.box_format == 'cub_xywh':
                tokens = split_line(path, line_no, line, num=6)
            else:
                tokens = split_line(path, line_no, line, min_num=5)
                if (len(tokens) - 1) % 4:
                    raise AnnotationError(
                        path,
                        line_no,
                        f'the number of box coordinates must be a positive '
                        f'multiple of 4, got {len(tokens) - 1}',
                        line,
                    )
            for tok in tokens[:lead]:
                if not _is_number(tok) and not _same_image(tok, rel):
                    raise AnnotationError(
                        path,
                        line_no,
                        f'box line names {tok!r} but {list_file}:{list_no} '
                        f'is {rel!r} (box lines align with list lines by '
                        'position)',
                        line,
                    )
            values = [
                parse_float(t, path, line_no, line, 'coordinate')
                for t in tokens[lead:]
            ]
            if self.box_format == 'cub_xywh':
                x, y, w, h = values
                raw = np.array([[x, y, w, h]], np.float64)
                xyxy = check_box([x, y, x + w, y + h], path, line_no, line)
                gt, fmt = xyxy[None], 'xywh'
            else:
                raw = np.array(values, np.float64).reshape(-1, 4)
                for box in raw:
                    check_box(box, path, line_no, line)
                gt, fmt = raw.copy(), 'xyxy'
            out.append(
                dict(
                    gt_bboxes=gt,
                    ori_gt_bboxes=raw,
                    ori_box_format=fmt,
                    ann_ref=[f'{path}:{line_no}'] * len(gt),
                )
            )
        return out

    def get_cat_ids(self, idx: int) -> list[int]:
        """Class indices of sample ``idx`` (all positives if multi-label)."""
        label = self.get_data_info(idx)['gt_label']
        return list(label) if self.multi_label else [int(label)]
