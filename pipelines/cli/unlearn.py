"""``mmfeat unlearn``: train, forget a share of the training data (MMRecUn-style), retrain a gold model, compare.

The request is checked before anything loads, as for ``mmfeat train`` (the same option parsers and
:func:`mmfeat.pipelines.training.run.validate_train_request`); unlearning keys (``--unlearn-set``) are checked
against :class:`mmfeat.recommenders.unlearning.UnlearnConfig`.
"""
from __future__ import annotations

import argparse
import textwrap

from mmfeat.pipelines.cli.args import parse_feature_refs, parse_settings
from mmfeat.pipelines.cli.errors import UsageError
from mmfeat.pipelines.cli.train import add_data_options, precheck_names
from mmfeat.pipelines.training.run import DEFAULT_SEED


def cmd_unlearn(args: argparse.Namespace) -> int:
    features = parse_feature_refs(args.feature, "--feature")
    overrides, unlearn_config = parse_settings(args.set, "--set"), parse_settings(args.unlearn_set, "--unlearn-set")
    precheck_names(args)  # before torch is imported
    from mmfeat.pipelines.training.run import TrainRequestError
    from mmfeat.pipelines.training.unlearning import run_unlearning, unlearning_table

    try:
        out = run_unlearning(args.manifest, model=args.model, features=features,
                             overrides=overrides, forget=args.forget, share=args.share,
                             forget_seed=args.forget_seed, unlearn_config=unlearn_config,
                             gold=not args.no_gold, split=args.split, split_seed=args.split_seed, seed=args.seed,
                             min_rating=args.min_rating, k_core=args.k_core, store_root=args.store, runs_dir=args.runs,
                             data_root=args.data_root)
    except TrainRequestError as exc:
        raise UsageError(str(exc)) from None
    print(unlearning_table(out["unlearning"]))
    print(f"\nwritten: {out['path']}")
    return 0


def add_unlearn_command(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    ul = sub.add_parser("unlearn", parents=[common], help="make a trained recommender forget part of its data",
                        description=textwrap.fill(
                            "Train a general recommender on the manifest's split, draw a forget set (a share of "
                            "the training interactions, or of the items with all their interactions), unlearn it "
                            "with reverse BPR on the forgotten pairs plus forward BPR on the rest (MMRecUn), retrain "
                            "a gold model without it, and print forget-set and retain-set metrics of the three "
                            "with their times.", 78))
    ul.add_argument("manifest", help="manifest name (manifests/NAME.yaml) or path")
    ul.add_argument("--model", default="LightGCN", help="a general recommender (default: LightGCN)")
    ul.add_argument("--feature", action="append", metavar="ROLE=FEATURE_SET[@ref]", help="as for mmfeat train")
    ul.add_argument("--set", action="append", metavar="KEY=VALUE", help="a training hyper-parameter (repeatable)")
    ul.add_argument("--forget", choices=["interactions", "items"], default="interactions",
                    help="what to forget: a share of the training interactions, or of the items with all their "
                         "interactions (default: interactions)")
    ul.add_argument("--share", type=float, default=0.05, help="forgotten share (default: 0.05)")
    ul.add_argument("--forget-seed", type=int, default=DEFAULT_SEED,
                    help=f"seed of the forget-set draw (default: {DEFAULT_SEED})")
    ul.add_argument("--unlearn-set", action="append", metavar="KEY=VALUE",
                    help="an unlearning key, e.g. epochs=3 or forget_weight=1.0 (repeatable)")
    ul.add_argument("--no-gold", action="store_true", help="skip retraining the gold model")
    ul.add_argument("--seed", type=int, help=f"training seed (default: {DEFAULT_SEED})")
    ul.add_argument("--split-seed", type=int, help=f"seed of the random split (default: {DEFAULT_SEED})")
    ul.add_argument("--split", choices=["given", "random", "time"], help="as for mmfeat train")
    add_data_options(ul)
    ul.set_defaults(func=cmd_unlearn)
