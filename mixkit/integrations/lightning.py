"""Lightning integration: mix (and relabel) on the device, log the relabel statistics.

Two ways, for two batch shapes:

* :class:`MixCallback`, a ``Callback``: mixes each training batch in
  ``on_train_batch_start``, after Lightning moved it to the device, by writing the
  mixed inputs and soft labels back *into* the batch (a list, as ``default_collate``
  makes of ``(x, y)`` samples, or a dict). It sums the relabel counts
  (:class:`mixkit.RelabelStats`) and logs them at the end of each training epoch as
  ``<prefix>genlabel.changed`` etc.::

      gl = mixkit.GenLabel("gaussian").fit(train_set)
      trainer = L.Trainer(callbacks=[MixCallback(mixkit.MixCollate("mixup", 10, relabel=gl))])

* :func:`mix_batch`, for a LightningModule's own ``on_after_batch_transfer`` hook
  (which Lightning calls on the device, for any batch type, tuples included; callbacks
  have no such hook)::

      def on_after_batch_transfer(self, batch, dataloader_idx):
          if self.trainer.training:
              batch = mix_batch(batch, self.mix, self.relabel_stats)
          return batch

Put the relabeler in the LightningModule (``self.genlabel = gl``) and the checkpoint
carries its density (GenLabel is an ``nn.Module``).
"""

from __future__ import annotations

from collections.abc import Callable, MutableMapping
from typing import Any

from mixkit.batch import MixedBatch
from mixkit.data import INPUT_KEYS, LABEL_KEYS, find_key, unpack
from mixkit.stats import RelabelStats

try:
    import lightning.pytorch as pl
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "mixkit.integrations.lightning needs the lightning package: pip install 'mixkit[lightning]'"
    ) from exc

Mix = Callable[[Any, Any], Any]


def _mixed(mix: Any, x: Any, y: Any) -> MixedBatch | tuple[Any, Any]:
    # a MixCollate returns (x, y) when called; its .mix gives the MixedBatch with the counts
    fn = getattr(mix, "mix", None)
    return fn(x, y) if callable(fn) else mix(x, y)


def _split(out: Any) -> tuple[Any, Any, MixedBatch | None]:
    if isinstance(out, MixedBatch):
        return out.x, out.y, out
    if isinstance(out, (tuple, list)) and len(out) >= 2:
        return out[0], out[1], None
    raise TypeError(f"the mix callable must return a MixedBatch or (x, y), got {type(out).__name__}")


def mix_batch(batch: Any, mix: Mix, stats: RelabelStats | None = None, *,
              input_key: str | None = None, label_key: str | None = None) -> Any:
    """Mix ``batch`` (a tuple, list, namedtuple or dict) with ``mix``; a batch of the same kind.

    ``mix`` is a :class:`mixkit.MixCollate`, a :class:`mixkit.Mixer` or any callable
    ``(x, y) -> MixedBatch | (x, y)``; ``stats`` (optional) counts the relabel
    statistics of each mixed batch.
    """
    if not callable(mix):
        raise TypeError(f"mix must be a MixCollate, a Mixer or a callable (x, y), got {type(mix).__name__}")
    x, y, repack = unpack(batch, input_key, label_key)
    x2, y2, mixed = _split(_mixed(mix, x, y))
    if stats is not None and mixed is not None:
        stats.update(mixed)
    return repack(x2, y2)


class MixCallback(pl.Callback):
    """Mix (and relabel) every training batch on the device; log the relabel statistics.

    Args:
        mix: a :class:`mixkit.MixCollate`, a :class:`mixkit.Mixer` or any callable
            ``(x, y) -> MixedBatch | (x, y)``.
        input_key, label_key: items of dict batches (found by name otherwise).
        prefix: prefix of the logged names.
        log: log the summed counts at the end of each training epoch.

    The batch is changed in place (Lightning hands callbacks the batch that
    ``training_step`` receives): it must be a list or a dict. For tuple batches use
    :func:`mix_batch` in the module's ``on_after_batch_transfer``. Validation and test
    batches are left alone.
    """

    def __init__(self, mix: Mix, *, input_key: str | None = None, label_key: str | None = None,
                 prefix: str = "mixkit/", log: bool = True) -> None:
        if not callable(mix):
            raise TypeError(f"mix must be a MixCollate, a Mixer or a callable (x, y), got {mix!r}")
        self.mix = mix
        self.input_key = input_key
        self.label_key = label_key
        self.prefix = prefix
        self.log = bool(log)
        self.stats = RelabelStats()
        #: the values logged at the end of the last training epoch
        self.last: dict[str, float] = {}

    def on_train_batch_start(self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int) -> None:
        x, y, _ = unpack(batch, self.input_key, self.label_key)
        x2, y2, mixed = _split(_mixed(self.mix, x, y))
        if mixed is not None:
            self.stats.update(mixed)
        if isinstance(batch, MutableMapping):
            batch[find_key(batch, self.input_key, INPUT_KEYS, "inputs")] = x2
            batch[find_key(batch, self.label_key, LABEL_KEYS, "labels")] = y2
        elif isinstance(batch, list):
            batch[0], batch[1] = x2, y2
        else:
            raise TypeError(
                f"MixCallback changes the batch in place, so it must be a list or a dict, got "
                f"{type(batch).__name__}; for tuple batches call mixkit.integrations.lightning.mix_batch "
                "in your LightningModule's on_after_batch_transfer instead"
            )

    def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        if self.log:
            values = {f"{self.prefix}{k}": float(v) for k, v in self.stats.compute().items()}
            self.last = values
            if values:
                pl_module.log_dict(values, on_step=False, on_epoch=True)
        self.stats.reset()


__all__ = ["MixCallback", "mix_batch"]
