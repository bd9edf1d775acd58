"""`tumorsyn generate --method ca`: outputs, growth trajectories, and a hypodense tumour that stays so."""
import json

import nibabel as nib
import numpy as np
import pytest

from tumorsyn.cli.main import main
from tests.conftest import EXAMPLE_CT

pytest.importorskip("numba")


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ca_tumour_is_darker_and_touches_nothing_outside_its_blend(tmp_path, seed):
    out = tmp_path / "out"
    assert main(["generate", "--example", "--organ", "liver", "--method", "ca", "--size-mm", "10-20",
                 "--seed", str(seed), "--out", str(out), "--quiet"]) == 0
    tumor = np.asanyarray(nib.load(str(out / "example_tumor.nii.gz")).dataobj).astype(bool)
    change = nib.load(str(out / "example_ct.nii.gz")).get_fdata() - nib.load(str(EXAMPLE_CT)).get_fdata()
    assert tumor.any()
    assert change[tumor].mean() < -8
    # No bright halo: around the tumour the blend darkens or leaves tissue alone on average. (A
    # single voxel darker than the tumour's own HU is pulled up towards it, and with a mass effect a
    # vessel pushed aside may brighten a voxel: neither is a halo.)
    from scipy import ndimage

    shell = ndimage.binary_dilation(tumor, iterations=2) & ~tumor
    assert change[shell].mean() <= 1.0
    # The tumour's fine internal texture (zero mean) reaches into the blurred fringe, so a few fringe
    # voxels land a little brighter either way; a halo would be many.
    assert np.mean(change[shell] > 5) < 0.03


def test_save_steps_writes_a_growth_trajectory(tmp_path):
    out = tmp_path / "out"
    assert main(["generate", "--example", "--organ", "liver", "--method", "ca", "--size-mm", "10-20",
                 "--save-steps", "40,20", "--out", str(out), "--quiet"]) == 0
    record = json.loads((out / "manifest.jsonl").read_text().splitlines()[0])
    steps = [frame["step"] for frame in record["tumors"][0]["trajectory"]]
    assert steps == [20, 40]
    sizes = [int(np.asanyarray(nib.load(str(out / f"example_step{s:03d}_tumor.nii.gz")).dataobj).sum()) for s in steps]
    assert sizes[0] <= sizes[1] and sizes[1] > 0  # the tumour grows
    for key in ("step020_ct", "step040_tumor"):
        assert key in record["outputs"]


def test_save_steps_needs_the_automaton(tmp_path, capsys):
    assert main(["generate", "--example", "--organ", "liver", "--save-steps", "10", "--out", str(tmp_path / "o")]) == 1
    assert "--method ca" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
