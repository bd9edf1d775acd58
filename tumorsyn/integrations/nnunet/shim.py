"""The shim module that lets nnU-Net v2 find ``nnUNetTrainerTumorSyn``.

nnU-Net looks up ``-tr NAME`` by importing every module under ``nnunetv2/training/nnUNetTrainer``
and taking the first class of that name, so a trainer living elsewhere is never found.
:func:`install_trainer` writes one small module there that imports tumorsyn's trainer;
:func:`uninstall_trainer` removes it. Both are idempotent, and neither touches a file tumorsyn did
not write (recognised by its first line).
"""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from tumorsyn import __version__
from tumorsyn.errors import ConfigError, InputError
from tumorsyn.io.writers import atomic_path

__all__ = ["TRAINER_NAME", "MARKER", "shim_source", "default_target", "install_trainer", "uninstall_trainer"]

TRAINER_NAME = "nnUNetTrainerTumorSyn"
MARKER = "# Written by `tumorsyn nnunet install-trainer`"
"""First line of every shim: a file starting otherwise is not ours and is never overwritten or removed."""


def shim_source() -> str:
    """The shim module's text."""
    # nnU-Net imports every module of the folder while it looks for any trainer and stops at the first
    # import error: a shim left behind without tumorsyn must not break nnU-Net's other trainers.
    return (f"{MARKER} (tumorsyn {__version__}); remove it with `tumorsyn nnunet install-trainer --uninstall`.\n"
            '"""nnU-Net finds trainers only inside nnunetv2: this module hands it tumorsyn\'s trainer (docs/nnunet.md)."""\n'
            "try:\n"
            f"    from tumorsyn.integrations.nnunet.trainer import {TRAINER_NAME}  # noqa: F401\n"
            "except ImportError as exc:\n"
            "    import warnings\n\n"
            f"    warnings.warn(f\"{TRAINER_NAME} is unavailable: tumorsyn cannot load ({{exc}}); reinstall tumorsyn "
            "with its nnunet extra, or delete {__file__}\")\n")


def default_target() -> Path:
    """The installed nnunetv2's trainer folder (found without importing nnunetv2's trainers)."""
    spec = importlib.util.find_spec("nnunetv2")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError("nnunetv2 is not installed in this Python; install it with: pip install 'tumorsyn[nnunet]'")
    return Path(next(iter(spec.submodule_search_locations))) / "training" / "nnUNetTrainer"


def _shim_path(target: str | os.PathLike | None) -> Path:
    folder = Path(target) if target is not None else default_target()
    if not folder.is_dir():
        raise InputError("not a folder; give nnunetv2's training/nnUNetTrainer folder", path=folder)
    return folder / f"{TRAINER_NAME}.py"


def _ours(path: Path) -> bool:
    try:
        with path.open(encoding="utf-8") as handle:
            return handle.readline().startswith(MARKER)
    except (OSError, UnicodeDecodeError):
        return False


def install_trainer(target: str | os.PathLike | None = None) -> tuple[Path, str]:
    """Write the shim into ``target`` (default: the installed nnunetv2's trainer folder).

    Returns
    -------
    path : Path
        The shim's path.
    action : {'installed', 'updated', 'already installed'}

    Raises
    ------
    InputError
        The folder is missing, not writable, or holds a file of that name that tumorsyn did not write.
    """
    path = _shim_path(target)
    text = shim_source()
    if path.exists():
        if not _ours(path):
            raise InputError(f"a {TRAINER_NAME}.py that tumorsyn did not write is already here; left untouched "
                             "(move it away to install tumorsyn's)", path=path)
        if path.read_text(encoding="utf-8") == text:
            return path, "already installed"
        action = "updated"
    else:
        action = "installed"
    try:
        with atomic_path(path) as tmp:
            tmp.write_text(text, encoding="utf-8")
    except PermissionError:
        raise InputError("cannot write here (permission denied); run with the rights of nnunetv2's installation",
                         path=path.parent) from None
    return path, action


def uninstall_trainer(target: str | os.PathLike | None = None) -> tuple[Path, str]:
    """Remove the shim (and its compiled copies) from ``target``; ``action`` is 'removed' or 'not installed'.

    Raises
    ------
    InputError
        The file there is not one tumorsyn wrote, or cannot be removed.
    """
    path = _shim_path(target)
    if not path.exists():
        return path, "not installed"
    if not _ours(path):
        raise InputError(f"this {TRAINER_NAME}.py was not written by tumorsyn; left untouched", path=path)
    try:
        path.unlink()
        for compiled in (path.parent / "__pycache__").glob(f"{TRAINER_NAME}.*.pyc"):
            compiled.unlink(missing_ok=True)
    except PermissionError:
        raise InputError("cannot remove it (permission denied)", path=path) from None
    return path, "removed"
