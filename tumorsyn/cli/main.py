"""Entry point of the ``tumorsyn`` command.

Each package registers its subcommand through the entry-point group ``tumorsyn.commands``: the
entry point is a function ``register(subparsers)`` that adds a parser and sets ``handler`` (a
function taking the parsed arguments and returning an exit code). The core never names a pipeline
package, and a third party adds a command the same way.

Exit codes: 0 done, 1 bad input or run-time failure (one-line message), 2 usage error.
"""
from __future__ import annotations

import argparse
import sys
import warnings
from contextlib import contextmanager
from pathlib import Path
from importlib.metadata import entry_points

from tumorsyn import __version__
from tumorsyn.errors import TumorsynError
from tumorsyn.organs import ORGANS, join_names

EPILOG = ("Cite: tumorsyn (this toolkit); the bundled example CT is from TotalSegmentator "
          "(Wasserthal et al., Radiology: AI 2023, Apache-2.0).")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tumorsyn",
        description=f"Write realistic early-stage {join_names(ORGANS, 'and')} tumours into healthy CT, "
                    "and measure what that does for tumour detection.",
        epilog=EPILOG,
    )
    parser.add_argument("--version", action="version", version=f"tumorsyn {__version__}")
    parser.add_argument("--debug", action="store_true", help="show the full traceback on errors")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for ep in sorted(entry_points(group="tumorsyn.commands"), key=lambda e: e.name):
        try:
            register = ep.load()
        except ImportError as exc:  # an optional package whose extra is not installed
            stub = subparsers.add_parser(ep.name, help=f"(unavailable: {exc})")
            stub.set_defaults(handler=lambda args, exc=exc, name=ep.name: _unavailable(name, exc))
            continue
        register(subparsers)
    return parser


def _unavailable(name: str, exc: Exception) -> int:
    print(f"tumorsyn: error: the '{name}' command cannot load ({exc}); install its extra", file=sys.stderr)
    return 1


_PACKAGE_ROOT = Path(__file__).resolve().parents[1]  # tumorsyn/


@contextmanager
def _one_line_warnings(enabled: bool = True):
    """Show tumorsyn's own warnings as ``tumorsyn: warning: <message>``, one line each, without a source line.

    Python's default display adds the file, line number and the line of code that warned: noise for a
    user of the command. Warnings raised by other libraries keep Python's own display.
    """
    if not enabled:
        yield
        return
    default = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None):
        try:
            # tumorsyn's own advice: a UserWarning raised in the package (library deprecation notices,
            # which can point at our calling line, keep Python's display and filters).
            ours = (issubclass(category, UserWarning) and not issubclass(category, DeprecationWarning)
                    and Path(filename).resolve().is_relative_to(_PACKAGE_ROOT))
        except (OSError, ValueError):
            ours = False
        if not ours:
            return default(message, category, filename, lineno, file, line)
        print(f"tumorsyn: warning: {' '.join(str(message).split())}", file=file or sys.stderr)

    warnings.showwarning = show
    try:
        yield
    finally:
        warnings.showwarning = default


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help(sys.stderr)
        return 2
    try:
        with _one_line_warnings(enabled=not args.debug):
            return int(args.handler(args) or 0)
    except TumorsynError as exc:
        if args.debug:
            raise
        print(f"tumorsyn: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("tumorsyn: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
