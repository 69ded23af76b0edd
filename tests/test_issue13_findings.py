"""Regression tests for the numbered findings of issue 13 whose own tests sit in modules that
use this stage's new API (so that they cannot even be imported against the code before it).

This module uses only names that existed before the stage (``mixkit.Mixup``,
``mixkit.MixCollate``, ``mixkit.GenLabel``, ``mixkit.register_plugin``, ...), looked up
at call time, so each test here fails against ``f17729f`` for the finding's own reason.
Where each finding is tested (besides this module):

1 cast cache: test_density_contract (stale cast); 2 (B, 1) ids: test_genmix, test_manifold;
3 fp16: test_density_contract, test_plugin_densities; 4 far points: test_density_contract,
test_kde; 5 refits: test_density_contract, test_plugin_densities, test_properties;
6 autograd: test_density_contract, test_kde, test_plugin_densities, test_genlabel;
7 id dtypes: test_density_contract, test_baselines, test_genmix; 8 hyperparameters:
test_genlabel, test_baselines, test_density_contract, test_mixers; 9 Beta atom:
test_properties, test_mixers; 10 wrong states: test_density_contract, test_kde,
test_plugin_densities; 11 seeding: test_rank_seeding, test_collate; 12 plugins:
test_registry, test_cli; 13 0-row batches: test_genlabel, test_baselines, test_genmix;
14 boundary errors: test_genlabel, test_hostile; 15 clean exits: test_distributed
(and ``benchmarks/ddp_exits.py``, 20 runs).
"""

from __future__ import annotations

import pickle

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

import mixkit

K = 3


def _batch(n: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.randn(n, 4, generator=g), torch.arange(n) % K


# -- 2: (B, 1) class ids ---------------------------------------------------------------------


def test_finding_2_column_ids_give_the_labels_and_the_logistic_label():
    x, y = _batch()
    col = mixkit.Mixup(num_classes=K, seed=0)(x, y[:, None])
    flat = mixkit.Mixup(num_classes=K, seed=0)(x, y)
    assert torch.equal(col.labels, y)
    torch.testing.assert_close(mixkit.LogisticLabel(0.5)(col).y, mixkit.LogisticLabel(0.5)(flat).y)


# -- 8: hyperparameters and inputs that used to pass -----------------------------------------


@pytest.mark.parametrize("alpha", [float("nan"), float("inf")])
def test_finding_8_alpha_nan_or_inf_is_refused(alpha):
    with pytest.raises(ValueError, match="alpha"):
        mixkit.Mixup(alpha=alpha)


def test_finding_8_num_classes_must_be_an_integer():
    with pytest.raises(TypeError, match="num_classes must be an integer"):
        mixkit.Mixup(num_classes=2.5)


def test_finding_8_soft_labels_slightly_off_come_out_normalised():
    x, _ = _batch(4)
    out = mixkit.Mixup(seed=0)(x, torch.tensor([[0.5, 0.5009, 0.0]] * 4))
    torch.testing.assert_close(out.y.sum(1), torch.ones(4), rtol=0, atol=1e-7)


def test_finding_8_complex_inputs_are_refused():
    x, y = _batch()
    with pytest.raises(TypeError, match="complex"):
        mixkit.Mixup(num_classes=K)(x.to(torch.complex64), y)


def test_finding_8_register_plugin_refuses_an_object_without_hooks():
    with pytest.raises(TypeError, match="implements no mixkit hook"):
        mixkit.register_plugin(42)
    assert "int" not in {p.name for p in mixkit.plugins()}


# -- 11: one seed rule -------------------------------------------------------------------------


def _draws(collate, workers: int = 0) -> list:
    ds = TensorDataset(torch.zeros(32, 4), torch.arange(32) % K)
    return [(b.lam.clone(), b.index.clone()) for b in DataLoader(ds, batch_size=8, num_workers=workers,
                                                                 collate_fn=collate)]


def _same(a: list, b: list) -> bool:
    return all(torch.equal(p, q) and torch.equal(r, s) for (p, r), (q, s) in zip(a, b, strict=True))


def test_finding_11_collate_seed_repeats_in_workers_without_global_seeding():
    runs = []
    for _ in range(2):
        torch.seed()  # another global RNG state each time: the collate's seed alone decides
        runs.append(_draws(mixkit.MixCollate("mixup", num_classes=K, seed=0, return_batch=True), workers=2))
    assert _same(runs[0], runs[1])


def test_finding_11_the_mixers_seed_is_used_and_the_mixer_is_not_changed():
    m = mixkit.Mixup(seed=5)
    state = pickle.dumps(m)
    torch.seed()
    a = _draws(mixkit.MixCollate(m, num_classes=K, return_batch=True))
    torch.seed()
    b = _draws(mixkit.MixCollate(mixkit.Mixup(seed=5), num_classes=K, return_batch=True))
    assert _same(a, b)
    assert pickle.dumps(m) == state and m.num_classes is None  # num_classes=3 was not set on it


# -- 12: a broken plugin breaks only itself ----------------------------------------------------


def test_finding_12_a_plugin_whose_hook_raises_leaves_the_builtins_working():
    class Raises:
        @mixkit.hookimpl
        def mixkit_densities(self):
            raise RuntimeError("nope")

    try:
        mixkit.register_plugin(Raises(), name="raises-13")
    except Exception as err:  # refusing it at registration is one way to isolate it
        assert "nope" in str(err)
    try:
        assert mixkit.create_mixer("mixup", num_classes=K) is not None
        assert mixkit.GenLabel("gaussian") is not None
        assert mixkit.MixCollate("mixup", num_classes=K) is not None
    finally:
        if "raises-13" in {p.name for p in mixkit.plugins()}:
            mixkit.unregister_plugin("raises-13")


# -- 14: boundary cases that surfaced internals --------------------------------------------------


def test_finding_14_zero_d_labels_and_dtype_names_and_bad_densities():
    x, y = _batch()
    samples = [(x[i], y[i]) for i in range(8)]  # 0-d label tensors, as a Dataset yields them
    assert mixkit.MixCollate("mixup", num_classes=K)(samples)[1].shape == (8, K)
    assert mixkit.Mixup(num_classes=K, label_dtype="float32")(x, y).y.dtype == torch.float32
    with pytest.raises(TypeError, match="density"):
        mixkit.GenLabel(density=42)
    with pytest.raises(ValueError, match="no samples|0 samples|non-empty"):
        mixkit.GenLabel().fit(x[:0], y[:0])
    with pytest.raises(ValueError, match="integer class ids"):
        mixkit.GenLabel().fit(x, y.float() * float("nan"))


def test_finding_14_a_model_wrapper_is_refused_by_the_collate():
    wrapper = mixkit.ManifoldMixup(torch.nn.Sequential(torch.nn.Linear(2, 2)), layers=["input"], num_classes=2)
    with pytest.raises(TypeError, match="training loop"):
        mixkit.MixCollate(wrapper)


# -- 15: a process group ends with a barrier, then the destroy -----------------------------------


def test_finding_15_close_process_group_barriers_before_destroying(monkeypatch):
    import torch.distributed as dist

    calls = []
    monkeypatch.setattr(dist, "is_initialized", lambda: True)
    monkeypatch.setattr(dist, "get_world_size", lambda *a, **k: 2)
    monkeypatch.setattr(dist, "barrier", lambda *a, **k: calls.append("barrier"))
    monkeypatch.setattr(dist, "destroy_process_group", lambda *a, **k: calls.append("destroy"))
    mixkit.distributed.close_process_group()
    assert calls == ["barrier", "destroy"]
    calls.clear()
    mixkit.distributed.close_process_group(barrier=False)  # the error path: no rank may wait forever
    assert calls == ["destroy"]

    def fails(*a, **k):
        raise RuntimeError("peer gone")

    calls.clear()
    monkeypatch.setattr(dist, "barrier", fails)
    with pytest.raises(RuntimeError, match="peer gone"):
        mixkit.distributed.close_process_group()
    assert calls == ["destroy"]  # the group is destroyed even when the barrier fails
