"""tools/visualization/vis_cam.py end to end on synthetic CUB."""

from __future__ import annotations

import csv
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from mmengine.dataset import pseudo_collate

from shared.evaluation.gt_boxes import protocol_gt_boxes
from shared.evaluation.protocols import preset_boxes, resize_cam
from shared.evaluation.wsol import box_iou
from shared.registry import DATASETS, MODELS
from shared.utils.entrypoint import ConfigError, load_config
from shared.visualization import overlay_cam
from tests.conftest import REPO_ROOT, load_tool, run_tool

CFG = str(
    REPO_ROOT / 'configs/demo/cam-resnet18-micro_1xb16-10e_synthetic-cub.py'
)
PLAIN_CFG = str(
    REPO_ROOT / 'configs/demo/resnet18-micro_1xb16-5e_synthetic-imagefolder.py'
)
TOOL = 'tools/visualization/vis_cam.py'
NUM_CLASSES = 8
#: Options that widen the demo model to NUM_CLASSES classes.
WIDEN = [
    f'model.head.num_classes={NUM_CLASSES}',
    f'data_preprocessor.num_classes={NUM_CLASSES}',
]


vis_cam = load_tool(TOOL)


@pytest.fixture(scope='module')
def cub_root(tmp_path_factory) -> Path:
    """DATA_ROOT with the demo's synthetic CUB copy (4 classes)."""
    root = tmp_path_factory.mktemp('vis_cam_data')
    run_tool(
        [
            'tools/dataset_converters/make_synthetic.py',
            '--format',
            'cub',
            '--out',
            str(root / 'demo'),
            '--classes',
            '4',
            '--per-class',
            '4',
            '--size',
            '64',
            '--seed',
            '0',
        ]
    )
    return root


@pytest.fixture(autouse=True)
def data_root(cub_root, monkeypatch):
    monkeypatch.setenv('DATA_ROOT', str(cub_root))


def load_cfg(options: tuple[str, ...] | list[str] = ()):
    """The demo config with ``key=int`` overrides."""
    cfg = load_config(CFG)
    cfg.merge_from_dict(
        {key: int(value) for key, value in (o.split('=', 1) for o in options)}
    )
    return cfg


@pytest.fixture(scope='module')
def checkpoint(tmp_path_factory) -> tuple[Path, torch.nn.Module]:
    """An initialised 8-class model saved as a checkpoint (with class
    names); class 7 is pushed out of every top-5 by its bias."""
    cfg = load_cfg(WIDEN)
    torch.manual_seed(0)
    model_cfg = cfg.model.copy()
    model_cfg['data_preprocessor'] = cfg.data_preprocessor
    model = MODELS.build(model_cfg)
    model.init_weights()
    with torch.no_grad():
        model.head.fc.bias[7] = -100.0
    path = tmp_path_factory.mktemp('vis_cam_ckpt') / 'init.pth'
    classes = [f'bird_{k}' for k in range(NUM_CLASSES)]
    torch.save(
        dict(
            state_dict=model.state_dict(),
            meta=dict(dataset_meta=dict(classes=classes)),
        ),
        path,
    )
    return path, model.eval()


def read_summary(out_dir: Path) -> list[dict]:
    with open(out_dir / 'summary.csv', newline='') as f:
        return list(csv.DictReader(f))


def test_split_writes_one_overlay_per_sample_and_class(checkpoint, tmp_path):
    ckpt, _ = checkpoint
    out = tmp_path / 'vis'
    code = vis_cam.main(
        [
            CFG,
            str(ckpt),
            '--split',
            'val',
            '--num',
            '3',
            '--out-dir',
            str(out),
            '--cam-threshold',
            '0.2',
            '--target',
            'gt',
            'pred',
            '7',
            '--device',
            'cpu',
            '--cfg-options',
            *WIDEN,
        ]
    )
    assert code == 0
    rows = read_summary(out)
    files = sorted(p.name for p in out.glob('*.jpg'))
    assert sorted(r['overlay'] for r in rows) == files
    # 4 test images; --num 3 evenly spaced: round(linspace(0, 3, 3)).
    assert sorted({int(r['sample_idx']) for r in rows}) == [0, 2, 3]
    for idx in (0, 2, 3):
        mine = [r for r in rows if int(r['sample_idx']) == idx]
        wanted = {int(mine[0]['gt_label']), int(mine[0]['pred_label']), 7}
        assert {int(r['cam_label']) for r in mine} == wanted
        assert len(mine) == len(wanted)
    for row in rows:
        assert row['gt_class'] == f'bird_{row["gt_label"]}'
        assert 0.0 <= float(row['iou']) <= 100.0
        assert float(row['threshold']) == 0.2
        image = cv2.imread(str(out / row['overlay']))
        assert image.shape == (64, 64, 3)


def test_overlays_and_iou_are_the_metric_code_on_the_model_maps(
    checkpoint, tmp_path
):
    """Recompute one (sample, class) by hand: the map of the model, the
    wsoleval resize, the box at tau, the protocol GT boxes and the IoU."""
    ckpt, model = checkpoint
    out = tmp_path / 'vis'
    vis_cam.main(
        [
            CFG,
            str(ckpt),
            '--split',
            'val',
            '--num',
            '1',
            '--out-dir',
            str(out),
            '--cam-threshold',
            '0.3',
            '--target',
            'gt',
            '7',
            '--cfg-options',
            *WIDEN,
        ]
    )
    rows = read_summary(out)
    cfg = load_cfg(WIDEN)
    dataset = DATASETS.build(cfg.val_dataloader.dataset)
    item = dataset[0]
    gt = int(item['data_samples'].gt_label[0])
    with torch.no_grad():
        data = model.data_preprocessor(pseudo_collate([item]), False)
        logits, fmap = model.cam_forward(data['inputs'])
        maps = model.class_activation_maps(fmap[0], torch.tensor([gt, 7]))
    # Class 7 is never in the top-5: its map comes from the extra pass.
    assert 7 not in torch.argsort(logits[0], descending=True)[:5].tolist()
    sample = item['data_samples']
    boxes_gt = protocol_gt_boxes(
        np.asarray(sample.ori_gt_bboxes),
        sample.ori_box_format,
        tuple(sample.ori_shape),
        (64, 64),
        'wsoleval',
    )
    image = cv2.imread(sample.img_path)
    for label, native in zip((gt, 7), maps.numpy()):
        row = next(r for r in rows if int(r['cam_label']) == label)
        cam = resize_cam(native, (64, 64), 'wsoleval')
        box = preset_boxes(cam, 0.3, 'wsoleval')
        iou = 100 * box_iou(box, boxes_gt).max()
        assert float(row['iou']) == pytest.approx(iou, abs=0.005)
        drawing = overlay_cam(
            image, cam, box, boxes_gt, text=f'IoU {iou:.1f}', preset='wsoleval'
        )
        # The file is exactly this drawing through the same JPEG encoder.
        ok, encoded = cv2.imencode('.jpg', drawing)
        assert ok
        written = cv2.imread(str(out / row['overlay']))
        np.testing.assert_array_equal(written, cv2.imdecode(encoded, 1))


def test_img_paths_without_gt_fall_back_to_the_prediction(
    checkpoint, tmp_path, cub_root, capsys
):
    ckpt, _ = checkpoint
    images = sorted((cub_root / 'demo/CUB_200_2011/images').rglob('*.jpg'))[:2]
    out = tmp_path / 'vis'
    vis_cam.main(
        [
            CFG,
            str(ckpt),
            '--img',
            *map(str, images),
            '--out-dir',
            str(out),
            '--preset',
            'tscam',
            '--cam-threshold',
            '0.2',
            '--cfg-options',
            *WIDEN,
        ]
    )
    assert 'draws the top-1 prediction instead' in capsys.readouterr().out
    rows = read_summary(out)
    assert [r['image'] for r in rows] == [str(p) for p in images]
    for row in rows:
        assert row['gt_label'] == '' and row['iou'] == ''
        assert row['cam_label'] == row['pred_label']
        assert (out / row['overlay']).is_file()


def test_without_threshold_draws_heat_maps_only(checkpoint, tmp_path):
    ckpt, _ = checkpoint
    out = tmp_path / 'vis'
    vis_cam.main(
        [
            CFG,
            str(ckpt),
            '--split',
            'test',
            '--num',
            '2',
            '--out-dir',
            str(out),
            '--cfg-options',
            *WIDEN,
        ]
    )
    rows = read_summary(out)
    assert len(rows) == 2
    assert all(r['iou'] == '' and r['threshold'] == '' for r in rows)


def test_errors_name_the_problem(checkpoint, tmp_path, cub_root):
    ckpt, _ = checkpoint
    out = str(tmp_path / 'vis')
    with pytest.raises(FileNotFoundError, match='missing.pth'):
        vis_cam.main(
            [
                CFG,
                str(tmp_path / 'missing.pth'),
                '--split',
                'val',
                '--out-dir',
                out,
            ]
        )
    with pytest.raises(
        ConfigError, match="'ImageClassifier' does not return loc_maps"
    ):
        vis_cam.main(
            [PLAIN_CFG, str(ckpt), '--split', 'val', '--out-dir', out]
        )
    bad = tmp_path / 'broken.jpg'
    bad.write_bytes(b'not an image')
    with pytest.raises(ValueError, match='cannot read the image .*broken.jpg'):
        vis_cam.main(
            [
                CFG,
                str(ckpt),
                '--img',
                str(bad),
                '--out-dir',
                out,
                '--cfg-options',
                *WIDEN,
            ]
        )
    with pytest.raises(ConfigError, match='has 8 classes'):
        vis_cam.main(
            [
                CFG,
                str(ckpt),
                '--split',
                'val',
                '--num',
                '1',
                '--target',
                '8',
                '--out-dir',
                out,
                '--cfg-options',
                *WIDEN,
            ]
        )


def test_command_line(checkpoint, tmp_path):
    ckpt, _ = checkpoint
    bad = run_tool(
        [
            TOOL,
            CFG,
            str(ckpt),
            '--split',
            'val',
            '--out-dir',
            str(tmp_path),
            '--cam-threshold',
            '1.5',
        ],
        check=False,
    )
    assert (
        bad.returncode == 2
        and '--cam-threshold must be in [0, 1]' in bad.output
    )
    proc = run_tool(
        [
            TOOL,
            CFG,
            str(ckpt),
            '--split',
            'val',
            '--num',
            '2',
            '--out-dir',
            str(tmp_path / 'cli'),
            '--cam-threshold',
            '0.5',
            '--cfg-options',
            *WIDEN,
        ]
    )
    assert 'written to' in proc.output
    assert len(read_summary(tmp_path / 'cli')) == 2


def test_extra_maps_tiles_for_tscam(tmp_path):
    """A model with extra_maps() (TS-CAM) gets one tile sheet per overlay:
    the attention of every block, m*, rollout, S_c and the coupled map,
    each a tile of the drawn grid; --no-extra-maps skips them."""
    import projects.tscam  # noqa: F401
    from shared.visualization import draw_layer_maps, read_frame_image

    cfg_path = str(
        REPO_ROOT / 'configs/demo/tscam_deit-micro_1xb16-60e_synthetic-cub.py'
    )
    cfg = load_config(cfg_path)
    torch.manual_seed(0)
    model_cfg = cfg.model.copy()
    model_cfg['data_preprocessor'] = cfg.data_preprocessor
    model = MODELS.build(model_cfg)
    model.init_weights()
    ckpt = tmp_path / 'tscam.pth'
    torch.save(dict(state_dict=model.state_dict()), ckpt)
    out = tmp_path / 'vis'
    args = [cfg_path, str(ckpt), '--split', 'test', '--num', '2']
    args += ['--out-dir', str(out), '--preset', 'tscam', '--target', 'gt']
    args += ['--cam-threshold', '0.3', '--device', 'cpu']
    assert vis_cam.main(args) == 0
    rows = read_summary(out)
    assert len(rows) == 2
    model.eval()
    items, _ = vis_cam.load_split(cfg, 'test', 2)
    for row, item in zip(rows, items):
        assert row['layers'] == row['overlay'].replace('.jpg', '_layers.jpg')
        sheet = cv2.imread(str(out / row['layers']))
        label = int(row['cam_label'])
        maps = vis_cam.extra_maps_of(model, item, label)
        assert list(maps) == [
            'attn/layer_00',
            'attn/layer_01',
            'attn/aggregated',
            'attn/rollout',
            f'semantic/{label}',
            f'tscam/{label}',
        ]
        # m* is the sum of the two blocks' rows; the coupled map m* x S_c.
        np.testing.assert_allclose(
            maps['attn/aggregated'],
            maps['attn/layer_00'] + maps['attn/layer_01'],
            rtol=1e-5,
            atol=1e-7,
        )
        np.testing.assert_allclose(
            maps[f'tscam/{label}'],
            maps['attn/aggregated'] * maps[f'semantic/{label}'],
            rtol=1e-5,
            atol=1e-7,
        )
        image = read_frame_image(item['data_samples'])
        expected = draw_layer_maps(
            image, list(maps.values()), list(maps), preset='tscam'
        )
        assert sheet.shape == expected.shape
        # JPEG round trip: close, not identical.
        diff = np.abs(sheet.astype(int) - expected.astype(int)).mean()
        assert diff < 4
    skip = tmp_path / 'skip'
    args[args.index(str(out))] = str(skip)
    assert vis_cam.main([*args, '--no-extra-maps']) == 0
    assert not list(skip.glob('*_layers.jpg'))
    assert all(r['layers'] == '' for r in read_summary(skip))
