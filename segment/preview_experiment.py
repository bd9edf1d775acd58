"""Preview sheets of the fold experiment: detected and missed small tumours per arm, into the run folder only.

One PNG per trained arm (its first seed): the top row shows detected tumours under 20 mm, the
bottom row missed ones, smallest first; each tile is the axial slice through the lesion's centroid,
40 mm wide, liver window (W150/L90), the reference outlined in green and the prediction in red.
The scans are non-commercial (LiTS, 3D-IRCADb): these pictures stay in the local run folder.
"""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

__all__ = ["write_previews", "TILES_PER_ROW"]

TILES_PER_ROW = 6
TILE_MM = 40.0
WINDOW_HU = (90.0 - 75.0, 90.0 + 75.0)


def _small_lesions(report_dir: Path) -> dict[str, list[dict]]:
    """The report's reference lesions under 20 mm, split into detected and missed, smallest first."""
    with (report_dir / "lesions.csv").open() as fh:
        rows = list(csv.DictReader(line for line in fh if not line.startswith("#")))
    small = [r for r in rows if r["kind"] == "reference" and float(r["max_diameter_mm"]) < 20.0]
    small.sort(key=lambda r: float(r["max_diameter_mm"]))
    return {status: [r for r in small if r["status"] == status] for status in ("detected", "missed")}


def _pick(rows: list[dict], n: int) -> list[dict]:
    """``n`` rows spread over the size range (all when there are fewer)."""
    if len(rows) <= n:
        return rows
    return [rows[int(i)] for i in np.linspace(0, len(rows) - 1, n).round()]


def _radiological(plane: np.ndarray) -> np.ndarray:
    """A canonical RAS+ (X, Y) plane as radiologists view it: anterior up, the patient's right on the left."""
    return plane.T[::-1, ::-1]


def _tile(ax, hu: np.ndarray, ref: np.ndarray, pred: np.ndarray, spacing, centre, title: str) -> None:
    x, y, z = (int(round(float(c))) for c in centre)
    half = [int(round(TILE_MM / 2 / s)) for s in spacing[:2]]
    box = (slice(max(0, x - half[0]), x + half[0] + 1), slice(max(0, y - half[1]), y + half[1] + 1), z)
    image = _radiological(np.clip((hu[box] - WINDOW_HU[0]) / (WINDOW_HU[1] - WINDOW_HU[0]), 0, 1))
    ax.imshow(image, cmap="gray", vmin=0, vmax=1, interpolation="nearest",
              aspect=spacing[1] / spacing[0])
    for mask, colour in ((ref, "#2ca02c"), (pred, "#d62728")):
        part = _radiological(mask[box]).astype(float)
        if part.any() and part.min() < 1:
            ax.contour(part, levels=[0.5], colors=colour, linewidths=0.9)
    ax.set_title(title, fontsize=7)
    ax.set_xticks([])
    ax.set_yticks([])


def write_previews(out: Path, folds, reports: dict, arm_seeds: dict, convention: str) -> list[Path]:
    """One preview sheet per trained arm (first seed) in ``out/figures``; returns the written paths."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from tumorsyn.io import load_labels, load_scan
    from tumorsyn.io.labels import label_values
    from tumorsyn.io.writers import atomic_path

    from segment.predict import output_names

    tests = {t.case_id: t for f in folds for t in f.test}
    fold_of = {t.case_id: f.name for f in folds for t in f.test}
    cache: dict[str, tuple] = {}

    def volume(path: str, kind: str):
        key = f"{kind}:{path}"
        if key not in cache:
            cache[key] = (load_scan(path).values(), None) if kind == "ct" else (label_values(load_labels(path)) != 0, None)
        return cache[key][0]

    written = []
    for arm, seeds in arm_seeds.items():
        if seeds == ["-"]:
            continue  # a baseline: nothing learnt to look at
        seed = seeds[0]
        base = out / "arms" / arm / f"seed{seed}"
        lesions = _small_lesions(Path(reports[f"{arm}|{seed}|{convention}"]["_path"]).parent)
        rows = {status: _pick(rows, TILES_PER_ROW) for status, rows in lesions.items()}
        fig = Figure(figsize=(1.6 * TILES_PER_ROW, 3.7), dpi=130)
        FigureCanvasAgg(fig)
        for r, status in enumerate(("detected", "missed")):
            for c in range(TILES_PER_ROW):
                ax = fig.add_subplot(2, TILES_PER_ROW, r * TILES_PER_ROW + c + 1)
                ax.axis("off")
                if c >= len(rows[status]):
                    continue
                row = rows[status][c]
                test = tests[row["case_id"]]
                key = fold_of[row["case_id"]] if (base / fold_of[row["case_id"]] / "pred").is_dir() else "shared"
                pred_path = base / key / "pred" / output_names(test.scan_id)["tumor"]
                spacing = load_labels(test.reference).spacing_mm
                _tile(ax, volume(test.ct, "ct"), volume(test.reference, "mask"), volume(str(pred_path), "mask"),
                      spacing, (row["centroid_x_vox"], row["centroid_y_vox"], row["centroid_z_vox"]),
                      f"{status} {float(row['max_diameter_mm']):.1f} mm\n{row['case_id']} #{row['lesion_id']}")
        fig.suptitle(f"{arm}, seed {seed}: small tumours ({len(lesions['detected'])} detected, "
                     f"{len(lesions['missed'])} missed); green reference, red prediction; W150/L90, {TILE_MM:.0f} mm",
                     fontsize=8)
        fig.tight_layout()
        path = out / "figures" / f"preview_{arm}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png")
        written.append(path)
    return written
