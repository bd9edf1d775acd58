"""`tumorsyn nnunet install-trainer` and `configure`, on temporary folders (never the installed nnunetv2)."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from tests.conftest import REPO
from tumorsyn import __version__
from tumorsyn.cli.main import main
from tumorsyn.errors import InputError
from tumorsyn.integrations.nnunet.shim import MARKER, default_target, install_trainer, shim_source, uninstall_trainer


@pytest.fixture
def trainers(tmp_path):
    """A stand-in for nnunetv2/training/nnUNetTrainer."""
    folder = tmp_path / "nnUNetTrainer"
    folder.mkdir()
    return folder


def test_install_is_idempotent_and_reversible(trainers, capsys):
    shim = trainers / "nnUNetTrainerTumorSyn.py"
    assert main(["nnunet", "install-trainer", "--target", str(trainers)]) == 0
    assert f"installed: {shim}" in capsys.readouterr().out
    assert shim.read_text() == shim_source() and shim_source().startswith(MARKER)
    assert main(["nnunet", "install-trainer", "--target", str(trainers)]) == 0
    assert f"already installed: {shim}" in capsys.readouterr().out
    shim.write_text(shim.read_text().replace(f"tumorsyn {__version__}", "tumorsyn 0.0.1"))  # an older tumorsyn's shim
    assert install_trainer(trainers) == (shim, "updated") and shim.read_text() == shim_source()
    (trainers / "__pycache__").mkdir()
    compiled = trainers / "__pycache__" / "nnUNetTrainerTumorSyn.cpython-311.pyc"
    compiled.write_bytes(b"")
    assert main(["nnunet", "install-trainer", "--uninstall", "--target", str(trainers)]) == 0
    assert f"removed: {shim}" in capsys.readouterr().out
    assert not shim.exists() and not compiled.exists()
    assert uninstall_trainer(trainers) == (shim, "not installed")


def test_a_file_tumorsyn_did_not_write_is_never_touched(trainers, capsys):
    shim = trainers / "nnUNetTrainerTumorSyn.py"
    shim.write_text("class nnUNetTrainerTumorSyn: pass  # the user's own\n")
    assert main(["nnunet", "install-trainer", "--target", str(trainers)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"tumorsyn: error: {shim}: a nnUNetTrainerTumorSyn.py that tumorsyn did not write")
    with pytest.raises(InputError, match="was not written by tumorsyn; left untouched"):
        uninstall_trainer(trainers)
    assert shim.read_text() == "class nnUNetTrainerTumorSyn: pass  # the user's own\n"
    with pytest.raises(InputError, match="not a folder"):
        install_trainer(trainers / "missing")


def test_default_target_is_the_installed_nnunet_trainer_folder():
    pytest.importorskip("nnunetv2", reason="needs the nnunet extra")
    assert (default_target() / "nnUNetTrainer.py").is_file()


def test_the_shim_hands_nnunets_own_lookup_the_real_trainer_without_torchvision(tmp_path):
    """nnU-Net's own class search finds the trainer through the shim; neither loads torchvision or timm."""
    pytest.importorskip("nnunetv2", reason="needs the nnunet extra")
    package = tmp_path / "fakennunet" / "trainers"
    package.mkdir(parents=True)
    (package.parent / "__init__.py").write_text("")
    (package / "__init__.py").write_text("")
    install_trainer(package)
    script = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(tmp_path)!r})
        from nnunetv2.utilities.find_class_by_name import recursive_find_python_class
        from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
        found = recursive_find_python_class({str(package)!r}, "nnUNetTrainerTumorSyn", "fakennunet.trainers")
        assert found is not None and issubclass(found, nnUNetTrainer), found
        assert found.__module__ == "tumorsyn.integrations.nnunet.trainer", found.__module__
        loaded = sorted({{"torchvision", "timm"}} & set(sys.modules))
        assert not loaded, loaded
    """)
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]


def test_configure_writes_checked_settings_beside_the_plans(tmp_path, monkeypatch, capsys):
    folder = tmp_path / "Dataset501_Liver"
    folder.mkdir()
    (folder / "dataset.json").write_text(json.dumps({"labels": {"background": 0, "liver": 1, "tumor": 2}}))
    monkeypatch.setenv("nnUNet_preprocessed", str(tmp_path))
    assert main(["nnunet", "configure", "-d", "501", "--organ", "liver", "--prob", "0.3", "--size-mm", "5-15",
                 "--option", "appearance=rim"]) == 0
    out = capsys.readouterr().out
    assert "organ label(s) 1, tumour label 2" in out and f"wrote: {folder / 'tumorsyn_nnunet.json'}" in out
    written = json.loads((folder / "tumorsyn_nnunet.json").read_text())
    assert written["prob"] == 0.3 and written["size_mm"] == [5.0, 15.0] and written["options"] == {"appearance": "rim"}
    assert main(["nnunet", "configure", "-d", "501", "--organ", "liver", "--option", "colour=red"]) == 1
    assert "colour" in capsys.readouterr().err
    assert main(["nnunet", "configure", "-d", "502", "--organ", "liver"]) == 1
    assert "no preprocessed dataset '502' here" in capsys.readouterr().err


def test_configure_never_writes_over_a_file_that_is_not_its_settings(tmp_path, capsys):
    dataset_json = tmp_path / "dataset.json"
    dataset_json.write_text(json.dumps({"labels": {"background": 0, "liver": 1, "tumor": 2}}))
    before = dataset_json.read_bytes()
    assert main(["nnunet", "configure", "--out", str(dataset_json), "--organ", "liver"]) == 1
    err = capsys.readouterr().err
    assert err == f"tumorsyn: error: {dataset_json}: exists and is not a tumorsyn settings file; left untouched " \
                  "(write the settings to a new file)\n"
    assert dataset_json.read_bytes() == before
    settings = tmp_path / "mine.json"
    assert main(["nnunet", "configure", "--out", str(settings), "--organ", "liver"]) == 0
    assert main(["nnunet", "configure", "--out", str(settings), "--organ", "kidney"]) == 0  # its own file: replaced
    assert json.loads(settings.read_text())["organ"] == "kidney"


def test_a_shim_left_without_tumorsyn_warns_instead_of_breaking_nnunets_lookup(trainers, monkeypatch):
    """nnU-Net imports every module of its trainer folder and stops at an import error: the shim must not raise."""
    path, _ = install_trainer(trainers)
    monkeypatch.setitem(sys.modules, "tumorsyn.integrations.nnunet.trainer", None)  # as if tumorsyn were gone
    namespace = {"__file__": str(path), "__name__": "shim"}
    with pytest.warns(UserWarning, match=f"nnUNetTrainerTumorSyn is unavailable: tumorsyn cannot load .*delete {path}"):
        exec(compile(path.read_text(), str(path), "exec"), namespace)
    assert "nnUNetTrainerTumorSyn" not in namespace
