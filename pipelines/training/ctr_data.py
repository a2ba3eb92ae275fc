"""A manifest's CTR set: the one path ``mmfeat train`` (DIN, QIN) and ``store export fuxictr`` share, so
an exported MicroLens_1M_MMCTR folder holds exactly the rows our models train on.

Two kinds of source:

- any source with interactions (MovieLens, MicroLens, generic): rows, labels, levels, tags and the time
  split are built by :func:`mmfeat.recommenders.ctr.build_ctr_set`; the item embedding is the store
  features of the given roles (concatenated in role order: text, image), reduced by PCA;
- an ``mmctr`` source (the challenge download): the files are read as they are
  (:func:`mmfeat.recommenders.ctr.read_layout`); a given store feature replaces ``item_emb_d<D>``.
"""
from __future__ import annotations

import hashlib
import logging
import re
import time
from typing import Any

import numpy as np

from mmfeat.pipelines.manifest import load_manifest
from mmfeat.pipelines.store.feature_store import FeatureStore, default_store_root, file_sha256
from mmfeat.recommenders.ctr.data import CTRDataError
from mmfeat.defaults import DEFAULT_SEED

#: tag separators in the normalized text columns (MovieLens genres are joined with ", ")
_TAG_SPLIT = re.compile(r"[,|;]\s*")
ROLE_ORDER = ("text", "image")
log = logging.getLogger(__name__)


def _tag_lists(items) -> list[list[str]]:
    """Per item, its genres (MovieLens) or tags (MicroLens categories), split on , | ;."""
    col = "genres" if "genres" in items.columns else ("tags" if "tags" in items.columns else None)
    if col is None:
        return [[] for _ in range(len(items))]
    return [[t.strip() for t in _TAG_SPLIT.split(v) if t.strip()] if isinstance(v, str) else [] for v in items[col]]


def auto_label_threshold(interactions) -> float | None:
    """Ratings (max label > 1) -> 4.0 (MovieLens: rating >= 4 is a like); 0/1 labels -> 1.0 (as given);
    no label column -> None (implicit clicks: negatives are sampled)."""
    if "label" not in interactions.columns:
        return None
    return 4.0 if float(interactions["label"].max()) > 1.0 else 1.0


def _store_embedding(store: FeatureStore, dataset: str, features: dict[str, str], item_ids: list[str],
                     ) -> tuple[np.ndarray, dict[str, str], dict[str, Any]]:
    """The roles' matrices aligned to ``item_ids`` (missing items filled with the version's mean, counted),
    concatenated in role order."""
    unknown = sorted(set(features) - set(ROLE_ORDER))
    if unknown:
        raise CTRDataError(f"CTR item embeddings come from the roles {', '.join(ROLE_ORDER)}; not {unknown}: "
                           f"use --feature text=FEATURE_SET (or image=...)")
    parts, versions, missing = [], {}, {}
    for role in (r for r in ROLE_ORDER if r in features):
        fs, _, ref = features[role].partition("@")
        read = store.read_matrix(dataset, fs, ref or "latest", item_ids, fill_missing="mean")
        parts.append(read.matrix.astype(np.float32))
        versions[role] = f"{dataset}/{fs}/{read.version}"
        missing[role] = {"count": len(read.missing), "first": read.missing[:10], "fill": "mean"} if read.missing else {}
    return np.hstack(parts), versions, {k: v for k, v in missing.items() if v}


def load_ctr_data(
    manifest: str,
    features: dict[str, str] | None = None,
    *,
    store_root: str | None = None,
    data_root: str | None = None,
    seq_len: int = 64,
    history: str = "last",
    label_threshold: float | None | str = "auto",
    negatives: int = 1,
    seed: int = DEFAULT_SEED,
    emb_dim: int | None = 128,
    pad: bool | None = None,
):
    """The CTR set of a manifest and store features.

    Args:
        manifest: manifest name or path.
        features: role (``text`` / ``image``) -> ``feature_set[@ref]``; empty: no item embedding (ids and tags).
        store_root: the feature store root.
        data_root: overrides the manifest's data root.
        seq_len: items per ``item_seq``.
        history: ``last`` or ``gsu`` (top ``seq_len`` of the whole history by embedding cosine; needs features).
        label_threshold: ``"auto"`` (:func:`auto_label_threshold`), a number, or None (implicit, sampled negatives).
        negatives: sampled negatives per positive for implicit data.
        seed: seed of the negative sampling.
        emb_dim: PCA width of the item embedding (the challenge: 128); None keeps the full width.
        pad: when the embedding has fewer than ``emb_dim`` components: None (training's default) keeps it
            narrower, True zero-pads, False is an error (the exporter's choice: the layout has a fixed width).

    Returns:
        ``(CTRData, info)``; ``info`` names the manifest, the source fingerprint and the data summary.

    Raises:
        CTRDataError: a rule of the set cannot hold (see :func:`mmfeat.recommenders.ctr.build_ctr_set`).
        StoreError: a feature reference that does not resolve.
    """
    from mmfeat.pipelines.engine.extract import load_items
    from mmfeat.recommenders.ctr import build_ctr_set, read_layout, reduce_dim

    features = dict(features or {})
    m = load_manifest(manifest, data_root=data_root)
    store = FeatureStore(store_root or default_store_root())
    if m.source.kind == "mmctr":
        # the files are the rows: read them once, and name them by their sha256s (no normalized tables)
        root = m.source_root()
        source_fp = hashlib.sha256("".join(f"{p.name}:{file_sha256(p)}\n" for p in sorted(root.glob("*.parquet")))
                                   .encode()).hexdigest()
        if history != "last":
            raise CTRDataError("an mmctr source's item_seq is fixed by its files (the last items); history='gsu' "
                               "needs full histories: build the set from a source with interactions")
        data = read_layout(root, max_len=seq_len)
        if features:
            emb, versions, missing = _store_embedding(store, m.store_dataset, features, data.item_ids[1:])
            reduced, explained, padded = reduce_dim(emb, emb_dim, pad, "the item embedding") if emb_dim else (emb, 1.0, 0)
            data.item_emb = np.vstack([np.zeros((1, reduced.shape[1]), np.float32), reduced])
            data.feature_versions = versions
            data.info.update(embedding={"source_dim": int(emb.shape[1]), "dim": int(reduced.shape[1]),
                                        "pca_explained_variance": explained, "padded_dims": padded},
                             missing_features=missing)
        else:
            data.info["embedding"] = {"from": "item_info.parquet", "dim": data.emb_dim}
        data.info["split"] = {"method": "given", "files": ["train.parquet", "valid.parquet", "test.parquet"]}
        data.split_hash = source_fp
    else:
        items_t, inter_t, source_fp = load_items(m)
        inter, items = inter_t.to_pandas(), items_t.to_pandas()
        items = items.assign(tags=_tag_lists(items))
        threshold = auto_label_threshold(inter) if label_threshold == "auto" else label_threshold
        embedding, versions, missing = None, {}, {}
        if features:
            from mmfeat.recommenders.data import natural_order

            ids = natural_order(inter["item_id"])
            mat, versions, missing = _store_embedding(store, m.store_dataset, features, ids)
            embedding = (ids, mat)
        log.info("%s: building the CTR set from %d interactions (history %s, %d items per row)%s", m.name,
                 len(inter), history, seq_len, "; the GSU scores every earlier item of each row" if history == "gsu" else "")
        t0 = time.perf_counter()
        data = build_ctr_set(inter, items, embedding, seq_len=seq_len, history=history, label_threshold=threshold,
                             negatives=negatives, seed=seed, emb_dim=emb_dim, pad=pad)
        log.info("%s: CTR set built in %.1fs: %s rows", m.name, time.perf_counter() - t0,
                 {k: len(v) for k, v in data.splits.items()})
        data.feature_versions = versions
        data.info["missing_features"] = missing
    data.info["source"] = {"manifest": m.name, "kind": m.source.kind, "fingerprint": source_fp}
    info = {"manifest": m.name, "source_fingerprint": source_fp, **data.summary()}
    return data, info
