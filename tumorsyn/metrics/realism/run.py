"""Files to descriptor rows: read every scan of the real and synthetic inputs, describe its lesions.

Scans run in worker processes (``workers``), each returning plain rows; nothing here writes files.
"""
from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Callable, Iterable, Sequence

from tumorsyn.errors import ConfigError, InputError
from tumorsyn.io.checksums import sha256_file
from tumorsyn.metrics.realism.descriptors import SIZE_BINS_MM, describe_case
from tumorsyn.metrics.realism.sources import LesionSource, find_sources, load_source

__all__ = ["describe_source", "describe_sources", "collect_sources"]


def describe_source(source: LesionSource, *, min_voxels: int = 3, bins_mm: Sequence[float] = SIZE_BINS_MM,
                    thumbnails: bool = False, checksums: bool = True) -> dict:
    """Read one scan and describe its lesions.

    Returns
    -------
    dict
        ``rows`` (from :func:`~tumorsyn.metrics.realism.describe_case`, each with ``cohort`` and
        ``source`` added) and ``inputs`` (the files with their SHA-256).
    """
    data = load_source(source)
    rows = describe_case(data["ct_hu"], data["lesions"], data["organ"], data["spacing_mm"], organ=source.organ,
                         exclude=data["exclude"], min_voxels=min_voxels, bins_mm=bins_mm, case_id=source.case_id,
                         thumbnails=thumbnails)
    for row in rows:
        row["cohort"], row["source"] = source.cohort, source.origin
    files = {"ct": source.ct, "lesion": source.lesion_file, "organ": source.organ_file}
    inputs = {"cohort": source.cohort, "case_id": source.case_id, "organ": source.organ,
              **{role: {"path": str(p), "sha256": sha256_file(p) if checksums else None} for role, p in files.items()}}
    return {"rows": rows, "inputs": inputs}


def collect_sources(real: Sequence[str], synthetic: Sequence[str], **options) -> list[LesionSource]:
    """Every scan of the ``real`` and ``synthetic`` inputs (see :func:`find_sources` for ``options``)."""
    sources = []
    for cohort, paths in (("real", real), ("synthetic", synthetic)):
        if not paths:
            raise ConfigError(f"give at least one --{cohort} input")
        for path in paths:
            sources += find_sources(path, cohort=cohort, **options)
    return sources


def describe_sources(sources: Sequence[LesionSource], *, workers: int = 1,
                     progress: Callable[[Iterable, int], Iterable] | None = None, **options) -> dict:
    """Describe every scan, in worker processes when ``workers > 1``.

    Parameters
    ----------
    sources : sequence of LesionSource
    workers : int
        Processes (1: in this process).
    progress : callable, optional
        ``progress(iterable, total)`` wrapping the finished scans (a progress bar).
    **options
        Passed to :func:`describe_source`.

    Returns
    -------
    dict
        ``real`` and ``synthetic`` row lists and ``inputs``, in input order.

    Raises
    ------
    TumorsynError
        The first failing scan's error (the others are cancelled); an InputError when a cohort has
        no lesion at all.
    """
    if workers < 1:
        raise ConfigError(f"workers must be >= 1, got {workers}")
    wrap = progress or (lambda iterable, total: iterable)
    results: list[dict | None] = [None] * len(sources)
    if workers == 1 or len(sources) < 2:
        for index, source in enumerate(wrap(sources, len(sources))):
            results[index] = describe_source(source, **options)
    else:
        # spawn: no fork of a parent that may hold threads (BLAS, torch) in an unknown state.
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=min(workers, len(sources)), mp_context=context) as pool:
            futures = {pool.submit(describe_source, s, **options): i for i, s in enumerate(sources)}
            try:
                for future in wrap(as_completed(futures), len(futures)):
                    results[futures[future]] = future.result()
            except BaseException:
                for future in futures:
                    future.cancel()
                raise
    out: dict = {"real": [], "synthetic": [], "inputs": []}
    for source, result in zip(sources, results):
        out[source.cohort] += result["rows"]
        out["inputs"].append(result["inputs"])
    for cohort in ("real", "synthetic"):
        if not any(r["described"] for r in out[cohort]):
            origins = sorted({s.origin for s in sources if s.cohort == cohort})
            raise InputError(f"no {cohort} lesion to describe ({len(out[cohort])} found, none with at least "
                             f"{options.get('min_voxels', 3)} voxels); check the lesion labels",
                             path=", ".join(origins))
    return out
