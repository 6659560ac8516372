"""The WSOL-SST evaluation profile through the shared metric code.

``wsol_sst.md`` §6.2 and §12 item 13: ``LocAccuracyMetric`` with
``preset='spa'`` (CAM/SCG: min-max on the native grid, eps 1e-10, before
the bilinear half-pixel resize to 224×224; SOS with ``sos=True``: no
normalisation, clamped at 0 after the resize), union box of every pixel
with v >= tau, +1 IoU, success only for IoU > 0.5, CUB GT boxes
(x, y, w, h) -> (x, y, x+w-1, y+h-1) × 224/W floored and clipped. Expected
values are closed forms or loops written here; the metric entries are the
ones of the shipped CUB base config.
"""

from __future__ import annotations

import math
from fractions import Fraction

import cv2
import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmpretrain.structures import DataSample

from projects.wsol_sst.models.localizer import SSTLocalizer
from shared.evaluation.gt_boxes import protocol_gt_boxes
from shared.evaluation.metrics import LocAccuracyMetric
from shared.evaluation.protocols import preset_boxes, resize_cam
from shared.registry import METRICS
from tests.conftest import REPO_ROOT

S = 224  # the evaluated frame
NUM_CLASSES = 7
CLASSES = tuple(f'c{i}' for i in range(NUM_CLASSES))
CUB_TAUS = [round(0.05 * k, 2) for k in range(1, 11)]
KEYS = ('top1_cls', 'top5_cls', 'gt_known_loc', 'top1_loc', 'top5_loc')
BASE_CFG = REPO_ROOT / 'configs/wsol_sst/_base_/wsolsst_vgg16_cub.py'


@pytest.fixture(scope='module')
def profile() -> dict[str, dict]:
    """The cam/scg/sos evaluator entries of the CUB base config."""
    cfg = Config.fromfile(str(BASE_CFG))
    return {
        'cam': cfg.cam_metric.to_dict(),
        'scg': cfg.scg_metric.to_dict(),
        'sos': cfg.sos_metric.to_dict(),
    }


def test_profile_entries(profile):
    """The config's entries are the §6.2 profile."""
    for name, entry in profile.items():
        assert entry['type'] == 'LocAccuracyMetric'
        assert entry['preset'] == 'spa'
        assert entry['map_key'] == f'loc_maps_{name}'
        assert entry['prefix'] == name
        assert entry['cam_threshold'] == CUB_TAUS
        assert entry.get('sos', False) == (name == 'sos')


def make_sample(
    native: np.ndarray,
    raw_box,
    ori_shape: tuple[int, int] = (S, S),
    idx: int = 0,
) -> dict:
    """One image as the Evaluator hands it to ``process()``: top-1 = GT."""
    score = torch.full((NUM_CLASSES,), 0.1 / (NUM_CLASSES - 1))
    score[0] = 0.9
    labels = torch.tensor([0, 1, 2, 3, 4, 0])
    maps = torch.from_numpy(np.asarray(native, np.float32))
    return dict(
        sample_idx=idx,
        img_path=f'img_{idx}.jpg',
        img_shape=(S, S),
        ori_shape=ori_shape,
        gt_label=torch.tensor([0]),
        pred_score=score,
        loc_labels=labels,
        loc_maps=maps[None].expand(len(labels), -1, -1),
        ori_gt_bboxes=np.asarray([raw_box], dtype=np.float64),
        ori_box_format='xywh',
    )


def run_metric(samples: list[dict], **kwargs) -> dict:
    kwargs.setdefault('preset', 'spa')
    metric = LocAccuracyMetric(**kwargs)
    metric.dataset_meta = dict(classes=CLASSES)
    metric.process(None, samples)
    return metric.evaluate(len(samples))


def gt_known(native, raw_box, tau: float, sos: bool = False, **kw) -> float:
    """GT-known Loc (percent) of one image at one threshold."""
    out = run_metric(
        [make_sample(native, raw_box, **kw)], cam_threshold=tau, sos=sos
    )
    # a single image with top-1 = GT: all three Loc values agree
    assert (
        out['loc/top1_loc'] == out['loc/top5_loc'] == out['loc/gt_known_loc']
    )
    return out['loc/gt_known_loc']


def block(shape, x0, y0, x1, y1, value: float = 1.0) -> np.ndarray:
    """Zeros with ``value`` on the inclusive pixel range [x0..x1]×[y0..y1]."""
    m = np.zeros(shape, np.float32)
    m[y0 : y1 + 1, x0 : x1 + 1] = value
    return m


def xywh(x0, y0, x1, y1) -> list[float]:
    """Raw CUB box whose frame box is exactly [x0, y0, x1, y1] at 224²."""
    return [x0, y0, x1 - x0 + 1, y1 - y0 + 1]


# -- boxes and strictness -----------------------------------------------------


@pytest.mark.parametrize('sos', [False, True])
def test_exact_fit_block_is_correct(sos):
    """A 224² map (identity resize) whose block is the GT box: IoU 1."""
    box = (40, 30, 149, 179)
    native = block((S, S), *box)
    cam = resize_cam(native, (S, S), 'spa', sos=sos)
    assert preset_boxes(cam, 0.5, 'spa').tolist() == [list(box)]
    assert gt_known(native, xywh(*box), 0.5, sos=sos) == 100.0
    # a GT one column narrower on each side: IoU 108/110, still correct
    assert gt_known(native, xywh(41, 30, 148, 179), 0.5, sos=sos) == 100.0


def test_iou_exactly_half_is_wrong():
    """Predicted 20×10 around a 10×10 GT: IoU = 100/200 = 0.5 exactly."""
    native = block((S, S), 0, 0, 19, 9)
    assert gt_known(native, xywh(0, 0, 9, 9), 0.3) == 0.0
    # one GT column more: IoU 110/200 > 0.5 passes
    assert gt_known(native, xywh(0, 0, 10, 9), 0.3) == 100.0
    # the failure breakdown files it under "part" (IoB 0.5 is not > 0.5,
    # IoG = 1 >= 0.7 gives "more")
    out = run_metric(
        [make_sample(native, xywh(0, 0, 9, 9))], cam_threshold=0.3
    )
    assert out['loc/top1_right'] == 0.0 and out['loc/top1_more'] == 100.0


def test_union_box_spans_two_blobs():
    """Two separate blobs give one box around both (no contours)."""
    native = block((S, S), 10, 20, 49, 69) + block((S, S), 150, 120, 199, 209)
    cam = resize_cam(native, (S, S), 'spa')
    assert preset_boxes(cam, 0.5, 'spa').tolist() == [[10, 20, 199, 209]]
    assert gt_known(native, xywh(10, 20, 199, 209), 0.5) == 100.0
    # a GT on the larger blob alone is missed (IoU well below 0.5)
    assert gt_known(native, xywh(150, 120, 199, 209), 0.5) == 0.0


@pytest.mark.parametrize('sos', [False, True])
def test_empty_map_gives_zero_box_counted_as_one_pixel(sos):
    """Nothing >= tau: box (0, 0, 0, 0), the 1-pixel box [0..0]×[0..0]."""
    native = np.zeros((14, 14), np.float32)
    cam = resize_cam(native, (S, S), 'spa', sos=sos)
    assert preset_boxes(cam, CUB_TAUS, 'spa').tolist() == [[0, 0, 0, 0]] * 10
    # under +1 the box is one pixel: a 1-pixel GT at the origin has IoU 1,
    # a 2-pixel one IoU 1/2 (not > 0.5)
    assert gt_known(native, xywh(0, 0, 0, 0), 0.05, sos=sos) == 100.0
    assert gt_known(native, xywh(0, 0, 1, 0), 0.05, sos=sos) == 0.0


def test_sos_is_not_normalised_cam_is():
    """A constant native 0.3 map: SOS boxes follow absolute values; the
    min-max of CAM/SCG turns a constant map into zeros (empty boxes)."""
    native = np.full((14, 14), 0.3, np.float32)
    up = resize_cam(native, (S, S), 'spa', sos=True)
    sos = preset_boxes(up, CUB_TAUS, 'spa').tolist()
    full, empty = [0, 0, S - 1, S - 1], [0, 0, 0, 0]
    assert sos == [full if t <= 0.3 else empty for t in CUB_TAUS]
    cam = preset_boxes(resize_cam(native, (S, S), 'spa'), CUB_TAUS, 'spa')
    assert cam.tolist() == [empty] * 10
    whole = xywh(0, 0, S - 1, S - 1)
    assert gt_known(native, whole, 0.3, sos=True) == 100.0
    assert gt_known(native, whole, 0.35, sos=True) == 0.0
    assert gt_known(native, whole, 0.05) == 0.0


def test_sos_clamped_after_upsampling():
    """At tau = 0 every clamped pixel is foreground; without the clamp the
    negative half of the map would be excluded."""
    native = np.full((14, 14), -1.0, np.float32)
    native[:, 7:] = 1.0
    cam = resize_cam(native, (S, S), 'spa', sos=True)
    assert cam.min() == 0.0
    assert preset_boxes(cam, 0.0, 'spa').tolist() == [[0, 0, S - 1, S - 1]]


# -- GT boxes -----------------------------------------------------------------


@pytest.mark.parametrize(
    'raw, ori_hw',
    [
        ((60.7, 27.3, 325.1, 204.9), (333, 500)),  # CUB-like floats
        ((13.0, 0.0, 487.0, 375.0), (375, 500)),  # reaches the right edge
        ((380.0, 90.0, 150.0, 260.0), (333, 500)),  # beyond the image: clip
        ((50.0, 40.0, 200.0, 100.0), (333, 500)),  # the -1 changes x2, y2
    ],
)
def test_cub_gt_box_hand_formula(raw, ori_hw):
    x, y, w, h = raw
    height, width = ori_hw

    def scale(v: float, size: int) -> int:
        return min(max(math.floor(v / size * S), 0), S - 1)

    want = [
        scale(x, width),
        scale(y, height),
        scale(x + w - 1, width),
        scale(y + h - 1, height),
    ]
    got = protocol_gt_boxes([raw], 'xywh', ori_hw, (S, S), 'spa')
    assert got.tolist() == [want]
    if raw == (50.0, 40.0, 200.0, 100.0):
        # without the -1 (x2 = x + w) both far edges would be one higher
        assert [scale(x + w, width), scale(y + h, height)] == [
            want[2] + 1,
            want[3] + 1,
        ]
    # The metric builds the same box from the sample's raw annotation, and
    # a prediction fitting it exactly is correct.
    native = block((S, S), *want)
    assert gt_known(native, raw, 0.5, ori_shape=ori_hw) == 100.0
    metric = LocAccuracyMetric(preset='spa', cam_threshold=0.5)
    sample = make_sample(native, raw, ori_shape=ori_hw)
    assert metric.gt_boxes(sample, (S, S)).tolist() == [want]


# -- native-grid block through the half-pixel bilinear rule -------------------


def edge_box(c0: int, c1: int, r0: int, r1: int, level: Fraction, n: int):
    """Union box of an upsampled block of ones on an n×n grid (S = 224).

    cv2 INTER_LINEAR samples output pixel X at source u = (X + 0.5)·n/S −
    0.5. Along x, the block [c0, c1] (2+ cells) has profile a(u) = u − (c0
    − 1) on [c0 − 1, c0], 1 on [c0, c1] and c1 + 1 − u on [c1, c1 + 1]
    (borders replicate), so a row holding a block row reaches ``level``
    exactly where a(u) >= level:
    X >= S/n·(c0 − 1 + level + 1/2) − 1/2 and X <= S/n·(c1 + 1 − level +
    1/2) − 1/2. The same holds along y.
    """
    k, half = Fraction(S, n), Fraction(1, 2)

    def lo(c: int) -> int:
        if c == 0:
            return 0
        return math.ceil(k * (c - 1 + level + half) - half)

    def hi(c: int) -> int:
        if c == n - 1:
            return S - 1
        return math.floor(k * (c + 1 - level + half) - half)

    return [lo(c0), lo(r0), hi(c1), hi(r1)]


@pytest.mark.parametrize(
    'cells, value, sos',
    [
        ((5, 3, 9, 6), 1.0, False),  # (c0, r0, c1, r1) of a 14×14 block
        ((5, 3, 9, 6), 0.37, False),  # min-max brings the block to 1
        ((0, 8, 3, 13), 1.0, False),  # touching two borders
        ((5, 3, 9, 6), 0.6, True),  # SOS: absolute values, tau / 0.6
    ],
)
def test_native_block_gives_cell_aligned_box(profile, cells, value, sos):
    c0, r0, c1, r1 = cells
    native = np.zeros((14, 14), np.float32)
    native[r0 : r1 + 1, c0 : c1 + 1] = value
    scale = Fraction(value).limit_denominator(100) if sos else 1
    want = [
        edge_box(
            c0, c1, r0, r1, Fraction(tau).limit_denominator(100) / scale, 14
        )
        for tau in CUB_TAUS
    ]
    cam = resize_cam(native, (S, S), 'spa', sos=sos)
    assert preset_boxes(cam, CUB_TAUS, 'spa').tolist() == want
    if not sos:
        # tau = 0.5: exactly the cells × 16 (cell-aligned)
        assert want[-1][0] == (16 * c0 if c0 else 0)
        assert want[-1][2] == 16 * (c1 + 1) - 1
        assert want[-1][1] == 16 * r0 and want[-1][3] == 16 * (r1 + 1) - 1
    # through the metric (the profile entry at each threshold): the box
    # derived for that threshold, taken as the GT, is an exact fit
    entry = dict(profile['sos' if sos else 'cam'])
    entry.pop('type')
    entry.update(map_key='loc_maps', prefix='loc')
    for k, tau in enumerate(CUB_TAUS):
        entry['cam_threshold'] = tau
        out = run_metric([make_sample(native, xywh(*want[k]))], **entry)
        assert out['loc/gt_known_loc'] == 100.0


# -- SSTLocalizer.predict -> metric == direct recomputation -------------------


def tiny_model() -> SSTLocalizer:
    """sos+sa_v3 with narrow heads; last layers rescaled so that the random
    maps spread over the thresholds and the class ranking is fixed."""
    torch.manual_seed(0)
    model = SSTLocalizer(
        mode='sos+sa_v3',
        num_classes=NUM_CLASSES,
        cls_head=dict(mid_channels=32),
        sos_head=dict(mid_channels=32),
        sa=dict(attn_drop=0.0),
    ).eval()
    with torch.no_grad():
        cls_out, sos_out = model.cls_head.layers[4], model.sos_head.layers[4]
        cls_out.weight.mul_(3000.0)
        # ranking 3, 1, 6, 0, 5 | 2, 4 (bias margins dominate the maps)
        cls_out.bias.copy_(torch.tensor([3.0, 5.0, 1.0, 6.0, 0.0, 2.0, 4.0]))
        sos_out.weight.mul_(3000.0)
        sos_out.bias.fill_(-1.0)
    return model


# (gt label, raw xywh box, original (H, W), textured patch (y0, x0, y1, x1)
# of the otherwise blank input): top-1 right, GT at rank 4, GT outside the
# top 5. The boxes make some results depend on the threshold.
PREDICT_CASES = [
    (3, (36.0, 0.0, 465.0, 285.0), (333, 500), (40, 60, 150, 200)),
    (0, (150.2, 60.0, 200.0, 180.7), (375, 500), (20, 20, 200, 120)),
    (2, (101.0, 168.0, 200.0, 333.0), (500, 300), (100, 90, 210, 220)),
]


def recompute(sample: dict, map_key: str, sos: bool) -> np.ndarray:
    """Per-threshold flags (T, 5) in KEYS order, from the raw outputs."""
    gt = int(sample['gt_label'][0])
    labels = sample['loc_labels'].numpy()
    column = int(np.flatnonzero(labels == gt)[0])
    m = sample[map_key][column].numpy().astype(np.float32)
    if not sos:
        m = (m - m.min()) / (m.max() - m.min() + 1e-10)
    up = cv2.resize(m, (S, S), interpolation=cv2.INTER_LINEAR)
    if sos:
        up = np.maximum(up, 0)
    ranking = np.argsort(-sample['pred_score'].numpy(), kind='stable')
    top1, top5 = gt == ranking[0], gt in ranking[:5]
    (x, y, w, h), (height, width) = (
        sample['ori_gt_bboxes'][0],
        sample['ori_shape'],
    )
    g = [
        min(max(math.floor(x / width * S), 0), S - 1),
        min(max(math.floor(y / height * S), 0), S - 1),
        min(max(math.floor((x + w - 1) / width * S), 0), S - 1),
        min(max(math.floor((y + h - 1) / height * S), 0), S - 1),
    ]
    rows = []
    for tau in CUB_TAUS:
        ys, xs = np.nonzero(up >= np.float32(tau))
        p = (
            (xs.min(), ys.min(), xs.max(), ys.max())
            if len(xs)
            else (0, 0, 0, 0)
        )
        iw = min(p[2], g[2]) - max(p[0], g[0]) + 1
        ih = min(p[3], g[3]) - max(p[1], g[1]) + 1
        inter = max(iw, 0) * max(ih, 0)
        area_p = (p[2] - p[0] + 1) * (p[3] - p[1] + 1)
        area_g = (g[2] - g[0] + 1) * (g[3] - g[1] + 1)
        ok = inter / (area_p + area_g - inter) > 0.5
        rows.append([top1, top5, ok, top1 and ok, top5 and ok])
    return np.array(rows, dtype=bool)


def test_metric_on_predict_outputs_equals_recomputation(profile):
    model = tiny_model()
    gen = torch.Generator().manual_seed(1)
    inputs = torch.zeros(len(PREDICT_CASES), 2, 3, S, S)
    for i, (*_, (y0, x0, y1, x1)) in enumerate(PREDICT_CASES):
        patch = torch.randn(2, 3, y1 - y0, x1 - x0, generator=gen)
        inputs[i, :, :, y0:y1, x0:x1] = 2 * patch
    data_samples = [
        DataSample(
            metainfo=dict(
                sample_idx=i,
                img_path=f'img_{i}.jpg',
                img_shape=(S, S),
                ori_shape=ori,
                ori_gt_bboxes=np.asarray([raw]),
                ori_box_format='xywh',
                num_views=2,
            )
        ).set_gt_label(gt)
        for i, (gt, raw, ori, _) in enumerate(PREDICT_CASES)
    ]
    outputs = [s.to_dict() for s in model.predict(inputs, data_samples)]
    scores = np.stack([s['pred_score'].numpy() for s in outputs])
    ranked = np.argsort(-scores, axis=1, kind='stable')
    # the cases cover top-1 right, in the top 5 only, and outside the top 5
    ranks = [
        list(r[:5]).index(g) if g in r[:5] else 5
        for r, (g, *_) in zip(ranked, PREDICT_CASES)
    ]
    assert ranks == [0, 3, 5]
    assert (np.diff(np.sort(scores, axis=1), axis=1) > 0).all()  # no ties

    varied = 0
    for name, entry in profile.items():
        sos = name == 'sos'
        want = np.stack([recompute(s, entry['map_key'], sos) for s in outputs])
        percent = want.sum(axis=0) * 100.0 / len(outputs)  # (T, keys)
        varied += len({tuple(row) for row in percent}) > 1
        # per threshold: one entry of the profile with that threshold alone
        for k, tau in enumerate(CUB_TAUS):
            metric = METRICS.build(dict(entry, cam_threshold=tau))
            metric.dataset_meta = dict(classes=CLASSES)
            metric.process(None, outputs)
            got = metric.evaluate(len(outputs))
            for j, key in enumerate(KEYS):
                assert got[f'{name}/{key}'] == percent[k, j], (name, tau, key)
        # the configured list: values at the first best top-1 Loc threshold
        metric = METRICS.build(entry)
        metric.dataset_meta = dict(classes=CLASSES)
        metric.process(None, outputs)
        got = metric.evaluate(len(outputs))
        best = int(np.argmax(percent[:, KEYS.index('top1_loc')]))
        assert got[f'{name}/best_cam_threshold'] == CUB_TAUS[best]
        for j, key in enumerate(KEYS):
            assert got[f'{name}/{key}'] == percent[best, j]
    assert varied >= 2  # results change with the threshold for some maps
