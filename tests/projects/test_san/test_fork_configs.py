"""The fork's classification configs (san.md §3.2, §4, §6 items 19-20).

Every ``configs/san/mixed-*.py`` classification config (the zero-shot ones
belong to the SBIR/retrieval tests): the effective recipe per dataset,
the model built on CPU with its parameter count pinned, the complexity
tool's MACs (the fork's NL rule checked against an explicit per-block
sum), the size cross-checks against ``SANResNet`` / ``SAN``, one short real
training run on synthetic txt-list sketches, and the ``-from-in1k``
initialisation from that run's checkpoint.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from mmengine.logging import MMLogger
from mmengine.runner import Runner

import projects.san.models  # noqa: F401  (registers the backbones)
from projects.san.models.mixed_net import ARCH_PRESETS
from shared.registry import MODELS
from shared.utils.entrypoint import load_config
from tests.conftest import REPO_ROOT, load_tool, run_tool

CONFIG_DIR = REPO_ROOT / 'configs/san'
COMPLEXITY = load_tool('tools/analysis/complexity.py')

MNIST_MEAN = [0.1307 * 255] * 3
MNIST_STD = [0.3081 * 255] * 3
IMAGENET_MEAN = [123.675, 116.28, 103.53]
IMAGENET_STD = [58.395, 57.12, 57.375]

#: dataset -> (base dataset type, data root folder, classes, epochs,
#: statistics, per-GPU train / val batch).
DATASETS = {
    'sketch-eitz': ('SANTxtListDataset', 'Sketch_EITZ', 250, 100, 'mnist'),
    'flickr25k-photos': (
        'SANTxtListDataset',
        'flickr25k_photos',
        250,
        100,
        'imagenet',
    ),
    'mini-quickdraw': ('SANTxtListDataset', 'miniQuickDraw', 300, 50, 'mnist'),
    'in1k': ('ImageNet', 'ILSVRC2012', 1000, 50, 'imagenet'),
}
FROM_IN1K = ('resnet26', 'hybrid_patch_2-2_nl')


def dash(arch: str) -> str:
    return arch.replace('_', '-')


def _expected_configs() -> dict[str, dict]:
    """config stem -> what it must hold."""
    out = {}
    for dataset in ('sketch-eitz', 'flickr25k-photos', 'mini-quickdraw'):
        for arch in ARCH_PRESETS:
            out[f'mixed-{dash(arch)}_2xb32_{dataset}'] = dict(
                arch=arch, dataset=dataset, pretrained=None
            )
    for arch in FROM_IN1K:
        out[f'mixed-{dash(arch)}_2xb128_in1k'] = dict(
            arch=arch, dataset='in1k', pretrained=None
        )
        for dataset in ('sketch-eitz', 'flickr25k-photos'):
            out[f'mixed-{dash(arch)}-from-in1k_2xb32_{dataset}'] = dict(
                arch=arch,
                dataset=dataset,
                pretrained=f'mixed-{dash(arch)}_2xb128_in1k',
            )
    return out


EXPECTED = _expected_configs()
STEMS = sorted(EXPECTED)

#: Parameters of each preset with a 250-way head. Matched once against the
#: fork itself: FearsomeTuna/SAN ``model/hybrid.py`` ``MixedModel`` with the
#: preset's arguments gives these exact counts, and its
#: ``util/complexity.py`` the exact MACs below (SA ops replaced by
#: ``shared.ops`` for a CPU forward; the counter only reads shapes).
PARAMS_250 = {
    'resnet26': 12159802,
    'resnet26_nl': 11588922,
    'hybrid_nl_2-2': 10199866,
    'hybrid_nl_3-1': 11375418,
    'nl': 10153018,
    'hybrid_pair_2-2': 9202220,
    'hybrid_pair_2-2_nl': 9402840,
    'hybrid_pair_3-1': 10876292,
    'hybrid_pair_3-1_nl': 10305412,
    'hybrid_patch_2-2': 10419322,
    'hybrid_patch_2-2_nl': 10311866,
    'hybrid_patch_3-1': 11477242,
    'hybrid_patch_3-1_nl': 10906362,
    'san10_pairwise': 8995098,
    'san10_pairwise_nl': 9275436,
    'san10_patchwise': 10304374,
    'san10_patchwise_nl': 10236230,
}
#: MACs per 224² image with a 250-way head (san.md §4 convention; floats
#: once the NL rule fires, .25 where a 7² map enters (HW)²/4).
MACS_250 = {
    'resnet26': 2358106624,
    'resnet26_nl': 2076491080.0,
    'hybrid_nl_2-2': 1940571560.25,
    'hybrid_nl_3-1': 2242843544.25,
    'nl': 12039763588.0,
    'hybrid_pair_2-2': 2139266254,
    'hybrid_pair_2-2_nl': 1953694630.0,
    'hybrid_pair_3-1': 2280124398,
    'hybrid_pair_3-1_nl': 1998508854.0,
    'hybrid_patch_2-2': 1977082624,
    'hybrid_patch_2-2_nl': 1857134152.0,
    'hybrid_patch_3-1': 2249187072,
    'hybrid_patch_3-1_nl': 1967571528.0,
    'san10_pairwise': 2153732622,
    'san10_pairwise_nl': 2032989958.0,
    'san10_patchwise': 1863885568,
    'san10_patchwise_nl': 1845443144.0,
}

LOAD = dict(
    type='LoadImageFromFile',
    imdecode_backend='pillow',
    color_type='color_ignore_orientation',
)
TRAIN_PIPELINE = [
    LOAD,
    dict(
        type='RandomResizedCrop',
        scale=224,
        crop_ratio_range=(0.08, 1.0),
        aspect_ratio_range=(3.0 / 4.0, 4.0 / 3.0),
        backend='pillow',
        interpolation='bilinear',
    ),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='PackInputs'),
]
TEST_PIPELINE = [
    LOAD,
    dict(
        type='ResizeEdge',
        scale=256,
        edge='short',
        backend='pillow',
        interpolation='bilinear',
    ),
    dict(type='CenterCrop', crop_size=224),
    dict(type='PackInputs'),
]


def load(stem, cfg_options=None):
    return load_config(str(CONFIG_DIR / f'{stem}.py'), cfg_options)


def plain(node):
    """ConfigDict/tuple tree -> dicts and lists, for equality checks."""
    if isinstance(node, dict):
        return {k: plain(v) for k, v in node.items()}
    if isinstance(node, (list, tuple)):
        return [plain(v) for v in node]
    return node


def build(cfg):
    """The model as mmengine's Runner builds it (top-level preprocessor)."""
    model_cfg = cfg.model.to_dict()
    model_cfg.setdefault('data_preprocessor', cfg.data_preprocessor.to_dict())
    return MODELS.build(model_cfg)


def num_params(model) -> int:
    return sum(p.numel() for p in model.parameters())


def quiet_init(model):
    """``init_weights`` without mmengine's per-parameter INFO dump."""
    logger = MMLogger.get_current_instance()
    level = logger.level
    logger.setLevel('WARNING')
    try:
        model.init_weights()
    finally:
        logger.setLevel(level)


def test_the_fork_configs_exist():
    found = {
        p.stem
        for p in CONFIG_DIR.glob('mixed-*.py')
        if 'zeroshot' not in p.stem
    }
    assert found == set(EXPECTED)
    assert len(EXPECTED) == 3 * 17 + 2 + 4


@pytest.mark.parametrize('stem', STEMS)
def test_recipe_values(stem):
    cfg = load(stem)
    exp = EXPECTED[stem]
    dataset_type, folder, classes, epochs, stats = DATASETS[exp['dataset']]
    if exp['pretrained']:
        epochs, stats = 50, 'imagenet'

    assert cfg.default_scope == 'mmpretrain'
    assert plain(cfg.custom_imports) == dict(
        imports=['projects.san'], allow_failed_imports=False
    )

    backbone = dict(type='SANMixedNet', arch=exp['arch'])
    if exp['pretrained']:
        checkpoint = f'work_dirs/{exp["pretrained"]}/epoch_50.pth'
        assert cfg.in1k_checkpoint == checkpoint
        assert exp['pretrained'] in EXPECTED  # the in1k run exists
        backbone['init_cfg'] = dict(
            type='Pretrained', checkpoint=checkpoint, prefix='backbone.'
        )
    assert plain(cfg.model) == dict(
        type='ImageClassifier',
        backbone=backbone,
        neck=dict(type='GlobalAveragePooling'),
        head=dict(
            type='LinearClsHead',
            num_classes=classes,
            in_channels=2048,
            loss=dict(type='SANSmoothCELoss', eps=0.1),
            topk=[1, 5],
            init_cfg=None,
        ),
    )
    mean, std = (
        (MNIST_MEAN, MNIST_STD)
        if stats == 'mnist'
        else (IMAGENET_MEAN, IMAGENET_STD)
    )
    assert plain(cfg.data_preprocessor) == dict(
        num_classes=classes, mean=mean, std=std, to_rgb=True
    )

    assert plain(cfg.optim_wrapper) == dict(
        type='OptimWrapper',
        optimizer=dict(type='SGD', lr=0.1, momentum=0.9, weight_decay=1e-4),
    )
    assert plain(cfg.param_scheduler) == dict(
        type='CosineAnnealingLR',
        T_max=epochs,
        eta_min=0,
        by_epoch=True,
        convert_to_iter_based=False,
    )
    assert plain(cfg.train_cfg) == dict(
        by_epoch=True, max_epochs=epochs, val_interval=1
    )

    in1k = exp['dataset'] == 'in1k'
    train_batch, val_batch = (128, 64) if in1k else (32, 16)
    assert plain(cfg.auto_scale_lr) == dict(
        base_batch_size=2 * train_batch, enable=False
    )
    train = cfg.train_dataloader
    assert train.batch_size == train_batch
    assert train.sampler.shuffle is True
    assert train.dataset.type == dataset_type
    assert train.dataset.data_root.endswith(f'/{folder}/')
    assert plain(train.dataset.pipeline) == plain(TRAIN_PIPELINE)
    for key in ('val', 'test'):
        loader = cfg[f'{key}_dataloader']
        assert loader.batch_size == val_batch
        assert loader.sampler.shuffle is False
        assert loader.dataset.type == dataset_type
        assert loader.dataset.data_root == train.dataset.data_root
        assert plain(loader.dataset.pipeline) == plain(TEST_PIPELINE)
        assert plain(cfg[f'{key}_evaluator']) == dict(
            type='Accuracy', topk=[1, 5]
        )
    if in1k:
        assert (train.dataset.split, cfg.val_dataloader.dataset.split) == (
            'train',
            'val',
        )
    else:
        for loader, ann in (
            (train, 'train.txt'),
            (cfg.val_dataloader, 'val.txt'),
        ):
            assert loader.dataset.ann_file == ann
            assert loader.dataset.classes_file == 'mapping.txt'
            assert loader.dataset.check_path_class is True

    assert plain(cfg.default_hooks.checkpoint) == dict(
        type='CheckpointHook', interval=1, max_keep_ckpts=2, save_best=None
    )
    assert cfg.get('custom_hooks') in (None, [])


def test_configs_differ_only_where_the_recipe_says():
    """Flattened, two configs of one dataset differ only in the backbone
    arch (and the config file names); the sketch-eitz and mini-quickdraw
    configs of one arch only in data, classes and epochs."""

    def flat(node, prefix=''):
        if isinstance(node, dict):
            out = {}
            for k, v in node.items():
                out.update(flat(v, f'{prefix}{k}.'))
            return out
        return {prefix[:-1]: plain(node)}

    def keys(stem):
        cfg = load(stem)
        d = flat(cfg.to_dict())
        d.pop('filename', None)
        return d

    a = keys('mixed-resnet26_2xb32_sketch-eitz')
    b = keys('mixed-san10-patchwise-nl_2xb32_sketch-eitz')
    assert {k for k in a if a[k] != b.get(k)} == {'model.backbone.arch'}
    c = keys('mixed-resnet26_2xb32_mini-quickdraw')
    diff = {k for k in a if a[k] != c.get(k)}
    assert {k.split('.')[0] for k in diff} == {
        'data_root',
        'data_preprocessor',
        'model',
        'train_dataloader',
        'val_dataloader',
        'test_dataloader',
        'train_cfg',
        'param_scheduler',
    }
    assert {k for k in diff if k.startswith('model.')} == {
        'model.head.num_classes'
    }


@pytest.mark.parametrize('stem', STEMS)
def test_model_builds_on_cpu_with_pinned_parameters(stem):
    """Every config's model builds without CuPy; its size is the preset's
    250-class count plus 2049 per further class (Linear 2048 -> K)."""
    import sys

    cfg = load(stem)
    model = build(cfg)
    exp = EXPECTED[stem]
    classes = DATASETS[exp['dataset']][2]
    assert num_params(model) == PARAMS_250[exp['arch']] + 2049 * (
        classes - 250
    )
    assert type(model.backbone).__name__ == 'SANMixedNet'
    assert model.head.fc.out_features == classes
    assert 'cupy' not in sys.modules


def test_size_cross_checks_with_san_resnet_and_san():
    """san.md §2.4: pre-activation resnet26 = SANResNet-26 in parameter
    count and san10_* = SAN10 in parameters and MACs, at 1000 classes (the
    head adds 2049 parameters and 2048 MACs per class)."""
    mixed = build(load('mixed-resnet26_2xb128_in1k'))
    ref = build(load('san-resnet26_8xb32_in1k'))
    assert num_params(mixed) == num_params(ref) == 13696552
    x = torch.zeros(1, 3, 224, 224)
    for sa_type in ('pairwise', 'patchwise'):
        ref = COMPLEXITY.build_model(
            str(CONFIG_DIR / f'san10-{sa_type}_8xb32_in1k.py')
        )
        params, macs, _ = COMPLEXITY.count_complexity(ref, x, mode='tensor')
        assert params == PARAMS_250[f'san10_{sa_type}'] + 2049 * 750
        assert macs == MACS_250[f'san10_{sa_type}'] + 2048 * 750


@pytest.mark.parametrize('arch', sorted(ARCH_PRESETS))
def test_macs_of_every_preset(arch):
    model = COMPLEXITY.build_model(
        str(CONFIG_DIR / f'mixed-{dash(arch)}_2xb32_sketch-eitz.py')
    )
    params, macs, _ = COMPLEXITY.count_complexity(
        model, torch.zeros(1, 3, 224, 224), mode='tensor'
    )
    assert params == PARAMS_250[arch]
    assert macs == MACS_250[arch]
    # The NL rule makes the count a float exactly when NL blocks exist.
    assert isinstance(macs, float) == ('nl' in arch.split('_'))


#: NL blocks of a preset as (count, H·W of the block output, channels C):
#: worked out by hand from san.md §2.4 for a 224² input (stem /4 for a
#: 'res' first stage, then /2 per later stage; an 'nl' first stage halves
#: the 224² stem output).
NL_BLOCKS = {
    # res 56², res (T, NL, R) 28²: NL at 28² C512; san (T, NL,S,NL,S) 14²:
    # two NL at C1024.
    'hybrid_patch_2-2_nl': [(1, 28 * 28, 512), (2, 14 * 14, 1024)],
    # nl stages 112², 56², 28², 14² with 3, 2, 4, 1 blocks.
    'nl': [
        (3, 112 * 112, 256),
        (2, 56 * 56, 512),
        (4, 28 * 28, 1024),
        (1, 14 * 14, 2048),
    ],
    # res 56², res 28², nl 14² (4 blocks), nl 7² (1 block).
    'hybrid_nl_2-2': [(4, 14 * 14, 1024), (1, 7 * 7, 2048)],
}


@pytest.mark.parametrize('arch', sorted(NL_BLOCKS))
def test_complexity_tool_applies_the_nl_rule(arch, capsys):
    """The CLI prints the pinned figures, and the NL rule's share equals
    sum over NL blocks of (HW)²/4·(C//8) + (HW)²/4."""
    config = str(CONFIG_DIR / f'mixed-{dash(arch)}_2xb32_sketch-eitz.py')
    assert COMPLEXITY.main([config]) == 0
    out = capsys.readouterr().out
    params, macs = PARAMS_250[arch], MACS_250[arch]
    assert f'Params: {params / 1e6:.2f}M ({params} parameters)' in out
    assert f'MACs: {macs / 1e9:.2f} GMac ({COMPLEXITY._fmt(macs)} MACs)' in out

    model = COMPLEXITY.build_model(config)
    x = torch.zeros(1, 3, 224, 224)
    _, without_nl, _ = COMPLEXITY.count_complexity(
        model, x, rules=dict(COMPLEXITY.RULES), mode='tensor'
    )
    nl_rule = sum(
        n * (hw**2 / 4 * (c // 8) + hw**2 / 4) for n, hw, c in NL_BLOCKS[arch]
    )
    assert macs - without_nl == nl_rule
    n_blocks = sum(type(m).__name__ == 'NLBlock' for m in model.modules())
    assert n_blocks == sum(n for n, _, _ in NL_BLOCKS[arch])


@pytest.fixture(scope='module')
def sketch_root(tmp_path_factory) -> Path:
    """Synthetic Sketch_EITZ-like txt lists: 6 classes, 3 + 2 per class."""
    out = tmp_path_factory.mktemp('san_sketch')
    run_tool(
        [
            'tools/dataset_converters/make_synthetic.py',
            '--format',
            'sketch',
            '--out',
            str(out),
            '--num-classes',
            '6',
            '--per-class',
            '3',
            '--val-per-class',
            '2',
            '--size-range',
            '64',
            '96',
            '--seed',
            '0',
        ]
    )
    return out / 'Sketch'


@pytest.fixture(scope='module')
def trained_checkpoint(sketch_root, tmp_path_factory):
    """One epoch of the sketch-eitz resnet26 config on the synthetic data:
    64² crops (test: short side 72, centre 64), batch 6, 3 iterations."""
    work_dir = tmp_path_factory.mktemp('san_train')
    cfg = load('mixed-resnet26_2xb32_sketch-eitz')
    root = str(sketch_root) + '/'
    for key in ('train', 'val', 'test'):
        loader = cfg[f'{key}_dataloader']
        loader.batch_size = 6
        loader.num_workers = 0
        loader.dataset.data_root = root
    cfg.train_dataloader.dataset.pipeline[1]['scale'] = 64
    for key in ('val', 'test'):
        pipeline = cfg[f'{key}_dataloader'].dataset.pipeline
        pipeline[1]['scale'] = 72
        pipeline[2]['crop_size'] = 64
    cfg.model.head.num_classes = 6
    cfg.data_preprocessor.num_classes = 6
    cfg.train_cfg.max_epochs = 1
    cfg.default_hooks.logger.interval = 1
    cfg.randomness = dict(seed=0, deterministic=False)
    cfg.work_dir = str(work_dir)
    cfg.launcher = 'none'
    runner = Runner.from_cfg(cfg)
    before = {
        k: v.detach().clone() for k, v in runner.model.state_dict().items()
    }
    runner.train()
    metrics = runner.val_loop.run()
    return dict(
        runner=runner,
        before=before,
        metrics=metrics,
        checkpoint=work_dir / 'epoch_1.pth',
    )


def test_sketch_config_trains_on_synthetic_txt_lists(trained_checkpoint):
    runner = trained_checkpoint['runner']
    assert runner.iter == 3  # 18 sketches / batch 6
    assert runner.epoch == 1
    # Epoch 0 of the per-epoch cosine: lr 0.1 all epoch long.
    assert runner.message_hub.get_scalar('train/lr').current() == 0.1
    loss = runner.message_hub.get_scalar('train/loss').current()
    # A fresh 6-way head starts near log(6) (nats).
    assert math.isfinite(loss) and 0.3 < loss < 10
    after = runner.model.state_dict()
    conv = 'backbone.stem.0.weight'
    assert not torch.equal(after[conv], trained_checkpoint['before'][conv])
    assert all(torch.isfinite(v).all() for v in after.values())
    metrics = trained_checkpoint['metrics']
    assert 0.0 <= metrics['accuracy/top1'] <= 100.0
    assert metrics['accuracy/top5'] >= metrics['accuracy/top1']
    assert trained_checkpoint['checkpoint'].is_file()


def test_from_in1k_loads_the_backbone_and_keeps_a_new_head(
    trained_checkpoint,
):
    """The -from-in1k init_cfg loads the trained backbone (6-class head
    dropped by the prefix), the 250-way head keeps its fresh init."""
    checkpoint = str(trained_checkpoint['checkpoint'])
    cfg = load(
        'mixed-resnet26-from-in1k_2xb32_sketch-eitz',
        {'model.backbone.init_cfg.checkpoint': checkpoint},
    )
    torch.manual_seed(0)
    model = build(cfg)
    head_before = model.head.fc.weight.detach().clone()
    quiet_init(model)
    trained = trained_checkpoint['runner'].model.state_dict()
    for key, value in model.backbone.state_dict().items():
        assert torch.equal(value, trained[f'backbone.{key}']), key
    assert model.head.fc.weight.shape == (250, 2048)
    assert torch.equal(model.head.fc.weight, head_before)
