"""Batch enrichment of scans and datasets: ``tumorsyn generate``."""
