"""``GAELLEProbeHook`` and the frozen probe backbone (``golang_ssl.md`` §7,
§11 "Probe")."""

from __future__ import annotations

import copy
import json
import os.path as osp
from types import SimpleNamespace

import pytest
import torch
from mmengine.hooks import Hook
from mmengine.optim import OptimWrapper
from mmengine.runner import Runner
from mmpretrain.structures import DataSample
from torch.utils.data import DataLoader, Dataset

import projects.golang_ssl.models.probe_head  # noqa: F401 (registers)
import shared.evaluation.metrics.multilabel_map  # noqa: F401 (registers)
from projects.golang_ssl.engine.probe_hook import GAELLEProbeHook
from shared.registry import HOOKS, MODELS

NUM_CLASSES = 4


def _save_backbone(path: str, seed: int = 0) -> dict:
    """A ResNet-18 trunk with random weights and BN statistics, saved flat
    (the converter's output format)."""
    torch.manual_seed(seed)
    trunk = MODELS.build(dict(type='ResNet', depth=18, out_indices=(3,)))
    with torch.no_grad():
        for module in trunk.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.weight.uniform_(0.5, 1.0)
                module.bias.uniform_(-0.1, 0.1)
                module.running_mean.uniform_(-0.1, 0.1)
                module.running_var.uniform_(0.5, 1.5)
                module.num_batches_tracked.fill_(7)
    state = {k: v.clone() for k, v in trunk.state_dict().items()}
    torch.save(state, path)
    return state


def _classifier(checkpoint: str):
    return MODELS.build(
        dict(
            type='ImageClassifier',
            data_preprocessor=dict(
                type='ClsDataPreprocessor', mean=[123.675, 116.28, 103.53],
                std=[58.14, 57.12, 57.375], to_rgb=True,
            ),
            backbone=dict(
                type='ResNet', depth=18, out_indices=(3,), frozen_stages=4,
                norm_cfg=dict(type='BN'), zero_init_residual=False,
                init_cfg=dict(type='Pretrained', checkpoint=checkpoint),
            ),
            neck=dict(type='GlobalAveragePooling'),
            head=dict(type='GAELLEMultiLabelLinearHead',
                      num_classes=NUM_CLASSES, in_channels=512),
        )
    )  # fmt: skip


def _batch(n: int, seed: int = 0) -> dict:
    gen = torch.Generator().manual_seed(seed)
    inputs = [
        torch.randint(0, 256, (3, 32, 32), generator=gen, dtype=torch.uint8)
        for _ in range(n)
    ]
    samples = []
    for i in range(n):
        sample = DataSample().set_gt_label([i % NUM_CLASSES])
        sample.set_metainfo(dict(sample_idx=i))
        samples.append(sample)
    return dict(inputs=inputs, data_samples=samples)


@pytest.fixture()
def probe(tmp_path):
    path = str(tmp_path / 'backbone.pth')
    state = _save_backbone(path)
    model = _classifier(path)
    model.init_weights()
    return model, path, state


def test_registered():
    assert HOOKS.get('GAELLEProbeHook') is GAELLEProbeHook


def test_frozen_backbone_no_grad_and_bn_stats_unchanged(probe):
    model, path, state = probe
    hook = GAELLEProbeHook()
    hook.before_train(SimpleNamespace(model=model))  # loaded exactly
    head_before = copy.deepcopy(model.head.state_dict())
    optim_wrapper = OptimWrapper(
        torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    )
    model.train()
    # frozen_stages=4 keeps every backbone BN in eval mode.
    assert not any(
        m.training for m in model.backbone.modules()
        if isinstance(m, torch.nn.BatchNorm2d)
    )  # fmt: skip
    data = model.data_preprocessor(_batch(4), True)
    loss = model(**data, mode='loss')['loss']
    assert torch.isfinite(loss)
    optim_wrapper.backward(loss)
    for name, param in model.backbone.named_parameters():
        assert param.grad is None, name
    assert model.head.fc.weight.grad.abs().sum() > 0
    optim_wrapper.step()
    for key, value in model.backbone.state_dict().items():
        assert torch.equal(value, state[key]), key
    hook.before_train(SimpleNamespace(model=model))  # still exact
    assert not torch.equal(model.head.fc.weight, head_before['fc.weight'])


def test_rejects_tampered_checkpoint(probe):
    model, path, state = probe
    runner = SimpleNamespace(model=model)
    tampered = dict(state)
    tampered['layer2.0.bn1.running_var'] = state[
        'layer2.0.bn1.running_var'
    ].clone()
    tampered['layer2.0.bn1.running_var'][3] += 1e-6
    torch.save(tampered, path)
    with pytest.raises(ValueError, match=r"differing: \['layer2.0.bn1."
                       r"running_var'\]"):  # fmt: skip
        GAELLEProbeHook().before_train(runner)

    other = str(osp.join(osp.dirname(path), 'other.pth'))
    missing = {k: v for k, v in state.items() if k != 'conv1.weight'}
    missing['fc.weight'] = torch.zeros(2, 2)
    torch.save(missing, other)
    hook = GAELLEProbeHook(checkpoint=other)
    with pytest.raises(ValueError, match=r"missing from the file: "
                       r"\['conv1.weight'\]; not in the backbone: "
                       r"\['fc.weight'\]"):  # fmt: skip
        hook.before_train(runner)

    torch.save(dict(state_dict=state, meta={}), other)
    with pytest.raises(ValueError, match='golang_to_backbone'):
        hook.before_train(runner)
    with pytest.raises(FileNotFoundError):
        GAELLEProbeHook(checkpoint=other + '.absent').before_train(runner)


def test_rejects_trainable_backbone(probe):
    model, path, state = probe
    model.backbone.layer4[1].conv2.weight.requires_grad_(True)
    with pytest.raises(ValueError, match=r"require grad: "
                       r"\['layer4.1.conv2.weight'\]"):  # fmt: skip
        GAELLEProbeHook().before_train(SimpleNamespace(model=model))


def test_no_checkpoint_and_prefix_errors(probe):
    model, path, state = probe
    model.backbone.init_cfg = None
    with pytest.raises(ValueError, match='no checkpoint'):
        GAELLEProbeHook().before_train(SimpleNamespace(model=model))
    model.backbone.init_cfg = dict(type='Pretrained', checkpoint=path,
                                   prefix='backbone.')  # fmt: skip
    with pytest.raises(ValueError, match='prefix'):
        GAELLEProbeHook().before_train(SimpleNamespace(model=model))


class _ToyMultiLabel(Dataset):
    """8 random 32×32 images with multi-label targets (one difficult)."""

    metainfo = dict(classes=tuple(f'c{i}' for i in range(NUM_CLASSES)))

    def __init__(self) -> None:
        self.data = _batch(8, seed=1)

    def __len__(self) -> int:
        return 8

    def __getitem__(self, i: int) -> dict:
        sample = self.data['data_samples'][i].clone()
        sample.set_gt_label([i % NUM_CLASSES, (i + 1) % NUM_CLASSES])
        if i == 0:
            sample.set_metainfo(dict(gt_label_difficult=[3]))
        return dict(inputs=self.data['inputs'][i], data_samples=sample)


class _Recorder(Hook):
    def __init__(self) -> None:
        self.values = []

    def after_val_epoch(self, runner, metrics=None) -> None:
        self.values.append((runner.epoch, metrics['multilabel/mAP']))


def _runner(tmp_path, path, work: str, epochs: int, **kwargs) -> Runner:
    from mmengine.dataset import pseudo_collate

    def loader():
        return DataLoader(_ToyMultiLabel(), batch_size=4, shuffle=False,
                          collate_fn=pseudo_collate)  # fmt: skip

    return Runner(
        model=_classifier(path),
        work_dir=str(tmp_path / work),
        train_dataloader=loader(),
        val_dataloader=loader(),
        val_evaluator=dict(type='MultiLabelMAP'),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.5, momentum=0.9)),
        train_cfg=dict(by_epoch=True, max_epochs=epochs, val_interval=1),
        val_cfg=dict(),
        default_hooks=dict(checkpoint=dict(type='CheckpointHook', interval=1),
                           logger=dict(type='LoggerHook', interval=1)),
        default_scope='mmpretrain',
        randomness=dict(seed=0),
        **kwargs,
    )  # fmt: skip


def test_summary_after_real_runner(tmp_path):
    path = str(tmp_path / 'backbone.pth')
    _save_backbone(path)
    recorder = _Recorder()
    hooks = [dict(type='GAELLEProbeHook'), recorder]
    runner = _runner(tmp_path, path, 'run', 2, custom_hooks=hooks)
    runner.train()
    with open(osp.join(runner.work_dir, 'probe_summary.json')) as f:
        summary = json.load(f)
    assert [e for e, _ in recorder.values] == [1, 2]
    values = [v for _, v in recorder.values]
    best = max(range(2), key=lambda i: (values[i], -i))
    assert summary['metric_key'] == 'multilabel/mAP'
    assert summary['checkpoint'] == path
    assert summary['last_mAP'] == values[-1] and summary['last_epoch'] == 2
    assert summary['best_mAP'] == values[best]
    assert summary['best_epoch'] == best + 1
    assert summary['best_label'] == 'selected on test'
    assert [r['epoch'] for r in summary['history']] == [1, 2]

    # A resumed run keeps the history (the checkpoint of epoch 2 precedes
    # the validation of epoch 2).
    resumed = _runner(
        tmp_path, path, 'run', 3, custom_hooks=[dict(type='GAELLEProbeHook')],
        resume=True,
    )  # fmt: skip
    resumed.train()
    with open(osp.join(resumed.work_dir, 'probe_summary.json')) as f:
        summary = json.load(f)
    assert [r['epoch'] for r in summary['history']] == [1, 2, 3]
    assert [r['value'] for r in summary['history'][:2]] == values


def test_missing_metric_key_lists_available():
    hook = GAELLEProbeHook(metric_key='multilabel/mAPx')
    runner = SimpleNamespace(epoch=1, iter=10)
    with pytest.raises(KeyError, match=r"\['multilabel/mAP'\]"):
        hook.after_val_epoch(runner, {'multilabel/mAP': 50.0})
