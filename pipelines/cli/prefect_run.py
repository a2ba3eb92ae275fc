"""Running a Prefect flow from the CLI: its tracebacks appear only with ``--debug``.

A flow run that fails logs the exception's traceback through Prefect's run loggers before the CLI
sees the exception and prints its own one-line ``error:``. From the command line that traceback is
noise (the ephemeral server that would show it in a UI stops with the command), so unless
``--debug`` is given, records of the run loggers keep their message and lose their traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
from typing import Any, Callable, Iterator

RUN_LOGGERS = ("prefect.flow_runs", "prefect.task_runs")


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


def run_flow(flow: Callable[..., Any], args: argparse.Namespace, **params: Any) -> Any:
    """Call ``flow(**params)`` in this process; Prefect logs tracebacks only under ``--debug``."""
    with quiet_tracebacks(not getattr(args, "debug", False)):
        return flow(**params)
