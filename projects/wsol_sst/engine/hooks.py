"""WSOL-SST training hooks: epoch gates (``wsol_sst.md`` §3.6), the dynamic
lr decay and the staged warmup (§5.3)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
from mmengine.dist import all_reduce
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.runner import EpochBasedTrainLoop

from shared.registry import HOOKS

from .optim import SST_MODULES, unwrap_model

__all__ = ['SSTDynamicLrDecayHook', 'SSTEpochGateHook', 'SSTStagedWarmupHook']


def _sst_param_groups(runner, hook: str) -> list[dict]:
    """The optimizer's groups; each must carry ``group['module']``.

    ``optim_wrapper.param_groups`` is not used: with several groups,
    MMEngine appends ``base_param_settings`` (the optimizer's default lr,
    logged as ``base_lr``), which belongs to no module.
    """
    optimizer = getattr(runner.optim_wrapper, 'optimizer', None)
    groups = getattr(optimizer, 'param_groups', None)
    if not isinstance(groups, list) or any('module' not in g for g in groups):
        raise TypeError(
            f'{hook}: the optimizer groups carry no "module" entry; build '
            f"the optimizer with constructor='SSTOptimWrapperConstructor'"
        )
    return groups


def _check_by_epoch(runner, hook: str) -> None:
    loop = runner.train_loop
    if not isinstance(loop, EpochBasedTrainLoop):
        raise TypeError(
            f'{hook}: needs an epoch-based train loop (train_cfg '
            f'by_epoch=True), got {type(loop).__name__}'
        )


def _check_modules(names, hook: str, what: str) -> tuple[str, ...]:
    if isinstance(names, str):
        names = (names,)
    names = tuple(names)
    bad = [n for n in names if n not in SST_MODULES]
    if not names or bad:
        raise ValueError(
            f'{hook}: {what} must name modules of {list(SST_MODULES)}, got '
            f'{list(names)}' + (f' (unknown: {bad})' if bad else '')
        )
    return names


@HOOKS.register_module()
class SSTEpochGateHook(Hook):
    """Feed the training epoch to the model's epoch gates.

    ``SSTLocalizer`` opens each gate (SA, SOS loss, RA loss, sparse loss)
    when its float attribute ``current_epoch`` reaches the gate's start.
    Before every training epoch this hook writes ``runner.epoch``
    (0-based) into ``current_epoch`` of the unwrapped model; before a
    validation or test epoch it writes ``+inf`` (every gate open, SA
    always applied) and restores the previous value afterwards, so a
    validation run in the middle of training leaves the training gates
    as they were.

    Raises:
        AttributeError: The model has no ``current_epoch`` attribute.
    """

    priority = 'NORMAL'

    def __init__(self) -> None:
        self._saved: dict[str, float] = {}

    @staticmethod
    def _model(runner):
        model = unwrap_model(runner.model)
        if not hasattr(model, 'current_epoch'):
            raise AttributeError(
                f'SSTEpochGateHook: the model {type(model).__name__} has no '
                f'attribute "current_epoch" (the epoch gates of '
                f'SSTLocalizer)'
            )
        return model

    def before_run(self, runner) -> None:
        """Check the model has ``current_epoch``."""
        self._model(runner)

    def before_train_epoch(self, runner) -> None:
        """``current_epoch = runner.epoch``."""
        self._model(runner).current_epoch = float(runner.epoch)

    def _open(self, runner, stage: str) -> None:
        model = self._model(runner)
        self._saved[stage] = model.current_epoch
        model.current_epoch = math.inf

    def _restore(self, runner, stage: str) -> None:
        if stage in self._saved:
            self._model(runner).current_epoch = self._saved.pop(stage)

    def before_val_epoch(self, runner) -> None:
        """Open every gate for validation."""
        self._open(runner, 'val')

    def after_val_epoch(self, runner, metrics=None) -> None:
        """Give training its epoch back."""
        self._restore(runner, 'val')

    def before_test_epoch(self, runner) -> None:
        """Open every gate for testing."""
        self._open(runner, 'test')

    def after_test_epoch(self, runner, metrics=None) -> None:
        """Restore the value from before the test."""
        self._restore(runner, 'test')


@HOOKS.register_module()
class SSTDynamicLrDecayHook(Hook):
    """Upstream's one-shot lr decay driven by the RA loss (CUB recipes).

    **Tracking.** ``after_train_iter`` adds ``outputs[ra_key]``, the
    unweighted RA loss the model logs (``'raw_ra'``), and
    ``after_train_epoch`` averages it over the epoch's iterations. Under
    DDP the sum and count are all-reduced first, so every rank sees the
    same mean and takes the same decision.

    **Trigger.** With ``e`` the 0-based index of the finished epoch, the
    hook fires once, at the first ``e`` with ``mean_RA >= ra_threshold and
    e >= min_epoch``, or with ``e >= force_epoch``.

    **Action.** The ``lr`` and ``initial_lr`` of every optimizer group whose
    ``group['module']`` (set by
    :class:`~projects.wsol_sst.engine.optim.SSTOptimWrapperConstructor`)
    is in ``modules`` are multiplied by ``factor``; listed modules the
    model lacks are skipped. The loop's max epochs becomes ``e + 1 +
    extra_epochs`` (max iterations accordingly), so exactly
    ``extra_epochs`` more epochs run; this also shortens a longer
    configured schedule. Param schedulers are not touched (the CUB recipes
    use none).

    **Resume.** Whether the hook fired, the epoch and the new epoch limit
    are saved under ``checkpoint['meta']['sst_dynamic_lr_decay']``. They
    are restored in ``before_train`` when the run resumes past the firing
    epoch (the decayed lrs come back with the optimizer state); a
    checkpoint merely loaded as weights (``load_from`` without resume,
    training from epoch 0) leaves the hook fresh.

    **Model interface.** The unwrapped model must say that its RA loss is
    on, through a bool attribute ``ra_enabled`` or, failing that, a dict
    attribute ``ra_cfg`` with ``enable``. ``SSTLocalizer.train_step``'s
    log variables must contain ``ra_key`` in every iteration from
    ``min_epoch`` on (a key without ``loss`` in its name, so it is logged
    but not added to the total loss).

    Args:
        ra_threshold (float): Mean unweighted RA loss that triggers the
            decay. Defaults to 0.30.
        min_epoch (int): First epoch at which the RA test may fire.
            Defaults to 80.
        force_epoch (int): Epoch at which the decay fires regardless.
            Defaults to 99.
        factor (float): lr multiplier, in (0, 1]. Defaults to 0.1.
        extra_epochs (int): Epochs run after the firing epoch. Defaults
            to 20.
        modules (Sequence[str]): Modules whose groups decay. Defaults to
            all of :data:`~projects.wsol_sst.engine.optim.SST_MODULES`.
        ra_key (str): Key of the unweighted RA loss in the train-step
            outputs. Defaults to ``'raw_ra'``.

    Raises:
        ValueError: A bad argument; in ``before_run``, a model with the RA
            loss disabled (§11).
        AttributeError: The model exposes neither ``ra_enabled`` nor
            ``ra_cfg``.
        KeyError: At an epoch ``>= min_epoch`` no iteration logged
            ``ra_key``.
        TypeError: The train loop is not epoch-based, or the optimizer
            was not built by ``SSTOptimWrapperConstructor``.
    """

    priority = 'NORMAL'
    #: Key of the hook's state inside ``checkpoint['meta']``.
    STATE_KEY = 'sst_dynamic_lr_decay'

    def __init__(
        self,
        ra_threshold: float = 0.30,
        min_epoch: int = 80,
        force_epoch: int = 99,
        factor: float = 0.1,
        extra_epochs: int = 20,
        modules: Sequence[str] = SST_MODULES,
        ra_key: str = 'raw_ra',
    ) -> None:
        name = type(self).__name__
        for arg, value in (
            ('min_epoch', min_epoch),
            ('force_epoch', force_epoch),
            ('extra_epochs', extra_epochs),
        ):
            if int(value) != value or value < 0:
                raise ValueError(
                    f'{name}: {arg} must be an integer >= 0, got {value!r}'
                )
        if min_epoch > force_epoch:
            raise ValueError(
                f'{name}: min_epoch ({min_epoch}) must be <= force_epoch '
                f'({force_epoch})'
            )
        if not 0 < factor <= 1:
            raise ValueError(f'{name}: factor must be in (0, 1], got {factor}')
        if not math.isfinite(ra_threshold):
            raise ValueError(
                f'{name}: ra_threshold must be finite, got {ra_threshold}'
            )
        if not isinstance(ra_key, str) or not ra_key:
            raise ValueError(f'{name}: ra_key must be a non-empty string')
        self.ra_threshold = float(ra_threshold)
        self.min_epoch = int(min_epoch)
        self.force_epoch = int(force_epoch)
        self.factor = float(factor)
        self.extra_epochs = int(extra_epochs)
        self.modules = _check_modules(modules, name, 'modules')
        self.ra_key = ra_key
        self.fired = False
        self.fired_epoch: int | None = None
        self.max_epochs: int | None = None
        #: Mean RA of each finished epoch, as the hook saw it.
        self.history: dict[int, float] = {}
        self._pending: dict | None = None
        self._reset_epoch()

    def _reset_epoch(self) -> None:
        self._ra_sum = torch.zeros((), dtype=torch.float64)
        self._ra_count = 0

    def before_run(self, runner) -> None:
        """Refuse a model whose RA loss is off (§11)."""
        model = unwrap_model(runner.model)
        if hasattr(model, 'ra_enabled'):
            enabled = bool(model.ra_enabled)
        elif isinstance(getattr(model, 'ra_cfg', None), Mapping):
            enabled = bool(model.ra_cfg.get('enable', False))
        else:
            raise AttributeError(
                f'{type(self).__name__}: cannot tell whether the RA loss is '
                f'on: the model {type(model).__name__} has neither '
                f'"ra_enabled" nor a dict "ra_cfg"'
            )
        if not enabled:
            raise ValueError(
                f'{type(self).__name__}: the dynamic lr decay is driven by '
                f'the RA loss, but the model has the RA loss disabled '
                f'(ra_cfg.enable=False); enable it or drop the hook'
            )

    def before_train(self, runner) -> None:
        """Check the loop and groups; restore a resumed firing."""
        name = type(self).__name__
        _check_by_epoch(runner, name)
        groups = _sst_param_groups(runner, name)
        if not any(g['module'] in self.modules for g in groups):
            raise ValueError(
                f'{name}: no optimizer group belongs to the modules '
                f'{list(self.modules)}'
            )
        pending, self._pending = self._pending, None
        if pending and pending.get('fired'):
            if runner.epoch > pending['fired_epoch']:
                self.fired = True
                self.fired_epoch = int(pending['fired_epoch'])
                self.max_epochs = int(pending['max_epochs'])
                self._set_max_epochs(runner, self.max_epochs)
                print_log(
                    f'{name}: resumed after the decay fired at epoch '
                    f'{self.fired_epoch}; training ends after epoch '
                    f'{self.max_epochs - 1}',
                    logger='current',
                )
            else:
                print_log(
                    f'{name}: the loaded checkpoint had fired at epoch '
                    f'{pending["fired_epoch"]}, but training starts at epoch '
                    f'{runner.epoch}; the hook starts fresh',
                    logger='current',
                )
        if not self.fired and runner.max_epochs <= self.force_epoch:
            print_log(
                f'{name}: max_epochs={runner.max_epochs} ends before '
                f'force_epoch={self.force_epoch}; the decay fires only if the '
                f'mean RA reaches {self.ra_threshold} from epoch '
                f'{self.min_epoch} on',
                logger='current',
            )

    def before_train_epoch(self, runner) -> None:
        """Start a new epoch's average."""
        self._reset_epoch()

    def after_train_iter(
        self, runner, batch_idx: int, data_batch=None, outputs=None
    ) -> None:
        """Add this iteration's unweighted RA loss."""
        if isinstance(outputs, Mapping) and self.ra_key in outputs:
            value = outputs[self.ra_key]
            if isinstance(value, torch.Tensor):
                value = value.detach().to('cpu', torch.float64)
            self._ra_sum = self._ra_sum + value
            self._ra_count += 1

    def after_train_epoch(self, runner) -> None:
        """Fire the decay at the first epoch that meets the rule."""
        if self.fired:
            return
        name = type(self).__name__
        epoch = runner.epoch
        totals = torch.stack(
            [self._ra_sum, torch.tensor(float(self._ra_count)).double()]
        )
        all_reduce(totals, op='sum')
        ra_sum, count = totals.tolist()
        mean = ra_sum / count if count else None
        forced = epoch >= self.force_epoch
        if mean is not None:
            if not math.isfinite(mean):
                raise ValueError(
                    f'{name}: the mean of {self.ra_key!r} over epoch {epoch} '
                    f'is {mean}'
                )
            self.history[epoch] = mean
        elif epoch >= self.min_epoch and not forced:
            raise KeyError(
                f'{name}: no iteration of epoch {epoch} logged '
                f'{self.ra_key!r} (the unweighted RA loss); check ra_key and '
                f'that the RA loss is on from epoch {self.min_epoch}'
            )
        by_ra = (
            mean is not None
            and mean >= self.ra_threshold
            and epoch >= self.min_epoch
        )
        if epoch >= self.min_epoch and mean is not None:
            print_log(
                f'{name}: epoch {epoch} mean {self.ra_key} {mean:.4f} '
                f'(threshold {self.ra_threshold})',
                logger='current',
            )
        if not (by_ra or forced):
            return
        for group in _sst_param_groups(runner, name):
            if group['module'] in self.modules:
                group['lr'] *= self.factor
                if 'initial_lr' in group:
                    group['initial_lr'] *= self.factor
        # Keep MMEngine's logged ``base_lr`` in step with the decay.
        base = getattr(runner.optim_wrapper, 'base_param_settings', None)
        if base is not None and 'lr' in base:
            base['lr'] *= self.factor
        self.fired = True
        self.fired_epoch = epoch
        self.max_epochs = epoch + 1 + self.extra_epochs
        self._set_max_epochs(runner, self.max_epochs)
        print_log(
            f'{name}: fired after epoch {epoch} '
            f'({"RA threshold" if by_ra else "forced"}): lr x{self.factor} '
            f'for {list(self.modules)}; training ends after epoch '
            f'{self.max_epochs - 1}',
            logger='current',
        )

    @staticmethod
    def _set_max_epochs(runner, max_epochs: int) -> None:
        loop = runner.train_loop
        loop._max_epochs = max_epochs
        loop._max_iters = max_epochs * len(loop.dataloader)
        runner.message_hub.update_info('max_epochs', loop._max_epochs)
        runner.message_hub.update_info('max_iters', loop._max_iters)
        # Gradient accumulation reads the iteration limit too.
        wrapper = runner.optim_wrapper
        if hasattr(wrapper, 'initialize_count_status'):
            wrapper.initialize_count_status(
                runner.model, runner.iter, loop._max_iters
            )

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        """Save whether and when the decay fired."""
        checkpoint.setdefault('meta', {})[self.STATE_KEY] = dict(
            fired=self.fired,
            fired_epoch=self.fired_epoch,
            max_epochs=self.max_epochs,
        )

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        """Keep the saved state until ``before_train`` knows the epoch."""
        self._pending = (checkpoint.get('meta') or {}).get(self.STATE_KEY)


@HOOKS.register_module()
class SSTStagedWarmupHook(Hook):
    """Upstream's staged ("gra") warmup: one module set trains at a time.

    ``stages`` holds ``(start, end, modules)`` with inclusive 0-based
    epochs and ``modules`` a sequence of module names or ``'all'``. In an
    epoch ``e`` of a stage, the groups of its modules (by
    ``group['module']``) train at ``lr = base * ((e + 1 - start) / (end -
    start) + 1)`` (1.5x, 2x, 2.5x for the default 3-epoch stages, §5.3's
    ``/2``) and every other group at lr 0. Outside the stages the base
    lrs apply. ``base`` is the group's ``initial_lr`` (set to the built lr
    when no scheduler did, so it travels in the optimizer state); the
    dynamic decay scales it.

    **Quirk.** Upstream's warmup scheduler recomputed every lr from the
    base each epoch, which undid the step decay applied at the same
    epoch, so the step decay never took effect while the warmup was
    configured. ``warmup_overrides_decay=True`` reproduces that: every
    epoch's lr is set from ``initial_lr`` (stage rule or base), whatever
    a param scheduler did. With ``False`` the stage multipliers apply to
    the scheduled lr instead, and outside the stages the scheduled lr is
    left alone; this assumes epoch-based schedulers.

    The lrs are set in ``before_train_epoch``; ``after_train_epoch`` (run
    before ``ParamSchedulerHook`` and the decay hook, priority
    ``ABOVE_NORMAL``) puts back the lrs the epoch started with, so
    schedulers step from the scheduled values.

    Args:
        stages (Sequence[tuple]): ``(start, end, modules)`` triples,
            non-overlapping with ``0 <= start < end``. Defaults to
            ``((0, 2, ('sos_head',)), (3, 5, ('sa',)), (6, 8, 'all'))``.
        warmup_overrides_decay (bool): Reproduce upstream's quirk.
            Defaults to True.

    Raises:
        ValueError: Bad or overlapping stages, or unknown module names.
        TypeError: The optimizer was not built by
            ``SSTOptimWrapperConstructor`` or the loop is not epoch-based.
    """

    priority = 'ABOVE_NORMAL'

    def __init__(
        self,
        stages: Sequence = (
            (0, 2, ('sos_head',)),
            (3, 5, ('sa',)),
            (6, 8, 'all'),
        ),
        warmup_overrides_decay: bool = True,
    ) -> None:
        name = type(self).__name__
        parsed = []
        for stage in stages:
            if not (isinstance(stage, Sequence) and len(stage) == 3):
                raise ValueError(
                    f'{name}: each stage is (start, end, modules), got '
                    f'{stage!r}'
                )
            start, end, modules = stage
            if int(start) != start or int(end) != end or not 0 <= start < end:
                raise ValueError(
                    f'{name}: stage epochs need integers 0 <= start < end, '
                    f'got ({start}, {end})'
                )
            if modules != 'all':
                modules = _check_modules(modules, name, 'stage modules')
            parsed.append((int(start), int(end), modules))
        parsed.sort(key=lambda s: s[0])
        for prev, nxt in zip(parsed, parsed[1:]):
            if nxt[0] <= prev[1]:
                raise ValueError(
                    f'{name}: stages {prev[:2]} and {nxt[:2]} overlap'
                )
        self.stages = tuple(parsed)
        self.warmup_overrides_decay = bool(warmup_overrides_decay)
        self._epoch_lrs: list[float] | None = None

    def stage_of(self, epoch: int) -> tuple | None:
        """The ``(start, end, modules)`` stage containing ``epoch``."""
        for stage in self.stages:
            if stage[0] <= epoch <= stage[1]:
                return stage
        return None

    def multiplier(self, epoch: int, module: str) -> float | None:
        """lr multiplier of ``module``'s groups at ``epoch``.

        Returns:
            float | None: The stage factor, 0 for a module outside the
            current stage, or None outside every stage.
        """
        stage = self.stage_of(epoch)
        if stage is None:
            return None
        start, end, modules = stage
        if modules != 'all' and module not in modules:
            return 0.0
        return (epoch + 1 - start) / (end - start) + 1

    def before_train(self, runner) -> None:
        """Check the loop and groups; record the base lrs."""
        name = type(self).__name__
        _check_by_epoch(runner, name)
        groups = _sst_param_groups(runner, name)
        for group in groups:
            group.setdefault('initial_lr', group['lr'])
        present = {g['module'] for g in groups}
        for start, end, modules in self.stages:
            if modules != 'all' and not present.intersection(modules):
                print_log(
                    f'{name}: no group of {list(modules)} is trained; every '
                    f'lr is 0 in epochs {start}-{end}',
                    logger='current',
                    level='WARNING',
                )

    def before_train_epoch(self, runner) -> None:
        """Set this epoch's lrs."""
        groups = _sst_param_groups(runner, type(self).__name__)
        self._epoch_lrs = [g['lr'] for g in groups]
        for group in groups:
            mult = self.multiplier(runner.epoch, group['module'])
            base = (
                group['initial_lr']
                if self.warmup_overrides_decay
                else group['lr']
            )
            if mult is not None:
                group['lr'] = base * mult
            elif self.warmup_overrides_decay:
                group['lr'] = base

    def after_train_epoch(self, runner) -> None:
        """Put back the lrs the epoch started with."""
        if self._epoch_lrs is None:
            return
        groups = _sst_param_groups(runner, type(self).__name__)
        for group, lr in zip(groups, self._epoch_lrs):
            group['lr'] = lr
        self._epoch_lrs = None
