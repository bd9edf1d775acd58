"""The realism figures of generated tumours against real ones: what ``--evaluate`` calls working.

Shared by the held-out evaluation (:mod:`train_diffusion.evaluate`) and the host check
(:mod:`train_diffusion.host_check`). Descriptors are those of ``tumorsyn realism``
(:mod:`tumorsyn.metrics.realism.descriptors`, defined in docs/realism.md).
"""
from __future__ import annotations

import numpy as np

__all__ = ["FIGURES", "REPORTED", "MIN_REFERENCE", "RESAMPLES", "crop_descriptors", "figures_against",
           "figures_preferring", "figures_line"]

# The figures a working model's tumours must match (generated median inside the real IQR), and the
# descriptors reported beside them. Names of tumorsyn.metrics.realism.descriptors.DESCRIPTORS.
FIGURES = ("contrast_noise", "internal_iqr_noise", "edge_sharpness")
REPORTED = (*FIGURES, "edge_gradient_noise_per_mm", "contrast_hu", "internal_iqr_hu")


# Fewer real values than this make no interquartile range to judge by (e.g. the interior spread of
# early tumours averaged onto 3 mm voxels, where most have no interior voxel left).
MIN_REFERENCE = 5

# Bootstrap draws behind each verdict's share. A verdict is a median against an IQR of some twenty real
# tumours: a model whose median sits at the IQR's edge passes or fails by which tumours were held out
# and which samples were drawn (benchmarks/RESULTS.md, twelfth session). The share of resamples (real
# rows, and generated rows or their groups, each with replacement) that give the same verdict says how
# firm it is. A fixed seed: the share is a function of the figures' inputs alone.
RESAMPLES = 1000
_RESAMPLE_SEED = 16


def crop_descriptors(hu: np.ndarray, lesion: np.ndarray, organ: np.ndarray, others: np.ndarray, spacing_mm) -> dict:
    """The :data:`REPORTED` descriptors of one lesion in a crop (HU), as ``tumorsyn realism`` measures them."""
    from tumorsyn.metrics.realism.descriptors import lesion_descriptors

    row = lesion_descriptors(hu, lesion, organ, spacing_mm, other_lesions=others)
    return {name: float(row[name]) for name in REPORTED}


def figures_against(real: list[dict], generated: list[dict], names=REPORTED, *,
                    generated_groups: list | None = None, resamples: int = RESAMPLES) -> dict:
    """Per descriptor: the real median and IQR, the generated median and IQR, whether the generated
    median lies inside the real IQR (NaN rows, e.g. a lesion too small for an interior, are left out),
    and ``inside_share``, the share of bootstrap resamples in which it does.

    Parameters
    ----------
    real, generated : list of dict
        Descriptor rows (:func:`crop_descriptors`).
    names : sequence of str
        The descriptors to compare.
    generated_groups : list, optional
        One label per generated row; rows sharing a label (samples of one held-out crop) are resampled
        together, as they are not independent. Default: every row on its own.
    resamples : int
        Bootstrap draws (0: no shares).

    Returns
    -------
    dict
        One entry per name, ``working`` (every name of :data:`FIGURES` among ``names`` inside) and
        ``working_share`` (the share of resamples in which every one of them is inside; None without
        resamples or when a figure has no values).
    """
    r_table = np.array([[row[name] for name in names] for row in real], float).reshape(len(real), len(names))
    g_table = np.array([[row[name] for name in names] for row in generated], float).reshape(len(generated), len(names))
    out: dict = {}
    for j, name in enumerate(names):
        r, g = r_table[:, j], g_table[:, j]
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
    judged = [j for j, name in enumerate(names) if out[name]["inside_real_iqr"] is not None]
    verdict = [k for k, j in enumerate(judged) if names[j] in FIGURES]
    shares, joint = _inside_shares(r_table[:, judged], g_table[:, judged], generated_groups, resamples, verdict)
    for j, share in zip(judged, shares):
        out[names[j]]["inside_share"] = share
    out["working"] = all(out[name]["inside_real_iqr"] for name in FIGURES if name in out)
    complete = all(out[name]["inside_real_iqr"] is not None for name in FIGURES if name in out)
    out["working_share"] = joint if complete and verdict else None
    return out


def _inside_shares(r_table: np.ndarray, g_table: np.ndarray, groups: list | None, resamples: int,
                   joint_columns: list[int]) -> tuple[list, float | None]:
    """Bootstrap shares of "generated median inside the real IQR", per column, and of ``joint_columns`` all at once.

    Real rows are resampled with replacement; generated rows too, or whole groups of them. A resample
    whose column has no finite value on one side counts as outside. Without resamples: Nones.
    """
    if resamples <= 0:
        return [None] * r_table.shape[1], None
    rng = np.random.default_rng(_RESAMPLE_SEED)
    labels = np.arange(len(g_table)) if groups is None else np.asarray(groups)
    if len(labels) != len(g_table):
        raise ValueError(f"generated_groups has {len(labels)} labels for {len(g_table)} generated rows")
    members = [np.flatnonzero(labels == u) for u in np.unique(labels)]
    hits = np.zeros(r_table.shape[1], int)
    joint_hits = 0
    for _ in range(int(resamples)):
        r = r_table[rng.integers(0, len(r_table), len(r_table))]
        g = g_table[np.concatenate([members[i] for i in rng.integers(0, len(members), len(members))])]
        inside = np.zeros(r_table.shape[1], bool)
        for j in range(r_table.shape[1]):
            rj, gj = r[:, j][np.isfinite(r[:, j])], g[:, j][np.isfinite(g[:, j])]
            if len(rj) and len(gj):
                q1, q3 = np.percentile(rj, [25, 75])
                inside[j] = q1 <= float(np.median(gj)) <= q3
        hits += inside
        joint_hits += bool(inside[joint_columns].all())
    return [round(int(h) / resamples, 3) for h in hits], round(joint_hits / resamples, 3)


def figures_preferring(preferred: dict, fallback: dict) -> dict:
    """Per figure, ``preferred`` where its real values number at least :data:`MIN_REFERENCE`, else ``fallback``
    (each entry records which as ``reference``); ``working`` recomputed over :data:`FIGURES`."""
    out: dict = {}
    for name, entry in preferred.items():
        if name in ("working", "working_share"):
            continue
        use_preferred = entry.get("n_real", 0) >= MIN_REFERENCE or name not in fallback
        out[name] = {**(entry if use_preferred else fallback[name]), "reference": "preferred" if use_preferred else "fallback"}
    out["working"] = all(out[name].get("inside_real_iqr") for name in FIGURES if name in out)
    # The joint share needs every figure judged against one reference; mixed, only the per-figure shares stand.
    used = {out[name]["reference"] for name in FIGURES if name in out}
    out["working_share"] = ((preferred if used == {"preferred"} else fallback).get("working_share")
                            if len(used) == 1 else None)
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
    share = figures.get("working_share")
    if share is not None:
        verdict += f" (all {len(FIGURES)} inside in {100 * share:.0f} % of {RESAMPLES} bootstrap resamples)"
    return f"{where}: " + "; ".join(parts) + f" -> {verdict}"
