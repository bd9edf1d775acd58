"""Large rules tumours (>= 20 mm) follow the large class's priors: soft borders, a smooth label, a mild necrotic core.

Issue 14: large liver tumours used to draw their edges, contrast and inner spread from the EARLY class (the
calibration half has only 2 large tumours with CT), so their borders read as sharp as an early tumour's, and a
flat tumour's necrotic core became a fluid-dark slit.
"""
from dataclasses import replace

import numpy as np
import pytest

import tumorsyn
from tests.conftest import make_phantom
from tumorsyn import priors
from tumorsyn.blend import edge_mm_for_sharpness
from tumorsyn.generators.registry import get_generator
from tumorsyn.metrics.realism import lesion_descriptors
from tumorsyn.organs import get_preset
from tumorsyn.placement import PlacementContext


def test_large_liver_intensity_priors_are_the_early_ones_shifted_to_the_large_tumours():
    entry = priors.load_priors()["organs"]["liver"]["large"]
    for name in ("edge_sharpness", "contrast_noise", "internal_iqr_noise"):
        shifted = entry["shifted"][name]
        assert shifted["from"] == "liver/early" and shifted["n"] >= 2
        early = np.array(priors.prior_quantiles("liver", 10.0, name))
        large = np.array(priors.prior_quantiles("liver", 30.0, name))
        assert large == pytest.approx(early + shifted["shift"], abs=2e-4)   # the early spread, moved
        assert large[2] == pytest.approx(shifted["median"], abs=2e-4)
    # Real large tumours' borders are softer than any early one's: the whole large prior lies below the early median.
    assert priors.prior_quantiles("liver", 30.0, "edge_sharpness")[3] < priors.prior_quantiles("liver", 10.0,
                                                                                               "edge_sharpness")[2]
    # Organs without their own intensity data borrow the large liver's, not the early one's.
    assert priors.prior_quantiles("pancreas", 30.0, "edge_sharpness") == priors.prior_quantiles("liver", 30.0,
                                                                                                "edge_sharpness")


def test_edge_width_for_a_sharpness_depends_on_the_size_class():
    # Early tumours keep their table (byte-identical outputs); large ones get wider edges for the same sharpness.
    assert edge_mm_for_sharpness(0.535) == edge_mm_for_sharpness(0.535, size_mm=12.0) == pytest.approx(3.45)
    assert edge_mm_for_sharpness(0.3765, size_mm=30.0) > 5.0
    widths = [edge_mm_for_sharpness(s, size_mm=25.0) for s in (0.25, 0.3, 0.35, 0.4, 0.45, 0.5)]
    assert widths == sorted(widths, reverse=True)


@pytest.fixture(scope="module")
def host():
    """A liver-like host on 3D-IRCADb p7's grid (0.8 x 0.8 x 1.6 mm), big enough for 20-30 mm tumours."""
    ct, organ, sp = make_phantom(shape=(136, 128, 60), spacing=(0.8, 0.8, 1.6), organ_hu=120.0, noise_hu=9.0,
                                 radii_mm=(50.0, 46.0, 42.0), seed=4)
    return ct, organ, sp, PlacementContext(organ, sp, "liver", ct_hu=ct)


def test_large_rules_tumours_read_soft_borders_and_stay_in_the_fitted_ranges(host):
    ct, organ, sp, ctx = host
    rows = []
    for seed in range(6):
        spec = tumorsyn.sample_spec(organ, sp, organ="liver", method="rules", size_mm=(22.0, 28.0), rng=seed,
                                    context=ctx, appearance="hypodense", necrosis=False)
        ct_out, tumour = tumorsyn.synthesize(ct, organ, sp, spec)
        rows.append(lesion_descriptors(ct_out, tumour.astype(bool), organ, sp))
    median = {k: float(np.nanmedian([r[k] for r in rows]))
              for k in ("edge_sharpness", "elongation", "internal_iqr_noise", "surface_irregularity")}
    sharp = priors.prior_quantiles("liver", 25.0, "edge_sharpness")
    # Soft like the real large tumours (0.37-0.385 on the calibration half), not like early ones (0.49-0.71): the
    # former draws read 0.51 here (6 tumours), these about 0.36.
    assert sharp[0] <= median["edge_sharpness"] <= sharp[4]
    assert median["edge_sharpness"] < 0.45 < priors.prior_quantiles("liver", 10.0, "edge_sharpness")[0]
    elong = priors.prior_quantiles("liver", 25.0, "elongation")
    assert elong[0] <= median["elongation"] <= elong[4]
    spread = priors.prior_quantiles("liver", 25.0, "internal_iqr_noise")
    assert spread[0] <= median["internal_iqr_noise"] <= spread[4] + 0.3
    # A wide edge must not turn the label's surface rough (the texture modulation is kept small for large ones).
    assert median["surface_irregularity"] <= priors.prior_quantiles("liver", 25.0, "surface_irregularity")[4]


@pytest.mark.parametrize("seed", range(8))
def test_a_large_tumours_necrotic_core_is_neither_a_slit_nor_fluid_dark(seed):
    generator = get_generator("rules")
    preset = replace(get_preset("liver"), necrosis_probability=1.0)
    params = generator.sample_params(np.random.default_rng(seed), size_mm=30.0, preset=preset, organ_mean_hu=120.0,
                                     organ_std_hu=12.0, spacing_mm=(0.8, 0.8, 1.6), options={"appearance": "hypodense"},
                                     organ_noise_hu=9.0)
    nec, radii = params["necrosis"], params["radii_mm"]
    viable_rim = (1.0 - nec["fraction"]) * float(np.prod(radii)) ** (1 / 3)
    assert viable_rim <= 0.7 * min(radii) + 1e-9      # the core reaches across the short axis too
    assert -2.0 - 1e-9 <= nec["delta_hu"] / abs(params["delta_hu"]) <= -1.3 + 1e-9   # darker, not water
