"""One reading of device requests (``auto``, ``cpu``, ``cuda``, ``cuda:N``, a ``torch.device``) for every path.

Generators, transforms and commands take a device; they all go through :func:`parse_device`
(syntax) and :func:`resolve_device` (is that GPU there?), so a request means the same thing
everywhere and a CUDA device that does not exist is refused once, in one line, where it is given.

GPU work runs in one of two libraries, each asked in its own way whether a GPU is usable:
``"numba"`` (numba-cuda: the cellular automaton's kernel) and ``"torch"`` (networks: the
diffusion model, segmentation). Neither is imported unless a GPU must be looked for (or a
``torch.device`` is given, which means torch is loaded already).
"""
from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass
from typing import Any

from tumorsyn.errors import ConfigError

__all__ = ["Device", "BACKENDS", "parse_device", "resolve_device", "check_device", "cuda_device_count"]

BACKENDS = ("torch", "numba")
_SYNTAX = re.compile(r"(auto|cpu|cuda)(?::(\d+))?")


@dataclass(frozen=True)
class Device:
    """A resolved device: where work runs.

    Attributes
    ----------
    kind : {'cpu', 'cuda'}
    index : int, optional
        CUDA device number (``cuda:N``); ``None`` for the CPU, or for the library's current GPU
        when plain ``cuda`` (or ``auto``) was asked for.
    """

    kind: str
    index: int | None = None

    def __str__(self) -> str:
        return self.kind if self.index is None else f"{self.kind}:{self.index}"


def _is_torch_device(device: Any) -> bool:
    # A torch.device can only exist when torch is imported: look it up there, never import it here.
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(device, torch.device)


def parse_device(device: Any) -> str:
    """The request in canonical text: ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:N"`` (syntax only).

    Parameters
    ----------
    device : str, torch.device, Device or None
        ``None`` means ``"auto"``.

    Raises
    ------
    ConfigError
        Anything else, naming the value and the accepted forms.
    """
    if device is None:
        return "auto"
    if isinstance(device, Device) or _is_torch_device(device):
        device = str(device)
    match = _SYNTAX.fullmatch(device.strip().lower()) if isinstance(device, str) else None
    if match is None or (match.group(2) is not None and match.group(1) != "cuda"):
        raise ConfigError(f"device must be auto, cpu, cuda or cuda:N (N: a GPU number), got {device!r}")
    kind, index = match.group(1), match.group(2)
    return kind if index is None else f"{kind}:{int(index)}"


def cuda_device_count(backend: str) -> int:
    """GPUs that ``backend`` (``"torch"`` or ``"numba"``) can use here; 0 when it is not installed."""
    if backend not in BACKENDS:
        raise ConfigError(f"unknown device backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    try:
        if backend == "torch":
            import torch

            return int(torch.cuda.device_count()) if torch.cuda.is_available() else 0
        from numba import cuda

        return len(cuda.gpus) if cuda.is_available() else 0
    except ImportError:
        return 0
    except Exception:  # a broken driver counts as no GPU
        return 0


def _simulated(backend: str) -> bool:
    # numba's CUDA simulator (NUMBA_ENABLE_CUDASIM=1) is for tests: 'auto' never picks it.
    return backend == "numba" and os.environ.get("NUMBA_ENABLE_CUDASIM") == "1"


def resolve_device(device: Any = "auto", *, backend: str = "torch") -> Device:
    """Where work asked for on ``device`` runs, checked against the GPUs ``backend`` sees.

    Parameters
    ----------
    device : str, torch.device, Device or None
        ``auto`` (a GPU when one is usable, else the CPU), ``cpu``, ``cuda`` (the current GPU) or
        ``cuda:N`` (GPU number N, as ``accelerate`` hands them to each process).
    backend : {'torch', 'numba'}
        The library that runs the GPU work.

    Returns
    -------
    Device

    Raises
    ------
    ConfigError
        Bad syntax, CUDA asked for where none is usable, or a GPU number that does not exist.
    """
    text = parse_device(device)
    if text == "cpu":
        return Device("cpu")
    count = cuda_device_count(backend)
    if text == "auto":
        return Device("cuda") if count and not _simulated(backend) else Device("cpu")
    index = None if text == "cuda" else int(text.split(":")[1])
    if count == 0:
        need = "numba-cuda (pip install 'tumorsyn[cuda]')" if backend == "numba" else "torch built with CUDA"
        raise ConfigError(f"device {text!r} asked for, but no CUDA GPU is usable here (this needs an NVIDIA driver "
                          f"and {need}); use device 'cpu' or 'auto'")
    if index is not None and index >= count:
        raise ConfigError(f"device {text!r} asked for, but only {count} CUDA GPU(s) are visible "
                          f"(cuda:0..cuda:{count - 1}); check CUDA_VISIBLE_DEVICES")
    return Device("cuda", index)


def check_device(device: Any = "auto", *, backend: str | None = None) -> str:
    """Check a request where it is given; return its canonical text.

    An explicit CUDA request (``cuda``, ``cuda:N``) is resolved at once against ``backend``, so a
    missing GPU is refused when an object is built, not at its first use. ``auto`` stays
    ``"auto"``: it is resolved where the work runs (a forked DataLoader worker decides for
    itself). With ``backend=None`` (work that runs on the CPU whatever is asked) only the
    syntax is checked.
    """
    text = parse_device(device)
    if backend is not None and text.startswith("cuda"):
        resolve_device(text, backend=backend)
    return text
