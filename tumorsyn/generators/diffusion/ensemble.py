"""Several border refiners acting as one: the mean of their corrections.

The border refiner (``train_diffusion.train_refiner``) learns the tumour's edge and level from a few dozen
real tumours, and two refiners trained with different seeds on the same autoencoder write edges as far
apart as the real tumours' whole interquartile range (benchmarks/RESULTS.md, fourteenth session). Averaging
the corrections of several refiners, each trained from its own seed, keeps what they agree on and
averages out what each seed made up (a deep ensemble).
"""
from __future__ import annotations

import torch

__all__ = ["RefinerEnsemble"]


class RefinerEnsemble(torch.nn.Module):
    """Refiners called as one network: the mean of their outputs (the corrections :func:`refine` adds)."""

    def __init__(self, members):
        super().__init__()
        if len(members) < 2:
            raise ValueError("an ensemble needs at least two refiners")
        self.members = torch.nn.ModuleList(members)

    def forward(self, x):
        return torch.stack([member(x) for member in self.members]).mean(dim=0)
