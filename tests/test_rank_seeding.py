"""Rank-aware seeding: every rank and worker has its own stream; seeded runs repeat; one rule for seeds."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.utils.data import DataLoader, TensorDataset

import mixkit
from mixkit.random import current_rank, derive_seed, make_generator

K = 3


def constant_data(n=32):
    # the same input everywhere, so only the mixing randomness can tell batches apart
    return TensorDataset(torch.ones(n, 2), torch.arange(n) % K)


def loader_draws(collate, **loader_kw):
    loader = DataLoader(constant_data(), batch_size=8, collate_fn=collate, **loader_kw)
    return [(b.lam.clone(), b.index.clone()) for b in loader]


def same(a, b):
    return all(torch.equal(p[0], q[0]) and torch.equal(p[1], q[1]) for p, q in zip(a, b, strict=True))


def lightning_style_worker_init(worker_id: int) -> None:
    """What lightning's pl_worker_init_function does to torch: reseed per (base seed, worker, rank)."""
    base = torch.initial_seed() - worker_id
    torch.manual_seed(derive_seed("lightning", base, worker_id, current_rank()))


# -- one process, rank from the environment ------------------------------------------------


def test_ranks_from_env_draw_their_own_streams(monkeypatch):
    def draws(rank):
        monkeypatch.setenv("RANK", str(rank))
        torch.manual_seed(0)  # as seed_everything does on every rank
        m = mixkit.Mixup(num_classes=K)
        return [m.draw(8, (8, 2), m.generator) for _ in range(3)]

    r0, r1, r0_again = draws(0), draws(1), draws(0)
    assert all(torch.equal(a.index, b.index) and torch.equal(a.lam, b.lam) for a, b in zip(r0, r0_again))
    assert not all(torch.equal(a.index, b.index) for a, b in zip(r0, r1))


def test_explicit_seed_is_the_stream_on_rank_zero_and_derived_elsewhere(monkeypatch):
    monkeypatch.setenv("RANK", "0")
    assert torch.equal(make_generator(5, per_process=True).get_state(), torch.Generator().manual_seed(5).get_state())
    monkeypatch.setenv("RANK", "1")
    assert not torch.equal(make_generator(5, per_process=True).get_state(),
                           torch.Generator().manual_seed(5).get_state())
    # data generation with an explicit seed is the same on every rank
    assert torch.equal(make_generator(5).get_state(), torch.Generator().manual_seed(5).get_state())


# -- the seed rule (issue 13, finding 11) ----------------------------------------------------


def test_collate_seed_repeats_in_workers_without_any_global_seeding():
    runs = []
    for _ in range(2):
        torch.seed()  # a different global RNG state each time: the collate seed alone must decide
        collate = mixkit.MixCollate("mixup", num_classes=K, seed=0, return_batch=True)
        loader = DataLoader(constant_data(), batch_size=8, num_workers=2, collate_fn=collate)
        runs.append([[(b.lam.clone(), b.index.clone()) for b in loader] for _ in range(2)])
    assert same(runs[0][0], runs[1][0]) and same(runs[0][1], runs[1][1])
    assert not same(runs[0][0], runs[0][1])  # epochs differ
    assert not torch.equal(runs[0][0][0][1], runs[0][0][1][1])  # worker 0 and worker 1 differ


def test_set_epoch_makes_an_epoch_repeatable_by_itself():
    def epoch(e):
        collate = mixkit.MixCollate("mixup", num_classes=K, seed=4, return_batch=True)
        collate.set_epoch(e)
        return loader_draws(collate, num_workers=2)

    assert same(epoch(3), epoch(3)) and not same(epoch(3), epoch(4))


def test_mixer_seed_wins_over_collate_seed():
    a = loader_draws(mixkit.MixCollate(mixkit.Mixup(seed=5), num_classes=K, seed=9, return_batch=True))
    b = loader_draws(mixkit.MixCollate(mixkit.Mixup(), num_classes=K, seed=5, return_batch=True))
    c = loader_draws(mixkit.MixCollate(mixkit.Mixup(), num_classes=K, seed=9, return_batch=True))
    assert same(a, b) and not same(a, c)
    w1 = loader_draws(mixkit.MixCollate(mixkit.Mixup(seed=5), num_classes=K, return_batch=True), num_workers=2)
    w2 = loader_draws(mixkit.MixCollate(mixkit.Mixup(seed=5), num_classes=K, return_batch=True), num_workers=2)
    assert same(w1, w2)


def test_loader_generator_seeds_workers_and_global_rng_seeds_the_main_process():
    def run(workers, loader_seed, global_seed):
        torch.manual_seed(global_seed)
        collate = mixkit.MixCollate("mixup", num_classes=K, return_batch=True)
        return loader_draws(collate, num_workers=workers, generator=torch.Generator().manual_seed(loader_seed))

    assert same(run(2, 1, 10), run(2, 1, 11))  # workers: the loader's generator decides
    assert not same(run(2, 1, 10), run(2, 2, 10))
    assert same(run(0, 1, 10), run(0, 2, 10))  # main process: the global RNG decides
    assert not same(run(0, 1, 10), run(0, 1, 11))


def test_constructors_do_not_change_the_users_objects():
    m = mixkit.Mixup(seed=3)
    state = pickle.dumps(m)
    mixkit.MixCollate(m, num_classes=K, seed=7, prob=0.5)
    mixkit.MixChoice([m], mode="pair", num_classes=K)
    assert pickle.dumps(m) == state


# -- two gloo processes ------------------------------------------------------------------------


def _rank_main(rank: int, world: int, init_file: str, out_dir: str) -> None:
    torch.set_num_threads(1)
    os.environ["RANK"] = str(rank)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        torch.manual_seed(0)  # seed_everything(0): every rank's global RNG alike
        # a spawned rank would spawn its workers too (seconds each); fork them as torchrun's ranks do
        fork = {"num_workers": 2, "multiprocessing_context": "fork"}
        out = {}
        mixer = mixkit.Mixup(num_classes=K)
        out["mixer"] = [mixer.draw(8, (8, 2), mixer.generator) for _ in range(4)]
        main = mixkit.MixCollate("mixup", num_classes=K, return_batch=True)
        out["main"] = loader_draws(main)
        plain = mixkit.MixCollate("mixup", num_classes=K, return_batch=True)
        out["workers"] = loader_draws(plain, **fork)
        lightning = mixkit.MixCollate("mixup", num_classes=K, return_batch=True)
        out["lightning"] = loader_draws(lightning, **fork, worker_init_fn=lightning_style_worker_init)
        seeded = mixkit.MixCollate("mixup", num_classes=K, seed=11, return_batch=True)
        out["seeded"] = loader_draws(seeded, **fork)
        torch.save(out, Path(out_dir) / f"rank{rank}.pt")
        dist.barrier()
    finally:
        dist.destroy_process_group()


def _spawn(tmp_path: Path, name: str) -> list[dict]:
    out_dir = tmp_path / name
    out_dir.mkdir()
    mp.spawn(_rank_main, args=(2, str(tmp_path / f"{name}.init"), str(out_dir)), nprocs=2, join=True)
    return [torch.load(out_dir / f"rank{r}.pt", weights_only=False) for r in range(2)]


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ranks")
    return _spawn(tmp, "first"), _spawn(tmp, "second")


@pytest.mark.parametrize("what", ["main", "workers", "lightning", "seeded"])
def test_ranks_differ_and_rerun_repeats(two_runs, what):
    first, second = two_runs
    assert not same(first[0][what], first[1][what])  # rank 0 and rank 1 mix differently
    for r in range(2):
        assert same(first[r][what], second[r][what])  # a rerun repeats each rank exactly


def test_mixer_streams_differ_by_rank_and_repeat(two_runs):
    first, second = two_runs
    lam = [[float(p.lam[0]) for p in first[r]["mixer"]] for r in range(2)]
    assert lam[0] != lam[1]
    for r in range(2):
        assert all(torch.equal(a.index, b.index) and torch.equal(a.lam, b.lam)
                   for a, b in zip(first[r]["mixer"], second[r]["mixer"], strict=True))
