"""GOLANG GPU paths (``golang_ssl.md`` §11 "GPU"; run with `make test-gpu`).

`make test` deselects the ``gpu`` marker, so CPU CI neither runs nor skips
these: Sinkhorn under fp16 autocast, and two AMP steps of the algorithm
with SyncBN layers (single process: PyTorch's SyncBatchNorm falls back to
plain batch norm without a process group, §8).
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from mmengine.optim import AmpOptimWrapper

import projects.golang_ssl.engine.gaelle_larc  # noqa: F401
from projects.golang_ssl.models.sinkhorn import distributed_sinkhorn_knopp
from shared.registry import MODELS, OPTIMIZERS
from tests.projects.test_golang_ssl.test_models.test_gaelle import (
    _data_batch,
    model_cfg,
)

pytestmark = pytest.mark.gpu


@pytest.fixture(autouse=True)
def needs_cuda():
    assert torch.cuda.is_available(), 'gpu tests need a CUDA device'


def test_sinkhorn_finite_under_autocast():
    gen = torch.Generator().manual_seed(0)
    z = F.normalize(torch.randn(64, 128, generator=gen), dim=1).cuda()
    protos = F.normalize(torch.randn(3000, 128, generator=gen), dim=1).cuda()
    with torch.autocast('cuda', dtype=torch.float16):
        scores = z @ protos.t()
        assert scores.dtype == torch.float16
        codes = distributed_sinkhorn_knopp(scores, 0.05, 3)
    assert codes.dtype == torch.float32
    assert torch.isfinite(codes).all()
    torch.testing.assert_close(
        codes.sum(dim=1), torch.ones(64, device='cuda'), rtol=0, atol=1e-5
    )
    # The fp16 scores were upcast before the division by epsilon.
    ref = distributed_sinkhorn_knopp(scores.float(), 0.05, 3)
    torch.testing.assert_close(codes, ref)


def test_amp_sync_bn_train_steps():
    cfg = model_cfg()
    cfg['backbone']['norm_cfg'] = dict(type='SyncBN')
    cfg['neck']['norm_cfg'] = dict(type='SyncBN')
    torch.manual_seed(0)
    net = MODELS.build(cfg)
    net.init_weights()
    net = net.cuda().train()
    assert any(isinstance(m, torch.nn.SyncBatchNorm) for m in net.modules())
    optimizer = OPTIMIZERS.build(
        dict(type='GAELLELARC', params=net.parameters(), lr=0.1)
    )
    wrapper = AmpOptimWrapper(
        optimizer=optimizer, dtype='float16', loss_scale='dynamic'
    )
    for step in range(2):
        log = net.train_step(_data_batch(step), wrapper)
        for key in ('loss', 'glb', 'alg', 'l2g'):
            assert math.isfinite(float(log[key].detach())), (key, log)
