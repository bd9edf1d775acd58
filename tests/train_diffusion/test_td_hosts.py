"""Held-out descriptor figures and the host check of ``--evaluate`` (issue 16, part 2)."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from diffusion_helpers import tiny_config


def _flow(sources) -> str:
    import yaml

    return yaml.safe_dump(sources, default_flow_style=True).strip()


def test_figures_against_by_hand():
    from train_diffusion.figures import FIGURES, figures_against

    real = [{name: float(v) for name in FIGURES} for v in (1, 2, 3, 4, 5)]  # IQR [2, 4]
    inside = [{name: 3.5 for name in FIGURES}, {name: math.nan for name in FIGURES}]
    out = figures_against(real, inside, names=FIGURES)
    assert out["working"] is True
    assert out["contrast_noise"]["real_iqr"] == [2.0, 4.0] and out["contrast_noise"]["real_median"] == 3.0
    assert out["contrast_noise"]["n_generated"] == 1  # the NaN row is left out
    one_off = [{**{name: 3.0 for name in FIGURES}, "edge_sharpness": 4.5}]
    out = figures_against(real, one_off, names=FIGURES)
    assert out["edge_sharpness"]["inside_real_iqr"] is False and out["working"] is False
    assert figures_against(real, [{name: math.nan for name in FIGURES}], names=FIGURES)["working"] is False


def test_verdict_share_reads_how_firm_a_verdict_is():
    from train_diffusion.figures import FIGURES, figures_against, figures_line

    rng = np.random.default_rng(3)
    real = [{name: float(v) for name in FIGURES} for v in rng.normal(0.0, 1.0, 40)]   # IQR about [-0.67, 0.67]
    centre = [{name: float(v) for name in FIGURES} for v in rng.normal(0.0, 0.3, 40)]
    far = [{name: float(v) for name in FIGURES} for v in rng.normal(3.0, 0.3, 40)]
    edge_value = float(np.percentile([row["edge_sharpness"] for row in real], 75))
    edge = [{**row, "edge_sharpness": edge_value + float(v)} for row, v in zip(centre, rng.normal(0.0, 0.05, 40))]
    firm, out, marginal = (figures_against(real, g, names=FIGURES) for g in (centre, far, edge))
    assert firm["working"] is True and firm["working_share"] >= 0.9
    assert out["working"] is False and out["working_share"] == 0.0 and out["contrast_noise"]["inside_share"] == 0.0
    assert 0.2 <= marginal["edge_sharpness"]["inside_share"] <= 0.8            # a median on the IQR's edge
    assert marginal["working_share"] <= marginal["edge_sharpness"]["inside_share"]
    assert figures_against(real, edge, names=FIGURES) == marginal               # a fixed seed: same inputs, same shares
    assert "bootstrap resamples" in figures_line("x", marginal)
    none = figures_against(real, centre, names=FIGURES, resamples=0)
    assert none["working_share"] is None and none["contrast_noise"]["inside_share"] is None


def test_verdict_share_resamples_a_crops_samples_together():
    from train_diffusion.figures import FIGURES, figures_against

    real = [{name: float(v) for name in FIGURES} for v in np.linspace(-2.0, 2.0, 201)]  # IQR [-1, 1], firm
    # Five crops of eight identical samples, at 0.0 ... 1.6: the median (0.8) is inside. Resampled as rows
    # it barely moves; resampled as crops it is one of five values, two of them outside.
    values = [v for v in (0.0, 0.4, 0.8, 1.2, 1.6) for _ in range(8)]
    generated = [{name: v for name in FIGURES} for v in values]
    rows = figures_against(real, generated, names=FIGURES)
    crops = figures_against(real, generated, names=FIGURES, generated_groups=[i // 8 for i in range(40)])
    assert rows["working"] is crops["working"] is True
    assert crops["working_share"] < rows["working_share"] - 0.1
    with pytest.raises(ValueError, match="labels"):
        figures_against(real, generated, names=FIGURES, generated_groups=[0, 1])


def test_figures_preferring_takes_the_host_grid_where_enough_real_values_remain():
    from train_diffusion.figures import FIGURES, MIN_REFERENCE, figures_against, figures_preferring

    many = [{name: float(v) for name in FIGURES} for v in (1, 2, 3, 4, 5)]            # IQR [2, 4]
    few = [{**{name: float(v) for name in FIGURES}, "internal_iqr_noise": math.nan} for v in (1, 2, 3, 4, 5)]
    few[0]["internal_iqr_noise"] = 9.0                                                # one real value left
    generated = [{name: 3.0 for name in FIGURES}]
    grid, native = figures_against(few, generated, names=FIGURES), figures_against(many, generated, names=FIGURES)
    assert grid["internal_iqr_noise"]["n_real"] == 1 < MIN_REFERENCE
    out = figures_preferring(grid, native)
    assert out["internal_iqr_noise"]["reference"] == "fallback" and out["internal_iqr_noise"]["real_iqr"] == [2.0, 4.0]
    assert out["contrast_noise"]["reference"] == "preferred" and out["working"] is True
    assert grid["working"] is False  # judged on one real value the spread would have failed


def test_area_resample_averages_onto_larger_voxels():
    from train_diffusion.data import area_resample

    rng = np.random.default_rng(0)
    shape, spacing = (60, 60, 40), (1.0, 1.0, 1.5)
    idx = np.indices(shape).astype(float)
    lesion = ((idx[0] - 30) ** 2 + (idx[1] - 30) ** 2 + ((idx[2] - 20) * 1.5) ** 2) <= 8.0 ** 2
    hu = np.where(lesion, 60.0, 100.0) + rng.normal(0.0, 15.0, shape)
    organ = np.ones(shape, bool)
    components = lesion.astype(np.int32)
    out_hu, out_organ, out_lesions, out_spacing = area_resample(hu, organ, components, spacing, (3.0, 3.0, 1.0))
    assert out_spacing == (3.0, 3.0, 1.5)            # an axis whose voxels are not larger keeps its own
    assert out_hu.shape == (20, 20, 40) and out_lesions.shape == out_hu.shape and out_organ.all()
    # volume and level kept, noise averaged down (about 1/sqrt(9) for white noise in 3 x 3 voxels)
    assert out_lesions.sum() * 9.0 == pytest.approx(lesion.sum(), rel=0.1)
    assert float(np.median(out_hu[out_lesions == 1])) == pytest.approx(60.0, abs=3.0)
    from scipy import ndimage

    background = ~ndimage.binary_dilation(out_lesions > 0, iterations=2)
    assert 2.0 < float(np.std(out_hu[background])) < 0.6 * 15.0


def test_heldout_descriptors_are_the_realism_descriptors(tmp_path, phantom_sources):
    """The held-out figures of a tiny run read each real crop as `tumorsyn realism` would."""
    from train_diffusion.data import load_holdout
    from train_diffusion.evaluate import evaluate_model
    from train_diffusion.figures import FIGURES, crop_descriptors
    from tumorsyn.generators.diffusion.sampler import unit_to_hu
    from train_diffusion.train import train

    from train_diffusion.data import holdout_native_rows

    config = tiny_config(tmp_path / "run", phantom_sources[:1], f"data.holdout_sources={_flow(phantom_sources[1:])}")
    folder = train(config, quiet=True)
    config["evaluation"].update(hosts=["example"], host_organs=["liver"], tumours_per_organ=1)
    result = evaluate_model(config, model_dir=folder, samples=2, steps=2, device="cpu")
    # The host check's reference: the same held-out tumour, read on its own scan's grid.
    hosts = json.loads((tmp_path / "run" / "heldout" / "hosts.json").read_text())
    native = holdout_native_rows(config)
    assert len(native) == 1 and hosts["reference"]["rows"][0]["contrast_noise"] == pytest.approx(native[0]["contrast_noise"])
    # ... and read on the host's grid (the example's 3 mm voxels), which judges the host's figures.
    on_grid = holdout_native_rows(config, spacing_mm=(3.0, 3.0, 3.0))
    saved = hosts["reference_on_grid"]["rows"]["3x3x3"]
    assert len(saved) == len(on_grid) == 1
    assert saved[0]["contrast_noise"] == pytest.approx(on_grid[0]["contrast_noise"], nan_ok=True)
    liver = hosts["hosts"][0]
    assert liver["reference_grid_mm"] == [3.0, 3.0, 3.0] and "figures_native" in liver and "figures_on_grid" in liver
    assert [(e["host"], e["organ"], len(e["tumours"])) for e in hosts["hosts"]] == [("example", "liver", 1)]
    assert (tmp_path / "run" / "heldout" / "hosts.png").stat().st_size > 0
    d = result["descriptors"]
    assert len(d["real"]) == 1 and len(d["generated"]) == 2
    bank = load_holdout(config)
    images, _, cores = bank.centred()
    organs, others = bank.centred_context()
    assert organs[0][cores[0]].all() and not others[0][cores[0]].any()
    expected = crop_descriptors(unit_to_hu(images[0], bank.tumor_windows[0]), cores[0], organs[0], others[0],
                                config["data"]["spacing_mm"])
    assert d["real"][0] == pytest.approx(expected, nan_ok=True)
    assert d["real"][0]["contrast_noise"] < 0  # the phantom's tumours are hypodense
    assert set(FIGURES) <= set(d["figures"]) and isinstance(d["figures"]["working"], bool)
    saved = json.loads((tmp_path / "run" / "heldout" / "heldout.json").read_text())
    assert saved["descriptors"]["figures"] == d["figures"]


def test_host_check_on_the_bundled_example(tmp_path, trained_run):
    """A relative model writes into the example's liver and kidney with no warning; figures, JSON rows, picture."""
    from train_diffusion.host_check import check_hosts
    from train_diffusion.figures import FIGURES

    _, folder = trained_run
    reference = [{name: v for name in (*FIGURES, "edge_gradient_noise_per_mm", "contrast_hu", "internal_iqr_hu")}
                 for v in (-4.0, -3.0, 1.0, 2.0)]
    out = check_hosts(folder, ["example"], ["liver", "kidney"], tumours=2, size_mm=(8.0, 12.0), seed=3, steps=2,
                      device="cpu", reference=reference, preview=tmp_path / "hosts.png")
    assert [(e["host"], e["organ"]) for e in out["hosts"]] == [("example", "liver"), ("example", "kidney")]
    for entry in out["hosts"]:
        assert entry["warnings"] == []  # phase handled, not warned about
        assert len(entry["tumours"]) == 2
        assert all(8.0 - 0.5 <= t["size_mm"] <= 12.0 + 0.5 for t in entry["tumours"])
        # (at 3 mm a kidney's thin shell or a 10 mm tumour's interior may be too small: NaN, as in `realism`)
        assert all(np.isfinite(t["equivalent_diameter_mm"]) for t in entry["tumours"])
        assert set(FIGURES) <= set(entry["figures"])
    # The liver's shell is wide, so its tumours get a contrast; one of 8 mm on 3 mm voxels can still read NaN (too few
    # usable shell voxels where it lies, as in `realism`): seed 3 draws such a one since the axis ratios are coupled.
    assert any(np.isfinite(t["contrast_noise"]) for t in out["hosts"][0]["tumours"])
    assert (tmp_path / "hosts.png").stat().st_size > 0
    again = check_hosts(folder, ["example"], ["liver"], tumours=2, size_mm=(8.0, 12.0), seed=3, steps=2, device="cpu")
    assert again["hosts"][0]["tumours"] == out["hosts"][0]["tumours"]  # same seed, same tumours
    assert "figures" not in again["hosts"][0]  # no reference, no verdict


def test_host_check_counts_invisible_tumours(trained_run, monkeypatch):
    """A sample too faint to label (an empty mask) is counted and measured as NaN, not a crash."""
    import tumorsyn
    from train_diffusion.host_check import check_hosts

    _, folder = trained_run
    real = tumorsyn.synthesize
    calls = []

    def faint_first(ct, organ_mask, spacing, spec, **kwargs):
        out, tumor = real(ct, organ_mask, spacing, spec, **kwargs)
        calls.append(spec.seed)
        return (ct.copy(), np.zeros_like(tumor)) if len(calls) == 1 else (out, tumor)

    monkeypatch.setattr(tumorsyn, "synthesize", faint_first)
    out = check_hosts(folder, ["example"], ["liver"], tumours=2, size_mm=(8.0, 12.0), seed=3, steps=2, device="cpu")
    entry = out["hosts"][0]
    assert entry["invisible"] == 1 and [t["visible"] for t in entry["tumours"]] == [False, True]
    assert np.isnan(entry["tumours"][0]["contrast_noise"]) and np.isfinite(entry["tumours"][1]["contrast_noise"])


def test_host_check_sizes_per_tumour():
    """``sizes_mm``: tumour i is asked for range i (rules, no model needed); too short a list is refused."""
    from train_diffusion.host_check import check_hosts

    out = check_hosts(None, ["example"], ["liver"], tumours=2, size_mm=(5.0, 20.0), seed=0, device="cpu",
                      method="rules", sizes_mm=[(9.0 / 1.05, 9.0 * 1.05), (15.0 / 1.05, 15.0 * 1.05)])
    sizes = [t["size_mm"] for t in out["hosts"][0]["tumours"]]
    assert [round(s / t, 1) for s, t in zip(sizes, (9.0, 15.0))] == [1.0, 1.0]  # within 5 %
    with pytest.raises(ValueError, match=r"sizes_mm holds 1 range\(s\) for 2 tumours"):
        check_hosts(None, ["example"], ["liver"], tumours=2, size_mm=(5.0, 20.0), seed=0, method="rules",
                    sizes_mm=[(6.0, 6.3)])


@pytest.mark.parametrize("override, message", [
    ("evaluation.hosts=[nowhere]", r"evaluation.hosts\[0\] must be example or a mapping with ct and labels"),
    ("evaluation.host_organs=[heart]", "evaluation.host_organs must list organs"),
    ("evaluation.tumours_per_organ=0", "evaluation.tumours_per_organ must be a positive integer"),
    ("evaluation.size_mm=[20, 5]", r"evaluation.size_mm must be \[low, high\] mm"),
    ("evaluation.hosts=[{ct: /nonexistent/ct.nii.gz, labels: /nonexistent/l.nii.gz}]", r"evaluation.hosts\[0\].ct"),
])
def test_evaluation_config_errors(tmp_path, phantom_sources, override, message):
    from tumorsyn.errors import ConfigError

    with pytest.raises(ConfigError, match=message):
        tiny_config(tmp_path / "run", phantom_sources, override)


def test_heldout_scans_are_the_held_out_region_as_a_host(tmp_path, phantom_sources):
    """The benchmarks' held-out host: the region's scan, its organ without the real tumours, the tumours, its grid."""
    import nibabel as nib

    from train_diffusion.data import heldout_scans, holdout_native_rows

    config = tiny_config(tmp_path / "run", phantom_sources[:1], f"data.holdout_sources={_flow(phantom_sources[1:])}")
    (scan,) = heldout_scans(config)
    tumour_file = nib.load(phantom_sources[1]["tumor"][0])
    assert scan["spacing_mm"] == pytest.approx(tumour_file.header.get_zooms()[:3])
    assert scan["hu"].shape == scan["organ"].shape == scan["tumour"].shape and scan["hu"].dtype == np.float32
    assert scan["tumour"].sum() == int(np.asarray(tumour_file.dataobj).sum())  # every tumour voxel, none cut
    assert scan["organ"].any() and not (scan["organ"] & scan["tumour"]).any()
    assert scan["organ_name"] == "liver"
    # The same voxels the reference rows read: its one tumour, described on this very array.
    (row,) = holdout_native_rows(config)
    assert row["equivalent_diameter_mm"] == pytest.approx((6 * scan["tumour"].sum() * np.prod(scan["spacing_mm"])
                                                           / math.pi) ** (1 / 3), rel=1e-6)
    # A region keeps only its slices (and the organ's box within them).
    cut = tiny_config(tmp_path / "cut", phantom_sources[:1], f"data.holdout_sources={_flow([{**phantom_sources[1], 'region': {'axis': 2, 'first': 0, 'last': 9}}])}")
    (part,) = heldout_scans(cut)
    assert part["hu"].shape[2] <= 10 and part["tumour"].sum() < scan["tumour"].sum()
