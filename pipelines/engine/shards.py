"""One shard's work as plain data, so it computes the same in the run's process or on a worker.

:meth:`mmfeat.pipelines.engine.extract.FeatureSetJob.prepare_shard` (run by the process holding the feature set's
writer lock) decides each row's fate: an input error found while planning, a value reused from an earlier
ok row, or an input still to compute. :class:`ShardWork` carries that decision; :meth:`ShardWork.compute`
runs the featurizer over the distinct inputs and builds the part's rows. The in-process runner calls it
directly; the Dask/Ray runners (:mod:`mmfeat.pipelines.engine.runners`) pickle it to a worker.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import pyarrow as pa

from mmfeat.featurizers.base import Featurizer
from mmfeat.featurizers.item_progress import reporting_items
from mmfeat.pipelines.store.format import build_rows


@dataclass
class ShardWork:
    """A shard's rows ready to compute: everything a worker needs besides the featurizer.

    ``values`` holds the reused values (None where still to compute), ``errors``/``stages`` the input
    errors found while planning, ``todo`` maps each distinct input hash left to compute to the shard
    positions that share it, and ``inputs`` gives that hash's input. Plain data, so it pickles to a
    Dask or Ray worker; :meth:`compute` gives the same part wherever it runs.
    """

    index: int
    item_ids: list[str]
    source_hashes: list[str]
    values: list[Any]
    errors: list[str | None]
    stages: list[str | None]
    todo: dict[str, list[int]]
    inputs: dict[str, Any]
    reused: int = 0

    def compute(self, featurizer: Featurizer, schema: pa.Schema, sub_batch: int,
                on_progress: Callable[[int], None] | None = None) -> tuple[pa.Table, dict[str, Any]]:
        """Featurize the distinct inputs in sub-batches of ``sub_batch`` and build the part's rows.

        Args:
            featurizer: the featurizer (the run's, or a worker's copy with the same fingerprint).
            schema: the part's row schema.
            sub_batch: inputs per featurizer call.
            on_progress: called with the shard's rows done after every sub-batch, and inside a sub-batch
                whenever the featurizer reports finished inputs (:func:`~mmfeat.featurizers.item_progress.items_done`:
                the describer and the captioner do after each generation batch).

        Returns:
            ``(rows, stats)``: the part as an Arrow table, and its rows/errors/reused/computed counts
            (plus ``model_s`` / ``wait_s`` from a featurizer that decodes ahead of its model).

        Raises:
            RuntimeError: the featurizer returned a different number of results than inputs (a bug).
        """
        values, errors, stages = list(self.values), list(self.errors), list(self.stages)
        keys = list(self.todo)
        model_s = wait_s = 0.0
        done = len(self.item_ids) - sum(len(v) for v in self.todo.values())  # reused rows and input errors
        if on_progress is not None:
            on_progress(done)
        for start in range(0, len(keys), sub_batch):
            chunk = keys[start : start + sub_batch]
            inputs = [self.inputs[k] for k in chunk]
            with reporting_items(_within_call(on_progress, done, [len(self.todo[k]) for k in chunk])):
                results = featurizer(inputs)
            if len(results) != len(inputs):
                raise RuntimeError(f"{featurizer.name} returned {len(results)} results for {len(inputs)} inputs")
            pipeline = getattr(featurizer, "last_pipeline_stats", None)  # media featurizers: decode vs model time
            if pipeline:
                model_s += pipeline["model_s"]
                wait_s += pipeline["wait_s"]
            for k, res in zip(chunk, results):
                for local in self.todo[k]:
                    if res.ok:
                        values[local] = res.value
                    else:
                        errors[local], stages[local] = res.error, "featurize"
                done += len(self.todo[k])
            if on_progress is not None:
                on_progress(done)
        table = build_rows(schema, self.item_ids, values, errors, stages, self.source_hashes)
        stats: dict[str, Any] = {"rows": len(self.item_ids), "errors": sum(e is not None for e in errors),
                                 "reused": self.reused, "computed": len(keys)}
        if model_s or wait_s:
            stats |= {"model_s": model_s, "wait_s": wait_s}
        return table, stats


def _within_call(on_progress: Callable[[int], None] | None, done_before: int,
                 rows_per_input: list[int]) -> Callable[[int], None] | None:
    """A listener for one featurizer call: ``n`` more of its inputs finished -> the shard's rows done.

    The featurizer says how many inputs it finished, not which (the describer works in prompt-length
    order), so the rows of its first ``n`` inputs stand in for them: the count only grows, never passes
    the call's rows, and the exact count follows when the call returns.
    """
    if on_progress is None:
        return None
    cumulative = [0]
    for rows in rows_per_input:
        cumulative.append(cumulative[-1] + rows)
    finished = 0

    def listener(n: int) -> None:
        nonlocal finished
        finished = min(len(rows_per_input), finished + n)
        on_progress(done_before + cumulative[finished])

    return listener
