"""Input and hyperparameter checks shared by every mixkit component.

One place, so that every component words the same mistake the same way and so
that the hot path can skip what costs a host sync. Two kinds of check live here:

* **hyperparameters** (``check_positive``, ``check_int``, ...): plain Python
  values checked once in a constructor; they never touch a tensor;
* **tensors** (``check_finite``, ``as_class_ids``, ``check_soft_labels``): these
  read values, i.e. they synchronise with the device and break a
  ``torch.compile`` graph. Components call them only when
  :func:`should_validate` says so: always on the CPU (where a check costs a
  reduction and nothing else), never while compiling, and on accelerators only
  when the user asked for ``validate=True`` (as ``torch.distributions``'
  ``validate_args``).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

# integer dtypes accepted as class ids (uint8 included: it is not a mask here)
_INT_DTYPES = (torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64)


def _never_compiling() -> bool:
    return False


#: True while ``torch.compile`` traces (checks that read values must be skipped). torch's
#: own function, not a wrapper: the hot path asks several times a batch, and dynamo folds it
#: to a constant. (torch.compiler.is_compiling arrived in torch 2.3; 2.1 and 2.2 name it
#: in torch._dynamo.)
is_compiling: Callable[[], bool] = (getattr(torch.compiler, "is_compiling", None)
                                    or getattr(torch._dynamo, "is_compiling", _never_compiling))


def should_validate(flag: bool | None, *tensors: Any) -> bool:
    """Whether value checks run: ``flag`` if given, else only for CPU tensors outside compile."""
    if is_compiling():
        return False
    if flag is not None:
        return bool(flag)
    return all(not torch.is_tensor(t) or t.device.type == "cpu" for t in tensors)


# -- hyperparameters ---------------------------------------------------------------------


def _real(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        if torch.is_tensor(value) and value.numel() == 1 and not value.is_complex():
            value = value.item()
        else:
            raise TypeError(f"{name} must be a real number, got {type(value).__name__} {value!r}")
    value = float(value)
    if math.isnan(value):
        raise ValueError(f"{name} must be a number, got nan")
    return value


def check_positive(name: str, value: Any, *, finite: bool = True) -> float:
    """``value`` as a float > 0 (and finite unless ``finite=False``), else a ValueError naming it."""
    v = _real(name, value)
    if not v > 0 or (finite and math.isinf(v)):
        raise ValueError(f"{name} must be a positive{' finite' if finite else ''} number, got {value!r}")
    return v


def check_range(name: str, value: Any, low: float, high: float) -> float:
    """``value`` as a float in ``[low, high]``, else a ValueError naming it."""
    v = _real(name, value)
    if not low <= v <= high:
        raise ValueError(f"{name} must lie in [{low}, {high}], got {value!r}")
    return v


def check_int(name: str, value: Any, minimum: int | None = None, *, allow_none: bool = False) -> int | None:
    """``value`` as an int (``>= minimum``), refusing floats such as 2.5 and bools."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        elif torch.is_tensor(value) and value.numel() == 1 and not value.is_floating_point():
            value = int(value.item())
        else:
            raise TypeError(f"{name} must be an integer, got {type(value).__name__} {value!r}")
    value = int(value)
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value}")
    return value


def check_choice(name: str, value: Any, choices: tuple) -> Any:
    """``value`` if it is one of ``choices``, else a ValueError listing them."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")
    return value


def check_float_dtype(name: str, value: Any) -> torch.dtype:
    """A floating torch dtype (``torch.float32`` or the string ``"float32"``)."""
    if isinstance(value, str):
        value = getattr(torch, value, None) if not value.startswith("torch.") else getattr(torch, value[6:], None)
    if not isinstance(value, torch.dtype) or not value.is_floating_point:
        raise ValueError(f"{name} must be a floating torch dtype such as torch.float32, got {value!r}")
    return value


# -- tensors -----------------------------------------------------------------------------


def as_tensor(value: Any, name: str) -> Tensor:
    """``value`` as a tensor; complex data is refused rather than silently cast to real."""
    if torch.is_tensor(value):
        t = value
    else:
        try:
            t = torch.as_tensor(value)
        except (TypeError, ValueError, RuntimeError):
            # torch's own words ("new(): invalid data type 'str'") do not say which argument
            raise TypeError(
                f"{name} must be a tensor (or a numeric array or list), got {type(value).__name__}"
            ) from None
    if t.is_complex():
        raise TypeError(f"{name} is complex ({t.dtype}); mixkit works on real data: pass x.real or x.abs()")
    return t


def check_finite(x: Tensor, what: str = "x") -> None:
    """Raise a ValueError naming ``what`` if ``x`` holds NaN or Inf (reads the values: a sync)."""
    if not x.is_floating_point() or x.numel() == 0:
        return
    # NaN and Inf propagate into the sum, so one reduction checks the batch; float32
    # accumulation keeps a half-precision batch from overflowing into a false alarm
    if bool(torch.isfinite(x.sum(dtype=torch.float32 if x.itemsize < 4 else None))):
        return
    n_bad = int((~torch.isfinite(x)).sum())
    if n_bad:
        raise ValueError(
            f"{what} contains {n_bad} NaN/Inf value(s); clean or impute them before mixing "
            "(e.g. torch.nan_to_num, or drop those rows)"
        )


def as_class_ids(y: Tensor, num_classes: int | None = None, what: str = "labels", *, check: bool = True) -> Tensor:
    """Class ids of any integer dtype, ``(B,)`` or ``(B, 1)``, as a long ``(B,)`` tensor.

    Float ids are accepted only when every value is integral (a sync, so only with
    ``check``); bool tensors are refused (a mask is not a label). With ``check``, ids
    are checked against ``[0, num_classes)``.
    """
    if y.ndim == 0:
        raise ValueError(f"{what} must hold one class id per sample, got a 0-d tensor; pass shape (B,)")
    if y.ndim == 2 and y.shape[1] == 1:
        y = y.reshape(-1)
    if y.ndim != 1:
        raise ValueError(f"class ids must have shape (B,) or (B, 1), got {tuple(y.shape)}")
    if y.dtype == torch.bool:
        raise ValueError(f"{what} is a bool tensor; pass integer class ids, not a mask")
    if y.is_floating_point():
        if check and y.numel() and not bool(torch.all(y == y.round())):
            bad = y[y != y.round()][:3].tolist()
            raise ValueError(f"{what} must be integer class ids, got non-integer values such as {bad}")
        y = y.long()
    elif y.dtype not in _INT_DTYPES:
        raise ValueError(f"{what} must be integer class ids, got dtype {y.dtype}")
    else:
        y = y.long()
    if check and num_classes is not None:
        check_id_range(y, num_classes, what)
    return y


def check_id_range(y: Tensor, num_classes: int, what: str = "labels") -> None:
    """Raise unless long ids ``y`` lie in ``[0, num_classes)`` (reads the values: a sync)."""
    if y.numel() == 0:
        return
    lo, hi = int(y.min()), int(y.max())
    if lo < 0 or hi >= num_classes:
        raise ValueError(
            f"{what} must lie in [0, {num_classes}) but range over [{lo}, {hi}]; "
            "check num_classes or remap the labels to 0..K-1"
        )


def check_soft_labels(y: Tensor, what: str = "soft labels", atol: float = 1e-3) -> None:
    """Raise unless ``y`` ``(B, K)`` is finite, non-negative, with rows summing to 1 within ``atol``."""
    check_finite(y, what)
    if y.numel() == 0:
        return
    sums = y.sum(1, dtype=torch.float64)
    if bool((y < 0).any()) or bool(((sums - 1).abs() > atol).any()):
        raise ValueError(
            f"{what} must be non-negative with rows summing to 1 (within {atol}); "
            f"got row sums in [{float(sums.min()):.6g}, {float(sums.max()):.6g}]"
        )


def check_generator(generator: Any, what: str = "generator") -> torch.Generator | None:
    """``generator`` if it is ``None`` or a ``torch.Generator``, else a TypeError naming it."""
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(
            f"{what} must be a torch.Generator (or None), got {type(generator).__name__}; "
            "pass torch.Generator().manual_seed(seed)"
        )
    return generator


def check_batch(batch: Any, who: str) -> None:
    """Raise a TypeError unless ``batch`` is a :class:`mixkit.MixedBatch` (by its fields: no import)."""
    if not all(hasattr(batch, f) for f in ("x", "y", "lam", "index", "labels", "y_mix")):
        raise TypeError(
            f"{who} takes the MixedBatch a mixer returns (mixer(x, y) or MixCollate(..., "
            f"return_batch=True)), got {type(batch).__name__}"
        )


def check_seed(seed: Any, *, allow_none: bool = True) -> int | None:
    """``seed`` as an int that ``torch.Generator.manual_seed`` takes (in ``[-2**63, 2**64)``)."""
    seed = check_int("seed", seed, allow_none=allow_none)
    if seed is not None and not -(2**63) <= seed < 2**64:
        raise ValueError(f"seed must fit in 64 bits (torch.Generator's range), got {seed}")
    return seed
