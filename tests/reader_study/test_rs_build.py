"""Building a study on phantoms: blinding, balance, determinism, atomic output, bad input."""
from __future__ import annotations

import hashlib
import json
import struct
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from rs_helpers import write_case

from reader_study.build import build_study
from reader_study.render import RenderSettings
from tumorsyn.cli.main import main
from tumorsyn.errors import GridMismatchError, InputError, TumorsynError


def _digests(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _png_chunks(data: bytes) -> list[str]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    chunks, pos = [], 8
    while pos < len(data):
        length = struct.unpack(">I", data[pos:pos + 4])[0]
        chunks.append(data[pos + 4:pos + 8].decode("ascii"))
        pos += 12 + length
    return chunks


def test_single_study_layout_balance_and_blinding(sources, small_settings, tmp_path):
    real, synthetic = sources
    out = build_study(real, synthetic, tmp_path / "study", seed=1, settings=small_settings)
    study = json.loads((out / "study.json").read_text())
    key = json.loads((out / "key" / "answer_key.json").read_text())
    assert len(study["items"]) == 8 and set(key["items"]) == {item["id"] for item in study["items"]}
    kinds = [key["items"][i["id"]]["kind"] for i in study["items"]]
    assert kinds.count("real") == kinds.count("synthetic") == 4
    # Balanced within every organ x size bin.
    for stratum in {(v["organ"], v["size_bin"]) for v in key["items"].values()}:
        group = [v["kind"] for v in key["items"].values() if (v["organ"], v["size_bin"]) == stratum]
        assert group.count("real") == group.count("synthetic")
    # What readers' side holds says nothing about the answer or the sources.
    # (Only "grid" names the classes: how their source resolutions were matched, for the two classes as wholes.)
    public = json.dumps({k: v for k, v in study.items() if k != "grid"})
    for word in ("real", "synthetic", str(real), str(synthetic), "_ct", "_tumor", "diameter", "organ"):
        assert word not in public
    assert str(real) not in json.dumps(study["grid"]) and "_ct" not in json.dumps(study["grid"])
    for item in study["items"]:
        assert len(item["id"]) == 16 and int(item["id"], 16) >= 0
    # Same image grid for every case; PNGs carry no metadata chunks.
    pngs = sorted((out / "items").rglob("*.png"))
    assert len(pngs) == 8 * small_settings.n_slices
    from PIL import Image

    sizes = {Image.open(p).size for p in pngs}
    assert sizes == {(small_settings.n_pixels, small_settings.n_pixels)}
    for png in pngs[:20]:
        assert _png_chunks(png.read_bytes()) == ["IHDR", "IDAT", "IEND"]
        assert "tumor" not in png.name and "ct" not in png.name
    # The lesion is not always at the crop centre (seeded jitter) and stays inside the crop.
    offsets = np.array([v["lesion_offset_from_crop_centre_mm"] for v in key["items"].values()])
    assert np.abs(offsets[:, :2]).max() > 1.0
    assert np.abs(offsets[:, :2]).max() <= small_settings.fov_mm / 2


def test_same_seed_same_bytes_other_seed_other_study(sources, small_settings, tmp_path):
    real, synthetic = sources
    before = _digests(real.parent)
    a = build_study(real, synthetic, tmp_path / "a", seed=7, settings=small_settings)
    b = build_study(real, synthetic, tmp_path / "b", seed=7, settings=small_settings)
    c = build_study(real, synthetic, tmp_path / "c", seed=8, settings=small_settings)
    assert _digests(a) == _digests(b)
    # Worker processes change nothing in the output.
    d = build_study(real, synthetic, tmp_path / "d", seed=7, settings=small_settings, workers=2)
    assert _digests(a) == _digests(d)
    assert (a / "study.json").read_bytes() != (c / "study.json").read_bytes()
    assert _digests(real.parent) == before  # inputs are never modified


def test_pngs_hold_hu(sources, tmp_path):
    """The PNGs hold HU + 1024 (16 bit; the page windows them): check against the phantom's air and tissue."""
    real, synthetic = sources
    settings = RenderSettings(fov_mm=32.0, depth_mm=32.0, pixel_mm=1.0, slice_mm=2.0, jitter_fraction=0.0)
    out = build_study(real, synthetic, tmp_path / "s", seed=2, settings=settings)
    from PIL import Image

    values = np.concatenate([np.asarray(Image.open(p)).ravel() for p in sorted((out / "items").rglob("*.png"))])
    values = values.astype(float) - 1024
    assert values.min() < -950  # air (-1000 HU, noise 10)
    # Organ parenchyma is 100 HU (noise 10); the carved lesions are 60 HU.
    assert abs(np.median(values[values > 80]) - 100) < 12


def test_2afc_pairs_one_real_one_synthetic(sources, small_settings, tmp_path):
    real, synthetic = sources
    out = build_study(real, synthetic, tmp_path / "pairs", design="2afc", seed=3, settings=small_settings)
    study = json.loads((out / "study.json").read_text())
    key = json.loads((out / "key" / "answer_key.json").read_text())
    assert len(study["items"]) == 4
    sides = []
    for item in study["items"]:
        assert item["panels"] == ["a", "b"]
        truth = key["items"][item["id"]]
        kinds = {p: truth["panels"][p]["kind"] for p in "ab"}
        assert sorted(kinds.values()) == ["real", "synthetic"]
        assert kinds[truth["synthetic_panel"]] == "synthetic"
        assert truth["panels"]["a"]["size_bin"] == truth["panels"]["b"]["size_bin"]
        sides.append(truth["synthetic_panel"])
        for panel in "ab":
            assert (out / "items" / item["id"] / panel / "axial_000.png").exists()


def test_per_organ_limits_pairs(sources, small_settings, tmp_path):
    real, synthetic = sources
    out = build_study(real, synthetic, tmp_path / "limited", per_organ=3, seed=4, settings=small_settings)
    key = json.loads((out / "key" / "answer_key.json").read_text())
    kinds = [v["kind"] for v in key["items"].values()]
    assert kinds.count("real") == kinds.count("synthetic") == 3
    # Round-robin over the two size bins: both appear.
    assert len({v["size_bin"] for v in key["items"].values()}) == 2


def test_reformatted_views(sources, tmp_path):
    real, synthetic = sources
    settings = RenderSettings(fov_mm=32.0, depth_mm=32.0, pixel_mm=1.0, slice_mm=2.0, views=("axial", "coronal", "sagittal"))
    out = build_study(real, synthetic, tmp_path / "views", seed=5, settings=settings)
    study = json.loads((out / "study.json").read_text())
    assert study["items"][0]["views"] == {"axial": settings.n_slices, "coronal": 1, "sagittal": 1}
    item = study["items"][0]["id"]
    from PIL import Image

    assert Image.open(out / "items" / item / "a" / "coronal_000.png").size == (32, 32)


def test_cli_build_and_help(sources, tmp_path, capsys):
    real, synthetic = sources
    code = main(["reader-study", "build", "--real", str(real), "--synthetic", str(synthetic / "manifest.jsonl"),
                 "--out", str(tmp_path / "cli"), "--fov-mm", "32", "--depth-mm", "32", "--pixel-mm", "1",
                 "--seed", "9", "--quiet"])
    assert code == 0 and (tmp_path / "cli" / "key" / "answer_key.json").exists()
    with pytest.raises(SystemExit) as exit_info:
        main(["reader-study", "build", "--help"])
    assert exit_info.value.code == 0
    assert "--per-organ" in capsys.readouterr().out
    # A second build into the same folder is refused with one line naming it, exit 1.
    code = main(["reader-study", "build", "--real", str(real), "--synthetic", str(synthetic), "--out",
                 str(tmp_path / "cli"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 1 and "cli" in err and "not empty" in err and len(err.strip().splitlines()) == 1


def test_bad_inputs_leave_nothing(sources, small_settings, tmp_path):
    real, synthetic = sources
    out = tmp_path / "bad"
    # A CSV without the needed columns.
    bad_csv = tmp_path / "cases.csv"
    bad_csv.write_text("image,label\na.nii.gz,b.nii.gz\n")
    with pytest.raises(InputError, match=r"cases\.csv.*lacks the column 'ct' and 'mask'"):
        build_study(bad_csv, synthetic, out, settings=small_settings)
    no_mask = tmp_path / "no_mask.csv"
    no_mask.write_text("ct,label\na.nii.gz,1\n")
    with pytest.raises(InputError, match=r"lacks the column 'mask';"):
        build_study(no_mask, synthetic, out, settings=small_settings)
    # A synthetic folder without manifest.
    with pytest.raises(InputError, match="no manifest.jsonl"):
        build_study(real, real, out, settings=small_settings)
    with pytest.raises(TumorsynError, match="--seed must be"):
        build_study(real, synthetic, out, seed=-1, settings=small_settings)
    # A mask on another grid than its CT: found while rendering, after work has started.
    odd = tmp_path / "odd"
    ct, mask = write_case(odd, "x00", diameter_mm=8.0, seed=5)
    img = nib.load(mask)
    nib.save(nib.Nifti1Image(np.asarray(img.dataobj)[:, :, :-2], img.affine), mask)
    with pytest.raises(GridMismatchError, match="x00_tumor"):
        build_study(odd, synthetic, out, settings=small_settings)
    # An empty mask.
    empty = tmp_path / "empty"
    ct, mask = write_case(empty, "e00", diameter_mm=8.0, seed=6)
    nib.save(nib.Nifti1Image(np.zeros(img.shape, np.uint8), img.affine), mask)
    with pytest.raises(InputError, match="holds no lesion"):
        build_study(empty, synthetic, out, settings=small_settings)
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tumorsyn-tmp")]


def test_no_matching_stratum_is_an_error(sources, small_settings, tmp_path):
    real, synthetic = sources
    big = tmp_path / "big"
    write_case(big, "b00", diameter_mm=24.0, seed=9)  # only a >20 mm real lesion; synthetic ones are smaller
    with pytest.raises(TumorsynError, match="no organ and size bin"):
        build_study(big, synthetic, tmp_path / "none", settings=RenderSettings(fov_mm=48, depth_mm=40, pixel_mm=1.0))
    assert not (tmp_path / "none").exists()


def test_crop_centre_jitter_bounds_and_scan_edges():
    from reader_study.render import crop_centre_mm

    settings = RenderSettings(fov_mm=64.0, depth_mm=64.0, jitter_fraction=0.25, margin_mm=4.0)
    rng = np.random.default_rng(0)
    extent = np.array([300.0, 300.0, 200.0])
    lesion = np.array([150.0, 150.0, 100.0])
    offsets = np.array([crop_centre_mm(lesion, 10.0, extent, settings, rng) - lesion for _ in range(400)])
    # Uniform jitter up to 16 mm (a quarter of 64 mm) on every axis, both directions.
    assert np.abs(offsets).max() <= 16.0 and np.abs(offsets).max() > 15.0
    assert (offsets > 8).any() and (offsets < -8).any()
    # A 50 mm lesion has room for 32 - 25 - 4 = 3 mm of jitter only.
    big = np.array([crop_centre_mm(lesion, 50.0, extent, settings, rng) - lesion for _ in range(100)])
    assert np.abs(big).max() <= 3.0
    # Near the scan's edge the crop is shifted inside the scan (no air padding), the lesion still in view.
    edge = np.array([10.0, 150.0, 100.0])
    centre = crop_centre_mm(edge, 10.0, extent, settings, rng)
    assert centre[0] == 32.0 and abs(centre[0] - edge[0]) <= 32.0 - 5.0


def test_repeated_listing_counts_once_and_one_class_per_case(sources, small_settings, tmp_path):
    real, synthetic = sources
    rows = "".join(f"{ct},{ct.with_name(ct.name.replace('_ct', '_tumor'))}\n" for ct in sorted(real.glob("*_ct.nii.gz")))
    twice = tmp_path / "twice.csv"
    twice.write_text("ct,mask\n" + rows + rows)
    once = build_study(real, synthetic, tmp_path / "once", seed=1, settings=small_settings)
    again = build_study(twice, synthetic, tmp_path / "again", seed=1, settings=small_settings)
    assert (once / "study.json").read_bytes() == (again / "study.json").read_bytes()
    # The synthetic cases listed as real too.
    both = tmp_path / "both.csv"
    both.write_text("ct,mask\n" + "".join(f"{ct},{ct.with_name(ct.name.replace('_ct', '_tumor'))}\n"
                                          for ct in sorted(synthetic.glob("*_ct.nii.gz"))))
    with pytest.raises(InputError, match="both real .* and synthetic"):
        build_study(both, synthetic, tmp_path / "both", settings=small_settings)


@pytest.mark.parametrize("flips", [(1, 1, 1), (-1, -1, 1), (1, -1, -1)])
def test_partial_read_equals_whole_read(flips, small_settings, tmp_path, monkeypatch):
    """Reading only the slices a crop needs gives the same pixels as reading the whole scan, in any orientation."""
    import reader_study.volume as volume

    real, synth = tmp_path / "real", tmp_path / "synth"
    for folder, seed in ((real, 1), (synth, 2)):
        ct, mask = write_case(folder, "c00", diameter_mm=8.0, seed=seed, shape=(48, 48, 60))
        for path in (ct, mask):
            img = nib.load(path)
            data = np.asarray(img.dataobj)
            affine = img.affine.copy()
            for axis, sign in enumerate(flips):
                if sign < 0:  # store the axis reversed, with an affine that says so: same anatomy
                    data = np.flip(data, axis)
                    affine[:3, 3] += affine[:3, axis] * (data.shape[axis] - 1)
                    affine[:3, axis] *= -1
            nib.save(nib.Nifti1Image(np.ascontiguousarray(data), affine), path)
    (synth / "manifest.jsonl").write_text(json.dumps({"output_id": "c00", "organ": "liver", "outputs": {
        "ct": "c00_ct.nii.gz", "tumor": "c00_tumor.nii.gz"}}) + "\n")
    settings = RenderSettings(fov_mm=32.0, depth_mm=24.0, pixel_mm=1.0, slice_mm=2.0, views=("axial", "coronal"))
    partial = build_study(real, synth, tmp_path / "partial", seed=3, settings=settings)
    reads = []
    original = volume.CTVolume.load
    monkeypatch.setattr(volume.CTVolume, "load", lambda self, lo, hi: (reads.append((self._img is not None,
                                                                                       tuple(hi - lo))),
                                                                          original(self, lo, hi))[1])
    again = build_study(real, synth, tmp_path / "again", seed=3, settings=settings)
    assert reads and all(is_partial for is_partial, _ in reads)
    assert all(size[2] < 60 for _, size in reads)  # only part of the 60 slices was needed
    monkeypatch.setattr(volume.CTVolume, "__init__", _whole_read_init)
    whole = build_study(real, synth, tmp_path / "whole", seed=3, settings=settings)
    assert _digests(partial) == _digests(again) == _digests(whole)


def _whole_read_init(self, path):
    from tumorsyn.io.scan import read_image

    self.path, self._img, self.scan = Path(path), None, read_image(path)
    self._block, self._origin, self._scale = None, np.zeros(3, dtype=int), (1.0, 0.0)


def test_csv_accepts_tumor_for_the_mask_column(tmp_path):
    from reader_study.cases import read_real_sources

    ct, mask = write_case(tmp_path, "r00", diameter_mm=8.0, seed=1)
    table = tmp_path / "real.csv"
    table.write_text(f"ct,tumor\n{ct.name},{mask.name}\n")
    (source,) = read_real_sources(table)
    assert source.mask == mask.resolve() and source.kind == "real"
