"""Parameters and MACs of a config's model, with the original SAN convention.

This restates the counting convention of upstream ``hszhao/SAN``
``util/complexity.py`` (a copy of sovrasov's flops-counter) plus the NL
rule of the ``FearsomeTuna/SAN`` fork, so the README table (params and
GMac) can be regenerated.

Convention:

* The model is built on CPU in eval mode and called once on a batch-1
  input (3×224² unless ``--shape``) with ``mode='tensor'``: the head's
  ``Linear`` is counted, the data preprocessor is skipped. Other batch
  sizes are refused because the SA and NL rules count one sample.
* Forward hooks are registered by exact ``type()`` (:data:`RULES`):
  subclasses are not counted, a module called k times counts k times, and
  the total is divided by the number of samples (1).
* Not counted: softmax, Unfold, padding modules, cat/expand/view, residual
  adds and every other functional op or matmul.
* Params are the ``numel`` of the parameters with ``requires_grad``.
* A warning names each parameterised leaf module whose type has no rule.

Examples::

    python tools/analysis/complexity.py \\
        configs/san/san10-pairwise_8xb32_in1k.py
    python tools/analysis/complexity.py CONFIG --shape 256 256 --per-layer
"""

from __future__ import annotations

import argparse
import math
import sys
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
if sys.path[0] != str(REPO_ROOT):
    sys.path.insert(0, str(REPO_ROOT))

import torch  # noqa: E402
from torch import nn  # noqa: E402

from shared.ops import Aggregation, Subtraction, Subtraction2  # noqa: E402

__all__ = [
    'RULES',
    'LayerStat',
    'build_model',
    'count_complexity',
    'get_rules',
    'main',
    'parse_args',
]

#: A rule maps (module, positional inputs, output) to the MACs of one call.
Rule = Callable[[nn.Module, tuple, Any], 'int | float']
#: Where the fork's NL block lives (written by the SAN plugin).
NL_BLOCK_FILE = REPO_ROOT / 'projects' / 'san' / 'models' / 'nl_block.py'
NL_BLOCK_MODULE, NL_BLOCK_CLASS = 'projects.san.models.nl_block', 'NLBlock'


def _conv_rule(module: nn.Module, inputs: tuple, output: torch.Tensor) -> int:
    """prod(kernel)·C_in·(C_out/groups)·N·prod(out), + C_out·N·prod(out)."""
    positions = inputs[0].shape[0] * math.prod(output.shape[2:])
    per_position = (
        math.prod(module.kernel_size)
        * module.in_channels
        * (module.out_channels // module.groups)
    )
    bias = module.out_channels * positions if module.bias is not None else 0
    return per_position * positions + bias


def _deconv_rule(
    module: nn.Module, inputs: tuple, output: torch.Tensor
) -> int:
    """kh·kw·C_in·(C_out/groups)·N·H_in·W_in, + C_out·N·H_out·H_out.

    The bias term uses ``H_out`` twice: an upstream typo, kept on purpose.
    """
    x = inputs[0]
    n, (h_in, w_in) = x.shape[0], x.shape[2:]
    kh, kw = module.kernel_size
    per_position = (
        kh * kw * module.in_channels * (module.out_channels // module.groups)
    )
    bias = 0
    if module.bias is not None:
        h_out = output.shape[2]
        bias = module.out_channels * n * h_out * h_out
    return per_position * n * h_in * w_in + bias


def _linear_rule(
    module: nn.Module, inputs: tuple, output: torch.Tensor
) -> int:
    """N·in·out from dims 0 and 1 of the 2-D input/output; no bias term."""
    x = inputs[0]
    return x.shape[0] * x.shape[1] * output.shape[1]


def _activation_rule(
    module: nn.Module, inputs: tuple, output: torch.Tensor
) -> int:
    """numel(out) of the whole batch."""
    return output.numel()


def _pool_rule(module: nn.Module, inputs: tuple, output: torch.Tensor) -> int:
    """numel(in) of the whole batch (not of the output)."""
    return inputs[0].numel()


def _bn_rule(module: nn.Module, inputs: tuple, output: torch.Tensor) -> int:
    """numel(in), doubled when the BN is affine."""
    return inputs[0].numel() * (2 if module.affine else 1)


def _first_sample_rule(
    module: nn.Module, inputs: tuple, output: torch.Tensor
) -> int:
    """numel(out[0]): one sample only (Upsample, Subtraction, Subtraction2).

    For the SA ops this is C·K·L of the (N, C, K, L) output.
    """
    return output[0].numel()


def _aggregation_rule(
    module: nn.Module, inputs: tuple, output: torch.Tensor
) -> int:
    """numel(out[0])·kh·kw: one sample of (N, C, Ho, Wo) times the window."""
    return output[0].numel() * math.prod(module.kernel_size)


def _nl_block_rule(
    module: nn.Module, inputs: tuple, output: torch.Tensor
) -> float:
    """(HW)²/4·inter + (HW)²/4 per sample, as a float, on top of children.

    (H, W) is the block output and ``inter`` the width of ``theta``. This is
    the fork's rule: it undercounts the f·g product and ignores the flooring
    of odd sizes by the 2×2 pool; it is reproduced as is.
    """
    hw = output.shape[-2] * output.shape[-1]
    return hw**2 / 4 * module.theta.out_channels + hw**2 / 4


_POOLS = (
    nn.MaxPool1d,
    nn.MaxPool2d,
    nn.MaxPool3d,
    nn.AvgPool1d,
    nn.AvgPool2d,
    nn.AvgPool3d,
    nn.AdaptiveMaxPool1d,
    nn.AdaptiveMaxPool2d,
    nn.AdaptiveMaxPool3d,
    nn.AdaptiveAvgPool1d,
    nn.AdaptiveAvgPool2d,
    nn.AdaptiveAvgPool3d,
)
_ACTIVATIONS = (nn.ReLU, nn.PReLU, nn.ELU, nn.LeakyReLU, nn.ReLU6)

#: The upstream rule table, keyed by exact module type (no NL rule: see
#: :func:`get_rules`).
RULES: dict[type[nn.Module], Rule] = {
    nn.Conv1d: _conv_rule,
    nn.Conv2d: _conv_rule,
    nn.Conv3d: _conv_rule,
    nn.ConvTranspose2d: _deconv_rule,
    nn.Linear: _linear_rule,
    **dict.fromkeys(_ACTIVATIONS, _activation_rule),
    **dict.fromkeys(_POOLS, _pool_rule),
    nn.BatchNorm1d: _bn_rule,
    nn.BatchNorm2d: _bn_rule,
    nn.BatchNorm3d: _bn_rule,
    nn.Upsample: _first_sample_rule,
    Subtraction: _first_sample_rule,
    Subtraction2: _first_sample_rule,
    Aggregation: _aggregation_rule,
}


def get_rules() -> dict[type[nn.Module], Rule]:
    """:data:`RULES` plus the fork's NL-block rule when the plugin has it.

    The NL block class (``projects.san.models.nl_block.NLBlock``) is
    imported lazily and only if its file exists, so the tool works before
    (and without) the SAN plugin.

    Raises:
        ImportError: ``nl_block.py`` exists but has no ``NLBlock`` class.
    """
    rules = dict(RULES)
    if NL_BLOCK_FILE.is_file():
        import importlib

        module = importlib.import_module(NL_BLOCK_MODULE)
        nl_block = getattr(module, NL_BLOCK_CLASS, None)
        if nl_block is None:
            raise ImportError(
                f'{NL_BLOCK_MODULE} has no class {NL_BLOCK_CLASS}; the NL '
                'rule of the complexity counter is keyed on it'
            )
        rules[nl_block] = _nl_block_rule
    return rules


@dataclass
class LayerStat:
    """Complexity of one named module.

    Attributes:
        name: dotted module name ('' for the root).
        type: class name.
        params: parameters with ``requires_grad``, descendants included.
        own_macs: MACs of this module's own rule (0 without a rule).
        macs: ``own_macs`` plus the MACs of all descendants (the
            per-module view of :func:`count_complexity`).
    """

    name: str
    type: str
    params: int
    own_macs: int | float
    macs: int | float


def _check_batch(inputs: Sequence[torch.Tensor]) -> None:
    if not inputs or not isinstance(inputs[0], torch.Tensor):
        raise ValueError('count_complexity needs at least one input tensor')
    sizes = {x.shape[0] for x in inputs if isinstance(x, torch.Tensor)}
    if sizes != {1}:
        raise ValueError(
            f'batch size must be 1, got input batch sizes {sorted(sizes)}: '
            'the SA and NL rules count one sample only'
        )


def _warn_unruled(model: nn.Module, rules: dict) -> None:
    """Warn once per type of parameterised leaf module without a rule."""
    missing: dict[str, list[str]] = {}
    for name, module in model.named_modules():
        has_params = any(True for _ in module.parameters(recurse=False))
        if has_params and not any(True for _ in module.children()):
            if type(module) not in rules:
                missing.setdefault(type(module).__qualname__, []).append(
                    name or '<root>'
                )
    for type_name, names in missing.items():
        shown = ', '.join(names[:3]) + (', ...' if len(names) > 3 else '')
        warnings.warn(
            f'{len(names)} parameterised module(s) of type {type_name} have '
            f'no MAC rule and count 0 MACs (e.g. {shown})',
            UserWarning,
            stacklevel=3,
        )


def count_complexity(
    model: nn.Module,
    inputs: torch.Tensor | Sequence[torch.Tensor],
    rules: dict[type[nn.Module], Rule] | None = None,
    **forward_kwargs,
) -> tuple[int, int | float, list[LayerStat]]:
    """Count params and MACs of one forward with the upstream convention.

    The model is put in eval mode and called once under ``no_grad`` as
    ``model(*inputs, **forward_kwargs)``; hooks are matched by exact type.
    Every module's previous ``training`` flag is restored afterwards.

    Args:
        model: the model.
        inputs: one tensor or a sequence of positional tensors, each of
            batch size 1, e.g. a (1, 3, 224, 224) image.
        rules: the rule table; defaults to :func:`get_rules`.
        **forward_kwargs: extra keyword arguments, e.g. ``mode='tensor'``.

    Returns:
        tuple: ``(params, macs, per_layer)``: trainable parameters (int),
        MACs per sample (int, or float once an NL rule fired) and one
        :class:`LayerStat` per module of ``model.named_modules()``.

    Raises:
        ValueError: an input batch size is not 1.
    """
    if isinstance(inputs, torch.Tensor):
        inputs = (inputs,)
    inputs = tuple(inputs)
    _check_batch(inputs)
    rules = get_rules() if rules is None else rules
    _warn_unruled(model, rules)

    own: dict[nn.Module, int | float] = {}

    def hook(module: nn.Module, args: tuple, output: Any) -> None:
        own[module] = own.get(module, 0) + rules[type(module)](
            module, args, output
        )

    handles = [
        m.register_forward_hook(hook)
        for m in model.modules()
        if type(m) in rules
    ]
    modes = {m: m.training for m in model.modules()}
    try:
        model.eval()
        with torch.no_grad():
            model(*inputs, **forward_kwargs)
    finally:
        for handle in handles:
            handle.remove()
        for module, training in modes.items():
            module.training = training

    per_layer: list[LayerStat] = []
    totals: dict[nn.Module, int | float] = {}

    def visit(module: nn.Module) -> int | float:
        total = own.get(module, 0)
        for child in module.children():
            total += visit(child)
        totals[module] = total
        return total

    visit(model)
    for name, module in model.named_modules():
        params = sum(p.numel() for p in module.parameters() if p.requires_grad)
        per_layer.append(
            LayerStat(
                name=name,
                type=type(module).__name__,
                params=params,
                own_macs=own.get(module, 0),
                macs=totals[module],
            )
        )
    params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    # Summed over distinct modules (a module registered twice counts its
    # calls once). Upstream divides by the number of samples: 1 here, so the
    # counts stay exact integers (floats only through the NL rule).
    return params, sum(own.values()), per_layer


def _drop_pretrained(cfg: Any) -> None:
    """Set every ``init_cfg`` that loads a checkpoint to None, in place."""

    def loads(init: Any) -> bool:
        items = init if isinstance(init, (list, tuple)) else [init]
        return any(
            isinstance(i, dict) and i.get('type') == 'Pretrained'
            for i in items
        )

    if isinstance(cfg, dict):
        for key, value in cfg.items():
            if key == 'init_cfg' and loads(value):
                cfg[key] = None
            else:
                _drop_pretrained(value)
    elif isinstance(cfg, (list, tuple)):
        for value in cfg:
            _drop_pretrained(value)


def build_model(config: str, cfg_options: dict | None = None) -> nn.Module:
    """Build the config's model on CPU in eval mode, without checkpoints.

    Args:
        config: config file path.
        cfg_options: ``--cfg-options`` overrides.

    Returns:
        nn.Module: the model (``init_weights`` is not called; pretrained
        ``init_cfg`` entries are set to None anyway).
    """
    from mmengine.registry import init_default_scope

    from shared.registry import MODELS
    from shared.utils.entrypoint import explain_registry_errors, load_config

    cfg = load_config(config, cfg_options)
    init_default_scope(cfg.get('default_scope', 'mmpretrain'))
    model_cfg = cfg.model.copy()
    # As mmengine's Runner: the top-level data_preprocessor is the model's.
    if cfg.get('data_preprocessor') is not None:
        model_cfg.setdefault('data_preprocessor', cfg.data_preprocessor)
    _drop_pretrained(model_cfg)
    with explain_registry_errors(cfg):
        model = MODELS.build(model_cfg)
    return model.cpu().eval()


def _fmt(value: int | float) -> str:
    """An exact count: an int as is, a float with all its digits."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def format_report(
    params: int,
    macs: int | float,
    per_layer: list[LayerStat] | None = None,
) -> str:
    """The tool's output: summary lines, optionally a per-module table."""
    lines = [
        f'Params: {params / 1e6:.2f}M ({params} parameters)',
        f'MACs: {macs / 1e9:.2f} GMac ({_fmt(macs)} MACs)',
    ]
    if per_layer:
        width = max(len(s.name or '<model>') for s in per_layer)
        width = max(width, len('module'))
        lines.append('')
        lines.append(
            f'{"module":<{width}}  {"type":<20} {"params":>12} '
            f'{"MACs":>16} {"% MACs":>8} {"own MACs":>16}'
        )
        for s in per_layer:
            share = 100.0 * s.macs / macs if macs else 0.0
            lines.append(
                f'{s.name or "<model>":<{width}}  {s.type:<20} '
                f'{s.params:>12} {_fmt(s.macs):>16} {share:>7.3f}% '
                f'{_fmt(s.own_macs):>16}'
            )
    return '\n'.join(lines)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line options (see the module docstring)."""
    from mmengine.config import DictAction

    parser = argparse.ArgumentParser(
        description="Params and MACs of a config's model with the original "
        'SAN (sovrasov flops-counter) convention, batch 1.'
    )
    parser.add_argument('config', help='config file path')
    parser.add_argument(
        '--shape',
        type=int,
        nargs=2,
        default=(224, 224),
        metavar=('H', 'W'),
        help='input height and width (3 channels, batch 1); default 224 224',
    )
    parser.add_argument(
        '--per-layer',
        action='store_true',
        help='also print a table of params and MACs for every module',
    )
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override config keys, e.g. model.backbone.layers="[2,1,2,4,1]"',
    )
    args = parser.parse_args(argv)
    if min(args.shape) < 1:
        parser.error(f'--shape must be positive, got {list(args.shape)}')
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the process exit status."""
    from shared.utils.compat import apply_patches

    args = parse_args(argv)
    apply_patches()
    model = build_model(args.config, args.cfg_options)
    x = torch.zeros(1, 3, *args.shape)
    params, macs, per_layer = count_complexity(model, x, mode='tensor')
    print(format_report(params, macs, per_layer if args.per_layer else None))
    return 0


if __name__ == '__main__':
    sys.exit(main())
