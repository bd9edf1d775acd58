"""Experiment end to end on CPU with phantoms: arms trained, test scans predicted, evaluated, compared."""
from __future__ import annotations

import json

from segment.config import load_config
from segment.experiment import run_experiment
from segment_helpers import tiny_config, write_case


def test_experiment_end_to_end(tmp_path):
    data = tiny_config(tmp_path, steps=1)
    test_case = write_case(tmp_path / "test", "t0", seed=21, tumor=True)
    data["experiment"] = {"test": {"cases": [test_case], "label_preset": "decathlon"},
                          "arms": {"organ_only": {"baseline": "organ_only"},
                                   "synthetic": {"overrides": {"data": {"real": {"weight": 0.0}}}}}}
    out = run_experiment(load_config(None, data=data), quiet=True)
    report = json.loads((out / "report.json").read_text())
    assert set(report["arms"]) == {"organ_only", "synthetic"}
    baseline = report["arms"]["organ_only"]["summary"]["lesion_sensitivity"]["overall"]
    assert baseline["n"] == 1 and baseline["k"] == 1  # the organ covers the phantom tumour
    assert (out / "arms" / "synthetic" / "report" / "report.md").is_file()
    assert list((out / "compare").glob("organ_only_vs_synthetic/compare.json"))
    text = (out / "report.md").read_text()
    assert "| organ_only |" in text and "| synthetic |" in text


def test_demo_config_is_valid_and_asks_for_an_output_folder(tmp_path):
    """The CPU demo config validates (its real-scan paths are checked only when the scans are here). It names no
    output folder: it used to write to a fixed /tmp folder and resume whatever run was there."""
    import pytest

    from tests.conftest import REAL, REPO
    from tumorsyn.errors import ConfigError

    path = REPO / "configs" / "segment" / "demo_cpu.yaml"
    with pytest.raises(ConfigError, match=r"demo_cpu.yaml: output_dir is not set \(this config leaves the output "
                                          r"folder to you\); give --out DIR"):
        load_config(path, check_files=False)
    config = load_config(path, [f"output_dir={tmp_path / 'demo'}"], check_files=REAL.exists())
    assert config["synthesis"]["apply_to"] == ["healthy"] and config["data"]["real"]["weight"] == 0.0
    assert config["output_dir"] == str(tmp_path / "demo")


def test_ready_configs_validate():
    import pytest

    from tests.conftest import REPO
    from tumorsyn.errors import ConfigError

    from segment.data import load_sources

    for name in ("msd_task03_liver", "msd_task07_pancreas", "kidney_tumour"):
        config = load_config(REPO / "configs" / "segment" / f"{name}.yaml")
        with pytest.raises(ConfigError, match="empty dataset"):  # the user's paths are still to be given
            load_sources(config)
