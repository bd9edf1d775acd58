"""``--label-preset auto`` decides once per dataset, refuses to guess, and no tumour lands on a lesion.

KiTS label maps (1 kidney, 2 tumour, 3 cyst) used to be read as TotalSegmentator maps (2 and 3
"kidney"), so every synthetic tumour was written inside the real tumour or cyst.
"""
from __future__ import annotations

import numpy as np
import pytest

from generate_helpers import phantom_arrays, read_manifest, save_nifti, tree_digest
from tumorsyn.errors import ConfigError
from tumorsyn.io.labels import AUTO_PRESETS, EXPLICIT_LABELS, choose_label_preset, fitting_presets


@pytest.mark.parametrize("values, organ, expected", [
    ({1}, "liver", "binary"),                     # a binary mask (binary and decathlon agree: 1 is liver)
    ({255}, "liver", "binary"),                   # a 0/255 mask
    ({1, 2}, "liver", "decathlon"),               # MSD liver: 1 liver, 2 tumour
    ({1, 2}, "pancreas", "decathlon"),
    ({2, 3}, "kidney", "totalsegmentator"),       # TotalSegmentator kidneys only (kits needs its kidney label 1)
    (set(range(1, 40)), "kidney", "totalsegmentator"),
    ({5}, "liver", "binary"),                     # one structure: every non-zero voxel is the liver either way
    (set(), "liver", "binary"),                   # nothing labelled: each case fails with its empty-organ error
])
def test_auto_picks_the_one_meaning(values, organ, expected):
    assert choose_label_preset(values, organ) == expected


@pytest.mark.parametrize("values, organ, presets", [
    ({1, 2, 3}, "kidney", ["kits", "totalsegmentator"]),               # KiTS21/23 vs spleen + two kidneys
    ({1, 3}, "kidney", ["kits", "totalsegmentator"]),                  # KiTS cases with cysts only
    ({1, 2}, "kidney", ["decathlon", "kits", "totalsegmentator"]),     # KiTS19 vs spleen + right kidney
])
def test_auto_refuses_presets_that_mean_different_things(values, organ, presets):
    assert fitting_presets(values, organ) == presets
    with pytest.raises(ConfigError) as info:
        choose_label_preset(values, organ, where="4 label maps", path="/data/labelsTr")
    text = str(info.value)
    assert text.startswith("/data/labelsTr: label values ") and "\n" not in text
    assert "fit label presets that mean different things" in text
    assert all(f"--label-preset {p}" in text for p in presets)


def test_auto_refuses_when_no_preset_fits():
    with pytest.raises(ConfigError, match=r"label values 1-3 in the label map fit no label preset for the liver"):
        choose_label_preset({1, 2, 3}, "liver", where="the label map")
    with pytest.raises(ConfigError, match="fit no label preset"):
        choose_label_preset({3, 200}, "kidney")


def test_explicit_labels_need_no_preset():
    assert choose_label_preset({1, 2, 3}, "kidney", organ_labels=(1,), lesion_labels=(2, 3)) == EXPLICIT_LABELS
    # --organ-label alone leaves the lesions to the preset: KiTS and TotalSegmentator still disagree on 2, 3.
    with pytest.raises(ConfigError, match="mean different things"):
        choose_label_preset({1, 2, 3}, "kidney", organ_labels=(1,))
    assert set(AUTO_PRESETS) == {"binary", "decathlon", "kits", "totalsegmentator"}


def _kits_labels(seed: int, *, tumour: bool = True, cyst: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """A phantom CT and a KiTS-style map: 1 kidney (the phantom organ), 2 tumour, 3 cyst, inside it."""
    ct, organ = phantom_arrays(seed)
    labels = organ.copy()
    centre = np.argwhere(organ).mean(axis=0).round().astype(int)
    if tumour:
        labels[centre[0] - 4:centre[0] + 4, centre[1] - 4:centre[1] + 4, centre[2] - 2:centre[2] + 2] = 2
    if cyst:
        labels[centre[0] + 6:centre[0] + 10, centre[1] - 2:centre[1] + 2, centre[2] - 1:centre[2] + 2] = 3
    return ct, labels


def _dataset(root, maps):
    for case_id, (ct, labels) in maps.items():
        save_nifti(root / "imagesTr" / f"{case_id}_0000.nii.gz", ct)
        save_nifti(root / "labelsTr" / f"{case_id}.nii.gz", labels)
    return root


def test_kits_dataset_is_refused_under_auto(cli, tmp_path):
    data = _dataset(tmp_path / "kits", {"k0": _kits_labels(0), "k1": _kits_labels(1, cyst=False)})
    out = tmp_path / "out"
    code, _, err = cli("generate", "--dataset", data, "--organ", "kidney", "--out", out)
    lines = err.strip().splitlines()
    assert code == 1 and len(lines) == 1 and tree_digest(out) == {}
    assert lines[0].startswith(f"tumorsyn: error: {data / 'labelsTr'}: label values 1-3 in 2 label maps fit label "
                               "presets that mean different things")
    assert "--label-preset kits or --label-preset totalsegmentator" in lines[0]


def test_kits_preset_keeps_tumours_off_tumour_and_cyst(cli, tmp_path):
    data = _dataset(tmp_path / "kits", {"k0": _kits_labels(0), "k1": _kits_labels(1, cyst=False)})
    out = tmp_path / "out"
    code, _, err = cli("generate", "--dataset", data, "--organ", "kidney", "--label-preset", "kits", "--count", "2",
                       "--out", out)
    assert code == 0, err
    from tumorsyn.io.scan import read_image

    for record in read_manifest(out / "manifest.jsonl"):
        assert record["label_preset"] == "kits"
        tumour = read_image(out / record["outputs"]["tumor"]).raw > 0
        labels = read_image(data / "labelsTr" / f"{record['case_id']}.nii.gz").raw
        # On the kidney (1) or, for a tumour bulging out of it, unlabelled fat (0); never tumour (2) or cyst (3).
        assert tumour.any() and set(np.unique(labels[tumour])) <= {0, 1} and (labels[tumour] == 1).any()


def test_one_decision_for_the_whole_dataset(cli, tmp_path):
    """Cases with and without a lesion get the same preset (the old per-case rule gave {0,1} 'binary')."""
    ct0, liver0 = phantom_arrays(0)
    ct1, liver1 = phantom_arrays(1)
    lesion = liver1.copy()
    centre = np.argwhere(liver1).mean(axis=0).round().astype(int)
    lesion[centre[0] - 3:centre[0] + 3, centre[1] - 3:centre[1] + 3, centre[2] - 2:centre[2] + 2] = 2
    data = _dataset(tmp_path / "msd", {"healthy": (ct0, liver0), "sick": (ct1, lesion)})
    out = tmp_path / "out"
    code, _, err = cli("generate", "--dataset", data, "--organ", "liver", "--out", out)
    assert code == 0, err
    assert {r["label_preset"] for r in read_manifest(out / "manifest.jsonl")} == {"decathlon"}
    assert "label preset auto -> decathlon (label values 1, 2 in 2 label maps)" in err
    code, _, err = cli("generate", "--dataset", data, "--organ", "liver", "--out", tmp_path / "quiet", "--quiet")
    assert code == 0 and "label preset" not in err


def test_replayed_tumour_on_a_lesion_is_never_written(cli, tmp_path):
    """A spec replayed onto labels that mark its place as a lesion: refused after placement, nothing written."""
    ct, liver = phantom_arrays(0)
    ct_path = save_nifti(tmp_path / "in" / "ct.nii.gz", ct)
    mask_path = save_nifti(tmp_path / "in" / "liver.nii.gz", liver)
    first = tmp_path / "first"
    code, _, err = cli("generate", ct_path, "--labels", mask_path, "--organ", "liver", "--out", first)
    assert code == 0, err
    from tumorsyn.io.scan import read_image

    tumour = read_image(first / "in_tumor.nii.gz").raw > 0  # in/ct.nii.gz: the case is named after its folder
    lesion_map = liver.copy()
    lesion_map[tumour] = 2  # the same place is now an existing tumour (decathlon: 2)
    lesion_path = save_nifti(tmp_path / "in" / "lesion.nii.gz", lesion_map)
    again = tmp_path / "again"
    code, _, err = cli("generate", ct_path, "--labels", lesion_path, "--from-spec", first / "manifest.jsonl",
                       "--spec-id", "in", "--out", again)
    lines = err.strip().splitlines()
    assert code == 1 and len(lines) == 1 and tree_digest(again) == {}
    assert lines[0].startswith(f"tumorsyn: error: {lesion_path}: output in: a synthetic tumour would cover "
                               f"{int(tumour.sum())} voxel(s) labelled 2, which label preset decathlon")


def test_dataset_failures_name_the_file_and_the_case(cli, tmp_path):
    """A case-level failure deep inside placement (implausible organ HU) names the CT and the case id first."""
    good_ct, good_liver = phantom_arrays(0)
    bad_ct, bad_liver = phantom_arrays(1)
    bad_ct[bad_liver > 0] = -700  # fat-like "liver": not a plausible liver HU
    data = _dataset(tmp_path / "ds", {"good": (good_ct, good_liver), "bad": (bad_ct, bad_liver)})
    out = tmp_path / "out"
    code, _, err = cli("generate", "--dataset", data, "--organ", "liver", "--out", out)
    failed = [line for line in err.splitlines() if line.startswith("tumorsyn: failed: ")]
    assert code == 1 and len(failed) == 1
    assert failed[0].startswith(f"tumorsyn: failed: {data / 'imagesTr' / 'bad_0000.nii.gz'}: case bad: ")
    assert "HU" in failed[0]  # the cause itself (wording owned by placement)
    assert [r["case_id"] for r in read_manifest(out / "manifest.jsonl")] == ["good"]


def test_resume_refuses_to_mix_presets(cli, tmp_path):
    """An auto run resumed after its label maps changed meaning must not mix presets in one folder."""
    ct0, liver0 = phantom_arrays(0)
    data = _dataset(tmp_path / "ds", {"a": (ct0, liver0), "b": phantom_arrays(1)})
    out = tmp_path / "out"
    assert cli("generate", "--dataset", data, "--organ", "liver", "--out", out)[0] == 0
    records = read_manifest(out / "manifest.jsonl")
    assert {r["label_preset"] for r in records} == {"binary"}
    # Case b is made again with a lesion: the dataset now reads as decathlon.
    (out / records[1]["outputs"]["ct"]).unlink()
    lesion = liver0.copy()
    lesion[20:24, 20:24, 14:18] = 2
    save_nifti(data / "labelsTr" / "a.nii.gz", lesion)
    code, _, err = cli("generate", "--dataset", data, "--organ", "liver", "--out", out)
    assert code == 1 and "was made with label preset binary, but the label maps now read as decathlon" in err


def test_label_map_keeps_the_scans_own_lesions_as_tumour(cli, tmp_path):
    """--label-map: a decathlon lesion (2) of the input is tumour (2) in the output, never organ (1)."""
    ct, liver = phantom_arrays(0)
    labels = liver.copy()
    idx = np.argwhere(liver > 0)
    corner = idx[np.argmin(idx.sum(axis=1))] + 2  # a small lesion at the organ's edge, away from the centre
    labels[tuple(slice(c, c + 3) for c in corner)] = 2
    labels[liver == 0] = 0
    ct_path = save_nifti(tmp_path / "in" / "p1.nii.gz", ct)
    label_path = save_nifti(tmp_path / "in" / "p1_seg.nii.gz", labels)
    out = tmp_path / "out"
    code, _, err = cli("generate", ct_path, "--labels", label_path, "--organ", "liver", "--label-preset", "decathlon",
                       "--label-map", "--out", out)
    assert code == 0, err
    from tumorsyn.io.scan import read_image

    written = read_image(out / "p1_label.nii.gz").raw
    tumour = read_image(out / "p1_tumor.nii.gz").raw > 0
    assert np.all(written[labels == 2] == 2)
    assert np.array_equal(written == 2, tumour | (labels == 2))
