"""foolbox 3's BoundaryAttack (the paper protocol's robustness measure) on many models at once.

The official code attacks each fitted model with ``fb.attacks.BoundaryAttack()`` at
``epsilons = (X_train.max() - X_train.min()) * 0.1`` (L2, a decision-based black-box attack)
and reports ``1 - is_adv.mean()``. Here the models of a batched run are attacked together:
the attack sees one classifier over the rows of every model (row ``i`` of the flat batch is
answered by its own model), so one attack call serves every model; the attack treats rows
independently, so this equals attacking the models one at a time with the same draws.
"""

from __future__ import annotations

import warnings

import torch
from torch import Tensor, nn

from benchmarks.models import BatchedMLP


class _RowsToModels(nn.Module):
    """``(M * N, d) -> (M * N, K)``: row block ``m`` through model ``positions[m]`` of the grid."""

    def __init__(self, net: BatchedMLP, positions: Tensor, n: int) -> None:
        super().__init__()
        self.net, self.positions, self.n = net, positions, n
        self.rows: Tensor | None = None  # when set: inputs are these rows of ``base`` only
        self.base: Tensor | None = None

    def forward(self, x: Tensor) -> Tensor:
        if self.rows is not None and self.base is not None:  # a subset: the rest stays at base
            full = self.base.clone()
            full[self.rows] = x
            return self._all(full)[self.rows]
        return self._all(x)

    def _all(self, x: Tensor) -> Tensor:
        m = self.positions.shape[0]
        s_n, g_n = self.net.grid
        grid_x = x.new_zeros(s_n, g_n, x.shape[1], self.n)
        grid_x[self.positions[:, 0], self.positions[:, 1]] = x.view(m, self.n, -1).transpose(1, 2)
        out = self.net(grid_x)  # (S, G, K, N)
        return out[self.positions[:, 0], self.positions[:, 1]].transpose(1, 2).reshape(m * self.n, -1)


def boundary_accuracy(net: BatchedMLP, positions: Tensor, x: Tensor, y: Tensor, mask: Tensor,
                      eps: float, bounds: tuple[float, float], steps: int, seed: int = 0) -> Tensor:
    """Robust accuracy ``(M,)`` of the models at ``positions`` ``(M, 2)`` on their own rows
    ``x`` ``(M, N, d)``, labels ``y`` ``(M, N)`` (``mask``: real rows), under BoundaryAttack
    with ``steps`` steps at L2 radius ``eps``; a clean mistake counts as broken."""
    import foolbox as fb

    m, n, d = x.shape
    flat = _RowsToModels(net, positions, n).eval()
    fmodel = fb.PyTorchModel(flat, bounds=bounds)
    xf = x.reshape(m * n, d).clamp(*bounds).contiguous()
    yf = y.reshape(m * n)
    torch.manual_seed(seed)  # foolbox draws its starting points from torch's global generator
    with torch.no_grad():
        clean_ok = flat(xf).argmax(1) == yf
    broken = ~clean_ok
    # BoundaryAttack's own start (blended uniform noise); rows it cannot start from (no
    # misclassified point found, e.g. a constant classifier) are left unbroken, where the
    # official code would stop with foolbox's "init_attack failed"
    init = fb.attacks.LinearSearchBlendedUniformNoiseAttack()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        starts = init.run(fmodel, xf, fb.criteria.Misclassification(yf))
    with torch.no_grad():
        todo = clean_ok & (flat(starts).argmax(1) != yf)
    if bool(todo.any()):
        flat.rows, flat.base = todo.nonzero().flatten(), xf
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            _, _, is_adv = fb.attacks.BoundaryAttack(steps=steps)(
                fmodel, xf[todo], yf[todo], epsilons=eps, starting_points=starts[todo])
        broken[todo] = is_adv
    broken = broken.view(m, n)
    ok = (~broken & mask).sum(1).float()
    return ok / mask.sum(1).clamp_min(1).float()
