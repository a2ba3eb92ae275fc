"""``mmfeat manifest check``: validate a manifest (and read its source) without writing anything."""

from __future__ import annotations

import argparse

from mmfeat.pipelines.cli.extract import precheck_manifest


def cmd_manifest_check(args: argparse.Namespace) -> int:
    m, source = precheck_manifest(args.manifest, args.data_root, read_source=not args.schema_only)
    print(f"ok: {m.name} ({len(m.feature_sets)} feature sets: {', '.join(s.name for s in m.feature_sets)}); {source}")
    return 0


def add_manifest_commands(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    mf = sub.add_parser("manifest", parents=[common], help="manifest tools",
                        description="Manifest tools.")
    cmds = mf.add_subparsers(dest="manifest_cmd", required=True, metavar="COMMAND")
    ck = cmds.add_parser("check", parents=[common], help="validate a manifest and read its source; write nothing",
                         description="Validate a manifest (schema, featurizer kinds and params, paths inside "
                                     "the data root) and read its source tables, writing nothing.")
    ck.add_argument("manifest", help="manifest name (manifests/NAME.yaml) or path")
    ck.add_argument("--data-root", help="override the manifest's data_root")
    ck.add_argument("--schema-only", action="store_true", help="do not read the source data (faster on big sources)")
    ck.set_defaults(func=cmd_manifest_check)
