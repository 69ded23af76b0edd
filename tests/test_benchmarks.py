"""The benchmark harness: theory acceptance numbers, the batched trainer, every suite's smoke run.

Each suite runs through the CLI in its ``--smoke`` mode (tiny data, a few epochs: the
numbers mean nothing, the point is that the code path runs and writes its reports); the
``theory`` suite's numbers are exact and asserted.
"""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F

import mixkit
from benchmarks.__main__ import build_parser, main
from benchmarks.batched import (  # noqa: E402
    GridTargets,
    ModelSpec,
    Stream,
    TrainConfig,
    _grid,
    accuracy,
    build_schedule,
    fgsm_accuracy,
    train_batched,
)
from benchmarks.models import BatchedMLP  # noqa: E402
from benchmarks.report import PAPER_TABLE6, PAPER_TABLE8, PAPER_TABLE9, PAPER_TABLE45, md_table  # noqa: E402
from benchmarks.suites import speed  # noqa: E402

ARGS = ["--smoke", "--no-progress", "--threads", "1"]


def _run(suite: str, tmp_path, *extra: str) -> dict:
    out = tmp_path / suite
    assert main([suite, *ARGS, "--out", str(out), *extra]) == 0
    assert (out / "report.md").is_file()
    payload = json.loads((out / "results.json").read_text())
    assert payload["suite"] == suite and payload["meta"]["machine"]["torch"] == torch.__version__
    assert "python -m benchmarks" in (out / "report.md").read_text()
    for fig in payload.get("figures", []):
        assert (out / fig).is_file() and (out / fig).stat().st_size > 1000
    return payload


# ------------------------------------------------------------------ theory (exact numbers)


def test_theory_acceptance(tmp_path) -> None:
    payload = _run("theory", tmp_path)
    p1, e1, e3 = payload["proposition1"], payload["example1"], payload["example3"]
    assert p1["max_err"] < 1e-4
    assert abs(e1["mixup"]["margin"] - 7 / 16) < 1e-3
    assert abs(e1["without_mi"]["margin"] - 1 / 2) < 1e-3
    # with the factor 2 of the squared norm on every pair, the minimiser is 3/8 (see the report)
    assert abs(e1["mixup_squared_norm"]["margin"] - 3 / 8) < 1e-3
    ang = e3["angle_over_pi"]
    assert e3["n"] == 33 and e3["r"] == 25
    assert abs(ang["genlabel"] - 0.25) < 0.01
    assert abs(ang["vanilla"] - 0.22) < 0.01
    assert ang["mixup"] > 0.28
    assert all(payload["acceptance"].values())
    # Fig. 6: GenLabel with the true Gaussians never conflicts with the max-margin label
    row = payload["fig6"]["rows"][0]
    assert row["mixup_conflict_all"] > 0.2
    assert row["GenLabel (ground-truth means, identity cov.): conflict_all"] == 0.0


# ------------------------------------------------------------------ batched trainer


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
@pytest.mark.parametrize("hidden", [(), (8,)])
@pytest.mark.parametrize("clip_norm", [None, 0.05])  # 0.05 binds on most steps
def test_batched_trainer_matches_one_model_at_a_time(optimizer, hidden, clip_norm) -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(160, 3, generator=g)
    y = (x[:, 0] > 0).long() + (x[:, 1] > 1).long()
    gl = {"gaussian": mixkit.GenLabel("gaussian").fit(x[:140], y[:140])}
    ex = mixkit.ExcludeIntrusion().fit(x[:140], y[:140])
    streams = [Stream(x, y, torch.arange(140), {"val": (x[140:], y[140:])}, 3, gl, ex),
               Stream(x, y, torch.arange(100), {"test": (x[140:], y[140:])}, 4, gl, ex)]
    specs = [ModelSpec(0, "vanilla", 0.01, init_seed=7), ModelSpec(0, "mixup", 0.05, init_seed=7),
             ModelSpec(1, "genlabel", 0.01, gamma=0.4, density="gaussian", init_seed=9),
             ModelSpec(0, "exclude", 0.02, init_seed=3)]
    cfg = TrainConfig(epochs=2, batch_size=64, optimizer=optimizer, hidden=hidden, milestones=(0.5,),
                      clip_norm=clip_norm)
    res = train_batched(streams, specs, cfg, 3)
    sched = build_schedule(streams, 2, 64, 3, 1.0, False, ["gaussian"], True)
    for i, sp in enumerate(specs):
        ref = BatchedMLP([[sp.init_seed]], 3, 3, hidden)
        params = list(ref.parameters())
        if optimizer == "adam":
            opt = torch.optim.Adam(params, lr=sp.lr, weight_decay=1e-4)
        else:
            opt = torch.optim.SGD(params, lr=sp.lr, momentum=0.9, weight_decay=1e-4)
        decay = torch.optim.lr_scheduler.MultiStepLR(opt, [1], 0.1) if optimizer == "sgd" else None
        for e in range(2):
            for t in range(sched.x_clean.shape[1]):
                w = sched.weight[e, t, sp.stream] * (sched.keep[e, t, sp.stream] if sp.method == "exclude" else 1)
                if w.sum() == 0:
                    continue
                c = sched.cands[e, t, sp.stream]  # (C, K, B)
                xin = sched.x_clean[e, t, sp.stream] if sp.method == "vanilla" else sched.x_mix[e, t, sp.stream]
                tgt = c[0] if sp.method == "vanilla" else c[1]
                if sp.method == "genlabel":
                    tgt = sp.gamma * c[2] + (1 - sp.gamma) * tgt
                logp = F.log_softmax(ref(xin[None]), 2)[0, 0]
                loss = (-(tgt * logp).sum(0) * w).sum() / w.sum()
                opt.zero_grad()
                loss.backward()
                if clip_norm is not None:
                    torch.nn.utils.clip_grad_norm_(params, clip_norm)
                opt.step()
            if decay is not None:
                decay.step()
        s, gi = res.positions[i].tolist()
        for a, b in zip(res.model.parameters(), ref.parameters()):
            assert torch.allclose(a.detach()[s, gi], b.detach()[0, 0], atol=2e-5), (optimizer, hidden, sp)
    # every model is evaluated on its own stream's set only
    assert math.isnan(float(res.clean["test"][0, -1])) and math.isnan(float(res.clean["val"][2, -1]))


def test_grid_targets_equal_the_coefficient_einsum() -> None:
    """The targets through mixkit.blend_labels equal the former hand-written blend: a
    coefficient per candidate (one-hot, y_mix, y_gen per density) and an einsum."""
    g = torch.Generator().manual_seed(4)
    densities = ["gaussian", "kde"]
    specs = []
    for i in range(23):
        method = ("vanilla", "mixup", "exclude", "genlabel")[int(torch.randint(4, (1,), generator=g))]
        gamma = float(torch.rand(1, generator=g)) if method == "genlabel" else 0.0
        specs.append(ModelSpec(i % 3, method, 0.1, gamma=round(gamma, 3) if i % 5 else float(i % 2),
                               density=densities[i % 2] if method == "genlabel" else None))
    rows, g0 = _grid(specs, 3)
    cands = torch.rand(3, 2 + len(densities), 5, 7, generator=g).softmax(2)  # (S, C, K, B)
    coef = torch.zeros(3, len(rows[0]), 2 + len(densities))  # the former construction, verbatim
    for si, row in enumerate(rows):
        for gi, i in enumerate(row):
            if i is None:
                coef[si, gi, 0 if gi < g0 else 1] = 1
                continue
            s = specs[i]
            if s.method == "vanilla":
                coef[si, gi, 0] = 1
            elif s.method in ("mixup", "exclude"):
                coef[si, gi, 1] = 1
            else:
                coef[si, gi, 1] = 1 - s.gamma
                coef[si, gi, 2 + densities.index(s.density)] = s.gamma
    oracle = torch.einsum("sgc,sckb->sgkb", coef, cands)
    target = GridTargets.of(specs, rows, g0, densities)(cands)
    assert target.shape == oracle.shape and torch.allclose(target, oracle, atol=1e-6)
    plain = torch.tensor([[i is None or specs[i].method != "genlabel" for i in row] for row in rows])
    assert torch.equal(target[plain], oracle[plain])  # one-hot and y_mix targets: exactly
    assert any(specs[i].method == "genlabel" for row in rows for i in row if i is not None)


def test_batched_fgsm_is_the_former_formula() -> None:
    g = torch.Generator().manual_seed(2)
    net = BatchedMLP([[0, 1, 2], [3, 4, 5]], 4, 3, (6,))
    x = torch.randn(2, 4, 9, generator=g)
    y = torch.randint(3, (2, 9), generator=g)
    mask = torch.rand(2, 9, generator=g) > 0.3
    # the former implementation, verbatim
    xr = x[:, None].expand(2, 3, *x.shape[1:]).clone().requires_grad_(True)
    logp = torch.log_softmax(net(xr), 2)
    nll = -logp.gather(2, y[:, None, None, :].expand(2, 3, 1, y.shape[1]))[:, :, 0]
    (grad,) = torch.autograd.grad((nll * mask[:, None]).sum(), xr)
    x_adv = (xr + 0.3 * grad.sign()).detach()
    assert torch.equal(fgsm_accuracy(net, x, y, mask, 0.3), accuracy(net, x_adv, y, mask))
    assert not torch.equal(accuracy(net, x_adv, y, mask), accuracy(net, x, y, mask))  # the attack bites


def test_batched_mlp_seeds_share_init() -> None:
    net = BatchedMLP([[1, 1, 2]], 4, 3, (5,))
    w = net.weights[0].detach()
    assert torch.equal(w[0, 0], w[0, 1]) and not torch.equal(w[0, 0], w[0, 2])
    assert net(torch.randn(1, 4, 6)).shape == (1, 3, 3, 6)


# ------------------------------------------------------------------ report and CLI


def test_report_tables_and_paper_values() -> None:
    for table in (PAPER_TABLE45, PAPER_TABLE6, PAPER_TABLE8, PAPER_TABLE9):
        assert len(table) == 16
    assert PAPER_TABLE45[36]["genlabel_cv"] == (92.55, 0.15)
    assert md_table(["a", "b"], [(1, 2)]).splitlines() == ["| a | b |", "|---|---|", "| 1 | 2 |"]
    with pytest.raises(SystemExit):
        build_parser().parse_args(["nonsense"])


def test_unshuffled_batches_repeat_and_milestones_are_absolute() -> None:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(300, 2, generator=g)
    y = (x[:, 0] > 0).long()
    st = Stream(x, y, torch.arange(300), {}, 5)
    fixed = build_schedule([st], 3, 128, 2, 1.0, False, [], False, shuffle=False)
    # the same rows in the same batches every epoch, lam and partners drawn afresh
    assert torch.equal(fixed.x_clean[0], fixed.x_clean[2]) and not torch.equal(fixed.x_mix[0], fixed.x_mix[2])
    assert torch.equal(fixed.x_clean[0, 0, 0], x[:128].T)
    shuffled = build_schedule([st], 3, 128, 2, 1.0, False, [], False)
    assert not torch.equal(shuffled.x_clean[0], shuffled.x_clean[1])
    # one lam per batch: every row of a batch is lam * x_i + (1 - lam) * x_partner of that batch
    lam = torch.linalg.lstsq(torch.stack([fixed.x_clean[0, 0, 0].flatten(), torch.ones(256)], 1),
                             fixed.x_mix[0, 0, 0].flatten()[:, None]).solution
    assert 0 <= float(lam[0]) <= 1
    spec = [ModelSpec(0, "vanilla", 0.1, init_seed=0)]
    a = train_batched([st], spec, TrainConfig(epochs=3, optimizer="sgd", milestone_epochs=(1,)), 2)
    b = train_batched([st], spec, TrainConfig(epochs=3, optimizer="sgd", milestones=(1 / 3,)), 2)
    assert torch.equal(a.model.weights[0], b.model.weights[0])


def test_paper_protocol_kfold_and_ties() -> None:
    from sklearn.model_selection import KFold

    from benchmarks.protocols.tabular import PAPER, official_ids
    from benchmarks.tabular.data import kfold
    from benchmarks.tabular.paper import _choose, configs

    for (a, b), (c, d) in zip(kfold(23, 5), KFold(5).split(range(23))):
        assert a.tolist() == list(c) and b.tolist() == list(d)  # unshuffled, unstratified
    assert len(official_ids()) == 133 and len(set(official_ids())) == 133
    grid = configs(PAPER, ["gaussian", "kde"])
    val = torch.zeros(len(grid))  # all tied: the earlier configuration wins everywhere
    best = _choose(grid, val)
    assert grid[best["vanilla"]][1] == 0.1 and grid[best["genlabel_cv"]][1:] == (0.1, 0.0, "gaussian")
    val[[i for i, g in enumerate(grid) if g[0] == "genlabel_kde" and g[1] == 0.01 and g[2] == 0.4]] = 1.0
    assert grid[_choose(grid, val)["genlabel_cv"]][1:] == (0.01, 0.4, "kde")


def test_boundary_attack_on_a_batched_model() -> None:
    from benchmarks.tabular.attack import boundary_accuracy  # foolbox: the bench extra

    net = BatchedMLP([[0], [1]], 2, 2)
    with torch.no_grad():  # model 0: sign of x0 (margin 1 for the points below); model 1: constant
        net.weights[0].zero_()
        net.biases[0].zero_()
        net.weights[0][0, 0, :, 0] = torch.tensor([-10.0, 10.0])
        net.biases[0][1, 0, :, 0] = torch.tensor([5.0, -5.0])
    x = torch.tensor([[[-1.0, 0.0], [1.0, 0.0]]] * 2)
    y = torch.tensor([[0, 1]] * 2)
    mask = torch.ones(2, 2, dtype=torch.bool)
    pos = torch.tensor([[0, 0], [1, 0]])
    far = boundary_accuracy(net, pos, x, y, mask, eps=0.5, bounds=(-3.0, 3.0), steps=50)
    near = boundary_accuracy(net, pos, x, y, mask, eps=2.0, bounds=(-3.0, 3.0), steps=50)
    assert far.tolist() == [1.0, 0.5]  # model 1 misclassifies one point: broken at any radius
    assert near[0] < 1.0  # radius 2 crosses model 0's boundary at distance 1


# ------------------------------------------------------------------ every suite's smoke run, per protocol


def _protocol_run(suite: str, tmp_path, protocol: str) -> dict:
    payload = _run(suite, tmp_path, "--protocol", protocol)
    assert payload["protocol"]["name"] == protocol
    assert f"## Protocol `{protocol}`" in (tmp_path / suite / "report.md").read_text()
    return payload


@pytest.mark.parametrize("protocol", ["paper", "rigorous"])
def test_synthetic_smoke(tmp_path, protocol) -> None:
    payload = _protocol_run("synthetic", tmp_path, protocol)
    assert {r["dataset"] for r in payload["rows"]} == {"circle", "moon", "two_circle", "cube2d", "cube3d"}
    assert len(payload["figures"]) == 4  # the 2-D sets, main lam mode (smoke runs one)
    main_rows = {r["dataset"]: r for r in payload["rows"] if r["lam"] == payload["rows"][0]["lam"]}
    if protocol == "paper":
        assert payload["rows"][0]["lam"] == "per_batch" and main_rows["two_circle"]["hidden"] == [64, 128, 128, 128]
        assert set(main_rows["two_circle"]["results"]) == {"vanilla", "mixup", "genlabel_kde"}
    else:
        assert payload["rows"][0]["lam"] == "per_pair"
        assert set(main_rows["two_circle"]["results"]) == {"vanilla", "mixup", "genlabel_gaussian", "genlabel_kde"}


@pytest.mark.parametrize("protocol", ["paper", "rigorous"])
def test_tabular_smoke(tmp_path, protocol) -> None:
    payload = _protocol_run("tabular", tmp_path, protocol)
    assert len(payload["rows"]) == 2
    t3 = payload["table3_groups"]["logreg"]["all"]["table3"]
    for base in ("vanilla", "mixup", "mixup_exclude_mi", "generative_classifier"):
        assert t3[base]["n"] == 2
        assert abs(t3[base]["higher"] + t3[base]["on_par"] + t3[base]["lower"] - 100) < 1e-6
    if protocol == "paper":  # one independent refit per family and trial
        assert all(len(r["results"]["genlabel_cv"]["chosen"]) == 1 for r in payload["rows"])
    report = tmp_path / "tabular" / "report.md"
    assert "Table 3" in report.read_text()
    report.unlink()  # re-rendered from results.json alone
    assert main(["tabular", "--render-only", "--out", str(tmp_path / "tabular")]) == 0
    assert "Table 3" in report.read_text() and f"## Protocol `{protocol}`" in report.read_text()


@pytest.mark.parametrize("protocol", ["paper", "rigorous"])
def test_robust_smoke(tmp_path, protocol) -> None:
    payload = _protocol_run("robust", tmp_path, protocol)
    res = payload["rows"][0]["results"]
    assert set(res) == {"vanilla", "mixup", "genlabel_gaussian"}
    assert all(0 <= r["mean"] <= 100 for r in res.values())
    assert payload["protocol"]["attack"] == ("boundary" if protocol == "paper" else "fgsm")


@pytest.mark.parametrize("protocol", ["paper", "rigorous"])
def test_genmix_smoke(tmp_path, protocol) -> None:
    payload = _protocol_run("genmix", tmp_path, protocol)
    assert {r["method"] for r in payload["rows"]} == {"vanilla", "mixup", "manifold_mixup", "genmix"}
    for r in payload["rows"]:  # a number, or an explicit "not available", never a stub
        assert ("mean" in r) == r["available"]
    assert all(r["available"] for r in payload["rows"] if r["method"] == "manifold_mixup")
    f4 = {r["method"] for r in payload["features"]["rows"]}
    assert {"genmix_features", "manifold_mixup", "mixup"} <= f4  # the F.4 column is run and reported
    assert "GenMix in feature space" in (tmp_path / "genmix" / "report.md").read_text()


@pytest.mark.parametrize("protocol", ["paper", "rigorous"])
def test_image_smoke(tmp_path, protocol) -> None:
    payload = _protocol_run("image", tmp_path, protocol)
    assert any(r.get("available") for r in payload["rows"])
    manifold = [r for r in payload["rows"] if r.get("method", "").startswith("manifold_mixup")]
    assert manifold and all(r["available"] for r in manifold)  # mixkit.nn.ManifoldMixup is always there
    # the cheaper OnlineGenLabel mode is reported beside the every-step one
    assert {"mixup+genlabel", "mixup+genlabel (update every 8)"} <= {r.get("method") for r in payload["rows"]}


def test_two_circle_reference_trains_plain_modules(tmp_path) -> None:
    from benchmarks import two_circle_reference

    res = two_circle_reference.main(["--trials", "2", "--epochs", "2", "--n", "60", "--out", str(tmp_path)])
    for route in ("results", "batched"):  # the plain loop and the batched trainer, same trials
        for m in ("vanilla", "mixup"):
            accs = res[route][m]["accs"]
            assert len(accs) == 2 and all(0 <= a <= 100 for a in accs)
    assert "paper (5 trials)" in (tmp_path / "report.md").read_text()


def test_speed_is_wired(tmp_path) -> None:
    payload = _run("speed", tmp_path)
    assert "rows" in payload
    mix = {row["method"]: row for row in payload["rows"] if row["group"] == "mix"}
    assert {"floor: index_select + lerp_", "mixkit Mixup", "timm Mixup (in place)", "torchvision v2.MixUp"} <= set(mix)
    assert mix["floor: index_select + lerp_"]["vs_floor"] == 1.0
    summary = payload["summary"]
    assert summary["relabel_K10_d20_B128_vs_matmul"] > 0  # a smoke run, but it must be measured
    assert set(summary["targets_met"]) <= set(speed.TARGETS)


def test_speed_verdicts_apply_the_targets() -> None:
    assert speed.verdicts({"mixup_vs_floor": 1.9, "mixup_vs_timm": 1.1}) == {"mixup_vs_floor": True,
                                                                           "mixup_vs_timm": False}


def test_tabular_resumes_a_stopped_run(tmp_path) -> None:
    first = _run("tabular", tmp_path, "--protocol", "paper", "--datasets", "48")
    out = tmp_path / "tabular"
    row = {**first["rows"][0], "wall_s": 12345.0, "_protocol": first["protocol"]}
    (out / "rows.partial.jsonl").write_text(json.dumps(row) + "\n")
    again = _run("tabular", tmp_path, "--protocol", "paper", "--datasets", "48")
    assert again["rows"][0]["wall_s"] == 12345.0  # taken from the stopped run, not retrained
    assert not (out / "rows.partial.jsonl").exists()
    row["_protocol"] = {**row["_protocol"], "trials": 99}  # other settings: not resumed
    (out / "rows.partial.jsonl").write_text(json.dumps(row) + "\n")
    assert _run("tabular", tmp_path, "--protocol", "paper", "--datasets", "48")["rows"][0]["wall_s"] != 12345.0
