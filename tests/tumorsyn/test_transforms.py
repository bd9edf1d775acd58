"""Tests of the MONAI adapter: RandTumorSynthesisd and its deterministic twin TumorSynthesisd."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the MONAI transforms need torch")
monai = pytest.importorskip("monai", reason="the MONAI transforms need monai")

from monai.data import DataLoader, Dataset, MetaTensor  # noqa: E402
from monai.transforms import Compose, EnsureChannelFirstd, EnsureTyped, LoadImaged  # noqa: E402
from monai.utils import set_determinism  # noqa: E402
from scipy import ndimage  # noqa: E402

import tumorsyn  # noqa: E402
from tumorsyn.errors import ConfigError, GridMismatchError, NotHUError  # noqa: E402
from tumorsyn.spec import TumorSpec  # noqa: E402
from tumorsyn.transforms import (REASON_KEY, SPECS_KEY, RandTumorSynthesisd, TumorSynthesisd,  # noqa: E402
                                 collate_tumor_specs)

SHAPE = (64, 64, 48)
SPACING = (1.0, 1.0, 1.5)
LIVER = 5      # TotalSegmentator liver
KIDNEY = 2     # another organ in the label map
DATA = Path(tumorsyn.__file__).parent / "data"


def _phantom(seed: int = 0):
    """CT in HU (air outside, liver ellipsoid 60 +/- 10 HU) and a TotalSegmentator-style label map."""
    x, y, z = np.meshgrid(*[np.arange(n, dtype=np.float32) for n in SHAPE], indexing="ij")
    liver = ((x - 30) / 22) ** 2 + ((y - 32) / 22) ** 2 + ((z - 24) / 14) ** 2 <= 1.0
    kidney = ((x - 56) / 5) ** 2 + ((y - 32) / 6) ** 2 + ((z - 24) / 6) ** 2 <= 1.0
    rng = np.random.default_rng(seed)
    ct = np.full(SHAPE, -1000.0, dtype=np.float32)
    ct[liver] = 60.0 + rng.normal(0.0, 10.0, int(liver.sum()))
    ct[kidney] = 150.0
    labels = np.zeros(SHAPE, dtype=np.uint8)
    labels[liver] = LIVER
    labels[kidney] = KIDNEY
    return ct, labels


def _affine():
    return np.diag([*SPACING, 1.0])


def _item(kind: str = "meta", seed: int = 0) -> dict:
    """One channel-first item: numpy, torch or MetaTensor (as after LoadImaged + EnsureChannelFirstd)."""
    ct, labels = _phantom(seed)
    if kind == "numpy":
        return {"image": ct[None], "label": labels[None]}
    if kind == "torch":
        return {"image": torch.from_numpy(ct[None]), "label": torch.from_numpy(labels[None])}
    return {"image": MetaTensor(ct[None], affine=_affine()),
            "label": MetaTensor(labels[None].astype(np.float32), affine=_affine())}


def _np(value) -> np.ndarray:
    return value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else np.asarray(value)


def _transform(**kwargs) -> RandTumorSynthesisd:
    kwargs.setdefault("size_mm", (6, 12))
    kwargs.setdefault("prob", 1.0)
    return RandTumorSynthesisd(keys=("image", "label"), organ="liver", **kwargs)


@pytest.fixture(autouse=True)
def _no_global_seed():
    yield
    set_determinism(seed=None)


# --- neutral setting, effect, types ---------------------------------------------------------------
def test_prob_zero_leaves_item_unchanged():
    item = _item()
    t = _transform(prob=0.0).set_random_state(0)
    for _ in range(3):
        out = t(item)
        assert np.array_equal(_np(out["image"]), _np(item["image"]))
        assert np.array_equal(_np(out["label"]), _np(item["label"]))
        assert out[SPECS_KEY] == [] and out["image"].meta[SPECS_KEY] == []
        assert "prob" in out[REASON_KEY]
    assert SPECS_KEY not in item and SPECS_KEY not in item["image"].meta  # the input item is not modified


@pytest.mark.parametrize("kind", ["numpy", "torch", "meta"])
def test_prob_one_writes_tumour_only_near_its_label(kind):
    item = _item(kind)
    spacing = None if kind == "meta" else SPACING  # plain arrays carry no affine
    out = _transform(spacing_mm=spacing).set_random_state(3)(item)
    assert out[REASON_KEY] == "" and len(out[SPECS_KEY]) == 1
    image_in, image_out = _np(item["image"])[0], _np(out["image"])[0]
    labels_in, labels_out = _np(item["label"])[0], _np(out["label"])[0]
    tumour = labels_out == LIVER + 1  # default tumour label: largest label + 1
    assert tumour.sum() > 10
    assert np.all(labels_in[tumour] == LIVER)                       # written inside the liver
    assert np.array_equal(labels_out[~tumour], labels_in[~tumour])   # nothing else relabelled
    changed = image_out != image_in
    assert changed[tumour].mean() > 0.95
    # Outside the label only the blend rim changes: within the edge's reach (1.4 edge_mm, the sigmoid's
    # 1/256 point) plus the half-contrast margin of the label, a few mm.
    reach_mm = 1.5 * out[SPECS_KEY][0]["params"]["edge_mm"] + 3.0
    rim = ndimage.binary_dilation(tumour, iterations=int(np.ceil(reach_mm / min(SPACING))))
    assert not np.any(changed & ~rim)
    assert abs(float(np.mean(image_out[tumour] - image_in[tumour]))) > 10.0
    # Same container type, dtype and shape as the input.
    for key in ("image", "label"):
        assert type(out[key]) is type(item[key])
        assert out[key].dtype == item[key].dtype and tuple(out[key].shape) == tuple(item[key].shape)


def test_outputs_keep_integer_dtype_and_explicit_tumor_label():
    ct, labels = _phantom()
    item = {"image": MetaTensor(np.rint(ct).astype(np.int16)[None], affine=_affine()),
            "label": MetaTensor(labels[None], affine=_affine())}
    out = _transform(tumor_label=9).set_random_state(1)(item)
    assert out["image"].dtype == torch.int16 and out["label"].dtype == torch.uint8
    assert set(np.unique(_np(out["label"]))) == {0, KIDNEY, LIVER, 9}


def test_binary_label_map_gets_label_two():
    ct, labels = _phantom()
    item = {"image": ct[None], "label": (labels == LIVER).astype(np.float32)[None]}
    out = _transform(label_preset="binary", spacing_mm=SPACING).set_random_state(0)(item)
    assert set(np.unique(out["label"])) == {0.0, 1.0, 2.0}


def test_count_two_gives_two_separate_tumours():
    out = _transform(count=2, size_mm=(5, 8)).set_random_state(5)(_item())
    assert len(out[SPECS_KEY]) == 2 and out[REASON_KEY] == ""
    _, n = ndimage.label(_np(out["label"])[0] == LIVER + 1)
    assert n >= 2


# --- reproducibility ------------------------------------------------------------------------------
def test_set_random_state_reproduces_and_seeds_differ():
    item = _item()
    a = _transform().set_random_state(11)(item)
    b = _transform().set_random_state(11)(item)
    c = _transform().set_random_state(12)(item)
    assert a[SPECS_KEY] == b[SPECS_KEY]
    assert np.array_equal(_np(a["image"]), _np(b["image"]))
    assert np.array_equal(_np(a["label"]), _np(b["label"]))
    assert a[SPECS_KEY] != c[SPECS_KEY]
    assert not np.array_equal(_np(a["image"]), _np(c["image"]))


def test_successive_calls_draw_new_tumours():
    t = _transform().set_random_state(4)
    first, second = t(_item()), t(_item())
    assert first[SPECS_KEY] != second[SPECS_KEY]


def test_set_determinism_reproduces_a_compose_run():
    def run(seed):
        set_determinism(seed=seed)
        pipeline = Compose([_transform(prob=0.5)])
        return [pipeline(_item()) for _ in range(4)]

    a, b, c = run(7), run(7), run(8)
    assert [x[SPECS_KEY] for x in a] == [x[SPECS_KEY] for x in b]
    assert all(np.array_equal(_np(x["image"]), _np(y["image"])) for x, y in zip(a, b))
    assert [x[SPECS_KEY] for x in a] != [x[SPECS_KEY] for x in c]


def test_specs_in_metadata_replay_exactly_with_synthesize():
    item = _item()
    out = _transform(count=2, size_mm=(5, 9)).set_random_state(21)(item)
    assert out["image"].meta[SPECS_KEY] == out[SPECS_KEY] == out["label"].meta[SPECS_KEY]
    specs = [TumorSpec.from_json(json.dumps(s)) for s in out["image"].meta[SPECS_KEY]]  # survives JSON
    ct, labels = _phantom()
    ct_out, tumour = tumorsyn.synthesize(ct, labels == LIVER, SPACING, specs)
    assert np.array_equal(_np(out["image"])[0], ct_out)
    assert np.array_equal(_np(out["label"])[0] == LIVER + 1, tumour.astype(bool))


def test_deterministic_twin_applies_recorded_specs():
    out = _transform().set_random_state(2)(_item())
    twin = TumorSynthesisd(keys=("image", "label"), specs=out[SPECS_KEY], organ="liver")
    again = twin(_item())
    assert np.array_equal(_np(again["image"]), _np(out["image"]))
    assert np.array_equal(_np(again["label"]), _np(out["label"]))
    # specs=None replays the specs the item carries.
    replay = TumorSynthesisd(keys=("image", "label"), organ="liver")({**_item(), SPECS_KEY: out[SPECS_KEY]})
    assert np.array_equal(_np(replay["image"]), _np(out["image"]))


# --- size bins ------------------------------------------------------------------------------------
def test_size_bins_are_followed():
    t = _transform(size_mm=[((5, 6), 1.0), ((14, 16), 0.0)]).set_random_state(0)
    sizes = [t(_item())[SPECS_KEY][0]["size_mm"] for _ in range(3)]
    assert all(5.0 <= s <= 6.0 for s in sizes)
    t = _transform(size_mm=[((5, 6), 0.0), ((11, 13), 2.0)]).set_random_state(0)
    assert 11.0 <= t(_item())[SPECS_KEY][0]["size_mm"] <= 13.0


@pytest.mark.parametrize("size_mm", [(0, 5), (20, 5), [((5, 10), -1.0)], [((5, 10), 0.0)], [(5, 10, 15)], "big"])
def test_bad_size_raises(size_mm):
    with pytest.raises(ConfigError, match="size_mm"):
        _transform(size_mm=size_mm)


# --- items that cannot take a tumour, bad input ---------------------------------------------------
def test_missing_organ_passes_through_with_reason():
    item = _item()
    item["label"] = MetaTensor(np.where(_np(item["label"]) == LIVER, 0, _np(item["label"])), affine=_affine())
    out = _transform().set_random_state(0)(item)
    assert np.array_equal(_np(out["image"]), _np(item["image"]))
    assert np.array_equal(_np(out["label"]), _np(item["label"]))
    assert out[SPECS_KEY] == [] and out[REASON_KEY].startswith("empty organ")
    assert out["label"].meta[REASON_KEY] == out[REASON_KEY]


def test_organ_too_small_passes_through_with_reason():
    out = _transform(size_mm=(60, 80)).set_random_state(0)(_item())  # the liver is 44 mm across
    assert out[SPECS_KEY] == [] and out[REASON_KEY].startswith("organ too small")
    assert np.array_equal(_np(out["image"]), _np(_item()["image"]))


@pytest.mark.parametrize("keys, missing", [(("img", "label"), "img"), (("image", "seg"), "seg")])
def test_missing_key_raises_naming_key_and_transform(keys, missing):
    with pytest.raises(KeyError, match=rf"`{missing}`.*RandTumorSynthesisd"):
        RandTumorSynthesisd(keys=keys, prob=1.0)(_item())


def test_missing_key_allowed_passes_through():
    item = {"image": _item()["image"]}
    out = RandTumorSynthesisd(keys=("image", "label"), prob=1.0, allow_missing_keys=True)(item)
    assert out[SPECS_KEY] == [] and "label" in out[REASON_KEY]
    assert np.array_equal(_np(out["image"]), _np(item["image"]))


def test_normalised_image_is_refused():
    item = _item()
    item["image"] = MetaTensor((_np(item["image"]) + 1000.0) / 2000.0, affine=_affine())
    # The core's rule (placement), the same message as for `tumorsyn generate`.
    with pytest.raises(NotHUError, match="give the CT in Hounsfield units"):
        _transform().set_random_state(0)(item)


def test_the_twin_refuses_a_normalised_image_by_the_cores_rule():
    """TumorSynthesisd checks the intensities around the organ as placement does (no rule of its own)."""
    item = _item()
    out = _transform().set_random_state(0)(dict(item))
    image = _np(item["image"])
    item["image"] = MetaTensor((image + 1000.0) / 2000.0, affine=_affine())
    with pytest.raises(NotHUError, match="intensities around the liver span only .*give the CT in Hounsfield units"):
        TumorSynthesisd(keys=("image", "label"), specs=out[SPECS_KEY], organ="liver")(item)


def test_grid_mismatch_and_missing_spacing_raise():
    item = _item("numpy")
    with pytest.raises(ConfigError, match="spacing_mm"):
        _transform().set_random_state(0)(item)
    item["label"] = item["label"][:, :-1]
    with pytest.raises(GridMismatchError):
        _transform(spacing_mm=SPACING).set_random_state(0)(item)


@pytest.mark.parametrize("kwargs", [{"prob": 1.5}, {"count": 0}, {"organ": "lung"}, {"method": "nope"},
                                    {"tumor_label": 0}, {"keys": ("image",)}, {"label_preset": "nope"},
                                    {"spacing_mm": (1, 1)}])
def test_bad_arguments_raise(kwargs):
    kwargs = {"keys": ("image", "label"), **kwargs}
    with pytest.raises(ConfigError):
        RandTumorSynthesisd(**kwargs)


def test_spacing_from_meta_dict_for_numpy_items():
    item = {**_item("numpy"), "image_meta_dict": {"affine": _affine()}}
    out = _transform().set_random_state(0)(item)
    assert out[SPECS_KEY][0]["spacing_mm"] == list(SPACING)


# --- pipelines ------------------------------------------------------------------------------------
def test_in_a_monai_dataloader_with_collate_tumor_specs():
    # batch_size > 1 with items with and without tumours: collate_tumor_specs keeps per-item lists.
    # MONAI's DataLoader reseeds the transforms from torch's global RNG: set_determinism fixes it.
    set_determinism(seed=0)
    pipeline = Compose([_transform(prob=0.5), EnsureTyped(keys=("image", "label"))])
    loader = DataLoader(Dataset([_item() for _ in range(6)], transform=pipeline), batch_size=3,
                        num_workers=0, collate_fn=collate_tumor_specs)
    batches = list(loader)
    assert len(batches) == 2
    specs = [s for batch in batches for s in batch[SPECS_KEY]]
    assert len(specs) == 6 and {len(s) for s in specs} == {0, 1}
    for batch in batches:
        assert tuple(batch["image"].shape) == (3, 1, *SHAPE)
        assert batch["image"].meta[SPECS_KEY] == batch[SPECS_KEY]
        for i, s in enumerate(batch[SPECS_KEY]):
            assert bool((batch["label"][i] == LIVER + 1).any()) == bool(s)


def test_in_a_monai_dataloader_with_default_collate_and_json_specs():
    set_determinism(seed=0)
    pipeline = Compose([_transform(prob=0.5, specs_as_json=True)])
    loader = DataLoader(Dataset([_item() for _ in range(4)], transform=pipeline), batch_size=2, num_workers=0)
    texts = [t for batch in loader for t in batch[SPECS_KEY]]
    assert len(texts) == 4
    assert {len(json.loads(t)) for t in texts} == {0, 1}
    replay = TumorSynthesisd(keys=("image", "label"), specs=next(t for t in texts if t != "[]"), organ="liver")
    assert len(replay(_item())[SPECS_KEY]) == 1


def test_bundled_totalsegmentator_example_in_compose():
    image, labels = DATA / "example_ct.nii.gz", DATA / "example_labels.nii.gz"
    if not (image.exists() and labels.exists()):
        pytest.skip("bundled TotalSegmentator example not found in tumorsyn/data")
    keys = ("image", "label")
    pipeline = Compose([
        LoadImaged(keys=keys, image_only=True),
        EnsureChannelFirstd(keys=keys),
        RandTumorSynthesisd(keys=keys, organ="liver", size_mm=(10, 20), prob=1.0),
    ]).set_random_state(0)
    item = {"image": str(image), "label": str(labels)}
    out = pipeline(item)
    assert out[REASON_KEY] == "" and len(out[SPECS_KEY]) == 1
    original = Compose([LoadImaged(keys=keys, image_only=True), EnsureChannelFirstd(keys=keys)])(item)
    labels_in, labels_out = _np(original["label"])[0], _np(out["label"])[0]
    tumour_value = int(labels_in.max()) + 1
    tumour = labels_out == tumour_value
    assert tumour.any() and np.all(labels_in[tumour] == LIVER)
    spec = TumorSpec.from_dict(out["image"].meta[SPECS_KEY][0])
    assert np.allclose(spec.spacing_mm, _np(original["image"].pixdim))
    ct_out, tumour_replay = tumorsyn.synthesize(_np(original["image"])[0], labels_in == LIVER, spec.spacing_mm, spec)
    assert np.array_equal(ct_out, _np(out["image"])[0])
    assert np.array_equal(tumour_replay.astype(bool), tumour)


def test_batching_generators_get_disjoint_tumours_of_an_item_in_one_call():
    from tests.conftest import register_batching_rules
    from tumorsyn.spec import TumorSpec
    from tumorsyn.apply import _batch_groups

    calls = register_batching_rules("rules_batching_transform_test")

    # Seed 20 draws two small tumours whose boxes do not touch (found by trying seeds; redo when the
    # draws change).
    out = _transform(count=2, size_mm=(4, 5)).set_random_state(20)(_item())
    specs = [TumorSpec.from_dict({**s, "method": "rules_batching_transform_test"}) for s in out[SPECS_KEY]]
    groups = _batch_groups(specs, "auto")
    assert [len(g) for g in groups] == [2]
    again = TumorSynthesisd(keys=("image", "label"), specs=specs, organ="liver")(_item())
    assert calls == [len(g) for g in groups if len(g) > 1]
    assert np.array_equal(_np(again["image"]), _np(out["image"]))
    assert np.array_equal(_np(again["label"]), _np(out["label"]))


def test_apply_items_batches_tumours_across_items_and_equals_one_by_one():
    from tests.conftest import register_batching_rules

    calls = register_batching_rules("rules_batching_items_test")

    items = [_item(seed=s) for s in range(4)]
    seeds = [21, 22, 23, 24]
    t = _transform(method="rules_batching_items_test")
    batched = t.apply_items(items, seeds=seeds)
    assert calls == [4]  # one call for the four items' tumours
    for item, seed, out in zip(items, seeds, batched):
        single = t.set_random_state(seed)(item)
        assert out[SPECS_KEY] == single[SPECS_KEY] and len(out[SPECS_KEY]) == 1
        assert np.array_equal(_np(out["image"]), _np(single["image"]))
        assert np.array_equal(_np(out["label"]), _np(single["label"]))
        assert type(out["image"]) is type(item["image"])
    # Two tumours per item: each item's groups keep their order; the first round is one call.
    calls.clear()
    two = _transform(method="rules_batching_items_test", count=2, size_mm=(4, 6)).apply_items(items, seeds=seeds)
    assert calls and calls[0] >= 4 and sum(calls) <= 8
    for item, seed, out in zip(items, seeds, two):
        single = _transform(method="rules_batching_items_test", count=2, size_mm=(4, 6)).set_random_state(seed)(item)
        assert np.array_equal(_np(out["image"]), _np(single["image"]))
        assert np.array_equal(_np(out["label"]), _np(single["label"]))
    # The deterministic twin replays a batch of recorded specs the same way.
    replay = TumorSynthesisd(keys=("image", "label"), organ="liver").apply_items(
        [{**item, SPECS_KEY: out[SPECS_KEY]} for item, out in zip(items, batched)])
    for out, again in zip(batched, replay):
        assert np.array_equal(_np(out["image"]), _np(again["image"]))


def test_apply_items_passes_unselected_and_missing_items_through():
    items = [_item(seed=0), {"image": _item(seed=1)["image"]}, _item(seed=2)]
    t = _transform(prob=0.0, allow_missing_keys=True)
    out = t.apply_items(items, seeds=[1, 2, 3])
    assert [o[SPECS_KEY] for o in out] == [[], [], []]
    assert out[1][REASON_KEY] == "missing key 'label'" and out[0][REASON_KEY].startswith("not selected")
    assert np.array_equal(_np(out[0]["image"]), _np(items[0]["image"]))
    with pytest.raises(ConfigError, match="2 seeds for 3 items"):
        t.apply_items(items, seeds=[1, 2])
    with pytest.raises(ConfigError, match="device must be auto, cpu, cuda"):
        _transform(device="gpu0")
