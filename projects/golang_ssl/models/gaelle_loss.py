"""``GAELLELoss``: SwAV global, local and local-to-global terms (§4.3, §4.5).

The global term has the arithmetic of SwAV (and of mmpretrain's
``SwAVLoss``). The local term swaps the codes of the M attention tokens
between the first-group views, with a batch-shared permutation of the
predictor's tokens. The L2G term lets the mean token of a view predict the
global codes. The per-iteration queue logic of SwAV (check, prepend, FIFO
fill, Sinkhorn, keep the batch rows) lives in :meth:`GAELLELoss.forward`;
``GAELLEHook`` creates, resets and persists the queues.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from mmengine.model import BaseModule
from torch import nn

from shared.registry import MODELS

from .sinkhorn import distributed_sinkhorn_knopp

__all__ = ['GAELLELoss']

_TERMS = ('glb', 'alg', 'l2g')
_DTYPES = {'float32': torch.float32, 'float64': torch.float64}


def _swapped_ce(codes: torch.Tensor, scores: torch.Tensor, temperature: float):
    """CE(q, s) = −Σ_k q_k log_softmax(s / T)_k, averaged over rows.

    Args:
        codes (Tensor): ``(R, K)`` targets (rows sum to 1), no gradient.
        scores (Tensor): ``(R, K)`` prototype scores (cosines).
        temperature (float): T.

    Returns:
        Tensor: Scalar, in nats.
    """
    log_p = F.log_softmax(scores / temperature, dim=1)
    return -(codes.to(log_p.dtype) * log_p).sum(dim=1).mean()


@MODELS.register_module()
class GAELLELoss(BaseModule):
    """GAELLE loss: L = w_glb L_glob + w_alg L_loc + w_l2g L_l2g.

    Notation: B per-GPU batch, V = ``num_crops[0]`` first-group (global)
    views, N = Σ ``num_crops`` views, M tokens per first-group view, A =
    ``crops_for_assign``, T the temperature and CE(q, s) =
    −Σ_k q_k log_softmax(s/T)_k averaged over rows.

    - **Global (SwAV).** For c ∈ A, q_c = Sinkhorn(C_g z_c) (the active
      queue prepended, the last B rows kept);
      L_glob = (1/|A|) Σ_c (1/(N−1)) Σ_{v≠c} CE(q_c, C_g z_v).
    - **Local.** For c ∈ A, q^l_c = Sinkhorn(C_l y_c) over B·M rows;
      L_loc = (1/|A|) Σ_c (1/(V−1)) Σ_{v≠c} mean_{b,k}
      CE(q^l_c[b, k], C_l y_v[b, π(k)]), with one permutation π of the M
      tokens per (c, v), shared by the batch and drawn with
      ``torch.randperm`` from the global CPU RNG (or from a dedicated
      generator seeded with ``shuffle_generator_seed``); identity when
      ``local_shuffle=False``.
    - **L2G.** ŷ_v = normalize(mean_k y_{v,b,k}) (a mean, as the original's
      ``concat_local_logits``); C_x ŷ_v predicts every global code q_a:
      L_l2g = (1/|A|) Σ_c (1/(V−1)) Σ_{v≠c} (1/|A|) Σ_a CE(q_a, C_x ŷ_v).
      ``l2g_stop_grad=True`` (as released) detaches y, so only C_x trains.

    Codes are computed under ``no_grad`` from detached scores with
    :func:`distributed_sinkhorn_knopp` over the default process group.

    **Queues** (plain attributes set by ``GAELLEHook``, never in the state
    dict): ``queue`` ``(|A|, L, d)`` with flag ``use_queue``, and
    ``local_queue`` ``(|A|, L_l, d_l)`` with its own flag
    ``use_local_queue``. For crop i = A[j], under ``no_grad``: if the flag is
    set or the last row of ``queue[j]`` is non-zero, set the flag and
    prepend ``queue[j] @ Cᵀ`` to the scores; then shift the queue down by
    the batch rows and write the detached embeddings of crop i at the top;
    run Sinkhorn and keep the last (batch) rows. The local queue is scored
    with C_l and stores B·M token rows per fill (the original scored it with
    C_g and shared the global flag; both are fixed, §9).

    Args:
        feat_dim (int): d, the global embedding width. Defaults to 128.
        local_feat_dim (int): d_l, the token embedding width. Defaults to
            128.
        num_prototypes (int): K, rows of ``prototypes`` and
            ``l2g_prototypes``. Defaults to 3000.
        num_local_prototypes (int): K_l, rows of ``local_prototypes``.
            Defaults to 3000.
        num_crops (Sequence[int]): Views per resolution group; the first
            group holds the V global views. Defaults to (2, 6).
        crops_for_assign (Sequence[int]): A, the first-group views whose
            codes are targets. Defaults to (0, 1).
        temperature (float): T (> 0). Defaults to 0.1.
        epsilon (float): Sinkhorn ε (> 0). Defaults to 0.05.
        sinkhorn_iterations (int): Sinkhorn iterations (>= 1). Defaults to
            3.
        sinkhorn_dtype (str): ``'float32'`` or ``'float64'``. Defaults to
            ``'float32'``.
        with_local (bool): Local term and ``local_prototypes``. Defaults to
            True.
        with_l2g (bool): L2G term and ``l2g_prototypes`` (needs
            ``with_local``). Defaults to True.
        local_shuffle (bool): Permute the predictor's tokens. Defaults to
            True.
        l2g_stop_grad (bool): Detach y in the L2G term. Defaults to True.
        loss_weights (dict | None): Weights with keys ``glb``, ``alg``,
            ``l2g``; ``None`` gives 1/(number of active terms) each. An
            explicit dict must name every active term; a disabled term may
            only be absent or 0.
        shuffle_generator_seed (int | None): Seed of a dedicated CPU
            generator for π; ``None`` uses the global CPU RNG (original).
        init_cfg (dict | list[dict] | None): MMEngine init config; the
            banks keep PyTorch's default ``nn.Linear`` init.

    Raises:
        ValueError: Bad ``num_crops``, an empty, duplicated or out-of-range
            A, a non-positive T, ε or iteration count, an unknown
            ``sinkhorn_dtype``, fewer than 2 first-group views with the
            local branch, or bad ``loss_weights``.
    """

    def __init__(
        self,
        feat_dim: int = 128,
        local_feat_dim: int = 128,
        num_prototypes: int = 3000,
        num_local_prototypes: int = 3000,
        num_crops: Sequence[int] = (2, 6),
        crops_for_assign: Sequence[int] = (0, 1),
        temperature: float = 0.1,
        epsilon: float = 0.05,
        sinkhorn_iterations: int = 3,
        sinkhorn_dtype: str = 'float32',
        with_local: bool = True,
        with_l2g: bool = True,
        local_shuffle: bool = True,
        l2g_stop_grad: bool = True,
        loss_weights: dict | None = None,
        shuffle_generator_seed: int | None = None,
        init_cfg: dict | list[dict] | None = None,
    ) -> None:
        super().__init__(init_cfg=init_cfg)
        num_crops = list(num_crops) if num_crops is not None else []
        if not num_crops or any(int(n) != n or n < 1 for n in num_crops):
            raise ValueError(
                'GAELLELoss: num_crops must be a non-empty sequence of '
                f'positive integers, got {num_crops!r}'
            )
        self.num_crops = [int(n) for n in num_crops]
        num_views = self.num_crops[0]
        total = sum(self.num_crops)
        if total < 2:
            raise ValueError(
                'GAELLELoss: at least 2 views are needed for the swapped '
                f'prediction, got num_crops={self.num_crops}'
            )
        crops_for_assign = list(crops_for_assign or [])
        if not crops_for_assign:
            raise ValueError('GAELLELoss: crops_for_assign must not be empty')
        if len(set(crops_for_assign)) != len(crops_for_assign):
            raise ValueError(
                'GAELLELoss: crops_for_assign has duplicates: '
                f'{crops_for_assign}'
            )
        bad = [
            c
            for c in crops_for_assign
            if int(c) != c or not 0 <= c < num_views
        ]
        if bad:
            raise ValueError(
                f'GAELLELoss: crops_for_assign={crops_for_assign} must index '
                f'the first-group views 0..{num_views - 1} '
                f'(num_crops={self.num_crops}); bad entries {bad}'
            )
        self.crops_for_assign = [int(c) for c in crops_for_assign]
        for name, value in (
            ('temperature', temperature),
            ('epsilon', epsilon),
        ):
            if not value > 0:
                raise ValueError(
                    f'GAELLELoss: {name} must be > 0, got {value!r}'
                )
        if (
            int(sinkhorn_iterations) != sinkhorn_iterations
            or sinkhorn_iterations < 1
        ):
            raise ValueError(
                'GAELLELoss: sinkhorn_iterations must be an integer >= 1, got '
                f'{sinkhorn_iterations!r}'
            )
        if sinkhorn_dtype not in _DTYPES:
            raise ValueError(
                'GAELLELoss: sinkhorn_dtype must be one of '
                f'{sorted(_DTYPES)}, got {sinkhorn_dtype!r}'
            )
        if with_local and num_views < 2:
            raise ValueError(
                'GAELLELoss: the local branch needs at least 2 first-group '
                f'views, got num_crops={self.num_crops}'
            )
        for name, value in (
            ('feat_dim', feat_dim),
            ('local_feat_dim', local_feat_dim),
            ('num_prototypes', num_prototypes),
            ('num_local_prototypes', num_local_prototypes),
        ):
            if int(value) != value or value < 1:
                raise ValueError(
                    f'GAELLELoss: {name} must be >= 1, got {value!r}'
                )

        self.feat_dim = int(feat_dim)
        self.local_feat_dim = int(local_feat_dim)
        self.num_prototypes = int(num_prototypes)
        self.num_local_prototypes = int(num_local_prototypes)
        self.temperature = float(temperature)
        self.epsilon = float(epsilon)
        self.sinkhorn_iterations = int(sinkhorn_iterations)
        self.sinkhorn_dtype = _DTYPES[sinkhorn_dtype]
        self.with_local = bool(with_local)
        self.with_l2g = bool(with_l2g) and self.with_local
        self.local_shuffle = bool(local_shuffle)
        self.l2g_stop_grad = bool(l2g_stop_grad)
        self.shuffle_generator_seed = shuffle_generator_seed
        self.loss_weights = self._resolve_weights(loss_weights)

        self.prototypes = nn.Linear(
            self.feat_dim, self.num_prototypes, bias=False
        )
        if self.with_local:
            self.local_prototypes = nn.Linear(
                self.local_feat_dim, self.num_local_prototypes, bias=False
            )
        if self.with_l2g:
            self.l2g_prototypes = nn.Linear(
                self.local_feat_dim, self.num_prototypes, bias=False
            )

        self._generator: torch.Generator | None = None
        if shuffle_generator_seed is not None:
            self._generator = torch.Generator()
            self._generator.manual_seed(int(shuffle_generator_seed))

        # Queue state, owned by GAELLEHook; plain attributes so that they
        # stay out of the state dict.
        self.queue: torch.Tensor | None = None
        self.use_queue = False
        self.local_queue: torch.Tensor | None = None
        self.use_local_queue = False
        self._rows_checked: set[str] = set()

    @property
    def active_terms(self) -> tuple[str, ...]:
        """Names of the computed terms, in ``('glb', 'alg', 'l2g')`` order."""
        active = {'glb': True, 'alg': self.with_local, 'l2g': self.with_l2g}
        return tuple(t for t in _TERMS if active[t])

    def _resolve_weights(self, loss_weights: dict | None) -> dict[str, float]:
        active = self.active_terms
        if loss_weights is None:
            return {t: 1.0 / len(active) for t in active}
        if not isinstance(loss_weights, dict):
            raise ValueError(
                'GAELLELoss: loss_weights must be a dict with keys '
                f'{_TERMS} or None, got {loss_weights!r}'
            )
        unknown = sorted(set(loss_weights) - set(_TERMS))
        if unknown:
            raise ValueError(
                f'GAELLELoss: unknown loss_weights keys {unknown}; use '
                f'{_TERMS}'
            )
        weights = {}
        for term, value in loss_weights.items():
            value = float(value)
            if not (value >= 0 and value != float('inf')):
                raise ValueError(
                    f'GAELLELoss: loss_weights[{term!r}] must be finite and '
                    f'>= 0, got {value!r}'
                )
            if term not in active and value != 0:
                raise ValueError(
                    f'GAELLELoss: loss_weights[{term!r}]={value} is non-zero '
                    f'but the term is disabled (with_local={self.with_local}, '
                    f'with_l2g={self.with_l2g}); active terms: {active}'
                )
            weights[term] = value
        missing = [t for t in active if t not in weights]
        if missing:
            raise ValueError(
                f'GAELLELoss: loss_weights={loss_weights} lacks the active '
                f'terms {missing}; give them explicitly (0 to switch one off)'
            )
        return {t: weights[t] for t in active}

    @torch.no_grad()
    def normalize_prototypes(self) -> None:
        """L2-normalise the rows of every prototype bank in place."""
        for name in ('prototypes', 'local_prototypes', 'l2g_prototypes'):
            bank = getattr(self, name, None)
            if bank is not None:
                bank.weight.copy_(F.normalize(bank.weight, dim=1, p=2))

    def _queue_state(self) -> str:
        def describe(queue):
            return 'None' if queue is None else str(tuple(queue.shape))

        return (
            f'queue={describe(self.queue)}, use_queue={self.use_queue}, '
            f'local_queue={describe(self.local_queue)}, '
            f'use_local_queue={self.use_local_queue}'
        )

    def _check_queue(
        self, name: str, queue: torch.Tensor, width: int, rows: int
    ):
        num_assign = len(self.crops_for_assign)
        if (
            queue.dim() != 3
            or queue.shape[0] != num_assign
            or queue.shape[2] != width
            or queue.shape[1] < rows
            or queue.shape[1] % rows != 0
        ):
            raise ValueError(
                f'GAELLELoss: {name} must have shape (|A|={num_assign}, L, '
                f'{width}) with L a positive multiple of the {rows} rows '
                f'written per iteration, got {tuple(queue.shape)}'
            )

    def _codes(
        self,
        key: str,
        embeddings: torch.Tensor,
        batch_scores: torch.Tensor,
        bank: nn.Linear,
        queue: torch.Tensor | None,
        use_queue: bool,
        index: int,
    ) -> tuple[torch.Tensor, bool]:
        """Sinkhorn codes of one assigned crop, with the queue logic.

        Args:
            key (str): ``'glb'`` or ``'alg'`` (first-call row check).
            embeddings (Tensor): ``(R, d)`` detached embeddings of the crop.
            batch_scores (Tensor): ``(R, K)`` detached scores of the crop.
            bank (nn.Linear): The bank scoring the queue.
            queue (Tensor | None): ``(|A|, L, d)`` queue, updated in place.
            use_queue (bool): Current flag.
            index (int): j, the position of the crop in A.

        Returns:
            tuple[Tensor, bool]: ``(R, K)`` codes and the new flag.
        """
        rows = batch_scores.shape[0]
        scores = batch_scores.float()
        if queue is not None:
            if use_queue or not torch.all(queue[index, -1, :] == 0):
                use_queue = True
                queue_scores = torch.mm(queue[index], bank.weight.t())
                scores = torch.cat((queue_scores.float(), scores))
            queue[index, rows:] = queue[index, :-rows].clone()
            queue[index, :rows] = embeddings
        check = key not in self._rows_checked
        self._rows_checked.add(key)
        codes = distributed_sinkhorn_knopp(
            scores,
            self.epsilon,
            self.sinkhorn_iterations,
            dtype=self.sinkhorn_dtype,
            group=None,
            check_rows=check,
        )
        return codes[-rows:], use_queue

    def _permutation(self, num_tokens: int) -> torch.Tensor:
        if self._generator is not None:
            return torch.randperm(num_tokens, generator=self._generator)
        return torch.randperm(num_tokens)

    def forward(
        self,
        global_emb: torch.Tensor,
        local_emb: torch.Tensor | None,
        batch_size: int,
        num_tokens: int,
    ) -> dict[str, torch.Tensor]:
        """Total loss and its detached terms.

        Args:
            global_emb (Tensor): ``(N·B, d)`` L2-normalised z, crop-major
                (row ``v·B + b``).
            local_emb (Tensor | None): ``(V·B·M, d_l)`` L2-normalised token
                embeddings y (row ``v·B·M + b·M + k``); ``None`` without
                the local branch.
            batch_size (int): B.
            num_tokens (int): M.

        Returns:
            dict[str, Tensor]: ``loss`` (scalar with grad), the detached
            terms ``glb`` and, when active, ``alg`` and ``l2g`` (nats), and
            ``q_used`` (1.0 when the global queue took part, else 0.0). Only
            ``loss`` contains "loss".

        Raises:
            ValueError: Row counts other than N·B or V·B·M, a missing or
                unexpected ``local_emb``, or a queue of the wrong shape.
            RuntimeError: A non-finite term (named, with the queue state).
        """
        batch_size, num_tokens = int(batch_size), int(num_tokens)
        if batch_size < 1 or num_tokens < 1:
            raise ValueError(
                'GAELLELoss: batch_size and num_tokens must be >= 1, got '
                f'{batch_size} and {num_tokens}'
            )
        num_total = sum(self.num_crops)
        num_views = self.num_crops[0]
        if (
            global_emb.dim() != 2
            or global_emb.shape[0] != num_total * batch_size
        ):
            raise ValueError(
                f'GAELLELoss: global_emb must have N·B = {num_total}·'
                f'{batch_size} = {num_total * batch_size} rows (num_crops='
                f'{self.num_crops}), got shape {tuple(global_emb.shape)}'
            )
        if self.with_local:
            rows = num_views * batch_size * num_tokens
            if (
                local_emb is None
                or local_emb.dim() != 2
                or local_emb.shape[0] != rows
            ):
                shape = None if local_emb is None else tuple(local_emb.shape)
                raise ValueError(
                    f'GAELLELoss: local_emb must have V·B·M = {num_views}·'
                    f'{batch_size}·{num_tokens} = {rows} rows, got {shape}'
                )
        elif local_emb is not None:
            raise ValueError(
                'GAELLELoss: got local_emb but with_local=False; switch the '
                "neck's and the loss's local branch off together"
            )
        if self.queue is not None:
            self._check_queue('queue', self.queue, self.feat_dim, batch_size)
        if self.with_local and self.local_queue is not None:
            self._check_queue(
                'local_queue',
                self.local_queue,
                self.local_feat_dim,
                batch_size * num_tokens,
            )

        self.normalize_prototypes()
        bsz = batch_size
        temp = self.temperature
        terms: dict[str, torch.Tensor] = {}

        # Global (SwAV).
        scores = self.prototypes(global_emb)  # (N·B, K)
        global_codes = []
        with torch.no_grad():
            embedding = global_emb.detach()
            for j, crop in enumerate(self.crops_for_assign):
                rows = slice(crop * bsz, (crop + 1) * bsz)
                codes, self.use_queue = self._codes(
                    'glb',
                    embedding[rows],
                    scores[rows].detach(),
                    self.prototypes,
                    self.queue,
                    self.use_queue,
                    j,
                )
                global_codes.append(codes)
        q_used = self.queue is not None and self.use_queue
        glb = 0
        for codes, crop in zip(global_codes, self.crops_for_assign):
            sub = 0
            for v in range(num_total):
                if v != crop:
                    sub = sub + _swapped_ce(
                        codes, scores[v * bsz : (v + 1) * bsz], temp
                    )
            glb = glb + sub / (num_total - 1)
        terms['glb'] = glb / len(self.crops_for_assign)

        if self.with_local:
            terms['alg'] = self._local_loss(local_emb, bsz, num_tokens)
        if self.with_l2g:
            terms['l2g'] = self._l2g_loss(
                local_emb, global_codes, bsz, num_tokens
            )

        for name, value in terms.items():
            if not torch.isfinite(value.detach()).all():
                raise RuntimeError(
                    f'GAELLELoss: the {name!r} term is not finite '
                    f'({value.item()}); {self._queue_state()}'
                )
        loss = sum(self.loss_weights[t] * terms[t] for t in terms)
        out = {'loss': loss}
        out.update({t: v.detach() for t, v in terms.items()})
        out['q_used'] = torch.tensor(float(q_used), device=global_emb.device)
        return out

    def _local_loss(
        self, local_emb: torch.Tensor, bsz: int, num_tokens: int
    ) -> torch.Tensor:
        """L_loc over the first-group views; see the class docstring."""
        num_views = self.num_crops[0]
        rows = bsz * num_tokens
        scores = self.local_prototypes(local_emb)  # (V·B·M, K_l)
        codes_per_crop = []
        with torch.no_grad():
            embedding = local_emb.detach()
            for j, crop in enumerate(self.crops_for_assign):
                block = slice(crop * rows, (crop + 1) * rows)
                codes, self.use_local_queue = self._codes(
                    'alg',
                    embedding[block],
                    scores[block].detach(),
                    self.local_prototypes,
                    self.local_queue,
                    self.use_local_queue,
                    j,
                )
                codes_per_crop.append(codes)
        alg = 0
        for codes, crop in zip(codes_per_crop, self.crops_for_assign):
            sub = 0
            for v in range(num_views):
                if v == crop:
                    continue
                pred = scores[v * rows : (v + 1) * rows].view(
                    bsz, num_tokens, -1
                )
                if self.local_shuffle:
                    perm = self._permutation(num_tokens).to(pred.device)
                    pred = pred.index_select(1, perm)
                sub = sub + _swapped_ce(
                    codes, pred.reshape(rows, -1), self.temperature
                )
            alg = alg + sub / (num_views - 1)
        return alg / len(self.crops_for_assign)

    def _l2g_loss(
        self,
        local_emb: torch.Tensor,
        global_codes: list[torch.Tensor],
        bsz: int,
        num_tokens: int,
    ) -> torch.Tensor:
        """L_l2g over the first-group views; see the class docstring."""
        num_views = self.num_crops[0]
        tokens = local_emb.detach() if self.l2g_stop_grad else local_emb
        tokens = tokens.view(num_views, bsz, num_tokens, -1)
        per_view: dict[int, torch.Tensor] = {}

        def view_term(v: int) -> torch.Tensor:
            # (1/|A|) Σ_a CE(q_a, C_x ŷ_v) does not depend on c: compute once.
            if v not in per_view:
                pooled = F.normalize(tokens[v].mean(dim=1), dim=1, p=2)
                logits = self.l2g_prototypes(pooled)
                ces = [
                    _swapped_ce(q, logits, self.temperature)
                    for q in global_codes
                ]
                per_view[v] = sum(ces) / len(global_codes)
            return per_view[v]

        l2g = 0
        for crop in self.crops_for_assign:
            sub = sum(view_term(v) for v in range(num_views) if v != crop)
            l2g = l2g + sub / (num_views - 1)
        return l2g / len(self.crops_for_assign)
