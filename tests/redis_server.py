"""A real redis-server on a free loopback port, in a temporary folder, for the tests that need Redis
(the shared rate limit, the job queue). A real server, not a fake: the Lua scripts, TIME and expiry
are what is under test."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

MISSING = ("redis-server not found: install Debian's redis-server package "
           "(scripts/setup.sh --dev does so as root)")


def redis_server_or_skip() -> str:
    """The redis-server executable; a missing one skips the test, loudly, and fails it on CI,
    where a skip would hide that the Redis code went untested."""
    path = shutil.which("redis-server")
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail(MISSING)
        pytest.skip(MISSING)
    return path


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class RedisServer:
    """One redis-server process. `args` are added to the command line (e.g. "--appendonly", "yes"
    for a durability test); stop() and start() again keep the folder and port, so a restarted
    server finds its own append-only file."""

    def __init__(self, folder: Path, *args: str, executable: str | None = None):
        self.folder, self.args = Path(folder), args
        self.executable = executable or redis_server_or_skip()
        self.port: int | None = None
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> RedisServer:
        """Starts the server and returns once it answers PING. A port taken between choosing and
        binding it (another test's server) makes the server exit at once: a fresh port is tried."""
        self.folder.mkdir(parents=True, exist_ok=True)
        for _ in range(3):
            port = self.port or _free_port()
            if self._launch(port, timeout):
                self.port = port
                return self
            if self.port is not None:      # a restart keeps its port: no other to try
                break
        raise RuntimeError(f"redis-server did not start: {self._log_tail()}")

    def _launch(self, port: int, timeout: float) -> bool:
        """True once the server answers PING, False if it exited first (its port was taken)."""
        import redis

        command = [self.executable, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                   "--appendonly", "no", "--dir", str(self.folder), "--daemonize", "no",
                   "--logfile", str(self.folder / "redis.log"), *self.args]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = redis.Redis(host="127.0.0.1", port=port, socket_timeout=1, socket_connect_timeout=1)
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    return False
                try:
                    if client.ping():
                        return True
                except redis.ConnectionError:
                    time.sleep(0.02)
        finally:
            client.close()
        self.stop()
        raise RuntimeError(f"redis-server did not answer PING within {timeout:g} s: {self._log_tail()}")

    def stop(self) -> None:
        """Terminates the server (SIGTERM, then SIGKILL after 5 s); safe to call twice."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def _log_tail(self) -> str:
        log = self.folder / "redis.log"
        return log.read_text(errors="replace")[-2000:] if log.exists() else "(no log)"

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
