"""Nested YAML configs with known keys: merging a file over defaults, and ``--set key=value`` overrides.

Shared by the training pipelines (``segment``, ``train_diffusion``): each keeps its own defaults
and validation; this module only merges, rejecting unknown keys with the file and the key named.
"""
from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Iterable, Mapping

import yaml

from tumorsyn.errors import ConfigError

__all__ = ["read_config", "merge_config", "apply_overrides", "expand_path", "real_data_dir", "need", "need_path",
           "positive_ints", "REPO_ROOT", "REAL_DATA_ENV", "REAL_DATA_HELP"]

# The checkout (or install folder) holding tumorsyn: ``${REPO}`` in configs. ``${REAL}`` is the folder
# of real scans the bundled configs read: $TUMORSYN_REAL_DATA (or --real-data DIR) when given, else
# ../shared/data/real beside the checkout (this project's own layout).
REPO_ROOT = Path(__file__).resolve().parents[1]
REAL_DATA_ENV = "TUMORSYN_REAL_DATA"
_REAL_DEFAULT = REPO_ROOT.parent / "shared" / "data" / "real"
_REAL_ADVICE = f"set {REAL_DATA_ENV}=DIR or pass --real-data DIR, DIR being the folder that holds the real scans"
# The --real-data option of the commands that read configs (train-diffusion, segment train/experiment).
REAL_DATA_HELP = (f"folder that ${{REAL}} in the config's paths stands for (default: ${REAL_DATA_ENV}, else "
                  "../shared/data/real beside the checkout)")


def read_config(path, data: Mapping | None = None, *, hint: str = "") -> tuple[str, dict, Path]:
    """``(name, mapping, base_dir)`` of a YAML config file, or of ``data`` given instead of a file.

    ``name`` names the config in error messages; relative paths in it are relative to ``base_dir``
    (the file's folder, or the current folder for ``data``). ``hint`` ends the no-config error.
    """
    name = str(path) if path is not None else "config"
    if data is None:
        if path is None:
            raise ConfigError("no config given; pass a YAML file" + (f" ({hint})" if hint else ""))
        file = Path(path)
        if not file.is_file():
            raise ConfigError(f"{file}: config file not found")
        try:
            data = yaml.safe_load(file.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{file}: not valid YAML ({str(exc).splitlines()[0]})") from None
        base_dir = file.resolve().parent
    else:
        base_dir = Path.cwd()
    if not isinstance(data, Mapping):
        raise ConfigError(f"{name}: the top level must be a mapping of keys, got {type(data).__name__}")
    return name, dict(data), base_dir


def merge_config(base: dict, update: Mapping, *, path: str, free_form: Iterable[str] = (), where: str = "") -> dict:
    """``base`` updated recursively with ``update``; unknown keys are errors.

    Parameters
    ----------
    base : dict
        Defaults (every known key).
    update : mapping
        Values from a file (or an override mapping).
    path : str
        Where ``update`` came from, for error messages.
    free_form : iterable of str
        Dotted keys whose mappings take any keys (e.g. ``network.kwargs``).
    where : str
        Dotted key of ``base`` within the whole config (recursion).
    """
    free = set(free_form)
    out = copy.deepcopy(base)
    for key, value in update.items():
        dotted = f"{where}.{key}" if where else str(key)
        if key not in out:
            known = ", ".join(sorted(str(k) for k in out))
            raise ConfigError(f"{path}: unknown key {dotted!r}; known keys here: {known}")
        if isinstance(out[key], dict) and dotted not in free:
            if value is None:
                value = {}
            if not isinstance(value, Mapping):
                raise ConfigError(f"{path}: {dotted} must be a mapping, got {value!r}")
            out[key] = merge_config(out[key], value, path=path, free_form=free, where=dotted)
        else:
            out[key] = copy.deepcopy(value)
    return out


def apply_overrides(config: dict, overrides: Iterable[str] | None, *, path: str = "--set",
                    free_form: Iterable[str] = (), example: str = "train.epochs=2") -> dict:
    """Apply ``key.sub=value`` strings (values parsed as YAML) to a copy of ``config``.

    A key must exist, unless it lies inside one of the ``free_form`` mappings.
    """
    free = set(free_form)
    out = copy.deepcopy(config)
    for text in overrides or ():
        if "=" not in text:
            raise ConfigError(f"{path}: override {text!r} is not key=value (e.g. {example})")
        key, raw = text.split("=", 1)
        key = key.strip()
        try:
            value = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: value of {key} is not valid YAML ({str(exc).splitlines()[0]})") from None
        parts = key.split(".")
        node = out
        for i, part in enumerate(parts[:-1]):
            if not isinstance(node, dict) or part not in node:
                raise ConfigError(f"{path}: unknown key {'.'.join(parts[:i + 1])!r} in override {text!r}")
            node = node[part]
        inside_free = any(".".join(parts[:n]) in free for n in range(1, len(parts)))
        if not isinstance(node, dict) or (parts[-1] not in node and not inside_free):
            raise ConfigError(f"{path}: unknown key {key!r} in override {text!r}")
        node[parts[-1]] = value
    return out


def real_data_dir(real_data: str | Path | None = None) -> tuple[Path, str]:
    """The folder ``${REAL}`` stands for, and where that choice came from (for messages).

    Parameters
    ----------
    real_data : str or Path, optional
        The command line's ``--real-data DIR``; it wins over the environment.

    Returns
    -------
    (Path, str)
        The absolute folder (relative ones are taken from the current folder), and its origin:
        ``--real-data``, ``$TUMORSYN_REAL_DATA`` or ``the default beside the checkout``.
    """
    if real_data:
        return Path(os.path.expanduser(str(real_data))).absolute(), "--real-data"
    env = os.environ.get(REAL_DATA_ENV, "").strip()
    if env:
        return Path(os.path.expanduser(env)).absolute(), f"${REAL_DATA_ENV}"
    return _REAL_DEFAULT, "the default beside the checkout"


def expand_path(value, base_dir: Path, *, real_data: str | Path | None = None) -> str:
    """A config path made absolute: ``${REAL}`` (:func:`real_data_dir`), ``${REPO}``, ``~`` and environment
    variables expanded, relative paths taken from ``base_dir``."""
    text = str(value)
    if "${REAL}" in text:
        text = text.replace("${REAL}", str(real_data_dir(real_data)[0]))
    text = text.replace("${REPO}", str(REPO_ROOT))
    path = Path(os.path.expanduser(os.path.expandvars(text)))
    return str(path if path.is_absolute() else base_dir / path)


def need_path(value, path: str, key: str, *, hint: str = "", real_data: str | Path | None = None) -> None:
    """Raise ``ConfigError("<path>: <key> <value> not found ...")`` unless the (expanded) path ``value`` exists.

    A path inside the ``${REAL}`` folder names that folder, where it came from, the first part of
    the path that is missing, and how to point ``${REAL}`` elsewhere: a clone of the repository
    anywhere but beside ../shared/data/real needs that, not an edited config.
    """
    file = Path(value)
    if file.exists():
        return
    root, origin = real_data_dir(real_data)
    try:
        relative = file.relative_to(root)
    except ValueError:
        raise ConfigError(f"{path}: {key} {value} not found" + (f" ({hint})" if hint else "")) from None
    if not root.is_dir():
        where = "does not exist"
    else:
        missing = next(p for p in [root / Path(*relative.parts[:n]) for n in range(1, len(relative.parts) + 1)]
                       if not p.exists())
        where = f"has no {missing.relative_to(root)}"
    raise ConfigError(f"{path}: {key} {value} not found: the real-data folder ${{REAL}} = {root} ({origin}) {where}; "
                      + _REAL_ADVICE)


def need(cond: bool, path: str, message: str) -> None:
    """Raise ``ConfigError("<path>: <message>")`` unless ``cond``."""
    if not cond:
        raise ConfigError(f"{path}: {message}")


def positive_ints(value, n: int) -> bool:
    """Whether ``value`` is a list/tuple of ``n`` positive integers (booleans excluded)."""
    return isinstance(value, (list, tuple)) and len(value) == n and all(
        isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value)
