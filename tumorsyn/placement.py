"""Where a tumour may sit: organ statistics, candidate centres, and the checks a placement must pass.

The per-scan work (organ statistics, a coarse depth map of the organ) lives in
:class:`PlacementContext`, computed once and reused for every tumour of that scan; each tumour's
own checks run inside its box only.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from tumorsyn.host import FAT_BELOW_HU, OUTLIER_ROBUST_SD, highpass_noise_hu, parenchyma_statistics
from tumorsyn.errors import EmptyOrganError, InputError, NotHUError
from tumorsyn.lesion_size import equivalent_diameter_mm
from tumorsyn.organs import OrganPreset, get_preset

__all__ = ["bounding_box", "organ_statistics", "check_host", "PlacementContext", "check_placement", "box_slices",
           "vessel_mask"]

# Real CT organs vary by at least this much (1.4826 x MAD, HU): quantum noise and texture, even
# with smooth kernels and thick slices (the scans here: 12..33 HU). Scaled data (a z-score x 100)
# shrinks every difference about five-fold (2..8 here).
_MIN_ORGAN_STD_HU = 6.0
# Any CT in HU that holds air (outside the body, lungs, bowel gas) reaches about -1000 HU;
# scaled data reaches -100..-300 at most.
_AIR_HU = -500.0


def organ_statistics(ct_hu: np.ndarray, organ_mask: np.ndarray) -> tuple[float, float]:
    """Robust mean and standard deviation (HU) of the organ's parenchyma.

    The organ after a one-voxel erosion (to drop partial-volume edges), without fat and without
    outliers (vessels, lesions): see :func:`tumorsyn.host.parenchyma_statistics`. A 3 mm pancreas
    label that is largely fat gives the pancreas's own level, not the fat's.
    """
    core = ndimage.binary_erosion(organ_mask)
    values = ct_hu[core] if np.count_nonzero(core) >= 50 else ct_hu[organ_mask]
    median, spread = parenchyma_statistics(values)
    return median, max(spread, 1.0)


def organ_noise(ct_box: np.ndarray, organ_box: np.ndarray, organ_stats) -> float:
    """Scanner noise (HU) in the organ's parenchyma: the high-pass residual's robust SD.

    Voxels whose 3x3x3 neighbourhood is all parenchyma (organ, no fat, within the outlier range of
    the organ statistics) are used, as ``tumorsyn realism`` does around a lesion.
    """
    median, spread = float(organ_stats[0]), float(organ_stats[1])
    parenchyma = organ_box & (ct_box >= FAT_BELOW_HU) & (np.abs(ct_box - median) <= OUTLIER_ROBUST_SD * spread)
    noise = highpass_noise_hu(ct_box, parenchyma, min_voxels=50)
    return float(noise) if np.isfinite(noise) and noise > 0 else spread


def check_host(organ: str, organ_stats, *, ct_hu: np.ndarray | None = None) -> None:
    """Refuse a host whose organ HU cannot be this organ in a CT in Hounsfield units, with the figures.

    Parameters
    ----------
    organ : str
    organ_stats : (float, float)
        The organ's robust mean and standard deviation (HU), :func:`organ_statistics`.
    ct_hu : ndarray, optional
        The whole scan; where given, a scan without air whose organ is implausibly smooth is
        refused as scaled intensities.

    Raises
    ------
    NotHUError
        The organ's median lies outside the organ preset's ``host_hu`` range (the label lies on
        another tissue, e.g. fat, or the scan is not in HU), or the scan looks scaled.
    """
    preset = get_preset(organ)
    mean, std = float(organ_stats[0]), float(organ_stats[1])
    lo, hi = preset.host_hu
    if not lo <= mean <= hi:
        raise NotHUError(f"{organ} median {mean:.4g} is not a plausible HU value for the {organ} (expected {lo:g}..{hi:g} "
                         f"HU, unenhanced to late phase): the {organ} label does not lie on the {organ} (check the "
                         "label values and the grid), or the scan is not in Hounsfield units")
    if ct_hu is not None and std < _MIN_ORGAN_STD_HU:
        # Smoothness alone is not enough (a denoised scan is smooth): only with no air anywhere.
        darkest = float(np.min(ct_hu))
        if darkest > _AIR_HU:
            raise NotHUError(f"the intensities look scaled, not Hounsfield units: the scan holds no air (darkest value "
                             f"{darkest:.4g}; air is about -1000 HU) and the {organ} varies by only {std:.2g} (CT organs "
                             f"vary by {_MIN_ORGAN_STD_HU:g} HU or more); give the CT in HU (apply tumour synthesis "
                             "before intensity normalisation)")


def check_hu_span(ct_box: np.ndarray, organ: str) -> None:
    """Refuse normalised intensities: around any abdominal organ HU spans fat to vessels (hundreds of HU).

    Parameters
    ----------
    ct_box : ndarray of float
        The scan around the organ (its bounding box), in what should be HU.
    organ : str

    Raises
    ------
    NotHUError
        When the values span less than 100 units (or are not finite).
    """
    spread = float(ct_box.max() - ct_box.min())
    if not np.isfinite(spread) or spread < 100.0:
        raise NotHUError(f"intensities around the {organ} span only {spread:.3g} units; give the CT in "
                         "Hounsfield units (apply tumour synthesis before intensity normalisation)")


def _stride_for(spacing_mm, target_mm: float) -> np.ndarray:
    """Per-axis subsampling step giving voxels of about ``target_mm`` (at least 1)."""
    return np.maximum(1, np.floor(target_mm / np.asarray(spacing_mm, dtype=float))).astype(int)


def bounding_box(mask: np.ndarray) -> tuple[slice, ...] | None:
    """Smallest box holding every True voxel, or None for an empty mask (axis projections: fast)."""
    out = []
    for axis in range(mask.ndim):
        others = tuple(a for a in range(mask.ndim) if a != axis)
        hits = np.flatnonzero(mask.any(axis=others))
        if hits.size == 0:
            return None
        out.append(slice(int(hits[0]), int(hits[-1]) + 1))
    return tuple(out)


def box_slices(center_vox, half_width_vox, grid_shape) -> tuple[slice, ...]:
    """Slices of the box ``center +/- half_width`` (voxels per axis), clipped to the grid."""
    out = []
    for c, h, n in zip(center_vox, half_width_vox, grid_shape):
        lo = max(int(np.floor(c - h)), 0)
        hi = min(int(np.ceil(c + h)) + 1, int(n))
        out.append(slice(lo, max(hi, lo + 1)))
    return tuple(out)


def vessel_mask(ct_box: np.ndarray, *, spacing_mm, organ_mean_hu: float, organ_std_hu: float,
                preset: OrganPreset, smoothed: np.ndarray | None = None) -> np.ndarray:
    """Bright, contrast-filled structures (vessels, enhancing ducts) relative to the organ's own HU.

    A voxel is vessel when its 1 mm-smoothed HU exceeds the organ mean by ``preset.vessel_z``
    standard deviations and by at least ``preset.vessel_min_hu``: thresholds follow each scan's
    enhancement instead of fixed absolute HU. ``smoothed``: that smoothed HU when the caller has it
    already (``gaussian_filter(ct_box, 1 mm / spacing, truncate=2.5)``).
    """
    smooth = smoothed if smoothed is not None else vessel_smoothing(ct_box, spacing_mm)
    threshold = organ_mean_hu + max(preset.vessel_z * organ_std_hu, preset.vessel_min_hu)
    return smooth > threshold


def vessel_smoothing(ct_box: np.ndarray, spacing_mm) -> np.ndarray:
    """The 1 mm Gaussian smoothing of the HU that :func:`vessel_mask` thresholds."""
    return ndimage.gaussian_filter(ct_box, sigma=[1.0 / s for s in spacing_mm], truncate=2.5)


@dataclass
class PlacementContext:
    """Facts about one scan and organ, shared by every tumour placed in it.

    Parameters
    ----------
    organ_mask : ndarray of bool, shape (X, Y, Z)
    spacing_mm : sequence of 3 float
    organ : str
    ct_hu : ndarray of float, shape (X, Y, Z), optional
        The scan in HU; without it no vessel avoidance happens and the organ statistics must be
        given as ``organ_stats``.
    avoid : ndarray of bool, optional
        Existing lesions (and tumours already placed) that new tumours keep clear of.
    organ_stats : (float, float), optional
        Organ mean and standard deviation in HU, when ``ct_hu`` is not given.
    centers : ndarray of bool, shape (X, Y, Z), optional
        Where tumour centres may lie (a training patch's part that survives a later crop);
        by default anywhere in the organ. Tumours still grow across its border.
    """

    organ_mask: np.ndarray
    spacing_mm: tuple
    organ: str
    ct_hu: np.ndarray | None = None
    avoid: np.ndarray | None = None
    organ_stats: tuple | None = None
    organ_noise_hu: float | None = None
    centers: np.ndarray | None = None
    preset: OrganPreset = field(init=False)
    _box: tuple = field(init=False, repr=False)
    _depth: np.ndarray = field(init=False, repr=False)
    _clearance: np.ndarray = field(init=False, repr=False)
    _allowed: np.ndarray = field(init=False, repr=False)
    _depth_origin: np.ndarray = field(init=False, repr=False)
    _stride: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.organ_mask = np.asarray(self.organ_mask, dtype=bool)
        self.spacing_mm = tuple(float(s) for s in self.spacing_mm)
        self.preset = get_preset(self.organ)
        if self.organ_mask.ndim != 3:
            raise InputError(f"organ mask must be 3D, got shape {self.organ_mask.shape}")
        box = bounding_box(self.organ_mask)
        if box is None:
            raise EmptyOrganError(f"the {self.organ} mask is empty")
        # Everything per scan is computed on the organ's bounding box (plus a rim), not the scan.
        self._box = tuple(slice(max(b.start - 2, 0), b.stop + 2) for b in box)
        organ = self.organ_mask[self._box]
        ct_box = None
        if self.ct_hu is not None:
            if self.ct_hu.shape != self.organ_mask.shape:
                raise InputError(f"CT shape {self.ct_hu.shape} differs from organ mask shape {self.organ_mask.shape}")
            ct_box = self.ct_hu[self._box]
            check_hu_span(ct_box, self.organ)
            if self.organ_stats is None:
                # A ~1.5 mm sample of the organ is plenty for a median and a MAD, at a fraction
                # of the cost on thin-slice scans.
                fine = tuple(slice(None, None, k) for k in _stride_for(self.spacing_mm, 1.5))
                self.organ_stats = organ_statistics(ct_box[fine], organ[fine])
        if self.organ_stats is None:
            raise InputError("give ct_hu (the scan in HU) or organ_stats=(mean_hu, std_hu)")
        if self.organ_noise_hu is None:
            # Without the scan the organ's spread stands in for its noise (a larger figure).
            self.organ_noise_hu = (organ_noise(ct_box, organ, self.organ_stats) if ct_box is not None
                                   else float(self.organ_stats[1]))
        check_host(self.organ, self.organ_stats, ct_hu=self.ct_hu)
        if self.avoid is None:
            self.avoid = np.zeros(self.organ_mask.shape, dtype=bool)
        self._build_depth(organ, ct_box)

    def _build_depth(self, organ: np.ndarray, ct_box: np.ndarray | None) -> None:
        # Coarse (about 3 mm) maps of the organ box: depth below the organ surface and clearance
        # from vessels. They only propose centres; exact checks run in each tumour's own box, so
        # a thin vessel missed here is still caught there.
        stride = _stride_for(self.spacing_mm, 3.0)
        step = tuple(slice(None, None, k) for k in stride)
        sampling = np.asarray(self.spacing_mm) * stride
        coarse_organ = organ[step]
        sub = np.pad(coarse_organ, 1)
        depth = ndimage.distance_transform_edt(sub, sampling=sampling)[1:-1, 1:-1, 1:-1]
        clearance = np.full(depth.shape, np.inf, dtype=np.float64)
        if ct_box is not None:
            vessels = vessel_mask(np.ascontiguousarray(ct_box[step]), spacing_mm=tuple(sampling),
                                  organ_mean_hu=self.organ_stats[0], organ_std_hu=self.organ_stats[1],
                                  preset=self.preset) & coarse_organ
            if vessels.any():
                clearance = ndimage.distance_transform_edt(~vessels, sampling=sampling)
        self._depth = depth.astype(np.float32)
        self._clearance = clearance.astype(np.float32)
        if self.centers is None:
            self._allowed = np.ones(depth.shape, dtype=bool)
        else:
            centers = np.asarray(self.centers, dtype=bool)
            if centers.shape != self.organ_mask.shape:
                raise InputError(f"centers mask shape {centers.shape} differs from organ mask shape "
                                 f"{self.organ_mask.shape}")
            self._allowed = centers[self._box][step]
        self._depth_origin = np.array([s.start for s in self._box])
        self._stride = stride

    def with_avoid(self, avoid: np.ndarray | None = None) -> "PlacementContext":
        """A context sharing this one's per-scan facts (statistics, depth and vessel maps) with its own ``avoid``.

        Building a context costs a robust organ statistic and two distance transforms of the organ
        box; a pipeline that places tumours into the same scan many times (one training item after
        another) builds it once and takes a copy per item, so tumours placed for one item never
        constrain the next.

        Parameters
        ----------
        avoid : ndarray of bool, shape (X, Y, Z), optional
            Existing lesions for the copy; by default a copy of this context's own ``avoid``.
        """
        out = copy.copy(self)  # shallow: the read-only maps are shared, only ``avoid`` is new
        if avoid is None:
            out.avoid = self.avoid.copy()
        else:
            avoid = np.asarray(avoid, dtype=bool)
            if avoid.shape != self.organ_mask.shape:
                raise InputError(f"avoid mask shape {avoid.shape} differs from organ mask shape {self.organ_mask.shape}")
            out.avoid = avoid
        return out

    @property
    def max_depth_mm(self) -> float:
        """Distance (mm) from the organ's deepest allowed centre to its surface (coarse)."""
        allowed = self._depth[self._allowed]
        return float(allowed.max()) if allowed.size else 0.0

    def sample_center(self, rng: np.random.Generator, *, min_depth_mm: float, max_depth_mm: float = np.inf,
                      min_clearance_mm: float = 0.0) -> tuple[float, float, float] | None:
        """A random centre (fractional voxel index) at a depth in the given range, or None.

        Centres at least ``min_clearance_mm`` from any vessel are preferred; when the organ has no
        such place, the vessel check of :func:`check_placement` alone decides.
        """
        depth_ok = (self._depth >= min_depth_mm) & (self._depth <= max_depth_mm) & self._allowed
        candidates = np.flatnonzero(depth_ok & (self._clearance >= min_clearance_mm))
        if candidates.size == 0:
            candidates = np.flatnonzero(depth_ok)
        if candidates.size == 0:
            return None
        pick = np.array(np.unravel_index(candidates[rng.integers(candidates.size)], self._depth.shape))
        jitter = rng.uniform(-0.5, 0.5, size=3) * self._stride
        center = self._depth_origin + pick * self._stride + jitter
        center = np.clip(center, 0, np.asarray(self.organ_mask.shape) - 1)
        return tuple(float(c) for c in center)

    def add_avoid(self, slices: tuple[slice, ...], label_box: np.ndarray) -> None:
        """Keep later tumours clear of this one."""
        self.avoid[slices] |= label_box


def _scan_edge_faces(slices: tuple[slice, ...], grid_shape) -> list[tuple]:
    """Index tuples of the box's faces that lie on the scan's own edge (box coordinates)."""
    faces = []
    for axis, (s, n) in enumerate(zip(slices, grid_shape)):
        for at, on_edge in ((0, s.start == 0), (-1, s.stop == n)):
            if on_edge:
                faces.append(tuple(at if a == axis else slice(None) for a in range(len(slices))))
    return faces


def _padded_face(face: tuple) -> tuple:
    """The same face in the box padded by one voxel on every side (the padding layer itself)."""
    return tuple(f if isinstance(f, int) else slice(None) for f in face)


def check_placement(label: np.ndarray, presence: np.ndarray, slices: tuple[slice, ...], ctx: PlacementContext,
                    *, size_range_mm: tuple[float, float], exophytic: bool, margin_mm: float) -> str | None:
    """Why a rendered tumour may not stay where it is, or None when it may.

    Parameters
    ----------
    label : ndarray of bool
        The visible tumour inside its box (after the organ cut).
    presence : ndarray of bool
        The same before the organ cut.
    slices : tuple of slice
        Where the box lies in the full grid.
    ctx : PlacementContext
    size_range_mm : (float, float)
        Allowed equivalent diameter of ``label``, in mm.
    exophytic : bool
        Whether the tumour may leave the organ.
    margin_mm : float
        Least distance of the label from the organ surface (ignored for exophytic tumours).
    """
    n_label = int(np.count_nonzero(label))
    if n_label == 0:
        return "empty tumour"
    size = equivalent_diameter_mm(label, ctx.spacing_mm)
    lo, hi = size_range_mm
    if not lo - 1e-6 <= size <= hi + 1e-6:
        return "written size off the requested range"
    scan_edge = _scan_edge_faces(slices, ctx.organ_mask.shape)
    if any(label[face].any() for face in scan_edge):
        # The scan stops there, not the tumour: what lies beyond is not drawn or measured.
        return "reaches the edge of the scan"
    organ_box = ctx.organ_mask[slices]
    n_presence = int(np.count_nonzero(presence))
    inside = int(np.count_nonzero(presence & organ_box)) / max(n_presence, 1)
    if exophytic:
        if not 0.4 <= inside <= 0.85:
            return "exophytic tumour not straddling the organ surface"
        if ctx.ct_hu is not None and np.any(ctx.ct_hu[slices][label & ~organ_box] < -300):
            return "exophytic part reaches air"
    else:
        if inside < ctx.preset.min_inside_fraction - 1e-9:
            return "too much of the shape outside the organ"
        if margin_mm > 0:
            # Distance to the nearest non-organ voxel; the box reaches beyond the margin, so
            # padding it with organ cannot hide a surface voxel that is near enough to matter.
            # Where the box meets the scan's edge there is nothing beyond: that is surface too
            # (an organ cut by the field of view has no known margin there).
            padded = np.pad(organ_box, 1, constant_values=True)
            for face in scan_edge:
                padded[_padded_face(face)] = False
            if padded.all():
                depth = None
            else:
                depth = ndimage.distance_transform_edt(padded, sampling=ctx.spacing_mm)[1:-1, 1:-1, 1:-1]
            if depth is not None and float(depth[label].min()) < margin_mm:
                return "closer to the organ surface than the margin"
    avoid_box = ctx.avoid[slices]
    if avoid_box.any():
        clearance = ndimage.distance_transform_edt(~avoid_box, sampling=ctx.spacing_mm)
        if float(clearance[label].min()) < max(margin_mm, 1.0):
            return "overlaps or touches an existing lesion"
    if ctx.ct_hu is not None:
        vessels = vessel_mask(ctx.ct_hu[slices], spacing_mm=ctx.spacing_mm, organ_mean_hu=ctx.organ_stats[0],
                              organ_std_hu=ctx.organ_stats[1], preset=ctx.preset)
        # A few bright voxels are noise or partial volume; a real vessel crossing is many.
        if np.count_nonzero(vessels & label) > max(2, 0.005 * n_label):
            return "crosses a vessel"
    return None
