"""``SSTLocalizer``: the WSOL-SST model in all six modes (§3.6, §4, §2).

One class covers ``spa``, ``spa+sa``, ``sos`` and ``sos+sa_v1/v2/v3``. The
mode fixes which modules exist (SA, SOS head) and how F5 is routed to the
heads; epoch gates switch SA and the loss terms on during training; predict
mode returns the three map types of the localization-map contract.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from mmengine.logging import print_log
from mmengine.model import BaseModel
from mmpretrain.structures import DataSample
from torch import Tensor

from shared.models.loc_outputs import (
    check_gt_labels,
    pack_loc_samples,
    rank_classes,
    sample_name,
)
from shared.registry import MODELS
from shared.utils.state_dict import load_state_dict_checked, read_weight_file

from .data_preprocessor import SSTDataPreprocessor  # noqa: F401 (registers)
from .functional import (
    PSEUDO_MASK_NORMS,
    PSEUDO_MASK_TARGETS,
    SCG_SOURCES,
    check_so_thr,
    check_threshold,
    edge_code,
    fuse_correlation,
    pseudo_mask,
    ra_loss,
    scg_v1,
    scg_v2,
    self_correlation,
    sparse_loss,
)

__all__ = ['HISTORICAL_MODES', 'MODES', 'SSTLocalizer']


@dataclass(frozen=True)
class _Route:
    """One row of the mode table (§3.6)."""

    with_sa: bool
    with_sos: bool
    cls_from_sa: bool  # cls head reads SA(F5) once SA is on
    sos_from_sa: bool  # SOS head reads SA(F5) once SA is on
    sos_loss: str | None  # default SOS loss


_MODE_TABLE = {
    'spa': _Route(False, False, False, False, None),
    'spa+sa': _Route(True, False, True, False, None),
    'sos': _Route(False, True, False, False, 'bce'),
    'sos+sa_v1': _Route(True, True, True, False, 'mse'),
    'sos+sa_v2': _Route(True, True, False, True, 'mse'),
    'sos+sa_v3': _Route(True, True, True, True, 'bce'),
}
#: The supported modes, in the order of the mode table.
MODES = tuple(_MODE_TABLE)
#: What a whole-model Pretrained init_cfg expects (§5.4): our stage-0
#: checkpoint, or upstream's converted with wsolsst_to_mono.py.
STAGE0_FILE = (
    'the last checkpoint of wsolsst_vgg16-spa-stage0_4xb16-20e_in1k.py, or '
    'vgg16_spa_#1/ilsvrc_epoch_20.pth.tar converted with '
    'tools/model_converters/wsolsst_to_mono.py'
)
#: Upstream modes that are deliberately not ported (§9).
HISTORICAL_MODES = ('spa+hinge', 'mc_sos', 'mc_sos+sa_*', 'rcst', 'sst')

_HSC_DEFAULTS = dict(stages=(4, 5), edge_fo_thr=0.2, edge_so_thr=1.0)
_SOS_DEFAULTS = dict(
    target='tc',
    fg_thr=0.2,
    bg_thr=0.1,
    loss=None,  # None: the mode's default (§3.6)
    loss_weight=0.5,
    norm='batch_global',
)
_RA_DEFAULTS = dict(enable=True, bg_thr=0.1, gap=0.2, loss_weight=0.5)
_SPARSE_DEFAULTS = dict(loss_weight=0.0)
_GATE_DEFAULTS = dict(sa_start=20, sos_start=0, ram_start=20, sparse_start=3)
_TEST_DEFAULTS = dict(
    loc_map='auto',
    scg_version='v2',
    scg_source='fused',
    scg_fo_thr=0.2,
    scg_so_thr=1.0,
    scgv1_fg_thr=0.05,
    scgv1_bg_thr=0.05,
    scg_gt_resample=False,
    edge_thr_follow_scg=False,
)
_LOC_MAPS = ('auto', 'cam', 'scg', 'sos')
_SOS_LOSSES = ('bce', 'mse')
_STAGES = (4, 5)

_OWNER = 'SSTLocalizer'


def _merge(name: str, given: Mapping | None, defaults: dict) -> dict:
    """Defaults updated by ``given``; unknown keys are an error (typos)."""
    cfg = dict(defaults)
    if given is None:
        return cfg
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        raise ValueError(
            f'{_OWNER}: unknown {name} keys {unknown}; valid keys are '
            f'{sorted(defaults)}'
        )
    cfg.update(given)
    return cfg


def _choice(value, choices: Sequence[str], name: str) -> str:
    if value not in choices:
        raise ValueError(
            f'{_OWNER}: {name} must be one of {tuple(choices)}, got {value!r}'
        )
    return value


def _weight(value, name: str) -> float:
    value = float(value)
    if not (value >= 0.0 and math.isfinite(value)):
        raise ValueError(
            f'{_OWNER}: {name} must be a finite number >= 0, got {value}'
        )
    return value


@MODELS.register_module()
class SSTLocalizer(BaseModel):
    """WSOL-SST localizer: SPA, SA, SOS and their combinations.

    Mode table (§3.6); "SA" is :class:`SSTEdgeSelfAttention`, F5 the
    backbone's last feature map:

    ============= == === ============================ ====================
    mode          SA SOS cls head input (SA on)      SOS head input
    ============= == === ============================ ====================
    ``spa``       –  –   F5                           –
    ``spa+sa``    ✓  –   SA(F5)                       –
    ``sos``       –  ✓   F5                           F5
    ``sos+sa_v1`` ✓  ✓   SA(F5)                       F5
    ``sos+sa_v2`` ✓  ✓   F5                           SA(F5)
    ``sos+sa_v3`` ✓  ✓   SA(F5)                       the same SA(F5)
    ============= == === ============================ ====================

    **Gates.** ``current_epoch`` (float, default +inf: all gates open) is
    written by ``SSTEpochGateHook``. During training SA is applied from
    ``gates.sa_start`` (raw F5 feeds both heads before), the SOS, RA and
    sparse terms from ``sos_start``, ``ram_start`` and ``sparse_start``. A
    term whose gate is closed is neither computed nor logged. ``predict``
    always applies SA.

    **HSC** (§3.4) runs once per forward on F4/F5 (``hsc_cfg.stages``), and
    only when needed: for the SA edge code E and for the structure matrix S
    of the pseudo-mask (training, with the training thresholds
    ``hsc_cfg.edge_fo_thr``/``edge_so_thr``) or of the SCG maps (test, with
    ``test_cfg.scg_fo_thr``/``scg_so_thr``; the correlations of the edge code
    are reused when the thresholds agree).

    **Losses** (§4), logged as ``loss_cls``, ``loss_sos``, ``loss_ra`` and
    ``loss_sparse`` (weighted, summed by mmengine) plus ``raw_sos``,
    ``raw_ra`` and ``raw_sparse`` (unweighted, detached, logged only: their
    keys do not contain "loss").

    **Predict** (§2, §6.1): inputs (B, V, 3, H, W) or (B, 3, H, W) (one
    view); one forward over all B·V images. ``pred_score`` is the mean
    softmax of the classification views 0..V−2 (the only view when V = 1);
    all maps come from the last view. Fields: ``loc_labels`` (top-min(5, C)
    by ``pred_score``, then the GT class), ``loc_maps_cam`` = ReLU(cls map),
    ``loc_maps_scg`` (SCG v2 or v1), ``loc_maps_sos`` (σ(SOS) under BCE,
    ReLU(SOS) under MSE, repeated for every label; SOS modes only) and
    ``loc_maps`` (``test_cfg.loc_map``; ``'auto'`` = SOS in SOS modes, SCG
    otherwise). Every map is float32 (K, h, w) on the native grid,
    un-normalised.

    Args:
        mode (str): One of :data:`MODES`. Defaults to ``'sos+sa_v3'``.
        num_classes (int): C, the cls head's output channels.
        backbone (dict): ``SSTVGG16`` / ``SSTInceptionV3`` config.
        cls_head (dict): ``SSTConvHead`` config; ``out_channels`` is C and
            ``in_channels`` defaults to the backbone's F5 channels.
        sos_head (dict): ``SSTConvHead`` config of the SOS head
            (``out_channels`` 1). Used by the SOS modes only.
        sa (dict): ``SSTEdgeSelfAttention`` config; ``embed_dims`` defaults
            to the F5 channels. Used by the SA modes only.
        hsc_cfg (dict | None): ``stages`` (subset of (4, 5)), ``edge_fo_thr``
            (0.2) and ``edge_so_thr`` (1.0): the training thresholds of E
            and of the pseudo-mask's S.
        sos_cfg (dict | None): ``target`` ('tc' | 'bc' | 'raw'), ``fg_thr``
            (0.2), ``bg_thr`` (0.1), ``loss`` ('bce' | 'mse'; default per
            mode), ``loss_weight`` (0.5), ``norm`` ('batch_global' |
            'per_image').
        ra_cfg (dict | None): ``enable`` (True), ``bg_thr`` (0.1), ``gap``
            (0.2), ``loss_weight`` (0.5).
        sparse_cfg (dict | None): ``loss_weight`` (0: off).
        gates (dict | None): ``sa_start`` (20), ``sos_start`` (0),
            ``ram_start`` (20), ``sparse_start`` (3), in epochs (0-based).
        test_cfg (dict | None): ``loc_map`` ('auto'), ``scg_version`` ('v2'
            | 'v1'), ``scg_source`` ('fused' | 'fo' | 'so'), ``scg_fo_thr``
            (0.2), ``scg_so_thr`` (1.0), ``scgv1_fg_thr``/``scgv1_bg_thr``
            (0.05), ``scg_gt_resample`` (False; True makes the GT entries
            of ``loc_maps_scg`` the SCG of the CAM resized to the input and
            back, as upstream's GT-known path; the shared metric boxes the
            first GT-class entry, so it reads them only when the GT class is
            outside the top-k),
            ``edge_thr_follow_scg`` (False; True reproduces upstream, where
            the test SCG thresholds also set the SA edge code's).
        data_preprocessor (dict | torch.nn.Module | None): Defaults to an
            ``SSTDataPreprocessor`` without normalisation.
        init_cfg (dict | list[dict] | None): MMEngine init config.

    Raises:
        ValueError: Unknown mode (the message lists the six modes and names
            the historical ones unsupported) or any §11 configuration error.
    """

    #: Tells ``tools/test.py`` and ``vis_cam.py`` that predict mode returns
    #: ``loc_maps`` (``evaluation.md`` §2.1).
    returns_loc_maps = True

    def __init__(
        self,
        mode: str = 'sos+sa_v3',
        num_classes: int = 200,
        backbone: dict | None = None,
        cls_head: dict | None = None,
        sos_head: dict | None = None,
        sa: dict | None = None,
        hsc_cfg: dict | None = None,
        sos_cfg: dict | None = None,
        ra_cfg: dict | None = None,
        sparse_cfg: dict | None = None,
        gates: dict | None = None,
        test_cfg: dict | None = None,
        data_preprocessor: dict | torch.nn.Module | None = None,
        init_cfg: dict | list[dict] | None = None,
    ) -> None:
        if mode not in _MODE_TABLE:
            raise ValueError(
                f'{_OWNER}: unknown mode {mode!r}; supported modes are '
                f'{list(MODES)}. The historical upstream modes '
                f'{list(HISTORICAL_MODES)} are not supported (not ported).'
            )
        if data_preprocessor is None:
            data_preprocessor = dict(type='SSTDataPreprocessor')
        if isinstance(data_preprocessor, Mapping):
            data_preprocessor = MODELS.build(dict(data_preprocessor))
        super().__init__(
            data_preprocessor=data_preprocessor, init_cfg=init_cfg
        )
        self.mode = mode
        self.route = _MODE_TABLE[mode]
        self.num_classes = int(num_classes)
        if self.num_classes < 1:
            raise ValueError(
                f'{_OWNER}: num_classes must be >= 1, got {num_classes}'
            )
        self.current_epoch = math.inf

        self._log_irrelevant(sos_head=sos_head, sa=sa, sos_cfg=sos_cfg)
        self.hsc_cfg = self._check_hsc(hsc_cfg)
        self.sos_cfg = self._check_sos(sos_cfg)
        self.ra_cfg = self._check_ra(ra_cfg)
        self.sparse_cfg = _merge('sparse_cfg', sparse_cfg, _SPARSE_DEFAULTS)
        self.sparse_cfg['loss_weight'] = _weight(
            self.sparse_cfg['loss_weight'], 'sparse_cfg.loss_weight'
        )
        self.gates = self._check_gates(gates)
        self.test_cfg = self._check_test(test_cfg)

        self.backbone = MODELS.build(
            dict(backbone) if backbone else dict(type='SSTVGG16')
        )
        channels = int(self.backbone.out_channels)
        self.cls_head = MODELS.build(
            self._head_cfg(cls_head, 'cls_head', channels, self.num_classes)
        )
        if self.route.with_sos:
            self.sos_head = MODELS.build(
                self._head_cfg(sos_head, 'sos_head', channels, 1)
            )
        if self.route.with_sa:
            self.sa = MODELS.build(self._sa_cfg(sa, channels))

    # -- configuration --------------------------------------------------------

    @property
    def with_sa(self) -> bool:
        """Whether the mode has the SA module."""
        return self.route.with_sa

    @property
    def with_sos(self) -> bool:
        """Whether the mode has the SOS head."""
        return self.route.with_sos

    @property
    def ra_enabled(self) -> bool:
        """Whether the RA loss is on (read by ``SSTDynamicLrDecayHook``)."""
        return bool(self.ra_cfg['enable'])

    def _log_irrelevant(self, **subcfgs) -> None:
        unused = []
        if not self.route.with_sos:
            unused += [k for k in ('sos_head', 'sos_cfg') if subcfgs[k]]
        if not self.route.with_sa:
            unused += [k for k in ('sa',) if subcfgs[k]]
        if unused:
            print_log(
                f'{_OWNER}: mode {self.mode!r} ignores the irrelevant '
                f'settings {unused}',
                logger='current',
                level=logging.INFO,
            )

    def _check_hsc(self, hsc_cfg: dict | None) -> dict:
        cfg = _merge('hsc_cfg', hsc_cfg, _HSC_DEFAULTS)
        stages = tuple(int(s) for s in cfg['stages'])
        if (
            not stages
            or not set(stages) <= set(_STAGES)
            or len(set(stages)) != len(stages)
        ):
            raise ValueError(
                f'{_OWNER}: hsc_cfg.stages must be a non-empty subset of '
                f'{{4, 5}} without repeats, got {cfg["stages"]}'
            )
        cfg['stages'] = stages
        cfg['edge_fo_thr'] = check_threshold(
            cfg['edge_fo_thr'], 'hsc_cfg.edge_fo_thr'
        )
        cfg['edge_so_thr'] = check_so_thr(
            cfg['edge_so_thr'], 'hsc_cfg.edge_so_thr'
        )
        return cfg

    def init_weights(self) -> None:
        """Initialise; a top-level ``init_cfg`` ``Pretrained`` loads a
        whole-model checkpoint (the ILSVRC stage-0 SPA classifier, §5.2).

        The children initialise first (backbone weights, heads, SA). Then
        every ``backbone.*`` and ``cls_head.*`` tensor must be in the file
        with its shape; ``sos_head.*`` and ``sa.*`` may be absent (they
        start new) and are listed in the log. Unexpected keys are errors.

        Raises:
            FileNotFoundError: The checkpoint does not exist.
            StateDictMismatchError: Missing, unexpected or mis-shaped keys.
        """
        cfg = self.init_cfg
        if not (isinstance(cfg, Mapping) and cfg.get('type') == 'Pretrained'):
            super().init_weights()
            return
        self.init_cfg = None
        try:
            super().init_weights()
        finally:
            self.init_cfg = cfg
        if cfg.get('checkpoint') is None:
            return
        path = cfg['checkpoint']
        state = read_weight_file(path, STAGE0_FILE)
        new = tuple(
            f'{name}.'
            for name in ('sos_head', 'sa')
            if getattr(self, name, None) is not None
        )
        fresh = sorted(
            k
            for k in self.state_dict()
            if k.startswith(new) and k not in state
        )
        if fresh:
            print_log(
                f'{_OWNER}: {len(fresh)} tensors of '
                f'{", ".join(n[:-1] for n in new)} are not in {path} and '
                'start new',
                logger='current',
                level=logging.INFO,
            )
        load_state_dict_checked(
            self,
            state,
            path,
            f'{_OWNER} (mode {self.mode})',
            may_be_missing=lambda key: key.startswith(new) if new else False,
        )

    def _check_sos(self, sos_cfg: dict | None) -> dict:
        cfg = _merge('sos_cfg', sos_cfg, _SOS_DEFAULTS)
        if not self.route.with_sos:
            return cfg
        if cfg['loss'] is None:
            # target='raw' forces MSE (§4.2); otherwise the mode's default.
            cfg['loss'] = (
                'mse' if cfg['target'] == 'raw' else self.route.sos_loss
            )
        _choice(cfg['loss'], _SOS_LOSSES, 'sos_cfg.loss')
        _choice(cfg['target'], PSEUDO_MASK_TARGETS, 'sos_cfg.target')
        _choice(cfg['norm'], PSEUDO_MASK_NORMS, 'sos_cfg.norm')
        cfg['fg_thr'] = check_threshold(cfg['fg_thr'], 'sos_cfg.fg_thr')
        cfg['bg_thr'] = check_threshold(cfg['bg_thr'], 'sos_cfg.bg_thr')
        cfg['loss_weight'] = _weight(cfg['loss_weight'], 'sos_cfg.loss_weight')
        if cfg['target'] == 'tc' and cfg['fg_thr'] <= cfg['bg_thr']:
            raise ValueError(
                f"{_OWNER}: sos_cfg target='tc' needs fg_thr > bg_thr, got "
                f'fg_thr={cfg["fg_thr"]} and bg_thr={cfg["bg_thr"]}'
            )
        if cfg['target'] == 'raw' and cfg['loss'] == 'bce':
            raise ValueError(
                f"{_OWNER}: sos_cfg target='raw' needs loss='mse' (the raw "
                "pseudo-mask is a regression target), got loss='bce'"
            )
        if cfg['norm'] == 'per_image':
            print_log(
                f"{_OWNER}: sos_cfg.norm='per_image' is a deviation from "
                'upstream, which min-max normalised the pseudo-mask over the '
                'whole (global) batch',
                logger='current',
                level=logging.WARNING,
            )
        return cfg

    def _check_ra(self, ra_cfg: dict | None) -> dict:
        cfg = _merge('ra_cfg', ra_cfg, _RA_DEFAULTS)
        cfg['enable'] = bool(cfg['enable'])
        if not cfg['enable']:
            return cfg
        cfg['bg_thr'] = check_threshold(cfg['bg_thr'], 'ra_cfg.bg_thr')
        cfg['gap'] = check_threshold(cfg['gap'], 'ra_cfg.gap')
        cfg['loss_weight'] = _weight(cfg['loss_weight'], 'ra_cfg.loss_weight')
        if self.num_classes < 2:
            raise ValueError(
                f'{_OWNER}: the RA loss needs num_classes >= 2 (the class '
                f'variance is undefined otherwise), got num_classes='
                f'{self.num_classes}; set ra_cfg.enable=False'
            )
        return cfg

    def _check_gates(self, gates: dict | None) -> dict:
        cfg = _merge('gates', gates, _GATE_DEFAULTS)
        for key, value in cfg.items():
            value = float(value)
            if math.isnan(value):
                raise ValueError(f'{_OWNER}: gates.{key} is NaN')
            cfg[key] = value
        if self.mode == 'sos+sa_v2' and cfg['sos_start'] > cfg['sa_start']:
            raise ValueError(
                f"{_OWNER}: mode 'sos+sa_v2' needs sos_start <= sa_start, "
                f'got sos_start={cfg["sos_start"]} and '
                f'sa_start={cfg["sa_start"]}'
            )
        return cfg

    def _check_test(self, test_cfg: dict | None) -> dict:
        cfg = _merge('test_cfg', test_cfg, _TEST_DEFAULTS)
        _choice(cfg['loc_map'], _LOC_MAPS, 'test_cfg.loc_map')
        _choice(cfg['scg_version'], ('v1', 'v2'), 'test_cfg.scg_version')
        _choice(cfg['scg_source'], SCG_SOURCES, 'test_cfg.scg_source')
        cfg['scg_fo_thr'] = check_threshold(
            cfg['scg_fo_thr'], 'test_cfg.scg_fo_thr'
        )
        cfg['scg_so_thr'] = check_so_thr(
            cfg['scg_so_thr'], 'test_cfg.scg_so_thr'
        )
        for key in ('scgv1_fg_thr', 'scgv1_bg_thr'):
            cfg[key] = check_threshold(cfg[key], f'test_cfg.{key}')
        if cfg['loc_map'] == 'sos' and not self.route.with_sos:
            raise ValueError(
                f"{_OWNER}: test_cfg.loc_map='sos' needs an SOS mode, got "
                f'mode {self.mode!r}'
            )
        if cfg['loc_map'] == 'auto':
            cfg['loc_map'] = 'sos' if self.route.with_sos else 'scg'
        cfg['scg_gt_resample'] = bool(cfg['scg_gt_resample'])
        cfg['edge_thr_follow_scg'] = bool(cfg['edge_thr_follow_scg'])
        return cfg

    @staticmethod
    def _head_cfg(
        cfg: dict | None, name: str, channels: int, out_channels: int
    ) -> dict:
        cfg = dict(cfg) if cfg else dict(type='SSTConvHead')
        cfg.setdefault('type', 'SSTConvHead')
        given = cfg.setdefault('in_channels', channels)
        if int(given) != channels:
            raise ValueError(
                f'{_OWNER}: {name}.in_channels={given} differs from the '
                f"backbone's F5 channels ({channels})"
            )
        out = cfg.setdefault('out_channels', out_channels)
        if int(out) != out_channels:
            what = 'num_classes' if name == 'cls_head' else '1'
            raise ValueError(
                f'{_OWNER}: {name}.out_channels={out} must equal {what} '
                f'({out_channels})'
            )
        return cfg

    @staticmethod
    def _sa_cfg(cfg: dict | None, channels: int) -> dict:
        cfg = dict(cfg) if cfg else {}
        cfg.setdefault('type', 'SSTEdgeSelfAttention')
        given = cfg.setdefault('embed_dims', channels)
        if int(given) != channels:
            raise ValueError(
                f'{_OWNER}: sa.embed_dims={given} differs from the '
                f"backbone's F5 channels ({channels})"
            )
        return cfg

    # -- gates and features ---------------------------------------------------

    def gate_open(self, name: str) -> bool:
        """Whether gate ``name`` (e.g. ``'sa_start'``) is open now."""
        return self.current_epoch >= self.gates[name]

    def _hsc(
        self, f4: Tensor, f5: Tensor, fo_thr: float, so_thr: float
    ) -> list[tuple[Tensor, Tensor]]:
        """(FO, SO) of each HSC stage, each (B, N, N), detached."""
        feats = {4: f4, 5: f5}
        return [
            self_correlation(feats[s], fo_thr, so_thr)
            for s in self.hsc_cfg['stages']
        ]

    def _heads(
        self,
        f4: Tensor,
        f5: Tensor,
        sa_on: bool,
        need_sos: bool,
        edge_thr: tuple[float, float],
        need_pairs: bool,
    ) -> tuple[Tensor, Tensor | None, list | None]:
        """Route F5 through SA and the heads.

        Returns:
            tuple: cls_map (B, C, h, w), the SOS output (B, h, w) or None,
            and the HSC (FO, SO) pairs at ``edge_thr`` or None (computed
            when SA needs its edge code or ``need_pairs``).
        """
        use_edge = sa_on and self.sa.use_edge
        pairs = (
            self._hsc(f4, f5, *edge_thr) if use_edge or need_pairs else None
        )
        sa_out = None
        if sa_on:
            sa_out = self.sa(f5, edge_code(pairs) if use_edge else None)
        cls_in = sa_out if sa_on and self.route.cls_from_sa else f5
        cls_map = self.cls_head(cls_in)
        sos = None
        if need_sos:
            sos_in = sa_out if sa_on and self.route.sos_from_sa else f5
            sos = self.sos_head(sos_in)[:, 0]  # keep B even at B = 1
        return cls_map, sos, pairs

    # -- modes ----------------------------------------------------------------

    def forward(
        self,
        inputs: Tensor,
        data_samples: list[DataSample] | None = None,
        mode: str = 'tensor',
    ):
        """MMEngine entry point: ``'loss'``, ``'predict'`` or ``'tensor'``."""
        if mode == 'loss':
            return self.loss(inputs, data_samples)
        if mode == 'predict':
            return self.predict(inputs, data_samples)
        if mode == 'tensor':
            return self._forward(inputs)
        raise RuntimeError(f'{_OWNER}: invalid mode {mode!r}')

    def _forward(self, inputs: Tensor) -> Tensor:
        """Class logits GAP(cls_map) under the current gates.

        Args:
            inputs (Tensor): (B, 3, H, W) or (B, V, 3, H, W).

        Returns:
            Tensor: (B, C), or (B, V, C) for multi-view inputs.
        """
        views = inputs.shape[:2] if inputs.dim() == 5 else None
        x = inputs.flatten(0, 1) if views is not None else inputs
        f4, f5 = self.backbone(x)
        sa_on = self.with_sa and self.gate_open('sa_start')
        edge_thr = (self.hsc_cfg['edge_fo_thr'], self.hsc_cfg['edge_so_thr'])
        cls_map, _, _ = self._heads(f4, f5, sa_on, False, edge_thr, False)
        logits = cls_map.mean(dim=(2, 3))
        return logits.view(*views, -1) if views is not None else logits

    def _labels(self, data_samples, batch: int) -> Tensor:
        if data_samples is None or len(data_samples) != batch:
            got = None if data_samples is None else len(data_samples)
            raise ValueError(
                f'{_OWNER}.loss needs one data sample per image ({batch}), '
                f'got {got}'
            )
        check_gt_labels(data_samples, self.num_classes, _OWNER)
        labels = []
        for pos, sample in enumerate(data_samples):
            label = sample.get('gt_label', None)
            if label is None or label.numel() != 1:
                raise ValueError(
                    f'{_OWNER}.loss needs exactly one gt_label per sample; '
                    f'{sample_name(sample, pos)} has '
                    f'{None if label is None else label.tolist()}'
                )
            labels.append(label.reshape(1))
        return torch.cat(labels).long()

    def loss(
        self, inputs: Tensor, data_samples: list[DataSample]
    ) -> dict[str, Tensor]:
        """Training losses (§4) under the epoch gates.

        Args:
            inputs (Tensor): (B, 3, H, W) normalised images (a (B, 1, 3, H,
                W) single-view batch is accepted).
            data_samples (list[DataSample]): One ``gt_label`` each.

        Returns:
            dict[str, Tensor]: ``loss_cls`` and, when their gates are open,
            ``loss_sos``/``raw_sos``, ``loss_ra``/``raw_ra`` and
            ``loss_sparse``/``raw_sparse`` (weight > 0 only).

        Raises:
            ValueError: Multi-view input, missing or out-of-range labels.
            FloatingPointError: A loss term is NaN or Inf (named).
        """
        if inputs.dim() == 5:
            if inputs.size(1) != 1:
                raise ValueError(
                    f'{_OWNER}.loss takes one view per image, got '
                    f'{inputs.size(1)} views (shape {tuple(inputs.shape)})'
                )
            inputs = inputs[:, 0]
        if inputs.dim() != 4:
            raise ValueError(
                f'{_OWNER}.loss expects (B, 3, H, W) images, got shape '
                f'{tuple(inputs.shape)}'
            )
        labels = self._labels(data_samples, inputs.size(0)).to(inputs.device)
        sa_on = self.with_sa and self.gate_open('sa_start')
        sos_on = self.with_sos and self.gate_open('sos_start')
        ra_on = self.ra_enabled and self.gate_open('ram_start')
        sparse_on = self.sparse_cfg['loss_weight'] > 0 and self.gate_open(
            'sparse_start'
        )
        edge_thr = (self.hsc_cfg['edge_fo_thr'], self.hsc_cfg['edge_so_thr'])

        f4, f5 = self.backbone(inputs)
        cls_map, sos, pairs = self._heads(
            f4, f5, sa_on, sos_on, edge_thr, need_pairs=sos_on
        )
        batch = torch.arange(inputs.size(0), device=inputs.device)
        losses = {
            'loss_cls': F.cross_entropy(
                cls_map.float().mean(dim=(2, 3)), labels
            )
        }
        raw = {}
        if sos_on:
            cfg = self.sos_cfg
            target = pseudo_mask(
                cls_map.detach()[batch, labels],
                fuse_correlation(pairs, 'fused'),
                cfg['fg_thr'],
                cfg['bg_thr'],
                target=cfg['target'],
                norm=cfg['norm'],
            ).float()
            if cfg['loss'] == 'bce':
                value = F.binary_cross_entropy_with_logits(sos.float(), target)
            else:
                value = F.mse_loss(sos.float(), target)
            raw['sos'] = (value, cfg['loss_weight'])
        if ra_on:
            value = ra_loss(
                cls_map.float(),
                labels,
                self.ra_cfg['bg_thr'],
                self.ra_cfg['gap'],
            )
            raw['ra'] = (value, self.ra_cfg['loss_weight'])
        if sparse_on:
            value = sparse_loss(cls_map.float(), labels)
            raw['sparse'] = (value, self.sparse_cfg['loss_weight'])
        for name, (value, weight) in raw.items():
            losses[f'loss_{name}'] = weight * value
            losses[f'raw_{name}'] = value.detach()
        self._check_finite_losses(losses)
        return losses

    @staticmethod
    def _check_finite_losses(losses: dict[str, Tensor]) -> None:
        values = torch.stack([v.detach().float() for v in losses.values()])
        finite = torch.isfinite(values)
        if bool(finite.all()):  # one device sync per step
            return
        bad = [k for k, ok in zip(losses, finite.tolist()) if not ok]
        raise FloatingPointError(
            f'{_OWNER}: NaN or Inf in the loss terms {bad} (diverged '
            'training, a broken checkpoint or fp16 overflow?)'
        )

    # -- predict --------------------------------------------------------------

    def _loc_labels(
        self, ranked: Tensor, data_samples
    ) -> tuple[Tensor, list[int]]:
        """Padded (B, Kmax) labels (top-k, then GT) and each sample's K."""
        rows = []
        for i in range(ranked.size(0)):
            row = ranked[i]
            sample = None if data_samples is None else data_samples[i]
            if sample is not None and 'gt_label' in sample:
                gt = sample.gt_label.reshape(-1).to(row.device).long()
                row = torch.cat([row, gt])
            rows.append(row)
        counts = [row.numel() for row in rows]
        width = max(counts)
        padded = [
            torch.cat([row, row[-1:].expand(width - row.numel())])
            for row in rows
        ]
        return torch.stack(padded), counts

    def _scg(self, cam: Tensor, s: Tensor) -> Tensor:
        if self.test_cfg['scg_version'] == 'v2':
            return scg_v2(cam, s)
        return scg_v1(
            cam,
            s,
            self.test_cfg['scgv1_fg_thr'],
            self.test_cfg['scgv1_bg_thr'],
        )

    @torch.no_grad()
    def predict(
        self, inputs: Tensor, data_samples: list[DataSample] | None = None
    ) -> list[DataSample]:
        """Scores and the three localisation maps (§2, §6.1).

        Args:
            inputs (Tensor): (B, V, 3, H, W) normalised views, the last being
                the localisation view, or (B, 3, H, W) (V = 1).
            data_samples (list[DataSample] | None): Their ``gt_label`` is
                appended to ``loc_labels``.

        Returns:
            list[DataSample]: ``pred_score`` (C,), ``pred_label``,
            ``loc_labels`` (K,), ``loc_maps``, ``loc_maps_cam``,
            ``loc_maps_scg`` and (SOS modes) ``loc_maps_sos``, each float32
            (K, h, w).

        Raises:
            ValueError: Bad input shape, a view count that differs from the
                samples' ``num_views``, or a label outside [0, C).
            FloatingPointError: NaN or Inf in the scores or a map.
        """
        if inputs.dim() == 4:
            inputs = inputs.unsqueeze(1)
        if inputs.dim() != 5:
            raise ValueError(
                f'{_OWNER}.predict expects (B, V, 3, H, W) or (B, 3, H, W) '
                f'images, got shape {tuple(inputs.shape)}'
            )
        b, v = inputs.shape[:2]
        if data_samples is not None:
            if len(data_samples) != b:
                raise ValueError(
                    f'{_OWNER}: {len(data_samples)} data samples for a batch '
                    f'of {b} images'
                )
            for pos, sample in enumerate(data_samples):
                expected = sample.metainfo.get('num_views')
                if expected is not None and int(expected) != v:
                    raise ValueError(
                        f'{_OWNER}: {sample_name(sample, pos)} was packed '
                        f'with num_views={expected} but the batch has V={v}'
                    )
        check_gt_labels(data_samples, self.num_classes, _OWNER)
        cfg = self.test_cfg
        scg_thr = (cfg['scg_fo_thr'], cfg['scg_so_thr'])
        edge_thr = (
            scg_thr
            if cfg['edge_thr_follow_scg']
            else (self.hsc_cfg['edge_fo_thr'], self.hsc_cfg['edge_so_thr'])
        )

        f4, f5 = self.backbone(inputs.flatten(0, 1))
        cls_map, sos, pairs = self._heads(
            f4, f5, self.with_sa, self.with_sos, edge_thr, need_pairs=False
        )
        loc = torch.arange(b, device=inputs.device) * v + (v - 1)
        if pairs is not None and edge_thr == scg_thr:
            loc_pairs = [(fo[loc], so[loc]) for fo, so in pairs]
        else:
            loc_pairs = self._hsc(f4[loc], f5[loc], *scg_thr)
        structure = fuse_correlation(loc_pairs, cfg['scg_source'])

        # Mean softmax over the classification views, as logits whose
        # softmax is exactly that mean: log(mean_v p_v).
        logits = cls_map.float().mean(dim=(2, 3)).view(b, v, -1)
        cls_logits = logits[:, : v - 1] if v > 1 else logits
        score_logits = torch.logsumexp(
            cls_logits.log_softmax(dim=2), dim=1
        ) - math.log(cls_logits.size(1))

        ranked = rank_classes(score_logits)
        labels, counts = self._loc_labels(ranked, data_samples)
        loc_map = cls_map[loc].float()
        index = labels[:, :, None, None].expand(-1, -1, *loc_map.shape[2:])
        cam = F.relu(torch.gather(loc_map, 1, index))  # (B, Kmax, h, w)
        scg_in = cam
        topk = ranked.size(1)
        if cfg['scg_gt_resample'] and labels.size(1) > topk:
            # Upstream's GT-known SCG read the CAM resized to the input and
            # back (cv2 INTER_LINEAR = bilinear, half-pixel, no antialias).
            scg_in = cam.clone()
            scg_in[:, topk:] = F.interpolate(
                F.interpolate(
                    cam[:, topk:],
                    size=inputs.shape[-2:],
                    mode='bilinear',
                    align_corners=False,
                ),
                size=cam.shape[-2:],
                mode='bilinear',
                align_corners=False,
            )
        maps = {
            'loc_maps_cam': cam,
            'loc_maps_scg': self._scg(scg_in, structure).float(),
        }
        if self.with_sos:
            sos_loc = sos[loc].float()
            sos_loc = (
                torch.sigmoid(sos_loc)
                if self.sos_cfg['loss'] == 'bce'
                else F.relu(sos_loc)
            )
            maps['loc_maps_sos'] = sos_loc[:, None].expand_as(cam).contiguous()
        self._check_finite_maps(maps, data_samples)
        primary = maps[f'loc_maps_{cfg["loc_map"]}']

        samples = pack_loc_samples(
            score_logits,
            data_samples,
            lambda i, lab: primary[i, : lab.numel()],
            _OWNER,
        )
        for i, sample in enumerate(samples):
            for key, value in maps.items():
                sample.set_field(
                    value[i, : counts[i]], key, dtype=torch.Tensor
                )
        return samples

    @staticmethod
    def _check_finite_maps(maps: dict[str, Tensor], data_samples) -> None:
        finite = torch.stack(
            [torch.isfinite(m).flatten(1).all(dim=1) for m in maps.values()]
        )  # (types, B)
        if bool(finite.all()):
            return
        bad = []
        for key, row in zip(maps, finite.tolist()):
            for i, ok in enumerate(row):
                if not ok:
                    sample = None if data_samples is None else data_samples[i]
                    bad.append(f'{key} of {sample_name(sample, i)}')
        raise FloatingPointError(f'{_OWNER}: NaN or Inf in ' + '; '.join(bad))
