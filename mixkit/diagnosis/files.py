"""Reading a user's data file for ``mixkit diagnose``: CSV with a target column, ``.npz`` or ``.pt``."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

#: target column names tried, in order, when ``--target`` is not given
TARGET_NAMES = ("target", "label", "labels", "class", "y")


class DataFileError(ValueError):
    """A data file that cannot be diagnosed; the message says what is wrong and what to do."""


def read_data(path: str | Path, target: str | None = None) -> tuple[Tensor, Tensor, list[str]]:
    """``(x, y, class_names)`` from a CSV (features + a target column), ``.npz`` or ``.pt`` (``x``, ``y``)."""
    path = Path(path)
    if not path.exists():
        raise DataFileError(f"{path}: no such file")
    suffix = path.suffix.lower()
    if suffix == ".csv":
        x, y, names = _read_csv(path, target)
    elif suffix in (".npz", ".pt", ".pth"):
        x, y, names = _read_arrays(path)
    else:
        raise DataFileError(f"{path}: unknown format {suffix!r}; pass a .csv, .npz or .pt file")
    if not torch.isfinite(x).all():
        bad = (~torch.isfinite(x)).any(1).nonzero().flatten()[:5].tolist()
        raise DataFileError(f"{path}: features contain NaN/Inf (rows {bad}...); impute or drop them first")
    if len(names) < 2:
        raise DataFileError(f"{path}: the target has {len(names)} class(es); diagnose needs at least two")
    return x, y, names


def _read_csv(path: Path, target: str | None) -> tuple[Tensor, Tensor, list[str]]:
    with path.open(newline="") as fh:
        rows = list(csv.reader(fh))
    if len(rows) < 2:
        raise DataFileError(f"{path}: needs a header row and at least one data row")
    header, body = [h.strip() for h in rows[0]], rows[1:]
    if target is None:
        target = next((h for h in TARGET_NAMES if h in header), None)
        if target is None:
            raise DataFileError(
                f"{path}: missing target column: none of {list(TARGET_NAMES)} is in the header "
                f"{header[:12]}; pass --target COLUMN")
    elif target not in header:
        raise DataFileError(f"{path}: missing target column {target!r}; columns are {header[:20]}")
    t = header.index(target)
    widths = {len(r) for r in body}
    if widths != {len(header)}:
        raise DataFileError(f"{path}: rows have {sorted(widths)} fields but the header has {len(header)}")
    feats = [c for c in range(len(header)) if c != t]
    if not feats:
        raise DataFileError(f"{path}: no feature columns besides the target {target!r}")
    x = np.empty((len(body), len(feats)))
    for col_pos, c in enumerate(feats):
        column = [r[c].strip() for r in body]
        try:
            x[:, col_pos] = [float(v) if v not in ("", "?", "NA", "nan", "NaN") else math.nan for v in column]
        except ValueError:
            sample = next(v for v in column if not _is_number(v))
            raise DataFileError(
                f"{path}: column {header[c]!r} is not numeric (e.g. {sample!r}); encode it as numbers "
                "(one-hot or ordinal) before diagnosing") from None
    names, y = np.unique([r[t].strip() for r in body], return_inverse=True)
    return torch.from_numpy(x), torch.from_numpy(y.astype(np.int64)), [str(n) for n in names]


def _is_number(v: str) -> bool:
    try:
        float(v)
    except ValueError:
        return False
    return True


def _read_arrays(path: Path) -> tuple[Tensor, Tensor, list[str]]:
    try:
        if path.suffix.lower() == ".npz":
            with np.load(path, allow_pickle=False) as data:
                found = dict(data)
        else:
            found = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # a corrupt or foreign file: zipfile, pickle and numpy each raise their own
        first = (str(err).splitlines() or [""])[0][:200]
        raise DataFileError(
            f"{path}: cannot read it as a {path.suffix} file ({type(err).__name__}: {first}); "
            "save a dict {'x': features, 'y': labels} with numpy.savez or torch.save"
        ) from None
    if not isinstance(found, dict):
        raise DataFileError(f"{path}: expected a dict with 'x' and 'y', got {type(found).__name__}")
    missing = [k for k in ("x", "y") if k not in found]
    if missing:
        raise DataFileError(f"{path}: missing {missing}; save the features as 'x' and the labels as 'y'")
    try:
        x = torch.as_tensor(np.asarray(found["x"], dtype=np.float64))
    except (TypeError, ValueError):
        raise DataFileError(f"{path}: 'x' must be numeric features") from None
    y = found["y"] if torch.is_tensor(found["y"]) else torch.as_tensor(np.asarray(found["y"]))
    x = x.reshape(x.shape[0], -1).double()
    if y.ndim == 2 and y.shape[1] > 1:
        y = y.argmax(1)
    y = y.reshape(-1)
    if y.is_floating_point():
        if not torch.isfinite(y).all() or not (y == y.round()).all():
            raise DataFileError(f"{path}: 'y' must hold integer class ids")
    names_t, y = torch.unique(y, return_inverse=True)
    return x, y.long(), [str(v) for v in names_t.tolist()]
