"""The picture in docs/ca.md: CA liver tumours in the bundled example, grown on its 3 mm voxels and on 1 mm ones.

Made from the bundled TotalSegmentator example only (Apache-2.0), so it may live in the docs::

    python benchmarks/picture_ca_growth.py --out docs/images/ca_growth_example.png

Each column is one drawn spec; the top row replays it as a spec drawn before ``growth_mm`` (growing on the
scan's 3 mm voxels, steps for that grid), the bottom row as drawn now. Axial slice through the tumour's
centre, window W220/L50, label outline in red.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from scipy import ndimage

import tumorsyn
from tumorsyn.generators.ca import calibration
from tumorsyn.io import load_labels, load_scan
from tumorsyn.io.labels import label_values, organ_mask_from_labels
from tumorsyn.placement import PlacementContext

EXAMPLE_DIR = Path(tumorsyn.__file__).parent / "data"
HALF_MM = 24.0  # half the field of view


def _axial(hu: np.ndarray, tumour: np.ndarray, spacing) -> tuple[np.ndarray, np.ndarray]:
    c = np.round(ndimage.center_of_mass(tumour)).astype(int)
    half = [int(HALF_MM / s) for s in spacing[:2]]
    sl = (slice(c[0] - half[0], c[0] + half[0]), slice(c[1] - half[1], c[1] + half[1]), int(c[2]))
    return hu[sl], tumour[sl]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="PNG to write")
    parser.add_argument("--n", type=int, default=6, help="tumours (columns), default 6")
    parser.add_argument("--seed", type=int, default=200, help="first spec seed (default 200)")
    args = parser.parse_args(argv)
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ct = load_scan(EXAMPLE_DIR / "example_ct.nii.gz")
    labels = load_labels(EXAMPLE_DIR / "example_labels.nii.gz")
    hu, sp = ct.values(), ct.spacing_mm
    liver = organ_mask_from_labels(label_values(labels), "liver", preset="totalsegmentator")
    context = PlacementContext(liver, sp, "liver", ct_hu=hu)
    fig, axes = plt.subplots(2, args.n, figsize=(2.2 * args.n, 4.8))
    for j in range(args.n):
        spec = tumorsyn.sample_spec(liver, sp, organ="liver", method="ca", size_mm=(10.0, 18.0), ct_hu=hu,
                                    rng=args.seed + j, context=context, device="cpu")
        before = {k: v for k, v in spec.params.items() if k != "growth_mm"}
        before["steps"] = calibration.steps_for_diameter(14.0, sp, before)
        for i, drawn in enumerate((spec.with_params(params=before), spec)):
            out, tumour = tumorsyn.synthesize(hu, liver, sp, drawn, device="cpu")
            image, label = _axial(out, tumour > 0, sp)
            axes[i, j].imshow(image.T, cmap="gray", vmin=-60, vmax=160, origin="lower", interpolation="nearest")
            axes[i, j].contour(label.T, [0.5], colors="r", linewidths=0.6)
    for ax in axes.ravel():
        ax.axis("off")
    axes[0, 0].set_title("grown on the scan's 3 mm voxels (before)", loc="left", fontsize=9)
    axes[1, 0].set_title("grown on 1 mm voxels, sampled back with partial volume (now)", loc="left", fontsize=9)
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=70)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
