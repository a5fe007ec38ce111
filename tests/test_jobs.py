"""Jobs on a real server (embedded queue): create, wait, list, cancel (queued and running),
idempotency, Server-Sent Events, webhooks end to end, batching of compatible jobs, failures and
their quota refund, and the images endpoints running as jobs."""

import base64
import http.server
import io
import json
import threading
import time
import urllib.error
import urllib.request

import numpy as np
import pytest
from PIL import Image

from atelier.server.config import ServerSettings
from atelier.server.jobs.webhooks import verify
from tests.api_server import start_server

PROMPT = "a red star above two blue circles"


class SlowPipe:
    """The real pipeline, `delay` seconds slower per sampling step, counting the steps it takes:
    long enough jobs to cancel, queue behind and batch, without a big model."""

    def __init__(self, pipe, delay=0.0):
        self._pipe, self.delay, self.steps = pipe, delay, 0

    def __getattr__(self, name):
        return getattr(self._pipe, name)

    def _slowed(self, progress):
        def report(done, total):
            self.steps += 1
            time.sleep(self.delay)
            progress(done, total)
        return report

    def generate(self, requests, progress=False):
        return self._pipe.generate(requests, progress=self._slowed(progress))

    def edit(self, *args, progress=False, **settings):
        return self._pipe.edit(*args, progress=self._slowed(progress), **settings)


@pytest.fixture(scope="module")
def pipe(pipe):
    return SlowPipe(pipe)


@pytest.fixture(scope="module")
def server(pipe, tmp_path_factory):
    settings = ServerSettings(data=tmp_path_factory.mktemp("data"), threads=1, max_batch=4, daily_quota=200,
                              rate_limit=100_000,
                              webhook_allow_private=True, webhook_retry_delay=0.2)
    live = start_server(settings, pipe)
    yield live
    live.stop()


@pytest.fixture(scope="module")
def keys(server):
    return {"alice": server.add_user("alice"), "bob": server.add_user("bob")}


@pytest.fixture
def slow(pipe):
    pipe.delay = 0.02
    yield pipe
    pipe.delay = 0.0


def call(server, key, method, path, body=None, headers=None):
    """(status, headers, JSON body) of an API call; errors are answers too."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(server.url + path, method=method, data=data, headers={
        "Authorization": f"Bearer {key}", "Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, response.headers, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, error.headers, json.loads(error.read())


def until(server, key, job_id, done, timeout=60.0):
    """The job once `done(job)` holds (polled)."""
    deadline = time.monotonic() + timeout
    while True:
        job = call(server, key, "GET", f"/v1/jobs/{job_id}")[2]
        if done(job):
            return job
        assert time.monotonic() < deadline, f"job never reached the state asked for: {job}"
        time.sleep(0.05)


def submit(server, key, **input_):
    status, _, job = call(server, key, "POST", "/v1/jobs", {"task": "text_to_image",
                                                            "input": {"prompt": PROMPT, **input_}})
    assert status == 202, job
    return job


def used_today(server, key):
    return call(server, key, "GET", "/v1/usage")[2]["data"][0]["images"]


def test_a_job_is_accepted_at_once_then_runs_and_its_images_download(server, keys, pipe):
    status, headers, job = call(server, keys["alice"], "POST", "/v1/jobs",
                                {"task": "text_to_image", "input": {"prompt": PROMPT, "n": 2, "seed": 5}})
    assert status == 202 and headers["Location"] == f"/v1/jobs/{job['id']}"
    assert job["status"] in ("queued", "running", "succeeded") and job["input"]["prompt"] == PROMPT
    done = until(server, keys["alice"], job["id"], lambda job: job["status"] == "succeeded")
    assert done["progress"] == 1 and done["attempts"] == 1 and done["error"] is None
    assert done["created"] <= done["started"] <= done["finished"]
    images = done["output"]["images"]
    assert len(images) == 2
    with urllib.request.urlopen(images[1]["url"], timeout=30) as response:     # a signed link, no key needed
        image = Image.open(io.BytesIO(response.read()))
    expected = pipe.text_to_image(PROMPT, n=2, seed=5)[1]
    assert np.array_equal(np.asarray(image.convert("RGB")), np.asarray(expected))


def test_prefer_wait_answers_with_the_finished_job(server, keys):
    status, headers, job = call(server, keys["alice"], "POST", "/v1/jobs",
                                {"task": "text_to_image", "input": {"prompt": PROMPT}}, {"Prefer": "wait=30"})
    assert status == 200 and job["status"] == "succeeded" and headers["Preference-Applied"] == "wait=30"
    status, _, again = call(server, keys["alice"], "GET", f"/v1/jobs/{job['id']}", headers={"Prefer": "wait=5"})
    assert status == 200 and again["id"] == job["id"]


@pytest.mark.slow
def test_a_short_wait_answers_202_with_the_job_as_it_is(server, keys, slow):
    status, _, job = call(server, keys["alice"], "POST", "/v1/jobs",
                          {"task": "text_to_image", "input": {"prompt": PROMPT, "steps": 100}},
                          {"Prefer": "wait=0.1"})
    assert status == 202 and job["status"] in ("queued", "running")
    until(server, keys["alice"], job["id"], lambda job: job["status"] == "succeeded")


def test_a_retried_post_with_the_same_idempotency_key_returns_the_same_job(server, keys):
    body = {"task": "text_to_image", "input": {"prompt": PROMPT, "seed": 1}}
    first = call(server, keys["alice"], "POST", "/v1/jobs", body, {"Idempotency-Key": "order-42"})
    second = call(server, keys["alice"], "POST", "/v1/jobs", body, {"Idempotency-Key": "order-42"})
    assert first[0] == 202 and second[0] in (200, 202) and second[1]["Idempotent-Replayed"] == "true"
    assert first[2]["id"] == second[2]["id"]
    other = call(server, keys["alice"], "POST", "/v1/jobs", {**body, "input": {"prompt": "a green square"}},
                 {"Idempotency-Key": "order-42"})
    assert other[0] == 409 and other[2]["error"]["code"] == "idempotency_key_reused"
    bobs = call(server, keys["bob"], "POST", "/v1/jobs", body, {"Idempotency-Key": "order-42"})  # keys are per user
    assert bobs[0] == 202 and bobs[2]["id"] != first[2]["id"]


def test_jobs_are_private_to_their_user(server, keys):
    job = submit(server, keys["alice"])
    for method, path in (("GET", f"/v1/jobs/{job['id']}"), ("POST", f"/v1/jobs/{job['id']}/cancel"),
                         ("GET", f"/v1/jobs/{job['id']}/events")):
        status, _, body = call(server, keys["bob"], method, path)
        assert status == 404 and body["error"]["code"] == "not_found", path
    listed = call(server, keys["bob"], "GET", "/v1/jobs?limit=100")[2]["data"]
    assert job["id"] not in [item["id"] for item in listed]
    mine = call(server, keys["alice"], "GET", "/v1/jobs?limit=2")[2]
    assert mine["data"][0]["id"] == job["id"] and mine["has_more"] is True
    older = call(server, keys["alice"], "GET", f"/v1/jobs?limit=100&before={job['id']}")[2]["data"]
    assert job["id"] not in [item["id"] for item in older] and older


def test_canceling_a_running_job_stops_it_between_steps_and_refunds_its_images(server, keys, slow):
    before = used_today(server, keys["alice"])
    job = submit(server, keys["alice"], steps=1000, n=3)
    assert used_today(server, keys["alice"]) == before + 3
    until(server, keys["alice"], job["id"], lambda job: job["status"] == "running" and job["progress"] > 0)
    status, _, canceled = call(server, keys["alice"], "POST", f"/v1/jobs/{job['id']}/cancel")
    assert status == 200 and canceled["status"] == "canceled" and canceled["error"]["code"] == "canceled"
    follower = submit(server, keys["alice"], steps=2)    # runs once the canceled batch has stopped
    until(server, keys["alice"], follower["id"], lambda job: job["status"] == "succeeded")
    assert slow.steps < 1000       # the canceled job's 1,000 steps were not all taken
    final = call(server, keys["alice"], "GET", f"/v1/jobs/{job['id']}")[2]
    assert final["status"] == "canceled" and final["output"] is None
    assert used_today(server, keys["alice"]) == before + 3 - 3 + 1
    status, _, body = call(server, keys["alice"], "POST", f"/v1/jobs/{job['id']}/cancel")
    assert status == 409 and body["error"]["code"] == "job_already_ended"


def test_a_queued_job_canceled_never_runs_and_queued_compatible_jobs_run_as_one_batch(server, keys, slow):
    runner = server.services.queue.runner
    blocker = submit(server, keys["alice"], steps=1000)
    until(server, keys["alice"], blocker["id"], lambda job: job["status"] == "running")
    queued = [submit(server, keys["alice"], steps=3, seed=seed) for seed in range(5)]
    dropped = queued.pop()
    assert call(server, keys["alice"], "POST", f"/v1/jobs/{dropped['id']}/cancel")[2]["status"] == "canceled"
    batches_before = len(runner.batches)
    call(server, keys["alice"], "POST", f"/v1/jobs/{blocker['id']}/cancel")
    for job in queued:
        done = until(server, keys["alice"], job["id"], lambda job: job["status"] == "succeeded")
        assert done["attempts"] == 1
    assert list(runner.batches)[batches_before:] == [4]        # the four compatible jobs: one pipeline call
    assert call(server, keys["alice"], "GET", f"/v1/jobs/{dropped['id']}")[2]["started"] is None


def test_a_job_the_pipeline_refuses_fails_with_its_reason_and_refunds(server, keys):
    before = used_today(server, keys["alice"])
    status, _, job = call(server, keys["alice"], "POST", "/v1/jobs", {
        "task": "text_to_image", "input": {"prompt": PROMPT, "sampler": "no-such-sampler", "n": 2}},
        {"Prefer": "wait=30"})
    assert status == 200 and job["status"] == "failed"
    assert job["error"]["code"] == "invalid_value" and "no-such-sampler" in job["error"]["message"]
    assert used_today(server, keys["alice"]) == before


@pytest.mark.parametrize("body, param", [
    ({"task": "paint_a_house", "input": {}}, "task"),
    ({"task": "text_to_image", "input": {"prompt": PROMPT, "colour": "red"}}, "input.colour"),
    ({"task": "text_to_image", "input": {"prompt": PROMPT, "size": "7x7"}}, "input.size"),
    ({"task": "text_to_image", "input": {}}, "input.prompt"),
    ({"task": "edit", "input": {"image": "not base64!", "prompt": "x"}}, "input.image"),
    ({"task": "edit", "input": {"image": "img_000000000000000000000000", "prompt": "x"}}, "input.image"),
    ({"task": "text_to_image", "input": {"prompt": PROMPT}, "webhook_url": "http://127.0.0.1:9/hook"},
     "webhook_url"),
])
def test_bad_jobs_are_refused_naming_the_field(server, keys, body, param, pipe, tmp_path_factory):
    target = server
    if param == "webhook_url":     # the module's server allows private addresses; the default does not
        target = start_server(ServerSettings(data=tmp_path_factory.mktemp("strict"), threads=1), pipe)
        key = target.add_user("carol")
    else:
        key = keys["alice"]
    try:
        status, _, answer = call(target, key, "POST", "/v1/jobs", body)
    finally:
        if target is not server:
            target.stop()
    assert status == 400 and answer["error"]["param"] == param, answer


def test_an_edit_job_reads_an_asset_and_a_base64_mask_and_keeps_the_outside(server, keys):
    made = call(server, keys["alice"], "POST", "/v1/jobs", {"task": "text_to_image", "input": {"prompt": PROMPT}},
                {"Prefer": "wait=30"})[2]
    source_id = made["output"]["images"][0]["id"]
    mask = np.zeros((64, 64), dtype=np.uint8)
    mask[16:40, 20:44] = 255
    buffer = io.BytesIO()
    Image.fromarray(mask).save(buffer, format="PNG")
    status, _, job = call(server, keys["alice"], "POST", "/v1/jobs", {"task": "edit", "input": {
        "image": source_id, "mask": "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode(),
        "prompt": "a green square", "seed": 3}}, {"Prefer": "wait=30"})
    assert status == 200 and job["status"] == "succeeded", job
    assert job["input"]["image"] == source_id and job["input"]["mask"] == "(uploaded)"
    with urllib.request.urlopen(made["output"]["images"][0]["url"]) as response:
        source = np.asarray(Image.open(response).convert("RGB"))
    with urllib.request.urlopen(job["output"]["images"][0]["url"]) as response:
        edited = np.asarray(Image.open(response).convert("RGB"))
    assert np.array_equal(edited[mask == 0], source[mask == 0])
    bobs = call(server, keys["bob"], "POST", "/v1/jobs", {"task": "variation", "input": {"image": source_id}})
    assert bobs[0] == 400 and "no asset" in bobs[2]["error"]["message"]        # not bob's image


def test_a_job_keeps_one_copy_of_its_upload_and_a_replay_none(server, keys):
    upload = io.BytesIO()
    Image.new("RGB", (64, 64), "teal").save(upload, format="PNG")
    inputs = server.settings.data / "assets" / "inputs"
    before = sorted(inputs.rglob("*.png")) if inputs.exists() else []
    status, _, answer = call(server, keys["bob"], "POST", "/v1/jobs", {"task": "variation", "input": {
        "image": base64.b64encode(upload.getvalue()).decode(), "n": 10}}, {"Idempotency-Key": "big"})
    assert status == 202
    status, _, answer = call(server, keys["bob"], "POST", "/v1/jobs", {"task": "variation", "input": {
        "image": base64.b64encode(upload.getvalue()).decode(), "n": 10}}, {"Idempotency-Key": "big"})
    assert status in (200, 202)
    until(server, keys["bob"], answer["id"], lambda job: job["status"] == "succeeded")
    assert len(sorted(inputs.rglob("*.png"))) == len(before) + 1


def test_events_stream_progress_until_the_job_ends(server, keys, slow):
    job = submit(server, keys["alice"], steps=30)
    request = urllib.request.Request(f"{server.url}/v1/jobs/{job['id']}/events",
                                     headers={"Authorization": f"Bearer {keys['alice']}"})
    events = []
    with urllib.request.urlopen(request, timeout=60) as response:
        assert response.headers["Content-Type"].startswith("text/event-stream")
        name = None
        for line in response:
            line = line.decode().rstrip("\r\n")
            if line.startswith("event:"):
                name = line.split(":", 1)[1].strip()
            elif line.startswith("data:"):
                events.append((name, json.loads(line.split(":", 1)[1])))
    names = [name for name, _ in events]
    assert names[-1] == "succeeded" and set(names) <= {"queued", "running", "succeeded"}
    progress = [data["progress"] for _, data in events]
    assert progress == sorted(progress) and progress[-1] == 1
    assert any(0 < value < 1 for value in progress)            # seen while it ran, not only at the end


class Receiver(http.server.ThreadingHTTPServer):
    """A webhook endpoint on loopback that records what it is sent; answers 500 the first `fail` times."""

    def __init__(self, fail=0):
        self.received, self.fail = [], fail

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(handler):
                body = handler.rfile.read(int(handler.headers["Content-Length"]))
                self.received.append(({name.lower(): value for name, value in handler.headers.items()}, body))
                handler.send_response(500 if len(self.received) <= self.fail else 204)
                handler.end_headers()

            def log_message(handler, *args):
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self):
        return f"http://127.0.0.1:{self.server_address[1]}/hook"


def test_webhooks_are_signed_and_retried_until_delivered(server, keys):
    receiver = Receiver(fail=2)
    try:
        job = call(server, keys["alice"], "POST", "/v1/jobs", {
            "task": "text_to_image", "input": {"prompt": PROMPT}, "webhook_url": receiver.url})[2]
        done = until(server, keys["alice"], job["id"], lambda job: (job["webhook"] or {}).get("status") ==
                     "delivered", timeout=60)
    finally:
        receiver.shutdown()
    assert done["webhook"]["attempts"] == 3 and len(receiver.received) == 3
    secret = call(server, keys["alice"], "GET", "/v1/webhooks/secret")[2]["secret"]
    headers, body = receiver.received[-1]
    verify(secret, headers, body)
    payload = json.loads(body)
    assert payload["type"] == "job.succeeded" and payload["data"]["id"] == job["id"]
    assert payload["data"]["output"]["images"]
    assert {headers["webhook-id"] for headers, _ in receiver.received} == {job["id"]}   # one message, retried
    bobs_secret = call(server, keys["bob"], "GET", "/v1/webhooks/secret")[2]["secret"]
    with pytest.raises(ValueError):
        verify(bobs_secret, headers, body)


def test_the_images_endpoints_run_as_jobs(server, keys):
    status, _, answer = call(server, keys["alice"], "POST", "/v1/images/generations",
                             {"prompt": "a blue circle", "response_format": "b64_json"})
    assert status == 200 and len(answer["data"]) == 1
    latest = call(server, keys["alice"], "GET", "/v1/jobs?limit=1")[2]["data"][0]
    assert latest["task"] == "text_to_image" and latest["input"]["prompt"] == "a blue circle"
    assert latest["status"] == "succeeded"


def test_a_job_over_the_daily_quota_is_a_429_and_leaves_no_files(pipe, tmp_path_factory):
    live = start_server(ServerSettings(data=tmp_path_factory.mktemp("quota"), threads=1, daily_quota=1), pipe)
    try:
        upload = io.BytesIO()
        Image.new("RGB", (64, 64), "teal").save(upload, format="PNG")
        status, _, answer = call(live, live.add_user("dora"), "POST", "/v1/jobs", {"task": "variation", "input": {
            "image": base64.b64encode(upload.getvalue()).decode(), "n": 2}})
        assert status == 429 and answer["error"]["code"] == "daily_quota_exceeded"
        assert not list((live.settings.data / "assets").rglob("*.png"))
    finally:
        live.stop()
