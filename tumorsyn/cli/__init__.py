"""The ``tumorsyn`` command: subcommands are found through the ``tumorsyn.commands`` entry points."""
from tumorsyn.cli.main import main

__all__ = ["main"]
