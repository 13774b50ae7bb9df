"""Run the real gateway (``backserv serve``) as a subprocess on a free loopback port."""

from __future__ import annotations

import contextlib
import os
import resource
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    port: int
    log_path: Path
    workdir: Path | None = None
    env: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    @property
    def pid(self) -> int:
        return self.process.pid

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self.log().splitlines()[-lines:])

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        return self.process.wait(timeout)

    def kill(self) -> int:
        """``kill -9``: no shutdown code runs; returns once the process is reaped."""
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
        return self.process.wait(10)

    def restart(self) -> Server:
        """Start a new process on the same port, workdir (database, files) and env."""
        if self.process.poll() is None:
            raise RuntimeError("the server is still running; stop or kill it first")
        assert self.workdir is not None
        return start_server(self.workdir, self.env, port=self.port)


def start_server(
    workdir: Path, env: dict[str, str], port: int | None = None, *, fd_limit: int | None = None
) -> Server:
    """``fd_limit`` sets the process's file-descriptor limit (soft and hard), as ``ulimit -n``."""
    port = port or free_port()
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("BACKSERV_")}
    full_env.update(
        {
            "BACKSERV_HOST": "127.0.0.1",
            "BACKSERV_PORT": str(port),
            "BACKSERV_DATABASE_URL": f"sqlite:///{workdir / 'backserv.db'}",
            "BACKSERV_STORAGE_DIR": str(workdir / "files"),
            "BACKSERV_CATALOG_PATH": str(ROOT / "catalog.toml"),
            "BACKSERV_PUBLIC_URL": f"http://127.0.0.1:{port}",
        }
    )
    full_env.update(env)
    log_path = workdir / f"server-{port}.log"
    with log_path.open("ab") as log:
        log.write(f"---- backserv serve started at {time.time():.3f} ----\n".encode())
        log.flush()
        process = subprocess.Popen(
            [sys.executable, "-m", "gateway.cli", "serve"],
            cwd=workdir,
            env=full_env,
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=None if fd_limit is None else _limit_fds(fd_limit),
        )
    server = Server(process, port, log_path, workdir, dict(env))
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited early:\n{server.log()}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{server.url}/healthz", timeout=1).status_code == 200:
                return server
        time.sleep(0.05)
    server.kill()
    raise RuntimeError(f"the server did not become healthy:\n{server.log()}")


def _limit_fds(limit: int) -> Callable[[], None]:
    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))

    return apply


@contextlib.contextmanager
def running_server(
    workdir: Path, env: dict[str, str], *, fd_limit: int | None = None
) -> Iterator[Server]:
    server = start_server(workdir, env, fd_limit=fd_limit)
    try:
        yield server
    finally:
        if server.process.poll() is None:
            server.stop()
