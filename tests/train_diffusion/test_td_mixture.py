"""A mixture of whole models (``models: K``): K runs from their own seeds, each tumour drawn by the member its
seed names."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from safetensors.numpy import load_file

from tumorsyn.errors import ConfigError, ModelError
from tumorsyn.generators.diffusion.model_folder import clear_cache, load_model, member_index, read_model_config
from tumorsyn.generators.diffusion.sampler import inpaint
from train_diffusion.evaluate import reconstruct
from train_diffusion.train import member_seed, train

from diffusion_helpers import diffusion_spec, phantom_scan, tiny_config, torch_threads

REFINER = ("refiner.steps=2", "refiner.channels=[4,8]", "refiner.batch_size=2", "train.preview_every=0")
WEIGHTS = ("autoencoder.safetensors", "unet.safetensors", "refiner.safetensors")


@pytest.fixture(scope="module")
def mixture_run(tmp_path_factory, phantom_sources):
    """A tiny run of two whole models (master seed 1): ``(config, model folder)``."""
    config = tiny_config(tmp_path_factory.mktemp("mixture") / "run", phantom_sources, *REFINER, "models=2", "seed=1")
    with torch_threads(1):
        return config, train(config, quiet=True)


def _same_weights(a, b, names=WEIGHTS) -> bool:
    for name in names:
        ours, theirs = load_file(str(a / name)), load_file(str(b / name))
        if ours.keys() != theirs.keys() or any(not np.array_equal(ours[k], theirs[k]) for k in ours):
            return False
    return True


def test_a_mixture_run_trains_each_member_from_its_own_seed(mixture_run):
    config, folder = mixture_run
    run = folder.parent
    meta = json.loads((folder / "config.json").read_text())
    assert meta["mixture"] == {"members": ["member_0", "member_1"]}
    assert meta["training"]["member_seeds"] == [2, 3] and meta["training"]["seed"] == 1
    assert "autoencoder" not in meta and meta["data"] == json.loads((folder / "member_0" / "config.json").read_text())["data"]
    for k in range(2):
        member_run = run / f"member_{k}"
        member = json.loads((member_run / "model" / "config.json").read_text())
        assert member["training"]["seed"] == member_seed(1, 2, k) == 2 + k
        assert _same_weights(member_run / "model", folder / f"member_{k}")  # the mixture holds copies of them
        assert not (member_run / "heldout").exists()  # the mixture is evaluated, not its members one by one
    assert not _same_weights(folder / "member_0", folder / "member_1")
    # Runs of neighbouring master seeds share no member; one model is the run's own seed.
    assert {member_seed(0, 2, k) for k in range(2)}.isdisjoint({member_seed(1, 2, k) for k in range(2)})
    assert member_seed(5, 1, 0) == 5


def test_member_k_is_the_single_model_of_its_seed(tmp_path, mixture_run, phantom_sources):
    _, folder = mixture_run
    config = tiny_config(tmp_path / "run", phantom_sources, *REFINER, "seed=3")
    with torch_threads(1):
        single = train(config, quiet=True)
    assert _same_weights(single, folder / "member_1")


def test_each_crop_is_sampled_by_the_member_its_seed_names(mixture_run):
    config, folder = mixture_run
    clear_cache()
    model = load_model(folder, device="cpu")
    assert len(model.members) == 2 and model.has_refiner and model.autoencoder is None
    assert model.crop_size == model.members[0].crop_size
    rng = np.random.default_rng(0)
    size = tuple(config["data"]["crop_size"])
    images = rng.uniform(-0.2, 0.2, (4, *size)).astype(np.float32)
    masks = np.zeros((4, *size), np.float32)
    masks[:, 5:11, 5:11, 5:11] = 1
    seeds = [10, 11, 12, 13]
    mixed = inpaint(model, images, masks, seeds=seeds)
    for k, member in enumerate(model.members):
        idx = [i for i, s in enumerate(seeds) if member_index(s, 2) == k]
        np.testing.assert_array_equal(mixed[idx], inpaint(member, images[idx], masks[idx], seeds=[seeds[i] for i in idx]))
    # Chosen members instead of the seeds' (what --evaluate does, so each member draws its share).
    picked = inpaint(model, images, masks, seeds=seeds, picks=[1, 1, 1, 1])
    np.testing.assert_array_equal(picked, inpaint(model.members[1], images, masks, seeds=seeds))
    with pytest.raises(ValueError, match="picks must name one of the 2 members for each of the 4 crops"):
        inpaint(model, images, masks, seeds=seeds, picks=[0, 2, 0, 0])
    # The autoencoder figure: crop k through member k mod 2.
    recon = reconstruct(model, images)
    np.testing.assert_array_equal(recon[1::2], reconstruct(model.members[1], images[1::2]))


def test_generate_with_a_mixture_writes_what_the_seed_s_member_writes(mixture_run):
    """A spec of the mixture writes exactly the tumour its member's folder writes from the same draw; same seed,
    same bytes."""
    import tumorsyn

    _, folder = mixture_run
    ct, organ, spacing = scan = phantom_scan()
    seen = set()
    for rng in range(4):
        spec = diffusion_spec(scan, folder, rng=rng)
        member = folder / f"member_{member_index(spec.seed, 2)}"
        seen.add(member.name)
        alone = diffusion_spec(scan, member, rng=rng)
        assert alone.seed == spec.seed and alone.params["radii_mm"] == spec.params["radii_mm"]
        out, label = tumorsyn.synthesize(ct, organ, spacing, spec, device="cpu")
        ref, ref_label = tumorsyn.synthesize(ct, organ, spacing, alone, device="cpu")
        assert (out != ct).any()
        np.testing.assert_array_equal(out, ref)
        np.testing.assert_array_equal(label, ref_label)
        again, _ = tumorsyn.synthesize(ct, organ, spacing, spec, device="cpu")
        np.testing.assert_array_equal(out, again)
    assert seen == {"member_0", "member_1"}, "four draws should reach both members"


def test_killed_in_the_first_member_resumes_to_the_same_mixture(tmp_path, mixture_run, phantom_sources):
    _, reference = mixture_run
    config = tiny_config(tmp_path / "run", phantom_sources, *REFINER, "models=2", "seed=1")
    with torch_threads(1):
        assert train(config, quiet=True, stop_at=("ldm", 1)) is None
        assert (tmp_path / "run" / "member_0" / "ldm" / "checkpoints" / "LAST").read_text() == "step_0000001"
        assert not (tmp_path / "run" / "member_1").exists() and not (tmp_path / "run" / "model").exists()
        folder = train(config, quiet=True)
    for k in range(2):
        assert _same_weights(folder / f"member_{k}", reference / f"member_{k}")


def test_bad_mixtures_are_refused_with_one_line(tmp_path, mixture_run, phantom_sources):
    with pytest.raises(ConfigError, match=r"models must be a positive integer \(1 = one model, K > 1 = a mixture of K\), got 0"):
        tiny_config(tmp_path / "a", phantom_sources, "models=0")
    _, folder = mixture_run
    broken = tmp_path / "model"
    shutil.copytree(folder, broken)
    meta = json.loads((folder / "config.json").read_text())

    def refused(config: dict, match: str) -> None:
        (broken / "config.json").write_text(json.dumps(config))
        with pytest.raises(ModelError, match=match):
            read_model_config(broken)

    refused({**meta, "mixture": {"members": ["member_0"]}}, "mixture members must list at least two subfolder names")
    refused({**meta, "mixture": {"members": ["member_0", "../x"]}}, "mixture members must list at least two")
    refused({**meta, "mixture": {"members": ["member_0", "member_2"]}}, "missing mixture member member_2/")
    refused({**meta, "data": {**meta["data"], "crop_size": [8, 8, 8]}},
            "mixture member member_0/ differs from config.json in 'data'")
    (broken / "config.json").write_text(json.dumps(meta))
    shutil.copytree(broken, tmp_path / "outer" / "member_0")
    shutil.copytree(broken, tmp_path / "outer" / "member_1")
    (tmp_path / "outer" / "config.json").write_text(json.dumps(meta))
    with pytest.raises(ModelError, match="mixture member member_0/ is itself a mixture"):
        read_model_config(tmp_path / "outer")


def test_evaluate_gives_the_members_its_samples_in_turn(tmp_path, mixture_run, monkeypatch):
    """--evaluate on a mixture: sample i of the crops' samples (crop-major) is drawn by member i mod K, so each
    member draws its share of every figure."""
    import train_diffusion.evaluate as evaluate

    config, folder = mixture_run
    config = {**config, "output_dir": str(tmp_path / "run")}
    seen = []

    def recording(model, *args, **kwargs):
        seen.append((len(model.members), kwargs.get("picks")))
        return inpaint(model, *args, **kwargs)

    monkeypatch.setattr(evaluate, "inpaint", recording)
    result = evaluate.evaluate_model(config, model_dir=folder, samples=3, steps=2, device="cpu", on="training")
    count = result["crops"] * 3
    assert seen == [(2, [i % 2 for i in range(count)])]
    assert len(result["inpainting"]["per_crop"][0]["samples"]) == 3


def test_export_refuses_members_that_do_not_share_their_settings(tmp_path):
    from train_diffusion.export import export_mixture

    from diffusion_helpers import untrained_model

    first = untrained_model(tmp_path / "a")
    other = untrained_model(tmp_path / "b", "ldm.sampling_steps=5")
    with pytest.raises(ValueError, match=r"differs from .* in 'sampling': a mixture's members share organs, data"):
        export_mixture(tmp_path / "mixture", [first, other], summary={})
    with pytest.raises(ValueError, match="a mixture needs at least two member models"):
        export_mixture(tmp_path / "mixture", [first], summary={})
    assert not (tmp_path / "mixture").exists() and not list(tmp_path.glob(".mixture*"))
