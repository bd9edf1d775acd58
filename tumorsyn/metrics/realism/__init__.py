"""Realism measured: descriptors of real and synthetic lesions, compared per organ and size class.

- :mod:`~tumorsyn.metrics.realism.descriptors`: :func:`lesion_descriptors` (one lesion) and
  :func:`describe_case` (every lesion of a scan), plain functions on canonical HU arrays plus
  ``spacing_mm``; :data:`DESCRIPTORS` holds each descriptor's group, unit and definition.
- :mod:`~tumorsyn.metrics.realism.compare`: :func:`compare_descriptors` (medians, IQRs, share of
  synthetic lesions inside the real 5-95 % range, KS test, and the AI-reader AUC of a classifier
  telling real from synthetic lesions).

``tumorsyn realism`` (docs/realism.md) reads files and calls these.
"""
from tumorsyn.metrics.realism.descriptors import (DEFAULTS, DESCRIPTORS, SIZE_BINS_MM, describe_case,
                                                  descriptor_names, lesion_descriptors, organ_depth_mm, size_class)

__all__ = ["DEFAULTS", "DESCRIPTORS", "SIZE_BINS_MM", "describe_case", "descriptor_names", "lesion_descriptors",
           "organ_depth_mm", "size_class"]
