"""Baselines of the paper: excluding manifold intrusion (3.1) and logistic labeling (3.2)."""

import math

import pytest
import torch

import mixkit
from mixkit import MixedBatch


def test_exclude_intrusion_drops_points_landing_on_a_third_class():
    # 1-D: class 0 at -1, class 2 at 0, class 1 at +1 -> mixing 0 and 1 at lam=.5 lands on class 2
    x_train = torch.tensor([[-1.0], [0.0], [1.0]])
    y_train = torch.tensor([0, 2, 1])
    ex = mixkit.ExcludeIntrusion().fit(x_train, y_train)
    x = torch.tensor([[0.0], [-0.9], [0.95]])
    labels = torch.tensor([0, 0, 1])
    index = torch.tensor([2, 0, 0])  # row 0 mixes class 0 with class 1
    y = torch.nn.functional.one_hot(labels, 3).float()
    batch = MixedBatch(x, y, torch.full((3,), 0.5), index, labels, y)
    assert ex.intrudes(batch).tolist() == [True, False, False]
    out = ex(batch)
    assert out.x.shape[0] == 2 and int(out.info["excluded"]) == 1
    assert torch.equal(out.labels, torch.tensor([0, 1]))


def test_logistic_label_is_the_sigmoid_of_lam():
    sigma = 0.4
    lam = torch.tensor([0.1, 0.5, 0.8])
    labels = torch.tensor([0, 1, 2])
    index = torch.tensor([1, 2, 0])
    y = torch.zeros(3, 3)
    out = mixkit.LogisticLabel(sigma)(MixedBatch(torch.zeros(3, 2), y, lam, index, labels, y))
    for i in range(3):
        rho = 1 / (1 + math.exp(-2 * (float(lam[i]) - 0.5) / sigma**2))
        assert abs(float(out.y[i, labels[i]]) - rho) < 1e-6
        assert abs(float(out.y[i, labels[index[i]]]) - (1 - rho)) < 1e-6


def test_logistic_label_equals_genlabel_on_two_gaussians():
    # Proposition 1 with s^2 = sigma^2 / 2
    sigma = 0.5
    density = mixkit.Gaussian(covariance="diag").set_parameters(
        torch.tensor([[0.0], [1.0]]), torch.full((2, 1), sigma**2 / 2)
    )
    x = torch.tensor([[1.0], [0.0]])
    y = torch.tensor([1, 0])
    batch = mixkit.Mixup(num_classes=2, seed=0, per_sample=True)(x.repeat(20, 1), y.repeat(20))
    gen = mixkit.GenLabel(density)(batch).y
    log = mixkit.LogisticLabel(sigma)(batch).y
    cross = batch.labels != batch.partner_labels
    torch.testing.assert_close(gen[cross], log[cross], atol=1e-5, rtol=1e-5)


def test_logistic_label_never_nan_for_tiny_sigma():
    lam = torch.tensor([0.5, 0.5 + 1e-7, 0.3, 1.0, 0.0])
    labels = torch.tensor([0, 1, 2, 0, 1])
    index = torch.tensor([1, 2, 0, 1, 0])
    y = torch.zeros(5, 3)
    for sigma in (1e-30, 1e-200, 5e-324):
        out = mixkit.LogisticLabel(sigma)(MixedBatch(torch.zeros(5, 2), y, lam, index, labels, y)).y
        assert torch.isfinite(out).all()
        torch.testing.assert_close(out.sum(1), torch.ones(5))
        # lam = 1/2 exactly: halfway; otherwise the hard label of the nearer end
        torch.testing.assert_close(out[0], torch.tensor([0.5, 0.5, 0.0]))
        assert out[1, 1] == 1 and out[2, 0] == 1 and out[3, 0] == 1 and out[4, 0] == 1


@pytest.mark.parametrize("sigma", [float("nan"), 0.0, -1.0, float("inf"), "0.5", None])
def test_logistic_label_refuses_bad_sigma(sigma):
    with pytest.raises((ValueError, TypeError), match="sigma"):
        mixkit.LogisticLabel(sigma)


def test_logistic_label_keeps_the_batch_dtype_and_reads_nothing_back(monkeypatch):
    batch = mixkit.Mixup(num_classes=3, seed=0, label_dtype=torch.float64)(torch.randn(8, 2), torch.arange(8) % 3)

    def refuse(*a, **k):
        raise AssertionError("host read")

    monkeypatch.setattr(torch.Tensor, "__bool__", refuse)
    monkeypatch.setattr(torch.Tensor, "item", refuse)
    out = mixkit.LogisticLabel(0.5)(batch)
    monkeypatch.undo()
    assert out.y.dtype == torch.float64


def fitted_exclude():
    return mixkit.ExcludeIntrusion().fit(torch.tensor([[-1.0], [0.0], [1.0]]), torch.tensor([0, 2, 1]))


def test_exclude_intrusion_passes_zero_row_batches_through():
    ex = fitted_exclude()
    for shape in ((0, 1), (0, 1, 1)):
        empty = MixedBatch(torch.zeros(shape), torch.zeros(0, 3), torch.zeros(0), torch.zeros(0, dtype=torch.long),
                           torch.zeros(0, dtype=torch.long), torch.zeros(0, 3))
        out = ex(empty)
        assert out.x.shape[0] == 0 and int(out.info["excluded"]) == 0
    # a batch that loses every row, then relabeled: still no crash
    x = torch.tensor([[0.0]])
    y = torch.nn.functional.one_hot(torch.tensor([0]), 3).float()
    batch = MixedBatch(x, y, torch.full((1,), 0.5), torch.tensor([0]), torch.tensor([0]), y,
                       partner_labels=torch.tensor([1]))
    gone = ex(batch)
    assert gone.x.shape == (0, 1)
    density = mixkit.Gaussian(covariance="diag").set_parameters(torch.tensor([[-1.0], [1.0], [0.0]]),
                                                                 torch.ones(3, 1))
    assert mixkit.GenLabel(density)(gone).y.shape == (0, 3)


def test_exclude_intrusion_fit_errors_and_ids():
    ex = mixkit.ExcludeIntrusion()
    with pytest.raises(RuntimeError, match="not fitted"):
        ex.intrudes(MixedBatch(torch.zeros(1, 1), torch.ones(1, 1), torch.ones(1), torch.tensor([0]),
                               torch.tensor([0]), torch.ones(1, 1)))
    with pytest.raises(ValueError, match="integer class ids"):
        ex.fit(torch.zeros(3, 1), torch.tensor([0.0, 1.5, 2.0]))
    with pytest.raises(ValueError, match="N > 0"):
        ex.fit(torch.zeros(0, 1), torch.zeros(0, dtype=torch.long))
    with pytest.raises(ValueError, match=">= 0"):
        ex.fit(torch.zeros(2, 1), torch.tensor([0, -1]))
    with pytest.raises(ValueError, match="NaN"):
        ex.fit(torch.tensor([[float("nan")], [0.0]]), torch.tensor([0, 1]))
    # uint8 ids are ids, not a mask; float ids that are integral are accepted
    ex.fit(torch.zeros(2, 1), torch.tensor([0, 1], dtype=torch.uint8))
    assert ex.y_ref.dtype == torch.long and ex.y_ref.tolist() == [0, 1]
    xg = torch.randn(2, 1, requires_grad=True)
    ex.fit(xg * 2, torch.tensor([0.0, 1.0]))
    assert not ex.x_ref.requires_grad


def test_exclude_intrusion_state_round_trip(tmp_path):
    ex = fitted_exclude()
    torch.save(ex.state_dict(), tmp_path / "ex.pt")
    fresh = mixkit.ExcludeIntrusion()
    fresh.load_state_dict(torch.load(tmp_path / "ex.pt", weights_only=True))
    x = torch.tensor([[0.0], [-0.9], [0.95]])
    labels = torch.tensor([0, 0, 1])
    y = torch.nn.functional.one_hot(labels, 3).float()
    batch = MixedBatch(x, y, torch.full((3,), 0.5), torch.tensor([2, 0, 0]), labels, y)
    assert torch.equal(fresh.intrudes(batch), ex.intrudes(batch))
    assert torch.equal(fresh.x_ref, ex.x_ref) and torch.equal(fresh.y_ref, ex.y_ref)
