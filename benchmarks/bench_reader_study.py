"""Reader-study benchmarks: building a 100-case study, and the rating server under 10 readers at once.

    python benchmarks/bench_reader_study.py [--cases 100] [--readers 10] [--per-reader 20] [--rounds 3]
                                            [--workers 2] [--no-build] [--no-serve] [--work DIR]

Build (target: <= 60 s for 100 cases). Worst case for I/O: every case comes from its own full-size CT
file. Real cases are 3D-IRCADb patient 1 (512x512x129, 0.57 mm) with one of its tumour masks each;
synthetic cases are tumours that `tumorsyn generate` wrote into patient 7 (512x512x151, 0.78 mm). To
get 50 + 50 distinct files without copying gigabytes, each case gets its own hard link (its own path,
so no scan is read twice); the lesion for each link is chosen so that real and synthetic cases have
the same size-bin counts, as the balancing needs. Default rendering (64 mm cube, 0.5 mm pixels, 2 mm
slices: 33 axial PNGs a case). Setup (generation, links) is not timed; each round builds a fresh study.

Serve (target: median <= 100 ms for a case request). A real uvicorn on 127.0.0.1 serves a study built
from the same sources; 10 reader threads rate at once, each doing what the page does: GET /api/next
(the case request), GET every axial slice, POST the rating, for --per-reader cases. Latencies of each
request kind are printed (median, p95, max). Prints tables; asserts nothing.

The machine is shared: the load average is printed with each round. Decompressing the gzip NIfTI files
is most of the build's CPU time; the CPU seconds (this process and its workers) divided by the
number of free cores tell what the build takes on an idle machine.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from tumorsyn.configfile import real_data_dir  # noqa: E402  (after the path setup)

REAL = real_data_dir()[0] / "3dircadb1"


def _link(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:  # another file system: a copy costs disk but keeps the figure honest
        shutil.copyfile(src, dst)


def setup_sources(work: Path, cases: int) -> tuple[Path, Path]:
    """Write real.csv and a synthetic manifest with ``cases // 2`` distinct files on each side."""
    from reader_study.cases import find_lesions, read_real_sources, read_synthetic_sources
    from tumorsyn.cli.main import main
    from tumorsyn.metrics.sizes import size_bin_index

    p1, p7 = REAL / "3Dircadb1.1", REAL / "3Dircadb1.7"
    if not (p1 / "ct.nii.gz").exists() or not (p7 / "ct.nii.gz").exists():
        sys.exit(f"bench_reader_study: 3D-IRCADb patients 1 and 7 not in {REAL}; see ../shared/data/README.md")
    half = cases // 2
    generated = work / "generated"
    if not (generated / "manifest.jsonl").exists():
        print("setup: generating 6 tumours into 3D-IRCADb patient 7 (not timed) ...", flush=True)
        main(["generate", str(p7 / "ct.nii.gz"), "--labels", str(p7 / "masks" / "liver.nii.gz"), "--organ", "liver",
              "--size-mm", "10-35", "--per-scan", "6", "--seed", "1", "--out", str(generated), "--quiet"])
    # Size bins of what is available on each side.
    probe = work / "probe.csv"
    probe.write_text("ct,mask\n" + "".join(f"{p1 / 'ct.nii.gz'},{m}\n" for m in sorted((p1 / "masks").glob("livertumor*"))))
    real_lesions = [l for l in find_lesions(read_real_sources(probe)) if l.max_diameter_mm <= 56]
    synth_lesions = [l for l in find_lesions(read_synthetic_sources(generated)) if l.max_diameter_mm <= 56]
    bins = lambda ls: {b: [l for l in ls if size_bin_index(l.max_diameter_mm) == b] for b in range(3)}  # noqa: E731
    real_bins, synth_bins = bins(real_lesions), bins(synth_lesions)
    shared = [b for b in range(3) if real_bins[b] and synth_bins[b]]
    if not shared:
        sys.exit("bench_reader_study: no size bin has both real and synthetic lesions")
    plan = [shared[i % len(shared)] for i in range(half)]  # as many of each side per bin
    links = work / "links"
    shutil.rmtree(links, ignore_errors=True)
    (links / "real").mkdir(parents=True)
    (links / "synthetic").mkdir(parents=True)
    rows, records = [], []
    for i, b in enumerate(plan):
        r = real_bins[b][i % len(real_bins[b])]
        ct = links / "real" / f"case{i:03d}_ct.nii.gz"
        _link(r.source.ct, ct)
        rows.append(f"{ct},{r.source.mask}\n")  # masks are read once per row anyway
        s = synth_bins[b][i % len(synth_bins[b])]
        name = f"syn{i:03d}"
        _link(s.source.ct, links / "synthetic" / f"{name}_ct.nii.gz")
        _link(s.source.mask, links / "synthetic" / f"{name}_tumor.nii.gz")
        records.append(json.dumps({"output_id": name, "organ": "liver",
                                   "outputs": {"ct": f"{name}_ct.nii.gz", "tumor": f"{name}_tumor.nii.gz"}}))
    (links / "real.csv").write_text("ct,mask\n" + "".join(rows))
    (links / "synthetic" / "manifest.jsonl").write_text("\n".join(records) + "\n")
    return links / "real.csv", links / "synthetic"


def bench_build(real: Path, synthetic: Path, work: Path, rounds: int, workers: int) -> Path:
    from reader_study.build import build_study

    import resource

    def cpu_seconds() -> float:
        # This process and its finished worker processes: what the build costs on idle cores.
        own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime

    times, cpus, out = [], [], None
    for k in range(rounds):
        out = work / f"study{k}"
        shutil.rmtree(out, ignore_errors=True)
        load = os.getloadavg()[0]
        start, cpu = time.perf_counter(), cpu_seconds()
        build_study(real, synthetic, out, seed=k, workers=workers, quiet=True)
        times.append(time.perf_counter() - start)
        cpus.append(cpu_seconds() - cpu)
        print(f"  round {k + 1}: {times[-1]:.1f} s wall, {cpus[-1]:.1f} CPU s (load average before {load:.2f})",
              flush=True)
    study = json.loads((out / "study.json").read_text())
    pngs = sum(1 for _ in (out / "items").rglob("*.png"))
    print(f"\nbuild: {len(study['items'])} cases, {pngs} PNGs, {workers} worker process(es), "
          f"{sum(p.stat().st_size for p in (out / 'items').rglob('*.png')) / 1e6:.1f} MB")
    print("| figure | median s | mean s | max s | target |")
    print("|---|---|---|---|---|")
    print(f"| build {len(study['items'])}-case study, wall | {statistics.median(times):.1f} | "
          f"{statistics.mean(times):.1f} | {max(times):.1f} | <= 60 s |")
    print(f"| same, CPU seconds (all processes) | {statistics.median(cpus):.1f} | {statistics.mean(cpus):.1f} | "
          f"{max(cpus):.1f} | |")
    return out


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def bench_serve(study: Path, readers: int, per_reader: int) -> None:
    import httpx

    from reader_study.store import add_reader

    stamp = time.strftime("%H%M%S")
    tokens = [add_reader(study, f"bench-{stamp}-{i}") for i in range(readers)]
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    server = subprocess.Popen([sys.executable, "-m", "tumorsyn.cli.main", "reader-study", "serve", str(study),
                               "--port", str(port)], env=env, cwd=REPO, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                httpx.get(f"{url}/api/me", timeout=1.0)
                break
            except httpx.TransportError:
                time.sleep(0.1)
        timings: dict[str, list[float]] = {"case (GET /api/next)": [], "slice PNG": [], "rating (POST)": []}
        lock = threading.Lock()
        barrier = threading.Barrier(readers)

        def reader(token: str) -> None:
            local = {k: [] for k in timings}
            with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=30) as client:
                barrier.wait()  # everybody starts together
                for _ in range(per_reader):
                    t = time.perf_counter()
                    state = client.get("/api/next").json()
                    local["case (GET /api/next)"].append(time.perf_counter() - t)
                    if state["done"]:
                        break
                    item = state["item"]
                    for k in range(item["views"]["axial"]):
                        t = time.perf_counter()
                        client.get(f"/api/image/{item['item_id']}/a/axial/{k}").raise_for_status()
                        local["slice PNG"].append(time.perf_counter() - t)
                    t = time.perf_counter()
                    client.post("/api/ratings", json={"item_id": item["item_id"], "answer": "real", "confidence": 3,
                                                      "seconds": 1.0}).raise_for_status()
                    local["rating (POST)"].append(time.perf_counter() - t)
            with lock:
                for k, v in local.items():
                    timings[k].extend(v)

        threads = [threading.Thread(target=reader, args=(t,)) for t in tokens]
        start = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        wall = time.perf_counter() - start
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=10)
    total = sum(len(v) for v in timings.values())
    print(f"\nserve: {readers} readers at once, {per_reader} cases each, {total} requests in {wall:.1f} s "
          f"({total / wall:.0f} requests/s)")
    print("| request | n | median ms | p95 ms | max ms | target |")
    print("|---|---|---|---|---|---|")
    for name, values in timings.items():
        values = sorted(values)
        p95 = values[min(len(values) - 1, int(0.95 * len(values)))]
        target = "<= 100 ms median" if name.startswith("case") else ""
        print(f"| {name} | {len(values)} | {1000 * statistics.median(values):.1f} | {1000 * p95:.1f} | "
              f"{1000 * values[-1]:.1f} | {target} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=100, help="cases in the study (half real, half synthetic)")
    parser.add_argument("--rounds", type=int, default=3, help="builds to time (default 3)")
    parser.add_argument("--readers", type=int, default=10, help="readers rating at once (default 10)")
    parser.add_argument("--per-reader", type=int, default=20, help="cases each reader rates (default 20)")
    parser.add_argument("--workers", type=int, default=2, help="build worker processes (default 2: this machine's cores)")
    parser.add_argument("--no-build", action="store_true", help="skip the build timing (one untimed build)")
    parser.add_argument("--no-serve", action="store_true", help="skip the server load test")
    parser.add_argument("--work", help="work folder (default: a temporary one, removed at the end)")
    args = parser.parse_args()

    import numpy
    import starlette
    import uvicorn

    print(f"python {platform.python_version()}, numpy {numpy.__version__}, starlette {starlette.__version__}, "
          f"uvicorn {uvicorn.__version__}; {os.cpu_count()} CPUs; load average {os.getloadavg()[0]:.2f}")
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="bench_reader_study_"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        real, synthetic = setup_sources(work, args.cases)
        if args.no_build:
            from reader_study.build import build_study

            shutil.rmtree(work / "study_serve", ignore_errors=True)
            study = build_study(real, synthetic, work / "study_serve", seed=0, workers=args.workers)
        else:
            study = bench_build(real, synthetic, work, args.rounds, args.workers)
        if not args.no_serve:
            bench_serve(study, args.readers, args.per_reader)
        print(f"\nload average after: {os.getloadavg()[0]:.2f}")
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
