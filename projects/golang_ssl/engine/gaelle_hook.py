"""Queues, prototype freezing and the collapse warning of GAELLE
(``golang_ssl.md`` §4.5 and §8).

mmpretrain's ``SwAVHook`` deviates from the original in four ways
(§2 item 5): it allocates the queue on the process's default device, has a
single queue, loads a queue file in ``before_run`` whenever it exists (even
in a fresh run, and before ``resume`` has set the epoch), and shares one
freeze flag across all ``frozen_layers_cfg`` keys. :class:`GAELLEHook`
fixes all four. The per-iteration queue arithmetic (check the flag or the
last row, prepend ``queue @ Cᵀ``, FIFO shift-in, keep the last rows of the
Sinkhorn output) lives in :class:`GAELLELoss`; this hook owns the queues'
lifetime: size, creation, the per-epoch flag reset and persistence.
"""

from __future__ import annotations

import logging
import math
import os.path as osp
import warnings
from collections.abc import Mapping, Sequence

import torch
from mmengine.dist import get_rank, get_world_size
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from shared.registry import HOOKS
from shared.utils.checkpoint import safe_load, save_state_dict

__all__ = ['GAELLEHook', 'round_queue_length']

#: Remedies listed by the collapse warning (SwAV "Common issues", swav#37,
#: swav#56, swav#69).
COLLAPSE_REMEDIES = (
    'a shorter queue (queue_length) or a later start (epoch_queue_starts)',
    'a smaller Sinkhorn epsilon (0.03 instead of 0.05)',
    'a longer prototype freeze (frozen_layers_cfg)',
    'a learning rate scaled to the total batch size',
)


def round_queue_length(
    length: int, unit: int, what: str = 'queue_length'
) -> int:
    """Round a queue length down to a multiple of ``unit``.

    Args:
        length (int): Requested total queue length over all ranks (rows).
        unit (int): Rows written per iteration over all ranks: ``B·W`` for
            the global queue, ``M·B·W`` for the local queue.
        what (str): Argument name used in the error message.

    Returns:
        int: ``length - length % unit``.

    Raises:
        ValueError: ``length`` is positive but smaller than ``unit`` (the
            original silently disabled the queue then).
    """
    rounded = length - length % unit
    if length > 0 and rounded == 0:
        raise ValueError(
            f'GAELLEHook: {what}={length} rounds down to 0 rows; it must be '
            f'at least one multiple of {unit} (rows written per iteration '
            'over all ranks): raise it, or set it to 0 to disable the queue'
        )
    return rounded


def _unwrap(model: nn.Module) -> nn.Module:
    return model.module if is_model_wrapper(model) else model


def _warn(message: str) -> None:
    """Warn through Python warnings (testable) and the MMEngine log."""
    warnings.warn(message, UserWarning, stacklevel=3)
    print_log(message, logger='current', level=logging.WARNING)


def _shape(t: torch.Tensor | None) -> tuple[int, ...] | None:
    return None if t is None else tuple(t.shape)


@HOOKS.register_module()
class GAELLEHook(Hook):
    """Queues, prototype freezing and collapse watch for :class:`GAELLE`.

    The loss is found as ``unwrapped_model.head.loss_module``
    (:class:`GAELLELoss`). The per-GPU batch B comes from the train
    dataloader, W from :func:`mmengine.dist.get_world_size`, A, d, d_l and
    K from the loss, and G (hence ``M = d // G`` tokens per view) from
    ``unwrapped_model.neck.num_groups``.

    **Queues.** In ``before_run`` the global length L is rounded down to a
    multiple of B·W and the local length to a multiple of M·B·W (the change
    is logged). At the start of every epoch ``>= epoch_queue_starts``
    (0-based) a missing queue is created: ``|A| × L/W × d`` (local:
    ``|A| × L_l/W × d_l``) fp32 zeros on the device of
    ``loss.prototypes``. Every epoch start hands the queues to the loss and
    resets ``loss.use_queue`` and ``loss.use_local_queue`` to False; the
    loss switches a flag on once the last queue row is non-zero, so the
    queue is first used (L/W)/B iterations after its creation.

    **Persistence.** Every ``interval`` epochs each rank writes
    ``work_dir/queue{rank}.pth`` atomically with ``queue``,
    ``local_queue``, ``epoch`` (= ``runner.epoch + 1``, the epoch the
    queue is valid for), ``world_size``, ``batch_size`` and ``feat_dim``.
    ``before_train`` (after a resume has set ``runner.epoch``) loads it
    with :func:`~shared.utils.checkpoint.safe_load` onto the prototypes'
    device if its epoch equals the epoch about to start; a stale file is
    ignored with a warning. The original format (``{'queue': …}`` in
    ``queue{rank}.pth`` and ``{'local_queue': …}`` in
    ``local_queue{rank}.pth``) is accepted with a warning, since its epoch
    cannot be checked.

    **Freezing.** While ``runner.iter < N`` (0-based), every parameter
    whose name contains a key of ``frozen_layers_cfg`` has
    ``requires_grad=False`` (it gets no gradient, hence no momentum, no
    weight decay and no optimiser state); each key keeps its own N, and
    the flags are restored at N. Under DDP this needs
    ``find_unused_parameters=True``.

    **Collapse watch** (§8). Once a queue exists, ``glb`` from the train
    step's outputs is compared with ln K; if it stays within
    ``collapse_tol`` of ln K for ``collapse_patience`` consecutive
    iterations, a warning lists the usual remedies.

    Args:
        epoch_queue_starts (int): 0-based epoch at which the queues are
            created. Defaults to 15 (recipe: 7).
        queue_length (int): Global queue length L over all ranks, 0 for no
            queue. Defaults to 0 (recipe: 3840).
        local_queue_length (int): Local queue length over all ranks, in
            token rows; 0 for no local queue. Defaults to 0.
        frozen_layers_cfg (Mapping[str, int]): Parameter-name substring →
            number of iterations N during which matching parameters are
            frozen. Defaults to ``dict(prototypes=313)`` (recipe: 5005).
        interval (int): Save the queues every ``interval`` epochs.
            Defaults to 1.
        batch_size (int, optional): Per-GPU batch; must equal the train
            dataloader's if given. Defaults to None.
        crops_for_assign (Sequence[int], optional): Must equal the loss's
            if given. Defaults to None.
        feat_dim (int, optional): Must equal the loss's if given. Defaults
            to None.
        collapse_patience (int): Consecutive iterations near ln K before
            the collapse warning. Defaults to 500.
        collapse_tol (float): Distance to ln K counted as "at the plateau".
            Defaults to 1e-3.

    Raises:
        ValueError: A bad argument; in ``before_run``: a disagreement with
            the runner or the loss, a queue rounding to 0, a local queue
            without the local branch, ``drop_last=False``, a freeze key
            matching no parameter; in ``before_train``: a queue file whose
            world size or shapes differ from this run.
        RuntimeError: In ``before_run``, freezing under DDP without
            ``find_unused_parameters=True``.
        AttributeError: The model has no ``head.loss_module``, or a local
            queue is asked for and the neck has no ``num_groups``.
    """

    priority = 'VERY_HIGH'

    def __init__(
        self,
        epoch_queue_starts: int = 15,
        queue_length: int = 0,
        local_queue_length: int = 0,
        frozen_layers_cfg: Mapping[str, int] | None = None,
        interval: int = 1,
        batch_size: int | None = None,
        crops_for_assign: Sequence[int] | None = None,
        feat_dim: int | None = None,
        collapse_patience: int = 500,
        collapse_tol: float = 1e-3,
    ) -> None:
        if frozen_layers_cfg is None:
            frozen_layers_cfg = dict(prototypes=313)
        for name, value, low in (
            ('epoch_queue_starts', epoch_queue_starts, 0),
            ('queue_length', queue_length, 0),
            ('local_queue_length', local_queue_length, 0),
            ('interval', interval, 1),
            ('collapse_patience', collapse_patience, 1),
        ):
            if (
                isinstance(value, bool)
                or not isinstance(value, int)
                or value < low
            ):
                raise ValueError(
                    f'GAELLEHook: {name} must be an int >= {low}, got '
                    f'{value!r}'
                )
        if not isinstance(frozen_layers_cfg, Mapping) or not all(
            isinstance(k, str)
            and k
            and isinstance(v, int)
            and not isinstance(v, bool)
            and v >= 0
            for k, v in frozen_layers_cfg.items()
        ):
            raise ValueError(
                'GAELLEHook: frozen_layers_cfg must map non-empty parameter-'
                f'name substrings to iteration counts >= 0, got '
                f'{frozen_layers_cfg!r}'
            )
        if not collapse_tol > 0:
            raise ValueError(
                f'GAELLEHook: collapse_tol must be > 0, got {collapse_tol!r}'
            )
        self.epoch_queue_starts = epoch_queue_starts
        self.queue_length = queue_length
        self.local_queue_length = local_queue_length
        self.frozen_layers_cfg = dict(frozen_layers_cfg)
        self.interval = interval
        self.batch_size = batch_size
        self.crops_for_assign = (
            None if crops_for_assign is None else list(crops_for_assign)
        )
        self.feat_dim = feat_dim
        self.collapse_patience = collapse_patience
        self.collapse_tol = float(collapse_tol)

        self.world_size = 1
        self.queue: torch.Tensor | None = None
        self.local_queue: torch.Tensor | None = None
        #: name -> requires_grad before this hook froze the parameter.
        self._frozen: dict[str, bool] = {}
        self._near_ln_k = 0
        self._collapse_warned = False

    # -- helpers -------------------------------------------------------------
    @staticmethod
    def _loss(runner) -> nn.Module:
        model = _unwrap(runner.model)
        head = getattr(model, 'head', None)
        loss = getattr(head, 'loss_module', None)
        if loss is None:
            raise AttributeError(
                f'GAELLEHook: the model {type(model).__name__} has no '
                '`head.loss_module` (the GAELLELoss holding the queues)'
            )
        return loss

    @staticmethod
    def _device(loss: nn.Module) -> torch.device:
        return loss.prototypes.weight.device

    def _queue_path(self, prefix: str, runner) -> str:
        return osp.join(runner.work_dir, f'{prefix}{get_rank()}.pth')

    def _expected_shapes(self, loss) -> tuple[tuple | None, tuple | None]:
        a = len(loss.crops_for_assign)
        glob = (
            (a, self.queue_length // self.world_size, loss.feat_dim)
            if self.queue_length > 0
            else None
        )
        local = (
            (
                a,
                self.local_queue_length // self.world_size,
                loss.local_feat_dim,
            )
            if self.local_queue_length > 0
            else None
        )
        return glob, local

    @staticmethod
    def _loader_batch(loader) -> tuple[int, bool]:
        batch = getattr(loader, 'batch_size', None)
        drop_last = getattr(loader, 'drop_last', None)
        if batch is None:  # a custom batch sampler
            sampler = getattr(loader, 'batch_sampler', None)
            batch = getattr(sampler, 'batch_size', None)
            drop_last = getattr(sampler, 'drop_last', drop_last)
        if not isinstance(batch, int) or batch < 1:
            raise ValueError(
                'GAELLEHook: cannot read the per-GPU batch size from the '
                f'train dataloader (got {batch!r})'
            )
        return batch, bool(drop_last)

    # -- run-level checks ----------------------------------------------------
    def before_run(self, runner) -> None:
        """Check the setup against the runner and the loss; round L."""
        loss = self._loss(runner)
        model = _unwrap(runner.model)
        batch, drop_last = self._loader_batch(runner.train_dataloader)
        self.world_size = get_world_size()
        if not drop_last:
            raise ValueError(
                'GAELLEHook: the train dataloader must use drop_last=True '
                '(the queue shifts in exactly B rows per iteration and '
                'Sinkhorn needs equal rows on every rank); set '
                'train_dataloader.drop_last=True'
            )
        given = dict(
            batch_size=(self.batch_size, batch),
            crops_for_assign=(
                self.crops_for_assign,
                list(loss.crops_for_assign),
            ),
            feat_dim=(self.feat_dim, loss.feat_dim),
        )
        for name, (mine, actual) in given.items():
            source = 'train dataloader' if name == 'batch_size' else 'loss'
            if mine is not None and mine != actual:
                raise ValueError(
                    f'GAELLEHook: {name}={mine!r} disagrees with the run '
                    f'({actual!r}, from the {source})'
                )
        self.batch_size = batch
        self.crops_for_assign = list(loss.crops_for_assign)
        self.feat_dim = loss.feat_dim

        unit = batch * self.world_size
        length = round_queue_length(self.queue_length, unit)
        if length != self.queue_length:
            print_log(
                f'GAELLEHook: queue_length {self.queue_length} rounded down '
                f'to {length} (a multiple of B·W = {batch}·'
                f'{self.world_size})',
                logger='current',
            )
        self.queue_length = length

        if self.local_queue_length > 0:
            if not loss.with_local:
                raise ValueError(
                    'GAELLEHook: local_queue_length='
                    f'{self.local_queue_length} but the loss has '
                    'with_local=False; set local_queue_length=0'
                )
            groups = getattr(getattr(model, 'neck', None), 'num_groups', None)
            if not isinstance(groups, int) or groups < 1:
                raise AttributeError(
                    'GAELLEHook: a local queue needs the number of tokens '
                    'per view M = feat_dim // neck.num_groups, but the '
                    f'model has no int `neck.num_groups` (got {groups!r})'
                )
            tokens = loss.feat_dim // groups
            unit = tokens * batch * self.world_size
            length = round_queue_length(
                self.local_queue_length, unit, 'local_queue_length'
            )
            if length != self.local_queue_length:
                print_log(
                    'GAELLEHook: local_queue_length '
                    f'{self.local_queue_length} rounded down to {length} (a '
                    f'multiple of M·B·W = {tokens}·{batch}·{self.world_size})',
                    logger='current',
                )
            self.local_queue_length = length

        names = [n for n, _ in model.named_parameters()]
        unmatched = [
            k for k in self.frozen_layers_cfg if not any(k in n for n in names)
        ]
        if unmatched:
            raise ValueError(
                f'GAELLEHook: frozen_layers_cfg keys {unmatched} match no '
                f'parameter name; names containing "prototypes": '
                f'{[n for n in names if "prototypes" in n]}'
            )
        freezes = any(n > 0 for n in self.frozen_layers_cfg.values())
        if (
            freezes
            and isinstance(runner.model, DistributedDataParallel)
            and not runner.model.find_unused_parameters
        ):
            raise RuntimeError(
                'GAELLEHook: freezing parameters under DDP leaves them '
                'without gradients, which DDP only accepts with '
                'find_unused_parameters=True; set find_unused_parameters=True '
                'at the top level of the config (or model_wrapper_cfg=dict('
                "type='MMDistributedDataParallel', "
                'find_unused_parameters=True))'
            )
        optim_wrapper = getattr(runner, 'optim_wrapper', None)
        if getattr(optim_wrapper, '_accumulative_counts', 1) > 1:
            _warn(
                'GAELLEHook: gradient accumulation is on '
                f'(accumulative_counts={optim_wrapper._accumulative_counts}); '
                'Sinkhorn and the queue still act per micro-batch of '
                f'{batch} per GPU, not on the accumulated batch'
            )

    # -- queue persistence ---------------------------------------------------
    def _load_queue_file(self, runner, loss) -> None:
        device = self._device(loss)
        path = self._queue_path('queue', runner)
        local_path = self._queue_path('local_queue', runner)
        state = (
            safe_load(path, map_location=device) if osp.isfile(path) else None
        )
        if state is not None and 'epoch' in state:
            if state['epoch'] != runner.epoch:
                _warn(
                    f'GAELLEHook: ignoring {path}: it holds the queues for '
                    f'epoch {state["epoch"]}, but epoch {runner.epoch} is '
                    'about to start (stale file from another run or '
                    'checkpoint); the queues start empty'
                )
                return
            if state.get('world_size') != self.world_size:
                raise ValueError(
                    f'GAELLEHook: {path} was written with world_size='
                    f'{state.get("world_size")}, this run has '
                    f'{self.world_size}; queue shapes '
                    f'{_shape(state.get("queue"))} (file) vs '
                    f'{self._expected_shapes(loss)[0]} (run). Delete the '
                    'queue files to restart the queues empty'
                )
            if state.get('batch_size') != self.batch_size:
                _warn(
                    f'GAELLEHook: {path} was written with batch_size='
                    f'{state.get("batch_size")}, this run uses '
                    f'{self.batch_size} per GPU'
                )
            queue, local_queue = state.get('queue'), state.get('local_queue')
        else:
            local = (
                safe_load(local_path, map_location=device)
                if osp.isfile(local_path)
                else None
            )
            if state is None and local is None:
                return
            _warn(
                'GAELLEHook: loading queue files in the original GAELLE/SwAV '
                f'format ({path}, {local_path}); they carry no epoch, so '
                'whether they belong to this run cannot be checked'
            )
            queue = None if state is None else state['queue']
            local_queue = None if local is None else local['local_queue']

        exp_q, exp_l = self._expected_shapes(loss)
        for name, tensor, expected in (
            ('queue', queue, exp_q),
            ('local_queue', local_queue, exp_l),
        ):
            if tensor is not None and _shape(tensor) != expected:
                raise ValueError(
                    f'GAELLEHook: the saved {name} has shape '
                    f'{_shape(tensor)}, this run expects {expected} '
                    '(|A|, length / W, dim with '
                    f'W={self.world_size}); delete the queue files in '
                    f'{runner.work_dir} to restart the queues empty'
                )
        self.queue = None if queue is None else queue.float()
        self.local_queue = None if local_queue is None else local_queue.float()
        print_log(
            f'GAELLEHook: loaded queues {_shape(self.queue)} and '
            f'{_shape(self.local_queue)} for epoch {runner.epoch}',
            logger='current',
        )

    def before_train(self, runner) -> None:
        """Load this rank's queue file if it belongs to the coming epoch."""
        self._load_queue_file(runner, self._loss(runner))

    def after_train_epoch(self, runner) -> None:
        """Save this rank's queues every ``interval`` epochs (atomically)."""
        loss = self._loss(runner)
        # The loss may have replaced the tensors; it holds the current ones.
        self.queue = loss.queue
        self.local_queue = loss.local_queue
        if (self.queue is None and self.local_queue is None) or not (
            self.every_n_epochs(runner, self.interval)
        ):
            return
        save_state_dict(
            dict(
                queue=self.queue,
                local_queue=self.local_queue,
                epoch=runner.epoch + 1,
                world_size=self.world_size,
                batch_size=self.batch_size,
                feat_dim=self.feat_dim,
            ),
            self._queue_path('queue', runner),
        )

    # -- per epoch -----------------------------------------------------------
    def before_train_epoch(self, runner) -> None:
        """Create missing queues from ``epoch_queue_starts``; reset flags."""
        loss = self._loss(runner)
        if runner.epoch >= self.epoch_queue_starts:
            exp_q, exp_l = self._expected_shapes(loss)
            device = self._device(loss)
            if exp_q is not None and self.queue is None:
                self.queue = torch.zeros(
                    exp_q, dtype=torch.float32, device=device
                )
            if exp_l is not None and self.local_queue is None:
                self.local_queue = torch.zeros(
                    exp_l, dtype=torch.float32, device=device
                )
        loss.queue = self.queue
        loss.use_queue = False
        loss.local_queue = self.local_queue
        loss.use_local_queue = False

    # -- per iteration -------------------------------------------------------
    def before_train_iter(
        self, runner, batch_idx: int, data_batch=None
    ) -> None:
        """Freeze the parameters of every key with ``runner.iter < N``."""
        keys = [
            k for k, n in self.frozen_layers_cfg.items() if runner.iter < n
        ]
        if not keys and not self._frozen:
            return
        model = _unwrap(runner.model)
        for name, param in model.named_parameters():
            frozen = any(k in name for k in keys)
            if frozen and name not in self._frozen:
                self._frozen[name] = param.requires_grad
                param.requires_grad_(False)
            elif not frozen and name in self._frozen:
                param.requires_grad_(self._frozen.pop(name))

    def after_train_iter(
        self, runner, batch_idx: int, data_batch=None, outputs=None
    ) -> None:
        """Watch ``glb`` for the ln K plateau once a queue exists."""
        if self.queue is None and self.local_queue is None:
            return
        if not isinstance(outputs, Mapping) or 'glb' not in outputs:
            return
        loss = self._loss(runner)
        ln_k = math.log(loss.num_prototypes)
        glb = float(outputs['glb'])
        if abs(glb - ln_k) <= self.collapse_tol:
            self._near_ln_k += 1
        else:
            self._near_ln_k = 0
            self._collapse_warned = False
        if (
            self._near_ln_k >= self.collapse_patience
            and not self._collapse_warned
        ):
            self._collapse_warned = True
            remedies = '; '.join(COLLAPSE_REMEDIES)
            _warn(
                f'GAELLEHook: the global loss glb has stayed within '
                f'{self.collapse_tol} of ln K = {ln_k:.4f} (K='
                f'{loss.num_prototypes}) for {self._near_ln_k} iterations '
                f'since the queue started (iteration {runner.iter}): the '
                'codes are uniform, the training has probably collapsed. '
                f'Remedies: {remedies}'
            )

    def after_train(self, runner) -> None:
        """Give frozen parameters their flags back if training ends early."""
        if self._frozen:
            for name, param in _unwrap(runner.model).named_parameters():
                if name in self._frozen:
                    param.requires_grad_(self._frozen.pop(name))
