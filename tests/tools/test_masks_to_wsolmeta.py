"""tools/dataset_converters/masks_to_wsolmeta.py on synthetic masks.

One binary png per image (the union of the synthetic OpenImages instance
masks, flat, named by image stem) is converted to the wsolevaluation mask
layout, which WSOLMetaDataset must read back with the same images, labels
and masks; a png with swapped width and height is caught by the size
check.
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

import shared.datasets.wsol as wsol
from shared.datasets.base import DatasetSampleError
from shared.datasets.synthetic import generate
from tests.conftest import load_tool, run_tool

SCRIPT = 'tools/dataset_converters/masks_to_wsolmeta.py'


tool = load_tool(SCRIPT)


@pytest.fixture(scope='module')
def data(tmp_path_factory):
    """Synthetic OpenImages test split + one union png per image."""
    out = tmp_path_factory.mktemp('oi')
    generate('openimages-mask', out, 3, 1, 2, (48, 80), seed=2)
    images = out / 'wsol' / 'dataset' / 'OpenImages'
    meta = out / 'wsol' / 'metadata' / 'OpenImages' / 'test'
    masks = out / 'masks'
    masks.mkdir()
    source = wsol.WSOLMetaDataset(
        str(images), str(meta), loc_type='mask', serialize_data=False
    )
    unions = {}
    for i in range(len(source)):
        info = source.get_data_info(i)
        union = np.zeros_like(np.asarray(Image.open(info['mask_paths'][0])))
        for png in info['mask_paths']:
            union |= np.asarray(Image.open(png))
        stem = info['img_id'].rsplit('/', 1)[1][: -len('.jpg')]
        Image.fromarray(union).save(masks / f'{stem}.png')
        unions[info['img_id']] = union
    return out, images, meta, masks, unions


def convert(images, masks, labels, out, *extra):
    return tool.main(
        [
            '--images',
            str(images),
            '--masks',
            str(masks),
            '--labels',
            str(labels),
            '--out',
            str(out),
            *extra,
        ]
    )


def test_help():
    out = run_tool([SCRIPT, '--help']).stdout
    for word in ('--images', '--masks', '--labels', '--image-prefix'):
        assert word in out


def test_converted_masks_read_back(data, tmp_path, capsys):
    _, images, meta, masks, unions = data
    assert convert(images, masks, meta / 'class_labels.txt', tmp_path) == 0
    assert '6 images with a mask' in capsys.readouterr().out
    ds = wsol.WSOLMetaDataset(
        str(images),
        str(tmp_path),
        loc_type='mask',
        mask_root=str(masks),
        check_images='header',
        serialize_data=False,
    )
    ref = wsol.WSOLMetaDataset(str(images), str(meta), 'none')
    assert len(ds) == len(ref) == 6
    for i in range(len(ds)):
        info, expected = ds.get_data_info(i), ref.get_data_info(i)
        assert info['img_id'] == expected['img_id']
        assert info['gt_label'] == expected['gt_label']
        assert info['ignore_path'] is None
        [png] = info['mask_paths']
        np.testing.assert_array_equal(
            np.asarray(Image.open(png)), unions[info['img_id']]
        )
        w, h = Image.open(info['img_path']).size
        assert info['ann_img_shape'] == (h, w)


def test_space_separated_labels_with_prefix(data, tmp_path):
    _, images, meta, masks, _ = data
    lines = (meta / 'class_labels.txt').read_text().splitlines()
    labels = tmp_path / 'val.txt'
    labels.write_text(
        ''.join(
            f'{path.split("/", 1)[1]} {label}\n'
            for path, label in (line.split(',') for line in lines)
        )
    )
    out = tmp_path / 'meta'
    assert convert(images, masks, labels, out, '--image-prefix', 'test') == 0
    assert (out / 'image_ids.txt').read_text() == (
        meta / 'image_ids.txt'
    ).read_text()


def test_swapped_mask_is_caught(data, tmp_path):
    _, images, meta, masks, _ = data
    swapped = tmp_path / 'masks'
    swapped.mkdir()
    names = sorted(p.name for p in masks.iterdir())
    for name in names:
        arr = np.asarray(Image.open(masks / name))
        if name == names[0]:
            arr = arr.T.copy()  # width and height swapped
        Image.fromarray(arr).save(swapped / name)
    assert convert(images, swapped, meta / 'class_labels.txt', tmp_path) == 0

    def build(**kw):
        return wsol.WSOLMetaDataset(
            str(images),
            str(tmp_path),
            loc_type='mask',
            mask_root=str(swapped),
            check_images='header',
            serialize_data=False,
            **kw,
        )

    lines = (tmp_path / 'localization.txt').read_text().splitlines()
    line_no = next(i for i, t in enumerate(lines, 1) if names[0] in t)
    with pytest.raises(DatasetSampleError, match=names[0]) as err:
        build()
    assert f'{tmp_path / "localization.txt"}:{line_no}' in str(err.value)
    assert len(build(allow_mask_size_mismatch=True)) == 6
    skipped = build(bad_sample_policy='skip')
    assert len(skipped) == 5
    assert list(skipped.skipped) == ['mask_size_mismatch']


def test_unmatched_masks_and_bad_input(data, tmp_path, capsys):
    _, images, meta, masks, _ = data
    labels = tmp_path / 'labels.txt'
    lines = (meta / 'class_labels.txt').read_text().splitlines()
    labels.write_text('\n'.join(lines[:4]) + '\n')
    assert convert(images, masks, labels, tmp_path / 'a') == 2
    err = capsys.readouterr().err
    assert '2 mask(s)' in err and '--ignore-unmatched-masks' in err
    skip = '--ignore-unmatched-masks'
    assert convert(images, masks, labels, tmp_path / 'a', skip) == 0
    assert len((tmp_path / 'a' / 'image_ids.txt').read_text().split()) == 4
    labels.write_text(lines[0] + '\n' + lines[0] + '\n')
    assert convert(images, masks, labels, tmp_path / 'b') == 2
    assert f'{labels}:2: duplicate image' in capsys.readouterr().err
    labels.write_text(lines[0] + '\n')
    assert convert(images, tmp_path / 'none', labels, tmp_path / 'c') == 2
    assert 'mask folder not found' in capsys.readouterr().err
