"""Data pipeline: synthesis runs inside DataLoader workers and items carry their specs."""
from __future__ import annotations

import json

import numpy as np

from segment.config import load_config
from segment.data import TrainSamples, build_train_transform, load_sources, make_train_loader
from segment_helpers import tiny_config


def test_synthesis_runs_in_workers_and_items_carry_specs(tmp_path):
    config = load_config(None, data=tiny_config(tmp_path, workers=1))
    items = load_sources(config)
    dataset = TrainSamples(items, build_train_transform(config), seed=1, weights={"real": 0.0, "healthy": 1.0})
    loader = make_train_loader(dataset, start=0, stop=3, batch_size=1, workers=1)
    batches = list(loader)
    assert len(batches) == 3
    for batch in batches:
        assert all(int(w) == 0 for w in batch["worker"])  # made in worker 0, not in the main process
        specs = [json.loads(s) for s in batch["tumor_specs"]]
        assert all(len(s) == 1 and s[0]["organ"] == "liver" for s in specs)
        assert batch["image"].shape[1:] == (1, 24, 24, 16)
        assert float(batch["image"].min()) >= 0.0 and float(batch["image"].max()) <= 1.0


def test_sample_is_function_of_seed_and_index(tmp_path):
    config = load_config(None, data=tiny_config(tmp_path))
    items = load_sources(config)
    a = TrainSamples(items, build_train_transform(config), seed=5)
    b = TrainSamples(items, build_train_transform(config), seed=5)
    for k in (4, 0, 4):
        x, y = a[k][0], b[k][0]
        assert np.array_equal(np.asarray(x["image"]), np.asarray(y["image"]))
        assert x["tumor_specs"] == y["tumor_specs"]


def test_real_cases_keep_their_tumour_and_are_not_synthesised(tmp_path):
    config = load_config(None, data=tiny_config(tmp_path))
    items = load_sources(config)
    real = [it for it in items if it["source"] == "real"][0]
    assert (np.asarray(real["label"]) == 2).any() and (np.asarray(real["label"]) == 1).any()
    dataset = TrainSamples(items, build_train_transform(config), seed=0, weights={"real": 1.0, "healthy": 0.0})
    out = dataset[0][0]
    assert out["source"] == "real" and json.loads(out["tumor_specs"]) == []


def _synthesis(cache_key=None):
    from tumorsyn.transforms import RandTumorSynthesisd

    return RandTumorSynthesisd(keys=("image", "label"), organ="liver", label_preset="decathlon", tumor_label=2,
                               size_mm=[[[6, 10], 1.0]], prob=1.0, count=2, specs_as_json=True, cache_key=cache_key)


def test_synthesis_cache_gives_the_uncached_result(tmp_path):
    """Per-scan placement facts cached per process: same specs and voxels as without the cache."""
    config = load_config(None, data=tiny_config(tmp_path))
    items = [it for it in load_sources(config) if it["source"] == "healthy"]
    plain, cached = _synthesis(), _synthesis(cache_key="scan")
    for seed in range(6):
        item = dict(items[seed % 2], scan=items[seed % 2]["case_id"])
        a = plain.set_random_state(seed=seed)(dict(item))
        b = cached.set_random_state(seed=seed)(dict(item))
        assert a["tumor_specs"] == b["tumor_specs"] and len(json.loads(a["tumor_specs"])) == 2
        assert np.array_equal(np.asarray(a["image"]), np.asarray(b["image"]))
        assert np.array_equal(np.asarray(a["label"]), np.asarray(b["label"]))
        assert np.array_equal(np.asarray(item["label"]), np.asarray(items[seed % 2]["label"]))  # input untouched
    assert len(cached._cache) == 2
    # The same key on other voxels is not trusted: the entry is rebuilt from the new scan.
    other = dict(items[1], scan=items[0]["case_id"])
    c = cached.set_random_state(seed=1)(dict(other))
    d = plain.set_random_state(seed=1)(dict(items[1]))
    assert c["tumor_specs"] == d["tumor_specs"]


def test_cached_context_copies_do_not_share_avoid(tmp_path):
    from tumorsyn.placement import PlacementContext
    from tests.conftest import make_phantom

    ct, organ, spacing = make_phantom(seed=2)
    base = PlacementContext(organ, spacing, "liver", ct_hu=ct)
    one, two = base.with_avoid(), base.with_avoid()
    one.add_avoid((slice(30, 34), slice(30, 34), slice(18, 22)), np.ones((4, 4, 4), bool))
    assert one.avoid.any() and not two.avoid.any() and not base.avoid.any()
    assert one.organ_stats == base.organ_stats and one.max_depth_mm == base.max_depth_mm


def test_class_indices_after_synthesis_match_a_fresh_count(tmp_path):
    """Patch centres come from cached per-class indices corrected for the tumours just written."""
    from segment.data import BASE_INDICES_KEY, INDICES_KEY, _ClassIndicesd, class_indices

    config = load_config(None, data=tiny_config(tmp_path))
    items = load_sources(config)
    dataset = TrainSamples(items, build_train_transform(config), seed=0, roi_size=config["data"]["roi_size"])
    synth = _synthesis()
    for index, item in enumerate(dataset.items):
        out = synth.set_random_state(seed=index)(dict(item))
        label = np.asarray(out["label"])
        corrected = _ClassIndicesd()({**out, BASE_INDICES_KEY: dataset.indices[index]})[INDICES_KEY]
        fresh = class_indices(label)
        assert all(np.array_equal(a, b) for a, b in zip(corrected, fresh))
        assert len(fresh[2]) > 0  # a tumour class to centre patches on
    for item in dataset.items:  # padded once to the patch size
        assert all(n >= r for n, r in zip(item["image"].shape[1:], config["data"]["roi_size"]))


def test_scans_smaller_than_the_patch_are_padded_once(tmp_path):
    data = tiny_config(tmp_path)
    data["data"]["roi_size"] = [40, 40, 32]  # larger than the phantoms' organ crop at 2 mm
    config = load_config(None, data=data)
    items = load_sources(config)
    assert any(s < r for it in items for s, r in zip(it["image"].shape[1:], (40, 40, 32)))
    dataset = TrainSamples(items, build_train_transform(config), seed=0, roi_size=config["data"]["roi_size"])
    for item, before in zip(dataset.items, items):
        assert tuple(item["image"].shape[1:]) == tuple(max(s, r) for s, r in zip(before["image"].shape[1:], (40, 40, 32)))
        assert item["label"].shape == item["image"].shape
    for k in range(3):
        out = dataset[k][0]
        assert tuple(out["image"].shape) == (1, 40, 40, 32) and (np.asarray(out["label"]) == 2).any()


def test_batched_on_device_writes_a_batch_of_tumours_in_one_call(tmp_path):
    """synthesis.batched_on_device: a DataLoader batch's tumours in one generator call, in the training process."""
    from tests.conftest import register_batching_rules

    from segment.data import build_synthesis

    calls = register_batching_rules("rules_batching_segment_test")

    config = load_config(None, data=tiny_config(tmp_path, synthesis__method="rules_batching_segment_test",
                                                synthesis__batched_on_device=True))
    items = load_sources(config)
    dataset = TrainSamples(items, build_train_transform(config, synthesis=False), seed=2,
                           weights={"real": 0.0, "healthy": 1.0}, synthesis=build_synthesis(config, device="cpu"))
    batches = list(make_train_loader(dataset, start=0, stop=6, batch_size=3, workers=0))
    assert calls == [3, 3]
    for batch in batches:
        assert all(int(w) == -1 for w in batch["worker"])  # made in the training process
        assert all(len(json.loads(s)) == 1 for s in batch["tumor_specs"])
    # A sample depends on (seed, k) only, not on the batch it came in.
    alone = dataset[4][0]
    assert np.array_equal(np.asarray(alone["image"]), np.asarray(batches[1]["image"][1]))
    assert alone["tumor_specs"] == batches[1]["tumor_specs"][1]


def test_batched_on_device_config_is_checked(tmp_path):
    import pytest

    from tumorsyn.errors import ConfigError

    with pytest.raises(ConfigError, match="synthesis.batched_on_device must be true or false"):
        load_config(None, data=tiny_config(tmp_path, synthesis__batched_on_device="yes"))


def test_worker_synthesis_stays_on_the_cpu(tmp_path):
    """DataLoader workers never get a CUDA device (a forked worker cannot initialise CUDA)."""
    from segment.data import _SynthesisForSources, build_synthesis

    config = load_config(None, data=tiny_config(tmp_path))
    synth = [t for t in build_train_transform(config).transforms if isinstance(t, _SynthesisForSources)]
    assert len(synth) == 1 and synth[0].transform.device == "cpu"
    assert build_synthesis(config, device="cuda:1").transform.device == "cuda:1"
