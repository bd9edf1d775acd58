"""``DiffusionGenerator`` (``method="diffusion"``): a trained latent diffusion model inpaints the tumour.

After the idea of DiffTumor, rebuilt from its description (see ``docs/diffusion.md``):

1. the mask comes from the core's shape code (:func:`tumorsyn.shapes.sample_outline`,
   :func:`tumorsyn.shapes.shape_distance_mm`: sizes in mm, the same family as the rules generator);
2. a crop around the tumour is resampled to the model's spacing (locally, never the whole scan) and
   mapped to the model's value range: by a fixed HU window (absolute models), or standardised by the
   host parenchyma around the tumour (relative models, :mod:`.intensity`), mapped back the same way;
3. the model samples the masked region in latent space, keeping the known region (RePaint); the
   region is the shape grown as training grew its tumour masks (``data.mask_dilate_mm``), so the
   tumour the model draws fills the shape;
   when the model folder has a border refiner, it redraws the decoded border at the exact shape
   (:func:`tumorsyn.generators.diffusion.sampler.refine`), which the coarse latent cannot hold;
4. the decoded crop is resampled back to the scan's own grid (averaged over each scan voxel larger than
   the model's: partial volume; with a border refiner each side of the shape from its own model voxels,
   :mod:`.resample`) and written over the region the model generated (with a refiner) or blended in
   with a soft edge (:mod:`tumorsyn.blend`)::

       w(x)   = sigmoid(-d(x) / tau)     d = signed distance to the shape (mm), tau = edge_mm / 4
       out(x) = in(x) + w(x) * (gen(x) - in(x))

   voxels with ``w < 1/256`` are untouched (byte-identical on disk).

The label is what is visible, with the rules generator's half-maximum edge: when the sampled
tumour is visible (its contrast, the median HU change the model made inside the shape, reaches
``visible_hu``), the label is the shape (cut to the organ unless exophytic), where the blend carries
at least half of that change. That is exactly the mask ``render`` returns, which placement measured:
the written tumour has the size it was drawn with, in the requested range, on any grid. A nearly
isodense sample is labelled only where its 1.5 mm-smoothed change reaches ``visible_hu`` inside the
shape (holes filled), and may then be smaller than asked.
"""
from __future__ import annotations

import warnings

import numpy as np
from scipy import ndimage

from tumorsyn.blend import SMOOTH_MM, blend, edge_reach_mm, sigmoid_weight
from tumorsyn.errors import ConfigError
from tumorsyn.generators.base import Generator, Rendering
from tumorsyn.generators.diffusion.grain import GRAIN_MODES, default_grain, grained
from tumorsyn.generators.diffusion.intensity import LEGACY_INTENSITY, MIN_SPREAD_HU, relative_window_hu, ring_statistics
from tumorsyn.generators.diffusion.model_folder import SAMPLERS, load_model, model_checksum, read_model_config
from tumorsyn.generators.diffusion.resample import averaging_points, point_axes, two_sided_resample
from tumorsyn.shapes import box_offsets_mm, fill_holes, sample_outline, sample_radii_mm, shape_distance_mm, shape_reach_mm
from tumorsyn.spec import TumorSpec

__all__ = ["DiffusionGenerator"]

_MIN_VISIBLE_HU = 10.0
_SHAPE_KEYS = ("radii_mm", "rotation", "lobes", "deform_amplitude", "satellites", "edge_mm")
_MAX_STEPS = 1000
_HOST_HU_TOLERANCE = 40.0  # host organ this far (HU) from the model's training organs: likely another phase
_SPEC_V1_GRAIN = "model"   # specs written before the grain option replay as they were drawn
_SPEC_V1_RESAMPLE = "point"  # ... and before partial-volume resampling, with point sampling
_RESAMPLE_MODES = ("shape", "area", "point")
_SPEC_V1_SPREAD = "ring"     # ... and before the host spread came from the shell noise, with the ring spread
_SPREAD_MODES = ("ring", "shell_noise")
_SPEC_V1_BLEND = "edge"      # ... and before a refiner model's values were written over its region, with the edge
_BLEND_MODES = ("edge", "region")


class DiffusionGenerator(Generator):
    """Latent diffusion inpainting with a model folder (``model=DIR``); GPU when present, CPU works."""

    name = "diffusion"
    device_backend = "torch"
    options = frozenset({"model", "steps", "sampler", "visible_hu", "grain"})

    # --- random side ----------------------------------------------------------------------------
    def sample_params(self, rng, *, size_mm, preset, organ_mean_hu, organ_std_hu, spacing_mm, options,
                      organ_noise_hu: float | None = None) -> dict:
        """Shape (mm) from the core's shape family, plus the model, its checksum and the step count.

        Options: ``model`` (folder, required), ``steps`` (sampling steps), ``sampler``
        (ddim, dpm_solver, unipc; euler for rectified flow), ``visible_hu``, ``grain`` (``model``: the
        model's own voxels, the default of a model without a border refiner; ``noise``: the model's values
        plus the host's scanner noise, the default with one; ``host``: the model's content above 1.5 mm with
        the host's grain below, see :mod:`.grain`).
        """
        folder, config = read_model_config(options.get("model"))
        checksum = model_checksum(folder)
        learnt = (config.get("training") or {}).get("organ_median_hu")
        # A relative model writes contrast to this host's own parenchyma: the phase is handled, not warned about.
        absolute = config["data"].get("intensity", LEGACY_INTENSITY) == "absolute"
        if absolute and learnt is not None and abs(float(organ_mean_hu) - float(learnt)) > _HOST_HU_TOLERANCE:
            # The model inpaints the absolute HU it learnt, not a contrast relative to this organ.
            warnings.warn(f"{folder}: the model learnt organs of about {float(learnt):.0f} HU, this organ is "
                          f"{float(organ_mean_hu):.0f} HU (another contrast phase?): its tumours may be far too "
                          "bright or too dark here; see docs/diffusion.md, Known limits", stacklevel=2)
        radii = sample_radii_mm(rng, organ=preset.name, size_mm=size_mm)
        # The two draws the rules generator makes here (appearance, contrast), so that one seed draws
        # the same shape in both generators (and the same diffusion specs as before they shared code).
        rng.random(2)
        params = {"radii_mm": radii, **sample_outline(rng, organ=preset.name, size_mm=size_mm)}
        params["satellites"] = []  # one lesion per mask: the model was trained on single tumours
        params = {key: params[key] for key in _SHAPE_KEYS}
        steps = options.get("steps")
        params.update({
            "model": str(folder),
            "model_sha256": checksum,
            "steps": int(steps) if steps is not None else int(config["sampling"]["steps"]),
            "sampler": options.get("sampler") or config["sampling"]["sampler"],
            "visible_hu": float(options.get("visible_hu") or max(_MIN_VISIBLE_HU, 0.75 * float(organ_std_hu))),
            "grain": options.get("grain") or default_grain(config),
        })
        # A model with a border refiner draws the edge at the shape: written over its region, not blended again,
        # and read back on the scan's grid with that edge kept at the shape (see .resample).
        params["resample"] = "shape" if config.get("refiner") else "area"
        params["blend"] = "region" if config.get("refiner") else "edge"
        if not absolute and (config.get("training") or {}).get("spread_per_noise"):
            # The host's spread from the noise of the tumour's shell (see crop_for); specs without the key replay
            # with the ring spread they were drawn with.
            params["host_spread"] = "shell_noise"
        return params

    # --- deterministic side ---------------------------------------------------------------------
    def validate(self, spec: TumorSpec) -> None:
        p = spec.params
        missing = [k for k in (*_SHAPE_KEYS, "model", "model_sha256", "steps", "sampler", "visible_hu") if k not in p]
        if missing:
            raise ConfigError(f"diffusion spec lacks parameter(s) {', '.join(missing)}")
        if not (isinstance(p["steps"], int) and 1 <= p["steps"] <= _MAX_STEPS):
            raise ConfigError(f"diffusion steps must be an integer in 1..{_MAX_STEPS}, got {p['steps']!r}")
        if p["sampler"] not in SAMPLERS:
            raise ConfigError(f"diffusion sampler must be one of {', '.join(SAMPLERS)}, got {p['sampler']!r}")
        if p.get("grain", _SPEC_V1_GRAIN) not in GRAIN_MODES:
            raise ConfigError(f"diffusion grain must be one of {', '.join(GRAIN_MODES)}, got {p['grain']!r}")
        if p.get("resample", _SPEC_V1_RESAMPLE) not in _RESAMPLE_MODES:
            raise ConfigError(f"diffusion resample must be one of {', '.join(_RESAMPLE_MODES)}, got {p['resample']!r}")
        if p.get("blend", _SPEC_V1_BLEND) not in _BLEND_MODES:
            raise ConfigError(f"diffusion blend must be one of {', '.join(_BLEND_MODES)}, got {p['blend']!r}")
        if p.get("host_spread", _SPEC_V1_SPREAD) not in _SPREAD_MODES:
            raise ConfigError(f"diffusion host_spread must be one of {', '.join(_SPREAD_MODES)}, got {p['host_spread']!r}")
        if len(p["radii_mm"]) != 3 or min(p["radii_mm"]) <= 0:
            raise ConfigError(f"diffusion spec radii_mm must be three positive numbers, got {p['radii_mm']}")
        _, config = read_model_config(p["model"])
        # A relative model writes contrast to the host's own parenchyma, so it serves any organ (early
        # tumours look alike across liver, pancreas and kidney); an absolute one writes its organs' HU.
        relative = config["data"].get("intensity", LEGACY_INTENSITY) == "relative"
        if spec.organ not in config["organs"] and not relative:
            raise ConfigError(f"model {p['model']} was trained on {', '.join(config['organs'])}, not the {spec.organ}, "
                              "in absolute HU; use a model of this organ (or a pooled one), or one trained with "
                              "data.intensity: relative")
        crop_mm = min(n * s for n, s in zip(config["data"]["crop_size"], config["data"]["spacing_mm"]))
        if spec.size_mm > 0.75 * crop_mm:
            raise ConfigError(f"a {spec.size_mm:.0f} mm tumour does not fit the model's crop ({crop_mm:.0f} mm across) "
                              "with context around it; ask for a smaller --size-mm or use a model trained on larger crops")

    def extent_mm(self, spec: TumorSpec) -> float:
        """Half-width of the box: the shape's reach, and the model crop (its context) around it."""
        _, config = read_model_config(spec.params["model"])
        half_crop = max(0.5 * (n - 1) * s for n, s in zip(config["data"]["crop_size"], config["data"]["spacing_mm"]))
        return max(shape_reach_mm(spec.params) + edge_reach_mm(spec.params["edge_mm"]) + 1.0, half_crop + max(spec.spacing_mm))

    def rescale(self, spec: TumorSpec, factor: float) -> TumorSpec:
        p = dict(spec.params)
        p["radii_mm"] = [r * factor for r in p["radii_mm"]]
        return spec.with_params(params=p)

    def _distance(self, spec: TumorSpec, box_shape, origin, spacing_mm=None, center=None) -> np.ndarray:
        """Signed distance (mm) to the tumour's shape on a grid (default: the scan's box)."""
        offsets = box_offsets_mm(box_shape, origin, spec.center_vox if center is None else center,
                                 spec.spacing_mm if spacing_mm is None else spacing_mm)
        return shape_distance_mm(spec.params, seed=spec.seed, offsets_mm=offsets)

    def _weight(self, spec: TumorSpec, distance: np.ndarray, organ_box: np.ndarray, model) -> np.ndarray:
        if spec.params.get("blend", _SPEC_V1_BLEND) == "region":
            # The model drew the border itself (a border refiner, at the exact shape): its values replace the
            # scan's in the region it generated, as --evaluate measures them, with no second, blended edge.
            w = (distance <= float(model.mask_dilate_mm)).astype(np.float32)
        else:
            w = sigmoid_weight(distance, spec.params["edge_mm"])
        return w if spec.exophytic else w * organ_box

    def render(self, spec: TumorSpec, organ_box: np.ndarray, origin, *, ct_box: np.ndarray | None = None) -> Rendering:
        """The shape: the label of a visible sampled tumour (``apply`` returns it; ``ct_box`` unused)."""
        return self._shape(spec, self._distance(spec, organ_box.shape, origin), organ_box)

    @staticmethod
    def _shape(spec: TumorSpec, distance: np.ndarray, organ_box: np.ndarray) -> Rendering:
        presence = distance <= 0
        return Rendering(label=presence if spec.exophytic else presence & organ_box, presence=presence)

    # --- crops at the model's grid ---------------------------------------------------------------
    def crop_for(self, ct_box: np.ndarray, spec: TumorSpec, origin, model, *,
                 organ_box: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, tuple[float, float]]:
        """The model-grid crop around the tumour: ``(image in [-1, 1], mask, window)``.

        Image and mask are (X, Y, Z) at the model's spacing. Voxel ``j`` of the crop lies
        ``(j - (n - 1) / 2) * model_spacing`` mm from the tumour centre; it reads the scan's box
        trilinearly (edge values beyond the box). ``window`` is the HU window the image was mapped
        with (``unit_to_hu(x, window)`` maps the sampled crop back): the model's ``hu_window`` for an
        absolute model; for a relative one the host's, from the organ ring around the tumour
        (``organ_box``; without it, or with too small a ring, the spec's organ-wide statistics),
        see :mod:`tumorsyn.generators.diffusion.intensity`.
        """
        from tumorsyn.generators.diffusion.sampler import grow_mask, hu_to_unit

        size, step = model.crop_size, model.spacing_mm
        axes = [(np.arange(n, dtype=np.float64) - 0.5 * (n - 1)) * s / ss + c - o
                for n, s, ss, c, o in zip(size, step, spec.spacing_mm, spec.center_vox, origin)]
        coords = np.stack(np.meshgrid(*axes, indexing="ij"))
        hu = ndimage.map_coordinates(ct_box.astype(np.float32), coords, order=1, mode="nearest")
        mask = self.shape_on_model_grid(spec, model)
        border = mask.copy()
        border[1:-1, 1:-1, 1:-1] = False
        if border.any():
            raise ConfigError(f"the {spec.size_mm:.0f} mm tumour's shape reaches the border of the model's "
                              f"{' x '.join(f'{n * s:.0f}' for n, s in zip(size, step))} mm crop; ask for a smaller "
                              "--size-mm or use a model trained on larger crops")
        # Grown as training grew its masks (cut by the crop's border, as training's windows cut it).
        grown = grow_mask(mask, step, model.mask_dilate_mm)
        window = model.hu_window
        if model.intensity == "relative":
            # The host's parenchyma around the region to generate, on the scan's own grid: resampling a
            # coarse scan (3 mm) to the model's grid (1.25 mm) smooths it and would shrink the measured
            # spread, and every written contrast with it.
            median, spread, _ = self._native_ring(ct_box, organ_box, spec, origin, model)
            if spec.params.get("host_spread", _SPEC_V1_SPREAD) == "shell_noise":
                spread = self._shell_spread(ct_box, organ_box, spec, origin, model, spread)
            window = relative_window_hu(median, spread, model.relative_window_sd)
        return hu_to_unit(hu, window), grown, window

    def shape_on_model_grid(self, spec: TumorSpec, model) -> np.ndarray:
        """The tumour's shape (bool, the model's crop shape) on the model crop's grid, centred as :meth:`crop_for`."""
        size = model.crop_size
        # The crop grid has its own origin: index (n - 1) / 2 is the tumour centre.
        return self._distance(spec, size, (0, 0, 0), spacing_mm=model.spacing_mm,
                              center=tuple(0.5 * (n - 1) for n in size)) <= 0

    def _shell_spread(self, ct_box, organ_box, spec: TumorSpec, origin, model, ring_spread: float) -> float:
        """The host's spread in the model's unit: ``training.spread_per_noise`` x the noise of the tumour's shell.

        The shell noise is ``tumorsyn realism``'s unit of contrast (:func:`shell_noise_ref_hu`: scanner
        noise 2-10 mm around the lesion, at the reference voxel), read on the scan's own grid around the
        shape about to be written, so the tumour is as conspicuous in that unit as the training tumours
        were. A parenchyma's spread depends on the voxel size (a 3 mm scan's is its noise averaged
        down); this does not. Without an organ box, a model ratio or enough shell: the ring spread.
        """
        from tumorsyn.metrics.realism.descriptors import shell_noise_ref_hu

        per_noise = model.spread_per_noise
        shape = self._distance(spec, ct_box.shape, origin) <= 0
        if organ_box is None or not per_noise or not shape.any():
            return ring_spread
        noise = shell_noise_ref_hu(ct_box, shape, np.asarray(organ_box, bool), spec.spacing_mm)
        return max(float(per_noise) * noise, MIN_SPREAD_HU) if np.isfinite(noise) and noise > 0 else ring_spread

    def _native_ring(self, ct_box: np.ndarray, organ_box: np.ndarray | None, spec: TumorSpec, origin, model):
        """Median and spread (HU) of the host organ inside the model crop's field of view, outside the grown
        shape, read on the scan's own grid (:func:`ring_statistics`; the spec's organ-wide statistics when
        too few voxels)."""
        fallback = (spec.organ_mean_hu, spec.organ_std_hu)
        if organ_box is None:
            return ring_statistics(np.zeros(1, np.float32), np.zeros(1, bool), None, fallback=fallback)
        offsets = box_offsets_mm(ct_box.shape, origin, spec.center_vox, spec.spacing_mm)
        half = [0.5 * n * s for n, s in zip(model.crop_size, model.spacing_mm)]
        field = np.ones(ct_box.shape, bool)
        for axis, h in enumerate(half):
            field &= np.abs(offsets[axis]) <= h
        grown = self._distance(spec, ct_box.shape, origin) <= float(model.mask_dilate_mm)
        return ring_statistics(ct_box, np.asarray(organ_box, bool) & field, grown, fallback=fallback)

    def back_to_box(self, generated: np.ndarray, box_shape, spec: TumorSpec, origin, model) -> np.ndarray:
        """A model-grid crop (HU) read back on the scan's box grid (trilinear).

        With ``resample: "area"`` (specs drawn since it was recorded), a scan voxel larger than the
        model's along an axis first averages the crop over its own extent (partial volume, as the
        scanner integrates over a voxel): a Gaussian of SD ``sqrt(scan^2 - model^2) / sqrt(12)`` mm,
        the variance a box of the scan's voxel adds to the model's. Without it, a 3 mm voxel sampled a
        1.25 mm crop at one point and drew step edges no 3 mm scan shows. With ``resample: "shape"``
        (refiner models' specs since it was recorded), each side of the shape from its own model voxels and
        the same extra box averaged at points (:mod:`.resample`).
        """
        from tumorsyn.partial_volume import partial_volume_sigma

        size, step = model.crop_size, model.spacing_mm
        if spec.params.get("resample", _SPEC_V1_RESAMPLE) == "shape":
            return self._two_sided(generated, box_shape, spec, origin, model)
        if spec.params.get("resample", _SPEC_V1_RESAMPLE) == "area":
            sigma = partial_volume_sigma(step, spec.spacing_mm)
            if max(sigma) > 0:
                generated = ndimage.gaussian_filter(np.asarray(generated, np.float32), sigma=sigma, mode="nearest",
                                                    truncate=3.0)
        axes = [((np.arange(n, dtype=np.float64) + o - c) * ss) / s + 0.5 * (m - 1)
                for n, o, c, ss, s, m in zip(box_shape, origin, spec.center_vox, spec.spacing_mm, step, size)]
        coords = np.stack(np.meshgrid(*axes, indexing="ij"))
        return ndimage.map_coordinates(generated, coords, order=1, mode="nearest").astype(np.float32)

    def _two_sided(self, generated: np.ndarray, box_shape, spec: TumorSpec, origin, model) -> np.ndarray:
        """``resample: shape``: :func:`.resample.two_sided_resample` with this spec's shape and crop placement."""
        points, widths = averaging_points(spec.spacing_mm, model.spacing_mm)
        return two_sided_resample(
            generated, self.shape_on_model_grid(spec, model), box_shape,
            axes_vox=point_axes(box_shape, origin, spec.center_vox, points, widths), scan_spacing_mm=spec.spacing_mm,
            model_spacing_mm=model.spacing_mm, points=points,
            shape_distance=lambda offsets: shape_distance_mm(spec.params, seed=spec.seed, offsets_mm=offsets))

    def compose(self, ct_box: np.ndarray, organ_box: np.ndarray, spec: TumorSpec, origin, generated_hu: np.ndarray,
                model):
        """Blend a generated crop (HU, model grid) into the box: ``(ct_box_out, label_box, changed_box)``.

        The label is the shape (``render``'s label) when the tumour is visible: its contrast, the
        median of ``generated - input`` (HU) over the shape, reaches ``visible_hu`` in magnitude.
        Otherwise it is the part of the shape whose smoothed change reaches ``visible_hu``.
        """
        distance = self._distance(spec, ct_box.shape, origin)
        w = self._weight(spec, distance, organ_box, model)
        changed = w > 0
        shape = self._shape(spec, distance, organ_box).label
        if not changed.any():
            return ct_box.astype(np.float32, copy=True), np.zeros(ct_box.shape, bool), changed
        gen = self.back_to_box(generated_hu, ct_box.shape, spec, origin, model)
        # The autoencoder cannot draw scanner noise: grain "host" / "noise" put the host's own under the model's content.
        gen = grained(spec.params.get("grain", _SPEC_V1_GRAIN), gen, ct_box, spec.spacing_mm)
        # The model's HU replace the scan's own (with grain "model", its noise grain too): the level blended from is the input.
        out, changed = blend(ct_box, w, gen, ct_box.astype(np.float32), changed)
        visible_hu = float(spec.params["visible_hu"])
        # Inside the shape the blend carries at least half of the model's change (w >= 1/2): the
        # half-maximum edge the rules generator labels. A signed median: noise grain cancels out.
        if shape.any() and abs(float(np.median(gen[shape] - ct_box[shape]))) >= visible_hu:
            return out, shape, changed
        # A nearly isodense sample: label only what shows (smoothed, so the scan's grain is not a tumour).
        sigma = [SMOOTH_MM / s for s in spec.spacing_mm]
        diff = ndimage.gaussian_filter(out - ct_box.astype(np.float32), sigma=sigma, mode="constant", truncate=3.0)
        visible = (np.abs(diff) >= visible_hu) & shape
        label = fill_holes(visible) & shape if visible.any() else visible
        return out, label, changed

    def _model(self, spec: TumorSpec):
        return load_model(spec.params["model"], device=self.device, checksum=spec.params["model_sha256"])

    def apply(self, ct_box: np.ndarray, organ_box: np.ndarray, spec: TumorSpec, origin):
        return self.apply_batch([(ct_box, organ_box, spec, origin)])[0]

    def batch_key(self, spec: TumorSpec):
        """Tumours of one model, step count and sampler are sampled together (one batch on the GPU)."""
        return ("diffusion", spec.params.get("model_sha256"), spec.params.get("steps"), spec.params.get("sampler"))

    def apply_batch(self, jobs):
        """Sample many tumours in one batch (GPU-friendly); each job is ``(ct_box, organ_box, spec, origin)``.

        Every spec must name the same model and step count. Each tumour's noise comes from its own
        seed, so a tumour does not depend on the batch it was sampled in (up to float rounding).

        Returns
        -------
        list of (ct_box_out, label_box, changed_box)
        """
        from tumorsyn.generators.diffusion.sampler import inpaint, unit_to_hu

        if not jobs:
            return []
        first = jobs[0][2]
        for _, _, spec, _ in jobs:
            self.validate(spec)
            same = (spec.params["model_sha256"], spec.params["steps"], spec.params["sampler"])
            if same != (first.params["model_sha256"], first.params["steps"], first.params["sampler"]):
                raise ConfigError("apply_batch needs one model, step count and sampler for every tumour of a batch")
        model = self._model(first)
        crops = [self.crop_for(ct_box, spec, origin, model, organ_box=organ_box) for ct_box, organ_box, spec, origin in jobs]
        # The exact shapes, for a model whose border refiner draws the edge where the shape is.
        cores = np.stack([self.shape_on_model_grid(spec, model) for _, _, spec, _ in jobs]) if model.has_refiner else None
        generated = inpaint(model, np.stack([c[0] for c in crops]), np.stack([c[1] for c in crops]),
                            steps=first.params["steps"], seeds=[spec.seed for _, _, spec, _ in jobs],
                            sampler=first.params["sampler"], cores=cores)
        # Each crop back to HU with the window it was mapped with (the host's own, for a relative model).
        return [self.compose(ct_box, organ_box, spec, origin, unit_to_hu(gen, crop[2]), model)
                for (ct_box, organ_box, spec, origin), gen, crop in zip(jobs, generated, crops)]
