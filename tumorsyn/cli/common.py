"""Argument types and helpers shared by every subcommand (argparse ``type=`` callables)."""
from __future__ import annotations

import argparse
import sys

__all__ = ["range_mm", "shard", "positive_int", "int_list", "device", "progress", "bin_edges_mm"]


def range_mm(text: str) -> tuple[float, float]:
    """``"5-20"`` or ``"12"`` -> (low, high) in mm; a usage error names the bad value."""
    parts = text.replace(",", "-").split("-")
    try:
        values = [float(p) for p in parts if p.strip() != ""]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size in mm like 5-20 or 12") from None
    if len(values) == 1:
        values = values * 2
    if len(values) != 2 or not (0 < values[0] <= values[1]):
        raise argparse.ArgumentTypeError(f"{text!r} is not a size range in mm like 5-20 (low <= high, both > 0)")
    return values[0], values[1]


def shard(text: str) -> tuple[int, int] | str:
    """``"I/N"`` (0 <= I < N) or ``"auto"`` (from RANK/WORLD_SIZE or SLURM array variables)."""
    if text == "auto":
        return "auto"
    try:
        index, count = (int(v) for v in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a shard like 0/4 (index/count) or 'auto'") from None
    if count < 1 or not 0 <= index < count:
        raise argparse.ArgumentTypeError(f"shard {text!r}: need 0 <= index < count")
    return index, count


def _parsed(text: str, kind: type) -> float:
    """``text`` as ``kind`` (int or float), or argparse's one-line error."""
    try:
        return kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a {'whole number' if kind is int else 'number'}") from None


def positive_int(text: str) -> int:
    value = _parsed(text, int)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be at least 1")
    return value


def non_negative_int(text: str) -> int:
    value = _parsed(text, int)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be >= 0")
    return value


def positive_float(text: str) -> float:
    value = _parsed(text, float)
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} must be a positive number")
    return value


def non_negative_float(text: str, *, meaning: str = "") -> float:
    """A finite number >= 0; ``meaning`` (e.g. "a fraction: 0.4 = 40 %") is added to the error in brackets."""
    value = _parsed(text, float)
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} must be a {'' if meaning else 'finite '}number >= 0"
                                         + (f" ({meaning})" if meaning else ""))
    return value


def int_list(text: str) -> tuple[int, ...]:
    """``"2,3"`` -> (2, 3)."""
    try:
        return tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of label values") from None


def device(text: str) -> str:
    """``auto``, ``cpu``, ``cuda`` or ``cuda:N`` (syntax; whether that GPU exists is asked where it is used)."""
    from tumorsyn.device import parse_device
    from tumorsyn.errors import ConfigError

    try:
        return parse_device(text)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def progress(iterable=None, *, total=None, desc=None, quiet=False, unit="it"):
    """A tqdm bar on stderr, hidden with ``--quiet`` or when stderr is not a terminal."""
    from tqdm.auto import tqdm

    return tqdm(iterable, total=total, desc=desc, unit=unit, file=sys.stderr,
                disable=quiet or not sys.stderr.isatty())


def bin_edges_mm(text: str) -> tuple[float, ...]:
    """``"10,20"`` -> (10.0, 20.0): increasing positive bin edges in mm."""
    from tumorsyn.metrics.sizes import check_bins_mm

    try:
        edges = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a list of sizes in mm like 10,20") from None
    try:
        return check_bins_mm(edges)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r}: {exc}") from None
