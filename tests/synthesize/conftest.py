"""Fixtures for the ``tumorsyn generate`` tests (helpers live in generate_helpers.py)."""
from __future__ import annotations

from pathlib import Path

import pytest

from generate_helpers import CLI, EXAMPLE_CT, EXAMPLE_LABELS, write_phantom


@pytest.fixture
def cli(capsys) -> CLI:
    return CLI(capsys)


@pytest.fixture
def phantom_case(tmp_path) -> tuple[Path, Path]:
    """One phantom CT and its liver label on disk: (ct, labels)."""
    return write_phantom(tmp_path / "in", "phantom", seed=0)


@pytest.fixture
def example_paths() -> tuple[Path, Path]:
    """The bundled TotalSegmentator example CT and its labels (liver 5, pancreas 7, kidneys 2/3)."""
    if not EXAMPLE_CT.exists() or not EXAMPLE_LABELS.exists():
        pytest.fail("the bundled example scan is missing from tumorsyn/data")
    return EXAMPLE_CT, EXAMPLE_LABELS
