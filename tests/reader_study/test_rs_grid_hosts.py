"""Build: no resolution tell (match or harmonise), host lesions never in view, practice cases."""
from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from rs_helpers import SMALL, write_case

from reader_study.build import build_study
from reader_study.grid import harmonised_block, spacing_compatible
from reader_study.hosts import clear_centre_mm
from reader_study.render import RenderSettings
from tests.conftest import make_phantom
from tumorsyn.cli.main import main
from tumorsyn.errors import ConfigError, InputError


def _manifest(folder: Path, names, extra=None) -> Path:
    lines = [json.dumps({"output_id": n, "organ": "liver", "outputs": {"ct": f"{n}_ct.nii.gz",
                                                                      "tumor": f"{n}_tumor.nii.gz"},
                         **((extra or {}).get(n, {}))}) for n in names]
    (folder / "manifest.jsonl").write_text("\n".join(lines) + "\n")
    return folder


@pytest.fixture(scope="module")
def coarse(tmp_path_factory):
    """Synthetic cases from 3 mm scans (the bundled example's resolution); the real ones are 1 x 1 x 1.5 mm."""
    folder = tmp_path_factory.mktemp("coarse") / "synthetic"
    names = []
    for i in range(4):
        write_case(folder, f"c{i:02d}", diameter_mm=(8.0, 14.0)[i % 2] + 1.0, seed=300 + i, shape=(22, 22, 14),
                   spacing=(3.0, 3.0, 3.0))
        names.append(f"c{i:02d}")
    return _manifest(folder, names)


def test_spacing_compatible_tolerances():
    from types import SimpleNamespace as S

    fine, p7, coarse = S(pixel_mm=0.57, slice_mm=1.6), S(pixel_mm=0.78, slice_mm=1.6), S(pixel_mm=3.0, slice_mm=3.0)
    assert spacing_compatible(fine, p7)  # 0.78 / 0.57 = 1.37 <= 1.4
    assert not spacing_compatible(fine, p7, pixel_tolerance=0.25)
    assert not spacing_compatible(p7, coarse)
    assert spacing_compatible(S(pixel_mm=1, slice_mm=1.0), S(pixel_mm=1, slice_mm=1.5))  # 1.5 <= 1 * 1.5
    assert not spacing_compatible(S(pixel_mm=1, slice_mm=1.0), S(pixel_mm=1, slice_mm=1.6))


def test_resolution_mismatch_is_refused_with_the_figures(sources, coarse, tmp_path, capsys):
    real, _ = sources
    with pytest.raises(InputError) as info:
        build_study(real, coarse, tmp_path / "refused", seed=1, settings=SMALL)
    message = str(info.value)
    assert message == ("real cases have 1 mm pixels and 1.5 mm slices, synthetic 3 mm pixels and 3 mm slices: no "
                       "real/synthetic pair of one organ and size bin matches within 40 % (pixel) and 50 % (slice); "
                       "pass --harmonise to resample both to the coarser grid, or widen "
                       "--pixel-tolerance/--slice-tolerance")
    assert not (tmp_path / "refused").exists()
    # Through the command line: one line, exit 1.
    code = main(["reader-study", "build", "--real", str(real), "--synthetic", str(coarse), "--out",
                 str(tmp_path / "cli"), "--fov-mm", "32", "--depth-mm", "32", "--pixel-mm", "1", "--quiet"])
    err = capsys.readouterr().err
    assert code == 1 and len(err.strip().splitlines()) == 1 and "pass --harmonise" in err
    # Wide enough tolerances pair them (3 / 1 = 3 <= 1 + 2.1; 3 / 1.5 = 2 <= 1 + 1.1).
    out = build_study(real, coarse, tmp_path / "wide", seed=1, settings=SMALL, pixel_tolerance=2.1,
                      slice_tolerance=1.1)
    grid = json.loads((out / "study.json").read_text())["grid"]
    assert grid["policy"] == "matched" and grid["pixel_mm"] == [1.0, 3.0] and grid["real"]["slice_mm"] == [1.5, 1.5]


def test_partial_mismatch_keeps_the_matching_pairs(sources, coarse, tmp_path, capsys):
    real, synthetic = sources
    out = build_study(real, [synthetic, coarse], tmp_path / "mixed", seed=1, settings=SMALL, quiet=False)
    key = json.loads((out / "key" / "answer_key.json").read_text())
    # Only the 1 x 1 x 1.5 mm synthetic cases were paired with the 1 x 1 x 1.5 mm real ones.
    assert {tuple(v["source_spacing_mm"]) for v in key["items"].values()} == {(1.0, 1.0, 1.5)}
    assert key["build"]["pairs_balance_allows"] == 4 and key["build"]["pairs_resolution_allows"] == 4
    study = json.loads((out / "study.json").read_text())
    assert study["grid"]["synthetic"] == {"cases": 4, "pixel_mm": [1.0, 1.0], "slice_mm": [1.5, 1.5]}


def test_harmonise_resamples_both_to_the_coarser_grid(sources, coarse, tmp_path):
    real, synthetic = sources
    settings = RenderSettings(fov_mm=32.0, depth_mm=32.0, pixel_mm=1.0, slice_mm=2.0, jitter_fraction=0.0)
    out = build_study(real, coarse, tmp_path / "harmonised", seed=1, settings=settings, harmonise=True)
    study = json.loads((out / "study.json").read_text())
    key = json.loads((out / "key" / "answer_key.json").read_text())
    assert study["grid"]["policy"] == "harmonised"
    assert (study["grid"]["pixel_mm"], study["grid"]["slice_mm"]) == (3.0, 3.0)
    assert study["grid"]["real"]["pixel_mm"] == [1.0, 1.0] and study["grid"]["synthetic"]["slice_mm"] == [3.0, 3.0]
    plain = build_study(real, synthetic, tmp_path / "plain", seed=1, settings=settings)
    plain_key = json.loads((plain / "key" / "answer_key.json").read_text())

    def organ_noise(folder, keyed):
        # Median HU step between neighbouring organ pixels (100 HU, noise 10) on the real cases' middle slices:
        # the fine grain of noise, which edges (few pixels) hardly move.
        steps = []
        for item_id, v in keyed["items"].items():
            if v["kind"] == "real":
                images = sorted((folder / "items" / item_id / "a").glob("axial_*.png"))
                hu = np.asarray(Image.open(images[len(images) // 2])).astype(float) - 1024
                inside = (np.abs(hu[:, 1:] - 100) < 30) & (np.abs(hu[:, :-1] - 100) < 30)
                steps.append(np.abs(np.diff(hu, axis=1))[inside])
        return float(np.median(np.concatenate(steps)))

    # 1 mm noise averaged over 3 mm voxels keeps about a fifth of its spread, and 3 mm voxels shown at 1 mm
    # pixels change little from one pixel to the next; the unharmonised real cases keep their grain.
    assert organ_noise(out, key) < 0.4 * organ_noise(plain, plain_key)


def test_harmonised_block_hand_values():
    rng = np.random.default_rng(0)
    fine = rng.normal(0, 10, size=(60, 60, 60)).astype(np.float32)
    block, spacing, origin = harmonised_block(fine, (1.0, 1.0, 1.0), (0, 0, 0), (60, 60, 60), (3.0, 3.0, 3.0))
    assert tuple(spacing) == (3.0, 3.0, 3.0) and tuple(origin) == (0, 0, 0) and block.shape == (20, 20, 20)
    # A Gaussian of sigma s (voxels) keeps 1 / (2 sqrt(pi) s)**(3/2) of white noise's spread; s = sqrt(8/12) = 0.816:
    # (1 / (2 * 1.7725 * 0.8165))**1.5 = 0.203.
    assert block.std() == pytest.approx(10 * 0.203, rel=0.15)
    # An axis already as coarse as the target is left as it is: a 3 mm scan comes back unchanged.
    coarse_scan = rng.normal(0, 10, size=(10, 10, 10)).astype(np.float32)
    same, spacing, origin = harmonised_block(coarse_scan, (3.0, 3.0, 3.0), (2, 2, 2), (10, 10, 10), (3.0, 3.0, 3.0))
    assert np.allclose(same, coarse_scan[2:, 2:, 2:], atol=1e-4) and tuple(origin) == (6.0, 6.0, 6.0)


# --- host lesions ------------------------------------------------------------------------------------------

def _hosted_case(folder: Path, name: str, *, host_offset_vox: tuple[int, int, int], seed: int) -> None:
    """A synthetic case (8 mm tumour, -40 HU, at the scan's centre) whose host has a lesion of its own (+400 HU,
    6 mm, label 2 of a decathlon label map) at ``host_offset_vox`` from it."""
    shape, spacing = (96, 96, 60), (1.0, 1.0, 1.5)
    ct, organ, _ = make_phantom(shape=shape, spacing=spacing, radii_mm=(40.0, 40.0, 40.0), seed=seed)
    idx = np.indices(shape).astype(np.float32)
    centre = np.array([48, 48, 30])

    def ball(at, diameter):
        return sum(((idx[a] - at[a]) * spacing[a]) ** 2 for a in range(3)) <= (diameter / 2) ** 2

    tumour = ball(centre, 8.0)
    host = ball(centre + np.array(host_offset_vox), 6.0)
    ct[tumour] -= 40.0
    ct[host] += 400.0
    labels = organ.astype(np.uint8)
    labels[host] = 2
    affine = np.diag([*spacing, 1.0])
    folder.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(np.rint(ct).astype(np.int16), affine), folder / f"{name}_ct.nii.gz")
    nib.save(nib.Nifti1Image(tumour.astype(np.uint8), affine), folder / f"{name}_tumor.nii.gz")
    nib.save(nib.Nifti1Image(labels, affine), folder / f"{name}_host_labels.nii.gz")


def test_host_lesions_never_in_view(sources, tmp_path):
    real, _ = sources
    folder = tmp_path / "hosted"
    _hosted_case(folder, "near", host_offset_vox=(10, 0, 0), seed=1)  # 10 mm away: no view shows one without the other
    _hosted_case(folder, "apart", host_offset_vox=(20, 0, 0), seed=2)  # 20 mm away: the view moves 4.5 mm
    _hosted_case(folder, "free", host_offset_vox=(0, 0, 20), seed=3)  # 30 mm away along Z: already clear
    names = ["near", "apart", "free"]
    extra = {n: {"label_preset": "decathlon", "input": {"labels": f"{n}_host_labels.nii.gz"}} for n in names}
    _manifest(folder, names, extra)
    settings = RenderSettings(fov_mm=32.0, depth_mm=32.0, pixel_mm=1.0, slice_mm=2.0, jitter_fraction=0.0)
    out = build_study(real, folder, tmp_path / "study", seed=1, settings=settings)
    key = json.loads((out / "key" / "answer_key.json").read_text())
    hosts = key["build"]["host_lesions"]
    # Hand count: "near" left out; "apart" re-centred (x: forbidden centres 43.5..92.5 mm, lesion at 48 mm, room 8 mm).
    assert hosts == {"synthetic_checked": 3, "synthetic_not_checked": 0, "left_out": 1, "recentred": 1}
    synthetic = {Path(v["ct"]).name: v for v in key["items"].values() if v["kind"] == "synthetic"}
    assert set(synthetic) == {"apart_ct.nii.gz", "free_ct.nii.gz"}
    assert synthetic["apart_ct.nii.gz"]["lesion_offset_from_crop_centre_mm"][0] == pytest.approx(4.5)
    # No pixel of any image shows the host lesions' +400 HU (the phantom's brightest tissue is ~150 HU).
    for png in (out / "items").rglob("*.png"):
        assert np.asarray(Image.open(png)).max() - 1024 < 300, png
    # Without the host label map the build is refused, naming it.
    (folder / "apart_host_labels.nii.gz").unlink()
    with pytest.raises(InputError, match="apart_host_labels.nii.gz is missing; it is needed to keep the host's own "
                                         r"lesions \(label 2\) out of view"):
        build_study(real, folder, tmp_path / "missing", seed=1, settings=settings)


def test_clear_centre_whole_slice_moves_along_z():
    half = np.array([np.inf, np.inf, 16.0])
    extent = np.array([100.0, 100.0, 100.0])
    lesion = np.array([50.0, 50.0, 50.0])
    # A host lesion 60 mm to the side in plane but at the same height: a whole slice shows it, so the stack moves
    # up: its centre must clear z > 52 + 5 + 16 = 73 while keeping the 8 mm lesion in: z <= 50 + 16 - 4 - 4 = 58.
    assert clear_centre_mm(lesion, lesion, 8.0, extent, half, margin_mm=4.0,
                           host_boxes=[((5.0, 5.0, 48.0), (9.0, 9.0, 52.0))]) is None
    # One 30 mm below: z > 32 + 5 + 16 = 53 is enough.
    centre = clear_centre_mm(lesion, lesion, 8.0, extent, half, margin_mm=4.0,
                             host_boxes=[((5.0, 5.0, 28.0), (9.0, 9.0, 32.0))])
    assert centre.tolist() == [50.0, 50.0, 53.0]


# --- practice -----------------------------------------------------------------------------------------------

def test_practice_cases_first_with_truth_and_out_of_the_key(tmp_path):
    from rs_helpers import make_sources

    real, synthetic = make_sources(tmp_path / "src", n_real=6, n_synthetic=6)
    out = build_study(real, synthetic, tmp_path / "study", seed=3, settings=SMALL, practice=2)
    study = json.loads((out / "study.json").read_text())
    key = json.loads((out / "key" / "answer_key.json").read_text())
    items = study["items"]
    assert [i["practice"] for i in items] == [True, True] + [False] * 10 and study["practice_items"] == 2
    assert sorted(i["truth"] for i in items[:2]) == ["real", "synthetic"]
    assert all("truth" not in i for i in items[2:])
    # The key holds the scored items only (balanced), the practice ones apart; no case is both.
    assert set(key["items"]) == {i["id"] for i in items[2:]} and set(key["practice"]) == {i["id"] for i in items[:2]}
    assert [v["kind"] for v in key["items"].values()].count("real") == 5
    for item in items[:2]:
        assert key["practice"][item["id"]]["kind"] == item["truth"]
    practice_cts = {v["ct"] for v in key["practice"].values()}
    assert not practice_cts & {v["ct"] for v in key["items"].values()}
    pairs = build_study(real, synthetic, tmp_path / "pairs", seed=3, settings=SMALL, practice=1, design="2afc")
    study = json.loads((pairs / "study.json").read_text())
    assert study["items"][0]["practice"] and study["items"][0]["truth"] in ("a", "b")
    key = json.loads((pairs / "key" / "answer_key.json").read_text())
    assert len(key["items"]) == 5 and key["practice"][study["items"][0]["id"]]["synthetic_panel"] == \
        study["items"][0]["truth"]


def test_practice_refusals(sources, tmp_path):
    real, synthetic = sources
    with pytest.raises(ConfigError, match=r"--practice must be even in the single design \(half real, half "
                                          r"synthetic\), got 3"):
        build_study(real, synthetic, tmp_path / "odd", settings=SMALL, practice=3)
    with pytest.raises(InputError, match=r"--practice 8 needs 4 real/synthetic pair\(s\) besides the scored cases, "
                                         r"but only 4 pair\(s\) can be formed in all; lower --practice"):
        build_study(real, synthetic, tmp_path / "many", settings=SMALL, practice=8)
