"""One hierarchy of errors, each a one-line message: file, problem, remedy.

The command line turns every :class:`TumorsynError` into ``tumorsyn: <message>`` on stderr and
exit code 1; anything else is a bug and keeps its traceback.
"""
from __future__ import annotations

from os import PathLike

__all__ = [
    "TumorsynError",
    "InputError",
    "GridMismatchError",
    "EmptyOrganError",
    "OrganTooSmallError",
    "NotHUError",
    "CorruptFileError",
    "ModelError",
    "ConfigError",
    "with_context",
]


class TumorsynError(Exception):
    """Base class: a failure the user can act on, described in one line."""

    def __init__(self, message: str, *, path: str | PathLike | None = None) -> None:
        self.path = None if path is None else str(path)
        # The file comes first so that a log line says at once which input is at fault.
        text = message if self.path is None else f"{self.path}: {message}"
        super().__init__(" ".join(text.split()))


class InputError(TumorsynError):
    """A scan, mask or dataset that cannot be used as given."""


class GridMismatchError(InputError):
    """CT and labels do not share a voxel grid (shape or affine)."""


class EmptyOrganError(InputError):
    """The requested organ label is absent from the label map."""


class OrganTooSmallError(InputError):
    """No place in the organ can hold a tumour of the requested size."""


class NotHUError(InputError):
    """The intensities are not Hounsfield units (normalised, unscaled or non-finite)."""


class CorruptFileError(InputError):
    """A file that is missing, truncated or not an image."""


class ModelError(TumorsynError):
    """A model folder that is missing or not a tumorsyn model."""


class ConfigError(TumorsynError):
    """A bad option value, spec or configuration file."""


def with_context(exc: TumorsynError, *, path: str | PathLike | None = None,
                 case_id: str | None = None) -> TumorsynError:
    """The same error naming a file first (``path`` where it named none) and, when given, the case after it.

    Examples
    --------
    >>> str(with_context(InputError("liver median -949 is not a plausible HU value"), path="a.nii.gz", case_id="a"))
    'a.nii.gz: case a: liver median -949 is not a plausible HU value'
    """
    text = str(exc)
    prefix = f"{exc.path}: " if exc.path else ""
    message = text[len(prefix):] if prefix and text.startswith(prefix) else text
    if case_id is not None and not message.startswith(f"case {case_id}: "):
        message = f"case {case_id}: {message}"
    return type(exc)(message, path=exc.path or path)
