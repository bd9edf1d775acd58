"""The one CSV reader of tumorsyn: UTF-8 (with or without Excel's byte-order mark), columns by header name.

Every command that takes a CSV of files (``generate --dataset``, ``evaluate --ref/--pred``, the reader
study's real cases, the realism lesions) reads it here, so the rules are the same everywhere:

- the text is UTF-8; a byte-order mark (Excel saves one) never becomes part of the first column's name;
- a header names the columns in any order, case and surrounding blanks ignored; unknown columns are
  ignored; a column named twice and a missing required column are one-line errors that name them;
- where the caller allows it, a file whose first row names no known column has no header, and its
  columns are taken by position (``positional``);
- blank rows are skipped; cells are stripped; every row reports its line number (1-based).
"""
from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

from tumorsyn.errors import InputError

__all__ = ["TableRow", "read_table"]


@dataclass(frozen=True)
class TableRow:
    """One non-blank row: its 1-based line number and its cells by column name ('' where empty or absent)."""

    line: int
    cells: Mapping[str, str]

    def __getitem__(self, column: str) -> str:
        return self.cells.get(column, "")

    def get(self, column: str, default: str = "") -> str:
        return self.cells.get(column) or default


def read_table(path: str | Path, columns: Sequence[str], *, required: Sequence[str], aliases: Mapping[str, str] = {},
               positional: bool = False, header_advice: str = "") -> tuple[list[TableRow], bool]:
    """Rows of a CSV whose columns are ``columns`` (``required`` among them).

    Parameters
    ----------
    path : str or Path
        The CSV file.
    columns : sequence of str
        Known column names (lower case), in the order a header-less file gives them.
    required : sequence of str
        Columns a header must name.
    aliases : mapping, optional
        Other header names for a column (``{"tumor": "mask"}``).
    positional : bool
        Allow a header-less file (first row names no known column): columns by position.
    header_advice : str
        The end of the missing-column message: what a header should look like.

    Returns
    -------
    rows : list of TableRow
    had_header : bool

    Raises
    ------
    InputError
        Unreadable or non-UTF-8 file, a column named twice, a required column missing (all naming the file).
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise InputError(f"cannot read CSV ({exc.strerror})", path=path) from None
    except UnicodeDecodeError as exc:
        raise InputError(f"CSV is not UTF-8 text (byte {exc.start}); save it as UTF-8 CSV", path=path) from None
    try:
        rows = list(csv.reader(text.splitlines()))
    except csv.Error as exc:
        raise InputError(f"not a readable CSV ({exc})", path=path) from None
    first = next((k for k, row in enumerate(rows) if any(c.strip() for c in row)), None)
    raw = [c.strip().lower() for c in rows[first]] if first is not None else []
    names = [aliases.get(n, n) for n in raw]
    has_header = any(name in columns for name in names) or not positional
    if has_header:
        repeated = sorted({n for n in names if n and names.count(n) > 1})
        if repeated:
            raise InputError(f"CSV header names column {repeated[0]!r} twice", path=path)
        missing = [c for c in required if c not in names]
        if missing:
            raise InputError(f"CSV header {','.join(raw)} lacks the column {' and '.join(map(repr, missing))}"
                             f"{'; ' + header_advice if header_advice else ''}", path=path)
        index = {c: names.index(c) for c in columns if c in names}
        body = list(enumerate(rows, start=1))[first + 1:]
    else:
        index = {c: k for k, c in enumerate(columns)}  # header-less: positional
        body = list(enumerate(rows, start=1))
    out = []
    for line, row in body:
        if not row or all(not c.strip() for c in row):
            continue
        out.append(TableRow(line, {c: row[k].strip() if k < len(row) else "" for c, k in index.items()}))
    return out, has_header
