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
