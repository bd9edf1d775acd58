"""Host parenchyma statistics, host noise, and the real-tumour priors the generators draw from."""
import warnings

import numpy as np
import pytest

import tumorsyn
from tests.conftest import EXAMPLE_CT, EXAMPLE_LABELS, make_phantom
from tumorsyn import priors
from tumorsyn.errors import ConfigError
from tumorsyn.generators.base import hypodense_contrast
from tumorsyn.host import highpass_noise_hu, parenchyma_statistics
from tumorsyn.placement import PlacementContext


def test_parenchyma_statistics_ignore_fat_and_vessels():
    rng = np.random.default_rng(0)
    tissue = rng.normal(40.0, 8.0, 6000)
    fat = rng.normal(-100.0, 15.0, 4000)        # a 3 mm label that is 40 % fat
    vessels = rng.normal(200.0, 20.0, 600)
    median, spread = parenchyma_statistics(np.concatenate([tissue, fat, vessels]))
    assert abs(median - 40.0) < 1.5 and abs(spread - 8.0) < 1.0
    # The plain median and MAD, as before, are dragged by the fat.
    everything = np.concatenate([tissue, fat, vessels])
    assert np.median(everything) < median - 2.0
    assert 1.4826 * np.median(np.abs(everything - np.median(everything))) > 2 * spread


def test_highpass_noise_sees_noise_not_anatomy():
    rng = np.random.default_rng(1)
    shape = (40, 40, 30)
    ramp = np.indices(shape)[0].astype(float) * 3.0      # a smooth 3 HU/voxel gradient: anatomy
    hu = 60.0 + ramp + rng.normal(0.0, 12.0, shape)
    region = np.ones(shape, bool)
    assert abs(highpass_noise_hu(hu, region) - 12.0) < 0.8


def test_context_has_host_noise_and_parenchyma_level():
    ct, organ, sp = make_phantom(noise_hu=10.0)
    ctx = PlacementContext(organ, sp, "liver", ct_hu=ct)
    assert abs(ctx.organ_stats[0] - 100.0) < 2.0
    assert 8.5 < ctx.organ_noise_hu < 11.5


def test_context_draws_centres_only_where_allowed():
    ct, organ, sp = make_phantom()
    centers = np.zeros(organ.shape, bool)
    centers[40:50] = True  # off-centre slab: shallower than the organ's deepest point
    ctx = PlacementContext(organ, sp, "liver", ct_hu=ct, centers=centers)
    free = PlacementContext(organ, sp, "liver", ct_hu=ct)
    rng = np.random.default_rng(0)
    xs = [ctx.sample_center(rng, min_depth_mm=0.0)[0] for _ in range(200)]
    assert min(xs) >= 40 - 1.5 and max(xs) <= 49 + 1.5  # within a coarse placement cell of the slab
    assert ctx.max_depth_mm < free.max_depth_mm
    assert ctx.sample_center(rng, min_depth_mm=free.max_depth_mm) is None
    with pytest.raises(tumorsyn.errors.InputError, match="centers mask shape"):
        PlacementContext(organ, sp, "liver", ct_hu=ct, centers=centers[1:])


def test_example_pancreas_level_is_parenchyma_not_fat():
    from tumorsyn.io import load_labels, load_scan
    from tumorsyn.io.labels import label_values, organ_mask_from_labels

    scan = load_scan(EXAMPLE_CT)
    labels = label_values(load_labels(EXAMPLE_LABELS))
    pancreas = organ_mask_from_labels(labels, "pancreas", preset="totalsegmentator")
    ctx = PlacementContext(pancreas, scan.spacing_mm, "pancreas", ct_hu=scan.values())
    hu = scan.values()[pancreas]
    assert ctx.organ_stats[0] > float(np.median(hu)) + 3.0   # the label's plain median is pulled down by fat


def test_hypodense_contrast_warns_once_per_host_when_water_bounds_it():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert hypodense_contrast(40.0, 120.0, "liver") == 40.0          # reachable: no warning
        assert not caught
        got = hypodense_contrast(40.0, 17.0, "kidney")                  # an unenhanced kidney
    assert got == pytest.approx(12.0)
    assert len(caught) == 1 and "kidney of 17 HU" in str(caught[0].message)


def test_priors_file_has_provenance_and_ordered_quantiles():
    data = priors.load_priors()
    assert "calibration half" in data["provenance"]["split"]
    for organ in ("liver", "pancreas", "kidney"):
        for size in (10.0, 30.0):
            for name in ("elongation", "flatness", "solidity", "contrast_noise", "internal_iqr_noise",
                         "edge_sharpness"):
                q = priors.prior_quantiles(organ, size, name)
                assert len(q) == 5 and q == sorted(q)
    with pytest.raises(ConfigError, match="no prior"):
        priors.prior_quantiles("liver", 10.0, "no_such_descriptor")


def test_draws_follow_the_prior():
    rng = np.random.default_rng(3)
    q = priors.prior_quantiles("liver", 10.0, "elongation")
    draws = np.array([priors.draw(rng, "liver", 10.0, "elongation") for _ in range(4000)])
    assert abs(np.median(draws) - q[2]) < 0.02
    assert abs(np.mean((draws >= q[1]) & (draws <= q[3])) - 0.5) < 0.03


def _axis_ratios(organ: str, size_mm: float, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    axes = np.array([priors.ellipsoid_axes(rng, organ, size_mm) for _ in range(n)])
    return axes[:, 1] / axes[:, 0], axes[:, 2] / axes[:, 0]


@pytest.mark.parametrize("organ,size_mm", [("liver", 10.0), ("liver", 30.0), ("pancreas", 10.0), ("kidney", 10.0)])
def test_axis_ratios_keep_both_priors_and_their_rank_correlation(organ, size_mm):
    from scipy.stats import spearmanr

    elongation, flatness = _axis_ratios(organ, size_mm, 4000, seed=11)
    rho = priors.axis_rank_correlation(organ, size_mm)
    assert rho > 0.5    # every fitted class couples them; the kidney follows the liver's entry
    assert spearmanr(elongation, flatness).statistic == pytest.approx(rho, abs=0.05)
    for name, draws in (("elongation", elongation), ("flatness", flatness)):
        q = priors.prior_quantiles(organ, size_mm, name)
        # Coupled draws seldom need the flatness <= elongation clip, so each marginal keeps its prior's median.
        assert abs(np.median(draws) - q[2]) < 0.02, name
        assert abs(np.mean((draws >= q[1]) & (draws <= q[3])) - 0.5) < 0.04, name


def test_independent_axis_draws_would_bias_flatness_low(monkeypatch):
    coupled = _axis_ratios("liver", 10.0, 4000, seed=5)[1]
    monkeypatch.setattr(priors, "axis_rank_correlation", lambda organ, size_mm: 0.0)
    independent = _axis_ratios("liver", 10.0, 4000, seed=5)[1]
    median = priors.prior_quantiles("liver", 10.0, "flatness")[2]
    # Drawn apart, one flatness in six exceeds its elongation and is clipped down to it.
    assert np.median(independent) < median - 0.008
    assert abs(np.median(coupled) - median) < 0.008


def test_axis_draws_take_two_uniforms_whatever_the_correlation(monkeypatch):
    rng = np.random.default_rng(2)
    priors.ellipsoid_axes(rng, "liver", 10.0)
    after_coupled = rng.random()
    monkeypatch.setattr(priors, "axis_rank_correlation", lambda organ, size_mm: 0.0)
    rng = np.random.default_rng(2)
    priors.ellipsoid_axes(rng, "liver", 10.0)
    assert rng.random() == after_coupled    # the draws after the axes are the same either way


def test_rules_shapes_follow_the_elongation_prior():
    ct, organ, sp = make_phantom(shape=(80, 80, 56), spacing=(1.0, 1.0, 1.0), radii_mm=(34.0, 32.0, 26.0))
    ctx = PlacementContext(organ, sp, "liver", ct_hu=ct)
    ratios = []
    for seed in range(12):
        spec = tumorsyn.sample_spec(organ, sp, organ="liver", method="rules", size_mm=(10, 14), rng=seed, context=ctx)
        a, b, c = sorted(spec.params["radii_mm"], reverse=True)
        ratios.append(b / a)
    q = priors.prior_quantiles("liver", 12.0, "elongation")
    assert q[0] - 0.05 <= float(np.median(ratios)) <= q[4]
    assert float(np.median(ratios)) < 0.93   # the former draws (axes 0.75-1.25 x r) were rounder


def test_an_organ_the_priors_do_not_name_borrows_the_livers():
    for size in (10.0, 30.0):
        assert priors.prior_quantiles("gallbladder", size, "elongation") == priors.prior_quantiles("liver", size,
                                                                                                   "elongation")


def test_reference_noise_factor_is_one_at_the_reference_voxel_and_follows_the_measured_exponent():
    from tumorsyn.host import NOISE_VOLUME_EXPONENT, REFERENCE_VOXEL_MM3, reference_noise_factor, reference_noise_hu

    assert REFERENCE_VOXEL_MM3 == pytest.approx(3.375) and NOISE_VOLUME_EXPONENT == 0.2
    assert reference_noise_factor((1.5, 1.5, 1.5)) == pytest.approx(1.0)
    # 3D-IRCADb p7's voxels (0.98 mm^3): its noise is higher than at the reference, so the factor is below 1.
    assert reference_noise_factor((0.782, 0.782, 1.6)) == pytest.approx((0.782 * 0.782 * 1.6 / 3.375) ** 0.2)
    assert reference_noise_factor((0.782, 0.782, 1.6)) < 1 < reference_noise_factor((3.0, 3.0, 3.0))
    assert reference_noise_hu(10.0, (3.0, 3.0, 3.0)) == pytest.approx(10.0 * 8 ** 0.2)


def test_rules_contrast_uses_the_reference_voxel_noise():
    """The same host noise on a finer grid gives a smaller contrast in HU (the noise of a 1.5 mm cube is lower)."""
    from tumorsyn.generators.registry import get_generator
    from tumorsyn.organs import get_preset

    generator, preset = get_generator("rules"), get_preset("liver")
    draws = {}
    for spacing in ((0.75, 0.75, 0.75), (1.5, 1.5, 1.5)):
        params = generator.sample_params(np.random.default_rng(3), size_mm=12.0, preset=preset, organ_mean_hu=100.0,
                                         organ_std_hu=20.0, spacing_mm=spacing, options={"appearance": "hypodense"},
                                         organ_noise_hu=10.0)
        draws[spacing] = params["delta_hu"]
    assert draws[(0.75, 0.75, 0.75)] == pytest.approx(draws[(1.5, 1.5, 1.5)] * 8 ** -0.2, rel=1e-6)
