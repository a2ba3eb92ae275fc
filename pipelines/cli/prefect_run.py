"""Running a Prefect flow from the CLI: on a server the command owns, and its failure said once.

Server: :func:`prefect_session` gives the command's flows a Prefect API for as long as it runs, the
configured one or a temporary server that dies with the command (:mod:`mmfeat.pipelines.cli.prefect_server`),
started when the first flow runs; :func:`run_flow` opens a session if the command has not, so every
command that runs a flow gets one.

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


class PrefectSession:
    """The Prefect API of one command, started on first use: the configured one, or a temporary server
    the command owns (:func:`mmfeat.pipelines.cli.prefect_server.owned_prefect_server`), stopped when the
    session ends."""

    def __init__(self) -> None:
        self.stack = contextlib.ExitStack()
        self.url: str | None = None

    def api_url(self) -> str:
        """The API URL, starting the temporary server the first time it is needed."""
        if self.url is None:
            from mmfeat.pipelines.cli.prefect_server import owned_prefect_server

            self.url = self.stack.enter_context(owned_prefect_server())
        return self.url


_current: PrefectSession | None = None


@contextlib.contextmanager
def prefect_session() -> Iterator[PrefectSession]:
    """One :class:`PrefectSession` for every flow the block runs (one temporary server for all of them,
    stopped when the block ends however it ends); a nested block shares the outer session."""
    global _current
    if _current is not None:
        yield _current
        return
    _current = session = PrefectSession()
    try:
        with session.stack:
            yield session
    finally:
        _current = None


def run_flow(flow: Callable[..., Any], args: argparse.Namespace, **params: Any) -> Any:
    """Call ``flow(**params)`` in this process, on the command's Prefect API (started here, if this is the
    command's first flow); unless ``--debug``, Prefect logs no tracebacks and no copies of the failure the
    CLI reports. A plain callable in place of a flow (a test's stand-in) needs no Prefect API."""
    from prefect import Flow

    quiet = not getattr(args, "debug", False)
    with prefect_session() as session, quiet_tracebacks(quiet), failures_said_once(quiet):
        if isinstance(flow, Flow):
            session.api_url()
        return flow(**params)
