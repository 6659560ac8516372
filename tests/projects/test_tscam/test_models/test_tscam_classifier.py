"""TSCAMClassifier: parameter counts, identities, predict gating, bad input,
and the TS-CAM maps through the shared metric's TS-CAM profile.

``tscam.md`` §2, §3, §5, §9 and §10 items 1–3, 6, 8 and 12.
"""

from __future__ import annotations

import logging

import cv2
import numpy as np
import pytest
import torch
from mmpretrain.structures import DataSample
from torch import nn

from projects.tscam.models import TSCAMClassifier
from shared.evaluation.protocols import preset_boxes, resize_cam
from shared.registry import MODELS
from tests.shared.datasets.logs import captured_log

from .tscam_helpers import (
    MICRO,
    build_classifier,
    classifier_cfg,
    reference_attention,
    reference_rows,
    samples,
)

#: Exact parameter counts of the named variants (backbone + conv head),
#: equal to upstream's: timm DeiT without its Linear head, plus
#: Conv2d(D, C, 3) with bias.
PINNED_PARAMS = {
    ('tiny', 224, 200): 5_870_216,
    ('tiny', 224, 1000): 7_253_416,
    ('small', 224, 200): 22_357_064,
    ('small', 224, 1000): 25_122_664,
    ('base', 224, 200): 87_181_256,
    ('base', 224, 1000): 92_711_656,
    ('base', 384, 200): 87_473_096,
}
DIMS = dict(tiny=(192, 3), small=(384, 6), base=(768, 12))


def analytic_params(
    width: int, depth: int, num_classes: int, img_size: int = 224
) -> int:
    """Parameters of a DeiT (patch 16, MLP 4, qkv bias, one class token,
    pos_embed over all tokens, final norm) plus a 3×3 conv head."""
    tokens = (img_size // 16) ** 2 + 1
    patch_embed = 3 * 16 * 16 * width + width
    embeddings = width + tokens * width  # cls_token, pos_embed
    per_block = (
        2 * width  # norm1
        + 3 * width * width
        + 3 * width  # qkv
        + width * width
        + width  # proj
        + 2 * width  # norm2
        + 4 * width * width
        + 4 * width  # fc1
        + 4 * width * width
        + width  # fc2
    )
    final_norm = 2 * width
    head = num_classes * width * 9 + num_classes
    return patch_embed + embeddings + depth * per_block + final_norm + head


@pytest.mark.parametrize(
    'arch, img_size, num_classes', sorted(PINNED_PARAMS), ids=str
)
def test_parameter_counts(arch, img_size, num_classes):
    with torch.device('meta'):
        model = MODELS.build(classifier_cfg(arch, num_classes, img_size))
    count = sum(p.numel() for p in model.parameters())
    width, _ = DIMS[arch]
    assert count == PINNED_PARAMS[(arch, img_size, num_classes)]
    assert count == analytic_params(width, 12, num_classes, img_size)
    head = sum(p.numel() for p in model.head.parameters())
    assert head == 9 * width * num_classes + num_classes
    assert all(p.requires_grad for p in model.parameters())


def test_backbone_sizes_match_the_published_deit_figures():
    """About 5M, 22M and 86M parameters without the classifier."""
    with torch.device('meta'):
        sizes = {
            arch: sum(
                p.numel()
                for p in MODELS.build(
                    dict(type='TSCAMDeiT', arch=arch)
                ).parameters()
            )
            for arch in DIMS
        }
    assert sizes == {
        'tiny': 5_524_416,
        'small': 21_665_664,
        'base': 85_798_656,
    }


@pytest.fixture(scope='module')
def model() -> TSCAMClassifier:
    return build_classifier(dict(embed_dims=64, depth=3, num_heads=2), 12)


@pytest.fixture(scope='module')
def inputs() -> torch.Tensor:
    return torch.randn(
        3, 3, 224, 224, generator=torch.Generator().manual_seed(3)
    )


def test_init_weights_leaves_the_head_conv_untouched():
    torch.manual_seed(0)
    model = MODELS.build(classifier_cfg(MICRO, 200, 64))
    before = model.head.conv.weight.detach().clone()
    model.init_weights()
    assert torch.equal(model.head.conv.weight, before)
    # Still PyTorch's default: not trunc-normal(0.02).
    bound = 1 / (9 * MICRO['embed_dims']) ** 0.5
    assert model.head.conv.weight.abs().max() <= bound
    assert model.head.conv.weight.detach().std().item() == pytest.approx(
        bound / 3**0.5, rel=0.02
    )


def test_loss_mode_returns_only_cross_entropy(model, inputs):
    data = samples([0, 11, 5])
    losses = model.loss(inputs, data)  # eval mode: deterministic
    assert set(losses) == {'loss'}
    with torch.no_grad():
        logits = model.head(model.extract_feat(inputs))
    expected = nn.functional.cross_entropy(logits, torch.tensor([0, 11, 5]))
    torch.testing.assert_close(losses['loss'], expected)


def test_identities(model, inputs):
    data = samples([4, 4, 9])
    out = model.predict(inputs, data)
    with torch.no_grad(), model.backbone.collect_attention():
        feats = model.extract_feat(inputs)
    with torch.no_grad():
        semantic = model.head.semantic_maps(feats)
        logits = model.head(feats)
    m_star = feats[1]
    # Logits are the spatial mean of S.
    torch.testing.assert_close(
        logits, semantic.mean(dim=(2, 3)), atol=1e-6, rtol=0
    )
    coupled = m_star[:, None] * semantic  # M_c = m* ⊙ S_c
    for i, sample in enumerate(out):
        torch.testing.assert_close(
            sample.pred_score, logits[i].softmax(0), atol=1e-6, rtol=0
        )
        top5 = torch.sort(logits[i], descending=True, stable=True).indices[:5]
        assert sample.pred_label.tolist() == [top5[0].item()]
        assert sample.loc_labels.tolist() == top5.tolist() + [
            data[i].gt_label.item()
        ]
        torch.testing.assert_close(
            sample.loc_maps, coupled[i, sample.loc_labels], atol=1e-6, rtol=0
        )
        # M_a·S_b == M_b·S_a for every pair of classes.
        maps, sem = coupled[i], semantic[i]
        torch.testing.assert_close(
            maps[:, None] * sem[None], maps[None] * sem[:, None]
        )


def test_class_token_output_does_not_reach_the_logits(model, inputs):
    with torch.no_grad():
        before = model.head(model.extract_feat(inputs))
    fired = []

    def perturb(module, args, output):
        fired.append(True)
        output = output.clone()
        output[:, 0] = 1e3 * torch.randn_like(output[:, 0])
        return output

    handle = model.backbone.vit.norm.register_forward_hook(perturb)
    try:
        with torch.no_grad():
            after = model.head(model.extract_feat(inputs))
        out = model.predict(inputs)
    finally:
        handle.remove()
    assert fired
    torch.testing.assert_close(after, before, atol=1e-6, rtol=0)
    torch.testing.assert_close(
        out[0].pred_score, before[0].softmax(0), atol=1e-6, rtol=0
    )
    # A patch token does reach them (the hook point is the right one).
    handle = model.backbone.vit.norm.register_forward_hook(
        lambda m, a, o: (
            o
            + torch.nn.functional.one_hot(torch.tensor(5), o.size(1))[
                None, :, None
            ].to(o.dtype)
        )
    )
    try:
        with torch.no_grad():
            moved = model.head(model.extract_feat(inputs))
    finally:
        handle.remove()
    assert (moved - before).abs().max() > 1e-4


def test_predict_through_test_step_on_uint8_images(model):
    images = [
        torch.randint(0, 256, (3, 224, 224), dtype=torch.uint8)
        for _ in range(2)
    ]
    out = model.test_step(dict(inputs=images, data_samples=samples([1, 2])))
    assert len(out) == 2
    for sample in out:
        assert sample.loc_maps.shape == (6, 14, 14)
        assert sample.loc_maps.device.type == 'cpu'
        assert torch.isfinite(sample.loc_maps).all()


def test_extra_maps(model, inputs, monkeypatch):
    probs = reference_attention(model.backbone, inputs)
    maps = model.extra_maps(inputs, target=[3, 3, 7])
    depth = len(probs)
    assert sorted(maps) == sorted(
        [f'attn/layer_{i:02d}' for i in range(depth)]
        + ['attn/aggregated', 'attn/rollout']
        + ['semantic/3', 'semantic/7', 'tscam/3', 'tscam/7']
    )
    rows = reference_rows(probs)
    for i in range(depth):
        torch.testing.assert_close(
            maps[f'attn/layer_{i:02d}'].double(),
            rows[i].reshape(3, 14, 14),
            atol=1e-6,
            rtol=0,
        )
    torch.testing.assert_close(
        maps['attn/aggregated'].double(),
        sum(rows).reshape(3, 14, 14),
        atol=1e-6,
        rtol=0,
    )
    torch.testing.assert_close(
        maps['tscam/7'], maps['attn/aggregated'] * maps['semantic/7']
    )
    for value in maps.values():
        assert value.shape == (3, 14, 14) and value.dtype == torch.float32
    with pytest.raises(ValueError, match='target'):
        model.extra_maps(inputs, target=12)


def test_predict_in_training_mode_warns(model, inputs):
    with captured_log(logging.WARNING) as records:
        model.predict(inputs[:1])
    assert records == []
    model.train()
    try:
        with captured_log(logging.WARNING) as records:
            model.predict(inputs[:1])
    finally:
        model.eval()
    assert len(records) == 1
    message = records[0].getMessage()
    assert 'training mode' in message and 'eval()' in message


# -- bad input (§9) ---------------------------------------------------------
def test_head_width_mismatch_names_both_values():
    cfg = classifier_cfg('small', 200)
    cfg['head']['in_channels'] = 192
    with torch.device('meta'), pytest.raises(ValueError) as err:
        MODELS.build(cfg)
    message = str(err.value)
    assert 'in_channels=192' in message and 'embed_dims=384' in message


def test_neck_and_wrong_head_are_refused():
    cfg = classifier_cfg(MICRO, 4, 64)
    with pytest.raises(TypeError, match='no neck'):
        MODELS.build(dict(cfg, neck=dict(type='GlobalAveragePooling')))
    cfg['head'] = dict(type='LinearClsHead', num_classes=4, in_channels=64)
    with pytest.raises(TypeError, match='TSCAMHead'):
        MODELS.build(cfg)


def test_head_num_classes_must_be_positive():
    cfg = classifier_cfg(MICRO, 4, 64)
    cfg['head']['num_classes'] = 0
    with pytest.raises(ValueError, match='num_classes must be >= 1'):
        MODELS.build(cfg)


def test_wrong_input_size_names_img_size(model):
    with pytest.raises(ValueError, match='img_size=224'):
        model.predict(torch.zeros(1, 3, 256, 256))
    with pytest.raises(ValueError, match='img_size=224'):
        model.loss(torch.zeros(1, 3, 192, 224), samples([0]))


@pytest.mark.parametrize('mode', ['loss', 'predict'])
def test_out_of_range_gt_label_names_the_sample(model, inputs, mode):
    data = samples([1, 2, 12], start=70)
    with pytest.raises(ValueError) as err:
        getattr(model, mode)(inputs, data)
    message = str(err.value)
    assert 'sample_idx=72' in message and '[12]' in message
    assert '[0, 12)' in message


def test_nan_logits_in_predict_name_the_samples(inputs):
    model = build_classifier(MICRO, num_classes=5)
    with torch.no_grad():
        model.head.conv.bias[3] = float('nan')
    data = samples([0, 1, 2], start=20)
    for sample in data:
        sample.set_metainfo(dict(img_path=f'img_{sample.sample_idx}.jpg'))
    with pytest.raises(FloatingPointError) as err:
        model.predict(inputs, data)
    message = str(err.value)
    for i in (20, 21, 22):
        assert f'sample_idx={i} (img_{i}.jpg)' in message


# -- the TS-CAM maps through the shared metric's TS-CAM profile (§5) -------
SIZE = 224
THRESHOLDS = [0.1, 0.12, 0.3, 0.5, 0.8]


def tscam_boxes(native: np.ndarray) -> np.ndarray:
    """Boxes of a raw native map under the TS-CAM profile."""
    cam = resize_cam(
        np.ascontiguousarray(native, dtype=np.float32), (SIZE, SIZE), 'tscam'
    )
    return preset_boxes(cam, THRESHOLDS, 'tscam')


def blob_map(seed: int, grid: int = 14) -> np.ndarray:
    """Three Gaussians of random sign and size plus a little noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:grid, 0:grid]
    cam = np.zeros((grid, grid))
    for _ in range(3):
        cy, cx = rng.uniform(0, grid, 2)
        sigma, amp = rng.uniform(1, 3), rng.uniform(-1, 2)
        cam += amp * np.exp(
            -((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * sigma**2)
        )
    return (cam + 0.05 * rng.standard_normal((grid, grid))).astype(np.float32)


@pytest.fixture(scope='module')
def native_maps(model, inputs) -> list[np.ndarray]:
    """Real raw coupled maps (with negative parts), blobs and noise."""
    out = model.predict(inputs, samples([0, 1, 2]))
    maps = [m.numpy() for s in out for m in s.loc_maps[:3]]
    maps += [blob_map(seed) for seed in range(6)]
    rng = np.random.default_rng(0)
    maps += [
        rng.standard_normal((14, 14)).astype(np.float32) for _ in range(6)
    ]
    assert any((m < 0).any() for m in maps[:9])
    return maps


def test_positive_affine_change_keeps_the_box(native_maps):
    for cam in native_maps:
        boxes = tscam_boxes(cam)
        for scale, shift in ((12.0, 0.0), (0.37, -5.0), (3.0, 100.0)):
            np.testing.assert_array_equal(
                tscam_boxes(scale * cam + shift), boxes
            )


def test_transposing_the_map_swaps_x_and_y(native_maps):
    for cam in native_maps:
        boxes = tscam_boxes(cam)
        np.testing.assert_array_equal(
            tscam_boxes(cam.T), boxes[:, [1, 0, 3, 2]]
        )


def test_horizontal_flip_mirrors_the_box(native_maps):
    """Boxes are [x, y, x + w, y + h] (exclusive right edge, unclipped):
    columns x1…x2−1 map to S−x2…S−x1−1, i.e. [S−x2, y1, S−x1, y2]."""
    for cam in native_maps:
        x1, y1, x2, y2 = tscam_boxes(cam).T
        np.testing.assert_array_equal(
            tscam_boxes(cam[:, ::-1]),
            np.stack([SIZE - x2, y1, SIZE - x1, y2], axis=1),
        )


def test_exclusive_unclipped_box_convention():
    """A blob touching the right edge gives x2 == S (exclusive, unclipped)."""
    cam = np.zeros((14, 14), dtype=np.float32)
    cam[3:6, 11:] = 1.0
    box = tscam_boxes(cam)[0]
    assert box[2] == SIZE
    flipped = tscam_boxes(cam[:, ::-1])[0]
    assert flipped[0] == 0 and flipped[2] == SIZE - box[0]


def test_negation_changes_the_box(native_maps):
    changed = [
        not np.array_equal(tscam_boxes(-cam), tscam_boxes(cam))
        for cam in native_maps
    ]
    assert all(changed[9:15])  # every blob map
    assert sum(changed) >= len(changed) - 2


@pytest.mark.parametrize('grid, size', [(14, 224), (24, 384), (5, 37)])
def test_bilinear_upsampling_equals_cv2_inter_linear(grid, size):
    rng = np.random.default_rng(grid)
    for _ in range(3):
        cam = rng.standard_normal((grid, grid)).astype(np.float32)
        ours = nn.functional.interpolate(
            torch.from_numpy(cam)[None, None],
            size=(size, size),
            mode='bilinear',
            align_corners=False,
        )[0, 0].numpy()
        ref = cv2.resize(cam, (size, size), interpolation=cv2.INTER_LINEAR)
        np.testing.assert_allclose(ours, ref, atol=2e-6, rtol=0)
        # The TS-CAM profile resizes the same way, then min-max normalises.
        expected = (ours - ours.min()) / (ours.max() - ours.min())
        np.testing.assert_allclose(
            resize_cam(cam, (size, size), 'tscam'), expected, atol=1e-6
        )


def test_default_data_sample_fields(model, inputs):
    """No data samples: new DataSamples, top-5 only."""
    out = model.predict(inputs[:1])
    assert isinstance(out[0], DataSample)
    assert out[0].loc_labels.shape == (5,)
