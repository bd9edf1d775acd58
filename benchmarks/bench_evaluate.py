"""Time to evaluate one 512 x 512 x 150 pair with ~10 lesions, next to MONAI, and a 100-pair dataset.

A plain script, not a test: untimed setup, then printed tables. Run from the repository root::

    .venv/bin/python benchmarks/bench_evaluate.py            # full run, about 3-4 min on 2 cores
    .venv/bin/python benchmarks/bench_evaluate.py --quick    # fewer repeats, 10 pairs: about 1 min

What is measured (``benchmarks/README.md`` explains every figure):

1. our per-pair evaluation time: :func:`tumorsyn.metrics.evaluate_case` on in-memory arrays, and
   :func:`tumorsyn.metrics.evaluate_paths` on the two NIfTI files (reading, grid check, SHA-256 of
   both files, evaluation), median/mean/max over the repeats;
2. MONAI ``DiceMetric`` + ``SurfaceDiceMetric`` (2 mm, spacing passed) on one-hot tensors of the same
   arrays: time and values, next to ours;
3. ``python -m tumorsyn evaluate --workers 2`` on a folder of 100 pairs (hard links to the same two
   files), in a subprocess: wall time and time per pair; the progress bar shown through ``script``.

The pair is built from 3D-IRCADb patient 1 when ``../shared/data/real/3dircadb1/3Dircadb1.1`` is there
(its 7 tumour masks, plus 3 small synthetic spheres in the liver, Z padded to 150 slices), else from a
synthetic phantom. Files go to a temporary folder that is removed at the end; nothing is written
into the repository.

NumPy, SciPy and torch run on one thread (the variables below are set before they are imported), so
ours and MONAI are compared core for core, and two worker processes use the two cores of the
reference machine.
"""
import os

_THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
for _var in _THREAD_VARS:  # before numpy/scipy/torch load their thread pools
    os.environ[_var] = "1"

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import resource  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402

import nibabel as nib  # noqa: E402
import numpy as np  # noqa: E402
import scipy  # noqa: E402
from scipy import ndimage  # noqa: E402

import tumorsyn  # noqa: E402
from tumorsyn.configfile import real_data_dir  # noqa: E402
from tumorsyn.metrics import CasePaths, evaluate_case, evaluate_paths, load_case, sha256_file  # noqa: E402

from benchkit import cpu_model, loadavg, print_checks, say, stats  # noqa: E402  (this folder)

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
IRCAD_DIR = real_data_dir()[0] / "3dircadb1" / "3Dircadb1.1"
IRCAD_TUMOURS = [f"livertumor{i:02d}.nii.gz" for i in range(1, 8)]

SHAPE_Z = 150               # slices of the benchmark pair (IRCAD p1 has 129: padded with background)
TARGET_PAIR_S = 2.0         # the issue: one pair in <= 2 s
TOLERANCE_MM = 2.0          # surface Dice tolerance, ours and MONAI
DATASET_WORKERS = 2
CONN26 = np.ones((3, 3, 3), bool)


# --- the pair (untimed setup) ------------------------------------------------------------------

def ball(radius_mm: float, spacing) -> np.ndarray:
    """Boolean ellipsoid of a sphere of ``radius_mm`` on the voxel grid (odd box, centred)."""
    half = [int(np.ceil(radius_mm / s)) for s in spacing]
    grids = np.ogrid[tuple(slice(-h, h + 1) for h in half)]
    return sum((g * s / radius_mm) ** 2 for g, s in zip(grids, spacing)) <= 1.0


def place_sphere(target: np.ndarray, radius_mm: float, spacing, rng, inside: np.ndarray, avoid: np.ndarray,
                 margin_mm: float = 5.0, tries: int = 5000) -> tuple[int, int, int]:
    """Paint a sphere into ``target`` at a random centre where it lies in ``inside``.

    The sphere grown by ``margin_mm`` must touch neither ``avoid`` nor what ``target`` already holds,
    so the new sphere is a lesion of its own (checked locally: no whole-scan dilation).
    """
    sph = ball(radius_mm, spacing)
    big = ball(radius_mm + margin_mm, spacing)
    half = np.array(big.shape) // 2
    inner = tuple(slice(h - s // 2, h + s // 2 + 1) for h, s in zip(half, sph.shape))
    candidates = np.argwhere(inside[::4, ::4, ::2]) * np.array([4, 4, 2])
    for _ in range(tries):
        c = candidates[rng.integers(len(candidates))]
        lo, hi = c - half, c + half + 1
        if np.any(lo < 0) or np.any(hi > np.array(target.shape)):
            continue
        box = tuple(slice(a, b) for a, b in zip(lo, hi))
        if np.any((avoid[box] | target[box])[big]):
            continue
        if np.all(inside[box][inner][sph]):
            target[box][inner] |= sph
            return tuple(int(v) for v in c)
    raise RuntimeError(f"no room for a {2 * radius_mm:g} mm sphere")


def lesion_boxes(mask: np.ndarray):
    labels, n = ndimage.label(mask, structure=CONN26)
    return labels, n, ndimage.find_objects(labels)


def make_prediction(reference: np.ndarray, spacing, rng, inside: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """Reference changed per lesion (dilated / eroded / shifted / kept), the smallest one missed, 2 FP blobs."""
    labels, n, boxes = lesion_boxes(reference)
    sizes = ndimage.sum_labels(reference, labels, index=np.arange(1, n + 1))
    missed = int(np.argmin(sizes)) + 1
    pred = np.zeros_like(reference)
    ops = []
    cycle = ("dilate", "erode", "shift", "dilate", "keep")
    for i in range(1, n + 1):
        if i == missed:
            ops.append("missed")
            continue
        op = cycle[(i - 1) % len(cycle)]
        if op == "erode" and sizes[i - 1] < 2000:
            op = "dilate"  # a 1-voxel erosion can wipe out a small lesion
        pad = 3
        box = tuple(slice(max(s.start - pad, 0), min(s.stop + pad, dim)) for s, dim in zip(boxes[i - 1], reference.shape))
        les = labels[box] == i
        if op == "dilate":
            les = ndimage.binary_dilation(les)
        elif op == "erode":
            les = ndimage.binary_erosion(les)
        elif op == "shift":
            les = np.roll(les, (2, -1, 1), axis=(0, 1, 2))  # 1.1 / 0.6 / 1.6 mm on IRCAD; the pad keeps it in the box
        pred[box] |= les
        ops.append(op)
    # Two false-positive blobs (6 and 9 mm) inside the organ, at least 5 mm from every lesion.
    taken = reference | pred
    for radius in (3.0, 4.5):
        place_sphere(pred, radius, spacing, rng, inside, taken)
    return pred, ops


def build_pair(seed: int) -> dict:
    """Reference and prediction arrays, spacing, affine and a description of where they came from."""
    t0 = time.perf_counter()
    rng = np.random.default_rng(seed)
    missing = [p for p in [IRCAD_DIR / "masks" / "liver.nii.gz", *(IRCAD_DIR / "masks" / t for t in IRCAD_TUMOURS)]
               if not p.exists()]
    if not missing:
        liver_img = nib.load(IRCAD_DIR / "masks" / "liver.nii.gz")
        spacing = tuple(float(s) for s in liver_img.header.get_zooms()[:3])
        affine = liver_img.affine
        liver = np.asarray(liver_img.dataobj) != 0
        union = np.zeros(liver.shape, bool)
        for name in IRCAD_TUMOURS:
            union |= np.asarray(nib.load(IRCAD_DIR / "masks" / name).dataobj) != 0
        n_real = lesion_boxes(union)[1]
        extra = np.zeros_like(union)
        for radius in (2.5, 3.5, 5.0):  # 5, 7 and 10 mm spheres, at least 5 mm from other lesions
            place_sphere(extra, radius, spacing, rng, liver, union)
        reference = union | extra
        pad = SHAPE_Z - reference.shape[2]
        if pad > 0:  # append background slices; the affine (origin at slice 0) stays valid
            reference = np.pad(reference, ((0, 0), (0, 0), (0, pad)))
            liver = np.pad(liver, ((0, 0), (0, 0), (0, pad)))
        source = (f"3D-IRCADb patient 1 ({IRCAD_DIR}): union of livertumor01..07 ({n_real} lesions, "
                  f"26-connected) + 3 synthetic spheres (5/7/10 mm) in the liver mask; Z padded "
                  f"{reference.shape[2] - pad} -> {reference.shape[2]} slices")
    else:
        spacing = (0.7, 0.7, 1.5)
        affine = np.diag([*spacing, 1.0])
        shape = (512, 512, SHAPE_Z)
        # An ellipsoid "liver" (about 20 x 15 x 15 cm) with 10 spheres of 5 to 40 mm in it.
        grids = np.ogrid[tuple(slice(0, n) for n in shape)]
        centre, radii = (230, 250, 75), (140, 105, 50)
        liver = sum(((g - c) / r) ** 2 for g, c, r in zip(grids, centre, radii)) <= 1.0
        reference = np.zeros(shape, bool)
        for radius in (2.5, 3.0, 4.0, 5.0, 6.0, 7.5, 9.0, 11.0, 15.0, 20.0):
            place_sphere(reference, radius, spacing, rng, liver, np.zeros_like(reference))
        source = (f"SYNTHETIC phantom ({IRCAD_DIR} not found: {missing[0].name} missing): 512 x 512 x {SHAPE_Z}, "
                  f"ellipsoid organ with 10 spheres of 5-40 mm")
    prediction, ops = make_prediction(reference, spacing, rng, liver)
    return dict(reference=reference, prediction=prediction, spacing=spacing, affine=affine, source=source,
                ops=ops, n_ref=lesion_boxes(reference)[1], n_pred=lesion_boxes(prediction)[1],
                build_s=time.perf_counter() - t0)


def write_pair(pair: dict, folder: Path) -> tuple[Path, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in ("reference", "prediction"):
        img = nib.Nifti1Image(pair[name].astype(np.uint8), pair["affine"])
        img.header.set_zooms(pair["spacing"])
        path = folder / f"{name}.nii.gz"
        nib.save(img, path)
        paths.append(path)
    return paths[0], paths[1]


# --- timed sections ----------------------------------------------------------------------------

def time_calls(fn, repeats: int) -> tuple[list[float], object]:
    fn()  # untimed warm-up (imports, caches)
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return times, out


def run_monai(pair: dict, repeats: int) -> dict:
    """DiceMetric + SurfaceDiceMetric on one-hot (B=1, C=2) float32 tensors; time and values."""
    try:
        import torch
        from monai.metrics import DiceMetric, SurfaceDiceMetric
    except ImportError as exc:
        return {"skipped": f"MONAI/torch not importable ({exc})"}
    import monai

    torch.set_num_threads(1)
    t0 = time.perf_counter()

    def onehot(mask):
        return torch.from_numpy(np.stack([~mask, mask])[None].astype(np.float32))

    y_pred, y = onehot(pair["prediction"]), onehot(pair["reference"])
    onehot_s = time.perf_counter() - t0
    dice_metric = DiceMetric(include_background=False, reduction="mean")
    nsd_metric = SurfaceDiceMetric(class_thresholds=[TOLERANCE_MM], include_background=False, reduction="mean")
    spacing = list(pair["spacing"])

    def both():
        dice_metric.reset()
        nsd_metric.reset()
        t_a = time.perf_counter()
        dice_metric(y_pred=y_pred, y=y)
        d = float(dice_metric.aggregate())
        t_b = time.perf_counter()
        nsd_metric(y_pred=y_pred, y=y, spacing=spacing)
        s = float(nsd_metric.aggregate())
        t_c = time.perf_counter()
        return d, s, t_b - t_a, t_c - t_b

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # MONAI's own deprecation warnings
        times, _ = time_calls(both, repeats)
        parts = [both() for _ in range(1)]  # one more call for the Dice / surface Dice split and the values
    d, s, dice_s, nsd_s = parts[0]
    return dict(times=times, dice=d, surface_dice=s, dice_s=dice_s, nsd_s=nsd_s, onehot_s=onehot_s,
                versions=f"monai {monai.__version__}, torch {torch.__version__} ({torch.get_num_threads()} thread)",
                tensor_mb=y.element_size() * y.nelement() / 2**20)


def make_dataset(root: Path, ref: Path, pred: Path, n: int) -> tuple[Path, Path, str]:
    """``n`` case names in ref/ and pred/, hard links to the same two files (copies if links fail)."""
    ref_dir, pred_dir = root / "ref", root / "pred"
    ref_dir.mkdir(parents=True)
    pred_dir.mkdir(parents=True)
    how = "hard links"
    for i in range(n):
        for src, dst in ((ref, ref_dir / f"case_{i:03d}.nii.gz"), (pred, pred_dir / f"case_{i:03d}_pred.nii.gz")):
            try:
                os.link(src, dst)
            except OSError:
                shutil.copyfile(src, dst)
                how = "copies"
    return ref_dir, pred_dir, how


def evaluate_command(ref_dir: Path, pred_dir: Path, out: Path, workers: int, quiet: bool) -> list[str]:
    cmd = [sys.executable, "-m", "tumorsyn", "evaluate", "--pred", str(pred_dir), "--ref", str(ref_dir),
           "--out", str(out), "--workers", str(workers)]
    return cmd + ["--quiet"] if quiet else cmd


def tty_demo(ref: Path, pred: Path, root: Path, n: int) -> tuple[bool, str]:
    """Run the command under ``script`` (a pseudo-terminal) so the progress bar shows; its last state."""
    script = shutil.which("script")
    if script is None:
        return False, "`script` not found: progress bar not demonstrated (it is hidden without a terminal)"
    ref_dir, pred_dir, _ = make_dataset(root / "tty", ref, pred, n)
    cmd = evaluate_command(ref_dir, pred_dir, root / "tty" / "report", DATASET_WORKERS, quiet=False)
    # A pseudo-terminal made by `script` without a parent terminal has 0 columns, and tqdm (dynamic_ncols)
    # then draws nothing: give it a size first, as a real terminal has.
    line = "stty cols 80 rows 24; " + " ".join(_quote(c) for c in cmd)
    try:
        proc = subprocess.run([script, "-q", "-e", "-c", line, "/dev/null"], capture_output=True, text=True,
                              timeout=300, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, f"`script` run failed ({exc})"
    text = proc.stdout.replace("\r\n", "\n")
    frames = [f.strip() for chunk in text.split("\n") for f in chunk.split("\r") if "evaluate:" in f]
    if proc.returncode != 0 or not frames:
        tail = text.strip().splitlines()[-1:] or ["no output"]
        return False, f"no progress bar seen (exit {proc.returncode}): {tail[0]}"
    return True, f"{len(frames)} bar updates on the terminal; last: {_strip_ansi(frames[-1])}"


def _quote(text: str) -> str:
    import shlex

    return shlex.quote(text)


def _strip_ansi(text: str) -> str:
    import re

    return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text)


# --- main --------------------------------------------------------------------------------------

def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description="Per-pair evaluation time of tumorsyn.metrics on a 512x512x150 pair with ~10 lesions, "
                    "MONAI DiceMetric + SurfaceDiceMetric side by side, and `tumorsyn evaluate --workers 2` "
                    "on a dataset of pairs. Prints tables; writes only to a temporary folder.",
        epilog="example: .venv/bin/python benchmarks/bench_evaluate.py --quick")
    parser.add_argument("--repeats", type=int, default=None, help="timed runs per figure (default 7; 5 with --quick)")
    parser.add_argument("--monai-repeats", type=int, default=None, help="timed MONAI runs (default 5; 3 with --quick)")
    parser.add_argument("--pairs", type=int, default=None, help="pairs in the dataset run (default 100; 10 with --quick)")
    parser.add_argument("--quick", action="store_true", help="fewer repeats and 10 pairs: a smoke test")
    parser.add_argument("--no-monai", action="store_true", help="skip the MONAI side-by-side")
    parser.add_argument("--no-tty", action="store_true", help="skip the progress-bar demonstration under `script`")
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic spheres and blobs (default 0)")
    args = parser.parse_args(argv)
    args.repeats = args.repeats or (5 if args.quick else 7)
    args.monai_repeats = args.monai_repeats or (3 if args.quick else 5)
    args.pairs = args.pairs or (10 if args.quick else 100)
    if min(args.repeats, args.monai_repeats, args.pairs) < 1:
        parser.error("--repeats, --monai-repeats and --pairs must be at least 1")

    started = time.perf_counter()
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count()
    say("tumorsyn evaluate: time per pair, MONAI side by side, dataset run (benchmarks/bench_evaluate.py)")
    say(f"  versions: python {platform.python_version()}, numpy {np.__version__}, scipy {scipy.__version__}, "
        f"nibabel {nib.__version__}, tumorsyn {tumorsyn.__version__}")
    say(f"  device:   CPU, {cpu_model()} ({cores} logical cores visible); one thread per process")
    say("  threads:  " + ", ".join(f"{v}={os.environ.get(v)}" for v in _THREAD_VARS) + " (set before numpy import)")
    say(f"  load:     {loadavg()} (1/5/15 min load average at the start; other processes share the cores)")
    say(f"  repeats:  {args.repeats} per figure of ours, {args.monai_repeats} for MONAI (one untimed warm-up each); "
        f"dataset {args.pairs} pairs, --workers {DATASET_WORKERS}{' (quick mode)' if args.quick else ''}; seed {args.seed}")
    say()

    tmp = Path(tempfile.mkdtemp(prefix="tumorsyn-bench-eval-"))
    try:
        return _run(args, tmp, started)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _run(args, tmp: Path, started: float) -> int:
    # Setup (untimed): build the pair and write it.
    pair = build_pair(args.seed)
    ref_path, pred_path = write_pair(pair, tmp / "pair")
    sp = pair["spacing"]
    ref, pred = pair["reference"], pair["prediction"]
    say(f"== the pair: {pair['source']}")
    say(f"   shape {ref.shape}, spacing {sp[0]:.2f} x {sp[1]:.2f} x {sp[2]:.2f} mm; reference {pair['n_ref']} lesions "
        f"({int(ref.sum()):,} vox), prediction {pair['n_pred']} components ({int(pred.sum()):,} vox)")
    say(f"   prediction per lesion: {', '.join(pair['ops'])}; + 2 false-positive blobs (6 and 9 mm)")
    say(f"   files: uint8 NIfTI (.nii.gz) {ref_path.stat().st_size / 2**20:.2f} + {pred_path.stat().st_size / 2**20:.2f} MB "
        f"in a temporary folder; setup {pair['build_s']:.1f} s (untimed)")
    say()

    # 1. Ours: arrays in memory, and from the files.
    paths = CasePaths("case", ref_path, pred_path)
    mem_times, result = time_calls(lambda: evaluate_case(ref, pred, spacing_mm=sp, case_id="case"), args.repeats)
    file_times, file_result = time_calls(lambda: evaluate_paths(paths), args.repeats)
    read_times, data = time_calls(lambda: load_case(paths), args.repeats)
    read_eval_times, _ = time_calls(lambda: evaluate_case(data["reference"], data["prediction"],
                                                          spacing_mm=data["spacing_mm"], case_id="case"), args.repeats)
    sha_times, _ = time_calls(lambda: (sha256_file(ref_path), sha256_file(pred_path)), args.repeats)
    say("== ours: one pair (tumorsyn.metrics), seconds")
    say(f"{'figure':<58}{'n':>3}  {'median s':>9}  {'mean s':>9}  {'max s':>9}")
    for label, times in (("evaluate_case(arrays, spacing_mm)  [in memory]", mem_times),
                         ("evaluate_paths(files)  [read + grid check + SHA-256 + eval]", file_times),
                         ("  of which load_case (read both .nii.gz, check grid)", read_times),
                         ("  of which evaluate_case on the arrays read", read_eval_times),
                         ("  of which sha256_file x 2", sha_times)):
        med, mean, mx = stats(times)
        say(f"{label:<58}{len(times):>3}  {med:9.4f}  {mean:9.4f}  {mx:9.4f}")
    sizes = sorted(les.max_diameter_mm for les in result.reference)
    say(f"   result: {len(result.reference)} lesions (max 3D diameter {', '.join(f'{d:.0f}' for d in sizes)} mm), "
        f"{result.n_detected} detected, {result.n_false_positives} false positives, Dice {result.dice:.4f}, "
        f"surface Dice ({TOLERANCE_MM:g} mm) {result.surface_dice:.4f}")
    same = (file_result.dice == result.dice and file_result.surface_dice == result.surface_dice
            and file_result.n_detected == result.n_detected and file_result.n_false_positives == result.n_false_positives)
    say(f"   from the files: same figures as in memory: {'yes' if same else 'NO'} (arrays are read canonical RAS+)")
    say()

    # 2. MONAI on the same arrays.
    mon = None
    if args.no_monai:
        say("== MONAI: skipped (--no-monai)")
    else:
        mon = run_monai(pair, args.monai_repeats)
        if "skipped" in mon:
            say(f"== MONAI: skipped: {mon['skipped']}")
            mon = None
        else:
            say(f"== MONAI side by side on the same arrays ({mon['versions']})")
            say(f"   DiceMetric(include_background=False) + SurfaceDiceMetric(class_thresholds=[{TOLERANCE_MM:g}], "
                f"spacing={list(round(s, 3) for s in sp)}) on one-hot float32 tensors (B=1, C=2), "
                f"{mon['tensor_mb']:.0f} MB per tensor; one-hot build {mon['onehot_s']:.2f} s (not timed below)")
            say(f"{'':<24}{'n':>3}  {'median s':>9}  {'mean s':>9}  {'max s':>9}  {'Dice':>8}  {'surface Dice':>12}  "
                f"{'lesions / FP':>13}")
            om, oa, ox = stats(mem_times)
            say(f"{'ours, in memory':<24}{len(mem_times):>3}  {om:9.3f}  {oa:9.3f}  {ox:9.3f}  {result.dice:8.4f}  "
                f"{result.surface_dice:12.4f}  {f'{result.n_detected}/{len(result.reference)}, {result.n_false_positives}':>13}")
            mm, ma, mx = stats(mon["times"])
            say(f"{'MONAI Dice + NSD':<24}{len(mon['times']):>3}  {mm:9.3f}  {ma:9.3f}  {mx:9.3f}  {mon['dice']:8.4f}  "
                f"{mon['surface_dice']:12.4f}  {'n/a':>13}")
            say(f"   MONAI split (one call): DiceMetric {mon['dice_s']:.3f} s, SurfaceDiceMetric {mon['nsd_s']:.3f} s; "
                f"MONAI / ours (median) = {mm / om:.1f}x")
            dd, ds = abs(mon["dice"] - result.dice), abs(mon["surface_dice"] - result.surface_dice)
            say(f"   agreement: |Dice difference| {dd:.1e}, |surface Dice difference| {ds:.1e} "
                f"({'agree' if max(dd, ds) <= 1e-6 else 'DIFFER'} within 1e-6)")
            say("   MONAI gives one Dice and one surface Dice per image and class: no lesions, no per-lesion detection, "
                "sizes, size bins or false-positive counts; ours computes those too in the time above")
        say()

    # 3. A dataset through the command, two worker processes.
    ds_root = tmp / "dataset"
    ref_dir, pred_dir, how = make_dataset(ds_root, ref_path, pred_path, args.pairs)
    cmd = evaluate_command(ref_dir, pred_dir, ds_root / "report", DATASET_WORKERS, quiet=True)
    say(f"== dataset: {args.pairs} pairs ({how} to the pair's two files), `python -m tumorsyn evaluate "
        f"--workers {DATASET_WORKERS} --quiet` in a subprocess (plots and checksums on, as by default)")
    load_before = loadavg()
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu_s = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
    ds_ok = proc.returncode == 0
    # The same command on 2 pairs (the fewest that use the worker pool): its fixed cost, to split off.
    small_root = tmp / "dataset-2"
    small_ref, small_pred, _ = make_dataset(small_root, ref_path, pred_path, 2)
    t0 = time.perf_counter()
    small = subprocess.run(evaluate_command(small_ref, small_pred, small_root / "report", DATASET_WORKERS, quiet=True),
                           capture_output=True, text=True)
    wall2 = time.perf_counter() - t0 if small.returncode == 0 else float("nan")
    if not ds_ok:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        say(f"   FAILED (exit {proc.returncode}): {tail[0]}")
    else:
        report = json.loads((ds_root / "report" / "report.json").read_text())
        s = report["summary"]
        n_cases = s.get("n_cases")
        per_pair = wall / args.pairs
        serial = stats(file_times)[0]
        say(f"   wall time {wall:.1f} s for {args.pairs} pairs = {per_pair:.3f} s per pair "
            f"(process start, pairing, {DATASET_WORKERS} spawned workers, report and plots included)")
        say(f"   CPU time of the command and its workers {cpu_s:.1f} s over {wall:.1f} s wall = {cpu_s / wall:.2f} cores "
            f"busy on average (load average before the run: {load_before}; another busy process leaves fewer cores)")
        say(f"   one process, per pair (evaluate_paths median above): {serial:.3f} s -> throughput gain with "
            f"{DATASET_WORKERS} workers {serial / per_pair:.2f}x")
        if args.pairs > 2 and wall2 == wall2:
            marginal = (wall - wall2) / (args.pairs - 2)
            say(f"   same command on 2 pairs: {wall2:.1f} s (fixed cost: interpreter, imports in the spawned workers, "
                f"report); marginal time per extra pair ({args.pairs} vs 2) {marginal:.3f} s -> gain over one "
                f"process {serial / marginal:.2f}x")
        say(f"   report: {n_cases} cases, {s.get('n_lesions')} lesions, "
            f"FP/scan {s['false_positives']['per_scan']:.2f}; files: "
            f"{', '.join(sorted(p.name for p in (ds_root / 'report').iterdir()))}")
    if args.no_tty:
        bar_ok, bar_text = None, "not run (--no-tty)"
    else:
        n_tty = min(args.pairs, 6)
        bar_ok, bar_text = tty_demo(ref_path, pred_path, tmp, n_tty)
        bar_text = f"{n_tty} pairs under `script -q -e -c` (a pseudo-terminal), untimed: {bar_text}"
    say("   progress bar: hidden without a terminal and with --quiet (the timed run above); "
        "shown on stderr in a terminal")
    say(f"   {bar_text}")
    say()

    # Targets.
    say("== targets (issue 4)")
    med_mem, med_file = stats(mem_times)[0], stats(file_times)[0]
    checks = [
        (f"one 512x512x{SHAPE_Z} pair, ~10 lesions, from the files (read + checksums + eval) <= {TARGET_PAIR_S:g} s median",
         f"{med_file:.3f} s", med_file <= TARGET_PAIR_S),
        (f"same pair, arrays in memory <= {TARGET_PAIR_S:g} s median", f"{med_mem:.3f} s", med_mem <= TARGET_PAIR_S),
    ]
    if mon is not None:
        agree = max(abs(mon["dice"] - result.dice), abs(mon["surface_dice"] - result.surface_dice)) <= 1e-6
        checks.append(("Dice and surface Dice agree with MONAI (1e-6)",
                       f"Dice {result.dice:.6f} vs {mon['dice']:.6f}, NSD {result.surface_dice:.6f} vs "
                       f"{mon['surface_dice']:.6f}", agree))
    else:
        checks.append(("Dice and surface Dice agree with MONAI", "not measured", None))
    checks.append((f"dataset of {args.pairs} pairs with {DATASET_WORKERS} worker processes",
                   f"{wall:.1f} s, {wall / args.pairs:.3f} s per pair" if ds_ok else "failed", ds_ok))
    checks.append(("progress bar shown in a terminal", bar_text.split(": ", 1)[-1][:90], bar_ok))
    print_checks(checks)
    say()
    say(f"total wall time {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
