"""Speed and memory of the rules generator, side by side with a SyntheticTumors-style baseline.

A plain script, not a test: untimed setup, then printed tables. Run from the repository root::

    .venv/bin/python benchmarks/bench_rules.py              # full run, about 4-5 min on 2 cores
    .venv/bin/python benchmarks/bench_rules.py --quick      # smoke test (baseline: one 20 mm call)
    .venv/bin/python benchmarks/bench_rules.py --quick --no-baseline   # a few seconds

What is measured (``benchmarks/README.md`` explains every figure):

* per tumour, for 10, 20 and 40 mm tumours (``size_mm = (0.9 s, 1.1 s)``): the time of
  :func:`tumorsyn.sample_spec` (with a prebuilt :class:`~tumorsyn.placement.PlacementContext`)
  and of :func:`tumorsyn.apply_specs`, on 3D-IRCADb patient 7 and on the bundled example;
  the context build is timed once per scan as a per-scan cost;
* the clean-room SyntheticTumors baseline (``baseline_synthetictumors.py``) on the same liver,
  in a fresh process, with its texture bank timed apart (measured here and published);
* the peak resident memory above the loaded scan, in fresh processes, for ours and the baseline;
* the 20 mm per-tumour time on the IRCAD scan and on a scan twice its size.

Everything runs on one CPU thread: the thread variables below are set before NumPy is imported.
"""
import os

_THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
for _var in _THREAD_VARS:  # before numpy/scipy load their thread pools
    os.environ[_var] = "1"

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import tracemalloc  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import scipy  # noqa: E402

import tumorsyn  # noqa: E402
from tumorsyn.errors import TumorsynError  # noqa: E402
from tumorsyn.io import load_labels, load_scan, organ_mask_from_labels  # noqa: E402
from tumorsyn.io.labels import label_values  # noqa: E402
from tumorsyn.io.scan import check_same_grid  # noqa: E402
from tumorsyn.lesion_size import equivalent_diameter_mm  # noqa: E402
from tumorsyn.placement import PlacementContext  # noqa: E402
from tumorsyn.apply import apply_specs  # noqa: E402
from tumorsyn.sampling import sample_spec  # noqa: E402

from benchkit import MB, PeakRSS, cpu_model, print_checks, say, stats  # noqa: E402  (this folder)

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
IRCAD_DIR = REPO.parent / "shared" / "data" / "real" / "3dircadb1" / "3Dircadb1.7"
EXAMPLE_DIR = REPO / "tumorsyn" / "data"

SIZES_MM = (10, 20, 40)
#: Nominal diameter -> SyntheticTumors size class (ANCHORS.md: tiny 6-10, small 12-20, medium 24-40 mm).
BASELINE_CLASS = {10: "tiny", 20: "small", 40: "medium"}
#: Published cost of the SyntheticTumors texture bank (ANCHORS.md), per worker process.
PUBLISHED_BANK = "8-26 s per texture, 3.2 GB for ten textures (per worker process)"

# The targets.
TARGET_MEDIAN_20MM_S = 0.050
TARGET_SPEEDUP = 10.0
TARGET_MEMORY_MB = 300.0
FLAT_RATIO = 1.25  # 2x-scan / 1x-scan per-tumour median at or below this counts as flat

_JSON_MARK = "@@BENCH_JSON@@ "


# --- setup (untimed) ---------------------------------------------------------------------------

@dataclass
class Case:
    """One scan, its liver mask and where it came from."""

    key: str
    title: str
    hu: np.ndarray
    organ: np.ndarray
    spacing_mm: tuple
    load_s: float


def load_ircad() -> Case:
    t0 = time.perf_counter()
    ct = load_scan(IRCAD_DIR / "ct.nii.gz")
    labels = load_labels(IRCAD_DIR / "masks" / "liver.nii.gz")
    check_same_grid(ct, labels)
    organ = organ_mask_from_labels(label_values(labels), "liver", preset="binary")
    hu = ct.values()
    return Case("ircad-p7", "3D-IRCADb 1.7", hu, organ, ct.spacing_mm, time.perf_counter() - t0)


def load_example() -> Case:
    t0 = time.perf_counter()
    ct = load_scan(EXAMPLE_DIR / "example_ct.nii.gz")
    labels = load_labels(EXAMPLE_DIR / "example_labels.nii.gz")
    check_same_grid(ct, labels)
    organ = organ_mask_from_labels(label_values(labels), "liver", preset="totalsegmentator")  # liver = 5
    hu = ct.values()
    return Case("example", "bundled example", hu, organ, ct.spacing_mm, time.perf_counter() - t0)


def ircad_missing_reason() -> str | None:
    for path in (IRCAD_DIR / "ct.nii.gz", IRCAD_DIR / "masks" / "liver.nii.gz"):
        if not path.exists():
            return f"{path} not found (3D-IRCADb is not in ../shared/data; see its README)"
    return None


def primary_case() -> Case:
    """The scan the baseline and the memory figures use: IRCAD patient 7, else the example."""
    return load_example() if ircad_missing_reason() else load_ircad()


def doubled(case: Case) -> Case:
    """The scan twice as large: a z-mirrored copy appended along Z; the liver mask gets zeros there.

    The liver (and so the placement context and every drawn tumour) stays the same: only the
    scan size changes, so any change in per-tumour time is work that scales with the scan.
    """
    hu = np.concatenate([case.hu, case.hu[:, :, ::-1]], axis=2)
    organ = np.concatenate([case.organ, np.zeros_like(case.organ)], axis=2)
    return Case(case.key + "-2x", case.title + " doubled", hu, organ, case.spacing_mm, 0.0)


# --- measurement helpers -----------------------------------------------------------------------

def run_ours(case: Case, context: PlacementContext, size: float, n: int, seed: int) -> dict:
    """Time ``n`` tumours of nominal diameter ``size`` mm: sample_spec and apply_specs apart."""
    rng = np.random.default_rng(seed)
    sample_s, apply_s, box, changed, diam, centres, failures = [], [], [], [], [], [], []
    for _ in range(n):
        t0 = time.perf_counter()
        try:
            spec = sample_spec(case.organ, case.spacing_mm, organ="liver", size_mm=(0.9 * size, 1.1 * size),
                               ct_hu=case.hu, rng=rng, context=context)
        except TumorsynError as exc:
            failures.append(str(exc))
            continue
        t1 = time.perf_counter()
        result = apply_specs(case.hu, case.organ, case.spacing_mm, spec).tumors[0]
        t2 = time.perf_counter()
        sample_s.append(t1 - t0)
        apply_s.append(t2 - t1)
        box.append(int(result.ct_box.size))
        changed.append(int(np.count_nonzero(result.changed_box)))
        diam.append(equivalent_diameter_mm(result.label_box, case.spacing_mm))
        centres.append(tuple(round(c, 6) for c in spec.center_vox))
    total = [a + b for a, b in zip(sample_s, apply_s)]
    return dict(size=size, n=len(total), sample=sample_s, apply=apply_s, total=total, box=box, changed=changed,
                diam=diam, centres=centres, failures=failures)


def build_context(case: Case) -> tuple[PlacementContext, float]:
    t0 = time.perf_counter()
    context = PlacementContext(case.organ, case.spacing_mm, "liver", ct_hu=case.hu)
    return context, time.perf_counter() - t0


def warm_up(case: Case, context: PlacementContext) -> None:
    """One untimed tumour: first-call costs (lazy imports, caches) stay out of the tables."""
    run_ours(case, context, 10.0, 1, seed=12345)


# --- printing ----------------------------------------------------------------------------------

def fmt_int(value) -> str:
    return f"{int(round(value)):,}".replace(",", " ")


def describe(case: Case) -> str:
    sp = case.spacing_mm
    ml = float(np.count_nonzero(case.organ)) * float(np.prod(sp)) / 1000.0
    return (f"{case.title}: shape {tuple(case.hu.shape)}, spacing {sp[0]:.2f} x {sp[1]:.2f} x {sp[2]:.2f} mm, "
            f"liver {fmt_int(np.count_nonzero(case.organ))} vox ({ml:.0f} ml)")


HEAD = (f"{'size':>6}  {'stage':<11}{'n':>3}  {'median s':>9}  {'mean s':>9}  {'max s':>9}  "
        f"{'box vox':>9}  {'changed vox':>11}  {'eq. diam mm, median [min-max]':<30}")


def print_ours_table(results: list[dict]) -> None:
    say(HEAD)
    for r in results:
        label = f"{r['size']:g} mm"
        for stage, key in (("sample", "sample"), ("apply", "apply"), ("per tumour", "total")):
            med, mean, mx = stats(r[key])
            extra = ""
            if key == "total" and r["n"]:
                d = r["diam"]
                extra = (f"  {fmt_int(statistics.median(r['box'])):>9}  {fmt_int(statistics.median(r['changed'])):>11}  "
                         f"{statistics.median(d):.1f} [{min(d):.1f}-{max(d):.1f}]")
            say(f"{label:>6}  {stage:<11}{r['n']:>3}  {med:9.4f}  {mean:9.4f}  {mx:9.4f}{extra}")
            label = ""
        if r["failures"]:
            say(f"{'':>6}  ! {len(r['failures'])} placement(s) failed: {r['failures'][0]}")


# --- fresh-process workers (memory, baseline) --------------------------------------------------

def worker_memory_ours(n: int, seed: int) -> dict:
    """Peak memory above the loaded scan: context build, then n tumours of each size."""
    case = primary_case()
    gauge = PeakRSS()
    rss_scan = gauge.current()
    tracemalloc.start()
    gauge.reset()
    context, _ = build_context(case)
    out = dict(case=case.key, method=gauge.method, n=n, scan_mb=(case.hu.nbytes + case.organ.nbytes) / MB,
               rss_scan_mb=rss_scan / MB, context_peak_mb=(gauge.peak() - rss_scan) / MB,
               context_resident_mb=(gauge.current() - rss_scan) / MB,
               context_traced_peak_mb=tracemalloc.get_traced_memory()[1] / MB, sizes={})
    for size in SIZES_MM:
        gauge.reset()
        tracemalloc.reset_peak()
        run_ours(case, context, float(size), n, seed + size)
        out["sizes"][str(size)] = dict(rss_peak_mb=(gauge.peak() - rss_scan) / MB,
                                       traced_peak_mb=tracemalloc.get_traced_memory()[1] / MB)
    tracemalloc.stop()
    return out


def worker_baseline(n: int, seed: int, sizes: list[int]) -> dict:
    """The SyntheticTumors-style baseline: bank cost, n calls per size class, peak memory."""
    sys.path.insert(0, str(HERE))
    import baseline_synthetictumors as baseline

    case = primary_case()
    gauge = PeakRSS()
    rss_scan = gauge.current()
    iso = baseline.resampled_shape(case.hu.shape, case.spacing_mm)
    gauge.reset()
    t0 = time.perf_counter()
    bank = baseline.build_texture_bank(iso, 1, rng=seed)
    bank_s = time.perf_counter() - t0
    out = dict(case=case.key, method=gauge.method, iso_shape=list(iso), native_vox=int(case.hu.size),
               bank_s_per_texture=bank_s, bank_mb_per_texture=sum(t.nbytes for t in bank) / MB,
               bank_peak_mb=(gauge.peak() - rss_scan) / MB, sizes={})
    rng = np.random.default_rng(seed + 1)
    baseline.insert_tumor(case.hu, case.organ, case.spacing_mm, "tiny", bank, rng=999)  # untimed warm-up
    for size in sizes:
        gauge.reset()
        times, diam = [], []
        for _ in range(n):
            t0 = time.perf_counter()
            _, mask = baseline.insert_tumor(case.hu, case.organ, case.spacing_mm, BASELINE_CLASS[size], bank, rng)
            times.append(time.perf_counter() - t0)
            diam.append(equivalent_diameter_mm(mask, case.spacing_mm))
            del mask, _
        out["sizes"][str(size)] = dict(times=times, diam=diam, rss_peak_mb=(gauge.peak() - rss_scan) / MB)
    return out


def run_worker(args: list[str], timeout_s: float) -> dict | str:
    """Run this script as a fresh process in worker mode; its JSON, or a reason it failed."""
    cmd = [sys.executable, str(Path(__file__).resolve()), *args]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, env=os.environ.copy())
    except subprocess.TimeoutExpired:
        return f"worker {' '.join(args)} ran past {timeout_s:.0f} s"
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(_JSON_MARK):
            return json.loads(line[len(_JSON_MARK):])
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
    return f"worker {' '.join(args)} failed (exit {proc.returncode}): {tail[0]}"


# --- main --------------------------------------------------------------------------------------

def print_header(args) -> None:
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count()
    say("tumorsyn rules generator: per-tumour time and memory (benchmarks/bench_rules.py)")
    say(f"  versions: python {platform.python_version()}, numpy {np.__version__}, scipy {scipy.__version__}, "
        f"tumorsyn {tumorsyn.__version__}")
    say(f"  device:   CPU, {cpu_model()} ({cores} logical cores visible); one thread used")
    say("  threads:  " + ", ".join(f"{v}={os.environ.get(v)}" for v in _THREAD_VARS) + " (set before numpy import)")
    say(f"  repeats:  ours {args.repeats} per size, baseline {args.baseline_repeats} per size"
        f"{' (quick mode)' if args.quick else ''}; seed {args.seed}")
    say("  sizes:    nominal 10/20/40 mm, drawn as size_mm=(0.9 s, 1.1 s) equivalent-sphere diameter")
    say()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description="Per-tumour time (s) and memory (MB) of the rules generator vs a SyntheticTumors-style "
                    "baseline, on one CPU thread. Prints tables; writes nothing.",
        epilog="example: .venv/bin/python benchmarks/bench_rules.py --quick --no-baseline")
    parser.add_argument("--repeats", type=int, default=None,
                        help="tumours timed per size for ours (default 15; 3 with --quick)")
    parser.add_argument("--baseline-repeats", type=int, default=None,
                        help="baseline calls per size (default 5; with --quick 1, 20 mm only); ~10 s each on IRCAD")
    parser.add_argument("--quick", action="store_true", help="fewer repeats: a smoke test")
    parser.add_argument("--no-baseline", action="store_true", help="skip the SyntheticTumors-style baseline")
    parser.add_argument("--seed", type=int, default=0, help="seed of every random draw (default 0)")
    parser.add_argument("--_worker", choices=("memory-ours", "baseline"), help=argparse.SUPPRESS)
    parser.add_argument("--_sizes", default="10,20,40", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.repeats is None:
        args.repeats = 3 if args.quick else 15
    if args.baseline_repeats is None:
        args.baseline_repeats = 1 if args.quick else 5
    if args.repeats < 1 or args.baseline_repeats < 1:
        parser.error("--repeats and --baseline-repeats must be at least 1")

    if args._worker == "memory-ours":
        print(_JSON_MARK + json.dumps(worker_memory_ours(args.repeats, args.seed)), flush=True)
        return 0
    if args._worker == "baseline":
        sizes = [int(s) for s in args._sizes.split(",")]
        print(_JSON_MARK + json.dumps(worker_baseline(args.baseline_repeats, args.seed, sizes)), flush=True)
        return 0

    started = time.perf_counter()
    print_header(args)

    # Untimed setup: load the scans.
    cases = []
    missing = ircad_missing_reason()
    if missing:
        say(f"[ircad-p7] skipped: {missing}")
    else:
        cases.append(load_ircad())
    cases.append(load_example())

    # 1. Ours, per tumour, on each scan.
    ours: dict[str, dict] = {}
    contexts = {}
    for case in cases:
        say(f"== ours (rules) on [{case.key}] {describe(case)}")
        context, context_s = build_context(case)
        contexts[case.key] = context
        warm_up(case, context)
        say(f"   setup (untimed): load {case.load_s:.2f} s;  per-scan cost: PlacementContext build "
            f"{context_s:.3f} s (n=1, once per scan, not in the per-tumour figures)")
        results = [run_ours(case, context, float(s), args.repeats, args.seed + s) for s in SIZES_MM]
        print_ours_table(results)
        ours[case.key] = dict(context_s=context_s, results={int(r["size"]): r for r in results})
        say()

    # 2. Scan doubling: same liver, same draws, twice the voxels; interleaved to cancel drift.
    primary = cases[0]
    say(f"== scan doubling on [{primary.key}]: 20 mm tumours, scan 1x vs 2x (z-mirrored copy appended, "
        f"liver unchanged, same seed)")
    big = doubled(primary)
    big_context, big_context_s = build_context(big)
    warm_up(big, big_context)
    one_x, two_x = [], []
    rng_seed = args.seed + 1000
    rng1, rng2 = np.random.default_rng(rng_seed), np.random.default_rng(rng_seed)
    for _ in range(args.repeats):
        one_x.append(run_ours(primary, contexts[primary.key], 20.0, 1, int(rng1.integers(2**31))))
        two_x.append(run_ours(big, big_context, 20.0, 1, int(rng2.integers(2**31))))

    def merged(runs):
        out = {k: [] for k in ("sample", "apply", "total", "box", "changed", "diam", "centres", "failures")}
        for r in runs:
            for k in out:
                out[k] += r[k]
        return out

    one_x, two_x = merged(one_x), merged(two_x)
    same = one_x["centres"] == two_x["centres"] and one_x["box"] == two_x["box"]
    say(f"{'scan':>6}  {'shape':<17}{'voxels':>13}  {'context s':>9}  {'n':>3}  {'sample med':>10}  "
        f"{'apply med':>10}  {'per tumour med / mean / max s':<30}")
    for name, c, ctx_s, r in (("1x", primary, ours[primary.key]["context_s"], one_x),
                              ("2x", big, big_context_s, two_x)):
        med, mean, mx = stats(r["total"])
        say(f"{name:>6}  {str(tuple(c.hu.shape)):<17}{fmt_int(c.hu.size):>13}  {ctx_s:9.3f}  {len(r['total']):>3}  "
            f"{stats(r['sample'])[0]:10.4f}  {stats(r['apply'])[0]:10.4f}  {med:.4f} / {mean:.4f} / {mx:.4f}")
    flat_ratio = stats(two_x["total"])[0] / stats(one_x["total"])[0] if one_x["total"] and two_x["total"] else float("nan")
    say(f"   2x/1x per-tumour median: {flat_ratio:.2f} (flat when <= {FLAT_RATIO}); identical tumours drawn on both: "
        f"{'yes' if same else 'no'}")
    del big, big_context
    say()

    # 3. Memory of ours, fresh process.
    say(f"== memory, ours: fresh process on [{primary.key}], peak RSS above the loaded scan "
        f"(context build, then {min(args.repeats, 5)} tumours per size)")
    mem = run_worker(["--_worker", "memory-ours", "--repeats", str(min(args.repeats, 5)), "--seed", str(args.seed)],
                     timeout_s=240)
    mem_peak = float("nan")
    if isinstance(mem, str):
        say(f"   skipped: {mem}")
    else:
        say(f"   method: {mem['method']}; traced = tracemalloc peak (numpy + Python allocations)")
        say(f"   scan in memory: HU float32 + mask = {mem['scan_mb']:.0f} MB; process RSS with the scan loaded "
            f"{mem['rss_scan_mb']:.0f} MB")
        say(f"{'phase':>18}  {'peak RSS above scan MB':>22}  {'traced peak MB':>14}")
        say(f"{'context build':>18}  {mem['context_peak_mb']:22.1f}  {mem['context_traced_peak_mb']:14.1f}"
            f"   (context stays resident: {mem['context_resident_mb']:.1f} MB)")
        for size, m in mem["sizes"].items():
            say(f"{size + ' mm tumours':>18}  {m['rss_peak_mb']:22.1f}  {m['traced_peak_mb']:14.1f}")
        # RSS can miss a later phase's peak (freed heap pages get reused); tracemalloc cannot: take the larger.
        mem_peak = max([mem["context_peak_mb"], mem["context_traced_peak_mb"]]
                       + [max(m["rss_peak_mb"], m["traced_peak_mb"]) for m in mem["sizes"].values()])
        say(f"   worst peak above the scan (larger of the two columns): {mem_peak:.1f} MB "
            f"(target < {TARGET_MEMORY_MB:g} MB)")
    say()

    # 4. The baseline, fresh process, same liver.
    base = None
    if args.no_baseline:
        say("== baseline: skipped (--no-baseline)")
    else:
        sizes = [20] if args.quick else list(SIZES_MM)
        say(f"== baseline (clean-room SyntheticTumors recipe: whole-scan 1 mm resampling, ellipsoid + three 2D "
            f"elastic deformations, texture bank) on [{primary.key}], fresh process")
        base = run_worker(["--_worker", "baseline", "--baseline-repeats", str(args.baseline_repeats),
                           "--seed", str(args.seed), "--_sizes", ",".join(map(str, sizes))], timeout_s=540)
        if isinstance(base, str):
            say(f"   skipped: {base}")
            base = None
        else:
            iso = tuple(base["iso_shape"])
            iso_vox = int(np.prod(iso))
            say(f"   every call resamples the whole scan: 1 mm grid {iso} = {fmt_int(iso_vox)} vox, native "
                f"{fmt_int(base['native_vox'])} vox; memory method: {base['method']}")
            say(f"{'size':>6}  {'class':<7}{'n':>3}  {'median s':>9}  {'mean s':>9}  {'max s':>9}  "
                f"{'vox touched':>11}  {'peak RSS above scan MB':>22}  {'eq. diam mm, median [min-max]':<30}")
            for size, b in base["sizes"].items():
                med, mean, mx = stats(b["times"])
                d = b["diam"]
                say(f"{size + ' mm':>6}  {BASELINE_CLASS[int(size)]:<7}{len(b['times']):>3}  {med:9.3f}  {mean:9.3f}  "
                    f"{mx:9.3f}  {fmt_int(iso_vox):>11}  {b['rss_peak_mb']:22.0f}  "
                    f"{statistics.median(d):.1f} [{min(d):.1f}-{max(d):.1f}]")
            say("   texture bank (built once per worker, not in the per-call figures):")
            say(f"     measured here: {base['bank_s_per_texture']:.2f} s and {base['bank_mb_per_texture']:.0f} MB "
                f"(float32) per texture at {iso}; ten textures -> ~{10 * base['bank_s_per_texture']:.0f} s, "
                f"{10 * base['bank_mb_per_texture'] / 1024:.2f} GB; build peak {base['bank_peak_mb']:.0f} MB above scan")
            say(f"     published (SyntheticTumors, ANCHORS.md, not measured here): {PUBLISHED_BANK}")
    say()

    # 5. Side by side.
    primary_ours = ours[primary.key]["results"]
    ratios = {}
    if base:
        say(f"== side by side on [{primary.key}]: median seconds per tumour (ours = sample_spec + apply_specs)")
        say(f"{'size':>6}  {'ours s':>8}  {'baseline s':>10}  {'baseline/ours':>13}  "
            f"{'ours + context s':>16}  {'baseline/(ours + context)':>25}")
        ctx_s = ours[primary.key]["context_s"]
        for size, b in base["sizes"].items():
            o = stats(primary_ours[int(size)]["total"])[0]
            bm = stats(b["times"])[0]
            ratios[int(size)] = bm / o
            say(f"{size + ' mm':>6}  {o:8.4f}  {bm:10.3f}  {bm / o:12.0f}x  {o + ctx_s:16.3f}  {bm / (o + ctx_s):24.1f}x")
        say("   'ours + context' = one tumour per scan, paying the PlacementContext build each time")
        say()

    # 6. Targets.
    say("== targets (from the issue)")
    med20 = stats(primary_ours[20]["total"])[0]
    checks = [(f"2 cm tumour median on one core <= {TARGET_MEDIAN_20MM_S * 1000:.0f} ms [{primary.key}]",
               f"{med20 * 1000:.1f} ms", med20 <= TARGET_MEDIAN_20MM_S)]
    for case in cases[1:]:
        m = stats(ours[case.key]["results"][20]["total"])[0]
        checks.append((f"2 cm tumour median on one core <= {TARGET_MEDIAN_20MM_S * 1000:.0f} ms [{case.key}]",
                       f"{m * 1000:.1f} ms", m <= TARGET_MEDIAN_20MM_S))
    if ratios:
        worst = min(ratios.values())
        checks.append((f">= {TARGET_SPEEDUP:g}x faster than the baseline per tumour (worst size)",
                       ", ".join(f"{s} mm {r:.0f}x" for s, r in ratios.items()), worst >= TARGET_SPEEDUP))
    else:
        checks.append((f">= {TARGET_SPEEDUP:g}x faster than the baseline per tumour", "not measured", None))
    checks.append((f"memory per worker < {TARGET_MEMORY_MB:g} MB above the scan", f"{mem_peak:.1f} MB",
                   None if mem_peak != mem_peak else mem_peak < TARGET_MEMORY_MB))
    checks.append((f"per-tumour time flat when the scan doubles (2x/1x <= {FLAT_RATIO})", f"{flat_ratio:.2f}",
                   None if flat_ratio != flat_ratio else flat_ratio <= FLAT_RATIO))
    print_checks(checks, fail_word="MISS")
    say()
    say(f"total wall time {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
