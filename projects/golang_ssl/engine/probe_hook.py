"""``GAELLEProbeHook``: guards the frozen backbone of the linear probe and
writes the probe summary (``golang_ssl.md`` §7)."""

from __future__ import annotations

import json
import logging
import math
import os.path as osp
from collections.abc import Mapping

import torch
from mmengine.dist import is_main_process
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper

from shared.registry import HOOKS
from shared.utils.checkpoint import safe_load

__all__ = ['GAELLEProbeHook']

#: Label of the best-of-epochs number: it is selected on the eval split.
SELECTED_ON_TEST = 'selected on test'

_MAX_LISTED = 10


def _listed(keys) -> str:
    keys = sorted(keys)
    more = len(keys) - _MAX_LISTED
    return str(keys[:_MAX_LISTED]) + (f' and {more} more' if more > 0 else '')


def _pretrained_path(init_cfg) -> str | None:
    """``checkpoint`` of a ``Pretrained`` entry of ``init_cfg``."""
    cfgs = init_cfg if isinstance(init_cfg, (list, tuple)) else [init_cfg]
    for cfg in cfgs:
        if isinstance(cfg, Mapping) and cfg.get('type') == 'Pretrained':
            if cfg.get('prefix'):
                raise ValueError(
                    'GAELLEProbeHook: the backbone init_cfg loads with '
                    f'prefix={cfg["prefix"]!r}; the probe expects the flat '
                    'backbone dict of tools/model_converters/'
                    'golang_to_backbone.py (no prefix)'
                )
            return cfg.get('checkpoint')
    return None


@HOOKS.register_module()
class GAELLEProbeHook(Hook):
    """Check the frozen pre-trained backbone; summarise the probe's mAP.

    **Before training** (after weight init and any resume), every tensor of
    ``model.backbone.state_dict()`` (parameters and buffers, BN counters
    included) must equal the checkpoint file exactly: same key set, shape,
    dtype and values. mmengine's ``Pretrained`` init loads with
    ``strict=False``, which would hide a missing or mis-named key (SS-PRL
    had the same hole). No backbone parameter may require grad
    (``frozen_stages=4``).

    **After each validation** the metric ``metric_key`` is recorded with the
    epoch (``runner.epoch``, 1-based after a training epoch) and the
    iteration. The history travels in checkpoints and, for the validation
    that follows a checkpoint, in the summary file, so a resumed run keeps
    it.

    **After every validation and after the run** the main process writes
    ``summary_file`` in ``work_dir``: the **last** value (the reported
    number, ``evaluation.md`` §5.5) and the **best** value with its epoch,
    labelled
    ``"selected on test"`` because the probe validates on the eval split.

    Args:
        checkpoint (str, optional): The converter's flat backbone dict.
            Defaults to the ``checkpoint`` of the backbone's ``Pretrained``
            ``init_cfg``.
        metric_key (str): Key in the validation metrics. Defaults to
            ``'multilabel/mAP'`` (``MultiLabelMAP``).
        summary_file (str): File name in ``work_dir``. Defaults to
            ``'probe_summary.json'``.
        check_backbone (bool): Run the ``before_train`` check. Defaults to
            True.

    Raises:
        ValueError: In ``before_train``: no checkpoint path, a checkpoint
            that is not a flat dict of tensors, a key that is missing,
            extra or different (named, up to 10 of each), or a backbone
            parameter that requires grad (named).
        FileNotFoundError: The checkpoint file does not exist.
        KeyError: After validation, ``metric_key`` is not among the metrics
            (the available keys are listed).
    """

    priority = 'LOW'
    _CKPT_KEY = 'gaelle_probe_history'

    def __init__(
        self,
        checkpoint: str | None = None,
        metric_key: str = 'multilabel/mAP',
        summary_file: str = 'probe_summary.json',
        check_backbone: bool = True,
    ) -> None:
        self.checkpoint = checkpoint
        self.metric_key = metric_key
        self.summary_file = summary_file
        self.check_backbone = check_backbone
        self.history: list[dict] = []

    # ------------------------------------------------------------------
    # before_train: the backbone equals the checkpoint and is frozen
    # ------------------------------------------------------------------
    def _backbone(self, runner) -> torch.nn.Module:
        model = runner.model
        if is_model_wrapper(model):
            model = model.module
        backbone = getattr(model, 'backbone', None)
        if backbone is None:
            raise ValueError(
                f'GAELLEProbeHook: {type(model).__name__} has no backbone'
            )
        return backbone

    def _checkpoint_path(self, backbone) -> str:
        path = self.checkpoint
        if path is None:
            path = _pretrained_path(getattr(backbone, 'init_cfg', None))
        if path is None:
            raise ValueError(
                'GAELLEProbeHook: no checkpoint to check against; give the '
                "hook checkpoint=... or set the backbone's init_cfg="
                "dict(type='Pretrained', checkpoint=...)"
            )
        return path

    def check_backbone_against(self, backbone, path: str) -> None:
        """Raise unless ``backbone`` equals the flat dict in ``path``.

        Args:
            backbone (nn.Module): The probe's backbone.
            path (str): The converter output.
        """
        loaded = safe_load(path, map_location='cpu')
        if not isinstance(loaded, Mapping) or not all(
            isinstance(v, torch.Tensor) for v in loaded.values()
        ):
            hint = ''
            if isinstance(loaded, Mapping) and 'state_dict' in loaded:
                hint = (
                    ' (this is a training checkpoint; convert it with '
                    'tools/model_converters/golang_to_backbone.py)'
                )
            raise ValueError(
                f'GAELLEProbeHook: {path} is not a flat dict of tensors' + hint
            )
        own = backbone.state_dict()
        missing = set(own) - set(loaded)
        extra = set(loaded) - set(own)
        differing = []
        for key in sorted(set(own) & set(loaded)):
            a, b = own[key].detach(), loaded[key]
            if a.shape != b.shape or a.dtype != b.dtype:
                differing.append(
                    f'{key} (model {tuple(a.shape)} {a.dtype}, file '
                    f'{tuple(b.shape)} {b.dtype})'
                )
            elif not torch.equal(a.cpu(), b):
                differing.append(key)
        problems = []
        if missing:
            problems.append(f'missing from the file: {_listed(missing)}')
        if extra:
            problems.append(f'not in the backbone: {_listed(extra)}')
        if differing:
            problems.append(f'differing: {_listed(differing)}')
        if problems:
            raise ValueError(
                f'GAELLEProbeHook: the backbone does not equal {path}; '
                + '; '.join(problems)
            )
        trainable = [n for n, p in backbone.named_parameters()
                     if p.requires_grad]  # fmt: skip
        if trainable:
            raise ValueError(
                'GAELLEProbeHook: the probe backbone must be frozen '
                f'(frozen_stages=4), but these parameters require grad: '
                f'{_listed(trainable)}'
            )

    def before_train(self, runner) -> None:
        if not self.check_backbone:
            return
        backbone = self._backbone(runner)
        path = self._checkpoint_path(backbone)
        self.check_backbone_against(backbone, path)
        print_log(
            f'GAELLEProbeHook: backbone equals {path} and is frozen',
            logger='current',
            level=logging.INFO,
        )

    # ------------------------------------------------------------------
    # metric history and summary
    # ------------------------------------------------------------------
    def after_val_epoch(self, runner, metrics=None) -> None:
        if metrics is None:
            return
        if self.metric_key not in metrics:
            raise KeyError(
                f'GAELLEProbeHook: metric {self.metric_key!r} not in the '
                f'validation metrics {sorted(metrics)}'
            )
        value = float(metrics[self.metric_key])
        self.history.append(
            dict(epoch=int(runner.epoch), iter=int(runner.iter), value=value)
        )
        self._write(runner)

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        checkpoint[self._CKPT_KEY] = [dict(r) for r in self.history]

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        """On resume, restore the history.

        The checkpoint of an epoch is saved before that epoch's validation,
        so its result is taken from the summary file in ``work_dir`` (which
        is rewritten after every validation) for every record up to the
        checkpoint's iteration.
        """
        history = {
            r['iter']: dict(r) for r in checkpoint.get(self._CKPT_KEY, [])
        }
        resumed_iter = checkpoint.get('meta', {}).get('iter')
        path = osp.join(runner.work_dir, self.summary_file)
        if resumed_iter is not None and osp.isfile(path):
            with open(path) as f:
                previous = json.load(f).get('history', [])
            for record in previous:
                if record['iter'] <= resumed_iter:
                    history.setdefault(record['iter'], dict(record))
        self.history = [history[k] for k in sorted(history)]

    def summary(self) -> dict:
        """The summary written by :meth:`after_run`."""
        finite = [r for r in self.history if math.isfinite(r['value'])]
        last = self.history[-1] if self.history else None
        best = max(finite, key=lambda r: r['value']) if finite else None
        return dict(
            metric_key=self.metric_key,
            checkpoint=self.checkpoint,
            last_mAP=last['value'] if last else None,
            last_epoch=last['epoch'] if last else None,
            best_mAP=best['value'] if best else None,
            best_epoch=best['epoch'] if best else None,
            best_label=SELECTED_ON_TEST,
            num_evaluations=len(self.history),
            history=[dict(r) for r in self.history],
        )

    def _write(self, runner) -> dict:
        """Write the summary in ``work_dir`` (main process only)."""
        summary = self.summary()
        if summary['checkpoint'] is None:
            try:
                summary['checkpoint'] = _pretrained_path(
                    getattr(self._backbone(runner), 'init_cfg', None)
                )
            except ValueError:
                pass
        if is_main_process():
            path = osp.join(runner.work_dir, self.summary_file)
            with open(path, 'w') as f:
                json.dump(summary, f, indent=2)
        return summary

    def after_run(self, runner) -> None:
        if not self.history:
            print_log(
                f'GAELLEProbeHook: no {self.metric_key!r} was recorded; '
                'the summary has no values',
                logger='current',
                level=logging.WARNING,
            )
        summary = self._write(runner)
        print_log(
            f'GAELLEProbeHook: last {self.metric_key} '
            f'{summary["last_mAP"]} (epoch {summary["last_epoch"]}); best '
            f'{summary["best_mAP"]} (epoch {summary["best_epoch"]}, '
            f'{SELECTED_ON_TEST}); written to '
            f'{osp.join(runner.work_dir, self.summary_file)}',
            logger='current',
            level=logging.INFO,
        )
