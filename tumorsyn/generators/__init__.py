"""Generator registry: built-ins plus anything declared in the ``tumorsyn.generators`` entry points."""
from __future__ import annotations

from importlib.metadata import entry_points

from tumorsyn.errors import ConfigError
from tumorsyn.generators.base import Generator, Rendering

__all__ = ["Generator", "Rendering", "get_generator", "available_generators", "register_generator",
           "generator_class", "option_owners"]

_BUILTIN = {"rules": "tumorsyn.generators.rules:RulesGenerator", "ca": "tumorsyn.generators.ca:CAGenerator",
            "diffusion": "tumorsyn.generators.diffusion:DiffusionGenerator"}
_REGISTRY: dict[str, type[Generator]] = {}


def register_generator(cls: type[Generator]) -> type[Generator]:
    """Register a generator class under ``cls.name`` (usable as a decorator)."""
    if not cls.name:
        raise ConfigError(f"generator class {cls.__name__} has no name")
    _REGISTRY[cls.name] = cls
    return cls


def _targets() -> dict[str, str]:
    targets = dict(_BUILTIN)
    for ep in entry_points(group="tumorsyn.generators"):
        targets.setdefault(ep.name, ep.value)
    return targets


def available_generators() -> list[str]:
    """Names of every generator that can be asked for with ``method=``."""
    return sorted(set(_targets()) | set(_REGISTRY))


def generator_class(name: str) -> type[Generator]:
    """The class registered as ``name`` (loading a built-in or entry-point generator on first use)."""
    if name not in _REGISTRY:
        target = _targets().get(name)
        if target is None:
            raise ConfigError(f"unknown method {name!r}; available: {', '.join(available_generators())}")
        import importlib

        module, _, attr = target.partition(":")
        try:
            cls = getattr(importlib.import_module(module), attr)
        except ImportError as exc:
            raise ConfigError(f"method {name!r} cannot load ({exc}); install its extra") from None
        _REGISTRY[name] = cls
    return _REGISTRY[name]


def get_generator(name: str, *, device="auto") -> Generator:
    """An instance of the generator registered as ``name``, running on ``device`` (auto, cpu, cuda, cuda:N)."""
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
