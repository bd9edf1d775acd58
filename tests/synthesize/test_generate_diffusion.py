"""`tumorsyn generate --method diffusion --model DIR`: end to end into the bundled TotalSegmentator example."""
from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest

pytest.importorskip("torch", reason="the diffusion generator needs torch (the diffusion extra)")
pytest.importorskip("diffusers", reason="the diffusion generator needs diffusers (the diffusion extra)")

from tumorsyn.cli.main import main  # noqa: E402

from generate_helpers import EXAMPLE_CT, EXAMPLE_LABELS, stored_data  # noqa: E402
from tests.train_diffusion.diffusion_helpers import tiny_config, write_phantom_case  # noqa: E402


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    import torch

    from train_diffusion.train import train

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("diffusion_model")
    # Absolute HU: this 3-step model writes the ~100 HU it learnt into the ~47 HU example liver, so every
    # tumour is visible, which the size and label checks below rely on (a relative model of 3 steps draws
    # noise around the host's level, sometimes isodense; relative models: tests/tumorsyn/test_diffusion_intensity.py).
    folder = train(tiny_config(root / "run", [write_phantom_case(root / "case0", seed=0)], "train.preview_every=0",
                               "data.intensity=absolute"), quiet=True)
    torch.set_num_threads(threads)
    return folder


def _generate(out, model_dir, *extra):
    return main(["generate", "--example", "--organ", "liver", "--method", "diffusion", "--model", str(model_dir),
                 "--size-mm", "8-12", "--seed", "5", "--out", str(out), "--quiet", *extra])


def test_example_end_to_end_and_reproducible(tmp_path, model_dir):
    assert _generate(tmp_path / "a", model_dir, "--steps", "2", "--preview") == 0
    assert _generate(tmp_path / "b", model_dir, "--steps", "2") == 0
    record = json.loads((tmp_path / "a" / "manifest.jsonl").read_text().splitlines()[0])
    params = record["tumors"][0]["spec"]["params"]
    assert params["model"] == str(model_dir.resolve()) and params["steps"] == 2 and len(params["model_sha256"]) == 64
    assert (tmp_path / "a" / "example_preview.png").is_file()
    before, after = stored_data(EXAMPLE_CT), stored_data(tmp_path / "a" / "example_ct.nii.gz")
    np.testing.assert_array_equal(after, stored_data(tmp_path / "b" / "example_ct.nii.gz"))  # seed -> same bytes
    changed = after != before
    tumor = np.asanyarray(nib.load(str(tmp_path / "a" / "example_tumor.nii.gz")).dataobj).astype(bool)
    # every changed voxel lies within the tumour's blend zone: a box of the shape's reach around it
    idx = np.argwhere(changed)
    assert len(idx) and np.ptp(idx, axis=0).max() * 3.0 <= 2 * 12.0 + 12.0  # 3 mm voxels, <= 12 mm tumour + edge
    assert (tumor & changed).sum() >= 0.9 * tumor.sum()  # the label is where the HU changed


def test_manifest_measures_the_written_files_and_sizes_hold(tmp_path, model_dir):
    """Issue 16: each diffusion output's manifest size, volume and HU are those of its written files
    (measured by the manifest's own functions), and every size lies in the requested range."""
    from tumorsyn.apply import render_label
    from tumorsyn.io import load_labels, load_scan
    from tumorsyn.lesion_size import equivalent_diameter_mm, max_diameter_mm, volume_ml
    from tumorsyn.spec import TumorSpec

    liver = load_labels(EXAMPLE_LABELS).values() == 5  # TotalSegmentator's liver
    out = tmp_path / "m"
    assert main(["generate", "--example", "--organ", "liver", "--method", "diffusion", "--model", str(model_dir),
                 "--size-mm", "5-12", "--seed", "1", "--per-scan", "6", "--steps", "2", "--out", str(out),
                 "--quiet"]) == 0
    records = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    assert len(records) == 6
    for record in records:
        ct = load_scan(out / record["outputs"]["ct"])
        tumor = load_labels(out / record["outputs"]["tumor"]).values() > 0
        spacing = ct.spacing_mm
        (one,) = record["tumors"]
        measured, spec = one["measured"], one["spec"]
        assert 5.0 <= measured["equivalent_diameter_mm"] <= 12.0, record["output_id"]
        assert measured == {**measured,
                            "equivalent_diameter_mm": round(equivalent_diameter_mm(tumor, spacing), 3),
                            "max_diameter_mm": round(max_diameter_mm(tumor, spacing), 3),
                            "volume_ml": round(volume_ml(tumor, spacing), 4),
                            "mean_hu_tumor": round(float(ct.values()[tumor].mean()), 2)}, record["output_id"]
        # the written label is the shape placement measured, not the blend zone around it
        slices, rendering = render_label(TumorSpec.from_dict(spec), liver)
        np.testing.assert_array_equal(tumor[slices], rendering.label, err_msg=record["output_id"])
        assert tumor.sum() == rendering.label.sum()


def test_replay_from_spec_gives_the_same_bytes(tmp_path, model_dir):
    assert _generate(tmp_path / "a", model_dir) == 0
    manifest = tmp_path / "a" / "manifest.jsonl"
    labels = str(EXAMPLE_CT).replace("example_ct", "example_labels")
    assert main(["generate", str(EXAMPLE_CT), "--labels", labels, "--label-preset", "totalsegmentator",
                 "--from-spec", str(manifest), "--spec-id", "example", "--case-id", "example",
                 "--out", str(tmp_path / "b"), "--quiet"]) == 0
    np.testing.assert_array_equal(stored_data(tmp_path / "a" / "example_ct.nii.gz"),
                                  stored_data(tmp_path / "b" / "example_ct.nii.gz"))


def test_clear_errors(tmp_path, model_dir, capsys):
    assert main(["generate", "--example", "--organ", "liver", "--method", "diffusion", "--out", str(tmp_path / "a")]) == 1
    assert "--method diffusion needs --model MODEL_DIR" in capsys.readouterr().err
    assert main(["generate", "--example", "--organ", "liver", "--model", str(model_dir), "--out", str(tmp_path / "b")]) == 1
    assert "--model and --steps go with --method diffusion" in capsys.readouterr().err
    fake = tmp_path / "not_a_model"
    fake.mkdir()
    (fake / "config.json").write_text('{"network": {"name": "unet"}}')
    assert _generate(tmp_path / "c", fake) == 1
    err = capsys.readouterr().err
    assert str(fake) in err and "not a tumorsyn-diffusion model" in err
    assert not list((tmp_path / "c").glob("*.nii.gz"))  # no partial output
