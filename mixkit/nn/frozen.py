"""Algorithm 2 of the GenLabel paper: a frozen trained network as GenLabel's feature map."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from mixkit._validation import check_int
from mixkit.nn.taps import FeatureTap, model_device, unwrap

__all__ = ["FrozenFeatures", "frozen_features"]


class FrozenFeatures:
    """A frozen network as a feature map ``x -> (B, d)`` (see :func:`frozen_features`)."""

    def __init__(self, model: nn.Module, layer: str = "auto", batch_size: int = 512) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"frozen_features takes a trained nn.Module, got {type(model).__name__}")
        self.model = model.eval()
        self.layer = layer
        self.batch_size = check_int("batch_size", batch_size, 1)

    def __repr__(self) -> str:
        return f"FrozenFeatures({type(unwrap(self.model)).__name__}, layer={self.layer!r})"

    def __call__(self, x: Tensor) -> Tensor:
        model = self.model
        if model.training:
            model.eval()  # somebody switched it back: a frozen extractor scores in eval mode
        device = model_device(model) or x.device
        outs = []
        with torch.no_grad(), FeatureTap(model, self.layer) as tap:
            for chunk in x.split(self.batch_size):
                tap.reset()
                model(chunk.to(device))
                outs.append(tap.get())
        return torch.cat(outs).to(x.device)


def frozen_features(model: nn.Module, layer: str | None = None, *, batch_size: int = 512
                    ) -> FrozenFeatures:
    """A feature map for ``GenLabel(feature_map=...)`` from a trained network (Algorithm 2).

    The model is put in eval mode and called under ``torch.no_grad`` in chunks of
    ``batch_size`` (so ``GenLabel.fit`` on a whole training set fits in memory), on
    the model's device; the features come back flattened ``(B, d)`` on the input's
    device. ``layer=None`` takes the penultimate features (the classifier's input);
    a module name takes that module's output.

    Example::

        phi = train_vanilla(timm.create_model("resnet18", num_classes=10))
        gl = mixkit.GenLabel("gaussian", covariance="diag", gamma=1.0,
                             feature_map=frozen_features(phi)).fit(x_train, y_train)
        collate = mixkit.MixCollate("mixup", num_classes=10, relabel=gl)

    In DataLoader workers keep ``phi`` on the CPU; with a GPU extractor relabel in the
    loop instead (``mixkit.on_device``).
    """
    return FrozenFeatures(model, "auto" if layer is None else layer, batch_size=batch_size)
