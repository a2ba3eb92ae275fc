"""Which featurizer a feature set runs: its own kind, or its fallback when the primary cannot be built here.

Split from :mod:`mmfeat.pipelines.engine.extract` (which re-exports these names): choosing is one job, running
another. The fallback may read another input (``fallback.input``), so the spec it runs under is returned
with it, and the input kind the manifest gives is checked against what the featurizer accepts.
"""
from __future__ import annotations

import logging

from mmfeat.featurizers.base import Featurizer
from mmfeat.pipelines.manifest import FeatureSetSpec

log = logging.getLogger("mmfeat.extract")


_INPUT_KINDS = {"image_uri": "image", "video_uri": "video", "audio_uri": "audio"}


def _check_input_kind(spec: FeatureSetSpec, featurizer: Featurizer) -> None:
    given = _INPUT_KINDS.get(spec.input.media or "", "text")
    accepted = getattr(featurizer, "accepts", (featurizer.input_kind,))
    if given not in accepted:
        raise ValueError(f"feature set {spec.name}: {featurizer.name} takes {featurizer.input_kind} input, "
                         f"but the manifest gives it {given} ({spec.input.model_dump(by_alias=True, exclude_none=True)})")


def fallback_spec(spec: FeatureSetSpec) -> FeatureSetSpec | None:
    """The spec the fallback featurizer runs under (it may read another input), or None."""
    if spec.fallback is None:
        return None
    fb = spec.fallback
    return spec.model_copy(update={"kind": fb.kind, "params": fb.params, "input": fb.input or spec.input,
                                   "fallback": None})


def build_featurizer_for(spec: FeatureSetSpec) -> tuple[Featurizer, FeatureSetSpec, str]:
    """The featurizer for a feature set, or its fallback when the primary cannot be built here
    (missing weights or a missing optional extra).

    Returns the featurizer, the spec it runs under (the fallback may read another input), and a
    note saying which one runs and why (empty when the primary runs).
    """
    from mmfeat.featurizers.registry import Unavailable, build_featurizer

    try:
        featurizer, effective, note = build_featurizer(spec.kind, dict(spec.params)), spec, ""
    except Unavailable as exc:  # missing weights or a missing extra; any other error is a real failure
        effective = fallback_spec(spec)  # type: ignore[assignment]
        if effective is None:
            raise
        log.warning("%s: %s -- using fallback %s", spec.name, exc, effective.kind)
        featurizer = build_featurizer(effective.kind, dict(effective.params))
        note = f"primary {spec.kind} unavailable ({exc}); ran fallback {effective.kind}"
    _check_input_kind(effective, featurizer)
    return featurizer, effective, note
