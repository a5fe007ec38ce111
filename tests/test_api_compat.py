"""The API forgives what OpenAI's API forgives (issue 20): JSON sent without its Content-Type, empty
form fields, OpenAI's model names, black-and-white masks; and it answers as OpenAI's does: plain
error messages, x-ratelimit-* headers, OPTIONS and 405 with a full Allow, strict JSON types."""

import base64
import http.client
import io
import json
import time
import urllib.request
import uuid
from urllib.parse import urlsplit

import numpy as np
import pytest
from PIL import Image
from pydantic import ValidationError

from atelier.server.config import ServerSettings
from atelier.server.middleware import go_duration
from atelier.server.routers.masks import MaskBody
from tests.api_server import start_server

PROMPT = "a red star above two blue circles"


class Breakable:
    """The real pipeline, whose variations fail with an exception naming a Python object while `broken`."""

    def __init__(self, pipe):
        self._pipe, self.broken = pipe, False

    def __getattr__(self, name):
        return getattr(self._pipe, name)

    def variations(self, *args, **settings):
        if self.broken:
            raise RuntimeError(f"tensor state {object()}")
        return self._pipe.variations(*args, **settings)


@pytest.fixture(scope="module")
def breakable(pipe):
    return Breakable(pipe)


@pytest.fixture(scope="module")
def server(breakable, tmp_path_factory):
    live = start_server(ServerSettings(data=tmp_path_factory.mktemp("compat"), threads=1, daily_quota=1000), breakable)
    yield live
    live.stop()


@pytest.fixture(scope="module")
def key(server):
    return server.add_user("newcomer")


def send(server, method, path, body=None, headers=None, key=None):
    """(status, headers, body) of a request sent with exactly these headers (http.client adds no
    Content-Type of its own, unlike urllib)."""
    connection = http.client.HTTPConnection(urlsplit(server.url).netloc, timeout=60)
    try:
        connection.request(method, path, body=body, headers={
            **({"Authorization": f"Bearer {key}"} if key else {}), **(headers or {})})
        response = connection.getresponse()
        return response.status, response.headers, response.read()
    finally:
        connection.close()


def send_json(server, key, path, body, headers=None):
    status, answer_headers, data = send(server, "POST", path, json.dumps(body).encode(),
                                        {"Content-Type": "application/json", **(headers or {})}, key)
    return status, answer_headers, json.loads(data)


def multipart(fields: dict[str, str], files: dict[str, bytes]) -> tuple[bytes, dict[str, str]]:
    """A multipart/form-data body as `curl -F` builds it: text fields (empty ones too) and files."""
    boundary = uuid.uuid4().hex
    parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
             for name, value in fields.items()]
    parts += [f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{name}.png"\r\n'
              f'Content-Type: image/png\r\n\r\n'.encode() + data + b"\r\n" for name, data in files.items()]
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), {
        "Content-Type": f"multipart/form-data; boundary={boundary}"}


def post_form(server, key, path, fields, files):
    body, headers = multipart(fields, files)
    status, _, data = send(server, "POST", path, body, headers, key)
    return status, json.loads(data)


def png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def source() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)


def decoded(answer) -> list[np.ndarray]:
    return [np.asarray(Image.open(io.BytesIO(base64.b64decode(item["b64_json"]))).convert("RGB"))
            for item in answer["data"]]


# --- JSON without its Content-Type ----------------------------------------------------------------

def test_json_sent_without_its_content_type_is_read_as_json(server, key):
    def accepted():     # the access metrics still name the route
        return server.services.metrics.registry.get_sample_value(
            "atelier_http_requests_total", {"method": "POST", "route": "/v1/jobs", "status": "202"}) or 0

    before = accepted()
    body = json.dumps({"task": "text_to_image", "input": {"prompt": PROMPT, "seed": 1}}).encode()
    for headers in ({}, {"Content-Type": "application/x-www-form-urlencoded"}):     # none; curl -d's
        status, _, data = send(server, "POST", "/v1/jobs", body, headers, key)
        assert status == 202 and json.loads(data)["task"] == "text_to_image", data
    deadline = time.monotonic() + 10      # counted once the answer is sent, so possibly after we read it
    while accepted() < before + 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert accepted() == before + 2


@pytest.mark.parametrize("content_type, body, says", [
    ("application/x-www-form-urlencoded", b"task=text_to_image&prompt=x", "not valid JSON"),
    (None, b"{'task': 'text_to_image'}", "no Content-Type"),
    ("text/plain", json.dumps({"task": "text_to_image", "input": {"prompt": "x"}}).encode(), "type text/plain"),
    ("multipart/form-data; boundary=x", b"--x--\r\n", "type multipart/form-data"),
])
def test_a_body_that_is_not_json_on_a_json_endpoint_is_a_415_saying_what_to_send(server, key, content_type,
                                                                                 body, says):
    status, _, data = send(server, "POST", "/v1/jobs", body, {"Content-Type": content_type} if content_type else {},
                           key)
    error = json.loads(data)["error"]
    assert status == 415 and error["code"] == "unsupported_media_type"
    assert "Content-Type: application/json" in error["message"] and says in error["message"]


def test_the_multipart_endpoints_answer_415_to_json(server, key):
    status, _, answer = send_json(server, key, "/v1/images/variations", {"image": "x"})
    assert status == 415 and "multipart/form-data" in answer["error"]["message"]


# --- plain error messages ---------------------------------------------------------------------------

CUT_PNG = png(source())[:200]
NOT_AN_IMAGE = "image is not a readable image (not a PNG, JPEG, WebP or other image file that Pillow reads)"


@pytest.mark.parametrize("data, message", [
    (b"", "image is empty (0 bytes)"),
    (b"not an image at all", NOT_AN_IMAGE),
    (b"GIF89a" + bytes(40), NOT_AN_IMAGE),
    (CUT_PNG, "image is not a readable image (the PNG file is damaged or cut short)"),
    (b"\x89PNG\r\n\x1a\n" + b"garbage" * 5, "image is not a readable image (the image file is damaged or cut short)"),
    (b"\xff\xd8\xff" + bytes(30), NOT_AN_IMAGE),
])
def test_unusable_images_are_named_in_plain_words_never_as_python_objects(server, key, data, message):
    status, answer = post_form(server, key, "/v1/images/variations", {}, {"image": data})
    assert status == 400 and answer["error"] == {"message": message, "type": "invalid_request_error",
                                                 "param": "image", "code": "invalid_image"}
    status, _, answer = send_json(server, key, "/v1/jobs", {"task": "variation", "input": {
        "image": base64.b64encode(data).decode() or "data:image/png;base64,"}})
    assert status == 400 and answer["error"]["message"] == message and answer["error"]["param"] == "input.image"


def test_a_job_that_fails_on_the_server_says_so_without_python_internals(server, key, breakable):
    breakable.broken = True
    try:
        status, answer = post_form(server, key, "/v1/images/variations", {}, {"image": png(source())})
    finally:
        breakable.broken = False
    message = answer["error"]["message"]
    assert status == 500 and message.startswith("the job failed on the server; the error is in the server's log")
    assert "RuntimeError" not in message and "object at" not in message


# --- forms, masks, models, sizes ----------------------------------------------------------------------

@pytest.mark.parametrize("mode", ["L", "RGB"])
def test_a_black_and_white_mask_marks_its_white_pixels_for_editing(server, key, mode):
    image = source()
    area = np.zeros((64, 64), dtype=bool)
    area[16:40, 20:48] = True
    mask = Image.fromarray(area.astype(np.uint8) * 255).convert(mode)
    buffer = io.BytesIO()
    mask.save(buffer, format="PNG")
    status, answer = post_form(server, key, "/v1/images/edits", {"prompt": PROMPT, "response_format": "b64_json",
                                                                 "seed": "5"},
                               {"image": png(image), "mask": buffer.getvalue()})
    assert status == 200, answer
    [out] = decoded(answer)
    assert np.array_equal(out[~area], image[~area]) and not np.array_equal(out[area], image[area])


def test_empty_form_fields_count_as_absent(server, key):
    cutout = np.dstack([source(), np.full((64, 64), 255, dtype=np.uint8)])
    cutout[30:50, 10:30, 3] = 0
    empty = {"model": "", "size": "", "n": "", "user": "", "seed": "", "mask": ""}
    status, answer = post_form(server, key, "/v1/images/edits", {**empty, "prompt": PROMPT,
                                                                 "response_format": "b64_json"},
                               {"image": png(cutout)})
    assert status == 200 and len(answer["data"]) == 1, answer
    status, answer = post_form(server, key, "/v1/images/variations",
                               {"model": "", "size": "", "n": "", "response_format": "", "strength": ""},
                               {"image": png(source())})
    assert status == 200 and "url" in answer["data"][0], answer


def test_openais_model_names_are_aliases_of_the_served_model(server, key, pipe):
    for model in ("dall-e-2", "dall-e-3", "gpt-image-1"):
        status, _, answer = send_json(server, key, "/v1/images/generations", {"prompt": PROMPT, "model": model})
        assert status == 200, answer
    status, answer = post_form(server, key, "/v1/images/variations", {"model": "dall-e-2"}, {"image": png(source())})
    assert status == 200, answer
    status, _, answer = send_json(server, key, "/v1/images/generations", {"prompt": PROMPT, "model": "midjourney"})
    assert status == 400 and answer["error"]["param"] == "model" and pipe.name in answer["error"]["message"]
    assert "dall-e-*" in answer["error"]["message"]


def test_an_unsupported_size_is_a_400_naming_the_sizes_offered(server, key):
    answers = [send_json(server, key, "/v1/images/generations", {"prompt": PROMPT, "size": "1024x1024"})[::2]]
    for path in ("/v1/images/edits", "/v1/images/variations"):
        cutout = np.dstack([source(), np.zeros((64, 64), dtype=np.uint8)])
        answers.append(post_form(server, key, path, {"size": "1024x1024", "prompt": PROMPT}
                                 if path.endswith("edits") else {"size": "1024x1024"}, {"image": png(cutout)}))
    for status, answer in answers:
        assert status == 400 and answer["error"]["param"] == "size" and answer["error"]["code"] == "invalid_size"
        assert answer["error"]["message"].endswith("allowed sizes: 64x64")
    status, _, answer = send_json(server, key, "/v1/images/generations", {"prompt": PROMPT, "size": "auto"})
    assert status == 200 and len(answer["data"]) == 1, answer          # gpt-image's default: the model's own size


# --- strict JSON types, parsed form strings ---------------------------------------------------------

@pytest.mark.parametrize("path, body, param", [
    ("/v1/images/generations", {"prompt": PROMPT, "n": "2"}, "n"),
    ("/v1/images/generations", {"prompt": PROMPT, "n": True}, "n"),
    ("/v1/images/generations", {"prompt": PROMPT, "seed": "3"}, "seed"),
    ("/v1/images/generations", {"prompt": PROMPT, "guidance": "7"}, "guidance"),
    ("/v1/jobs", {"task": "text_to_image", "input": {"prompt": PROMPT, "n": "2"}}, "input.n"),
    ("/v1/jobs", {"task": "text_to_image", "input": {"prompt": PROMPT, "steps": 2.0}}, "input.steps"),
])
def test_json_bodies_take_their_json_types_strictly(server, key, path, body, param):
    status, _, answer = send_json(server, key, path, body)
    assert status == 400 and answer["error"]["param"] == param, answer


def test_json_numbers_stand_for_floats_and_form_strings_are_parsed(server, key):
    status, _, answer = send_json(server, key, "/v1/images/generations", {"prompt": PROMPT, "guidance": 3})
    assert status == 200, answer
    status, answer = post_form(server, key, "/v1/images/variations", {"n": "2", "strength": "0.5", "seed": "1",
                                                                      "response_format": "b64_json"},
                               {"image": png(source())})
    assert status == 200 and len(answer["data"]) == 2, answer


def test_a_point_is_a_json_array_of_two_numbers():
    assert MaskBody.model_validate({"image": "img_x", "kind": "subject", "which": [1.5, 2]}).which == (1.5, 2.0)
    assert MaskBody.model_validate({"image": "img_x", "kind": "subject", "which": 2}).which == 2
    for which in ("2", True, ["1", 2]):
        with pytest.raises(ValidationError):
            MaskBody.model_validate({"image": "img_x", "kind": "subject", "which": which})


# --- rate-limit headers -------------------------------------------------------------------------------

@pytest.mark.parametrize("seconds, text", [(0, "0s"), (0.02, "20ms"), (1, "1s"), (1.5, "1.5s"), (59.9996, "1m0s"),
                                           (360, "6m0s"), (3725.25, "1h2m5.25s")])
def test_durations_are_written_as_openai_writes_them(seconds, text):
    assert go_duration(seconds) == text


@pytest.fixture(scope="module")
def tight(pipe, tmp_path_factory):
    """A server with tight limits: 2 requests a minute per key, bodies up to 1 MiB + 2 KiB."""
    live = start_server(ServerSettings(data=tmp_path_factory.mktemp("tight"), threads=1, rate_limit=2,
                                       rate_window=60.0, max_upload_bytes=1024), pipe)
    yield live
    live.stop()


def test_rate_limited_answers_carry_openais_rate_limit_headers(tight):
    key = tight.add_user("paced")
    seen = []
    for _ in range(3):
        status, headers, _ = send(tight, "GET", "/v1/models", key=key)
        seen.append((status, headers["x-ratelimit-limit-requests"], headers["x-ratelimit-remaining-requests"]))
        reset = headers["x-ratelimit-reset-requests"]
        assert reset == "1m0s" or (reset.endswith("s") and 59 < float(reset.rstrip("s")) <= 60), reset
    assert seen == [(200, "2", "1"), (200, "2", "0"), (429, "2", "0")]
    assert int(headers["retry-after"]) > 0
    _, headers, _ = send(tight, "GET", "/v1/models")                  # no key: not counted, no headers
    assert "x-ratelimit-remaining-requests" not in headers


def test_a_body_read_for_its_json_is_held_to_the_size_limit(tight):
    """JSONBodies reads a body without a JSON Content-Type itself: over the limit, that is a 413, not a 500."""
    key = tight.add_user("bulky")
    filler = tight.settings.max_request_bytes                          # with the "{": one byte over, at the end
    chunks = [b"{", *([b" " * 65536] * (filler // 65536)), b" " * (filler % 65536)]
    connection = http.client.HTTPConnection(urlsplit(tight.url).netloc, timeout=60)
    try:
        connection.request("POST", "/v1/jobs", body=iter(chunks), encode_chunked=True,
                           headers={"Authorization": f"Bearer {key}",
                                    "Content-Type": "application/x-www-form-urlencoded"})
        response = connection.getresponse()
        status, error = response.status, json.loads(response.read())["error"]
    finally:
        connection.close()
    assert status == 413 and error["code"] == "request_too_large"


# --- OPTIONS and 405 ------------------------------------------------------------------------------------

def test_options_and_405_list_every_method_of_the_path(server, key):
    with urllib.request.urlopen(f"{server.url}/openapi.json") as response:
        paths = json.loads(response.read())["paths"]
    for path, operations in paths.items():
        concrete = path.replace("{", "x").replace("}", "")
        documented = {method.upper() for method in operations}
        status, headers, _ = send(server, "OPTIONS", concrete)
        allowed = set(headers["allow"].split(", "))
        assert status == 204 and documented | {"OPTIONS"} <= allowed <= documented | {"OPTIONS", "HEAD"}, path
        if "PUT" not in allowed:
            status, headers, data = send(server, "PUT", concrete, key=key)
            assert status == 405 and set(headers["allow"].split(", ")) == allowed, path
            assert json.loads(data)["error"]["code"] == "method_not_allowed"
    assert {"GET", "POST"} <= set(send(server, "OPTIONS", "/studio/api/keys")[1]["allow"].split(", "))
    assert {"POST", "DELETE"} <= set(send(server, "OPTIONS", "/v1/gallery/img_1/like")[1]["allow"].split(", "))
    assert send(server, "OPTIONS", "/v1/nothing-here")[0] == 404

