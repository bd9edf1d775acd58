"""Blinded real-vs-synthetic reader studies: build a case set, collect ratings in a web app, analyse them.

``build_study`` (build.py) writes a study folder, ``add_reader`` (store.py) issues reader tokens,
``create_app`` (app.py) serves the rating page, and ``analyze_study`` (analyze.py) writes the report.
This package imports ``tumorsyn`` only; it reads ``tumorsyn generate`` manifests as plain JSON lines.
"""
from __future__ import annotations

__all__ = ["build_study", "add_reader", "create_app", "analyze_study"]


def __getattr__(name: str):
    # Lazy: the web stack and matplotlib load only for the command that needs them.
    if name == "build_study":
        from reader_study.build import build_study
        return build_study
    if name == "add_reader":
        from reader_study.store import add_reader
        return add_reader
    if name == "create_app":
        from reader_study.app import create_app
        return create_app
    if name == "analyze_study":
        from reader_study.analyze import analyze_study
        return analyze_study
    raise AttributeError(name)
