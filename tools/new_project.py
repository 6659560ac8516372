"""Scaffold a new plugin: package, config, tests, README and metafile.

Examples::

    python tools/new_project.py my_paper
    python tools/new_project.py my_paper --dest /tmp/scaffold  # elsewhere
    python tools/new_project.py my_paper --force  # rewrite the scaffold

The plugin gets a registered backbone (``MyPaperBackbone``) and head
(``MyPaperClsHead``) that train with mmpretrain's ``ImageClassifier``, a
config inheriting the shared ``configs/_base_`` files, tests under
``tests/projects/my_paper/`` (imports, shapes, a loss forward and a
one-epoch training run on synthetic data), a README with the sections of
the platform spec and a metafile imported by ``model-index.yml``.
``docs/adding_a_plugin.md`` explains the files and the rules.

Only the standard library is used, so the tool starts instantly.
"""

from __future__ import annotations

import argparse
import keyword
import re
import shutil
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
if sys.path[0] != str(REPO_ROOT):
    sys.path.insert(0, str(REPO_ROOT))

# Written into projects/NAME/__init__.py; --force only rewrites plugins
# whose __init__.py carries it, never hand-written ones.
MARKER = 'Scaffolded by ``tools/new_project.py``'

MAX_NAME_LENGTH = 30  # keeps every generated line within 79 columns

# Names that would collide with a top-level folder of configs/ or with the
# repository's own packages.
RESERVED = frozenset(
    {'demo', 'benchmarks', 'shared', 'projects', 'tools', 'tests', 'configs'}
)

BASE_CONFIGS = (
    'datasets/synthetic_imagefolder.py',
    'schedules/sgd-coslr-100e_8xb32.py',
    'default_runtime.py',
)

NUM_CLASSES = 4
BASE_CHANNELS = 16
NUM_STAGES = 3
BATCH_SIZE = 16  # train_dataloader.batch_size of the dataset base
EPOCHS = 5


class ScaffoldError(RuntimeError):
    """The plugin cannot be written as asked."""


# -- names ----------------------------------------------------------------
def _snake_suggestion(name: str) -> str:
    snake = re.sub(r'(?<=[a-z0-9])([A-Z])', r'_\1', name)
    snake = re.sub(r'[^0-9a-zA-Z]+', '_', snake).strip('_').lower()
    return snake.lstrip('0123456789_') or 'my_paper'


def validate_name(name: str) -> None:
    """Raise ``ScaffoldError`` if ``name`` cannot name a new plugin."""
    hint = f"use snake_case, e.g. '{_snake_suggestion(name)}'"
    if not name:
        raise ScaffoldError('the plugin name is empty; ' + hint)
    if name[0].isdigit():
        raise ScaffoldError(
            f'invalid plugin name {name!r}: it must not start with a digit; '
            + hint
        )
    if not re.fullmatch(r'[a-z0-9_]+', name):
        raise ScaffoldError(
            f'invalid plugin name {name!r}: only lowercase letters, digits '
            'and underscores are allowed; ' + hint
        )
    if not re.fullmatch(r'[a-z][a-z0-9]*(_[a-z0-9]+)*', name):
        raise ScaffoldError(
            f'invalid plugin name {name!r}: it must start with a letter and '
            'have no leading, trailing or doubled underscores; ' + hint
        )
    if len(name) > MAX_NAME_LENGTH:
        raise ScaffoldError(
            f'invalid plugin name {name!r}: at most {MAX_NAME_LENGTH} '
            f'characters, got {len(name)}'
        )
    if keyword.iskeyword(name) or keyword.issoftkeyword(name):
        raise ScaffoldError(
            f'invalid plugin name {name!r}: it is a Python keyword'
        )
    if name in sys.stdlib_module_names:
        raise ScaffoldError(
            f'invalid plugin name {name!r}: it shadows the standard library '
            f'module {name!r}'
        )
    if name in RESERVED:
        raise ScaffoldError(
            f'invalid plugin name {name!r}: reserved by the repository '
            f'layout ({", ".join(sorted(RESERVED))})'
        )


def camel_case(name: str) -> str:
    """``my_paper`` -> ``MyPaper`` (the tag of the registered names)."""
    return ''.join(part[:1].upper() + part[1:] for part in name.split('_'))


def config_stem(name: str) -> str:
    """``{backbone}_{N}xb{B}-{schedule}_{dataset}`` for the scaffold."""
    dashed = name.replace('_', '-')
    return f'{dashed}_1xb{BATCH_SIZE}-{EPOCHS}e_synthetic-imagefolder'


def parameter_count(
    in_channels: int = 3,
    base_channels: int = BASE_CHANNELS,
    num_stages: int = NUM_STAGES,
    num_classes: int = NUM_CLASSES,
) -> int:
    """Learnable parameters of the scaffold model (convs, BNs, linear)."""
    total, channels = 0, in_channels
    for stage in range(num_stages):
        out = base_channels * 2**stage
        total += 9 * channels * out + 2 * out + 9 * out * out + 2 * out
        channels = out
    return total + channels * num_classes + num_classes


# -- templates ------------------------------------------------------------
# Placeholders: __NAME__ (snake), __CAMEL__, __STEM__ (config stem),
# __PARAMS__ (millions), __LAST__ (channels of the last stage).

INIT_PY = '''\
"""projects.__NAME__: TODO(to fill) the paper's title.

TODO(to fill): "<Title>" (<Authors>, <Venue> <Year>), <paper URL>;
upstream code: <owner>/<repository>.

Scaffolded by ``tools/new_project.py``. Importing this package imports
``shared`` and every registering submodule of the plugin, so the
configs' ``custom_imports`` make all of its registered names available.
Import each new registering module here.
"""

import shared  # noqa: F401

__IMPORTS__

__all__ = [
    '__CAMEL__Backbone',
    '__CAMEL__ClsHead',
]
'''

PKG_INIT_PY = '''\
"""__DOC__"""
'''

BACKBONE_PY = '''\
"""The __CAMEL__ backbone.

TODO(to fill): replace this small conv net by the paper's backbone, or
delete it if the paper uses an existing one.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from mmengine.model import BaseModule
from torch import nn

from shared.registry import MODELS


def _conv_bn_relu(
    in_channels: int, out_channels: int, stride: int
) -> list[nn.Module]:
    return [
        nn.Conv2d(
            in_channels,
            out_channels,
            kernel_size=3,
            stride=stride,
            padding=1,
            bias=False,
        ),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    ]


@MODELS.register_module()
class __CAMEL__Backbone(BaseModule):
    """A small conv net of conv-bn-relu stages.

    TODO(to fill): the paper this implements ("<Title>", <Authors>,
    <Venue> <Year>, <paper URL>) and the upstream repository.

    Stage ``i`` (0-based) is a stride-2 3x3 conv-bn-relu followed by a
    3x3 conv-bn-relu, with ``base_channels * 2**i`` output channels, so
    it halves the resolution (rounding up).

    Args:
        in_channels (int): Channels of the input images. Defaults to 3.
        base_channels (int): Channels of the first stage; each later
            stage doubles them. Defaults to 16.
        num_stages (int): Number of stages. Defaults to 3.
        out_indices (Sequence[int]): Stages whose outputs are returned;
            negative values count from the end. Defaults to ``(-1,)``.
        init_cfg (dict | list[dict], optional): Initialisation config.
            Defaults to Kaiming for convolutions and constant 1 for
            BatchNorm weights.

    Example:
        >>> import torch
        >>> backbone = __CAMEL__Backbone(
        ...     base_channels=8, out_indices=(0, 2))
        >>> [tuple(x.shape) for x in backbone(torch.rand(2, 3, 32, 32))]
        [(2, 8, 16, 16), (2, 32, 4, 4)]
    """

    def __init__(
        self,
        in_channels: int = 3,
        base_channels: int = 16,
        num_stages: int = 3,
        out_indices: Sequence[int] = (-1,),
        init_cfg: dict | list[dict] | None = None,
    ) -> None:
        if init_cfg is None:
            init_cfg = [
                dict(type='Kaiming', layer='Conv2d'),
                dict(type='Constant', val=1, layer='_BatchNorm'),
            ]
        super().__init__(init_cfg=init_cfg)
        if num_stages < 1:
            raise ValueError(
                f'num_stages must be at least 1, got {num_stages}'
            )
        indices = set()
        for index in out_indices:
            stage = index + num_stages if index < 0 else index
            if not 0 <= stage < num_stages:
                raise ValueError(
                    f'out_indices entry {index} is out of range for '
                    f'num_stages={num_stages}'
                )
            indices.add(stage)
        if not indices:
            raise ValueError('out_indices must name at least one stage')
        self.out_indices = tuple(sorted(indices))
        self.out_channels = tuple(
            base_channels * 2**stage for stage in range(num_stages)
        )
        self.stages = nn.ModuleList()
        channels = in_channels
        for out_channels in self.out_channels:
            self.stages.append(
                nn.Sequential(
                    *_conv_bn_relu(channels, out_channels, stride=2),
                    *_conv_bn_relu(out_channels, out_channels, stride=1),
                )
            )
            channels = out_channels

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Run the stages.

        Args:
            x (torch.Tensor): Images of shape ``(N, in_channels, H, W)``.

        Returns:
            tuple[torch.Tensor, ...]: The outputs of the ``out_indices``
            stages, in stage order; stage ``i`` has shape
            ``(N, base_channels * 2**i, ceil(H / 2**(i + 1)),
            ceil(W / 2**(i + 1)))``.
        """
        outs = []
        for stage, layer in enumerate(self.stages):
            x = layer(x)
            if stage in self.out_indices:
                outs.append(x)
        return tuple(outs)
'''

HEAD_PY = '''\
"""The __CAMEL__ classification head.

TODO(to fill): replace it by the paper's head, or delete it if the paper
uses an existing one.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from mmpretrain.models.heads import ClsHead
from torch import nn

from shared.registry import MODELS


@MODELS.register_module()
class __CAMEL__ClsHead(ClsHead):
    """Global average pooling, optional dropout and a linear classifier.

    TODO(to fill): the paper this implements ("<Title>", <Authors>,
    <Venue> <Year>, <paper URL>) and the upstream repository.

    The head pools the last backbone output itself, so the classifier
    needs no neck. Loss, top-k accuracy and predictions come from
    mmpretrain's ``ClsHead``.

    Args:
        num_classes (int): Number of classes.
        in_channels (int): Channels of the last backbone output.
        dropout_ratio (float): Dropout probability before the linear
            layer; 0 disables it. Defaults to 0.
        init_cfg (dict, optional): Initialisation config. Defaults to a
            normal init (std 0.01) of the linear layer.
        **kwargs: ``loss``, ``topk`` and ``cal_acc`` of ``ClsHead``.
    """

    def __init__(
        self,
        num_classes: int,
        in_channels: int,
        dropout_ratio: float = 0.0,
        init_cfg: dict | None = None,
        **kwargs,
    ) -> None:
        if init_cfg is None:
            init_cfg = dict(type='Normal', layer='Linear', std=0.01)
        super().__init__(init_cfg=init_cfg, **kwargs)
        if num_classes <= 0:
            raise ValueError(
                f'num_classes must be a positive integer, got {num_classes}'
            )
        self.num_classes = num_classes
        self.in_channels = in_channels
        self.dropout = (
            nn.Dropout(dropout_ratio) if dropout_ratio > 0 else nn.Identity()
        )
        self.fc = nn.Linear(in_channels, num_classes)

    def pre_logits(self, feats: tuple[torch.Tensor, ...]) -> torch.Tensor:
        """Pool the last backbone output.

        Args:
            feats (tuple[torch.Tensor, ...]): Backbone outputs; the last
                has shape ``(N, in_channels, H, W)`` or
                ``(N, in_channels)``.

        Returns:
            torch.Tensor: Features of shape ``(N, in_channels)``.
        """
        x = feats[-1]
        if x.dim() == 4:
            x = F.adaptive_avg_pool2d(x, 1).flatten(1)
        return x

    def forward(self, feats: tuple[torch.Tensor, ...]) -> torch.Tensor:
        """Class scores.

        Args:
            feats (tuple[torch.Tensor, ...]): Backbone outputs (see
                :meth:`pre_logits`).

        Returns:
            torch.Tensor: Logits of shape ``(N, num_classes)``.
        """
        return self.fc(self.dropout(self.pre_logits(feats)))
'''

CONFIG_PY = """\
# The __NAME__ scaffold: its backbone and head trained for __EPOCHS__ epochs on
# the synthetic ImageFolder set (4 classes), 1 process x __BATCH__ images.
# TODO(to fill): the paper's recipe, in a config named by the pattern
# {algorithm}_{backbone}_{N}xb{B}[-{schedule}]_{dataset}.py.
_base_ = [
    '../_base_/datasets/synthetic_imagefolder.py',
    '../_base_/schedules/sgd-coslr-100e_8xb32.py',
    '../_base_/default_runtime.py',
]

custom_imports = dict(
    imports=['projects.__NAME__'],
    allow_failed_imports=False,
)

model = dict(
    type='ImageClassifier',
    backbone=dict(
        type='__CAMEL__Backbone',
        in_channels=3,
        base_channels=__BASE__,
        num_stages=__STAGES__,
        out_indices=(-1,),
    ),
    head=dict(
        type='__CAMEL__ClsHead',
        num_classes=__CLASSES__,
        in_channels=__LAST__,
        loss=dict(type='CrossEntropyLoss', loss_weight=1.0),
        topk=(1,),
    ),
)

optim_wrapper = dict(optimizer=dict(lr=0.05))
param_scheduler = dict(T_max=__EPOCHS__)
train_cfg = dict(max_epochs=__EPOCHS__)
auto_scale_lr = dict(base_batch_size=__BATCH__)
"""

TEST_PY = '''\
"""Tests of projects.__NAME__.

Scaffolded by ``tools/new_project.py``. They also run in a tree written
with ``new_project.py --dest DIR``: ``cd DIR && PYTHONPATH=DIR:<repo>
python -m pytest tests/projects/__NAME__``.
"""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope
from mmpretrain.structures import DataSample

import shared
__TEST_IMPORT__
from shared.registry import MODELS
from shared.utils.compat import apply_patches

PLUGIN = '__NAME__'
TAG = '__CAMEL__'  # prefix of the registered names
CONFIG_STEM = '__STEM__'
# The tree holding this plugin, and the repository holding the tools.
PLUGIN_ROOT = Path(__file__).resolve().parents[3]
REPO_ROOT = Path(shared.__file__).resolve().parents[1]
CONFIG = PLUGIN_ROOT / 'configs' / PLUGIN / f'{CONFIG_STEM}.py'
TRAIN = REPO_ROOT / 'tools' / 'train.py'
MAKE_SYNTHETIC = (
    REPO_ROOT / 'tools' / 'dataset_converters' / 'make_synthetic.py'
)


@pytest.fixture(scope='module', autouse=True)
def _setup():
    # tests/conftest.py does this in the repository; repeated for --dest.
    apply_patches()
    init_default_scope('mmpretrain')


def test_plugin_imports_and_registers_its_names():
    plugin = importlib.import_module(f'projects.{PLUGIN}')
    for name in (f'{TAG}Backbone', f'{TAG}ClsHead'):
        cls = MODELS.get(name)
        assert cls is not None, f'{name} is not registered'
        assert cls is getattr(plugin, name)
        assert cls.__module__.startswith(f'projects.{PLUGIN}.')


@pytest.mark.parametrize('size', [32, 33])
def test_backbone_output_shapes(size):
    backbone = MODELS.build(
        dict(
            type='__CAMEL__Backbone',
            base_channels=8,
            num_stages=3,
            out_indices=(0, 1, 2),
        )
    )
    outs = backbone(torch.rand(2, 3, size, size))
    assert isinstance(outs, tuple) and len(outs) == 3
    side = size
    for stage, out in enumerate(outs):
        side = (side + 1) // 2
        assert tuple(out.shape) == (2, 8 * 2**stage, side, side)


def test_backbone_defaults_and_bad_indices():
    outs = __CAMEL__Backbone()(torch.rand(1, 3, 32, 32))
    assert len(outs) == 1 and tuple(outs[0].shape) == (1, 64, 4, 4)
    with pytest.raises(ValueError, match='out of range'):
        __CAMEL__Backbone(num_stages=2, out_indices=(2,))


def test_config_model_loss_forward():
    cfg = Config.fromfile(str(CONFIG))
    model = MODELS.build(cfg.model)
    model.init_weights()
    model.train()
    samples = [DataSample().set_gt_label(label) for label in (0, 3)]
    losses = model(torch.rand(2, 3, 32, 32), samples, mode='loss')
    loss = sum(value for key, value in losses.items() if 'loss' in key)
    assert torch.isfinite(loss)
    loss.backward()
    assert model.head.fc.weight.grad is not None


def _train_command(*args: str) -> list[str]:
    """``python tools/train.py ARGS``, run from this plugin's tree."""
    if PLUGIN_ROOT == REPO_ROOT:
        return [sys.executable, str(TRAIN), *args]
    # Out of tree (--dest): train.py puts the repository first on sys.path,
    # where ``projects`` is the repository's package, so import this
    # plugin from its own tree first; the config's import then finds it.
    code = (
        'import runpy, sys; '
        f'sys.path[:0] = [{str(PLUGIN_ROOT)!r}, {str(REPO_ROOT)!r}]; '
        f'import projects.{PLUGIN}; '
        f'sys.argv[0] = {str(TRAIN)!r}; '
        f'runpy.run_path({str(TRAIN)!r}, run_name="__main__")'
    )
    return [sys.executable, '-c', code, *args]


def test_train_one_epoch(tmp_path):
    assert MAKE_SYNTHETIC.is_file(), f'{MAKE_SYNTHETIC} is missing'
    subprocess.run(
        [
            sys.executable,
            str(MAKE_SYNTHETIC),
            '--format',
            'imagefolder',
            '--out',
            str(tmp_path / 'synthetic_imagefolder'),
            '--num-classes',
            '4',
            '--per-class',
            '8',
            '--size',
            '32',
            '--seed',
            '0',
        ],
        check=True,
        cwd=PLUGIN_ROOT,
    )
    work_dir = tmp_path / 'work_dir'
    result = subprocess.run(
        _train_command(
            str(CONFIG),
            '--work-dir',
            str(work_dir),
            '--cfg-options',
            'train_cfg.max_epochs=1',
            'param_scheduler.T_max=1',
            'default_hooks.logger.interval=1',
        ),
        cwd=PLUGIN_ROOT,
        env=dict(os.environ, DATA_ROOT=str(tmp_path)),
        capture_output=True,
        text=True,
        timeout=600,
    )
    output = result.stdout[-3000:] + result.stderr[-3000:]
    assert result.returncode == 0, output
    assert (work_dir / 'epoch_1.pth').is_file()
'''

README_MD = """\
# __CAMEL__: TODO(to fill) the paper's title

<!-- Scaffolded by tools/new_project.py. Replace every "TODO(to fill)". -->

> TODO(to fill): [<Title>](<paper URL>), <Authors>, <Venue> <Year>.
> Upstream code: [<owner>/<repository>](<upstream URL>).

<!-- [ALGORITHM] -->

## Introduction

TODO(to fill): what the paper proposes and what this plugin implements
(registered names: `__CAMEL__Backbone`, `__CAMEL__ClsHead`; importing
`projects.__NAME__` registers them).

<details>
<summary>Abstract</summary>

TODO(to fill): the paper's abstract.

</details>

## Data preparation

The scaffold config trains on the synthetic ImageFolder set (4 classes):

```shell
python tools/dataset_converters/make_synthetic.py --format imagefolder \\
    --out data/synthetic_imagefolder --num-classes 4 --per-class 32
```

TODO(to fill): the paper's datasets, the converter in
`tools/dataset_converters/` that writes each layout, and the folder tree
expected under `data/` (`DATA_ROOT=/elsewhere` moves every dataloader).

## Commands

```shell
# train on one process (CPU or one GPU)
python tools/train.py configs/__NAME__/__STEM__.py
# train on 8 GPUs
bash tools/dist_train.sh configs/__NAME__/__STEM__.py 8
# test a checkpoint
python tools/test.py configs/__NAME__/__STEM__.py \\
    work_dirs/__STEM__/epoch___EPOCHS__.pth
# the plugin's tests
python -m pytest tests/projects/__NAME__
```

## From the original scripts

__ORIGINAL_TABLE__

## Results

__RESULTS_TABLE__

## Citation

```bibtex
TODO(to fill): the paper's BibTeX entry.
```
"""

METAFILE_YML = """\
# mmpretrain's metafile format; model-index.yml imports this file.
# Parameters and FLOPs are omitted for the custom scaffold model; add them,
# "Paper Results" and (once reproduced) "Results" for the paper's models.
Collections:
  - Name: __CAMEL__
    Metadata:
      Training Data:
        - Synthetic ImageFolder  # TODO(to fill): the paper's datasets
      Training Techniques:
        - SGD with Momentum
        - Weight Decay
      Training Resources: 1x CPU  # TODO(to fill): the paper's hardware
      Epochs: __EPOCHS__
      Batch Size: __BATCH__
      Architecture:
        - __CAMEL__Backbone
        - __CAMEL__ClsHead
    Paper:
      Title: 'TODO(to fill): the paper title'
      URL: 'TODO(to fill): the paper URL'
    README: projects/__NAME__/README.md
    Code:
      URL: projects/__NAME__/__init__.py
      Version: v0.1.0

Models:
  - Name: __STEM__
    In Collection: __CAMEL__
    Config: configs/__NAME__/__STEM__.py
    Metadata:
      Training Data: Synthetic ImageFolder
      Epochs: __EPOCHS__
      Batch Size: __BATCH__
"""


def _table(*rows: tuple[str, ...]) -> str:
    header, *body = rows
    lines = [header, tuple('---' for _ in header), *body]
    return '\n'.join('| ' + ' | '.join(row) + ' |' for row in lines)


ORIGINAL_TABLE = _table(
    ('Original command', 'Config', 'Command here'),
    (
        'TODO(to fill): e.g. `sh tool/train.sh imagenet <model>`',
        'TODO(to fill)',
        'TODO(to fill): e.g. '
        '`bash tools/dist_train.sh configs/__NAME__/<config>.py 8`',
    ),
)

RESULTS_TABLE = _table(
    (
        'Model',
        'Config',
        'Dataset',
        'Paper metrics',
        'Reproduced',
        'Params (M)',
        'FLOPs (G)',
        'Weights / log',
    ),
    (
        '__CAMEL__ scaffold',
        '[config](../../configs/__NAME__/__STEM__.py)',
        'synthetic ImageFolder',
        'TODO(to fill)',
        'not yet reproduced',
        '__PARAMS__',
        'TODO(to fill)',
        'not yet reproduced',
    ),
)


def _import_line(module: str, name: str) -> str:
    line = f'from {module} import {name}'
    if len(line) <= 79:
        return line
    return f'from {module} import (\n    {name},\n)'


def _fill(template: str, name: str) -> str:
    camel = camel_case(name)
    imports = '\n'.join(
        _import_line(f'.{name}_{kind}', f'{camel}{cls}')
        for kind, cls in (('backbone', 'Backbone'), ('head', 'ClsHead'))
    )
    values = {
        '__ORIGINAL_TABLE__': ORIGINAL_TABLE,
        '__RESULTS_TABLE__': RESULTS_TABLE,
        '__IMPORTS__': imports,
        '__TEST_IMPORT__': _import_line(
            f'projects.{name}', f'{camel}Backbone'
        ),
        '__CAMEL__': camel,
        '__STEM__': config_stem(name),
        '__NAME__': name,
        '__PARAMS__': f'{parameter_count() / 1e6:.2f}',
        '__LAST__': str(BASE_CHANNELS * 2 ** (NUM_STAGES - 1)),
        '__BASE__': str(BASE_CHANNELS),
        '__STAGES__': str(NUM_STAGES),
        '__CLASSES__': str(NUM_CLASSES),
        '__EPOCHS__': str(EPOCHS),
        '__BATCH__': str(BATCH_SIZE),
    }
    for key, value in values.items():
        template = template.replace(key, value)
    return template


# -- writing --------------------------------------------------------------
def plan(name: str) -> dict[str, str]:
    """Relative path -> content of every file specific to the plugin."""
    stem = config_stem(name)
    return {
        f'projects/{name}/__init__.py': _fill(INIT_PY, name),
        f'projects/{name}/{name}_backbone.py': _fill(BACKBONE_PY, name),
        f'projects/{name}/{name}_head.py': _fill(HEAD_PY, name),
        f'projects/{name}/README.md': _fill(README_MD, name),
        f'projects/{name}/metafile.yml': _fill(METAFILE_YML, name),
        f'configs/{name}/{stem}.py': _fill(CONFIG_PY, name),
        f'tests/projects/{name}/__init__.py': _fill(
            PKG_INIT_PY.replace('__DOC__', 'Tests of projects.__NAME__.'),
            name,
        ),
        f'tests/projects/{name}/test_{name}.py': _fill(TEST_PY, name),
    }


# Package files of the tree itself, written only where missing (a --dest
# tree needs them so that ``projects.NAME`` and the tests import).
PACKAGE_INITS = {
    'projects/__init__.py': 'The paper plugins. Each sub-package registers '
    'its modules on import.',
    'tests/__init__.py': 'The test suite; it mirrors the sources.',
    'tests/projects/__init__.py': 'Tests of the plugins.',
}


def _check_existing(name: str, dest: Path, force: bool) -> None:
    plugin = dest / 'projects' / name
    files = [dest / rel for rel in plan(name)]
    existing = [p for p in [plugin, *files] if p.exists()]
    if not existing:
        return
    if not force:
        where = plugin if plugin.exists() else existing[0]
        raise ScaffoldError(
            f'plugin {name!r} already exists ({where}); choose another name, '
            'or pass --force to rewrite the scaffold files'
        )
    init = plugin / '__init__.py'
    if plugin.exists() and (
        not init.is_file() or MARKER not in init.read_text(encoding='utf-8')
    ):
        raise ScaffoldError(
            f'{plugin} was not created by tools/new_project.py; refusing to '
            'overwrite it, even with --force'
        )


def _add_to_model_index(dest: Path, name: str) -> str | None:
    """Append the metafile to model-index.yml's Import list."""
    index = dest / 'model-index.yml'
    entry = f'projects/{name}/metafile.yml'
    if not index.exists():
        index.write_text(f'Import:\n  - {entry}\n', encoding='utf-8')
        return 'created'
    lines = index.read_text(encoding='utf-8').splitlines()
    if any(line.strip() in (f'- {entry}', f"- '{entry}'") for line in lines):
        return None
    try:
        start = next(
            i for i, line in enumerate(lines) if line.rstrip() == 'Import:'
        )
    except StopIteration:
        if lines and lines[-1].strip():
            lines.append('')
        lines += ['Import:', f'  - {entry}']
    else:
        end = start + 1
        while end < len(lines) and (
            lines[end].startswith((' ', '\t', '-')) or not lines[end].strip()
        ):
            end += 1
        while end > start + 1 and not lines[end - 1].strip():
            end -= 1
        lines.insert(end, f'  - {entry}')
    index.write_text('\n'.join(lines) + '\n', encoding='utf-8')
    return 'updated'


def scaffold(name: str, dest: Path, force: bool = False) -> list[str]:
    """Write the plugin ``name`` under ``dest``; return what was written."""
    dest = dest.resolve()
    validate_name(name)
    _check_existing(name, dest, force)
    written = []
    for rel in BASE_CONFIGS:
        target = dest / 'configs' / '_base_' / rel
        if not target.exists():
            source = REPO_ROOT / 'configs' / '_base_' / rel
            if not source.is_file():
                raise ScaffoldError(f'base config {source} is missing')
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, target)
            written.append(f'configs/_base_/{rel} (copied)')
    for rel, doc in PACKAGE_INITS.items():
        target = dest / rel
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(f'"""{doc}"""\n', encoding='utf-8')
            written.append(rel)
    for rel, content in plan(name).items():
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content, encoding='utf-8')
        written.append(rel)
    action = _add_to_model_index(dest, name)
    if action:
        written.append(f'model-index.yml ({action})')
    return written


def parse_args(argv=None) -> argparse.Namespace:
    """Command-line options (see the module docstring)."""
    parser = argparse.ArgumentParser(
        description='Scaffold a new plugin (package, config, tests, README, '
        'metafile).'
    )
    parser.add_argument(
        'name',
        help='plugin name in snake_case, e.g. my_paper (registered names '
        'become MyPaperBackbone, MyPaperClsHead)',
    )
    parser.add_argument(
        '--dest',
        type=Path,
        default=REPO_ROOT,
        help='tree to write into (default: this repository); base configs '
        'it lacks are copied into it',
    )
    parser.add_argument(
        '--force',
        action='store_true',
        help='rewrite the files of a plugin scaffolded earlier',
    )
    return parser.parse_args(argv)


def main(argv=None) -> int:
    """Entry point; returns the process exit code."""
    args = parse_args(argv)
    # Every tool applies the compat patches (a no-op for what it uses now,
    # but the same environment as train.py for anything it imports).
    from shared.utils.compat import apply_patches

    apply_patches()
    try:
        written = scaffold(args.name, args.dest, args.force)
    except ScaffoldError as exc:
        print(f'error: {exc}', file=sys.stderr)
        return 2
    dest = args.dest.resolve()
    name, stem = args.name, config_stem(args.name)
    print(f'Created plugin {name!r} under {dest}:')
    for rel in written:
        print(f'  {rel}')
    config = f'configs/{name}/{stem}.py'
    test = f'python -m pytest tests/projects/{name}'
    if dest != REPO_ROOT:
        print(
            f'\nThis tree is outside the repository. Its tests run in place:'
            f'\n  cd {dest} && PYTHONPATH={dest}:{REPO_ROOT} {test}\n'
            'To train with tools/train.py, move projects/, configs/ and '
            'tests/ entries into the repository (train.py puts the '
            'repository first on sys.path).'
        )
    print(
        '\nNext steps (from the repository root):\n'
        f'  1. Fill in every "TODO(to fill)" in projects/{name}/ and '
        f'{config}.\n'
        '  2. Synthetic data for the scaffold config:\n'
        '     python tools/dataset_converters/make_synthetic.py '
        '--format imagefolder --out data/synthetic_imagefolder '
        '--num-classes 4 --per-class 32\n'
        '  3. Train:\n'
        f'     python tools/train.py {config}\n'
        '  4. Test:\n'
        f'     {test}\n'
        '  See docs/adding_a_plugin.md for the rules.'
    )
    return 0


if __name__ == '__main__':
    sys.exit(main())
