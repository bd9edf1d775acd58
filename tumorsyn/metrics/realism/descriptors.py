"""Per-lesion realism descriptors: size, shape, intensity relative to the host organ, and context.

Every descriptor is computed the same way for a real and a synthetic lesion, from canonical arrays
(HU, spacing in mm), inside the lesion's bounding box plus a 20 mm margin, so the cost grows with the
lesion, not with the scan. :data:`DESCRIPTORS` holds each name with its group, unit and definition;
the report and ``docs/realism.md`` print that same text.

Names and definitions (V = voxel count x voxel volume; the mesh is the marching-cubes surface of the
lesion at level 0.5, scaled by the spacing, as pyradiomics' shape features):

size
    ``volume_mm3``, ``max_diameter_mm`` (largest distance between mesh vertices),
    ``equivalent_diameter_mm`` (``2 (3V / 4 pi)^(1/3)``).
shape
    ``sphericity`` = ``(36 pi V_mesh^2)^(1/3) / A_mesh`` (a digital sphere measures about 0.91, not 1:
    the staircase surface is ~9 % larger than the smooth one); ``elongation`` = ``sqrt(l2 / l1)`` and
    ``flatness`` = ``sqrt(l3 / l1)`` with ``l1 >= l2 >= l3`` the eigenvalues of the covariance of the
    voxel centres in mm (an ellipsoid with semi-axes a >= b >= c gives b/a and c/a); ``solidity`` =
    ``V_mesh / V_hull`` (convex hull of the mesh vertices); ``surface_irregularity`` =
    ``A_mesh / A_hull`` (1 for a convex lesion, larger for a lobulated or spiculated one).
host (the surrounding parenchyma; recorded and compared, but describing the scan more than the lesion)
    The *shell* is the organ voxels whose distance to the lesion is > 2 mm and <= 10 mm, without
    any lesion voxel (this one, other lesions, lesions excluded by the caller), without fat (< -20 HU)
    and without bright voxels (> shell median + 3 x 1.4826 x MAD of the shell). ``shell_median_hu``
    is its median; ``shell_noise_hu`` = ``1.4826 x MAD`` of the high-pass residual (HU minus the mean
    of its 26 neighbours, scaled by ``sqrt(26/27)`` so that white noise of SD s gives s) over shell
    voxels whose whole 3x3x3 neighbourhood lies in the organ outside lesions: scanner noise, not
    anatomy. ``lesion_median_hu``: median HU of the lesion voxels.
intensity
    ``contrast_hu`` = ``lesion_median_hu - shell_median_hu``; ``contrast_noise`` = ``contrast_hu /
    shell_noise_hu``; ``internal_iqr_hu`` = interquartile range of HU over the lesion's interior (the
    lesion minus its one-voxel, 6-connected border; NaN with fewer than 5 interior voxels) and
    ``internal_iqr_noise`` = that / ``shell_noise_hu``. Edge: the inner ring is the lesion voxels
    within ``w`` of a non-lesion voxel centre, the outer ring the organ voxels (no lesion, no fat, no
    bright voxel) within ``w`` of a lesion voxel centre, ``w = max(1 mm, largest voxel side)``;
    ``edge_gradient_hu_per_mm`` = (inner ring median HU - outer ring median HU) / g, with
    g = (mean inner distance + mean outer distance) / 2 (for two voxels facing each other across the
    border, g is their centre spacing); ``edge_sharpness`` = (inner ring median - outer ring median) /
    ``contrast_hu``: the part of the lesion's contrast reached within one voxel
    of the border (about 1 for a step edge, towards 0 for a blurred one; NaN when ``|contrast_hu|`` <
    ``shell_noise_hu``); ``glcm_homogeneity`` and ``glcm_contrast`` = grey-level co-occurrence
    homogeneity ``sum P(i,j) / (1 + (i-j)^2)`` and contrast ``sum P(i,j) (i-j)^2`` of the lesion's
    axial slices (scikit-image ``graycomatrix``; in-plane neighbours at 1 pixel, 4 directions,
    symmetric, pairs with both pixels in the lesion, summed over slices), HU quantised in fixed 10 HU
    bins from -200 to 300 HU (values outside clipped); NaN with fewer than 10 pairs.
context
    ``depth_mm`` = distance in mm from the lesion's centroid voxel to the nearest voxel outside the organ
    (organ = organ mask plus every lesion; the scan's own edge is NOT surface: an organ cut by the field
    of view is taken to continue); ``surface_distance_mm`` = the same distance for the lesion voxel
    nearest the organ surface (about one voxel for a lesion touching the capsule);
    ``vessel_distance_mm`` = distance in mm from the lesion to the nearest bright-vessel voxel: organ
    voxels (no lesion) whose HU, smoothed by a 1 mm Gaussian, exceed ``shell_median_hu`` + max(30 HU,
    3 x 1.4826 x MAD of the shell's HU); censored at 20 mm (the search margin) when none is nearer.

Undefined values (too few voxels, no shell, no contrast) are NaN; comparisons skip NaN per descriptor.

Example
-------
>>> import numpy as np
>>> from tumorsyn.metrics.realism import lesion_descriptors
>>> idx = np.indices((40, 40, 40)) - 20
>>> organ = np.ones((40, 40, 40), bool)
>>> lesion = (idx ** 2).sum(0) <= 36
>>> ct = np.where(lesion, 60.0, 100.0).astype(np.float32)
>>> row = lesion_descriptors(ct, lesion, organ, spacing_mm=(1.0, 1.0, 1.0))
>>> round(row["contrast_hu"], 1), 0.85 < row["sphericity"] < 0.95
(-40.0, True)
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
from scipy import ndimage

from tumorsyn.host import highpass_noise_hu, reference_noise_hu
from tumorsyn.lesion_size import label_lesions, max_diameter_mm
from tumorsyn.metrics.sizes import check_bins_mm, size_bin_index, size_bin_labels

__all__ = ["DESCRIPTORS", "DEFAULTS", "SIZE_BINS_MM", "descriptor_names", "lesion_descriptors", "describe_case",
           "organ_depth_mm", "shell_noise_ref_hu", "size_class"]

# One place for every number behind the definitions above (recorded in each report).
DEFAULTS: dict[str, float] = {
    "margin_mm": 20.0,           # box margin around a lesion; also the vessel search radius
    "shell_inner_mm": 2.0,
    "shell_outer_mm": 10.0,
    "fat_below_hu": -20.0,
    "bright_robust_sd": 3.0,
    "edge_ring_min_mm": 1.0,
    "vessel_smooth_mm": 1.0,
    "vessel_min_delta_hu": 30.0,
    "vessel_robust_sd": 3.0,
    "glcm_low_hu": -200.0,
    "glcm_high_hu": 300.0,
    "glcm_bin_hu": 10.0,
    "glcm_bin_noise": 1.0,
    "glcm_noise_half_range": 30.0,
    "min_interior_voxels": 5,
    "min_shell_voxels": 10,
    "min_glcm_pairs": 10,
}
# Size classes by equivalent-sphere diameter: < 20 mm ("early/small") and >= 20 mm.
SIZE_BINS_MM: tuple[float, ...] = (20.0,)
_MAD_TO_SD = 1.4826

# name: (group, unit, definition). Groups: size, shape, host, intensity (in units of the host's noise),
# scanner (intensity in HU: tracks the scanner's noise and kernel), context.
DESCRIPTORS: dict[str, tuple[str, str, str]] = {
    "volume_mm3": ("size", "mm^3", "voxel count x voxel volume"),
    "max_diameter_mm": ("size", "mm", "largest distance between vertices of the marching-cubes surface (level 0.5)"),
    "equivalent_diameter_mm": ("size", "mm", "2 (3V / 4 pi)^(1/3)"),
    "sphericity": ("shape", "1", "(36 pi V_mesh^2)^(1/3) / A_mesh on the marching-cubes mesh (digital sphere ~0.91)"),
    "elongation": ("shape", "1", "sqrt(l2/l1), eigenvalues l1>=l2>=l3 of the covariance of voxel centres in mm"),
    "flatness": ("shape", "1", "sqrt(l3/l1), as elongation"),
    "solidity": ("shape", "1", "mesh volume / volume of the convex hull of the mesh vertices"),
    "surface_irregularity": ("shape", "1", "mesh surface area / convex hull surface area (1 = convex)"),
    "lesion_median_hu": ("host", "HU", "median HU of the lesion voxels"),
    "shell_median_hu": ("host", "HU", "median HU of the shell: organ voxels 2-10 mm from the lesion, no lesion, "
                                      "no fat (< -20 HU), no bright voxel (> median + 3 robust SD)"),
    "shell_noise_hu": ("host", "HU", "1.4826 x MAD of the shell's high-pass residual (HU minus the mean of its 26 "
                                     "neighbours, x sqrt(26/27)): scanner noise"),
    "shell_noise_ref_hu": ("host", "HU", "shell_noise_hu at a 1.5 mm cube voxel: x (voxel volume / 3.375 mm^3)^0.2 "
                                         "(tumorsyn.host.reference_noise_hu)"),
    "contrast_hu": ("scanner", "HU", "lesion_median_hu - shell_median_hu"),
    "contrast_noise": ("intensity", "1", "contrast_hu / shell_noise_ref_hu (the same on any grid)"),
    "internal_iqr_hu": ("scanner", "HU", "interquartile range of HU in the lesion interior (one-voxel 6-connected "
                                           "erosion; NaN under 5 voxels)"),
    "internal_iqr_noise": ("intensity", "1", "internal_iqr_hu / shell_noise_hu"),
    "edge_gradient_hu_per_mm": ("scanner", "HU/mm", "(inner ring median - outer ring median) / mean ring distance "
                                                      "across the border; rings = voxels within max(1 mm, largest "
                                                      "voxel side) of the border, inside the lesion / in the organ"),
    "edge_sharpness": ("intensity", "1", "(inner ring median - outer ring median) / contrast_hu: share of the "
                                         "contrast reached across the border (1 = step edge); NaN if |contrast| < noise"),
    "glcm_homogeneity": ("scanner", "1", "GLCM homogeneity of axial slices inside the lesion (1 pixel, 4 directions, "
                                           "symmetric; 10 HU bins over -200..300 HU)"),
    "glcm_contrast": ("scanner", "bins^2", "GLCM contrast, same matrix (x 100 for HU^2)"),
    "edge_gradient_noise_per_mm": ("intensity", "1/mm", "edge_gradient_hu_per_mm / shell_noise_ref_hu"),
    "glcm_homogeneity_noise": ("intensity", "1", "GLCM homogeneity as glcm_homogeneity, of (HU - shell_median_hu) / "
                                                 "shell_noise_hu in bins of 1 over -30..30 (the host's noise as unit)"),
    "glcm_contrast_noise": ("intensity", "bins^2", "GLCM contrast of that matrix (noise SD^2)"),
    "depth_mm": ("context", "mm", "distance from the lesion centroid to the organ surface (the scan edge is not surface)"),
    "surface_distance_mm": ("context", "mm", "smallest distance from a lesion voxel to the organ surface"),
    "vessel_distance_mm": ("context", "mm", "distance from the lesion to the nearest bright-vessel voxel (organ, 1 mm "
                                            "Gaussian-smoothed HU > shell median + max(30 HU, 3 robust SD)); "
                                            "censored at 20 mm"),
}


def descriptor_names(groups: Sequence[str] | None = None) -> list[str]:
    """Descriptor names, in :data:`DESCRIPTORS` order, optionally only those of ``groups``."""
    return [n for n, (g, _, _) in DESCRIPTORS.items() if groups is None or g in groups]


def size_class(equivalent_diameter_mm: float, bins_mm: Sequence[float] = SIZE_BINS_MM) -> str:
    """Label of the size class of an equivalent diameter, e.g. ``'<20 mm'`` or ``'>=20 mm'``."""
    return size_bin_labels(bins_mm)[size_bin_index(equivalent_diameter_mm, bins_mm)]


def _spacing(spacing_mm: Sequence[float]) -> np.ndarray:
    sp = np.asarray([float(s) for s in spacing_mm], dtype=np.float64)
    if sp.shape != (3,) or not np.all(np.isfinite(sp)) or np.any(sp <= 0):
        raise ValueError(f"spacing_mm must be three positive numbers, got {tuple(spacing_mm)}")
    return sp


def _robust(values: np.ndarray) -> tuple[float, float]:
    """(median, 1.4826 x MAD)."""
    med = float(np.median(values))
    return med, _MAD_TO_SD * float(np.median(np.abs(values - med)))


def organ_depth_mm(organ_mask: np.ndarray, spacing_mm: Sequence[float]) -> np.ndarray:
    """Distance (mm, float32) of every organ voxel to the nearest voxel outside the organ; 0 outside.

    The scan's own edge is not a surface: an organ cut by the field of view is taken to continue
    (scipy's distance transform only measures to zeros inside the array). Work happens in the organ's
    bounding box, padded by one background voxel on every side that does not touch the scan's edge.
    An organ that fills the whole scan has no surface in view: its depth is ``inf``.
    """
    organ = np.asarray(organ_mask, dtype=bool)
    sp = _spacing(spacing_mm)
    out = np.zeros(organ.shape, dtype=np.float32)
    boxes = ndimage.find_objects(organ.astype(np.uint8))
    if not boxes or boxes[0] is None:
        return out
    box = tuple(slice(max(s.start - 1, 0), min(s.stop + 1, n)) for s, n in zip(boxes[0], organ.shape))
    if organ[box].all():
        # No surface in view (the organ fills the scan): depth is unknown.
        out[box] = np.inf
        return out
    out[box] = ndimage.distance_transform_edt(organ[box], sampling=sp).astype(np.float32)
    return out


def _box(mask_box: tuple[slice, ...], shape: Sequence[int], margin_vox: np.ndarray) -> tuple[slice, ...]:
    return tuple(slice(max(s.start - int(m), 0), min(s.stop + int(m), n))
                 for s, m, n in zip(mask_box, margin_vox, shape))


def _mesh(lesion: np.ndarray, sp: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    from skimage.measure import marching_cubes  # deferred: skimage's import is slow

    try:
        verts, faces = marching_cubes(np.pad(lesion, 1).astype(np.float32), level=0.5, spacing=tuple(sp))[:2]
    except (ValueError, RuntimeError):
        return None
    return verts, faces


def _mesh_volume_area(verts: np.ndarray, faces: np.ndarray) -> tuple[float, float]:
    tri = verts[faces].astype(np.float64)
    # Divergence theorem: the signed volumes of the tetrahedra (origin, triangle) sum to the volume.
    volume = abs(float(np.einsum("ij,ij->i", tri[:, 0], np.cross(tri[:, 1], tri[:, 2])).sum()) / 6.0)
    area = 0.5 * float(np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1).sum())
    return volume, area


def _shape(lesion: np.ndarray, sp: np.ndarray) -> dict[str, float]:
    out = dict.fromkeys(("sphericity", "elongation", "flatness", "solidity", "surface_irregularity"), math.nan)
    coords = np.argwhere(lesion) * sp
    if len(coords) >= 2:
        eig = np.sort(np.linalg.eigvalsh(np.cov(coords, rowvar=False)))[::-1]
        if eig[0] > 0:
            out["elongation"] = float(math.sqrt(max(eig[1], 0.0) / eig[0]))
            out["flatness"] = float(math.sqrt(max(eig[2], 0.0) / eig[0]))
    mesh = _mesh(lesion, sp)
    if mesh is None:
        return out
    verts, faces = mesh
    volume, area = _mesh_volume_area(verts, faces)
    if area > 0:
        out["sphericity"] = float((36.0 * math.pi * volume ** 2) ** (1.0 / 3.0) / area)
    from scipy.spatial import ConvexHull, QhullError

    try:
        hull = ConvexHull(verts)
    except QhullError:
        return out
    if hull.volume > 0:
        out["solidity"] = float(volume / hull.volume)
        out["surface_irregularity"] = float(area / hull.area)
    return out


def _glcm(values: np.ndarray, lesion: np.ndarray, *, low: float, high: float, width: float) -> tuple[float, float]:
    """GLCM homogeneity and contrast of ``values`` quantised in ``width`` bins over [low, high)."""
    from skimage.feature import graycomatrix  # deferred: skimage's import is slow

    n_bins = int(round((high - low) / width))
    # Level 0 marks pixels outside the lesion; its row and column are dropped, so only pairs with
    # both pixels inside the lesion count.
    levels = (np.clip(np.floor((values - low) / width), 0, n_bins - 1) + 1).astype(np.uint8)
    levels[~lesion] = 0
    total = np.zeros((n_bins + 1, n_bins + 1), dtype=np.float64)
    for z in np.flatnonzero(lesion.any(axis=(0, 1))):
        if np.count_nonzero(lesion[:, :, z]) < 2:
            continue
        m = graycomatrix(levels[:, :, z], distances=[1], angles=[0, np.pi / 4, np.pi / 2, 3 * np.pi / 4],
                         levels=n_bins + 1, symmetric=True, normed=False)
        total += m[:, :, 0, :].sum(axis=-1)
    p = total[1:, 1:]
    pairs = p.sum()
    if pairs < DEFAULTS["min_glcm_pairs"]:
        return math.nan, math.nan
    p = p / pairs
    i, j = np.indices(p.shape)
    d2 = (i - j) ** 2
    return float((p / (1.0 + d2)).sum()), float((p * d2).sum())


def _noise(hu: np.ndarray, shell: np.ndarray, valid: np.ndarray) -> float:
    """Robust SD of the high-pass residual over shell voxels with a full valid 3x3x3 neighbourhood."""
    # The same estimate as the generators' host noise (tumorsyn.host): one definition on both sides.
    return highpass_noise_hu(hu, shell, valid, min_voxels=int(DEFAULTS["min_shell_voxels"]))


def _intensity(hu: np.ndarray, lesion: np.ndarray, organ: np.ndarray, blocked: np.ndarray, d_out: np.ndarray,
               d_in: np.ndarray, sp: np.ndarray) -> tuple[dict[str, float], float, float]:
    """Intensity descriptors, plus (shell median, shell raw robust SD) for the vessel threshold."""
    names = ("lesion_median_hu", "shell_median_hu", "shell_noise_hu", "shell_noise_ref_hu", "contrast_hu", "contrast_noise",
             "internal_iqr_hu", "internal_iqr_noise", "edge_gradient_hu_per_mm", "edge_gradient_noise_per_mm",
             "edge_sharpness")
    out = dict.fromkeys(names, math.nan)
    out["lesion_median_hu"] = float(np.median(hu[lesion]))
    interior = ndimage.binary_erosion(lesion, border_value=0)
    if np.count_nonzero(interior) >= DEFAULTS["min_interior_voxels"]:
        q25, q75 = np.percentile(hu[interior], [25, 75])
        out["internal_iqr_hu"] = float(q75 - q25)
    tissue = organ & ~blocked
    shell = tissue & (d_out > DEFAULTS["shell_inner_mm"]) & (d_out <= DEFAULTS["shell_outer_mm"])
    values = hu[shell]
    if values.size < DEFAULTS["min_shell_voxels"]:
        return out, math.nan, math.nan
    med0, sd0 = _robust(values)
    keep = (hu >= DEFAULTS["fat_below_hu"]) & (hu <= med0 + DEFAULTS["bright_robust_sd"] * sd0)
    shell &= keep
    if np.count_nonzero(shell) < DEFAULTS["min_shell_voxels"]:
        return out, math.nan, math.nan
    shell_med, shell_sd = _robust(hu[shell])
    noise = _noise(hu, shell, tissue & keep)
    # Contrast and edge against the noise of a reference voxel (one unit on every grid); internal
    # spread and texture against the grid's own noise (the grain they are seen with).
    noise_ref = reference_noise_hu(noise, sp) if noise > 0 else math.nan
    out["shell_median_hu"], out["shell_noise_hu"], out["shell_noise_ref_hu"] = shell_med, noise, noise_ref
    contrast = out["lesion_median_hu"] - shell_med
    out["contrast_hu"] = contrast
    if noise > 0:
        out["contrast_noise"] = contrast / noise_ref
        if not math.isnan(out["internal_iqr_hu"]):
            out["internal_iqr_noise"] = out["internal_iqr_hu"] / noise
    # Rings: the first voxel layer on each side of the border (at least 1 mm deep).
    width = max(DEFAULTS["edge_ring_min_mm"], float(sp.max()))
    inner = lesion & (d_in <= width)
    outer = tissue & keep & (d_out > 0) & (d_out <= width)
    if inner.any() and outer.any():
        step = float(np.median(hu[inner]) - np.median(hu[outer]))
        gap = 0.5 * (float(d_in[inner].mean()) + float(d_out[outer].mean()))
        out["edge_gradient_hu_per_mm"] = step / gap
        if noise > 0:
            out["edge_gradient_noise_per_mm"] = step / gap / noise_ref
        if noise > 0 and abs(contrast) >= noise:
            out["edge_sharpness"] = step / contrast
    return out, shell_med, shell_sd


def _describe_crop(hu: np.ndarray, lesion: np.ndarray, organ: np.ndarray, blocked: np.ndarray,
                   depth: np.ndarray | None, sp: np.ndarray) -> dict[str, float]:
    """Every descriptor of one lesion given crops around it (``blocked``: voxels of other lesions)."""
    voxels = int(np.count_nonzero(lesion))
    volume = voxels * float(np.prod(sp))
    row: dict[str, float] = {
        "voxels": voxels,
        "volume_mm3": volume,
        "max_diameter_mm": max_diameter_mm(lesion, sp),
        "equivalent_diameter_mm": 2.0 * (3.0 * volume / (4.0 * math.pi)) ** (1.0 / 3.0),
    }
    row.update(_shape(lesion, sp))
    d_out = ndimage.distance_transform_edt(~lesion, sampling=sp)
    d_in = ndimage.distance_transform_edt(lesion, sampling=sp)
    blocked = blocked | lesion
    intensity, shell_med, shell_sd = _intensity(hu, lesion, organ, blocked, d_out, d_in, sp)
    row.update(intensity)
    row["glcm_homogeneity"], row["glcm_contrast"] = _glcm(
        hu, lesion, low=DEFAULTS["glcm_low_hu"], high=DEFAULTS["glcm_high_hu"], width=DEFAULTS["glcm_bin_hu"])
    # The same matrix in units of the host's noise: what the texture looks like against this scanner's
    # own grain (the HU version tracks the scanner: a 13 HU-noise scan reads rougher than a 9 HU one).
    noise, shell_hu = row["shell_noise_hu"], row["shell_median_hu"]
    if noise > 0:
        half = DEFAULTS["glcm_noise_half_range"]
        row["glcm_homogeneity_noise"], row["glcm_contrast_noise"] = _glcm(
            (hu - shell_hu) / noise, lesion, low=-half, high=half, width=DEFAULTS["glcm_bin_noise"])
    else:
        row["glcm_homogeneity_noise"] = row["glcm_contrast_noise"] = math.nan
    # Context.
    if depth is not None:
        centre = np.rint(np.argwhere(lesion).mean(axis=0)).astype(int)
        depth_values = (float(depth[tuple(centre)]), float(depth[lesion].min()))
        row["depth_mm"], row["surface_distance_mm"] = (v if math.isfinite(v) else math.nan for v in depth_values)
    else:
        row["depth_mm"] = row["surface_distance_mm"] = math.nan
    row["vessel_distance_mm"] = math.nan
    if not math.isnan(shell_med):
        smooth = ndimage.gaussian_filter(hu.astype(np.float32), sigma=DEFAULTS["vessel_smooth_mm"] / sp)
        threshold = shell_med + max(DEFAULTS["vessel_min_delta_hu"], DEFAULTS["vessel_robust_sd"] * shell_sd)
        vessel = organ & ~blocked & (smooth > threshold)
        margin = DEFAULTS["margin_mm"]
        row["vessel_distance_mm"] = min(float(d_out[vessel].min()), margin) if vessel.any() else margin
    return row


def _check(ct_hu: np.ndarray, masks: dict[str, np.ndarray | None]) -> None:
    if np.asarray(ct_hu).ndim != 3:
        raise ValueError(f"ct_hu must be a 3D array, got shape {np.shape(ct_hu)}")
    for name, mask in masks.items():
        if mask is not None and np.shape(mask) != np.shape(ct_hu):
            raise ValueError(f"{name} shape {np.shape(mask)} differs from ct_hu shape {np.shape(ct_hu)}")


def lesion_descriptors(ct_hu: np.ndarray, lesion_mask: np.ndarray, organ_mask: np.ndarray, spacing_mm: Sequence[float],
                       *, other_lesions: np.ndarray | None = None, depth_mm: np.ndarray | None = None) -> dict[str, float]:
    """Every descriptor of one lesion (see the module docstring for the definitions).

    Parameters
    ----------
    ct_hu : ndarray of float, shape (X, Y, Z)
        CT in HU, canonical orientation.
    lesion_mask : ndarray of bool, shape (X, Y, Z)
        The lesion (all its voxels count as one lesion, connected or not).
    organ_mask : ndarray of bool, shape (X, Y, Z)
        The host organ; the lesion is added to it.
    spacing_mm : sequence of 3 float
        Voxel size in mm.
    other_lesions : ndarray of bool, shape (X, Y, Z), optional
        Voxels of other lesions: kept out of the shell, the edge rings and the vessels.
    depth_mm : ndarray of float, shape (X, Y, Z), optional
        :func:`organ_depth_mm` of the organ plus every lesion, when already computed (saves a
        full-organ distance transform per lesion).

    Returns
    -------
    dict
        ``voxels`` and every name of :data:`DESCRIPTORS` (float; NaN where undefined).

    Raises
    ------
    ValueError
        Shapes that differ, a bad spacing or an empty lesion.
    """
    sp = _spacing(spacing_mm)
    _check(ct_hu, {"lesion_mask": lesion_mask, "organ_mask": organ_mask, "other_lesions": other_lesions,
                   "depth_mm": depth_mm})
    lesion = np.asarray(lesion_mask, dtype=bool)
    found = ndimage.find_objects(lesion.astype(np.uint8))
    if not found or found[0] is None:
        raise ValueError("lesion_mask is empty")
    organ = np.asarray(organ_mask, dtype=bool) | lesion
    other = np.zeros_like(lesion) if other_lesions is None else np.asarray(other_lesions, dtype=bool) & ~lesion
    if depth_mm is None:
        depth_mm = organ_depth_mm(organ | other, sp)
    box = _box(found[0], lesion.shape, np.ceil(DEFAULTS["margin_mm"] / sp))
    return _describe_crop(np.asarray(ct_hu, dtype=np.float32)[box], lesion[box], organ[box], other[box],
                          np.asarray(depth_mm)[box], sp)


def shell_noise_ref_hu(ct_hu: np.ndarray, lesion_mask: np.ndarray, organ_mask: np.ndarray, spacing_mm: Sequence[float],
                       *, other_lesions: np.ndarray | None = None) -> float:
    """``shell_noise_ref_hu`` of :func:`lesion_descriptors` alone: the scanner noise of the lesion's shell (HU, at
    the reference voxel), the unit ``contrast_noise`` is measured in; NaN when the shell is too small.

    ``lesion_mask`` need not be written into ``ct_hu`` yet: only voxels outside it are read, so a
    generator can measure the unit of the tumour it is about to write.
    """
    sp = _spacing(spacing_mm)
    _check(ct_hu, {"lesion_mask": lesion_mask, "organ_mask": organ_mask, "other_lesions": other_lesions})
    lesion = np.asarray(lesion_mask, dtype=bool)
    found = ndimage.find_objects(lesion.astype(np.uint8))
    if not found or found[0] is None:
        raise ValueError("lesion_mask is empty")
    other = np.zeros_like(lesion) if other_lesions is None else np.asarray(other_lesions, dtype=bool) & ~lesion
    box = _box(found[0], lesion.shape, np.ceil(DEFAULTS["margin_mm"] / sp))
    lesion, organ, other = lesion[box], (np.asarray(organ_mask, dtype=bool) | lesion_mask)[box], other[box]
    d_out = ndimage.distance_transform_edt(~lesion, sampling=sp)
    d_in = ndimage.distance_transform_edt(lesion, sampling=sp)
    out, _, _ = _intensity(np.asarray(ct_hu, dtype=np.float32)[box], lesion, organ, other | lesion, d_out, d_in, sp)
    return float(out["shell_noise_ref_hu"])


def describe_case(ct_hu: np.ndarray, lesions: np.ndarray, organ_mask: np.ndarray, spacing_mm: Sequence[float], *,
                  organ: str | None = None, labelled: bool = False, exclude: np.ndarray | None = None,
                  min_voxels: int = 3, bins_mm: Sequence[float] = SIZE_BINS_MM, case_id: str | None = None,
                  thumbnails: bool = False) -> list[dict]:
    """Descriptor rows of every lesion of one scan.

    Parameters
    ----------
    ct_hu : ndarray of float, shape (X, Y, Z)
        CT in HU, canonical orientation.
    lesions : ndarray, shape (X, Y, Z)
        Lesion mask (non-zero voxels; lesions are its 26-connected components), or, with
        ``labelled=True``, an integer array giving each lesion its own positive id.
    organ_mask : ndarray of bool, shape (X, Y, Z)
        The host organ (lesions are added to it).
    spacing_mm : sequence of 3 float
        Voxel size in mm.
    organ : str, optional
        Organ name written into each row.
    labelled : bool
        Whether ``lesions`` holds lesion ids rather than a mask.
    exclude : ndarray of bool, shape (X, Y, Z), optional
        Further lesion voxels that are not described but kept out of the shell, rings and vessels
        (e.g. real lesions of a scan that received a synthetic one).
    min_voxels : int
        Lesions with fewer voxels are counted (``skipped`` rows) but not described.
    bins_mm : sequence of float
        Size-class edges in mm of equivalent diameter (default 20: ``<20 mm``, ``>=20 mm``).
    case_id : str, optional
        Written into each row.
    thumbnails : bool
        Add ``_thumbnail``: an axial view of the lesion (see :func:`tumorsyn.metrics.realism.gallery.thumbnail`).

    Returns
    -------
    list of dict
        One per lesion in id order: ``case_id``, ``organ``, ``lesion_id``, ``size_class``,
        ``described`` (False below ``min_voxels``), ``centroid_{x,y,z}_vox``, ``voxels`` and every
        descriptor (NaN where undefined or not described).
    """
    sp = _spacing(spacing_mm)
    check_bins_mm(bins_mm)
    if min_voxels < 1:
        raise ValueError(f"min_voxels must be >= 1, got {min_voxels}")
    _check(ct_hu, {"lesions": lesions, "organ_mask": organ_mask, "exclude": exclude})
    if labelled:
        ids = np.asarray(lesions)
        if not np.issubdtype(ids.dtype, np.integer):
            raise ValueError("labelled lesions must be an integer array")
        ids = np.where(ids > 0, ids, 0).astype(np.int32)
        count = int(ids.max()) if ids.size else 0
    else:
        ids, count = label_lesions(np.asarray(lesions) != 0)
    if count == 0:
        return []
    all_lesions = ids > 0
    exclude = np.zeros_like(all_lesions) if exclude is None else np.asarray(exclude, dtype=bool)
    organ_full = np.asarray(organ_mask, dtype=bool) | all_lesions
    depth = organ_depth_mm(organ_full | exclude, sp)
    hu = np.asarray(ct_hu, dtype=np.float32)
    margin = np.ceil(DEFAULTS["margin_mm"] / sp)
    rows = []
    for lesion_id, found in enumerate(ndimage.find_objects(ids, max_label=count), start=1):
        if found is None:
            continue
        box = _box(found, ids.shape, margin)
        lesion = ids[box] == lesion_id
        voxels = int(np.count_nonzero(lesion))
        centre = np.argwhere(lesion).mean(axis=0) + np.array([s.start for s in box])
        volume = voxels * float(np.prod(sp))
        row: dict = {"case_id": case_id, "organ": organ, "lesion_id": lesion_id,
                     "size_class": size_class(2.0 * (3.0 * volume / (4.0 * math.pi)) ** (1.0 / 3.0), bins_mm),
                     "described": voxels >= min_voxels,
                     "centroid_x_vox": float(centre[0]), "centroid_y_vox": float(centre[1]),
                     "centroid_z_vox": float(centre[2])}
        if row["described"]:
            blocked = (all_lesions[box] & ~lesion) | exclude[box]
            row.update(_describe_crop(hu[box], lesion, organ_full[box], blocked, depth[box], sp))
        else:
            row.update({"voxels": voxels, **dict.fromkeys(DESCRIPTORS, math.nan)})
            row["volume_mm3"] = volume
            row["equivalent_diameter_mm"] = 2.0 * (3.0 * volume / (4.0 * math.pi)) ** (1.0 / 3.0)
        if thumbnails and row["described"]:
            from tumorsyn.metrics.realism.gallery import thumbnail

            row["_thumbnail"] = thumbnail(hu[box], lesion, sp)
        rows.append(row)
    return rows
