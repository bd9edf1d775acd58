"""A study on real scans: 3D-IRCADb patient 1's tumours against tumours generated into patient 7 and the
bundled TotalSegmentator example; then rating through the app and the analysis."""
from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
from PIL import Image
from starlette.testclient import TestClient

from tests.conftest import real_path

from reader_study.analyze import analyze_study
from reader_study.build import build_study
from reader_study.render import RenderSettings
from reader_study.app import create_app
from reader_study.store import add_reader
from tumorsyn.cli.main import main

pytestmark = [pytest.mark.real, pytest.mark.slow]


@pytest.fixture(scope="module")
def real_sources(tmp_path_factory):
    p1 = real_path("3dircadb1", "3Dircadb1.1")
    p7 = real_path("3dircadb1", "3Dircadb1.7")
    root = tmp_path_factory.mktemp("real")
    masks = sorted((p1 / "masks").glob("livertumor*.nii.gz"))
    assert len(masks) == 7
    csv = root / "real.csv"
    csv.write_text("ct,mask,organ\n" + "".join(f"{p1 / 'ct.nii.gz'},{m},liver\n" for m in masks))
    assert main(["generate", str(p7 / "ct.nii.gz"), "--labels", str(p7 / "masks" / "liver.nii.gz"), "--organ",
                 "liver", "--size-mm", "20-35", "--per-scan", "2", "--seed", "4", "--out", str(root / "p7"),
                 "--quiet"]) == 0
    assert main(["generate", "--example", "--organ", "liver", "--size-mm", "10-30", "--per-scan", "3", "--seed", "5",
                 "--out", str(root / "example"), "--quiet"]) == 0
    return csv, [root / "p7", root / "example" / "manifest.jsonl"]


def test_real_study_end_to_end(real_sources, tmp_path):
    csv, synthetic = real_sources
    digests = {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(synthetic[0].glob("*.nii.gz"))}
    settings = RenderSettings(views=("axial", "coronal"))
    study = build_study(csv, synthetic, tmp_path / "study", seed=2, settings=settings)
    key = json.loads((study / "key" / "answer_key.json").read_text())
    kinds = [v["kind"] for v in key["items"].values()]
    assert kinds.count("real") == kinds.count("synthetic") == 2  # both of patient 7's outputs
    reals = [v for v in key["items"].values() if v["kind"] == "real"]
    assert all("3Dircadb1.1" in v["ct"] and "livertumor" in v["mask"] for v in reals)
    synth_hosts = {v["ct"].rsplit("/", 2)[-2] for v in key["items"].values() if v["kind"] == "synthetic"}
    assert synth_hosts <= {"p7", "example"}
    # The 3 mm example cannot pass for a 0.57 mm scan: only patient 7's outputs (0.78 mm, 1.6 mm slices) are paired.
    assert synth_hosts == {"p7"}
    assert key["build"]["pairs_resolution_allows"] < key["build"]["pairs_balance_allows"]
    # The 0.57 mm and 0.78 mm scans come out on one 0.5 mm display grid.
    study_json = json.loads((study / "study.json").read_text())
    assert study_json["grid"]["policy"] == "matched"
    assert study_json["grid"]["real"]["pixel_mm"] == pytest.approx([0.57, 0.57], abs=0.01)
    assert study_json["grid"]["synthetic"]["pixel_mm"] == pytest.approx([0.78, 0.78], abs=0.01)
    n = settings.n_pixels
    for item in study_json["items"]:
        folder = study / "items" / item["id"] / "a"
        axial = [np.asarray(Image.open(p)) for p in sorted(folder.glob("axial_*.png"))]
        assert len(axial) == settings.n_slices and {a.shape for a in axial} == {(n, n)}
        middle = axial[len(axial) // 2].astype(float) - 1024
        # Mostly tissue, not air: the crop sits on the liver.
        assert np.mean(middle < -500) < 0.5
        assert Image.open(folder / "coronal_000.png").size == (n, settings.n_rows_reformat)
    # The study reveals nothing, the inputs are untouched.
    assert "3Dircadb" not in (study / "study.json").read_text()
    assert {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in digests} == digests

    # Rate through the app: a reader who calls every case "synthetic" with confidence 3.
    token = add_reader(study, "r1")
    client = TestClient(create_app(study))
    assert client.post("/api/login", json={"token": token}).status_code == 200
    while not (state := client.get("/api/next").json())["done"]:
        item = state["item"]["item_id"]
        assert client.get(f"/api/image/{item}/a/coronal/0").status_code == 200
        assert client.post("/api/ratings", json={"item_id": item, "answer": "synthetic", "confidence": 3,
                                                 "seconds": 1.5}).status_code == 201
    report = analyze_study(study, tmp_path / "report", export_csv=True)
    reader = report["per_reader"]["r1"]
    assert reader["sensitivity"]["value"] == 1.0 and reader["specificity"]["value"] == 0.0
    assert reader["accuracy"]["value"] == 0.5 and reader["auc"] == 0.5
    assert (tmp_path / "report" / "roc.png").exists()


def test_real_resolution_tell_refused_then_harmonised(real_sources, tmp_path):
    """Patient 1's 0.57 mm tumours against tumours in the 3 mm bundled example: refused, or harmonised to 3 mm."""
    csv, synthetic = real_sources
    from tumorsyn.errors import InputError

    settings = RenderSettings(depth_mm=48.0)
    with pytest.raises(InputError, match=r"^real cases have 0\.57 mm pixels and 1\.6 mm slices, synthetic 3(\.\d)? mm "
                                         r"pixels and 3(\.\d)? mm slices: no real/synthetic pair .* pass --harmonise"):
        build_study(csv, synthetic[1], tmp_path / "refused", seed=2, settings=settings)
    study = build_study(csv, synthetic[1], tmp_path / "harmonised", seed=2, settings=settings, harmonise=True)
    grid = json.loads((study / "study.json").read_text())["grid"]
    assert grid["policy"] == "harmonised" and grid["pixel_mm"] >= 2.9 and grid["slice_mm"] >= 2.9
    assert grid["real"]["pixel_mm"][0] == pytest.approx(0.57, abs=0.01)


def test_real_host_lesions_kept_out_of_view(tmp_path):
    """Tumours written into LiTS-117 (70 real tumours of its own, label 2): every case whose view would show one of
    them is left out, and the count says so (re-centring is tested on phantoms)."""
    lits = real_path("lits117")
    p1 = real_path("3dircadb1", "3Dircadb1.1")
    assert main(["generate", str(lits / "ct.nii.gz"), "--labels", str(lits / "label.nii.gz"), "--label-preset",
                 "decathlon", "--organ", "liver", "--size-mm", "12-18", "--per-scan", "4", "--seed", "1",
                 "--out", str(tmp_path / "lits"), "--quiet"]) == 0
    csv = tmp_path / "real.csv"
    csv.write_text("ct,mask\n" + "".join(f"{p1 / 'ct.nii.gz'},{m}\n" for m in sorted((p1 / "masks").glob("livertumor*"))))
    from tumorsyn.errors import InputError

    # LiTS-117 is a 174 mm crop holding 70 tumours: no view of any synthetic case is clear of them (50 mm views
    # neither), so every one is left out and the build says so.
    for fov, depth in ((150.0, 64.0), (50.0, 40.0)):
        with pytest.raises(InputError, match="4 synthetic left out as their view would show a host lesion"):
            build_study(csv, tmp_path / "lits", tmp_path / f"none{fov:g}", seed=1, harmonise=True,
                        settings=RenderSettings(fov_mm=fov, depth_mm=depth))
