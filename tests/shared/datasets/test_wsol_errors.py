"""WSOL adapters on bad input (datasets.md §2.1, §8 item 4).

Every ``--corrupt`` kind the cub, imagenet-loc and openimages-mask writers
inject must raise with the recorded file and line; the policy-controlled
kinds must be skipped at initialisation with ``bad_sample_policy='skip'``
(one warning with the count, ``dataset.skipped`` listing them). Crafted
files cover the other §2.1 errors.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

import shared.datasets.wsol as wsol
from shared.datasets.base import DatasetSampleError
from shared.datasets.parsing import AnnotationError
from shared.datasets.synthetic import generate
from tests.shared.datasets.logs import captured_log

C, PER, VAL = 3, 2, 2
SIZE = (48, 80)


def make(fmt: str, out: Path, corrupt: str | None = None) -> dict:
    entry = generate(
        fmt,
        out,
        C,
        PER,
        val_per_class=VAL,
        size_range=SIZE,
        seed=1,
        corrupt=corrupt,
    )
    return entry['corruption']


def cub_loc(out: Path, **kw):
    return wsol.CUBLoc(
        str(out / 'CUB_200_2011'), 'test', serialize_data=False, **kw
    )


def ilsvrc_list(out: Path, **kw):
    return wsol.ImageNetLoc(
        str(out / 'ILSVRC2012'),
        ann_format='tscam_list',
        serialize_data=False,
        **kw,
    )


def openimages(out: Path, **kw):
    return wsol.WSOLMetaDataset(
        str(out / 'wsol' / 'dataset' / 'OpenImages'),
        str(out / 'wsol' / 'metadata' / 'OpenImages' / 'test'),
        loc_type='mask',
        serialize_data=False,
        **kw,
    )


ADAPTERS = {
    'cub': cub_loc,
    'imagenet-loc': ilsvrc_list,
    'openimages-mask': openimages,
}
KINDS = {
    'cub': [
        'missing_image',
        'truncated_image',
        'box_outside',
        'empty_annotation',
        'class_mismatch',
        'duplicate_id',
    ],
    'openimages-mask': [
        'mask_missing',
        'missing_image',
        'truncated_image',
        'empty_annotation',
        'duplicate_id',
    ],
}
KINDS['imagenet-loc'] = KINDS['cub']
#: Kinds the bad-sample policy may skip (the others always raise).
SKIPPABLE = {'missing_image', 'truncated_image', 'box_outside', 'mask_missing'}
CASES = [(fmt, kind) for fmt, kinds in KINDS.items() for kind in kinds]


def check_mode(kind: str) -> str:
    # A truncated JPEG has an intact header; 'header' still catches it by
    # its missing end marker.
    return 'header'


@pytest.mark.parametrize(('fmt', 'kind'), CASES)
def test_corruption_raises_naming_file_and_line(tmp_path, fmt, kind):
    record = make(fmt, tmp_path, kind)
    assert record['kind'] == kind
    with pytest.raises((AnnotationError, DatasetSampleError)) as err:
        ADAPTERS[fmt](tmp_path, check_images=check_mode(kind))
    text = str(err.value)
    if record['line'] is None:
        assert isinstance(err.value, AnnotationError)
        assert record['file'] in text and 'annotation file is empty' in text
    else:
        assert f'{record["file"]}:{record["line"]}' in text
    if kind in SKIPPABLE:
        assert record['target'] in text


@pytest.mark.parametrize(
    ('fmt', 'kind'), [c for c in CASES if c[1] in SKIPPABLE]
)
def test_skip_policy_removes_the_sample(tmp_path, fmt, kind):
    record = make(fmt, tmp_path, kind)
    with captured_log() as records:
        ds = ADAPTERS[fmt](
            tmp_path,
            bad_sample_policy='skip',
            check_images=check_mode(kind),
        )
    assert len(ds) == C * VAL - 1
    paths = [ds.get_data_info(i)['img_path'] for i in range(len(ds))]
    if kind != 'mask_missing':
        assert record['target'] not in paths
    [(problem, refs)] = ds.skipped.items()
    assert len(refs) == 1
    assert f'{record["file"]}:{record["line"]}' in refs[0]
    warnings = [r.getMessage() for r in records]
    assert len(warnings) == 1
    assert f'skipped 1 sample(s) with {problem}' in warnings[0]
    # the shorthand gives the same result
    again = ADAPTERS[fmt](
        tmp_path, skip_invalid=True, check_images=check_mode(kind)
    )
    assert again.skipped == ds.skipped


def test_unsupported_corruption_is_refused(tmp_path):
    with pytest.raises(ValueError, match='not available for --format cub'):
        make('cub', tmp_path, 'mask_missing')
    with pytest.raises(ValueError, match='openimages-mask'):
        make('openimages-mask', tmp_path, 'box_outside')


# -- crafted §2.1 errors ---------------------------------------------------
@pytest.fixture(scope='module')
def clean(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp('clean')
    for fmt in ('cub', 'imagenet-loc', 'openimages-mask'):
        make(fmt, out)
    return out


def copy_of(clean: Path, tmp_path: Path, *parts: str) -> Path:
    for part in parts:
        shutil.copytree(clean / part, tmp_path / part)
    return tmp_path


def edit(path: Path, line_no: int, new: str | None) -> None:
    lines = path.read_text().splitlines()
    if new is None:
        del lines[line_no - 1]
    else:
        lines[line_no - 1] = new
    path.write_text('\n'.join(lines) + '\n')


def line_of(path: Path, line_no: int) -> str:
    return path.read_text().splitlines()[line_no - 1]


@pytest.mark.parametrize(
    ('name', 'new', 'match'),
    [
        ('images.txt', '2 a b', 'expected 2 tokens, got 3'),
        ('bounding_boxes.txt', '2 1.0 x 3.0 4.0', "'x' is not a number"),
        ('bounding_boxes.txt', '2 1.0 2.0 nan 4.0', 'not finite'),
        ('bounding_boxes.txt', '2 10.0 2.0 -3.0 4.0', 'inverted box'),
        ('image_class_labels.txt', '2 9', r'outside 1\.\.3'),
        ('image_class_labels.txt', '2 one', 'not an integer'),
        ('train_test_split.txt', '2 7', 'split flag'),
        ('train_test_split.txt', None, 'missing from'),
        ('classes.txt', '9 009.Class_009', 'class ids must be 1..3'),
    ],
)
def test_cubloc_annotation_errors(clean, tmp_path, name, new, match):
    out = copy_of(clean, tmp_path, 'CUB_200_2011')
    edit(out / 'CUB_200_2011' / name, 2, new)
    with pytest.raises(AnnotationError, match=match) as err:
        cub_loc(out)
    assert str(out / 'CUB_200_2011' / name) in str(err.value)
    assert ':2: ' in str(err.value)


def test_cubloc_missing_file_and_folder_mismatch(clean, tmp_path):
    out = copy_of(clean, tmp_path, 'CUB_200_2011')
    root = out / 'CUB_200_2011'
    rel = line_of(root / 'images.txt', 1).split()[1]
    edit(root / 'images.txt', 1, f'1 002.Class_002/{rel.split("/")[1]}')
    with pytest.raises(AnnotationError, match='does not match its class') as e:
        cub_loc(out)
    assert f'{root / "image_class_labels.txt"}:1' in str(e.value)
    assert f'{root / "images.txt"}:1' in str(e.value)
    (root / 'image_class_labels.txt').unlink()
    with pytest.raises(FileNotFoundError, match='image_class_labels.txt'):
        cub_loc(out)


def test_imagenetloc_xml_errors(clean, tmp_path):
    out = copy_of(clean, tmp_path, 'ILSVRC2012')
    xml = out / 'ILSVRC2012' / 'bbox_val' / 'ILSVRC2012_val_00000002.xml'
    text = xml.read_text()
    wnid = text.split('<name>')[1].split('</name>')[0]
    other = 'n00000002' if wnid != 'n00000002' else 'n00000001'
    obj = text[text.index('\t<object>') : text.index('\t</object>\n') + 11]
    two = text.replace('</annotation>', obj.replace(wnid, other))
    two += '</annotation>\n'
    xml.write_text(two)
    with pytest.raises(AnnotationError, match='different classes') as err:
        wsol.ImageNetLoc(str(out / 'ILSVRC2012'))
    line = len(text.splitlines())  # the appended object's first line
    assert f'{xml}:{line}' in str(err.value)
    xml.write_text(text.replace(wnid, 'n99999999'))
    with pytest.raises(AnnotationError, match='n99999999 is not in'):
        wsol.ImageNetLoc(str(out / 'ILSVRC2012'))
    xml.write_text(text.replace('<xmax>', '<xmax>-'))
    with pytest.raises(AnnotationError, match='inverted'):
        wsol.ImageNetLoc(str(out / 'ILSVRC2012'))
    xml.write_text(text.replace('</bndbox>', '', 1))
    with pytest.raises(AnnotationError, match='malformed XML') as err:
        wsol.ImageNetLoc(str(out / 'ILSVRC2012'))
    assert str(xml) in str(err.value)
    # <size> disagreeing with the image is caught by the header check
    xml.write_text(text.replace('<width>', '<width>1'))
    with pytest.raises(DatasetSampleError, match='annotation says'):
        wsol.ImageNetLoc(str(out / 'ILSVRC2012'), check_images='header')


def test_imagenetloc_tscam_list_errors(clean, tmp_path):
    out = copy_of(clean, tmp_path, 'ILSVRC2012')
    ann = out / 'ILSVRC2012' / 'ILSVRC2012_list' / 'val_folder_new.txt'
    first = line_of(ann, 1)
    edit(ann, 1, first + ' 5')
    with pytest.raises(AnnotationError, match='multiple of 4') as err:
        ilsvrc_list(out)
    assert f'{ann}:1' in str(err.value)
    path, label, *coords = first.split()
    edit(ann, 1, f'{path} 7 {" ".join(coords)}')
    with pytest.raises(AnnotationError, match=r'label 7 outside \[0, 3\)'):
        ilsvrc_list(out)
    # the legacy val_folder.txt: float coordinates, first box only
    legacy = ' '.join(f'{float(v):.1f}' for v in coords[:4])
    edit(ann, 1, f'{path} {label} {legacy}')
    with pytest.raises(AnnotationError, match='allow_first_box_only'):
        ilsvrc_list(out)
    with captured_log() as records:
        ds = ilsvrc_list(out, allow_first_box_only=True)
    assert ds.get_data_info(0)['gt_bboxes'].shape == (1, 4)
    assert any('legacy' in r.getMessage() for r in records)


def test_wsolmeta_errors(clean, tmp_path):
    out = copy_of(clean, tmp_path, 'wsol')
    data = str(out / 'wsol' / 'dataset' / 'CUB')
    meta = out / 'wsol' / 'metadata' / 'CUB' / 'test'

    def build(**kw):
        return wsol.WSOLMetaDataset(data, str(meta), **kw)

    loc = meta / 'localization.txt'
    original = loc.read_text()
    loc.write_text(original + 'nowhere.jpg,1,1,2,2\n')
    n = len(original.splitlines()) + 1
    with pytest.raises(AnnotationError, match='unknown image id') as err:
        build()
    assert f'{loc}:{n}' in str(err.value)
    loc.write_text('\n'.join(original.splitlines()[1:]) + '\n')
    with pytest.raises(AnnotationError, match='has no line in') as err:
        build()
    assert f'{meta / "image_ids.txt"}:1' in str(err.value)
    build(loc_type='none')  # localization not read
    loc.write_text(original)
    labels = meta / 'class_labels.txt'
    rel, label = line_of(labels, 1).split(',')
    edit(labels, 1, f'{rel},{int(label) + 1}')
    with pytest.raises(AnnotationError, match='class-id mismatch') as err:
        build()
    assert f'{labels}:1' in str(err.value)
    edit(labels, 1, f'{rel},-1')
    with pytest.raises(AnnotationError, match='outside'):
        build()
    edit(labels, 1, f'{rel},{label}')
    with pytest.raises(AnnotationError, match=r'outside \[0, 1\)'):
        build(classes=['only'])
    sizes = meta / 'image_sizes.txt'
    rel, w, h = line_of(sizes, 1).split(',')
    edit(sizes, 1, f'{rel},{int(w) - 20},{h}')
    with pytest.raises(DatasetSampleError, match='outside') as err:
        build()  # boxes checked against image_sizes.txt at init
    assert f'{loc}:1' in str(err.value)
    edit(sizes, 1, None)
    with pytest.raises(AnnotationError, match='missing from'):
        build()


def test_wsolmeta_mask_errors(clean, tmp_path):
    out = copy_of(clean, tmp_path, 'wsol')
    data = out / 'wsol' / 'dataset' / 'OpenImages'
    meta = out / 'wsol' / 'metadata' / 'OpenImages' / 'test'
    loc = meta / 'localization.txt'
    lines = loc.read_text().splitlines()
    img, png, ignore = lines[0].split(',')
    lines.insert(1, f'{img},{png[:-4]}_x.png,{ignore}')
    loc.write_text('\n'.join(lines) + '\n')
    with pytest.raises(AnnotationError, match='later line') as err:
        wsol.WSOLMetaDataset(str(data), str(meta), loc_type='mask')
    assert f'{loc}:2' in str(err.value)
    lines[1] = f'{img},{png[:-4]}_x.png,'
    loc.write_text('\n'.join(lines) + '\n')
    with pytest.raises(DatasetSampleError, match='mask not found') as err:
        wsol.WSOLMetaDataset(
            str(data), str(meta), loc_type='mask', check_images='header'
        )
    assert f'{loc}:2' in str(err.value)
    del lines[1]
    loc.write_text('\n'.join(lines) + '\n')
    # an ignore png of the wrong size is checked like the instance pngs
    from PIL import Image

    Image.new('L', (7, 5)).save(data / ignore)
    with pytest.raises(DatasetSampleError, match='is 7x5') as err:
        wsol.WSOLMetaDataset(
            str(data), str(meta), loc_type='mask', check_images='header'
        )
    assert f'{loc}:1' in str(err.value)
    ds = wsol.WSOLMetaDataset(
        str(data),
        str(meta),
        loc_type='mask',
        check_images='header',
        allow_mask_size_mismatch=True,
    )
    assert ds.get_data_info(0)['allow_mask_size_mismatch'] is True


def test_wsollist_errors(clean, tmp_path):
    out = copy_of(clean, tmp_path, 'CUB_200_2011')
    root = out / 'CUB_200_2011'

    def build(**kw):
        return wsol.WSOLListDataset(
            'images',
            'list/test.txt',
            'list/test_boxes.txt',
            box_format='cub_xywh',
            data_root=str(root),
            **kw,
        )

    boxes = root / 'list' / 'test_boxes.txt'
    lst = root / 'list' / 'test.txt'
    original = boxes.read_text()
    edit(boxes, 1, line_of(boxes, 2))
    with pytest.raises(AnnotationError, match='align') as err:
        build()
    assert f'{boxes}:1' in str(err.value) and f'{lst}:1' in str(err.value)
    boxes.write_text(original)
    edit(boxes, 1, None)
    with pytest.raises(AnnotationError, match='5 box lines but 6') as err:
        build()
    assert f'{lst}:6' in str(err.value)
    boxes.write_text(original)
    edit(boxes, 1, line_of(boxes, 1).replace(' ', ' 1 ', 1))
    with pytest.raises(AnnotationError, match='expected 6 tokens'):
        build()
    boxes.write_text(original)
    assert len(build()) == C * VAL
    edit(lst, 2, line_of(lst, 1))
    with pytest.raises(AnnotationError, match='duplicate image') as err:
        build()
    assert f'{lst}:2' in str(err.value)
    edit(lst, 2, line_of(lst, 3).split()[0])
    with pytest.raises(AnnotationError, match='no label'):
        build()
