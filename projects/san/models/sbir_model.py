"""``SANSBIRModel``: the fork's two-branch SBIR network (``MixedBiModal``).

san.md §2.5 and §3.3. A sketch branch and a photo branch (own stem and
first S − share stages each) feed shared last stages and a shared head;
the output of ``shareFeatVecFc`` is the retrieval embedding.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from mmengine.logging import print_log
from mmengine.model import BaseModel
from mmpretrain.structures import DataSample
from torch import nn

from shared.registry import MODELS
from shared.utils.checkpoint import safe_load

from .gallery_retrieval import GalleryRetrievalMixin
from .mixed_net import SANMixedNet
from .sbir_data_preprocessor import MODALITIES, batch_modality
from .sbir_losses import sbir_contrastive_loss, sbir_triplet_loss
from .smooth_ce_loss import SANSmoothCELoss

__all__ = ['SANSBIRModel']

PHASES = ('contrastive', 'triplet')
#: Width of the hidden layer of the shared head (fixed upstream).
HIDDEN_DIMS = 1024
_NUM_VIEWS = dict(contrastive=2, triplet=3)
_INIT_SHARED = (None, 'sketch', 'image')


def _check_positive_int(name: str, value, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f'SANSBIRModel: {name} must be an int, got {value!r}')
    if value < minimum:
        raise ValueError(
            f'SANSBIRModel: {name} must be >= {minimum}, got {value}'
        )
    return value


@MODELS.register_module()
class SANSBIRModel(GalleryRetrievalMixin, BaseModel):
    """Sketch / photo two-branch retrieval model of the SAN fork.

    Children (the fork's names, so that a ``MixedBiModal`` state_dict
    loads strictly once ``module.`` is stripped):

    - ``sketchStem`` / ``imageStem``: the :class:`SANMixedNet` stem;
    - ``sketchBackbone`` / ``imageBackbone``: Sequential of the first
      S − share stages (``{i}`` = global stage i);
    - ``shareBackbone``: Sequential of the last ``share`` stages, indexed
      from 0 (``shareBackbone.{k}`` = global stage S − share + k; its
      stride/kernel rules use the global index), ending with the final
      BN + ReLU;
    - head: ``avgpool`` → ``shareFc`` Linear(widths[-1], 1024) → ``bn``
      BatchNorm1d(1024) → ``relu`` → ``shareFeatVecFc``
      Linear(1024, embed_dims) (the **embedding**) → ``classifier``
      Linear(embed_dims, num_classes). PyTorch default init.

    The stems and stages come from two :class:`SANMixedNet` built with the
    same structure arguments and ``weight_init='fork'``.

    Loss (``mode='loss'``, §3.3), with e = :attr:`epoch` (global, 0-based),
    CE = :class:`SANSmoothCELoss` (``label_smooth``) and embeddings
    L2-normalised before the metric term:

    - 'contrastive' (views [sketch, photo]): ``loss_con`` = 2e·L_con
      (:func:`sbir_contrastive_loss`), ``loss_cls_sketch`` = c(e)·0.5·CE_s,
      ``loss_cls_photo`` = c(e)·0.5·CE_p, c(e) = ½(1 + cos(πe /
      contrastive_epochs));
    - 'triplet' (views [sketch, photo⁺, photo⁻]): ``loss_triplet`` =
      2e·Triplet(margin), ``loss_cls_sketch`` = c′(e)·0.5·CE_s,
      ``loss_cls_photo`` = c′(e)·0.25·CE_p⁺, ``loss_cls_negative`` =
      c′(e)·0.25·CE_p⁻, c′(e) = ½(1 + cos(πe / total_epochs)).

    ``w_metric`` and ``w_cls`` (the weights) are logged alongside.

    Args:
        arch (str | None): A :data:`ARCH_PRESETS` name; or None with the
            explicit structure below (as :class:`SANMixedNet`).
        share (int): Shared (last) stages, 1 <= share <= S. Defaults to 2.
        num_classes (int): Classifier outputs. Defaults to 250.
        embed_dims (int): Embedding size. Defaults to 1024.
        sketch_checkpoint (str | None): A ``SANMixedNet`` classifier
            checkpoint (keys ``backbone.stem.*``, ``backbone.stages.{i}.*``,
            ``head.*``) for the sketch branch.
        photo_checkpoint (str | None): The same for the photo branch.
        init_shared_from (str | None): None (shared stages stay fresh, as
            upstream), 'sketch' or 'image' (load them from that branch's
            checkpoint). The head always stays fresh.
        label_smooth (float): ε of the classification losses. Defaults to
            0.1.
        margin (float): Margin of the metric losses. Defaults to 0.7.
        contrastive_epochs (int): Length of the contrastive phase (cosine
            period of c). Defaults to 35.
        total_epochs (int): Length of both phases (period of c′). Defaults
            to 45.
        layers, layer_types, widths, sa_type, added_nl_blocks: Explicit
            structure when ``arch`` is None (see :class:`SANMixedNet`).
        data_preprocessor (dict | None): Defaults to
            ``dict(type='SANSBIRDataPreprocessor')``.
        init_cfg (dict | None): MMEngine init config.

    Raises:
        ValueError: ``share`` outside [1, S], an unknown
            ``init_shared_from`` or one without its checkpoint, bad epoch
            counts, or any :class:`SANMixedNet` argument error.
    """

    def __init__(
        self,
        arch: str | None = None,
        share: int = 2,
        num_classes: int = 250,
        embed_dims: int = 1024,
        sketch_checkpoint: str | None = None,
        photo_checkpoint: str | None = None,
        init_shared_from: str | None = None,
        label_smooth: float = 0.1,
        margin: float = 0.7,
        contrastive_epochs: int = 35,
        total_epochs: int = 45,
        layers: Sequence[int] | None = None,
        layer_types: Sequence[str] | None = None,
        widths: Sequence[int] | None = None,
        sa_type: str | None = None,
        added_nl_blocks: Sequence[int] | None = None,
        data_preprocessor: dict | None = None,
        init_cfg: dict | None = None,
    ) -> None:
        if data_preprocessor is None:
            data_preprocessor = dict(type='SANSBIRDataPreprocessor')
        if isinstance(data_preprocessor, dict):
            # Our registry (mmpretrain scope); BaseModel would look the type
            # up in mmengine's root registry.
            data_preprocessor = MODELS.build(data_preprocessor)
        super().__init__(
            data_preprocessor=data_preprocessor, init_cfg=init_cfg
        )
        structure = dict(
            arch=arch,
            layers=layers,
            layer_types=layer_types,
            widths=widths,
            sa_type=sa_type,
            added_nl_blocks=added_nl_blocks,
            weight_init='fork',
        )
        sketch_net = SANMixedNet(**structure)
        image_net = SANMixedNet(**structure)
        num_stages = sketch_net.num_stages
        if isinstance(share, bool) or not isinstance(share, int):
            raise TypeError(
                f'SANSBIRModel: share must be an int, got {share!r}'
            )
        if not 1 <= share <= num_stages:
            raise ValueError(
                f'SANSBIRModel: share must be in [1, {num_stages}] (the '
                f'architecture has {num_stages} stages), got {share}'
            )
        if init_shared_from not in _INIT_SHARED:
            raise ValueError(
                f'SANSBIRModel: init_shared_from must be one of '
                f'{list(_INIT_SHARED)}, got {init_shared_from!r}'
            )
        if init_shared_from is not None:
            needed = dict(sketch=sketch_checkpoint, image=photo_checkpoint)
            if needed[init_shared_from] is None:
                which = 'sketch' if init_shared_from == 'sketch' else 'photo'
                raise ValueError(
                    f'SANSBIRModel: init_shared_from={init_shared_from!r} '
                    f'needs {which}_checkpoint'
                )
        self.contrastive_epochs = _check_positive_int(
            'contrastive_epochs', contrastive_epochs
        )
        self.total_epochs = _check_positive_int('total_epochs', total_epochs)
        if total_epochs < contrastive_epochs:
            raise ValueError(
                f'SANSBIRModel: total_epochs ({total_epochs}) must be >= '
                f'contrastive_epochs ({contrastive_epochs})'
            )
        _check_positive_int('num_classes', num_classes, 2)
        if isinstance(margin, bool) or not float(margin) > 0:
            raise ValueError(
                f'SANSBIRModel: margin must be > 0, got {margin!r}'
            )
        _check_positive_int('embed_dims', embed_dims)

        self.arch = arch
        self.share = share
        self.num_stages = num_stages
        self.num_unshared = num_stages - share
        self.num_classes = num_classes
        self.embed_dims = embed_dims
        self.sketch_checkpoint = sketch_checkpoint
        self.photo_checkpoint = photo_checkpoint
        self.init_shared_from = init_shared_from
        self.margin = float(margin)
        self.phase = 'contrastive'
        self.epoch = 0

        n = self.num_unshared
        self.sketchStem = sketch_net.stem
        self.imageStem = image_net.stem
        self.sketchBackbone = nn.Sequential(*sketch_net.stages[:n])
        self.imageBackbone = nn.Sequential(*image_net.stages[:n])
        self.shareBackbone = nn.Sequential(*sketch_net.stages[n:])
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.shareFc = nn.Linear(sketch_net.widths[-1], HIDDEN_DIMS)
        self.bn = nn.BatchNorm1d(HIDDEN_DIMS)
        self.relu = nn.ReLU(inplace=True)
        self.shareFeatVecFc = nn.Linear(HIDDEN_DIMS, embed_dims)
        self.classifier = nn.Linear(embed_dims, num_classes)
        # No parameters or buffers: adds no state_dict keys.
        self.loss_cls = SANSmoothCELoss(label_smooth)
        # A parameter-free (meta) copy of the structure, not a child module,
        # only for SANMixedNet's input-size check with its clear message.
        with torch.device('meta'):
            checker = SANMixedNet(**{**structure, 'weight_init': None})
        object.__setattr__(self, '_input_checker', checker)

    # ------------------------------------------------------------ structure

    def unshared_modules(self) -> list[nn.Module]:
        """[sketchStem, sketchBackbone, imageStem, imageBackbone]."""
        return [
            self.sketchStem,
            self.sketchBackbone,
            self.imageStem,
            self.imageBackbone,
        ]

    def set_phase(self, phase: str, epoch: int) -> None:
        """Select the loss of a training phase and the epoch of its weights.

        Args:
            phase (str): 'contrastive' or 'triplet'.
            epoch (int): Global 0-based epoch e (>= 0).

        Raises:
            ValueError: An unknown phase or a negative epoch.
        """
        if phase not in PHASES:
            raise ValueError(
                f'SANSBIRModel.set_phase: phase must be one of '
                f'{list(PHASES)}, got {phase!r}'
            )
        if isinstance(epoch, bool) or int(epoch) != epoch or epoch < 0:
            raise ValueError(
                f'SANSBIRModel.set_phase: epoch must be an int >= 0, got '
                f'{epoch!r}'
            )
        self.phase = phase
        self.epoch = int(epoch)

    def loss_weights(self) -> tuple[float, float]:
        """(w_metric, w_cls) of the current phase and epoch.

        w_metric = 2e; w_cls = ½(1 + cos(πe/T)) with T =
        ``contrastive_epochs`` in the contrastive phase and ``total_epochs``
        in the triplet phase.
        """
        period = (
            self.contrastive_epochs
            if self.phase == 'contrastive'
            else self.total_epochs
        )
        w_cls = 0.5 * (1.0 + math.cos(math.pi * self.epoch / period))
        return 2.0 * self.epoch, w_cls

    # ---------------------------------------------------------- checkpoints

    def _branch_targets(
        self, branch: str, with_shared: bool
    ) -> dict[str, torch.Tensor]:
        """Expected keys (model naming) of one branch's checkpoint."""
        stem, backbone = (
            (self.sketchStem, self.sketchBackbone)
            if branch == 'sketch'
            else (self.imageStem, self.imageBackbone)
        )
        modules = {f'{branch}Stem': stem, f'{branch}Backbone': backbone}
        if with_shared:
            modules['shareBackbone'] = self.shareBackbone
        return {
            f'{prefix}.{key}': value
            for prefix, module in modules.items()
            for key, value in module.state_dict().items()
        }

    def _map_branch_key(
        self, key: str, branch: str, with_shared: bool
    ) -> str | None:
        """SANMixedNet classifier key → model key (None: ignored)."""
        if key.startswith(('head.', 'data_preprocessor.')):
            return None
        if key.startswith('backbone.stem.'):
            return f'{branch}Stem.' + key[len('backbone.stem.') :]
        if key.startswith('backbone.stages.'):
            index, _, rest = key[len('backbone.stages.') :].partition('.')
            if index.isdigit() and rest:
                i = int(index)
                if i < self.num_unshared:
                    return f'{branch}Backbone.{i}.{rest}'
                if i < self.num_stages:
                    if not with_shared:
                        return None
                    return f'shareBackbone.{i - self.num_unshared}.{rest}'
        return key  # unexpected; reported with its original name

    def _load_branch(self, path: str, branch: str, with_shared: bool) -> None:
        ckpt = safe_load(path, map_location='cpu')
        state = ckpt.get('state_dict', ckpt) if isinstance(ckpt, dict) else {}
        if not isinstance(state, dict) or not state:
            raise ValueError(
                f'SANSBIRModel: {path} holds no state_dict of tensors'
            )
        state = {
            (k[len('module.') :] if k.startswith('module.') else k): v
            for k, v in state.items()
        }
        targets = self._branch_targets(branch, with_shared)
        mapped: dict[str, torch.Tensor] = {}
        unexpected = []
        for key, value in state.items():
            new_key = self._map_branch_key(key, branch, with_shared)
            if new_key is None:
                continue
            if new_key not in targets:
                unexpected.append(key)
            else:
                mapped[new_key] = value
        missing = sorted(set(targets) - set(mapped))
        if missing or unexpected:
            raise ValueError(
                f'SANSBIRModel: the {branch} checkpoint {path} does not fit '
                f'the {branch} branch (share={self.share} of '
                f'{self.num_stages} stages); missing keys (model names): '
                f'{missing}; unexpected keys (checkpoint names): '
                f'{sorted(unexpected)}'
            )
        bad_shapes = [
            f'{k}: {tuple(v.shape)} vs {tuple(targets[k].shape)}'
            for k, v in mapped.items()
            if tuple(v.shape) != tuple(targets[k].shape)
        ]
        if bad_shapes:
            raise ValueError(
                f'SANSBIRModel: shape mismatch loading {path}: {bad_shapes}'
            )
        # Every key was checked above; the rest of the model is untouched.
        self.load_state_dict(mapped, strict=False)
        print_log(
            f'SANSBIRModel: loaded {len(mapped)} {branch}-branch tensors '
            f'from {path}'
            + (' (shared stages included)' if with_shared else ''),
            logger='current',
        )

    def init_weights(self) -> None:
        """Default init, then the branch checkpoints (if any).

        Only the stems and unshared stages are loaded (plus the shared
        stages from the ``init_shared_from`` branch); the head stays fresh.

        Raises:
            ValueError: A checkpoint with missing or unexpected keys (named
                in the message) or mismatched shapes.
        """
        super().init_weights()
        for branch, path in (
            ('sketch', self.sketch_checkpoint),
            ('image', self.photo_checkpoint),
        ):
            if path is not None:
                self._load_branch(
                    path, branch, self.init_shared_from == branch
                )

    # -------------------------------------------------------------- forward

    def _embed(self, x: torch.Tensor, modality: str) -> torch.Tensor:
        if modality == 'sketch':
            x = self.sketchBackbone(self.sketchStem(x))
        else:
            x = self.imageBackbone(self.imageStem(x))
        x = self.avgpool(self.shareBackbone(x)).flatten(1)
        x = self.relu(self.bn(self.shareFc(x)))
        return self.shareFeatVecFc(x)

    def extract_feat(
        self, inputs: torch.Tensor, modality: str = 'sketch'
    ) -> torch.Tensor:
        """Embed images of one modality.

        Args:
            inputs (Tensor): (N, 3, H, W) normalised images.
            modality (str): 'sketch' or 'photo' (selects the branch).

        Returns:
            Tensor: (N, embed_dims) embeddings (``shareFeatVecFc`` output,
            not normalised).
        """
        if modality not in MODALITIES:
            raise ValueError(
                f'SANSBIRModel: modality must be one of {list(MODALITIES)}, '
                f'got {modality!r}'
            )
        if not isinstance(inputs, torch.Tensor) or inputs.dim() != 4:
            raise ValueError(
                'SANSBIRModel.extract_feat: expected an (N, 3, H, W) tensor, '
                f'got {getattr(inputs, "shape", type(inputs).__name__)}'
            )
        self._input_checker._check_input(inputs)
        return self._embed(inputs, modality)

    def forward(
        self,
        inputs: torch.Tensor | list[torch.Tensor],
        data_samples: list[DataSample] | None = None,
        mode: str = 'tensor',
    ):
        """mmengine entry point.

        Args:
            inputs: 'loss': list of views [sketch, photo(, negative)], each
                (N, 3, H, W); 'predict' / 'tensor': an (N, 3, H, W) tensor
                (modality from the samples, default sketch), or for
                'tensor' also a list of views.
            data_samples: The batch's data samples.
            mode (str): 'loss', 'predict' or 'tensor'.

        Returns:
            dict | list[DataSample] | Tensor | list[Tensor]: losses,
            retrieval predictions, or embedding(s).
        """
        if mode == 'loss':
            return self.loss(inputs, data_samples)
        if mode == 'predict':
            return self.predict(inputs, data_samples)
        if mode == 'tensor':
            if isinstance(inputs, (list, tuple)):
                return [
                    self.extract_feat(x, 'sketch' if i == 0 else 'photo')
                    for i, x in enumerate(inputs)
                ]
            return self.extract_feat(inputs, batch_modality(data_samples))
        raise ValueError(
            f"SANSBIRModel: mode must be 'loss', 'predict' or 'tensor', got "
            f'{mode!r}'
        )

    @staticmethod
    def _labels(
        data_samples: list[DataSample], key: str, device: torch.device
    ) -> torch.Tensor:
        values = []
        for sample in data_samples:
            if key == 'gt_label':
                value = sample.gt_label
            else:
                value = sample.metainfo.get(key)
            if value is None:
                raise ValueError(
                    f'SANSBIRModel.loss: a data sample has no {key!r}'
                )
            values.append(int(torch.as_tensor(value).reshape(-1)[0]))
        return torch.tensor(values, dtype=torch.long, device=device)

    def loss(
        self, inputs: list[torch.Tensor], data_samples: list[DataSample]
    ) -> dict[str, torch.Tensor]:
        """Weighted losses of the current phase (see the class docstring).

        Args:
            inputs (list[Tensor]): Views [sketch, photo] (contrastive) or
                [sketch, photo⁺, photo⁻] (triplet), each (N, 3, H, W)
                normalised, N >= 2 (BatchNorm1d in training).
            data_samples (list[DataSample]): ``gt_label`` (sketch class),
                metainfo ``photo_label`` and, for triplets, ``neg_label``.

        Returns:
            dict[str, Tensor]: Scalar weighted losses (``loss_*``) plus the
            weights ``w_metric`` and ``w_cls`` (logged, not summed).

        Raises:
            ValueError: A view count other than 2 (contrastive) / 3
                (triplet), views of unequal batch size, or missing labels.
        """
        expected = _NUM_VIEWS[self.phase]
        if not isinstance(inputs, (list, tuple)) or len(inputs) != expected:
            got = (
                len(inputs)
                if isinstance(inputs, (list, tuple))
                else type(inputs).__name__
            )
            raise ValueError(
                f'SANSBIRModel.loss: the {self.phase} phase needs {expected} '
                f'views, got {got}; the dataset mode and the model phase '
                'disagree (SANSBIRPhaseHook sets both)'
            )
        sizes = {int(x.shape[0]) for x in inputs}
        if (
            len(sizes) != 1
            or data_samples is None
            or (len(data_samples) != inputs[0].shape[0])
        ):
            raise ValueError(
                f'SANSBIRModel.loss: views of batch sizes {sorted(sizes)} '
                f'with {None if data_samples is None else len(data_samples)} '
                'data samples'
            )
        device = inputs[0].device
        sketch_labels = self._labels(data_samples, 'gt_label', device)
        photo_labels = self._labels(data_samples, 'photo_label', device)
        feats, logits = [], []
        for i, x in enumerate(inputs):
            feat = self.extract_feat(x, 'sketch' if i == 0 else 'photo')
            feats.append(F.normalize(feat, dim=1))
            logits.append(self.classifier(feat))
        w_metric, w_cls = self.loss_weights()
        losses = dict(
            w_metric=torch.tensor(w_metric, device=device),
            w_cls=torch.tensor(w_cls, device=device),
        )
        ce_sketch = self.loss_cls(logits[0], sketch_labels)
        ce_photo = self.loss_cls(logits[1], photo_labels)
        if self.phase == 'contrastive':
            metric = sbir_contrastive_loss(
                feats[0], feats[1], sketch_labels, photo_labels, self.margin
            )
            losses['loss_con'] = w_metric * metric
            losses['loss_cls_sketch'] = w_cls * 0.5 * ce_sketch
            losses['loss_cls_photo'] = w_cls * 0.5 * ce_photo
        else:
            neg_labels = self._labels(data_samples, 'neg_label', device)
            metric = sbir_triplet_loss(*feats, margin=self.margin)
            ce_neg = self.loss_cls(logits[2], neg_labels)
            losses['loss_triplet'] = w_metric * metric
            losses['loss_cls_sketch'] = w_cls * 0.5 * ce_sketch
            losses['loss_cls_photo'] = w_cls * 0.25 * ce_photo
            losses['loss_cls_negative'] = w_cls * 0.25 * ce_neg
        return losses
