"""Bad input: exit 1, one line naming the file and the problem, nothing left behind, inputs untouched."""
from __future__ import annotations

import errno
import os

import numpy as np
import pytest

from generate_helpers import (EXAMPLE_CT, EXAMPLE_LABELS, TMP_PREFIX, phantom_affine, phantom_arrays, save_nifti,
                              sha256, temp_files, tree_digest, write_phantom)


def _phantom(tmp_path, **arrays):
    """Phantom CT + labels in tmp_path/in, with arrays replaced by keyword (ct=..., labels=...)."""
    ct, labels = phantom_arrays(0)
    ct = arrays.get("ct", ct)
    labels = arrays.get("labels", labels)
    folder = tmp_path / "in"
    ct_path = save_nifti(folder / "scan.nii.gz", ct, arrays.get("ct_affine"))
    labels_path = save_nifti(folder / "scan_seg.nii.gz", labels, arrays.get("labels_affine"))
    return ct_path, labels_path


def _nan_ct(value):
    ct, _ = phantom_arrays(0)
    ct = ct.astype(np.float32)
    ct[24, 24, 16] = value
    return ct


def case_missing_ct(tmp_path):
    ct, labels = _phantom(tmp_path)
    missing = tmp_path / "in" / "nope.nii.gz"
    return [missing, "--labels", labels, "--organ", "liver"], missing, "not found"


def case_missing_labels(tmp_path):
    ct, labels = _phantom(tmp_path)
    missing = tmp_path / "in" / "nope_seg.nii.gz"
    return [ct, "--labels", missing, "--organ", "liver"], missing, "not found"


def case_truncated_gzip(tmp_path):
    data = EXAMPLE_CT.read_bytes()
    truncated = tmp_path / "in" / "truncated.nii.gz"
    truncated.parent.mkdir(parents=True)
    truncated.write_bytes(data[: len(data) // 2])
    return [truncated, "--labels", EXAMPLE_LABELS, "--organ", "liver"], truncated, "corrupt"


def case_text_as_nifti(tmp_path):
    _, labels = _phantom(tmp_path)
    text = tmp_path / "in" / "notes.nii.gz"
    text.write_text("patient 12: liver looks fine\n" * 20)
    return [text, "--labels", labels, "--organ", "liver"], text, "not an image"


def case_text_labels(tmp_path):
    ct, _ = _phantom(tmp_path)
    text = tmp_path / "in" / "labels.nii"
    text.write_text("not a label map\n")
    return [ct, "--labels", text, "--organ", "liver"], text, "not an image"


def case_grid_shape_differs(tmp_path):
    _, labels = phantom_arrays(0)
    ct, labels = _phantom(tmp_path, labels=labels[:, :, 2:30])
    return [ct, "--labels", labels, "--organ", "liver"], labels, "grid"


def case_grid_affine_differs(tmp_path):
    shifted = phantom_affine()
    shifted[:3, 3] += [4.5, 0.0, 5.0]
    ct, labels = _phantom(tmp_path, labels_affine=shifted)
    return [ct, "--labels", labels, "--organ", "liver"], labels, "affine"


def case_organ_label_absent(tmp_path):
    ct, labels = _phantom(tmp_path)
    return [ct, "--labels", labels, "--organ", "liver", "--organ-label", "99"], labels, "99"


def case_organ_label_absent_example(tmp_path):
    # The example holds label 99 (a TotalSegmentator structure); 42 is absent.
    return [EXAMPLE_CT, "--labels", EXAMPLE_LABELS, "--organ", "liver", "--organ-label", "42"], EXAMPLE_LABELS, "42"


def case_labels_empty(tmp_path):
    _, labels = phantom_arrays(0)
    ct, labels = _phantom(tmp_path, labels=np.zeros_like(labels))
    return [ct, "--labels", labels, "--organ", "liver"], labels, "no liver voxels"


def case_labels_not_integer(tmp_path):
    _, labels = phantom_arrays(0)
    ct, labels = _phantom(tmp_path, labels=labels.astype(np.float32) * 0.5)
    return [ct, "--labels", labels, "--organ", "liver"], labels, "non-integer"


def case_organ_too_small(tmp_path):
    args = [EXAMPLE_CT, "--labels", EXAMPLE_LABELS, "--organ", "pancreas", "--size-mm", "80-90"]
    return args, EXAMPLE_CT, "too small"


def case_image_2d(tmp_path):
    ct, labels = phantom_arrays(0)
    ct, labels = _phantom(tmp_path, ct=ct[:, :, 16], labels=labels[:, :, 16])
    return [ct, "--labels", labels, "--organ", "liver"], ct, "2D"


def case_image_single_slice(tmp_path):
    ct, labels = phantom_arrays(0)
    ct, labels = _phantom(tmp_path, ct=ct[:, :, 16:17], labels=labels[:, :, 16:17])
    return [ct, "--labels", labels, "--organ", "liver"], ct, "2D"


def case_image_4d(tmp_path):
    ct, _ = phantom_arrays(0)
    ct, labels = _phantom(tmp_path, ct=np.stack([ct, ct], axis=-1))
    return [ct, "--labels", labels, "--organ", "liver"], ct, "4D"


def case_nan_voxel(tmp_path):
    ct, labels = _phantom(tmp_path, ct=_nan_ct(np.nan))
    return [ct, "--labels", labels, "--organ", "liver"], ct, "NaN"


def case_inf_voxel(tmp_path):
    ct, labels = _phantom(tmp_path, ct=_nan_ct(np.inf))
    return [ct, "--labels", labels, "--organ", "liver"], ct, "infinite"


def case_normalised_0_1(tmp_path):
    ct, _ = phantom_arrays(0)
    normalised = ((ct.astype(np.float32) + 1000.0) / 1100.0).clip(0, 1)
    ct, labels = _phantom(tmp_path, ct=normalised)
    return [ct, "--labels", labels, "--organ", "liver"], ct, "HU"


def case_raw_0_4095(tmp_path):
    ct, _ = phantom_arrays(0)
    ct, labels = _phantom(tmp_path, ct=(ct.astype(np.int32) + 1024).clip(0, 4095).astype(np.uint16))
    return [ct, "--labels", labels, "--organ", "liver"], ct, "HU"


def case_folder_without_dicom(tmp_path):
    _, labels = _phantom(tmp_path)
    folder = tmp_path / "in" / "series"
    folder.mkdir()
    (folder / "readme.txt").write_text("no images here\n")
    return [folder, "--labels", labels, "--organ", "liver"], folder, "folder"


CASES = {name[len("case_"):]: fn for name, fn in sorted(globals().items()) if name.startswith("case_")}


def _inputs(tmp_path):
    files = [p for p in (tmp_path / "in").rglob("*") if p.is_file()] if (tmp_path / "in").exists() else []
    return {str(p): sha256(p) for p in [*files, EXAMPLE_CT, EXAMPLE_LABELS]}


def _assert_one_line(err, named, problem):
    lines = err.strip().splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got:\n{err}"
    line = lines[0]
    assert line.startswith("tumorsyn: error: "), line
    assert str(named) in line, f"the message must name {named}: {line}"
    assert problem.lower() in line.lower(), f"the message must say {problem!r}: {line}"
    return line


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_fails_cleanly(cli, tmp_path, case):
    argv, named, problem = CASES[case](tmp_path)
    before = _inputs(tmp_path)
    out = tmp_path / "out"
    code, stdout, err = cli("generate", *argv, "--out", out)
    assert code == 1
    _assert_one_line(err, named, problem)
    assert not out.exists(), f"left behind: {sorted(p.name for p in out.iterdir())}"
    assert _inputs(tmp_path) == before
    assert not temp_files(tmp_path)


@pytest.mark.parametrize("case", ["missing_ct", "grid_shape_differs", "organ_too_small", "nan_voxel"])
def test_bad_input_leaves_an_existing_folder_as_it_was(cli, tmp_path, case):
    argv, named, problem = CASES[case](tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine\n")
    before = tree_digest(out)
    code, _, err = cli("generate", *argv, "--out", out)
    assert code == 1
    _assert_one_line(err, named, problem)
    assert tree_digest(out) == before


def test_bad_input_in_a_run_folder_keeps_finished_outputs(cli, tmp_path):
    ct, labels = write_phantom(tmp_path / "good", seed=0)
    out = tmp_path / "out"
    code, _, err = cli("generate", ct, "--labels", labels, "--organ", "liver", "--out", out, "--quiet")
    assert code == 0, err
    before = tree_digest(out)
    argv, named, problem = CASES["nan_voxel"](tmp_path)
    code, _, err = cli("generate", *argv, "--out", out, "--quiet")
    assert code == 1
    _assert_one_line(err, named, problem)
    assert tree_digest(out) == before


def test_unknown_organ_is_a_usage_error(cli, tmp_path, capsys):
    ct, labels = _phantom(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        cli("generate", ct, "--labels", labels, "--organ", "lung", "--out", tmp_path / "out")
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "lung" in err and "--organ" in err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("argv, problem", [
    (["--organ", "liver"], "--labels"),       # a CT without labels
    (["--labels", "X", "--example", "--organ", "liver"], "exactly one input"),
])
def test_incomplete_command_fails_with_one_line(cli, tmp_path, argv, problem):
    ct, labels = _phantom(tmp_path)
    argv = [labels if a == "X" else a for a in argv]
    code, _, err = cli("generate", ct, *argv, "--out", tmp_path / "out")
    assert code == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1 and problem in lines[0]
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("under", ["sub", ""], ids=["below-a-file", "is-a-file"])
def test_output_folder_under_a_file(cli, tmp_path, under):
    ct, labels = _phantom(tmp_path)
    blocker = tmp_path / "somefile.txt"
    blocker.write_text("a file, not a folder\n")
    before = _inputs(tmp_path)
    out = blocker / under if under else blocker
    code, _, err = cli("generate", ct, "--labels", labels, "--organ", "liver", "--out", out)
    assert code == 1
    _assert_one_line(err, out, "output folder")
    assert blocker.read_text() == "a file, not a folder\n"
    assert _inputs(tmp_path) == before


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders; covered by the file case")
def test_output_folder_not_writable(cli, tmp_path):
    ct, labels = _phantom(tmp_path)
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        code, _, err = cli("generate", ct, "--labels", labels, "--organ", "liver", "--out", locked)
        assert code == 1
        _assert_one_line(err, locked, "not writable")
        assert list(locked.iterdir()) == []
    finally:
        locked.chmod(0o700)


class _DiskFull:
    """Stand-in for nibabel's array_to_file that runs out of space on its ``fail_at``-th call."""

    def __init__(self, real, fail_at):
        self.real, self.fail_at, self.calls = real, fail_at, 0

    def __call__(self, *args, **kwargs):
        self.calls += 1
        if self.calls >= self.fail_at:
            raise OSError(errno.ENOSPC, "No space left on device")
        return self.real(*args, **kwargs)


@pytest.mark.parametrize("fail_at", [1, 2, 3], ids=["ct", "tumor", "label-map"])
@pytest.mark.parametrize("existing", [False, True], ids=["new-folder", "existing-folder"])
def test_disk_full_leaves_no_partial_or_orphan_file(cli, tmp_path, monkeypatch, fail_at, existing):
    import tumorsyn.io.writers as writers

    ct, labels = _phantom(tmp_path)
    out = tmp_path / "out"
    if existing:
        out.mkdir()
        (out / "notes.txt").write_text("mine\n")
    before_out, before_in = tree_digest(out), _inputs(tmp_path)
    disk = _DiskFull(writers.array_to_file, fail_at)
    monkeypatch.setattr(writers, "array_to_file", disk)
    code, _, err = cli("generate", ct, "--labels", labels, "--organ", "liver", "--out", out, "--label-map",
                       "--case-id", "c")
    assert disk.calls == fail_at
    assert code == 1
    _assert_one_line(err, "c_", "no space left on device")
    assert not temp_files(tmp_path)
    for name in ("c_ct.nii.gz", "c_tumor.nii.gz", "c_label.nii.gz"):
        assert not (out / name).exists(), f"{name} is left without a manifest line"
    assert tree_digest(out) == before_out
    assert _inputs(tmp_path) == before_in


def test_disk_full_on_the_manifest_line(cli, tmp_path, monkeypatch):
    from synthesize.manifest import Manifest

    def no_space(self, record):
        raise OSError(errno.ENOSPC, "No space left on device", str(self.path))

    ct, labels = _phantom(tmp_path)
    out = tmp_path / "out"
    monkeypatch.setattr(Manifest, "append", no_space)
    code, _, err = cli("generate", ct, "--labels", labels, "--organ", "liver", "--out", out)
    assert code == 1
    _assert_one_line(err, "manifest", "no space left on device")
    assert not temp_files(tmp_path)
    assert not out.exists() or not [p for p in out.iterdir() if p.name.endswith(".nii.gz")]


def test_temp_prefix_matches_the_writer():
    import tumorsyn.io.writers as writers

    assert writers.TMP_PREFIX == TMP_PREFIX
