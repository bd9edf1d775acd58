"""The synopses in the docs name every option that `--help` has (they drifted apart once)."""
import argparse

import pytest

from tests.conftest import REPO
from tumorsyn.cli.main import build_parser

# command -> the doc whose synopsis lists its options
DOCS = {"generate": "docs/usage.md", "segment": "docs/segment.md"}


def _subcommand_parsers(name: str):
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    command = sub.choices[name]
    inner = [a for a in command._actions if isinstance(a, argparse._SubParsersAction)]
    return list(inner[0].choices.values()) if inner else [command]


@pytest.mark.parametrize("command", sorted(DOCS))
def test_every_option_of_help_is_in_the_docs(command):
    text = (REPO / DOCS[command]).read_text()
    for parser in _subcommand_parsers(command):
        options = {o for a in parser._actions for o in a.option_strings if o.startswith("--") and o != "--help"}
        missing = sorted(o for o in options if o not in text)
        assert not missing, f"{DOCS[command]} does not name {', '.join(missing)} of `{parser.prog}`"
