"""The realism figures of generated tumours against real ones: what ``--evaluate`` calls working.

Shared by the held-out evaluation (:mod:`train_diffusion.evaluate`) and the host check
(:mod:`train_diffusion.host_check`). Descriptors are those of ``tumorsyn realism``
(:mod:`tumorsyn.metrics.realism.descriptors`, defined in docs/realism.md).
"""
from __future__ import annotations

import numpy as np

__all__ = ["FIGURES", "REPORTED", "MIN_REFERENCE", "crop_descriptors", "figures_against", "figures_preferring",
           "figures_line"]

# The figures a working model's tumours must match (generated median inside the real IQR), and the
# descriptors reported beside them. Names of tumorsyn.metrics.realism.descriptors.DESCRIPTORS.
FIGURES = ("contrast_noise", "internal_iqr_noise", "edge_sharpness")
REPORTED = (*FIGURES, "edge_gradient_noise_per_mm", "contrast_hu", "internal_iqr_hu")


# Fewer real values than this make no interquartile range to judge by (e.g. the interior spread of
# early tumours averaged onto 3 mm voxels, where most have no interior voxel left).
MIN_REFERENCE = 5


def crop_descriptors(hu: np.ndarray, lesion: np.ndarray, organ: np.ndarray, others: np.ndarray, spacing_mm) -> dict:
    """The :data:`REPORTED` descriptors of one lesion in a crop (HU), as ``tumorsyn realism`` measures them."""
    from tumorsyn.metrics.realism.descriptors import lesion_descriptors

    row = lesion_descriptors(hu, lesion, organ, spacing_mm, other_lesions=others)
    return {name: float(row[name]) for name in REPORTED}


def figures_against(real: list[dict], generated: list[dict], names=REPORTED) -> dict:
    """Per descriptor: the real median and IQR, the generated median and IQR, and whether the generated
    median lies inside the real IQR (NaN rows, e.g. a lesion too small for an interior, are left out).

    ``working`` is true when every name of :data:`FIGURES` among ``names`` is inside.
    """
    out: dict = {}
    for name in names:
        r = np.array([row[name] for row in real], float)
        g = np.array([row[name] for row in generated], float)
        r, g = r[np.isfinite(r)], g[np.isfinite(g)]
        if not len(r) or not len(g):
            out[name] = {"n_real": int(len(r)), "n_generated": int(len(g)), "inside_real_iqr": None}
            continue
        q1, q3 = np.percentile(r, [25, 75])
        median = float(np.median(g))
        out[name] = {"real_median": round(float(np.median(r)), 3), "real_iqr": [round(float(q1), 3), round(float(q3), 3)],
                     "generated_median": round(median, 3),
                     "generated_iqr": [round(float(v), 3) for v in np.percentile(g, [25, 75])],
                     "inside_real_iqr": bool(q1 <= median <= q3), "n_real": int(len(r)), "n_generated": int(len(g))}
    out["working"] = all(out[name]["inside_real_iqr"] for name in FIGURES if name in out)
    return out


def figures_preferring(preferred: dict, fallback: dict) -> dict:
    """Per figure, ``preferred`` where its real values number at least :data:`MIN_REFERENCE`, else ``fallback``
    (each entry records which as ``reference``); ``working`` recomputed over :data:`FIGURES`."""
    out: dict = {}
    for name, entry in preferred.items():
        if name == "working":
            continue
        use_preferred = entry.get("n_real", 0) >= MIN_REFERENCE or name not in fallback
        out[name] = {**(entry if use_preferred else fallback[name]), "reference": "preferred" if use_preferred else "fallback"}
    out["working"] = all(out[name].get("inside_real_iqr") for name in FIGURES if name in out)
    return out


def figures_line(where: str, figures: dict) -> str:
    """One line: each figure of :data:`FIGURES`, generated median against the real IQR, and the verdict."""
    parts = []
    for name in FIGURES:
        f = figures.get(name) or {}
        if f.get("inside_real_iqr") is None:
            parts.append(f"{name} n/a")
            continue
        mark = "in" if f["inside_real_iqr"] else "OUT"
        own = " (real on its own grid)" if f.get("reference") == "fallback" else ""
        parts.append(f"{name} {f['generated_median']:.2f} vs real IQR [{f['real_iqr'][0]:.2f}, {f['real_iqr'][1]:.2f}]{own} {mark}")
    verdict = "working" if figures.get("working") else "not working"
    return f"{where}: " + "; ".join(parts) + f" -> {verdict}"
