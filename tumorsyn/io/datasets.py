"""Dataset layouts: the old import path of :mod:`tumorsyn.io.cases` and :mod:`tumorsyn.io.layouts` (kept for users)."""
from __future__ import annotations

from tumorsyn.io.cases import Case, case_id_from_path, case_ids, example_case
from tumorsyn.io.layouts import discover_cases, register_layout

__all__ = ["Case", "case_id_from_path", "case_ids", "discover_cases", "example_case", "register_layout"]
