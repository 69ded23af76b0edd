"""Vectorized training: many small models (folds x gamma x learning rate x seeds) trained at once.

A tabular benchmark trains hundreds of tiny models per dataset. Trained one after another,
Python overhead dominates; here they are one :class:`~benchmarks.models.BatchedMLP` whose
weights carry a leading model axis, trained with one forward/backward per step.

Data flow:

* A :class:`Stream` is one training data stream: the data as that stream sees it
  (standardized on its own training rows), its training rows, its evaluation sets, a seed,
  and the relabelers fitted on its training rows (mixkit :class:`~mixkit.GenLabel` per
  density, :class:`~mixkit.ExcludeIntrusion`). A cross-validation fold is a stream; so is
  "full training set, seed s".
* For each stream the whole schedule is drawn up front from the stream's own generator:
  each epoch a pass in batches of ``batch_size`` (shuffled, or with ``shuffle=False`` the
  same unshuffled batches every epoch, as the official OpenML code), per batch one lam ~
  Beta(alpha, alpha) (or one per row) and a partner permutation. All streams sharing an
  ``x`` are mixed by **one** call of :class:`mixkit.Mixup` with those pre-drawn
  ``MixParams``; the mixed points are relabeled by one call of each fitted mixkit
  :class:`~mixkit.GenLabel` (``gamma = 1``: ``y`` is the generative label with mixkit's
  fallback for dead rows; streams sharing a relabeler, e.g. every configuration of a fold,
  are relabeled together) and checked by ``ExcludeIntrusion.intrudes``. ``mix_pool``
  bounds the distinct mixed points per stream (relabeling every mixed point of 100 epochs
  of a 4000-row dataset with a KDE costs minutes): when ``epochs * n_train`` exceeds it, the
  first ``ceil(mix_pool / n_train)`` epochs are drawn and later epochs revisit their
  batches (in a fresh order, unless batches are fixed).
* A :class:`ModelSpec` names a stream, a method (``vanilla``, ``mixup``, ``exclude``,
  ``genlabel``), a learning rate, GenLabel's ``gamma`` and density, and an init seed. Every
  model of a stream sees the same batches, ``lam`` and partners (common random numbers:
  cross-validation compares configurations on identical draws); for independent runs (the
  paper protocol) give each configuration a stream of its own. Its target is
  ``one_hot`` (vanilla), ``y_mix`` (mixup; exclude with intruding rows weighted 0) or
  ``gamma * y_gen + (1 - gamma) * y_mix`` (GenLabel; ``gamma = 0`` is mixup), all of them
  one call of :func:`mixkit.blend_labels` per step (:class:`GridTargets`).
* The models form a grid ``(S, G)``: ``G`` models per stream (vanilla ones first, whose
  first layer reads the clean batch; the others read the mixed batch), so the first layer of
  all models of a stream is one GEMM (:class:`~benchmarks.models.BatchedMLP`). Streams with
  fewer models are padded with inert ones (learning rate 0), dropped from the results.
* Adam (Table 11) or SGD with momentum and multi-step decay (Tables 10, 12; decay at
  fractions of the epochs or after given epochs) run batched with a learning rate per model;
  weight decay 1e-4 is added to the gradient like ``torch.optim``; ``clip_norm`` clips each
  model's gradient norm as ``torch.nn.utils.clip_grad_norm_`` does.
  A model whose stream has no rows in a step (streams differ in size) skips that step.
* Accuracy on every evaluation set is recorded per model and epoch (and FGSM robust accuracy,
  :func:`benchmarks.attacks.fgsm`, every ``fgsm_every`` epochs); the parameters at each
  model's best epoch on ``select_on`` are kept (best-epoch selection on validation accuracy,
  as appendix E).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

import mixkit
from benchmarks.attacks import fgsm
from benchmarks.common import progress
from benchmarks.models import BatchedMLP
from mixkit.random import sample_beta

METHODS = ("vanilla", "mixup", "exclude", "genlabel")


@dataclass
class Stream:
    """One training stream (see the module docstring)."""

    x: Tensor
    y: Tensor
    train_idx: Tensor
    evals: dict[str, tuple[Tensor, Tensor]]
    seed: int
    genlabels: dict[str, mixkit.GenLabel] = field(default_factory=dict)
    exclude: mixkit.ExcludeIntrusion | None = None


@dataclass
class ModelSpec:
    """One model: its stream, method, learning rate, GenLabel gamma/density and init seed."""

    stream: int
    method: str
    lr: float
    gamma: float = 0.0
    density: str | None = None
    init_seed: int = 0
    tag: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {self.method!r}")
        if self.method == "genlabel" and self.density is None:
            raise ValueError("a genlabel model needs a density key")


@dataclass
class TrainConfig:
    epochs: int = 100
    batch_size: int = 128
    optimizer: str = "adam"  # "adam" (Table 11) or "sgd" (Tables 10, 12)
    weight_decay: float = 1e-4
    momentum: float = 0.9
    milestones: tuple[float, ...] = (0.5, 0.75)  # SGD: decay x0.1 at these fractions of epochs
    lr_decay: float = 0.1
    alpha: float = 1.0
    per_sample_lam: bool = False
    hidden: tuple[int, ...] = ()
    eval_every: int = 1
    fgsm_eps: float | None = None
    fgsm_every: int = 5
    select_on: str | None = None
    mix_pool: int | None = None  # max distinct mixed points per stream (None: every epoch fresh)
    shuffle: bool = True  # False: the same unshuffled batches every epoch (the official OpenML code)
    clip_norm: float | None = None  # per-model gradient-norm clipping (torch's clip_grad_norm_)
    milestone_epochs: tuple[int, ...] | None = None  # SGD: decay after these epochs (overrides milestones)
    device: str = "cpu"


@dataclass
class TrainResult:
    """Histories are ``(M, n_evals)`` in the order of ``specs`` (NaN where a model's stream has
    no evaluation set of that name); ``positions[i]`` is spec ``i``'s ``(s, g)`` in the grid."""

    specs: list[ModelSpec]
    eval_epochs: list[int]
    clean: dict[str, Tensor]  # name -> (M, len(eval_epochs)) accuracy in [0, 1]
    robust_epochs: list[int]
    robust: dict[str, Tensor]  # name -> (M, len(robust_epochs))
    model: BatchedMLP
    best: BatchedMLP | None
    best_epoch: Tensor | None
    positions: Tensor
    stats: dict[str, Any]

    def logits(self, x: Tensor, which: str = "best") -> Tensor:
        """Logits ``(M, N, K)`` of every model on the same inputs ``x (N, d)`` (``which``:
        ``"best"`` epoch snapshot or ``"last"`` parameters)."""
        net = self.best if which == "best" and self.best is not None else self.model
        dev = net.weights[0].device
        with torch.no_grad():
            out = net(x.to(dev).T.expand(net.grid[0], *x.T.shape))  # (S, G, K, N)
        return out[self.positions[:, 0], self.positions[:, 1]].transpose(1, 2).cpu()


# ------------------------------------------------------------------ schedule


@dataclass
class _Schedule:
    """Padded tensors laid out ``(E, T, S, ...)`` (features before the batch axis) so that a
    step's slice is contiguous and feature-major like the model's activations."""

    x_clean: Tensor  # (E, T, S, d, B)
    x_mix: Tensor  # (E, T, S, d, B)
    cands: Tensor  # (E, T, S, C, K, B): one-hot, y_mix, y_gen per density
    keep: Tensor  # (E, T, S, B): 0 for intruding rows (exclude models)
    weight: Tensor  # (E, T, S, B): 1 for real rows, 0 for padding
    stats: dict[str, Any]


def _draw_stream(st: Stream, epochs: int, b_n: int, alpha: float, per_sample_lam: bool,
                 shuffle: bool, offset: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """One stream's rows ``(E, T, B)`` (-1: padding), and for its real rows (flattened in
    ``(E, T, B)`` order) the lam and the partner's position (``+ offset``)."""
    g = torch.Generator().manual_seed(int(st.seed))
    n = len(st.train_idx)
    t_n = math.ceil(n / b_n)
    if shuffle:
        order = torch.stack([st.train_idx[torch.randperm(n, generator=g)] for _ in range(epochs)])
    else:
        order = st.train_idx.expand(epochs, n)
    rows = torch.cat([order, order.new_full((epochs, t_n * b_n - n), -1)], 1).view(epochs, t_n, b_n)
    valid = rows >= 0
    lam = sample_beta(alpha, alpha, epochs * t_n * (b_n if per_sample_lam else 1), g)
    lam = lam.view(epochs, t_n, -1).expand(epochs, t_n, b_n)
    # a random permutation of each batch's real rows (padding sorts last)
    key = torch.rand(epochs, t_n, b_n, generator=g, dtype=torch.float64) + 2.0 * (~valid)
    flat = (valid.flatten().cumsum(0) - 1).view(epochs, t_n, b_n) + offset
    partner = flat.gather(-1, key.argsort(-1))
    return rows, lam[valid], partner[valid], valid


def build_schedule(streams: Sequence[Stream], epochs: int, batch_size: int, num_classes: int,
                   alpha: float, per_sample_lam: bool, densities: Sequence[str],
                   need_exclude: bool, shuffle: bool = True,
                   needed: Sequence[tuple[set[str], bool]] | None = None) -> _Schedule:
    """Draw every batch of ``epochs`` epochs of every stream (its own ``torch.Generator``:
    per batch one lam, or one per row, and a partner permutation inside the batch), mix
    them with **one** call of mixkit's Mixup per distinct ``x`` (pre-drawn ``MixParams``),
    relabel them with one GenLabel call per fitted relabeler (streams sharing one, e.g. the
    configurations of a fold, are relabeled together) and flag intrusions with
    ExcludeIntrusion, likewise grouped.

    ``shuffle=False`` keeps the training rows in their order, so every epoch has the same
    batches (lam and partners are still drawn afresh). ``needed[s]`` = (densities, exclude)
    that stream ``s``'s models use: a stream whose models use none skips that relabeling.
    """
    s_n, b_n = len(streams), batch_size
    d = streams[0].x.shape[1]
    steps = max(math.ceil(len(s.train_idx) / b_n) for s in streams)
    shape = (epochs, steps, s_n, b_n)
    x_clean = torch.zeros(*shape, d)
    x_mix = torch.zeros(*shape, d)
    cands = torch.zeros(*shape, 2 + len(densities), num_classes)
    keep = torch.ones(shape)
    weight = torch.zeros(shape)
    # relabel: one {density: GenLabel.stats()} per relabeler call
    stats: dict[str, Any] = {"relabel": [], "excluded_share": [], "relabel_s": 0.0,
                             "exclude_s": 0.0, "mixed_points": 0}
    use = needed if needed is not None else [(set(densities), need_exclude)] * s_n
    by_x: dict[int, list[int]] = {}
    for si, st in enumerate(streams):
        by_x.setdefault(id(st.x), []).append(si)
    for members in by_x.values():
        x, y = streams[members[0]].x, streams[members[0]].y
        rows_all, lam_all, index_all, where = [], [], [], []
        offset = 0
        for si in members:
            rows, lam, partner, valid = _draw_stream(streams[si], epochs, b_n, alpha, per_sample_lam,
                                                     shuffle, offset)
            rows_all.append(rows[valid])
            lam_all.append(lam)
            index_all.append(partner)
            pe, pt, pb = valid.nonzero(as_tuple=True)
            where.append((pe, pt, torch.full_like(pe, si), pb))
            offset += int(valid.sum())
        rows_f = torch.cat(rows_all)
        big = mixkit.Mixup(alpha, num_classes=num_classes)(
            x[rows_f], y[rows_f], params=mixkit.MixParams(torch.cat(lam_all), torch.cat(index_all)))
        pe, pt, ps, pb = (torch.cat(t) for t in zip(*where))
        stats["mixed_points"] += offset
        x_clean[pe, pt, ps, pb] = x[rows_f]
        x_mix[pe, pt, ps, pb] = big.x
        cands[pe, pt, ps, pb, 0] = F.one_hot(big.labels, num_classes).float()
        cands[pe, pt, ps, pb, 1] = big.y_mix.float()
        weight[pe, pt, ps, pb] = 1.0
        for ci, key in enumerate(densities):
            groups: dict[int, tuple[mixkit.GenLabel, list[int]]] = {}
            for si in members:
                if key in use[si][0]:
                    gl = streams[si].genlabels[key]
                    groups.setdefault(id(gl), (gl, []))[1].append(si)
            for gl, group in groups.values():
                t0 = time.perf_counter()
                mask = torch.isin(ps, torch.tensor(group))
                gl.reset_stats()
                out = gl(big.select(mask))  # one call: every mixed point of these streams
                cands[pe[mask], pt[mask], ps[mask], pb[mask], 2 + ci] = out.y.float()
                stats["relabel"].append({key: gl.stats()})
                stats["relabel_s"] += time.perf_counter() - t0
        groups_x: dict[int, tuple[mixkit.ExcludeIntrusion, list[int]]] = {}
        for si in members:
            if need_exclude and use[si][1]:
                ex = streams[si].exclude
                if ex is None:
                    raise ValueError("an 'exclude' model needs stream.exclude (a fitted ExcludeIntrusion)")
                groups_x.setdefault(id(ex), (ex, []))[1].append(si)
        for ex, group in groups_x.values():
            t0 = time.perf_counter()
            mask = torch.isin(ps, torch.tensor(group))
            intr = ex.intrudes(big.select(mask))
            keep[pe[mask], pt[mask], ps[mask], pb[mask]] = (~intr).float()
            stats["excluded_share"].append(float(intr.float().mean()))
            stats["exclude_s"] += time.perf_counter() - t0
    return _Schedule(x_clean.transpose(-1, -2).contiguous(), x_mix.transpose(-1, -2).contiguous(),
                     cands.permute(0, 1, 2, 4, 5, 3).contiguous(), keep, weight, stats)


# ------------------------------------------------------------------ optimisers


class _BatchedOptimizer:
    """Adam or SGD+momentum over parameters with leading model axes ``(S, G)``; a learning
    rate per model and a per-model "active" mask (inactive models keep parameters and state)."""

    def __init__(self, params: list[Tensor], lr: Tensor, cfg: TrainConfig) -> None:
        self.params = params
        self.lr = lr  # (S, G)
        self.cfg = cfg
        self.state = [(torch.zeros_like(p), torch.zeros_like(p)) for p in params]
        self.steps = torch.zeros_like(lr)
        self.scale = 1.0  # SGD multi-step decay factor

    @torch.no_grad()
    def step(self, active: Tensor) -> None:
        cfg = self.cfg
        act = active.to(self.lr.dtype)
        self.steps += act
        view = (*self.lr.shape, 1, 1)
        a = act.view(view)
        if cfg.optimizer == "adam":
            b1, b2, eps = 0.9, 0.999, 1e-8
            t = self.steps.clamp_min(1)
            c1 = (1 - b1**t).view(view)
            c2 = (1 - b2**t).view(view)
            step_size = a * self.lr.view(view) / c1
            for p, (m, v) in zip(self.params, self.state):
                g = p.grad + cfg.weight_decay * p
                m.add_(a * (1 - b1) * (g - m))
                v.add_(a * (1 - b2) * (g * g - v))
                p.sub_(step_size * m / ((v / c2).sqrt_().add_(eps)))
        elif cfg.optimizer == "sgd":
            first = (self.steps == 1).to(self.lr.dtype).view(view)
            step_size = a * self.lr.view(view) * self.scale
            for p, (buf, _) in zip(self.params, self.state):
                g = p.grad + cfg.weight_decay * p
                # buf <- momentum * buf + g (torch's SGD, dampening 0; first step buf = g)
                new_buf = cfg.momentum * buf * (1 - first) + g
                buf.copy_(a * new_buf + (1 - a) * buf)
                p.sub_(step_size * buf)
        else:
            raise ValueError(f"optimizer must be 'adam' or 'sgd', got {cfg.optimizer!r}")


# ------------------------------------------------------------------ evaluation


def _pad_evals(streams: Sequence[Stream], name: str, device: torch.device) -> tuple[Tensor, Tensor, Tensor]:
    """``(S, d, N)`` inputs, ``(S, N)`` labels and mask; streams without the set get an empty one."""
    d = streams[0].x.shape[1]
    sets = [s.evals.get(name, (torch.zeros(0, d), torch.zeros(0, dtype=torch.long))) for s in streams]
    n = max(1, max(int(x.shape[0]) for x, _ in sets))
    xs = torch.zeros(len(sets), d, n)
    ys = torch.zeros(len(sets), n, dtype=torch.long)
    mask = torch.zeros(len(sets), n, dtype=torch.bool)
    for i, (x, y) in enumerate(sets):
        xs[i, :, : len(x)] = x.T
        ys[i, : len(y)] = y
        mask[i, : len(y)] = True
    return xs.to(device), ys.to(device), mask.to(device)


def accuracy(model: BatchedMLP, x: Tensor, y: Tensor, mask: Tensor, chunk: int = 2048) -> Tensor:
    """Accuracy ``(S, G)`` of every model; ``x`` ``(S, d, N)`` (shared per stream) or
    ``(S, G, d, N)``, labels and mask ``(S, N)``. NaN for an empty evaluation set."""
    s_n, g_n = model.grid
    correct = torch.zeros(s_n, g_n, device=y.device)
    with torch.no_grad():
        for start in range(0, y.shape[1], chunk):
            logits = model(x[..., start:start + chunk])  # (S, G, K, n)
            yy = y[:, None, None, start:start + chunk].expand(s_n, g_n, 1, logits.shape[-1])
            # correct iff the true class's logit is the largest (ties count as correct)
            ok = (logits.gather(2, yy)[:, :, 0] >= logits.amax(2)) & mask[:, None, start:start + chunk]
            correct += ok.sum(-1)
    count = mask.sum(1).to(correct.dtype)[:, None]
    return torch.where(count > 0, correct / count.clamp_min(1), torch.full_like(correct, math.nan))


def fgsm_accuracy(model: BatchedMLP, x: Tensor, y: Tensor, mask: Tensor, eps: float) -> Tensor:
    """Accuracy ``(S, G)`` under FGSM, ``x + eps * sign(grad_x CE)`` (L-inf radius ``eps``),
    each model attacked with its own gradient; ``x`` ``(S, d, N)``."""
    s_n, g_n = model.grid
    yy = y[:, None, None, :].expand(s_n, g_n, 1, y.shape[1])

    def masked_nll_sum(xr: Tensor) -> Tensor:  # every model's summed NLL on its stream's rows
        logp = torch.log_softmax(model(xr), 2)  # (S, G, K, N)
        return (-logp.gather(2, yy)[:, :, 0] * mask[:, None]).sum()

    x_adv = fgsm(masked_nll_sum, x[:, None].expand(s_n, g_n, *x.shape[1:]), eps)
    return accuracy(model, x_adv, y, mask)


# ------------------------------------------------------------------ targets


@dataclass
class GridTargets:
    """Every grid model's training target, from a step's candidate labels ``(S, C, K, B)``
    (``C``: one-hot, ``y_mix``, then ``y_gen`` per density) through mixkit's GenLabel blend:
    ``mixkit.blend_labels(cands[base], cands[gen], gamma)`` per model, i.e. one-hot for
    vanilla, ``y_mix`` for mixup and exclude (``gamma = 0``), ``gamma * y_gen[density] +
    (1 - gamma) * y_mix`` for GenLabel. ``base``, ``gen`` are ``(S, G)`` candidate indices,
    ``gamma`` ``(S, G)``; inert padding models take one-hot (vanilla columns) or ``y_mix``."""

    base: Tensor
    gen: Tensor
    gamma: Tensor

    def __post_init__(self) -> None:  # per-step constants, built once (on the grid's device)
        self._stream = torch.arange(self.base.shape[0], device=self.base.device)[:, None]
        self._weight = self.gamma[..., None, None]

    @classmethod
    def of(cls, specs: Sequence[ModelSpec], rows: Sequence[Sequence[int | None]], g0: int,
           densities: Sequence[str]) -> GridTargets:
        """The targets of the grid ``rows`` (spec indices, ``None`` for padding; the first
        ``g0`` columns are the vanilla ones) with GenLabel ``densities`` in candidate order."""
        s_n, g_n = len(rows), len(rows[0])
        base = torch.ones(s_n, g_n, dtype=torch.long)
        base[:, :g0] = 0
        gen = base.clone()
        gamma = torch.zeros(s_n, g_n)
        for si, row in enumerate(rows):
            for gi, i in enumerate(row):
                if i is not None and specs[i].method == "genlabel":
                    gen[si, gi] = 2 + list(densities).index(specs[i].density)  # type: ignore[arg-type]
                    gamma[si, gi] = specs[i].gamma
        return cls(base, gen, gamma)

    def to(self, device: torch.device | str) -> GridTargets:
        return GridTargets(self.base.to(device), self.gen.to(device), self.gamma.to(device))

    def __call__(self, cands: Tensor) -> Tensor:
        """``(S, G, K, B)`` targets from one step's ``(S, C, K, B)`` candidates."""
        s = self._stream
        return mixkit.blend_labels(cands[s, self.base], cands[s, self.gen], self._weight)


# ------------------------------------------------------------------ training


@torch.no_grad()
def clip_per_model(params: Sequence[Tensor], max_norm: float) -> None:
    """``torch.nn.utils.clip_grad_norm_`` for every model of the grid at once: each model's
    gradient (over all its layers) is scaled to norm at most ``max_norm``."""
    sq = sum(p.grad.pow(2).sum((-2, -1)) for p in params)  # (S, G)
    factor = (max_norm / (sq.sqrt() + 1e-6)).clamp(max=1.0)[..., None, None]  # type: ignore[union-attr]
    for p in params:
        p.grad.mul_(factor)


def _grid(specs: Sequence[ModelSpec], s_n: int) -> tuple[list[list[int | None]], int]:
    """Per stream: vanilla models first, then the others, padded with ``None`` to ``(S, G)``."""
    van = [[i for i, s in enumerate(specs) if s.stream == si and s.method == "vanilla"] for si in range(s_n)]
    oth = [[i for i, s in enumerate(specs) if s.stream == si and s.method != "vanilla"] for si in range(s_n)]
    g0 = max(len(v) for v in van)
    g1 = max(len(o) for o in oth)
    rows = [v + [None] * (g0 - len(v)) + o + [None] * (g1 - len(o)) for v, o in zip(van, oth)]
    return rows, g0  # type: ignore[return-value]


def train_batched(streams: Sequence[Stream], specs: Sequence[ModelSpec], cfg: TrainConfig,
                  num_classes: int, desc: str = "train") -> TrainResult:
    """Train every model of ``specs`` at once; see the module docstring."""
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    device = torch.device(cfg.device)
    specs = list(specs)
    m_n = len(specs)
    s_n = len(streams)
    if any(not 0 <= s.stream < s_n for s in specs):
        raise ValueError("a model spec names a stream that does not exist")
    densities = sorted({s.density for s in specs if s.method == "genlabel"})  # type: ignore[type-var]
    need_exclude = any(s.method == "exclude" for s in specs)
    n_max = max(len(s.train_idx) for s in streams)
    pool_epochs = cfg.epochs
    if cfg.mix_pool is not None:
        pool_epochs = max(1, min(cfg.epochs, math.ceil(cfg.mix_pool / n_max)))
    # gamma-0 GenLabel models never read y_gen: their streams skip the relabeling
    needed = [({s.density for s in specs if s.stream == si and s.method == "genlabel" and s.gamma > 0},  # type: ignore[misc]
               any(s.stream == si and s.method == "exclude" for s in specs)) for si in range(s_n)]
    sched = build_schedule(streams, pool_epochs, cfg.batch_size, num_classes, cfg.alpha,
                           cfg.per_sample_lam, densities, need_exclude, cfg.shuffle, needed)
    timings["schedule_s"] = time.perf_counter() - t0

    rows, g0 = _grid(specs, s_n)
    g_n = len(rows[0])
    positions = torch.zeros(m_n, 2, dtype=torch.long)
    seeds = torch.zeros(s_n, g_n, dtype=torch.long)
    lr = torch.zeros(s_n, g_n)
    excl = torch.zeros(s_n, g_n, 1, dtype=torch.bool)
    for si, row in enumerate(rows):
        for gi, i in enumerate(row):
            if i is None:
                continue  # inert padding model (lr 0)
            s = specs[i]
            positions[i] = torch.tensor([si, gi])
            seeds[si, gi] = s.init_seed
            lr[si, gi] = s.lr
            excl[si, gi] = s.method == "exclude"
    targets = GridTargets.of(specs, rows, g0, densities).to(device)
    lr, excl = lr.to(device), excl.to(device)
    x_clean, x_mix = sched.x_clean.to(device), sched.x_mix.to(device)
    cands = sched.cands.to(device)
    weight, keep = sched.weight.to(device), sched.keep.to(device)
    any_excl = bool(excl.any())

    model = BatchedMLP(seeds, streams[0].x.shape[1], num_classes, cfg.hidden, device=device)
    params = list(model.parameters())
    opt = _BatchedOptimizer(params, lr, cfg)

    eval_names = sorted({n for s in streams for n in s.evals})
    evals = {n: _pad_evals(streams, n, device) for n in eval_names}
    eval_epochs: list[int] = []
    robust_epochs: list[int] = []
    clean: dict[str, list[Tensor]] = {n: [] for n in eval_names}
    robust: dict[str, list[Tensor]] = {n: [] for n in eval_names}
    best = best_acc = best_epoch = None
    if cfg.select_on is not None:
        best = BatchedMLP(seeds, streams[0].x.shape[1], num_classes, cfg.hidden, device=device)
        best.load_state_dict(model.state_dict())
        best_acc = torch.full((s_n, g_n), -1.0, device=device)
        best_epoch = torch.zeros(s_n, g_n, dtype=torch.long, device=device)

    steps = x_clean.shape[1]
    order_gen = torch.Generator().manual_seed(int(streams[0].seed) + 7919)
    if cfg.milestone_epochs is not None:
        milestones = sorted(set(cfg.milestone_epochs))
    else:
        milestones = sorted({max(1, round(f * cfg.epochs)) for f in cfg.milestones})
    t1 = time.perf_counter()
    bar = progress(range(cfg.epochs), desc=f"{desc} ({m_n} models)")
    for e in bar:
        if cfg.optimizer == "sgd":
            opt.scale = cfg.lr_decay ** sum(e >= m for m in milestones)
        pe = e % pool_epochs
        # revisited pool epochs come in a new order, unless batches are fixed (shuffle=False)
        revisit = e >= pool_epochs and cfg.shuffle
        order = torch.randperm(steps, generator=order_gen).tolist() if revisit else range(steps)
        for t in order:
            w = weight[pe, t]  # (S, B)
            if any_excl:
                w_m = w[:, None] * torch.where(excl, keep[pe, t][:, None], 1.0)  # (S, G, B)
                count = w_m.sum(-1)
            else:
                w_m = w[:, None]
                count = w.sum(-1, keepdim=True).expand(s_n, g_n)
            active = count > 0
            if not bool(active.any()):
                continue
            logits = model(groups=((x_clean[pe, t], 0, g0), (x_mix[pe, t], g0, g_n)))  # (S, G, K, B)
            target = targets(cands[pe, t])  # (S, G, K, B)
            per_row = -(target * torch.log_softmax(logits, 2)).sum(2)  # (S, G, B)
            loss = ((per_row * w_m).sum(-1) / count.clamp_min(1)).sum()
            for p in params:
                p.grad = None
            loss.backward()
            if cfg.clip_norm is not None:
                clip_per_model(params, cfg.clip_norm)
            opt.step(active)
        epoch = e + 1
        if epoch % cfg.eval_every == 0 or epoch == cfg.epochs:
            eval_epochs.append(epoch)
            for n, (xe, ye, me) in evals.items():
                clean[n].append(accuracy(model, xe, ye, me))
            if best is not None:
                acc = clean[cfg.select_on][-1].nan_to_num(-1.0)  # type: ignore[index]
                better = acc > best_acc
                best_acc = torch.where(better, acc, best_acc)
                best_epoch = torch.where(better, torch.full_like(best_epoch, epoch), best_epoch)
                with torch.no_grad():
                    for pb, pm in zip(best.parameters(), model.parameters()):
                        pb.copy_(torch.where(better.view(*better.shape, 1, 1), pm, pb))
        if cfg.fgsm_eps is not None and (epoch % cfg.fgsm_every == 0 or epoch == cfg.epochs):
            robust_epochs.append(epoch)
            for n, (xe, ye, me) in evals.items():
                robust[n].append(fgsm_accuracy(model, xe, ye, me, cfg.fgsm_eps))
    timings["train_s"] = time.perf_counter() - t1

    def in_spec_order(hist: list[Tensor]) -> Tensor:
        h = torch.stack(hist, -1).cpu()  # (S, G, n)
        return h[positions[:, 0], positions[:, 1]]

    stats = {**sched.stats, **timings, "models": m_n, "grid": [s_n, g_n], "steps_per_epoch": steps,
             "pool_epochs": pool_epochs}
    return TrainResult(
        specs=specs,
        eval_epochs=eval_epochs,
        clean={n: in_spec_order(v) for n, v in clean.items() if v},
        robust_epochs=robust_epochs,
        robust={n: in_spec_order(v) for n, v in robust.items() if v},
        model=model,
        best=best,
        best_epoch=None if best_epoch is None else best_epoch.cpu()[positions[:, 0], positions[:, 1]],
        positions=positions,
        stats=stats,
    )


def evaluate(result: TrainResult, sets: Sequence[tuple[Tensor, Tensor]], which: str = "best",
             fgsm_eps: float | None = None) -> Tensor:
    """Accuracy ``(M,)`` (spec order) of every model on its stream's set ``sets[stream]``
    (``which``: the ``"best"`` epoch snapshot or the ``"last"`` parameters); with
    ``fgsm_eps``, accuracy under FGSM of that radius."""
    net = result.best if which == "best" and result.best is not None else result.model
    dev = net.weights[0].device
    fake = [Stream(x[:0], y[:0], y[:0], {"set": (x, y)}, 0) for x, y in sets]
    xe, ye, me = _pad_evals(fake, "set", dev)
    acc = accuracy(net, xe, ye, me) if fgsm_eps is None else fgsm_accuracy(net, xe, ye, me, fgsm_eps)
    return acc.cpu()[result.positions[:, 0], result.positions[:, 1]]
