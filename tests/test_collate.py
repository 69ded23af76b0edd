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
