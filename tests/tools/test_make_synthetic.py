"""Tests of tools/dataset_converters/make_synthetic.py."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
SCRIPT = REPO_ROOT / 'tools' / 'dataset_converters' / 'make_synthetic.py'


def _load_module():
    spec = importlib.util.spec_from_file_location('make_synthetic', SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look the module up
    spec.loader.exec_module(module)
    return module


ms = _load_module()


def _files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob('*'))
        if p.is_file()
    }


@pytest.fixture(scope='module')
def dataset(tmp_path_factory) -> Path:
    """4 classes x 12 train / 3 val images, 64 px, seed 0."""
    out = tmp_path_factory.mktemp('synth') / 'data'
    rc = ms.main(['--out', str(out), '--classes', '4', '--per-class', '12'])
    assert rc == 0
    return out


def test_help_exits_zero():
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), '--help'],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert '--num-classes' in proc.stdout and '--format' in proc.stdout


def test_unknown_format_is_an_argparse_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        ms.main(['--format', 'nope', '--out', str(tmp_path)])
    assert exc.value.code == 2
    assert 'invalid choice' in capsys.readouterr().err
    with pytest.raises(ValueError, match='unknown format'):
        ms.generate('nope', tmp_path, 2, 1)


def test_layout_and_counts(tmp_path, capsys):
    out = tmp_path / 'd'
    rc = ms.main(
        ['--out', str(out), '--num-classes', '3', '--per-class', '5',
         '--val-per-class', '2', '--size', '32', '--ext', 'jpg']
    )  # fmt: skip
    assert rc == 0
    line = capsys.readouterr().out.strip()
    assert '15 train' in line and '6 val' in line and str(out) in line
    names = ['class_000', 'class_001', 'class_002']
    assert (out / 'classes.txt').read_text().splitlines() == names
    for split, k in (('train', 5), ('val', 2)):
        assert sorted(p.name for p in (out / split).iterdir()) == names
        for name in names:
            files = sorted((out / split / name).iterdir())
            assert [p.name for p in files] == [
                f'{name}_{i:04d}.jpg' for i in range(k)
            ]
            img = cv2.imread(str(files[0]))
            assert img.shape == (32, 32, 3)
        lines = (out / 'meta' / f'{split}.txt').read_text().splitlines()
        assert len(lines) == 3 * k
        assert lines[0] == 'class_000/class_000_0000.jpg 0'
        for ln in lines:
            rel, label = ln.split(' ')
            assert (out / split / rel).is_file()
            assert names[int(label)] == rel.split('/')[0]

    summary = ms.generate('imagefolder', tmp_path / 'e', 2, 9, size=16)
    assert summary['train'] == 18 and summary['val'] == 4  # 9 // 4 = 2
    assert summary['classes'] == ['class_000', 'class_001']


def test_deterministic(tmp_path):
    kwargs = dict(num_classes=3, per_class=4, size=40)
    ms.generate('imagefolder', tmp_path / 'a', seed=7, **kwargs)
    ms.generate('imagefolder', tmp_path / 'b', seed=7, **kwargs)
    ms.generate('imagefolder', tmp_path / 'c', seed=8, **kwargs)
    a, b, c = (_files(tmp_path / x) for x in 'abc')
    assert len(a) == 3 * 4 + 3 * 1 + 3  # images + classes.txt + 2 meta
    assert a == b
    assert a.keys() == c.keys()
    images = [k for k in a if k.endswith('.png')]
    assert all(a[k] != c[k] for k in images)
    # Independent of iteration order / other samples.
    img1 = ms.draw_sample(ms.sample_rng(7, 'val', 2, 0), 2, 3, 40)[0]
    ok, buf = cv2.imencode('.png', img1)
    assert buf.tobytes() == a['val/class_002/class_002_0000.png']


def test_boxes_and_masks():
    for size in (32, 64, 97):
        for c in range(20):
            for k in range(3):
                rng = ms.sample_rng(1, 'train', c, k)
                img, box, mask = ms.draw_sample(rng, c, 20, size)
                assert img.shape == (size, size, 3) and img.dtype == np.uint8
                assert mask.shape == (size, size) and mask.dtype == np.uint8
                assert box.shape == (4,) and box.dtype == np.float32
                assert set(np.unique(mask)) == {0, 1}
                x1, y1, x2, y2 = box
                assert 0 <= x1 < x2 <= size and 0 <= y1 < y2 <= size
                ys, xs = np.nonzero(mask)
                # Tight xyxy box, x2/y2 exclusive: every mask pixel inside.
                assert (xs.min(), ys.min()) == (x1, y1)
                assert (xs.max() + 1, ys.max() + 1) == (x2, y2)
                extent = max(x2 - x1, y2 - y1)
                assert 0.25 * size <= extent <= 0.7 * size + 1
                # The mask is the object: class colour inside, not outside.
                color = np.asarray(ms.class_color(c, 20), np.float32)
                inside = img[mask == 1].astype(np.float32).mean(0)
                outside = img[mask == 0].astype(np.float32).mean(0)
                ratio = inside / np.maximum(color, 1)
                assert np.abs(inside - color * ratio.mean()).max() < 12
                assert 0.8 < ratio.mean() < 1.05
                assert np.abs(outside - color).max() > 40


def test_class_pairs_distinct():
    for n in (4, 50, 1000):
        pairs = {(ms.class_shape(c), ms.class_color(c, n)) for c in range(n)}
        assert len(pairs) == n
    assert len({ms.class_shape(c) for c in range(len(ms.SHAPES))}) == len(
        ms.SHAPES
    )
    with pytest.raises(ValueError):
        ms.draw_sample(np.random.default_rng(0), 4, 4, 64)


def test_mmpretrain_custom_dataset(dataset):
    from mmpretrain.datasets import CustomDataset

    names = ('class_000', 'class_001', 'class_002', 'class_003')
    ds = CustomDataset(
        data_root=str(dataset), data_prefix='train', with_label=True
    )
    assert len(ds) == 48
    assert tuple(ds.CLASSES) == names
    labels = [ds.get_data_info(i)['gt_label'] for i in range(len(ds))]
    assert sorted(labels) == sorted(list(range(4)) * 12)
    for i in range(len(ds)):
        info = ds.get_data_info(i)
        assert Path(info['img_path']).parent.name == names[info['gt_label']]

    ds_ann = CustomDataset(
        data_root=str(dataset),
        ann_file='meta/train.txt',
        data_prefix='train',
        classes=str(dataset / 'classes.txt'),
    )
    assert len(ds_ann) == 48 and tuple(ds_ann.CLASSES) == names
    by_path = {
        ds.get_data_info(i)['img_path']: ds.get_data_info(i)['gt_label']
        for i in range(len(ds))
    }
    for i in range(len(ds_ann)):
        info = ds_ann.get_data_info(i)
        assert by_path[info['img_path']] == info['gt_label']

    val = CustomDataset(
        data_root=str(dataset),
        ann_file='meta/val.txt',
        data_prefix='val',
        pipeline=[dict(type='LoadImageFromFile')],
    )
    assert len(val) == 12
    item = val[0]
    assert item['img'].shape == (64, 64, 3)


def _features(root: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Hue histogram of the saturated pixels of 32 px thumbnails."""
    feats, labels = [], []
    for line in (root / 'meta' / f'{split}.txt').read_text().splitlines():
        rel, label = line.split(' ')
        img = cv2.imread(str(root / split / rel))
        small = cv2.resize(img, (32, 32), interpolation=cv2.INTER_AREA)
        hsv = cv2.cvtColor(small, cv2.COLOR_BGR2HSV)
        saturated = (hsv[..., 1] > 128).astype(np.uint8)
        hist = cv2.calcHist([hsv], [0], saturated, [36], [0, 180]).ravel()
        feats.append(hist / max(hist.sum(), 1.0))
        labels.append(int(label))
    return np.stack(feats), np.asarray(labels)


def test_learnable(tmp_path):
    """Nearest-class-mean on colour histograms beats chance by far."""
    out = tmp_path / 'learn'
    ms.generate('imagefolder', out, num_classes=8, per_class=20, seed=3)
    x_tr, y_tr = _features(out, 'train')
    x_va, y_va = _features(out, 'val')
    means = np.stack([x_tr[y_tr == c].mean(0) for c in range(8)])
    dist = ((x_va[:, None] - means[None]) ** 2).sum(-1)
    acc = float((dist.argmin(1) == y_va).mean())
    assert acc > 0.8, acc  # chance is 0.125
