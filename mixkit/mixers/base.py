"""The Mixer base class: turns a batch ``(x, y)`` into a :class:`MixedBatch`."""

from __future__ import annotations

import torch
from torch import Tensor

from mixkit.batch import MixedBatch, check_finite, class_ids, to_soft_labels
from mixkit.random import make_generator


class Mixer:
    """Base class of mixers.

    Subclasses implement :meth:`mix`, which receives validated float inputs,
    soft labels and a generator. Calling the mixer validates and converts the
    inputs, never modifies them, and keeps every draw on ``generator``.

    Args:
        num_classes: number of classes; needed when labels are class ids.
        seed: seed of the mixer's own generator; ``None`` draws one from
            torch's global RNG on first use (so ``torch.manual_seed`` repeats runs).
        label_dtype: dtype of the soft labels (float32 or float64).
    """

    def __init__(
        self,
        num_classes: int | None = None,
        *,
        seed: int | None = None,
        label_dtype: torch.dtype = torch.float32,
    ) -> None:
        if num_classes is not None and int(num_classes) < 1:
            raise ValueError(f"num_classes must be positive, got {num_classes}")
        self.num_classes = None if num_classes is None else int(num_classes)
        self.seed = seed
        self.label_dtype = label_dtype
        self._generator: torch.Generator | None = None

    @property
    def generator(self) -> torch.Generator:
        if self._generator is None:
            self._generator = make_generator(self.seed)
        return self._generator

    @generator.setter
    def generator(self, g: torch.Generator) -> None:
        self._generator = g

    def __getstate__(self) -> dict:
        # torch.Generator does not pickle; DataLoader workers re-derive it (see MixCollate)
        state = self.__dict__.copy()
        gen = state.pop("_generator")
        state["_generator_state"] = None if gen is None else gen.get_state()
        return state

    def __setstate__(self, state: dict) -> None:
        gen_state = state.pop("_generator_state", None)
        self.__dict__.update(state)
        self._generator = None
        if gen_state is not None:
            self._generator = torch.Generator()
            self._generator.set_state(gen_state)

    def prepare(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Validate a batch; return float inputs, soft labels and class ids."""
        if not torch.is_tensor(x):
            x = torch.as_tensor(x)
        if not torch.is_tensor(y):
            y = torch.as_tensor(y)
        if x.ndim < 1 or x.shape[0] == 0:
            raise ValueError(f"x must be a non-empty batch (B, ...), got shape {tuple(x.shape)}")
        if y.shape[0] != x.shape[0]:
            raise ValueError(
                f"x has {x.shape[0]} samples but y has {y.shape[0]}; pass one label per sample"
            )
        if not x.is_floating_point():
            x = x.float()  # integer images are mixed in float, in their own value range
        check_finite(x, "x")
        y_soft = to_soft_labels(y.to(x.device), self.num_classes, self.label_dtype)
        return x, y_soft, class_ids(y.to(x.device))

    def mix(self, x: Tensor, y_soft: Tensor, labels: Tensor, generator: torch.Generator) -> MixedBatch:
        raise NotImplementedError

    def __call__(self, x: Tensor, y: Tensor, *, generator: torch.Generator | None = None) -> MixedBatch:
        x, y_soft, labels = self.prepare(x, y)
        return self.mix(x, y_soft, labels, generator if generator is not None else self.generator)

    def extra_repr(self) -> str:
        return ""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.extra_repr()})"


def random_partners(n: int, generator: torch.Generator, device: torch.device) -> Tensor:
    """A random permutation of ``range(n)``: each sample's mixing partner."""
    return torch.randperm(n, generator=generator).to(device, non_blocking=True)


def lam_view(lam: Tensor, like: Tensor) -> Tensor:
    """``lam`` ``(B,)`` reshaped to broadcast against a batch shaped like ``like``."""
    return lam.reshape((-1,) + (1,) * (like.ndim - 1))
