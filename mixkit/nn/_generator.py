"""Pickling for modules that own a ``torch.Generator`` (which does not pickle by itself)."""

from __future__ import annotations

import torch
from torch import nn


class GeneratorOwner(nn.Module):
    """An ``nn.Module`` whose ``_generator`` survives pickling and ``copy.deepcopy``.

    The generator is replaced by its state (a byte tensor) when pickled and rebuilt from
    it, so a copy continues the same random stream.
    """

    _generator: torch.Generator | None

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        gen = state.pop("_generator", None)
        state["_generator_state"] = None if gen is None else gen.get_state()
        return state

    def __setstate__(self, state: dict) -> None:
        gen_state = state.pop("_generator_state", None)
        super().__setstate__(state)
        self._generator = None
        if gen_state is not None:
            self._generator = torch.Generator()
            self._generator.set_state(gen_state)
