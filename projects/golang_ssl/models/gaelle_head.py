"""``GAELLEHead``: holds ``GAELLELoss`` as ``loss_module`` (§4.3)."""

from __future__ import annotations

import torch
from mmengine.model import BaseModule

from shared.registry import MODELS

__all__ = ['GAELLEHead']


@MODELS.register_module()
class GAELLEHead(BaseModule):
    """Thin head: the prototype banks and every term live in the loss.

    The loss module is reachable as ``head.loss_module`` (``GAELLEHook``
    reads and writes its queues there), so the checkpoint keys are
    ``head.loss_module.{prototypes,local_prototypes,l2g_prototypes}.weight``.

    Args:
        loss (dict): Config of the loss, e.g. ``dict(type='GAELLELoss')``.
        init_cfg (dict | list[dict] | None): MMEngine init config.
    """

    def __init__(
        self, loss: dict, init_cfg: dict | list[dict] | None = None
    ) -> None:
        super().__init__(init_cfg=init_cfg)
        if not isinstance(loss, (dict, torch.nn.Module)):
            raise ValueError(
                f'GAELLEHead: loss must be a config dict, got {loss!r}'
            )
        self.loss_module = (
            loss if isinstance(loss, torch.nn.Module) else MODELS.build(loss)
        )

    def loss(self, neck_out: dict) -> dict[str, torch.Tensor]:
        """Compute the losses from the neck's output.

        Args:
            neck_out (dict): ``GAELLENeck`` output with keys ``global_emb``
                (N·B, d), ``local_emb`` (V·B·M, d_l) or None,
                ``batch_size`` and ``num_tokens``.

        Returns:
            dict[str, Tensor]: The loss module's dict (``loss``, ``glb``,
            ``alg``, ``l2g``, ``q_used``).
        """
        if not isinstance(neck_out, dict):
            raise ValueError(
                'GAELLEHead.loss: expected the neck output dict, got '
                f'{type(neck_out).__name__}'
            )
        return self.loss_module(**neck_out)
