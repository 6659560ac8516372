"""GAELLEHead: builds its loss, keeps the checkpoint keys, delegates.

``golang_ssl.md`` §1 (registered names) and §4.3 (the head holds
``loss_module``; checkpoint keys ``head.loss_module.*prototypes.weight``).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from projects.golang_ssl.models.gaelle_head import GAELLEHead
from projects.golang_ssl.models.gaelle_loss import GAELLELoss
from shared.registry import MODELS

D, DL, K, KL, B, M = 8, 6, 10, 7, 3, 4
LOSS = dict(
    type='GAELLELoss',
    feat_dim=D,
    local_feat_dim=DL,
    num_prototypes=K,
    num_local_prototypes=KL,
    num_crops=(2, 3),
)


def _neck_out(seed: int = 0) -> dict:
    gen = torch.Generator().manual_seed(seed)
    return dict(
        global_emb=F.normalize(torch.randn(5 * B, D, generator=gen), dim=1),
        local_emb=F.normalize(
            torch.randn(2 * B * M, DL, generator=gen), dim=1
        ),
        batch_size=B,
        num_tokens=M,
    )


def test_builds_loss_and_keeps_checkpoint_keys():
    head = MODELS.build(dict(type='GAELLEHead', loss=LOSS))
    assert type(head) is GAELLEHead
    assert MODELS.get('GAELLEHead') is GAELLEHead
    assert type(head.loss_module) is GAELLELoss
    assert sorted(head.state_dict()) == [
        'loss_module.l2g_prototypes.weight',
        'loss_module.local_prototypes.weight',
        'loss_module.prototypes.weight',
    ]


def test_loss_delegates_to_loss_module():
    head = GAELLEHead(loss=LOSS)
    neck_out = _neck_out()
    # Same global RNG state, hence the same token permutations.
    torch.manual_seed(0)
    via_head = head.loss(neck_out)
    torch.manual_seed(0)
    direct = head.loss_module(**neck_out)
    assert set(via_head) == {'loss', 'glb', 'alg', 'l2g', 'q_used'}
    for key in via_head:
        torch.testing.assert_close(via_head[key], direct[key])
    via_head['loss'].backward()
    assert head.loss_module.prototypes.weight.grad.abs().sum() > 0


def test_rejects_non_dict_neck_output_and_loss():
    head = GAELLEHead(loss=LOSS)
    with pytest.raises(ValueError, match='neck output dict'):
        head.loss([torch.zeros(1)])
    with pytest.raises(ValueError, match='config dict'):
        GAELLEHead(loss='GAELLELoss')
