"""MixCollate and on_device: DataLoader workers, seeding, devices, errors."""

import pickle

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

import mixkit


def dataset(n=96, d=3, k=3):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, d, generator=g)
    y = torch.arange(n) % k
    return TensorDataset(x + y[:, None].float(), y)


def epochs(collate, n_epochs=2, workers=2, seed=123, persistent=False):
    loader = DataLoader(
        dataset(), batch_size=16, shuffle=True, num_workers=workers, collate_fn=collate,
        generator=torch.Generator().manual_seed(seed), persistent_workers=persistent and workers > 0,
    )
    return [[(x.clone(), y.clone()) for x, y in loader] for _ in range(n_epochs)]


def same(run_a, run_b):
    return all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(run_a, run_b))


@pytest.mark.parametrize("persistent", [False, True])
def test_two_workers_repeat_under_the_same_seed_and_differ_across_epochs(persistent):
    ds = dataset()
    relabel = mixkit.GenLabel("gaussian").fit(ds.tensors[0], ds.tensors[1])
    collate = mixkit.MixCollate("mixup", num_classes=3, relabel=relabel, alpha=1.0)
    first = epochs(collate, persistent=persistent)
    second = epochs(collate, persistent=persistent)
    for e in range(2):
        assert same(first[e], second[e])  # seeded run repeats exactly
    assert not same(first[0], first[1])  # epochs differ
    other = epochs(collate, seed=124, persistent=persistent)
    assert not same(first[0], other[0])
    for x, y in first[0]:
        assert y.dtype == torch.float32 and x.shape[1] == 3
        torch.testing.assert_close(y.sum(1), torch.ones(len(y)))


def test_workers_do_not_repeat_each_other():
    # same data in every batch, so only the mixing randomness can tell batches apart
    ds = TensorDataset(torch.randn(16, 2).repeat(8, 1), (torch.arange(16) % 2).repeat(8))
    collate = mixkit.MixCollate("mixup", num_classes=2)
    loader = DataLoader(ds, batch_size=16, num_workers=2, collate_fn=collate,
                        generator=torch.Generator().manual_seed(0))
    batches = [y for _, y in loader]
    assert not torch.equal(batches[0], batches[1])  # worker 0 and worker 1 each made one


def test_main_process_stream_is_seeded_by_torch_manual_seed():
    collate = mixkit.MixCollate("mixup", num_classes=3)
    torch.manual_seed(0)
    a = epochs(collate, workers=0)
    collate = mixkit.MixCollate("mixup", num_classes=3)
    torch.manual_seed(0)
    b = epochs(collate, workers=0)
    assert same(a[0], b[0]) and same(a[1], b[1])
    assert not same(a[0], a[1])


def test_callable_on_tensors_and_same_result_as_the_mixer():
    ds = dataset()
    x, y = ds.tensors
    collate = mixkit.MixCollate("mixup", num_classes=3, seed=7)
    xm, ym = collate(x[:10], y[:10])
    ref = mixkit.Mixup(num_classes=3)(x[:10], y[:10], generator=torch.Generator().manual_seed(7))
    assert torch.equal(xm, ref.x) and torch.equal(ym, ref.y)
    full = mixkit.MixCollate(mixkit.CutMix(num_classes=3), return_batch=True)
    out = full(torch.randn(4, 1, 6, 6), torch.tensor([0, 1, 2, 0]))
    assert isinstance(out, mixkit.MixedBatch)


def test_relabel_chain_and_custom_collate():
    ds = dataset()
    x, y = ds.tensors
    chain = [mixkit.ExcludeIntrusion().fit(x, y), mixkit.LogisticLabel(sigma=0.3)]

    def dict_collate(samples):
        return torch.stack([s[0] for s in samples]), torch.stack([s[1] for s in samples]), "meta"

    collate = mixkit.MixCollate("mixup", num_classes=3, relabel=chain, collate_fn=dict_collate, seed=0)
    xm, ym, meta = collate([ds[i] for i in range(32)])  # extra items pass through
    assert meta == "meta"
    assert xm.shape[0] == ym.shape[0] <= 32
    torch.testing.assert_close(ym.sum(1), torch.ones(len(ym)))


def test_picklable_with_a_fitted_relabeler():
    ds = dataset()
    collate = mixkit.MixCollate("mixup", num_classes=3, relabel=mixkit.GenLabel("gaussian").fit(*ds.tensors))
    clone = pickle.loads(pickle.dumps(collate))
    x, y = ds.tensors
    torch.manual_seed(0)
    assert clone(x, y)[0].shape == x.shape


def test_on_device_moves_then_mixes():
    ds = dataset()
    loader = DataLoader(ds, batch_size=32)
    collate = mixkit.MixCollate("mixup", num_classes=3, seed=0)
    out = list(mixkit.on_device(loader, collate, "cpu"))
    assert len(out) == 3 and out[0][1].shape == (32, 3)
    plain = list(mixkit.on_device(loader, None, "cpu"))
    assert torch.equal(plain[0][1], ds.tensors[1][:32])


def test_cuda_tensors_inside_a_worker_get_a_clear_error(monkeypatch):
    import mixkit.collate as collate_module

    class FakeCuda(torch.Tensor):
        @property
        def is_cuda(self):
            return True

    monkeypatch.setattr(collate_module, "get_worker_info", lambda: object())
    collate = mixkit.MixCollate("mixup", num_classes=2)
    x = torch.randn(4, 2).as_subclass(FakeCuda)
    with pytest.raises(RuntimeError, match="inside a DataLoader worker.*mixkit.on_device"):
        collate(x, torch.tensor([0, 1, 0, 1]))


def test_bad_arguments():
    with pytest.raises(TypeError, match="only accepted with a mixer name"):
        mixkit.MixCollate(mixkit.Mixup(), alpha=0.2)
    with pytest.raises(mixkit.UnknownComponentError, match="Did you mean 'cutmix'"):
        mixkit.MixCollate("cutmx", num_classes=2)
    with pytest.raises(TypeError, match="must return"):
        mixkit.MixCollate("mixup", num_classes=2, collate_fn=lambda s: torch.stack(s))([torch.zeros(2)])


@pytest.mark.cuda
def test_cuda_path_matches_cpu():
    ds = dataset()
    x, y = ds.tensors
    gl = mixkit.GenLabel("gaussian").fit(x, y)
    cpu = mixkit.MixCollate("mixup", num_classes=3, relabel=gl, seed=3)(x, y)
    gl_cuda = mixkit.GenLabel("gaussian").fit(x, y)
    gpu = mixkit.MixCollate("mixup", num_classes=3, relabel=gl_cuda, seed=3)(x.cuda(), y.cuda())
    assert gpu[0].is_cuda and gpu[1].is_cuda
    torch.testing.assert_close(gpu[0].cpu(), cpu[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(gpu[1].cpu(), cpu[1], atol=1e-4, rtol=1e-4)


# -- batches as users have them ----------------------------------------------------------------


class HFStyle(torch.utils.data.Dataset):
    """A list of dict samples, as a Hugging Face dataset with torch formatting returns them."""

    def __init__(self, n=32):
        g = torch.Generator().manual_seed(0)
        self.rows = [{"pixel_values": torch.randn(3, 6, 6, generator=g), "label": i % 3, "id": f"img{i}"}
                     for i in range(n)]

    def __len__(self):
        return len(self.rows)

    def __getitem__(self, i):
        return self.rows[i]


class WithMeta(torch.utils.data.Dataset):
    def __len__(self):
        return 32

    def __getitem__(self, i):
        return torch.full((2,), float(i)), i % 3, {"index": i}


def test_dict_samples_in_two_workers_give_dicts_out():
    collate = mixkit.MixCollate("cutmix", num_classes=3, seed=0)
    batches = list(DataLoader(HFStyle(), batch_size=8, num_workers=2, collate_fn=collate))
    assert len(batches) == 4
    for i, b in enumerate(batches):
        assert set(b) == {"pixel_values", "label", "id"}
        assert b["pixel_values"].shape == (8, 3, 6, 6) and b["label"].shape == (8, 3)
        assert b["id"] == [f"img{j}" for j in range(8 * i, 8 * i + 8)]  # untouched


def test_extra_tuple_items_pass_through_two_workers():
    collate = mixkit.MixCollate("mixup", num_classes=3, seed=0)
    batches = list(DataLoader(WithMeta(), batch_size=8, num_workers=2, collate_fn=collate))
    for i, (x, y, meta) in enumerate(batches):
        assert x.shape == (8, 2) and y.shape == (8, 3)
        assert torch.equal(meta["index"], torch.arange(8 * i, 8 * i + 8))


def test_single_tuple_call_and_dict_call_as_v2_mixup_accepts():
    x, y = torch.randn(6, 3, 4, 4), torch.tensor([0, 1, 2, 0, 1, 2])
    collate = mixkit.MixCollate("mixup", num_classes=3, seed=1)
    out = collate((x, y, "meta"))
    assert isinstance(out, tuple) and out[2] == "meta" and out[1].shape == (6, 3)
    ref = mixkit.MixCollate("mixup", num_classes=3, seed=1)(x, y)
    assert torch.equal(out[0], ref[0]) and torch.equal(out[1], ref[1])
    d = collate({"image": x, "target": y, "extra": 5})
    assert d["extra"] == 5 and d["target"].shape == (6, 3)
    # the single-tuple call inside a DataLoader: a dataset that yields whole batches
    loader = DataLoader([(x, y)] * 4, batch_size=None, num_workers=2, collate_fn=collate)
    assert [b[1].shape for b in loader] == [(6, 3)] * 4


def test_keys_and_labels_getter():
    x, y = torch.randn(4, 2), torch.tensor([0, 1, 2, 0])
    keyed = mixkit.MixCollate("mixup", num_classes=3, input_key="emb", label_key="cls")
    out = keyed({"emb": x, "cls": y, "x": "not the input"})
    assert out["x"] == "not the input" and out["cls"].shape == (4, 3)
    got = mixkit.MixCollate("mixup", num_classes=3, labels_getter=lambda b: b["cls"], input_key="emb")
    assert got({"emb": x, "cls": y})["cls"].shape == (4, 3)
    tup = mixkit.MixCollate("mixup", num_classes=3, labels_getter=lambda b: b[2])(("meta", x, y))
    assert tup[0] == "meta" and tup[1].shape == (4, 2) and tup[2].shape == (4, 3)
    with pytest.raises(KeyError, match="input_key"):
        mixkit.MixCollate("mixup", num_classes=3)({"emb": x, "cls": y})
    with pytest.raises(ValueError, match="by identity"):
        mixkit.MixCollate("mixup", num_classes=3, labels_getter=lambda b: b["cls"].clone())({"x": x, "cls": y})


def test_on_device_keeps_dicts_and_extra_items():
    collate = mixkit.MixCollate("mixup", num_classes=3, seed=0)
    dicts = list(mixkit.on_device(DataLoader(HFStyle(16), batch_size=8), collate, "cpu"))
    assert dicts[0]["label"].shape == (8, 3) and dicts[0]["id"][0] == "img0"
    plain = list(mixkit.on_device(DataLoader(HFStyle(16), batch_size=8), None, "cpu"))
    assert plain[0]["label"].shape == (8,)
    metas = list(mixkit.on_device(DataLoader(WithMeta(), batch_size=8), collate, "cpu"))
    assert len(metas[0]) == 3 and torch.equal(metas[0][2]["index"], torch.arange(8))
    fn = list(mixkit.on_device(DataLoader(WithMeta(), batch_size=8), mixkit.Mixup(num_classes=3), "cpu"))
    assert fn[0][1].shape == (8, 3) and len(fn[0]) == 3


# -- bad arguments (issue 13, findings 8 and 14) -------------------------------------------------


def test_a_list_of_batch_tensors_gets_a_hint():
    with pytest.raises(RuntimeError, match=r"collate\(\(x, y\)\)"):
        mixkit.MixCollate("mixup", num_classes=3)([torch.randn(5, 2), torch.tensor([0, 1, 2, 0, 1])])


def test_relabel_must_be_callables():
    with pytest.raises(TypeError, match=r"relabel\[1\] is a str"):
        mixkit.MixCollate("mixup", num_classes=3, relabel=[lambda b: b, "gaussian"])
    with pytest.raises(TypeError, match="relabel must be a callable"):
        mixkit.MixCollate("mixup", num_classes=3, relabel=42)


def test_a_model_side_mixer_points_to_the_training_loop():
    manifold = mixkit.ManifoldMixup(torch.nn.Sequential(torch.nn.Linear(2, 2)), layers=["input"], num_classes=2)
    with pytest.raises(TypeError, match="inside the training loop"):
        mixkit.MixCollate(manifold)


def test_num_classes_refused_when_not_an_integer_or_conflicting():
    with pytest.raises(TypeError, match="num_classes must be an integer"):
        mixkit.MixCollate("mixup", num_classes=2.5)
    with pytest.raises(ValueError, match="num_classes=3 but num_classes=4"):
        mixkit.MixCollate(mixkit.Mixup(num_classes=3), num_classes=4)


def test_label_dtype_by_name_and_0d_labels_through_the_collate():
    x = torch.randn(4, 2)
    out = mixkit.MixCollate("mixup", num_classes=3, label_dtype="float32")(x, torch.tensor([0, 1, 2, 0]))
    assert out[1].dtype == torch.float32
    with pytest.raises(ValueError, match="0-d"):
        mixkit.MixCollate("mixup", num_classes=3)(x, torch.tensor(1))
