"""Fixtures of the reader-study tests: phantom sources and small render settings."""
from __future__ import annotations

import pytest

from rs_helpers import SMALL, make_sources


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    """(real folder, synthetic folder) of phantom cases: 4 real, 4 synthetic, two size bins."""
    return make_sources(tmp_path_factory.mktemp("sources"))


@pytest.fixture
def small_settings():
    return SMALL
