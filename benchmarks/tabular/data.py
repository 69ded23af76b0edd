"""Datasets and splits of the tabular and robust suites.

Keys: ``iris``, ``wine`` (scikit-learn), an OpenML id for the records of ``openml/`` and
``rebuilt/`` (the latter rebuilt from OpenML's originals, see the data README), and
``collection/name`` for the others (``multiclass/glass``). :func:`official_keys` are the
datasets of the official code's list that we hold.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

import mixkit
from benchmarks.batched import Stream

TEST_FRACTION = 0.2
#: collections whose records are keyed by their OpenML id
ID_COLLECTIONS = ("", "openml", "rebuilt")


def dataset_sizes(data_dir: Path | None) -> dict[str, int]:
    """Rows of every dataset the suite knows, by key: ``iris``, ``wine``, then every cached
    record (OpenML id, or ``collection/name`` for the other collections)."""
    from mixkit.datasets import list_datasets

    sizes = {"iris": 150, "wine": 178}
    for r in list_datasets(data_dir):
        if r.get("collection") in ID_COLLECTIONS and r.get("openml_id") is not None:
            sizes[str(r["openml_id"])] = int(r["n"])
        else:
            sizes[f"{r['collection']}/{r['name']}"] = int(r["n"])
    return sizes


def dataset_keys(data_dir: Path | None, names: Sequence[str] | None) -> list[str]:
    """Keys of the datasets to run (all, or those in ``names``), in a fixed order."""
    keys = list(dataset_sizes(data_dir))
    if names:
        wanted = [str(n) for n in names]
        missing = [w for w in wanted if w not in keys]
        if missing:
            raise ValueError(f"unknown datasets {missing}; known: {keys}")
        keys = [k for k in keys if k in wanted]
    return keys


def load_dataset(key: str, data_dir: Path | None) -> Any:
    from mixkit.datasets import load_openml, load_sklearn

    if key in ("iris", "wine"):
        return load_sklearn(key)
    return load_openml(int(key) if key.isdigit() else key, data_dir, fetch=False)


def split_indices(y: torch.Tensor, seed: int, test_fraction: float = TEST_FRACTION,
                  folds: int = 6) -> tuple[torch.Tensor, torch.Tensor, list[tuple[torch.Tensor, torch.Tensor]]]:
    """Stratified train/test split and stratified k folds of the training part."""
    import numpy as np
    from sklearn.model_selection import StratifiedKFold, train_test_split

    idx = np.arange(len(y))
    yn = y.numpy()
    train, test = train_test_split(idx, test_size=test_fraction, random_state=seed, stratify=yn)
    train.sort()
    test.sort()
    skf = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    fold_list = [(torch.as_tensor(train[a]), torch.as_tensor(train[b]))
                 for a, b in skf.split(train, yn[train])]
    return torch.as_tensor(train), torch.as_tensor(test), fold_list


def make_density(key: str, kde_max_points: int | None = None) -> mixkit.Density:
    if key == "kde" and kde_max_points is not None:
        return mixkit.create_density("kde", max_points_per_class=kde_max_points)
    return mixkit.create_density(key)


def make_stream(x: torch.Tensor, y: torch.Tensor, train_idx: torch.Tensor,
                eval_idx: dict[str, torch.Tensor], seed: int, densities: Sequence[str],
                exclude: bool, failures: dict[str, str], like: Stream | None = None,
                kde_max_points: int | None = None) -> Stream:
    """Standardize on ``train_idx``; fit GenLabel per density and ExcludeIntrusion there
    (or reuse those of ``like``, a stream with the same training rows)."""
    from mixkit.datasets import standardize

    if like is not None:
        return Stream(like.x, y, train_idx, {k: (like.x[v], y[v]) for k, v in eval_idx.items()},
                      seed, like.genlabels, like.exclude)
    _, xs = standardize(x[train_idx], x)
    xt, yt = xs[train_idx], y[train_idx]
    gls: dict[str, mixkit.GenLabel] = {}
    for key in densities:
        if key in failures:
            continue
        try:
            gls[key] = mixkit.GenLabel(make_density(key, kde_max_points), gamma=1.0).fit(xt, yt)
        except (mixkit.UnknownComponentError, ValueError, RuntimeError) as exc:
            failures[key] = f"{type(exc).__name__}: {exc}"
    excl = mixkit.ExcludeIntrusion().fit(xt, yt) if exclude else None
    return Stream(xs, y, train_idx, {k: (xs[v], y[v]) for k, v in eval_idx.items()}, seed, gls, excl)


def collections(data_dir: Path | None) -> dict[str, str]:
    """Key -> collection (``openml``, ``rebuilt``, ``multiclass``, ``sklearn``)."""
    from mixkit.datasets import list_datasets

    out = {"iris": "sklearn", "wine": "sklearn"}
    for r in list_datasets(data_dir):
        if r.get("collection") in ID_COLLECTIONS and r.get("openml_id") is not None:
            out[str(r["openml_id"])] = r["collection"] or "openml"
        else:
            out[f"{r['collection']}/{r['name']}"] = r["collection"]
    return out


def official_keys(data_dir: Path | None) -> list[str]:
    """The official list's datasets we hold (OpenML ids, in the list's order)."""
    from benchmarks.protocols.tabular import official_ids

    held = dataset_sizes(data_dir)
    return [str(i) for i in official_ids() if str(i) in held]


def fixed_split(y: torch.Tensor, test_fraction: float, stratified: bool,
                seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """One train/test split; the training rows keep the split's (shuffled) order, which the
    unshuffled folds and batches of the paper protocol then follow."""
    import numpy as np
    from sklearn.model_selection import train_test_split

    idx = np.arange(len(y))
    train, test = train_test_split(idx, test_size=test_fraction, random_state=seed,
                                   stratify=y.numpy() if stratified else None)
    return torch.as_tensor(train), torch.as_tensor(np.sort(test))


def kfold(n: int, folds: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """scikit-learn's unshuffled, unstratified ``KFold(folds)`` over positions ``0..n-1`` (what
    ``cross_val_score(cv=folds)`` does for an estimator that is not a classifier)."""
    import numpy as np
    from sklearn.model_selection import KFold

    return [(torch.as_tensor(a), torch.as_tensor(b))
            for a, b in KFold(n_splits=folds).split(np.arange(n))]
