"""The harness's gradient attack: FGSM, once, for one model or a batched grid of models.

The image suite attacks one ``nn.Module``; the tabular robustness suite attacks every model
of a :class:`~benchmarks.models.BatchedMLP` grid at once, each with its own gradient. Both
are the same step, ``x + eps * sign(grad_x loss)`` (Goodfellow et al., 2015), so both call
:func:`fgsm` with their own loss. The decision-based BoundaryAttack of the robustness suite's
paper protocol is foolbox's (:mod:`benchmarks.tabular.attack`).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor


def fgsm(loss_sum: Callable[[Tensor], Tensor], x: Tensor, eps: float,
         clamp: tuple[float, float] | None = None) -> Tensor:
    """The FGSM point of L-inf radius ``eps``: ``x + eps * sign(grad_x loss_sum(x))``.

    Args:
        loss_sum: ``x -> scalar``, the loss summed over the rows (a sum, not a mean, so each
            row's gradient is its own loss's; with a grid of models, the sum over models
            too, each model's rows then move along their model's gradient).
        x: the clean inputs (not modified; any shape ``loss_sum`` takes).
        eps: the step (the attack's L-inf radius).
        clamp: optional ``(low, high)`` box the attacked inputs are clipped to (pixels in
            ``[0, 1]``, say).

    Returns the attacked inputs, detached. A zero gradient leaves a row where it is.
    """
    xr = x.detach().clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(loss_sum(xr), xr)
    x_adv = x.detach() + eps * grad.sign()
    if clamp is not None:
        x_adv = x_adv.clamp(*clamp)
    return x_adv.detach()
