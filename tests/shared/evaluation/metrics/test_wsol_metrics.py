"""WSOL metrics against the functional core, and under 2-process DDP
(``evaluation.md`` §5, §10 item 8)."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from mmengine.dataset import DefaultSampler

from shared.evaluation.gt_boxes import protocol_gt_boxes
from shared.evaluation.metrics import (
    LocAccuracyMetric,
    MaxBoxAccMetric,
    PxAPMetric,
)
from shared.evaluation.protocols import resize_cam
from shared.evaluation.wsol import localization_accuracy, max_box_acc, pxap
from shared.registry import METRICS

FRAME = (64, 64)
NUM_CLASSES = 8
CLASSES = tuple(f'c{i}' for i in range(NUM_CLASSES))


def make_samples(n: int, seed: int = 0) -> list[dict]:
    """Model outputs as the Evaluator hands them to ``process()``."""
    rng = np.random.default_rng(seed)
    samples = []
    for i in range(n):
        logits = rng.normal(size=NUM_CLASSES)
        ranked = np.argsort(-logits)[:5]
        gt = int(rng.integers(NUM_CLASSES))
        labels = np.append(ranked, gt)
        class_maps = {c: rng.random((7, 7)) for c in set(labels.tolist())}
        maps = np.stack([class_maps[c] for c in labels.tolist()])
        ori_h, ori_w = int(rng.integers(60, 140)), int(rng.integers(60, 140))
        k = int(rng.integers(1, 3))
        x = rng.uniform(0, ori_w / 2, k)
        y = rng.uniform(0, ori_h / 2, k)
        w = rng.uniform(5, ori_w / 2, k)
        h = rng.uniform(5, ori_h / 2, k)
        mask = (rng.random(FRAME) < 0.3).astype(np.uint8)
        mask[rng.random(FRAME) < 0.05] = 255
        samples.append(
            dict(
                sample_idx=i,
                img_path=f'img_{i}.jpg',
                img_shape=FRAME,
                ori_shape=(ori_h, ori_w),
                gt_label=torch.tensor([gt]),
                pred_score=torch.softmax(torch.from_numpy(logits), 0),
                loc_maps=torch.from_numpy(maps).float(),
                loc_labels=torch.from_numpy(labels),
                ori_gt_bboxes=np.stack([x, y, w, h], axis=1),
                ori_box_format='xywh',
                gt_mask=torch.from_numpy(mask),
            )
        )
    return samples


def _run(metric, samples, batch: int = 3) -> dict:
    metric.dataset_meta = dict(classes=CLASSES)
    for start in range(0, len(samples), batch):
        metric.process(None, samples[start : start + batch])
    return metric.evaluate(len(samples))


def _gt_maps(samples, preset):
    out = []
    for s in samples:
        labels = s['loc_labels'].numpy()
        j = int(np.flatnonzero(labels == int(s['gt_label'][0]))[0])
        out.append(resize_cam(s['loc_maps'][j].numpy(), FRAME, preset))
    return out


def _gt_boxes(samples, preset):
    return [
        protocol_gt_boxes(
            s['ori_gt_bboxes'], 'xywh', s['ori_shape'], FRAME, preset
        )
        for s in samples
    ]


def test_registered():
    for name in ('MaxBoxAccMetric', 'PxAPMetric', 'LocAccuracyMetric'):
        assert METRICS.get(name) is not None


@pytest.mark.parametrize('backend', ['cv2', 'tree'])
def test_max_box_acc_metric_equals_functional(backend):
    samples = make_samples(24)
    metric = MaxBoxAccMetric(
        cam_curve_interval=0.01,
        require_correct_class=True,
        report_at_thresholds=(0.25,),
        backend=backend,
        num_workers=2,
    )
    got = _run(metric, samples)
    cams = _gt_maps(samples, 'wsoleval')
    boxes = _gt_boxes(samples, 'wsoleval')
    want = max_box_acc(cams, boxes, (30, 50, 70), 0.01)
    for key in ('MaxBoxAccV2', 'MaxBoxAcc@30', 'MaxBoxAcc@50',
                'MaxBoxAcc@70', 'best_threshold@50'):  # fmt: skip
        assert got[f'wsol/{key}'] == want[key], key
    v1 = max_box_acc(cams, boxes, (50,), 0.01, multi_contour=False)
    assert got['wsol/MaxBoxAccV1'] == v1['MaxBoxAccV2']
    # Top-1 variant: only images whose top-1 class is right may succeed.
    right = [
        i
        for i, s in enumerate(samples)
        if s['loc_labels'][0] == s['gt_label'][0]
    ]
    assert got['wsol/Top1MaxBoxAccV2'] <= got['wsol/MaxBoxAccV2']
    if not right:
        assert got['wsol/Top1MaxBoxAccV2'] == 0
    # BoxAcc at a fixed tau equals the curve of the functional core there.
    fixed = max_box_acc(cams, boxes, (50,), 0.25)  # taus 0, 0.25, 0.5, 0.75
    assert got['wsol/BoxAcc@50_tau=0.25'] == fixed['box_acc_curves'][0, 1]


def test_max_box_acc_records_have_fixed_size():
    sizes = set()
    for n in (2, 9):
        metric = MaxBoxAccMetric(cam_curve_interval=0.01)
        metric.dataset_meta = dict(classes=CLASSES)
        metric.process(None, make_samples(n))
        sizes |= {r['flags'].nbytes for r in metric.results}
        assert all(set(r) == {'sample_idx', 'flags', 'num_rows'}
                   for r in metric.results)  # fmt: skip
    assert sizes == {(4 * 100 + 7) // 8}  # 3 IoU levels + V1, 100 taus


def test_cam_norm_max():
    samples = make_samples(6)
    got = _run(MaxBoxAccMetric(cam_curve_interval=0.05, cam_norm='max'),
               samples)  # fmt: skip
    cams = []
    for s in samples:
        labels = s['loc_labels'].numpy()
        j = int(np.flatnonzero(labels == int(s['gt_label'][0]))[0])
        import cv2

        m = cv2.resize(s['loc_maps'][j].numpy().astype(np.float64), FRAME,
                       interpolation=cv2.INTER_CUBIC)  # fmt: skip
        m = np.maximum(m, 0)
        cams.append(m / m.max())
    want = max_box_acc(cams, _gt_boxes(samples, 'wsoleval'), (30, 50, 70),
                       0.05)  # fmt: skip
    assert got['wsol/MaxBoxAccV2'] == want['MaxBoxAccV2']


def test_pxap_metric_equals_functional():
    samples = make_samples(10)
    got = _run(PxAPMetric(cam_curve_interval=0.01), samples)
    masks = np.stack([s['gt_mask'].numpy() for s in samples])
    cams = np.stack(_gt_maps(samples, 'wsoleval'))
    want = pxap(cams, masks == 1, masks == 255, cam_curve_interval=0.01)
    assert got['wsol/PxAP'] == pytest.approx(want['PxAP'], abs=1e-9)
    assert got['wsol/pIoU'] == pytest.approx(want['pIoU'], abs=1e-9)
    assert got['wsol/best_threshold_pIoU'] == want['best_threshold']


def _wgol_val_mask(samples) -> tuple[float, float, float]:
    """WGOL ``val_mask`` re-stated: uint8 maps resized to the frame,
    thresholds at every uint8 level, pooled TP/FP over all images."""
    import cv2

    tp = np.zeros(256)
    fp = np.zeros(256)
    num_pos = 0
    for s in samples:
        labels = s['loc_labels'].numpy()
        j = int(np.flatnonzero(labels == int(s['gt_label'][0]))[0])
        m = s['loc_maps'][j].numpy().astype(np.float32)
        m = (m - m.min()) / (m.max() - m.min() + 1e-10)
        u = cv2.resize((m * 255).astype(np.uint8), FRAME[::-1])
        mask = s['gt_mask'].numpy()
        num_pos += int((mask == 1).sum())
        for level in range(256):
            pred = u >= level
            tp[level] += int((pred & (mask == 1)).sum())
            fp[level] += int((pred & (mask == 0)).sum())
    precision = np.where(tp + fp > 0, tp / np.maximum(tp + fp, 1), 0)
    recall = tp / num_pos
    ap = 0.0
    for level in range(254, -1, -1):  # from the top level down
        if tp[level] + fp[level] > 0:
            ap += precision[level] * (recall[level] - recall[level + 1])
    iou = tp / (tp + fp + (num_pos - tp))
    best = max(range(256), key=lambda lv: (iou[lv], -lv))
    return ap * 100, iou[best] * 100, best / 255


def test_pxap_spa_preset_matches_wgol_restatement():
    samples = make_samples(6, seed=3)
    got = _run(PxAPMetric(preset='spa'), samples)
    ap, piou, thr = _wgol_val_mask(samples)
    assert got['wsol/PxAP'] == pytest.approx(ap, abs=1e-9)
    assert got['wsol/pIoU'] == pytest.approx(piou, abs=1e-9)
    assert got['wsol/best_threshold_pIoU'] == pytest.approx(thr)


@pytest.mark.parametrize('preset', ['tscam', 'spa'])
def test_loc_accuracy_metric_equals_functional(preset):
    samples = make_samples(20, seed=1)
    thresholds = [0.1, 0.3, 0.5]
    got = _run(
        LocAccuracyMetric(preset=preset, cam_threshold=thresholds,
                          report_errors=True),
        samples,
    )  # fmt: skip
    cams = np.stack([
        np.stack([resize_cam(m.numpy(), FRAME, preset) for m in s['loc_maps']])
        for s in samples
    ])  # fmt: skip
    labels = np.stack([s['loc_labels'].numpy() for s in samples])
    gts = np.array([int(s['gt_label'][0]) for s in samples])
    want = localization_accuracy(cams, labels, gts, _gt_boxes(samples, preset),
                                 thresholds, protocol=preset)  # fmt: skip
    k = int(np.argmax(want['top1_loc']))
    assert got['loc/best_cam_threshold'] == thresholds[k]
    for key, values in want.items():
        assert got[f'loc/{key}'] == values[k], key
    assert got['loc/top1_loc_err'] == 100 - want['top1_loc'][k]


def test_duplicates_are_dropped_and_count_mismatch_warns(capsys):
    samples = make_samples(5)
    metric = MaxBoxAccMetric(cam_curve_interval=0.05)
    metric.dataset_meta = dict(classes=CLASSES)
    metric.process(None, samples + samples[:2])  # sampler padding
    got = metric.evaluate(6)  # one image fewer than the dataset
    warned = capsys.readouterr().out
    ref = _run(MaxBoxAccMetric(cam_curve_interval=0.05), samples)
    assert got == ref
    assert (
        'WARNING - MaxBoxAccMetric: evaluated 5 images but the dataset '
        'has 6' in warned
    )


def test_errors_name_the_sample():
    base = make_samples(1)[0]

    def run(metric, **change):
        sample = {**base, **change}
        for key, value in change.items():
            if value is None:
                sample.pop(key)
        metric.dataset_meta = dict(classes=CLASSES)
        metric.process(None, [sample])

    with pytest.raises(ValueError, match="no 'loc_maps'.*img_0.jpg"):
        run(MaxBoxAccMetric(), loc_maps=None)
    labels = base['loc_labels'].clone()
    labels[labels == base['gt_label'][0]] = (base['gt_label'][0] + 1) % 8
    with pytest.raises(
        ValueError, match='absent from loc_labels.*sample_idx=0'
    ):
        run(LocAccuracyMetric(), loc_labels=labels)
    with pytest.raises(ValueError, match='6 maps but loc_labels has 5'):
        run(PxAPMetric(), loc_labels=base['loc_labels'][:5])
    with pytest.raises(ValueError, match="'classes'\\] has 8 classes but "
                       'pred_score has 9'):  # fmt: skip
        run(MaxBoxAccMetric(), pred_score=torch.zeros(9))
    with pytest.raises(ValueError, match='flip or crop.*img_0.jpg'):
        run(MaxBoxAccMetric(), flip=True)
    maps = base['loc_maps'].clone()
    maps[:, 0, 0] = float('nan')
    with pytest.raises(ValueError, match='NaN or inf.*sample_idx=0'):
        run(LocAccuracyMetric(), loc_maps=maps)
    with pytest.raises(ValueError, match='no ground-truth box'):
        run(MaxBoxAccMetric(), ori_gt_bboxes=np.zeros((0, 4)))
    with pytest.raises(ValueError, match="no 'pred_score'.*img_0.jpg"):
        run(LocAccuracyMetric(), pred_score=None)
    with pytest.raises(ValueError, match="no 'gt_mask'"):
        run(PxAPMetric(), gt_mask=None)


# -- two gloo processes -------------------------------------------------------

NUM_DDP = 11  # odd: DefaultSampler pads rank 1 with sample 0


def _metrics():
    return [
        MaxBoxAccMetric(cam_curve_interval=0.01, require_correct_class=True),
        PxAPMetric(cam_curve_interval=0.01),
        LocAccuracyMetric(cam_threshold=[0.2, 0.4]),
    ]


def _ddp_worker(rank: int, world: int, init_file: str, out: str) -> None:
    dist.init_process_group(
        'gloo', init_method=f'file://{init_file}', rank=rank, world_size=world
    )
    samples = make_samples(NUM_DDP)
    sampler = DefaultSampler(samples, shuffle=False)  # round_up pads
    mine = [samples[i] for i in sampler]
    results = {}
    for metric in _metrics():
        metric.dataset_meta = dict(classes=CLASSES)
        for start in range(0, len(mine), 2):
            metric.process(None, mine[start : start + 2])
        results.update(metric.evaluate(NUM_DDP))
    if rank == 0:
        with open(out, 'w') as f:
            json.dump(results, f)
    dist.destroy_process_group()


def test_two_process_gloo_equals_single_process(tmp_path):
    out = str(tmp_path / 'ddp.json')
    os.environ.setdefault('OMP_NUM_THREADS', '1')
    mp.spawn(
        _ddp_worker,
        args=(2, str(tmp_path / 'init'), out),
        nprocs=2,
        join=True,
    )
    with open(out) as f:
        ddp = json.load(f)
    single = {}
    samples = make_samples(NUM_DDP)
    for metric in _metrics():
        single.update(_run(metric, samples, batch=2))
    assert ddp == single
