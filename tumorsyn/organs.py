"""Per-organ presets: where tumours may sit and how they look, relative to the scan's own organ.

Numbers are chosen from the literature summarised in ANCHORS.md; every one is overridable through
:func:`tumorsyn.sample_spec` keywords.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from tumorsyn.errors import ConfigError

__all__ = ["OrganPreset", "ORGAN_PRESETS", "get_preset", "APPEARANCES"]

APPEARANCES = ("hypodense", "isodense", "hyperdense", "cystic", "rim")


@dataclass(frozen=True)
class OrganPreset:
    """Placement and appearance defaults for one organ.

    Attributes
    ----------
    margin_mm : float
        Least distance (mm) between the tumour label and the organ surface.
    min_inside_fraction : float
        Least fraction of the uncut tumour shape that must lie inside the organ (the part outside
        is cut away, unless exophytic).
    exophytic_probability : float
        Chance that a tumour is allowed to bulge out of the organ (kidney).
    vessel_z : float
        Voxels brighter than organ mean + ``vessel_z`` x organ std (after 1 mm smoothing) are vessels.
    vessel_min_hu : float
        ...and at least this many HU above the organ mean.
    appearance : dict
        Default probabilities of each appearance in :data:`APPEARANCES`.
    contrast_sd : tuple of float
        Range of the hypo/hyperdense contrast in units of the organ's HU standard deviation.
    contrast_hu : tuple of float
        Bounds (HU) on that contrast, whatever the organ's standard deviation.
    host_hu : tuple of float
        Plausible range (HU) of the organ's median in a host scan, from unenhanced to late
        contrast phases, kept generous: outside it the label does not lie on this organ or the
        scan is not in Hounsfield units (:class:`~tumorsyn.placement.PlacementContext` refuses).
    """

    name: str
    margin_mm: float
    min_inside_fraction: float
    exophytic_probability: float = 0.0
    vessel_z: float = 2.5
    vessel_min_hu: float = 30.0
    appearance: dict = field(default_factory=lambda: {"hypodense": 1.0})
    contrast_sd: tuple = (1.5, 3.5)
    contrast_hu: tuple = (15.0, 110.0)
    necrosis_probability: float = 0.3
    capsule_probability: float = 0.15
    satellite_probability: float = 0.15
    host_hu: tuple = (-50.0, 250.0)


# host_hu, per organ. Fat is -150..-50 HU, so a label lying on fat (median about -100) falls below
# every range; the upper bounds sit below bone and contrast-filled vessels (300+ HU in arterial
# phase). Liver: 40..70 unenhanced, down to about -40 in severe steatosis, 100..150 portal-venous,
# up to about 200 with iron or amiodarone plus contrast. Pancreas: 30..50 unenhanced, lower with
# fatty infiltration (the bundled example's label, largely fat, has a median of -7), 100..150 in
# the pancreatic phase. Kidney: 30..40 unenhanced (10..20 in the bundled 3 mm example, partial
# volume with the perirenal fat), 150..250 in corticomedullary and nephrographic phases
# (3D-IRCADb patient 1: 205).
ORGAN_PRESETS = {
    "liver": OrganPreset("liver", margin_mm=3.0, min_inside_fraction=1.0, host_hu=(-50.0, 250.0)),
    # The pancreas is 15-25 mm thick: a tumour of that size reaches its surface, so no margin is
    # kept and part of the shape may be cut by the organ outline.
    "pancreas": OrganPreset("pancreas", margin_mm=0.0, min_inside_fraction=0.7, contrast_sd=(1.0, 3.0),
                            necrosis_probability=0.1, capsule_probability=0.0, host_hu=(-60.0, 250.0)),
    "kidney": OrganPreset("kidney", margin_mm=1.0, min_inside_fraction=0.9, exophytic_probability=0.3,
                          vessel_z=3.0, vessel_min_hu=40.0, contrast_sd=(1.0, 3.0), contrast_hu=(20.0, 120.0),
                          host_hu=(-30.0, 300.0)),
}


def get_preset(organ: str) -> OrganPreset:
    try:
        return ORGAN_PRESETS[organ]
    except KeyError:
        raise ConfigError(f"unknown organ {organ!r}; choose one of {', '.join(ORGAN_PRESETS)}") from None
