"""Tests of shared.datasets.synthetic.generate and the imagefolder writer."""

from __future__ import annotations

import json
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from torch import nn

from shared.datasets.synthetic import MANIFEST, generate
from shared.datasets.synthetic.common import sha256_file

SMALL = dict(size_range=(24, 40))


def _files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob('*'))
        if p.is_file()
    }


def test_imagefolder_layout(tmp_path):
    entry = generate(
        'imagefolder', tmp_path, 3, 5, val_per_class=2, **SMALL, ext='jpg'
    )
    assert entry['counts'] == {'train': 15, 'val': 6}
    names = ['class_000', 'class_001', 'class_002']
    assert entry['classes'] == names
    assert (tmp_path / 'classes.txt').read_text().splitlines() == names
    for split, k in (('train', 5), ('val', 2)):
        lines = (tmp_path / 'meta' / f'{split}.txt').read_text().splitlines()
        assert len(lines) == 3 * k
        assert lines[0] == 'class_000/class_000_0000.jpg 0'
        for line in lines:
            rel, label = line.split(' ')
            img = cv2.imread(str(tmp_path / split / rel))
            assert img is not None and 24 <= min(img.shape[:2])
            assert max(img.shape[:2]) <= 40
            assert names[int(label)] == rel.split('/')[0]


def test_deterministic_and_independent_of_workers(tmp_path):
    kwargs = dict(num_classes=3, per_class=6, val_per_class=2, **SMALL)
    generate('imagefolder', tmp_path / 'a', seed=7, workers=1, **kwargs)
    generate('imagefolder', tmp_path / 'b', seed=7, workers=2, **kwargs)
    generate('imagefolder', tmp_path / 'c', seed=8, **kwargs)
    a, b, c = (_files(tmp_path / x) for x in 'abc')
    assert a == b  # PNG bytes, annotations and manifest
    assert a.keys() == c.keys()
    images = [k for k in a if k.endswith('.png')]
    assert len(images) == 24
    assert all(a[k] != c[k] for k in images)


def test_manifest_records_arguments_counts_and_hashes(tmp_path):
    generate('imagefolder', tmp_path, 2, 3, **SMALL, seed=3)
    manifest = json.loads((tmp_path / MANIFEST).read_text())
    entry = manifest['formats']['imagefolder']
    assert entry['args']['seed'] == 3
    assert entry['args']['size_range'] == [24, 40]
    assert entry['counts'] == {'train': 6, 'val': 2}
    assert set(entry['versions']) == {'python', 'numpy', 'opencv'}
    hashes = entry['annotation_sha256']
    assert set(hashes) == {'classes.txt', 'meta/train.txt', 'meta/val.txt'}
    for rel, digest in hashes.items():
        assert sha256_file(tmp_path / rel) == digest
    assert entry['corruption'] is None


def test_oracle_maps_are_the_object_masks(tmp_path):
    generate('imagefolder', tmp_path, 2, 2, val_per_class=2, **SMALL,
             write_oracle_maps=True)  # fmt: skip
    maps = sorted((tmp_path / 'oracle_maps' / 'imagefolder').rglob('*.npy'))
    assert len(maps) == 4  # val images only
    for path in maps:
        score = np.load(path)
        assert score.dtype == np.float32 and set(np.unique(score)) == {0, 1}
        rel = path.relative_to(tmp_path / 'oracle_maps' / 'imagefolder')
        img = cv2.imread(str(tmp_path / str(rel)[: -len('.npy')]))
        assert img.shape[:2] == score.shape


@pytest.mark.parametrize(
    'kind', ['missing_image', 'truncated_image', 'empty_annotation']
)
def test_corruptions_are_recorded(tmp_path, kind):
    entry = generate('imagefolder', tmp_path, 2, 2, **SMALL, corrupt=kind)
    record = entry['corruption']
    assert record['kind'] == kind
    ann = Path(record['file'])
    assert ann == tmp_path / 'meta' / 'train.txt'
    if kind == 'empty_annotation':
        assert ann.read_text() == '' and record['line'] is None
        return
    target = Path(record['target'])
    if kind == 'missing_image':
        assert not target.exists()
    else:
        assert cv2.imread(str(target)) is None or target.stat().st_size < 400
    listed = ann.read_text().splitlines()[record['line'] - 1].split()[0]
    assert target == tmp_path / 'train' / listed


def test_refusals(tmp_path):
    with pytest.raises(ValueError, match='1280 distinct class styles'):
        generate('imagefolder', tmp_path, 1281, 1)
    with pytest.raises(ValueError, match='unknown format'):
        generate('nope', tmp_path, 2, 1)
    with pytest.raises(ValueError, match='not available for --format'):
        generate('imagefolder', tmp_path, 2, 1, corrupt='bad_flag')
    with pytest.raises(ValueError, match='size must be >= 8'):
        generate('imagefolder', tmp_path, 2, 1, size_range=(4, 8))


def test_generation_rate_smoke(tmp_path):
    """Default size range; the real target (>= 2,000 images/min on 2 cores)
    is measured by tools/analysis/benchmark_make_synthetic.py."""
    start = time.perf_counter()
    entry = generate('imagefolder', tmp_path, 4, 25, val_per_class=0)
    per_min = 60 * entry['counts']['train'] / (time.perf_counter() - start)
    assert per_min > 300, f'{per_min:.0f} images/min'


def test_a_tiny_model_learns_the_classes(tmp_path):
    """The classes are learnable: a small CNN beats chance clearly."""
    generate('imagefolder', tmp_path, 4, 40, val_per_class=15,
             size_range=(32, 32), seed=0)  # fmt: skip

    def load(split):
        lines = (tmp_path / 'meta' / f'{split}.txt').read_text().split('\n')
        xs, ys = [], []
        for line in filter(None, lines):
            rel, label = line.split()
            img = cv2.imread(str(tmp_path / split / rel))[..., ::-1]
            xs.append(torch.from_numpy(img.copy()).permute(2, 0, 1))
            ys.append(int(label))
        return torch.stack(xs).float() / 255, torch.tensor(ys)

    x_train, y_train = load('train')
    x_val, y_val = load('val')
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveMaxPool2d(1),
        nn.Flatten(),
        nn.Linear(32, 4),
    )
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(15):
        for idx in torch.randperm(len(y_train)).split(32):
            loss = nn.functional.cross_entropy(
                model(x_train[idx]), y_train[idx]
            )
            opt.zero_grad()
            loss.backward()
            opt.step()
    with torch.no_grad():
        acc = (model(x_val).argmax(1) == y_val).float().mean().item()
    assert acc > 0.6, acc  # chance is 0.25


def test_dead_workers_raise_instead_of_hanging(tmp_path):
    """Spawned workers cannot re-import a script read from stdin."""
    import subprocess
    import sys

    code = (
        'from shared.datasets.synthetic import generate\n'
        f'generate("imagefolder", {str(tmp_path)!r}, 2, 10, '
        'size_range=(32, 32), workers=2)\n'
    )
    proc = subprocess.run(
        [sys.executable, '-'],
        input=code,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=Path(__file__).resolve().parents[4],
    )
    assert proc.returncode != 0
    assert 'BrokenProcessPool' in proc.stderr
