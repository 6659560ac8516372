"""``SANSBIRPhaseHook``: the two training phases of the SAN fork's SBIR
recipe (``san.md`` §3.3)."""

from __future__ import annotations

from collections import defaultdict

import torch
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper
from mmengine.optim import OptimWrapperDict

from shared.registry import HOOKS

__all__ = ['SANSBIRPhaseHook']


def _optimizers(runner) -> list[torch.optim.Optimizer]:
    wrapper = runner.optim_wrapper
    wrappers = (
        list(wrapper.values())
        if isinstance(wrapper, OptimWrapperDict)
        else [wrapper]
    )
    return [w.optimizer for w in wrappers]


@HOOKS.register_module()
class SANSBIRPhaseHook(Hook):
    """Switch the SBIR model and dataset between the contrastive phase and
    the triplet phase.

    Before every training epoch ``e`` (0-based, ``runner.epoch``):

    - the train dataset (``SANSBIRDataset``) gets ``set_epoch(e)`` and
      ``set_mode('pair')`` for ``e < contrastive_epochs``, else
      ``set_mode('triplet')``;
    - the model gets ``set_phase('contrastive' | 'triplet', e)``, which sets
      the epoch-dependent loss weights;
    - **phase 2** (contrastive): the parameters of
      ``model.unshared_modules()`` (the sketch / photo stems and unshared
      stages) stop requiring grad, so SGD skips them (no update, no weight
      decay, no momentum); their BatchNorm statistics still update, as
      upstream;
    - **phase 3** (triplet): every parameter trains. At
      ``e == contrastive_epochs`` every param group's lr is reset to
      ``triplet_lr`` and the optimizer state is cleared (fresh momentum);
      the config's second cosine scheduler (chainable form, ``begin`` =
      ``contrastive_epochs``) then anneals from there.

    All of this derives from ``e`` alone, so resuming in either phase
    restores it: phase-2 freezing is re-applied every epoch, and a run
    resumed inside phase 3 keeps the optimizer state and lr of its
    checkpoint (the reset happens only when entering phase 3).

    **Upstream bug** (``reproduce_triplet_optimizer_bug=True``): the fork's
    phase-3 optimizer was built on the phase-2 model's parameters while a
    copy of the model was trained, so no weight of the trained model ever
    changed in phase 3 and only BatchNorm statistics moved. The flag
    reproduces this by giving the optimizer detached copies of the
    parameters (the model's own parameters get gradients that nothing
    applies). Off by default.

    The model is wrapped (DDP) before any hook runs, so distributed training
    with frozen parameters needs
    ``model_wrapper_cfg=dict(type='MMDistributedDataParallel',
    find_unused_parameters=True)``, as the SBIR configs set.

    Args:
        contrastive_epochs (int): Epochs of phase 2. Defaults to 35.
        total_epochs (int): Epochs of both phases; must equal the train
            loop's ``max_epochs``. Defaults to 45.
        triplet_lr (float): lr at the start of phase 3. Defaults to 0.1.
        reproduce_triplet_optimizer_bug (bool): See above. Defaults to
            False.

    Raises:
        ValueError: Bad epoch counts or lr; in ``before_train``: a train loop
            whose ``max_epochs`` differs from ``total_epochs``, a model whose
            ``contrastive_epochs``/``total_epochs`` differ from the hook's,
            or persistent dataloader workers (they would not see the mode
            switch).
        TypeError: A model or dataset without the phase interface.
    """

    priority = 'ABOVE_NORMAL'

    def __init__(
        self,
        contrastive_epochs: int = 35,
        total_epochs: int = 45,
        triplet_lr: float = 0.1,
        reproduce_triplet_optimizer_bug: bool = False,
    ) -> None:
        for name, value in (
            ('contrastive_epochs', contrastive_epochs),
            ('total_epochs', total_epochs),
        ):
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(
                    f'SANSBIRPhaseHook: {name} must be an int, got {value!r}'
                )
        if contrastive_epochs < 0 or total_epochs <= contrastive_epochs:
            raise ValueError(
                'SANSBIRPhaseHook: need 0 <= contrastive_epochs < '
                f'total_epochs, got contrastive_epochs={contrastive_epochs}, '
                f'total_epochs={total_epochs}'
            )
        if not triplet_lr > 0:
            raise ValueError(
                f'SANSBIRPhaseHook: triplet_lr must be > 0, got {triplet_lr!r}'
            )
        self.contrastive_epochs = contrastive_epochs
        self.total_epochs = total_epochs
        self.triplet_lr = float(triplet_lr)
        self.reproduce_triplet_optimizer_bug = bool(
            reproduce_triplet_optimizer_bug
        )

    # ------------------------------------------------------------------
    @staticmethod
    def _model(runner):
        model = runner.model
        model = model.module if is_model_wrapper(model) else model
        for name in ('set_phase', 'unshared_modules'):
            if not callable(getattr(model, name, None)):
                raise TypeError(
                    f'SANSBIRPhaseHook: {type(model).__name__} has no '
                    f'{name}(); use SANSBIRModel'
                )
        return model

    @staticmethod
    def _dataset(runner):
        dataset = runner.train_dataloader.dataset
        for name in ('set_mode', 'set_epoch'):
            if not callable(getattr(dataset, name, None)):
                raise TypeError(
                    f'SANSBIRPhaseHook: the train dataset '
                    f'{type(dataset).__name__} has no {name}(); use '
                    'SANSBIRDataset'
                )
        return dataset

    def phase(self, epoch: int) -> str:
        """``'contrastive'`` or ``'triplet'`` for the 0-based ``epoch``."""
        return 'contrastive' if epoch < self.contrastive_epochs else 'triplet'

    # ------------------------------------------------------------------
    def before_train(self, runner) -> None:
        """Check the run against the recipe (after any resume)."""
        max_epochs = getattr(runner.train_loop, 'max_epochs', None)
        if max_epochs is not None and max_epochs != self.total_epochs:
            raise ValueError(
                f'SANSBIRPhaseHook: total_epochs={self.total_epochs} but the '
                f'train loop runs max_epochs={max_epochs}'
            )
        model = self._model(runner)
        for name in ('contrastive_epochs', 'total_epochs'):
            value = getattr(model, name, None)
            if value is not None and value != getattr(self, name):
                raise ValueError(
                    f'SANSBIRPhaseHook: {name}={getattr(self, name)} but the '
                    f'model has {name}={value}; set both to the same value'
                )
        self._dataset(runner)
        loader = runner.train_dataloader
        if getattr(loader, 'persistent_workers', False):
            raise ValueError(
                'SANSBIRPhaseHook: train_dataloader has '
                'persistent_workers=True; its workers would keep the '
                "dataset's old mode and epoch. Set persistent_workers=False"
            )

    def before_train_epoch(self, runner) -> None:
        """Set the phase of the epoch about to run."""
        epoch = runner.epoch
        phase = self.phase(epoch)
        model = self._model(runner)
        dataset = self._dataset(runner)
        dataset.set_epoch(epoch)
        dataset.set_mode('pair' if phase == 'contrastive' else 'triplet')
        model.set_phase(phase, epoch)

        unshared = [
            p for m in model.unshared_modules() for p in m.parameters()
        ]
        if phase == 'contrastive':
            for p in unshared:
                p.requires_grad_(False)
                p.grad = None
            return
        for p in unshared:
            p.requires_grad_(True)
        if epoch == self.contrastive_epochs:
            for optimizer in _optimizers(runner):
                for group in optimizer.param_groups:
                    group['lr'] = self.triplet_lr
                optimizer.state = defaultdict(dict)
            print_log(
                f'SANSBIRPhaseHook: epoch {epoch}: triplet phase, all '
                f'parameters train, lr reset to {self.triplet_lr}, optimizer '
                'state cleared',
                logger='current',
            )
        if self.reproduce_triplet_optimizer_bug:
            self._detach_optimizer(runner, model)

    @staticmethod
    def _detach_optimizer(runner, model) -> None:
        """Give the optimizers stale copies of the model's parameters."""
        own = {id(p) for p in model.parameters()}
        for optimizer in _optimizers(runner):
            for group in optimizer.param_groups:
                params = group['params']
                if not any(id(p) in own for p in params):
                    continue  # already detached (idempotent on resume)
                copies = [p.detach().clone() for p in params]
                for old, new in zip(params, copies):
                    if old in optimizer.state:
                        optimizer.state[new] = optimizer.state.pop(old)
                group['params'] = copies
        print_log(
            'SANSBIRPhaseHook: reproduce_triplet_optimizer_bug=True: the '
            'optimizer holds stale parameter copies, no weight changes in '
            'the triplet phase (only BatchNorm statistics)',
            logger='current',
            level=30,
        )
