"""RelabelStats: relabel counts summed in the main process, DataLoader workers included."""

import torch
from torch.utils.data import DataLoader, TensorDataset

import mixkit


def data(n=256, seed=0):
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 3
    return torch.randn(n, 2, generator=g) + torch.tensor([[0.0, 0.0], [1.5, 0.0], [0.0, 1.5]])[y], y


def test_sums_nested_counts_and_rates():
    stats = mixkit.RelabelStats()
    x, y = data()
    gl = mixkit.GenLabel("gaussian").fit(x, y)
    mix = mixkit.Mixup(num_classes=3, seed=0)
    changed = 0
    for i in range(0, 256, 64):
        out = stats.update(gl(mix(x[i:i + 64], y[i:i + 64])))
        changed += int((out.y.argmax(1) != out.y_mix.argmax(1)).sum())
    got = stats.compute()
    assert got["genlabel.n"] == 256 and got["genlabel.changed"] == changed == gl.stats()["changed"]
    assert got["genlabel.fallback"] == 0
    assert abs(got["genlabel.changed_rate"] - changed / 256) < 1e-12
    assert stats.batches == 4
    stats.update((torch.zeros(2), torch.zeros(2)))  # a plain pair: a batch without counts
    stats.update({"excluded": torch.tensor(3)})  # an info mapping itself
    stats.update({"excluded": 2, "pixel_values": torch.zeros(4, 3)})  # a data dict: not counts
    assert stats.compute()["excluded"] == 3 and stats.batches == 7
    stats.reset()
    assert stats.compute() == {} and stats.batches == 0


def test_counts_from_dataloader_workers_reach_the_main_process():
    x, y = data(512)
    gl = mixkit.GenLabel("gaussian").fit(x, y)
    collate = mixkit.MixCollate("mixup", num_classes=3, relabel=gl, seed=0, return_batch=True)
    loader = DataLoader(TensorDataset(x, y), batch_size=64, num_workers=2, collate_fn=collate)
    stats = mixkit.RelabelStats()
    changed = 0
    for batch in stats.wrap(loader):
        changed += int((batch.y.argmax(1) != batch.y_mix.argmax(1)).sum())
    assert gl.stats()["calls"] == 0  # the workers' copies counted, not this one
    got = stats.compute()
    assert got["genlabel.n"] == 512 and got["genlabel.changed"] == changed and stats.batches == 8


def test_device_counts_are_summed_without_reading_them(monkeypatch):
    stats = mixkit.RelabelStats()

    def refuse(*a, **k):
        raise AssertionError("read back")

    monkeypatch.setattr(torch.Tensor, "item", refuse)
    monkeypatch.setattr(torch.Tensor, "__bool__", refuse)
    for v in range(5):
        stats.update({"g": {"changed": torch.tensor(v), "n": 10}})
    monkeypatch.undo()
    assert stats.compute() == {"g.changed": 10, "g.n": 50, "g.changed_rate": 0.2}
