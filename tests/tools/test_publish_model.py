"""tools/model_converters/publish_model.py: clean, hashed, global-free."""

from __future__ import annotations

import argparse
import datetime
import hashlib
import os
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from mmengine.logging import MessageHub

from shared.utils.checkpoint import list_checkpoint_globals, save_state_dict
from tests.conftest import PickleBomb, run_tool

TOOL = 'tools/model_converters/publish_model.py'
CFG_TEXT = "model = dict(type='ImageClassifier')\n"
PRIMITIVES = (str, int, float, bool, type(None))


def _today() -> set[str]:
    return {datetime.date.today().strftime('%Y%m%d')}


def _training_checkpoint(path: Path) -> dict:
    """A checkpoint shaped like mmengine's Runner.save_checkpoint output."""
    hub = MessageHub.get_instance('publish_model_test')
    hub.update_scalar('train/loss', 1.0)
    hub.update_scalar('train/lr', np.float64(0.1))
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.randn(2, 4)).sum().backward()
    optimizer.step()
    ckpt = {
        'meta': {
            'epoch': np.int64(3),
            'iter': 120,
            'seed': np.int32(42),
            'lr': np.float32(0.5),
            'time': '20250101_000000',
            'mmengine_version': '0.10.7',
            'cfg': CFG_TEXT,
            'experiment_name': 'exp',
            'dataset_meta': {'classes': ('cat', 'dog'), 'palette': None},
            'hook_msgs': {'best_score': np.float64(0.75), 'arr': np.ones(2)},
            'not_primitive': np.zeros(3),
            'also_dropped': torch.ones(1),
            # tools/train.py's resume-only state is dropped as a whole.
            'world_size': 2,
            'schedule': {'max_epochs': 3, 'lr': 0.1},
            'rng_state': {'python': (3, (1, 2), None), 'torch': torch.ones(2)},
        },
        'state_dict': model.state_dict(),
        'optimizer': optimizer.state_dict(),
        'param_schedulers': [{'last_epoch': 3, 'base_lrs': [0.1]}],
        'message_hub': hub.state_dict(),
    }
    save_state_dict(ckpt, str(path))
    return ckpt


def _publish(*args: str, check: bool = True):
    return run_tool([TOOL, *args], timeout=120, check=check)


def test_help():
    proc = _publish('--help')
    assert 'OUT_DIR' in proc.stdout and '--name' in proc.stdout


def test_publishes_clean_hashed_file(tmp_path):
    src = tmp_path / 'epoch_3.pth'
    ckpt = _training_checkpoint(src)
    # The input really is a training checkpoint (message-hub globals).
    assert list_checkpoint_globals(str(src)) != []
    out_dir = tmp_path / 'publish'
    before = _today()
    proc = _publish(str(src), str(out_dir), '--name', 'my-model_1xb2-3e_x')
    dates = before | _today()

    out = Path(proc.stdout.strip().splitlines()[-1])
    assert out.parent == out_dir and out.is_file()
    match = re.fullmatch(
        r'my-model_1xb2-3e_x_(\d{8})-([0-9a-f]{8})\.pth', out.name
    )
    assert match, out.name
    assert match[1] in dates
    assert match[2] == hashlib.sha256(out.read_bytes()).hexdigest()[:8]
    assert sorted(os.listdir(out_dir)) == [out.name]  # no temp files left

    assert list_checkpoint_globals(str(out)) == []
    loaded = torch.load(out, weights_only=True)
    assert set(loaded) == {'state_dict', 'meta'}
    sd = loaded['state_dict']
    assert list(sd) == list(ckpt['state_dict'])
    for key, value in ckpt['state_dict'].items():
        assert sd[key].device.type == 'cpu'
        assert torch.equal(sd[key], value), key
    # Module versions survive, so BN & co. load as before.
    assert sd._metadata == ckpt['state_dict']._metadata

    meta = loaded['meta']
    assert meta == {
        'epoch': 3,
        'iter': 120,
        'seed': 42,
        'lr': 0.5,
        'time': '20250101_000000',
        'mmengine_version': '0.10.7',
        'cfg': CFG_TEXT,
        'experiment_name': 'exp',
        'dataset_meta': {'classes': ['cat', 'dog'], 'palette': None},
        'hook_msgs': {'best_score': 0.75},
    }

    def assert_primitive(value):
        if isinstance(value, dict):
            assert all(type(k) is str for k in value)
            for v in value.values():
                assert_primitive(v)
        elif isinstance(value, list):
            for v in value:
                assert_primitive(v)
        else:
            assert type(value) in PRIMITIVES, value

    assert_primitive(meta)
    assert type(meta['epoch']) is int and type(meta['lr']) is float


def test_default_stem_and_bare_state_dict(tmp_path):
    src = tmp_path / 'resnet_weights.pth'
    weights = {'a.weight': torch.randn(2, 2), 'b.bias': torch.zeros(3)}
    save_state_dict(weights, str(src))
    proc = _publish(str(src), str(tmp_path / 'out'))
    out = Path(proc.stdout.strip().splitlines()[-1])
    assert re.fullmatch(r'resnet_weights_\d{8}-[0-9a-f]{8}\.pth', out.name)
    loaded = torch.load(out, weights_only=True)
    assert loaded['meta'] == {}
    assert loaded['state_dict'].keys() == weights.keys()
    for key, value in weights.items():
        assert torch.equal(loaded['state_dict'][key], value)


@pytest.mark.parametrize('fmt', ['zip', 'legacy'])
def test_refuses_malicious_pickle(tmp_path, fmt):
    marker = tmp_path / 'MARKER'
    src = tmp_path / 'evil.pth'
    payload = {'state_dict': {'w': torch.ones(1)}, 'x': PickleBomb(marker)}
    torch.save(payload, src, _use_new_zipfile_serialization=fmt == 'zip')
    out_dir = tmp_path / 'out'
    proc = _publish(str(src), str(out_dir), check=False)
    assert proc.returncode != 0
    assert 'UnsafeCheckpointError' in proc.output
    assert 'posix.system' in proc.output or 'nt.system' in proc.output
    assert not marker.exists()
    assert not out_dir.exists() or not os.listdir(out_dir)


def test_trust_source_loads_foreign_globals_and_writes_clean(tmp_path):
    src = tmp_path / 'foreign.pth'
    payload = {
        'state_dict': {'w': torch.ones(2)},
        'meta': {'args': argparse.Namespace(lr=0.1), 'epoch': 1},
    }
    torch.save(payload, src)
    refused = _publish(str(src), str(tmp_path / 'out'), check=False)
    assert refused.returncode != 0
    assert 'argparse.Namespace' in refused.output
    proc = _publish(str(src), str(tmp_path / 'out'), '--trust-source')
    out = Path(proc.stdout.strip().splitlines()[-1])
    assert list_checkpoint_globals(str(out)) == []
    loaded = torch.load(out, weights_only=True)
    assert loaded['meta'] == {'epoch': 1}
    assert torch.equal(loaded['state_dict']['w'], torch.ones(2))


def test_missing_input(tmp_path):
    proc = _publish(str(tmp_path / 'nope.pth'), str(tmp_path), check=False)
    assert proc.returncode != 0
    assert 'FileNotFoundError' in proc.output and 'nope.pth' in proc.output


def test_no_state_dict(tmp_path):
    src = tmp_path / 'opt_only.pth'
    save_state_dict({'optimizer': {'state': {}}, 'meta': {}}, str(src))
    proc = _publish(str(src), str(tmp_path / 'out'), check=False)
    assert proc.returncode != 0
    assert 'PublishError' in proc.output and 'state_dict' in proc.output
