"""nnU-Net v2's own checks pass on datasets from ``tumorsyn generate --out-layout nnunet|decathlon``.

A two-case dataset is made from the bundled example (the scan, and a left-right flipped copy cropped
by two slices at each end), enriched in both layouts, and handed to nnunetv2 itself:
``verify_dataset_integrity`` (what ``nnUNetv2_plan_and_preprocess --verify_dataset_integrity``
runs) on the nnU-Net dataset, and ``convert_msd_dataset`` (``nnUNetv2_convert_MSD_dataset``) then
``verify_dataset_integrity`` on the Decathlon one. nnU-Net runs in a child process with its
``nnUNet_raw`` ... variables pointing into tmp, which also checks that none of this imports
torchvision or timm (they cannot load beside a CPU-only torch build).
"""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from generate_helpers import EXAMPLE_CT, EXAMPLE_LABELS

pytestmark = pytest.mark.skipif(importlib.util.find_spec("nnunetv2") is None,
                                reason="nnunetv2 is not installed (pip install 'tumorsyn[nnunet]')")

CHECK = """
import os, sys
from nnunetv2.experiment_planning.verify_dataset_integrity import verify_dataset_integrity
from nnunetv2.dataset_conversion.convert_MSD_dataset import convert_msd_dataset

if __name__ == "__main__":
    nnunet_folder, msd_folder = sys.argv[1:3]
    verify_dataset_integrity(nnunet_folder, num_processes=1)
    convert_msd_dataset(msd_folder, num_processes=1)
    verify_dataset_integrity(os.path.join(os.environ["nnUNet_raw"], "Dataset502_LiverSyn"), num_processes=1)
    loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("torchvision", "timm"))
    print("NOT-IMPORTED-OK" if not loaded else f"IMPORTED {loaded}")
"""


def _save_like(path: Path, data: np.ndarray, affine: np.ndarray, like: nib.Nifti1Image) -> None:
    header = like.header.copy()
    image = nib.Nifti1Image(data.astype(like.get_data_dtype()), affine, header)
    image.header.set_qform(affine, code=1)
    image.header.set_sform(affine, code=1)
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(image, str(path))


def example_dataset(root: Path) -> Path:
    """imagesTr/ + labelsTr/: the bundled example, and a flipped, cropped copy of it (TotalSegmentator labels)."""
    ct, labels = nib.load(str(EXAMPLE_CT)), nib.load(str(EXAMPLE_LABELS))
    ct_data, label_data = np.asanyarray(ct.dataobj), np.asanyarray(labels.dataobj)
    _save_like(root / "imagesTr" / "ex_a_0000.nii.gz", ct_data, ct.affine, ct)
    _save_like(root / "labelsTr" / "ex_a.nii.gz", label_data, labels.affine, labels)
    # Flip the first axis and drop two slices at each end of the last; the affine keeps the anatomy in place.
    flip = np.eye(4)
    flip[0, 0], flip[0, 3] = -1.0, ct_data.shape[0] - 1
    crop = np.eye(4)
    crop[2, 3] = 2
    affine = ct.affine @ flip @ crop
    _save_like(root / "imagesTr" / "ex_b_0000.nii.gz", ct_data[::-1, :, 2:-2], affine, ct)
    _save_like(root / "labelsTr" / "ex_b.nii.gz", label_data[::-1, :, 2:-2], affine, labels)
    return root


def test_nnunet_and_decathlon_datasets_pass_nnunets_checks(cli, tmp_path):
    src = example_dataset(tmp_path / "in")
    common = ["generate", "--dataset", src, "--organ", "liver", "--seed", "2", "--include-originals", "--quiet"]
    code, _, err = cli(*common, "--out-layout", "nnunet", "--dataset-id", "501", "--dataset-name", "LiverTumorSyn",
                       "--out", tmp_path / "raw")
    assert code == 0, err
    code, _, err = cli(*common, "--out-layout", "decathlon", "--dataset-id", "502", "--dataset-name", "LiverSyn",
                       "--out", tmp_path / "msd")
    assert code == 0, err
    env = {**os.environ, "nnUNet_raw": str(tmp_path / "raw"), "nnUNet_preprocessed": str(tmp_path / "pre"),
           "nnUNet_results": str(tmp_path / "results"), "PYTHONWARNINGS": "ignore"}
    script = tmp_path / "check.py"
    script.write_text(CHECK)
    result = subprocess.run([sys.executable, str(script), str(tmp_path / "raw" / "Dataset501_LiverTumorSyn"),
                             str(tmp_path / "msd" / "Task502_LiverSyn")], capture_output=True, text=True, env=env,
                            timeout=600)
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    # nnU-Net prints (rather than raises) its warnings: affine, origin or direction mismatches.
    assert "Warning" not in result.stdout and "Error" not in result.stdout, result.stdout[-3000:]
    assert result.stdout.count("verify_dataset_integrity Done") == 2
    assert "NOT-IMPORTED-OK" in result.stdout, result.stdout[-500:]
