"""Small helpers the benchmark scripts share: printing, summary statistics, machine facts, memory.

Imported by the scripts in this folder as ``import benchkit`` (a script's own folder is on
``sys.path`` when it runs).
"""
from __future__ import annotations

import platform
import resource
import statistics

__all__ = ["MB", "PeakRSS", "cpu_model", "loadavg", "print_checks", "say", "stats"]

MB = 2.0**20


def say(text: str = "") -> None:
    """Print one line now (benchmarks are watched while they run)."""
    print(text.rstrip(), flush=True)


def print_checks(checks, *, fail_word: str = "FAIL") -> None:
    """Print ``(text, value, ok)`` target checks as PASS / ``fail_word`` / n/a (``ok`` None: not measured)."""
    for text, value, ok in checks:
        verdict = "n/a " if ok is None else ("PASS" if ok else fail_word)
        say(f"   {verdict}  {text}: {value}")


def stats(values) -> tuple[float, float, float]:
    """``(median, mean, max)`` of ``values``; NaNs when empty."""
    values = list(values)
    if not values:
        return (float("nan"),) * 3
    return statistics.median(values), statistics.fmean(values), max(values)


def loadavg() -> str:
    """The 1/5/15-minute load averages (other work on the machine skews timings)."""
    try:
        with open("/proc/loadavg") as fh:
            return " ".join(fh.read().split()[:3])
    except OSError:
        return "n/a"


def cpu_model() -> str:
    """The CPU's model name."""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _status_kb(field: str) -> int | None:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


class PeakRSS:
    """Peak resident memory since :meth:`reset`, in bytes (Linux VmHWM, reset via clear_refs).

    Where ``/proc/self/clear_refs`` cannot be written, falls back to ``ru_maxrss`` (peak since the
    process started), which can only over-report a later phase's peak, never under-report it.
    """

    def __init__(self) -> None:
        self.method = "VmHWM reset through /proc/self/clear_refs"
        try:
            self._clear()
        except OSError:
            self.method = "ru_maxrss since process start (clear_refs unavailable)"

    @staticmethod
    def _clear() -> None:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")

    def reset(self) -> None:
        if self.method.startswith("VmHWM"):
            self._clear()

    @staticmethod
    def current() -> int:
        kb = _status_kb("VmRSS")
        return (kb or 0) * 1024

    def peak(self) -> int:
        if self.method.startswith("VmHWM"):
            return (_status_kb("VmHWM") or 0) * 1024
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
