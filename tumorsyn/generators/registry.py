"""Generator registry: every generator declared in the ``tumorsyn.generators`` entry points, plus run-time registrations.

The built-in ``rules``, ``ca`` and ``diffusion`` are declared in pyproject.toml like any plug-in,
so there is one way in. This module imports no generator (nor the base class) until one is asked
for: ``import tumorsyn`` stays light, and :mod:`~tumorsyn.generators.base` may ask it who owns an
option without an import cycle.
"""
from __future__ import annotations

import importlib
from importlib.metadata import entry_points

from tumorsyn.errors import ConfigError

__all__ = ["get_generator", "available_generators", "register_generator", "generator_class", "option_owners"]

GROUP = "tumorsyn.generators"
_REGISTRY: dict[str, type] = {}


def register_generator(cls: type) -> type:
    """Register a generator class under ``cls.name`` (usable as a decorator)."""
    if not cls.name:
        raise ConfigError(f"generator class {cls.__name__} has no name")
    _REGISTRY[cls.name] = cls
    return cls


def _targets() -> dict[str, str]:
    return {ep.name: ep.value for ep in entry_points(group=GROUP)}


def available_generators() -> list[str]:
    """Names of every generator that can be asked for with ``method=``."""
    return sorted(set(_targets()) | set(_REGISTRY))


def generator_class(name: str) -> type:
    """The class registered as ``name`` (loading an entry-point generator on first use)."""
    if name not in _REGISTRY:
        target = _targets().get(name)
        if target is None:
            raise ConfigError(f"unknown method {name!r}; available: {', '.join(available_generators()) or 'none'} "
                              f"(generators are found through the {GROUP!r} entry points: is tumorsyn installed?)")
        module, _, attr = target.partition(":")
        try:
            cls = getattr(importlib.import_module(module), attr)
        except ImportError as exc:
            raise ConfigError(f"method {name!r} cannot load ({exc}); install its extra") from None
        _REGISTRY[name] = cls
    return _REGISTRY[name]


def get_generator(name: str, *, device="auto"):
    """An instance of the generator registered as ``name``, holding ``device`` (auto, cpu, cuda, cuda:N)."""
    return generator_class(name)(device=device)


def option_owners() -> dict[str, frozenset]:
    """Declared ``sample_spec`` options of every generator that loads (for error messages)."""
    owners = {}
    for name in available_generators():
        try:
            options = generator_class(name).options
        except ConfigError:
            continue
        if options is not None:
            owners[name] = options
    return owners
