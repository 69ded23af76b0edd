"""MixChoice and the collate's switches: prob, weights, modes, pairs, skipped batches, off_epoch in workers."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.utils.data import DataLoader, TensorDataset

import mixkit
from mixkit.mixers.composite import pair_partners

K = 4


def images(n=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, 12, 12, generator=g), torch.randint(0, K, (n,), generator=g)


def test_collate_takes_a_list_of_mixer_names():
    collate = mixkit.MixCollate(["mixup", "cutmix"], num_classes=K, seed=0, return_batch=True)
    assert isinstance(collate.mixer, mixkit.MixChoice)
    x, y = images()
    for _ in range(5):
        out = collate(x, y)
        assert out.x.shape == x.shape and out.y.shape == (8, K)
        torch.testing.assert_close(out.y.sum(1), torch.ones(8))


def test_prob_zero_returns_the_batch_unmixed_with_one_hot_labels():
    def must_not_run(batch):
        raise AssertionError("a skipped batch is not relabeled")

    x, y = images()
    collate = mixkit.MixCollate("mixup", num_classes=K, prob=0.0, relabel=must_not_run, return_batch=True)
    out = collate(x, y)
    assert torch.equal(out.x, x) and out.x.data_ptr() != x.data_ptr()
    assert torch.equal(out.y, torch.nn.functional.one_hot(y, K).float()) and out.y.dtype == torch.float32
    assert torch.equal(out.lam, torch.ones(8)) and torch.equal(out.index, torch.arange(8))
    assert out.info["mixed"] is False


def test_elem_mode_leaves_skipped_elements_alone_and_mixes_the_others():
    x, y = images(64)
    out = mixkit.MixChoice(["mixup", "cutmix"], prob=0.5, mode="elem", num_classes=K, seed=3)(x, y)
    skipped = out.lam == 1
    assert 10 < int(skipped.sum()) < 54
    assert torch.equal(out.x[skipped], x[skipped])
    assert not torch.equal(out.x[~skipped], x[~skipped])
    y1 = torch.nn.functional.one_hot(y, K).float()
    lam = out.lam[:, None]
    torch.testing.assert_close(out.y, lam * y1 + (1 - lam) * y1[out.index])


@pytest.mark.parametrize("n", [1, 2, 7, 10])
@pytest.mark.parametrize("pairing", ["random", "flip"])
def test_pair_partners_are_disjoint_pairs(n, pairing):
    index, pair_id, first = pair_partners(n, pairing, torch.Generator().manual_seed(n))
    assert torch.equal(index[index], torch.arange(n))  # an involution
    assert torch.equal(pair_id, pair_id[index]) and first.numel() == (n + 1) // 2
    assert int((index == torch.arange(n)).sum()) == n % 2  # only an odd batch has a self-pair


def test_pair_mode_cutmix_swaps_the_same_box():
    x, y = images(6)
    out = mixkit.MixChoice(["cutmix"], mode="pair", num_classes=K, seed=1)(x, y)
    i = int(torch.nonzero(out.index != torch.arange(6))[0])
    j = int(out.index[i])
    own_i = (out.x[i] == x[i]).all(0)
    assert torch.equal((out.x[j] == x[j]).all(0), own_i)  # the same box in both
    assert torch.equal(out.x[i][:, ~own_i], x[j][:, ~own_i]) and torch.equal(out.x[j][:, ~own_i], x[i][:, ~own_i])
    assert out.lam[i] == out.lam[j]


def test_weights_set_the_choice_frequencies():
    mixer = mixkit.MixChoice([mixkit.Mixup(), mixkit.Mixup(0.3), mixkit.CutMix()], weights=[1, 2, 5], mode="elem")
    choice = mixer.draw(8000, (8000, 1, 4, 4), torch.Generator().manual_seed(0)).extra["choice"]
    counts = np.bincount(choice.numpy(), minlength=3)
    expected = 8000 * np.array([1, 2, 5]) / 8
    assert np.all(np.abs(counts - expected) < 4 * np.sqrt(expected))


def test_given_mixers_are_copied_not_changed():
    m = mixkit.Mixup(0.4)
    mixkit.MixChoice([m], mode="elem", pairing="flip", num_classes=K)
    assert m.per_sample is False and m.pairing == "random"
    collate = mixkit.MixCollate(m, num_classes=K)
    assert m.num_classes is None and collate.mixer.num_classes == K


def test_refusals():
    gm = mixkit.GenMix("gaussian")
    with pytest.raises(TypeError, match="mixes its own way"):
        mixkit.MixChoice([gm, "mixup"], num_classes=K)
    with pytest.raises(ValueError, match="either weights or switch_prob"):
        mixkit.MixChoice(["mixup", "cutmix"], weights=[1, 1], switch_prob=0.5)
    with pytest.raises(ValueError, match="two mixers"):
        mixkit.MixChoice(["mixup", "cutmix", "mixup"], switch_prob=0.5)
    with pytest.raises(ValueError, match="mode must be one of"):
        mixkit.MixChoice(["mixup"], mode="element")
    with pytest.raises(ValueError, match="prob must lie"):
        mixkit.MixCollate("mixup", num_classes=K, prob=1.5)
    with pytest.raises(TypeError, match="cannot tell which mixer"):
        mixkit.MixCollate(["mixup", "cutmix"], num_classes=K, alpha=0.2)


def test_inplace_only_into_what_the_caller_gives_up():
    x, y = images()
    m = mixkit.Mixup(num_classes=K, seed=0)
    ref = m(x, y, generator=torch.Generator().manual_seed(1))
    x_own = x.clone()
    out = m(x_own, y, generator=torch.Generator().manual_seed(1), inplace=True)
    assert out.x.data_ptr() == x_own.data_ptr()
    torch.testing.assert_close(out.x, ref.x, rtol=0, atol=1e-6)
    cut = mixkit.CutMix(num_classes=K, per_sample=True)
    x_own = x.clone()
    out = cut(x_own, y, generator=torch.Generator().manual_seed(2), inplace=True)
    assert out.x.data_ptr() == x_own.data_ptr()
    assert torch.equal(out.x, cut(x, y, generator=torch.Generator().manual_seed(2)).x)
    # the DataLoader path mixes into its own collated batch; the dataset is never written
    ds = TensorDataset(x.clone(), y)
    before = ds.tensors[0].clone()
    list(DataLoader(ds, batch_size=4, collate_fn=mixkit.MixCollate("mixup", num_classes=K)))
    assert torch.equal(ds.tensors[0], before)


def test_multi_label_targets_mix_as_given():
    x, _ = images()
    y = (torch.rand(8, K, generator=torch.Generator().manual_seed(0)) < 0.5).float()
    out = mixkit.Mixup(num_classes=K, multi_label=True)(x, y, lam=0.3)
    torch.testing.assert_close(out.y, 0.3 * y + 0.7 * y[out.index])
    with pytest.raises(ValueError, match=r"lie in \[0, 1\]"):
        mixkit.Mixup(num_classes=K, multi_label=True)(x, y * 2)
    with pytest.raises(ValueError, match="dense"):
        mixkit.Mixup(num_classes=K, multi_label=True)(x, torch.zeros(8, dtype=torch.long))


def _epoch_batches(loader):
    return [b for b in loader]


@pytest.mark.parametrize("persistent", [True, False])
def test_off_epoch_and_enabled_reach_workers(persistent):
    x = torch.randn(32, 2)
    ds = TensorDataset(x, torch.arange(32) % K)
    collate = mixkit.MixCollate("mixup", num_classes=K, off_epoch=2, return_batch=True)
    loader = DataLoader(ds, batch_size=8, num_workers=2, collate_fn=collate, persistent_workers=persistent)
    mixed = []
    for epoch in range(4):
        collate.set_epoch(epoch)
        collate.enabled = epoch != 1
        mixed.append([b.info.get("mixed", True) for b in loader])
    assert mixed == [[True] * 4, [False] * 4, [False] * 4, [False] * 4]
    collate.set_epoch(0)
    collate.enabled = True
    batches = _epoch_batches(loader)
    assert all(b.info.get("mixed", True) for b in batches)
    assert not torch.equal(batches[0].x, x[:8])


def test_copies_keep_their_switches_shared():
    import copy
    import pickle

    collate = mixkit.MixCollate("mixup", num_classes=K)
    for clone in (copy.deepcopy(collate), pickle.loads(pickle.dumps(collate))):
        assert clone._state.is_shared()
        clone.enabled = False
        assert collate.enabled and not clone.enabled


def test_custom_collate_output_is_mixed_into_only_when_declared_fresh():
    x, y = images(8)
    kept = x.clone()

    def returns_the_same_tensor(samples):  # a collate_fn handing out a tensor someone else holds
        return kept, y

    mixkit.MixCollate("mixup", num_classes=K, collate_fn=returns_the_same_tensor)([0])
    assert torch.equal(kept, x)
    made = []

    def fresh_batch(samples):
        made.append(x.clone())
        return made[-1], y

    fresh = mixkit.MixCollate("mixup", num_classes=K, collate_fn=fresh_batch, inplace_collate=True, seed=3)
    out = fresh([0])[0]
    assert out.data_ptr() == made[-1].data_ptr()  # mixed into the fresh batch, no copy
    ref = mixkit.MixCollate("mixup", num_classes=K, collate_fn=fresh_batch, seed=3)([0])[0]
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-6)


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(1, 17), mode=st.sampled_from(["batch", "pair", "elem"]), prob=st.floats(0, 1),
    pairing=st.sampled_from(["random", "flip"]), w=st.floats(0.05, 0.95), seed=st.integers(0, 2**31),
    form=st.sampled_from(["ids", "column", "soft"]),
)
def test_mix_choice_invariants(n, mode, prob, pairing, w, seed, form):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 2, 5, 5, generator=g)
    ids = torch.randint(0, K, (n,), generator=g)
    y1 = torch.nn.functional.one_hot(ids, K).double()
    y = {"ids": ids, "column": ids[:, None], "soft": y1.float()}[form]
    mixer = mixkit.MixChoice(["mixup", "cutmix"], weights=[w, 1 - w], prob=prob, mode=mode, pairing=pairing,
                             num_classes=K, label_dtype=torch.float64)
    out = mixer(x, y, generator=torch.Generator().manual_seed(seed))
    again = mixer(x, y, generator=torch.Generator().manual_seed(seed))
    assert torch.equal(out.x, again.x) and torch.equal(out.y, again.y)
    assert out.x.shape == x.shape and out.y.shape == (n, K) and torch.isfinite(out.y).all()
    assert ((out.lam >= 0) & (out.lam <= 1)).all() and sorted(out.index.tolist()) == list(range(n))
    lam = out.lam.double()[:, None]
    torch.testing.assert_close(out.y, lam * y1 + (1 - lam) * y1[out.index])
    assert torch.equal(out.labels, ids)
    if mode == "pair":
        assert torch.equal(out.index[out.index], torch.arange(n)) and torch.equal(out.lam, out.lam[out.index])
    unmixed = (out.lam == 1) | (out.index == torch.arange(n))
    assert torch.equal(out.x[unmixed], x[unmixed])
