"""Inference: sliding window with Gaussian blending, outputs on each input's own grid and orientation.

A CT is read in canonical RAS+ HU, cut to the organ's box when an organ mask is given, resampled to
the model's training spacing, scaled as in training, and run through MONAI's
``sliding_window_inference`` (``mode="gaussian"``). The class probabilities are resampled back onto
the (cropped) input grid; tumour = tumour probability >= threshold inside the organ (the given organ
mask, else the model's own organ channel). Masks are written with :func:`tumorsyn.io.write_mask_like`,
so every output has the input's shape, affine and orientation.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from tumorsyn.errors import ConfigError, ModelError

from segment.data import organ_box, resample_array, scale_hu, target_shape
from segment.networks import build_network

__all__ = ["load_model", "infer_probabilities", "predict_array", "predict_files", "output_names"]


def _model_folder(path: str | Path) -> Path:
    path = Path(path)
    for candidate in (path, path / "model", path / "best", path / "last"):
        if (candidate / "config.json").is_file() and (candidate / "model.safetensors").is_file():
            return candidate
    raise ModelError("no model here: expected config.json + model.safetensors in the folder or in its model/ "
                     "(a training run folder)", path=path)


def load_model(path: str | Path, *, device: str | torch.device = "cpu") -> tuple[torch.nn.Module, dict]:
    """The network of a run folder (its ``model/``) or of a model folder, in eval mode, and its config."""
    from safetensors.torch import load_model as load_safetensors

    folder = _model_folder(path)
    meta = json.loads((folder / "config.json").read_text())
    net = meta["network"]
    model = build_network(net["name"], out_channels=int(meta.get("out_channels", 3)),
                          roi_size=meta["data"]["roi_size"], **net.get("kwargs", {}))
    try:
        load_safetensors(model, str(folder / "model.safetensors"), strict=True, device="cpu")
    except (RuntimeError, KeyError) as exc:
        raise ModelError(f"weights do not fit the network in config.json ({str(exc).splitlines()[0]})",
                         path=folder / "model.safetensors") from None
    return model.to(device).eval(), meta


def infer_probabilities(model: torch.nn.Module, image01: torch.Tensor, *, roi_size: Sequence[int], overlap: float = 0.5,
                        sw_batch_size: int = 2, device: str | torch.device = "cpu",
                        amp_dtype: torch.dtype | None = None) -> torch.Tensor:
    """Class probabilities (C, X, Y, Z), float32 on the CPU, of a scaled image (1, X, Y, Z)."""
    from monai.inferers import sliding_window_inference

    device = torch.device(device)
    inputs = image01[None].float()
    with torch.no_grad(), torch.autocast(device_type=device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
        logits = sliding_window_inference(inputs, roi_size=tuple(roi_size), sw_batch_size=sw_batch_size,
                                          predictor=model, overlap=overlap, mode="gaussian", padding_mode="constant",
                                          sw_device=device, device="cpu")
    return torch.softmax(logits.float(), dim=1)[0]


def predict_array(model: torch.nn.Module, meta: dict, hu: np.ndarray, spacing_mm: Sequence[float], *,
                  organ_mask: np.ndarray | None = None, device: str | torch.device = "cpu",
                  amp_dtype: torch.dtype | None = None, threshold: float | None = None,
                  min_tumor_mm3: float | None = None) -> dict:
    """Tumour and organ masks and tumour probability on the grid of ``hu`` (canonical (X, Y, Z), HU).

    Returns
    -------
    dict
        ``tumor`` (bool), ``organ`` (bool), ``probability`` (float32 tumour probability, 0 outside
        the organ), all shaped like ``hu``.
    """
    p = meta.get("predict", {})
    threshold = float(p.get("threshold", 0.5) if threshold is None else threshold)
    min_tumor_mm3 = float(p.get("min_tumor_mm3", 0.0) if min_tumor_mm3 is None else min_tumor_mm3)
    data = meta["data"]
    if organ_mask is not None:
        if organ_mask.shape != hu.shape:
            raise ConfigError(f"organ mask grid {organ_mask.shape} differs from the CT grid {hu.shape}")
        if not organ_mask.any():
            raise ConfigError("organ mask is empty")
        box = organ_box(organ_mask, spacing_mm, float(data.get("crop_margin_mm", 20.0)))
    else:
        box = tuple(slice(0, n) for n in hu.shape)
    crop = hu[box]
    shape = target_shape(crop.shape, spacing_mm, data.get("spacing_mm"))
    image = scale_hu(resample_array(crop[None], shape, mode="trilinear"), data["hu_window"])
    probs = infer_probabilities(model, image, roi_size=data["roi_size"], overlap=float(p.get("overlap", 0.5)),
                                sw_batch_size=int(p.get("sw_batch_size", 2)), device=device, amp_dtype=amp_dtype)
    probs = resample_array(probs, crop.shape, mode="trilinear").numpy()
    organ = np.zeros(hu.shape, dtype=bool)
    if organ_mask is not None:
        organ[box] = organ_mask[box]
    else:
        organ[box] = (probs[1] + probs[2]) >= 0.5
    probability = np.zeros(hu.shape, dtype=np.float32)
    probability[box] = probs[2]
    probability[~organ] = 0.0
    tumor = probability >= threshold
    if min_tumor_mm3 > 0 and tumor.any():
        from scipy import ndimage

        labels, n = ndimage.label(tumor, structure=np.ones((3, 3, 3)))
        voxel_mm3 = float(np.prod(spacing_mm))
        sizes = ndimage.sum_labels(tumor, labels, index=np.arange(1, n + 1)) * voxel_mm3
        keep = np.zeros(n + 1, dtype=bool)
        keep[1:] = sizes >= min_tumor_mm3
        tumor = keep[labels]
    return {"tumor": tumor, "organ": organ, "probability": probability}


def output_names(case_id: str) -> dict[str, str]:
    """File names written for one case, by tumorsyn's one naming rule (:func:`tumorsyn.io.names.output_name`).

    ``tumorsyn evaluate`` reads ``<id>_tumor`` back as case ``<id>``.
    """
    from tumorsyn.io.names import output_name

    return {"tumor": output_name(case_id, "tumor"), "organ": output_name(case_id, "organ"),
            "probability": f"probabilities/{output_name(case_id, 'pred')}"}


def _write_probability(path: Path, scan, probability: np.ndarray) -> None:
    import nibabel as nib

    from tumorsyn.io.writers import write_raw_nifti

    data = np.ascontiguousarray(scan.from_canonical(probability.astype(np.float32)))
    header = nib.Nifti1Header.from_header(scan.header) if not isinstance(scan.header, nib.Nifti2Header) else scan.header.copy()
    header.set_data_dtype(np.float32)
    header.set_slope_inter(1.0, 0.0)
    header["cal_min"], header["cal_max"] = 0, 1
    header.set_qform(scan.affine, code=int(scan.header["qform_code"]) or 1)
    header.set_sform(scan.affine, code=int(scan.header["sform_code"]) or 1)
    write_raw_nifti(path, data, header)


def _check_spares_inputs(out: Path, ids: Sequence[str], cts: Sequence, others: Sequence, probabilities: bool) -> None:
    """Before any work: valid case ids, and no output over or inside an input (CT, DICOM folder, mask, model)."""
    from tumorsyn.io.guard import check_out_folder, check_outputs_spare_inputs, output_path_inside, safe_case_id

    check_out_folder(out)
    outputs = []
    for case_id, source in zip(ids, cts):
        names = output_names(safe_case_id(case_id, path=source))
        outputs += [output_path_inside(out, names[k]) for k in ("tumor", "organ")]
        if probabilities:
            outputs.append(output_path_inside(out, names["probability"]))
    check_outputs_spare_inputs(outputs, [*cts, *others])


def resolve_device(device="auto") -> torch.device:
    """The ``torch.device`` for ``--device`` (auto, cpu, cuda, cuda:N), read by the core's one resolver."""
    from tumorsyn.device import resolve_device as resolve

    try:
        return torch.device(str(resolve(device, backend="torch")))
    except ConfigError as exc:
        raise ConfigError(f"--device: {exc}") from None


def predict_files(model_dir: str | Path, inputs: Sequence[str | Path], out_dir: str | Path, *,
                  organ_masks: Sequence[str | Path] | None = None, case_ids: Sequence[str] | None = None,
                  probabilities: bool = False, device: str = "auto", quiet: bool = False,
                  threshold: float | None = None) -> list[dict]:
    """Predict every input CT; write ``<id>_tumor.nii.gz``, ``<id>_organ.nii.gz`` (and probabilities) to ``out_dir``.

    Parameters
    ----------
    model_dir : path
        A training run folder (``model/`` inside) or a model folder.
    inputs : sequence of path
        CT files (NIfTI) or DICOM series folders.
    organ_masks : sequence of path, optional
        One organ mask per input (non-zero = organ) on the input's grid: tumour is restricted to it
        and inference runs on its box only. Without it the model's organ channel is used.
    probabilities : bool
        Also write the tumour probability map (float32 in [0, 1], 0 outside the organ) for FROC.

    Returns
    -------
    list of dict
        Per case: ``case_id`` and the written paths.
    """
    from tumorsyn.cli.common import progress
    from tumorsyn.io import load_labels, load_scan
    from tumorsyn.io.cases import case_ids as name_cases
    from tumorsyn.io.labels import label_values
    from tumorsyn.io.scan import check_same_grid
    from tumorsyn.io.writers import write_mask_like

    if organ_masks is not None and len(organ_masks) != len(inputs):
        raise ConfigError(f"{len(inputs)} inputs but {len(organ_masks)} organ masks; give one per input")
    out = Path(out_dir)
    ids = list(case_ids) if case_ids else name_cases(list(inputs))
    if len(set(ids)) != len(ids):
        raise ConfigError("two inputs give the same case id; rename them or pass case ids")
    _check_spares_inputs(out, ids, inputs, [*(organ_masks or ()), _model_folder(model_dir)], probabilities)
    dev = resolve_device(device)
    model, meta = load_model(model_dir, device=dev)
    try:
        (out / "probabilities" if probabilities else out).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create the output folder ({exc.strerror or exc})", path=out) from None
    written = []
    for i, path in enumerate(progress(list(inputs), desc="predict", unit="case", quiet=quiet)):
        scan = load_scan(path)
        organ = None
        if organ_masks is not None:
            organ_scan = load_labels(organ_masks[i])
            check_same_grid(scan, organ_scan)
            organ = label_values(organ_scan) != 0
        result = predict_array(model, meta, scan.values(), scan.spacing_mm, organ_mask=organ, device=dev,
                               threshold=threshold)
        names = output_names(ids[i])
        record = {"case_id": ids[i], "ct": str(path)}
        write_mask_like(out / names["tumor"], scan, result["tumor"])
        write_mask_like(out / names["organ"], scan, result["organ"])
        record["tumor"], record["organ"] = str(out / names["tumor"]), str(out / names["organ"])
        if probabilities:
            _write_probability(out / names["probability"], scan, result["probability"])
            record["probability"] = str(out / names["probability"])
        written.append(record)
    return written
