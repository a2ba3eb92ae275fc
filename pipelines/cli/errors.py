"""How the ``mmfeat`` CLI reports errors: one line on stderr, never a traceback unless ``--debug``.

Exit codes: 2 for a usage error (a wrong name, value, path or manifest: nothing ran), 1 for a
failure while running (missing weights, a feature set over its error threshold, a corrupt part),
130 for Ctrl-C (SIGINT), 143 for SIGTERM (one ``interrupted (SIGNAL)`` line, see
:mod:`mmfeat.pipelines.cli.signals`), 141 (128 + SIGPIPE) when the reader of stdout went away
(``mmfeat store list | head``).

The project's own errors already say what is wrong; the hints below add what to do next where the
message alone cannot. Anything else is unexpected: its one line names the exception type and says
how to see the traceback.
"""

from __future__ import annotations

import os
import signal
import sys
import traceback

USAGE = 2
FAILURE = 1
INTERRUPTED = 130  # 128 + SIGINT; SIGTERM is 143
BROKEN_PIPE = 141

DEBUG_HINT = "run with --debug for the traceback"


class UsageError(ValueError):
    """A malformed command-line value, found by the CLI itself (exit 2)."""


class CommandFailed(RuntimeError):
    """A command ran and what it checked is not right (exit 1), e.g. ``store verify`` on a corrupt part."""


def _project_errors() -> list[tuple[type[BaseException], int, str]]:
    """(error class, exit code, next-step hint) for the project's own errors, most specific first.

    Looked up in ``sys.modules``, not imported: an error of a class can only exist once its module
    is loaded, so ``mmfeat --help`` loads neither torch nor Prefect, and a class another module does
    not define (yet) is simply absent from the table."""
    table = [
        (UsageError, USAGE, ""),
        (CommandFailed, FAILURE, ""),
        (_optional("mmfeat.pipelines.training.run", "TrainRequestError"), USAGE, ""),
        (_optional("mmfeat.pipelines.simulation.sessions", "SimulateRequestError"), USAGE, ""),
        (_optional("mmfeat.recommenders.config", "ConfigError"), USAGE, ""),
        (_optional("mmfeat.pipelines.manifest", "ManifestError"), USAGE, ""),
        (_optional("mmfeat.pipelines.sources", "SourceError"), USAGE,
         "fix the manifest's source options or data_root, or pass --data-root"),
        (_optional("mmfeat.pipelines.training.interactions", "SplitRequestError"), USAGE, ""),
        (_optional("mmfeat.recommenders.ctr.data", "CTRDataError"), USAGE, ""),
        (_optional("mmfeat.pipelines.store.feature_store", "StoreError"), USAGE, ""),  # its messages list what the store has
        (_optional("mmfeat.featurizers.registry", "Unavailable"), FAILURE, ""),  # missing weights or extra
        (_optional("mmfeat.pipelines.engine.extract", "FeatureSetFailed"), FAILURE,
         "its finished parts stay staged: fix the cause and re-run to resume"),
    ]
    return [(cls, code, hint) for cls, code, hint in table if cls is not None]


def _optional(module: str, name: str) -> type[BaseException] | None:
    """``module.name`` if that module is loaded and defines an exception class of that name."""
    mod = sys.modules.get(module)
    cls = getattr(mod, name, None) if mod is not None else None
    return cls if isinstance(cls, type) and issubclass(cls, BaseException) else None


def one_line(text: str) -> str:
    """Multi-line messages (a manifest's validation errors) joined into one line."""
    parts = [p.strip() for p in str(text).splitlines() if p.strip()]
    return "; ".join(parts)


def _message(exc: BaseException) -> str:
    if isinstance(exc, KeyError) and len(exc.args) == 1:  # str(KeyError) is the repr of its argument
        return str(exc.args[0])
    return str(exc) or type(exc).__name__


def classify(exc: BaseException) -> tuple[int, str]:
    """The exit code and the one line (without the ``error:`` prefix) for ``exc``."""
    for cls, code, hint in _project_errors():
        if isinstance(exc, cls):
            msg = one_line(_message(exc))
            return code, msg if not hint or hint in msg else f"{msg} ({hint})"
    if isinstance(exc, (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError)):
        return FAILURE, one_line(_message(exc))
    return FAILURE, f"{type(exc).__name__}: {one_line(_message(exc))} ({DEBUG_HINT})"


def report(exc: BaseException, *, debug: bool, on_interrupt: str = "") -> int:
    """Print ``exc`` as one ``error:`` line on stderr (after its traceback with ``--debug``); the exit code.

    Args:
        exc: what ended the command.
        debug: print the traceback first.
        on_interrupt: what an interruption leaves behind, appended to the ``interrupted (SIGNAL)`` line
            (``extract``: the finished shards, which the next run resumes from).

    Returns:
        The exit code: 2 usage, 1 failure, 128 + signal for SIGINT / SIGTERM.
    """
    if isinstance(exc, KeyboardInterrupt):  # Ctrl-C, or SIGINT / SIGTERM as signals.Interrupted
        signum = getattr(exc, "signum", signal.SIGINT)
        if debug:
            traceback.print_exception(exc, file=sys.stderr)
        print(f"interrupted ({signal.Signals(signum).name})" + (f"; {on_interrupt}" if on_interrupt else ""),
              file=sys.stderr)
        return 128 + int(signum)
    code, line = classify(exc)
    if debug:
        traceback.print_exception(exc, file=sys.stderr)
    print(f"error: {line}", file=sys.stderr)
    return code


def silence_stdout() -> None:
    """After a broken pipe: point stdout at /dev/null so the interpreter's final flush cannot raise
    again (the recipe of the Python docs, "Note on SIGPIPE"). A captured, fd-less stdout is left alone."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, fd)
    finally:
        os.close(devnull)
