"""Training on store versions without Prefect: store versions + a manifest's interactions -> a trained,
evaluated model. The ``train-recommender`` flow (:mod:`mmfeat.pipelines.flows.train_flow`) is
:func:`run_training` plus a Prefect artifact; ``mmfeat.train`` and the CLI's pre-flight check import
this module, which imports no Prefect.

Steps: check the request (:func:`validate_train_request`: model, feature roles, store versions,
hyper-parameter names, seeds; nothing is loaded before it passes), load the manifest's interactions
(same adapter as extraction), optional k-core, split (MMRec's ``x_label`` when the source has one, else
per-user 8:1:1 seeded by ``split_seed``, or a global time split), save the split as data (its hash goes
in the run record), read each requested feature version aligned to the model's item index, train (one
config or a grid selected on validation; ``seed`` is the training seed), write the run record and a
Prefect table artifact. :func:`run_training` does all of it without Prefect (the flow calls it and adds
the artifact); ``compare_runs`` prints runs side by side and warns when they are not comparable.

Two seeds, two options: ``split_seed`` makes the split, ``seed`` (or the hyper-parameter ``seed``, the
same thing given twice must agree) seeds training. Both default to 2024, the value the single ``seed``
option had, so a request naming neither reproduces earlier records; the record holds both
(``split.seed`` and ``config.seed``).
"""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

from mmfeat.pipelines.manifest import Manifest, ManifestError, load_manifest
from mmfeat.pipelines.training.presets import PresetError, apply_preset, get_preset
from mmfeat.defaults import DEFAULT_SEED
from mmfeat.pipelines.store.feature_store import (FeatureStore, StoreError, default_store_root,
                                                  open_existing_store)


log = logging.getLogger(__name__)


def default_runs_dir() -> Path:
    """``$MMFEAT_RUNS``, else ``runs/`` in the working directory (never the install location)."""
    return Path(os.environ.get("MMFEAT_RUNS", Path.cwd() / "runs"))


# ---------------------------------------------------------------------------- pre-flight checks
class TrainRequestError(ValueError):
    """A train request that cannot run; the message is one line saying what is wrong and what to do."""


def known_models() -> list[str]:
    """Names of the models ``train_recommender`` can train (for ``mmfeat train --help``)."""
    from mmfeat.recommenders import model_names

    return model_names()


def resolve_training_seed(seed: int | None, overrides: dict[str, Any] | None,
                          grid: dict[str, list[Any]] | None = None) -> int | None:
    """The training seed of a request: ``seed`` or ``overrides["seed"]`` (the same option given two ways).

    Returns None when the grid varies the seed (each combination brings its own), else DEFAULT_SEED when
    neither is given.

    Raises:
        TrainRequestError: the two ways disagree, or the grid varies a seed also given as an option.
    """
    overrides, grid = overrides or {}, grid or {}
    given = overrides.get("seed")
    if seed is not None and given is not None and int(seed) != int(given):
        raise TrainRequestError(f"training seed given twice with different values (seed={seed}, "
                                f"--set seed={given}); give it once")
    if "seed" in grid:
        if seed is not None or given is not None:
            raise TrainRequestError("the grid varies 'seed' and a training seed is also given; drop one of them")
        return None
    return int(seed if seed is not None else given if given is not None else DEFAULT_SEED)


def _one_line(exc: Exception) -> str:
    """An exception's message on one line (multi-line manifest errors joined with '; ')."""
    return "; ".join(line.strip() for line in str(exc).splitlines() if line.strip())


def _check_hyper_parameters(model: str, overrides: dict[str, Any], grid: dict[str, list[Any]]) -> None:
    """Every ``--set`` / ``--grid`` key is declared by the model or the trainer; grids list values."""
    from mmfeat.recommenders import ConfigError, check_hyper_parameters

    for where, keys in (("--set", overrides), ("--grid", grid)):
        if "split_seed" in keys:
            raise TrainRequestError(f"'split_seed' in {where} is not a hyper-parameter; pass it as the train "
                                    "request's split_seed option")
        try:
            check_hyper_parameters(model, keys, where=where)
        except ConfigError as exc:
            raise TrainRequestError(str(exc)) from None
    for key, values in grid.items():
        if not isinstance(values, (list, tuple)) or not values:
            raise TrainRequestError(f"--grid {key} needs a non-empty list of values, got {values!r}")


def _check_roles(model: str, arms: list[dict[str, str]], overrides: dict[str, Any],
                 grid: dict[str, list[Any]]) -> None:
    """Each arm's feature roles are read by the model (rule: no feature the model would ignore)."""
    from mmfeat.recommenders import ConfigError, check_features, get_model_class, resolve_config

    cfg = resolve_config(model, overrides)
    alternatives = [{**cfg, k: v} for k, vals in grid.items() if k.endswith("_feature") for v in vals]
    cls = get_model_class(model)
    for feats in arms:
        try:
            check_features(model, feats, cfg, alternatives)
        except ConfigError as exc:
            raise TrainRequestError(str(exc)) from None
        if cls.modality_roles and getattr(cls, "requires_features", True) and not feats:
            raise TrainRequestError(f"{cls.model_name} needs item features: pass --feature ROLE=FEATURE_SET[@ref] "
                                    f"for a role among {', '.join(cls.modality_roles)}")


#: a ``versus`` arm that reads no item features (ID embeddings only): ``--versus ids``
IDS_ARM = "ids"


def versus_arms(features: dict[str, str] | None, versus) -> list[dict[str, str]]:
    """The feature assignment of every run a request makes: ``features`` first, then one per ``versus`` arm.

    Args:
        features: role -> ``"feature_set[@ref]"`` of the first run.
        versus: None; one arm (role -> ref, swapped into ``features``); or a list of arms, each such a
            mapping or :data:`IDS_ARM` (``"ids"``: no item features at all, e.g. SASRec on ID embeddings).

    Returns:
        One role -> ref mapping per run.

    Raises:
        TrainRequestError: an arm that is neither a mapping nor ``"ids"``.
    """
    features = dict(features or {})
    if not versus:
        return [features]
    arms = [versus] if isinstance(versus, dict) else list(versus)
    out = [features]
    for arm in arms:
        if arm == IDS_ARM:
            out.append({})
        elif isinstance(arm, dict):
            out.append({**features, **arm})
        else:
            raise TrainRequestError(f"a versus arm is ROLE=FEATURE_SET[@ref] or {IDS_ARM!r}, got {arm!r}")
    return out


def _check_store_ref(store: FeatureStore, m: Manifest, manifest: str, flag: str, role: str, ref: str,
                     want: str = "embedding") -> None:
    """``ref`` ("feature_set[@version or alias]") names a published version of the manifest's dataset holding
    ``want`` (``embedding``, or ``codes`` for a generative model's semantic IDs)."""
    fs, _, version = ref.partition("@")
    dataset = m.store_dataset
    if not fs:
        raise TrainRequestError(f"{flag} {role}={ref}: no feature set name; write {role}=FEATURE_SET[@ref]")
    extract = f"run `mmfeat extract {manifest} --feature-set {fs}` first"
    if fs not in store.feature_sets(dataset):
        from mmfeat.recommenders.config import did_you_mean

        known = sorted(set(store.feature_sets(dataset)) | {f.name for f in m.feature_sets})
        if fs not in known:  # a typo: suggest the real name, never a command that would repeat the typo
            raise TrainRequestError(f"{flag} {role}={ref}: no feature set {fs!r} in manifest {m.name!r} or in the "
                                    f"store {store.root};{did_you_mean(fs, known) or ' known: ' + ', '.join(known)}")
        raise TrainRequestError(f"{flag} {role}={ref}: feature set {fs!r} has no version in the store "
                                f"{store.root} for dataset {dataset!r}; {extract}")
    try:
        resolved = store.resolve(dataset, fs, version or "latest")
    except StoreError as exc:
        todo = extract if not version else "list them with `mmfeat store list`"
        raise TrainRequestError(f"{flag} {role}={ref}: {_one_line(exc)}; {todo}") from None
    kind = store.manifest(dataset, fs, resolved).get("output", {}).get("kind")
    if kind is not None and kind != want:
        fix = ("pass a semantic_ids feature set (codes built from an embedding version)" if want == "codes" else
               "pass an embedding feature set (e.g. one computed from it)")
        raise TrainRequestError(f"{flag} {role}={ref}: {dataset}/{fs}/{resolved} holds {kind}, not "
                                f"{'embeddings' if want == 'embedding' else want}; {fix}")


def validate_train_request(
    manifest: str,
    *,
    model: str,
    features: dict[str, str] | None,
    versus: dict[str, str] | list | None,
    overrides: dict[str, object] | None,
    grid: dict[str, list[object]] | None,
    store_root: str | None = None,
    data_root: str | None = None,
    seed: int | None = None,
    split: str | None = None,
    history: str | None = None,
    min_rating: float | None = None,
    k_core: int = 0,
) -> None:
    """Check everything a train request needs before Prefect starts or any data loads.

    Checks, in order: the model is known; every ``--set`` / ``--grid`` key is a declared hyper-parameter;
    the training seed is not given twice with different values; every feature role (of ``features`` and
    of ``features`` with ``versus`` swapped in) is read by the model; the manifest is valid; every feature
    reference names a published embedding version of the manifest's dataset in the store.

    Args:
        manifest: manifest name or path.
        model: model name (case-insensitive).
        features: role -> ``"feature_set[@ref]"`` (``ref``: version id, unique prefix or alias; default latest).
        versus: role -> ``"feature_set[@ref]"`` swapped into ``features`` for a second run, or a list of
            such arms and ``"ids"`` (a run without item features), one run each (:func:`versus_arms`).
        overrides: hyper-parameters (``--set``).
        grid: hyper-parameter -> values (``--grid``).
        store_root: feature store root (default: the store's default root).
        data_root: overrides the manifest's data root.
        seed: the training seed option, when given (checked against ``overrides["seed"]``).
        split: the split method, when given (a sequential model needs ``loo``, its default; a CTR model
            ``time``, its default).
        history: a CTR model's history selection (``last`` / ``gsu``), when given (CTR models only).
        min_rating, k_core: interaction filters (not for CTR models: their labels come from the ratings).

    Raises:
        TrainRequestError: one line saying what is wrong and what to do.
    """
    from mmfeat.recommenders import UnknownModelError, get_model_class

    try:
        model = get_model_class(model).model_name
    except UnknownModelError as exc:
        raise TrainRequestError(str(exc)) from None
    if model_task(model) == "sequential" and split not in (None, "loo"):
        raise TrainRequestError(f"{model} is a sequential model: it is trained and evaluated leave-one-out "
                                f"(--split loo, its default), not with --split {split}")
    task = model_task(model)
    if task == "ctr":
        if split not in (None, "time"):
            raise TrainRequestError(f"{model} is a CTR model: its set is split by time (--split time, the default), "
                                    f"not with --split {split}")
        if min_rating is not None or k_core:
            raise TrainRequestError(f"{model} is a CTR model: its labels come from all interactions (rating >= 4 is "
                                    f"a click), so --min-rating / --k-core do not apply; drop them")
        if history not in (None, *CTR_HISTORIES):
            raise TrainRequestError(f"--history {history!r} is not one of {', '.join(CTR_HISTORIES)}")
        if history == "gsu" and not features:
            raise TrainRequestError("--history gsu retrieves history items by embedding cosine: pass "
                                    "--feature text=FEATURE_SET")
        if history == "gsu" and "max_len" in (grid or {}):
            raise TrainRequestError("--history gsu selects max_len items per row when the set is built: grid over "
                                    "max_len with --history last, or run one max_len at a time")
    elif history is not None:
        raise TrainRequestError(f"--history applies to the CTR models (DIN, QIN), not to {model}")
    overrides, grid = dict(overrides or {}), dict(grid or {})
    _check_hyper_parameters(model, overrides, grid)
    resolve_training_seed(seed, overrides, grid)
    features = dict(features or {})
    arms = versus_arms(features, versus)
    _check_roles(model, arms, overrides, grid)
    try:
        m = load_manifest(manifest, data_root=data_root)
    except ManifestError as exc:
        raise TrainRequestError(_one_line(exc)) from None
    extra = [a for a in ([versus] if isinstance(versus, dict) else list(versus or [])) if isinstance(a, dict)]
    # features to read: a store root that does not exist is a mistyped path, not a store to extract into
    store = open_existing_store(store_root) if features or extra else FeatureStore(store_root or default_store_root())
    kinds = getattr(get_model_class(model), "feature_kinds", {})
    for flag, refs in (("--feature", features), *(("--versus", a) for a in extra)):
        for role, ref in refs.items():
            _check_store_ref(store, m, manifest, flag, role, ref, kinds.get(role, "embedding"))


#: a CTR set's history selections (``--history``)
CTR_HISTORIES = ("last", "gsu")


def model_task(model: str) -> str:
    """``"sequential"`` for the next-item models (leave-one-out sequences), ``"ctr"`` for the click models
    (labelled impressions), else ``"general"`` (user-item)."""
    from mmfeat.recommenders import get_model_class

    return getattr(get_model_class(model), "task", "general")


def load_training_data(
    manifest: str,
    features: dict[str, str],
    *,
    task: str = "general",
    store_root: str | None = None,
    split: str | None = None,
    split_seed: int | None = None,
    min_rating: float | None = None,
    k_core: int = 0,
    runs_dir: str | None = None,
    data_root: str | None = None,
    history: str | None = None,
    seq_len: int = 64,
):
    """Interactions -> split -> :class:`mmfeat.recommenders.InteractionData` (``task="general"``),
    :class:`mmfeat.recommenders.ctr.CTRData` (``task="ctr"``: :func:`mmfeat.pipelines.training.ctr_data.load_ctr_data`,
    ``history`` and ``seq_len`` select its item_seq) or
    :class:`mmfeat.recommenders.sequential.SequenceData` (``task="sequential"``: leave-one-out, the default
    split for it) with aligned store features.

    ``split_seed`` seeds the random and cold splits (default DEFAULT_SEED); other methods do not use it, and the
    record then says ``seed: None`` (a seed given for them is reported with a warning). A leave-one-out
    split records how many users it dropped for having fewer than 3 interactions.
    """
    from mmfeat.pipelines.training.interactions import filtered_split
    from mmfeat.recommenders import from_split_frame
    from mmfeat.recommenders.sequential import from_loo_frame

    if task == "ctr":
        from mmfeat.pipelines.training.ctr_data import load_ctr_data

        data, info = load_ctr_data(manifest, features, store_root=store_root, data_root=data_root,
                                   seq_len=seq_len, history=history or "last")
        info.update(split={"method": data.info["split"]["method"], "seed": None}, split_hash=data.split_hash,
                    split_file="none (the CTR set is rebuilt from the source; its hash is split_hash)")
        return data, info
    if task == "sequential":
        split = split or "loo"
    m = load_manifest(manifest, data_root=data_root)
    seed_used = int(split_seed) if split_seed is not None else DEFAULT_SEED
    split_df, n_kept, source_fp, method = filtered_split(m, split=split, split_seed=seed_used,
                                                         min_rating=min_rating, k_core=k_core)
    seeded = method in ("random", "cold")
    if not seeded and split_seed is not None:
        log.warning("split_seed=%s is not used: the %s split is not random", split_seed, method)
    split_info = {"method": method, "seed": seed_used if seeded else None}
    for key in ("dropped_users", "cold_items"):
        if key in split_df.attrs:
            split_info[key] = split_df.attrs[key]
    final, split_hash = _save_split_file(split_df, m.store_dataset, runs_dir)
    store = FeatureStore(store_root or default_store_root())
    matrices, versions, codes = {}, {}, None
    for modality, ref in features.items():
        fs, _, version = ref.partition("@")
        if store.manifest(m.store_dataset, fs, version or "latest")["output"]["kind"] == "codes":
            if task != "sequential" or codes is not None:
                raise TrainRequestError(f"{modality}={ref}: semantic IDs (codes) are read by the generative models "
                                        f"(TIGER), one codes version per run")
            code_matrix, code_ids, resolved = store.read_codes(m.store_dataset, fs, version or "latest")
            codes = (code_ids, code_matrix)
            versions[modality] = f"{m.store_dataset}/{fs}/{resolved}"
            continue
        read = store.read_matrix(m.store_dataset, fs, version or "latest")
        matrices[modality] = (read.item_ids, read.matrix)
        versions[modality] = f"{m.store_dataset}/{fs}/{read.version}"
    extra = {"codes": codes} if codes is not None else {}
    build = from_loo_frame if task == "sequential" else from_split_frame
    data = build(split_df, features=matrices, feature_versions=versions, split_hash=split_hash,
                 split_info=split_info, **extra)
    info = {"manifest": m.name, "source_fingerprint": source_fp, "split_file": str(final),
            "interactions": n_kept, "split": split_info, **data.summary()}
    return data, info


def _save_split_file(split_df, dataset: str, runs_dir: str | None) -> tuple[Path, str]:
    """Write the split under ``<runs>/splits/<dataset>-<hash12>.parquet``; returns (path, content hash)."""
    from mmfeat.recommenders import save_split

    split_dir = Path(runs_dir or default_runs_dir()) / "splits"
    split_dir.mkdir(parents=True, exist_ok=True)
    tmp = split_dir / f"{dataset}-{os.getpid()}.parquet"
    split_hash = save_split(split_df, tmp)
    final = split_dir / f"{dataset}-{split_hash[:12]}.parquet"
    os.replace(tmp, final)
    return final, split_hash


def compare_runs(paths: list[str]) -> str:
    """Side-by-side table of run records (run folders or record.json files), with dataset and split hash,
    then one ``warning:`` line per reason the runs are not comparable (dataset, split, metrics protocol).

    Raises:
        FileNotFoundError: a path holds no run record.
    """
    from mmfeat.pipelines.training.report import compare_text, load_records

    return compare_text(load_records(paths))


def run_training(
    manifest: str,
    *,
    model: str,
    features: dict[str, str] | None = None,
    versus: dict[str, str] | list | None = None,
    overrides: dict[str, Any] | None = None,
    grid: dict[str, list[Any]] | None = None,
    split: str | None = None,
    split_seed: int | None = None,
    seed: int | None = None,
    min_rating: float | None = None,
    k_core: int = 0,
    store_root: str | None = None,
    runs_dir: str | None = None,
    data_root: str | None = None,
    logger: logging.Logger | logging.LoggerAdapter | None = None,
    progress: bool | None = None,
    history: str | None = None,
    preset: str | None = None,
) -> dict[str, Any]:
    """Train and evaluate a recommender on a manifest's interactions and store features, without Prefect.

    The ``train-recommender`` flow is this function plus a Prefect artifact; notebooks, benchmarks and
    tests call it directly and get the same split, seeds, records and checks. The whole request is checked
    (:func:`validate_train_request`) before any data loads.

    Args:
        manifest: manifest name (``manifests/NAME.yaml``) or path: whose interactions to train on.
        model: a registered model, case-insensitive (``mmfeat.recommenders.model_names()``).
        features: modality role -> ``"feature_set[@ref]"`` (``ref``: version id, unique prefix or alias;
            default ``latest``), e.g. ``{"text": "title_minilm", "image": "description_minilm"}``.
        versus: role -> ``"feature_set[@ref]"`` swapped into ``features`` for a second run on the same split,
            seed and hyper-parameters (its result is under ``"versus"``), or a list of such arms and
            ``"ids"`` (a run without item features), one run each (all results under ``"arms"``).
        overrides: hyper-parameters over the model's defaults (e.g. ``{"epochs": 50}``).
        grid: hyper-parameter -> values; every combination is trained and the best is selected on VALID.
        split: ``given`` | ``random`` | ``time`` (default: ``given`` when the source has a split, else random).
        split_seed: seed of the random split (default DEFAULT_SEED).
        seed: training seed (default DEFAULT_SEED; same as ``overrides["seed"]``).
        min_rating: keep interactions rated at least this.
        k_core: iteratively keep users and items with at least this many interactions.
        store_root: feature store root (default ``$MMFEAT_STORE``, else ``./store``).
        runs_dir: where run folders and splits go (default ``$MMFEAT_RUNS``, else ``./runs``).
        data_root: overrides the manifest's data root.
        logger: where progress lines go (the flow passes its run logger; default this module's logger).
        progress: an epoch progress bar (default: only when stderr is a terminal, so a served
            deployment's log gets no bar redraws).
        history: CTR models: ``last`` (default) or ``gsu`` (MUSE's retrieval of the ``max_len`` history items
            most similar to the target by embedding cosine).
        preset: a published baseline's settings and search space (:mod:`mmfeat.pipelines.training.presets`,
            e.g. ``din-mmctr``); ``overrides`` and ``grid`` win over it; the records name it.

    Returns:
        ``{"best": record, "runs": [run ids], "records": [records], "data": data summary, "versus": same
        keys for the second run or None, "arms": every run's result, the first included}``; a record is the run's ``record.json`` as a dict (metrics at
        the best epoch in ``best_valid`` / ``test``, ``best_epoch``, ``s_per_epoch``, ``record_path``,
        ``dataset``, ...).

    Raises:
        TrainRequestError: the request is invalid (see :func:`validate_train_request`), or the split has
            no validation users and early stopping is on; an unknown preset or one for another model.

    Example:
        >>> from mmfeat.pipelines.flows.train_flow import run_training
        >>> out = run_training("microlens", model="FREEDOM",  # doctest: +SKIP
        ...                    features={"text": "title_minilm", "image": "description_minilm"},
        ...                    overrides={"epochs": 20})
        >>> out["best"]["test"]["recall@20"], out["best"]["record_path"]  # doctest: +SKIP
    """
    model, overrides, grid = resolve_preset(preset, model, overrides, grid)
    if preset:
        (logger or log).info("preset %s: settings %s, grid %s (from %s)", get_preset(preset).name, overrides,
                             grid, get_preset(preset).source)
    validate_train_request(manifest, model=model, features=features, versus=versus, overrides=overrides,
                           grid=grid, store_root=store_root, data_root=data_root, seed=seed, split=split,
                           history=history, min_rating=min_rating, k_core=k_core)
    arms = versus_arms(features, versus)
    request = {"split": split, "split_seed": split_seed, "min_rating": min_rating, "k_core": k_core,
               "store_root": store_root, "runs_dir": runs_dir, "data_root": data_root, "preset": preset}
    if model_task(model) == "ctr":
        request.update(history=history, seq_len=_ctr_seq_len(model, overrides, grid))
    bar = sys.stderr.isatty() if progress is None else progress
    results = [_train_arm(manifest, model, feats, overrides, grid, seed, request, logger or log, bar)
               for feats in arms]
    return {**results[0], "versus": results[1] if len(results) > 1 else None, "arms": results}


def resolve_preset(preset: str | None, model: str | None, overrides: dict[str, Any] | None,
                   grid: dict[str, list[Any]] | None) -> tuple[str, dict[str, Any] | None, dict[str, list[Any]] | None]:
    """:func:`apply_preset` with its error as a :class:`TrainRequestError` (no preset: the request as given)."""
    if preset is None:
        return model, overrides, grid
    try:
        model, overrides, grid = apply_preset(preset, model, overrides, grid)
    except PresetError as exc:
        raise TrainRequestError(str(exc)) from None
    return model, overrides, grid or None


def _ctr_seq_len(model: str, overrides: dict[str, Any] | None, grid: dict[str, list[Any]] | None) -> int:
    """The set's item_seq length: the longest ``max_len`` the runs read (a model keeps its last max_len)."""
    from mmfeat.recommenders import resolve_config

    return max([int(resolve_config(model, overrides)["max_len"]), *(int(v) for v in (grid or {}).get("max_len", []))])


def _train_arm(manifest: str, model: str, features: dict[str, str], overrides: dict[str, Any] | None,
               grid: dict[str, list[Any]] | None, seed: int | None, request: dict[str, Any],
               logger: logging.Logger | logging.LoggerAdapter, progress: bool) -> dict[str, Any]:
    """One feature assignment: load the split and features, train (or grid-search), annotate the records."""
    from dataclasses import asdict

    from mmfeat.recommenders import ConfigError, fit, grid_search

    request = dict(request)
    preset = request.pop("preset", None)
    data, info = load_training_data(manifest, features, task=model_task(model), **request)
    logger.info("data: %s", info)
    cfg = dict(overrides or {})
    training_seed = resolve_training_seed(seed, overrides, grid)
    if training_seed is not None:
        cfg["seed"] = training_seed
    out_dir = request["runs_dir"] or str(default_runs_dir())
    try:
        if grid:
            result = grid_search(data, model, grid, cfg, out_dir, progress=progress)
            runs, best_id = [asdict(r) for r in result.runs], result.best.run_id
        else:
            runs = [asdict(fit(data, model, cfg, out_dir, progress=progress))]
            best_id = runs[0]["run_id"]
    except ConfigError as exc:  # e.g. no validation users: known only once the split exists
        raise TrainRequestError(str(exc)) from None
    dataset = load_manifest(manifest, data_root=request["data_root"]).store_dataset
    for run in runs:
        _annotate_record(run, dataset=dataset, manifest=info["manifest"],
                         **({"preset": get_preset(preset).name} if preset else {}))
    best = next(r for r in runs if r["run_id"] == best_id)
    vm = str(best["config"].get("valid_metric", "recall@20")).lower()
    logger.info("best run %s: valid %s %.4f, test %s %.4f", best["run_id"], vm,
                best["best_valid"].get(vm, float("nan")), vm, best["test"].get(vm, float("nan")))
    return {"best": best, "runs": [r["run_id"] for r in runs], "records": runs, "data": info, "grid": bool(grid)}


def _annotate_record(run: dict[str, Any], **fields: Any) -> None:
    """Add the dataset and manifest to a run and its record.json (atomically), so ``compare`` can tell
    runs on different datasets apart even when they read no item features."""
    run.update(fields)
    path = run.get("record_path")
    if not path or not Path(path).is_file():
        return
    record = {**json.loads(Path(path).read_text()), **fields}
    tmp = Path(path).with_suffix(".json.tmp")
    tmp.write_text(json.dumps(record, indent=2))
    os.replace(tmp, path)
