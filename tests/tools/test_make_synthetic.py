"""Tests of the make_synthetic.py command line (the library is tested in
tests/shared/datasets/synthetic/)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mmpretrain.datasets import CustomDataset

from tests.conftest import run_tool

SCRIPT = 'tools/dataset_converters/make_synthetic.py'


def test_help_lists_every_format_and_option():
    out = run_tool([SCRIPT, '--help']).stdout
    for word in ('--num-classes', '--size-range', '--corrupt', '--workers',
                 '--write-oracle-maps', 'imagenet-loc', 'openimages-mask',
                 'coco-multilabel', 'txt-list', 'sketch'):  # fmt: skip
        assert word in out, word


def test_bad_arguments_exit_2_with_a_message(tmp_path):
    proc = run_tool([SCRIPT, '--format', 'nope', '--out', str(tmp_path)],
                    check=False)  # fmt: skip
    assert proc.returncode == 2 and 'invalid choice' in proc.stderr
    proc = run_tool(
        [SCRIPT, '--out', str(tmp_path), '--num-classes', '1281'], check=False
    )
    assert proc.returncode == 2
    assert 'exceeds the 1280 distinct class styles' in proc.stderr
    proc = run_tool([SCRIPT, '--out', str(tmp_path), '--size', '32',
                     '--size-range', '16', '32'], check=False)  # fmt: skip
    assert proc.returncode == 2 and 'not allowed with' in proc.stderr


def test_imagefolder_run_reports_and_is_readable(tmp_path):
    out = tmp_path / 'synthetic_imagefolder'
    proc = run_tool([SCRIPT, '--format', 'imagefolder', '--out', str(out),
                     '--classes', '3', '--per-class', '4', '--size', '32',
                     '--corrupt', 'missing_image'])  # fmt: skip
    assert '12 train, 3 val images' in proc.stdout
    assert 'images/min' in proc.stdout
    manifest = json.loads((out / 'synthetic_manifest.json').read_text())
    record = manifest['formats']['imagefolder']['corruption']
    assert f'injected missing_image at {record["file"]}:1' in proc.stdout
    ds = CustomDataset(
        data_root=str(out),
        ann_file='meta/val.txt',
        data_prefix='val',
        pipeline=[dict(type='LoadImageFromFile')],
    )
    assert len(ds) == 3 and ds[0]['img'].shape == (32, 32, 3)
    assert not Path(record['target']).exists()


@pytest.mark.parametrize('alias', ['coco-multilabel', 'txt-list'])
def test_aliases_are_accepted(tmp_path, alias):
    args = ['--classes', '2', '--per-class', '2', '--size', '32']
    run_tool([SCRIPT, '--format', alias, '--out', str(tmp_path), *args])
    manifest = json.loads((tmp_path / 'synthetic_manifest.json').read_text())
    assert set(manifest['formats']) == {
        {'coco-multilabel': 'coco', 'txt-list': 'sketch'}[alias]
    }
