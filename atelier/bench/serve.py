"""`atelier bench serve`: the API server under load on this machine, on loopback.

- batching: images/s and p50/p99 latency of POST /v1/images/generations at 1, 4 and 8 concurrent
  clients, with batching on (--max-batch 8) and off (--max-batch 1), each in a fresh
  `atelier serve` process; the ratio of throughputs at the most clients is the figure that says
  whether batching pays.
- load (--load): 16 clients for 60 s, half through the images endpoint and half through
  POST /v1/jobs with `Prefer: wait` (polling when the wait runs out); every job id a client was
  given is then checked to have succeeded: errors and lost jobs are counted, both should be 0.

The clients are threads of this process sending plain HTTP (urllib), so what is measured is the
server: its queue, its batching and its model, at the model's default settings.
"""

from __future__ import annotations

import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PROMPTS = ("a red star above two blue circles", "a green square on a striped background",
           "two yellow triangles left of a purple circle", "a blue hexagon", "three orange circles",
           "a pink square below a white star", "a large cyan circle", "a small red triangle on a dotted background")


@dataclass
class Run:
    clients: int
    seconds: float
    requests: int = 0
    images: int = 0
    errors: int = 0
    latencies: list[float] = field(default_factory=list, repr=False)
    job_ids: list[str] = field(default_factory=list, repr=False)

    def summary(self) -> dict[str, Any]:
        ordered = sorted(self.latencies)

        def pick(quantile: float) -> float:
            return ordered[min(len(ordered) - 1, int(quantile * len(ordered)))] if ordered else float("nan")

        return {"clients": self.clients, "seconds": round(self.seconds, 1), "requests": self.requests,
                "images_per_second": round(self.images / self.seconds, 2), "p50_s": round(pick(0.50), 3),
                "p99_s": round(pick(0.99), 3), "mean_s": round(statistics.fmean(ordered), 3) if ordered else None,
                "errors": self.errors}


class BenchServer:
    """`atelier serve` in its own process, in a temporary data folder with one user and key."""

    def __init__(self, model: str | None, threads: int, max_batch: int):
        from atelier.server.accounts import create_key, create_user
        from atelier.server.db import Database

        self.folder = tempfile.TemporaryDirectory(prefix="atelier-bench-")
        data = Path(self.folder.name)
        database = Database(f"sqlite:///{data / 'atelier.db'}")
        database.migrate()
        with database.session() as session:
            create_user(session, "bench")
            self.key = create_key(session, "bench", "user")[1]
        database.close()
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE", "ATELIER_RATE_LIMIT": "1000000",
               "ATELIER_DAILY_QUOTA": "100000000", "ATELIER_LOG_LEVEL": "warning"}
        command = [sys.executable, "-m", "atelier", "serve", "--data", str(data), "--port", str(port),
                   "--threads", str(threads), "--max-batch", str(max_batch)] + (["--model", model] if model else [])
        self.log = open(data / "serve.log", "wb")
        self.process = subprocess.Popen(command, env=env, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 120
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"atelier serve stopped: {(data / 'serve.log').read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(self.url + "/readyz", timeout=5):
                    break
            except (urllib.error.URLError, ConnectionError):
                if time.monotonic() > deadline:
                    raise RuntimeError("atelier serve did not start within 120 s") from None
                time.sleep(0.2)

    def call(self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None,
             timeout: float = 300) -> tuple[int, Any]:
        request = urllib.request.Request(self.url + path, method=method,
                                         data=None if body is None else json.dumps(body).encode(),
                                         headers={"Authorization": f"Bearer {self.key}",
                                                  "Content-Type": "application/json", **(headers or {})})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as error:
            return error.code, error.read()[:500]

    def batches(self) -> tuple[float, float]:
        """(jobs, pipeline calls) so far, from the server's /metrics."""
        with urllib.request.urlopen(self.url + "/metrics", timeout=30) as response:
            lines = response.read().decode().splitlines()
        value = {line.split()[0]: float(line.split()[1]) for line in lines if line.startswith("atelier_job_batch_size_")
                 and " " in line}
        return value.get("atelier_job_batch_size_sum", 0.0), value.get("atelier_job_batch_size_count", 0.0)

    def close(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self.log.close()
        self.folder.cleanup()


def _generate(server: BenchServer, number: int, run: Run) -> None:
    """One OpenAI-style request, answered when its image is made."""
    status, answer = server.call("POST", "/v1/images/generations",
                                 {"prompt": PROMPTS[number % len(PROMPTS)], "seed": number})
    if status != 200:
        raise RuntimeError(f"HTTP {status}: {answer!r}")
    run.images += len(answer["data"])


def _job(server: BenchServer, number: int, run: Run) -> None:
    """One job through /v1/jobs: waited for with Prefer, then polled if still running."""
    status, job = server.call("POST", "/v1/jobs", {"task": "text_to_image", "input": {
        "prompt": PROMPTS[number % len(PROMPTS)], "seed": number}}, {"Prefer": "wait=60"})
    if status not in (200, 202):
        raise RuntimeError(f"HTTP {status}: {job!r}")
    run.job_ids.append(job["id"])
    while job["status"] in ("queued", "running"):
        status, job = server.call("GET", f"/v1/jobs/{job['id']}", headers={"Prefer": "wait=60"})
        if status not in (200, 202):
            raise RuntimeError(f"HTTP {status}: {job!r}")
    if job["status"] != "succeeded":
        raise RuntimeError(f"job {job['id']} {job['status']}: {job['error']}")
    run.images += len(job["output"]["images"])


def drive(server: BenchServer, clients: int, seconds: float,
          request: Callable[[BenchServer, int, Run], None] | None = None) -> Run:
    """`clients` threads, each sending its next request when the last is answered, for `seconds`."""
    run = Run(clients, seconds)
    lock, numbers = threading.Lock(), iter(range(10**9))
    stop_at = time.monotonic() + seconds

    def client(index: int) -> None:
        while time.monotonic() < stop_at:
            with lock:
                number = next(numbers)
            send = request or (_generate if (index + number) % 2 else _job)
            begin = time.monotonic()
            try:
                send(server, number, run)
            except Exception:
                with lock:
                    run.errors += 1
                continue
            with lock:
                run.requests += 1
                run.latencies.append(time.monotonic() - begin)

    begin = time.monotonic()
    threads = [threading.Thread(target=client, args=(index,)) for index in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    run.seconds = time.monotonic() - begin      # the last answers arrive after stop_at
    return run


def lost_jobs(server: BenchServer, job_ids: list[str]) -> int:
    """How many of the jobs the clients were given did not succeed (asked again after the run)."""
    return sum(1 for job_id in job_ids if server.call("GET", f"/v1/jobs/{job_id}")[1].get("status") != "succeeded")


def batching(model: str | None = None, clients: tuple[int, ...] = (1, 4, 8), seconds: float = 20.0,
             threads: int = 2, log: Callable[[str], None] = print) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for label, max_batch in (("on", 8), ("off", 1)):
        server = BenchServer(model, threads, max_batch)
        try:
            drive(server, 2, 3.0, _generate)       # warm-up: first calls, caches, allocator
            for count in clients:
                jobs, calls = server.batches()
                summary = drive(server, count, seconds, _generate).summary()
                jobs_after, calls_after = server.batches()
                summary["mean_batch"] = round((jobs_after - jobs) / max(calls_after - calls, 1), 2)
                results.setdefault(label, []).append(summary)
                log(f"batching {label:3} (--max-batch {max_batch}): {count:2} clients  "
                    f"{summary['images_per_second']:6.2f} images/s  p50 {summary['p50_s']:.3f} s  "
                    f"p99 {summary['p99_s']:.3f} s  mean batch {summary['mean_batch']:.1f}  "
                    f"({summary['requests']} requests, {summary['errors']} errors)")
        finally:
            server.close()
    most = -1
    ratio = results["on"][most]["images_per_second"] / max(results["off"][most]["images_per_second"], 1e-9)
    results["ratio_at_most_clients"] = round(ratio, 2)
    log(f"batching on / off at {clients[most]} clients: {ratio:.2f}x the images per second")
    return results


def load(model: str | None = None, clients: int = 16, seconds: float = 60.0, threads: int = 2,
         log: Callable[[str], None] = print) -> dict[str, Any]:
    server = BenchServer(model, threads, 8)
    try:
        drive(server, 2, 3.0, _generate)
        run = drive(server, clients, seconds)
        summary = run.summary() | {"jobs": len(run.job_ids), "lost_jobs": lost_jobs(server, run.job_ids)}
    finally:
        server.close()
    log(f"load: {clients} clients for {seconds:g} s: {summary['requests']} requests ({summary['jobs']} through "
        f"/v1/jobs), {summary['images_per_second']:.2f} images/s, p50 {summary['p50_s']:.3f} s, "
        f"p99 {summary['p99_s']:.3f} s, {summary['errors']} errors, {summary['lost_jobs']} lost jobs")
    return summary


def benchmark(model: str | None = None, threads: int = 2, seconds: float = 20.0, load_seconds: float = 60.0,
              with_load: bool = True, log: Callable[[str], None] = print) -> dict[str, Any]:
    from atelier.hardware import hardware

    log(f"atelier bench serve: the server on {hardware(threads)}, its clients in this process")
    result: dict[str, Any] = {"hardware": hardware(threads),
                              "batching": batching(model, seconds=seconds, threads=threads, log=log)}
    if with_load:
        result["load"] = load(model, seconds=load_seconds, threads=threads, log=log)
    return json.loads(json.dumps(result))

