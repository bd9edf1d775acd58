"""The rule-based generator: lobulated shape, procedural texture, edge blending.

After the idea of SyntheticTumors (deformed ellipsoid + smooth texture + blending), rebuilt in
millimetres: the shape is a smooth signed-distance field (no nearest-neighbour jaggies), the
contrast is relative to the scan's own organ statistics, texture is made in the tumour's box only,
and the label is what is visible.

Intensity model (per voxel x of the box; the blend is :mod:`tumorsyn.blend`'s)::

    w(x)     = sigmoid(-d(x) / tau)              presence; d = signed distance (mm), tau = edge/4
    delta(x) = designed HU offset from the organ mean (texture, rim, capsule, necrosis)
    out(x)   = in(x) + w(x) * (mu + delta(x) + texture(x) - smooth(in)(x))

The shape (:func:`tumorsyn.shapes.shape_distance_mm`) is drawn by the core's shape functions,
which the diffusion generator shares. A voxel is labelled tumour when it carries at least ``label_at`` of the
lesion's nominal contrast, ``w(x) * |delta(x)| >= label_at * |delta_0|`` (holes filled): an early tumour at 0.7,
where real reference labels lie (:data:`tumorsyn.blend.LABEL_AT_TIGHT`), a large one at its half-maximum edge.
"""
from __future__ import annotations

import numpy as np
from scipy.special import expit

from tumorsyn import priors
from tumorsyn.blend import (LABEL_AT, LABEL_AT_TIGHT, LEVEL_BLURS, blend, edge_reach_mm, sigmoid_weight, tissue_level,
                            visible_contrast)
from tumorsyn.errors import ConfigError
from tumorsyn.generators.base import MIN_DELTA_HU, Generator, Rendering, hypodense_contrast
from tumorsyn.host import reference_noise_hu
from tumorsyn.organs import APPEARANCES, OrganPreset
from tumorsyn.priors import texture_sd_for_spread
from tumorsyn.shapes import (box_offsets_mm, fill_holes, random_direction, sample_outline, sample_radii_mm,
                             shape_distance_mm, shape_reach_mm)
from tumorsyn.spec import TumorSpec
from tumorsyn.texture import seeded_streams, smooth_noise

__all__ = ["RulesGenerator"]


_SPEC_V1_LEVEL_BLUR = "mm"  # specs drawn before the one-voxel floor of the tissue level replay as they were drawn


def _clip_contrast(value_hu: float, preset: OrganPreset) -> float:
    lo, hi = preset.contrast_hu
    return float(min(max(value_hu, lo), hi))


# Grain of the internal texture (Gaussian sigma, mm): fine, as the calibration tumours' GLCM in noise units
# shows (0.6-1.5 mm read too homogeneous: 0.525 vs 0.507).
_TEXTURE_SCALE_MM = (0.2, 0.5)
_TEXTURE_AMOUNT = 0.1  # multiplicative texture kept small: the additive texture_sd_hu carries the spread
# Designed contrast over the prior's: the blurred edge and the label drawn at 0.7 of the contrast pull the measured
# median (realism's contrast_noise, lesion median vs shell median) towards the host. Calibrated on the reference
# host (3D-IRCADb patient 7's liver) read on LiTS-117's grid, where the real tumours are (p7 block-averaged to
# 1.56 x 1.56 x 1.6 mm), so the measured median meets the CALIBRATION tumours' (-3.70 noise units): 1.1 gave -3.34
# (47 tumours), 1.2 gives -3.84 and -3.62 (two sets of 48; benchmarks/calibrate_realism.py --lits-grid).
_CONTRAST_GAIN = 1.2
# Large tumours (>= 20 mm, issue 14). Their priors are the early ones shifted to the calibration half's large
# tumours (tumour_priors.json, "shifted"): softer borders (edge_sharpness 0.38), which the wide sigmoid edges of
# blend's large-tumour table give. Measured on the reference host (3D-IRCADb p7's liver; 8 large tumours per
# setting, then benchmarks/calibrate_realism.py --size-class large --n 24 against the CALIBRATION half):
# - a wide edge turns the label-defining texture modulation into a rough label surface (edge 6.5 mm: sphericity
#   0.60, surface_irregularity 1.17 with texture_amount 0.1; 0.67 / 1.10 with 0.02), so it is kept at 0.02 and the
#   additive texture carries the inner spread alone;
# - a wide edge pulls the measured median contrast towards the host (the label's outer millimetres carry half
#   the contrast; the shell lies in the sigmoid's tail): with the large prior (median -4.19) and gain 1.1 the
#   measured median contrast_noise is -3.30 without necrosis, -3.61 with it; 1.2 gave -3.95 over 24 tumours
#   (-3.42 over 24 other draws) with the first large edge table; with the final (wider) table 1.25 gave -3.95
#   and -3.64 over two sets of 24 (calibrate_realism --seed 0 / 1) against -4.19: the contrast scales with the
#   gain, so 1.35;
# - the same edge ramp inside the label spreads the interior by itself (1.92 noise units where 1.65 was drawn,
#   without necrosis), so the additive texture is sized for the drawn spread less _EDGE_SPREAD_LARGE (in
#   quadrature). 0.8 / 1.2 read internal_iqr_noise 1.84 / 1.67 and GLCM contrast in noise units 2.67 / 2.37
#   against the calibration tumours' 1.65 and 2.50: 1.0 sits between. A coarser grain (0.5-2.5 mm) was tried for
#   the mottled look of real large tumours and moved the GLCM figures less than 0.03: the grain stays fine.
_TEXTURE_AMOUNT_LARGE = 0.02
_CONTRAST_GAIN_LARGE = 1.35
_EDGE_SPREAD_LARGE = 1.0  # inner IQR (host noise units) that the wide edge of a large tumour adds
# A necrotic core lies deeper than a viable rim of (1 - fraction) x the mean radius; in a flat tumour a rim
# thicker than the short semi-axis leaves only a thin dark slit along the long axis (a "dark streak" on a
# slice). Large tumours keep the rim to at most this share of the shortest semi-axis.
_NECROSIS_RIM_OF_SHORT_AXIS = 0.7
# ... and their necrotic centre is darker than the tumour by this factor of its contrast, not fluid-dark: cores
# at 10-25 HU over 30-60 % of the radius read an inner spread (internal_iqr_noise) of 3-4 noise units on p7,
# where the calibration half's large tumours read 1.64-1.66 and none shows a fluid core.
_NECROSIS_CONTRAST_LARGE = (1.3, 2.0)



def _texture_spread(internal_iqr_noise: float, large: bool) -> float:
    """The inner spread (host noise units) the additive texture and the host's grain must give; a large tumour's
    wide edge gives :data:`_EDGE_SPREAD_LARGE` of the drawn spread itself (added in quadrature)."""
    if not large:
        return float(internal_iqr_noise)
    return float(np.sqrt(max(float(internal_iqr_noise) ** 2 - _EDGE_SPREAD_LARGE ** 2, 0.0)))


class RulesGenerator(Generator):
    """Rule-based tumours (``method="rules"``): CPU only, numpy and scipy."""

    name = "rules"
    # ``appearance``, and any drawn parameter given a fixed value instead.
    options = frozenset({"appearance", "radii_mm", "rotation", "lobes", "deform_amplitude", "satellites", "edge_mm",
                         "texture_scale_mm", "texture_amount", "texture_sd_hu", "delta_hu", "rim", "capsule",
                         "necrosis"})

    # --- random side ----------------------------------------------------------------------------
    def sample_params(self, rng, *, size_mm, preset, organ_mean_hu, organ_std_hu, spacing_mm, options,
                      organ_noise_hu: float | None = None) -> dict:
        """Draw a tumour's parameters; shape, contrast, texture and edge follow the real-tumour priors.

        ``organ_noise_hu`` is the host parenchyma's scanner noise (:func:`tumorsyn.host.highpass_noise_hu`);
        the priors give contrast and internal spread in units of it. Without it the organ's robust
        SD stands in.
        """
        mu, sigma = float(organ_mean_hu), float(organ_std_hu)
        noise = float(organ_noise_hu) if organ_noise_hu else sigma
        organ = preset.name
        radius = 0.5 * float(size_mm)
        radii = sample_radii_mm(rng, organ=organ, size_mm=size_mm)

        appearance = options.get("appearance")
        if appearance in (None, "mix"):
            names = list(preset.appearance)
            weights = np.array([preset.appearance[n] for n in names], dtype=float)
            appearance = names[int(rng.choice(len(names), p=weights / weights.sum()))]
        if appearance not in APPEARANCES:
            raise ConfigError(f"unknown appearance {appearance!r}; choose one of {', '.join(APPEARANCES)} or mix")

        # Contrast in units of the host's noise at a reference voxel, as real tumours show it (a subtle
        # early lesion in a noisy scan stays subtle, on any grid); the preset's HU bounds still hold.
        unit = reference_noise_hu(noise, spacing_mm)
        large = priors.size_class(size_mm) == "large"
        gain = _CONTRAST_GAIN_LARGE if large else _CONTRAST_GAIN
        contrast = _clip_contrast(gain * abs(priors.draw(rng, organ, size_mm, "contrast_noise")) * unit, preset)
        # Early tumours are labelled where real reference labels lie (inside the half-maximum); the large ones'
        # edges were calibrated at the half-maximum and stay there.
        label_at = LABEL_AT if large else LABEL_AT_TIGHT
        outline = sample_outline(rng, organ=organ, size_mm=size_mm, label_at=label_at)
        params = {
            "appearance": appearance,
            "radii_mm": radii,
            "rotation": outline["rotation"],
            "lobes": outline["lobes"],
            "deform_amplitude": outline["deform_amplitude"],
            "satellites": [],
            "edge_mm": outline["edge_mm"],
            "texture_scale_mm": float(rng.uniform(*_TEXTURE_SCALE_MM)),
            "texture_amount": _TEXTURE_AMOUNT_LARGE if large else _TEXTURE_AMOUNT,
            "texture_sd_hu": texture_sd_for_spread(_texture_spread(priors.draw(rng, organ, size_mm, "internal_iqr_noise"),
                                                                   large), noise),
            "delta_hu": -contrast,
            "rim": None,
            "capsule": None,
            "necrosis": None,
        }
        if appearance == "hypodense":
            params["delta_hu"] = -hypodense_contrast(contrast, mu, organ)
        elif appearance == "hyperdense":
            params["delta_hu"] = contrast
        elif appearance == "isodense":
            params["delta_hu"] = float(rng.choice([-1.0, 1.0]) * max(MIN_DELTA_HU, rng.uniform(0.3, 0.7) * sigma))
            params["texture_amount"] = float(rng.uniform(0.3, 0.5))
        elif appearance == "cystic":
            params["delta_hu"] = float(min(rng.uniform(0.0, 20.0) - mu, -15.0))
            params["texture_amount"] = 0.02
            params["texture_sd_hu"] = 0.0  # fluid is homogeneous
            params["edge_mm"] = float(rng.uniform(0.3, 0.6))
        elif appearance == "rim":
            params["delta_hu"] = -hypodense_contrast(contrast, mu, organ)
            params["rim"] = {"thickness_mm": float(rng.uniform(1.5, 3.0)),
                             "delta_hu": float(abs(params["delta_hu"]) * rng.uniform(0.8, 1.2))}

        # Satellite nodules belong to larger tumours: an early tumour is drawn solitary. A satellite is
        # its own 26-connected lesion in every lesion-level measure, as in real reference labels.
        if size_mm >= priors.EARLY_BELOW_MM and appearance != "cystic" and rng.random() < preset.satellite_probability:
            for _ in range(int(rng.integers(1, 3))):
                direction = random_direction(rng) * radius * rng.uniform(1.3, 1.7)
                params["satellites"].append([*map(float, direction), float(radius * rng.uniform(0.15, 0.3))])
        if appearance in ("hypodense", "isodense") and rng.random() < preset.capsule_probability:
            params["capsule"] = {"thickness_mm": float(rng.uniform(0.6, 1.2)),
                                 "delta_hu": float(abs(params["delta_hu"]) * rng.uniform(0.8, 1.2))}
        if size_mm >= 15.0 and appearance not in ("cystic",) and rng.random() < preset.necrosis_probability:
            necrotic_hu = rng.uniform(10.0, 25.0)
            fraction = float(rng.uniform(0.3, 0.6))
            if large:  # no slit-like core (see _NECROSIS_RIM_OF_SHORT_AXIS); the radius as _fields reads it
                mean_radius = float(np.prod(radii)) ** (1 / 3)
                fraction = max(fraction, 1.0 - _NECROSIS_RIM_OF_SHORT_AXIS * min(radii) / mean_radius)
            necrotic_delta = min(necrotic_hu - mu, -1.3 * abs(params["delta_hu"]))
            if large:
                necrotic_delta = max(necrotic_delta, -rng.uniform(*_NECROSIS_CONTRAST_LARGE) * abs(params["delta_hu"]))
            params["necrosis"] = {"fraction": fraction, "delta_hu": float(necrotic_delta)}
        for key, value in options.items():
            if key in params and key != "appearance" and value is not None:
                params[key] = value
        params["level_blur"] = "voxel"  # the host's whole grain kept inside (tumorsyn.blend.tissue_level)
        params["label_at"] = label_at
        return params

    # --- deterministic side ---------------------------------------------------------------------
    def validate(self, spec: TumorSpec) -> None:
        p = spec.params
        needed = ("radii_mm", "rotation", "edge_mm", "delta_hu", "texture_scale_mm", "texture_amount")
        missing = [k for k in needed if k not in p]
        if missing:
            raise ConfigError(f"rules spec lacks parameter(s) {', '.join(missing)}")
        if len(p["radii_mm"]) != 3 or min(p["radii_mm"]) <= 0:
            raise ConfigError(f"rules spec radii_mm must be three positive numbers, got {p['radii_mm']}")
        if abs(p["delta_hu"]) < 1e-6:
            raise ConfigError("rules spec delta_hu must not be 0")
        if not 0.0 < float(p.get("label_at", LABEL_AT)) < 1.0:
            raise ConfigError(f"rules spec label_at must lie between 0 and 1 (a share of the contrast), "
                              f"got {p['label_at']}")
        if p.get("level_blur", _SPEC_V1_LEVEL_BLUR) not in LEVEL_BLURS:
            raise ConfigError(f"rules spec level_blur must be one of {', '.join(LEVEL_BLURS)}, got {p['level_blur']!r}")

    def extent_mm(self, spec: TumorSpec) -> float:
        return shape_reach_mm(spec.params) + edge_reach_mm(spec.params["edge_mm"]) + 1.0

    def rescale(self, spec: TumorSpec, factor: float) -> TumorSpec:
        p = dict(spec.params)
        p["radii_mm"] = [r * factor for r in p["radii_mm"]]
        p["satellites"] = [[c * factor for c in sat] for sat in p.get("satellites", ())]
        return spec.with_params(params=p)

    def _fields(self, spec: TumorSpec, box_shape, origin):
        """Presence ``w`` (before the organ cut), designed offset ``delta`` (HU) and the additive texture (HU).

        ``delta`` defines the label (the lesion's nominal contrast, modulated by at most
        ``texture_amount``); the additive texture (``texture_sd_hu`` x the unit texture field) adds the
        internal spread real tumours show on top of the host's grain, without punching holes in the label.
        """
        p = spec.params
        _, texture_rng, necrosis_rng = seeded_streams(spec.seed, 3)  # stream 0 draws the shape
        distance = shape_distance_mm(p, seed=spec.seed,
                                     offsets_mm=box_offsets_mm(box_shape, origin, spec.center_vox, spec.spacing_mm))
        w = sigmoid_weight(distance, p["edge_mm"])

        delta0 = float(p["delta_hu"])
        texture = np.clip(smooth_noise(box_shape, sigma_mm=p["texture_scale_mm"], spacing_mm=spec.spacing_mm,
                                       rng=texture_rng), -2.5, 2.5)
        # Texture modulates the contrast but never below 60 % of it: the body of the lesion stays
        # visible everywhere, so texture cannot punch holes into the label.
        delta = np.float32(delta0) * np.clip(1.0 + np.float32(p["texture_amount"]) * texture, 0.6, 1.6)
        if p.get("rim"):
            rim = p["rim"]
            rim_w = expit((distance + rim["thickness_mm"]) / np.float32(0.5))
            delta += rim_w * (np.float32(rim["delta_hu"]) * (1.0 + 0.5 * np.float32(p["texture_amount"]) * texture) - delta)
        if p.get("capsule"):
            cap = p["capsule"]
            half = 0.5 * cap["thickness_mm"]
            cap_w = np.exp(-(((distance + half) / np.float32(half)) ** 2))
            delta += cap_w * (np.float32(cap["delta_hu"]) - delta)
        if p.get("necrosis"):
            nec = p["necrosis"]
            radius = float(np.prod(p["radii_mm"])) ** (1 / 3)
            border = smooth_noise(box_shape, sigma_mm=max(0.3 * radius, 1.0), spacing_mm=spec.spacing_mm, rng=necrosis_rng)
            depth = -(1.0 - nec["fraction"]) * radius
            nec_w = expit((depth + 0.15 * radius * border - distance) / np.float32(1.0))
            delta += nec_w * (np.float32(nec["delta_hu"]) * (1.0 + 0.3 * np.float32(p["texture_amount"]) * texture) - delta)
        texture_hu = np.float32(p.get("texture_sd_hu", 0.0)) * texture
        return w, delta.astype(np.float32), texture_hu.astype(np.float32)

    def _label(self, w: np.ndarray, delta: np.ndarray, spec: TumorSpec) -> np.ndarray:
        # Specs drawn before label_at existed were labelled at the half-maximum and replay so.
        label_at = float(spec.params.get("label_at", LABEL_AT))
        visible = visible_contrast(w, delta, spec.params["delta_hu"], label_at)
        if spec.params.get("rim"):
            # The enhancing rim is tumour, though its contrast has the other sign and may be weaker than the core's:
            # label by the shape's presence at label_at, so the rim a reader sees is inside the label.
            visible |= w >= np.float32(label_at)
        # A rim or capsule of opposite sign to the core passes through zero contrast on its way:
        # that ring is inside the lesion, so enclosed gaps belong to the label.
        if spec.params.get("rim") or spec.params.get("capsule"):
            visible = fill_holes(visible)
        return visible

    def render(self, spec: TumorSpec, organ_box: np.ndarray, origin, *, ct_box: np.ndarray | None = None) -> Rendering:
        """Label and presence of the tumour in the box (``ct_box`` is not needed: the shape ignores the scan)."""
        w, delta, _ = self._fields(spec, organ_box.shape, origin)
        presence = self._label(w, delta, spec)
        label = presence if spec.exophytic else self._label(w * organ_box, delta, spec)
        return Rendering(label=label, presence=presence)

    def apply(self, ct_box: np.ndarray, organ_box: np.ndarray, spec: TumorSpec, origin):
        w, delta, texture_hu = self._fields(spec, ct_box.shape, origin)
        if not spec.exophytic:
            w = w * organ_box
        label = self._label(w, delta, spec)
        target = np.float32(spec.organ_mean_hu) + delta + texture_hu
        level = tissue_level(ct_box, spec.spacing_mm, spec.params.get("level_blur", _SPEC_V1_LEVEL_BLUR), organ_box)
        out, changed = blend(ct_box, w, target, level)
        return out, label, changed
