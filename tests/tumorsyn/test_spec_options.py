"""Options a generator does not take are refused, by name, with the valid ones listed (never dropped)."""
from __future__ import annotations

import pytest

import tumorsyn
from tumorsyn.errors import ConfigError
from tests.conftest import make_phantom


@pytest.fixture(scope="module")
def liver():
    return make_phantom(organ_hu=60.0)


def test_a_misspelled_option_is_named_with_the_valid_ones(liver):
    ct, organ, spacing = liver
    with pytest.raises(ConfigError, match=r"method 'rules' does not take the option 'apperance'; it takes: .*appearance"):
        tumorsyn.sample_spec(organ, spacing, organ="liver", size_mm=(8, 12), ct_hu=ct, rng=0, apperance="rim")


def test_another_generators_option_is_refused(liver):
    pytest.importorskip("numba")
    ct, organ, spacing = liver
    with pytest.raises(ConfigError, match=r"method 'ca' does not take the option 'appearance' \(an option of rules\)"):
        tumorsyn.sample_spec(organ, spacing, organ="liver", method="ca", size_mm=(8, 12), ct_hu=ct, rng=0,
                             appearance="rim")
    # The automaton's step count follows the size: a fixed one would be overwritten without a word.
    with pytest.raises(ConfigError, match=r"'steps' \(an option of diffusion\)"):
        tumorsyn.sample_spec(organ, spacing, organ="liver", method="ca", size_mm=(8, 12), ct_hu=ct, rng=0, steps=5)


def test_options_that_apply_still_work(liver):
    ct, organ, spacing = liver
    spec = tumorsyn.sample_spec(organ, spacing, organ="liver", size_mm=(8, 12), ct_hu=ct, rng=0, appearance="rim",
                                texture_amount=0.2)
    assert spec.params["appearance"] == "rim" and spec.params["texture_amount"] == 0.2
    # None means "not given" (a config may leave an option empty).
    assert tumorsyn.sample_spec(organ, spacing, organ="liver", size_mm=(8, 12), ct_hu=ct, rng=0, appearance=None,
                                capsule=None)


def test_the_transform_refuses_bad_options_when_built():
    pytest.importorskip("monai")
    from tumorsyn.transforms import RandTumorSynthesisd

    with pytest.raises(ConfigError, match=r"RandTumorSynthesisd: method 'rules' does not take the option 'apperance'"):
        RandTumorSynthesisd(keys=("image", "label"), organ="liver", apperance="rim")
    with pytest.raises(ConfigError, match=r"it takes: .*allow_smaller"):
        RandTumorSynthesisd(keys=("image", "label"), organ="liver", alow_smaller=True)
    RandTumorSynthesisd(keys=("image", "label"), organ="liver", appearance="rim", allow_smaller=True, max_tries=5)


def test_generate_refuses_appearance_with_ca_before_any_output(tmp_path, capsys):
    pytest.importorskip("numba")
    from tumorsyn.cli.main import main

    out = tmp_path / "out"
    code = main(["generate", "--example", "--organ", "liver", "--method", "ca", "--appearance", "rim", "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 1 and "does not take the option 'appearance'" in err
    assert not out.exists()
