"""The organ registry: every fact tumorsyn knows about a host organ, in one place.

One :class:`OrganPreset` per organ holds its label values in each label convention, the plausible
HU of its parenchyma (per contrast phase, and the generous range a host scan is checked against),
where tumours may sit (margin, inside fraction, exophytic rule) and how they look by default
(appearance, contrast, necrosis, capsule, satellites). The label conventions themselves
(:data:`LABEL_CONVENTIONS`) live here too. Every CLI ``choices=``, config check and label preset is
derived from :data:`ORGAN_PRESETS`: adding an organ is one entry below (plus, when no real tumours
of that organ were fitted, a fallback entry in ``tumorsyn/data/tumour_priors.json``).

Numbers are chosen from the literature summarised in ANCHORS.md; every placement and appearance
number is overridable through :func:`tumorsyn.sample_spec` keywords.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from tumorsyn.errors import ConfigError

__all__ = ["OrganPreset", "LabelConvention", "ORGAN_PRESETS", "ORGANS", "LABEL_CONVENTIONS", "LABEL_PRESETS",
           "PRESET_VALUES", "get_preset", "join_names", "APPEARANCES"]

APPEARANCES = ("hypodense", "isodense", "hyperdense", "cystic", "rim")


@dataclass(frozen=True)
class LabelConvention:
    """One label convention (``--label-preset``): the values it defines and those that mark lesions.

    Attributes
    ----------
    name : str
    values : frozenset of int or None
        Every non-zero value the convention defines; None for a binary mask (exactly one non-zero
        value). A label map holding a value outside this set was not written in this convention.
    lesion : tuple of int
        Values marking existing tumours or cysts: synthetic tumours avoid them, and they belong to
        the organ for placement.
    meaning : str
        What the values mean, in words, for messages; ``{organ}`` stands for the host organ.
    """

    name: str
    values: frozenset | None
    lesion: tuple = ()
    meaning: str = ""


# Order of the keys is the order of --label-preset choices (after "auto").
LABEL_CONVENTIONS: dict[str, LabelConvention] = {
    # TotalSegmentator v2 "total" task: 117 structures (1 spleen, 2 right kidney, 3 left kidney, 5 liver, 7 pancreas).
    "totalsegmentator": LabelConvention("totalsegmentator", frozenset(range(1, 118)), (),
                                        "1-117 with the {organ}'s own labels"),
    # Medical Segmentation Decathlon (Task03 liver, Task07 pancreas, Task09 spleen): 1 organ, 2 tumour.
    "decathlon": LabelConvention("decathlon", frozenset({1, 2}), (2,), "1 organ, 2 tumour"),
    # KiTS19/21/23: 1 kidney, 2 tumour, 3 cyst.
    "kits": LabelConvention("kits", frozenset({1, 2, 3}), (2, 3), "1 kidney, 2 tumour, 3 cyst"),
    # A binary organ mask: every non-zero voxel is organ.
    "binary": LabelConvention("binary", None, (), "one non-zero value"),
}


@dataclass(frozen=True)
class OrganPreset:
    """Everything tumorsyn knows about one host organ.

    Attributes
    ----------
    name : str
        The organ's name, as given to ``--organ`` and written into every spec.
    margin_mm : float
        Least distance (mm) between the tumour label and the organ surface.
    min_inside_fraction : float
        Least fraction of the uncut tumour shape that must lie inside the organ (the part outside
        is cut away, unless exophytic).
    exophytic_probability : float
        Chance that a tumour is allowed to bulge out of the organ (kidney); 0 forbids exophytic
        tumours (``--exophytic yes`` is refused).
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
    necrosis_probability, capsule_probability, satellite_probability : float
        Chances that a rules tumour has a necrotic core, a capsule, satellite nodules.
    host_hu : tuple of float
        Plausible range (HU) of the organ's median in a host scan, from unenhanced to late
        contrast phases, kept generous: outside it the label does not lie on this organ or the
        scan is not in Hounsfield units (:class:`~tumorsyn.placement.PlacementContext` refuses).
    phase_hu : dict
        Typical parenchyma HU ``(low, high)`` per contrast phase (``unenhanced``,
        ``portal_venous``, ...), for reference and messages; each lies inside ``host_hu``.
    label_values : dict
        Label values of the organ per key of :data:`LABEL_CONVENTIONS`; a convention missing here
        has no such organ, and an empty tuple means "every non-zero label" (binary masks).
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
    phase_hu: dict = field(default_factory=dict)
    label_values: dict = field(default_factory=dict)


# host_hu, per organ. Fat is -150..-50 HU, so a label lying on fat (median about -100) falls below
# every range; the upper bounds sit below bone and contrast-filled vessels (300+ HU in arterial
# phase). Liver: 40..70 unenhanced, down to about -40 in severe steatosis, 100..150 portal-venous,
# up to about 200 with iron or amiodarone plus contrast. Pancreas: 30..50 unenhanced, lower with
# fatty infiltration (the bundled example's label, largely fat, has a median of -7), 100..150 in
# the pancreatic phase. Kidney: 30..40 unenhanced (10..20 in the bundled 3 mm example, partial
# volume with the perirenal fat), 150..250 in corticomedullary and nephrographic phases
# (3D-IRCADb patient 1: 205). Spleen: 40..60 unenhanced (35 in the bundled 3 mm example),
# 100..130 portal-venous, heterogeneous ("zebra") in the arterial phase.
ORGAN_PRESETS: dict[str, OrganPreset] = {
    "liver": OrganPreset("liver", margin_mm=3.0, min_inside_fraction=1.0, host_hu=(-50.0, 250.0),
                         phase_hu={"unenhanced": (40.0, 70.0), "portal_venous": (100.0, 150.0)},
                         label_values={"totalsegmentator": (5,), "decathlon": (1, 2), "binary": ()}),
    # The pancreas is 15-25 mm thick: a tumour of that size reaches its surface, so no margin is
    # kept and part of the shape may be cut by the organ outline.
    "pancreas": OrganPreset("pancreas", margin_mm=0.0, min_inside_fraction=0.7, contrast_sd=(1.0, 3.0),
                            necrosis_probability=0.1, capsule_probability=0.0, host_hu=(-60.0, 250.0),
                            phase_hu={"unenhanced": (30.0, 50.0), "pancreatic": (100.0, 150.0)},
                            label_values={"totalsegmentator": (7,), "decathlon": (1, 2), "binary": ()}),
    # Small renal masses are often exophytic: 30 % of kidney tumours may bulge out of the organ.
    "kidney": OrganPreset("kidney", margin_mm=1.0, min_inside_fraction=0.9, exophytic_probability=0.3,
                          vessel_z=3.0, vessel_min_hu=40.0, contrast_sd=(1.0, 3.0), contrast_hu=(20.0, 120.0),
                          host_hu=(-30.0, 300.0),
                          phase_hu={"unenhanced": (30.0, 40.0), "nephrographic": (150.0, 250.0)},
                          label_values={"totalsegmentator": (2, 3), "decathlon": (1, 2), "kits": (1, 2, 3),
                                        "binary": ()}),
    # Splenic lesions (metastases, lymphoma, haemangiomas, abscesses) lie within the parenchyma and
    # are hypodense to the enhanced spleen, so: no exophytic tumours, hypodense by default. The
    # capsule is thin and the organ 3-4 cm thick, so a 2 mm margin keeps tumours off the surface
    # without losing the room early tumours need. host_hu -30..250 is generous on both sides of
    # the phases above, as for the other organs. Decathlon Task09 labels the spleen 1 (no tumour label).
    "spleen": OrganPreset("spleen", margin_mm=2.0, min_inside_fraction=1.0, host_hu=(-30.0, 250.0),
                          phase_hu={"unenhanced": (40.0, 60.0), "portal_venous": (100.0, 130.0)},
                          label_values={"totalsegmentator": (1,), "decathlon": (1, 2), "binary": ()}),
}

# Every known organ, in registry order (the order of choices and messages).
ORGANS: tuple[str, ...] = tuple(ORGAN_PRESETS)

# Label values per organ in each convention, plus "lesion": the values marking existing tumours.
LABEL_PRESETS: dict[str, dict[str, tuple[int, ...]]] = {
    name: {**{organ: p.label_values[name] for organ, p in ORGAN_PRESETS.items() if name in p.label_values},
           "lesion": convention.lesion}
    for name, convention in LABEL_CONVENTIONS.items()
}

# The non-zero values each convention defines (None: binary, exactly one non-zero value).
PRESET_VALUES: dict[str, frozenset[int] | None] = {name: c.values for name, c in LABEL_CONVENTIONS.items()}


def join_names(names, last: str = "or") -> str:
    """``'liver, pancreas, kidney or spleen'``: a list of names for messages.

    Examples
    --------
    >>> join_names(["liver", "kidney"])
    'liver or kidney'
    """
    names = list(names)
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} {last} {names[-1]}"


def get_preset(organ: str) -> OrganPreset:
    """The registry entry of ``organ``; a :class:`ConfigError` naming the known organs otherwise."""
    try:
        return ORGAN_PRESETS[organ]
    except KeyError:
        raise ConfigError(f"unknown organ {organ!r}; choose one of {', '.join(ORGAN_PRESETS)}") from None
