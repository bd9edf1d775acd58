"""Nested configs: merge over defaults and --set overrides, with unknown keys refused by name."""
import pytest

from tumorsyn.configfile import apply_overrides, merge_config
from tumorsyn.errors import ConfigError

DEFAULTS = {"train": {"epochs": 1, "lr": 0.1}, "network": {"name": "unet", "kwargs": {}}}


def test_merge_keeps_defaults_and_refuses_unknown_keys():
    out = merge_config(DEFAULTS, {"train": {"epochs": 5}}, path="run.yaml", free_form=["network.kwargs"])
    assert out == {"train": {"epochs": 5, "lr": 0.1}, "network": {"name": "unet", "kwargs": {}}}
    assert DEFAULTS["train"]["epochs"] == 1                   # defaults untouched
    with pytest.raises(ConfigError, match=r"run.yaml: unknown key 'train.epoch'"):
        merge_config(DEFAULTS, {"train": {"epoch": 5}}, path="run.yaml")
    with pytest.raises(ConfigError, match="train must be a mapping"):
        merge_config(DEFAULTS, {"train": 3}, path="run.yaml")
    free = merge_config(DEFAULTS, {"network": {"kwargs": {"channels": [8, 16]}}}, path="x", free_form=["network.kwargs"])
    assert free["network"]["kwargs"] == {"channels": [8, 16]}


def test_overrides_parse_yaml_and_name_bad_keys():
    out = apply_overrides(DEFAULTS, ["train.lr=0.01", "network.kwargs.depth=3"], free_form=["network.kwargs"])
    assert out["train"]["lr"] == 0.01 and out["network"]["kwargs"] == {"depth": 3}
    with pytest.raises(ConfigError, match="unknown key 'network.kwargs.depth'"):
        apply_overrides(DEFAULTS, ["network.kwargs.depth=3"])  # not free form here
    with pytest.raises(ConfigError, match="is not key=value"):
        apply_overrides(DEFAULTS, ["train.lr"])
    with pytest.raises(ConfigError, match="unknown key 'model'"):
        apply_overrides(DEFAULTS, ["model.x=1"])


def test_read_config_names_the_file_and_the_problem(tmp_path):
    from tumorsyn.configfile import read_config

    good = tmp_path / "run.yaml"
    good.write_text("train: {epochs: 3}\n")
    name, data, base = read_config(good)
    assert name == str(good) and data == {"train": {"epochs": 3}} and base == tmp_path
    with pytest.raises(ConfigError, match="missing.yaml: config file not found"):
        read_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [1, 2\n")
    with pytest.raises(ConfigError, match="bad.yaml: not valid YAML"):
        read_config(bad)
    listy = tmp_path / "list.yaml"
    listy.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        read_config(listy)
    with pytest.raises(ConfigError, match=r"no config given; pass a YAML file \(see here\)"):
        read_config(None, hint="see here")
