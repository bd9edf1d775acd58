"""Generators: the contract (:mod:`~tumorsyn.generators.base`) and the registry of every generator.

Built-ins and plug-ins are found the same way, through the ``tumorsyn.generators`` entry points
(pyproject.toml); :func:`register_generator` adds a class at run time (tests, notebooks).
"""
from __future__ import annotations

from tumorsyn.generators.base import Generator, Rendering
from tumorsyn.generators.registry import (available_generators, generator_class, get_generator, option_owners,
                                          register_generator)

__all__ = ["Generator", "Rendering", "get_generator", "available_generators", "register_generator",
           "generator_class", "option_owners"]
