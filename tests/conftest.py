"""Session-wide test set-up."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True, scope="session")
def private_store_cache(tmp_path_factory):
    """Crop stores of the tests' temporary videos go to a temporary cache, not ~/.cache (each test
    folder would otherwise leave a store behind there)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("xdg_cache")))
        yield
