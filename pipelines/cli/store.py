"""``mmfeat store ...``: inspect, verify, repair, tag, drop, import and export feature-store versions.

Every command but ``import`` reads the store, so a root that does not exist is an error naming it (a
mistyped ``--store`` is never an empty store); ``import``, like ``mmfeat extract``, creates it.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from mmfeat.pipelines.cli.args import parse_feature_refs, parse_number_or_mean
from mmfeat.pipelines.cli.errors import CommandFailed, UsageError
from mmfeat.pipelines.store.feature_store import FeatureStore, StoreError, default_store_root, open_existing_store
from mmfeat.defaults import DEFAULT_SEED

#: error rows ``store show`` prints (item, stage, reason)
ERROR_EXAMPLES = 5


def open_store(args: argparse.Namespace, *, create: bool = False) -> FeatureStore:
    """The store of ``--store`` (a folder or an ``s3://`` URI), else the default root.

    Raises:
        StoreRootMissing: unless ``create`` (a command that writes), the root does not exist.
    """
    if create:
        return FeatureStore(args.store or default_store_root())
    return open_existing_store(args.store)


def _damage_note(dataset: str, feature_set: str, problems: list[str]) -> str:
    return (f"DAMAGED: {'; '.join(problems)} (`mmfeat store repair {dataset} {feature_set}` removes it; "
            f"re-running what made it rebuilds it)")


# ---------------------------------------------------------------------------- list / show / summary
def _fmt_version_line(m: dict, aliases: dict[str, str]) -> str:
    tags = ",".join(sorted(a for a, v in aliases.items() if v == m["version"]))
    out = m.get("output", {})
    value = {"text": "text", "codes": f"codes[{out.get('dim')}]", "trace": "session trace"}.get(
        out.get("kind"), f"embedding[{out.get('dim')}] {out.get('dtype')}")
    return (f"    {m['version']}  {m['created_at']}  rows={m['rows']:<7} errors={m['errors']:<5} {value:<22} "
            f"{m['featurizer']['name']}" + (f"  <- {tags}" if tags else ""))


def _list_feature_set(store: FeatureStore, ds: str, fs: str, check: str) -> None:
    """One feature set's versions, each marked when damaged, and aliases that need attention."""
    from mmfeat.pipelines.store.recovery import version_damage

    print(f"  {fs}")
    aliases = store.aliases(ds, fs)
    versions = store.versions(ds, fs)
    for m in versions:
        print(_fmt_version_line(m, aliases))
        problems = version_damage(store, m, check)
        if problems:
            print(f"      {_damage_note(ds, fs, problems)}")
    published = {m["version"] for m in versions}
    if versions and "latest" not in aliases:
        print(f"      (no latest alias: reads of latest get the newest, {versions[-1]['version']}; the next run "
              f"writes it)")
    for alias, v in sorted(aliases.items()):
        if v not in published:
            print(f"      alias {alias} -> {v}: not published (removed); rebuild it by re-running what made it, "
                  f"or `mmfeat store tag {ds} {fs} VERSION {alias}`")


def cmd_store_list(args: argparse.Namespace) -> int:
    store = open_store(args)
    datasets = [args.dataset] if args.dataset else store.datasets()
    if args.dataset and args.dataset not in store.datasets():
        raise UsageError(f"no dataset {args.dataset!r} in {store.root} (it has: {store.datasets() or 'nothing'})")
    if not datasets:
        print(f"store {store.root} is empty")
    check = "stat" if args.no_verify or not store.fs.is_local else "memo"
    if datasets and check == "stat":
        print("(parts checked for presence and size only; `mmfeat store verify` re-hashes them)")
    for ds in datasets:
        print(ds)
        for fs in store.feature_sets(ds):
            _list_feature_set(store, ds, fs, check)
    staged = store.staged_runs()
    if staged:
        print("\nunfinished runs (resume by re-running the same extraction):")
        for run in staged:
            print(f"  {run.relative}  ({run.parts} parts done)")
    orphans = store.orphan_attempts()
    if orphans:
        print("\nabandoned upload attempts (no manifest names them; readers never see them; "
              "FeatureStore.remove_orphan_attempts() deletes them):")
        for o in orphans:
            state = "version published by another attempt" if o.committed else "version not published"
            print(f"  {o.relative}  ({state}, last written {o.age_s / 3600:.1f} h ago)")
    return 0


def _describe_output(m: dict) -> str:
    out = m["output"]
    if out["kind"] == "text":
        return "text"
    if out["kind"] == "codes":
        return f"codes: {out['dim']} integers per item (semantic IDs)"
    if out["kind"] == "trace":
        return "session trace: one row per session turn (mmfeat simulate)"
    return f"embedding dim={out['dim']} dtype={out['dtype']}"


def _error_rows(store: FeatureStore, dataset: str, feature_set: str, m: dict) -> list[str]:
    """The first few error rows of a version: ``item [stage] reason``."""
    import pyarrow.compute as pc

    out: list[str] = []
    columns = ["item_id", "status", "stage", "error"]
    for t in store.version_part_tables(dataset, feature_set, m["version"], columns=columns):
        t = t.filter(pc.equal(t.column("status"), "error"))
        out += [f"{r['item_id']} [{r['stage']}] {r['error']}" for r in t.slice(0, ERROR_EXAMPLES).to_pylist()]
        if len(out) >= ERROR_EXAMPLES:
            break
    return out[:ERROR_EXAMPLES]


def summarize_version(store: FeatureStore, dataset: str, feature_set: str, ref: str = "latest") -> str:
    """A short human summary of one version: where, what, how many, made by what; its parts are checked
    (a damaged version is marked ``DAMAGED``) and its first error rows shown (item, stage, reason)."""
    m = store.manifest(dataset, feature_set, ref)
    fp = m["featurizer"]["fingerprint"]
    lines = [
        f"{dataset}/{feature_set}/{m['version']}",
        f"  path:       {store.feature_dir(dataset, feature_set) / m['version']}",
        "  output:     " + _describe_output(m),
        f"  rows:       {m['rows']} ({m['errors']} errors) in {len(m['parts'])} part(s)",
        f"  featurizer: {m['featurizer']['name']} ({m['featurizer']['kind']}), backbone={fp.get('backbone')}",
        f"  weights:    {str(fp.get('weights_sha256', '-'))[:16]}  ({fp.get('weights_source', '-')})",
        f"  input:      {json.dumps(m['input'])}",
        f"  parents:    {m['lineage'].get('parents') or '-'}",
        *(["  saw pixels: no (text-only describer)"] if fp.get("saw_pixels") is False else []),
        f"  created:    {m['created_at']} by mmfeat {m['mmfeat_version']}",
    ]
    if m["output"]["kind"] == "codes":
        stats = m.get("codes", {})
        lines.append(f"  codes:      collision rate before de-dup {stats.get('collision_rate')}, reconstruction "
                     f"error {stats.get('reconstruction_error')}, usage per level {stats.get('usage_per_level')}")
    problems = store.damage(dataset, feature_set, m["version"])
    if problems:
        lines.append(f"  {_damage_note(dataset, feature_set, problems)}")
        return "\n".join(lines)
    if m["errors"]:
        shown = _error_rows(store, dataset, feature_set, m)
        lines.append(f"  errors:     first {len(shown)} of {m['errors']} (item [stage] reason):")
        lines += [f"    {row}" for row in shown]
    if m["output"]["kind"] == "text":
        t = store.read_table(dataset, feature_set, m["version"], columns=["item_id", "text"], only_ok=True)
        for row in t.slice(0, 2).to_pylist():
            lines.append(f"  sample:     {row['item_id']}: {row['text'][:100]!r}")
    return "\n".join(lines)


def cmd_store_show(args: argparse.Namespace) -> int:
    store = open_store(args)
    if args.json:
        print(json.dumps(store.manifest(args.dataset, args.feature_set, args.ref), indent=2))
    else:
        print(summarize_version(store, args.dataset, args.feature_set, args.ref))
    return 0


def cmd_store_summary(args: argparse.Namespace) -> int:
    from mmfeat.pipelines.manifest import load_manifest

    store = open_store(args)
    m = load_manifest(args.manifest, data_root=args.data_root)
    print(f"store: {store.root}")
    built = set(store.feature_sets(m.store_dataset))
    for spec in m.feature_sets:
        if spec.name not in built:
            print(f"{m.store_dataset}/{spec.name}: not built" + (" (optional)" if spec.optional else ""))
            continue
        try:
            print(summarize_version(store, m.store_dataset, spec.name))
        except StoreError as exc:  # built, but latest cannot be read: say why, not "not built"
            print(f"{m.store_dataset}/{spec.name}: {exc}")
    return 0


# ---------------------------------------------------------------------------- verify / tag
def cmd_store_verify(args: argparse.Namespace) -> int:
    """A wrong name or ref is a usage error (2); a missing or changed part is a failure (1)."""
    store = open_store(args)
    version = store.resolve(args.dataset, args.feature_set, args.ref)
    try:
        store.verify(args.dataset, args.feature_set, version)
    except StoreError as exc:
        raise CommandFailed(str(exc)) from exc
    print(f"ok: {args.dataset}/{args.feature_set}/{version}")
    return 0


def cmd_store_tag(args: argparse.Namespace) -> int:
    store = open_store(args)
    version = store.resolve(args.dataset, args.feature_set, args.ref)
    store.set_alias(args.dataset, args.feature_set, args.alias, version)
    print(f"{args.dataset}/{args.feature_set}: {args.alias} -> {version}")
    return 0


def _s3_note(store: FeatureStore) -> None:
    if not store.fs.is_local:
        print(f"note: {store.root} is an object store, which has no cross-process writer lock: run this while no "
              f"extraction or import writes the feature set")


def cmd_store_repair(args: argparse.Namespace) -> int:
    """Re-hash every part; remove damaged versions (exit 0: the store is readable again)."""
    store = open_store(args)
    _s3_note(store)
    checked, removed = store.repair(args.dataset, args.feature_set, args.ref)
    for r in removed:
        print(f"removed {r}: {'; '.join(r.problems)}. {r.rebuild[0].upper() + r.rebuild[1:]}")
        named_by = sorted(a for a, v in store.aliases(args.dataset, args.feature_set).items() if v == r.version)
        if named_by:
            print(f"  {', '.join(named_by)} still name{'s' if len(named_by) == 1 else ''} it: reads of "
                  f"{'it' if len(named_by) == 1 else 'them'} fail until it is rebuilt")
    if not removed:
        print(f"ok: {len(checked)} version(s) of {args.dataset}/{args.feature_set} checked, none damaged")
    return 0


def cmd_store_drop(args: argparse.Namespace) -> int:
    store = open_store(args)
    _s3_note(store)
    dropped = store.drop(args.dataset, args.feature_set, args.version, force=args.force)
    print(f"dropped {dropped.removed}")
    for alias, version in sorted(dropped.aliases.items()):
        print(f"  {alias} -> {version}" if version else f"  removed alias {alias}")
    return 0


# ---------------------------------------------------------------------------- import / export
def cmd_store_import(args: argparse.Namespace) -> int:
    from mmfeat.pipelines.store.imports import current_latest, import_features, layout_difference

    store = open_store(args, create=True)
    before = current_latest(store, args.dataset, args.feature_set)
    version = import_features(store, args.dataset, args.feature_set, args.file, ids=args.ids,
                              id_column=args.id_column, vector_column=args.vector_column, tag=args.tag,
                              replace=args.replace)
    diff = layout_difference(before, store.manifest(args.dataset, args.feature_set, version))
    if diff and before is not None:
        print(f"replaced: latest of {args.dataset}/{args.feature_set} was {before['version']} and is now {version} "
              f"({', '.join(diff)}); `mmfeat store tag {args.dataset} {args.feature_set} {before['version']} latest` "
              f"points it back")
    print(summarize_version(store, args.dataset, args.feature_set, version))
    return 0


def _fill(args: argparse.Namespace) -> float | str | None:
    return None if args.fill_missing == "error" else parse_number_or_mean(args.fill_missing, "--fill-missing")


def _single_feature(args: argparse.Namespace) -> tuple[str, str]:
    if len(args.feature) != 1 or "=" in args.feature[0]:
        raise UsageError(f"{args.format} export takes exactly one --feature FEATURE_SET[@ref], "
                         f"e.g. --feature title_minilm; got {args.feature}")
    fs, _, ref = args.feature[0].partition("@")
    return fs, ref or "latest"


def _manifest_dataset(manifest: str, data_root: str | None) -> str:
    from mmfeat.pipelines.manifest import load_manifest

    return load_manifest(manifest, data_root=data_root).store_dataset


def _check_refs(store: FeatureStore, dataset: str, features: dict[str, str]) -> None:
    """Every ``feature_set[@ref]`` resolves in the store: a typo fails before any data is read."""
    for ref in features.values():
        fs, _, version = ref.partition("@")
        store.resolve(dataset, fs, version or "latest")


def _check_item_order(path: str | None) -> None:
    if path is not None and not Path(path).is_file():
        raise UsageError(f"--item-order {path}: no such file (give MMRec's i_id_mapping.csv, a csv with item_id, "
                         "or a file with one id per line)")


def cmd_store_export(args: argparse.Namespace) -> int:
    import mmfeat.pipelines.store.exports as ex

    store = open_store(args)
    _check_item_order(getattr(args, "item_order", None))
    rec: dict[str, Any]
    if args.format == "mmrec":
        features = parse_feature_refs(args.feature, "--feature", "STEM", "text_feat=title_minilm")
        _check_refs(store, _manifest_dataset(args.manifest, args.data_root), features)
        rec = ex.export_mmrec(store, args.manifest, features, args.out, split=args.split, split_seed=args.split_seed,
                              min_rating=args.min_rating, k_core=args.k_core, item_order=args.item_order,
                              fill_missing=_fill(args), data_root=args.data_root, name=args.name)
    elif args.format == "mmrec-features":
        features = parse_feature_refs(args.feature, "--feature", "STEM", "image_feat=cover_clip")
        _check_refs(store, args.dataset, features)
        rec = ex.export_mmrec_features(store, args.dataset, features, args.out, item_order=args.item_order,
                                       fill_missing=_fill(args))
    elif args.format == "hf":
        fs, ref = _single_feature(args)
        rec = ex.export_hf(store, args.dataset, fs, args.out, ref)
    else:
        raw = [f if "=" in f else f"text={f}" for f in args.feature]  # a bare FEATURE_SET is the text role
        features = parse_feature_refs(raw, "--feature", "ROLE", "text=title_minilm")
        _check_refs(store, _manifest_dataset(args.manifest, args.data_root), features)
        threshold: Any = args.label_threshold
        if threshold not in ("auto", "none"):
            try:
                threshold = float(threshold)
            except ValueError:
                raise UsageError(f"--label-threshold {threshold!r}: give a number, auto or none") from None
        rec = ex.export_fuxictr(store, args.manifest, features, args.out, dim=args.dim, pad=args.pad,
                                seq_len=args.seq_len, history=args.history,
                                label_threshold=None if threshold == "none" else threshold,
                                negatives=args.negatives, seed=args.seed, data_root=args.data_root, name=args.name)
    print(json.dumps(rec, indent=2, default=str))
    return 0


# ---------------------------------------------------------------------------- parsers
def add_store_commands(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    st = sub.add_parser("store", parents=[common],
                        help="inspect, verify, repair, tag, drop, import and export feature versions",
                        description="Inspect, verify, repair, tag, drop, import and export versions of the "
                                    "feature store.")
    cmds = st.add_subparsers(dest="store_cmd", required=True, metavar="COMMAND")

    ls = cmds.add_parser("list", parents=[common], help="every dataset, feature set and version (with aliases)",
                         description="Every dataset, feature set and version (with aliases); a damaged version "
                                     "(a part missing or changed) is marked DAMAGED.")
    ls.add_argument("--dataset", help="only this store dataset")
    ls.add_argument("--no-verify", action="store_true",
                    help="check parts for presence and size only, without hashing them (faster on a large store)")
    ls.set_defaults(func=cmd_store_list)

    for name, func, what in (("show", cmd_store_show, "summarize one version (lineage, featurizer, rows)"),
                             ("verify", cmd_store_verify, "re-hash every part of a version against its manifest")):
        sp = cmds.add_parser(name, parents=[common], help=what, description=what[0].upper() + what[1:] + ".")
        _add_version_args(sp)
        if name == "show":
            sp.add_argument("--json", action="store_true", help="print the full _manifest.json")
        sp.set_defaults(func=func)

    sm = cmds.add_parser("summary", parents=[common], help="latest version of every feature set of a manifest")
    sm.add_argument("manifest", help="manifest name (manifests/NAME.yaml) or path")
    sm.add_argument("--data-root", help="override the manifest's data_root")
    sm.set_defaults(func=cmd_store_summary)

    tg = cmds.add_parser("tag", parents=[common], help="point an alias (e.g. paper-v1) at a version")
    _add_version_args(tg, ref_default=None)
    tg.add_argument("alias", help="the alias to set (e.g. paper-v1)")
    tg.set_defaults(func=cmd_store_tag)

    rp = cmds.add_parser("repair", parents=[common], help="re-hash every version; remove the damaged ones",
                         description="Re-hash every part of every version of a feature set (or of VERSION) and "
                                     "remove the damaged versions (a part missing or changed), printing what was "
                                     "removed; re-running the extraction (or import) that made one rebuilds it "
                                     "under the same id.")
    rp.add_argument("dataset", help="store dataset (a manifest's `dataset`, e.g. microlens-mini)")
    rp.add_argument("feature_set", help="feature set name (e.g. title_minilm)")
    rp.add_argument("ref", nargs="?", help="only this version (id, unique id prefix or alias; default: every version)")
    rp.set_defaults(func=cmd_store_repair)

    dp = cmds.add_parser("drop", parents=[common], help="remove one version (refused if an alias names it)",
                         description="Remove one version. Refused when an alias names it, unless --force: then "
                                     "latest names the newest remaining version and other aliases naming it are "
                                     "removed.")
    dp.add_argument("dataset", help="store dataset")
    dp.add_argument("feature_set", help="feature set name")
    dp.add_argument("version", help="version id or unique id prefix (or an alias, with --force)")
    dp.add_argument("--force", action="store_true",
                    help="drop it even if aliases name it (latest moves to the newest remaining version)")
    dp.set_defaults(func=cmd_store_drop)

    _add_import(cmds, common)
    _add_exports(cmds, common)


def _add_version_args(sp: argparse.ArgumentParser, ref_default: str | None = "latest") -> None:
    sp.add_argument("dataset", help="store dataset (a manifest's `dataset`, e.g. microlens-mini)")
    sp.add_argument("feature_set", help="feature set name (e.g. title_minilm)")
    ref_help = "version id, unique id prefix or alias"
    if ref_default is None:
        sp.add_argument("ref", help=ref_help)
    else:
        sp.add_argument("ref", nargs="?", default=ref_default, help=f"{ref_help} (default: {ref_default})")


def _add_import(cmds: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    im = cmds.add_parser(
        "import", parents=[common], help="bring an existing feature file (.npy, .parquet) into the store",
        description="Import features computed elsewhere as a store version whose lineage says 'imported' "
                    "and names the file's sha256: MMRec's .npy with its i_id_mapping.csv, or a Parquet/NumPy "
                    "matrix with ids.")
    im.add_argument("dataset", help="store dataset to import into")
    im.add_argument("feature_set", help="feature set name for the imported version")
    im.add_argument("file", help="the feature file: .npy (rows = items) or .parquet (an id and a vector column)")
    im.add_argument("--ids", help="the row ids of a .npy: MMRec's i_id_mapping.csv, a csv with item_id, "
                                  "or one id per line")
    im.add_argument("--id-column", default="item_id",
                    help="id column of a Parquet file, or of an MMRec mapping given as --ids (asin; itemID for "
                         "0..n-1 ids) (default: item_id)")
    im.add_argument("--vector-column", default="embedding", help="vector column of a Parquet file (default: embedding)")
    im.add_argument("--tag", help="also point this alias at the new version")
    im.add_argument("--replace", action="store_true",
                    help="accept a layout (dim, dtype, kind) that differs from the feature set's latest version "
                         "(it becomes latest; the difference is printed)")
    im.set_defaults(func=cmd_store_import)


def _add_exports(cmds: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    exp = cmds.add_parser("export", parents=[common], help="write versions in formats other tools read",
                          description="Write store versions as files other repositories read unchanged; "
                                      "each export writes _export.json naming the versions it came from.")
    fmts = exp.add_subparsers(dest="format", required=True, metavar="FORMAT")
    fill_help = "items without an ok feature row: 'mean' (default), a number, or 'error' to fail instead"

    mm = fmts.add_parser("mmrec", parents=[common],
                         help="a dataset folder MMRec trains from (.inter, feature .npy files, mappings, config)",
                         description="A folder MMRec's main.py trains from as written: <name>.inter from the "
                                     "manifest's interactions and split (as `mmfeat train` makes it), "
                                     "text_feat.npy / image_feat.npy row-aligned to its item ids, the id "
                                     "mappings and a dataset config.")
    mm.add_argument("manifest", help="manifest name or path (its interactions give the .inter; its dataset the store namespace)")
    mm.add_argument("--feature", action="append", required=True,
                    help="STEM=FEATURE_SET[@ref], STEM text_feat or image_feat (repeatable), e.g. text_feat=title_minilm")
    mm.add_argument("--split", choices=["given", "random", "time"],
                    help="default: the source's own split, else seeded per-user random 8:1:1")
    mm.add_argument("--split-seed", type=int, default=DEFAULT_SEED, help=f"seed of the random split (default: {DEFAULT_SEED})")
    mm.add_argument("--min-rating", type=float, help="keep interactions rated at least this")
    mm.add_argument("--k-core", type=int, default=0, help="iteratively keep users and items with >= K interactions")
    mm.add_argument("--item-order", help="fix the itemIDs: an MMRec i_id_mapping.csv, a csv with item_id, or one id per line")
    mm.add_argument("--fill-missing", default="mean", help=fill_help)
    mm.add_argument("--data-root", help="override the manifest's data_root")
    mm.add_argument("--name", help="MMRec dataset name (default: the --out folder's name)")

    mf = fmts.add_parser("mmrec-features", parents=[common],
                         help="only MMRec feature .npy files + i_id_mapping.csv, for an existing MMRec dataset folder")
    mf.add_argument("dataset", help="store dataset")
    mf.add_argument("--feature", action="append", required=True, help="STEM=FEATURE_SET[@ref] (repeatable)")
    mf.add_argument("--item-order", help="the MMRec folder's i_id_mapping.csv (default: every row in natural id order)")
    mf.add_argument("--fill-missing", default="mean", help=fill_help)

    hf = fmts.add_parser("hf", parents=[common], help="a Hugging Face dataset (save_to_disk), lineage in its info")
    hf.add_argument("dataset", help="store dataset")
    hf.add_argument("--feature", action="append", required=True, help="FEATURE_SET[@ref] (exactly one)")

    fx = fmts.add_parser("fuxictr", parents=[common],
                         help="a MicroLens_1M_MMCTR folder (train/valid/test.parquet, item_info.parquet) FuxiCTR reads",
                         description="A complete MicroLens_1M_MMCTR folder (the WWW 2025 MMCTR challenge's layout) "
                                     "from the manifest's interactions and store features: the rows `mmfeat train "
                                     "--model DIN` trains on, item_info.parquet row k = item k (row 0 padding) with "
                                     "item_emb_d<dim> by PCA, the id mapping and a FuxiCTR dataset config.")
    fx.add_argument("manifest", help="manifest name or path (its interactions give the rows)")
    fx.add_argument("--feature", action="append", required=True,
                    help="[ROLE=]FEATURE_SET[@ref], ROLE text (default) or image; several are concatenated before PCA")
    fx.add_argument("--dim", type=int, default=128, help="embedding width after PCA (default: 128, the challenge's)")
    fx.add_argument("--pad", action="store_true", help="zero-pad when PCA gives fewer than --dim components")
    fx.add_argument("--seq-len", type=int, default=64, help="history items per row (default: 64)")
    fx.add_argument("--history", choices=["last", "gsu"], default="last",
                    help="last: the most recent items; gsu: the most similar to the target by embedding cosine")
    fx.add_argument("--label-threshold", default="auto",
                    help="label = rating >= this; auto (ratings: 4, 0/1 labels as given, none: implicit) or none")
    fx.add_argument("--negatives", type=int, default=1, help="sampled negatives per click for implicit data (default: 1)")
    fx.add_argument("--seed", type=int, default=DEFAULT_SEED, help=f"seed of the negative sampling (default: {DEFAULT_SEED})")
    fx.add_argument("--data-root", help="override the manifest's data_root")
    fx.add_argument("--name", help="dataset id in the FuxiCTR config (default: the --out folder's name)")

    for sp in (mm, mf, hf, fx):
        sp.add_argument("--out", required=True, help="output folder")
        sp.set_defaults(func=cmd_store_export)
