"""The spleen, added as a host organ through its registry entry alone: rules and CA tumours on real spleens."""
from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

import tumorsyn
from tumorsyn.cli.main import main
from tumorsyn.errors import ConfigError
from tumorsyn.io.labels import organ_mask_from_labels
from tumorsyn.organs import get_preset
from tumorsyn.placement import PlacementContext
from tests.conftest import EXAMPLE_CT, EXAMPLE_LABELS, real_path

SPACING = (3.0, 3.0, 3.0)  # the bundled example's grid


def _load(path):
    return np.asarray(nib.load(str(path)).dataobj)


def _equivalent_diameter(mask: np.ndarray, spacing) -> float:
    volume = float(np.count_nonzero(mask)) * float(np.prod(spacing))
    return 2.0 * (3.0 * volume / (4.0 * np.pi)) ** (1.0 / 3.0)


@pytest.fixture(scope="module")
def example():
    ct = _load(EXAMPLE_CT).astype(np.float32)
    labels = _load(EXAMPLE_LABELS)
    spleen = organ_mask_from_labels(labels, "spleen", preset="totalsegmentator")
    return ct, labels, spleen


def test_the_spleen_preset_states_its_facts():
    preset = get_preset("spleen")
    assert preset.margin_mm == 2.0 and preset.exophytic_probability == 0.0
    assert preset.appearance == {"hypodense": 1.0}
    assert preset.phase_hu == {"unenhanced": (40.0, 60.0), "portal_venous": (100.0, 130.0)}
    assert preset.host_hu == (-30.0, 250.0)


def test_totalsegmentator_label_1_is_the_example_spleen(example):
    ct, labels, spleen = example
    assert np.array_equal(spleen, labels == 1)
    PlacementContext(spleen, SPACING, "spleen", ct_hu=ct)  # a plausible host (median about 35 HU at 3 mm)


@pytest.mark.parametrize("method, size, seeds", [("rules", (10.0, 16.0), range(3)), ("ca", (12.0, 18.0), range(2))])
def test_tumours_land_inside_the_example_spleen_at_the_requested_size(example, method, size, seeds):
    ct, labels, spleen = example
    context = PlacementContext(spleen, SPACING, "spleen", ct_hu=ct)
    for seed in seeds:
        spec = tumorsyn.sample_spec(spleen, SPACING, organ="spleen", method=method, size_mm=size, ct_hu=ct, rng=seed,
                                    context=context)
        assert spec.organ == "spleen" and not spec.exophytic and size[0] <= spec.size_mm <= size[1]
        out, tumour = tumorsyn.synthesize(ct, spleen, SPACING, spec)
        tumour = tumour.astype(bool)
        assert tumour.any() and spleen[tumour].all(), "every tumour voxel lies in the spleen"
        # The spleen's 2 mm margin, on a 3 mm grid: the tumour never touches the organ's outer layer.
        assert not (tumour & ~ndimage.binary_erosion(spleen)).any()
        # 3 mm voxels: the written label's equivalent diameter is the requested one to within a voxel or two.
        assert abs(_equivalent_diameter(tumour, SPACING) - spec.size_mm) < 2 * SPACING[0]
        assert float(out[tumour].mean()) < float(ct[tumour].mean()), "splenic tumours are hypodense by default"


def test_the_spleen_refuses_exophytic_tumours(example):
    ct, labels, spleen = example
    with pytest.raises(ConfigError, match="exophytic tumours are only available for the kidney, not the spleen"):
        tumorsyn.sample_spec(spleen, SPACING, organ="spleen", size_mm=(10, 15), ct_hu=ct, rng=0, exophytic=True)


@pytest.mark.parametrize("method", ["rules", "ca"])
def test_generate_example_spleen(tmp_path, capsys, method):
    out = tmp_path / "out"
    code = main(["generate", "--example", "--organ", "spleen", "--method", method, "--size-mm", "10-15", "--seed", "4",
                 "--label-map", "--quiet", "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    tumour = _load(out / "example_tumor.nii.gz").astype(bool)
    label_map = _load(out / "example_label.nii.gz")
    labels = _load(EXAMPLE_LABELS)
    assert tumour.any() and (labels[tumour] == 1).all()
    assert np.array_equal(label_map >= 1, (labels == 1) | tumour)  # 1 marks the spleen: the example's label 1
    (record,) = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    assert record["organ"] == "spleen" and record["label_preset"] == "totalsegmentator"
    (tumour_record,) = record["tumors"]
    assert 10.0 <= tumour_record["spec"]["size_mm"] <= 15.0 and tumour_record["spec"]["organ"] == "spleen"


def test_generate_refuses_a_spleen_missing_from_the_labels(tmp_path, capsys):
    # KiTS maps hold no spleen: the preset says so rather than taking label 1 for it.
    ct, labels = tmp_path / "ct.nii.gz", tmp_path / "kits.nii.gz"
    image = nib.load(str(EXAMPLE_CT))
    nib.save(image, str(ct))
    nib.save(nib.Nifti1Image((_load(EXAMPLE_LABELS) == 1).astype(np.uint8), image.affine), str(labels))
    code = main(["generate", str(ct), "--labels", str(labels), "--organ", "spleen", "--label-preset", "kits",
                 "--quiet", "--out", str(tmp_path / "out")])
    assert code == 1
    assert "label preset 'kits' has no spleen; give --organ-label K" in capsys.readouterr().err


def test_ircadb_patient_1_spleen_is_a_host(tmp_path):
    folder = real_path("3dircadb1", "3Dircadb1.1")
    mask_path = folder / "masks" / "spleen.nii.gz"
    if not mask_path.exists():
        pytest.skip("3D-IRCADb patient 1 has no masks/spleen.nii.gz in ../shared/data/real")
    image = nib.load(str(folder / "ct.nii.gz"))
    ct = np.asarray(image.dataobj, dtype=np.float32)
    spacing = tuple(float(z) for z in image.header.get_zooms()[:3])
    spleen = _load(mask_path) > 0
    context = PlacementContext(spleen, spacing, "spleen", ct_hu=ct)
    for method in ("rules", "ca"):
        spec = tumorsyn.sample_spec(spleen, spacing, organ="spleen", method=method, size_mm=(8.0, 14.0), ct_hu=ct,
                                    rng=1, context=context)
        _, tumour = tumorsyn.synthesize(ct, spleen, spacing, spec)
        tumour = tumour.astype(bool)
        assert tumour.any() and spleen[tumour].all()
        assert 6.0 <= _equivalent_diameter(tumour, spacing) <= 16.0
