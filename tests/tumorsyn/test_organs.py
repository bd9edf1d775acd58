"""The organ registry is the one place that knows organs: every choice, preset and check comes from it."""
from __future__ import annotations

import argparse
import copy
import json
import sys
from pathlib import Path

import pytest

from tumorsyn import priors
from tumorsyn.cli.main import build_parser
from tumorsyn.errors import ConfigError
from tumorsyn.io import labels as io_labels
from tumorsyn.organs import (APPEARANCES, LABEL_CONVENTIONS, LABEL_PRESETS, ORGAN_PRESETS, ORGANS, PRESET_VALUES,
                             get_preset, join_names)

REPO = Path(__file__).resolve().parents[2]


def _option(parser: argparse.ArgumentParser, path: tuple[str, ...], flag: str) -> argparse.Action:
    """The action of ``flag`` in the subcommand reached by ``path`` (e.g. ``("reader-study", "build")``)."""
    for name in path:
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        parser = sub.choices[name]
    return next(a for a in parser._actions if flag in a.option_strings)


@pytest.mark.parametrize("path, flag", [(("generate",), "--organ"), (("reader-study", "build"), "--real-organ"),
                                        (("realism",), "--organ")])
def test_every_organ_choice_is_the_registry(path, flag):
    assert tuple(_option(build_parser(), path, flag).choices) == ORGANS


@pytest.mark.parametrize("path", [("generate",), ("realism",)])
def test_every_label_preset_choice_is_the_registry(path):
    assert tuple(_option(build_parser(), path, "--label-preset").choices) == ("auto", *LABEL_CONVENTIONS)


def test_appearance_choices_are_the_registry():
    assert tuple(_option(build_parser(), ("generate",), "--appearance").choices) == (*APPEARANCES, "mix")


def test_the_exophytic_help_states_each_organs_rule():
    help_text = _option(build_parser(), ("generate",), "--exophytic").help % {}
    assert "30% of kidney tumours; none in other organs" in help_text


def test_existing_organs_keep_their_label_values():
    # The values these presets had before the registry (outputs of existing runs depend on them).
    before = {
        "totalsegmentator": {"liver": (5,), "pancreas": (7,), "kidney": (2, 3), "lesion": ()},
        "decathlon": {"liver": (1, 2), "pancreas": (1, 2), "kidney": (1, 2), "lesion": (2,)},
        "kits": {"kidney": (1, 2, 3), "lesion": (2, 3)},
        "binary": {"liver": (), "pancreas": (), "kidney": (), "lesion": ()},
    }
    for preset, values in before.items():
        assert {k: v for k, v in LABEL_PRESETS[preset].items() if k != "spleen"} == values
    assert PRESET_VALUES == {"totalsegmentator": frozenset(range(1, 118)), "decathlon": frozenset({1, 2}),
                             "kits": frozenset({1, 2, 3}), "binary": None}
    assert io_labels.LABEL_PRESETS is LABEL_PRESETS and io_labels.ORGANS == ORGANS


def test_spleen_label_values():
    assert LABEL_PRESETS["totalsegmentator"]["spleen"] == (1,)
    assert LABEL_PRESETS["binary"]["spleen"] == ()
    assert "spleen" not in LABEL_PRESETS["kits"]


@pytest.mark.parametrize("organ", ORGANS)
def test_registry_entry_is_consistent(organ):
    preset = get_preset(organ)
    assert preset.name == organ
    lo, hi = preset.host_hu
    assert preset.phase_hu, "state the organ's parenchyma HU per contrast phase"
    for phase, (a, b) in preset.phase_hu.items():
        assert lo < a <= b < hi, f"{organ} {phase} {a}..{b} HU lies outside host_hu {lo}..{hi}"
    assert lo > -100.0, "a label lying on fat (about -100 HU) must stay implausible"
    assert set(preset.appearance) <= set(APPEARANCES) and sum(preset.appearance.values()) == pytest.approx(1.0)
    assert 0.0 <= preset.exophytic_probability <= 1.0 and preset.margin_mm >= 0.0
    assert 0.0 < preset.min_inside_fraction <= 1.0
    assert preset.label_values and set(preset.label_values) <= set(LABEL_CONVENTIONS)
    for name, values in preset.label_values.items():
        allowed = PRESET_VALUES[name]
        assert (values == ()) if allowed is None else (values and set(values) <= allowed)


@pytest.mark.parametrize("organ", ORGANS)
def test_every_organ_has_priors(organ):
    # A new organ needs a prior entry (or a fallback) in tumour_priors.json, else sampling fails.
    for size in (10.0, 30.0):
        for name in ("elongation", "flatness", "solidity", "contrast_noise", "internal_iqr_noise", "edge_sharpness"):
            q = priors.prior_quantiles(organ, size, name)
            assert len(q) == 5 and q == sorted(q)


def test_shipped_priors_name_exactly_the_registry_organs():
    assert tuple(priors.load_priors()["organs"]) == ORGANS


def test_a_refit_keeps_the_borrowed_priors(monkeypatch):
    # benchmarks/fit_priors.py writes tumour_priors.json: its borrowed entries must be the shipped ones.
    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))
    sys.modules.pop("fit_priors", None)
    import fit_priors

    shipped = json.loads((REPO / "tumorsyn" / "data" / "tumour_priors.json").read_text())["organs"]
    assert set(fit_priors.BORROWED) == {"kidney", "spleen"}
    for organ, note in fit_priors.BORROWED.items():
        for cls in ("early", "large"):
            assert shipped[organ][cls] == {"quantiles": {}, "n": {}, "sources": [], "fallback": {"*": f"liver/{cls}"},
                                           "note": note}
    assert "liver priors" in shipped["spleen"]["early"]["note"]


def test_unknown_organ_names_every_known_one():
    with pytest.raises(ConfigError, match="unknown organ 'lung'; choose one of liver, pancreas, kidney, spleen"):
        get_preset("lung")
    with pytest.raises(ConfigError, match="choose one of liver, pancreas, kidney, spleen"):
        io_labels.organ_label_values("lung", "binary", None)


def test_join_names():
    assert join_names(["liver"]) == "liver"
    assert join_names(ORGANS) == "liver, pancreas, kidney or spleen"


def test_the_auto_refusal_lists_every_convention():
    with pytest.raises(ConfigError, match=r"fit no label preset for the spleen \(binary: one non-zero value; "
                                          r"decathlon: 1 organ, 2 tumour; kits: 1 kidney, 2 tumour, 3 cyst; "
                                          r"totalsegmentator: 1-117 with the spleen's own labels\)"):
        io_labels.choose_label_preset({200, 300}, "spleen")


def test_auto_preset_for_the_spleen():
    # The TotalSegmentator example holds values up to 114: only totalsegmentator fits, spleen = 1.
    assert io_labels.choose_label_preset({1, 2, 3, 5, 7, 114}, "spleen") == "totalsegmentator"
    # A binary spleen mask (3D-IRCADb masks/spleen.nii.gz stores 255): binary.
    assert io_labels.choose_label_preset({255}, "spleen") == "binary"
    # KiTS values never host a spleen.
    assert "kits" not in io_labels.fitting_presets({1, 2, 3}, "spleen")


def test_config_checks_accept_every_registry_organ():
    from segment import config as segment_config
    from train_diffusion import config as td_config

    for organ in ORGANS:
        c = copy.deepcopy(td_config.DEFAULTS)
        c["organ"] = organ
        td_config.validate_config(c, check_files=False, need_data=False)
    c = copy.deepcopy(td_config.DEFAULTS)
    c["organ"] = "lung"
    with pytest.raises(ConfigError, match="organ must be liver, pancreas, kidney, spleen or pooled, got 'lung'"):
        td_config.validate_config(c, check_files=False, need_data=False)
    c = copy.deepcopy(segment_config.DEFAULTS)
    c["organ"] = "spleen"
    segment_config.validate_config(c, check_files=False)


def test_reader_study_sources_accept_the_spleen(tmp_path):
    from reader_study.cases import read_real_sources

    (tmp_path / "ct.nii.gz").touch()
    (tmp_path / "m.nii.gz").touch()
    table = tmp_path / "real.csv"
    table.write_text("ct,mask,organ\nct.nii.gz,m.nii.gz,spleen\n")
    (source,) = read_real_sources(table)
    assert source.organ == "spleen"
