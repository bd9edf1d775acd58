"""Phantom datasets on disk for the segment tests: small CTs with an organ and optional tumours."""
from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np

from tests.conftest import make_phantom

LPS = np.diag([-1.0, -1.0, 1.0, 1.0])


def write_case(folder: Path, name: str, *, seed: int = 0, tumor: bool = False, shape=(48, 48, 32),
               spacing=(1.5, 1.5, 2.0), lps: bool = False, label_values=(1, 2)) -> dict:
    """Write ``<name>_ct.nii.gz`` and ``<name>_labels.nii.gz`` (organ ``label_values[0]``, tumour ``[1]``).

    With ``lps`` the file is stored in LPS order (first two axes flipped, negative affine), holding the
    same anatomy as the RAS file.
    """
    ct, organ, sp = make_phantom(shape, spacing, radii_mm=(26.0, 24.0, 22.0), seed=seed)
    labels = np.zeros(shape, np.int16)
    labels[organ] = label_values[0]
    if tumor:
        idx = np.indices(shape).astype(np.float32)
        c = [shape[0] * 0.55, shape[1] * 0.45, shape[2] * 0.5]
        ball = sum(((idx[a] - c[a]) * sp[a]) ** 2 for a in range(3)) <= 6.0 ** 2
        labels[ball & organ] = label_values[1]
        ct[ball & organ] -= 60.0
    affine = np.diag([*sp, 1.0])
    affine[:3, 3] = [-10.0, 20.0, -30.0]
    data_ct, data_lab = ct.astype(np.int16), labels
    if lps:
        data_ct, data_lab = data_ct[::-1, ::-1, :].copy(), data_lab[::-1, ::-1, :].copy()
        flip = np.diag([-1.0, -1.0, 1.0, 1.0])
        flip[0, 3] = (shape[0] - 1) * sp[0]
        flip[1, 3] = (shape[1] - 1) * sp[1]
        affine = affine @ flip
    folder.mkdir(parents=True, exist_ok=True)
    ct_path, lab_path = folder / f"{name}_ct.nii.gz", folder / f"{name}_labels.nii.gz"
    nib.save(nib.Nifti1Image(data_ct, affine), str(ct_path))
    nib.save(nib.Nifti1Image(data_lab, affine), str(lab_path))
    return {"ct": str(ct_path), "labels": str(lab_path)}


def tiny_config(tmp_path: Path, *, network: str = "unet", workers: int = 0, epochs: int = 1, steps: int = 2,
                validation: bool = False, **extra) -> dict:
    """A config dict for a few CPU steps on phantoms (healthy organ-only scans + one with a tumour)."""
    data_dir = tmp_path / "data"
    healthy = [write_case(data_dir, f"h{i}", seed=i) for i in range(2)]
    real = [write_case(data_dir, "r0", seed=7, tumor=True)]
    kwargs = {"unet": {"channels": [4, 8, 16], "strides": [2, 2], "num_res_units": 0},
              "segresnet": {"init_filters": 8, "blocks_down": [1, 1], "blocks_up": [1]},
              "dynunet": {"filters": [4, 8, 16]},
              "swinunetr": {"feature_size": 12, "depths": [1, 1, 1, 1], "num_heads": [1, 1, 1, 1]}}[network]
    config = {
        "seed": 3, "organ": "liver", "output_dir": str(tmp_path / "run"),
        "data": {"healthy": {"cases": healthy, "label_preset": "binary"},
                 "real": {"cases": real, "label_preset": "decathlon"},
                 "validation": {"cases": [write_case(data_dir, "v0", seed=9, tumor=True)] if validation else [],
                                "label_preset": "decathlon"},
                 "spacing_mm": [2.0, 2.0, 2.0], "roi_size": [64, 64, 64] if network == "swinunetr" else [24, 24, 16],
                 "samples_per_scan": 1, "workers": workers, "crop_margin_mm": 6.0},
        "synthesis": {"prob": 1.0, "size_mm": [[[6, 10], 1.0]]},
        "network": {"name": network, "kwargs": kwargs},
        "train": {"epochs": epochs, "steps_per_epoch": steps, "checkpoint_every": 1, "lr": 1e-3, "progress": False},
        "predict": {"sw_batch_size": 1},
    }
    for key, value in extra.items():
        section, _, sub = key.partition("__")
        if sub:
            config.setdefault(section, {})[sub] = value
        else:
            config[key] = value
    return config
