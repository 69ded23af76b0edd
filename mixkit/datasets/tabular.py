"""Tabular classification data: OpenML through a local cache, and scikit-learn's toy sets.

Cache format (the one in ``shared/datasets``): a directory holding a ``manifest.json``
(a list of records ``openml_id, name, file, n, d, k, classes, categorical_columns,
source``) and, per record, a CSV with columns ``x0..x{d-1}, target`` (``target`` an
integer code 0..k-1, ``classes[code]`` the original class name). A cache root may hold
such a directory itself or several as sub-directories (``openml/``, ``multiclass/``).

scikit-learn, pandas and the ``openml`` package are imported only inside the functions
that need them: ``import mixkit.datasets`` stays within torch + numpy.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "TabularDataset",
    "default_data_dir",
    "list_datasets",
    "load_openml",
    "load_sklearn",
    "standardize",
]

MANIFEST = "manifest.json"
# where load_openml writes a dataset it had to fetch, when the cache root has no manifest
FETCH_SUBDIR = "openml"


@dataclass
class TabularDataset:
    """Features ``x`` float32 ``(N, d)``, labels ``y`` int64 ``(N,)`` in ``0..num_classes-1``."""

    name: str
    openml_id: int | None
    x: Tensor
    y: Tensor
    num_classes: int
    categorical_columns: list[str] = field(default_factory=list)
    classes: list[str] = field(default_factory=list)

    @property
    def num_features(self) -> int:
        return int(self.x.shape[1])

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def __repr__(self) -> str:  # the tensors would flood a log
        return (
            f"TabularDataset(name={self.name!r}, openml_id={self.openml_id}, n={len(self)}, "
            f"d={self.num_features}, num_classes={self.num_classes})"
        )


def default_data_dir() -> Path:
    """Where datasets live: ``$MIXKIT_DATA``, else a ``shared/datasets`` directory found
    walking up from this package (a checkout next to the shared data), else ``~/.cache/mixkit``."""
    env = os.environ.get("MIXKIT_DATA")
    if env:
        return Path(env).expanduser()
    for parent in Path(__file__).resolve().parents:
        candidate = parent / "shared" / "datasets"
        if candidate.is_dir():
            return candidate
    return Path("~/.cache/mixkit").expanduser()


def _manifest_dirs(cache_dir: Path) -> list[Path]:
    """Directories with a manifest: ``cache_dir`` itself first, then its sorted sub-directories."""
    dirs = [cache_dir] if (cache_dir / MANIFEST).is_file() else []
    if cache_dir.is_dir():
        dirs += sorted(p for p in cache_dir.iterdir() if (p / MANIFEST).is_file())
    return dirs


def _read_manifest(directory: Path) -> list[dict[str, Any]]:
    with open(directory / MANIFEST, encoding="utf-8") as f:
        return json.load(f)


def list_datasets(cache_dir: str | Path | None = None) -> list[dict[str, Any]]:
    """All manifest records in the cache, each with ``collection`` (the sub-directory it
    came from, ``""`` for the root) and ``path`` (the CSV's absolute path) added."""
    root = Path(cache_dir) if cache_dir is not None else default_data_dir()
    out = []
    for directory in _manifest_dirs(root):
        collection = "" if directory == root else directory.name
        for record in _read_manifest(directory):
            path = str(directory / record["file"])
            out.append({**record, "collection": collection, "path": path})
    return out


def _find_record(records: list[dict[str, Any]], key: int | str) -> dict[str, Any] | None:
    """Record for an OpenML id, a name, or ``collection/name``.

    A name may match several records (OpenML keeps the original and its binarized copy
    under one name, e.g. glass = 41 and 1005); like OpenML's version 1 we take the
    lowest id, records without an id last.
    """
    if isinstance(key, str) and key.strip().isdigit():
        key = int(key)
    if isinstance(key, int):
        hits = [r for r in records if r.get("openml_id") == key]
    else:
        if "/" in key:
            collection, name = key.rsplit("/", 1)
            hits = [r for r in records if r["collection"] == collection and r["name"] == name]
        else:
            hits = [r for r in records if r["name"] == key]
        if not hits:  # names are case-insensitive on OpenML
            hits = [r for r in records if r["name"].lower() == key.rsplit("/", 1)[-1].lower()]
    if not hits:
        return None
    hits.sort(key=lambda r: (r.get("openml_id") is None, r.get("openml_id") or 0))
    return hits[0]


def _read_csv(path: Path, d: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Read ``x0..x{d-1}, target`` columns by name, whatever their order in the file."""
    with open(path, encoding="utf-8") as f:
        header = f.readline().strip().split(",")
    data = np.loadtxt(path, delimiter=",", skiprows=1, dtype=np.float64, ndmin=2)
    col = {name: i for i, name in enumerate(header)}
    if d is None:
        d = sum(1 for h in header if re.fullmatch(r"x\d+", h))
    try:
        xi = [col[f"x{j}"] for j in range(d)]
        ti = col["target"]
    except KeyError as e:
        raise ValueError(f"{path}: expected columns x0..x{d - 1}, target; got {header}") from e
    return data[:, xi], data[:, ti]


def _dataset_from_record(record: dict[str, Any]) -> TabularDataset:
    path = Path(record["path"])
    x, t = _read_csv(path, record.get("d"))
    y = t.astype(np.int64)
    if not np.array_equal(y, t):
        raise ValueError(f"{path}: target column is not integer class codes")
    k = int(record.get("k") or (y.max() + 1))
    return TabularDataset(
        name=record["name"],
        openml_id=record.get("openml_id"),
        x=torch.from_numpy(x.astype(np.float32)),
        y=torch.from_numpy(y),
        num_classes=k,
        categorical_columns=list(record.get("categorical_columns") or []),
        classes=[str(c) for c in record.get("classes") or range(k)],
    )


def load_openml(
    data_id_or_name: int | str, cache_dir: str | Path | None = None, *, fetch: bool = True
) -> TabularDataset:
    """An OpenML dataset by id or name, from the local cache or fetched into it.

    ``cache_dir`` defaults to ``default_data_dir()``. On a cache miss (and ``fetch=True``)
    the dataset is downloaded with ``sklearn.datasets.fetch_openml`` (or the ``openml``
    package when scikit-learn is missing), categorical columns become integer codes,
    rows with missing values are dropped, classes are coded in sorted order, and the
    result is written into the cache (CSV + manifest record) so the next call is offline.
    """
    root = Path(cache_dir) if cache_dir is not None else default_data_dir()
    record = _find_record(list_datasets(root), data_id_or_name)
    if record is not None:
        return _dataset_from_record(record)
    if not fetch:
        raise FileNotFoundError(f"OpenML dataset {data_id_or_name!r} is not in the cache {root}")
    features, target, name, openml_id, via = _fetch_openml(data_id_or_name)
    record = _write_to_cache(root, features, target, name, openml_id, via)
    return _dataset_from_record(record)


def _fetch_openml(key: int | str) -> tuple[Any, Any, str, int, str]:
    """Download ``key`` from OpenML: (features DataFrame, target Series, name, id, tool used)."""
    by_id = isinstance(key, int) or (isinstance(key, str) and key.strip().isdigit())
    try:
        import sklearn.datasets
    except ImportError:
        sklearn = None
    if sklearn is not None:
        kwargs: dict[str, Any] = {"data_id": int(key)} if by_id else {"name": key}
        # our CSV becomes the cache: sklearn's own download copy would only duplicate it
        with tempfile.TemporaryDirectory() as tmp:
            bunch = sklearn.datasets.fetch_openml(
                **kwargs, data_home=tmp, as_frame=True, parser="auto"
            )
        details = getattr(bunch, "details", None) or {}
        target = bunch.target
        if target is None or getattr(target, "ndim", 1) != 1:
            raise ValueError(f"OpenML dataset {key!r} has no single default target")
        name = str(details.get("name", key))
        openml_id = int(details.get("id", key if by_id else -1))
        return bunch.data, target, name, openml_id, "sklearn.datasets.fetch_openml"
    try:
        import openml
    except ImportError as e:
        raise ImportError(
            "fetching from OpenML needs scikit-learn (pip install scikit-learn) or openml"
        ) from e
    ds = openml.datasets.get_dataset(int(key) if by_id else key)  # openml's own cache dir
    features, target, _, _ = ds.get_data(target=ds.default_target_attribute)
    return features, target, str(ds.name), int(ds.dataset_id), "openml"


def _sorted_unique(values: Any) -> list[Any]:
    """Distinct values in sorted order; numbers written as text sort as numbers ("2" < "10")."""
    uniq = list(dict.fromkeys(values))
    try:
        return sorted(uniq, key=float)
    except (TypeError, ValueError):
        pass
    try:
        return sorted(uniq)
    except TypeError:  # mixed types: order by text
        return sorted(uniq, key=str)


def _encode(features: Any, target: Any) -> tuple[np.ndarray, np.ndarray, list[str], list[str]]:
    """Numeric matrix (categoricals as integer codes), class codes, class names, categoricals."""
    import pandas as pd

    frame = pd.DataFrame(features).reset_index(drop=True)
    frame.columns = [f"x{j}" for j in range(frame.shape[1])]
    tgt = pd.Series(target).reset_index(drop=True)
    keep = frame.notna().all(axis=1) & tgt.notna()
    frame, tgt = frame[keep].reset_index(drop=True), tgt[keep].reset_index(drop=True)
    if len(frame) == 0:
        raise ValueError("no rows left after dropping missing values")

    cols, categorical = [], []
    for name in frame.columns:
        s = frame[name]
        if isinstance(s.dtype, pd.CategoricalDtype):
            # keep the declared category order (often meaningful, e.g. ordinal levels)
            cats = [c for c in s.cat.categories if c in set(s)]
            codes = s.map({c: i for i, c in enumerate(cats)}).astype(np.float64)
            categorical.append(name)
        elif pd.api.types.is_bool_dtype(s.dtype):
            codes = s.astype(np.float64)
            categorical.append(name)
        elif pd.api.types.is_numeric_dtype(s.dtype):
            codes = s.astype(np.float64)
        else:  # strings / objects
            cats = _sorted_unique(s.tolist())
            codes = s.map({c: i for i, c in enumerate(cats)}).astype(np.float64)
            categorical.append(name)
        cols.append(codes.to_numpy())
    x = np.stack(cols, axis=1) if cols else np.zeros((len(frame), 0))

    classes = _sorted_unique(tgt.tolist())
    y = tgt.map({c: i for i, c in enumerate(classes)}).to_numpy(dtype=np.int64)
    return x, y, [str(c) for c in classes], categorical


def _atomic_write(path: Path, text: str) -> None:
    """Write via a temporary file and rename, so a reader never sees half a file."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _write_to_cache(
    root: Path, features: Any, target: Any, name: str, openml_id: int, via: str
) -> dict[str, Any]:
    x, y, classes, categorical = _encode(features, target)
    directory = root if (root / MANIFEST).is_file() else root / FETCH_SUBDIR
    directory.mkdir(parents=True, exist_ok=True)
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "dataset"
    filename = f"{openml_id}_{safe}.csv"
    n, d = x.shape
    lines = [",".join([f"x{j}" for j in range(d)] + ["target"])]
    for row, label in zip(x, y, strict=True):
        lines.append(",".join([repr(float(v)) for v in row] + [str(int(label))]))
    _atomic_write(directory / filename, "\n".join(lines) + "\n")

    record = {
        "openml_id": openml_id,
        "name": name,
        "file": filename,
        "n": int(n),
        "d": int(d),
        "k": len(classes),
        "classes": classes,
        "categorical_columns": categorical,
        "source": f"OpenML dataset {openml_id}, fetched by mixkit with {via}",
    }
    manifest = _read_manifest(directory) if (directory / MANIFEST).is_file() else []
    manifest = [r for r in manifest if r.get("openml_id") != openml_id] + [record]
    _atomic_write(directory / MANIFEST, json.dumps(manifest, indent=1) + "\n")
    collection = "" if directory == root else directory.name
    return {**record, "collection": collection, "path": str(directory / filename)}


_SKLEARN_LOADERS: dict[str, tuple[str, int | None]] = {
    "iris": ("load_iris", 61),
    "wine": ("load_wine", 187),
    "breast_cancer": ("load_breast_cancer", 1510),  # wdbc
    "digits": ("load_digits", None),  # a subset of OpenML's optdigits (28), not the same data
}


def load_sklearn(name: str) -> TabularDataset:
    """scikit-learn's bundled ``iris``, ``wine``, ``breast_cancer`` or ``digits`` (offline).

    ``openml_id`` is the id of the matching OpenML copy, for reference only.
    """
    key = name.lower().replace("-", "_")
    if key not in _SKLEARN_LOADERS:
        choices = sorted(_SKLEARN_LOADERS)
        raise KeyError(f"unknown scikit-learn dataset {name!r}; choose from {choices}")
    import sklearn.datasets

    loader, openml_id = _SKLEARN_LOADERS[key]
    bunch = getattr(sklearn.datasets, loader)()
    x = torch.as_tensor(np.asarray(bunch.data, dtype=np.float32))
    y = torch.as_tensor(np.asarray(bunch.target, dtype=np.int64))
    classes = [str(c) for c in bunch.target_names]
    return TabularDataset(key, openml_id, x, y, len(classes), [], classes)


def standardize(
    x_train: Tensor, x_test: Tensor | None = None, *, eps: float = 1e-12
) -> tuple[Tensor, Tensor | None]:
    """Z-score both sets with the training set's mean and std (no test-set leakage).

    Columns that are constant on the training set are only centred (std taken as 1),
    so they become 0 instead of NaN/inf.
    """
    x64 = x_train.to(torch.float64)
    mean = x64.mean(dim=0)
    std = x64.std(dim=0, unbiased=False) if x64.shape[0] > 1 else torch.zeros_like(mean)
    std = torch.where(std > eps, std, torch.ones_like(std))

    def apply(x: Tensor) -> Tensor:
        out_dtype = x.dtype if x.is_floating_point() else torch.float32
        return ((x.to(torch.float64) - mean) / std).to(out_dtype)

    return apply(x_train), (apply(x_test) if x_test is not None else None)
