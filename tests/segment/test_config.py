"""Config validation: clear one-line errors naming the file and the key."""
from __future__ import annotations

import pytest
import yaml

from tumorsyn.errors import ConfigError

from segment.config import load_config
from segment_helpers import tiny_config


def _write(tmp_path, data):
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_defaults_and_overrides(tmp_path):
    path = _write(tmp_path, tiny_config(tmp_path))
    config = load_config(path, ["train.epochs=3", "synthesis.size_mm=[5, 20]", "network.kwargs.dropout=0.1"])
    assert config["train"]["epochs"] == 3
    assert config["synthesis"]["size_mm"] == [5, 20]
    assert config["network"]["kwargs"]["dropout"] == 0.1
    assert config["predict"]["overlap"] == 0.5  # default filled in


@pytest.mark.parametrize("change, words", [
    ({"network": {"name": "resnet"}}, ["unknown network 'resnet'", "unet"]),
    ({"data": {"healthy": {"dataset": "/nonexistent/Task03"}}}, ["missing dataset path", "/nonexistent/Task03"]),
    ({"data": {"real": {"label_preset": "kits"}}}, ["label preset mismatch", "kits"]),
    ({"train": {"mixed_precision": "fp8"}}, ["train.mixed_precision", "bf16"]),
    ({"trian": {}}, ["unknown key 'trian'"]),
    ({"synthesis": {"method": "nope"}}, ["synthesis.method", "rules"]),
    # A bin that is not ((low, high), weight) is a one-line config error, not a traceback.
    ({"synthesis": {"size_mm": [[5, 10, 3]]}}, ["synthesis.size_mm", "is not ((low_mm, high_mm), weight)"]),
    ({"train": {"batch_dice": "yes"}}, ["train.batch_dice", "true or false"]),
    ({"train": {"threads": 0}}, ["train.threads", "positive integer"]),
])
def test_bad_config_names_file_and_key(tmp_path, change, words):
    data = tiny_config(tmp_path)
    for section, value in change.items():
        if isinstance(value, dict) and isinstance(data.get(section), dict):
            for k, v in value.items():
                if isinstance(v, dict) and isinstance(data[section].get(k), dict):
                    data[section][k].update(v)
                else:
                    data[section][k] = v
        else:
            data[section] = value
    path = _write(tmp_path, data)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert "\n" not in message and str(path) in message
    for word in words:
        assert word in message


def test_bad_override(tmp_path):
    path = _write(tmp_path, tiny_config(tmp_path))
    with pytest.raises(ConfigError, match="unknown key 'train.epoch'"):
        load_config(path, ["train.epoch=2"])
    with pytest.raises(ConfigError, match="not key=value"):
        load_config(path, ["train.epochs"])


def test_empty_dataset(tmp_path):
    from segment.data import load_sources

    data = tiny_config(tmp_path)
    data["data"]["healthy"]["cases"] = []
    data["data"]["real"]["cases"] = []
    config = load_config(None, data=data)
    with pytest.raises(ConfigError, match="empty dataset"):
        load_sources(config)


def test_label_preset_mismatch_at_load(tmp_path):
    """A preset that finds no organ voxels in a label map says so, naming the file."""
    from segment.data import load_sources

    data = tiny_config(tmp_path)
    data["data"]["healthy"]["label_preset"] = "totalsegmentator"  # phantoms use label 1, TS liver is 5
    config = load_config(None, data=data)
    with pytest.raises(ConfigError, match="label preset mismatch") as info:
        load_sources(config)
    assert "h0_labels.nii.gz" in str(info.value)


def test_real_data_from_the_environment_or_the_option(tmp_path, monkeypatch, capsys):
    """Issue 16: a config reading ``${REAL}/...`` works from any clone (TUMORSYN_REAL_DATA or --real-data);
    a missing real-data folder stops `segment train` with one line naming it and both ways to set it."""
    from tumorsyn.cli.main import main

    data = tiny_config(tmp_path)
    root = str(tmp_path / "data")
    path = _write(tmp_path, yaml.safe_load(yaml.safe_dump(data).replace(root, "${REAL}")))
    assert "${REAL}/h0_ct.nii.gz" in path.read_text()
    monkeypatch.delenv("TUMORSYN_REAL_DATA", raising=False)
    assert load_config(path, real_data=root)["data"]["healthy"]["cases"][0]["ct"] == data["data"]["healthy"]["cases"][0]["ct"]
    monkeypatch.setenv("TUMORSYN_REAL_DATA", root)
    assert load_config(path)["data"]["real"]["cases"] == data["data"]["real"]["cases"]
    missing = tmp_path / "nowhere"
    assert main(["segment", "train", str(path), "--real-data", str(missing)]) == 1
    err = capsys.readouterr().err.strip()
    assert (f"{path}: data.real.cases[0].ct {missing}/r0_ct.nii.gz not found: the real-data folder ${{REAL}} = "
            f"{missing} (--real-data) does not exist; set TUMORSYN_REAL_DATA=DIR or pass --real-data DIR") in err
    assert len(err.splitlines()) == 1 and not (tmp_path / "run").exists()
