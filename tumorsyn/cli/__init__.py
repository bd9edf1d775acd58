"""The ``tumorsyn`` command (see :mod:`tumorsyn.cli.main`); subcommands come from entry points."""
