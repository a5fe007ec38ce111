"""What is killed and what survives, with real processes: `atelier serve` killed with SIGKILL
and restarted (queued and running jobs run, finished images are still there), stopped with
SIGTERM (the running job goes back to the queue), and on Redis a server with two `atelier
worker` processes, one killed mid-job (the job is retried on the other) and one stopped with
SIGTERM (its job is handed back, not counted as an attempt). A job whose workers die twice is
failed with a message."""

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from atelier.server.accounts import create_key, create_user
from atelier.server.db import Database
from atelier.server.jobs import store
from atelier.server.models import Job

pytestmark = [pytest.mark.slow, pytest.mark.processes]

LONG = 1000        # sampling steps of a job that runs for seconds with the tiny test model


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def add_key(data: Path, name: str) -> str:
    database = Database(f"sqlite:///{data / 'atelier.db'}")
    database.migrate()
    try:
        with database.session() as session:
            create_user(session, name)
            return create_key(session, name, "user")[1]
    finally:
        database.close()


class Process:
    """An `atelier` command in its own process, its log in a file the failure messages show."""

    def __init__(self, log: Path, *args: str, **settings):
        env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE", "OMP_NUM_THREADS": "1", "ATELIER_THREADS": "1",
               "ATELIER_RATE_LIMIT": "1000000",     # the tests poll; a slow machine must not hit the limit
               **{f"ATELIER_{name.upper()}": str(value) for name, value in settings.items()}}
        self.log = log
        with open(log, "ab") as output:
            self.process = subprocess.Popen([sys.executable, "-m", "atelier", *args], env=env, stdout=output,
                                            stderr=subprocess.STDOUT)

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]

    def signal(self, number: int) -> int:
        self.process.send_signal(number)
        return self.process.wait(timeout=60)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=30)


class Server(Process):
    def __init__(self, log: Path, data: Path, model: Path, **settings):
        self.port = free_port()
        super().__init__(log, "serve", "--data", str(data), "--model", str(model), "--port", str(self.port),
                         **settings)
        self.url = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 90
        while True:
            assert self.process.poll() is None, f"atelier serve stopped:\n{self.output()}"
            try:
                with urllib.request.urlopen(self.url + "/readyz", timeout=5):
                    return
            except (urllib.error.URLError, ConnectionError):
                assert time.monotonic() < deadline, f"atelier serve did not start:\n{self.output()}"
                time.sleep(0.2)

    def call(self, key: str, method: str, path: str, body=None, headers=None):
        request = urllib.request.Request(self.url + path, method=method,
                                         data=None if body is None else json.dumps(body).encode(),
                                         headers={"Authorization": f"Bearer {key}",
                                                  "Content-Type": "application/json", **(headers or {})})
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read())

    def submit(self, key: str, headers=None, **input_) -> dict:
        status, job = self.call(key, "POST", "/v1/jobs", {"task": "text_to_image",
                                                          "input": {"prompt": "a red star", **input_}}, headers)
        assert status in (200, 202), job
        return job


def rows(data: Path) -> dict[str, dict]:
    """Every job's row, read straight from the database file (what survives any process)."""
    with sqlite3.connect(data / "atelier.db") as connection:
        connection.row_factory = sqlite3.Row
        return {row["id"]: dict(row) for row in connection.execute("SELECT * FROM jobs")}


def wait_for(condition, what: str, timeout: float = 120.0, *processes: Process):
    deadline = time.monotonic() + timeout
    while not (result := condition()):
        for process in processes:
            assert process.process.poll() is None, f"a process stopped while waiting for {what}:\n{process.output()}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}: " + "\n".join(
            process.output() for process in processes)
        time.sleep(0.1)
    return result


def test_a_job_whose_worker_dies_twice_is_failed_with_a_message(tmp_path):
    add_key(tmp_path, "alice")
    database = Database(f"sqlite:///{tmp_path / 'atelier.db'}")
    with database.session() as session:
        session.add(Job(id="job_1", user_id=1, task="text_to_image", input={"prompt": "x"}, status="queued",
                        progress=0.0, attempts=0, images=1, request_hash="0" * 64, webhook_attempts=0))
    assert store.start(database, "job_1", "w1").attempts == 1
    assert store.requeue(database, "w1") == ["job_1"]            # w1 died: found by its successor
    assert store.start(database, "job_1", "w2").attempts == 2
    assert store.start(database, "job_1", "w3") is None          # w2 died too: the third start fails it
    with database.session() as session:
        job = session.get(Job, "job_1")
        assert job.status == "failed" and job.attempts == 2 and job.error["code"] == "worker_lost"
        assert "stopped before it finished, 2 times" in job.error["message"]
    database.close()


def test_sigkill_and_restart_lose_no_job_and_sigterm_puts_the_running_job_back(folder, tmp_path):
    data = tmp_path / "data"
    key = add_key(data, "alice")
    server = Server(tmp_path / "serve-1.log", data, folder)
    try:
        finished = server.submit(key, {"Prefer": "wait=60"})
        assert finished["status"] == "succeeded"
        running = server.submit(key, steps=LONG)
        wait_for(lambda: server.call(key, "GET", f"/v1/jobs/{running['id']}")[1]["status"] == "running",
                 "the long job to start", 60, server)
        queued = [server.submit(key, seed=seed, steps=4) for seed in range(2)]
        server.process.kill()
        server.process.wait(timeout=30)
    finally:
        server.stop()
    before = rows(data)
    assert before[running["id"]]["status"] == "running"
    assert [before[job["id"]]["status"] for job in queued] == ["queued", "queued"]

    server = Server(tmp_path / "serve-2.log", data, folder, shutdown_grace=1)
    try:
        for job in [running, *queued]:
            done = wait_for(lambda job=job: (answer := server.call(key, "GET", f"/v1/jobs/{job['id']}")[1])[
                "status"] in store.FINAL and answer, f"job {job['id']}", 120, server)
            assert done["status"] == "succeeded", done
        assert rows(data)[running["id"]]["attempts"] == 2          # started before the kill, and again after
        asset = finished["output"]["images"][0]
        request = urllib.request.Request(f"{server.url}/v1/assets/{asset['id']}",
                                         headers={"Authorization": f"Bearer {key}"})
        with urllib.request.urlopen(request, timeout=30) as response:
            assert response.read(8) == b"\x89PNG\r\n\x1a\n"
        interrupted = server.submit(key, steps=LONG)
        wait_for(lambda: rows(data)[interrupted["id"]]["status"] == "running", "the long job to start", 60, server)
        # uvicorn ends by raising the signal again once its graceful shutdown is complete
        assert server.signal(signal.SIGTERM) in (0, -signal.SIGTERM), server.output()
        assert "Application shutdown complete" in server.output()
    finally:
        server.stop()
    after = rows(data)[interrupted["id"]]
    assert after["status"] == "queued" and after["attempts"] == 0, after    # back in the queue, not an attempt


def test_redis_workers_share_the_queue_and_a_killed_workers_job_runs_on_another(folder, tmp_path, redis_url):
    data = tmp_path / "data"
    key = add_key(data, "alice")
    settings = {"redis": redis_url, "job_heartbeat": 2, "shutdown_grace": 1, "max_batch": 1}
    workers = {name: Process(tmp_path / f"{name}.log", "worker", "--data", str(data), "--model", str(folder),
                             "--name", name, **settings) for name in ("w1", "w2")}
    server = Server(tmp_path / "serve.log", data, folder, **settings)
    processes = [server, *workers.values()]
    try:
        quick = [server.submit(key, seed=seed, steps=4) for seed in range(4)]
        for job in quick:
            wait_for(lambda job=job: rows(data)[job["id"]]["status"] == "succeeded", "the quick jobs", 120,
                     *processes)
        assert {rows(data)[job["id"]]["worker"] for job in quick} <= {"w1", "w2"}

        doomed = server.submit(key, steps=LONG)
        first = wait_for(lambda: rows(data)[doomed["id"]]["worker"] if rows(data)[doomed["id"]]["status"] ==
                         "running" else None, "the long job to start", 60, *processes)
        workers[first].process.kill()                      # SIGKILL mid-job: nothing can clean up
        workers[first].process.wait(timeout=30)
        survivor = "w2" if first == "w1" else "w1"
        done = wait_for(lambda: (row := rows(data)[doomed["id"]])["status"] in store.FINAL and row,
                        "the killed worker's job to finish elsewhere", 120, server, workers[survivor])
        assert done["status"] == "succeeded" and done["worker"] == survivor and done["attempts"] == 2, done

        workers["w3"] = Process(tmp_path / "w3.log", "worker", "--data", str(data), "--model", str(folder),
                                "--name", "w3", **settings)
        handed_back = server.submit(key, steps=LONG)
        holder = wait_for(lambda: rows(data)[handed_back["id"]]["worker"] if rows(data)[handed_back["id"]][
            "status"] == "running" else None, "the next long job to start", 120, server, workers[survivor])
        other = survivor if holder == "w3" else "w3"
        assert workers[holder].signal(signal.SIGTERM) == 0, workers[holder].output()
        done = wait_for(lambda: (row := rows(data)[handed_back["id"]])["status"] in store.FINAL and row,
                        "the handed-back job to finish", 120, server, workers[other])
        assert done["status"] == "succeeded" and done["worker"] == other and done["attempts"] == 1, done
    finally:
        for process in [server, *workers.values()]:
            process.stop()
