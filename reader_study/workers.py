"""Run independent jobs in worker processes (or in this process when ``workers`` is 1).

Reading a compressed 512x512 CT is CPU-bound (gzip), so a study of one scan per case spreads its
scans over processes. Results come back in completion order; callers key them by job, so the study's
bytes do not depend on the number of workers.
"""
from __future__ import annotations

import multiprocessing
from concurrent.futures import FIRST_EXCEPTION, ProcessPoolExecutor, wait
from typing import Callable, Iterable, Iterator, TypeVar

__all__ = ["imap_unordered"]

T = TypeVar("T")
R = TypeVar("R")


def imap_unordered(func: Callable[[T], R], jobs: Iterable[T], *, workers: int = 1) -> Iterator[R]:
    """Yield ``func(job)`` for every job; the first error (e.g. a bad file) stops the rest and is raised.

    Parameters
    ----------
    func : callable
        A module-level function (it is pickled to the workers).
    jobs : iterable
        Its arguments, one per call.
    workers : int
        Processes; 1 runs everything here, in order.
    """
    jobs = list(jobs)
    if workers <= 1 or len(jobs) <= 1:
        for job in jobs:
            yield func(job)
        return
    methods = multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
    pool = ProcessPoolExecutor(max_workers=min(workers, len(jobs)), mp_context=context)
    try:
        pending = {pool.submit(func, job) for job in jobs}
        while pending:
            done, pending = wait(pending, return_when=FIRST_EXCEPTION)
            for future in done:
                yield future.result()  # re-raises a worker's error here
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
