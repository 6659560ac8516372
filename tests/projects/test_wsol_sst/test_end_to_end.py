"""WSOL-SST end to end on synthetic CUB (wsol_sst.md §12.15).

A few iterations of tools/train.py for every mode on the synthetic CUB
layout (64-px images; the crops shrunk to 64 for CPU speed, the VGG grid
is then 4x4), then tools/test.py on the quick path (11 views per image)
through the shared metric, with every map type evaluated.
"""

from __future__ import annotations

import json

import pytest

from tests.conftest import run_tool

CONFIGS = {
    mode: f'configs/wsol_sst/wsolsst_vgg16-{name}_2xb32-dyndecay-100e_cub.py'
    for mode, name in (
        ('spa', 'spa'),
        ('spa+sa', 'spa-sa'),
        ('sos', 'sos'),
        ('sos+sa_v1', 'sos-sa-v1'),
        ('sos+sa_v2', 'sos-sa-v2'),
        ('sos+sa_v3', 'sos-sa-v3'),
    )
}
SOS_MODES = ('sos', 'sos+sa_v1', 'sos+sa_v2', 'sos+sa_v3')
OPTIONS = [
    'vgg16_pretrained=None',
    'model.backbone.init_cfg=None',
    'model.num_classes=4',
    'model.gates.sa_start=0',
    'model.gates.ram_start=0',
    'train_cfg.max_epochs=1',
    'custom_hooks.1.min_epoch=0',
    'custom_hooks.1.force_epoch=0',
    'custom_hooks.1.extra_epochs=1',
    'default_hooks.logger.interval=1',
    'train_dataloader.batch_size=4',
    'train_dataloader.num_workers=0',
    'train_dataloader.pin_memory=False',
    'train_dataloader.dataset.pipeline.2.scale=(72,72)',
    'train_dataloader.dataset.pipeline.3.crop_size=64',
    'test_dataloader.batch_size=4',
    'test_dataloader.num_workers=0',
    'test_dataloader.dataset.pipeline.2.crop_size=64',
    'test_dataloader.dataset.pipeline.2.resize=72',
    'test_evaluator.0.cam_threshold=[0.1,0.2,0.3]',
    'test_evaluator.1.cam_threshold=[0.1,0.2,0.3]',
]


@pytest.mark.parametrize('mode', list(CONFIGS))
def test_train_then_quick_test(mode, synthetic_root, tmp_path):
    config = CONFIGS[mode]
    env = {
        'DATA_ROOT': str(synthetic_root / 'demo'),
        'CUDA_VISIBLE_DEVICES': '',
    }
    work = tmp_path / 'work'
    train = run_tool(
        ['tools/train.py', config, '--work-dir', str(work)]
        + ['--cfg-options', *OPTIONS],
        env=env,
    )
    assert 'loss_cls' in train.output and 'loss_ra' in train.output
    if mode in SOS_MODES:
        assert 'loss_sos' in train.output
    # The dynamic decay fired after epoch 0 and added one epoch.
    assert (work / 'epoch_2.pth').is_file()
    out = tmp_path / 'metrics.json'
    options = list(OPTIONS)
    if mode in SOS_MODES:
        options.append('test_evaluator.2.cam_threshold=[0.1,0.2,0.3]')
    run_tool(
        ['tools/test.py', config, str(work / 'epoch_2.pth')]
        + ['--work-dir', str(tmp_path / 'test'), '--out', str(out)]
        + ['--cfg-options', *options],
        env=env,
    )
    metrics = json.loads(out.read_text())
    prefixes = ['cam', 'scg'] + (['sos'] if mode in SOS_MODES else [])
    for prefix in prefixes:
        for key in ('top1_cls', 'top1_loc', 'gt_known_loc'):
            assert 0 <= metrics[f'{prefix}/{key}'] <= 100
        assert metrics[f'{prefix}/best_cam_threshold'] in (0.1, 0.2, 0.3)
        assert 0 <= metrics[f'{prefix}_wsol/MaxBoxAccV2'] <= 100
    # One classification score for all map types.
    assert metrics['cam/top1_cls'] == metrics['scg/top1_cls']
