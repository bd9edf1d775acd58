"""Adapters to other training frameworks (nnU-Net v2), thin layers over the core's one apply path.

Each subpackage converts its framework's data to HU arrays with a spacing in mm, calls
:mod:`tumorsyn.sampling` and :mod:`tumorsyn.apply`, and converts back. ``import tumorsyn`` never
imports them: each needs its framework's extra.
"""
