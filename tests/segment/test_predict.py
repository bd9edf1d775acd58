"""Prediction: outputs on the input's own grid and orientation (RAS and LPS files)."""
from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from segment.config import load_config
from segment.predict import predict_files
from segment.train import train
from segment_helpers import tiny_config, write_case


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("predict_run")
    return train(load_config(None, data=tiny_config(tmp, steps=2)), quiet=True)


@pytest.mark.parametrize("with_organ", [False, True])
def test_outputs_on_input_grid_ras_and_lps(tmp_path, run_dir, with_organ):
    ras = write_case(tmp_path / "ras", "case", seed=11, tumor=True, shape=(40, 36, 28))
    lps = write_case(tmp_path / "lps", "case", seed=11, tumor=True, shape=(40, 36, 28), lps=True)
    outs = {}
    for name, case in (("ras", ras), ("lps", lps)):
        organ = [case["labels"]] if with_organ else None
        written = predict_files(run_dir, [case["ct"]], tmp_path / f"out_{name}", organ_masks=organ,
                                probabilities=True, quiet=True, device="cpu")
        ct = nib.load(case["ct"])
        for key in ("tumor", "organ", "probability"):
            img = nib.load(written[0][key])
            assert img.shape == ct.shape and np.allclose(img.affine, ct.affine), (name, key)
        prob = np.asarray(nib.load(written[0]["probability"]).dataobj)
        assert prob.dtype == np.float32 and prob.min() >= 0 and prob.max() <= 1
        tumor = np.asarray(nib.load(written[0]["tumor"]).dataobj)
        organ_out = np.asarray(nib.load(written[0]["organ"]).dataobj)
        assert not (tumor.astype(bool) & ~organ_out.astype(bool)).any()  # tumour inside the organ
        if with_organ:
            assert np.array_equal(organ_out > 0, np.asarray(nib.load(case["labels"]).dataobj) > 0)
        outs[name] = nib.as_closest_canonical(nib.load(written[0]["probability"])).get_fdata()
    # Same anatomy stored in two orientations -> the same prediction in world space.
    assert np.allclose(outs["ras"], outs["lps"], atol=1e-4)
    # case_ct.nii.gz is case case_ct; its tumour file is case_tumor.nii.gz (tumorsyn.io.names: no role doubled)
    ras_file = np.asarray(nib.load(str(tmp_path / "out_ras" / "case_tumor.nii.gz")).dataobj)
    lps_file = np.asarray(nib.load(str(tmp_path / "out_lps" / "case_tumor.nii.gz")).dataobj)
    assert np.array_equal(lps_file, ras_file[::-1, ::-1, :])  # the LPS output is stored in the LPS file order


def test_predict_cli_bad_model(tmp_path):
    from tumorsyn.cli.main import main

    assert main(["segment", "predict", "--model", str(tmp_path), "x.nii.gz", "--out", str(tmp_path / "o")]) == 1
