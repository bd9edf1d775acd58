"""Run-folder bookkeeping shared by both stages: checkpoints, CSV rows, loss curves, previews."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from tumorsyn.runfolder import Checkpoints, read_rows, write_rows

__all__ = ["StageState", "Checkpoints", "checkpoint_or_stop", "log_step", "after_step", "save_weights", "read_rows", "write_rows", "plot_curves", "save_preview",
           "preview_tiles", "save_sheet"]


@dataclass
class StageState:
    """Progress saved with every checkpoint (accelerate saves models, optimizers and RNG beside it)."""

    step: int = 0
    scale_factor: float = 1.0
    extra: dict = field(default_factory=dict)

    def state_dict(self) -> dict:
        return asdict(self)

    def load_state_dict(self, state: dict) -> None:
        for key, value in state.items():
            setattr(self, key, value)


def plot_curves(path: Path, rows: list[dict], keys: list[str], title: str) -> Path | None:
    """Loss curves (PNG) of the given CSV columns against the optimizer step; None without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, ax = plt.subplots(figsize=(6, 3.6))
    for key in keys:
        pts = [(int(r["step"]), float(r[key])) for r in rows if r.get(key) not in (None, "", "None", "nan")]
        if pts:
            ax.plot(*zip(*pts), lw=0.9, label=key)
    ax.set(xlabel="optimizer step", ylabel="loss", title=title)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
    ax.set_yscale("log")
    fig.tight_layout()
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=90)
    plt.close(fig)
    tmp.replace(path)
    return path


def preview_tiles(panels: list[np.ndarray], *, mask: np.ndarray | None = None, scale: int = 4) -> list:
    """Mid-slices (axial, through the mask's centre when given) of crops in [-1, 1], as PIL images.

    Each tile is ``scale`` times enlarged (nearest neighbour, so voxels stay visible).
    """
    from PIL import Image

    z = int(np.argwhere(mask)[:, 2].mean()) if mask is not None and mask.any() else panels[0].shape[2] // 2
    tiles = [np.clip((np.asarray(p)[:, :, z].T[::-1] + 1.0) * 127.5, 0, 255).astype(np.uint8) for p in panels]
    return [Image.fromarray(t).resize((t.shape[1] * scale, t.shape[0] * scale), Image.NEAREST) for t in tiles]


def save_sheet(path: Path, rows: list[list], column_labels: list[str], row_labels: list[str] | None = None) -> Path:
    """Rows of preview tiles with their column (and row) labels, written as PNG (temporary name, then renamed)."""
    from tumorsyn.figures import labelled_grid

    sheet = labelled_grid(rows, column_labels, row_labels)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.png")
    sheet.save(tmp, format="PNG")
    tmp.replace(path)
    return path


def save_preview(path: Path, panels: list[np.ndarray], labels: list[str], *, mask: np.ndarray | None = None,
                 scale: int = 4) -> Path:
    """Side-by-side mid-slices of crops in [-1, 1], each under its label (``labels[k]`` names ``panels[k]``), as PNG."""
    if len(labels) != len(panels):
        raise ValueError(f"{len(panels)} panels but {len(labels)} labels")
    return save_sheet(path, [preview_tiles(panels, mask=mask, scale=scale)], labels)


def checkpoint_or_stop(accelerator, checkpoints: Checkpoints, step: int, total: int, every: int,
                       stop_at_step: int | None) -> bool:
    """Save a checkpoint when one is due; True when the run stops here (as if killed) before its last step."""
    if step % int(every) == 0 or step == total:
        checkpoints.save(accelerator, step)
    return stop_at_step is not None and stop_at_step <= step < total


def log_step(rows: list[dict], sums: dict, *, step: int, total: int, every: int, started: float, path: Path,
             fields: list[str], write: bool) -> dict:
    """Every ``every`` steps (and at the last): a CSV row of the summed losses' means; returns the sums to go on with."""
    import time

    if step % int(every) and step != total:
        return sums
    n = int(every) if step % int(every) == 0 else step % int(every)
    rows.append({"step": step, "seconds": round(time.perf_counter() - started, 3),
                 **{k: f"{v / n:.6g}" for k, v in sums.items()}})
    if write:
        write_rows(path, fields, rows)
    return {}


def save_weights(module, path: Path) -> Path:
    """A module's weights as safetensors, written under a temporary name and renamed (never half a file)."""
    from safetensors.torch import save_file

    tmp = Path(path).with_suffix(".tmp")
    save_file({k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}, str(tmp))
    tmp.replace(path)
    return Path(path)


def after_step(accelerator, checkpoints: Checkpoints, rows: list[dict], sums: dict, *, step: int, total: int, train: dict,
               started: float, path: Path, fields: list[str], preview, stop_at_step: int | None) -> tuple[dict, bool]:
    """The bookkeeping after an optimizer step: the CSV row (:func:`log_step`), a preview every
    ``train.preview_every`` steps (``preview()``, main process), the checkpoint; returns ``(sums, stopped)``."""
    sums = log_step(rows, sums, step=step, total=total, every=train["log_every"], started=started, path=path,
                    fields=fields, write=accelerator.is_main_process)
    if train["preview_every"] and step % int(train["preview_every"]) == 0 and accelerator.is_main_process:
        preview()
    return sums, checkpoint_or_stop(accelerator, checkpoints, step, total, train["checkpoint_every"], stop_at_step)
