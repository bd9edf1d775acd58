"""Segmentation training with on-the-fly synthetic tumours."""
