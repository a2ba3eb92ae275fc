"""The one bounded model cache (:mod:`mmfeat.featurizers.cache`) and the loaders that use it."""

from __future__ import annotations

import threading
import time

import pytest

from mmfeat.featurizers.cache import DEFAULT_MAXSIZE, MODELS, ModelCache


def test_least_recently_used_entry_is_dropped_beyond_maxsize():
    cache = ModelCache(maxsize=2)
    a = cache.get_or_create("a", object)
    cache.get_or_create("b", object)
    assert cache.get_or_create("a", object) is a  # "a" is now the most recent
    cache.get_or_create("c", object)
    assert cache.keys() == ["a", "c"] and len(cache) == 2 and "b" not in cache


def test_concurrent_misses_build_one_model():
    cache = ModelCache(maxsize=4)
    calls: list[int] = []

    def slow_factory() -> object:
        calls.append(1)
        time.sleep(0.05)  # widen the race window; no timing is asserted
        return object()

    got: list[object] = []
    threads = [threading.Thread(target=lambda: got.append(cache.get_or_create("k", slow_factory))) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1 and len({id(g) for g in got}) == 1


def test_a_failed_load_is_not_cached_and_the_error_propagates():
    cache = ModelCache(maxsize=2)

    def broken() -> object:
        raise OSError("no weights")

    with pytest.raises(OSError, match="no weights"):
        cache.get_or_create("k", broken)
    assert "k" not in cache
    assert cache.get_or_create("k", lambda: 1) == 1


def test_bad_maxsize_and_clear():
    with pytest.raises(ValueError, match="maxsize"):
        ModelCache(maxsize=0)
    cache = ModelCache(maxsize=1)
    cache.get_or_create("x", object)
    cache.clear()
    assert len(cache) == 0


def test_the_process_cache_is_bounded():
    assert MODELS.maxsize == DEFAULT_MAXSIZE == 4


def test_no_featurizer_module_keeps_its_own_model_dict():
    """One cache idiom: no module-level dict of loaded models left in featurizers/."""
    import ast
    from pathlib import Path

    import mmfeat.featurizers as pkg

    offenders = []
    for path in Path(pkg.__path__[0]).glob("*.py"):
        for node in ast.parse(path.read_text()).body:
            targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) else []
            for t in targets:
                if isinstance(t, ast.Name) and t.id in ("_MODELS", "_CACHE", "_MODEL_CACHE"):
                    offenders.append(f"{path.name}:{t.id}")
    assert offenders == []
