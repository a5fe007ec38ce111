"""Webhooks of finished jobs: signed as Standard Webhooks says, retried with backoff, given up on,
never sent twice for one attempt by two senders, refused for internal addresses, and resumed by a
new sender after a restart. A real HTTP receiver on 127.0.0.1 and a clock the tests move."""

import asyncio
import datetime as dt
import json
import socket
import threading
import urllib.error
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

pytest.importorskip("alembic")

from atelier.server.db import Database  # noqa: E402
from atelier.server.jobs.webhooks import (  # noqa: E402
    WebhookSender,
    WebhookVerificationError,
    check_url,
    describe_failure,
    sign,
    verify,
    webhook_secret,
)
from atelier.server.models import Job, User  # noqa: E402

SERVER_SECRET = b"server secret for the tests"
START = dt.datetime(2026, 11, 27, 12, 0, 0)


class Clock:
    """A naive-UTC clock that moves only when told."""

    def __init__(self, now: dt.datetime = START):
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += dt.timedelta(seconds=seconds)

    def unix(self) -> float:
        return self.now.replace(tzinfo=dt.UTC).timestamp()


class Receiver:
    """An HTTP server that records each POST; it answers 500 to the first `failures`, and holds
    each request until `release` is set (set by default)."""

    def __init__(self):
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self.failures = 0
        self.arrived, self.release = threading.Event(), threading.Event()
        self.release.set()
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with receiver.lock:
                    receiver.requests.append(({name.lower(): value for name, value in self.headers.items()}, body))
                    failing = receiver.failures > 0
                    receiver.failures -= failing
                receiver.arrived.set()
                receiver.release.wait(10)
                self.send_response(500 if failing else 204)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def ids(self) -> list[str]:
        return [headers["webhook-id"] for headers, _ in self.requests]

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    receiver = Receiver()
    yield receiver
    receiver.close()


@pytest.fixture
def db(tmp_path):
    database = Database(f"sqlite:///{tmp_path / 'a.db'}")
    database.migrate()
    with database.session() as session:
        session.add(User(id=1, name="alice"))
    yield database
    database.close()


@pytest.fixture
def clock():
    return Clock()


def render(job: Job) -> dict:
    return {"id": job.id, "object": "job", "status": job.status, "result": job.result}


def sender_for(db, clock, **options) -> WebhookSender:
    options = {"allow_private": True, **options}       # the receiver is on 127.0.0.1
    return WebhookSender(db, SERVER_SECRET, render, clock=clock, **options)


def finish_job(db, sender, url, job_id="job_1") -> None:
    """A job that reached its final status, its webhook due now (as atelier.server.jobs.store leaves it)."""
    with db.session() as session:
        session.add(Job(id=job_id, user_id=1, task="text_to_image", input={"prompt": "a red fox"}, status="succeeded",
                        request_hash="0" * 64, webhook_url=url, result={"assets": ["img_1"]},
                        finished=dt.datetime(2026, 11, 27, 11, 59, 30), webhook_status="pending",
                        webhook_next=sender.clock(), webhook_attempts=0))


def row(db, job_id="job_1") -> Job:
    with db.session() as session:
        return session.get(Job, job_id)


def test_the_signature_matches_the_standard_webhooks_reference_and_secrets_are_per_user():
    # the specification's own example (standardwebhooks.com, and its libraries' tests)
    assert sign("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330,
                b'{"test": 2432232314}') == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    alice = webhook_secret(SERVER_SECRET, 1)
    assert alice.startswith("whsec_") and alice == webhook_secret(SERVER_SECRET, 1)
    assert alice != webhook_secret(SERVER_SECRET, 2) and alice != webhook_secret(b"another server", 1)


def test_a_delivery_is_signed_so_verify_accepts_it_and_rejects_any_tampering(db, receiver, clock):
    sender = sender_for(db, clock)
    finish_job(db, sender, receiver.url)
    assert row(db).webhook_status == "pending"
    assert sender.deliver_due() == 1
    assert row(db).webhook_status == "delivered" and row(db).webhook_attempts == 1 and row(db).webhook_next is None

    [(headers, body)] = receiver.requests
    assert headers["content-type"] == "application/json" and headers["user-agent"] == "Atelier-Webhooks/1"
    assert headers["webhook-id"] == "job_1" and int(headers["webhook-timestamp"]) == clock.unix()
    assert json.loads(body) == {"type": "job.succeeded", "timestamp": "2026-11-27T11:59:30Z",
                                "data": {"id": "job_1", "object": "job", "status": "succeeded",
                                         "result": {"assets": ["img_1"]}}}
    assert b" " not in body                                                # compact, signed exactly as sent

    secret, now = webhook_secret(SERVER_SECRET, 1), clock.unix()
    verify(secret, headers, body, now=now)
    verify(secret, {name.upper(): value for name, value in headers.items()}, body, now=now + 299)
    verify(secret, {**headers, "webhook-signature": "v1,bm90IGl0 " + headers["webhook-signature"]}, body, now=now)
    with pytest.raises(WebhookVerificationError, match="no matching signature"):
        verify(secret, headers, body.replace(b"succeeded", b"failed"), now=now)
    with pytest.raises(WebhookVerificationError, match="no matching signature"):
        verify(secret, {**headers, "webhook-timestamp": str(int(now) + 1)}, body, now=now)
    with pytest.raises(WebhookVerificationError, match="no matching signature"):
        verify(webhook_secret(SERVER_SECRET, 2), headers, body, now=now)
    with pytest.raises(WebhookVerificationError, match="too old"):
        verify(secret, headers, body, now=now + 301)
    with pytest.raises(WebhookVerificationError, match="too new"):
        verify(secret, headers, body, now=now - 301)
    with pytest.raises(WebhookVerificationError, match="missing header.*webhook-signature"):
        verify(secret, {k: v for k, v in headers.items() if k != "webhook-signature"}, body, now=now)
    with pytest.raises(WebhookVerificationError, match="whole number"):
        verify(secret, {**headers, "webhook-timestamp": "soon"}, body, now=now)


def test_failures_are_retried_with_exponential_backoff_until_delivered(db, receiver, clock):
    sender = sender_for(db, clock, base_delay=2.0)
    finish_job(db, sender, receiver.url)
    receiver.failures = 3
    for attempt, delay in ((1, 2.0), (2, 4.0), (3, 8.0)):          # 1, 2, 4 x base_delay
        assert sender.deliver_due() == 1
        job = row(db)
        assert (job.webhook_status, job.webhook_attempts, job.webhook_error) == ("pending", attempt, "HTTP 500")
        assert job.webhook_next == clock.now + dt.timedelta(seconds=delay)
        clock.advance(delay - 0.5)
        assert sender.deliver_due() == 0                             # not due yet
        clock.advance(0.5)
    assert sender.deliver_due() == 1
    job = row(db)
    assert (job.webhook_status, job.webhook_attempts, job.webhook_error, job.webhook_next) == ("delivered", 4, None,
                                                                                               None)
    assert receiver.ids() == ["job_1"] * 4                           # the same id on every try, and the same body
    assert len({body for _, body in receiver.requests}) == 1
    assert len({headers["webhook-timestamp"] for headers, _ in receiver.requests}) == 4


def test_it_gives_up_after_the_last_attempt_and_keeps_the_error(db, receiver, clock):
    sender = sender_for(db, clock, attempts=4, base_delay=1000.0)
    finish_job(db, sender, receiver.url)
    receiver.failures = 100
    for delay in (1000, 2000, 3600):                                  # the third would be 4000: capped at an hour
        assert sender.deliver_due() == 1
        assert row(db).webhook_next == clock.now + dt.timedelta(seconds=delay)
        clock.advance(delay)
    assert sender.deliver_due() == 1
    job = row(db)
    assert (job.webhook_status, job.webhook_attempts, job.webhook_error, job.webhook_next) == ("failed", 4, "HTTP 500",
                                                                                               None)
    clock.advance(10**6)
    assert sender.deliver_due() == 0 and len(receiver.requests) == 4


def test_unreachable_and_refused_urls_are_failed_attempts_not_exceptions(db, receiver, clock):
    with socket.socket() as closed:                                   # a port nobody listens on
        closed.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{closed.getsockname()[1]}/hook"
    sender = sender_for(db, clock, attempts=1)
    finish_job(db, sender, dead, "job_dead")
    assert sender.deliver_due() == 1
    assert row(db, "job_dead").webhook_status == "failed" and "refused" in row(db, "job_dead").webhook_error

    strict = sender_for(db, clock, attempts=2, allow_private=False)   # checked again when sending: DNS can change
    finish_job(db, strict, receiver.url, "job_internal")
    assert strict.deliver_due() == 1
    job = row(db, "job_internal")
    assert job.webhook_status == "pending" and "SSRF" in job.webhook_error and len(job.webhook_error) <= 500
    assert receiver.requests == []


def test_two_senders_never_send_the_same_attempt(db, receiver, clock):
    first, second = sender_for(db, clock), sender_for(db, clock)
    finish_job(db, first, receiver.url)
    receiver.release.clear()                                          # the first sender's request is held...
    delivering = threading.Thread(target=lambda: first.deliver_due())
    delivering.start()
    assert receiver.arrived.wait(10)
    assert second.deliver_due() == 0                                  # ...and its claim keeps the second away
    clock.advance(14)                                                 # still within the lease (timeout + 5 s)
    assert second.deliver_due() == 0
    receiver.release.set()
    delivering.join(10)
    assert receiver.ids() == ["job_1"] and row(db).webhook_status == "delivered"

    # many deliveries, both senders at once: each is sent by exactly one of them
    ids = [f"job_{n}" for n in range(2, 14)]
    for job_id in ids:
        finish_job(db, first, receiver.url, job_id)
    barrier, made = threading.Barrier(2), []

    def deliver(sender):
        barrier.wait()
        made.append(sender.deliver_due())

    threads = [threading.Thread(target=deliver, args=(sender,)) for sender in (first, second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    assert sum(made) == len(ids)
    assert sorted(receiver.ids()[1:]) == sorted(ids)


def test_a_new_sender_continues_where_a_stopped_one_was(db, receiver, clock):
    before = sender_for(db, clock)
    finish_job(db, before, receiver.url)
    receiver.failures = 1
    assert before.deliver_due() == 1
    del before                                                        # the process stops after a failed attempt
    after = sender_for(db, clock)
    clock.advance(1)
    assert after.deliver_due() == 1
    assert (row(db).webhook_status, row(db).webhook_attempts) == ("delivered", 2)

    # a sender that died holding a claim: its lease runs out, then another sends the attempt
    finish_job(db, after, receiver.url, "job_2")
    with db.session() as session:
        session.get(Job, "job_2").webhook_next = clock.now + dt.timedelta(seconds=15)
    assert sender_for(db, clock).deliver_due() == 0
    clock.advance(15)
    assert sender_for(db, clock).deliver_due() == 1
    assert row(db, "job_2").webhook_status == "delivered" and receiver.ids() == ["job_1", "job_1", "job_2"]


def test_run_delivers_in_the_background_and_survives_errors(db, receiver, clock):
    sender = sender_for(db, clock)
    finish_job(db, sender, receiver.url)
    real, calls = sender.deliver_due, []

    def flaky(limit=20):
        calls.append(limit)
        if len(calls) == 1:
            raise RuntimeError("the database is away")
        return real(limit)

    sender.deliver_due = flaky

    async def main():
        stop = asyncio.Event()
        task = asyncio.create_task(sender.run(stop, interval=0.01))
        for _ in range(1000):
            if row(db).webhook_status == "delivered":
                break
            await asyncio.sleep(0.01)
        stop.set()
        await asyncio.wait_for(task, 5)

    asyncio.run(main())
    assert len(calls) >= 2 and receiver.ids() == ["job_1"] and row(db).webhook_status == "delivered"


def test_check_url_refuses_what_webhooks_may_not_reach(monkeypatch):
    check_url("https://93.184.216.34/hook")                           # a public literal address: no DNS
    check_url("http://93.184.216.34:8080/hook?x=1")
    for url, message in (("ftp://93.184.216.34/hook", "http"), ("http:///hook", "no host"),
                         ("https://93.184.216.34/" + "a" * 2048, "longer than 2048"),
                         ("http://93.184.216.34:99999/", "port")):
        with pytest.raises(ValueError, match=message):
            check_url(url)
        with pytest.raises(ValueError, match=message):
            check_url(url, allow_private=True)
    for host in ("127.0.0.1", "10.0.0.1", "192.168.1.2", "169.254.169.254", "0.0.0.0", "224.0.0.1", "[::1]",
                 "[::ffff:127.0.0.1]", "[fe80::1]", "100.64.0.1"):
        with pytest.raises(ValueError, match="SSRF"):
            check_url(f"http://{host}/hook")
        check_url(f"http://{host}/hook", allow_private=True)

    # names: what they resolve to decides, and one that does not resolve is refused
    answers = {"hooks.example.com": ["93.184.216.34"], "sneaky.example.com": ["93.184.216.34", "10.1.2.3"]}

    def getaddrinfo(host, port, *args, **kwargs):
        if host not in answers:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port or 0)) for address in answers[host]]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    check_url("https://hooks.example.com/hook")
    with pytest.raises(ValueError, match="10.1.2.3.*SSRF"):
        check_url("https://sneaky.example.com/hook")
    with pytest.raises(ValueError, match="does not resolve"):
        check_url("https://nowhere.example.com/hook")


def test_a_failed_delivery_is_described_in_plain_words():
    refused = urllib.error.URLError(ConnectionRefusedError(111, "Connection refused"))
    assert str(refused).startswith("<urlopen error")                  # what the job showed before
    assert describe_failure(refused) == "Connection refused"
    assert describe_failure(urllib.error.URLError(socket.gaierror(-2, "Name or service not known"))) == \
        "Name or service not known"
    assert describe_failure(TimeoutError("timed out")) == "timed out"
    assert describe_failure(ValueError("the address 10.0.0.1 is private (SSRF)")) == \
        "the address 10.0.0.1 is private (SSRF)"
