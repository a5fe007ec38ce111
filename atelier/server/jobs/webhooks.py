"""Webhooks: a finished job is POSTed to the URL its client gave, signed as the Standard Webhooks
specification says (standardwebhooks.com), so any of its libraries can check it on the receiving side.

Three headers go with each delivery: `webhook-id` (the job id, the same on every retry, so a
receiver can drop repeats), `webhook-timestamp` (unix seconds, so a replay can be refused) and
`webhook-signature` ("v1," and the base64 of HMAC-SHA256 over "id.timestamp.body"). Each user has
a secret of their own, derived from the server's, so no table stores it and one user's secret
verifies nobody else's deliveries.

Where a delivery stands lives only in the jobs table (webhook_status, _attempts, _next, _error):
a sender that dies mid-way is replaced by one that continues from there, and senders in several
processes share the work, each attempt claimed by one of them with a conditional UPDATE.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import hashlib
import hmac
import ipaddress
import json
import logging
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

from atelier.server.db import Database
from atelier.server.jobs import store
from atelier.server.logs import LOGGER
from atelier.server.models import Job, unix_seconds, utcnow

SECRET_PREFIX = "whsec_"
MAX_URL_LENGTH = 2048
MAX_ERROR_LENGTH = 500          # the webhook_error column
MAX_DELAY = 3600.0              # the backoff stops growing at an hour
LEASE_MARGIN = 5.0              # seconds a claim outlives the request's timeout
USER_AGENT = "Atelier-Webhooks/1"

log = logging.getLogger(LOGGER)


class WebhookVerificationError(ValueError):
    """A delivery that does not prove it came from the server, or came too late or too early."""


def describe_failure(error: Exception) -> str:
    """Why a delivery failed, in the words the job shows its owner: the system's reason ("Connection
    refused", "timed out"), never urllib's wrapper text (`<urlopen error [Errno 111] ...>`)."""
    reason = error.reason if isinstance(error, urllib.error.URLError) else error
    if isinstance(reason, OSError) and reason.strerror:
        return reason.strerror
    return str(reason) or "the connection failed"


def webhook_secret(server_secret: bytes, user_id: int) -> str:
    """The user's signing secret, derived from the server's, so it needs no storage and the same
    server secret gives the same user secret in every process and after every restart."""
    key = hmac.new(server_secret, f"webhook:{user_id}".encode(), hashlib.sha256).digest()
    return SECRET_PREFIX + base64.b64encode(key).decode()


def sign(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` value of one delivery: "v1," and the base64 HMAC-SHA256 of
    "id.timestamp.body", keyed with the secret's decoded bytes."""
    message = f"{message_id}.{timestamp}.".encode() + body
    digest = hmac.new(_key(secret), message, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def verify(secret: str, headers: Mapping[str, str], body: bytes, tolerance: int = 300,
           now: float | None = None) -> None:
    """What a receiver calls on each delivery (`body` exactly as received): returns when one of the
    signatures matches and the timestamp is within `tolerance` seconds of `now`, raises
    WebhookVerificationError otherwise."""
    lowered = {name.lower(): value for name, value in headers.items()}
    missing = [name for name in ("webhook-id", "webhook-timestamp", "webhook-signature") if not lowered.get(name)]
    if missing:
        raise WebhookVerificationError(f"missing header(s): {', '.join(missing)}")
    message_id, signatures = lowered["webhook-id"], lowered["webhook-signature"]
    try:
        timestamp = int(lowered["webhook-timestamp"])
    except ValueError:
        raise WebhookVerificationError("the webhook-timestamp header is not a whole number of seconds") from None
    now = time.time() if now is None else now
    if timestamp < now - tolerance:
        raise WebhookVerificationError("the message is too old (webhook-timestamp more than "
                                       f"{tolerance} s in the past)")
    if timestamp > now + tolerance:
        raise WebhookVerificationError("the message is too new (webhook-timestamp more than "
                                       f"{tolerance} s in the future)")
    expected = sign(secret, message_id, timestamp, body).encode()
    # bytes: compare_digest refuses str with non-ASCII characters, which anyone can put in a header
    if not any(hmac.compare_digest(expected, candidate.encode("utf-8", "replace")) for candidate in signatures.split()):
        raise WebhookVerificationError("no matching signature")


def check_url(url: str, allow_private: bool = False) -> None:
    """Refuse (ValueError) a URL the server should not POST to: not http(s), no host, too long, or
    (SSRF protection) a host that resolves to an address inside the server's own network, which
    a client could otherwise reach through us; `allow_private` is for tests and private deployments."""
    if len(url) > MAX_URL_LENGTH:
        raise ValueError(f"the webhook URL is longer than {MAX_URL_LENGTH} characters")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise ValueError("the webhook URL must start with http:// or https://")
    if not parts.hostname:
        raise ValueError("the webhook URL has no host")
    try:
        port = parts.port
    except ValueError:
        raise ValueError("the webhook URL's port is not a number from 0 to 65535") from None
    if allow_private:
        return
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(parts.hostname, port, type=socket.SOCK_STREAM)}
    except (OSError, UnicodeError):
        raise ValueError(f"the webhook host {parts.hostname!r} does not resolve") from None
    for text in addresses:
        if not _is_public(ipaddress.ip_address(text.split("%")[0])):    # "%": an IPv6 scope id
            raise ValueError(f"the webhook host {parts.hostname!r} resolves to {text}, a loopback, private or "
                             "reserved address, which webhooks may not reach (SSRF protection)")


class WebhookSender:
    """Delivers the webhooks of finished jobs, retrying with exponential backoff; the state of each
    delivery is in the job's row, so any number of senders, in any processes, can run at once."""

    def __init__(self, db: Database, server_secret: bytes, render: Callable[[Job], dict[str, Any]],
                 attempts: int = 8, base_delay: float = 1.0, timeout: float = 10.0, allow_private: bool = False,
                 clock: Callable[[], dt.datetime] = utcnow):
        self.db, self.server_secret, self.render = db, server_secret, render
        self.attempts, self.base_delay, self.timeout = attempts, base_delay, timeout
        self.allow_private, self.clock = allow_private, clock
        # no redirects (a 3xx could point past check_url to an internal address) and no proxies
        # from the environment (the address checked is the address connected to)
        self._opener = urllib.request.build_opener(_NoRedirect(), urllib.request.ProxyHandler({}))

    def deliver_due(self, limit: int = 20) -> int:
        """Make one attempt for each of up to `limit` deliveries that are due; the number made.
        A receiver's failure is recorded in its job's row, never raised."""
        with self.db.session() as session:
            due = store.due_webhooks(session, self.clock(), limit)
        return sum(self._attempt(job_id, seen) for job_id, seen in due)

    async def run(self, stop: asyncio.Event, interval: float = 0.5) -> None:
        """Deliver until `stop` is set, off the event loop; an error (a database that is away, a
        bug) is logged and the loop goes on, since the rows keep whatever was not done."""
        while not stop.is_set():
            try:
                await asyncio.to_thread(self.deliver_due)
            except Exception:
                log.exception("webhook delivery round failed; retrying in %s s", interval)
            try:
                await asyncio.wait_for(stop.wait(), interval)
            except TimeoutError:
                pass

    def _attempt(self, job_id: str, seen: dt.datetime) -> bool:
        """Claim the delivery (only if no other sender did since `seen` was read), send it and
        record the outcome; False when another sender had it."""
        lease = self.clock() + dt.timedelta(seconds=self.timeout + LEASE_MARGIN)
        with self.db.session() as session:
            if not store.claim_webhook(session, job_id, seen, lease):
                return False
            job = store.job_by_id(session, job_id)
            url, user_id, attempt = job.webhook_url, job.user_id, job.webhook_attempts + 1
            body = json.dumps(self._payload(job), separators=(",", ":")).encode()
        error = self._send(job_id, url, user_id, body)
        self._record(job_id, lease, attempt, error)
        return True

    def _payload(self, job: Job) -> dict[str, Any]:
        moment = job.finished or self.clock()
        return {"type": f"job.{job.status}", "timestamp": moment.isoformat() + "Z", "data": self.render(job)}

    def _send(self, job_id: str, url: str, user_id: int, body: bytes) -> str | None:
        """POST the signed body; None on a 2xx answer, otherwise a short description of what went wrong."""
        try:
            check_url(url, self.allow_private)      # again: what a name resolves to can change
            timestamp = unix_seconds(self.clock())
            request = urllib.request.Request(url, data=body, method="POST", headers={
                "Content-Type": "application/json", "User-Agent": USER_AGENT, "webhook-id": job_id,
                "webhook-timestamp": str(timestamp),
                "webhook-signature": sign(webhook_secret(self.server_secret, user_id), job_id, timestamp, body)})
            with self._opener.open(request, timeout=self.timeout) as response:
                status = response.status
        except urllib.error.HTTPError as error:
            status = error.code
            error.close()
        except Exception as error:      # refused URL, DNS, connection, timeout, malformed answer
            return describe_failure(error)[:MAX_ERROR_LENGTH]
        return None if 200 <= status < 300 else f"HTTP {status}"

    def _record(self, job_id: str, lease: dt.datetime, attempt: int, error: str | None) -> None:
        """Write the attempt's outcome, provided this sender still holds the claim."""
        if error is None:
            values: dict[str, Any] = {"webhook_status": "delivered", "webhook_next": None, "webhook_error": None}
        elif attempt >= self.attempts:
            values = {"webhook_status": "failed", "webhook_next": None, "webhook_error": error}
        else:
            delay = min(self.base_delay * 2 ** (attempt - 1), MAX_DELAY)
            values = {"webhook_next": self.clock() + dt.timedelta(seconds=delay), "webhook_error": error}
        with self.db.session() as session:
            recorded = store.record_webhook(session, job_id, lease, attempt, values)
        if not recorded:
            log.warning("webhook of job %s: the claim expired before the attempt ended; its outcome is dropped", job_id)
        elif error is None:
            log.info("webhook of job %s delivered (attempt %d)", job_id, attempt)
        else:
            outcome = "gave up" if attempt >= self.attempts else "will retry"
            log.warning("webhook of job %s failed (attempt %d of %d, %s): %s", job_id, attempt, self.attempts,
                        outcome, error)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A 3xx answer is a failed delivery, not a hop to wherever it points."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


def _key(secret: str) -> bytes:
    try:
        return base64.b64decode(secret.removeprefix(SECRET_PREFIX), validate=True)
    except ValueError:
        raise ValueError("a webhook secret is 'whsec_' and base64") from None


def _is_public(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped       # ::ffff:127.0.0.1 is 127.0.0.1
    return address.is_global and not (address.is_loopback or address.is_private or address.is_link_local
                                      or address.is_reserved or address.is_multicast or address.is_unspecified)
