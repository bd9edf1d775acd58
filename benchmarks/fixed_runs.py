"""Checksums of a fixed set of ``tumorsyn generate`` runs, to prove that a change keeps outputs byte-identical.

A structural or safety change must not alter what tumorsyn writes for good inputs. Run this before
and after the change and compare::

    .venv/bin/python benchmarks/fixed_runs.py --json before.json     # on the old commit
    .venv/bin/python benchmarks/fixed_runs.py --compare before.json  # on the new one

It runs the bundled example (liver, pancreas, kidney; rules with several appearances and the cellular
automaton; several tumours and outputs per scan; label maps) and, where ``../shared/data/real`` is
present, 3D-IRCADb patient 7's liver; and the MONAI transform ``RandTumorSynthesisd`` on the example (the
checksums of its image and label arrays). Each output's ``outputs_sha256`` from the manifest is
printed (the manifest itself holds times and paths, which change from run to run).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
REAL = REPO.parent / "shared" / "data" / "real"
TUMORSYN = [sys.executable, "-m", "tumorsyn"]

# name -> arguments of `tumorsyn generate` (without --out)
EXAMPLE_RUNS = {
    "example_liver_rules": ["--example", "--organ", "liver", "--count", "2", "--per-scan", "2", "--seed", "3", "--label-map"],
    "example_liver_rim": ["--example", "--organ", "liver", "--appearance", "rim", "--size-mm", "10-25", "--seed", "5"],
    "example_liver_mix": ["--example", "--organ", "liver", "--appearance", "mix", "--per-scan", "3", "--seed", "11"],
    "example_pancreas_rules": ["--example", "--organ", "pancreas", "--size-mm", "8-15", "--seed", "1", "--label-map"],
    "example_kidney_rules": ["--example", "--organ", "kidney", "--per-scan", "2", "--seed", "2"],
    "example_kidney_cystic": ["--example", "--organ", "kidney", "--appearance", "cystic", "--seed", "4"],
    "example_liver_ca": ["--example", "--organ", "liver", "--method", "ca", "--per-scan", "2", "--seed", "7"],
    "example_kidney_ca": ["--example", "--organ", "kidney", "--method", "ca", "--seed", "8"],
}


def real_runs() -> dict[str, list[str]]:
    p7 = REAL / "3dircadb1" / "3Dircadb1.7"
    ct, liver = p7 / "ct.nii.gz", p7 / "masks" / "liver.nii.gz"
    if not (ct.exists() and liver.exists()):
        return {}
    base = [str(ct), "--labels", str(liver), "--organ", "liver", "--case-id", "p7"]
    return {"p7_liver_rules": base + ["--count", "2", "--seed", "21", "--label-map"],
            "p7_liver_ca": base + ["--method", "ca", "--seed", "22"]}


def transform_runs() -> dict[str, dict]:
    """The MONAI transform on the bundled example (rules and CA, liver and kidney): checksums of image and label."""
    import hashlib

    import numpy as np

    from tumorsyn.io import load_labels, load_scan
    from tumorsyn.io.labels import label_values
    from tumorsyn.transforms import RandTumorSynthesisd

    data = REPO / "tumorsyn" / "data"
    scan = load_scan(data / "example_ct.nii.gz")
    labels = label_values(load_labels(data / "example_labels.nii.gz"))
    results = {}
    for name, organ, method, seed in (("transform_liver_rules", "liver", "rules", 31), ("transform_liver_ca", "liver", "ca", 32),
                                      ("transform_kidney_rules", "kidney", "rules", 33)):
        item = {"image": scan.values()[None], "label": labels[None].astype(np.float32)}
        synth = RandTumorSynthesisd(keys=("image", "label"), organ=organ, method=method, label_preset="totalsegmentator",
                                    size_mm=(8, 16), count=2, prob=1.0, spacing_mm=scan.spacing_mm)
        out = synth.set_random_state(seed)(item)
        results[name] = {key: hashlib.sha256(np.ascontiguousarray(np.asarray(out[key])).tobytes()).hexdigest()
                         for key in ("image", "label")}
        print(f"{name}: done", flush=True)
    return results


def run_all(work: Path) -> dict[str, dict]:
    """Run every fixed run into ``work``; return ``{run: {output_id: outputs_sha256}}``."""
    results = transform_runs()
    for name, args in {**EXAMPLE_RUNS, **real_runs()}.items():
        out = work / name
        done = subprocess.run(TUMORSYN + ["generate", *args, "--out", str(out), "--quiet"], capture_output=True, text=True)
        if done.returncode != 0:
            results[name] = {"error": done.stderr.strip().splitlines()[-1:]}
            continue
        records = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines() if line.strip()]
        results[name] = {r["output_id"]: r["outputs_sha256"] for r in records}
        print(f"{name}: {len(records)} output(s)", flush=True)
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", metavar="FILE", help="write the checksums to FILE")
    parser.add_argument("--compare", metavar="FILE", help="compare with checksums written earlier by --json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        results = run_all(Path(tmp))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1, sort_keys=True) + "\n")
    if args.compare:
        before = json.loads(Path(args.compare).read_text())
        same = [name for name in before if results.get(name) == before[name]]
        differ = [name for name in before if name not in same]
        print(f"{len(same)} of {len(before)} runs byte-identical")
        for name in differ:
            print(f"  DIFFERS: {name}")
        return 0
    print(json.dumps(results, indent=1, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
