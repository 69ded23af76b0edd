"""GenLabel.fit from data as users have it: datasets, loaders, iterables, dict samples."""

import pytest
import torch
from torch.utils.data import DataLoader, Dataset, TensorDataset

import mixkit


def blobs(n=10_000, d=6, k=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % k
    return torch.randn(n, d, generator=g, dtype=torch.float64) + 3 * torch.randn(k, d, generator=g,
                                                                                  dtype=torch.float64)[y], y


def same_gaussian(a, b, tol=1e-6):
    for name in ("means", "covariances", "class_counts"):
        torch.testing.assert_close(getattr(a.density, name).double(), getattr(b.density, name).double(),
                                   atol=tol, rtol=tol)
    probe = torch.randn(32, a.density.dim, dtype=torch.float64, generator=torch.Generator().manual_seed(9))
    torch.testing.assert_close(a.density.log_prob(probe), b.density.log_prob(probe), atol=tol, rtol=tol)


def test_fit_from_a_loader_of_dict_samples_gives_the_stacked_gaussian():
    x, y = blobs()
    samples = [{"features": x[i], "label": y[i], "id": i} for i in range(len(y))]
    streamed = mixkit.GenLabel("gaussian").fit(DataLoader(samples, batch_size=64))
    stacked = mixkit.GenLabel("gaussian").fit(x, y)
    same_gaussian(streamed, stacked)


@pytest.mark.parametrize("source", ["dataset", "dict_dataset", "generator", "list_of_batches"])
def test_fit_from_datasets_and_iterables(source):
    x, y = blobs(n=600)
    if source == "dataset":
        data = TensorDataset(x, y)
    elif source == "dict_dataset":
        class Dicts(Dataset):
            def __len__(self):
                return len(y)

            def __getitem__(self, i):
                return {"pixel_values": x[i], "class": y[i]}

        data = Dicts()
    elif source == "generator":
        data = ((x[i:i + 50], y[i:i + 50]) for i in range(0, 600, 50))
    else:
        # a list is indexable, so iter_batches reads it as a list of *samples*: iter() it
        data = iter([(x[i:i + 100], y[i:i + 100]) for i in range(0, 600, 100)])
    same_gaussian(mixkit.GenLabel("gaussian").fit(data, batch_size=32), mixkit.GenLabel("gaussian").fit(x, y))


def test_keys_soft_labels_and_errors():
    x, y = blobs(n=400)
    samples = [{"a": x[i], "b": y[i], "x": torch.zeros(1), "label": torch.tensor(0)} for i in range(400)]
    keyed = mixkit.GenLabel("gaussian").fit(samples, input_key="a", label_key="b", batch_size=100)
    same_gaussian(keyed, mixkit.GenLabel("gaussian").fit(x, y))
    soft = torch.nn.functional.one_hot(y, 4).double() * 0.9 + 0.025
    same_gaussian(mixkit.GenLabel("gaussian").fit(TensorDataset(x, soft)), mixkit.GenLabel("gaussian").fit(x, y))
    with pytest.raises(KeyError, match="input_key"):
        mixkit.GenLabel("gaussian").fit([{"q": x[0], "label": y[0]}])
    with pytest.raises(ValueError, match="no samples"):
        mixkit.GenLabel("gaussian").fit(iter([]))
    with pytest.raises(TypeError, match="cannot read batches"):
        mixkit.GenLabel("gaussian").fit(42)


def test_feature_map_runs_per_batch_without_grad():
    x, y = blobs(n=500)
    seen = []

    class Proj(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(6, 3, dtype=torch.float64)

        def forward(self, t):
            seen.append((t.shape[0], torch.is_grad_enabled()))
            return self.lin(t)

    proj = Proj()
    gl = mixkit.GenLabel("gaussian", feature_map=proj).fit(DataLoader(TensorDataset(x, y), batch_size=64))
    assert max(b for b, _ in seen) == 64 and not any(g for _, g in seen)
    assert gl.density.dim == 3
    assert not any(b.requires_grad for b in gl.density.buffers())
    with torch.no_grad():
        direct = mixkit.GenLabel("gaussian").fit(proj(x), y)
    same_gaussian(gl, direct, tol=1e-9)
    # tensors with a feature map are also streamed in batches
    seen.clear()
    mixkit.GenLabel("gaussian", feature_map=proj).fit(x, y, batch_size=100)
    assert [b for b, _ in seen] == [100] * 5


class StreamingMean(mixkit.Density):
    """A density that consumes a stream (fit_batches): keeps only per-class sums."""

    def _fit(self, x, y):
        self.fit_batches([(x, y)])

    def fit_batches(self, batches):
        self.batch_sizes = []
        total = None
        for z, ids in batches:
            self.batch_sizes.append(z.shape[0])
            k = int(ids.max()) + 1 if self.num_classes is None else self.num_classes
            part = torch.zeros(k, z.shape[1] + 1, dtype=torch.float64).index_add_(
                0, ids, torch.cat([z.double(), torch.ones(len(z), 1, dtype=torch.float64)], 1))
            total = part if total is None else total + part
        self.num_classes, self.dim = total.shape[0], total.shape[1] - 1
        self.register_buffer("class_counts", total[:, -1].long())
        self.register_buffer("means", total[:, :-1] / total[:, -1:])
        self.fitted = True
        return self

    def _log_prob(self, x):
        return -0.5 * torch.cdist(x.double(), self.means).to(x.dtype) ** 2


def stored_numel(density):
    return sum(b.numel() for b in density.buffers()) + sum(p.numel() for p in density.parameters())


def test_a_density_with_fit_batches_gets_the_stream_not_the_stack():
    x, y = blobs(n=3000)
    gl = mixkit.GenLabel(StreamingMean()).fit(DataLoader(TensorDataset(x, y), batch_size=128))
    assert max(gl.density.batch_sizes) == 128 and sum(gl.density.batch_sizes) == 3000
    for c in range(4):
        torch.testing.assert_close(gl.density.means[c], x[y == c].mean(0))


@pytest.mark.parametrize("density", ["gaussian", "streaming"])
def test_stored_size_does_not_grow_with_n(density):
    sizes = []
    for n in (1_000, 10_000):
        x, y = blobs(n=n)
        gl = mixkit.GenLabel(StreamingMean() if density == "streaming" else "gaussian")
        gl.fit(DataLoader(TensorDataset(x, y), batch_size=256))
        sizes.append(stored_numel(gl.density))
    assert sizes[0] == sizes[1]
