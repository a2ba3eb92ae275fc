"""The temporary Prefect server of a CLI command: a child the command owns, which dies with it.

Without ``PREFECT_API_URL``, Prefect 3 starts an "ephemeral" server on the first API call
(``prefect.server.api.server.SubprocessASGIServer``: ``python -m uvicorn ... create_app`` via
``subprocess.Popen``) and stops it from an ``atexit`` hook. A ``kill -9`` of the command runs no hook,
and a SIGTERM (Python's default: exit at once) neither, so the ~220 MB uvicorn process was reparented to
PID 1 and kept running. :func:`owned_prefect_server` starts the same server itself, so that:

- the kernel kills it when the command dies, however it dies (``prctl(PR_SET_PDEATHSIG)``, requested by
  :mod:`mmfeat.pipelines.cli.die_with_parent` before it ``exec``s uvicorn);
- it runs in its own session, so Ctrl-C in a terminal reaches only the command, which then lets Prefect
  record the crash, drains Prefect's log and event workers, and stops the server (SIGTERM to its process
  group, SIGKILL after a grace period) in a ``finally``;
- ``PREFECT_API_URL`` points at it while the command runs (in this process's settings and environment,
  so threads and local Dask/Ray workers report to it), and Prefect never starts a server of its own.

A server the user configured (``PREFECT_API_URL`` in the environment or the Prefect profile, or a test
harness) is used as it is: the command starts and stops nothing.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

log = logging.getLogger(__name__)

#: how long the server may take to stop after SIGTERM before it is killed
STOP_GRACE_S = 5.0
#: uvicorn's exit status when its port is taken (Prefect retries on another port; so do we)
PORT_IN_USE = 3
GUARD = Path(__file__).with_name("die_with_parent.py")


def _free_port() -> int:
    """A port on 127.0.0.1 that nothing listens on now (uvicorn exits with PORT_IN_USE if one takes it first)."""
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def server_command(port: int) -> list[str]:
    """The command Prefect's own ephemeral server runs (``SubprocessASGIServer._run_uvicorn_command``)."""
    import prefect

    return [sys.executable, "-m", "uvicorn", "--app-dir", str(prefect.__module_path__.parent), "--factory",
            "prefect.server.api.server:create_app", "--host", "127.0.0.1", "--port", str(port),
            "--log-level", "error", "--lifespan", "on"]


def _server_env() -> dict[str, str]:
    """The environment Prefect gives its ephemeral server: no UI, ephemeral mode, this process's settings."""
    from prefect.settings import get_current_settings

    return {**os.environ, "PREFECT_UI_ENABLED": "0", "PREFECT__SERVER_EPHEMERAL": "1", "PREFECT__SERVER_FINAL": "1",
            **get_current_settings().to_environment_variables(exclude_unset=True)}


class OwnedServer:
    """One uvicorn process serving the Prefect API on 127.0.0.1, started by :meth:`start`, gone after
    :meth:`stop` or when this process dies."""

    def __init__(self) -> None:
        self.process: subprocess.Popen[bytes] | None = None
        self.port: int | None = None

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"

    def _spawn(self) -> None:
        self.port = _free_port()
        self.process = subprocess.Popen(
            [sys.executable, "-I", str(GUARD), str(os.getpid()), *server_command(self.port)],
            env=_server_env(), stdin=subprocess.DEVNULL, start_new_session=True)

    def start(self, timeout_s: float) -> str:
        """Start the server and wait until its health check answers.

        Args:
            timeout_s: how long to wait for it.

        Returns:
            Its API URL (``http://127.0.0.1:PORT/api``).

        Raises:
            RuntimeError: it exited, or did not answer within ``timeout_s``; the message says which.
        """
        import httpx

        self._spawn()
        deadline = time.monotonic() + timeout_s
        with httpx.Client(timeout=2.0) as client:
            while time.monotonic() < deadline:
                assert self.process is not None
                code = self.process.poll()
                if code == PORT_IN_USE:
                    self._spawn()
                    continue
                if code is not None:
                    raise RuntimeError(f"the temporary Prefect server exited with code {code} before it answered "
                                       f"(its error is above); or point PREFECT_API_URL at a running server")
                with contextlib.suppress(httpx.HTTPError):
                    if client.get(f"{self.api_url}/health").status_code == 200:
                        log.debug("temporary Prefect server (pid %s) at %s", self.process.pid, self.api_url)
                        return self.api_url
                time.sleep(0.1)
        raise RuntimeError(f"the temporary Prefect server did not answer within {timeout_s:.0f} s (raise "
                           "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS on a busy machine, or point "
                           "PREFECT_API_URL at a running server)")

    def stop(self) -> None:
        """SIGTERM to the server's process group, SIGKILL after STOP_GRACE_S; idempotent."""
        proc, self.process = self.process, None
        if proc is None:
            return
        for sig, wait_s in ((signal.SIGTERM, STOP_GRACE_S), (signal.SIGKILL, None)):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, sig)  # its own session: the group is the server and anything it started
            try:
                proc.wait(timeout=wait_s)
                return
            except subprocess.TimeoutExpired:
                continue


def _drain_prefect_workers() -> None:
    """Send Prefect's buffered run logs and events before the server goes (as Prefect's test harness does),
    so that nothing tries to reach a stopped server at exit."""
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    with contextlib.suppress(Exception):  # a worker that never started has nothing to send
        APILogWorker.drain_all(timeout=STOP_GRACE_S, at_exit=False)
    with contextlib.suppress(Exception):
        EventsWorker.drain_all(timeout=STOP_GRACE_S, at_exit=False)


@contextlib.contextmanager
def _api_url(url: str) -> Iterator[None]:
    """``PREFECT_API_URL = url`` in the environment (child processes, threads without a settings context)
    and in Prefect's settings context (this thread); all restored afterwards. ``PREFECT_UI_URL`` is set
    empty: the server serves no UI and stops with the command, so Prefect must not print "View at" links."""
    from prefect.context import refresh_global_settings_context
    from prefect.settings import PREFECT_API_URL, PREFECT_UI_URL, temporary_settings

    values = {"PREFECT_API_URL": url, "PREFECT_UI_URL": ""}
    old = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    refresh_global_settings_context()
    try:
        with temporary_settings(updates={PREFECT_API_URL: url, PREFECT_UI_URL: ""}):
            yield
    finally:
        for key, value in old.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        refresh_global_settings_context()


@contextlib.contextmanager
def owned_prefect_server() -> Iterator[str]:
    """A Prefect API for the block: the configured one, else a temporary server this process owns.

    Yields:
        The API URL the block's flows report to.

    Raises:
        RuntimeError: the temporary server did not start (see :meth:`OwnedServer.start`).
    """
    from prefect.settings import PREFECT_API_URL, PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS

    configured = PREFECT_API_URL.value()
    if configured:
        yield str(configured)
        return
    server = OwnedServer()
    try:
        url = server.start(float(PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS.value()))
        with _api_url(url):
            try:
                yield url
            finally:
                _drain_prefect_workers()
    finally:
        server.stop()
