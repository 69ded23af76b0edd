"""Baselines of the paper: excluding manifold intrusion (3.1) and logistic labeling (3.2)."""

import math

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
