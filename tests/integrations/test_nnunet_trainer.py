"""nnUNetTrainerTumorSyn end to end: a tiny nnU-Net dataset from the bundled example, planned and
preprocessed by nnunetv2 itself, trained for two iterations on the CPU; tumours reach the batches."""
from __future__ import annotations

import json
import random

import nibabel as nib
import numpy as np
import pytest

from tests.conftest import EXAMPLE_CT, EXAMPLE_LABELS

pytest.importorskip("nnunetv2", reason="needs the nnunet extra (pip install 'tumorsyn[nnunet]')")

DATASET_ID = 987
DATASET = f"Dataset{DATASET_ID}_TumorSynTest"
LIVER_TS = 5  # TotalSegmentator's liver in the example labels
LABELS = {"background": 0, "liver": 1, "tumor": 2, "other": 3}


def _write_raw(raw) -> None:
    """Two cases (the example's liver region and its mirror image): liver 1, every other structure 3.

    The other structures are foreground so that nnU-Net's clip window (foreground percentiles)
    spans fat to bone, as in a real multi-organ dataset.
    """
    ct_img, lab_img = nib.load(EXAMPLE_CT), nib.load(EXAMPLE_LABELS)
    ct = np.asarray(ct_img.dataobj)[33:114, 17:95, :]
    ts = np.asarray(lab_img.dataobj)[33:114, 17:95, :]
    labels = np.where(ts == LIVER_TS, 1, np.where(ts > 0, 3, 0)).astype(np.uint8)
    folder = raw / DATASET
    (folder / "imagesTr").mkdir(parents=True)
    (folder / "labelsTr").mkdir()
    for case, flip in (("case_000", False), ("case_001", True)):
        c, l = (np.ascontiguousarray(ct[::-1]), np.ascontiguousarray(labels[::-1])) if flip else (ct, labels)
        nib.save(nib.Nifti1Image(c, ct_img.affine), folder / "imagesTr" / f"{case}_0000.nii.gz")
        nib.save(nib.Nifti1Image(l, ct_img.affine), folder / "labelsTr" / f"{case}.nii.gz")
    (folder / "dataset.json").write_text(json.dumps({"channel_names": {"0": "CT"}, "labels": LABELS,
                                                     "numTraining": 2, "file_ending": ".nii.gz"}))


@pytest.fixture(scope="module")
def nnunet_env(tmp_path_factory):
    """nnU-Net's three folders in tmp, the dataset planned and preprocessed (3d_fullres) by nnunetv2."""
    root = tmp_path_factory.mktemp("nnunet")
    with pytest.MonkeyPatch.context() as mp:
        for name in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
            (root / name).mkdir()
            mp.setenv(name, str(root / name))
        mp.setenv("nnUNet_n_proc_DA", "1")  # planning sets torch's threads to it (0 is refused there)
        mp.delenv("TUMORSYN_NNUNET_CONFIG", raising=False)
        _write_raw(root / "nnUNet_raw")
        from nnunetv2.experiment_planning.plan_and_preprocess_api import (extract_fingerprints, plan_experiments,
                                                                          preprocess)

        extract_fingerprints([DATASET_ID], num_processes=1, check_dataset_integrity=False, show_progress_bar=False)
        plans_name = plan_experiments([DATASET_ID])
        preprocess([DATASET_ID], plans_name, configurations=("3d_fullres",), num_processes=(1,),
                   show_progress_bar=False)
        yield root / "nnUNet_preprocessed" / DATASET, plans_name


def _trainer_class():
    import torch
    from batchgeneratorsv2.transforms.base.basic_transform import BasicTransform

    from tumorsyn.integrations.nnunet.trainer import nnUNetTrainerTumorSyn

    class Recording(BasicTransform):
        """Around the synthesis transform: keeps each patch's CT channel and labels before and after."""

        def __init__(self, inner):
            super().__init__()
            self.inner, self.records = inner, []

        def __call__(self, **data):
            before = (data["image"][0].clone(), data["segmentation"][0].clone())
            out = self.inner(**data)
            self.records.append((*before, out["image"][0].clone(), out["segmentation"][0].clone()))
            return out

    class nnUNetTrainerTumorSynTest(nnUNetTrainerTumorSyn):
        """Two training iterations, one validation iteration, and the batches' targets kept."""

        # nnU-Net records its __init__ arguments by name: keep the signature.
        def __init__(self, plans, configuration, fold, dataset_json, device=torch.device("cuda")):
            super().__init__(plans, configuration, fold, dataset_json, device)
            self.num_epochs, self.num_iterations_per_epoch, self.num_val_iterations_per_epoch = 1, 2, 1
            self.targets = []

        def build_tumor_transform(self):
            self.recording = Recording(super().build_tumor_transform())
            return self.recording

        def train_step(self, batch):
            target = batch["target"]
            self.targets.append((target[0] if isinstance(target, list) else target).clone())
            return super().train_step(batch)

        def plot_network_architecture(self):  # no hiddenlayer/graphviz in tests
            pass

    return nnUNetTrainerTumorSynTest, torch


def test_trainer_writes_tumours_into_training_batches(nnunet_env, monkeypatch):
    preprocessed, plans_name = nnunet_env
    for name in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        monkeypatch.setenv(name, str(preprocessed.parent.parent / name))
    monkeypatch.setenv("nnUNet_n_proc_DA", "0")  # augmentation in this process: its transform can be inspected
    (preprocessed / "tumorsyn_nnunet.json").write_text(json.dumps(
        {"organ": "liver", "prob": 1.0, "size_mm": [8, 15], "method": "rules"}))
    plans = json.loads((preprocessed / f"{plans_name}.json").read_text())
    plans["configurations"]["3d_fullres"].update(batch_size=2, patch_size=[16, 48, 48])  # small: CPU time
    plans["continue_training"] = False  # what nnUNetv2_train sets
    dataset_json = json.loads((preprocessed / "dataset.json").read_text())
    cls, torch = _trainer_class()
    trainer = cls(plans, "3d_fullres", "all", dataset_json, device=torch.device("cpu"))
    # nnU-Net draws patches and augmentations from the global generators: seed them, one run.
    random.seed(0), np.random.seed(0), torch.manual_seed(0)
    trainer.run_training()

    # The transform saw liver and wrote tumours: label 2 on former liver, CT changed there, and nowhere else.
    records = trainer.recording.records
    written = [r for r in records if (r[3] == 2).any()]
    assert written, f"no tumour in {len(records)} patches: {dict(trainer.recording.inner.stats)}"
    for image_before, seg_before, image_after, seg_after in written:
        tumour = (seg_after == 2) & (seg_before != 2)
        assert (seg_before[tumour] == 1).all()  # tumours lie in the liver
        assert (image_after[tumour] != image_before[tumour]).float().mean() > 0.5
        changed = image_after != image_before
        assert ((seg_after != seg_before) <= tumour).all()  # labels change only to tumour
        assert changed.sum() < changed.numel() / 4  # local: the rest of the patch keeps nnU-Net's values
    # ... and label 2 reached the targets of the training batches (the raw data has none).
    assert len(trainer.targets) == 2
    assert any((t == 2).any() for t in trainer.targets)
    record = json.loads((preprocessed.parent.parent / "nnUNet_results" / DATASET /
                         f"{cls.__name__}__{plans_name}__3d_fullres" / "fold_all" / "tumorsyn_nnunet.json").read_text())
    assert record["organ_labels"] == [1] and record["tumor_label"] == 2
    assert trainer.recording.inner.kept_shape == (16, 48, 48)  # centres where the spatial crop keeps them
    assert record["settings"]["size_mm"] == [8, 15]
