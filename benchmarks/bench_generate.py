"""Wall time of `tumorsyn generate` on the bundled example, imports included (a fresh process each run).

    python benchmarks/bench_generate.py [--repeats 5]

Target (issue 3): < 5 s on a 2-core machine. Also reports whether torch was imported (it must not be
on the rules path).
"""
from __future__ import annotations

import argparse
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    command = [sys.executable, "-m", "tumorsyn", "generate", "--example", "--organ", "liver",
               "--size-mm", "10-20", "--preview", "--label-map", "--quiet"]
    times = []
    for i in range(args.repeats):
        with tempfile.TemporaryDirectory() as tmp:
            started = time.perf_counter()
            subprocess.run([*command, "--seed", str(i), "--out", str(Path(tmp) / "out")], check=True)
            times.append(time.perf_counter() - started)
    probe = ("import sys, runpy; sys.argv=['tumorsyn','generate','--example','--organ','liver','--quiet','--out',sys.argv[1]];"
             "from tumorsyn.cli.main import main; main(sys.argv[1:]); print('torch' in sys.modules)")
    with tempfile.TemporaryDirectory() as tmp:
        torch_loaded = subprocess.run([sys.executable, "-c", probe.replace("sys.argv[1]", repr(str(Path(tmp) / 'o')))],
                                      check=True, capture_output=True, text=True).stdout.strip()
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else platform.processor()
    print(f"tumorsyn generate --example (liver, 10-20 mm, preview + label map), {args.repeats} fresh processes")
    print(f"machine: {cpu}, python {platform.python_version()}")
    print(f"wall s: median {statistics.median(times):.2f}  mean {statistics.mean(times):.2f}  max {max(times):.2f}  (target < 5 s)")
    print(f"torch imported on the rules path: {torch_loaded}")


if __name__ == "__main__":
    main()
