import pytest
import torch

# The models and batches in tests are tiny: a second intra-op thread only adds
# synchronisation, which on a busy 2-core CI machine costs several times the work.
torch.set_num_threads(1)


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device; none is present on this machine")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)
