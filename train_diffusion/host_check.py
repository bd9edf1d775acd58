"""A trained model writing early tumours into other hosts: phase and organ independence, measured.

``tumorsyn train-diffusion CONFIG --evaluate`` (after the held-out figures) draws
``evaluation.tumours_per_organ`` tumours of ``evaluation.size_mm`` into each organ of
``evaluation.host_organs`` of each scan of ``evaluation.hosts`` (default: the bundled 3 mm
non-contrast example) through the same path as ``tumorsyn generate --method diffusion``
(:func:`tumorsyn.sample_spec`, :func:`tumorsyn.synthesize`), and measures each written tumour with the
realism descriptors on the host's own grid. Where held-out real figures exist they are the reference:
per organ, each figure of :data:`train_diffusion.figures.FIGURES` is compared with the real
tumours' IQR, read on the host's grid (the held-out scans averaged onto its voxels where they are
larger: edge sharpness is measured across one voxel, so a 3 mm host and a 1.4 mm scan are not compared
as they are), with the figures on the real scans' own grid beside them (a relative model should write, into a non-contrast liver, tumours as conspicuous in
units of that liver's noise as the real contrast-phase ones are in theirs). Warnings raised while
sampling (e.g. the phase warning of an absolute model in another phase) are recorded per organ. A
sample fainter than the generator's ``visible_hu`` everywhere writes no label (the label is what is
visible): it is counted (``invisible``) and its figures are NaN.

Writes ``hosts.json`` and ``hosts.png`` (rows: organ; columns: host | blanked | generated x4, the
same tumour shape with four sampling seeds, axial slice, liver window) to the output folder.
"""
from __future__ import annotations

import dataclasses
import warnings
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from train_diffusion.figures import REPORTED, figures_against, figures_preferring

__all__ = ["DISPLAY_WINDOW_HU", "host_cases", "check_hosts", "measure_written", "organ_figures"]

DISPLAY_WINDOW_HU = (-160.0, 240.0)  # W 400 / L 40: the abdominal soft-tissue window of the pictures
_PREVIEW_SEEDS = 4
_PREVIEW_HALF_MM = 25.0              # half the side of a picture's field of view


def host_cases(hosts: Sequence) -> list:
    """:class:`tumorsyn.io.cases.Case` of each ``evaluation.hosts`` entry (``"example"`` or ``{ct, labels, ...}``)."""
    from tumorsyn.io.cases import cases_from_entries, example_case

    cases = []
    for entry in hosts:
        if entry == "example":
            cases.append(example_case())
        else:
            cases += cases_from_entries([entry], source="evaluation.hosts", label_preset="totalsegmentator",
                                        organ_mask_key=None)
    return cases


def _to_unit(hu: np.ndarray) -> np.ndarray:
    low, high = DISPLAY_WINDOW_HU
    return np.clip((np.asarray(hu, np.float32) - low) / (high - low) * 2.0 - 1.0, -1.0, 1.0)


def _view(volume: np.ndarray, center, spacing_mm) -> np.ndarray:
    """A box of about 2 x ``_PREVIEW_HALF_MM`` mm around ``center`` (voxels), resampled to 1 mm for display."""
    from scipy import ndimage

    half = [int(np.ceil(_PREVIEW_HALF_MM / s)) for s in spacing_mm]
    c = [int(round(v)) for v in center]
    box = tuple(slice(max(ci - h, 0), ci + h + 1) for ci, h in zip(c, half))
    return ndimage.zoom(np.asarray(volume, np.float32)[box], [float(s) for s in spacing_mm], order=1)


def _preview_row(ct, organ_mask, spacing, spec, device) -> list:
    """host | blanked | the same shape sampled with ``_PREVIEW_SEEDS`` seeds (axial slices through the tumour)."""
    from tumorsyn import synthesize
    from train_diffusion.runlog import preview_tiles

    panels, label = [], None
    for k in range(_PREVIEW_SEEDS):
        one = dataclasses.replace(spec, seed=(int(spec.seed) + k) % 2**63)
        out, tumor = synthesize(ct, organ_mask, spacing, one, device=device)
        panels.append(_view(out, spec.center_vox, spacing))
        if label is None:
            label = _view(tumor.astype(np.float32), spec.center_vox, spacing) >= 0.5
    host = _view(ct, spec.center_vox, spacing)
    blanked = host.copy()
    blanked[label] = 0.5 * (DISPLAY_WINDOW_HU[0] + DISPLAY_WINDOW_HU[1])  # mid-grey: the region the model fills
    return preview_tiles([_to_unit(p) for p in (host, blanked, *panels)], mask=label, scale=3)


def measure_written(ct_out: np.ndarray, tumor: np.ndarray, organ_mask: np.ndarray, spacing_mm, *, seed: int,
                    size_mm: float, every_descriptor: bool = False) -> dict:
    """One written tumour's row: seed, drawn size, whether it is visible, and the :data:`REPORTED` descriptors
    (with ``every_descriptor``, every descriptor of ``tumorsyn realism``).

    A sample fainter than the generator's ``visible_hu`` everywhere has no label and nothing to measure:
    ``visible`` false, figures NaN.
    """
    from tumorsyn.metrics.realism.descriptors import lesion_descriptors

    tumor = np.asarray(tumor) > 0
    row = {"seed": int(seed), "size_mm": round(float(size_mm), 2), "visible": bool(tumor.any())}
    measured = lesion_descriptors(ct_out, tumor, organ_mask, spacing_mm) if row["visible"] else {}
    names = [n for n in measured if isinstance(measured[n], (int, float))] if every_descriptor else []
    names = list(dict.fromkeys(["equivalent_diameter_mm", *REPORTED, *names]))
    return {**row, **{name: float(measured.get(name, np.nan)) for name in names}}


def organ_figures(rows: list[dict], spacing_mm, reference: list[dict] | None = None,
                  reference_on_grid: Callable | None = None) -> dict:
    """The figures of one organ's written tumours (``rows``, :func:`measure_written`) against the real ones.

    ``figures_native`` against ``reference`` (the real tumours on their own grid); ``figures_on_grid``
    against ``reference_on_grid(spacing_mm)`` (the same averaged onto the host's voxels); ``figures``, the
    verdict: the host's grid where at least :data:`~train_diffusion.figures.MIN_REFERENCE` real values are
    left for a figure, else the real tumours' own grid. Empty without a reference.
    """
    out: dict = {}
    if reference:
        out["figures_native"] = out["figures"] = figures_against(reference, rows)
    if reference_on_grid is not None:
        out["figures_on_grid"] = figures_against(reference_on_grid(spacing_mm), rows)
        out["figures"] = figures_preferring(out["figures_on_grid"], out.get("figures_native", {}))
        out["reference_grid_mm"] = list(spacing_mm)
    return out


def check_hosts(model_dir: str | Path, hosts: Sequence, organs: Sequence[str], *, tumours: int, size_mm, seed: int,
                steps: int | None = None, device: str = "auto", grain: str | None = None, reference: list[dict] | None = None,
                reference_on_grid: Callable | None = None, preview: str | Path | None = None,
                method: str = "diffusion", every_descriptor: bool = False, sizes_mm: Sequence | None = None,
                log=lambda *a: None) -> dict:
    """Write ``tumours`` early tumours per organ and host with the model; measure them (see module docstring).

    Parameters
    ----------
    model_dir : path or None
        A model folder (``tumorsyn generate --model``); None for another ``method``.
    hosts : sequence
        ``"example"`` or ``{ct, labels, label_preset}`` entries.
    organs : sequence of str
        Organs to write into (each must be labelled in every host).
    tumours : int
        Tumours per organ and host; tumour ``i`` of a host is drawn from seed ``[seed, host, i]``.
    size_mm : (float, float)
        Equivalent-diameter range of the tumours (mm).
    seed : int
        Master seed.
    steps : int, optional
        Sampling steps (default: the model's).
    device : str
        Where the model samples.
    grain : {'host', 'model', 'noise'}, optional
        The generator's ``grain`` option (default: the generator's default).
    reference : list of dict, optional
        Real descriptor rows on the real scans' own grid: each organ's figures are compared with them
        (``figures_native``; ``figures`` too when ``reference_on_grid`` is not given).
    reference_on_grid : callable, optional
        ``spacing_mm -> rows``: the real rows read on a host's grid; each organ's ``figures`` (the verdict)
        are compared with those of its host's spacing, figure by figure where at least
        :data:`train_diffusion.figures.MIN_REFERENCE` real values are left (else with ``reference``).
    preview : path, optional
        Where to write the PNG (one row per host and organ).
    method : str
        The generator (default ``diffusion``; ``rules`` or ``ca`` write their tumours the same way, with
        the same seeds, for a side-by-side: ``benchmarks/bench_example_figures.py``).
    every_descriptor : bool
        Rows with every descriptor of ``tumorsyn realism``, not only :data:`REPORTED`.
    sizes_mm : sequence of (float, float), optional
        One equivalent-diameter range (mm) per tumour, in place of ``size_mm`` (tumour ``i`` of every host
        and organ gets ``sizes_mm[i]``): the same target sizes for every generator in a side-by-side.
    log : callable
        Progress lines.

    Returns
    -------
    dict
        ``hosts``: per host and organ, the descriptor rows, the figures against ``reference`` and the
        warnings raised while sampling.
    """
    from tumorsyn import sample_spec, synthesize
    from tumorsyn.io.cases import read_case_masks

    options = {"model": str(model_dir)} if method == "diffusion" else {}
    if sizes_mm is not None and len(sizes_mm) < int(tumours):
        raise ValueError(f"sizes_mm holds {len(sizes_mm)} range(s) for {int(tumours)} tumours")
    if steps is not None:
        options["steps"] = int(steps)
    if grain is not None:
        options["grain"] = grain
    results, rows_png, row_labels = [], [], []
    for h, case in enumerate(host_cases(hosts)):
        for organ in organs:
            scan, organ_mask, _ = read_case_masks(case, organ, lesions=False)
            ct, spacing = scan.values().astype(np.float32), tuple(float(s) for s in scan.spacing_mm)
            rows, specs = [], []
            with warnings.catch_warnings(record=True) as seen:
                warnings.simplefilter("always")
                for i in range(int(tumours)):
                    asked = tuple(size_mm) if sizes_mm is None else tuple(sizes_mm[i])
                    spec = sample_spec(organ_mask, spacing, organ=organ, method=method, size_mm=asked,
                                       ct_hu=ct, rng=np.random.default_rng([int(seed), h, i]), device=device, **options)
                    out, tumor = synthesize(ct, organ_mask, spacing, spec, device=device)
                    rows.append(measure_written(out, tumor, organ_mask, spacing, seed=spec.seed, size_mm=spec.size_mm,
                                                every_descriptor=every_descriptor))
                    specs.append(spec)
                # What a user would be told (library deprecation notices are not about this host).
                caught = sorted({str(w.message) for w in seen
                                 if not issubclass(w.category, (DeprecationWarning, PendingDeprecationWarning))})
            entry = {"host": case.case_id, "organ": organ, "spacing_mm": list(spacing), "tumours": rows,
                     "invisible": sum(not r["visible"] for r in rows),
                     "organ_median_hu": round(float(np.median(ct[organ_mask])), 1), "warnings": caught}
            entry.update(organ_figures(rows, spacing, reference, reference_on_grid))
            results.append(entry)
            log(f"{case.case_id} {organ}: {len(rows)} tumour(s) ({entry['invisible']} invisible), "
                f"{len(caught)} warning(s)")
            if preview is not None and specs:
                rows_png.append(_preview_row(ct, organ_mask, spacing, specs[0], device))
                row_labels.append(f"{case.case_id} {organ}")
    if preview is not None and rows_png:
        from train_diffusion.runlog import save_sheet

        save_sheet(Path(preview), rows_png, ["host", "blanked", *(f"generated {k + 1}" for k in range(_PREVIEW_SEEDS))],
                   row_labels)
    return {"size_mm": [float(v) for v in size_mm], "tumours_per_organ": int(tumours), "hosts": results}
