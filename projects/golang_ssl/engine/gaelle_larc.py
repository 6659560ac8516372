"""``GAELLELARC``: apex ``LARC(clip=False)`` wrapped around ``SGD``, as one
pure-torch optimizer (``golang_ssl.md`` §4.6)."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch.optim import Optimizer

from shared.registry import OPTIMIZERS

__all__ = ['GAELLELARC']


@OPTIMIZERS.register_module()
class GAELLELARC(Optimizer):
    r"""Layer-wise adaptive rate control of the GAELLE/SwAV code.

    Reproduces ``apex.parallel.LARC.LARC(SGD(lr, momentum, weight_decay),
    trust_coefficient, clip=False, eps)`` without apex. For every tensor
    ``w`` with a gradient ``g`` (weight decay ``wd``, trust coefficient
    :math:`\eta`):

    - if :math:`\|w\| > 0` and :math:`\|g\| > 0`:
      :math:`a = \eta\|w\| / (\|g\| + wd\|w\| + eps)` and
      :math:`g' = a\,(g + wd\,w)`;
    - otherwise :math:`g' = g` (**no** weight decay);
    - :math:`buf \leftarrow m\,buf + g'` (``buf = g'`` on the first step),
      :math:`w \leftarrow w - lr\,buf`.

    The lr multiplies the momentum buffer *after* accumulation, so under a
    changing lr this differs from mmpretrain's ``LARS`` (which scales each
    increment by its own lr before accumulating, and always decays). With a
    constant lr and non-zero norms both give the same trajectory.

    With ``clip=True`` the trust ratio becomes :math:`\min(a / lr, 1)` (apex
    ``clip=True``). Every tensor takes part: BN weights and biases are not
    excluded (the original used one group), so zero-initialised tensors take
    plain SGD steps until their norm leaves 0. Further parameter groups may
    override any default.

    Unlike apex, ``p.grad`` is not modified in place. Tensors whose
    gradient is ``None`` are skipped and get no state. The trust ratio is
    selected with :func:`torch.where`, so no step synchronises with the
    device.

    Args:
        params (Iterable): Parameters or parameter-group dicts.
        lr (float): Learning rate.
        momentum (float): Momentum factor ``m`` (no dampening, no
            Nesterov). Defaults to 0.9.
        weight_decay (float): L2 coefficient ``wd``, applied inside the
            trust-ratio branch only. Defaults to 1e-6.
        trust_coefficient (float): :math:`\eta`. Defaults to 1e-3.
        eps (float): Added to the trust-ratio denominator. Defaults to 1e-8.
        clip (bool): apex ``clip``. Defaults to False (the GAELLE recipe).

    Raises:
        ValueError: A negative ``lr``, ``momentum``, ``weight_decay``,
            ``trust_coefficient`` or ``eps`` (named with its value).
        RuntimeError: In :meth:`step`, a sparse gradient.
    """

    def __init__(
        self,
        params: Iterable,
        lr: float,
        momentum: float = 0.9,
        weight_decay: float = 1e-6,
        trust_coefficient: float = 1e-3,
        eps: float = 1e-8,
        clip: bool = False,
    ) -> None:
        defaults = dict(
            lr=lr,
            momentum=momentum,
            weight_decay=weight_decay,
            trust_coefficient=trust_coefficient,
            eps=eps,
            clip=bool(clip),
        )
        self._check_hyper(defaults)
        super().__init__(params, defaults)
        for group in self.param_groups:
            self._check_hyper(group)

    @staticmethod
    def _check_hyper(group: dict) -> None:
        for key in ('lr', 'momentum', 'weight_decay', 'trust_coefficient',
                    'eps'):  # fmt: skip
            value = group[key]
            if isinstance(value, torch.Tensor):
                value = float(value)
            if not value >= 0:  # also rejects NaN
                raise ValueError(
                    f'GAELLELARC: {key} must be >= 0, got {group[key]}'
                )

    @torch.no_grad()
    def step(self, closure: Callable | None = None):
        """Perform one LARC + SGD step.

        Args:
            closure (Callable, optional): Re-evaluates the model and returns
                the loss.

        Returns:
            The closure's loss, or ``None``.

        Raises:
            RuntimeError: A parameter has a sparse gradient.
        """
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()

        for group in self.param_groups:
            self._check_hyper(group)
            lr = group['lr']
            momentum = group['momentum']
            wd = group['weight_decay']
            eta = group['trust_coefficient']
            eps = group['eps']
            clip = group['clip']
            for p in group['params']:
                grad = p.grad
                if grad is None:
                    continue
                if grad.is_sparse:
                    raise RuntimeError(
                        'GAELLELARC does not support sparse gradients '
                        f'(parameter of shape {tuple(p.shape)})'
                    )
                w_norm = torch.linalg.vector_norm(p)
                g_norm = torch.linalg.vector_norm(grad)
                active = (w_norm != 0) & (g_norm != 0)
                ratio = eta * w_norm / (g_norm + wd * w_norm + eps)
                if clip:
                    # apex: min(a / lr, 1); lr = 0 gives inf -> 1.
                    ratio = torch.clamp(ratio / lr, max=1.0)
                ratio = torch.where(active, ratio, torch.ones_like(ratio))
                # Decay only inside the trust-ratio branch (apex LARC).
                decay = active.to(p.dtype) * wd
                d_p = (grad + decay * p) * ratio
                if momentum != 0:
                    state = self.state[p]
                    buf = state.get('momentum_buffer')
                    if buf is None:
                        buf = state['momentum_buffer'] = d_p.clone()
                    else:
                        buf.mul_(momentum).add_(d_p)
                    d_p = buf
                p.add_(d_p, alpha=-lr)
        return loss
