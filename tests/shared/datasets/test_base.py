"""The bad-sample policy of CheckedDatasetMixin on a real adapter."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.datasets import CUBLoc, SampleLoadError
from shared.datasets.synthetic import generate

LOAD = dict(
    type='LoadImageFromFile',
    imdecode_backend='pillow',
    color_type='color_ignore_orientation',
)


@pytest.fixture
def cub(tmp_path) -> Path:
    generate('cub', tmp_path, 2, 3, val_per_class=1, size_range=(48, 64))
    return tmp_path / 'CUB_200_2011'


def _first_train_image(root: Path) -> Path:
    rel = (root / 'images.txt').read_text().split('\n')[0].split()[1]
    return root / 'images' / rel


def test_header_check_catches_a_truncated_jpeg(cub):
    img = _first_train_image(cub)
    img.write_bytes(img.read_bytes()[:-200])  # cut the tail, header intact
    ds = CUBLoc(data_root=str(cub), split='train', skip_invalid=True)
    assert len(ds) == 5
    (ref,) = ds.skipped['undecodable_image']
    assert 'images.txt:1' in ref and 'no end marker' in ref


def test_corruption_header_cannot_see_fails_at_load_with_a_hint(cub):
    img = _first_train_image(cub)
    data = bytearray(img.read_bytes())
    data[200:-2] = b'\x00' * (len(data) - 202)  # scan data gone, EOI kept
    img.write_bytes(bytes(data))
    ds = CUBLoc(
        data_root=str(cub),
        split='train',
        bad_sample_policy='skip',
        pipeline=[LOAD],
    )
    assert len(ds) == 6 and ds.skipped == {}
    with pytest.raises(SampleLoadError) as err:
        ds[0]
    text = str(err.value)
    assert 'CUBLoc[0]' in text and str(img) in text
    assert "check_images='full' decodes every image" in text
    full = CUBLoc(
        data_root=str(cub),
        split='train',
        bad_sample_policy='skip',
        check_images='full',
    )
    assert len(full) == 5 and len(full.skipped['undecodable_image']) == 1
