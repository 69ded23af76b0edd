"""A hostile user's pass over the public API: every misuse gets a mixkit error naming it.

Each case is ``(id, call, error type, pattern the message must match)``: the message
must name what was wrong (and, where the API can say it, what to do), never be a
torch or Python internal ("new(): invalid data type", "'tuple' object has no
attribute", "list index out of range", ...). The cases marked "regression" failed
before this pass; the others pin behaviour that already held. Silent-wrong-result
checks (dtypes, layouts, 0/1-row batches, round trips) follow the error table.
"""

from __future__ import annotations

import copy
import pickle
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import mixkit
from mixkit import (
    KDE,
    CutMix,
    ExcludeIntrusion,
    Gaussian,
    GenLabel,
    GenMix,
    LogisticLabel,
    MixChoice,
    MixCollate,
    MixedBatch,
    Mixup,
    OnlineGaussian,
    blend_labels,
    create_density,
    create_mixer,
    from_timm,
    genmix_dataset,
    on_device,
    register_plugin,
)
from mixkit.diagnosis import DataFileError, read_data
from mixkit.integrations.lightning import mix_batch
from mixkit.nn import FeatureGenMix, ManifoldMixup, OnlineGenLabel, frozen_features
from mixkit.registry import resolve

ROOT = Path(__file__).resolve().parents[1]
K, D = 3, 5
X = torch.randn(60, D, generator=torch.Generator().manual_seed(0))
Y = torch.arange(60) % K
XI = torch.randn(8, 3, 8, 8, generator=torch.Generator().manual_seed(1))
YI = torch.arange(8) % K
SAMPLES = [(XI[i], int(YI[i])) for i in range(8)]


def batch(n: int = 8, d: int = D, k: int = K) -> MixedBatch:
    return Mixup(num_classes=k, seed=0)(torch.randn(n, d), torch.arange(n) % k)


def fitted(name: str = "gaussian") -> mixkit.Density:
    return create_density(name).fit(X, Y)


def net() -> nn.Module:
    return nn.Sequential(nn.Linear(D, D), nn.ReLU(), nn.Linear(D, K))


# torch / Python internals that must never reach a user
INTERNAL = re.compile(
    r"invalid data type|has no attribute|index out of range|object is not (iterable|callable)|"
    r"has no len|Overflow when unpacking|one of name or plugin|baddbmm|amax\(\)|not a zip file|"
    r"Expected one of cpu|received an invalid combination|must be torch.Generator, not"
)

ERRORS = [
    # -- mixers (regression: non-tensor inputs, lam, params, generator, seeds, minmax) -------
    ("mixup-x-str", lambda: Mixup(num_classes=K)("abc", YI), TypeError, r"x must be a tensor.*got str"),
    ("mixup-x-none", lambda: Mixup(num_classes=K)(None, YI), TypeError, r"x must be a tensor.*NoneType"),
    ("mixup-lam-str", lambda: Mixup(num_classes=K)(XI, YI, lam="a"), TypeError, r"lam must be a tensor"),
    ("mixup-params-int", lambda: Mixup(num_classes=K)(XI, YI, params=5), TypeError, r"params must be the MixParams"),
    ("cutmix-params-of-mixup",
     lambda: CutMix(num_classes=K)(XI, YI, params=Mixup(num_classes=K).draw(8, XI.shape, torch.Generator())),
     ValueError, r"no CutMix box"),
    ("mixup-generator-int", lambda: Mixup(num_classes=K)(XI, YI, generator=5), TypeError,
     r"generator must be a torch.Generator"),
    ("mixup-seed-2**70", lambda: Mixup(seed=2**70), ValueError, r"seed must fit in 64 bits"),
    ("collate-seed-2**70", lambda: MixCollate(seed=2**70), ValueError, r"seed must fit in 64 bits"),
    ("cutmix-minmax-float", lambda: CutMix(minmax=0.5), ValueError, r"minmax must be \(min, max\)"),
    ("from-timm-minmax-float", lambda: from_timm(num_classes=K, cutmix_minmax=0.5), ValueError,
     r"minmax must be \(min, max\)"),
    # -- mixers (held) ---------------------------------------------------------------------
    ("mixup-x-complex", lambda: Mixup(num_classes=K)(XI.to(torch.complex64), YI), TypeError, r"x is complex"),
    ("mixup-y-bool", lambda: Mixup(num_classes=K)(XI, YI.bool()), ValueError, r"bool tensor.*not a mask"),
    ("mixup-y-nonint", lambda: Mixup(num_classes=K)(XI, YI.float() + 0.5), ValueError, r"integer class ids"),
    ("mixup-y-range", lambda: Mixup(num_classes=2)(XI, YI), ValueError, r"must lie in \[0, 2\)"),
    ("mixup-0-rows", lambda: Mixup(num_classes=K)(XI[:0], YI[:0]), ValueError, r"non-empty batch"),
    ("mixup-B-mismatch", lambda: Mixup(num_classes=K)(XI, YI[:5]), ValueError, r"8 samples but y has 5"),
    ("mixup-nan", lambda: Mixup(num_classes=K, validate=True)(XI * float("nan"), YI), ValueError, r"NaN/Inf"),
    ("mixup-soft-K", lambda: Mixup(num_classes=4)(XI, torch.full((8, K), 1 / K)), ValueError, r"3 columns"),
    ("mixup-soft-sum", lambda: Mixup()(XI, torch.rand(8, K) + 1), ValueError, r"rows summing to 1"),
    ("mixup-alpha-nan", lambda: Mixup(alpha=float("nan")), ValueError, r"alpha must be a number"),
    ("mixup-alpha-inf", lambda: Mixup(alpha=float("inf")), ValueError, r"alpha must be a positive finite"),
    ("mixup-K-2.5", lambda: Mixup(num_classes=2.5), TypeError, r"num_classes must be an integer"),
    ("mixup-lam-1.1", lambda: Mixup(num_classes=K)(XI, YI, lam=1.1), ValueError, r"lam must lie in \[0, 1\]"),
    ("mixup-lam-nan", lambda: Mixup(num_classes=K)(XI, YI, lam=float("nan")), ValueError,
     r"lam must lie in \[0, 1\].*got nan"),
    ("mixup-lam-shape", lambda: Mixup(num_classes=K)(XI, YI, lam=torch.full((3,), 0.3)), ValueError, r"\(8,\)"),
    ("cutmix-2d", lambda: CutMix(num_classes=K)(X[:8], Y[:8]), ValueError, r"cutmix needs spatial inputs"),
    ("label-dtype-int", lambda: Mixup(label_dtype=torch.int64), ValueError, r"floating torch dtype"),
    ("multi-label-ids", lambda: Mixup(num_classes=K, multi_label=True)(XI, YI), ValueError, r"multi_label"),
    # -- composite -------------------------------------------------------------------------
    ("choice-weights-neg", lambda: MixChoice(["mixup", "cutmix"], weights=[1, -1]), ValueError, r"weights"),
    ("choice-weights-zero", lambda: MixChoice(["mixup", "cutmix"], weights=[0, 0]), ValueError, r"positive sum"),
    ("choice-weights-len", lambda: MixChoice(["mixup", "cutmix"], weights=[1]), ValueError, r"2 non-negative"),
    ("choice-weights-nan", lambda: MixChoice(["mixup", "cutmix"], weights=[float("nan"), 1]), ValueError, r"nan"),
    ("choice-switch-3", lambda: MixChoice(["mixup"] * 3, switch_prob=0.5), ValueError, r"two mixers"),
    ("choice-prob-1.1", lambda: MixChoice(["mixup"], prob=1.1), ValueError, r"prob must lie"),
    ("choice-mode", lambda: MixChoice(["mixup"], mode="bogus"), ValueError, r"mode must be one of"),
    ("choice-empty", lambda: MixChoice([]), TypeError, r"non-empty list"),
    ("choice-nested", lambda: MixChoice([MixChoice(["mixup"])]), TypeError, r"use it on its own"),
    ("choice-genmix", lambda: MixChoice([GenMix(Gaussian())]), TypeError, r"use it on its own"),
    ("choice-int", lambda: MixChoice([42]), TypeError, r"mixer names or mixkit.Mixer"),
    ("choice-K-conflict", lambda: MixChoice([Mixup(num_classes=2), "cutmix"], num_classes=K), ValueError,
     r"Mixup has num_classes=2 but num_classes=3"),
    # -- MixCollate / dict batches / on_device (regression: empty list, relabel output, on_device) --
    ("collate-empty-list", lambda: MixCollate(num_classes=K)([]), ValueError, r"empty list of samples"),
    ("collate-relabel-none", lambda: MixCollate(num_classes=K, relabel=lambda b: None)(SAMPLES), TypeError,
     r"returned NoneType; a relabeler must return a MixedBatch"),
    ("collate-relabel-tensor", lambda: MixCollate(num_classes=K, relabel=lambda b: b.y)(SAMPLES), TypeError,
     r"returned Tensor"),
    ("on-device-int", lambda: list(on_device(5, None, "cpu")), TypeError, r"iterable of batches"),
    ("on-device-mix-int", lambda: list(on_device([(XI, YI)], 5, "cpu")), TypeError, r"mix must be a MixCollate"),
    ("on-device-bogus", lambda: list(on_device([(XI, YI)], None, "bogus")), ValueError, r"device must be"),
    ("collate-dict-no-label", lambda: MixCollate(num_classes=K)({"image": XI}), KeyError, r"pass label_key"),
    ("collate-dict-no-input", lambda: MixCollate(num_classes=K)({"label": YI}), KeyError, r"pass input_key"),
    ("collate-dict-bad-key", lambda: MixCollate(num_classes=K, input_key="pix")({"image": XI, "label": YI}),
     KeyError, r"no inputs key 'pix'"),
    ("collate-getter-foreign", lambda: MixCollate(num_classes=K, labels_getter=lambda b: YI.clone())(
        {"image": XI, "label": YI}), ValueError, r"labels tensor of the batch itself"),
    ("collate-1-tuple", lambda: MixCollate(num_classes=K)((XI,)), TypeError, r"\(x, y, \.\.\.\)"),
    ("collate-fn-x-only", lambda: MixCollate(num_classes=K, collate_fn=lambda s: XI)(SAMPLES), TypeError,
     r"collate_fn must return"),
    ("collate-list-kwargs", lambda: MixCollate(["mixup", "cutmix"], alpha=0.5), TypeError, r"cannot tell which"),
    ("collate-K-mismatch", lambda: MixCollate(Mixup(num_classes=4), num_classes=K), ValueError, r"num_classes=4"),
    ("collate-model", lambda: MixCollate(ManifoldMixup(net(), num_classes=K, layers=["0"])), TypeError,
     r"ManifoldMixup"),
    ("collate-relabel-str", lambda: MixCollate(relabel="gaussian"), TypeError, r"relabel must be a callable"),
    ("collate-smoothing", lambda: MixCollate(label_smoothing=float("nan")), ValueError, r"label_smoothing"),
    ("collate-epoch", lambda: MixCollate().set_epoch(-1), ValueError, r"epoch must be an integer >= 0"),
    ("collate-relabel-K", lambda: MixCollate(num_classes=K, relabel=GenLabel().fit(
        torch.randn(40, 192), torch.arange(40) % 4))(SAMPLES), ValueError, r"knows 4 classes but the batch has 3"),
    ("from-timm-unknown", lambda: from_timm(bogus=1), TypeError, r"unknown arguments \['bogus'\]"),
    ("from-timm-nothing", lambda: from_timm(mixup_alpha=0, cutmix_alpha=0), ValueError, r"nothing to mix"),
    ("from-timm-prob", lambda: from_timm(prob=1.5), ValueError, r"prob must lie"),
    # -- GenLabel and relabelers (regression: feature map output, non-batch input, blend, dtype) --
    ("genlabel-fm-scalar", lambda: GenLabel(feature_map=lambda z: z.sum()).fit(X, Y), TypeError,
     r"feature_map must return one feature tensor"),
    ("genlabel-fm-tuple", lambda: GenLabel(feature_map=lambda z: (z, z)).fit(X, Y), TypeError,
     r"feature_map must return.*got tuple"),
    ("genlabel-tuple", lambda: GenLabel().fit(X, Y)((X[:8], torch.zeros(8, K))), TypeError,
     r"GenLabel takes the MixedBatch"),
    ("intrusion-tuple", lambda: ExcludeIntrusion().fit(X, Y)((X[:8], Y[:8])), TypeError,
     r"ExcludeIntrusion takes the MixedBatch"),
    ("logistic-tuple", lambda: LogisticLabel()((1, 2)), TypeError, r"LogisticLabel takes the MixedBatch"),
    ("blend-shapes", lambda: blend_labels(torch.zeros(4, 3), torch.zeros(4, 2), 0.5), ValueError,
     r"same batch and classes"),
    ("blend-gamma-2", lambda: blend_labels(torch.zeros(4, 3), torch.zeros(4, 3), 2.0), ValueError,
     r"gamma must lie in \[0.0, 1.0\]"),
    ("posterior-int-dtype", lambda: GenLabel().fit(X, Y).posterior(X, dtype=torch.int64), ValueError,
     r"dtype must be a floating torch dtype"),
    # -- GenLabel (held) -------------------------------------------------------------------
    ("genlabel-before-fit", lambda: GenLabel()(batch()), mixkit.NotFittedError, r"not fitted: call .fit"),
    ("genlabel-density-int", lambda: GenLabel(density=42), TypeError, r"registered density name"),
    ("genlabel-kwargs-instance", lambda: GenLabel(Gaussian(), reg_covar=1.0), TypeError, r"only accepted with"),
    ("genlabel-K-mismatch", lambda: GenLabel().fit(X, Y)(batch(k=4)), ValueError, r"knows 3 classes"),
    ("genlabel-dim-mismatch", lambda: GenLabel().fit(X, Y)(batch(d=6)), ValueError, r"5-dimensional"),
    ("genlabel-prior-K", lambda: GenLabel(prior=torch.ones(2)).fit(X, Y)(batch()), ValueError, r"2 entries"),
    ("genlabel-prior-neg", lambda: GenLabel(prior=torch.tensor([1.0, -1, 1])), ValueError, r"non-negative"),
    ("genlabel-temp-nan", lambda: GenLabel(temperature=float("nan")), ValueError, r"temperature"),
    ("genlabel-fit-empty", lambda: GenLabel().fit(X[:0], Y[:0]), ValueError, r"non-empty"),
    ("genlabel-fit-loader-y", lambda: GenLabel().fit(DataLoader(TensorDataset(X, Y)), Y), TypeError,
     r"carries its labels"),
    ("genlabel-fit-empty-loader", lambda: GenLabel().fit(DataLoader(TensorDataset(X[:0], Y[:0]))), ValueError,
     r"no samples"),
    ("genlabel-fit-int", lambda: GenLabel().fit(42), TypeError, r"cannot read batches from int"),
    ("genlabel-fit-dict-keys", lambda: GenLabel().fit([{"foo": X[i], "bar": Y[i]} for i in range(6)]),
     KeyError, r"pass input_key"),
    ("genlabel-fit-nan-y", lambda: GenLabel().fit(X, Y.float() * float("nan")), ValueError, r"integer class ids"),
    ("logistic-sigma-nan", lambda: LogisticLabel(float("nan")), ValueError, r"sigma"),
    ("intrusion-before-fit", lambda: ExcludeIntrusion()(batch()), RuntimeError, r"not fitted"),
    ("intrusion-dim", lambda: ExcludeIntrusion().fit(X, Y)(batch(d=6)), ValueError, r"5 features.*6"),
    # -- densities (regression: KDE sample checks, generator, string labels) ---------------
    ("kde-sample-c-3", lambda: fitted("kde").sample(4, c=3), ValueError, r"class c must lie in \[0, 3\)"),
    ("kde-sample-c-1.5", lambda: fitted("kde").sample(4, c=1.5), TypeError, r"c must be an integer"),
    ("kde-sample-n-neg", lambda: fitted("kde").sample(-1, c=0), ValueError, r"n must be an integer >= 0"),
    ("kde-sample-gen", lambda: fitted("kde").sample(2, c=0, generator=3), TypeError, r"torch.Generator"),
    ("gaussian-sample-gen", lambda: fitted().sample(2, c=0, generator=3), TypeError, r"torch.Generator"),
    ("gaussian-fit-str", lambda: Gaussian().fit(X, "abc"), TypeError, r"must be a tensor"),
    ("genmix-dataset-gen", lambda: genmix_dataset(fitted(), X, Y, 4, generator=3), TypeError, r"torch.Generator"),
    # -- densities (held) ------------------------------------------------------------------
    ("gaussian-state-into-kde", lambda: KDE().load_state_dict(fitted().state_dict()), ValueError,
     r"saved by a Gaussian density"),
    ("kde-state-into-online", lambda: OnlineGaussian().load_state_dict(fitted("kde").state_dict()), ValueError,
     r"saved by a KDE density"),
    ("gaussian-sample-c-neg", lambda: fitted().sample(4, c=-1), ValueError, r"class c must lie"),
    ("density-fit-0", lambda: Gaussian().fit(X[:0], Y[:0]), ValueError, r"0 samples"),
    ("density-fit-1-per-class", lambda: Gaussian().fit(X[:3], Y[:3]), ValueError, r"at least 2 sample"),
    ("density-fit-soft", lambda: Gaussian().fit(X, torch.eye(K)[Y]), ValueError, r"argmax"),
    ("density-fit-3d", lambda: Gaussian().fit(X.reshape(60, 5, 1), Y), ValueError, r"flatten it first"),
    ("density-query-dim", lambda: fitted().log_prob(torch.randn(4, 6)), ValueError, r"5-dimensional"),
    ("density-query-complex", lambda: fitted().log_prob(X.to(torch.complex64)), TypeError, r"complex"),
    ("density-K-too-small", lambda: Gaussian(num_classes=2).fit(X, Y), ValueError, r"\[0, 2\)"),
    ("online-dim-change", lambda: OnlineGaussian().update(X, Y).update(torch.randn(4, 6), Y[:4]), ValueError,
     r"reset\(\)"),
    ("online-float-ids", lambda: OnlineGaussian().update(X, Y.float() + 0.5), ValueError, r"integer class ids"),
    ("kde-bandwidth", lambda: KDE(bandwidth="bogus"), ValueError, r"bandwidth must be one of"),
    ("gaussian-set-nan", lambda: Gaussian().set_parameters(torch.full((3, D), float("nan")),
                                                          torch.eye(D).expand(3, D, D)), ValueError, r"finite"),
    # -- GenMix ----------------------------------------------------------------------------
    ("genmix-unfitted", lambda: GenMix(Gaussian(), num_classes=K)(X[:8], Y[:8]), mixkit.NotFittedError,
     r"needs a fitted density"),
    ("genmix-K", lambda: GenMix(Gaussian(), num_classes=4).fit(X, Y)(X[:8], Y[:8]), ValueError,
     r"knows 3 classes but the mixer has num_classes=4"),
    ("genmix-dim", lambda: GenMix(Gaussian(), num_classes=K).fit(X, Y)(torch.randn(8, 6), Y[:8]), ValueError,
     r"5-dimensional"),
    ("genmix-dataset-pairs", lambda: genmix_dataset(fitted(), X, Y, 4, pairs=[[1, 1]]), ValueError,
     r"two different classes"),
    ("genmix-dataset-lam", lambda: genmix_dataset(fitted(), X, Y, 4, lam=float("nan")), ValueError, r"lam"),
    # -- model side (regression: frozen_features type, OnlineGenLabel class count) --------
    ("frozen-int", lambda: frozen_features(5), TypeError, r"frozen_features takes a trained nn.Module"),
    ("feature-genmix-0-rows", lambda: FeatureGenMix(nn.Linear(D, K), num_classes=K).fit(X, Y).train().mix(
        X[:0], Y[:0]), ValueError, r"non-empty batch"),
    ("lightning-mix-int", lambda: mix_batch((X[:8], Y[:8]), 5), TypeError, r"mix must be a MixCollate"),
    ("manifold-not-module", lambda: ManifoldMixup(lambda x: x), TypeError, r"wraps an nn.Module"),
    ("manifold-bad-layer", lambda: ManifoldMixup(net(), num_classes=K, layers=["nope"]), ValueError,
     r"no submodule 'nope'"),
    ("manifold-no-default", lambda: ManifoldMixup(nn.Linear(D, K), num_classes=K), ValueError,
     r"no default manifold mixup layers"),
    ("manifold-layer-arg", lambda: ManifoldMixup(net(), num_classes=K, layers=["0"]).train()(
        X[:8], Y[:8], layer="2"), ValueError, r"not one of the eligible layers"),
    ("manifold-cutmix-vectors", lambda: ManifoldMixup(net(), mixer="cutmix", num_classes=K, layers=["0"]).train()(
        X[:8], Y[:8]), ValueError, r"cutmix needs spatial inputs"),
    ("manifold-0-rows", lambda: ManifoldMixup(net(), num_classes=K, layers=["0"]).train()(X[:0], Y[:0]),
     ValueError, r"non-empty"),
    ("online-update-every", lambda: OnlineGenLabel(K, update_every=0), ValueError, r"update_every"),
    ("online-K-none", lambda: OnlineGenLabel(None), TypeError, r"num_classes must be an integer"),
    ("online-features", lambda: OnlineGenLabel(K, features="nope")(net().train(), X[:8], Y[:8]), ValueError,
     r"no submodule 'nope'"),
    ("online-ids-range", lambda: OnlineGenLabel(K)(net().train(), X[:8], Y[:8] + 3), ValueError, r"\[0, 3\)"),
    ("online-nan", lambda: OnlineGenLabel(K)(net().train(), X[:8] * float("nan"), Y[:8]), ValueError, r"NaN"),
    ("online-relabel-first", lambda: OnlineGenLabel(K).relabel(batch()), mixkit.NotFittedError, r"not fitted"),
    # -- registry (regression: non-string names, bad kinds, no plugin) ---------------------
    ("create-mixer-int", lambda: create_mixer(42), TypeError, r"named by a string, got int"),
    ("resolve-kind", lambda: resolve("bogus", "mixup"), ValueError, r"kind must be one of"),
    ("register-none", lambda: register_plugin(None), TypeError, r"register_plugin needs a plugin"),
    ("register-int", lambda: register_plugin(42), TypeError, r"implements no mixkit hook"),
    ("create-unknown", lambda: create_density("bogus"), mixkit.UnknownComponentError, r"mixkit list"),
    ("resolve-kwargs", lambda: resolve("mixer", Mixup(), alpha=1), TypeError, r"only accepted with a mixer name"),
    # -- diagnose (regression: 0 rows) -----------------------------------------------------
    ("diagnose-0-rows", lambda: mixkit.diagnose(X[:0], Y[:0]), ValueError, r"N > 0"),
    ("diagnose-1-class", lambda: mixkit.diagnose(X, torch.zeros(60, dtype=torch.long)), ValueError, r"two classes"),
    ("diagnose-str", lambda: mixkit.diagnose("abc", Y), TypeError, r"must be a tensor"),
]


@pytest.mark.parametrize("call, exc, pattern", [c[1:] for c in ERRORS], ids=[c[0] for c in ERRORS])
def test_misuse_gets_a_clear_error(call, exc, pattern) -> None:
    with pytest.raises(exc) as info:
        call()
    message = str(info.value)
    assert re.search(pattern, message), message
    assert not INTERNAL.search(message), message


# -- silent wrong results ----------------------------------------------------------------------


DTYPES = [torch.float16, torch.bfloat16, torch.float32, torch.float64, torch.int32, torch.uint8, torch.bool]


def _as(x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    return (x.abs() * 40).clamp(0, 255).to(dtype) if not dtype.is_floating_point else x.to(dtype)


@pytest.mark.parametrize("name", ["mixup", "cutmix"])
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_mixers_take_every_real_dtype(name: str, dtype: torch.dtype) -> None:
    x = _as(XI, dtype)
    out = create_mixer(name, num_classes=K)(x, YI, lam=0.3)
    assert torch.isfinite(out.x.float()).all() and torch.isfinite(out.y).all()
    torch.testing.assert_close(out.y.sum(1), torch.ones(8))
    assert torch.equal(x, _as(XI, dtype))  # the caller's batch is untouched


@pytest.mark.parametrize("name", ["mixup", "cutmix"])
@pytest.mark.parametrize("layout", ["channels_last", "transposed"])
def test_layouts_mix_like_contiguous(name: str, layout: str) -> None:
    x = XI.to(memory_format=torch.channels_last) if layout == "channels_last" else XI.transpose(2, 3)
    g = torch.Generator().manual_seed(3)
    params = create_mixer(name, num_classes=K).draw(8, x.shape, g)
    out = create_mixer(name, num_classes=K)(x, YI, params=params)
    ref = create_mixer(name, num_classes=K)(x.contiguous(), YI, params=params)
    torch.testing.assert_close(out.x, ref.x)
    if layout == "channels_last":
        assert out.x.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("mode", ["batch", "pair", "elem"])
@pytest.mark.parametrize("n", [1, 2, 3])
def test_composite_tiny_batches(mode: str, n: int) -> None:
    out = MixChoice(["mixup", "cutmix"], mode=mode, num_classes=K, seed=0)(XI[:n], YI[:n])
    assert out.x.shape == XI[:n].shape and torch.isfinite(out.y).all()
    torch.testing.assert_close(out.y.sum(1), torch.ones(n))


def test_column_ids_give_the_labels_everywhere() -> None:
    col = Y[:8, None]
    assert Mixup(num_classes=K)(X[:8], col).labels.tolist() == Y[:8].tolist()
    m = ManifoldMixup(net(), num_classes=K, layers=["0"]).train()
    assert m(X[:8], col, return_batch=True)[1].labels.tolist() == Y[:8].tolist()
    o = OnlineGenLabel(K)
    assert o(net().train(), X[:8], col, return_batch=True)[1].labels.tolist() == Y[:8].tolist()


@pytest.mark.parametrize("name", ["gaussian", "kde", "online_gaussian"])
def test_empty_queries_score_to_empty(name: str) -> None:
    # regression: the Gaussians raised amax()'s "Expected reduction dim" on a 0-row batch
    out = fitted(name).log_prob(X[:0])
    assert out.shape == (0, K)


def test_kde_log_prob_is_differentiable() -> None:
    # regression: baddbmm(out=...) refused autograd, so GenMix's projection solver crashed on the KDE
    q = X[:4].clone().requires_grad_(True)
    lp = fitted("kde").log_prob(q)
    (grad,) = torch.autograd.grad(lp[:, 0].sum(), q)
    assert torch.isfinite(grad).all() and grad.abs().sum() > 0
    with torch.no_grad():
        torch.testing.assert_close(lp.detach(), fitted("kde").log_prob(X[:4]))
    xa, ya = genmix_dataset(fitted("kde"), X, Y, 4, method="projection", generator=torch.Generator().manual_seed(0),
                            warn_short=False)
    assert torch.isfinite(xa).all() and torch.isfinite(ya).all()


def test_online_genlabel_refuses_a_state_of_another_class_count() -> None:
    # regression: the state loaded, leaving num_classes=4 over a 3-class density
    o = OnlineGenLabel(K)
    o(net().train(), X[:8], Y[:8])
    with pytest.raises(ValueError, match=r"num_classes=3 but this one has num_classes=4"):
        OnlineGenLabel(4).load_state_dict(o.state_dict())
    same = OnlineGenLabel(K)
    same.load_state_dict(o.state_dict())
    torch.testing.assert_close(same.posterior(X[:4]), o.posterior(X[:4]))


def test_zero_row_batch_passes_the_relabel_chain() -> None:
    empty = batch().select(torch.zeros(8, dtype=torch.bool))
    for relabel in (ExcludeIntrusion().fit(X, Y), GenLabel().fit(X, Y), LogisticLabel()):
        out = relabel(empty)
        assert out.y.shape == (0, K)


def _stateful() -> list:
    o = OnlineGenLabel(K)
    o(net().train(), X[:8], Y[:8])
    mixed = batch()
    return [
        ("gaussian", fitted("gaussian"), lambda m: m.log_prob(X[:4])),
        ("kde", fitted("kde"), lambda m: m.log_prob(X[:4])),
        ("online", OnlineGaussian().update(X, Y), lambda m: m.log_prob(X[:4])),
        ("genlabel", GenLabel().fit(X, Y), lambda m: m.posterior(X[:4])[0]),
        ("intrusion", ExcludeIntrusion().fit(X, Y), lambda m: m.intrudes(mixed)),
        ("genmix", GenMix(Gaussian(), num_classes=K, seed=0).fit(X, Y), lambda m: m(X[:8], Y[:8]).y),
        ("mixup", Mixup(num_classes=K, seed=0), lambda m: m(XI, YI).x),
        ("choice", MixChoice(["mixup", "cutmix"], num_classes=K, seed=0, mode="elem"), lambda m: m(XI, YI).x),
        ("collate", MixCollate(num_classes=K, seed=0), lambda m: m(SAMPLES)[0]),
        ("manifold", ManifoldMixup(net(), num_classes=K, layers=["0"], seed=0).train(),
         lambda m: m(X[:8], Y[:8])[1]),
        ("online_genlabel", o, lambda m: m.posterior(X[:4])),
    ]


@pytest.mark.parametrize("how", ["pickle", "deepcopy"])
def test_every_stateful_object_copies_exactly(how: str) -> None:
    for name, obj, use in _stateful():
        clone = pickle.loads(pickle.dumps(obj)) if how == "pickle" else copy.deepcopy(obj)
        torch.testing.assert_close(use(clone), use(obj), msg=name)


def test_workers_repeat_seeded_runs_and_differ_per_worker() -> None:
    def run() -> torch.Tensor:
        ds = TensorDataset(XI.repeat(4, 1, 1, 1), YI.repeat(4))
        loader = DataLoader(ds, batch_size=8, num_workers=2, collate_fn=MixCollate(num_classes=K, seed=0))
        return torch.cat([y for _, y in loader])

    a, b = run(), run()
    assert torch.equal(a, b)
    assert not torch.equal(a[:8], a[8:16])  # worker 0 and worker 1 draw their own streams


def test_compiled_model_wrapped_after_compile() -> None:
    model = torch.compile(net(), backend="eager")
    logits, y = ManifoldMixup(model, num_classes=K, layers=["0"], seed=0).train()(X[:8], Y[:8])
    assert logits.shape == (8, K) and torch.isfinite(y).all()


class _TupleLayer(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a, self.rnn, self.head = nn.Linear(D, D), nn.GRU(D, D, batch_first=True), nn.Linear(D, K)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.rnn(self.a(x)[:, None])
        return self.head(out[:, 0])


def test_layers_that_return_tuples() -> None:
    with pytest.raises(TypeError, match=r"layer 'rnn' returned tuple"):
        ManifoldMixup(_TupleLayer(), num_classes=K, layers=["rnn"]).train()(X[:8], Y[:8])
    assert frozen_features(_TupleLayer(), "rnn")(X[:4]).shape == (4, D)  # the first tensor of the tuple


# -- the CLI with bad files --------------------------------------------------------------------


BAD_FILES = {
    "empty.csv": "",
    "header.csv": "a,b,label\n",
    "ragged.csv": "a,b,label\n1,2\n3,4,5,6\n",
    "nan.csv": "a,b,label\nnan,1,0\n1,2,1\n",
    "onecol.csv": "label\n0\n1\n",
    "garbage.npz": b"PK\x03\x04garbage",
    "garbage.pt": b"not a torch file",
    "list.pt": None,
}


@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_bad_data_files_get_a_data_file_error(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    content = BAD_FILES[name]
    if content is None:
        torch.save([1, 2, 3], path)
    elif isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    with pytest.raises(DataFileError, match=re.escape(str(path))):
        read_data(path)


def test_cli_reports_a_corrupt_file_without_a_traceback(tmp_path: Path) -> None:
    path = tmp_path / "bad.npz"
    path.write_bytes(b"PK\x03\x04garbage")  # regression: zipfile.BadZipFile escaped as a traceback
    r = subprocess.run([sys.executable, "-m", "mixkit", "diagnose", str(path), "--out", str(tmp_path / "o")],
                       capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert r.returncode != 0
    assert "Traceback" not in r.stderr and "cannot read it" in r.stderr, r.stderr
