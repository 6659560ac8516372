"""WSOL-SST hooks in real MMEngine runners (``wsol_sst.md`` §3.6, §5.3,
§12 items 9 and 11): epoch gates, dynamic lr decay, staged warmup."""

from __future__ import annotations

import itertools
import math
from collections import defaultdict
from types import SimpleNamespace

import pytest
import torch
from mmengine.evaluator import BaseMetric, Evaluator
from mmengine.hooks import Hook
from mmengine.model import BaseModel
from mmengine.runner import Runner
from mmpretrain.structures import DataSample
from torch import nn
from torch.utils.data import Dataset

import projects.wsol_sst  # noqa: F401
from projects.wsol_sst.engine import (
    SSTDynamicLrDecayHook,
    SSTEpochGateHook,
    SSTStagedWarmupHook,
)
from shared.registry import HOOKS

MODULE_LR = dict(backbone=1e-3, cls_head=1e-2, sos_head=1e-4, sa=5e-3)
ITERS = 2  # iterations per epoch: 4 samples, batch 2
_names = itertools.count()


class ToyData(Dataset):
    """Four fixed 3×4×4 images with labels, in memory."""

    def __init__(self, size: int = 4, image: int = 4) -> None:
        gen = torch.Generator().manual_seed(0)
        self.images = torch.randint(
            0, 256, (size, 3, image, image), generator=gen, dtype=torch.uint8
        )
        self.metainfo = dict(classes=('a', 'b', 'c'))

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, idx: int) -> dict:
        sample = DataSample().set_gt_label(idx % 3)
        return dict(inputs=self.images[idx], data_samples=sample)


class StandIn(BaseModel):
    """The interface of ``SSTLocalizer`` the hooks rely on: submodules
    ``backbone``, ``cls_head``, ``sos_head``, ``sa``; float
    ``current_epoch``; ``ra_cfg['enable']``; ``raw_ra`` in the losses.

    ``ra[e]`` lists the unweighted RA values the iterations of epoch ``e``
    report (the last list repeats). Every forward records
    ``(mode, current_epoch)``.
    """

    def __init__(self, ra=((0.0,),), ra_enabled: bool = True) -> None:
        super().__init__()
        self.backbone = nn.Conv2d(3, 4, 1)
        self.cls_head = nn.Conv2d(4, 3, 1)
        self.sos_head = nn.Conv2d(4, 1, 1)
        self.sa = nn.Linear(4, 4)
        self.current_epoch = math.inf
        self.ra_cfg = dict(enable=ra_enabled)
        self.ra = [list(v) for v in ra]
        self.seen: list[tuple[str, float]] = []
        self._iter_in_epoch: dict[float, int] = defaultdict(int)

    def forward(self, inputs, data_samples=None, mode='tensor'):
        x = torch.stack(list(inputs)).float() / 255.0
        self.seen.append((mode, self.current_epoch))
        f = self.backbone(x)
        logits = self.cls_head(f).mean((2, 3))
        if mode != 'loss':
            return [DataSample().set_pred_score(s) for s in logits]
        labels = torch.cat([s.gt_label for s in data_samples])
        loss = nn.functional.cross_entropy(logits, labels)
        loss = loss + self.sos_head(f).square().mean()
        loss = loss + self.sa(f.mean((2, 3))).square().mean()
        last = len(self.ra) - 1
        epoch = min(self.current_epoch, last)  # inf without the gate hook
        values = self.ra[int(epoch)]
        step = self._iter_in_epoch[epoch]
        self._iter_in_epoch[epoch] += 1
        return dict(loss=loss, raw_ra=torch.tensor(values[step % len(values)]))


class NoMetric(BaseMetric):
    """Validation needs an evaluator; this one measures nothing."""

    def process(self, data_batch, data_samples) -> None:
        self.results.append(len(data_samples))

    def compute_metrics(self, results) -> dict:
        return {}


class LrRecorder(Hook):
    """Record every group's lr (and snapshots) as each epoch starts, after
    every other hook has set it."""

    priority = 'LOWEST'

    def __init__(self) -> None:
        self.lrs: dict[int, list[float]] = {}
        self.initial: dict[int, list] = {}
        self.params: dict[int, list[torch.Tensor]] = {}
        self.max_epochs: dict[int, int] = {}

    def before_train_epoch(self, runner) -> None:
        groups = runner.optim_wrapper.optimizer.param_groups
        self.lrs[runner.epoch] = [g['lr'] for g in groups]
        self.initial[runner.epoch] = [g.get('initial_lr') for g in groups]
        self.params[runner.epoch] = [
            p.detach().clone() for p in runner.model.parameters()
        ]
        self.max_epochs[runner.epoch] = runner.max_epochs


def _groups(runner) -> list[tuple[str, str]]:
    return [
        (g['module'], g['param_type'])
        for g in runner.optim_wrapper.optimizer.param_groups
    ]


def _base_lrs(runner) -> list[float]:
    return [
        MODULE_LR[m] * (2 if kind == 'bias' else 1)
        for m, kind in _groups(runner)
    ]


def _runner(
    work_dir,
    model,
    hooks,
    max_epochs: int,
    *,
    scheduler=None,
    checkpoint: bool = False,
    val: bool = False,
    data=None,
    **kwargs,
) -> Runner:
    def loader():
        return dict(
            dataset=data or ToyData(),
            sampler=dict(type='DefaultSampler', shuffle=False),
            batch_size=2,
            num_workers=0,
        )

    hook_cfg = dict(
        checkpoint=dict(type='CheckpointHook', interval=1)
        if checkpoint
        else None,
        logger=dict(type='LoggerHook', interval=100),
    )
    val_cfg = (
        dict(
            val_dataloader=loader(),
            val_cfg=dict(),
            val_evaluator=Evaluator([NoMetric()]),
            test_dataloader=loader(),
            test_cfg=dict(),
            test_evaluator=Evaluator([NoMetric()]),
        )
        if val
        else {}
    )
    return Runner(
        model=model,
        work_dir=str(work_dir),
        experiment_name=f'sst_hooks_{next(_names)}',
        train_dataloader=loader(),
        train_cfg=dict(by_epoch=True, max_epochs=max_epochs, val_interval=1),
        optim_wrapper=dict(
            optimizer=dict(
                type='SGD',
                lr=1e-3,
                momentum=0.9,
                nesterov=True,
                weight_decay=5e-4,
            ),
            constructor='SSTOptimWrapperConstructor',
            paramwise_cfg=dict(module_lr=dict(MODULE_LR), bias_lr_mult=2.0),
        ),  # fmt: skip
        param_scheduler=scheduler,
        custom_hooks=hooks,
        default_hooks=hook_cfg,
        default_scope='mmpretrain',
        randomness=dict(seed=0),
        **val_cfg,
        **kwargs,
    )


def _hook(runner, cls):
    (hook,) = [h for h in runner.hooks if isinstance(h, cls)]
    return hook


def test_registered():
    for cls in (SSTEpochGateHook, SSTDynamicLrDecayHook, SSTStagedWarmupHook):
        assert HOOKS.get(cls.__name__) is cls


# -- SSTEpochGateHook (§12 item 9) --------------------------------------------
def test_gate_hook_writes_epochs_and_opens_gates_for_val_and_test(tmp_path):
    model = StandIn()
    runner = _runner(
        tmp_path, model, [dict(type='SSTEpochGateHook')], 3, val=True
    )
    runner.train()
    train = [e for mode, e in model.seen if mode == 'loss']
    assert train == [float(e) for e in range(3) for _ in range(ITERS)]
    # Validation after each epoch sees every gate open ...
    val = [e for mode, e in model.seen if mode == 'predict']
    assert len(val) == 3 * ITERS and all(e == math.inf for e in val)
    # ... and gives training its epoch back.
    order = [mode for mode, _ in model.seen]
    assert order == (['loss'] * ITERS + ['predict'] * ITERS) * 3
    assert model.current_epoch == 2.0
    model.seen.clear()
    runner.test()
    assert model.seen == [('predict', math.inf)] * ITERS
    assert model.current_epoch == 2.0


def test_gate_hook_unwraps_and_needs_current_epoch():
    hook = SSTEpochGateHook()
    model = StandIn()
    runner = SimpleNamespace(model=nn.DataParallel(model), epoch=7)
    hook.before_train_epoch(runner)
    assert model.current_epoch == 7.0
    hook.before_val_epoch(runner)
    assert model.current_epoch == math.inf
    hook.after_val_epoch(runner)
    assert model.current_epoch == 7.0
    with pytest.raises(AttributeError, match='current_epoch'):
        hook.before_run(SimpleNamespace(model=nn.Linear(2, 2)))


# -- SSTDynamicLrDecayHook (§12 item 11) --------------------------------------
def _decay(**kwargs) -> dict:
    return dict(type='SSTDynamicLrDecayHook', **kwargs)


def test_decay_fires_on_mean_ra_once_and_adds_exact_epochs(tmp_path):
    # Epochs 0-1 are above the threshold but before min_epoch. Epochs 2 and
    # 3 reach it in one iteration (last, then first) but average 0.25: no.
    # Epoch 4 averages 0.325: fire. Epochs 5-6 are high again: no refire.
    ra = [(0.9,), (0.9,), (0.0, 0.5), (0.5, 0.0), (0.1, 0.55), (0.9,)]
    model = StandIn(ra=ra)
    recorder = LrRecorder()
    hooks = [
        dict(type='SSTEpochGateHook'),
        _decay(
            ra_threshold=0.3, min_epoch=2, force_epoch=8, extra_epochs=2,
            modules=('backbone', 'cls_head'),
        ),
        recorder,
    ]  # fmt: skip
    runner = _runner(tmp_path, model, hooks, max_epochs=10)
    runner.train()
    hook = _hook(runner, SSTDynamicLrDecayHook)
    assert hook.fired and hook.fired_epoch == 4
    # Means up to the firing epoch; afterwards the hook is done.
    assert hook.history == pytest.approx(
        {0: 0.9, 1: 0.9, 2: 0.25, 3: 0.25, 4: 0.325}
    )
    # Exactly extra_epochs = 2 more epochs, then stop: 7 of the 10 planned.
    assert sorted(recorder.lrs) == list(range(7))
    assert runner.train_loop.max_epochs == 7
    assert runner.train_loop.max_iters == 7 * ITERS
    assert runner.iter == 7 * ITERS
    assert runner.message_hub.get_info('max_epochs') == 7
    base = _base_lrs(runner)
    decayed = [m in ('backbone', 'cls_head') for m, _ in _groups(runner)]
    assert decayed == [True] * 4 + [False] * 4
    for epoch in range(5):
        assert recorder.lrs[epoch] == pytest.approx(base)
    for epoch in (5, 6):  # once: 0.1×, not 0.01× after epoch 5's RA 0.9
        expected = [b * (0.1 if d else 1) for b, d in zip(base, decayed)]
        assert recorder.lrs[epoch] == pytest.approx(expected)
    # No scheduler set initial_lr, and the hook does not invent one.
    assert recorder.initial[6] == [None] * 8


def test_decay_forced_then_survives_resume(tmp_path):
    ra = [(0.1,)]  # never reaches the threshold
    hooks = lambda rec: [  # noqa: E731
        dict(type='SSTEpochGateHook'),
        _decay(min_epoch=1, force_epoch=3, extra_epochs=2),
        rec,
    ]
    first = LrRecorder()
    runner = _runner(
        tmp_path / 'a', StandIn(ra=ra), hooks(first), 4, checkpoint=True
    )
    runner.train()
    hook = _hook(runner, SSTDynamicLrDecayHook)
    assert hook.fired_epoch == 3 and hook.max_epochs == 6
    assert sorted(first.lrs) == list(range(6))
    base = _base_lrs(runner)
    assert first.lrs[3] == pytest.approx(base)
    assert first.lrs[4] == pytest.approx([0.1 * b for b in base])
    assert first.max_epochs[3] == 4 and first.max_epochs[4] == 6
    # The logged base_lr follows the decay.
    assert runner.optim_wrapper.get_lr()['base_lr'] == pytest.approx([1e-4])

    # Resume after the firing (checkpoint of epoch index 4): the new runner
    # is configured for 4 epochs, the checkpoint restores the limit of 6
    # and the decayed lrs, and the hook does not fire again.
    second = LrRecorder()
    resumed = _runner(
        tmp_path / 'b', StandIn(ra=ra), hooks(second), 4,
        load_from=str(tmp_path / 'a' / 'epoch_5.pth'), resume=True,
    )  # fmt: skip
    resumed.train()
    hook = _hook(resumed, SSTDynamicLrDecayHook)
    assert hook.fired and hook.fired_epoch == 3 and hook.max_epochs == 6
    assert sorted(second.lrs) == [5]
    assert second.lrs[5] == pytest.approx([0.1 * b for b in base])
    assert resumed.train_loop.max_epochs == 6 and resumed.iter == 6 * ITERS

    # Resume before the firing: it fires once, at epoch 3 again.
    third = LrRecorder()
    again = _runner(
        tmp_path / 'c', StandIn(ra=ra), hooks(third), 4,
        load_from=str(tmp_path / 'a' / 'epoch_3.pth'), resume=True,
    )  # fmt: skip
    again.train()
    assert sorted(third.lrs) == [3, 4, 5]
    assert third.lrs[3] == pytest.approx(base)
    assert third.lrs[5] == pytest.approx([0.1 * b for b in base])

    # Loading the fired checkpoint as weights only starts the hook fresh.
    fourth = LrRecorder()
    fresh = _runner(
        tmp_path / 'd', StandIn(ra=ra), hooks(fourth), 4,
        load_from=str(tmp_path / 'a' / 'epoch_6.pth'),
    )  # fmt: skip
    fresh.train()
    assert sorted(fourth.lrs) == list(range(6))
    assert fourth.lrs[0] == pytest.approx(base)
    assert fourth.max_epochs[0] == 4


def test_decay_state_round_trips_through_checkpoint_meta():
    hook = SSTDynamicLrDecayHook()
    hook.fired, hook.fired_epoch, hook.max_epochs = True, 80, 101
    checkpoint = dict(meta=dict(epoch=90))
    hook.before_save_checkpoint(None, checkpoint)
    assert checkpoint['meta'][SSTDynamicLrDecayHook.STATE_KEY] == dict(
        fired=True, fired_epoch=80, max_epochs=101
    )
    other = SSTDynamicLrDecayHook()
    other.after_load_checkpoint(None, checkpoint)
    assert other._pending == dict(fired=True, fired_epoch=80, max_epochs=101)


def test_decay_refuses_a_model_without_ra():
    hook = SSTDynamicLrDecayHook()
    with pytest.raises(ValueError, match='RA loss disabled'):
        hook.before_run(SimpleNamespace(model=StandIn(ra_enabled=False)))
    # ``ra_enabled`` (SSTLocalizer's property) wins over ``ra_cfg``.
    model = StandIn()
    model.ra_enabled = False
    with pytest.raises(ValueError, match='RA loss disabled'):
        hook.before_run(SimpleNamespace(model=model))
    with pytest.raises(AttributeError, match='ra_enabled'):
        hook.before_run(SimpleNamespace(model=nn.Linear(2, 2)))
    hook.before_run(SimpleNamespace(model=nn.DataParallel(StandIn())))


def test_decay_needs_ra_values_from_min_epoch(tmp_path):
    class Silent(StandIn):
        def forward(self, inputs, data_samples=None, mode='tensor'):
            out = super().forward(inputs, data_samples, mode)
            if mode == 'loss':
                out.pop('raw_ra')
            return out

    hooks = [dict(type='SSTEpochGateHook'), _decay(min_epoch=1)]
    runner = _runner(tmp_path, Silent(), hooks, 3)
    with pytest.raises(KeyError, match="epoch 1 logged 'raw_ra'"):
        runner.train()


@pytest.mark.parametrize(
    ('kwargs', 'match'),
    [
        (dict(min_epoch=5, force_epoch=4), 'min_epoch'),
        (dict(factor=0.0), 'factor'),
        (dict(extra_epochs=-1), 'extra_epochs'),
        (dict(modules=('backbone', 'neck')), 'neck'),
        (dict(ra_threshold=math.nan), 'ra_threshold'),
    ],
)
def test_decay_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SSTDynamicLrDecayHook(**kwargs)


# -- SSTStagedWarmupHook (§12 item 11) ----------------------------------------
def _stage_factor(epoch: int, module: str) -> float:
    """§5.3: lr = base·((e + 1 − start)/2 + 1) inside a stage, 0 for the
    other groups, 1 after the stages."""
    for start, end, modules in (
        (0, 2, ('sos_head',)),
        (3, 5, ('sa',)),
        (6, 8, None),
    ):
        if start <= epoch <= end:
            if modules is None or module in modules:
                return (epoch + 1 - start) / 2 + 1
            return 0.0
    return 1.0


def _warmup_run(tmp_path, overrides: bool | None, scheduler=None):
    recorder = LrRecorder()
    warmup = dict(type='SSTStagedWarmupHook')
    if overrides is not None:
        warmup['warmup_overrides_decay'] = overrides
    runner = _runner(
        tmp_path, StandIn(), [warmup, recorder], 11, scheduler=scheduler
    )
    runner.train()
    return runner, recorder


def test_staged_warmup_lr_table(tmp_path):
    runner, recorder = _warmup_run(tmp_path, None)
    groups, base = _groups(runner), _base_lrs(runner)
    for epoch in range(11):
        expected = [
            b * _stage_factor(epoch, m) for b, (m, _) in zip(base, groups)
        ]
        assert recorder.lrs[epoch] == pytest.approx(expected), epoch
    # The stage rule gives 1.5×, 2×, 2.5×.
    sos = groups.index(('sos_head', 'weight'))
    assert [recorder.lrs[e][sos] / base[sos] for e in range(3)] == [
        pytest.approx(f) for f in (1.5, 2.0, 2.5)
    ]
    # lr 0 really freezes: the backbone is untouched during epochs 0-5.
    backbone = runner.model.backbone.weight
    index = [p is backbone for p in runner.model.parameters()].index(True)
    torch.testing.assert_close(
        recorder.params[0][index], recorder.params[6][index], rtol=0, atol=0
    )
    assert not torch.equal(recorder.params[6][index], backbone.detach())


def test_staged_warmup_overrides_step_decay(tmp_path):
    scheduler = dict(type='MultiStepLR', by_epoch=True, milestones=[1, 7])
    runner, on = _warmup_run(tmp_path / 'on', True, scheduler)
    _, off = _warmup_run(tmp_path / 'off', False, scheduler)
    _, plain = _warmup_run(tmp_path / 'plain', True)
    groups, base = _groups(runner), _base_lrs(runner)
    for epoch in range(11):
        # Upstream's quirk: the step decay never takes effect.
        assert on.lrs[epoch] == pytest.approx(plain.lrs[epoch]), epoch
        # Without it, the stage rule scales the decayed lr, and after the
        # stages the decayed lr applies.
        decay = 0.1 ** sum(epoch >= m for m in (1, 7))
        expected = [
            b * decay * _stage_factor(epoch, m)
            for b, (m, _) in zip(base, groups)
        ]
        assert off.lrs[epoch] == pytest.approx(expected), epoch


def test_staged_warmup_keeps_the_dynamic_decay(tmp_path):
    """With the override on, the decay hook's scaled ``initial_lr`` is the
    new base, so its decay survives later epochs."""
    recorder = LrRecorder()
    hooks = [
        dict(type='SSTEpochGateHook'),
        dict(type='SSTStagedWarmupHook', stages=((0, 1, 'all'),)),
        _decay(min_epoch=0, force_epoch=2, extra_epochs=2),
        recorder,
    ]
    runner = _runner(tmp_path, StandIn(), hooks, 3)
    runner.train()
    base = _base_lrs(runner)
    # A 2-epoch stage: (e + 1 - start) / (end - start) + 1 = 2 at e = 0.
    assert recorder.lrs[0] == pytest.approx([2 * b for b in base])
    assert recorder.lrs[1] == pytest.approx([3 * b for b in base])
    assert recorder.lrs[2] == pytest.approx(base)
    for epoch in (3, 4):
        assert recorder.lrs[epoch] == pytest.approx([0.1 * b for b in base])
        assert recorder.initial[epoch] == pytest.approx(
            [0.1 * b for b in base]
        )


@pytest.mark.parametrize(
    ('stages', 'match'),
    [
        (((0, 2, ('sa',)), (2, 4, 'all')), 'overlap'),
        (((3, 3, 'all'),), 'start < end'),
        (((0, 2, ('head',)),), 'head'),
        (((0, 2),), 'start, end, modules'),
    ],
)
def test_staged_warmup_bad_stages(stages, match):
    with pytest.raises(ValueError, match=match):
        SSTStagedWarmupHook(stages=stages)


def test_hooks_need_an_epoch_based_loop(tmp_path):
    runner = _runner(tmp_path, StandIn(), [_decay()], 1)
    runner._train_loop = dict(type='IterBasedTrainLoop', max_iters=2)
    with pytest.raises(TypeError, match='epoch-based'):
        runner.train()


def test_hooks_need_the_sst_constructor(tmp_path):
    runner = Runner(
        model=StandIn(),
        work_dir=str(tmp_path),
        experiment_name=f'sst_hooks_{next(_names)}',
        train_dataloader=dict(
            dataset=ToyData(),
            sampler=dict(type='DefaultSampler', shuffle=False),
            batch_size=2,
            num_workers=0,
        ),
        train_cfg=dict(by_epoch=True, max_epochs=1),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.1)),
        custom_hooks=[dict(type='SSTStagedWarmupHook')],
        default_hooks=dict(checkpoint=None),
        default_scope='mmpretrain',
    )
    with pytest.raises(TypeError, match='SSTOptimWrapperConstructor'):
        runner.train()


# -- the real SSTLocalizer ----------------------------------------------------
def test_real_localizer_gates_and_decay(tmp_path):
    """SSTLocalizer under the gate hook and the decay hook: ``loss_ra`` and
    ``loss_sos`` switch on at their start epochs, and the decay reads the
    model's ``raw_ra``."""
    from projects.wsol_sst.models.localizer import SSTLocalizer

    model = SSTLocalizer(
        mode='sos+sa_v3',
        num_classes=3,
        backbone=dict(type='SSTVGG16'),
        cls_head=dict(type='SSTConvHead', mid_channels=8),
        sos_head=dict(type='SSTConvHead', mid_channels=8, out_channels=1),
        sa=dict(type='SSTEdgeSelfAttention', num_heads=1),
        gates=dict(sa_start=1, ram_start=1, sos_start=2, sparse_start=0),
    )

    class Keys(Hook):
        def __init__(self):
            self.keys = {}

        def after_train_iter(self, runner, batch_idx, data_batch, outputs):
            self.keys.setdefault(runner.epoch, set(outputs))

    keys, recorder = Keys(), LrRecorder()
    hooks = [
        dict(type='SSTEpochGateHook'),
        _decay(ra_threshold=-1.0, min_epoch=1, force_epoch=9, extra_epochs=1),
        keys,
        recorder,
    ]
    runner = _runner(tmp_path, model, hooks, 3, data=ToyData(size=2, image=32))
    runner.train()
    assert 'loss_ra' not in keys.keys[0] and 'loss_sos' not in keys.keys[0]
    assert {'loss_ra', 'raw_ra'} <= keys.keys[1]
    assert 'loss_sos' not in keys.keys[1]
    assert {'loss_ra', 'raw_ra', 'loss_sos', 'raw_sos'} <= keys.keys[2]
    hook = _hook(runner, SSTDynamicLrDecayHook)
    assert hook.fired_epoch == 1 and runner.train_loop.max_epochs == 3
    base = _base_lrs(runner)
    assert recorder.lrs[2] == pytest.approx([0.1 * b for b in base])
