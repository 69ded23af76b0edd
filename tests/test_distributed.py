"""Distributed GenLabel: two gloo processes on the CPU hold and relabel with the same density."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from mixkit import distributed as mkdist
from mixkit.densities.gaussian import Gaussian
from mixkit.densities.online import OnlineGaussian
from mixkit.nn import ManifoldMixup, OnlineGenLabel

K, D, WORLD = 3, 5, 2


def rank_data(rank: int, n: int = 40):
    g = torch.Generator().manual_seed(100 + rank)  # every rank has different data
    y = torch.randint(0, K, (n,), generator=g)
    x = torch.randn(n, D, generator=g, dtype=torch.float64) + 2.0 * y[:, None] + rank
    return x, y


def probe():
    return torch.randn(16, D, generator=torch.Generator().manual_seed(7), dtype=torch.float64) * 2


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.layer1 = nn.Sequential(nn.Linear(D, 16), nn.BatchNorm1d(16), nn.ReLU())
        self.layer2 = nn.Sequential(nn.Linear(16, 8), nn.ReLU())
        self.fc = nn.Linear(8, K)

    def forward(self, x):
        return self.fc(self.layer2(self.layer1(x)))


def _worker(rank: int, world: int, init_file: str, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank,
                            world_size=world)
    try:
        out: dict = {}
        x, y = rank_data(rank)
        # streaming statistics, both modes: all-reduced batch statistics every update
        run = OnlineGaussian(K, memory=None, covariance="diag")
        ema = OnlineGaussian(K, memory=0.9, covariance="spherical")
        for xb, yb in zip(x.split(10), y.split(10), strict=True):
            run.update(xb, yb)
            ema.update(xb, yb)
        out["run"] = run.state_dict()
        out["ema"] = ema.state_dict()
        out["run_log_prob"] = run.log_prob(probe())
        out["same_checksum"] = mkdist.same_on_all_ranks(mkdist.density_checksum(ema))

        # the three-line loop: manifold mixup, local mixing, shared density. No DDP here
        # (it costs seconds to set up; examples/ddp_online_genlabel.py uses it): each rank's
        # model trains on its own data alone, yet the density is the same on both ranks
        torch.manual_seed(0)
        model = ManifoldMixup(Net(), num_classes=K, seed=mkdist.rank_seed(0))
        online = OnlineGenLabel(K, memory=0.8, gamma=1.0, seed=mkdist.rank_seed(0))
        for xb, yb in zip(x.float().split(20), y.split(20), strict=True):
            logits, batch = online.step(model, xb, yb, return_batch=True)
            model.zero_grad()
            nn.functional.cross_entropy(logits, batch.y).backward()
            with torch.no_grad():
                for p in model.parameters():
                    p -= 0.1 * p.grad
        out["online"] = online.density.state_dict()
        out["relabel"] = online.posterior(torch.randn(8, 8, generator=torch.Generator()
                                                      .manual_seed(3)))
        out["lam"] = batch.lam  # mixing stays local

        # a density fitted on rank 0 only, broadcast to a fresh instance elsewhere
        fitted = Gaussian("full").fit(x, y) if rank == 0 else Gaussian("full")
        mkdist.broadcast_density(fitted, src=0)
        out["broadcast_log_prob"] = fitted.log_prob(probe())
        torch.save(out, Path(out_dir) / f"rank{rank}.pt")
    except BaseException:
        mkdist.close_process_group(barrier=False)
        raise
    mkdist.close_process_group()  # barrier, then destroy: no rank leaves mid-collective


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("dist")
    env = {"OMP_NUM_THREADS": "1"}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        # fork where there is one: spawned children re-import torch (seconds each); the
        # workers limit themselves to one thread first, as DataLoader workers do
        method = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
        mp.start_processes(_worker, args=(WORLD, str(tmp / "init"), str(tmp)), nprocs=WORLD,
                           join=True, start_method=method)
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return [torch.load(tmp / f"rank{r}.pt", weights_only=True) for r in range(WORLD)]


def _equal_states(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(
        torch.equal(a[k], b[k]) if torch.is_tensor(a[k]) else a[k] == b[k] for k in a
    )


def test_streaming_statistics_identical_on_both_ranks(results):
    r0, r1 = results
    assert _equal_states(r0["run"], r1["run"]) and _equal_states(r0["ema"], r1["ema"])
    assert torch.equal(r0["run_log_prob"], r1["run_log_prob"])
    assert r0["same_checksum"] and r1["same_checksum"]


def test_running_sums_equal_single_process_over_all_data(results):
    xs, ys = zip(*(rank_data(r) for r in range(WORLD)), strict=True)
    ref = OnlineGaussian(K, memory=None, covariance="diag").update(torch.cat(xs), torch.cat(ys))
    fresh = OnlineGaussian(memory=None, covariance="diag")
    fresh.load_state_dict(results[0]["run"])
    assert torch.equal(fresh.class_counts, ref.class_counts)
    for got, want in zip(fresh.gaussian_parameters(), ref.gaussian_parameters(), strict=True):
        assert torch.allclose(got, want, rtol=1e-12, atol=1e-12)
    # EMA: the same recursion over the global (all-rank) batches
    ema = OnlineGaussian(K, memory=0.9, covariance="spherical")
    for i in range(4):
        ema.update(torch.cat([x[10 * i:10 * i + 10] for x in xs]),
                   torch.cat([y[10 * i:10 * i + 10] for y in ys]))
    got = OnlineGaussian(memory=0.9)
    got.load_state_dict(results[0]["ema"])
    assert torch.allclose(got.ema_means, ema.ema_means, rtol=1e-12, atol=1e-12)
    assert torch.allclose(got.ema_vars, ema.ema_vars, rtol=1e-12, atol=1e-12)


def test_online_genlabel_under_ddp_relabels_identically(results):
    r0, r1 = results
    assert _equal_states(r0["online"], r1["online"])
    assert torch.equal(r0["relabel"], r1["relabel"])
    assert int((r0["relabel"] > 0).sum(1).max()) <= 2
    assert not torch.equal(r0["lam"], r1["lam"])  # each rank mixes with its own stream


def test_broadcast_density_from_rank0(results):
    r0, r1 = results
    assert torch.equal(r0["broadcast_log_prob"], r1["broadcast_log_prob"])
    x, y = rank_data(0)
    assert torch.allclose(r0["broadcast_log_prob"], Gaussian("full").fit(x, y).log_prob(probe()))


def test_helpers_are_no_ops_without_a_process_group():
    mkdist.close_process_group()
    assert not mkdist.is_distributed() and mkdist.get_rank() == 0 and mkdist.get_world_size() == 1
    t = torch.ones(3)
    assert mkdist.all_reduce_sum(t)[0] is t
    g = Gaussian("diag").fit(*rank_data(0))
    assert mkdist.broadcast_density(g) is g
    assert mkdist.same_on_all_ranks(1.0)
    assert mkdist.rank_seed(0, 0) != mkdist.rank_seed(0, 1) and mkdist.rank_seed(0, 1) == \
        mkdist.rank_seed(0, 1)
    assert mkdist.density_checksum(g) == mkdist.density_checksum(g)
