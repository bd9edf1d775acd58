"""Phantom tumour scans on disk and tiny training configs for the diffusion tests."""
from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from tests.conftest import REPO, make_phantom

TINY = REPO / "configs" / "diffusion" / "tiny_test.yaml"


def write_phantom_case(folder: Path, *, seed: int, sizes_mm=((9.0, 12.0), (10.0, 14.0))) -> dict:
    """A phantom CT (1 x 1 x 1.5 mm) with rules-generator tumours, as NIfTI files: a source entry."""
    import tumorsyn

    folder.mkdir(parents=True, exist_ok=True)
    ct, organ, spacing = make_phantom(shape=(56, 56, 36), radii_mm=(22.0, 20.0, 20.0), seed=seed)
    rng = np.random.default_rng(seed)
    specs = [tumorsyn.sample_spec(organ, spacing, organ="liver", size_mm=s, ct_hu=ct, rng=rng) for s in sizes_mm[:1]]
    out, tumor = tumorsyn.synthesize(ct, organ, spacing, specs)
    affine = np.diag([*spacing, 1.0])
    paths = {"ct": folder / "ct.nii.gz", "labels": folder / "liver.nii.gz", "tumor": folder / "tumor.nii.gz"}
    nib.save(nib.Nifti1Image(np.rint(out).astype(np.int16), affine), paths["ct"])
    nib.save(nib.Nifti1Image(organ.astype(np.uint8), affine), paths["labels"])
    nib.save(nib.Nifti1Image(tumor.astype(np.uint8), affine), paths["tumor"])
    return {"ct": str(paths["ct"]), "labels": str(paths["labels"]), "tumor": [str(paths["tumor"])]}


def tiny_config(out: Path, sources: list[dict], *overrides: str, need_data: bool = True) -> dict:
    """The tiny test config, training into ``out`` on ``sources``."""
    import yaml

    from train_diffusion.config import load_config

    sets = [f"output_dir={out}", f"data.tumor_sources={yaml.safe_dump(sources, default_flow_style=True).strip()}",
            *overrides]
    return load_config(TINY, sets, need_data=need_data)


def phantom_scan(seed: int = 3):
    """The diffusion generator tests' host: a 48 x 48 x 32 phantom liver, ``(ct, organ, spacing)``."""
    return make_phantom(shape=(48, 48, 32), radii_mm=(20.0, 18.0, 18.0), seed=seed)


def diffusion_spec(scan, model, rng=0, size_mm=(8, 11), **options):
    """A diffusion spec of the liver of ``scan`` (``(ct, organ, spacing)``) with the model folder ``model``."""
    import tumorsyn

    ct, organ, spacing = scan
    return tumorsyn.sample_spec(organ, spacing, organ="liver", method="diffusion", size_mm=size_mm, ct_hu=ct, rng=rng,
                                model=str(model), **options)


def untrained_model(folder: Path, *overrides: str) -> Path:
    """A model folder with the tiny architecture and random weights (plumbing tests)."""
    from train_diffusion.export import export_untrained

    config = tiny_config(folder.parent / "unused_run", [], *overrides, need_data=False)
    return export_untrained(folder, config, seed=0)


@contextmanager
def torch_threads(n: int = 1):
    """torch at ``n`` CPU threads inside the block, its previous count after: a fixture that trains once
    must not leave later tests (in the same xdist worker) at one thread, which changes their float sums."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@pytest.fixture(autouse=True)
def one_torch_thread():
    """One torch thread per test: two shared cores, steady timings, reproducible results (autouse
    wherever it is imported)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
