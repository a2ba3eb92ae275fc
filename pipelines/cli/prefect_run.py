"""Running a Prefect flow from the CLI: on a server the command owns, and its failure said once.

Server: :func:`prefect_session` gives the command's flows a Prefect API for as long as it runs, the
configured one or a temporary server that dies with the command (:mod:`mmfeat.pipelines.cli.prefect_server`);
:func:`run_flow` opens one if the command has not, so every command that runs a flow gets it.

Failure said once: a flow run that fails logs the exception (``Encountered exception during
execution: ...``) and its final state (``Finished in state Failed(...)``) through Prefect's run loggers,
a task run its final failure, a crash ``Crash detected! ...``; then the CLI prints its own ``error:`` or
``interrupted`` line: the same message three times. Unless ``--debug`` is given, these records are held
back from the console (:class:`HoldFailures`) and dropped when the flow raises (the CLI's one line says
it), or shown after it when the flow ends normally (a failure the flow handled). The Prefect API log keeps
them all, and records of the run loggers that are shown lose their traceback (:class:`DropTraceback`).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import re
from typing import Any, Callable, Iterator

RUN_LOGGERS = ("prefect.flow_runs", "prefect.task_runs")

#: a run-logger record that repeats a failure the CLI reports itself (besides any ERROR record)
_FAILURE = re.compile(r"^(Encountered exception during execution|Finished in state (Failed|Crashed)|Crash detected!)")

_session_depth = 0


class DropTraceback(logging.Filter):
    """Keep the record, drop its ``exc_info``: the one-line message stays, the traceback goes."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.exc_info = None
        record.exc_text = None
        record.stack_info = None
        return True


@contextlib.contextmanager
def quiet_tracebacks(enabled: bool) -> Iterator[None]:
    """While the block runs, Prefect's run loggers log no tracebacks (when ``enabled``)."""
    if not enabled:
        yield
        return
    flt = DropTraceback()
    loggers = [logging.getLogger(name) for name in RUN_LOGGERS]
    for lg in loggers:
        lg.addFilter(flt)
    try:
        yield
    finally:
        for lg in loggers:
            lg.removeFilter(flt)


def is_failure_record(record: logging.LogRecord) -> bool:
    """A run logger's record of a failure or crash: what the CLI's own one line says again."""
    if not record.name.startswith(RUN_LOGGERS):
        return False
    return record.levelno >= logging.ERROR or bool(_FAILURE.match(record.getMessage()))


class HoldFailures(logging.Filter):
    """On one console handler: hold back :func:`is_failure_record` records until the flow's outcome is known."""

    def __init__(self, handler: logging.Handler) -> None:
        super().__init__()
        self.handler = handler
        self.held: list[logging.LogRecord] = []

    def filter(self, record: logging.LogRecord) -> bool:
        if is_failure_record(record):
            self.held.append(record)
            return False
        return True


@contextlib.contextmanager
def failures_said_once(enabled: bool) -> Iterator[None]:
    """While the block runs, the root logger's handlers (the console) hold back run failures; they are
    dropped if the block raises (the CLI reports the exception once), shown if it returns."""
    if not enabled:
        yield
        return
    holds = [HoldFailures(h) for h in logging.getLogger().handlers]
    for hold in holds:
        hold.handler.addFilter(hold)
    ok = False
    try:
        yield
        ok = True
    finally:
        for hold in holds:
            hold.handler.removeFilter(hold)
            for record in hold.held if ok else []:
                hold.handler.handle(record)


@contextlib.contextmanager
def prefect_session() -> Iterator[str]:
    """A Prefect API for every flow the block runs (one temporary server for all of them, stopped when the
    block ends however it ends); nested sessions share the outer one.

    Yields:
        The API URL.
    """
    global _session_depth
    from mmfeat.pipelines.cli.prefect_server import owned_prefect_server

    if _session_depth:
        from prefect.settings import PREFECT_API_URL

        yield str(PREFECT_API_URL.value())
        return
    _session_depth += 1
    try:
        with owned_prefect_server() as url:
            yield url
    finally:
        _session_depth -= 1


def run_flow(flow: Callable[..., Any], args: argparse.Namespace, **params: Any) -> Any:
    """Call ``flow(**params)`` in this process, on the command's Prefect server; unless ``--debug``,
    Prefect logs no tracebacks and no copies of the failure the CLI reports."""
    quiet = not getattr(args, "debug", False)
    with prefect_session(), quiet_tracebacks(quiet), failures_said_once(quiet):
        return flow(**params)
