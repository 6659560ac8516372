"""``SSTOptimWrapperConstructor``: upstream's per-module parameter groups
(``wsol_sst.md`` §5.1)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from mmengine.logging import print_log
from mmengine.model import is_model_wrapper
from torch import nn

from shared.registry import (
    OPTIM_WRAPPER_CONSTRUCTORS,
    OPTIM_WRAPPERS,
    OPTIMIZERS,
)

__all__ = ['SST_MODULES', 'SSTOptimWrapperConstructor', 'unwrap_model']

#: The trainable submodules of ``SSTLocalizer``, in parameter-group order.
SST_MODULES = ('backbone', 'cls_head', 'sos_head', 'sa')

_PARAMWISE_KEYS = ('module_lr', 'bias_lr_mult', 'frozen')


def unwrap_model(model: nn.Module) -> nn.Module:
    """The model inside a DDP/DP (or other MMEngine) wrapper, else itself."""
    return model.module if is_model_wrapper(model) else model


def _names(value, what: str) -> tuple[str, ...]:
    if isinstance(value, str):
        value = (value,)
    if not isinstance(value, Sequence) or not all(
        isinstance(v, str) for v in value
    ):
        raise TypeError(
            f'SSTOptimWrapperConstructor: {what} must be a sequence of '
            f'module names, got {value!r}'
        )
    return tuple(value)


@OPTIM_WRAPPER_CONSTRUCTORS.register_module()
class SSTOptimWrapperConstructor:
    """Build upstream's SGD parameter groups, one lr per module.

    For each module of :data:`SST_MODULES` present on the (unwrapped)
    model, in the order ``backbone``, ``cls_head``, ``sos_head``, ``sa``,
    two groups are made: its weights, then its biases. A parameter is a
    bias when its name ends in ``.bias`` (as upstream split them), so
    InceptionV3's BN weights land in the weight group. Weight groups get
    ``lr = module_lr[name]``, bias groups ``module_lr[name] *
    bias_lr_mult`` (2 upstream). Every group, biases included, carries the
    optimizer's ``weight_decay``. Modules absent from the model (``sa``
    and ``sos_head`` in the ``spa`` modes) give no groups; modules in
    ``frozen`` get ``requires_grad=False`` and give no groups either.
    Parameters that already have ``requires_grad=False`` are left out.

    Each group records where it came from, for the schedule hooks
    (:class:`~projects.wsol_sst.engine.hooks.SSTDynamicLrDecayHook`,
    :class:`~projects.wsol_sst.engine.hooks.SSTStagedWarmupHook`):
    ``group['module']`` is the module name and ``group['param_type']`` is
    ``'weight'`` or ``'bias'``. Torch optimizers keep extra group keys,
    so they travel through the optimizer state dict.

    The optimizer config is built as given (the recipes use ``SGD`` with
    ``momentum=0.9, nesterov=True, weight_decay=5e-4``); its ``lr`` is
    unused, since every group sets its own.

    Args:
        optim_wrapper_cfg (dict): ``optim_wrapper`` config with an
            ``optimizer`` entry; ``type`` defaults to ``'OptimWrapper'``.
        paramwise_cfg (dict): ``module_lr`` (dict name → lr, required:
            every present, unfrozen module needs one; names must be in
            :data:`SST_MODULES`), ``bias_lr_mult`` (float, default 2.0)
            and ``frozen`` (sequence of module names, default none).

    Raises:
        TypeError: ``paramwise_cfg`` or one of its entries has the wrong
            type.
        KeyError: ``optimizer`` or ``module_lr`` is missing, a key of
            ``paramwise_cfg`` is unknown, or ``module_lr`` / ``frozen``
            names modules outside :data:`SST_MODULES` (each is named).
        ValueError: An lr or ``bias_lr_mult`` is negative; when called, a
            present trainable module has no ``module_lr`` entry, or
            trainable parameters lie outside :data:`SST_MODULES`.
    """

    def __init__(
        self, optim_wrapper_cfg: dict, paramwise_cfg: dict | None = None
    ) -> None:
        name = type(self).__name__
        if not isinstance(optim_wrapper_cfg, Mapping):
            raise TypeError(
                f'{name}: optim_wrapper_cfg must be a dict, got '
                f'{type(optim_wrapper_cfg).__name__}'
            )
        if 'optimizer' not in optim_wrapper_cfg:
            raise KeyError(f'{name}: optim_wrapper_cfg needs an "optimizer"')
        if not isinstance(paramwise_cfg, Mapping):
            raise TypeError(
                f'{name}: paramwise_cfg must be a dict with module_lr, got '
                f'{paramwise_cfg!r}'
            )
        unknown = sorted(set(paramwise_cfg) - set(_PARAMWISE_KEYS))
        if unknown:
            raise KeyError(
                f'{name}: unknown paramwise_cfg keys {unknown}; supported: '
                f'{list(_PARAMWISE_KEYS)}'
            )
        if 'module_lr' not in paramwise_cfg:
            raise KeyError(f'{name}: paramwise_cfg needs module_lr')
        module_lr = paramwise_cfg['module_lr']
        if not isinstance(module_lr, Mapping):
            raise TypeError(
                f'{name}: module_lr must be a dict name -> lr, got '
                f'{module_lr!r}'
            )
        frozen = _names(paramwise_cfg.get('frozen', ()), 'frozen')
        for what, names in (('module_lr', module_lr), ('frozen', frozen)):
            bad = sorted(set(names) - set(SST_MODULES))
            if bad:
                raise KeyError(
                    f'{name}: {what} names unknown modules {bad}; the '
                    f'modules are {list(SST_MODULES)}'
                )
        self.module_lr = {k: float(v) for k, v in module_lr.items()}
        self.bias_lr_mult = float(paramwise_cfg.get('bias_lr_mult', 2.0))
        negative = {k: v for k, v in self.module_lr.items() if v < 0}
        if negative or self.bias_lr_mult < 0:
            raise ValueError(
                f'{name}: learning rates must be >= 0, got module_lr '
                f'{negative or self.module_lr} and bias_lr_mult '
                f'{self.bias_lr_mult}'
            )
        self.frozen = frozen
        self.optim_wrapper_cfg = dict(optim_wrapper_cfg)
        self.optimizer_cfg = dict(self.optim_wrapper_cfg.pop('optimizer'))

    def param_groups(self, model: nn.Module) -> list[dict]:
        """The parameter groups of ``model`` (unwrapped if wrapped).

        Freezes the ``frozen`` modules as a side effect.

        Args:
            model (nn.Module): The SSTLocalizer (or a model with the same
                submodule names), possibly DDP-wrapped.

        Returns:
            list[dict]: Groups with ``params``, ``lr``, ``module``,
            ``param_type`` and, when the optimizer config sets it,
            ``weight_decay``.
        """
        name = type(self).__name__
        model = unwrap_model(model)
        present = [m for m in SST_MODULES if hasattr(model, m)]
        for module in present:
            if module in self.frozen:
                getattr(model, module).requires_grad_(False)
        outside = [
            n
            for n, p in model.named_parameters()
            if p.requires_grad and n.split('.', 1)[0] not in SST_MODULES
        ]
        if outside:
            raise ValueError(
                f'{name}: trainable parameters outside the modules '
                f'{list(SST_MODULES)} would not be optimised: {outside}'
            )
        trainable = [m for m in present if m not in self.frozen]
        missing = [m for m in trainable if m not in self.module_lr]
        if missing:
            raise ValueError(
                f"{name}: module_lr has no lr for the model's module(s) "
                f'{missing}; add them to module_lr or to frozen'
            )
        groups = []
        for module in trainable:
            weights, biases = [], []
            for pname, param in getattr(model, module).named_parameters(
                prefix=module
            ):
                if param.requires_grad:
                    is_bias = pname.endswith('.bias')
                    (biases if is_bias else weights).append(param)
            lr = self.module_lr[module]
            for kind, params, group_lr in (
                ('weight', weights, lr),
                ('bias', biases, lr * self.bias_lr_mult),
            ):
                if not params:
                    continue
                group = dict(
                    params=params, lr=group_lr, module=module, param_type=kind
                )
                if 'weight_decay' in self.optimizer_cfg:
                    group['weight_decay'] = self.optimizer_cfg['weight_decay']
                groups.append(group)
        if not groups:
            raise ValueError(f'{name}: the model has no trainable parameters')
        return groups

    def __call__(self, model: nn.Module):
        """Build the optimizer wrapper for ``model``.

        Args:
            model (nn.Module): The model, possibly DDP-wrapped.

        Returns:
            OptimWrapper: The wrapper around the built optimizer.
        """
        groups = self.param_groups(model)
        optimizer_cfg = dict(self.optimizer_cfg, params=groups)
        optimizer = OPTIMIZERS.build(optimizer_cfg)
        wrapper_cfg = dict(self.optim_wrapper_cfg)
        wrapper_cfg.setdefault('type', 'OptimWrapper')
        lines = [
            f'  {g["module"]}.{g["param_type"]}: '
            f'{sum(p.numel() for p in g["params"])} params, lr {g["lr"]:g}'
            for g in groups
        ]
        print_log(
            f'{type(self).__name__}: {len(groups)} parameter groups'
            + (f' (frozen: {list(self.frozen)})' if self.frozen else '')
            + '\n'
            + '\n'.join(lines),
            logger='current',
        )
        return OPTIM_WRAPPERS.build(
            wrapper_cfg, default_args=dict(optimizer=optimizer)
        )
