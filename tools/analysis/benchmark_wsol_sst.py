"""Quick-test throughput of WSOL-SST against an upstream-style loop.

``wsol_sst.md`` §6.4: maps are computed once per image and only the metric
loops over thresholds; upstream recomputed the normalisation, the resize and
the SCM product for every threshold. In one process, with random weights,
random B × V views (V = 11: ten crops and the localisation view) and
synthetic CUB-style GT boxes, each timed repeat runs

- **ours**: ``SSTLocalizer.predict`` (one forward over all B·V views) and
  the profile's ``LocAccuracyMetric`` entries (``cam``, ``scg`` and, in the
  SOS modes, ``sos``; the CUB threshold list) processing its outputs, as
  ``tools/test.py`` does;
- **reference**: the same network forward returning the raw outputs
  upstream's quick test consumed (class maps of every view, the SOS map,
  the HSC correlations of the localisation view), then upstream's loop
  re-stated here: for every threshold the structure matrix S is fused
  again, and for every image and each of its top-5 classes (plus the GT
  class for GT-known) the CAM is min-max normalised, the SCM product is
  recomputed, each map is resized with ``cv2.resize`` (INTER_LINEAR) to
  the frame and turned into a union box.

Both run on the same weights and inputs; the repeats are interleaved (the
order reversed every other repeat) after ``--warmup`` untimed ones, and the
median is reported. The last lines give the throughput ratio (the §6.4
target is >= 10× the README's quick test on comparable hardware, which
upstream's README puts at about 14 min for the 5794 CUB test images on one
TITAN RTX at batch 20, i.e. ~6.9 images/s) and whether the two paths give
the same accuracies at the selected threshold.

Examples::

    python tools/analysis/benchmark_wsol_sst.py --batch-size 8 --iters 3
    python tools/analysis/benchmark_wsol_sst.py --arch inception-v3 \\
        --device cuda --batch-size 20 --iters 10
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
if sys.path[0] != str(REPO_ROOT):
    sys.path.insert(0, str(REPO_ROOT))

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from mmengine.logging import MMLogger  # noqa: E402
from mmpretrain.structures import DataSample  # noqa: E402

import projects.wsol_sst  # noqa: E402,F401  (registers the plugin)
from projects.wsol_sst.models.localizer import (  # noqa: E402
    MODES,
    SSTLocalizer,
)
from shared.evaluation.metrics import LocAccuracyMetric  # noqa: E402
from shared.utils.compat import apply_patches  # noqa: E402
from shared.utils.timing import (  # noqa: E402
    interleaved_runs,
    synchronize,
)

ARCHS = {
    'vgg16': dict(type='SSTVGG16'),
    'inception-v3': dict(type='SSTInceptionV3'),
}
#: The CUB threshold list of the profile (§6.2).
CUB_THRESHOLDS = [round(0.05 * k, 2) for k in range(1, 11)]
#: Upstream README: ~14 min for the 5794 CUB test images, TITAN RTX, batch 20.
UPSTREAM_IMAGES, UPSTREAM_SECONDS = 5794, 14 * 60
TARGET_RATIO = 10.0
ORI_SHAPE = (333, 500)  # a typical CUB image (H, W)
KEYS = ('top1_cls', 'top5_cls', 'gt_known_loc', 'top1_loc', 'top5_loc')
EPS = 1e-10


def build_model(args: argparse.Namespace) -> SSTLocalizer:
    """``SSTLocalizer`` with random weights (nothing is loaded)."""
    return SSTLocalizer(
        mode=args.mode,
        num_classes=args.num_classes,
        backbone=dict(ARCHS[args.arch]),
    )


def make_batch(
    args: argparse.Namespace, device: torch.device
) -> tuple[torch.Tensor, list[DataSample]]:
    """Random (B, V, 3, S, S) views and samples with CUB-style GT."""
    gen = torch.Generator().manual_seed(0)
    rng = np.random.default_rng(0)
    b, v, size = args.batch_size, args.views, args.img_size
    inputs = torch.randn(b, v, 3, size, size, generator=gen).to(device)
    height, width = ORI_SHAPE
    samples = []
    for i in range(b):
        w, h = rng.uniform(0.2, 0.9) * width, rng.uniform(0.2, 0.9) * height
        x, y = rng.uniform(0, width - w), rng.uniform(0, height - h)
        meta = dict(
            sample_idx=i,
            img_path=f'synthetic_{i}.jpg',
            img_shape=(size, size),
            ori_shape=ORI_SHAPE,
            ori_gt_bboxes=np.array([[x, y, w, h]]),
            ori_box_format='xywh',
            num_views=v,
        )
        label = int(rng.integers(args.num_classes))
        samples.append(DataSample(metainfo=meta).set_gt_label(label))
    return inputs, samples


def build_metrics(with_sos: bool) -> dict[str, LocAccuracyMetric]:
    """The profile's entries (CUB base config), keyed by prefix."""
    entries = {'cam': {}, 'scg': {}}
    if with_sos:
        entries['sos'] = dict(sos=True)
    metrics = {}
    for name, extra in entries.items():
        metrics[name] = LocAccuracyMetric(
            preset='spa',
            cam_threshold=CUB_THRESHOLDS,
            map_key=f'loc_maps_{name}',
            prefix=name,
            **extra,
        )
    return metrics


# -- ours ---------------------------------------------------------------------


def run_ours(model, inputs, samples, metrics, device) -> dict[str, float]:
    """predict + every metric entry's ``process``; seconds per part."""
    synchronize(device)
    start = time.perf_counter()
    outputs = model.predict(inputs, [s.clone() for s in samples])
    synchronize(device)
    mid = time.perf_counter()
    # what mmengine's Evaluator hands to process()
    dicts = [s.to_dict() for s in outputs]
    for metric in metrics.values():
        metric.process(None, dicts)
    end = time.perf_counter()
    return dict(total=end - start, forward=mid - start, eval=end - mid)


# -- reference: upstream's per-threshold loop ---------------------------------


@torch.no_grad()
def raw_forward(model: SSTLocalizer, inputs: torch.Tensor) -> dict:
    """Upstream's model outputs for the quick test (one forward).

    Returns:
        dict: ``scores`` (B, C) ten-crop softmax mean, ``loc_map`` (B, C,
        h, w) ReLU class maps of the localisation view, ``pairs`` the HSC
        (FO, SO) pairs of the localisation view, ``sos`` (B, h, w)
        probabilities or None.
    """
    b, v = inputs.shape[:2]
    cfg = model.test_cfg
    f4, f5 = model.backbone(inputs.flatten(0, 1))
    edge_thr = (model.hsc_cfg['edge_fo_thr'], model.hsc_cfg['edge_so_thr'])
    cls_map, sos, _ = model._heads(
        f4, f5, model.with_sa, model.with_sos, edge_thr, need_pairs=False
    )
    loc = torch.arange(b, device=inputs.device) * v + (v - 1)
    pairs = model._hsc(f4[loc], f5[loc], cfg['scg_fo_thr'], cfg['scg_so_thr'])
    logits = cls_map.float().mean(dim=(2, 3)).view(b, v, -1)
    cls_logits = logits[:, : v - 1] if v > 1 else logits
    scores = cls_logits.softmax(dim=2).mean(dim=1)
    if sos is not None:
        sos = sos[loc].float()
        if model.sos_cfg['loss'] == 'bce':
            sos = torch.sigmoid(sos)
        else:
            sos = F.relu(sos)
    loc_map = F.relu(cls_map[loc].float())
    return dict(scores=scores, loc_map=loc_map, pairs=pairs, sos=sos)


def _minmax(m: np.ndarray) -> np.ndarray:
    return (m - m.min()) / (m.max() - m.min() + EPS)


def _union_box(m: np.ndarray, tau: float) -> tuple[int, int, int, int]:
    ys, xs = np.where(m >= tau)
    if len(xs) == 0:
        return 0, 0, 0, 0
    return int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max())


def _iou(a, b) -> float:
    iw = min(a[2], b[2]) - max(a[0], b[0]) + 1
    ih = min(a[3], b[3]) - max(a[1], b[1]) + 1
    inter = max(iw, 0) * max(ih, 0)
    area_a = (a[2] - a[0] + 1) * (a[3] - a[1] + 1)
    area_b = (b[2] - b[0] + 1) * (b[3] - b[1] + 1)
    return inter / (area_a + area_b - inter)


def _gt_box(sample: DataSample, size: int) -> tuple[int, int, int, int]:
    """CUB (x, y, w, h) -> (x, y, x+w-1, y+h-1) × size/W, floored, clipped."""
    (x, y, w, h), (height, width) = sample.ori_gt_bboxes[0], sample.ori_shape
    out = []
    for value, extent in ((x, width), (y, height)):
        out.append(min(max(math.floor(value / extent * size), 0), size - 1))
    for value, extent in ((x + w - 1, width), (y + h - 1, height)):
        out.append(min(max(math.floor(value / extent * size), 0), size - 1))
    return out[0], out[1], out[2], out[3]


def _flags(boxes: list, labels: list, gt: int, gt_box) -> list[bool]:
    """top1_cls, top5_cls, gt_known, top1_loc, top5_loc of one image.

    ``boxes``/``labels``: the top-5 boxes and classes, then the GT box.
    """
    ok = [_iou(box, gt_box) > 0.5 for box in boxes]
    top1 = labels[0] == gt
    top5 = gt in labels[:5]
    top5_loc = any(lab == gt and hit for lab, hit in zip(labels[:5], ok))
    return [top1, top5, ok[-1], top1 and ok[0], top5_loc]


def reference_loop(raw: dict, samples, size: int, scg_source: str) -> dict:
    """Upstream's quick-test loop: everything recomputed per threshold.

    Returns:
        dict: map type -> int (T, 5) success counts in ``KEYS`` order.
    """
    scores = raw['scores'].cpu().numpy()
    gts = [int(s.gt_label[0]) for s in samples]
    gt_boxes = [_gt_box(s, size) for s in samples]
    b, _, h, w = raw['loc_map'].shape
    types = ['cam', 'scg'] + (['sos'] if raw['sos'] is not None else [])
    counts = {t: np.zeros((len(CUB_THRESHOLDS), 5), np.int64) for t in types}
    for k, tau in enumerate(CUB_THRESHOLDS):
        # S fused again for every threshold (upstream's eval_loc_all)
        s_mat = None
        for fo, so in raw['pairs']:
            if scg_source == 'fused':
                mat = torch.maximum(fo, so)
            else:
                mat = fo if scg_source == 'fo' else so
            mat = mat / (mat.sum(dim=1, keepdim=True) + EPS)
            s_mat = mat if s_mat is None else s_mat + mat
        for i in range(b):
            top5 = [int(c) for c in np.argsort(-scores[i], kind='stable')[:5]]
            labels = top5 + [gts[i]]
            # CAM: normalise and resize each top-5 map (and the GT map)
            cams = raw['loc_map'][i, labels]  # (6, h, w)
            cam_np = cams.cpu().numpy()
            boxes = []
            for m in cam_np:
                up = cv2.resize(_minmax(m), (size, size), cv2.INTER_LINEAR)
                boxes.append(_union_box(up, tau))
            counts['cam'][k] += _flags(boxes, labels, gts[i], gt_boxes[i])
            # SCG v2: SCM product of every map, normalised, resized
            flat = cams.flatten(1)
            lo = flat.min(dim=1, keepdim=True)[0]
            hi = flat.max(dim=1, keepdim=True)[0]
            scm = F.relu(((flat - lo) / (hi - lo + EPS)) @ s_mat[i])
            boxes = []
            for m in scm.view(-1, h, w).cpu().numpy():
                up = cv2.resize(_minmax(m), (size, size), cv2.INTER_LINEAR)
                boxes.append(_union_box(up, tau))
            counts['scg'][k] += _flags(boxes, labels, gts[i], gt_boxes[i])
            if raw['sos'] is not None:
                # class-agnostic, not normalised, clamped after the resize
                m = raw['sos'][i].cpu().numpy()
                up = np.maximum(
                    cv2.resize(m, (size, size), cv2.INTER_LINEAR), 0
                )
                box = _union_box(up, tau)
                boxes = [box] * len(labels)
                counts['sos'][k] += _flags(boxes, labels, gts[i], gt_boxes[i])
    return counts


def run_reference(model, inputs, samples, device, store) -> dict:
    """Raw forward + the per-threshold loop; seconds per part."""
    synchronize(device)
    start = time.perf_counter()
    raw = raw_forward(model, inputs)
    synchronize(device)
    mid = time.perf_counter()
    store['counts'] = reference_loop(
        raw, samples, inputs.shape[-1], model.test_cfg['scg_source']
    )
    end = time.perf_counter()
    return dict(total=end - start, forward=mid - start, eval=end - mid)


# -- timing -------------------------------------------------------------------


def time_interleaved(
    fns: dict[str, Callable[[], dict[str, float]]], iters: int, warmup: int
) -> dict[str, dict[str, float]]:
    """Median seconds of each part of each function, calls interleaved.

    Args:
        fns: Name -> zero-argument callable returning its part timings.
        iters: Timed repeats; the order is reversed on odd repeats.
        warmup: Untimed calls of each function first.

    Returns:
        dict: Name -> part -> median seconds.
    """
    times = interleaved_runs(fns, iters, warmup)
    return {
        name: {
            part: statistics.median(t[part] for t in runs) for part in runs[0]
        }
        for name, runs in times.items()
    }


def agreement(metrics: dict, counts: dict, num_images: int) -> float:
    """Max |difference| (points) between our metric and the reference.

    Both at the selected threshold (first best Top-1 Loc), plus the
    threshold itself; the metrics must hold exactly one batch.
    """
    worst = 0.0
    for name, metric in metrics.items():
        ours = metric.evaluate(num_images)
        values = counts[name] * 100.0 / num_images  # (T, 5)
        best = int(np.argmax(values[:, KEYS.index('top1_loc')]))
        if ours[f'{name}/best_cam_threshold'] != CUB_THRESHOLDS[best]:
            return math.inf
        for j, key in enumerate(KEYS):
            worst = max(worst, abs(ours[f'{name}/{key}'] - values[best, j]))
    return worst


# -- entry point --------------------------------------------------------------


def bench(args: argparse.Namespace) -> dict[str, float]:
    """Run and print the measurements; return the throughputs (img/s)."""
    device = torch.device(args.device)
    torch.manual_seed(0)
    model = build_model(args).to(device).eval()
    inputs, samples = make_batch(args, device)
    metrics = build_metrics(model.with_sos)
    for metric in metrics.values():
        metric.dataset_meta = dict(
            classes=[f'c{i}' for i in range(args.num_classes)]
        )
    store: dict = {}

    def ours() -> dict[str, float]:
        for metric in metrics.values():
            metric.results.clear()  # one batch kept, as in agreement()
        return run_ours(model, inputs, samples, metrics, device)

    def reference() -> dict[str, float]:
        return run_reference(model, inputs, samples, device, store)

    with torch.no_grad():
        timed = time_interleaved(
            dict(ours=ours, reference=reference), args.iters, args.warmup
        )
    batch = args.batch_size
    tag = f'[{device.type}]'
    rates = {}
    for name, text, part in (
        ('ours', 'ours: predict + metric entries', 'metrics'),
        ('reference', 'reference: per-threshold loop', 'loop'),
    ):
        t = timed[name]
        rates[name] = batch / t['total']
        print(
            f'{tag} {text:<31s} {rates[name]:9.2f} img/s  '
            f'({1e3 * t["total"]:.1f} ms/batch: forward '
            f'{1e3 * t["forward"]:.1f} ms, {part} {1e3 * t["eval"]:.1f} ms)'
        )
    ratio = rates['ours'] / rates['reference']
    eval_ratio = timed['reference']['eval'] / timed['ours']['eval']
    print(
        f'{tag} throughput ours / reference: {ratio:.2f}x '
        f'(evaluation part alone: {eval_ratio:.1f}x)'
    )
    diff = agreement(metrics, store['counts'], batch)
    print(
        f'{tag} results ours vs reference at the selected threshold: '
        f'max |diff| {diff:.2f} points '
        f'({"agree" if diff == 0 else "DIFFER"})'
    )
    upstream = UPSTREAM_IMAGES / UPSTREAM_SECONDS
    print(
        f'{tag} upstream README quick test: {upstream:.2f} img/s '
        f'({UPSTREAM_IMAGES} CUB test images in ~{UPSTREAM_SECONDS // 60} '
        f'min, one TITAN RTX, batch 20); ours / README: '
        f'{rates["ours"] / upstream:.2f}x (target >= {TARGET_RATIO:g}x on '
        'comparable or newer hardware)'
    )
    rates.update(ratio=ratio, eval_ratio=eval_ratio, diff=diff)
    return rates


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--arch', choices=list(ARCHS), default='vgg16')
    parser.add_argument('--mode', choices=list(MODES), default='sos+sa_v3')
    parser.add_argument('--batch-size', type=int, default=8)
    parser.add_argument(
        '--views',
        type=int,
        default=11,
        help='views per image (11: ten crops + localisation view)',
    )
    parser.add_argument(
        '--iters', type=int, default=3, help='timed repeats (median)'
    )
    parser.add_argument(
        '--warmup', type=int, default=1, help='untimed repeats first'
    )
    parser.add_argument('--img-size', type=int, default=224)
    parser.add_argument('--num-classes', type=int, default=200)
    parser.add_argument('--device', choices=('cpu', 'cuda'), default='cpu')
    parser.add_argument(
        '--threads',
        type=int,
        default=None,
        help='torch CPU threads (default: torch default)',
    )
    args = parser.parse_args(argv)
    for name in ('batch_size', 'views', 'iters', 'num_classes'):
        if getattr(args, name) < 1:
            parser.error(f'--{name.replace("_", "-")} must be >= 1')
    if args.warmup < 0:
        parser.error('--warmup must be >= 0')
    if args.img_size < 32:
        parser.error('--img-size must be >= 32 (a grid of at least 2x2)')
    if args.device == 'cuda' and not torch.cuda.is_available():
        parser.error('--device cuda: no CUDA device is available')
    return args


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    args = parse_args(argv)
    apply_patches()
    threads = torch.get_num_threads()
    if args.threads:
        torch.set_num_threads(args.threads)
    # the metrics log one INFO line per evaluation
    logger = MMLogger.get_current_instance()
    level = logger.level
    logger.setLevel('WARNING')
    try:
        print(
            f'WSOL-SST quick-test benchmark: arch {args.arch}, mode '
            f'{args.mode}, img {args.img_size}, batch {args.batch_size} x '
            f'{args.views} views, {args.num_classes} classes, '
            f'{len(CUB_THRESHOLDS)} thresholds, median of {args.iters} '
            f'interleaved repeats after {args.warmup} warm-up, '
            f'{torch.get_num_threads()} CPU threads, torch '
            f'{torch.__version__}'
        )
        if args.device == 'cuda':
            print(f'[cuda] device: {torch.cuda.get_device_name()}')
        bench(args)
    finally:
        torch.set_num_threads(threads)
        logger.setLevel(level)
    return 0


if __name__ == '__main__':
    sys.exit(main())
