"""The ``mmfeat`` CLI: every user mistake is one line on stderr (exit 2), failures exit 1, nothing is a
traceback unless ``--debug``; ``mmfeat train`` is checked before Prefect runs; help everywhere."""

from __future__ import annotations

import argparse
import io
import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import mmfeat.pipelines.flows.extract_flow  # noqa: F401  (see below)
import mmfeat.pipelines.flows.train_flow  # noqa: F401
from mmfeat.pipelines.cli import build_parser, main
from mmfeat.pipelines.store.feature_store import FeatureStore

# Prefect binds its console log handler to the sys.stderr of the moment it is first imported; imported
# here (at collection), that is pytest's session-long stream, not the capsys stream of one of the tests
# below, which is closed after it and would break every later Prefect log line in the session.

REPO = Path(__file__).resolve().parents[1]


def _one_error_line(err: str) -> str:
    """The stderr of a failed command: exactly one ``error:`` line and no traceback."""
    lines = [line for line in err.splitlines() if line.strip()]
    assert "Traceback" not in err, err
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1, err
    return errors[0]


@pytest.fixture()
def store_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "store"
    root.mkdir()  # a store that exists (read commands refuse a root that does not: a mistyped path)
    monkeypatch.setenv("MMFEAT_STORE", str(root))
    monkeypatch.setenv("MMFEAT_RUNS", str(tmp_path / "runs"))
    return root


def _import_npy(tmp_path: Path, store_dir: Path, dataset: str, feature_set: str, ids: list[str]) -> str:
    """Publish a small version through ``mmfeat store import`` (the public way in)."""
    npy, ids_file = tmp_path / f"{feature_set}.npy", tmp_path / f"{feature_set}-ids.txt"
    np.save(npy, np.random.default_rng(0).normal(size=(len(ids), 4)).astype(np.float32))
    ids_file.write_text("\n".join(ids) + "\n")
    assert main(["store", "import", dataset, feature_set, str(npy), "--ids", str(ids_file)]) == 0
    return FeatureStore(store_dir).resolve(dataset, feature_set)


def _forbid(monkeypatch: pytest.MonkeyPatch, module: str, name: str) -> None:
    """Make ``module.name`` (a flow) fail the test if the CLI calls it."""
    def never(*_a, **_k):
        raise AssertionError(f"{module}.{name} must not run")

    monkeypatch.setattr(f"{module}.{name}", never)


# ---------------------------------------------------------------------------- mistakes are one line
@pytest.mark.parametrize("argv, expected", [
    (["train", "movielens-100k", "--feature", "text_minilm"],
     "--feature expects ROLE=FEATURE_SET[@ref], e.g. --feature text=text_minilm"),
    (["train", "movielens-100k", "--versus", "text=@v1"], "--versus expects ROLE=FEATURE_SET[@ref]"),
    (["train", "movielens-100k", "--set", "epochs"], "--set expects KEY=VALUE"),
    (["train", "movielens-100k", "--grid", "learning_rate=0.1,,0.2"], "an empty value in the list"),
    (["train", "movielens-100k", "--feature", "text=a", "--feature", "text=b"], "given twice"),
])
def test_malformed_train_values_are_usage_errors(argv, expected, store_dir, monkeypatch, capsys) -> None:
    _forbid(monkeypatch, "mmfeat.pipelines.flows.train_flow", "train_recommender")
    assert main(argv) == 2
    assert expected in _one_error_line(capsys.readouterr().err)


def test_unknown_model_fails_before_the_flow_with_the_closest_name(store_dir, monkeypatch, capsys) -> None:
    _forbid(monkeypatch, "mmfeat.pipelines.flows.train_flow", "train_recommender")
    assert main(["train", "movielens-100k", "--model", "FREEDOMM"]) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert "FREEDOMM" in line and "FREEDOM" in line.replace("FREEDOMM", "")


def test_unknown_hyper_parameter_fails_before_the_flow(store_dir, monkeypatch, capsys) -> None:
    _forbid(monkeypatch, "mmfeat.pipelines.flows.train_flow", "train_recommender")
    assert main(["train", "microlens", "--model", "LightGCN", "--set", "learning_rte=0.1"]) == 2
    assert "learning_rate" in _one_error_line(capsys.readouterr().err)


def test_missing_feature_set_fails_before_the_flow(store_dir, monkeypatch, capsys) -> None:
    _forbid(monkeypatch, "mmfeat.pipelines.flows.train_flow", "train_recommender")
    assert main(["train", "microlens", "--model", "FREEDOM", "--feature", "text=no_such_set"]) == 2
    assert "no_such_set" in _one_error_line(capsys.readouterr().err)


def test_train_passes_parsed_values_and_both_seeds(store_dir, monkeypatch, capsys) -> None:
    import mmfeat.pipelines.flows.train_flow as tf

    seen: dict = {}
    calls: list[dict] = []
    monkeypatch.setattr(tf, "validate_train_request", lambda manifest, **kw: seen.update(kw, manifest=manifest))

    def fake_flow(**kw):
        calls.append(kw)
        rid = f"run-{len(calls)}"
        return {"best": {"run_id": rid, "record_path": f"/x/{rid}/record.json", "best_valid": {"recall@20": 0.5},
                         "test": {"recall@20": 0.4}}}

    monkeypatch.setattr(tf, "train_recommender", fake_flow)
    monkeypatch.setattr(tf, "compare_runs", lambda paths: "TABLE " + " ".join(paths))
    argv = ["train", "microlens", "--model", "freedom", "--feature", "text=a@v-1", "--feature", "image=b",
            "--versus", "text=c", "--set", "epochs=3", "--set", "learning_rate=1e-3", "--grid", "reg_weight=0.1,0.01",
            "--seed", "7", "--split-seed", "11"]
    assert main(argv) == 0
    assert seen["manifest"] == "microlens" and seen["model"] == "FREEDOM" and seen["seed"] == 7
    assert seen["features"] == {"text": "a@v-1", "image": "b"} and seen["versus"] == [{"text": "c"}]
    assert seen["overrides"] == {"epochs": 3, "learning_rate": 0.001} and seen["grid"] == {"reg_weight": [0.1, 0.01]}
    assert [c["features"] for c in calls] == [{"text": "a@v-1", "image": "b"}, {"text": "c", "image": "b"}]
    assert all(c["seed"] == 7 and c["split_seed"] == 11 for c in calls)
    assert "TABLE /x/run-1/record.json /x/run-2/record.json" in capsys.readouterr().out


def test_seeds_not_given_are_left_to_the_flow(store_dir, monkeypatch) -> None:
    import mmfeat.pipelines.flows.train_flow as tf

    calls: list[dict] = []
    monkeypatch.setattr(tf, "validate_train_request", lambda *a, **k: None)
    monkeypatch.setattr(tf, "train_recommender", lambda **kw: calls.append(kw) or {
        "best": {"run_id": "r", "record_path": "r", "best_valid": {}, "test": {}}})
    assert main(["train", "microlens", "--set", "seed=5"]) == 0
    assert "seed" not in calls[0] and "split_seed" not in calls[0] and calls[0]["config"] == {"seed": 5}


def test_compare_missing_run_is_one_line(store_dir, capsys) -> None:
    assert main(["compare", "runs/nope"]) == 2
    assert "no run record at runs/nope" in _one_error_line(capsys.readouterr().err)


def test_store_show_and_export_of_missing_feature_sets(store_dir, tmp_path, capsys) -> None:
    assert main(["store", "show", "nope", "nope"]) == 2
    assert "no feature set nope/nope" in _one_error_line(capsys.readouterr().err)
    out = str(tmp_path / "out")
    assert main(["store", "export", "mmrec", "microlens", "--feature", "text_feat=nope", "--out", out]) == 2
    assert "no feature set microlens-mini/nope" in _one_error_line(capsys.readouterr().err)
    assert not Path(out).exists()  # checked before anything was read or written
    assert main(["store", "export", "mmrec", "microlens", "--feature", "title_minilm", "--out", out]) == 2
    assert "--feature expects STEM=FEATURE_SET[@ref]" in _one_error_line(capsys.readouterr().err)
    assert main(["store", "export", "hf", "ds", "--feature", "a", "--feature", "b", "--out", out]) == 2
    assert "exactly one --feature" in _one_error_line(capsys.readouterr().err)
    assert main(["store", "export", "fuxictr", "microlens", "--feature", "nope", "--out", out]) == 2
    assert "no feature set microlens-mini/nope" in _one_error_line(capsys.readouterr().err)
    _import_npy(tmp_path, store_dir, "microlens-mini", "title_minilm", ["1", "2"])
    assert main(["store", "export", "mmrec", "microlens", "--feature", "text_feat=title_minilm", "--fill-missing",
                 "zero", "--out", out]) == 2
    assert "--fill-missing expects a number or 'mean'" in _one_error_line(capsys.readouterr().err)
    assert main(["store", "export", "mmrec-features", "ds", "--feature", "image_feat=a", "--item-order",
                 str(tmp_path / "nope.csv"), "--out", out]) == 2
    assert "--item-order" in _one_error_line(capsys.readouterr().err)


def test_store_list_of_unknown_dataset(store_dir, capsys) -> None:
    assert main(["store", "list", "--dataset", "nope"]) == 2
    assert "no dataset 'nope'" in _one_error_line(capsys.readouterr().err)


def test_unexpected_error_is_one_line_and_debug_shows_the_traceback(store_dir, monkeypatch, capsys) -> None:
    import mmfeat.pipelines.cli.store as cli_store

    def boom(_args):
        raise RuntimeError("boom")

    monkeypatch.setattr(cli_store, "cmd_store_list", boom)
    assert main(["store", "list"]) == 1
    assert _one_error_line(capsys.readouterr().err) == \
        "error: RuntimeError: boom (run with --debug for the traceback)"
    assert main(["store", "list", "--debug"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err and err.rstrip().endswith("error: RuntimeError: boom (run with --debug for the traceback)")


def test_ctrl_c_exits_130(store_dir, monkeypatch, capsys) -> None:
    import mmfeat.pipelines.cli.store as cli_store

    def interrupted(_args):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli_store, "cmd_store_list", interrupted)
    assert main(["store", "list"]) == 130
    assert capsys.readouterr().err.strip() == "interrupted (SIGINT)"


def test_closed_stdout_exits_quietly(store_dir) -> None:
    """``mmfeat store list | head``: the reader is gone before the first write; no BrokenPipeError."""
    env = {**os.environ, "MMFEAT_STORE": str(store_dir)}
    proc = subprocess.Popen([sys.executable, "-m", "mmfeat.pipelines.cli", "store", "list"], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()  # closed before the interpreter has even started: the first write fails
    err = proc.stderr.read().decode()
    proc.stderr.close()
    assert proc.wait() == 141
    assert "Traceback" not in err and "BrokenPipe" not in err and "Exception ignored" not in err, err


# ---------------------------------------------------------------------------- manifests and extract
def _generic_manifest(tmp_path: Path, items_csv: str) -> Path:
    data = tmp_path / "data"
    data.mkdir()
    (data / "items.csv").write_text(items_csv)
    (data / "inter.csv").write_text("user_id,item_id\nu1,1\nu1,2\n")
    path = tmp_path / "gen.yaml"
    path.write_text(
        "name: gen\ndata_root: data\nsource:\n  kind: generic\n  root: .\n"
        "  options: {items_file: items.csv, interactions_file: inter.csv}\n"
        "feature_sets:\n  - name: t\n    kind: text_embedding\n    input: {text_fields: [title]}\n"
        "    params: {backbone: all-MiniLM-L6-v2}\n")
    return path


def test_source_problems_fail_extract_and_check_before_prefect(tmp_path, store_dir, monkeypatch, capsys) -> None:
    manifest = _generic_manifest(tmp_path, "id,title\n1,a\n2,b\n")  # no item_id column
    _forbid(monkeypatch, "mmfeat.pipelines.flows.extract_flow", "extract_features")
    assert main(["extract", str(manifest)]) == 2
    assert "item_id_column 'item_id' not found" in _one_error_line(capsys.readouterr().err)
    assert main(["manifest", "check", str(manifest)]) == 2
    assert "item_id_column 'item_id' not found" in _one_error_line(capsys.readouterr().err)
    assert main(["manifest", "check", str(manifest), "--schema-only"]) == 0  # the schema itself is fine
    assert "source not read" in capsys.readouterr().out


def test_missing_items_file_fails_extract_before_prefect(tmp_path, store_dir, monkeypatch, capsys) -> None:
    manifest = _generic_manifest(tmp_path, "item_id,title\n1,a\n")
    (tmp_path / "data" / "items.csv").unlink()
    _forbid(monkeypatch, "mmfeat.pipelines.flows.extract_flow", "extract_features")
    assert main(["extract", str(manifest)]) == 2
    assert "items.csv does not exist" in _one_error_line(capsys.readouterr().err)


def test_manifest_check_reads_the_source(tmp_path, store_dir, capsys) -> None:
    manifest = _generic_manifest(tmp_path, "item_id,title\n1,a\n2,b\n")
    assert main(["manifest", "check", str(manifest)]) == 0
    assert "source generic: 2 items, 2 interactions" in capsys.readouterr().out


def test_unknown_feature_set_fails_extract_before_prefect(store_dir, monkeypatch, capsys) -> None:
    _forbid(monkeypatch, "mmfeat.pipelines.flows.extract_flow", "extract_features")
    assert main(["extract", "microlens", "--feature-set", "nope"]) == 2
    assert "has no feature set 'nope'" in _one_error_line(capsys.readouterr().err)


def _log_flow_exception(quiet: bool) -> str:
    from mmfeat.pipelines.cli.prefect_run import quiet_tracebacks

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    logger = logging.getLogger("prefect.flow_runs")
    saved = logger.handlers[:], logger.propagate
    logger.handlers, logger.propagate = [handler], False  # only this handler: no Prefect API handler
    try:
        with quiet_tracebacks(quiet):
            try:
                raise ValueError("inside the flow")
            except ValueError:
                logger.exception("Encountered exception during execution")
    finally:
        logger.handlers, logger.propagate = saved
    return stream.getvalue()


def test_flow_tracebacks_are_dropped_unless_debug() -> None:
    assert _log_flow_exception(quiet=True) == "Encountered exception during execution\n"
    loud = _log_flow_exception(quiet=False)
    assert "Traceback" in loud and "ValueError: inside the flow" in loud


def test_run_failures_are_said_once_by_the_cli_or_shown_when_the_flow_goes_on(monkeypatch) -> None:
    """Prefect logs a failing run's exception and final state, then the CLI prints it: held back, the failure
    reaches the console once (the CLI's line); a failure the flow survives is shown after the flow."""
    from mmfeat.pipelines.cli.prefect_run import failures_said_once

    stream = io.StringIO()
    monkeypatch.setattr(logging.getLogger(), "handlers", [logging.StreamHandler(stream)])  # the console only
    for name in ("prefect.flow_runs", "prefect.task_runs"):
        monkeypatch.setattr(logging.getLogger(name), "handlers", [])  # no Prefect API handler
    flow_log, task_log = logging.getLogger("prefect.flow_runs"), logging.getLogger("prefect.task_runs")
    with pytest.raises(ValueError), failures_said_once(True):
        flow_log.info("Beginning flow run")
        task_log.error("Task run failed with exception: ValueError('x') - Retries are exhausted")
        flow_log.error("Encountered exception during execution: ValueError('x')")
        flow_log.info("Finished in state Failed('Flow run encountered an exception: ValueError: x')")
        raise ValueError("x")
    assert stream.getvalue() == "Beginning flow run\n"
    with failures_said_once(True):
        task_log.error("Task run failed with exception: OSError('y')")
        flow_log.info("Finished in state Completed()")
        assert stream.getvalue().splitlines()[-1] == "Finished in state Completed()"
    assert stream.getvalue().splitlines()[-1] == "Task run failed with exception: OSError('y')"


# ---------------------------------------------------------------------------- store commands
def test_import_list_tag_and_options_after_the_command(tmp_path, store_dir, capsys) -> None:
    version = _import_npy(tmp_path, store_dir, "ds", "imp", ["1", "2", "3"])
    assert f"ds/imp/{version}" in capsys.readouterr().out
    other = tmp_path / "other"
    other.mkdir()  # an empty store (one that does not exist is an error: tests/test_store_recovery.py)
    assert main(["store", "list", "--store", str(other)]) == 0  # --store after the command
    assert f"store {other} is empty" in capsys.readouterr().out
    assert main(["--store", str(other), "store", "list"]) == 0  # and before it
    assert f"store {other} is empty" in capsys.readouterr().out
    assert main(["store", "tag", "ds", "imp", "latest", "paper"]) == 0
    assert FeatureStore(store_dir).resolve("ds", "imp", "paper") == version
    assert main(["store", "import", "ds", "imp", str(tmp_path / "nope.npy")]) == 2
    assert "nope.npy does not exist" in _one_error_line(capsys.readouterr().err)


def test_verify_corrupt_part_is_a_failure(tmp_path, store_dir, capsys) -> None:
    version = _import_npy(tmp_path, store_dir, "ds", "imp", ["1", "2", "3"])
    assert main(["store", "verify", "ds", "imp"]) == 0
    assert main(["store", "verify", "ds", "imp", "nope"]) == 2  # a wrong ref is a usage error
    _one_error_line(capsys.readouterr().err)
    part = next((store_dir / "ds" / "imp" / version).glob("part-*.parquet"))
    data = bytearray(part.read_bytes())
    data[len(data) // 2] ^= 0xFF
    part.write_bytes(bytes(data))
    assert main(["store", "verify", "ds", "imp"]) == 1  # damage found by the command is a failure
    assert "corrupt" in _one_error_line(capsys.readouterr().err)


def test_export_mmrec_takes_a_manifest(tmp_path, store_dir, capsys) -> None:
    from mmfeat.pipelines.engine.extract import load_items
    from mmfeat.pipelines.manifest import load_manifest

    items, _inter, _fp = load_items(load_manifest("microlens"))
    _import_npy(tmp_path, store_dir, "microlens-mini", "imp", items.column("item_id").to_pylist())
    out = tmp_path / "mmrec" / "mini"
    assert main(["store", "export", "mmrec", "microlens", "--feature", "text_feat=imp", "--out", str(out)]) == 0
    assert (out / "mini.inter").exists() and np.load(out / "text_feat.npy").shape[1] == 4


# ---------------------------------------------------------------------------- help
def _walk(parser: argparse.ArgumentParser, path: str = "mmfeat"):
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help for a in action._choices_actions}
            for name, sub in action.choices.items():
                assert helps.get(name), f"{path} {name} has no help line"
                yield from _walk(sub, f"{path} {name}")


def test_every_command_and_option_has_help() -> None:
    commands = list(_walk(build_parser()))
    assert len(commands) >= 15
    for path, parser in commands:
        for action in parser._actions:
            if not isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
                assert action.help, f"{path}: {action.option_strings or action.dest} has no help"


def test_train_help_lists_the_models(capsys) -> None:
    from mmfeat.recommenders.models import model_names

    with pytest.raises(SystemExit) as exc:
        main(["train", "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "--split-seed" in out and all(name in out for name in model_names())


# ---------------------------------------------------------------------------- typos: refused early, once
@pytest.mark.parametrize("argv, typo", [
    (["extract", "microlens", "--progres", "none"], "--progres"),
    (["--stor=elsewhere", "store", "list"], "--stor=elsewhere"),
    (["store", "list", "--debu"], "--debu"),
])
def test_abbreviated_options_are_refused(argv, typo, store_dir, monkeypatch, capsys) -> None:
    """``--progres`` once started a full extraction as ``--progress``."""
    _forbid(monkeypatch, "mmfeat.pipelines.flows.extract_flow", "extract_features")
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    assert f"error: unrecognized arguments: {typo}" in capsys.readouterr().err


def test_every_argument_parser_refuses_abbreviations() -> None:
    import re

    for path, parser in _walk(build_parser()):
        assert parser.allow_abbrev is False, path
    calls = []  # every parser built in the repository's own code (scripts and benchmarks included)
    for py in sorted(REPO.rglob("*.py")):
        if any(part.startswith(".") or part in ("build", "dist", "store", "runs") for part in py.relative_to(REPO).parts):
            continue
        text = py.read_text()
        calls += [(py, text[m.start():m.start() + 300]) for m in re.finditer(r"ArgumentParser\(", text)]
    assert len(calls) > 20
    missing = [f"{py.relative_to(REPO)}: {call.splitlines()[0]}" for py, call in calls
               if "allow_abbrev=False" not in call.split(")")[0]]
    assert not missing, missing


def _published_title_minilm(tmp_path: Path) -> None:
    from tests.conftest import import_microlens_features

    import_microlens_features(tmp_path, [("title_minilm", None)])  # into tmp_path/store: the store_dir


@pytest.mark.parametrize("argv", [
    ["extract", "microlens", "--feature-set", "title_minlm"],
    ["train", "microlens", "--model", "FREEDOM", "--feature", "text=title_minlm"],
    ["train", "microlens", "--model", "FREEDOM", "--feature", "text=title_minilm", "--versus", "text=title_minlm"],
    ["store", "show", "microlens-mini", "title_minlm"],
    ["store", "export", "mmrec", "microlens", "--feature", "text_feat=title_minlm", "--out", "OUT"],
], ids=["extract", "train-feature", "train-versus", "store-show", "store-export"])
def test_feature_set_typo_suggests_the_real_name_never_the_typo(argv, tmp_path, store_dir, monkeypatch,
                                                                 capsys) -> None:
    _published_title_minilm(tmp_path)
    _forbid(monkeypatch, "mmfeat.pipelines.flows.extract_flow", "extract_features")
    _forbid(monkeypatch, "mmfeat.pipelines.flows.train_flow", "train_recommender")
    argv = [str(tmp_path / "out") if a == "OUT" else a for a in argv]
    assert main(argv) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert "did you mean title_minilm?" in line, line
    assert "mmfeat extract" not in line and "--feature-set title_minlm" not in line, line


#: run in a fresh interpreter: each command's exit code and which heavy modules it imported
_HEAVY_PROBE = """
import json, sys
from mmfeat.pipelines.cli import main
out = []
for argv in json.loads(sys.argv[1]):
    code = main(argv)
    out.append([code, sorted(m for m in ("torch", "transformers", "prefect", "sentence_transformers")
                             if m in sys.modules)])
print(json.dumps(out))
"""


def test_unknown_names_are_refused_before_torch_or_prefect_is_imported(tmp_path) -> None:
    import json

    bad_kind = tmp_path / "bad.yaml"
    bad_kind.write_text((REPO / "manifests" / "microlens.yaml").read_text()
                        .replace("kind: text_embedding", "kind: text_embeding")
                        .replace("data_root: data/microlens-mini", f"data_root: {REPO}/manifests/data/microlens-mini"))
    cases = [["train", "microlens", "--model", "FREEDOMM"], ["unlearn", "microlens", "--model", "lightgcm"],
             ["train", "no-such-manifest", "--model", "FREEDOM"], ["manifest", "check", str(bad_kind)],
             ["extract", str(bad_kind)], ["extract", "microlens", "--feature-set", "title_minlm"]]
    env = {**os.environ, "MMFEAT_STORE": str(tmp_path / "store")}
    proc = subprocess.run([sys.executable, "-c", _HEAVY_PROBE, json.dumps(cases)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads(proc.stdout.strip().splitlines()[-1])
    assert results == [[2, []]] * len(cases), list(zip(cases, results))
    err = proc.stderr
    assert "unknown model 'FREEDOMM'; did you mean FREEDOM?" in err and "did you mean LightGCN?" in err, err
    assert "manifest 'no-such-manifest' not found" in err and "did you mean text_embedding?" in err, err


def test_static_model_names_are_the_registry() -> None:
    """The CLI refuses a model name from a static list; it must be the registry's, exactly."""
    from mmfeat.pipelines.cli.names import MODEL_NAMES
    from mmfeat.recommenders import model_names

    assert list(MODEL_NAMES) == model_names()


def test_a_mistyped_backbone_is_refused_by_check_and_extract_once(tmp_path, store_dir, monkeypatch, capsys) -> None:
    manifest = _generic_manifest(tmp_path, "item_id,title\n1,a\n2,b\n")
    manifest.write_text(manifest.read_text().replace("all-MiniLM-L6-v2", "all-MiniLM-L6-v3"))
    _forbid(monkeypatch, "mmfeat.pipelines.flows.extract_flow", "extract_features")
    for argv in (["manifest", "check", str(manifest)], ["manifest", "check", str(manifest), "--schema-only"],
                 ["extract", str(manifest)]):
        assert main(argv) == 2
        line = _one_error_line(capsys.readouterr().err)
        assert "feature_sets.0.params.backbone: unknown backbone 'all-MiniLM-L6-v3'; did you mean all-MiniLM-L6-v2?" \
            in line, line
        assert line.count("all-MiniLM-L6-v3") == 1, line
