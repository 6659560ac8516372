"""SBIR end to end (``san.md`` §3.3, §6 items 17 and 19).

- Each shipped SBIR config loads with its scope and plugin, builds its
  model on CPU, and runs one loss-mode forward of ``SANSBIRModel`` with
  batch 2 (its BatchNorm1d head cannot take batch 1).
- A tiny config derived from the shipped one (a tiny explicit
  ``SANMixedNet`` structure, 64² crops, three synthetic classes from
  ``make_synthetic.py --format sketch``, one contrastive and one triplet
  epoch) trains through both phases with ``tools/train.py``, validates with
  a finite ``retrieval/mAP`` every epoch, and ``tools/test.py`` reports
  mAP / MRR / P@10 on the synthetic Flickr15k split with the best
  checkpoint.
- The zero-shot config evaluates a tiny retriever with ``tools/test.py``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from mmengine.config import Config

# The plugin's modules register their names (projects/san/__init__.py
# imports them once the plugin is complete).
import projects.san.datasets.transforms  # noqa: F401
import projects.san.engine  # noqa: F401
import projects.san.evaluation  # noqa: F401
import projects.san.models.embedding_retriever  # noqa: F401
import projects.san.models.mixed_net  # noqa: F401
import projects.san.models.sbir_data_preprocessor  # noqa: F401
import projects.san.models.sbir_model  # noqa: F401
from shared.registry import MODELS
from shared.utils.entrypoint import load_config
from tests.conftest import REPO_ROOT, load_tool, run_tool

CONFIG_DIR = REPO_ROOT / 'configs/san'
SBIR_CONFIGS = {
    'sbir-resnet26_2xb64_sketch-eitz-flickr25k': 'resnet26',
    'sbir-hybrid-patch-2-2-nl_2xb64_sketch-eitz-flickr25k': (
        'hybrid_patch_2-2_nl'
    ),
}
ZEROSHOT = 'mixed-hybrid-patch-2-2-nl_2xb32_mini-quickdraw-zeroshot'
NUM_CLASSES = 3
#: A tiny explicit SANMixedNet structure (res, san, san; the last two
#: shared): its stages run at 16², 8² and 4² on 64² crops.
TINY_ARCH = dict(
    layer_types=('res', 'san', 'san'),
    layers=(1, 1, 1),
    widths=(16, 32, 64),
    sa_type='patchwise',
)
#: Image sizes of the shipped pipelines -> the tiny run's.
SIZES = {224: 64, 225: 65, 256: 72}


@pytest.fixture(scope='module')
def sbir_root(tmp_path_factory) -> Path:
    """A DATA_ROOT with the SBIR base config's folder names."""
    root = tmp_path_factory.mktemp('sbir_root')
    synth = root / 'synthetic'
    run_tool(
        [
            'tools/dataset_converters/make_synthetic.py',
            '--format',
            'sketch',
            '--out',
            str(synth),
            '--num-classes',
            str(NUM_CLASSES),
            '--per-class',
            '4',
            '--val-per-class',
            '2',
            '--size',
            '80',
            '--seed',
            '0',
        ]
    )
    for link, target in (
        ('Sketch_EITZ', 'Sketch'),
        ('flickr25k_photos', 'Photos'),
        ('Flickr15k', 'Flickr15k'),
        ('miniQuickDraw', 'ZeroShot'),
    ):
        (root / link).symlink_to(synth / target, target_is_directory=True)
    return root


def shrink(node):
    """Replace the shipped image sizes by the tiny run's, recursively."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ('scale', 'crop_size', 'short', 'max_long') and (
                value in SIZES
            ):
                node[key] = SIZES[value]
            else:
                shrink(value)
    elif isinstance(node, list):
        for item in node:
            shrink(item)


def loaders(cfg):
    """Every dataloader of the config, the gallery hooks' included."""
    found = [
        cfg[k]
        for k in ('train_dataloader', 'val_dataloader', 'test_dataloader')
        if cfg.get(k)
    ]
    for hook in cfg.get('custom_hooks', []):
        for key in ('val_gallery', 'test_gallery'):
            if hook.get(key):
                found.append(hook[key])
    return found


def fake_batch(batch_size: int, size: int, classes: int):
    """A preprocessor-ready pair batch of ``PackPairInputs`` samples."""
    from mmpretrain.structures import DataSample

    gen = torch.Generator().manual_seed(0)
    views = [
        [
            torch.randint(
                0, 256, (3, size, size), dtype=torch.uint8, generator=gen
            )
            for _ in range(batch_size)
        ]
        for _ in range(2)
    ]
    samples = []
    for i in range(batch_size):
        sample = DataSample().set_gt_label(i % classes)
        sample.set_metainfo(dict(photo_label=(i + i % 2) % classes))
        samples.append(sample)
    return dict(inputs=views, data_samples=samples)


@pytest.mark.parametrize('stem', sorted(SBIR_CONFIGS))
def test_sbir_config_loads_builds_and_runs_one_loss_forward(stem):
    cfg = load_config(str(CONFIG_DIR / f'{stem}.py'))
    assert cfg.default_scope == 'mmpretrain'
    assert cfg.custom_imports == dict(
        imports=['projects.san'], allow_failed_imports=False
    )
    assert cfg.model.type == 'SANSBIRModel'
    assert cfg.model.arch == SBIR_CONFIGS[stem]
    arch_name = SBIR_CONFIGS[stem].replace('_', '-')
    for modality, dataset in (
        ('sketch', 'sketch-eitz'),
        ('photo', 'flickr25k-photos'),
    ):
        path = cfg.model[f'{modality}_checkpoint']
        assert path == (
            f'work_dirs/mixed-{arch_name}-from-in1k_2xb32_{dataset}/epoch_50.pth'
        )
        # The work_dir is the one tools/train.py gives the shipped config.
        stem = path.split('/')[1]
        assert (REPO_ROOT / 'configs/san' / f'{stem}.py').is_file(), stem
    # §3.3 recipe.
    assert cfg.train_dataloader.batch_size == 64
    assert cfg.train_dataloader.persistent_workers is False
    assert cfg.optim_wrapper.optimizer == dict(
        type='SGD', lr=0.1, momentum=0.9, weight_decay=1e-4
    )
    assert (cfg.model.share, cfg.model.label_smooth, cfg.model.margin) == (
        2,
        0.1,
        0.7,
    )
    assert cfg.train_cfg == dict(by_epoch=True, max_epochs=45, val_interval=1)
    assert [
        (s.T_max, s.begin, s.end, s.by_epoch, s.convert_to_iter_based)
        for s in cfg.param_scheduler
    ] == [(35, 0, 35, True, False), (10, 35, 45, True, False)]
    hooks = {h.type: h for h in cfg.custom_hooks}
    assert hooks['SANSBIRPhaseHook'] == dict(
        type='SANSBIRPhaseHook',
        contrastive_epochs=35,
        total_epochs=45,
        triplet_lr=0.1,
    )
    gallery = hooks['SANGalleryHook']
    assert gallery.val_gallery.dataset.ann_file == 'val.txt'
    assert gallery.val_gallery.dataset.data_root.endswith('flickr25k_photos/')
    assert gallery.test_gallery.dataset.data_root.endswith('Flickr15k/photos/')
    assert cfg.default_hooks.checkpoint.save_best == 'retrieval/mAP'
    assert cfg.val_evaluator == dict(type='SANRetrievalMetric', topk=10)
    sketch_train = cfg.train_dataloader.dataset.sketch_pipeline
    assert [t['type'] for t in sketch_train] == [
        'LoadImageFromFile',
        'RandomResizedCrop',
        'RandomFlip',
        'SANRandomRotation',
    ]
    assert (
        sketch_train[-1]['degrees'] == 20 and sketch_train[-1]['fill'] == 255
    )
    assert [t['type'] for t in cfg.val_dataloader.dataset.pipeline][1:3] == [
        'SANResizeShortMax',
        'CenterCrop',
    ]
    assert cfg.model_wrapper_cfg.find_unused_parameters is True

    model = MODELS.build(cfg.model)
    model.train()
    batch = model.data_preprocessor(fake_batch(2, 128, 250), True)
    losses = model(**batch, mode='loss')
    assert {'loss_con', 'loss_cls_sketch', 'loss_cls_photo'} <= set(losses)
    for key, value in losses.items():
        if key.startswith('loss'):
            assert torch.isfinite(value).all(), key


def test_zeroshot_config_loads_and_builds():
    cfg = load_config(str(CONFIG_DIR / f'{ZEROSHOT}.py'))
    assert cfg.default_scope == 'mmpretrain'
    assert cfg.custom_imports.imports == ['projects.san']
    assert cfg.model.backbone == dict(
        type='SANMixedNet', arch='hybrid_patch_2-2_nl'
    )
    assert cfg.model.data_preprocessor.mean == [0.1307 * 255] * 3
    assert cfg.test_dataloader.dataset.ann_file == 'zeroshot_queries.txt'
    (hook,) = cfg.custom_hooks
    assert hook.modality == 'sketch'
    assert hook.test_gallery.dataset.ann_file == 'zeroshot_catalog.txt'
    assert hook.test_gallery.dataset.classes_file == 'mapping_zeroshot.txt'
    assert hook.test_gallery.dataset.data_root.endswith('miniQuickDraw/')
    MODELS.build(cfg.model)


def tiny_sbir_config(stem: str, work_dir: Path) -> Path:
    """The shipped config with a tiny model and data; dumped to a file."""
    cfg = load_config(str(CONFIG_DIR / f'{stem}.py'))
    cfg.model.update(
        arch=None,
        **TINY_ARCH,
        num_classes=NUM_CLASSES,
        embed_dims=32,
        sketch_checkpoint=None,
        photo_checkpoint=None,
        contrastive_epochs=1,
        total_epochs=2,
    )
    cfg.train_cfg.max_epochs = 2
    cfg.param_scheduler[0].update(T_max=1, end=1)
    cfg.param_scheduler[1].update(T_max=1, begin=1, end=2)
    cfg.custom_hooks[0].update(contrastive_epochs=1, total_epochs=2)
    for loader in loaders(cfg):
        loader.update(batch_size=4, num_workers=0, persistent_workers=False)
    shrink(cfg._cfg_dict)
    cfg.default_hooks.logger.interval = 1
    cfg.randomness = dict(seed=0)
    cfg.work_dir = str(work_dir)
    path = work_dir.parent / f'{work_dir.name}.py'
    cfg.dump(str(path))
    return path


def test_tiny_sbir_trains_both_phases_validates_and_tests(
    sbir_root, tmp_path, monkeypatch
):
    monkeypatch.setenv('DATA_ROOT', str(sbir_root))
    stem = 'sbir-hybrid-patch-2-2-nl_2xb64_sketch-eitz-flickr25k'
    work_dir = tmp_path / 'tiny'
    config = tiny_sbir_config(stem, work_dir)
    dumped = Config.fromfile(str(config))
    assert dumped.model.arch is None
    assert tuple(dumped.model.widths) == TINY_ARCH['widths']
    assert dumped.train_dataloader.dataset.sketch_pipeline[1]['scale'] == 64

    train = load_tool('tools/train.py', 'san_sbir_train_tool')
    assert train.main([str(config), '--work-dir', str(work_dir)]) == 0

    # Two epochs: one contrastive (pairs), one triplet; validation each.
    (log,) = list(work_dir.glob('*/vis_data/scalars.json'))
    records = [json.loads(line) for line in log.read_text().splitlines()]
    train_logs = [r for r in records if 'loss' in r]
    assert any('loss_con' in r for r in train_logs)
    assert any('loss_triplet' in r for r in train_logs)
    val_logs = [r for r in records if 'retrieval/mAP' in r]
    assert len(val_logs) == 2
    for record in val_logs:
        assert math.isfinite(record['retrieval/mAP'])
        assert 0 <= record['retrieval/mAP'] <= 100
    (best,) = list(work_dir.glob('best_retrieval_mAP_epoch_*.pth'))

    out = tmp_path / 'metrics.json'
    test = load_tool('tools/test.py', 'san_sbir_test_tool')
    code = test.main(
        [
            str(config),
            str(best),
            '--work-dir',
            str(tmp_path / 'test'),
            '--out',
            str(out),
        ]
    )
    assert code == 0
    metrics = json.loads(out.read_text())
    assert set(metrics) == {'retrieval/mAP', 'retrieval/MRR', 'retrieval/P@10'}
    for value in metrics.values():
        assert math.isfinite(value) and 0 <= value <= 100


def test_tiny_zeroshot_evaluates_with_tools_test(
    sbir_root, tmp_path, monkeypatch
):
    from projects.san.models.mixed_net import SANMixedNet

    monkeypatch.setenv('DATA_ROOT', str(sbir_root))
    cfg = load_config(str(CONFIG_DIR / f'{ZEROSHOT}.py'))
    cfg.model.backbone = dict(type='SANMixedNet', **TINY_ARCH)
    for loader in loaders(cfg):
        loader.update(batch_size=4, num_workers=0, persistent_workers=False)
    shrink(cfg._cfg_dict)
    config = tmp_path / 'zeroshot.py'
    cfg.dump(str(config))

    # A classification checkpoint of the tiny network (backbone + head).
    torch.manual_seed(0)
    backbone = SANMixedNet(**TINY_ARCH)
    state = {f'backbone.{k}': v for k, v in backbone.state_dict().items()}
    state['head.fc.weight'] = torch.zeros(NUM_CLASSES, 64)
    state['head.fc.bias'] = torch.zeros(NUM_CLASSES)
    ckpt = tmp_path / 'classifier.pth'
    torch.save(dict(state_dict=state, meta=dict()), ckpt)

    out = tmp_path / 'metrics.json'
    test = load_tool('tools/test.py', 'san_zeroshot_test_tool')
    argv = [str(config), str(ckpt), '--work-dir', str(tmp_path / 'w')]
    assert test.main([*argv, '--out', str(out)]) == 0
    metrics = json.loads(out.read_text())
    assert set(metrics) == {'retrieval/mAP', 'retrieval/MRR', 'retrieval/P@10'}
    for value in metrics.values():
        assert math.isfinite(value) and 0 <= value <= 100
