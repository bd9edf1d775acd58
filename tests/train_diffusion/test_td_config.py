"""Diffusion training configs: defaults, overrides, and bad values as one-line errors naming the key."""
from __future__ import annotations

import pytest

from tumorsyn.errors import ConfigError
from train_diffusion.config import DEFAULTS, apply_overrides, load_config

from diffusion_helpers import TINY, tiny_config


def test_overrides_and_defaults(tmp_path, phantom_sources):
    config = tiny_config(tmp_path / "run", phantom_sources, "ldm.steps=7", "ldm.prediction_type=flow", "ldm.sampler=euler")
    assert config["ldm"]["steps"] == 7 and config["ldm"]["prediction_type"] == "flow"
    assert config["data"]["hu_window"] == DEFAULTS["data"]["hu_window"]  # untouched keys keep defaults
    assert config["output_dir"] == str(tmp_path / "run")
    assert config["data"]["tumor_sources"][0]["organ"] == "liver"


@pytest.mark.parametrize("override, needle", [
    ("ldm.stepz=3", "unknown key 'ldm.stepz'"),
    ("data.crop_size=[18, 16, 16]", "divisible by 2"),
    ("ldm.prediction_type=flow", "does not fit prediction_type flow"),
    ("ldm.sampler=euler", "does not fit prediction_type epsilon"),
    ("data.hu_window=[250, -175]", "data.hu_window"),
    ("autoencoder.kind=vqgan", "autoencoder.kind must be kl"),
    ("train.mixed_precision=fp32", "train.mixed_precision"),
    ("data.max_diameter_mm=0", "data.max_diameter_mm"),
    ("organ=lung", "organ must be"),
    ("ldm.channels=[8, 8, 8, 8, 8]", "latent grid [8, 8, 8] must be divisible by 16"),
])
def test_bad_values_name_the_key(tmp_path, phantom_sources, override, needle):
    extra = ["ldm.attention_levels=[false, false, false, false, false]"] if override.startswith("ldm.channels") else []
    with pytest.raises(ConfigError) as info:
        tiny_config(tmp_path / "run", phantom_sources, override, *extra)
    message = str(info.value)
    assert needle in message and "\n" not in message and "tiny_test.yaml" in message


def test_bad_files_and_sources(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("data: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    with pytest.raises(ConfigError, match="data.tumor_sources is empty"):
        load_config(TINY)
    with pytest.raises(ConfigError, match=r"tumor_sources\[0\].ct .*nope.nii.gz not found"):
        tiny_config(tmp_path / "run", [{"ct": str(tmp_path / "nope.nii.gz"), "labels": str(tmp_path / "l.nii.gz")}])
    with pytest.raises(ConfigError, match="either dataset or ct"):
        tiny_config(tmp_path / "run", [{"labels": "x"}])
    with pytest.raises(ConfigError, match="not key=value"):
        apply_overrides(DEFAULTS, ["ldm.steps"])


def test_pooled_and_per_organ_models(tmp_path, phantom_sources):
    from train_diffusion.export import model_config

    liver = tiny_config(tmp_path / "a", phantom_sources)
    assert model_config(liver, scale_factor=1.0)["organs"] == ["liver"]
    mixed = [dict(phantom_sources[0], organ="liver"), dict(phantom_sources[1], organ="kidney")]
    pooled = tiny_config(tmp_path / "b", mixed, "organ=pooled")
    assert model_config(pooled, scale_factor=1.0)["organs"] == ["kidney", "liver"]
    with pytest.raises(ConfigError, match=r"tumor_sources\[1\] is kidney but the model's organ is liver"):
        tiny_config(tmp_path / "c", mixed)


def test_real_data_from_the_environment_or_the_option(tmp_path, phantom_sources, monkeypatch, capsys):
    """Issue 16: configs reading ``${REAL}/...`` (the bundled ones) work from any clone: TUMORSYN_REAL_DATA
    or --real-data; a missing real-data folder stops `train-diffusion` with one line naming it."""
    from pathlib import Path

    import yaml

    from tumorsyn.cli.main import main

    root = Path(phantom_sources[0]["ct"]).parents[1]
    path = tmp_path / "real.yaml"
    text = yaml.safe_dump({"data": {"tumor_sources": phantom_sources}}).replace(str(root), "${REAL}")
    path.write_text(text)
    assert "${REAL}/case0/ct.nii.gz" in text
    monkeypatch.delenv("TUMORSYN_REAL_DATA", raising=False)
    assert load_config(path, real_data=root)["data"]["tumor_sources"][0]["ct"] == phantom_sources[0]["ct"]
    monkeypatch.setenv("TUMORSYN_REAL_DATA", str(root))
    assert load_config(path)["data"]["tumor_sources"][1]["tumor"] == phantom_sources[1]["tumor"]
    missing = tmp_path / "nowhere"
    assert main(["train-diffusion", str(path), "--real-data", str(missing), "--out", str(tmp_path / "run")]) == 1
    err = capsys.readouterr().err.strip()
    assert (f"{path}: data.tumor_sources[0].ct {missing}/case0/ct.nii.gz not found: the real-data folder ${{REAL}} = "
            f"{missing} (--real-data) does not exist; set TUMORSYN_REAL_DATA=DIR or pass --real-data DIR") in err
    assert len(err.splitlines()) == 1 and not (tmp_path / "run").exists()
