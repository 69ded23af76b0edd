"""mixkit.diagnose: rates against the paper's geometries, recommendations, the CLI and its errors."""

import json
import math

import pytest
import torch
from shared_cache import require_shared_cache

import mixkit
from mixkit.cli import main
from mixkit.datasets import default_data_dir
from mixkit.datasets.synthetic import two_circle
from mixkit.diagnosis import Rate, diagnose


def within(rate: Rate, expected: float, slack: float = 0.0) -> bool:
    sd = math.sqrt(max(expected * (1 - expected), 1e-12) / rate.n)
    return abs(rate.value - expected) <= 4 * sd + slack


def test_example_1_intrusion_is_one_ninth():
    # {-1: class 0, 0: class 1, +1: class 0}; pairs uniform over 9 ordered pairs, lam ~ U[0, 1].
    # Only the pairs (-1, +1) and (+1, -1) intrude: x = 2 lam - 1 is nearest to 0 (class 1) for
    # lam in (1/4, 3/4), so the rate is 2/9 * 1/2 = 1/9.
    x = torch.tensor([[-1.0], [0.0], [1.0]])
    y = torch.tensor([0, 1, 0])
    d = diagnose(x, y, n_mixed=20000, densities=(), holdout=0.0, standardize=False, seed=1)
    assert within(d.intrusion, 1 / 9)
    assert d.intrusion.low <= 1 / 9 <= d.intrusion.high
    assert d.worst_pairs[0].classes == (0, 0)


def test_fig4_geometry_has_no_intrusion():
    # Example 2 / Fig. 4a: no mixed point of two classes is nearer to the third point
    s = 5.0
    x = torch.tensor([[-s, s], [s, s], [-s, -s]])
    y = torch.tensor([0, 1, 2])
    d = diagnose(x, y, n_mixed=5000, densities=(), holdout=0.0, standardize=False)
    assert d.intrusion.count == 0 and d.intrusion.high < 0.002


def _nine_class(n_per_class: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    grid = torch.tensor([-10.0, 0.0, 10.0])
    means = torch.cartesian_prod(grid, grid)  # class c at (grid[c // 3], grid[c % 3])
    y = torch.arange(9).repeat_interleave(n_per_class)
    x = means[y] + torch.randn(y.numel(), 2, generator=g) * math.sqrt(0.1)
    return x, y, means


def _nine_class_rate_by_quadrature(means: torch.Tensor, steps: int = 20001) -> float:
    # the noise (std 0.32) is small against the spacing (10): the nearest training point is, but
    # for a sliver at the cell boundaries, the nearest centre. Average over the 81 equally likely
    # ordered class pairs of the share of lam in [0, 1] landing in a third centre's Voronoi cell.
    lam = torch.linspace(0, 1, steps, dtype=torch.float64)[:, None, None]
    m = means.double()
    pts = lam[..., None] * m[None, :, None, :] + (1 - lam[..., None]) * m[None, None, :, :]
    nearest = torch.cdist(pts.reshape(-1, 2), m).argmin(1).reshape(steps, 9, 9)
    a = torch.arange(9)[:, None].expand(9, 9)
    b = torch.arange(9)[None, :].expand(9, 9)
    third = (nearest != a) & (nearest != b)
    return float(third.double().mean())


def test_nine_class_gaussian_intrusion_matches_the_geometry():
    x, y, means = _nine_class(300)
    expected = _nine_class_rate_by_quadrature(means)
    assert 0.05 < expected < 0.3  # the diagonals and the middle rows cross a third class
    d = diagnose(x, y, n_mixed=20000, densities=("gaussian",), holdout=0.2, seed=3)
    assert within(d.intrusion, expected, slack=0.01), (d.intrusion, expected)
    gauss = d.densities[0]
    assert gauss.fits and gauss.heldout_accuracy > 0.99
    # the Bayes label of the true-shaped Gaussians intrudes as often as the nearest neighbour does
    assert within(gauss.intrusion, expected, slack=0.015)
    assert gauss.conflict.value < 0.02 < d.conflict_mixup.value
    assert d.recommendation == "mixup+genlabel" and d.density == "gaussian"


def test_two_separated_gaussians_recommend_mixup():
    g = torch.Generator().manual_seed(0)
    y = torch.arange(2).repeat_interleave(500)
    x = torch.randn(1000, 3, generator=g) + torch.tensor([[-8.0, 0, 0], [8.0, 0, 0]])[y]
    d = diagnose(x, y, n_mixed=4000)
    assert d.intrusion.count == 0
    assert d.recommendation != "no-mixup"
    assert all(r.fits for r in d.densities)


def test_two_circle_needs_genlabel_and_repeats_with_the_seed():
    x, y = two_circle(300, seed=0)
    a = diagnose(x, y, n_mixed=2000, seed=5)
    b = diagnose(x, y, n_mixed=2000, seed=5)
    assert a.to_dict() | {"densities": None} == b.to_dict() | {"densities": None}
    assert a.intrusion.value > 0.1 and a.conflict_mixup.value > 0.2
    assert a.recommendation == "mixup+genlabel" and a.density == "kde"
    kde = next(r for r in a.densities if r.name == "kde")
    assert kde.conflict.value < 0.05


def test_dataset_of_dicts_and_loader_inputs():
    x, y = two_circle(100, seed=1)
    samples = [{"features": xi, "label": int(yi)} for xi, yi in zip(x, y)]
    from_list = diagnose(samples, n_mixed=500, densities=("gaussian",))
    loader = torch.utils.data.DataLoader(samples, batch_size=32)
    from_loader = diagnose(loader, n_mixed=500, densities=("gaussian",))
    direct = diagnose(x, y, n_mixed=500, densities=("gaussian",))
    assert from_list.intrusion == from_loader.intrusion == direct.intrusion


@pytest.mark.parametrize(
    "kwargs,match",
    [({"alpha": 0.0}, "alpha"), ({"n_mixed": 0}, "n_mixed"), ({"holdout": 1.5}, "holdout")],
)
def test_bad_arguments(kwargs, match):
    x, y = two_circle(50, seed=0)
    with pytest.raises(ValueError, match=match):
        diagnose(x, y, **kwargs)


def test_one_class_and_nan_are_refused():
    with pytest.raises(ValueError, match="two classes"):
        diagnose(torch.randn(10, 2), torch.zeros(10, dtype=torch.long))
    x = torch.randn(10, 2)
    x[3, 1] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        diagnose(x, torch.arange(10) % 2)


def test_exported_at_top_level():
    assert mixkit.diagnose is diagnose


def _write_csv(path, x, y, header=None):
    cols = header or [f"x{i}" for i in range(x.shape[1])] + ["target"]
    lines = [",".join(cols)] + [",".join([*(f"{v:.6f}" for v in row), str(int(t))]) for row, t in zip(x.tolist(), y)]
    path.write_text("\n".join(lines) + "\n")


def test_cli_writes_png_and_json(tmp_path, capsys):
    x, y = two_circle(200, seed=0)
    csv = tmp_path / "two_circle.csv"
    _write_csv(csv, x, y.tolist())
    assert main(["diagnose", str(csv), "--out", str(tmp_path / "out"), "--json", "--quiet", "--n-mixed", "1000"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["recommendation"] == "mixup+genlabel"
    for name in ("diagnosis.png", "diagnosis.json", "diagnosis.md"):
        assert (tmp_path / "out" / name).stat().st_size > 0


def test_cli_on_a_shared_openml_set(tmp_path, capsys):
    root = default_data_dir() / "openml"
    require_shared_cache(root)
    csv = root / "187_wine.csv"  # three classes, 13 features
    assert main(["diagnose", str(csv), "--out", str(tmp_path), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "Recommendation" in out and (tmp_path / "diagnosis.png").exists()


@pytest.mark.parametrize(
    "content,match",
    [
        ("a,b\n1,2\n3,4\n", "missing target column"),
        ("a,target\nred,0\nblue,1\n", "not numeric"),
        ("a,target\n1.0,0\nnan,1\n", "NaN"),
        ("a,target\n1.0,0\n2.0,0\n", "class"),
    ],
)
def test_cli_errors_are_clear_and_non_zero(tmp_path, capsys, content, match):
    csv = tmp_path / "bad.csv"
    csv.write_text(content)
    assert main(["diagnose", str(csv), "--out", str(tmp_path / "o"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "error" in err and match in err


def test_cli_reads_npz_and_pt(tmp_path, capsys):
    import numpy as np

    x, y = two_circle(100, seed=2)
    np.savez(tmp_path / "d.npz", x=x.numpy(), y=y.numpy())
    torch.save({"x": x, "y": y}, tmp_path / "d.pt")
    for name in ("d.npz", "d.pt"):
        assert main(["diagnose", str(tmp_path / name), "--no-plot", "--quiet", "--n-mixed", "300",
                     "--densities", "gaussian"]) == 0
    assert (tmp_path / "d_diagnosis" / "diagnosis.json").exists()
