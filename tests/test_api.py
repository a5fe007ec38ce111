"""The API server, started for real on loopback and driven with the official `openai` client:
generation, edits and variations in both response formats, asset links and ownership, keys,
the rate limit (and the client's retry on its Retry-After), the quota, limits on requests,
errors in OpenAI's shape, health, metrics and logs."""

import base64
import io
import json
import logging
import time
import urllib.error
import urllib.request

import numpy as np
import pytest
from PIL import Image

openai = pytest.importorskip("openai")

from atelier.pipeline.metadata import read_info  # noqa: E402
from atelier.server.config import ServerSettings  # noqa: E402
from atelier.server.logs import JsonFormatter  # noqa: E402
from atelier.server.signing import sign  # noqa: E402
from tests.api_server import start_server  # noqa: E402

PROMPT = "a red star above two blue circles"
# the client marks create_variation deprecated (OpenAI's newer models lack it); the endpoint is still part of the API
pytestmark = pytest.mark.filterwarnings("ignore:deprecated:DeprecationWarning")


@pytest.fixture(scope="module")
def server(pipe, tmp_path_factory):
    live = start_server(ServerSettings(data=tmp_path_factory.mktemp("data"), threads=1), pipe)
    yield live
    live.stop()


@pytest.fixture(scope="module")
def limited(pipe, tmp_path_factory):
    """A second server with tight limits: 3 requests per 2 seconds per key, 4 images a day, 64 KiB
    uploads, and CORS open to one origin."""
    settings = ServerSettings(data=tmp_path_factory.mktemp("limited"), threads=1, rate_limit=3, rate_window=2.0,
                              daily_quota=4, max_upload_bytes=64 * 1024, cors_origins=("https://studio.example",))
    live = start_server(settings, pipe)
    yield live
    live.stop()


@pytest.fixture(scope="module")
def keys(server):
    return {"alice": server.add_user("alice"), "bob": server.add_user("bob")}


def client(server, key, retries=0):
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key=key, max_retries=retries, timeout=30)


def png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def decode(item) -> Image.Image:
    return Image.open(io.BytesIO(base64.b64decode(item.b64_json)))


def fetch(url, key=None, headers=None, method="GET", data=None):
    """(status, headers, body) of a plain HTTP request; errors are answers too."""
    request = urllib.request.Request(url, method=method, data=data, headers=dict(headers or {}))
    if key:
        request.add_header("Authorization", f"Bearer {key}")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers, error.read()


def source_image(side=64) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (side, side, 3), dtype=np.uint8)


# --- generation ----------------------------------------------------------------------------------

def test_generate_b64_json_gives_the_pipelines_images_with_their_metadata(server, keys, pipe, tmp_path):
    result = client(server, keys["alice"]).images.generate(prompt=PROMPT, n=2, size="64x64",
                                                           response_format="b64_json", extra_body={"seed": 3})
    assert len(result.data) == 2 and result.created > 0
    expected = pipe.text_to_image(PROMPT, n=2, seed=3)
    for k, item in enumerate(result.data):
        image = decode(item)
        assert image.format == "PNG" and image.size == (64, 64)
        assert np.array_equal(np.asarray(image.convert("RGB")), np.asarray(expected[k]))   # same bits as the library
        path = tmp_path / f"{k}.png"
        path.write_bytes(base64.b64decode(item.b64_json))
        info = read_info(path)
        assert (info.prompt, info.seed, info.task, info.model_hash) == (PROMPT, 3 + k, "text_to_image",
                                                                        pipe.model_hash)


def test_url_responses_open_for_the_owner_and_the_signed_link_only(server, keys):
    result = client(server, keys["alice"]).images.generate(prompt=PROMPT, response_format="url")
    url = result.data[0].url
    assert url.startswith(f"{server.url}/v1/assets/img_") and "signature=" in url and "expires=" in url
    status, headers, body = fetch(url)                              # the signed link, no key
    assert status == 200 and headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(body)).size == (64, 64)
    plain = url.split("?")[0]
    asset_id = plain.rsplit("/", 1)[1]
    assert fetch(plain, keys["alice"])[2] == body                    # the owner's key
    missing = fetch(f"{server.url}/v1/assets/img_000000000000000000000000", keys["alice"])
    other = fetch(plain, keys["bob"])                                # another user: as if it did not exist
    assert other[0] == missing[0] == 404 and json.loads(other[2]) == json.loads(missing[2])
    assert fetch(plain)[0] == 401                                    # neither key nor link
    assert fetch(url.replace("signature=", "signature=0"))[0] == 404   # a tampered link
    assert fetch(url.replace("signature=", "signature=%C2%BA"))[0] == 404   # non-ASCII (schemathesis found a 500)
    past = int(time.time()) - 10
    expired = f"{plain}?expires={past}&signature={sign(server.services.secret, asset_id, past)}"
    status, _, body = fetch(expired)
    assert status == 403 and "expired" in json.loads(body)["error"]["message"]
    listed = {item["id"]: item for item in json.loads(fetch(f"{server.url}/v1/assets", keys["alice"])[2])["data"]}
    assert abs(listed[asset_id]["created"] - time.time()) < 60 and listed[asset_id]["metadata"]["prompt"] == PROMPT
    assert asset_id not in {item["id"] for item in json.loads(fetch(f"{server.url}/v1/assets", keys["bob"])[2])["data"]}


def test_an_asset_whose_file_is_gone_is_a_404_and_an_error_in_the_log(server, keys, caplog):
    url = client(server, keys["alice"]).images.generate(prompt=PROMPT, response_format="url").data[0].url
    asset_id = url.split("?")[0].rsplit("/", 1)[1]
    [path] = (server.settings.data / "assets").glob(f"*/{asset_id}.png")
    path.unlink()                                                   # the row stays in the database
    with caplog.at_level(logging.ERROR, logger="atelier.server"):
        for status, _, body in (fetch(url), fetch(url.split("?")[0], keys["alice"])):
            assert status == 404
            error = json.loads(body)["error"]
            assert set(error) == {"message", "type", "param", "code"} and error["code"] == "asset_file_missing"
            assert asset_id in error["message"] and str(path) not in error["message"]
    logged = [record for record in caplog.records if record.levelno == logging.ERROR
              and getattr(record, "asset_id", None) == asset_id]
    assert len(logged) == 2 and "missing from storage" in logged[0].getMessage()
    assert json.loads(JsonFormatter().format(logged[0]))["request_id"]


def test_models_list_names_the_sizes(server, keys, pipe):
    models = client(server, keys["alice"]).models.list()
    assert [model.id for model in models.data] == [pipe.name]
    assert models.data[0].owned_by == "atelier" and models.data[0].model_extra["sizes"] == ["64x64"]


# --- edits and variations ------------------------------------------------------------------------

def test_edit_with_a_mask_keeps_every_pixel_outside_it(server, keys):
    source = source_image()
    mask = np.full((64, 64, 4), 255, dtype=np.uint8)
    mask[16:40, 20:48, 3] = 0                                        # alpha 0: the area to edit
    result = client(server, keys["alice"]).images.edit(
        image=("source.png", png(Image.fromarray(source)), "image/png"),
        mask=("mask.png", png(Image.fromarray(mask)), "image/png"), prompt=PROMPT, n=2,
        response_format="b64_json", extra_body={"seed": 5})
    area = mask[:, :, 3] == 0
    for item in result.data:
        out = np.asarray(decode(item).convert("RGB"))
        assert out.shape == source.shape
        assert np.array_equal(out[~area], source[~area])            # untouched outside the mask
        assert not np.array_equal(out[area], source[area])          # redrawn inside it


def test_edit_takes_the_images_own_transparency_and_image_list_parts(server, keys):
    cutout = np.dstack([source_image(), np.full((64, 64), 255, dtype=np.uint8)])
    cutout[30:50, 10:30, 3] = 0
    image = ("cutout.png", png(Image.fromarray(cutout)), "image/png")
    result = client(server, keys["alice"]).images.edit(image=[image], prompt=PROMPT, response_format="b64_json")
    out = np.asarray(decode(result.data[0]).convert("RGB"))
    keep = cutout[:, :, 3] == 255
    assert np.array_equal(out[keep], cutout[:, :, :3][keep])
    with pytest.raises(openai.BadRequestError, match="one image per edit"):
        client(server, keys["alice"]).images.edit(image=[image, image], prompt=PROMPT)
    large = Image.fromarray(cutout).resize((128, 128), Image.Resampling.NEAREST)    # size= scales it to 64 first
    result = client(server, keys["alice"]).images.edit(image=("large.png", png(large), "image/png"), prompt=PROMPT,
                                                       size="64x64", response_format="b64_json")
    assert decode(result.data[0]).size == (64, 64)


def test_large_edits_come_back_watermarked_inside_the_mask_only(server, keys, tmp_path):
    from atelier.pipeline.provenance import detect

    source = np.asarray(Image.fromarray(source_image(40)).resize((320, 288), Image.Resampling.BILINEAR))
    mask = np.full((288, 320, 4), 255, dtype=np.uint8)
    mask[:, :200, 3] = 0                                             # 62% of the image
    result = client(server, keys["alice"]).images.edit(
        image=("source.png", png(Image.fromarray(source)), "image/png"),
        mask=("mask.png", png(Image.fromarray(mask)), "image/png"), prompt=PROMPT, response_format="b64_json")
    path = tmp_path / "edited.png"
    path.write_bytes(base64.b64decode(result.data[0].b64_json))
    out = np.asarray(Image.open(path).convert("RGB"))
    area = mask[:, :, 3] == 0
    assert np.array_equal(out[~area], source[~area])
    found = detect(out, read_info(path))
    assert (found.status, found.id_errors) == ("present", 0)


@pytest.mark.parametrize("mask, message", [
    (Image.new("L", (64, 64), "black"), "marks nothing to edit"),
    (Image.new("RGBA", (32, 32), (0, 0, 0, 0)), "must be the same size"),
    (Image.new("RGBA", (64, 64), (0, 0, 0, 255)), "marks nothing to edit"),
])
def test_edit_refuses_masks_it_cannot_use(server, keys, mask, message):
    with pytest.raises(openai.BadRequestError, match=message) as error:
        client(server, keys["alice"]).images.edit(image=("a.png", png(Image.fromarray(source_image())), "image/png"),
                                                  mask=("m.png", png(mask), "image/png"), prompt=PROMPT)
    assert error.value.body["param"] == "mask"


def test_variations_in_both_formats(server, keys):
    image = ("source.png", png(Image.fromarray(source_image())), "image/png")
    api = client(server, keys["alice"])
    result = api.images.create_variation(image=image, n=2, response_format="b64_json", extra_body={"seed": 1})
    assert len(result.data) == 2
    first, second = (np.asarray(decode(item).convert("RGB")) for item in result.data)
    assert first.shape == (64, 64, 3) and not np.array_equal(first, second)   # seeds 1 and 2
    url = api.images.create_variation(image=image, size="64x64").data[0].url
    status, _, body = fetch(url)
    assert status == 200 and Image.open(io.BytesIO(body)).size == (64, 64)


# --- keys, limits and errors ---------------------------------------------------------------------

def test_a_wrong_or_missing_key_is_refused(server):
    with pytest.raises(openai.AuthenticationError) as error:
        client(server, "atl_not-a-real-key").images.generate(prompt=PROMPT)
    assert error.value.body["code"] == "invalid_api_key"
    status, _, body = fetch(f"{server.url}/v1/models")
    assert status == 401 and json.loads(body)["error"]["code"] == "missing_api_key"


def test_bad_requests_get_400s_naming_the_problem(server, keys):
    api = client(server, keys["alice"])
    with pytest.raises(openai.BadRequestError, match="allowed sizes: 64x64") as error:
        api.images.generate(prompt=PROMPT, size="1024x1024")
    assert error.value.body == {"message": error.value.body["message"], "type": "invalid_request_error",
                                "param": "size", "code": "invalid_size"}
    cases = [({"n": 11}, "n"), ({"prompt": "x" * 4001}, "prompt"), ({"steps": 0}, "steps"),
             ({"model": "midjourney"}, "model"), ({"response_format": "gif"}, "response_format"),
             ({"seed": -1}, "seed"), ({"guidance": 31}, "guidance")]
    for change, param in cases:
        with pytest.raises(openai.BadRequestError) as error:
            api.images.generate(prompt=PROMPT, extra_body=change)
        assert error.value.body["param"] == param
    with pytest.raises(openai.BadRequestError, match="unknown parameter 'colour'"):
        api.images.generate(prompt=PROMPT, extra_body={"colour": "red"})
    status, _, body = fetch(f"{server.url}/v1/images/generations", keys["alice"], method="POST", data=b"{not json",
                            headers={"Content-Type": "application/json"})
    assert status == 400 and json.loads(body)["error"]["code"] == "invalid_json"
    status, _, body = fetch(f"{server.url}/v1/nothing-here", keys["alice"])
    assert status == 404 and set(json.loads(body)["error"]) == {"message", "type", "param", "code"}


@pytest.mark.parametrize("data, message", [
    (b"not an image at all", "not a PNG, JPEG, WebP or other image file"),
    (png(Image.new("L", (5000, 8))), "up to 4096 pixels per side"),
    (png(Image.fromarray(source_image()))[:200], "damaged or cut short"),
])
def test_unreadable_and_oversized_images_are_400s(server, keys, data, message):
    with pytest.raises(openai.BadRequestError, match=message):
        client(server, keys["alice"]).images.create_variation(image=("x.png", data, "image/png"))


def test_uploads_over_the_limit_are_413s(limited):
    key = limited.add_user("uploader")
    noise = np.random.default_rng(1).integers(0, 256, (200, 200, 3), dtype=np.uint8)   # ~120 KB as PNG
    with pytest.raises(openai.APIStatusError) as error:
        client(limited, key).images.create_variation(image=("big.png", png(Image.fromarray(noise)), "image/png"))
    assert error.value.status_code == 413 and error.value.body["code"] in ("file_too_large", "request_too_large")


def chunked_post(server, path, key, chunks):
    """(status, body) of a POST whose body is sent chunked (Transfer-Encoding: chunked, no Content-Length)."""
    import http.client
    from urllib.parse import urlsplit

    connection = http.client.HTTPConnection(urlsplit(server.url).netloc, timeout=30)
    try:
        connection.request("POST", path, body=iter(chunks), encode_chunked=True,
                           headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"})
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def test_a_chunked_body_over_the_limit_is_a_413_and_one_under_it_is_read(limited):
    key = limited.add_user("streamer")
    limit = limited.settings.max_request_bytes
    head, tail = b'{"prompt": "', b'"}'
    filler = limit + 1 - len(head) - len(tail)                         # one byte over, in the last chunk
    chunks = [head, *([b"a" * 65536] * (filler // 65536)), b"a" * (filler % 65536) + tail]
    assert sum(map(len, chunks)) == limit + 1
    status, body = chunked_post(limited, "/v1/images/generations", key, chunks)
    assert status == 413
    error = json.loads(body)["error"]
    assert error["code"] == "request_too_large" and error["type"] == "invalid_request_error"
    assert f"larger than {limit} bytes" in error["message"]
    small = json.dumps({"prompt": PROMPT, "response_format": "b64_json", "seed": 1}).encode()
    status, body = chunked_post(limited, "/v1/images/generations", key, [small[:10], small[10:]])
    assert status == 200 and len(json.loads(body)["data"]) == 1


@pytest.mark.slow
def test_the_rate_limit_answers_429_with_retry_after_and_the_client_waits_it_out(limited):
    key = limited.add_user("hasty")
    eager, patient = client(limited, key, retries=0), client(limited, key, retries=2)

    def burst():
        """Requests until the limit answers (3 fit in the window), so the window is full now."""
        for _ in range(6):
            try:
                eager.models.list()
            except openai.RateLimitError as error:
                return error
        raise AssertionError("no 429 after 6 requests with a limit of 3")

    def full_window():
        """A fresh burst whose refusal asks for the whole window (Retry-After 2): the window then stays
        full for over a second more, however slow the machine, so the next request is refused."""
        for _ in range(5):
            time.sleep(2.0)                                  # the window empties
            if burst().response.headers["retry-after"] == "2":
                return
        raise AssertionError("three requests never fit in one second")

    error = burst()
    assert error.response.headers["retry-after"] in ("1", "2")
    assert error.body["code"] == "rate_limit_exceeded" and "3 requests per 2 s" in error.body["message"]
    full_window()

    def answered(status):
        return limited.services.metrics.registry.get_sample_value(
            "atelier_http_requests_total", {"method": "GET", "route": "/v1/models", "status": status}) or 0

    refused, served = answered("429"), answered("200")
    begin = time.monotonic()
    assert patient.models.list().data                # refused, then the client sleeps Retry-After and succeeds
    assert answered("429") > refused and answered("200") == served + 1
    assert time.monotonic() - begin >= 0.5


def test_the_daily_quota_counts_images_and_the_client_does_not_retry_it(limited):
    key = limited.add_user("thrifty")
    api = client(limited, key, retries=2)
    api.images.generate(prompt=PROMPT, n=3, response_format="b64_json")
    begin = time.monotonic()
    with pytest.raises(openai.RateLimitError, match="daily quota of 4 images") as error:
        api.images.generate(prompt=PROMPT, n=2, response_format="b64_json")
    assert time.monotonic() - begin < 0.5       # x-should-retry: false, so no backoff
    assert error.value.body["type"] == "insufficient_quota"
    assert len(api.images.generate(prompt=PROMPT, n=1, response_format="b64_json").data) == 1   # the 4th image


def test_usage_is_reported_per_key_and_only_admins_see_everyones(server, keys):
    admin = server.add_user("operator", scope="admin")
    client(server, keys["bob"]).images.generate(prompt=PROMPT, n=2, response_format="b64_json")
    status, _, body = fetch(f"{server.url}/v1/usage", keys["bob"])
    mine = json.loads(body)["data"]
    assert status == 200 and {row["user"] for row in mine} == {"bob"} and mine[0]["images"] >= 2
    assert fetch(f"{server.url}/v1/usage?all=true", keys["bob"])[0] == 403
    status, _, body = fetch(f"{server.url}/v1/usage?all=true", admin)
    assert status == 200 and {"alice", "bob"} <= {row["user"] for row in json.loads(body)["data"]}


def test_cors_is_closed_by_default_and_open_to_configured_origins(server, limited):
    preflight = {"Origin": "https://studio.example", "Access-Control-Request-Method": "POST",
                 "Access-Control-Request-Headers": "authorization,content-type"}
    _, headers, _ = fetch(f"{server.url}/v1/images/generations", method="OPTIONS", headers=preflight)
    assert "access-control-allow-origin" not in headers
    status, headers, _ = fetch(f"{limited.url}/v1/images/generations", method="OPTIONS", headers=preflight)
    assert status == 200 and headers["access-control-allow-origin"] == "https://studio.example"
    _, headers, _ = fetch(f"{limited.url}/v1/images/generations", method="OPTIONS",
                          headers={**preflight, "Origin": "https://elsewhere.example"})
    assert headers.get("access-control-allow-origin") != "https://elsewhere.example"


# --- operations ----------------------------------------------------------------------------------

def test_health_readiness_and_metrics(server, keys):
    assert fetch(f"{server.url}/healthz")[0] == 200
    status, _, body = fetch(f"{server.url}/readyz")
    assert status == 200 and json.loads(body) == {"status": "ready", "checks": {"model": True, "database": True}}
    client(server, keys["alice"]).images.generate(prompt=PROMPT, response_format="b64_json")
    status, headers, body = fetch(f"{server.url}/metrics")
    text = body.decode()
    assert status == 200 and headers["content-type"].startswith("text/plain")
    assert 'atelier_http_requests_total{method="POST",route="/v1/images/generations",status="200"}' in text
    assert "atelier_http_request_duration_seconds_bucket" in text and "atelier_queue_depth 0.0" in text
    busy = [line for line in text.splitlines() if line.startswith("atelier_model_busy_seconds_total")]
    assert busy and float(busy[0].split()[-1]) > 0


def test_request_ids_and_json_logs_without_secrets(server, keys, caplog):
    key = keys["alice"]
    with caplog.at_level(logging.INFO, logger="atelier.server.access"):
        _, headers, _ = fetch(f"{server.url}/v1/models", key, headers={"X-Request-ID": "trace-42"})
        assert headers["x-request-id"] == "trace-42"
        url = client(server, key).images.generate(prompt=PROMPT).data[0].url
        _, headers, _ = fetch(url)
        assert len(headers["x-request-id"]) == 32                    # made up when none is sent
        time.sleep(0.1)
    lines = [JsonFormatter().format(record) for record in caplog.records if record.name == "atelier.server.access"]
    entries = [json.loads(line) for line in lines]
    assert any(entry["request_id"] == "trace-42" and entry["route"] == "/v1/models" and entry["status"] == 200
               and entry["user_id"] and "duration_ms" in entry for entry in entries)
    everything = "\n".join(lines)
    signature = url.split("signature=")[1]
    assert key not in everything and key[4:] not in everything and signature not in everything


def test_pipeline_warnings_are_json_log_lines_of_their_request(server, keys, caplog):
    api = client(server, keys["alice"])
    with caplog.at_level(logging.WARNING, logger="atelier.server.warnings"):
        for request_id in ("empty-1", "empty-2"):       # every time, not only the process's first
            api.images.generate(prompt="   ", extra_headers={"X-Request-ID": request_id})
    entries = [json.loads(JsonFormatter().format(record)) for record in caplog.records
               if record.name == "atelier.server.warnings"]
    assert [entry["request_id"] for entry in entries] == ["empty-1", "empty-2"]
    assert all(entry["level"] == "warning" and entry["category"] == "UserWarning"
               and entry["message"].startswith("the prompt is empty") for entry in entries)


@pytest.mark.slow
@pytest.mark.processes
def test_atelier_serve_loads_the_model_and_answers(folder, tmp_path, capsys):
    """The command itself: the lifespan loads --model, the data folder is made, logs are JSON lines,
    the pipeline's warnings included."""
    import os
    import signal
    import socket
    import subprocess
    import sys

    from atelier.cli import main

    main(["users", "create", "carol", "--data", str(tmp_path)])
    main(["keys", "create", "--user", "carol", "--data", str(tmp_path)])
    key = capsys.readouterr().out.split()[-1]
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE", "ATELIER_PORT": str(port + 1)}   # the flag wins
    process = subprocess.Popen([sys.executable, "-m", "atelier", "serve", "--model", str(folder), "--data",
                                str(tmp_path), "--port", str(port), "--threads", "1"], env=env,
                               stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, process.stderr.read()
            try:
                status, _, body = fetch(f"http://127.0.0.1:{port}/readyz")
                break
            except urllib.error.URLError:
                assert time.monotonic() < deadline, "atelier serve did not answer within 60 s"
                time.sleep(0.2)
        assert status == 200 and json.loads(body)["checks"] == {"model": True, "database": True}
        status, _, _ = fetch(f"http://127.0.0.1:{port}/v1/images/generations", key, method="POST",
                             data=json.dumps({"prompt": " ", "seed": 1}).encode(),
                             headers={"Content-Type": "application/json", "X-Request-ID": "no-prompt"})
        assert status == 200
    finally:
        process.send_signal(signal.SIGINT)
        _, logs = process.communicate(timeout=30)
    assert process.returncode == 0
    assert all(line.startswith("{") for line in logs.splitlines()), logs
    lines = [json.loads(line) for line in logs.splitlines()]
    assert any(line["logger"] == "atelier.server.warnings" and line["request_id"] == "no-prompt"
               and line["message"].startswith("the prompt is empty") for line in lines)
    assert any(line["message"].startswith(f"ready: model {folder.name}") for line in lines)
    assert any(line.get("route") == "/readyz" and line.get("status") == 200 for line in lines)
