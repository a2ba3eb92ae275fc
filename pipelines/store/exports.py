"""Exports of store versions into formats other repositories read unchanged.

- MMRec (:func:`export_mmrec`): a complete MMRec dataset folder -- ``<name>.inter`` (``userID``,
  ``itemID``, ``timestamp``, ``x_label`` of the split the recommenders use), ``text_feat.npy`` /
  ``image_feat.npy`` (float32, row k = MMRec itemID k, every item covered), ``u_id_mapping.csv`` /
  ``i_id_mapping.csv`` and the dataset config ``<name>.yaml`` for ``MMRec/src/configs/dataset/``.
- Hugging Face ``datasets`` (:func:`export_hf`): ``Dataset.save_to_disk`` of the version's rows;
  the version's ``_manifest.json`` is the dataset's ``info.description`` (JSON), so
  ``load_from_disk(...).info`` says where the vectors came from.
- FuxiCTR / the MMCTR challenge (:func:`export_fuxictr`): a complete MicroLens_1M_MMCTR folder
  (``train/valid/test.parquet``, ``item_info.parquet`` row k = item k, the FuxiCTR dataset config).

Every export writes ``_export.json`` naming the exact versions (and split) it came from, and every
filled row (item without a usable feature row) is counted and named there.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Sequence

import numpy as np

from mmfeat.pipelines.store.feature_store import FeatureStore, StoreError, file_sha256
from mmfeat.recommenders.data import natural_key as _natural_key
from mmfeat.recommenders.data import natural_order
from mmfeat.defaults import DEFAULT_SEED

if TYPE_CHECKING:
    import pandas as pd

    from mmfeat.pipelines.manifest import Manifest

#: file stem -> the MMRec dataset-config key that names it
MMREC_FEATURE_KEYS = {"text_feat": "text_feature_file", "image_feat": "vision_feature_file"}


# ---------------------------------------------------------------------------- ids and orders
def read_item_order(path: str | os.PathLike[str], id_column: str | None = None) -> list[str]:
    """An item order from a file.

    Args:
        path: MMRec's ``i_id_mapping.csv`` (``asin<TAB>itemID``; returned ordered by itemID), a csv
            with an ``item_id`` column, or a plain file with one id per line.
        id_column: for an MMRec mapping, which column holds the id to return (default ``asin``;
            ``"itemID"`` returns ``"0".."n-1"``, the ids MMRec-layout sources use).

    Returns:
        The ids, row k = item k.

    Raises:
        StoreError: an empty file, or a mapping whose itemIDs are not exactly 0..n-1.

    Example:
        >>> read_item_order("data/baby/i_id_mapping.csv")[:2]  # doctest: +SKIP
        ['0439893577', '048645195X']
    """
    path = Path(path)
    text = path.read_text().splitlines()
    if not text:
        raise StoreError(f"item order file {path} is empty")
    delim = "\t" if "\t" in text[0] else ","
    header = [h.strip() for h in text[0].split(delim)]
    rows = [r for r in csv.reader(text[1:], delimiter=delim) if r]
    if "itemID" in header:  # MMRec mapping: original id -> dense index
        k = header.index("itemID")
        src = header.index(id_column) if id_column in header else (
            header.index("asin") if "asin" in header else 1 - k)
        pairs = sorted(((int(r[k]), r[src].strip()) for r in rows), key=lambda p: p[0])
        if [i for i, _ in pairs] != list(range(len(pairs))):
            raise StoreError(f"{path}: itemID column is not 0..n-1")
        return [a for _, a in pairs]
    if "item_id" in header:
        return [r[header.index("item_id")].strip() for r in rows]
    return [line.strip() for line in text if line.strip()]


def _check_fill(fill_missing: float | str | None) -> None:
    if isinstance(fill_missing, str) and fill_missing != "mean":
        raise ValueError(f"fill_missing must be 'mean', a number or None (error on missing rows), not {fill_missing!r}")


def _write_mapping(path: Path, header: tuple[str, str], ids: Sequence[str], start: int = 0) -> None:
    """MMRec's mapping layout: ``<original id><TAB><dense id>``, one row per dense id (from ``start``)."""
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh, delimiter="\t", lineterminator="\n")
        w.writerow(header)
        w.writerows((item, i) for i, item in enumerate(ids, start=start))


def _feature_file(store: FeatureStore, dataset: str, ref: str, order: Sequence[str],
                  fill_missing: float | str | None, path: Path) -> dict[str, Any]:
    """Write one feature matrix aligned to ``order``; its record says what was filled and how."""
    fs, _, version = ref.partition("@")
    read = store.read_matrix(dataset, fs, version or "latest", list(order), fill_missing=fill_missing)
    np.save(path, np.ascontiguousarray(read.matrix, dtype=np.float32))
    return {"feature_set": fs, "version": read.version, "shape": list(read.matrix.shape),
            "fill_missing": fill_missing if read.missing else None,
            "missing_count": len(read.missing), "missing": read.missing, "sha256": file_sha256(path)}


# ---------------------------------------------------------------------------- MMRec
def split_frame(m: "Manifest", *, split: str | None = None, split_seed: int = DEFAULT_SEED,
                min_rating: float | None = None, k_core: int = 0) -> tuple["pd.DataFrame", str, str]:
    """``(split_df, source_fingerprint, method)`` exactly as ``train-recommender`` splits
    (:func:`mmfeat.pipelines.training.interactions.filtered_split`)."""
    from mmfeat.pipelines.training.interactions import filtered_split

    df, _n, source_fp, method = filtered_split(m, split=split, split_seed=split_seed, min_rating=min_rating,
                                               k_core=k_core)
    return df, source_fp, method


def _mmrec_item_order(split_df: "pd.DataFrame", item_order: str | Path | Sequence[str] | None) -> list[str]:
    """MMRec itemIDs 0..n-1 over exactly the interacted items: a given order, else the ids' natural order.

    MMRec sets ``item_num = max(itemID) + 1`` from the ``.inter``, so an order listing items without
    interactions would misalign the feature rows; such an order is refused, as is one that lacks an item.
    """
    present = natural_order(split_df["item_id"])
    if item_order is None:
        return present
    order = read_item_order(item_order) if isinstance(item_order, (str, os.PathLike)) else [str(i) for i in item_order]
    if len(set(order)) != len(order):
        raise StoreError("item_order lists some item ids twice")
    lacking = sorted(set(present) - set(order), key=_natural_key)
    extra = sorted(set(order) - set(present), key=_natural_key)
    if lacking:
        raise StoreError(f"item_order lacks {len(lacking)} interacted items (first: {lacking[:5]})")
    if extra:
        raise StoreError(f"item_order has {len(extra)} items without interactions after filtering (first: "
                         f"{extra[:5]}); MMRec's itemIDs must be 0..n-1 over the interacted items: drop them "
                         f"from the order or export without k_core/min_rating")
    return order


def _write_inter(path: Path, split_df: "pd.DataFrame", users: list[str], items: list[str]) -> dict[str, int]:
    """``userID itemID [timestamp] x_label``, tab-separated with a header (what RecDataset reads)."""
    import pandas as pd

    uidx = pd.Index(users).get_indexer(split_df["user_id"].astype(str))
    iidx = pd.Index(items).get_indexer(split_df["item_id"].astype(str))
    out = pd.DataFrame({"userID": uidx, "itemID": iidx})
    if "timestamp" in split_df.columns:
        out["timestamp"] = split_df["timestamp"].to_numpy()
    out["x_label"] = split_df["split"].to_numpy(np.int64)
    out = out.sort_values(["userID", "x_label"], kind="mergesort")
    out.to_csv(path, sep="\t", index=False, lineterminator="\n")
    return {str(k): int(v) for k, v in out["x_label"].value_counts().sort_index().items()}


#: MMRec's default ``topk`` (src/configs/overall.yaml) and ``valid_metric``
MMREC_TOPK = (5, 10, 20, 50)
MMREC_VALID_K = 20


def _small_catalogue_overrides(n_items: int) -> dict[str, Any]:
    """MMRec ranks the top ``max(topk)`` items with ``torch.topk``, which fails on fewer items than
    that (50 by default): a small catalogue gets the default cut-offs it can rank, recorded."""
    if n_items >= max(MMREC_TOPK):
        return {}
    topk = [k for k in MMREC_TOPK if k <= n_items] or [n_items]
    out: dict[str, Any] = {"topk": topk}
    if MMREC_VALID_K not in topk:
        out["valid_metric"] = f"Recall@{max(topk)}"
    return out


def _write_mmrec_config(path: Path, name: str, stems: Sequence[str], has_time: bool,
                        n_items: int) -> dict[str, Any]:
    """The dataset config MMRec loads from ``src/configs/dataset/<name>.yaml``."""
    import yaml

    cfg: dict[str, Any] = {"USER_ID_FIELD": "userID", "ITEM_ID_FIELD": "itemID"}
    if has_time:
        cfg["TIME_FIELD"] = "timestamp"
    cfg.update({"filter_out_cod_start_users": True, "inter_file_name": f"{name}.inter",
                "inter_splitting_label": "x_label"})
    cfg.update({MMREC_FEATURE_KEYS[s]: f"{s}.npy" for s in stems})
    cfg["field_separator"] = "\t"
    cfg.update(_small_catalogue_overrides(n_items))
    head = (f"# MMRec dataset config written by mmfeat: copy to MMRec/src/configs/dataset/{name}.yaml and put\n"
            f"# this folder at <data_path>/{name}/ (MMRec's default data_path is ../data/ from src/).\n")
    path.write_text(head + yaml.safe_dump(cfg, sort_keys=False))
    return cfg


def export_mmrec(
    store: FeatureStore,
    manifest: str | os.PathLike[str],
    features: dict[str, str],
    out: str | os.PathLike[str],
    *,
    split: str | None = None,
    split_seed: int = DEFAULT_SEED,
    min_rating: float | None = None,
    k_core: int = 0,
    item_order: str | os.PathLike[str] | Sequence[str] | None = None,
    fill_missing: float | str | None = "mean",
    data_root: str | None = None,
    name: str | None = None,
) -> dict:
    """Write a dataset folder MMRec's own ``main.py`` trains from as written.

    The interactions and split are the ones ``train-recommender`` uses for the same options
    (:func:`split_frame`); the split's sha256 (the run records' ``split_hash``) is recorded. Users
    and items get dense ids 0..n-1 in the dataset's natural id order (or ``item_order``), written
    as ``u_id_mapping.csv`` / ``i_id_mapping.csv``. Every item gets a feature row: items without an
    ok row in the version are filled by ``fill_missing`` and listed in ``_export.json``.

    Args:
        store: the feature store.
        manifest: manifest name or path (its source gives the interactions, its dataset the store namespace).
        features: MMRec file stem -> ``feature_set[@ref]``; stems are ``text_feat`` and/or ``image_feat``.
        out: the dataset folder; its name is MMRec's dataset name unless ``name`` is given.
        split, split_seed, min_rating, k_core: as ``mmfeat train`` (``split`` None: the source's own
            split when it has one, else seeded per-user random 8:1:1).
        item_order: an ``i_id_mapping.csv`` / id file, or a list of ids, fixing the itemIDs.
        fill_missing: ``"mean"`` (mean of the version's ok rows), a number, or None to raise instead.
        data_root: override of the manifest's data root.
        name: MMRec dataset name (file names ``<name>.inter`` / ``<name>.yaml``; default the folder name).

    Returns:
        The ``_export.json`` content.

    Raises:
        StoreError: missing rows with ``fill_missing=None``, an item order that does not match the
            interacted items, or an unknown feature stem.
        ValueError: ``min_rating`` on a source without ratings, a bad ``fill_missing``.

    Example:
        >>> export_mmrec(store, "microlens", {"text_feat": "title_minilm"}, "exports/microlens")  # doctest: +SKIP
        # then: cp exports/microlens/microlens.yaml MMRec/src/configs/dataset/ && cp -r exports/microlens MMRec/data/
        #       cd MMRec/src && python main.py -m FREEDOM -d microlens
    """
    from mmfeat.pipelines.manifest import load_manifest
    from mmfeat.recommenders.data import hash_split_frame

    bad = sorted(set(features) - set(MMREC_FEATURE_KEYS))
    if bad:
        raise StoreError(f"MMRec reads only {sorted(MMREC_FEATURE_KEYS)} feature files, not {bad}")
    _check_fill(fill_missing)
    m = load_manifest(manifest, data_root=data_root)
    split_df, source_fp, method = split_frame(m, split=split, split_seed=split_seed, min_rating=min_rating, k_core=k_core)
    users = natural_order(split_df["user_id"])
    items = _mmrec_item_order(split_df, item_order)
    outp = Path(out)
    name = name or outp.resolve().name
    outp.mkdir(parents=True, exist_ok=True)
    files = {f"{stem}.npy": _feature_file(store, m.store_dataset, ref, items, fill_missing, outp / f"{stem}.npy")
             for stem, ref in features.items()}
    counts = _write_inter(outp / f"{name}.inter", split_df, users, items)
    _write_mapping(outp / "u_id_mapping.csv", ("user_id", "userID"), users)
    _write_mapping(outp / "i_id_mapping.csv", ("asin", "itemID"), items)
    cfg = _write_mmrec_config(outp / f"{name}.yaml", name, list(features), "timestamp" in split_df.columns,
                              len(items))
    record = {
        "format": "mmrec", "name": name, "manifest": m.name, "dataset": m.store_dataset,
        "source_fingerprint": source_fp, "n_users": len(users), "n_items": len(items),
        "item_order": "given" if item_order is not None else "natural id order of the interacted items",
        "split": {"method": method, "seed": split_seed, "min_rating": min_rating, "k_core": k_core,
                  "sha256": hash_split_frame(split_df), "rows_by_x_label": counts},
        "inter": {"file": f"{name}.inter", "sha256": file_sha256(outp / f"{name}.inter")},
        "config": f"{name}.yaml", "config_overrides": _small_catalogue_overrides(len(items)), "files": files,
    }
    (outp / "_export.json").write_text(json.dumps(record, indent=2, default=str))
    return record



def export_mmrec_features(
    store: FeatureStore,
    dataset: str,
    features: dict[str, str],
    out_dir: str | os.PathLike[str],
    *,
    item_order: str | os.PathLike[str] | Sequence[str] | None = None,
    fill_missing: float | str | None = "mean",
) -> dict:
    """Only the feature files and ``i_id_mapping.csv`` (no ``.inter``): for aligning new features to
    an existing MMRec dataset folder, or a store dataset without a manifest.

    Without ``item_order`` the items are every row (ok or failed) of the first feature set's version
    in natural id order; failed rows are filled by ``fill_missing`` and listed. Prefer
    :func:`export_mmrec`, which writes a folder MMRec trains from.

    Example:
        >>> export_mmrec_features(store, "baby", {"image_feat": "cover_clip"}, "MMRec/data/baby",
        ...                       item_order="MMRec/data/baby/i_id_mapping.csv")  # doctest: +SKIP
    """
    _check_fill(fill_missing)
    if not features:
        raise StoreError("no features to export")
    if item_order is None:
        fs, _, ref = next(iter(features.values())).partition("@")
        ids = store.read_table(dataset, fs, ref or "latest", columns=["item_id"]).column("item_id").to_pylist()
        order = natural_order(ids)
    elif isinstance(item_order, (str, os.PathLike)):
        order = read_item_order(item_order)
    else:
        order = [str(i) for i in item_order]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = {f"{stem}.npy": _feature_file(store, dataset, ref, order, fill_missing, out / f"{stem}.npy")
             for stem, ref in features.items()}
    _write_mapping(out / "i_id_mapping.csv", ("asin", "itemID"), order)
    record = {"format": "mmrec-features", "dataset": dataset, "n_items": len(order),
              "item_order": "given" if item_order is not None else "natural id order of every row",
              "files": files}
    (out / "_export.json").write_text(json.dumps(record, indent=2, default=str))
    return record


# ---------------------------------------------------------------------------- Hugging Face
@contextlib.contextmanager
def _no_datasets_bars(datasets: Any) -> Iterator[None]:
    """``datasets``' progress bars off while the block runs, then back as they were."""
    was_on = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()
    try:
        yield
    finally:
        if was_on:
            datasets.enable_progress_bars()


def export_hf(store: FeatureStore, dataset: str, feature_set: str, out_dir: str | os.PathLike[str],
              ref: str = "latest") -> dict:
    """Save a version as a Hugging Face dataset whose ``info`` carries the version's lineage.

    ``info.description`` is the version's ``_manifest.json`` as JSON (featurizer fingerprint,
    lineage, parents, checksums), ``info.dataset_name`` the store dataset, ``info.config_name`` the
    feature set, so ``json.loads(load_from_disk(out).info.description)`` is the manifest.

    Returns:
        The ``_export.json`` content.

    Example:
        >>> export_hf(store, "microlens-mini", "title_minilm", "exports/hf")  # doctest: +SKIP
        >>> json.loads(datasets.load_from_disk("exports/hf").info.description)["version"]  # doctest: +SKIP
    """
    import datasets

    m = store.manifest(dataset, feature_set, ref)
    table = store.read_table(dataset, feature_set, m["version"])
    info = datasets.DatasetInfo(description=json.dumps(m, sort_keys=True, default=str),
                                dataset_name=dataset, config_name=feature_set)
    ds = datasets.Dataset(table, info=info)
    with _no_datasets_bars(datasets):  # a "Saving the dataset" bar for a few shards is noise, not progress
        ds.save_to_disk(str(out_dir))
    record = {"format": "hf-datasets", "dataset": dataset, "feature_set": feature_set, "version": m["version"],
              "rows": ds.num_rows, "lineage": m.get("lineage"), "featurizer": m.get("featurizer")}
    (Path(out_dir) / "_export.json").write_text(json.dumps(record, indent=2, default=str))
    return record


# ---------------------------------------------------------------------------- FuxiCTR / MMCTR
def _fuxictr_dataset_config(name: str, data) -> dict[str, Any]:
    """The challenge's FuxiCTR dataset config (QIN's config/qin_config/dataset_config.yaml) with this set's
    vocabulary sizes and embedding width."""
    d = data.emb_dim
    return {name: {
        "data_root": "./data/", "data_format": "parquet",
        **{f"{s}_data": f"./data/{name}/{s}.parquet" for s in ("train", "valid", "test")},
        "item_info": f"./data/{name}/item_info.parquet", "rebuild_dataset": False,
        "feature_cols": [
            {"name": "user_id", "active": True, "dtype": "int", "type": "meta"},
            {"name": "item_seq", "active": True, "dtype": "int", "type": "meta"},
            {"name": "likes_level", "active": True, "dtype": "int", "type": "categorical", "vocab_size": 11},
            {"name": "views_level", "active": True, "dtype": "int", "type": "categorical", "vocab_size": 11},
            {"name": "item_id", "active": True, "dtype": "int", "type": "categorical",
             "vocab_size": data.n_items + 1, "source": "item"},
            {"name": "item_tags", "active": True, "dtype": "int", "type": "sequence",
             "max_len": int(data.item_tags.shape[1]), "vocab_size": data.n_tags, "source": "item"},
            # pretrain_dim: FuxiCTR 2.3.10's FeatureMap needs it for type=embedding (2.3.7 does not); = D keeps
            # the challenge's Linear(D, D) projection
            {"name": f"item_emb_d{d}", "active": True, "dtype": "float", "type": "embedding", "source": "item",
             "embedding_dim": d, "pretrain_dim": d}],
        "label_col": {"name": "label", "dtype": "float"}}}


@contextlib.contextmanager
def _staged_folder(out: Path) -> Iterator[Path]:
    """Write into a sibling staging folder, then swap it in: a reader never sees a half-written export,
    and a failed export leaves the previous one as it was. The folder is made like any folder the user
    makes (mode 0777 less the umask), not private as ``tempfile.mkdtemp`` would make it."""
    import shutil
    import uuid

    out.parent.mkdir(parents=True, exist_ok=True)
    stage = out.parent / f".{out.name}.staging-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    stage.mkdir()  # exclusive (the name is unique), mode 0o777 & ~umask
    try:
        yield stage
        old = None
        if out.exists():
            old = out.with_name(f".{out.name}.old-{os.getpid()}")
            os.replace(out, old)
        os.replace(stage, out)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if stage.exists():
            shutil.rmtree(stage, ignore_errors=True)


def export_fuxictr(store: FeatureStore, manifest: str | os.PathLike[str], features: dict[str, str],
                   out_dir: str | os.PathLike[str], *, dim: int = 128, pad: bool = False, seq_len: int = 64,
                   history: str = "last", label_threshold: float | None | str = "auto", negatives: int = 1,
                   seed: int = DEFAULT_SEED, data_root: str | None = None, name: str | None = None) -> dict:
    """A complete MicroLens_1M_MMCTR folder (the WWW 2025 challenge's layout) that FuxiCTR and the
    challenge's DIN/QIN code read unchanged, made from a manifest's interactions and store features.

    The rows are the CTR set ``mmfeat train --model DIN`` trains on (:func:`mmfeat.pipelines.training.ctr_data.
    load_ctr_data`: time split, labels, levels, tags, history); ``item_info.parquet`` row k holds item k
    (row 0 all-zero padding) with ``item_emb_d{dim}`` = PCA of the features. Beside them:
    ``item_id_mapping.csv`` (the source's id of item k), ``<name>.yaml`` (the FuxiCTR dataset config with
    this set's vocabulary sizes) and ``_export.json`` (versions, rules, counts, sha256 of every file). The
    folder is staged and swapped in whole.

    Args:
        store: the feature store.
        manifest: manifest name or path (its interactions give the rows).
        features: role (``text`` / ``image``) -> ``feature_set[@ref]``; concatenated in role order, then PCA.
        out_dir: the folder to write (replaced whole when it exists).
        dim: embedding width (the challenge: 128).
        pad: zero-pad when the embedding has fewer components than ``dim`` (else an error).
        seq_len: history items per row (the challenge: 64).
        history: ``last`` or ``gsu`` (top-k by embedding cosine over the whole history).
        label_threshold: ``"auto"`` (ratings: >= 4, 0/1 labels as given, none: implicit), a number or None.
        negatives: sampled negatives per positive for implicit data.
        seed: seed of the negative sampling.
        data_root: overrides the manifest's data root.
        name: the dataset id in the config (default the folder name).

    Returns:
        The ``_export.json`` content.

    Raises:
        CTRDataError: a rule of the set cannot hold (e.g. fewer items than ``dim`` without ``pad``).
        StoreError: a feature reference that does not resolve.

    Example:
        >>> export_fuxictr(store, "movielens-100k", {"text": "text_minilm"}, "exports/ml100k_mmctr")  # doctest: +SKIP
    """
    import yaml

    from mmfeat.pipelines.training.ctr_data import load_ctr_data
    from mmfeat.recommenders.ctr import write_layout

    if not features:
        raise StoreError("the MMCTR layout needs an item embedding: pass at least one --feature ROLE=FEATURE_SET")
    data, info = load_ctr_data(str(manifest), features, store_root=str(store.root), data_root=data_root,
                               seq_len=seq_len, history=history, label_threshold=label_threshold,
                               negatives=negatives, seed=seed, emb_dim=dim, pad=pad)
    out = Path(out_dir)
    name = name or out.resolve().name
    with _staged_folder(out) as stage:
        files = {p.name: file_sha256(p) for p in write_layout(data, stage)}
        _write_mapping(stage / "item_id_mapping.csv", ("item_id", "row"), data.item_ids[1:], start=1)  # row 0: padding
        (stage / f"{name}.yaml").write_text(
            "# FuxiCTR dataset config (the MMCTR challenge's), written by mmfeat: put this folder at "
            f"./data/{name}/\n" + yaml.safe_dump(_fuxictr_dataset_config(name, data), sort_keys=False))
        record = {"format": "fuxictr-mmctr", "name": name, "manifest": info["manifest"],
                  "source_fingerprint": info["source_fingerprint"], "features": data.feature_versions,
                  "split_hash": data.split_hash, "item_id_mapping": "item_id_mapping.csv (row k = item k)",
                  "config": f"{name}.yaml", "files": files, **data.summary()}
        (stage / "_export.json").write_text(json.dumps(record, indent=2, default=str))
    return record
