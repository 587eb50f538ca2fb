"""Real servers for tests: a free port, `python -m parity serve` (or `emulate`) as a subprocess, and an ASGI app
under uvicorn on a real socket in a thread.

`tests/` has a conftest.py and no `__init__.py`, so pytest puts it on sys.path: import these as
`from servers import free_port, start_serve, uvicorn_on_socket`."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

HOST = "127.0.0.1"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now (bound to port 0, then released)."""
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]


def start_serve(args: list[str], *, cwd: str | os.PathLike[str] | None, env: dict[str, str] | None = None,
                ready_path: str = "/healthz", timeout_s: float = 60, command: str = "serve",
                log: Path | None = None) -> tuple[subprocess.Popen[str], str]:
    """Run `python -m parity COMMAND ARGS --port P` on a free port P and wait until GET `ready_path` answers
    (any HTTP status); return (the process, its base URL `http://127.0.0.1:P`).

    Its output (stdout and stderr together) goes to a text pipe, read with `process.communicate()`, or is appended
    to the file `log` when given. `env` None inherits this process's environment. The test fails, with that output,
    if the process exits first or nothing answers within `timeout_s` (the process is then killed). Stopping it
    (SIGINT, SIGKILL...) is the caller's."""
    port = free_port()
    argv = [sys.executable, "-m", "parity", command, *args, "--port", str(port)]
    if log is None:
        process = subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    else:
        with open(log, "a") as out:
            process = subprocess.Popen(argv, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT, text=True)
    base = f"http://{HOST}:{port}"
    deadline = time.monotonic() + timeout_s
    while True:
        if process.poll() is not None:
            pytest.fail(f"`parity {command}` exited ({process.returncode}) before it answered:\n"
                        f"{_output(process, log)}")
        try:
            httpx.get(base + ready_path, timeout=0.5)
            return process, base
        except httpx.TransportError:
            if time.monotonic() > deadline:
                process.kill()
                pytest.fail(f"`parity {command}` did not answer GET {ready_path} within {timeout_s:g} s:\n"
                            f"{_output(process, log)}")
            time.sleep(0.1)


def _output(process: subprocess.Popen[str], log: Path | None) -> str:
    """All a finished (or killed) process wrote."""
    if log is None:
        return process.communicate()[0]
    process.wait()
    return log.read_text()


@contextmanager
def uvicorn_on_socket(app: Any, *, lifespan: str = "auto", timeout_s: float = 10) -> Iterator[str]:
    """Serve the ASGI `app` with uvicorn (quiet) on a socket bound to a free port, in a daemon thread; yield its base
    URL `http://127.0.0.1:P`. The test fails if it has not started within `timeout_s`. On exit the server is told to
    stop and awaited (up to `timeout_s`: a lifespan shutdown runs to its end), then the socket is closed."""
    import uvicorn

    sock = socket.socket()
    sock.bind((HOST, 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="critical", lifespan=lifespan))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + timeout_s
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                pytest.fail(f"uvicorn did not start within {timeout_s:g} s")
            time.sleep(0.01)
        yield f"http://{HOST}:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=timeout_s)
        sock.close()
