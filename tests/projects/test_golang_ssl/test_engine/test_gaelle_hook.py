"""``GAELLEHook`` (``golang_ssl.md`` §4.5, §8; §11 "Prototypes and freezing"
and "Queue", hook side).

Queue creation, first use, flag resets, persistence and freezing run in
real MMEngine runners around the real ``GAELLE`` algorithm (a ResNet-18
with 4 base channels cut after stage 2, ``GAELLENeck``, ``GAELLEHead`` and
``GAELLELoss`` with d = 8, K = 10). The ``before_run`` checks and the
collapse watch drive the hook's methods with a minimal runner object
around the same real model, because they need a world size of 2, a DDP
wrapper or long runs of chosen ``glb`` values.
"""

from __future__ import annotations

import itertools
import math
import os
import socket
import warnings
from types import SimpleNamespace

import pytest
import torch
import torch.distributed as dist
import torch.nn.functional as F
from mmengine.dataset import default_collate
from mmengine.hooks import Hook
from mmengine.model import MMDistributedDataParallel
from mmengine.optim import OptimWrapper
from mmengine.runner import Runner
from mmpretrain.structures import DataSample
from torch.utils.data import DataLoader, Dataset

import projects.golang_ssl.engine.gaelle_hook as hook_module
import projects.golang_ssl.models.gaelle  # noqa: F401
import projects.golang_ssl.models.gaelle_head  # noqa: F401
import projects.golang_ssl.models.gaelle_loss  # noqa: F401
import projects.golang_ssl.models.gaelle_neck  # noqa: F401
from projects.golang_ssl.engine.gaelle_hook import (
    GAELLEHook,
    round_queue_length,
)
from shared.registry import HOOKS, MODELS
from shared.utils.checkpoint import safe_load, save_state_dict

B = 2  # per-GPU batch
D = 8  # feat_dim = local_feat_dim
G = 4  # neck.num_groups, so M = D // G = 2 tokens per view
M = D // G
K = 10  # global prototypes
A = 2  # |crops_for_assign|
BANKS = ('prototypes', 'local_prototypes', 'l2g_prototypes')
_names = itertools.count()


class Views(Dataset):
    """Fixed multi-crop samples: 2 views at 16 px then 2 at 8 px."""

    def __init__(self, size: int = 8) -> None:
        self.size = size

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, idx: int) -> dict:
        gen = torch.Generator().manual_seed(idx)
        views = [
            torch.randint(0, 256, (3, s, s), generator=gen, dtype=torch.uint8)
            for s in (16, 16, 8, 8)
        ]
        return dict(inputs=views, data_samples=DataSample())


def model_cfg(with_local: bool = True) -> dict:
    return dict(
        type='GAELLE',
        data_preprocessor=dict(
            type='SelfSupDataPreprocessor',
            mean=[127.5] * 3,
            std=[127.5] * 3,
            to_rgb=True,
        ),
        backbone=dict(
            type='ResNet',
            depth=18,
            base_channels=4,
            stem_channels=4,
            num_stages=2,
            strides=(1, 2),
            dilations=(1, 1),
            out_indices=(1,),  # 8 channels, 2×2 map at 16 px
            norm_cfg=dict(type='BN'),
        ),
        neck=dict(
            type='GAELLENeck',
            in_channels=8,
            hid_channels=16,
            feat_dim=D,
            local_feat_dim=D,
            num_groups=G,
            with_local=with_local,
            norm_cfg=dict(type='BN'),
        ),
        head=dict(
            type='GAELLEHead',
            loss=dict(
                type='GAELLELoss',
                feat_dim=D,
                local_feat_dim=D,
                num_prototypes=K,
                num_local_prototypes=12,
                num_crops=(2, 2),
                crops_for_assign=(0, 1),
                with_local=with_local,
            ),
        ),
    )


def _loader_cfg(size: int, drop_last: bool = True) -> dict:
    return dict(
        dataset=Views(size),
        sampler=dict(type='DefaultSampler', shuffle=False),
        batch_size=B,
        num_workers=0,
        drop_last=drop_last,
        collate_fn=dict(type='default_collate'),
    )


def make_runner(
    work_dir, hook: dict, max_epochs: int, *, size: int = 8, extra=(), **kw
) -> Runner:
    return Runner(
        model=model_cfg(),
        work_dir=str(work_dir),
        experiment_name=f'gaelle_hook_{next(_names)}',
        train_dataloader=_loader_cfg(size),
        train_cfg=dict(by_epoch=True, max_epochs=max_epochs),
        optim_wrapper=dict(
            optimizer=dict(type='SGD', lr=0.1, momentum=0.9, weight_decay=1e-4)
        ),
        custom_hooks=[dict(type='GAELLEHook', **hook), *extra],
        default_hooks=dict(
            logger=dict(type='LoggerHook', interval=100),
            checkpoint=dict(type='CheckpointHook', interval=1),
        ),
        default_scope='mmpretrain',
        randomness=dict(seed=0),
        **kw,
    )


def _clone(t):
    return None if t is None else t.detach().clone()


class Recorder(Hook):
    """Records the loss's queue state after every other hook has acted."""

    priority = 'LOWEST'

    def __init__(self) -> None:
        self.epoch_start: dict[int, dict] = {}
        self.iters: list[dict] = []

    def before_train_epoch(self, runner) -> None:
        loss = runner.model.head.loss_module
        self.epoch_start[runner.epoch] = dict(
            queue=_clone(loss.queue),
            local_queue=_clone(loss.local_queue),
            use_queue=loss.use_queue,
            use_local_queue=loss.use_local_queue,
        )

    def after_train_iter(
        self, runner, batch_idx, data_batch=None, outputs=None
    ) -> None:
        loss = runner.model.head.loss_module
        self.iters.append(
            dict(
                epoch=runner.epoch,
                q_used=float(outputs['q_used']),
                use_queue=loss.use_queue,
                use_local_queue=loss.use_local_queue,
            )
        )


def minimal_runner(tmp_path, *, model=None, drop_last=True, **kw):
    """The attributes of a Runner the hook reads, around a real model."""
    loader = DataLoader(
        Views(4), batch_size=B, drop_last=drop_last, collate_fn=default_collate
    )
    return SimpleNamespace(
        model=model if model is not None else MODELS.build(model_cfg()),
        train_dataloader=loader,
        optim_wrapper=kw.pop('optim_wrapper', None),
        work_dir=str(tmp_path),
        epoch=kw.pop('epoch', 0),
        iter=kw.pop('iter', 0),
        **kw,
    )


def test_registered_and_priority():
    assert HOOKS.get('GAELLEHook') is GAELLEHook
    assert GAELLEHook.priority == 'VERY_HIGH'


# -- rounding ----------------------------------------------------------------
@pytest.mark.parametrize(
    'length, batch, world, expected',
    [
        (3840, 64, 2, 3840),  # the recipe: 30 batches of 128
        (3841, 64, 2, 3840),
        (1000, 64, 2, 896),
        (300, 32, 4, 256),
        (7, 2, 1, 6),
        (0, 64, 2, 0),  # no queue
    ],
)
def test_rounding_rule(length, batch, world, expected):
    assert round_queue_length(length, batch * world) == expected


def test_rounding_to_zero_raises():
    with pytest.raises(ValueError, match='queue_length=100 rounds down to 0'):
        round_queue_length(100, 64 * 2)


def test_before_run_rounds_with_world_size(tmp_path, monkeypatch):
    # W is read from mmengine.dist; W = 2 without spawning a process group.
    monkeypatch.setattr(hook_module, 'get_world_size', lambda: 2)
    runner = minimal_runner(tmp_path)
    hook = GAELLEHook(
        queue_length=11, local_queue_length=21, epoch_queue_starts=0
    )
    hook.before_run(runner)
    assert hook.batch_size == B and hook.world_size == 2
    assert hook.queue_length == 8  # multiple of B·W = 4
    assert hook.local_queue_length == 16  # multiple of M·B·W = 8
    hook.before_train_epoch(runner)
    loss = runner.model.head.loss_module
    assert loss.queue.shape == (A, 8 // 2, D)
    assert loss.local_queue.shape == (A, 16 // 2, D)
    with pytest.raises(ValueError, match='local_queue_length=7 rounds'):
        GAELLEHook(local_queue_length=7).before_run(minimal_runner(tmp_path))
    with pytest.raises(ValueError, match='queue_length=3 rounds'):
        GAELLEHook(queue_length=3).before_run(minimal_runner(tmp_path))


def test_queues_follow_the_prototypes_not_the_default_device(tmp_path):
    # mmpretrain's SwAVHook allocates on the process's default device; the
    # queues must land where the prototypes are (CPU here) regardless.
    runner = minimal_runner(tmp_path)
    hook = GAELLEHook(
        epoch_queue_starts=0, queue_length=4, local_queue_length=8
    )
    hook.before_run(runner)
    with torch.device('meta'):
        hook.before_train_epoch(runner)
    loss = runner.model.head.loss_module
    assert loss.queue.device == loss.prototypes.weight.device
    assert loss.local_queue.device == loss.prototypes.weight.device


# -- before_run checks --------------------------------------------------------
@pytest.mark.parametrize(
    'kwargs, message',
    [
        (dict(batch_size=4), r'batch_size=4 disagrees with the run \(2'),
        (dict(feat_dim=16), r'feat_dim=16 disagrees with the run \(8'),
        (dict(crops_for_assign=[0]), r'crops_for_assign=\[0\] disagrees'),
        (dict(frozen_layers_cfg=dict(prototype_s=5)), r"\['prototype_s'\]"),
    ],
)
def test_before_run_rejects_disagreements(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        GAELLEHook(**kwargs).before_run(minimal_runner(tmp_path))


def test_before_run_accepts_matching_arguments(tmp_path):
    hook = GAELLEHook(batch_size=B, crops_for_assign=(0, 1), feat_dim=D)
    hook.before_run(minimal_runner(tmp_path))
    assert hook.crops_for_assign == [0, 1]


def test_before_run_requires_drop_last(tmp_path):
    with pytest.raises(ValueError, match='drop_last=True'):
        GAELLEHook().before_run(minimal_runner(tmp_path, drop_last=False))


def test_local_queue_needs_local_branch(tmp_path):
    model = MODELS.build(model_cfg(with_local=False))
    runner = minimal_runner(tmp_path, model=model)
    GAELLEHook(queue_length=4).before_run(runner)  # global queue alone: fine
    with pytest.raises(ValueError, match='with_local=False'):
        GAELLEHook(local_queue_length=8).before_run(runner)


def test_gradient_accumulation_warns(tmp_path):
    model = MODELS.build(model_cfg())
    wrapper = OptimWrapper(
        torch.optim.SGD(model.parameters(), lr=0.1), accumulative_counts=2
    )
    runner = minimal_runner(tmp_path, model=model, optim_wrapper=wrapper)
    with pytest.warns(UserWarning, match='per micro-batch'):
        GAELLEHook().before_run(runner)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def test_ddp_without_find_unused_parameters_raises(tmp_path):
    dist.init_process_group(
        'gloo',
        init_method=f'tcp://127.0.0.1:{_free_port()}',
        rank=0,
        world_size=1,
    )
    try:
        strict = MMDistributedDataParallel(MODELS.build(model_cfg()))
        with pytest.raises(RuntimeError, match='find_unused_parameters=True'):
            GAELLEHook().before_run(minimal_runner(tmp_path, model=strict))
        # Nothing frozen: DDP's default is fine.
        no_freeze = GAELLEHook(frozen_layers_cfg=dict(prototypes=0))
        no_freeze.before_run(minimal_runner(tmp_path, model=strict))
        lenient = MMDistributedDataParallel(
            MODELS.build(model_cfg()), find_unused_parameters=True
        )
        GAELLEHook().before_run(minimal_runner(tmp_path, model=lenient))
    finally:
        dist.destroy_process_group()


# -- queue lifetime in a real runner ------------------------------------------
def test_queue_creation_first_use_and_flag_reset(tmp_path):
    # 3 iterations per epoch. L = 5 → 4 (B·W = 2): 2 fills before the last
    # row is non-zero, so the queue is first used at iteration 4/2 = 2 of
    # the creation epoch. Local: 9 → 8 (M·B·W = 4), also 2 fills.
    rec = Recorder()
    hook = dict(epoch_queue_starts=1, queue_length=5, local_queue_length=9)
    runner = make_runner(tmp_path, hook, 3, size=6, extra=[rec])
    runner.train()
    assert rec.epoch_start[0]['queue'] is None
    assert rec.epoch_start[0]['local_queue'] is None
    start = rec.epoch_start[1]
    assert start['queue'].shape == (A, 4, D)
    assert start['local_queue'].shape == (A, 8, D)
    device = runner.model.head.loss_module.prototypes.weight.device
    for q in (start['queue'], start['local_queue']):
        assert q.dtype == torch.float32 and q.device == device
        assert not q.any()
    by_epoch = [[it for it in rec.iters if it['epoch'] == e] for e in range(3)]
    assert [it['q_used'] for it in by_epoch[0]] == [0.0] * 3
    assert [it['q_used'] for it in by_epoch[1]] == [0.0, 0.0, 1.0]
    assert [it['q_used'] for it in by_epoch[2]] == [1.0] * 3
    local = [it['use_local_queue'] for it in by_epoch[1]]
    assert local == [False, False, True]
    # The flags are True at the end of epoch 1 and reset at every start.
    assert by_epoch[1][-1]['use_queue'] and by_epoch[1][-1]['use_local_queue']
    for e in range(3):
        assert rec.epoch_start[e]['use_queue'] is False
        assert rec.epoch_start[e]['use_local_queue'] is False


def test_save_load_round_trip_is_bit_exact(tmp_path):
    hook = dict(epoch_queue_starts=0, queue_length=4, local_queue_length=8)
    first = make_runner(tmp_path, hook, 2, size=4)
    first.train()
    loss = first.model.head.loss_module
    files = sorted(os.listdir(tmp_path))
    assert 'queue0.pth' in files and not any('.tmp' in f for f in files)
    saved = safe_load(tmp_path / 'queue0.pth')
    assert set(saved) == {
        'queue',
        'local_queue',
        'epoch',
        'world_size',
        'batch_size',
        'feat_dim',
    }
    assert (saved['epoch'], saved['world_size']) == (2, 1)
    assert (saved['batch_size'], saved['feat_dim']) == (B, D)
    assert torch.equal(saved['queue'], loss.queue) and loss.queue.any()
    assert torch.equal(saved['local_queue'], loss.local_queue)

    rec = Recorder()
    second = make_runner(tmp_path, hook, 3, size=4, extra=[rec], resume=True)
    second.train()
    assert sorted(rec.epoch_start) == [2]  # resumed at the saved epoch
    start = rec.epoch_start[2]
    assert torch.equal(start['queue'], saved['queue'])
    assert torch.equal(start['local_queue'], saved['local_queue'])
    assert start['use_queue'] is False
    assert safe_load(tmp_path / 'queue0.pth')['epoch'] == 3


def test_save_interval(tmp_path):
    runner = minimal_runner(tmp_path)
    hook = GAELLEHook(epoch_queue_starts=0, queue_length=4, interval=2)
    hook.before_run(runner)
    hook.before_train_epoch(runner)
    hook.after_train_epoch(runner)  # epoch 0 done: 1 % 2 ≠ 0
    assert not (tmp_path / 'queue0.pth').exists()
    runner.epoch = 1
    hook.after_train_epoch(runner)
    assert safe_load(tmp_path / 'queue0.pth')['epoch'] == 2


def _queue_file(path, **entries) -> None:
    state = dict(
        queue=F.normalize(torch.randn(A, 4, D), dim=-1),
        local_queue=None,
        epoch=0,
        world_size=1,
        batch_size=B,
        feat_dim=D,
    )
    state.update(entries)
    save_state_dict(state, str(path))


def test_stale_queue_file_is_ignored_with_warning(tmp_path):
    # A file for epoch 5 in a fresh run (epoch 0 about to start).
    _queue_file(tmp_path / 'queue0.pth', epoch=5)
    rec = Recorder()
    runner = make_runner(
        tmp_path,
        dict(epoch_queue_starts=1, queue_length=4),
        1,
        size=4,
        extra=[rec],
    )
    with pytest.warns(UserWarning, match='ignoring .*epoch 5.*epoch 0'):
        runner.train()
    assert rec.epoch_start[0]['queue'] is None


def test_world_size_mismatch_raises(tmp_path):
    _queue_file(
        tmp_path / 'queue0.pth', world_size=2, queue=torch.ones(A, 2, D)
    )
    runner = make_runner(tmp_path, dict(queue_length=4), 1, size=4)
    with pytest.raises(
        ValueError, match=r'world_size=2.*\(2, 2, 8\).*\(2, 4, 8\)'
    ):
        runner.train()


def test_shape_mismatch_raises_showing_both(tmp_path):
    _queue_file(tmp_path / 'queue0.pth', queue=torch.ones(A, 6, D))
    runner = make_runner(tmp_path, dict(queue_length=4), 1, size=4)
    with pytest.raises(ValueError, match=r'\(2, 6, 8\).*expects \(2, 4, 8\)'):
        runner.train()


def test_original_format_is_accepted_with_warning(tmp_path):
    queue = F.normalize(torch.randn(A, 4, D), dim=-1)
    local_queue = F.normalize(torch.randn(A, 8, D), dim=-1)
    torch.save({'queue': queue}, tmp_path / 'queue0.pth')
    torch.save({'local_queue': local_queue}, tmp_path / 'local_queue0.pth')
    rec = Recorder()
    hook = dict(epoch_queue_starts=5, queue_length=4, local_queue_length=8)
    runner = make_runner(tmp_path, hook, 1, size=4, extra=[rec])
    with pytest.warns(UserWarning, match='original GAELLE/SwAV format'):
        runner.train()
    # Loaded before the start epoch: used as is, not replaced by zeros.
    assert torch.equal(rec.epoch_start[0]['queue'], queue)
    assert torch.equal(rec.epoch_start[0]['local_queue'], local_queue)


# -- freezing ----------------------------------------------------------------
class ParamRecorder(Hook):
    """Snapshots of banks, one other parameter and the optimiser state."""

    priority = 'LOWEST'

    def __init__(self) -> None:
        self.before: list[dict] = []
        self.after: list[dict] = []

    @staticmethod
    def _snap(runner) -> dict:
        model = runner.model
        loss = model.head.loss_module
        state = runner.optim_wrapper.optimizer.state
        snap = dict(other=model.neck.global_proj[3].weight.detach().clone())
        for name in BANKS:
            weight = getattr(loss, name).weight
            snap[name] = weight.detach().clone()
            snap[name + '.grad'] = weight.requires_grad
            snap[name + '.state'] = len(state.get(weight, {})) > 0
        return snap

    def before_train_iter(self, runner, batch_idx, data_batch=None) -> None:
        self.before.append(self._snap(runner))

    def after_train_iter(
        self, runner, batch_idx, data_batch=None, outputs=None
    ) -> None:
        self.after.append(self._snap(runner))


def test_freezing_per_key(tmp_path):
    # 'prototypes' matches all three banks for 3 iterations; the l2g bank
    # has its own, longer freeze of 5 (mmpretrain's SwAVHook shares one
    # flag and would release it at 3).
    freeze = dict(prototypes=3, l2g_prototypes=5)
    rec = ParamRecorder()
    runner = make_runner(
        tmp_path, dict(frozen_layers_cfg=freeze), 2, extra=[rec]
    )
    runner.train()
    assert len(rec.after) == 8
    ends = dict(prototypes=3, local_prototypes=3, l2g_prototypes=5)
    for i, (pre, post) in enumerate(zip(rec.before, rec.after)):
        assert not torch.equal(post['other'], pre['other'])  # trains
        for name, end in ends.items():
            normalised = F.normalize(pre[name], dim=1)
            if i < end:
                assert not pre[name + '.grad'] and not post[name + '.state']
                # Only the idempotent normalisation touches the bank.
                torch.testing.assert_close(
                    post[name], normalised, rtol=0, atol=1e-6
                )
            else:
                assert pre[name + '.grad'] and post[name + '.state']
                assert (post[name] - normalised).abs().max() > 1e-4
    loss = runner.model.head.loss_module
    assert all(getattr(loss, n).weight.requires_grad for n in BANKS)


def test_freeze_restores_previous_flags(tmp_path):
    runner = minimal_runner(tmp_path)
    loss = runner.model.head.loss_module
    loss.l2g_prototypes.weight.requires_grad_(False)  # frozen by the user
    hook = GAELLEHook(frozen_layers_cfg=dict(prototypes=2))
    hook.before_run(runner)
    hook.before_train_iter(runner, 0)
    assert not any(getattr(loss, n).weight.requires_grad for n in BANKS)
    runner.iter = 2
    hook.before_train_iter(runner, 2)
    assert loss.prototypes.weight.requires_grad
    assert loss.local_prototypes.weight.requires_grad
    assert not loss.l2g_prototypes.weight.requires_grad


def test_freeze_typo_key_raises_in_runner(tmp_path):
    runner = make_runner(
        tmp_path, dict(frozen_layers_cfg=dict(protoypes=3)), 1, size=4
    )
    with pytest.raises(ValueError, match=r"keys \['protoypes'\] match no"):
        runner.train()


# -- collapse warning (§8) ----------------------------------------------------
def _collapse_warnings(record) -> list[str]:
    return [str(w.message) for w in record if 'collapsed' in str(w.message)]


def test_collapse_warning_after_queue_creation(tmp_path):
    runner = minimal_runner(tmp_path)
    hook = GAELLEHook(
        epoch_queue_starts=1, queue_length=4, collapse_patience=3
    )
    hook.before_run(runner)
    ln_k = math.log(K)

    def step(glb: float) -> None:
        hook.after_train_iter(
            runner,
            0,
            outputs=dict(loss=torch.tensor(1.0), glb=torch.tensor(glb)),
        )
        runner.iter += 1

    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter('always')
        hook.before_train_epoch(runner)  # epoch 0: no queue, no watch
        for _ in range(5):
            step(ln_k)
        assert not _collapse_warnings(record)
        runner.epoch = 1
        hook.before_train_epoch(runner)  # the queue is created
        step(ln_k + 5e-4)
        step(ln_k - 5e-4)
        step(ln_k + 0.1)  # leaves the plateau: the count restarts
        step(ln_k)
        step(ln_k)
        assert not _collapse_warnings(record)
        step(ln_k + 1e-4)
        (message,) = _collapse_warnings(record)
        for _ in range(4):
            step(ln_k)
        assert len(_collapse_warnings(record)) == 1  # once per plateau
    for remedy in ('queue', '0.03', 'freeze', 'learning rate'):
        assert remedy in message
    assert f'ln K = {ln_k:.4f}' in message


def test_argument_errors():
    with pytest.raises(ValueError, match='queue_length'):
        GAELLEHook(queue_length=-1)
    with pytest.raises(ValueError, match='interval'):
        GAELLEHook(interval=0)
    with pytest.raises(ValueError, match='frozen_layers_cfg'):
        GAELLEHook(frozen_layers_cfg=dict(prototypes=-1))
    with pytest.raises(ValueError, match='collapse_tol'):
        GAELLEHook(collapse_tol=0.0)


def test_missing_loss_module_raises(tmp_path):
    runner = minimal_runner(tmp_path, model=torch.nn.Linear(2, 2))
    with pytest.raises(AttributeError, match='head.loss_module'):
        GAELLEHook().before_run(runner)
