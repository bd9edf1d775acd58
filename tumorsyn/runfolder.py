"""Run-folder bookkeeping the training pipelines share: resumable checkpoints and CSV logs.

``Checkpoints`` works with any object offering accelerate's ``Accelerator`` interface
(``is_main_process``, ``wait_for_everyone``, ``save_state``); tumorsyn itself never imports
accelerate. Every file is written under a temporary name and renamed, so a run killed at any
moment leaves either the old or the new checkpoint, never half of one.
"""
from __future__ import annotations

import csv
import shutil
from pathlib import Path

__all__ = ["Checkpoints", "read_rows", "write_rows"]


class Checkpoints:
    """``step_<N>/`` folders written under a temporary name, then renamed; ``LAST`` names the newest.

    Parameters
    ----------
    folder : Path
        Where the checkpoints live.
    keep : int
        How many of the newest checkpoints to keep.
    """

    def __init__(self, folder: Path, keep: int = 2) -> None:
        self.folder, self.keep = Path(folder), int(keep)

    def last(self) -> Path | None:
        """The newest complete checkpoint, or None."""
        pointer = self.folder / "LAST"
        if not pointer.is_file():
            return None
        path = self.folder / pointer.read_text().strip()
        return path if path.is_dir() else None

    def save(self, accelerator, step: int) -> Path:
        """Save the accelerator's state (models, optimisers, schedulers, RNG, registered objects) at ``step``."""
        final, tmp = self.folder / f"step_{step:07d}", self.folder / f".step_{step:07d}.tmp"
        if accelerator.is_main_process:
            self.folder.mkdir(parents=True, exist_ok=True)
            shutil.rmtree(tmp, ignore_errors=True)
        accelerator.wait_for_everyone()
        accelerator.save_state(str(tmp))
        accelerator.wait_for_everyone()
        if accelerator.is_main_process:
            shutil.rmtree(final, ignore_errors=True)
            tmp.replace(final)
            pointer = self.folder / ".LAST.tmp"
            pointer.write_text(final.name)
            pointer.replace(self.folder / "LAST")
            for old in sorted(p for p in self.folder.glob("step_*") if p.is_dir())[:-self.keep]:
                shutil.rmtree(old, ignore_errors=True)
        accelerator.wait_for_everyone()
        return final


def read_rows(path: Path, max_step: int) -> list[dict]:
    """Rows of a CSV log up to ``max_step`` (a resumed run drops rows of steps it redoes)."""
    if not path.is_file():
        return []
    with path.open(newline="") as fh:
        return [row for row in csv.DictReader(fh) if int(row["step"]) <= max_step]


def write_rows(path: Path, fields: list[str], rows: list[dict]) -> None:
    """Write a CSV log whole (temporary name, then rename); keys outside ``fields`` are left out."""
    tmp = path.with_suffix(".csv.tmp")
    with tmp.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    tmp.replace(path)
