"""The shared offline dataset cache (``../shared/datasets``, or ``$MIXKIT_DATA``) in tests.

CI has the cache (the set-up contract), so there a missing cache fails the run instead of
skipping quietly; on a machine without one, the tests that read it are skipped and say why.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest


def require_shared_cache(path: Path) -> None:
    """Skip (or, under ``CI``, fail) unless ``path`` of the shared dataset cache exists."""
    if path.exists():
        return
    reason = (f"no shared dataset cache at {path}: these tests read the offline OpenML copies "
              "(set MIXKIT_DATA to the shared datasets folder)")
    if os.environ.get("CI"):
        pytest.fail(reason)
    pytest.skip(reason)
