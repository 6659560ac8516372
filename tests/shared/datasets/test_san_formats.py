"""SAN fork formats on synthetic sketch data (datasets.md §4.8, §8 item 7)."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import mmcv
import numpy as np
import pytest
import torch
import torchvision.transforms.functional as TF
from mmengine.config import Config
from PIL import Image

from shared.datasets.base import DatasetSampleError
from shared.datasets.parsing import AnnotationError
from shared.datasets.san_formats import (
    LegacyInMemoryFileError,
    SANInitFileDataset,
    SANInMemoryDataset,
    SANTxtListDataset,
    encode_inmemory_image,
    load_inmemory,
    pack_inmemory,
    save_san_file,
)
from shared.datasets.synthetic import generate
from shared.registry import DATASETS
from tests.conftest import REPO_ROOT, load_tool, run_tool

LOAD = dict(
    type='LoadImageFromFile',
    imdecode_backend='pillow',
    color_type='color_ignore_orientation',
)
NUM_CLASSES, PER_CLASS, VAL_PER_CLASS = 3, 4, 2


def _generate(out: Path, **kw) -> dict:
    return generate(
        'sketch',
        out,
        kw.pop('num_classes', NUM_CLASSES),
        kw.pop('per_class', PER_CLASS),
        val_per_class=kw.pop('val_per_class', VAL_PER_CLASS),
        size_range=(48, 96),
        seed=0,
        **kw,
    )


@pytest.fixture(scope='module')
def data(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp('sketch')
    _generate(out)
    return out


def _tool_main(script: str, argv: list[str]) -> int:
    """Run a tool's ``main(argv)`` in this process (no interpreter start)."""
    return load_tool(script).main(argv)


def _write(path: Path, lines: list[str]) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(''.join(f'{line}\n' for line in lines))
    return str(path)


# -- txt lists -----------------------------------------------------------
def test_txt_list_reads_the_synthetic_layout(data):
    ds = SANTxtListDataset(
        data_root=str(data / 'Sketch'),
        ann_file='train.txt',
        check_path_class=True,
        check_images='full',
        pipeline=[LOAD],
    )
    names = ('class_000', 'class_001', 'class_002')
    assert ds.metainfo['classes'] == names
    assert len(ds) == NUM_CLASSES * PER_CLASS
    labels = [ds.get_data_info(i)['gt_label'] for i in range(len(ds))]
    assert np.bincount(labels).tolist() == [PER_CLASS] * NUM_CLASSES
    info = ds.get_data_info(5)
    assert Path(info['img_path']).parent.name == names[info['gt_label']]
    assert info['img_path'] == str(data / 'Sketch' / info['img_id'])
    assert info['img_ref'].endswith('train.txt:6')
    assert info['sample_idx'] == 5
    # Grey PNG sketches decode to three identical channels.
    with Image.open(info['img_path']) as img:
        assert img.mode == 'L'
    out = ds[5]
    img = out['img']
    assert img.dtype == np.uint8 and img.shape[2] == 3
    assert (img[..., 0] == img[..., 1]).all()
    assert (img[..., 1] == img[..., 2]).all()
    assert out['gt_label'] == info['gt_label']
    queries = SANTxtListDataset(
        data_root=str(data / 'Sketch'), ann_file='val_queries.txt'
    )
    assert sorted(
        queries.get_data_info(i)['gt_label'] for i in range(len(queries))
    ) == list(range(NUM_CLASSES))


def test_unsorted_mapping_and_target_first(tmp_path):
    # The fork's Sketch_EITZ mapping is not alphabetical: index order wins.
    _write(tmp_path / 'mapping.txt', ['0 shoe', '1 penguin', '2 harp'])
    _write(tmp_path / 'list.txt', ['2 harp/1.png', '0 shoe/2.png'])
    ds = SANTxtListDataset(
        data_root=str(tmp_path),
        ann_file='list.txt',
        sep=' ',
        target_last=False,
        check_path_class=True,
    )
    assert ds.metainfo['classes'] == ('shoe', 'penguin', 'harp')
    assert ds.class_to_idx == {'shoe': 0, 'penguin': 1, 'harp': 2}
    assert [ds.get_data_info(i)['gt_label'] for i in range(2)] == [2, 0]


def test_gapped_mapping_indices_raise_with_file_and_line(tmp_path):
    _write(tmp_path / 'mapping.txt', ['a\t0', 'b\t1', 'c\t3'])
    _write(tmp_path / 'train.txt', ['a/1.png\t0'])
    with pytest.raises(AnnotationError) as err:
        SANTxtListDataset(data_root=str(tmp_path), ann_file='train.txt')
    assert f'{tmp_path / "mapping.txt"}:3: class index 3' in str(err.value)
    assert 'contiguous (missing: [2])' in str(err.value)
    # A repeated index is named with both lines.
    _write(tmp_path / 'mapping.txt', ['a\t0', 'b\t0'])
    with pytest.raises(AnnotationError, match=r'mapping.txt:2: .*line 1'):
        SANTxtListDataset(data_root=str(tmp_path), ann_file='train.txt')


def test_label_missing_from_mapping_raises(tmp_path):
    _write(tmp_path / 'mapping.txt', ['a\t0', 'b\t1'])
    _write(tmp_path / 'train.txt', ['a/1.png\t0', 'b/2.png\t2'])
    with pytest.raises(AnnotationError) as err:
        SANTxtListDataset(data_root=str(tmp_path), ann_file='train.txt')
    text = str(err.value)
    assert f'{tmp_path / "train.txt"}:2: label 2 is not in' in text
    assert 'mapping.txt' in text and text.endswith('| b/2.png\t2')


def test_path_replace_and_path_prefix(data, tmp_path):
    # The fork's committed lists hold absolute paths of its authors' disk.
    lines = (data / 'Sketch' / 'train.txt').read_text().splitlines()
    fork = [f'/mnt/ssdDrive/Sketch_EITZ/{line[5:]}' for line in lines]
    _write(tmp_path / 'train.txt', fork)
    _write(tmp_path / 'mapping.txt', [f'class_00{c}\t{c}' for c in range(3)])
    with pytest.raises(DatasetSampleError, match='train.txt:1: image not'):
        SANTxtListDataset(
            data_root=str(tmp_path),
            ann_file='train.txt',
            check_images='header',
        )
    ds = SANTxtListDataset(
        data_root=str(tmp_path),
        ann_file='train.txt',
        path_replace=('/mnt/ssdDrive/Sketch_EITZ/', f'{data}/Sketch/data/'),
        check_images='header',
        check_path_class=True,
    )
    assert ds.get_data_info(0)['img_path'] == str(
        data / 'Sketch' / lines[0].split('\t')[0]
    )
    assert ds.get_data_info(0)['img_id'] == fork[0].split('\t')[0]
    # Relative paths join path_prefix (itself relative to data_root).
    _write(tmp_path / 'rel.txt', [line[5:] for line in lines])
    ds = SANTxtListDataset(
        data_root=str(data / 'Sketch'),
        ann_file=str(tmp_path / 'rel.txt'),
        path_prefix='data',
        check_images='header',
    )
    assert len(ds) == len(lines)
    with pytest.raises(ValueError, match='pair of str'):
        SANTxtListDataset(
            data_root=str(tmp_path), ann_file='train.txt', path_replace='x'
        )


@pytest.mark.parametrize(
    'kind, options, error, where',
    [
        ('missing_image', {'check_images': 'header'}, 'image not found', 1),
        ('truncated_image', {'check_images': 'full'}, 'cannot decode', 1),
        ('class_mismatch', {'check_path_class': True}, 'class folder', 1),
        ('duplicate_id', {}, 'duplicate image', 2),
        ('empty_annotation', {}, 'image list file is empty', None),
    ],
)
def test_corruptions_name_file_and_line(tmp_path, kind, options, error, where):
    entry = _generate(
        tmp_path, num_classes=2, per_class=2, val_per_class=1, corrupt=kind
    )
    record = entry['corruption']
    assert record['kind'] == kind and record['line'] == where
    assert record['file'] == str(tmp_path / 'Sketch' / 'train.txt')
    with pytest.raises(ValueError) as err:
        SANTxtListDataset(
            data_root=str(tmp_path / 'Sketch'), ann_file='train.txt', **options
        )
    ref = record['file'] if where is None else f'{record["file"]}:{where}'
    assert str(err.value).startswith(ref + ':')
    assert error in str(err.value)
    if kind in ('missing_image', 'truncated_image'):
        ds = SANTxtListDataset(
            data_root=str(tmp_path / 'Sketch'),
            ann_file='train.txt',
            bad_sample_policy='skip',
            **options,
        )
        assert len(ds) == 3
        (refs,) = ds.skipped.values()
        assert len(refs) == 1 and refs[0].startswith(ref + ':')


def test_config_builds_on_synthetic_data(data, tmp_path, monkeypatch):
    (tmp_path / 'Sketch_EITZ').symlink_to(data / 'Sketch')
    monkeypatch.setenv('DATA_ROOT', str(tmp_path))
    cfg = Config.fromfile(
        str(REPO_ROOT / 'configs/_base_/datasets/sketch_eitz.py')
    )
    assert cfg.data_preprocessor['mean'] == pytest.approx([33.3285] * 3)
    assert cfg.data_preprocessor['std'] == pytest.approx([78.5655] * 3)
    for loader, size in (('train_dataloader', 224), ('val_dataloader', 224)):
        ds = DATASETS.build(cfg[loader]['dataset'])
        out = ds[0]
        assert out['inputs'].shape == (3, size, size)
        assert ds.metainfo['classes'][0] == 'class_000'


# -- init files ------------------------------------------------------------
def test_init_file_matches_txt_list(data):
    init = SANInitFileDataset(
        data_root=str(data / 'Sketch'),
        ann_file='val_init.pt',
        check_images='header',
    )
    txt = SANTxtListDataset(data_root=str(data / 'Sketch'), ann_file='val.txt')
    assert init.metainfo['classes'] == txt.metainfo['classes']
    assert len(init) == len(txt) == NUM_CLASSES * VAL_PER_CLASS
    for i in range(len(txt)):
        a, b = init.get_data_info(i), txt.get_data_info(i)
        assert (a['img_path'], a['gt_label']) == (b['img_path'], b['gt_label'])
    assert init.extensions[2] == '.png'


def test_init_file_disagreements_raise(data, tmp_path):
    base = dict(
        classes=['a', 'b'],
        class_to_idx={'a': 0, 'b': 1},
        samples=[('a/1.png', 0), ('b/1.png', 1)],
        extensions=('.png',),
    )
    path = str(tmp_path / 'x_init.pt')
    for change, message in (
        (dict(class_to_idx={'a': 1, 'b': 0}), "'a' has index 1"),
        (dict(class_to_idx={'a': 0, 'c': 1}), "'c' (index 1) is not in"),
        (dict(samples=[('a/1.png', 0), ('b/1.png', 2)]), 'samples[1]'),
        (dict(samples=[('a/1.png', 0), ('a/1.png', 0)]), 'duplicate'),
        (dict(samples=[('a/1.png', '0')]), '(path, class index) pair'),
    ):
        save_san_file({**base, **change}, path)
        with pytest.raises(AnnotationError) as err:
            SANInitFileDataset(ann_file=path)
        assert str(err.value).startswith(path + ':')
        assert message in str(err.value)


# -- in-memory files ---------------------------------------------------------
def _reference(path: Path, preprocess: str) -> np.ndarray:
    """The fork's transforms on the PIL image, as BGR like mmcv."""
    with Image.open(path) as img:
        img = TF.resize(img, 256)
        if preprocess == 'val':
            img = TF.center_crop(img, 224)
        return np.asarray(img.convert('RGB'))[..., ::-1]


@pytest.mark.parametrize('root', ['Sketch', 'Photos'])
@pytest.mark.parametrize('split', ['train', 'val'])
def test_inmemory_files_of_the_port_writer(data, root, split):
    ds = SANInMemoryDataset(
        data_root=str(data / root),
        ann_file=f'{split}_imgs.pt',
        expected_preprocess=split,
    )
    txt = SANTxtListDataset(
        data_root=str(data / root), ann_file=f'{split}.txt'
    )
    assert ds.metainfo['classes'] == txt.metainfo['classes']
    assert len(ds) == len(txt)
    for i in (0, len(ds) - 1):
        out = ds[i]
        src = txt.get_data_info(i)
        assert out['gt_label'] == src['gt_label']
        assert out['img_path'] == f'{ds.ann_file}[{i}]'
        img = out['img']
        assert img.dtype == np.uint8 and out['img_shape'] == img.shape[:2]
        if split == 'val':
            assert img.shape == (224, 224, 3)
        else:
            assert min(img.shape[:2]) == 256
        # Lossless: exactly the fork's Resize(256) (+ CenterCrop(224)).
        np.testing.assert_array_equal(
            img, _reference(Path(src['img_path']), split)
        )
        if root == 'Sketch':
            assert (img[..., 0] == img[..., 2]).all()
    other = 'val' if split == 'train' else 'train'
    with pytest.raises(ValueError, match=f"preprocessed for '{split}'"):
        SANInMemoryDataset(
            data_root=str(data / root),
            ann_file=f'{split}_imgs.pt',
            expected_preprocess=other,
        )


def test_untransformed_inmemory_decodes_like_load_image_from_file(data):
    txt = SANTxtListDataset(
        data_root=str(data / 'Photos'), ann_file='val.txt', pipeline=[LOAD]
    )
    paths = [txt.get_data_info(i)['img_path'] for i in range(len(txt))]
    blobs = [encode_inmemory_image(p, 'none') for p in paths]
    assert blobs[0] == Path(paths[0]).read_bytes()  # original encoding
    obj = pack_inmemory(
        blobs,
        [txt.get_data_info(i)['gt_label'] for i in range(len(txt))],
        txt.metainfo['classes'],
        txt.class_to_idx,
        'none',
    )
    path = data / 'photos_val_none.pt'
    save_san_file(obj, path)
    ds = SANInMemoryDataset(ann_file=str(path), expected_preprocess='none')
    for i in range(len(ds)):
        np.testing.assert_array_equal(ds[i]['img'], txt[i]['img'])
    loaded = load_inmemory(str(path))
    assert loaded['offsets'][-1] == sum(len(b) for b in blobs)
    assert isinstance(obj['data'], torch.Tensor)
    assert obj['data'].dtype == torch.uint8


def test_legacy_bytesio_file_refused_then_converted(data, tmp_path, capsys):
    legacy = tmp_path / 'legacy'
    entry = _generate(legacy, legacy_pt=True)
    assert entry['legacy_pt'] is True
    src = legacy / 'Sketch' / 'train_imgs.pt'
    with pytest.raises(LegacyInMemoryFileError) as err:
        SANInMemoryDataset(ann_file=str(src))
    text = str(err.value)
    assert 'tools/dataset_converters/san_imgs_to_raw.py' in text
    assert '--trust-source' in text and 'io.BytesIO' in text
    dst = tmp_path / 'train_imgs.pt'
    tool = 'tools/dataset_converters/san_imgs_to_raw.py'
    assert _tool_main(tool, [str(src), str(dst)]) == 2
    assert 'Pass --trust-source if you trust' in capsys.readouterr().err
    assert not dst.exists()
    proc = run_tool([tool, str(src), str(dst), '--trust-source'])
    assert 'inferred from image sizes: train' in proc.stdout
    # Byte for byte what the port's writer wrote for the same seed.
    port = data / 'Sketch' / 'train_imgs.pt'
    digest = [hashlib.sha256(p.read_bytes()).digest() for p in (dst, port)]
    assert digest[0] == digest[1]
    ds = SANInMemoryDataset(ann_file=str(dst), expected_preprocess='train')
    assert len(ds) == NUM_CLASSES * PER_CLASS


def test_inmemory_rejects_other_files(data, tmp_path):
    with pytest.raises(AnnotationError, match='not a san_inmemory_v1'):
        SANInMemoryDataset(ann_file=str(data / 'Sketch' / 'train_init.pt'))
    with pytest.raises(FileNotFoundError):
        SANInMemoryDataset(ann_file=str(tmp_path / 'none.pt'))
    with pytest.raises(ValueError, match='expected_preprocess'):
        SANInMemoryDataset(ann_file='x.pt', expected_preprocess='test')


def test_legacy_reencode_resaves_at_pil_default_quality(data):
    path = data / 'Photos' / 'data' / 'class_000' / '0001.jpg'
    blob = encode_inmemory_image(str(path), 'none', legacy_reencode=True)
    with Image.open(path) as img:
        buf = io.BytesIO()
        img.save(buf, format='JPEG')
    assert blob == buf.getvalue() != path.read_bytes()
    decoded = mmcv.imfrombytes(blob, backend='pillow')
    assert decoded.shape[:2] == Image.open(path).size[::-1]
