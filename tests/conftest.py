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


# hypothesis profiles: `ci` (the default) keeps the property suite well under three minutes;
# `long` is the soak run: `pytest tests/test_properties.py --hypothesis-profile=long`
try:
    from hypothesis import HealthCheck, settings
except ImportError:  # the test extra brings hypothesis; without it only the property suite is missing
    pass
else:
    settings.register_profile("ci", max_examples=40, deadline=None, derandomize=True,
                              suppress_health_check=[HealthCheck.too_slow])
    settings.register_profile("long", max_examples=3000, deadline=None,
                              suppress_health_check=[HealthCheck.too_slow])
    settings.load_profile("ci")
