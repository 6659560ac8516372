"""``SANSBIRPhaseHook`` in a real mmengine Runner (``san.md`` §3.3, §6
item 17): phase-2 freezing, phase-3 updates (the upstream bug and its
reproduction), the lr of the shipped schedule, fresh momentum, and resume.

The model here is a tiny two-branch network with the SBIR model's phase
interface (``unshared_modules``, ``set_phase``); the end-to-end test runs
the real ``SANSBIRModel``.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from mmengine.hooks import Hook
from mmengine.model import BaseModel
from mmengine.runner import Runner
from torch import nn
from torch.utils.data import Dataset

from projects.san.engine.sbir_phase_hook import SANSBIRPhaseHook
from shared.registry import HOOKS
from shared.utils.entrypoint import load_config
from tests.conftest import REPO_ROOT

NUM_CLASSES = 3
SHIPPED = (
    REPO_ROOT / 'configs/san/sbir-resnet26_2xb64_sketch-eitz-flickr25k.py'
)


class TinySBIR(BaseModel):
    """Sketch / photo stems and stages, a shared stage with BN, a head."""

    def __init__(self, contrastive_epochs: int, total_epochs: int):
        super().__init__()
        self.contrastive_epochs = contrastive_epochs
        self.total_epochs = total_epochs
        self.sketchStem = nn.Conv2d(3, 4, 1)
        self.imageStem = nn.Conv2d(3, 4, 1)
        self.sketchBackbone = nn.Sequential(
            nn.Conv2d(4, 4, 1), nn.BatchNorm2d(4)
        )
        self.imageBackbone = nn.Sequential(
            nn.Conv2d(4, 4, 1), nn.BatchNorm2d(4)
        )
        self.shareBackbone = nn.Sequential(
            nn.Conv2d(4, 8, 1), nn.BatchNorm2d(8), nn.ReLU()
        )
        self.classifier = nn.Linear(8, NUM_CLASSES)
        self.phase, self.epoch = 'contrastive', 0
        self.phases: list[tuple[str, int]] = []

    def unshared_modules(self):
        return [
            self.sketchStem,
            self.sketchBackbone,
            self.imageStem,
            self.imageBackbone,
        ]

    def set_phase(self, phase: str, epoch: int) -> None:
        self.phase, self.epoch = phase, epoch
        self.phases.append((phase, epoch))

    def embed(self, x, modality):
        if modality == 'sketch':
            x = self.sketchBackbone(self.sketchStem(x))
        else:
            x = self.imageBackbone(self.imageStem(x))
        return self.shareBackbone(x).mean((2, 3))

    def forward(self, inputs, data_samples=None, mode='tensor'):
        views = [torch.stack(v) for v in inputs]
        expected = 2 if self.phase == 'contrastive' else 3
        if len(views) != expected:
            raise ValueError(f'{len(views)} views in phase {self.phase}')
        labels = torch.stack(data_samples)
        feats = [self.embed(views[0], 'sketch')]
        feats += [self.embed(v, 'photo') for v in views[1:]]
        loss = sum(F.cross_entropy(self.classifier(f), labels) for f in feats)
        return dict(loss=loss)


class TinyPairs(Dataset):
    """Fixed random views; pairs or triplets as the mode says."""

    def __init__(self, num: int = 8):
        gen = torch.Generator().manual_seed(0)
        self.images = torch.randn(num, 3, 3, 4, 4, generator=gen)
        self.labels = torch.arange(num) % NUM_CLASSES
        self.mode, self.epoch = 'pair', 0
        self.calls: list[tuple[str, int]] = []

    def set_mode(self, mode):
        self.mode = mode
        self.calls.append(('mode', mode))

    def set_epoch(self, epoch):
        self.epoch = epoch
        self.calls.append(('epoch', epoch))

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        views = 2 if self.mode == 'pair' else 3
        return dict(
            inputs=list(self.images[i, :views]), data_samples=self.labels[i]
        )


class Recorder(Hook):
    """Per epoch: lr, optimizer state size, weights, BN statistics."""

    priority = 'LOW'  # after the phase hook (ABOVE_NORMAL)

    def __init__(self):
        self.lr, self.state_size, self.snapshots = {}, {}, {}
        self.requires_grad = {}

    def before_train_epoch(self, runner):
        optimizer = runner.optim_wrapper.optimizer
        self.lr[runner.epoch] = optimizer.param_groups[0]['lr']
        self.state_size[runner.epoch] = len(optimizer.state)
        self.requires_grad[runner.epoch] = {
            n for n, p in runner.model.named_parameters() if p.requires_grad
        }

    def after_train_epoch(self, runner):
        self.snapshots[runner.epoch] = {
            k: v.clone() for k, v in runner.model.state_dict().items()
        }


def make_runner(
    tmp_path,
    contrastive=2,
    total=4,
    bug=False,
    param_scheduler=None,
    resume_from=None,
    name='run',
    batch_size=4,
):
    model = TinySBIR(contrastive, total)
    dataset = TinyPairs()  # the runner trains on a deep copy
    recorder = Recorder()
    if param_scheduler is None:
        param_scheduler = [
            dict(
                type='CosineAnnealingLR',
                T_max=contrastive,
                begin=0,
                end=contrastive,
                by_epoch=True,
                convert_to_iter_based=False,
            ),
            dict(
                type='CosineAnnealingLR',
                T_max=total - contrastive,
                begin=contrastive,
                end=total,
                by_epoch=True,
                convert_to_iter_based=False,
            ),
        ]
    runner = Runner(
        model=model,
        work_dir=str(tmp_path / name),
        train_dataloader=dict(
            dataset=dataset,
            sampler=dict(type='DefaultSampler', shuffle=False),
            batch_size=batch_size,
            num_workers=0,
        ),
        optim_wrapper=dict(
            optimizer=dict(type='SGD', lr=0.1, momentum=0.9, weight_decay=1e-4)
        ),
        param_scheduler=param_scheduler,
        train_cfg=dict(by_epoch=True, max_epochs=total),
        default_hooks=dict(
            checkpoint=dict(type='CheckpointHook', interval=1),
            logger=dict(type='LoggerHook', interval=100),
        ),
        custom_hooks=[
            SANSBIRPhaseHook(
                contrastive_epochs=contrastive,
                total_epochs=total,
                reproduce_triplet_optimizer_bug=bug,
            ),
            recorder,
        ],
        load_from=resume_from,
        resume=resume_from is not None,
        randomness=dict(seed=0),
        default_scope='mmpretrain',
        experiment_name=name,
    )
    return runner, model, dataset, recorder


def unshared_names(model) -> set[str]:
    prefixes = (
        'sketchStem.',
        'sketchBackbone.',
        'imageStem.',
        'imageBackbone.',
    )
    return {n for n, _ in model.named_parameters() if n.startswith(prefixes)}


def changed(before: dict, after: dict, names) -> set[str]:
    return {n for n in names if not torch.equal(before[n], after[n])}


def test_registered():
    hook = HOOKS.build(dict(type='SANSBIRPhaseHook'))
    assert (hook.contrastive_epochs, hook.total_epochs) == (35, 45)
    assert hook.triplet_lr == 0.1 and not hook.reproduce_triplet_optimizer_bug


def test_phases_freeze_and_update(tmp_path):
    runner, model, _, rec = make_runner(tmp_path)
    initial = {k: v.clone() for k, v in model.state_dict().items()}
    runner.train()
    dataset = runner.train_dataloader.dataset  # the runner's deep copy
    params = {n for n, _ in model.named_parameters()}
    unshared = unshared_names(model)
    assert unshared and unshared < params

    assert model.phases == [
        ('contrastive', 0),
        ('contrastive', 1),
        ('triplet', 2),
        ('triplet', 3),
    ]
    assert dataset.calls == [
        ('epoch', 0), ('mode', 'pair'),
        ('epoch', 1), ('mode', 'pair'),
        ('epoch', 2), ('mode', 'triplet'),
        ('epoch', 3), ('mode', 'triplet'),
    ]  # fmt: skip
    # Phase 2 freezes exactly the unshared parameters.
    for epoch in (0, 1):
        assert rec.requires_grad[epoch] == params - unshared
        snap_before = initial if epoch == 0 else rec.snapshots[epoch - 1]
        assert changed(snap_before, rec.snapshots[epoch], params) == (
            params - unshared
        )
    # Phase 3: everything trains again and every weight changes (upstream
    # kept all weights of the trained model fixed here).
    for epoch in (2, 3):
        assert rec.requires_grad[epoch] == params
        assert changed(
            rec.snapshots[epoch - 1], rec.snapshots[epoch], params
        ) == (params)


def test_reproduced_bug_changes_no_weight_but_bn_statistics(tmp_path):
    runner, model, _, rec = make_runner(tmp_path, bug=True)
    runner.train()
    params = {n for n, _ in model.named_parameters()}
    unshared = unshared_names(model)
    # Phase 2 is unaffected by the flag.
    assert changed(rec.snapshots[0], rec.snapshots[1], params) == (
        params - unshared
    )
    for epoch in (2, 3):
        before, after = rec.snapshots[epoch - 1], rec.snapshots[epoch]
        assert changed(before, after, params) == set()
        assert not torch.equal(
            before['shareBackbone.1.running_mean'],
            after['shareBackbone.1.running_mean'],
        )
        assert (
            after['shareBackbone.1.num_batches_tracked']
            > (before['shareBackbone.1.num_batches_tracked'])
        )


def test_shipped_schedule_lr_and_fresh_momentum(tmp_path):
    cfg = load_config(str(SHIPPED))
    assert cfg.optim_wrapper.optimizer == dict(
        type='SGD', lr=0.1, momentum=0.9, weight_decay=1e-4
    )
    assert cfg.train_cfg.max_epochs == 45
    hooks = {h['type']: h for h in cfg.custom_hooks}
    assert hooks['SANSBIRPhaseHook']['contrastive_epochs'] == 35
    # One iteration per epoch: 45 epochs of the real schedule.
    runner, _, _, rec = make_runner(
        tmp_path,
        contrastive=35,
        total=45,
        param_scheduler=cfg.param_scheduler,
        batch_size=8,
    )
    runner.train()
    for e in range(45):
        if e < 35:
            expected = 0.05 * (1 + math.cos(math.pi * e / 35))
        else:
            expected = 0.05 * (1 + math.cos(math.pi * (e - 35) / 10))
        assert rec.lr[e] == pytest.approx(expected, rel=1e-9, abs=1e-12), e
    # Entering phase 3 starts from an empty optimizer state (fresh
    # momentum); everywhere else the momentum carries over.
    assert rec.state_size[0] == 0 and rec.state_size[35] == 0
    assert all(rec.state_size[e] > 0 for e in range(1, 45) if e != 35)


@pytest.mark.parametrize('bug', [False, True])
@pytest.mark.parametrize('resume_epoch', [1, 2, 3])
def test_resume_restores_the_phase_state(tmp_path, resume_epoch, bug):
    """Resuming after epoch k (phase 2, phase boundary, inside phase 3)
    ends with exactly the weights of the uninterrupted run."""
    full, model, _, _ = make_runner(tmp_path, bug=bug, name='full')
    full.train()
    expected = {k: v.clone() for k, v in model.state_dict().items()}

    ckpt = tmp_path / 'full' / f'epoch_{resume_epoch}.pth'
    resumed, model2, _, rec2 = make_runner(
        tmp_path, bug=bug, resume_from=str(ckpt), name='resumed'
    )
    resumed.train()
    assert [e for _, e in model2.phases] == list(range(resume_epoch, 4))
    got = model2.state_dict()
    for key, value in expected.items():
        assert torch.equal(got[key], value), key
    if resume_epoch < 2:
        assert rec2.requires_grad[resume_epoch] == {
            n for n, _ in model2.named_parameters()
        } - unshared_names(model2)


def test_errors(tmp_path):
    with pytest.raises(ValueError, match='contrastive_epochs < total_epochs'):
        SANSBIRPhaseHook(contrastive_epochs=5, total_epochs=5)
    with pytest.raises(ValueError, match='triplet_lr'):
        SANSBIRPhaseHook(triplet_lr=0)
    with pytest.raises(TypeError, match='total_epochs'):
        SANSBIRPhaseHook(total_epochs=4.5)
    runner, *_ = make_runner(tmp_path, contrastive=1, total=3, name='a')
    runner.train_loop._max_epochs = 4
    with pytest.raises(ValueError, match='max_epochs=4'):
        SANSBIRPhaseHook(1, 3).before_train(runner)
    runner.train_loop._max_epochs = 3
    with pytest.raises(ValueError, match='contrastive_epochs=2 but the model'):
        SANSBIRPhaseHook(2, 3).before_train(runner)


# -- two gloo processes: freezing after the DDP wrap -----------------------


def _ddp_worker(rank: int, world: int, init_file: str, out: str) -> None:
    import json
    from types import SimpleNamespace

    import torch.distributed as dist
    from mmengine.dataset import pseudo_collate
    from mmengine.model import MMDistributedDataParallel
    from mmengine.optim import OptimWrapper

    dist.init_process_group(
        'gloo', init_method=f'file://{init_file}', rank=rank, world_size=world
    )
    wrapper_cfg = load_config(str(SHIPPED)).model_wrapper_cfg
    torch.manual_seed(0)
    model = TinySBIR(1, 2)
    # As in mmengine's Runner: the model is wrapped before any hook runs.
    ddp = MMDistributedDataParallel(
        module=model, find_unused_parameters=wrapper_cfg.find_unused_parameters
    )
    optim = OptimWrapper(
        torch.optim.SGD(
            model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4
        )
    )
    dataset = TinyPairs()
    runner = SimpleNamespace(
        model=ddp,
        optim_wrapper=optim,
        train_dataloader=SimpleNamespace(dataset=dataset),
        epoch=0,
    )
    hook = SANSBIRPhaseHook(contrastive_epochs=1, total_epochs=2)
    names = unshared_names(model)
    changes = []
    for epoch in (0, 1):
        runner.epoch = epoch
        hook.before_train_epoch(runner)
        before = {n: p.detach().clone() for n, p in model.named_parameters()}
        for step in range(2):
            first = rank * 4 + 2 * step
            batch = pseudo_collate(
                [dataset[i] for i in range(first, first + 2)]
            )
            ddp.train_step(batch, optim)
        after = dict(model.named_parameters())
        changes.append(sorted(changed(before, after, names)))
    checksum = float(sum(p.double().sum() for p in model.parameters()))
    with open(f'{out}.{rank}', 'w') as f:
        json.dump(dict(changes=changes, checksum=checksum), f)
    dist.destroy_process_group()


def test_two_process_gloo_freezing_after_ddp_wrap(tmp_path):
    import json
    import os

    import torch.multiprocessing as mp

    out = str(tmp_path / 'ddp')
    os.environ.setdefault('OMP_NUM_THREADS', '1')
    mp.spawn(
        _ddp_worker,
        args=(2, str(tmp_path / 'init'), out),
        nprocs=2,
        join=True,
    )
    results = []
    for rank in range(2):
        with open(f'{out}.{rank}') as f:
            results.append(json.load(f))
    names = sorted(unshared_names(TinySBIR(1, 2)))
    for result in results:
        # Phase 2: no unshared parameter moves; phase 3: all of them do.
        assert result['changes'] == [[], names]
    assert results[0]['checksum'] == results[1]['checksum']  # in sync


def test_real_sbir_model_phase_two_freezes_exactly_the_unshared_parts():
    from types import SimpleNamespace

    from mmengine.optim import OptimWrapper

    from projects.san.models.sbir_model import SANSBIRModel

    model = SANSBIRModel(
        layer_types=('res', 'san', 'san'),
        layers=(1, 1, 1),
        widths=(16, 32, 64),
        sa_type='patchwise',
        num_classes=NUM_CLASSES,
        embed_dims=8,
        contrastive_epochs=1,
        total_epochs=2,
    )
    optim = OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.01))
    runner = SimpleNamespace(
        model=model,
        optim_wrapper=optim,
        train_dataloader=SimpleNamespace(dataset=TinyPairs()),
        epoch=0,
    )
    hook = SANSBIRPhaseHook(contrastive_epochs=1, total_epochs=2)
    prefixes = (
        'sketchStem.',
        'imageStem.',
        'sketchBackbone.',
        'imageBackbone.',
    )
    params = {n for n, _ in model.named_parameters()}
    unshared = {n for n in params if n.startswith(prefixes)}
    shared_prefixes = {n.split('.')[0] for n in params - unshared}
    assert shared_prefixes == {
        'shareBackbone',
        'shareFc',
        'bn',
        'shareFeatVecFc',
        'classifier',
    }
    hook.before_train_epoch(runner)
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    assert frozen == unshared
    assert (model.phase, model.epoch) == ('contrastive', 0)
    runner.epoch = 1
    hook.before_train_epoch(runner)
    assert all(p.requires_grad for p in model.parameters())
    assert (model.phase, model.epoch) == ('triplet', 1)
    assert runner.train_dataloader.dataset.mode == 'triplet'
