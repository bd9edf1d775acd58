"""Tests of the TorchIO adapter: RandomTumor and its deterministic twin Tumor, on the bundled example.

The example is TotalSegmentator-labelled (liver 5, kidneys 2/3, pancreas 7), 3 mm, RAS. Other
geometries are made from it by changing only the affine (anisotropic spacing) or by flipping and
transposing the stored voxels together with the affine (same world, other orientation).
"""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the TorchIO transforms need torch")
tio = pytest.importorskip("torchio", reason="the TorchIO transforms need torchio (pip install tumorsyn[torchio])")

from tests.conftest import EXAMPLE_CT, EXAMPLE_LABELS, REPO  # noqa: E402
from tumorsyn.errors import ConfigError, GridMismatchError, InputError, NotHUError  # noqa: E402
from tumorsyn.lesion_size import equivalent_diameter_mm  # noqa: E402
from tumorsyn.spec import TumorSpec  # noqa: E402
from tumorsyn.transforms.torchio import RandomTumor, Tumor  # noqa: E402

LIVER, PANCREAS = 5, 7
TUMOR = 118  # default label: the example's largest label (117) + 1


@pytest.fixture(scope="module")
def example():
    """The example's stored voxels (1, I, J, K) and affine."""
    ct, seg = tio.ScalarImage(EXAMPLE_CT), tio.LabelMap(EXAMPLE_LABELS)
    return ct.data.clone(), seg.data.clone(), ct.affine.copy()


def _subject(ct, seg, affine, **extra) -> tio.Subject:
    return tio.Subject(ct=tio.ScalarImage(tensor=ct.clone(), affine=affine),
                       seg=tio.LabelMap(tensor=seg.clone(), affine=affine), **extra)


def _anisotropic(example, spacing=(1.5, 1.5, 4.0)) -> tio.Subject:
    ct, seg, affine = example
    affine = affine.copy()
    affine[:3, :3] = np.diag(spacing)
    return _subject(ct, seg, affine)


def _specs(subject) -> list[dict]:
    (tumor,) = subject.history
    assert isinstance(tumor, Tumor)
    return tumor.specs


# --- the random transform ---------------------------------------------------------------------------
@pytest.mark.filterwarnings("ignore:hypodense pancreas tumours cannot reach")
def test_loader_tumours_land_in_the_organ_with_the_recorded_label(example):
    ct, seg, affine = example
    subjects = [_subject(ct, seg, affine, case=f"c{i}") for i in range(3)]
    dataset = tio.SubjectsDataset(subjects, transform=tio.Compose([
        RandomTumor(organ="liver", size_mm=(8, 16), count=2),
        RandomTumor(organ="pancreas", size_mm=(4, 8), tumor_label=120, device="cpu"),
    ]))
    torch.manual_seed(0)
    batches = list(tio.SubjectsLoader(dataset, batch_size=3, collate_fn=tio.utils.history_collate))
    (batch,) = batches
    assert batch["ct"]["data"].shape == (3, *ct.shape)
    liver, pancreas = (seg[0] == LIVER).numpy(), (seg[0] == PANCREAS).numpy()
    for i, history in enumerate(batch["history"]):
        labels = batch["seg"]["data"][i, 0].numpy()
        liver_tumour, pancreas_tumour = labels == TUMOR, labels == 120
        assert [t.name for t in history] == ["Tumor", "Tumor"]
        assert len(history[0].specs) == 2 and history[0].tumor_label == TUMOR
        assert liver_tumour.any() and not (liver_tumour & ~liver).any()
        if history[1].specs:  # the example's pancreas is thin (644 voxels at 3 mm)
            assert pancreas_tumour.any() and not (pancreas_tumour & ~pancreas).any()
        else:
            assert history[1].reason.startswith("organ too small") and not pancreas_tumour.any()
        changed = (batch["ct"]["data"][i, 0] != ct[0]).numpy()
        assert changed.any() and not (changed & ~(liver | pancreas)).any()  # HU changed only in the organs
    # Three subjects, three different draws.
    centres = {tuple(h[0].specs[0]["center_vox"]) for h in batch["history"]}
    assert len(centres) == 3


def test_torch_manual_seed_reproduces_a_loader_run_with_workers(example):
    ct, seg, affine = example
    dataset = tio.SubjectsDataset([_subject(ct, seg, affine) for _ in range(2)],
                                  transform=RandomTumor(organ="liver", size_mm=(8, 16), p=0.75, device="cpu"))

    def run(seed: int):
        torch.manual_seed(seed)
        loader = tio.SubjectsLoader(dataset, batch_size=1, num_workers=2)
        return [(b["ct"]["data"].clone(), b["seg"]["data"].clone()) for b in loader]

    first, again, other = run(3), run(3), run(4)
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(first, again))
    assert not all(torch.equal(a[0], b[0]) for a, b in zip(first, other))


@pytest.mark.filterwarnings("ignore:No invertible transforms found")
@pytest.mark.parametrize("method", ["rules", "ca"])
def test_replaying_the_history_gives_identical_outputs(example, method):
    subject = _anisotropic(example)
    torch.manual_seed(11)
    out = RandomTumor(organ="liver", size_mm=(8, 14), count=2, method=method, device="cpu")(subject)
    assert len(_specs(out)) == 2
    assert not torch.equal(out.ct.data, subject.ct.data)
    replayed = out.get_composed_history()(subject)
    assert torch.equal(replayed.ct.data, out.ct.data) and torch.equal(replayed.seg.data, out.seg.data)
    assert replayed.ct.data.dtype == subject.ct.data.dtype == torch.int16
    # The Hydra config and a Tumor built from the recorded specs replay them too.
    config = out.history[0].to_hydra_config()
    assert config["_target_"] == "tumorsyn.transforms.torchio.Tumor"
    again = Tumor(_specs(out), tumor_label=TUMOR, device="cpu")(subject)
    assert torch.equal(again.ct.data, out.ct.data) and torch.equal(again.seg.data, out.seg.data)
    # Not invertible: TorchIO skips it with its warning.
    with pytest.warns(RuntimeWarning, match="Skipping Tumor as it is not invertible"):
        out.get_inverse_transform()


def test_non_ras_subjects_get_the_same_tumour_in_world_space(example):
    ct, seg, affine = example
    ras = _anisotropic(example)
    shape = ct.shape[1:]
    # LPS: the first two stored axes flipped, the affine compensating (same world position per voxel).
    flip = np.eye(4)
    flip[0, 0] = flip[1, 1] = -1
    flip[0, 3], flip[1, 3] = shape[0] - 1, shape[1] - 1
    lps = _subject(torch.flip(ras.ct.data, (1, 2)), torch.flip(ras.seg.data, (1, 2)), ras.ct.affine @ flip)
    # SRA: stored axes (k, i, j) of the RAS voxels.
    perm = np.zeros((4, 4))
    perm[0, 1] = perm[1, 2] = perm[2, 0] = perm[3, 3] = 1
    sra = _subject(ras.ct.data.permute(0, 3, 1, 2).contiguous(), ras.seg.data.permute(0, 3, 1, 2).contiguous(),
                   ras.ct.affine @ perm)
    assert lps.ct.orientation == ("L", "P", "S") and sra.ct.orientation == ("S", "R", "A")
    outs = []
    for subject in (ras, lps, sra):
        torch.manual_seed(5)
        outs.append(RandomTumor(organ="liver", size_mm=(8, 14))(subject))
    a, b, c = outs
    assert _specs(a) == _specs(b) == _specs(c)
    for image in ("ct", "seg"):
        assert torch.equal(torch.flip(b[image].data, (1, 2)), a[image].data)
        assert torch.equal(c[image].data.permute(0, 2, 3, 1), a[image].data)
    assert b.ct.orientation == ("L", "P", "S") and np.array_equal(b.ct.affine, lps.ct.affine)


def test_sizes_are_in_mm_of_the_images_own_anisotropic_spacing(example):
    spacing = (1.5, 1.5, 4.0)
    subject = _anisotropic(example, spacing)
    for seed in range(3):
        torch.manual_seed(seed)
        out = RandomTumor(organ="liver", size_mm=(8, 14))(subject)
        (spec,) = _specs(out)
        assert tuple(spec["spacing_mm"]) == spacing
        assert 8 <= spec["size_mm"] <= 14
        measured = equivalent_diameter_mm(out.seg.data[0].numpy() == TUMOR, spacing)
        assert measured == pytest.approx(spec["size_mm"], rel=0.1)


def test_p_zero_and_empty_organ_pass_through(example):
    ct, seg, affine = example
    subject = _subject(ct, seg, affine)
    out = RandomTumor(organ="liver", p=0.0)(subject)
    assert torch.equal(out.ct.data, ct) and out.history == []
    no_liver = _subject(ct, torch.where(seg == LIVER, torch.zeros_like(seg), seg), affine)
    out = RandomTumor(organ="liver")(no_liver)
    (tumor,) = out.history
    assert tumor.specs == [] and tumor.reason.startswith("empty organ: no liver voxels")
    assert torch.equal(out.ct.data, ct)
    out = RandomTumor(organ="liver", size_mm=(150, 200))(subject)
    (tumor,) = out.history
    assert tumor.specs == [] and tumor.reason.startswith("organ too small: ")
    assert torch.equal(out.ct.data, ct) and torch.equal(out.seg.data, seg)


def test_named_images_and_other_images_untouched(example):
    ct, seg, affine = example
    subject = tio.Subject(ct=tio.ScalarImage(tensor=ct.clone(), affine=affine),
                          pet=tio.ScalarImage(tensor=ct.clone(), affine=affine),
                          seg=tio.LabelMap(tensor=seg.clone(), affine=affine))
    with pytest.raises(ConfigError, match=r"holds 2 tio.ScalarImage images \(ct, pet\); give image_name="):
        RandomTumor()(subject)
    torch.manual_seed(0)
    out = RandomTumor(image_name="ct")(subject)
    assert not torch.equal(out.ct.data, ct) and torch.equal(out.pet.data, ct)
    torch.manual_seed(0)
    assert torch.equal(RandomTumor(exclude=["pet"])(subject).ct.data, out.ct.data)


# --- refusals ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kwargs, message", [
    ({"organ": "lung"}, "unknown organ 'lung'"),
    ({"size_mm": (20, 5)}, "size_mm must satisfy"),
    ({"count": 0}, "count must be a positive integer"),
    ({"tumor_label": 0}, "tumor_label must be a positive integer"),
    ({"method": "nope"}, "nope"),
    ({"options": {"apperance": "rim"}}, "apperance"),
    ({"device": "gpu"}, "device must be auto, cpu, cuda or cuda:N"),
])
def test_bad_arguments_raise_at_construction(kwargs, message):
    with pytest.raises(ConfigError, match=message) as info:
        RandomTumor(**kwargs)
    assert str(info.value).startswith("RandomTumor: ")


def test_bad_subjects_raise(example):
    ct, seg, affine = example
    shifted = affine.copy()
    shifted[0, 3] += 2.0
    bad = tio.Subject(ct=tio.ScalarImage(tensor=ct, affine=affine), seg=tio.LabelMap(tensor=seg, affine=shifted))
    with pytest.raises(GridMismatchError, match="label affine differs from the CT's by up to 2 mm"):
        RandomTumor()(bad)
    with pytest.raises(ConfigError, match="the subject has no image 'image'"):
        RandomTumor(image_name="image")(_subject(ct, seg, affine))
    with pytest.raises(ConfigError, match="'seg' is a LabelMap; the CT \\(in HU\\) must be a tio.ScalarImage"):
        RandomTumor(image_name="seg")(_subject(ct, seg, affine))
    scaled = tio.RescaleIntensity(out_min_max=(0, 1))(_subject(ct, seg, affine))
    with pytest.raises(NotHUError):
        RandomTumor()(scaled)
    # Specs replay only on the grid they were drawn for.
    torch.manual_seed(0)
    specs = _specs(RandomTumor()(_subject(ct, seg, affine)))
    with pytest.raises(InputError, match="spec was drawn for spacing"):
        Tumor(specs)(_anisotropic(example))
    with pytest.raises(ConfigError, match="does not fit the label map's uint8"):
        Tumor(specs, tumor_label=300)(_subject(ct, seg, affine))
    with pytest.raises(ConfigError, match="organ='kidney' but the specs are for liver"):
        Tumor(specs, organ="kidney")
    assert TumorSpec.from_dict(specs[0]).organ == "liver"


def test_no_torchvision_and_no_monai():
    """torchvision cannot be imported beside CPU torch builds (issue 18): neither tumorsyn nor torchio loads it."""
    code = (
        "import sys, torch, tumorsyn.transforms\n"
        "assert 'torchio' not in sys.modules and 'monai' not in sys.modules\n"
        "import torchio as tio\n"
        "from tumorsyn.transforms.torchio import RandomTumor\n"
        f"s = tio.Subject(ct=tio.ScalarImage({str(EXAMPLE_CT)!r}), seg=tio.LabelMap({str(EXAMPLE_LABELS)!r}))\n"
        "torch.manual_seed(0)\n"
        "out = tio.Compose([RandomTumor(organ='liver'), tio.RescaleIntensity()])(s)\n"
        "assert out.history[0].specs\n"
        "bad = sorted(m for m in ('torchvision', 'timm', 'monai') if m in sys.modules)\n"
        "assert not bad, bad\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
