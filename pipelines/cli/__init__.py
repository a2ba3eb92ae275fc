"""The ``mmfeat`` command line (``mmfeat.pipelines.cli:main``). One module per command group:

    mmfeat extract MANIFEST [--feature-set NAME] [--tag T] [--data-root DIR]     (extract.py)
    mmfeat serve                                                                 (extract.py)
    mmfeat manifest check MANIFEST [--schema-only]                               (manifest.py)
    mmfeat store list|show|summary|verify|repair|drop|tag|import|export ...                  (store.py)
    mmfeat train MANIFEST --model FREEDOM --feature text=text_minilm [--versus text=text_mpnet]
    mmfeat compare runs/<run-a> runs/<run-b>                                     (train.py)
    mmfeat simulate MANIFEST --agent agent|static|popularity [--base-model M] [--population N] ...  (simulate.py)

Every error is one ``error:`` line on stderr (``--debug`` adds the traceback); exit code 2 for a
usage error, 1 for a failure (see :mod:`mmfeat.pipelines.cli.errors`); Ctrl-C and SIGTERM print one
``interrupted (SIGNAL)`` line and exit 130 / 143. Options are never abbreviated (``--progres`` is an
error). Commands import their heavy dependencies (Prefect, torch) only once their inputs have been
checked, and leave no process behind: a command that runs a flow owns its temporary Prefect server
(:mod:`mmfeat.pipelines.cli.prefect_server`), which dies with it, even after ``kill -9``.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Sequence

from mmfeat.pipelines.cli.args import Parser, common_options
from mmfeat.pipelines.cli.errors import BROKEN_PIPE, report, silence_stdout
from mmfeat.pipelines.cli.extract import add_extract_commands
from mmfeat.pipelines.cli.manifest import add_manifest_commands
from mmfeat.pipelines.cli.signals import handle_signals
from mmfeat.pipelines.cli.simulate import add_simulate_command
from mmfeat.pipelines.cli.store import add_store_commands, summarize_version
from mmfeat.pipelines.cli.train import add_train_commands
from mmfeat.pipelines.cli.unlearn import add_unlearn_command
from mmfeat.pipelines.environment import apply_defaults

__all__ = ["build_parser", "main", "summarize_version"]


def build_parser() -> argparse.ArgumentParser:
    """The full parser; ``--store``, ``-v`` and ``--debug`` are accepted before or after the command."""
    common = common_options()
    p = Parser(prog="mmfeat", parents=[common_options(top_level=True)],
               description="Offline multimodal feature factory for recommenders: extract versioned features, "
                           "inspect and export the store, train and compare recommenders.",
               epilog="`mmfeat COMMAND --help` describes each command.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_extract_commands(sub, common)
    add_manifest_commands(sub, common)
    add_store_commands(sub, common)
    add_train_commands(sub, common)
    add_unlearn_command(sub, common)
    add_simulate_command(sub, common)
    return p


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at emit time (not the stream at setup), so a CLI call from
    a notebook or a test with captured output never logs into a closed stream."""

    @property  # type: ignore[override]
    def stream(self):  # noqa: ANN201
        return sys.stderr

    @stream.setter
    def stream(self, _value) -> None:  # noqa: ANN001
        pass


def _setup_logging(verbose: bool) -> None:
    root = logging.getLogger()
    if not any(isinstance(h, _StderrHandler) for h in root.handlers):
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    logging.getLogger("httpx").setLevel(logging.WARNING)


def _run(args: argparse.Namespace) -> int:
    """The command, with stdout flushed inside so that a closed pipe is seen here, not at exit."""
    code = int(args.func(args) or 0)
    sys.stdout.flush()
    return code


def main(argv: Sequence[str] | None = None) -> int:
    """Parse, run, and turn any exception into one line on stderr and an exit code."""
    args = build_parser().parse_args(argv)  # usage errors: argparse prints one line + usage, exit 2
    apply_defaults()  # Prefect home in the working directory, telemetry off; before Prefect loads
    _setup_logging(args.verbose)
    try:
        with handle_signals():  # SIGINT / SIGTERM unwind the command (its finally blocks stop its server)
            return _run(args)
    except BrokenPipeError:  # the reader went away (`mmfeat store list | head`): stop quietly
        silence_stdout()
        return BROKEN_PIPE
    except (Exception, KeyboardInterrupt) as exc:  # noqa: BLE001 - the one place errors become one line
        return report(exc, debug=args.debug, on_interrupt=getattr(args, "on_interrupt", ""))
