"""The feature set's writer lock: one run writes a feature set at a time (on a local root).

A run holds it from planning to publish, so two runs of one feature set never stage or publish over
each other: the second waits (logging that it waits), then finds the first's version. It is reentrant
for the thread holding it and exclusive against other threads (any store object on the same root) and,
on a local root, other processes (a :class:`filelock.FileLock` on ``<feature set>/.lock``; the OS
releases the lock of a killed process).

An object store has no file lock (and no lock service is assumed): there the lock excludes only this
process's threads, and correctness across processes comes from the conditional commit of the version
manifest (:mod:`mmfeat.pipelines.store.writer`): two runs of one request may both compute; both end
with the same version id and one manifest. That is logged once per root, at info.
"""
from __future__ import annotations

import logging
import os
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

log = logging.getLogger("mmfeat.store")

LOCK_NAME = ".lock"

_LOCKS: dict[str, tuple[Any, Any]] = {}
_LOCKS_GUARD = threading.Lock()
_NO_FILE_LOCK_NOTED: set[str] = set()


def _process_lock(path: Path | str, file_lock: bool = True) -> tuple[Any, Any]:
    """One (thread RLock, inter-process FileLock) pair per lock file in this process, shared by
    every FeatureStore on the same root, so a nested acquire never deadlocks on itself. Without
    ``file_lock`` (an object-store root) the pair's file lock is None."""
    from filelock import FileLock

    key = os.path.realpath(path) if file_lock else str(path)
    with _LOCKS_GUARD:
        if key not in _LOCKS:
            _LOCKS[key] = (threading.RLock(), FileLock(key, thread_local=False) if file_lock else None)
        return _LOCKS[key]


def _acquire_thread_lock(thread_lock: Any, where: str, log_every: float) -> float:
    waited = 0.0
    while not thread_lock.acquire(timeout=log_every):
        waited += log_every
        log.warning("%s: waiting for another thread of this process writing it (%.0f s so far)", where, waited)
    return waited


@contextmanager
def feature_set_lock(fs: Any, dataset: str, feature_set: str, *, log_every: float = 30.0) -> Iterator[None]:
    """Hold the writer lock of ``dataset/feature_set`` on the store filesystem ``fs`` (see the module
    docstring); used by :meth:`mmfeat.pipelines.store.feature_store.FeatureStore.lock`."""
    where = f"{dataset}/{feature_set}"
    if not fs.is_local:
        if fs.uri not in _NO_FILE_LOCK_NOTED:
            _NO_FILE_LOCK_NOTED.add(fs.uri)
            log.info("%s: an object store has no cross-process writer lock; concurrent runs of one request "
                     "may both compute, and the conditional commit of _manifest.json keeps one version", fs.uri)
        thread_lock, _ = _process_lock(f"{fs.loc(where)}/{LOCK_NAME}", file_lock=False)
        _acquire_thread_lock(thread_lock, where, log_every)
        try:
            yield
        finally:
            thread_lock.release()
        return
    d = fs.path(where)
    d.mkdir(parents=True, exist_ok=True)
    thread_lock, file_lock = _process_lock(d / LOCK_NAME)
    waited = _acquire_thread_lock(thread_lock, where, log_every)
    try:
        from filelock import Timeout

        while True:
            try:
                file_lock.acquire(timeout=log_every)
                break
            except Timeout:
                waited += log_every
                log.warning("%s: waiting for another run that holds %s (%.0f s so far)", where, d / LOCK_NAME, waited)
        try:
            yield
        finally:
            file_lock.release()
    finally:
        thread_lock.release()
