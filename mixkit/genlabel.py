"""GenLabel: relabel mixed points with the posterior of class-conditional densities."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from mixkit._validation import (
    as_class_ids,
    as_tensor,
    check_batch,
    check_float_dtype,
    check_int,
    check_positive,
    check_range,
    check_soft_labels,
    is_compiling,
)
from mixkit.batch import MixedBatch
from mixkit.data import iter_batches
from mixkit.densities.base import Density
from mixkit.registry import resolve

PRIORS = ("uniform", "empirical")


def blend_labels(y_mix: Tensor, y_gen: Tensor, gamma: float | Tensor,
                 fallback: Tensor | None = None) -> Tensor:
    """``gamma * y_gen + (1 - gamma) * y_mix``, with the rows in ``fallback`` kept at ``y_mix``.

    Args:
        y_mix: ``(B, K)`` the labels to blend with (for GenLabel: the labels so far).
        y_gen: ``(B, K)`` the generative label (cast to ``y_mix``'s dtype).
        gamma: a float in ``[0, 1]``, or a tensor broadcastable as ``(G, 1, 1)`` (``(G,)``
            included) for ``G`` gammas at once: the result is then ``(G, B, K)``.
        fallback: optional ``(B,)`` bool, rows that keep ``y_mix`` whatever ``gamma``
            (rows where the density cannot say; their ``y_gen`` may hold anything, NaN
            included, it is never read).

    Never modifies its inputs (with ``gamma == 1`` and no ``fallback`` the result is
    ``y_gen`` itself); nothing is read back to the host, so it is safe on the hot path.
    """
    if y_gen.shape[-2:] != y_mix.shape[-2:]:
        raise ValueError(
            f"y_mix {tuple(y_mix.shape)} and y_gen {tuple(y_gen.shape)} must both be (B, K) labels "
            "of the same batch and classes"
        )
    y_gen = y_gen.to(y_mix.dtype)
    if torch.is_tensor(gamma):
        g = gamma.to(device=y_mix.device, dtype=y_mix.dtype)
        if g.ndim == 1:
            g = g[:, None, None]
        y = torch.lerp(y_mix, y_gen, g)
    elif gamma == 1.0:
        y = y_gen
    elif gamma == 0.0:
        return y_mix.clone()
    else:  # outside [0, 1] the blend extrapolates: negative "probabilities"
        y = torch.lerp(y_mix, y_gen, check_range("gamma", gamma, 0.0, 1.0))
    if fallback is not None:
        y = torch.where(fallback[:, None], y_mix, y)
    return y


class GenLabel(nn.Module):
    """Relabel a :class:`MixedBatch` with ``gamma * y_gen + (1 - gamma) * batch.y``.

    ``y_gen = softmax_c((log p_c(z) + log prior_c) / temperature)`` where
    ``z = feature_map(x_mix)`` (the input itself by default, flattened), as in
    Algorithms 1 and 2 of the GenLabel paper; with ``top_k=2`` only the two most
    probable classes keep mass, the rule of Algorithm 3.

    Args:
        density: a registered density name (``"gaussian"``, ``"kde"``, ...) or a
            :class:`mixkit.Density` instance (fitted or not).
        gamma: weight of the generative label in ``[0, 1]``; 0 leaves the labels as they are.
        top_k: keep only the ``top_k`` most likely classes (``None``: all). Exactly
            ``top_k`` classes are kept, ties broken by ``torch.topk``.
        prior: ``"uniform"`` (the paper), ``"empirical"`` (class shares seen by the
            density's ``fit``, for imbalanced data) or a ``(K,)`` tensor of priors
            (finite, non-negative, positive sum; normalised).
        temperature: divides the log-posterior; > 1 softens, < 1 sharpens (a tiny
            temperature gives the one-hot label of the most likely class).
        feature_map: optional callable applied to inputs before the density (e.g. a
            frozen feature extractor), under ``torch.no_grad``.
        include_feature_map: put a ``feature_map`` that is an ``nn.Module`` into this
            module's ``state_dict`` (and let ``.to()`` move it). Off by default: a feature
            map is usually the user's own network, saved with the user's model, and a
            relabeler that silently carries a second copy of a ResNet is a surprise.
            (Assigning a module to ``gl.feature_map`` later registers it, as for any
            ``nn.Module`` attribute.)
        diagnostics: count, per call, the rows whose top-1 class changed and the rows
            that fell back (``batch.info["genlabel"]`` and :meth:`stats`). They cost a
            few small kernels (about a third of a relabel at B = 128): turn them off
            when nobody reads them.
        validate: check ``batch.y`` of each batch (finite, non-negative, rows summing to
            1). Off unless ``True``: the labels come from a mixer, which checks the labels
            it is given, and checking them again costs more than half a relabel at
            B = 128 on the CPU (and a host sync elsewhere). Never under ``torch.compile``.
        **density_kwargs: passed to the density when it is given by name.

    **Chaining.** A relabeler blends with ``batch.y``, the labels so far (for the first
    relabeler after a mixer, the mixing label), and writes the result to ``y``;
    ``batch.y_mix`` always keeps the mixer's label. So ``MixCollate(relabel=[a, b])``
    gives ``b`` the labels that ``a`` produced.

    **Fallback.** A row whose log-densities are all ``-inf`` (far outside every class for
    a density with bounded support, a NaN input, a density that cannot say) keeps the
    labels so far; no NaN reaches a label. Nothing is read back to the host on this path:
    the relabel is a fixed handful of kernels after the density's own, and traces under
    ``torch.compile(fullgraph=True)``.

    **State.** GenLabel is an ``nn.Module``: the density is a submodule, and ``gamma``,
    ``top_k``, ``temperature`` and the prior travel in the state dict (a tensor prior as
    a buffer, the rest as extra state), so a model holding a GenLabel checkpoints it and
    ``torch.load(weights_only=True)`` of that state into a fresh GenLabel of the same
    density name gives identical labels. The counters of :meth:`stats` are not state.

    **Workers.** With ``MixCollate(relabel=gl)`` in ``DataLoader`` workers, each worker
    relabels with its own copy, so ``gl.stats()`` in the main process stays at zero. The
    per-batch counts travel with the batch (``MixCollate(..., return_batch=True)``): sum
    them in the main process with :class:`mixkit.RelabelStats`.
    """

    def __init__(
        self,
        density: str | Density = "gaussian",
        gamma: float = 1.0,
        *,
        top_k: int | None = None,
        prior: str | Tensor = "uniform",
        temperature: float = 1.0,
        feature_map: Callable[[Tensor], Tensor] | None = None,
        include_feature_map: bool = False,
        diagnostics: bool = True,
        validate: bool | None = None,
        **density_kwargs: Any,
    ) -> None:
        super().__init__()
        self.gamma = check_range("gamma", gamma, 0.0, 1.0)
        self.top_k = check_int("top_k", top_k, 1, allow_none=True)
        self.temperature = check_positive("temperature", temperature)
        if feature_map is not None and not callable(feature_map):
            raise TypeError(f"feature_map must be callable (a module or a function), got {feature_map!r}")
        self.density = resolve("density", density, Density, **density_kwargs)
        self.prior_mode, probs = _check_prior(prior)
        if probs is not None:
            self.register_buffer("prior_probs", probs)
        if include_feature_map or not isinstance(feature_map, nn.Module):
            self.feature_map = feature_map
        else:  # kept out of the module tree: not in state_dict, not moved by .to()
            object.__setattr__(self, "feature_map", feature_map)
        self.diagnostics = bool(diagnostics)
        self.validate = validate
        self._log_prior_cache: tuple[Any, Tensor] | None = None
        self.reset_stats()

    def extra_repr(self) -> str:
        return (f"gamma={self.gamma}, top_k={self.top_k}, prior={self.prior_mode}, "
                f"temperature={self.temperature}, diagnostics={self.diagnostics}")

    # -- fitting ------------------------------------------------------------------------------

    def fit(
        self,
        x: Any,
        y: Any = None,
        *,
        batch_size: int = 256,
        input_key: str | None = None,
        label_key: str | None = None,
    ) -> GenLabel:
        """Fit the density on training data mapped by ``feature_map``.

        ``fit(x, y)``: tensors (or arrays) of inputs and labels (class ids or soft labels).
        ``fit(data)``: a ``Dataset`` of ``(x, y)`` tuples or dicts, a ``DataLoader`` or any
        iterable of batches (see :func:`mixkit.data.iter_batches`; ``input_key`` /
        ``label_key`` pick the items of dict batches, ``batch_size`` batches a dataset).

        Features are extracted batch by batch under ``torch.no_grad``, on the feature
        map's device (a module's parameters' device). A density with ``fit_batches``
        consumes the stream in bounded memory (the Gaussian exactly, by sums); any
        other density is fitted on the concatenated features. Inputs requiring grad
        are detached: the fitted density stores no graph.
        """
        batch_size = check_int("batch_size", batch_size, 1)
        if y is not None:
            if isinstance(x, (DataLoader, Dataset)):
                raise TypeError("a Dataset or DataLoader carries its labels: call fit(data) without y")
            x = as_tensor(x, "x").detach()
            if x.ndim < 1 or x.shape[0] == 0:
                raise ValueError(f"fit needs a non-empty batch of inputs (N, ...), got shape {tuple(x.shape)}")
            y = as_tensor(y, "y").detach()
            if y.ndim == 0:
                raise ValueError("y must hold one label per sample, got a 0-d tensor; pass shape (N,)")
            if y.shape[0] != x.shape[0]:
                raise ValueError(f"x has {x.shape[0]} samples but y has {y.shape[0]}")
            if self.feature_map is None:
                self.density.fit(_flat(x), _ids(y))
                return self
            stream = iter_batches(x, y, batch_size=batch_size)
        else:
            stream = iter_batches(x, batch_size=batch_size, input_key=input_key, label_key=label_key)
        batches = self._feature_batches(stream)
        if hasattr(self.density, "fit_batches"):
            self.density.fit_batches(batches)
        else:
            zs, ids = zip(*batches, strict=True)
            self.density.fit(torch.cat(zs), torch.cat(ids))
        return self

    def _feature_batches(self, stream: Iterator[tuple[Any, Any]]) -> Iterator[tuple[Tensor, Tensor]]:
        device = _module_device(self.feature_map)
        seen = 0
        for xb, yb in stream:
            xb = as_tensor(xb, "x").detach()
            yb = as_tensor(yb, "y").detach()
            if xb.shape[0] == 0:
                continue
            if device is not None:
                xb = xb.to(device, non_blocking=True)
            z = self.features(xb)
            seen += z.shape[0]
            yield z, _ids(yb).to(z.device)
        if seen == 0:
            raise ValueError("fit got no samples: the dataset or loader is empty")

    def features(self, x: Tensor) -> Tensor:
        """What the density sees: ``feature_map(x)``, flattened to ``(B, d)``, detached."""
        x = x.detach()
        if self.feature_map is None and x.ndim == 2:  # the hot path of Algorithm 1
            return x
        if self.feature_map is not None:
            with torch.no_grad():
                z = self.feature_map(x)
            if not torch.is_tensor(z) or z.ndim < 1 or z.shape[0] != x.shape[0]:
                got = tuple(z.shape) if torch.is_tensor(z) else type(z).__name__
                raise TypeError(
                    f"feature_map must return one feature tensor (B, ...) for a batch of {x.shape[0]}, got "
                    f"{got}; wrap it to pick the features (e.g. lambda x: model(x)[0])"
                )
            x = z
        return _flat(x)

    # -- the relabel --------------------------------------------------------------------------

    def log_posterior(self, x: Tensor) -> Tensor:
        """``log p_c(z) + log prior_c`` for every class, ``(B, K)`` (before the temperature)."""
        self.density.follow_device(x.device, "GenLabel")
        logits = self.density.log_prob(self.features(x))
        log_prior = self._log_prior(logits)
        return logits if log_prior is None else logits + log_prior

    def _posterior(self, x: Tensor, dtype: torch.dtype, *, clean: bool = True) -> tuple[Tensor, Tensor]:
        """``(y_gen, dead)``: the label of each row and a ``(B, 1)`` mask of the rows where
        the density cannot say. Those rows get a uniform ``y_gen`` with ``clean``; without
        it (the relabel, which never reads them) they are left as they come (NaN)."""
        if x.shape[0] == 0:
            # a 0-row batch (ExcludeIntrusion or GenMix's discard can leave one): nothing to
            # score, and a density's row reductions need not accept an empty batch
            self.density._check_fitted()
            k = self.density.num_classes
            empty = torch.zeros(0, k, dtype=dtype, device=x.device)
            return empty, torch.zeros(0, 1, dtype=torch.bool, device=x.device)
        # class-major (K, B): a reduction over the classes then runs along the outer axis,
        # vectorised over the batch (torch.softmax over a trailing axis of K = 10 measured
        # 5x slower on the CPU). The Gaussian hands back this layout already (a transposed
        # view); other densities' (B, K) rows cost one small copy.
        logits_t = self.log_posterior(x).T
        if not logits_t.is_contiguous():
            logits_t = logits_t.contiguous()
        work = torch.promote_types(torch.promote_types(dtype, logits_t.dtype), torch.float32)
        k = self.top_k
        if k is not None and k < logits_t.shape[0]:
            # exactly k classes keep mass, ties included: normalise the top-k values only
            vals, idx = logits_t.topk(k, dim=0)
            y_top = _class_softmax(vals, self.temperature, work, top=vals[:1])
            y_t = torch.zeros(logits_t.shape, dtype=dtype, device=logits_t.device)
            y_t = y_t.scatter_(0, idx, y_top.to(dtype))
            dead = y_top[0].isnan()[:, None]  # NaN: the density could not say
        else:
            y_t = _class_softmax(logits_t, self.temperature, work)
            if work != dtype:
                y_t = y_t.to(dtype)
            dead = y_t[0].isnan()[:, None]
        y_gen = y_t.T
        if clean:
            y_gen = torch.where(dead, 1.0 / y_gen.shape[1], y_gen).contiguous()
        return y_gen, dead

    def posterior(self, x: Tensor, dtype: torch.dtype = torch.float32) -> tuple[Tensor, Tensor]:
        """The generative label ``y_gen`` ``(B, K)`` of inputs ``x`` and a ``(B,)`` bool mask
        ``dead`` of rows with no finite log-density (their ``y_gen`` row is uniform: the
        density cannot say; GenLabel keeps the labels so far there). Never NaN."""
        # an integer dtype would truncate every probability to 0
        y_gen, dead = self._posterior(as_tensor(x, "x"), check_float_dtype("dtype", dtype))
        return y_gen, dead[:, 0]

    def forward(self, batch: MixedBatch) -> MixedBatch:
        """Relabel ``batch``: ``y = blend_labels(batch.y, y_gen, gamma, fallback)``."""
        check_batch(batch, "GenLabel")
        y_prev = batch.y
        if self.gamma == 0.0:
            return batch
        compiling = is_compiling()
        if self.validate and not compiling:
            check_soft_labels(y_prev, "labels passed to GenLabel (batch.y)")
        y_gen, dead = self._posterior(batch.x, y_prev.dtype, clean=False)
        if y_gen.shape[1] != y_prev.shape[1]:
            raise ValueError(
                f"the density knows {y_gen.shape[1]} classes but the batch has {y_prev.shape[1]}; "
                "fit it on data with all classes or set num_classes"
            )
        # blend_labels without its checks (gamma was checked when set, y_gen is in y_prev's
        # dtype); y_gen is a class-major view: y_prev before it makes the result row-major
        gamma = self.gamma
        y = torch.where(dead, y_prev, y_gen if gamma == 1.0 else torch.lerp(y_prev, y_gen, gamma))
        n = y.shape[0]
        if self._counts.device != y.device:
            self._counts = self._counts.to(y.device)
        if compiling:
            # a Python int read in a graph is a guard: counting in one would recompile every call
            self._counts[2:].add_(self._one_and_n(n, y.device))
        else:
            self._tally[0] += 1  # a list, not attributes: nn.Module.__setattr__ costs ~2 us a call
            self._tally[1] += n
        if not self.diagnostics:
            return batch.replace(y=y)
        # counted on the device, in one (2,) tensor: reading them would sync every batch
        flags = torch.stack([y.argmax(1) != y_prev.argmax(1), dead[:, 0]])
        counts = flags.sum(1)
        self._counts[:2].add_(counts)
        info = {**batch.info, "genlabel": {"changed": counts[0], "fallback": counts[1], "n": n}}
        return batch.replace(y=y, info=info)

    # -- statistics -----------------------------------------------------------------------------

    def stats(self) -> dict[str, int]:
        """Totals since construction or :meth:`reset_stats` (reads the device: a sync).

        ``changed`` and ``fallback`` are counted only with ``diagnostics=True``. They count
        the calls made in *this* process: see the class docstring for DataLoader workers.
        """
        changed, fallback, calls, samples = self._counts.tolist()  # the last two: compiled calls
        out = {"calls": self._tally[0] + int(calls), "samples": self._tally[1] + int(samples)}
        if self.diagnostics:
            out.update(changed=int(changed), fallback=int(fallback))
        return out

    def reset_stats(self) -> None:
        self._tally = [0, 0]  # calls, samples
        device = getattr(self, "_counts", torch.empty(0)).device
        # a plain attribute, not a buffer: counters are not state and must not be saved;
        # changed, fallback, and the calls and samples of compiled calls
        self._counts = torch.zeros(4, dtype=torch.long, device=device)

    @staticmethod
    def _one_and_n(n: int, device: torch.device) -> Tensor:
        return torch.tensor([1, n], dtype=torch.long, device=device)

    # -- state -----------------------------------------------------------------------------------

    def get_extra_state(self) -> dict[str, Any]:
        return {"gamma": self.gamma, "top_k": self.top_k, "temperature": self.temperature,
                "prior": self.prior_mode}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        self.gamma = check_range("gamma", state["gamma"], 0.0, 1.0)
        self.top_k = check_int("top_k", state["top_k"], 1, allow_none=True)
        self.temperature = check_positive("temperature", state["temperature"])
        self.prior_mode = state["prior"]
        if self.prior_mode != "tensor":
            self._buffers.pop("prior_probs", None)
        self._log_prior_cache = None

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any, **kwargs: Any) -> None:
        # a tensor prior is a buffer that a GenLabel built with another prior lacks: make room
        key = prefix + "prior_probs"
        if key in state_dict:
            value = state_dict[key]
            current = self._buffers.get("prior_probs")
            if current is None or current.shape != value.shape:
                self.register_buffer("prior_probs", torch.empty_like(value))
        elif (state_dict.get(prefix + "_extra_state") or {}).get("prior", "tensor") != "tensor":
            self._buffers.pop("prior_probs", None)  # a state without a tensor prior
        # the density creates its fitted buffers in fit; its load_state_dict makes room for
        # them in a fresh instance, which the recursive load of a parent module would skip
        sub = prefix + "density."
        dens_state = {k[len(sub):]: v for k, v in state_dict.items() if k.startswith(sub)}
        if dens_state:
            self.density.load_state_dict(dens_state, strict=False)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        self._log_prior_cache = None

    def _log_prior(self, like: Tensor) -> Tensor | None:
        if self.prior_mode == "uniform":
            return None
        if self.prior_mode == "empirical":
            # read on every call: an online density's class counts change as it learns
            counts = self.density.class_counts.to(like.dtype)
            return counts.log() - counts.sum().log()
        probs = self.prior_probs
        if probs.shape[0] != like.shape[1]:
            raise ValueError(
                f"prior has {probs.shape[0]} entries but the density knows {like.shape[1]} classes; "
                "pass one prior per class"
            )
        # converted once per dtype and device (no data_ptr key: it cannot be read while
        # compiling); the buffer changes only by load_state_dict or .to(), which clear it
        key = (like.dtype, like.device)
        cache = self._log_prior_cache
        if cache is not None and cache[0] == key:
            return cache[1]
        log_prior = probs.log().to(device=like.device, dtype=like.dtype)
        if not is_compiling():  # filled inside a graph, it would be a guard failing on the next call
            self._log_prior_cache = (key, log_prior)
        return log_prior

    def _apply(self, fn: Any, recurse: bool = True) -> GenLabel:
        self._log_prior_cache = None
        self._counts = fn(self._counts)
        return super()._apply(fn, recurse)


def _class_softmax(logits_t: Tensor, temperature: float, dtype: torch.dtype, *,
                   top: Tensor | None = None, fused: bool | None = None) -> Tensor:
    """``softmax(logits / temperature)`` over the classes of class-major ``(K, B)`` logits, in
    ``dtype``. A column with no finite maximum (all ``-inf``, a NaN, a ``+inf``) comes out
    NaN, which is how the caller tells that the density could not say; ``-inf`` classes get
    exactly 0.

    The column max is subtracted *before* the temperature: ``(z - max) / T <= 0``, so a tiny
    ``T`` gives 0 for the top class and ``-inf`` for the others (the one-hot label), not
    ``inf - inf``.

    On the CPU, ``exp``, sum and divide rather than ``torch.softmax``, whose kernel measured
    slower at K = 100, B = 1024 (105 against 58 µs) and is not the arithmetic the committed
    benchmark runs used (4.5 against 6.2 µs at K = 10, B = 128 is not worth labels that
    differ in the last bit). ``exp`` of an argument whose result underflows (below about
    -87 in float32: a class far less likely than the top one, the usual case), and
    arithmetic on the denormal numbers that come out, leave the vectorised path, up to 3x
    slower. So arguments are clamped where even the quotient by the column sum (at most K)
    stays a normal number, and what comes out at or below the clamp's own value
    (probabilities under ``e K`` times the smallest normal number: rounding residue) is set
    to exactly 0; a NaN column stays NaN through both. ``top``: the column max when the
    caller has it (top-k values come sorted). ``fused``: one ``torch.softmax``, unclamped
    (the default off the CPU, where the clamp costs two kernels and saves nothing).
    """
    if top is None:
        top = logits_t.amax(0, keepdim=True)
    z = logits_t - top
    if temperature != 1.0:
        # a factor within the dtype's normal range: 1/T in float32 would be inf (T = 1e-300,
        # and 0 * inf = NaN at the top class) or 0 (T = 1e300, and -inf * 0 = NaN)
        info = torch.finfo(z.dtype)
        z = z.mul_(min(max(1.0 / temperature, info.tiny), info.max))
    if fused if fused is not None else z.device.type != "cpu":
        return torch.softmax(z, 0, dtype=dtype)
    floor, cut = _underflow(dtype, z.shape[0])
    e = torch.nn.functional.threshold_(z.to(dtype).clamp_min_(floor).exp_(), cut, 0.0)
    return e.div_(e.sum(0, keepdim=True))


def _underflow(dtype: torch.dtype, num_classes: int) -> tuple[float, float]:
    """``(clamp, zero at or below)`` of :func:`_class_softmax` for ``dtype`` and K classes:
    ``exp(clamp) / K`` is a normal number (``e`` times the smallest one), and the cut lies
    just above ``exp(clamp)``, so every clamped entry becomes exactly 0. Plain float
    arithmetic on constants: no cache, whose filling would be a guard (and a recompile)
    under ``torch.compile``."""
    log_tiny = _LOG_TINY.get(dtype)
    if log_tiny is None:
        log_tiny = math.log(torch.finfo(dtype).tiny)
    floor = log_tiny + math.log(max(1, num_classes)) + 1.0
    return floor, math.exp(floor) * (1.0 + 1e-4)


# never modified: a constant table, not a cache
_LOG_TINY = {dt: math.log(torch.finfo(dt).tiny) for dt in (torch.float32, torch.float64)}


def _check_prior(prior: Any) -> tuple[str, Tensor | None]:
    """``(mode, probabilities)`` of a prior argument, checked once, at construction."""
    if isinstance(prior, str):
        if prior not in PRIORS:
            raise ValueError(f"prior must be 'uniform', 'empirical' or a (K,) tensor, got {prior!r}")
        return prior, None
    try:
        p = as_tensor(prior, "prior").detach().to(torch.float64)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise TypeError(f"prior must be 'uniform', 'empirical' or a (K,) tensor of class priors, got {prior!r}"
                        ) from exc
    if p.ndim != 1 or p.shape[0] == 0:
        raise ValueError(f"prior must be a (K,) tensor with one entry per class, got shape {tuple(p.shape)}")
    if not bool(torch.isfinite(p).all()):
        raise ValueError(f"prior must be finite, got {p.tolist()}; pass class shares or counts")
    if bool((p < 0).any()) or not float(p.sum()) > 0:
        raise ValueError(f"prior must be non-negative with a positive sum, got {p.tolist()}")
    return "tensor", (p / p.sum()).clone()


def _flat(x: Tensor) -> Tensor:
    # math.prod, not -1: a 0-row batch has no size for -1 to infer
    return x.reshape(x.shape[0], math.prod(x.shape[1:]))


def _ids(y: Tensor) -> Tensor:
    """Class ids from class ids (any integer dtype, (N,) or (N, 1)) or soft labels (N, K)."""
    if y.ndim == 2 and y.shape[1] > 1:
        return y.argmax(1)
    return as_class_ids(y, what="labels passed to fit")


def _module_device(fm: Any) -> torch.device | None:
    """The device a feature map computes on: its first parameter's (or buffer's), if any."""
    if not isinstance(fm, nn.Module):
        return None
    for t in fm.parameters():
        return t.device
    for t in fm.buffers():
        return t.device
    return None


__all__ = ["GenLabel", "blend_labels"]
