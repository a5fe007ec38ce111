"""A real Atelier API server on a free loopback port, in a background thread, for the API tests."""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass

import uvicorn

from atelier.server.accounts import create_key, create_user
from atelier.server.app import create_app
from atelier.server.config import ServerSettings
from atelier.server.db import Database


@dataclass
class LiveServer:
    settings: ServerSettings
    app: object
    url: str
    server: uvicorn.Server
    thread: threading.Thread

    @property
    def services(self):
        return self.app.state.services

    def add_user(self, name: str, scope: str = "user") -> str:
        """A new user with one key; the key's text."""
        database = Database(self.settings.database_url)
        try:
            with database.session() as session:
                create_user(session, name)
                return create_key(session, name, scope)[1]
        finally:
            database.close()

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


def start_server(settings: ServerSettings, pipeline) -> LiveServer:
    app = create_app(settings, pipeline=pipeline)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))        # a free port, held from now on: no race with other processes
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the API server did not start")
        time.sleep(0.02)
    return LiveServer(settings, app, f"http://127.0.0.1:{port}", server, thread)
