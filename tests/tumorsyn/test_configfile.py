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


def test_real_data_folder_comes_from_the_option_the_environment_or_beside_the_checkout(tmp_path, monkeypatch):
    """Issue 16: ``${REAL}`` no longer needs the checkout beside ../shared/data/real."""
    from tumorsyn.configfile import REPO_ROOT, expand_path, real_data_dir

    monkeypatch.delenv("TUMORSYN_REAL_DATA", raising=False)
    assert real_data_dir() == (REPO_ROOT.parent / "shared" / "data" / "real", "the default beside the checkout")
    assert expand_path("${REAL}/a.nii.gz", tmp_path) == str(REPO_ROOT.parent / "shared" / "data" / "real" / "a.nii.gz")
    monkeypatch.setenv("TUMORSYN_REAL_DATA", str(tmp_path / "env"))
    assert expand_path("${REAL}/3dircadb1/ct.nii.gz", tmp_path) == str(tmp_path / "env" / "3dircadb1" / "ct.nii.gz")
    assert expand_path("${REAL}/a", tmp_path, real_data=tmp_path / "opt") == str(tmp_path / "opt" / "a")  # option wins
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TUMORSYN_REAL_DATA", "relative/real")  # taken from the current folder
    assert real_data_dir() == (tmp_path / "relative" / "real", "$TUMORSYN_REAL_DATA")
    assert expand_path("scans/x.nii.gz", tmp_path / "cfg") == str(tmp_path / "cfg" / "scans" / "x.nii.gz")


def test_a_missing_path_under_real_names_the_folder_and_how_to_set_it(tmp_path, monkeypatch):
    from tumorsyn.configfile import need_path

    root = tmp_path / "real"
    monkeypatch.setenv("TUMORSYN_REAL_DATA", str(root))
    value = str(root / "3dircadb1" / "3Dircadb1.1" / "ct.nii.gz")
    with pytest.raises(ConfigError) as info:
        need_path(value, "cfg.yaml", "data.tumor_sources[0].ct")
    message = str(info.value)
    assert message == (f"cfg.yaml: data.tumor_sources[0].ct {value} not found: the real-data folder ${{REAL}} = "
                       f"{root} ($TUMORSYN_REAL_DATA) does not exist; set TUMORSYN_REAL_DATA=DIR or pass "
                       "--real-data DIR, DIR being the folder that holds the real scans")
    (root / "3dircadb1").mkdir(parents=True)
    with pytest.raises(ConfigError, match=r"\(\$TUMORSYN_REAL_DATA\) has no 3dircadb1/3Dircadb1.1; set TUMORSYN_REAL"):
        need_path(value, "cfg.yaml", "data.tumor_sources[0].ct")
    with pytest.raises(ConfigError, match=r"\(--real-data\) does not exist"):
        need_path(str(tmp_path / "opt" / "a.nii.gz"), "cfg.yaml", "ct", real_data=tmp_path / "opt")
    elsewhere = tmp_path / "elsewhere.nii.gz"  # not under ${REAL}: the plain message
    with pytest.raises(ConfigError) as info:
        need_path(str(elsewhere), "cfg.yaml", "data.healthy.dataset", hint="missing dataset path")
    assert str(info.value) == f"cfg.yaml: data.healthy.dataset {elsewhere} not found (missing dataset path)"
    need_path(str(root / "3dircadb1"), "cfg.yaml", "dataset")  # present: no error
