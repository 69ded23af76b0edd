"""mixkit.datasets: synthetic generators, the OpenML cache, scikit-learn / mlxtend /
torchvision loaders. Everything runs offline."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys

import numpy as np
import pytest
import torch
from shared_cache import require_shared_cache

from mixkit import datasets as D

# ---------------------------------------------------------------- synthetic


SMALL = {"circle": 200, "moon": 200, "two_circle": 100, "cube2d": 20, "cube3d": 20, "gaussian9": 50}
# name -> (d, K, number of rows for the SMALL size)
SHAPES = {
    "circle": (2, 2, 200),
    "moon": (2, 2, 200),
    "two_circle": (2, 2, 200),
    "cube2d": (2, 2, 40),
    "cube3d": (3, 8, 160),
    "gaussian9": (2, 9, 450),
}


@pytest.mark.parametrize("name", sorted(D.SYNTHETIC))
def test_synthetic_shapes_dtypes_and_classes(name: str) -> None:
    d, k, n = SHAPES[name]
    x, y = D.load_synthetic(name, SMALL[name], seed=0)
    assert x.shape == (n, d) and x.dtype == torch.float32
    assert y.shape == (n,) and y.dtype == torch.int64
    assert torch.isfinite(x).all()
    # balanced classes 0..K-1
    assert torch.bincount(y, minlength=k).tolist() == [n // k] * k


@pytest.mark.parametrize("name", sorted(D.SYNTHETIC))
def test_synthetic_seeding(name: str) -> None:
    fn = D.SYNTHETIC[name]
    x1, y1 = fn(SMALL[name], seed=3)
    x2, y2 = fn(SMALL[name], seed=3)
    x3, _ = fn(SMALL[name], seed=4)
    assert torch.equal(x1, x2) and torch.equal(y1, y2)
    assert not torch.equal(x1, x3)
    # a Generator is drawn from: same state -> same data, next call -> new data
    g = torch.Generator().manual_seed(3)
    xa, _ = fn(SMALL[name], seed=g)
    xb, _ = fn(SMALL[name], seed=g)
    assert torch.equal(xa, fn(SMALL[name], seed=torch.Generator().manual_seed(3))[0])
    assert not torch.equal(xa, xb)
    # seed=None follows torch's global RNG
    torch.manual_seed(11)
    xn1, _ = fn(SMALL[name])
    torch.manual_seed(11)
    xn2, _ = fn(SMALL[name])
    assert torch.equal(xn1, xn2)


def test_paper_default_sizes() -> None:
    assert D.circle(seed=0)[0].shape == (1000, 2)
    assert D.moon(seed=0)[0].shape == (1000, 2)
    assert D.two_circle(seed=0)[0].shape == (2000, 2)  # 1000 per circle set
    assert D.cube2d(seed=0)[0].shape == (40, 2)
    assert D.cube3d(seed=0)[0].shape == (160, 3)
    assert D.load_synthetic("cube3d", seed=0)[0].shape == (160, 3)


def test_circle_radii() -> None:
    x, y = D.circle(2000, seed=0)
    r = x.norm(dim=1)
    assert abs(r[y == 0].mean().item() - 1.0) < 0.01  # outer circle, class 0
    assert abs(r[y == 1].mean().item() - 0.8) < 0.01  # inner circle, factor 0.8
    # Laplace noise of scale 0.02: mean |noise| is 0.02 per coordinate
    assert 0.005 < (r[y == 0] - 1).abs().mean().item() < 0.04
    x0, _ = D.make_circles(100, seed=0)  # noiseless: exactly on the circles
    assert torch.allclose(x0.norm(dim=1).sort().values[50:], torch.ones(50), atol=1e-6)


def test_moon_geometry() -> None:
    x, y = D.make_moons(200, seed=0)  # noiseless half circles
    assert torch.allclose(x[y == 0].norm(dim=1), torch.ones(100), atol=1e-6)
    r1 = (x[y == 1] - torch.tensor([1.0, 0.5])).norm(dim=1)
    assert torch.allclose(r1, torch.ones(100), atol=1e-6)
    assert (x[y == 0, 1] >= -1e-6).all() and (x[y == 1, 1] <= 0.5 + 1e-6).all()
    xn, _ = D.moon(2000, seed=0)
    noise_scale = xn.norm(dim=1) - 1  # only a rough check that noise ~0.1 was added
    assert noise_scale.abs().max() > 0.1


def test_two_circle_sets_apart_and_labels_flipped() -> None:
    x, y = D.two_circle(500, seed=0)
    left = x[:, 0] < 1.5
    assert left.sum() == 500 and (~left).sum() == 500
    # adjacent but not overlapping: a clear gap between the two sets
    assert x[left, 0].max() + 0.5 < x[~left, 0].min()
    r_left = x[left].norm(dim=1)
    r_right = (x[~left] - torch.tensor([3.0, 0.0])).norm(dim=1)
    y_left, y_right = y[left], y[~left]
    # left set: outer ring class 0; right set: the same geometry with labels flipped
    assert (y_left[r_left > 0.9] == 0).all() and (y_left[r_left < 0.9] == 1).all()
    assert (y_right[r_right > 0.9] == 1).all() and (y_right[r_right < 0.9] == 0).all()


def test_cubes_inside_their_cube() -> None:
    x, y = D.cube2d(500, seed=0)
    centers = torch.tensor([[-1.0, 0.0], [1.0, 0.0]])
    assert ((x - centers[y]).abs().amax(dim=1) <= 1 + 1e-6).all()
    x3, y3 = D.cube3d(200, seed=0)
    c3 = D.cube_centers(3)
    assert c3[0].tolist() == [-1, -1, -1] and c3[7].tolist() == [1, 1, 1]
    assert ((x3 - c3[y3]).abs().amax(dim=1) <= 1 + 1e-6).all()
    assert torch.equal(torch.sign(x3), c3[y3])  # each class fills its own octant
    # uniform: per-class mean near the centre (std of the mean ~ 0.58 / sqrt(200))
    for c in range(8):
        assert (x3[y3 == c].mean(0) - c3[c]).abs().max() < 0.2


def test_gaussian9_means_and_variance() -> None:
    x, y = D.gaussian9(1000, seed=0)
    means = D.gaussian9_means()
    assert means[0].tolist() == [-10, -10] and means[8].tolist() == [10, 10]
    for c in range(9):
        xc = x[y == c]
        assert (xc.mean(0) - means[c]).abs().max() < 0.06  # ~6 standard errors
        assert torch.allclose(xc.var(0), torch.full((2,), 0.1), atol=0.02)


def test_gaussians_generic_covariances() -> None:
    means = [[0.0, 0.0], [5.0, 5.0]]
    cov = torch.tensor([[[1.0, 0.8], [0.8, 1.0]], [[0.5, 0.0], [0.0, 2.0]]])
    x, y = D.gaussians(means, cov, 4000, seed=0)
    for c in range(2):
        xc = x[y == c].double()
        assert torch.allclose(torch.cov(xc.T), cov[c].double(), atol=0.1)
    xd, _ = D.gaussians(means, [0.5, 2.0], 10, seed=0)  # diagonal form
    assert xd.shape == (20, 2)
    with pytest.raises(ValueError):
        D.gaussians(means, torch.eye(3), 10, seed=0)
    with pytest.raises(KeyError):
        D.load_synthetic("spiral", 10, seed=0)


# ---------------------------------------------------------------- tabular


def _shared_cache():
    root = D.default_data_dir()
    require_shared_cache(root / "openml" / "manifest.json")
    return root


@pytest.mark.parametrize("key", [37, 36, "glass", 1005, "multiclass/penguins", 726, "rebuilt/lymph"])
def test_load_openml_matches_manifest(key) -> None:
    root = _shared_cache()
    ds = D.load_openml(key, root, fetch=False)
    record = next(
        r for r in D.list_datasets(root) if r["name"] == ds.name and r["openml_id"] == ds.openml_id
    )
    assert (len(ds), ds.num_features, ds.num_classes) == (record["n"], record["d"], record["k"])
    assert ds.x.dtype == torch.float32 and ds.y.dtype == torch.int64
    assert ds.y.min() == 0 and ds.y.max() == ds.num_classes - 1
    assert ds.classes == record["classes"]
    assert ds.categorical_columns == record["categorical_columns"]


def test_load_openml_name_resolution() -> None:
    root = _shared_cache()
    # the name "glass" is both OpenML 41 (6 classes) and its binarized copy 1005: lowest id wins
    glass = D.load_openml("glass", root, fetch=False)
    assert (glass.openml_id, glass.num_classes) == (41, 6)
    assert D.load_openml("segment", root, fetch=False).num_classes == 7
    assert D.load_openml("1005", root, fetch=False).num_classes == 2
    with pytest.raises(FileNotFoundError):
        D.load_openml(999999, root, fetch=False)


def test_the_three_collections_are_listed_and_loaded_by_id() -> None:
    root = _shared_cache()
    require_shared_cache(root / "rebuilt" / "manifest.json")
    records = D.list_datasets(root)
    by_coll: dict[str, set] = {}
    for r in records:
        by_coll.setdefault(r["collection"], set()).add(r.get("openml_id"))
    assert {"openml", "rebuilt", "multiclass"} <= set(by_coll)
    # the rebuilt ids are ids of their own (no OpenML copy in openml/), loadable by id alone
    assert not (by_coll["rebuilt"] & by_coll["openml"])
    lymph = D.load_openml(1006, root, fetch=False)
    assert (lymph.name, lymph.num_classes) == ("lymph", 2)


def test_default_data_dir(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("MIXKIT_DATA", str(tmp_path))
    assert D.default_data_dir() == tmp_path
    monkeypatch.delenv("MIXKIT_DATA")
    assert D.default_data_dir().name in ("datasets", "mixkit")


def test_fetch_then_cache_offline(monkeypatch, tmp_path) -> None:
    import pandas as pd
    import sklearn.datasets as sk_datasets
    from sklearn.utils import Bunch

    calls = []

    def fake_fetch_openml(*, data_id=None, name=None, data_home=None, **kwargs):
        calls.append((data_id, name, data_home))
        data = pd.DataFrame(
            {
                "num": [1.5, 2.0, np.nan, 4.0, 5.0, 6.0],
                "color": pd.Categorical(
                    ["red", "blue", "red", "green", "blue", "red"],
                    categories=["red", "green", "blue"],
                ),
                "word": ["b", "a", "b", "c", "a", "a"],
            }
        )
        target = pd.Series(["yes", "no", "no", "maybe", "yes", "no"], dtype="category")
        return Bunch(data=data, target=target, details={"id": 4242, "name": "toy set"})

    monkeypatch.setattr(sk_datasets, "fetch_openml", fake_fetch_openml)
    ds = D.load_openml(4242, tmp_path)
    assert len(calls) == 1 and calls[0][0] == 4242
    assert (len(ds), ds.num_features, ds.num_classes) == (5, 3, 3)  # the NaN row dropped
    assert ds.classes == ["maybe", "no", "yes"]  # sorted
    assert ds.y.tolist() == [2, 1, 0, 2, 1]
    assert ds.categorical_columns == ["x1", "x2"]
    assert ds.x[:, 0].tolist() == [1.5, 2.0, 4.0, 5.0, 6.0]
    assert ds.x[:, 1].tolist() == [0, 2, 1, 2, 0]  # declared category order
    assert ds.x[:, 2].tolist() == [1, 0, 2, 0, 0]  # strings: sorted codes

    manifest = json.loads((tmp_path / "openml" / "manifest.json").read_text())
    assert manifest == [
        {
            "openml_id": 4242,
            "name": "toy set",
            "file": "4242_toy_set.csv",
            "n": 5,
            "d": 3,
            "k": 3,
            "classes": ["maybe", "no", "yes"],
            "categorical_columns": ["x1", "x2"],
            "source": manifest[0]["source"],
        }
    ]
    header = (tmp_path / "openml" / "4242_toy_set.csv").read_text().splitlines()[0]
    assert header == "x0,x1,x2,target"

    # the next calls are offline: by id or by name, and fetching would fail
    def no_network(**kwargs):
        raise AssertionError("fetched again")

    monkeypatch.setattr(sk_datasets, "fetch_openml", no_network)
    again = D.load_openml(4242, tmp_path)
    assert torch.equal(again.x, ds.x) and torch.equal(again.y, ds.y)
    assert D.load_openml("toy set", tmp_path).openml_id == 4242
    assert [r["openml_id"] for r in D.list_datasets(tmp_path)] == [4242]


def test_fetch_by_name_numeric_classes(monkeypatch, tmp_path) -> None:
    import pandas as pd
    import sklearn.datasets as sk_datasets
    from sklearn.utils import Bunch

    def fake_fetch_openml(*, data_id=None, name=None, **kwargs):
        assert data_id is None and name == "numbers"
        data = pd.DataFrame({"a": [0.0, 1.0, 2.0, 3.0], "flag": [True, False, True, True]})
        target = pd.Series(["10", "2", "1", "2"], dtype="category")
        return Bunch(data=data, target=target, details={"id": "77", "name": "numbers"})

    monkeypatch.setattr(sk_datasets, "fetch_openml", fake_fetch_openml)
    ds = D.load_openml("numbers", tmp_path)
    assert ds.openml_id == 77
    assert ds.classes == ["1", "2", "10"] and ds.y.tolist() == [2, 1, 0, 1]  # numeric order
    assert ds.x[:, 1].tolist() == [1, 0, 1, 1] and ds.categorical_columns == ["x1"]
    assert D.load_openml(77, tmp_path, fetch=False).name == "numbers"


def test_load_sklearn_iris() -> None:
    ds = D.load_sklearn("iris")
    assert (len(ds), ds.num_features, ds.num_classes) == (150, 4, 3)
    assert ds.openml_id == 61 and ds.x.dtype == torch.float32 and ds.y.dtype == torch.int64
    assert torch.bincount(ds.y).tolist() == [50, 50, 50]
    with pytest.raises(KeyError):
        D.load_sklearn("titanic")


def test_standardize_fits_on_train_only() -> None:
    g = torch.Generator().manual_seed(0)
    xtr = torch.randn(100, 3, generator=g) * 5 + 2
    xtr[:, 2] = 7.0  # a constant column
    xte = torch.randn(20, 3, generator=g)
    ztr, zte = D.standardize(xtr, xte)
    assert torch.allclose(ztr[:, :2].mean(0), torch.zeros(2), atol=1e-5)
    assert torch.allclose(ztr[:, :2].std(0, unbiased=False), torch.ones(2), atol=1e-5)
    assert torch.equal(ztr[:, 2], torch.zeros(100)) and torch.isfinite(zte).all()
    mean, std = xtr.double().mean(0), xtr.double().std(0, unbiased=False)
    assert torch.allclose(zte[:, :2], ((xte.double() - mean) / std)[:, :2].float(), atol=1e-5)
    assert ztr.dtype == torch.float32


# ---------------------------------------------------------------- images


def test_digits_images() -> None:
    x, y = D.load_digits_images()
    assert x.shape == (1797, 1, 8, 8) and x.dtype == torch.float32
    assert x.min() >= 0 and x.max() == 1
    assert y.dtype == torch.int64 and set(y.tolist()) == set(range(10))


def test_mnist_5k() -> None:
    x, y = D.load_mnist_5k()
    assert x.shape == (5000, 1, 28, 28) and x.dtype == torch.float32
    assert x.min() >= 0 and x.max() == 1
    assert y.shape == (5000,) and y.dtype == torch.int64 and set(y.tolist()) == set(range(10))


def _fake_cifar10(root, rows: int = 3) -> dict[str, np.ndarray]:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    raw = {}
    for i, name in enumerate([f"data_batch_{j}" for j in range(1, 6)] + ["test_batch"]):
        data = rng.integers(0, 256, size=(rows, 3072), dtype=np.uint8)
        labels = [(i + r) % 10 for r in range(rows)]
        raw[name] = data
        with open(folder / name, "wb") as f:
            pickle.dump({"data": data, "labels": labels}, f)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": [f"class{c}" for c in range(10)]}, f)
    return raw


def test_fake_cifar10_through_torchvision(monkeypatch, tmp_path) -> None:
    import torchvision.datasets.cifar as cifar
    raw = _fake_cifar10(tmp_path)
    # the fake files cannot match torchvision's md5 sums
    monkeypatch.setattr(cifar, "check_integrity", lambda *args, **kwargs: True)
    x, y = D.load_torchvision("CIFAR10", tmp_path, train=True)
    assert x.shape == (15, 3, 32, 32) and x.dtype == torch.float32
    assert y.dtype == torch.int64 and y.tolist()[:3] == [0, 1, 2]
    expected = np.concatenate([raw[f"data_batch_{j}"] for j in range(1, 6)]).reshape(-1, 3, 32, 32)
    assert torch.equal((x * 255).round().to(torch.uint8), torch.from_numpy(expected))
    xt, yt = D.load_torchvision("cifar10", tmp_path, train=False)
    assert xt.shape == (3, 3, 32, 32) and yt.tolist() == [5, 6, 7]


def test_torchvision_missing_files_error(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="download=True") as info:
        D.load_torchvision("CIFAR10", tmp_path / "nowhere")
    assert str(tmp_path / "nowhere") in str(info.value)
    with pytest.raises(KeyError):
        D.load_torchvision("imagenet", tmp_path)


# ---------------------------------------------------------------- import cost


def test_import_pulls_no_optional_dependency() -> None:
    code = (
        "import sys, mixkit.datasets; "
        "print(','.join(m for m in ('sklearn', 'torchvision', 'timm', 'mlxtend', 'pandas') "
        "if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
