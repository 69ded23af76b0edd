"""The optional Lightning integration: mixing on the device, statistics logged, checkpoints."""

import subprocess
import sys

import lightning.pytorch as L  # the test extra brings lightning: a missing one is a failure, not a skip
import pytest
import torch
from torch.utils.data import DataLoader, Dataset, TensorDataset

import mixkit
from mixkit.integrations.lightning import MixCallback, mix_batch


def data(n=192, seed=0):
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 3
    return torch.randn(n, 2, generator=g) + 2 * torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])[y], y


class Tiny(L.LightningModule):
    def __init__(self, genlabel=None, mix=None, keys=("x", "y")):
        super().__init__()
        self.net = torch.nn.Linear(2, 3)
        self.genlabel = genlabel  # a submodule: the checkpoint carries its density
        self.mix = mix
        self.keys = keys
        self.label_shapes = []
        self.stats = mixkit.RelabelStats()

    def training_step(self, batch, batch_idx):
        if isinstance(batch, dict):
            x, y = batch[self.keys[0]], batch[self.keys[1]]
        else:
            x, y = batch[0], batch[1]
        self.label_shapes.append(tuple(y.shape))
        return torch.nn.functional.cross_entropy(self.net(x), y)

    def on_after_batch_transfer(self, batch, dataloader_idx):
        if self.mix is not None and self.trainer.training:
            batch = mix_batch(batch, self.mix, self.stats)
        return batch

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def trainer(**kw):
    return L.Trainer(max_epochs=2, accelerator="cpu", logger=False, enable_checkpointing=False,
                     enable_progress_bar=False, enable_model_summary=False, **kw)


def test_callback_mixes_relabels_and_logs_the_statistics():
    x, y = data()
    gl = mixkit.GenLabel("gaussian").fit(x, y)
    cb = MixCallback(mixkit.MixCollate("mixup", num_classes=3, relabel=gl, seed=0))
    model = Tiny(gl)
    t = trainer(callbacks=[cb])
    t.fit(model, DataLoader(TensorDataset(x, y), batch_size=64))
    assert model.label_shapes == [(64, 3)] * 6  # soft labels reached training_step
    assert cb.last["mixkit/genlabel.n"] == 192.0
    assert 0 <= cb.last["mixkit/genlabel.changed"] <= 192
    assert t.callback_metrics["mixkit/genlabel.n"] == 192.0
    assert gl.stats()["calls"] == 6


def test_callback_on_dict_batches_and_refuses_tuples():
    x, y = data()

    class Dicts(Dataset):
        def __len__(self):
            return len(y)

        def __getitem__(self, i):
            return {"pixel_values": x[i], "label": y[i]}

    model = Tiny(keys=("pixel_values", "label"))
    trainer(callbacks=[MixCallback(mixkit.Mixup(num_classes=3, seed=0))]).fit(model, DataLoader(Dicts(), batch_size=96))
    assert model.label_shapes == [(96, 3)] * 4
    cb = MixCallback(mixkit.Mixup(num_classes=3, seed=0))
    with pytest.raises(TypeError, match="on_after_batch_transfer"):
        cb.on_train_batch_start(None, None, (x, y), 0)


def test_hook_helper_handles_tuples_and_the_checkpoint_carries_the_density(tmp_path):
    x, y = data()
    gl = mixkit.GenLabel("gaussian", gamma=0.5).fit(x, y)
    model = Tiny(gl, mix=mixkit.MixCollate("mixup", num_classes=3, relabel=gl, seed=0))
    loader = DataLoader(TensorDataset(x, y), batch_size=64, collate_fn=lambda s: tuple(torch.stack(t) for t in zip(*s)))
    t = trainer()
    t.fit(model, loader)
    assert model.label_shapes == [(64, 3)] * 6
    assert model.stats.compute()["genlabel.n"] == 384
    path = tmp_path / "tiny.ckpt"
    t.save_checkpoint(path)
    ckpt = torch.load(path, weights_only=True)
    fresh = Tiny(mixkit.GenLabel("gaussian"))
    fresh.load_state_dict(ckpt["state_dict"])
    batch = mixkit.Mixup(num_classes=3, seed=3)(x[:32], y[:32])
    assert fresh.genlabel.gamma == 0.5
    assert torch.equal(fresh.genlabel(batch).y, gl(batch).y)


def test_importing_mixkit_does_not_import_lightning():
    code = "import sys, mixkit, mixkit.integrations; print('lightning' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
