"""Class-token attention: qkv hooks vs the reference path, aggregation.

``tscam.md`` §3.4–3.5 and §10 items 3–5. The reference path sets
``fused_attn=False`` and reads the full probability tensor at the input of
``attn.attn_drop``; the qkv-hook rows must agree with it in every layer.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from projects.tscam.models import ClassTokenAttention, attention_rollout
from shared.evaluation.protocols import preset_boxes, resize_cam

from .tscam_helpers import (
    build_classifier,
    reference_attention,
    reference_rows,
    samples,
)

#: Eight blocks: a power of two, so sum / L is exact in float32 and the
#: subset [0, 3, 5] leaves blocks on both sides out.
DEEP = dict(embed_dims=64, depth=8, num_heads=2)
DEPTH = DEEP['depth']
GRID = 14


@pytest.fixture(scope='module')
def model():
    return build_classifier(DEEP, num_classes=7)


@pytest.fixture(scope='module')
def inputs():
    return torch.randn(
        2, 3, 224, 224, generator=torch.Generator().manual_seed(1)
    )


@pytest.fixture(scope='module')
def probs(model, inputs):
    return reference_attention(model.backbone, inputs)


def variant(model, **backbone_kwargs):
    """The same weights with other ``attn_layers`` / ``attn_reduce``."""
    other = build_classifier(DEEP, num_classes=7, **backbone_kwargs)
    other.load_state_dict(model.state_dict())
    return other.eval()


def collected_m_star(model, inputs) -> torch.Tensor:
    with torch.no_grad(), model.backbone.collect_attention():
        _, cls_attn = model.backbone(inputs)
    return cls_attn


def test_reference_path_rows_sum_to_one(probs):
    n = GRID * GRID + 1
    for layer in probs:
        assert layer.shape == (2, DEEP['num_heads'], n, n)
        torch.testing.assert_close(
            layer.sum(dim=-1),
            torch.ones_like(layer[..., 0]),
            atol=1e-6,
            rtol=0,
        )
        assert (layer >= 0).all()


def test_attention_is_not_uniform(probs):
    """Guard for the other tests: uniform rows would hide a wrong layer."""
    rows = reference_rows(probs)
    assert all(row.max() > 5 / (GRID * GRID) for row in rows)
    # Different layers give different rows.
    assert (rows[0] - rows[1]).abs().max() > 1e-2


def test_qkv_hook_rows_equal_reference_in_every_layer(model, inputs, probs):
    with (
        torch.no_grad(),
        model.backbone.collect_attention(return_layers=True) as collector,
    ):
        model.backbone(inputs)
    expected = reference_rows(probs)
    assert len(collector.layer_rows) == DEPTH
    for layer, (ours, ref) in enumerate(zip(collector.layer_rows, expected)):
        assert ours.shape == (2, GRID * GRID), layer
        torch.testing.assert_close(
            ours.double(), ref, atol=1e-6, rtol=0, msg=f'layer {layer}'
        )


def test_m_star_is_the_sum_of_the_class_rows(model, inputs, probs):
    m_star = collected_m_star(model, inputs)
    assert m_star.shape == (2, GRID, GRID)
    expected = torch.stack(reference_rows(probs)).sum(dim=0)
    # Row-major: patch n = GRID * row + col.
    torch.testing.assert_close(
        m_star.double(), expected.reshape(2, GRID, GRID), atol=1e-6, rtol=0
    )
    # The cls->cls entries are dropped after the softmax over all N keys,
    # so each layer contributes less than 1, and every entry is positive.
    totals = m_star.sum(dim=(1, 2))
    assert ((totals > 0) & (totals < DEPTH)).all()
    assert (m_star > 0).all()
    cls_to_cls = torch.stack([p.mean(dim=1)[:, 0, 0] for p in probs])
    torch.testing.assert_close(
        totals.double(), DEPTH - cls_to_cls.sum(dim=0), atol=1e-5, rtol=0
    )


def test_fused_and_unfused_attention_give_the_same_outputs(model, inputs):
    blocks = model.backbone.vit.blocks
    assert all(blk.attn.fused_attn for blk in blocks), 'fused stays enabled'
    fused = model.predict(inputs, samples([0, 1]))
    try:
        for blk in blocks:
            blk.attn.fused_attn = False
        unfused = model.predict(inputs, samples([0, 1]))
    finally:
        for blk in blocks:
            blk.attn.fused_attn = True
    for a, b in zip(fused, unfused):
        torch.testing.assert_close(
            a.pred_score, b.pred_score, atol=1e-6, rtol=0
        )
        assert torch.equal(a.loc_labels, b.loc_labels)
        torch.testing.assert_close(
            a.loc_maps, b.loc_maps, atol=1e-6, rtol=1e-5
        )
    with torch.no_grad():
        logits_fused = model.head(model.extract_feat(inputs))
        for blk in blocks:
            blk.attn.fused_attn = False
        try:
            logits_unfused = model.head(model.extract_feat(inputs))
        finally:
            for blk in blocks:
                blk.attn.fused_attn = True
    torch.testing.assert_close(logits_fused, logits_unfused, atol=1e-6, rtol=0)


def test_loss_mode_leaves_the_collector_untouched(inputs):
    model = build_classifier(DEEP, num_classes=7)
    collector = model.backbone.attention
    model.train()
    losses = model.loss(inputs, samples([0, 1]))
    assert set(losses) == {'loss'}
    assert collector.summed is None and collector.calls == 0
    assert not collector.active
    # The backbone alone, outside collect_attention(), returns no m*.
    with torch.no_grad():
        _, cls_attn = model.backbone(inputs)
    assert cls_attn is None and collector.calls == 0
    # After a predict the buffer stays as predict left it.
    model.eval()
    model.predict(inputs)
    assert collector.calls == DEPTH
    kept = collector.summed.clone()
    model.train()
    model.loss(inputs, samples([2, 3]))
    assert collector.calls == DEPTH
    assert torch.equal(collector.summed, kept)


def test_predict_runs_on_cpu(model, inputs):
    out = model.predict(inputs)
    for sample in out:
        assert sample.loc_maps.device.type == 'cpu'
        assert sample.pred_score.device.type == 'cpu'
        assert sample.loc_maps.dtype == torch.float32
        assert not sample.loc_maps.requires_grad


def test_sum_and_mean_differ_by_depth_and_give_the_same_boxes(model, inputs):
    mean_model = variant(model, attn_reduce='mean')
    m_sum = collected_m_star(model, inputs)
    m_mean = collected_m_star(mean_model, inputs)
    torch.testing.assert_close(m_sum, DEPTH * m_mean, atol=0, rtol=1e-6)
    out_sum = model.predict(inputs, samples([3, 4]))
    out_mean = mean_model.predict(inputs, samples([3, 4]))
    thresholds = [0.1, 0.12, 0.3, 0.5]
    for a, b in zip(out_sum, out_mean):
        assert torch.equal(a.loc_labels, b.loc_labels)
        torch.testing.assert_close(a.loc_maps, DEPTH * b.loc_maps)
        for map_sum, map_mean in zip(a.loc_maps, b.loc_maps):
            boxes_sum = preset_boxes(
                resize_cam(map_sum.numpy(), (224, 224), 'tscam'),
                thresholds,
                'tscam',
            )
            boxes_mean = preset_boxes(
                resize_cam(map_mean.numpy(), (224, 224), 'tscam'),
                thresholds,
                'tscam',
            )
            np.testing.assert_array_equal(boxes_sum, boxes_mean)


def reference_rollout(probs: list[torch.Tensor]) -> torch.Tensor:
    """Abnar & Zuidema rollout written out: R = Â_L ⋯ Â_1, class row."""
    n = probs[0].size(-1)
    result = torch.eye(n, dtype=torch.float64).expand(probs[0].size(0), n, n)
    for layer in probs:
        mean = layer.mean(dim=1)  # B, N, N
        hat = mean + torch.eye(n, dtype=torch.float64)
        hat = hat / hat.sum(dim=-1, keepdim=True)
        result = torch.bmm(hat, result)
    return result[:, 0, 1:]


def test_rollout_equals_the_matrix_product_reference(model, inputs, probs):
    expected = reference_rollout(probs).reshape(2, GRID, GRID)
    rollout_model = variant(model, attn_layers='rollout')
    m_star = collected_m_star(rollout_model, inputs)
    torch.testing.assert_close(m_star.double(), expected, atol=1e-6, rtol=0)
    # The default backbone gives the same rollout on request.
    with (
        torch.no_grad(),
        model.backbone.collect_attention(rollout=True) as collector,
    ):
        model.backbone(inputs)
    torch.testing.assert_close(
        collector.rollout().double(),
        expected.reshape(2, -1),
        atol=1e-6,
        rtol=0,
    )
    # ... while its m* stays the plain sum.
    assert not torch.allclose(
        collector.aggregated().double(), expected.reshape(2, -1), atol=1e-3
    )


def test_attention_rollout_function_matches_reference(probs):
    mats = [p.mean(dim=1) for p in probs]
    torch.testing.assert_close(
        attention_rollout(mats)[:, 0, 1:], reference_rollout(probs)
    )


def test_layer_subset_sums_exactly_those_layers(model, inputs, probs):
    layers = [0, 3, 5]
    subset_model = variant(model, attn_layers=layers)
    m_star = collected_m_star(subset_model, inputs)
    rows = reference_rows(probs)
    expected = sum(rows[i] for i in layers).reshape(2, GRID, GRID)
    torch.testing.assert_close(m_star.double(), expected, atol=1e-6, rtol=0)
    everything = torch.stack(rows).sum(dim=0).reshape(2, GRID, GRID)
    assert (m_star.double() - everything).abs().max() > 1e-2
    subset_mean = variant(model, attn_layers=layers, attn_reduce='mean')
    torch.testing.assert_close(
        collected_m_star(subset_mean, inputs).double(),
        expected / len(layers),
        atol=1e-6,
        rtol=0,
    )


def test_aggregated_needs_a_complete_forward(model):
    with model.backbone.collect_attention() as collector:
        with pytest.raises(RuntimeError, match='saw 0 attention layers'):
            collector.aggregated()
        with pytest.raises(RuntimeError, match='saw 0 attention layers'):
            collector.rollout()


def test_rollout_needs_the_matrices(model, inputs):
    with torch.no_grad(), model.backbone.collect_attention() as collector:
        model.backbone(inputs)
        with pytest.raises(RuntimeError, match='rollout=True'):
            collector.rollout()


@pytest.mark.parametrize(
    'kwargs, match',
    [
        (dict(reduce='max'), 'attn_reduce'),
        (dict(layers='last'), "'all', 'rollout'"),
        (dict(layers=[0, 0]), 'distinct'),
        (dict(layers=[DEPTH]), 'distinct'),
        (dict(layers=[-1]), 'distinct'),
        (dict(layers=[]), 'non-empty'),
    ],
)
def test_collector_rejects_bad_settings(model, kwargs, match):
    attn = [blk.attn for blk in model.backbone.vit.blocks]
    with pytest.raises(ValueError, match=match):
        ClassTokenAttention(attn, **kwargs)


def test_remove_detaches_the_hooks(inputs):
    model = build_classifier(DEEP, num_classes=7)
    collector = model.backbone.attention
    collector.remove()
    with torch.no_grad(), collector.collect():
        model.backbone.vit.forward_features(inputs)
    assert collector.calls == 0 and collector.summed is None


def test_autocast_keeps_the_collection_in_float32(model, inputs):
    """Inside a bf16 autocast region the hook still computes in float32
    and agrees with the float32 pass."""
    with torch.no_grad(), model.backbone.collect_attention() as collector:
        model.backbone(inputs)
    full = collector.summed.clone()
    with (
        torch.no_grad(),
        torch.autocast('cpu', dtype=torch.bfloat16),
        model.backbone.collect_attention() as collector,
    ):
        model.backbone(inputs)
    assert collector.summed.dtype == torch.float32
    # The blocks themselves run in bf16; the class rows stay close.
    torch.testing.assert_close(collector.summed, full, atol=3e-2, rtol=0)


def test_deepcopy_binds_the_hooks_to_the_copy(model, inputs):
    """A deepcopy (EMA models) collects into its own buffer, from its own
    attention modules; the original stays untouched."""
    import copy

    twin = copy.deepcopy(model)
    assert twin.backbone.attention is not model.backbone.attention
    with torch.no_grad():
        for blk in twin.backbone.vit.blocks:
            blk.attn.qkv.weight.mul_(1.5)
    with torch.no_grad(), model.backbone.collect_attention():
        _, ours = model.backbone(inputs)
    with torch.no_grad(), twin.backbone.collect_attention():
        _, theirs = twin.backbone(inputs)
    assert model.backbone.attention.calls == DEPTH
    assert twin.backbone.attention.calls == DEPTH
    assert not torch.allclose(ours, theirs)
    with torch.no_grad(), model.backbone.collect_attention():
        _, again = model.backbone(inputs)
    torch.testing.assert_close(again, ours)
